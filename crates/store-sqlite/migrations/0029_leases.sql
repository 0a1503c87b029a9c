-- Issue 12, point 5: background work (rollout gates, mirror runs, the timestamp
-- refresher, cleanup, catalog expiry) runs on one server replica at a time: each pass
-- takes or renews a lease here first. `expires_ms` is milliseconds since the epoch.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);
