-- Issue 12, point 5: one replica at a time runs each kind of background work (see the
-- SQLite migration 0029).
CREATE TABLE leases (
    name TEXT COLLATE "C" PRIMARY KEY,
    holder TEXT COLLATE "C" NOT NULL,
    expires_ms BIGINT NOT NULL
);
