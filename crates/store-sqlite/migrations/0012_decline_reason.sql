-- Issue 9, point 7: an operator declines an update with a reason, shown in reports.
ALTER TABLE approvals ADD COLUMN reason TEXT;
