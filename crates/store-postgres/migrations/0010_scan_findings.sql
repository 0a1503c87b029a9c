-- Issue 14, point 5: the agents' folder scan findings (see the SQLite migration 0031).
CREATE TABLE scan_findings (
    id BIGSERIAL PRIMARY KEY,
    tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    host_id TEXT COLLATE "C" NOT NULL,
    received_at TEXT COLLATE "C" NOT NULL,
    outcome TEXT COLLATE "C" NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX scan_findings_by_tenant ON scan_findings (tenant_id, id);
