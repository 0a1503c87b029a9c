-- Issue 14, point 5: what the agents' folder scan reported (quarantined, unscanned, clean
-- after a retry, released), per tenant and host; the finding itself as JSON.
CREATE TABLE scan_findings (
    id INTEGER PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    host_id TEXT NOT NULL,
    received_at TEXT NOT NULL,
    outcome TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX scan_findings_by_tenant ON scan_findings (tenant_id, id);
