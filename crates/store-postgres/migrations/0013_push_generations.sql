-- Issue 12, point 5: push generations shared by the replicas (see the SQLite migration
-- 0032). A raise announces itself with NOTIFY patchday_push in its transaction; a replica
-- that missed announcements reads the rows again.
CREATE TABLE push_generations (
    scope TEXT COLLATE "C" PRIMARY KEY,
    generation BIGINT NOT NULL
);
