-- Uptane release counter of each catalog payload (0 for update documents and for
-- payloads published without one), signed in the target's custom data.
ALTER TABLE catalog_targets ADD COLUMN release_counter INTEGER NOT NULL DEFAULT 0;
