-- Issue 12, point 5: push generations (see patchday_store::Store::raise_push_generations).
-- One server uses a SQLite file, so nothing listens for raises here; the rows keep the
-- generations across restarts, as PostgreSQL's share them between replicas.
CREATE TABLE push_generations (
    scope TEXT PRIMARY KEY,
    generation INTEGER NOT NULL
);
