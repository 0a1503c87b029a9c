-- Issue 12, point 1: the server's trust in the catalog lives in the database, changed in
-- the same transaction as the catalog rows it belongs to: the pinned root (one row) and
-- the trusted TUF client state the last accepted push (or the timestamp refresher) ended
-- on. Servers before this kept both as files in the data directory; they are adopted at
-- the first start (`catalog::adopt_files`).
CREATE TABLE catalog_pin (
    k INTEGER PRIMARY KEY CHECK (k = 1),
    root BLOB NOT NULL
);
CREATE TABLE catalog_trusted (
    name TEXT PRIMARY KEY,
    bytes BLOB NOT NULL
);
