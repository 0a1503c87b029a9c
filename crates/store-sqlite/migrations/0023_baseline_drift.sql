-- Issue 13, point 1: every drift an agent found (and whether it repaired it), kept as
-- history beside the latest report in host_baselines.
CREATE TABLE baseline_drift (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    host_id TEXT NOT NULL,
    baseline TEXT NOT NULL,
    version TEXT NOT NULL,
    drift TEXT NOT NULL,
    repaired INTEGER NOT NULL,
    at TEXT NOT NULL,
    FOREIGN KEY (tenant_id, host_id) REFERENCES hosts (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX baseline_drift_by_tenant ON baseline_drift (tenant_id, seq);
