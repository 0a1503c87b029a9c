-- Issue 12, point 7: audit facts stored once per distinct content. A host's facts are
-- parts (its own document, one per apt suite), each a digest into the tenant's blobs
-- (zstd-compressed bytes); hosts that follow the same suites share their blobs.
-- `hosts.facts_sha256` is the agent's digest of the whole, returned in check-ins so that
-- an agent whose facts did not change sends nothing. Facts stored the old way (one JSON
-- text per host) are dropped: every agent sends its facts again on its next run, because
-- the server now has no digest for it.
CREATE TABLE facts_blobs (
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    sha256 TEXT NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (tenant_id, sha256)
);
CREATE TABLE host_facts_parts (
    tenant_id TEXT NOT NULL,
    host_id TEXT NOT NULL,
    part TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (tenant_id, host_id, part),
    FOREIGN KEY (tenant_id, host_id) REFERENCES hosts(tenant_id, id) ON DELETE CASCADE,
    -- A blob named by a part cannot go (a concurrent save's orphan sweep fails instead).
    FOREIGN KEY (tenant_id, sha256) REFERENCES facts_blobs(tenant_id, sha256)
);
CREATE INDEX host_facts_parts_by_blob ON host_facts_parts (tenant_id, sha256);
ALTER TABLE hosts ADD COLUMN facts_sha256 TEXT;
UPDATE hosts SET facts = NULL, facts_at = NULL;
