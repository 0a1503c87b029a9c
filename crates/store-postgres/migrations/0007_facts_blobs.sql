-- Issue 12, point 7: audit facts stored once per distinct content (see the SQLite
-- migration 0028 for the shape). Facts stored the old way are dropped; agents send them
-- again on their next run.
CREATE TABLE facts_blobs (
    tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    sha256 TEXT COLLATE "C" NOT NULL,
    body BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, sha256)
);
CREATE TABLE host_facts_parts (
    tenant_id TEXT COLLATE "C" NOT NULL,
    host_id TEXT COLLATE "C" NOT NULL,
    part TEXT COLLATE "C" NOT NULL,
    sha256 TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, host_id, part),
    FOREIGN KEY (tenant_id, host_id) REFERENCES hosts(tenant_id, id) ON DELETE CASCADE,
    -- A blob named by a part cannot go (a concurrent save's orphan sweep fails instead).
    FOREIGN KEY (tenant_id, sha256) REFERENCES facts_blobs(tenant_id, sha256)
);
CREATE INDEX host_facts_parts_by_blob ON host_facts_parts (tenant_id, sha256);
ALTER TABLE hosts ADD COLUMN facts_sha256 TEXT COLLATE "C";
UPDATE hosts SET facts = NULL, facts_at = NULL;
