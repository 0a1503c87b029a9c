-- Issue 14, point 4: verdicts of the mail attachment filter (`patchday milter`), as the
-- milter reported them (the record itself as JSON), per tenant.
CREATE TABLE mail_verdicts (
    id INTEGER PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    time TEXT NOT NULL,
    verdict TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX mail_verdicts_by_tenant ON mail_verdicts (tenant_id, id);
