-- Issue 11, point 1: the summary the console's counting pages read, beside each kept
-- evaluation (see the SQLite migration 0035).
ALTER TABLE host_verdicts ADD COLUMN summary TEXT NOT NULL DEFAULT '';

-- Kept evaluations have no summary yet: made again once.
DELETE FROM host_verdicts;
