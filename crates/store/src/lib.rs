//! Storage traits for the Patchday server.
//!
//! Owns: what the server persists and how it is scoped. Every tenant-owned row is
//! reached through a [`TenantStore`], which a backend builds for exactly one tenant;
//! no tenant method takes a tenant id, so a handler cannot forget the scope.
//! Must not touch: HTTP, authorisation decisions (the server makes them), payload
//! bytes (those live in `patchday-content`).
//!
//! [`conformance`] is one behavioural suite that every backend runs.

pub mod conformance;

use async_trait::async_trait;
use jiff::Timestamp;
use patchday_types::api::{
    Approval, CatalogStatus, Group, PatchDayConfig, Role, StateReport, Tenant,
};
use patchday_types::{GroupId, HostId, Inventory, TenantId, UpdateDocument, UpdateId};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist in this scope.
    #[error("{0} not found")]
    NotFound(String),
    /// The object exists already.
    #[error("{0} already exists")]
    Conflict(String),
    /// The database failed; the message says how.
    #[error("database error: {0}")]
    Backend(String),
    /// Stored data could not be decoded (a bug or a hand-edited database).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Issue 8, finding 11: nothing can be committed now (disk full); nothing changed.
    #[error("storage cannot write: {0}")]
    StorageFull(String),
}

/// Result alias for storage calls.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Hashes a secret (token or credential) for storage. Secrets are 256-bit random
/// values, so a plain SHA-256 is enough: there is nothing to brute-force.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// An operator token as stored (hash only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// SHA-256 of the secret.
    pub hash: String,
    /// Label.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Tenant for tenant-bound roles.
    pub tenant: Option<TenantId>,
    /// When it was made.
    pub created_at: Timestamp,
}

/// A host as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostRecord {
    /// Id.
    pub id: HostId,
    /// Reported name.
    pub hostname: String,
    /// Groups.
    pub groups: Vec<GroupId>,
    /// Enrolment time.
    pub enrolled_at: Timestamp,
    /// Last check-in.
    pub last_seen: Option<Timestamp>,
}

/// A reported per-update state with its time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredState {
    /// The report.
    pub report: StateReport,
    /// When the server received it.
    pub at: Timestamp,
}

/// A payload as the catalog lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogTarget {
    /// TUF target name.
    pub name: String,
    /// Length in bytes.
    pub length: u64,
    /// Hex SHA-256, also its key in the content store.
    pub sha256: String,
    /// The signed Uptane release counter (0 when none), copied into assignments.
    pub release_counter: u64,
}

/// A verified catalog, replaced as a whole.
#[derive(Clone, Debug, Default)]
pub struct CatalogRecord {
    /// Versions and counts.
    pub status: CatalogStatus,
    /// Update documents.
    pub updates: Vec<UpdateDocument>,
    /// Every target (documents and payloads).
    pub targets: Vec<CatalogTarget>,
    /// TUF metadata files by name, as served to agents.
    pub metadata: Vec<(String, Vec<u8>)>,
}

/// Provider-wide storage: tenants, credentials and the catalog.
#[async_trait]
pub trait Store: Send + Sync {
    /// Opens the storage of one tenant; fails with `NotFound` when it does not exist.
    async fn tenant(&self, id: &TenantId) -> Result<Arc<dyn TenantStore>>;
    /// Creates a tenant.
    async fn create_tenant(&self, tenant: &Tenant, now: Timestamp) -> Result<()>;
    /// Lists all tenants.
    async fn list_tenants(&self) -> Result<Vec<Tenant>>;

    /// Stores an operator token.
    async fn put_token(&self, token: &TokenRecord) -> Result<()>;
    /// Finds an operator token by the hash of its secret.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>>;
    /// Whether any provider-admin token exists (first start).
    async fn has_provider_admin(&self) -> Result<bool>;

    /// Finds the tenant of an enrolment token.
    async fn enroll_token_tenant(&self, hash: &str) -> Result<Option<TenantId>>;
    /// Finds a host by the hash of its credential.
    async fn host_by_credential(&self, hash: &str) -> Result<Option<(TenantId, HostId)>>;

    /// Replaces the catalog atomically.
    async fn replace_catalog(&self, catalog: &CatalogRecord) -> Result<()>;
    /// Catalog versions and counts.
    async fn catalog_status(&self) -> Result<CatalogStatus>;
    /// All update documents.
    async fn catalog_updates(&self) -> Result<Vec<UpdateDocument>>;
    /// One TUF metadata file.
    async fn catalog_metadata(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// One target by name.
    async fn catalog_target(&self, name: &str) -> Result<Option<CatalogTarget>>;
    /// The listed targets among `names`, in one query (names the catalog does not list
    /// are left out; order is unspecified).
    async fn catalog_targets(&self, names: &[String]) -> Result<Vec<CatalogTarget>>;
    /// Replaces some metadata files (a re-signed timestamp, or snapshot and timestamp)
    /// and the status, atomically, leaving updates and targets as they are.
    async fn refresh_catalog_metadata(
        &self,
        status: &CatalogStatus,
        metadata: &[(String, Vec<u8>)],
    ) -> Result<()>;

    // Issue 8, finding 11 (server-hardening).
    /// Commits a tiny write, to learn whether the database can store anything now
    /// ([`StoreError::StorageFull`] when it cannot).
    async fn probe_write(&self, now: Timestamp) -> Result<()>;
}

/// Everything that belongs to one tenant. Built by [`Store::tenant`]; every method
/// touches that tenant's rows only.
#[async_trait]
pub trait TenantStore: Send + Sync {
    /// The tenant this handle is bound to.
    fn id(&self) -> &TenantId;
    /// The tenant's settings.
    async fn get(&self) -> Result<Tenant>;
    /// Changes the patch-day rule.
    async fn set_patch_day(&self, patch_day: &PatchDayConfig) -> Result<()>;

    /// Stores an enrolment token hash.
    async fn add_enroll_token(&self, hash: &str, now: Timestamp) -> Result<()>;

    /// Creates a group.
    async fn create_group(&self, group: &Group) -> Result<()>;
    /// Lists groups.
    async fn list_groups(&self) -> Result<Vec<Group>>;

    /// Creates a host with the hash of its credential.
    async fn create_host(
        &self,
        id: &HostId,
        hostname: &str,
        credential_hash: &str,
        now: Timestamp,
    ) -> Result<()>;
    /// One host.
    async fn host(&self, id: &HostId) -> Result<HostRecord>;
    /// All hosts.
    async fn list_hosts(&self) -> Result<Vec<HostRecord>>;
    /// Replaces a host's groups (each must exist).
    async fn set_host_groups(&self, id: &HostId, groups: &[GroupId]) -> Result<()>;

    /// Stores a host's latest inventory and marks it seen.
    async fn save_inventory(
        &self,
        id: &HostId,
        inventory: &Inventory,
        now: Timestamp,
    ) -> Result<()>;
    /// A host's latest inventory.
    async fn inventory(&self, id: &HostId) -> Result<Option<Inventory>>;

    /// Records (or replaces) a decision for (update, group).
    async fn put_approval(&self, approval: &Approval) -> Result<()>;
    /// All decisions.
    async fn list_approvals(&self) -> Result<Vec<Approval>>;

    /// Stores the audit facts a host reported (JSON owned by `patchday-audit`).
    async fn save_facts(&self, id: &HostId, facts_json: &str, now: Timestamp) -> Result<()>;
    /// A host's latest audit facts and when they arrived.
    async fn facts(&self, id: &HostId) -> Result<Option<(String, Timestamp)>>;

    /// Records the agent's latest state per update.
    async fn put_states(&self, id: &HostId, states: &[StateReport], now: Timestamp) -> Result<()>;
    /// The agent's latest state per update for a host.
    async fn states(&self, id: &HostId) -> Result<Vec<StoredState>>;
}

/// Looks up an update by id in a list of documents.
pub fn find_update<'a>(updates: &'a [UpdateDocument], id: &UpdateId) -> Option<&'a UpdateDocument> {
    updates.iter().find(|u| &u.id == id)
}
