-- issue 8, findings 8 and 13: each host's own ed25519 public key (hex, registered at
-- enrolment; NULL for hosts enrolled before signed check-ins), the last sequence number
-- of a signed body the server accepted (replays are refused), and the error of the
-- agent's last run (NULL after a successful one).
ALTER TABLE hosts ADD COLUMN public_key TEXT;
ALTER TABLE hosts ADD COLUMN last_sequence INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN last_signed_at TEXT;
ALTER TABLE hosts ADD COLUMN agent_error TEXT;
ALTER TABLE hosts ADD COLUMN agent_error_at TEXT;
