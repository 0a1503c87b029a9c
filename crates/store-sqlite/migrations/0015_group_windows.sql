-- Issue 10, point 5: per group, weekly maintenance windows (a JSON list of
-- "Sat 02:00-05:00 Europe/Berlin") and the reboot policy (in-window, now, never).
ALTER TABLE groups ADD COLUMN windows TEXT NOT NULL DEFAULT '[]';
ALTER TABLE groups ADD COLUMN reboot TEXT NOT NULL DEFAULT 'never';
