-- Issue 11, point 1: each host's evaluated statuses with the basis they were computed
-- from (see the SQLite migration 0024). A cache: losing it costs time, not truth.
CREATE TABLE host_verdicts (
    tenant_id TEXT COLLATE "C" NOT NULL,
    host_id TEXT COLLATE "C" NOT NULL,
    basis TEXT COLLATE "C" NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant_id, host_id),
    FOREIGN KEY (tenant_id, host_id) REFERENCES hosts(tenant_id, id) ON DELETE CASCADE
);
