-- Issue 10, point 3: a decline that also takes the update back from the hosts of the
-- group that installed it (`patchday decline U --group G --remove --reason TEXT`).
ALTER TABLE approvals ADD COLUMN remove INTEGER NOT NULL DEFAULT 0;
