-- Issue 13, point 1: each host's latest report per baseline and the drift history (see
-- the SQLite migrations 0022 and 0023).
CREATE TABLE host_baselines (
    tenant_id TEXT COLLATE "C" NOT NULL,
    host_id TEXT COLLATE "C" NOT NULL,
    baseline TEXT COLLATE "C" NOT NULL,
    version TEXT COLLATE "C" NOT NULL,
    drift TEXT NOT NULL DEFAULT '[]',
    repaired BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    measured TEXT NOT NULL DEFAULT '{}',
    reported_at TEXT COLLATE "C" NOT NULL,
    last_drift_at TEXT COLLATE "C",
    drift_runs BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, host_id, baseline),
    FOREIGN KEY (tenant_id, host_id) REFERENCES hosts (tenant_id, id) ON DELETE CASCADE
);
CREATE TABLE baseline_drift (
    seq BIGSERIAL PRIMARY KEY,
    tenant_id TEXT COLLATE "C" NOT NULL,
    host_id TEXT COLLATE "C" NOT NULL,
    baseline TEXT COLLATE "C" NOT NULL,
    version TEXT COLLATE "C" NOT NULL,
    drift TEXT NOT NULL,
    repaired BIGINT NOT NULL,
    at TEXT COLLATE "C" NOT NULL,
    FOREIGN KEY (tenant_id, host_id) REFERENCES hosts (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX baseline_drift_by_tenant ON baseline_drift (tenant_id, seq);
