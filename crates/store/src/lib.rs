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
pub mod fleet_pages;
pub mod sql_rows;

use async_trait::async_trait;
use jiff::Timestamp;
pub use patchday_types::api::HistoryEntry;
use patchday_types::api::{
    Approval, CatalogStatus, EnrollTokenInfo, Group, GroupRule, GroupRuleInfo, LogEntry,
    MembershipChange, MembershipFacts, PatchDayConfig, Role, StateReport, Tenant, TokenInfo,
};
use patchday_types::{GroupId, HostId, Inventory, TenantId, UpdateDocument, UpdateId};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// A storage failure.
#[derive(Clone, Debug, thiserror::Error)]
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
    /// A rule refuses the change (finding 3/4 of issue 8: a tenant that still has hosts,
    /// a full host quota); the message says which rule and what to do.
    #[error("{0}")]
    Refused(String),
    /// Issue 8, finding 11: nothing can be committed now (disk full); nothing changed.
    #[error("storage cannot write: {0}")]
    StorageFull(String),
    /// Issue 12, point 2: a failure that may pass when the same work is tried again (a
    /// serialization failure or deadlock between replicas, a lost database connection, no
    /// free connection in time). The server answers 503 with `Retry-After`.
    #[error("storage temporarily unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Whether trying the same work again may succeed ([`StoreError::Unavailable`]);
    /// every other failure is fatal for this request.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
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
    /// The agent's digest of the audit facts the server holds for it (issue 12, point 7).
    pub facts_sha256: Option<String>,
}

/// One host as a fleet view reads it ([`TenantStore::fleet`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetHost {
    /// The host.
    pub host: HostRecord,
    /// What it signed and its agent's last error.
    pub signing: HostSigning,
    /// Marks of its reported states and stored inventory.
    pub marks: HostMarks,
    /// Its stored evaluation, if any.
    pub verdict: Option<StoredVerdict>,
}

/// What [`TenantStore::host_marks`] reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MarksAtCheckin {
    /// The tenant's decisions mark ([`TenantStore::decisions_mark`]).
    pub decisions: i64,
    /// The host's marks.
    pub host: HostMarks,
    /// The basis of its stored evaluation, if it has one.
    pub basis: Option<String>,
}

/// Issue 10, point 8: how a state report carries a host's kept evaluation forward
/// ([`TenantStore::report_on_kept`]): the states it changes, for the history, and the
/// evaluation to keep once the report is stored.
pub struct CarriedForward {
    /// The host's new states for the updates the report is about (recorded in the
    /// history where they changed, as [`TenantStore::record_host_states`] records them).
    pub history: Vec<StateReport>,
    /// The evaluation to keep, from the host's marks as they stand after the report's
    /// states were stored (`None`: keep none).
    pub keep: KeepEvaluation,
}

/// [`CarriedForward::keep`]: the evaluation to keep, from the host's marks after the report.
pub type KeepEvaluation = Box<dyn FnOnce(&MarksAtCheckin) -> Option<StoredVerdict> + Send>;

/// What [`TenantStore::report_on_kept`] asks of the caller: from the host's marks and its
/// kept evaluation's body, read in the report's transaction before anything is written,
/// how the report carries the evaluation forward, or `None` when it cannot (the kept
/// evaluation is not the host's current one, or the report changes more than it says).
pub type CarryForward<'a> =
    dyn Fn(&MarksAtCheckin, Option<&str>) -> Option<CarriedForward> + Sync + 'a;

/// Marks of what one host's evaluation depends on in the store beyond the catalog and
/// the tenant's decisions ([`TenantStore::decisions_mark`]) (issue 11): an evaluation
/// kept with the marks read before its data was read is known to be old once a mark
/// moves. They are conservative: a write that changes nothing may still move one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostMarks {
    /// Its reported states (update, state, time of each): it changes with every report.
    pub states: String,
    /// Its stored inventory: the inventory's digest (or, for an inventory stored before
    /// digests, its check-in time); empty before its first check-in.
    pub inventory: String,
}

/// A host's evaluation as the server keeps it: the basis it was computed from and the
/// body (the server's own format; the store does not read it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredVerdict {
    /// The host.
    pub host: HostId,
    /// What the evaluation depended on, as the server fingerprints it.
    pub basis: String,
    /// The evaluation.
    pub body: String,
    /// What the fleet's counting pages read of it (the server's format, small: the
    /// console's overview reads this, not `body`).
    pub summary: String,
}

/// One host as a counting view reads it ([`TenantStore::fleet_summaries`]): the summary
/// of its kept evaluation, not the whole of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetSummary {
    /// The host.
    pub host: HostRecord,
    /// Its agent's last run error, with when it came (as [`HostSigning::agent_error`]).
    pub agent_error: Option<(String, Timestamp)>,
    /// Marks of its reported states and stored inventory.
    pub marks: HostMarks,
    /// The basis and summary of its kept evaluation, if it has one.
    pub kept: Option<KeptSummary>,
}

/// A kept evaluation's basis and summary ([`StoredVerdict::summary`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptSummary {
    /// What the evaluation depended on.
    pub basis: String,
    /// Its summary.
    pub summary: String,
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
    /// The server's trusted TUF client state once this catalog verified (issue 12,
    /// point 1): replaced in the same transaction as the rows above.
    pub trusted: Vec<(String, Vec<u8>)>,
    /// Issue 12, point 1: the scheduled mirror's progress after the run that made this
    /// catalog (the server's encoding), stored in the same transaction; `None` leaves the
    /// stored progress as it is (a push).
    pub mirror_progress: Option<Vec<u8>>,
    /// Issue 12, point 1: the snapshot version of the stored catalog this one was signed
    /// onto (a scheduled mirror run builds its working catalog from the store): the
    /// replacement is `Conflict` unless that is still the stored catalog's, so a run never
    /// replaces a catalog pushed (or mirrored by another replica) meanwhile. `None`: no
    /// such condition (a push, verified against the trusted state instead).
    pub based_on_snapshot: Option<u64>,
}

/// The director key's certificate as agents receive it (issue 12, point 1): one row
/// every replica reads, so a certificate installed through one is served by all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectorCertificate {
    /// The certificate's version (raised by every rotation).
    pub version: u64,
    /// The key id it certifies.
    pub keyid: String,
    /// The signed certificate (JSON), verbatim.
    pub bytes: Vec<u8>,
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

    /// Takes or renews the lease `name` for `holder` until `until`, when it is free,
    /// expired at `now`, or already `holder`'s; true when `holder` holds it afterwards.
    /// Issue 12, point 5: each kind of background work runs on one replica at a time.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool>;

    // ---- Issue 12, point 5: push across replicas ----

    /// Raises each scope's push generation to the larger of one above its stored value
    /// (0 when none) and the `at_least` given with it, in one transaction that announces
    /// the new values to every replica listening ([`Store::push_announcements`]) when it
    /// commits; returns the stored values. A scope named twice is raised once.
    async fn raise_push_generations(
        &self,
        raises: &[(PushScope, u64)],
    ) -> Result<Vec<(PushScope, u64)>>;
    /// Every stored push generation (a scope never raised is absent: 0).
    async fn push_generations(&self) -> Result<Vec<(PushScope, u64)>>;
    /// Other replicas' raises as they commit, or `None` where no other process shares
    /// the database (SQLite: one server per file), so there is nothing to listen to.
    async fn push_announcements(&self) -> Result<Option<Box<dyn PushAnnouncements>>>;

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
    /// Every TUF metadata file of the stored catalog (name, bytes), ordered by name:
    /// what a catalog directory's `metadata/` holds (issue 12, point 1: the scheduled
    /// mirror builds its working catalog from it on whichever replica runs it).
    async fn catalog_metadata_files(&self) -> Result<Vec<(String, Vec<u8>)>>;
    /// One target by name.
    async fn catalog_target(&self, name: &str) -> Result<Option<CatalogTarget>>;
    /// The listed targets among `names`, in one query (names the catalog does not list
    /// are left out; order is unspecified).
    async fn catalog_targets(&self, names: &[String]) -> Result<Vec<CatalogTarget>>;
    /// Replaces some metadata files (a re-signed timestamp, or snapshot and timestamp)
    /// and the status, atomically, leaving updates and targets as they are; `trusted`
    /// replaces those files of the trusted client state in the same transaction.
    async fn refresh_catalog_metadata(
        &self,
        status: &CatalogStatus,
        metadata: &[(String, Vec<u8>)],
        trusted: &[(String, Vec<u8>)],
    ) -> Result<()>;

    // ---- Issue 12, point 1: the server's trust in the catalog, in the store ----

    /// The pinned catalog root, if one is pinned.
    async fn pinned_root(&self) -> Result<Option<Vec<u8>>>;
    /// Pins `root` when none is pinned; the same root again is fine; another one is
    /// `Refused` (a root changes only by a rotation pushed as a catalog).
    async fn pin_root(&self, root: &[u8]) -> Result<()>;
    /// The trusted TUF client state (file name, bytes), empty before the first push.
    async fn trusted_metadata(&self) -> Result<Vec<(String, Vec<u8>)>>;
    /// Takes a trusted state kept in files by an older server, only while the store holds
    /// none; true when it was taken.
    async fn adopt_trusted_metadata(&self, trusted: &[(String, Vec<u8>)]) -> Result<bool>;
    /// The director key's current certificate, if one was installed.
    async fn director_certificate(&self) -> Result<Option<DirectorCertificate>>;
    /// Installs a certificate (the caller verified it) with its operator log entry, in one
    /// transaction, when its version is above the stored one; true when stored. The same
    /// certificate again is `false` (nothing changes); another one at or below the stored
    /// version is `Conflict` (two rotations raced, or an old certificate came back).
    async fn put_director_certificate(
        &self,
        certificate: &DirectorCertificate,
        log: &LogEntry,
    ) -> Result<bool>;
    /// The scheduled mirror's progress (the server's encoding), if a run saved any.
    async fn mirror_progress(&self) -> Result<Option<Vec<u8>>>;
    /// Replaces the scheduled mirror's progress.
    async fn put_mirror_progress(&self, progress: &[u8]) -> Result<()>;

    // ---- Finding 3 (issue 8): operator tokens expire and are revoked ----

    /// Stores an operator token with the secret's first characters and an optional
    /// expiry, and its log entry, in one transaction.
    async fn create_token(
        &self,
        token: &TokenRecord,
        prefix: &str,
        expires_at: Option<Timestamp>,
        log: &LogEntry,
    ) -> Result<()>;
    /// An operator token by the hash of its secret, revoked and expired ones included
    /// (the caller tells them apart, with its `now`).
    async fn token_info_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>>;
    /// An operator token by its listed id.
    async fn token_info(&self, id: &str) -> Result<Option<TokenInfo>>;
    /// Operator tokens, of one tenant or (with `None`) all of them.
    async fn list_tokens(&self, tenant: Option<&TenantId>) -> Result<Vec<TokenInfo>>;
    /// Revokes an operator token by id (`NotFound` when unknown), with its log entry.
    async fn revoke_token(&self, id: &str, now: Timestamp, log: &LogEntry) -> Result<TokenInfo>;

    /// Takes one use of an enrolment token, atomically, or says why it cannot be used
    /// (a full host quota included, so that a refused enrolment takes no use; the host
    /// insert checks the quota again).
    async fn redeem_enroll_token(&self, hash: &str, now: Timestamp) -> Result<EnrollGrant>;
    /// The host a credential belonged to before the host was removed.
    async fn removed_host_by_credential(&self, hash: &str) -> Result<Option<RemovedHost>>;
    /// Removes a tenant with its groups, tokens and approvals, and its log entry.
    /// Refused (`Refused`) while it has hosts unless `force`, which removes them too.
    /// Returns how many hosts were removed.
    async fn remove_tenant(
        &self,
        id: &TenantId,
        force: bool,
        now: Timestamp,
        log: &LogEntry,
    ) -> Result<u64>;

    // ---- Finding 10 (issue 8): the operator log, append-only ----

    /// [`Store::create_tenant`] with its operator log entry, in one transaction.
    async fn create_tenant_logged(
        &self,
        tenant: &Tenant,
        now: Timestamp,
        log: &LogEntry,
    ) -> Result<()>;
    /// Appends an entry; returns its sequence number. There is no update or delete.
    async fn append_log(&self, entry: &LogEntry) -> Result<u64>;
    /// Entries in `scope` at or after `since`, oldest first, at most `limit`.
    async fn list_log(
        &self,
        scope: &LogScope,
        since: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<LogEntry>>;
    // Issue 8, finding 11 (server-hardening).
    /// Commits a tiny write, to learn whether the database can store anything now
    /// ([`StoreError::StorageFull`] when it cannot).
    async fn probe_write(&self, now: Timestamp) -> Result<()>;

    // ---- Issue 10, point 1: state history ----

    /// Records `now` as the publication time of each update not seen before (the first
    /// push that carried it); known updates keep their first time.
    async fn note_published(&self, updates: &[UpdateId], now: Timestamp) -> Result<()>;
    /// Publication times of these updates (those known).
    async fn published_at(&self, updates: &[UpdateId]) -> Result<Vec<(UpdateId, Timestamp)>>;

    // ---- Issue 10, point 3 (rings): halted rollouts, for every tenant ----

    /// Halts the rollout of an update (no further ring, no host not yet started), with
    /// its log entry when an operator does it. False when it was halted already.
    async fn halt_rollout(
        &self,
        halt: &patchday_types::api::RolloutHalt,
        log: Option<&LogEntry>,
    ) -> Result<bool>;
    /// Resumes a halted rollout at `now`, with its log entry. False when it was not halted.
    async fn resume_rollout(
        &self,
        update: &UpdateId,
        now: Timestamp,
        log: &LogEntry,
    ) -> Result<bool>;
    /// Every rollout ever halted, resumed ones with `resumed_at`.
    async fn rollout_halts(&self) -> Result<Vec<patchday_types::api::RolloutHalt>>;

    // ---- Issue 10, point 7 (cleanup): payloads evicted from the content store ----

    /// Records payloads the cleanup evicted (one already recorded keeps its first
    /// record), with one operator log entry, in one transaction.
    async fn record_evictions(&self, evictions: &[PayloadEviction], log: &LogEntry) -> Result<()>;
    /// Every evicted payload, by sha256.
    async fn evictions(&self) -> Result<Vec<PayloadEviction>>;
    /// The eviction of one payload (by sha256), if it was evicted.
    async fn eviction(&self, sha256: &str) -> Result<Option<PayloadEviction>>;
    /// The sha256 of every target the current catalog lists (documents and payloads): a
    /// stored blob outside it is left over from an older catalog.
    async fn catalog_digests(&self) -> Result<std::collections::BTreeSet<String>>;
    /// Forgets evictions (a payload is needed again: the next push uploads it), with one
    /// operator log entry; returns how many were forgotten.
    async fn forget_evictions(&self, sha256: &[String], log: &LogEntry) -> Result<u64>;

    // ---- Issue 11, point 5: notifications (outbox and delivery log) ----

    /// Enqueues an event with one pending delivery per target, due at the event's time.
    /// False, and nothing changes, when an event with the same key was enqueued before
    /// (each event is announced once).
    async fn enqueue_notification(&self, event: &OutboxEvent, targets: &[String]) -> Result<bool>;
    /// Pending deliveries due at `now`, oldest first, at most `limit`.
    async fn due_deliveries(&self, now: Timestamp, limit: u32) -> Result<Vec<DueDelivery>>;
    /// Records one try at a delivery and where it stands after it (delivered, pending
    /// again at a later time, or given up).
    async fn record_delivery(
        &self,
        delivery: u64,
        attempt: &patchday_types::notify::DeliveryAttempt,
        status: patchday_types::notify::DeliveryStatus,
        next_at: Timestamp,
    ) -> Result<()>;
    /// The delivery log, newest event first, at most `limit` deliveries: one tenant's
    /// events (`Some`) or every event (`None`).
    async fn notification_log(
        &self,
        tenant: Option<&TenantId>,
        limit: u32,
    ) -> Result<Vec<patchday_types::notify::NotificationDelivery>>;

    // ---- Issue 11, point 1: operator console sessions ----

    /// Opens a console session, and forgets sessions that expired before `session.created_at`.
    async fn create_console_session(&self, session: &ConsoleSession) -> Result<()>;
    /// The session whose id hashes to `id_hash`, if it exists and has not expired at `now`.
    async fn console_session(
        &self,
        id_hash: &str,
        now: Timestamp,
    ) -> Result<Option<ConsoleSession>>;
    /// Ends a session (logout); ending an unknown one is not an error.
    async fn end_console_session(&self, id_hash: &str) -> Result<()>;
}

/// An operator console session (issue 11, point 1), kept server-side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleSession {
    /// [`hash_secret`] of the random id in the session cookie.
    pub id_hash: String,
    /// [`hash_secret`] of the operator token the session was opened with.
    pub token_hash: String,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
    /// When it was opened.
    pub created_at: Timestamp,
    /// When it ends (whole seconds).
    pub expires_at: Timestamp,
}

/// An event for the notification outbox (issue 11, point 5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Deduplication key: the same key is enqueued once.
    pub key: String,
    /// The tenant it is about; `None` for the whole server.
    pub tenant: Option<TenantId>,
    /// What happened.
    pub event: patchday_types::notify::NotifyEvent,
    /// One line for people.
    pub subject: String,
    /// The JSON body receivers get.
    pub body: serde_json::Value,
    /// When it happened.
    pub at: Timestamp,
}

/// A delivery that is due (issue 11, point 5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueDelivery {
    /// Its id, for [`Store::record_delivery`].
    pub id: u64,
    /// The target's name.
    pub target: String,
    /// Tries made so far.
    pub attempts: u32,
    /// The event.
    pub event: OutboxEvent,
}

/// A payload evicted from the content store (issue 10, point 7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadEviction {
    /// Hex SHA-256, its key in the content store.
    pub sha256: String,
    /// Its TUF target name when it was evicted.
    pub name: String,
    /// Its length in bytes (what the eviction freed).
    pub length: u64,
    /// When it was evicted.
    pub evicted_at: Timestamp,
    /// Why no host could need it any more.
    pub reason: String,
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
    /// Replaces a host's manual groups (each must exist); memberships a group rule made
    /// stay (issue 10, point 2), unless the list names them, which makes them manual.
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
    /// The decisions about these updates only (issue 9, point 6: a check-in reads the
    /// decisions of the updates that may apply to the host, not of the whole catalog).
    async fn list_approvals_for(&self, updates: &[UpdateId]) -> Result<Vec<Approval>>;

    // Issue 12, point 7: audit facts stored once per distinct content (the parts and
    // digests are `patchday-audit`'s; the store only keeps bytes by digest).
    /// Which of these digests the tenant's facts blobs lack.
    async fn missing_facts_blobs(&self, digests: &[String]) -> Result<Vec<String>>;
    /// Stores a host's facts in one transaction: the blobs given (digest, bytes; ones
    /// already held are kept as they are), then the parts naming them. Blobs that no host
    /// of the tenant names any more are deleted. A part naming a blob the tenant does not
    /// hold is refused (`Refused`), and nothing changes.
    async fn save_facts(
        &self,
        id: &HostId,
        facts: &StoredFacts,
        blobs: &[(String, Vec<u8>)],
    ) -> Result<()>;
    /// A host's latest audit facts.
    async fn facts(&self, id: &HostId) -> Result<Option<StoredFacts>>;
    /// Every host's latest audit facts (the fleet audit), in host id order.
    async fn all_facts(&self) -> Result<Vec<(HostId, StoredFacts)>>;
    /// The blobs with these digests that the tenant holds.
    async fn facts_blobs(&self, digests: &[String]) -> Result<Vec<(String, Vec<u8>)>>;

    /// Records the agent's latest state per update.
    async fn put_states(&self, id: &HostId, states: &[StateReport], now: Timestamp) -> Result<()>;
    /// The agent's latest state per update for a host.
    async fn states(&self, id: &HostId) -> Result<Vec<StoredState>>;

    // ---- Issue 11, point 1: fleet views at 10,000 hosts ----

    /// Every host with what a fleet view needs (groups, signing, last report, stored
    /// verdict), in a bounded number of queries whatever the fleet's size.
    async fn fleet(&self) -> Result<Vec<FleetHost>> {
        self.fleet_page(None, u32::MAX).await
    }
    /// At most `limit` hosts of [`TenantStore::fleet`], those after `after` in host id
    /// order: a view pages through a fleet of any size in bounded memory.
    async fn fleet_page(&self, after: Option<&HostId>, limit: u32) -> Result<Vec<FleetHost>>;
    /// A number the database itself moves (by triggers, so no write path can forget it)
    /// at every change of the tenant's decisions (approvals, declines) and rings.
    async fn decisions_mark(&self) -> Result<i64>;
    /// The tenant's decisions mark and one host's marks, with the basis of its stored
    /// evaluation if it has one, in one query: what a check-in reads before it reads
    /// what it evaluates, to keep its evaluation for the fleet views. `NotFound` for an
    /// unknown host.
    async fn host_marks(&self, id: &HostId) -> Result<MarksAtCheckin>;
    /// [`TenantStore::fleet_page`] for views that count (the console's overview, tenant
    /// and updates pages): each host's kept summary instead of its whole evaluation, and
    /// not what it signed.
    async fn fleet_summaries(
        &self,
        after: Option<&HostId>,
        limit: u32,
    ) -> Result<Vec<FleetSummary>>;
    /// Keeps hosts' evaluations (host, basis, body, summary) for the next fleet view; a
    /// host removed meanwhile is skipped.
    async fn put_verdicts(&self, verdicts: &[StoredVerdict]) -> Result<()>;

    // ---- Finding 3/4 (issue 8): enrolment tokens with limits, removal, host quota ----

    /// Stores an enrolment token with its limits, and its log entry, in one transaction.
    async fn create_enroll_token(&self, token: &NewEnrollToken, log: &LogEntry) -> Result<()>;
    /// The tenant's enrolment tokens (never their secrets).
    async fn list_enroll_tokens(&self) -> Result<Vec<EnrollTokenInfo>>;
    /// Revokes an enrolment token by id (`NotFound` when unknown), with its log entry.
    async fn revoke_enroll_token(
        &self,
        id: &str,
        now: Timestamp,
        log: &LogEntry,
    ) -> Result<EnrollTokenInfo>;
    /// Removes a host, its groups memberships and states; its credential stops working
    /// at once and is remembered as removed. Writes the log entry in the same transaction.
    async fn remove_host(&self, id: &HostId, now: Timestamp, log: &LogEntry) -> Result<()>;
    /// Removes a group, its memberships and its approvals, with its log entry.
    async fn remove_group(&self, id: &GroupId, log: &LogEntry) -> Result<()>;
    /// Sets (or with `None` lifts) the host quota, with its log entry. `create_host`
    /// refuses (`Refused`) a host above it.
    async fn set_max_hosts(&self, max_hosts: Option<u32>, log: &LogEntry) -> Result<()>;

    // ---- Finding 10 (issue 8) ----

    /// [`TenantStore::put_approval`] with its operator log entry, in one transaction.
    async fn put_approval_logged(&self, approval: &Approval, log: &LogEntry) -> Result<()>;
    /// [`TenantStore::create_group`] with its operator log entry, in one transaction.
    async fn create_group_logged(&self, group: &Group, log: &LogEntry) -> Result<()>;
    /// [`TenantStore::set_patch_day`] with its operator log entry, in one transaction.
    async fn set_patch_day_logged(&self, patch_day: &PatchDayConfig, log: &LogEntry) -> Result<()>;
    /// [`TenantStore::set_host_groups`] with its operator log entry, in one transaction.
    async fn set_host_groups_logged(
        &self,
        id: &HostId,
        groups: &[GroupId],
        log: &LogEntry,
    ) -> Result<()>;
    // finding 8/13 (issue 8): host-signed requests and agent errors.
    /// Registers the host's own ed25519 public key (hex), once, at enrolment; a host
    /// that has one already keeps it (`Conflict`).
    async fn set_host_public_key(&self, id: &HostId, public_key: &str) -> Result<()>;
    /// The host's signing key, last accepted sequence number and last agent error.
    async fn host_signing(&self, id: &HostId) -> Result<HostSigning>;
    /// Accepts `sequence` for the host only if it is above the last accepted one, in
    /// one atomic step (two racing requests with one number: one wins).
    async fn advance_sequence(
        &self,
        id: &HostId,
        sequence: u64,
        now: Timestamp,
    ) -> Result<SequenceCheck>;
    /// Records (Some) or clears (None) the error of the agent's last run.
    async fn set_agent_error(&self, id: &HostId, error: Option<&str>, now: Timestamp)
        -> Result<()>;

    // ---- Issue 10, point 1: state history ----

    /// Takes the host's current state per update (as evaluated from its inventory,
    /// decisions and reports) and, in one transaction, appends a history entry for each
    /// update whose state or message changed since the last call, and remembers the new
    /// states. Updates left out keep their last state. Returns the entries appended.
    ///
    /// `verdict`, when given, is the host's evaluation for the fleet views (issue 11),
    /// kept in the same transaction (like [`TenantStore::put_verdicts`]).
    async fn record_host_states(
        &self,
        id: &HostId,
        states: &[StateReport],
        now: Timestamp,
        verdict: Option<&StoredVerdict>,
    ) -> Result<Vec<HistoryEntry>>;
    /// Issue 10, point 8: an agent's state report (downloading, installing...) applied to
    /// the host's kept evaluation instead of a new one, in one transaction: `carry` is
    /// given the host's marks and kept evaluation as they stand in the transaction; when it
    /// carries them forward, the states are stored (as [`TenantStore::put_states`]), its
    /// history recorded and its evaluation kept, and the history entries are returned.
    /// `Ok(None)`, with nothing written, when `carry` cannot: the caller then stores the
    /// report and evaluates the host in full. `NotFound` for an unknown host.
    async fn report_on_kept(
        &self,
        id: &HostId,
        states: &[StateReport],
        now: Timestamp,
        carry: &CarryForward<'_>,
    ) -> Result<Option<Vec<HistoryEntry>>>;
    /// History entries of this tenant, oldest first, for one host and/or one update, at
    /// most `limit`.
    async fn history(
        &self,
        host: Option<&HostId>,
        update: Option<&UpdateId>,
        limit: u32,
    ) -> Result<Vec<HistoryEntry>>;

    // ---- issue 13, point 1: baselines ----

    /// Stores a host's per-baseline reports of one agent run (the latest per baseline
    /// replaces the one before; a report with drift is also appended to the drift
    /// history and counted). Baselines the run did not report keep their last report.
    async fn save_baseline_reports(
        &self,
        id: &HostId,
        reports: &[patchday_types::api::BaselineReport],
        now: Timestamp,
    ) -> Result<()>;
    /// The latest report per host and baseline of this tenant, by hostname and baseline.
    async fn baseline_reports(&self) -> Result<Vec<patchday_types::api::HostBaseline>>;
    /// Drift found on this tenant's hosts, newest first, at most `limit`.
    async fn baseline_drift(
        &self,
        limit: u32,
    ) -> Result<Vec<patchday_types::api::BaselineDriftEvent>>;
    // ---- issue 9, point 4 (closure): server-side repair assignments ----

    /// Asks the host's agent to run the repair `patchday-agent repair` runs (`patchday
    /// host repair`), replacing an earlier request, with its operator log entry.
    async fn request_repair_logged(
        &self,
        id: &HostId,
        allow_apt: bool,
        now: Timestamp,
        log: &LogEntry,
    ) -> Result<()>;
    /// The host's pending repair request, if any.
    async fn repair_request(&self, id: &HostId) -> Result<Option<RepairRequest>>;

    // ---- Issue 14, point 4: the mail attachment filter's verdicts ----

    /// Keeps one verdict the milter reported.
    async fn record_mail_verdict(&self, verdict: &patchday_types::api::MailVerdict) -> Result<()>;
    /// The newest `limit` verdicts, newest first.
    async fn mail_verdicts(&self, limit: u32) -> Result<Vec<patchday_types::api::MailVerdict>>;

    // ---- Issue 14, point 5: the agents' folder scan ----

    /// Keeps the findings host `host` reported, received at `now`.
    async fn record_scan_findings(
        &self,
        host: &HostId,
        findings: &[patchday_types::api::ScanFinding],
        now: Timestamp,
    ) -> Result<()>;
    /// The newest `limit` findings of the tenant's hosts, newest first.
    async fn scan_findings(&self, limit: u32) -> Result<Vec<patchday_types::api::HostScanFinding>>;
    /// Records that a signed check-in answer carried the request (the first time only).
    async fn repair_sent(&self, id: &HostId, now: Timestamp) -> Result<()>;
    /// Clears the request (the host reported a clean dpkg database after it was sent).
    async fn clear_repair(&self, id: &HostId) -> Result<()>;

    // ---- Issue 10, point 5: maintenance windows and reboot policy per group ----

    /// Replaces a group's maintenance windows and reboot policy (the caller validated
    /// them), with its operator log entry; `NotFound` when the group is not there.
    async fn set_group_policy_logged(
        &self,
        group: &GroupId,
        policy: &patchday_types::api::GroupPolicy,
        log: &LogEntry,
    ) -> Result<()>;
    /// Every group's policy (groups never set have no windows and reboot `never`).
    async fn group_policies(
        &self,
    ) -> Result<std::collections::BTreeMap<GroupId, patchday_types::api::GroupPolicy>>;
    // ---- Issue 10, points 2 and 3 (rings) ----

    /// Replaces the tenant's rings (first to last), with the operator log entry.
    async fn set_rings_logged(
        &self,
        rings: &[patchday_types::api::Ring],
        log: &LogEntry,
    ) -> Result<()>;
    /// The tenant's rings, first to last.
    async fn rings(&self) -> Result<Vec<patchday_types::api::Ring>>;
    /// The current state (and since when) of every host of this tenant that has one for
    /// `update` (the state read model, not a re-evaluation).
    async fn update_states(
        &self,
        update: &UpdateId,
    ) -> Result<Vec<(HostId, patchday_types::UpdateState, Timestamp)>>;
    /// Admits hosts of `group` to the waves of `update` (idempotent).
    async fn admit_wave(
        &self,
        update: &UpdateId,
        group: &GroupId,
        hosts: &[HostId],
        now: Timestamp,
    ) -> Result<()>;
    /// The hosts of `group` admitted to the waves of `update`, with when.
    async fn wave_admitted(
        &self,
        update: &UpdateId,
        group: &GroupId,
    ) -> Result<Vec<(HostId, Timestamp)>>;
    /// Of `updates`, those whose waves run in a group of `host` that has not admitted it.
    async fn wave_held(&self, host: &HostId, updates: &[UpdateId]) -> Result<Vec<UpdateId>>;

    // ---- Issue 10, point 2: groups joined by rules on host facts ----

    /// Adds a membership rule to `group` (the caller checked it), with its operator log
    /// entry; `NotFound` when the group is not there. Returns the rule with its new id.
    async fn add_group_rule_logged(
        &self,
        group: &GroupId,
        rule: &GroupRule,
        log: &LogEntry,
    ) -> Result<GroupRuleInfo>;
    /// Removes rule `id` of `group`, with its operator log entry; `NotFound` when the group
    /// has no such rule. The memberships it made stay until the next evaluation.
    async fn remove_group_rule_logged(
        &self,
        group: &GroupId,
        id: u64,
        log: &LogEntry,
    ) -> Result<()>;
    /// Every group rule of the tenant, by id.
    async fn group_rules(&self) -> Result<Vec<GroupRuleInfo>>;
    /// Stores what rules match about a host besides its name (its os-release and labels,
    /// from a check-in); `NotFound` when the host is not there.
    async fn set_membership_facts(&self, id: &HostId, facts: &MembershipFacts) -> Result<()>;
    /// Every host's facts and memberships (the hostname as enrolled; os-release and
    /// labels as last stored, empty before the first check-in), by host id.
    async fn memberships(&self) -> Result<Vec<HostMemberships>>;
    /// One host's facts and memberships (what a check-in re-evaluates); `NotFound` when
    /// the host is not there.
    async fn host_memberships(&self, id: &HostId) -> Result<HostMemberships>;
    /// Applies rule-made membership changes with their operator log entries, in one
    /// transaction: a join adds a rule-made membership unless the host is in the group
    /// already (a manual membership stays manual); a leave removes a rule-made membership
    /// only (a manual one is never removed by a rule). Unknown hosts or groups: `NotFound`.
    async fn apply_membership_changes_logged(
        &self,
        changes: &[MembershipChange],
        logs: &[LogEntry],
    ) -> Result<()>;
}

/// Issue 12, point 5: whose agents a push generation wakes. A host's generation is the
/// sum of [`PushScope::Everyone`]'s and its tenant's.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PushScope {
    /// Every tenant's agents (catalog intake, director rotation, a halt).
    Everyone,
    /// One tenant's agents.
    Tenant(TenantId),
}

impl PushScope {
    /// Its key in the store: `*` for everyone, else the tenant id (which never is `*`:
    /// tenant ids start with a letter or digit).
    pub fn key(&self) -> &str {
        match self {
            PushScope::Everyone => "*",
            PushScope::Tenant(t) => t.as_str(),
        }
    }

    /// The scope of a stored key.
    pub fn from_key(key: &str) -> Result<Self> {
        if key == "*" {
            return Ok(PushScope::Everyone);
        }
        TenantId::new(key)
            .map(PushScope::Tenant)
            .map_err(|e| StoreError::Corrupt(format!("push generation scope {key:?}: {e}")))
    }
}

/// Issue 12, point 5: `raises` with each scope once (its largest `at_least`), in key
/// order, so that two replicas raising overlapping sets lock rows in the same order.
pub fn merge_push_raises(raises: &[(PushScope, u64)]) -> Vec<(PushScope, u64)> {
    let mut merged: std::collections::BTreeMap<&str, (&PushScope, u64)> = Default::default();
    for (scope, at_least) in raises {
        let e = merged.entry(scope.key()).or_insert((scope, 0));
        e.1 = e.1.max(*at_least);
    }
    merged
        .into_values()
        .map(|(scope, at_least)| (scope.clone(), at_least))
        .collect()
}

/// Issue 12, point 5: what a replica hears of the others' push generations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushAnnouncement {
    /// A scope's generation is now (at least) this value.
    Raised(PushScope, u64),
    /// Announcements may have been missed (the listening connection was lost and is
    /// back, or more scopes were raised at once than are announced one by one): read
    /// [`Store::push_generations`] again.
    Resync,
}

/// Issue 12, point 5: a replica's subscription to the others' push raises
/// ([`Store::push_announcements`]).
#[async_trait]
pub trait PushAnnouncements: Send {
    /// The next announcement. The first one after the subscription is made or remade is
    /// [`PushAnnouncement::Resync`]; an error means the subscription is down (the next
    /// call makes it again): back off, then call again.
    async fn next(&mut self) -> Result<PushAnnouncement>;
}

/// One host's facts and group memberships, for the group rules (issue 10, point 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostMemberships {
    /// The host.
    pub host: HostId,
    /// What rules match.
    pub facts: MembershipFacts,
    /// All its groups.
    pub groups: Vec<GroupId>,
    /// Of those, the ones a rule made (the rest are manual).
    pub rule_groups: Vec<GroupId>,
}

/// A pending server-side repair assignment (issue 9, point 4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepairRequest {
    /// When the operator asked.
    pub requested_at: Timestamp,
    /// Whether apt may install or remove packages (`--allow-apt`).
    pub allow_apt: bool,
    /// When a signed check-in answer first carried it.
    pub sent_at: Option<Timestamp>,
}

// finding 8/13 (issue 8): host-signed requests and agent errors.

/// A host's signing state as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostSigning {
    /// ed25519 public key, hex; `None` for hosts enrolled before signed check-ins.
    pub public_key: Option<String>,
    /// The last sequence number accepted (0: none yet).
    pub last_sequence: u64,
    /// When it was accepted.
    pub last_signed_at: Option<Timestamp>,
    /// The agent's last run error and when it was reported.
    pub agent_error: Option<(String, Timestamp)>,
}

/// The outcome of [`TenantStore::advance_sequence`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// The number was above the last one and is now the last one.
    Accepted,
    /// The number was not above `last`: a replay; nothing changed.
    Replayed {
        /// The last accepted sequence number.
        last: u64,
    },
}

// ---- Finding 3/10 (issue 8): types of the lifecycle and log methods ----

/// A new enrolment token as stored (hash only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEnrollToken {
    /// SHA-256 of the secret.
    pub hash: String,
    /// Label.
    pub name: String,
    /// The secret's first characters, for people.
    pub prefix: String,
    /// The group its hosts join.
    pub group: Option<GroupId>,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it stops working (never when absent).
    pub expires_at: Option<Timestamp>,
    /// Use limit (unlimited when absent).
    pub max_uses: Option<u32>,
}

/// The answer to redeeming an enrolment token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnrollGrant {
    /// One use was taken: enrol into this tenant (and group).
    Granted {
        /// The tenant.
        tenant: TenantId,
        /// The group the host joins.
        group: Option<GroupId>,
    },
    /// No such token.
    Unknown,
    /// It expired then.
    Expired {
        /// Its expiry.
        at: Timestamp,
    },
    /// It was revoked then.
    Revoked {
        /// When.
        at: Timestamp,
    },
    /// Every allowed use is taken.
    UsedUp {
        /// Its use limit.
        max_uses: u32,
    },
    /// The group it enrols into was removed.
    GroupRemoved {
        /// That group.
        group: GroupId,
    },
    /// The tenant has as many hosts as its quota allows (no use was taken).
    QuotaFull {
        /// The tenant.
        tenant: TenantId,
        /// Its quota.
        max_hosts: u32,
    },
}

/// A removed host, remembered by its old credential so its agent is told why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemovedHost {
    /// Its tenant.
    pub tenant: TenantId,
    /// Its id.
    pub host: HostId,
    /// When it was removed.
    pub removed_at: Timestamp,
}

/// A host's audit facts as stored (issue 12, point 7): named parts, each the digest of
/// a blob of the tenant's, and the agent's digest of the whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFacts {
    /// The agent's digest of the whole facts (returned to it in check-ins).
    pub sha256: String,
    /// Part name → blob digest.
    pub parts: std::collections::BTreeMap<String, String>,
    /// When they arrived.
    pub at: Timestamp,
}

/// Which entries of the operator log a caller may read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogScope {
    /// Every entry, provider-wide ones included (provider tokens).
    Everything,
    /// One tenant's entries only.
    Tenant(TenantId),
}
