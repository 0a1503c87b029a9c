-- Issue 10, points 2 and 3 (rings): a tenant's rings in order, halted rollouts, and the
-- hosts each wave of a ring has admitted.
CREATE TABLE rings (
    tenant_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    group_id TEXT NOT NULL,
    spec TEXT NOT NULL,
    PRIMARY KEY (tenant_id, position)
);
CREATE TABLE rollout_halts (
    update_id TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    at TEXT NOT NULL,
    halted_by TEXT NOT NULL,
    -- Set by a resume: failures recorded before it no longer count.
    resumed_at TEXT
);
CREATE TABLE rollout_waves (
    tenant_id TEXT NOT NULL,
    update_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    host_id TEXT NOT NULL,
    admitted_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, update_id, group_id, host_id)
);
CREATE INDEX rollout_waves_by_host ON rollout_waves (tenant_id, host_id);
