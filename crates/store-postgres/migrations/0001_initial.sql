-- Issue 12, point 2: the PostgreSQL schema, the same tables and columns as the SQLite
-- backend's migrations 0001-0021 (crates/store-sqlite/migrations) in one step.
-- Timestamps stay RFC 3339 text, as in SQLite, so that both backends store and compare
-- them alike; every text column sorts bytewise (COLLATE "C", as SQLite does), whatever
-- the database's locale. Integers are BIGINT (SQLite's INTEGER is 64-bit); flags that
-- SQLite keeps as 0/1 stay BIGINT so both backends read them the same way.

CREATE TABLE tenants (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL,
    patch_day TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    max_hosts BIGINT,
    last_group_rule BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE tokens (
    hash TEXT COLLATE "C" PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL,
    role TEXT COLLATE "C" NOT NULL,
    tenant_id TEXT COLLATE "C" REFERENCES tenants(id),
    created_at TEXT COLLATE "C" NOT NULL,
    prefix TEXT COLLATE "C" NOT NULL DEFAULT '',
    expires_at TEXT COLLATE "C",
    revoked_at TEXT COLLATE "C"
);
CREATE TABLE enroll_tokens (
    hash TEXT COLLATE "C" PRIMARY KEY,
    tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    created_at TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL DEFAULT '',
    prefix TEXT COLLATE "C" NOT NULL DEFAULT '',
    group_id TEXT COLLATE "C",
    expires_at TEXT COLLATE "C",
    max_uses BIGINT,
    uses BIGINT NOT NULL DEFAULT 0,
    revoked_at TEXT COLLATE "C"
);
CREATE TABLE groups (
    tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    id TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    windows TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    reboot TEXT COLLATE "C" NOT NULL DEFAULT 'never',
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE hosts (
    tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
    id TEXT COLLATE "C" NOT NULL,
    hostname TEXT COLLATE "C" NOT NULL,
    credential_hash TEXT COLLATE "C" NOT NULL UNIQUE,
    enrolled_at TEXT COLLATE "C" NOT NULL,
    last_seen TEXT COLLATE "C",
    inventory TEXT COLLATE "C",
    facts TEXT COLLATE "C",
    facts_at TEXT COLLATE "C",
    inventory_zstd BYTEA,
    inventory_sha256 TEXT COLLATE "C",
    public_key TEXT COLLATE "C",
    last_sequence BIGINT NOT NULL DEFAULT 0,
    last_signed_at TEXT COLLATE "C",
    agent_error TEXT COLLATE "C",
    agent_error_at TEXT COLLATE "C",
    repair_requested_at TEXT COLLATE "C",
    repair_allow_apt BIGINT NOT NULL DEFAULT 0,
    repair_sent_at TEXT COLLATE "C",
    membership_facts TEXT COLLATE "C",
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE host_groups (
    tenant_id TEXT COLLATE "C" NOT NULL,
    host_id TEXT COLLATE "C" NOT NULL,
    group_id TEXT COLLATE "C" NOT NULL,
    by_rule BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, host_id, group_id),
    FOREIGN KEY (tenant_id, host_id) REFERENCES hosts(tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, group_id) REFERENCES groups(tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX host_groups_by_group ON host_groups (tenant_id, group_id);
CREATE TABLE approvals (
    tenant_id TEXT COLLATE "C" NOT NULL,
    update_id TEXT COLLATE "C" NOT NULL,
    group_id TEXT COLLATE "C" NOT NULL,
    decision TEXT COLLATE "C" NOT NULL,
    deadline TEXT COLLATE "C",
    decided_at TEXT COLLATE "C" NOT NULL,
    decided_by TEXT COLLATE "C" NOT NULL,
    reason TEXT COLLATE "C",
    emergency BIGINT NOT NULL DEFAULT 0,
    remove BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, update_id, group_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES groups(tenant_id, id) ON DELETE CASCADE
);
CREATE TABLE host_states (
    tenant_id TEXT COLLATE "C" NOT NULL,
    host_id TEXT COLLATE "C" NOT NULL,
    update_id TEXT COLLATE "C" NOT NULL,
    state TEXT COLLATE "C" NOT NULL,
    message TEXT COLLATE "C",
    at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, host_id, update_id),
    FOREIGN KEY (tenant_id, host_id) REFERENCES hosts(tenant_id, id) ON DELETE CASCADE
);
-- The catalog is the publisher's, shared by every tenant; it is replaced whole.
CREATE TABLE catalog_status (
    k BIGINT PRIMARY KEY CHECK (k = 1),
    status TEXT COLLATE "C" NOT NULL
);
CREATE TABLE catalog_updates (
    id TEXT COLLATE "C" PRIMARY KEY,
    doc TEXT COLLATE "C" NOT NULL
);
CREATE TABLE catalog_targets (
    name TEXT COLLATE "C" PRIMARY KEY,
    length BIGINT NOT NULL,
    sha256 TEXT COLLATE "C" NOT NULL,
    release_counter BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE catalog_metadata (
    name TEXT COLLATE "C" PRIMARY KEY,
    bytes BYTEA NOT NULL
);
-- Credentials of removed hosts, so that their agents are told why they get a 401.
CREATE TABLE removed_hosts (
    credential_hash TEXT COLLATE "C" PRIMARY KEY,
    tenant_id TEXT COLLATE "C" NOT NULL,
    host_id TEXT COLLATE "C" NOT NULL,
    removed_at TEXT COLLATE "C" NOT NULL
);
-- Every change an operator makes. No foreign keys: entries outlive what they name.
CREATE TABLE operator_log (
    seq BIGSERIAL PRIMARY KEY,
    at TEXT COLLATE "C" NOT NULL,
    at_ms BIGINT NOT NULL,
    tenant_id TEXT COLLATE "C",
    actor TEXT COLLATE "C" NOT NULL,
    actor_id TEXT COLLATE "C" NOT NULL,
    source TEXT COLLATE "C" NOT NULL,
    action TEXT COLLATE "C" NOT NULL,
    object TEXT COLLATE "C" NOT NULL,
    detail TEXT COLLATE "C" NOT NULL
);
CREATE INDEX operator_log_tenant ON operator_log (tenant_id, seq);
CREATE INDEX operator_log_at ON operator_log (at_ms);
CREATE FUNCTION operator_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the operator log is append-only';
END;
$$;
CREATE TRIGGER operator_log_no_change BEFORE UPDATE OR DELETE ON operator_log
    FOR EACH ROW EXECUTE FUNCTION operator_log_append_only();
-- TRUNCATE skips row triggers: refuse it too.
CREATE TRIGGER operator_log_no_truncate BEFORE TRUNCATE ON operator_log
    FOR EACH STATEMENT EXECUTE FUNCTION operator_log_append_only();
-- One row the server rewrites to learn whether it can commit.
CREATE TABLE storage_probe (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    at TEXT COLLATE "C" NOT NULL
);
-- State read model: the current state per host and update, and the append-only history.
CREATE TABLE host_update_state (
    tenant_id TEXT COLLATE "C" NOT NULL,
    host_id TEXT COLLATE "C" NOT NULL,
    update_id TEXT COLLATE "C" NOT NULL,
    state TEXT COLLATE "C" NOT NULL,
    message TEXT COLLATE "C",
    since TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, host_id, update_id)
);
CREATE INDEX host_update_state_by_update ON host_update_state (tenant_id, update_id);
CREATE TABLE state_history (
    seq BIGSERIAL PRIMARY KEY,
    tenant_id TEXT COLLATE "C" NOT NULL,
    host_id TEXT COLLATE "C" NOT NULL,
    update_id TEXT COLLATE "C" NOT NULL,
    state TEXT COLLATE "C" NOT NULL,
    previous TEXT COLLATE "C",
    message TEXT COLLATE "C",
    at TEXT COLLATE "C" NOT NULL
);
CREATE INDEX state_history_by_host ON state_history (tenant_id, host_id, seq);
CREATE INDEX state_history_by_update ON state_history (tenant_id, update_id, seq);
CREATE FUNCTION state_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'state history is append-only';
END;
$$;
CREATE TRIGGER state_history_append_only_update BEFORE UPDATE ON state_history
    FOR EACH ROW EXECUTE FUNCTION state_history_append_only();
-- When each update first appeared in a pushed catalog.
CREATE TABLE update_published (
    update_id TEXT COLLATE "C" PRIMARY KEY,
    at TEXT COLLATE "C" NOT NULL
);
-- Rings in order, halted rollouts, and the hosts each wave of a ring has admitted.
CREATE TABLE rings (
    tenant_id TEXT COLLATE "C" NOT NULL,
    position BIGINT NOT NULL,
    group_id TEXT COLLATE "C" NOT NULL,
    spec TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, position)
);
CREATE TABLE rollout_halts (
    update_id TEXT COLLATE "C" PRIMARY KEY,
    reason TEXT COLLATE "C" NOT NULL,
    at TEXT COLLATE "C" NOT NULL,
    halted_by TEXT COLLATE "C" NOT NULL,
    resumed_at TEXT COLLATE "C"
);
CREATE TABLE rollout_waves (
    tenant_id TEXT COLLATE "C" NOT NULL,
    update_id TEXT COLLATE "C" NOT NULL,
    group_id TEXT COLLATE "C" NOT NULL,
    host_id TEXT COLLATE "C" NOT NULL,
    admitted_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, update_id, group_id, host_id)
);
CREATE INDEX rollout_waves_by_host ON rollout_waves (tenant_id, host_id);
-- Groups joined by rules on host facts, numbered per tenant and never reused.
CREATE TABLE group_rules (
    tenant_id TEXT COLLATE "C" NOT NULL,
    id BIGINT NOT NULL,
    group_id TEXT COLLATE "C" NOT NULL,
    spec TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES groups(tenant_id, id) ON DELETE CASCADE
);
-- Payloads the cleanup task evicted from the content store.
CREATE TABLE payload_evictions (
    sha256 TEXT COLLATE "C" PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL,
    length BIGINT NOT NULL,
    evicted_at TEXT COLLATE "C" NOT NULL,
    reason TEXT COLLATE "C" NOT NULL
);
-- Operator console sessions (server-side, so every replica knows them).
CREATE TABLE console_sessions (
    id_hash TEXT COLLATE "C" PRIMARY KEY,
    token_hash TEXT COLLATE "C" NOT NULL,
    csrf TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    expires_unix BIGINT NOT NULL
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_unix);
-- The notification outbox and its delivery log.
CREATE TABLE notification_outbox (
    id BIGSERIAL PRIMARY KEY,
    event_key TEXT COLLATE "C" NOT NULL UNIQUE,
    tenant_id TEXT COLLATE "C",
    event TEXT COLLATE "C" NOT NULL,
    subject TEXT COLLATE "C" NOT NULL,
    body TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL
);
CREATE TABLE notification_deliveries (
    id BIGSERIAL PRIMARY KEY,
    outbox_id BIGINT NOT NULL REFERENCES notification_outbox(id) ON DELETE CASCADE,
    target TEXT COLLATE "C" NOT NULL,
    -- pending, delivered or failed (given up after the last try)
    status TEXT COLLATE "C" NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at TEXT COLLATE "C" NOT NULL,
    UNIQUE (outbox_id, target)
);
CREATE INDEX notification_deliveries_due ON notification_deliveries (status, next_at);
CREATE TABLE notification_attempts (
    id BIGSERIAL PRIMARY KEY,
    delivery_id BIGINT NOT NULL REFERENCES notification_deliveries(id) ON DELETE CASCADE,
    attempt BIGINT NOT NULL,
    at TEXT COLLATE "C" NOT NULL,
    ok BOOLEAN NOT NULL,
    detail TEXT COLLATE "C" NOT NULL
);
CREATE INDEX notification_attempts_delivery ON notification_attempts (delivery_id);
