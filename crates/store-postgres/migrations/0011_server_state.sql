-- Issue 12, point 1: the director key's certificate and the scheduled mirror's progress,
-- in the database (see the SQLite migration 0032).
CREATE TABLE director_certificate (
    k INTEGER PRIMARY KEY CHECK (k = 1),
    version BIGINT NOT NULL,
    keyid TEXT NOT NULL,
    bytes BYTEA NOT NULL
);
CREATE TABLE mirror_progress (
    k INTEGER PRIMARY KEY CHECK (k = 1),
    progress BYTEA NOT NULL
);
