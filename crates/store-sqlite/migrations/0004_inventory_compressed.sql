-- Inventories are ~100 KB of JSON per host and arrive with every check-in: keep them
-- zstd-compressed, with the sha256 of the JSON so an unchanged one is not rewritten.
-- Rows written before this migration keep their `inventory` text until their next
-- check-in replaces it.
ALTER TABLE hosts ADD COLUMN inventory_zstd BLOB;
ALTER TABLE hosts ADD COLUMN inventory_sha256 TEXT;
