-- Audit facts each agent reports (opaque JSON owned by patchday-audit).
ALTER TABLE hosts ADD COLUMN facts TEXT;
ALTER TABLE hosts ADD COLUMN facts_at TEXT;
