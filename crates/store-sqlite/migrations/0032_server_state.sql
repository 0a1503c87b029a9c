-- Issue 12, point 1: the rest of the server's state in the database, so a replica holds
-- nothing another one needs but its key files. The director key's certificate (one row:
-- the current one; the operator log keeps the history), which servers before this kept
-- as DATA/director/certificate.json (moved in at the first start, `director::Director`);
-- and the scheduled mirror's progress (the InRelease each source was last verified at,
-- for replay protection, and the update ids already signed), which servers before this
-- kept as MIRROR-WORK/state.json.
CREATE TABLE director_certificate (
    k INTEGER PRIMARY KEY CHECK (k = 1),
    version INTEGER NOT NULL,
    keyid TEXT NOT NULL,
    bytes BLOB NOT NULL
);
CREATE TABLE mirror_progress (
    k INTEGER PRIMARY KEY CHECK (k = 1),
    progress BLOB NOT NULL
);
