-- Issue 8, finding 11: one row the server rewrites to learn whether it can commit
-- (its health answer says "storage: cannot write" while it cannot).
CREATE TABLE storage_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at TEXT NOT NULL
);
