-- Issue 10, point 1: every change of a host's state for an update, with its time, as a
-- read model (the current state per host and update, and the append-only history).
CREATE TABLE host_update_state (
    tenant_id TEXT NOT NULL,
    host_id TEXT NOT NULL,
    update_id TEXT NOT NULL,
    state TEXT NOT NULL,
    message TEXT,
    since TEXT NOT NULL,
    PRIMARY KEY (tenant_id, host_id, update_id)
);
CREATE TABLE state_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    host_id TEXT NOT NULL,
    update_id TEXT NOT NULL,
    state TEXT NOT NULL,
    previous TEXT,
    message TEXT,
    at TEXT NOT NULL
);
CREATE INDEX state_history_by_host ON state_history (tenant_id, host_id, seq);
CREATE INDEX state_history_by_update ON state_history (tenant_id, update_id, seq);
CREATE TRIGGER state_history_append_only_update BEFORE UPDATE ON state_history
BEGIN SELECT RAISE(ABORT, 'state history is append-only'); END;
-- When each update first appeared in a pushed catalog (publication, for time-to-install).
CREATE TABLE update_published (
    update_id TEXT PRIMARY KEY,
    at TEXT NOT NULL
);
-- Issue 10, point 4: an approval made through the operator's emergency lane.
ALTER TABLE approvals ADD COLUMN emergency INTEGER NOT NULL DEFAULT 0;
