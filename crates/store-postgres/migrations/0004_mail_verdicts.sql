-- Issue 14, point 4: verdicts of the mail attachment filter (see the SQLite migration 0025).
CREATE TABLE mail_verdicts (
    id BIGSERIAL PRIMARY KEY,
    tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    time TEXT COLLATE "C" NOT NULL,
    verdict TEXT COLLATE "C" NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX mail_verdicts_by_tenant ON mail_verdicts (tenant_id, id);
