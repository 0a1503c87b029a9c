-- Every tenant-owned table carries tenant_id in its primary key, and every query
-- of a TenantStore filters on it.
CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    patch_day TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    tenant_id TEXT REFERENCES tenants(id),
    created_at TEXT NOT NULL
);
CREATE TABLE enroll_tokens (
    hash TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    created_at TEXT NOT NULL
);
CREATE TABLE groups (
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE hosts (
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    id TEXT NOT NULL,
    hostname TEXT NOT NULL,
    credential_hash TEXT NOT NULL UNIQUE,
    enrolled_at TEXT NOT NULL,
    last_seen TEXT,
    inventory TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE host_groups (
    tenant_id TEXT NOT NULL,
    host_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, host_id, group_id),
    FOREIGN KEY (tenant_id, host_id) REFERENCES hosts(tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, group_id) REFERENCES groups(tenant_id, id) ON DELETE CASCADE
);
CREATE TABLE approvals (
    tenant_id TEXT NOT NULL,
    update_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    decision TEXT NOT NULL,
    deadline TEXT,
    decided_at TEXT NOT NULL,
    decided_by TEXT NOT NULL,
    PRIMARY KEY (tenant_id, update_id, group_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES groups(tenant_id, id) ON DELETE CASCADE
);
CREATE TABLE host_states (
    tenant_id TEXT NOT NULL,
    host_id TEXT NOT NULL,
    update_id TEXT NOT NULL,
    state TEXT NOT NULL,
    message TEXT,
    at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, host_id, update_id),
    FOREIGN KEY (tenant_id, host_id) REFERENCES hosts(tenant_id, id) ON DELETE CASCADE
);
-- The catalog is the publisher's, shared by every tenant; it is replaced whole.
CREATE TABLE catalog_status (
    k INTEGER PRIMARY KEY CHECK (k = 1),
    status TEXT NOT NULL
);
CREATE TABLE catalog_updates (
    id TEXT PRIMARY KEY,
    doc TEXT NOT NULL
);
CREATE TABLE catalog_targets (
    name TEXT PRIMARY KEY,
    length INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE TABLE catalog_metadata (
    name TEXT PRIMARY KEY,
    bytes BLOB NOT NULL
);
