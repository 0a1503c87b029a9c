-- Issue 12, point 1: the pinned root and the trusted TUF client state, in the database
-- (see the SQLite migration 0030).
CREATE TABLE catalog_pin (
    k INTEGER PRIMARY KEY CHECK (k = 1),
    root BYTEA NOT NULL
);
CREATE TABLE catalog_trusted (
    name TEXT COLLATE "C" PRIMARY KEY,
    bytes BYTEA NOT NULL
);
