-- Issue 11, point 1 (the console at 10,000 hosts, every page under 200 ms): beside each
-- host's kept evaluation, the summary the counting pages read (the overview, the tenant
-- and updates pages: the statuses that decide the host's state and its exposure), written
-- in the same statement as the evaluation, so a page reads small rows.
ALTER TABLE host_verdicts ADD COLUMN summary TEXT NOT NULL DEFAULT '';

-- Kept evaluations have no summary yet: made again once (the server's format moved too).
DELETE FROM host_verdicts;
