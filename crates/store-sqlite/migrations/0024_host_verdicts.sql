-- Issue 11, point 1 (the console at 10,000 hosts): each host's evaluated statuses, kept
-- with the basis they were computed from (catalog version, the tenant's decisions, the
-- host's groups, check-in and last report). A fleet view reuses a row whose basis still
-- holds and evaluates again only the hosts that changed. A cache: losing it costs time.
CREATE TABLE host_verdicts (
    tenant_id TEXT NOT NULL,
    host_id TEXT NOT NULL,
    basis TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant_id, host_id),
    FOREIGN KEY (tenant_id, host_id) REFERENCES hosts(tenant_id, id) ON DELETE CASCADE
);
