-- Issue 8, findings 3, 4 and 10: secrets that expire and can be revoked, host quotas,
-- and the operator audit log.

-- Operator tokens: the secret's first characters (for people), expiry and revocation.
-- Revoked tokens are kept so that their 401 can say so. A token's listed id is the
-- first 12 hex digits of its hash.
ALTER TABLE tokens ADD COLUMN prefix TEXT NOT NULL DEFAULT '';
ALTER TABLE tokens ADD COLUMN expires_at TEXT;
ALTER TABLE tokens ADD COLUMN revoked_at TEXT;

-- Enrolment tokens: a label, the secret's first characters, the group their hosts
-- join, an expiry, a use limit (NULL: unlimited) and revocation.
ALTER TABLE enroll_tokens ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE enroll_tokens ADD COLUMN prefix TEXT NOT NULL DEFAULT '';
ALTER TABLE enroll_tokens ADD COLUMN group_id TEXT;
ALTER TABLE enroll_tokens ADD COLUMN expires_at TEXT;
ALTER TABLE enroll_tokens ADD COLUMN max_uses INTEGER;
ALTER TABLE enroll_tokens ADD COLUMN uses INTEGER NOT NULL DEFAULT 0;
ALTER TABLE enroll_tokens ADD COLUMN revoked_at TEXT;
-- Tokens made before this migration were unlimited and never expired: they stop
-- working a day after the upgrade (make new ones with `patchday enroll-token create`).
UPDATE enroll_tokens SET expires_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '+1 day');

-- Optional host quota per tenant.
ALTER TABLE tenants ADD COLUMN max_hosts INTEGER;

-- Credentials of removed hosts, so that their agents are told why they get a 401.
CREATE TABLE removed_hosts (
    credential_hash TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    host_id TEXT NOT NULL,
    removed_at TEXT NOT NULL
);

-- Every change an operator makes. No foreign keys: entries outlive what they name.
CREATE TABLE operator_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    tenant_id TEXT,
    actor TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    source TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX operator_log_tenant ON operator_log (tenant_id, seq);
CREATE INDEX operator_log_at ON operator_log (at_ms);
CREATE TRIGGER operator_log_no_update BEFORE UPDATE ON operator_log
BEGIN
    SELECT RAISE(ABORT, 'the operator log is append-only');
END;
CREATE TRIGGER operator_log_no_delete BEFORE DELETE ON operator_log
BEGIN
    SELECT RAISE(ABORT, 'the operator log is append-only');
END;
