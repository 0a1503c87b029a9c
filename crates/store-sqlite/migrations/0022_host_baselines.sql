-- Issue 13, point 1: each host's latest report per baseline (applied version, drift the
-- agent found and repaired, what it measured), written at every check-in that carries one.
CREATE TABLE host_baselines (
    tenant_id TEXT NOT NULL,
    host_id TEXT NOT NULL,
    baseline TEXT NOT NULL,
    version TEXT NOT NULL,
    drift TEXT NOT NULL DEFAULT '[]',
    repaired INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    measured TEXT NOT NULL DEFAULT '{}',
    reported_at TEXT NOT NULL,
    last_drift_at TEXT,
    drift_runs INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, host_id, baseline),
    FOREIGN KEY (tenant_id, host_id) REFERENCES hosts (tenant_id, id) ON DELETE CASCADE
);
