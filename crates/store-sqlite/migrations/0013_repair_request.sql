-- Issue 9, point 4: a server-side repair assignment (`patchday host repair`). When it was
-- asked, whether apt may install or remove packages, and when a signed check-in answer
-- first carried it; cleared once the host reports a clean dpkg database after that.
ALTER TABLE hosts ADD COLUMN repair_requested_at TEXT;
ALTER TABLE hosts ADD COLUMN repair_allow_apt INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN repair_sent_at TEXT;
