//! API requests, responses and error bodies for `/v1`.

use crate::ids::{GroupId, HostId, TenantId, UpdateId};
use crate::inventory::Inventory;
use crate::update::{Severity, UpdateDocument, UpdateState};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What an operator token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Every tenant, including creating tenants and pushing the catalog.
    ProviderAdmin,
    /// Everything inside one tenant.
    TenantAdmin,
    /// Reads inside one tenant.
    ReadOnly,
}

impl Role {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ProviderAdmin => "provider-admin",
            Role::TenantAdmin => "tenant-admin",
            Role::ReadOnly => "read-only",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "provider-admin" => Ok(Role::ProviderAdmin),
            "tenant-admin" => Ok(Role::TenantAdmin),
            "read-only" => Ok(Role::ReadOnly),
            _ => Err(format!(
                "unknown role {s:?}; expected provider-admin, tenant-admin or read-only"
            )),
        }
    }
}

/// Machine-readable error class; the HTTP status follows from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// No credential, or one the server does not know (401).
    Unauthorized,
    /// The credential may not do this (403).
    Forbidden,
    /// No such object in the caller's scope (404).
    NotFound,
    /// The request is malformed (400).
    BadRequest,
    /// The request conflicts with current state (409).
    Conflict,
    /// A pushed catalog failed verification (422).
    CatalogRejected,
    /// The body is larger than the server accepts (413).
    PayloadTooLarge,
    /// Something broke on the server (500); the log has details.
    Internal,
    // issue 8, finding 8: host-signed requests.
    /// A host's body is unsigned, or its signature does not verify under the key the
    /// host registered at enrolment, or the host has no key (401).
    SignatureRejected,
    /// A host's signed body carries a sequence number not above the last one the
    /// server accepted: a replay (409).
    SequenceReplayed,
    // Issue 8, findings 9, 11 and 14 (server hardening).
    /// Too many failed logins from this address; retry after the `Retry-After` seconds (429).
    TooManyRequests,
    /// The server cannot store anything now (disk full); nothing was changed (507).
    InsufficientStorage,
    /// What was asked for is there but cannot be served now (503).
    Unavailable,
    /// Issue 10, point 7: the payload was evicted because no host can need it (410).
    Gone,
    /// Issue 14, point 1: the host is not compliant, so it gets no access token (403);
    /// the message says why.
    NotCompliant,
}

/// The JSON body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Error class.
    pub error: ErrorCode,
    /// What happened and what to do.
    pub message: String,
}

/// A tenant's patch-day rule, as strings; `patchday-core` parses and checks it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PatchDayConfig {
    /// `first`, `second`, `third`, `fourth` or `last`.
    pub week: String,
    /// `monday` .. `sunday`.
    pub weekday: String,
    /// Local time, `HH:MM`.
    pub time: String,
    /// IANA time zone, for example `Europe/Berlin`.
    pub time_zone: String,
}

impl Default for PatchDayConfig {
    fn default() -> Self {
        Self {
            week: "second".into(),
            weekday: "tuesday".into(),
            time: "10:00".into(),
            time_zone: "UTC".into(),
        }
    }
}

/// A tenant as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tenant {
    /// Id.
    pub id: TenantId,
    /// Display name.
    pub name: String,
    /// Patch-day rule.
    pub patch_day: PatchDayConfig,
    /// Most hosts the tenant may enrol (no limit when absent).
    #[serde(default)]
    pub max_hosts: Option<u32>,
}

/// `POST /v1/tenants`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateTenant {
    /// Id.
    pub id: TenantId,
    /// Display name.
    pub name: String,
    /// Patch-day rule; second Tuesday 10:00 UTC when absent.
    #[serde(default)]
    pub patch_day: Option<PatchDayConfig>,
    /// Most hosts the tenant may enrol (no limit when absent).
    #[serde(default)]
    pub max_hosts: Option<u32>,
}

/// `POST /v1/tokens`: a new operator token.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateToken {
    /// A label for people.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The tenant for tenant-admin and read-only tokens.
    #[serde(default)]
    pub tenant: Option<TenantId>,
    /// When it stops working (never when absent).
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
}

/// A freshly created secret, shown exactly once.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecretCreated {
    /// The secret; only its hash is stored.
    pub secret: String,
    /// Role of an operator token; absent for enrolment tokens.
    #[serde(default)]
    pub role: Option<Role>,
    /// Tenant it is bound to.
    #[serde(default)]
    pub tenant: Option<TenantId>,
}

impl fmt::Debug for SecretCreated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretCreated")
            .field("secret", &"<redacted>")
            .field("role", &self.role)
            .field("tenant", &self.tenant)
            .finish()
    }
}

/// `POST /v1/tenants/{t}/groups`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Group {
    /// Id.
    pub id: GroupId,
    /// Display name.
    pub name: String,
}

/// A host as operators see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostSummary {
    /// Id.
    pub id: HostId,
    /// Reported host name.
    pub hostname: String,
    /// Groups it belongs to.
    pub groups: Vec<GroupId>,
    /// Last check-in.
    pub last_seen: Option<Timestamp>,
    /// Pretty OS name from its last inventory.
    pub os: String,
    /// What the host itself signed, and its agent's last error (findings 8 and 13).
    #[serde(default)]
    pub signed: HostSigned,
    /// Issue 10, point 2: of `groups`, those a group rule made (the rest are manual).
    #[serde(default)]
    pub rule_groups: Vec<GroupId>,
    /// Issue 10, point 2: the labels the host's agent reported.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// `PUT /v1/tenants/{t}/hosts/{h}/groups`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetHostGroups {
    /// The complete new group list.
    pub groups: Vec<GroupId>,
}

/// An operator's decision on an update for a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Install on the group's hosts.
    Approve,
    /// Do not install; hosts report it as declined.
    Decline,
}

/// `POST /v1/tenants/{t}/approvals`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApprovalRequest {
    /// Which update.
    pub update: UpdateId,
    /// For which group.
    pub group: GroupId,
    /// Approve or decline.
    pub decision: Decision,
    /// Install by then at the latest.
    #[serde(default)]
    pub deadline: Option<Timestamp>,
    /// Why (required for a decline: issue 9, point 7; and for an emergency approval).
    #[serde(default)]
    pub reason: Option<String>,
    /// Issue 10, point 4: the operator's emergency lane. Approves now, skipping the
    /// tenant's patch day and deferrals (never a signature check); needs a reason.
    #[serde(default)]
    pub emergency: bool,
    /// Issue 10, point 3: a decline that also takes the update back from the group's
    /// hosts that installed it (`patchday decline --remove`); declines only.
    #[serde(default)]
    pub remove: bool,
}

/// A recorded approval or decline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Approval {
    /// Which update.
    pub update: UpdateId,
    /// For which group.
    pub group: GroupId,
    /// Approve or decline.
    pub decision: Decision,
    /// Install by then at the latest.
    pub deadline: Option<Timestamp>,
    /// When it was decided.
    pub decided_at: Timestamp,
    /// The token name that decided it.
    pub decided_by: String,
    /// The operator's reason (every decline made since issue 9 has one, and every
    /// emergency approval).
    #[serde(default)]
    pub reason: Option<String>,
    /// Approved through the operator's emergency lane (issue 10, point 4).
    #[serde(default)]
    pub emergency: bool,
    /// Issue 10, point 3: declined with removal from the hosts that installed it.
    #[serde(default)]
    pub remove: bool,
}

/// An update as a tenant sees it: the signed document plus its release status.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantUpdate {
    /// The signed update document.
    pub update: UpdateDocument,
    /// May it be approved now?
    pub approvable: bool,
    /// When it becomes approvable (train updates).
    pub approvable_at: Option<Timestamp>,
    /// Why not yet, for people.
    pub wait: Option<String>,
}

/// `POST /v1/catalog/missing` (issue 9, point 6): which of these target files (by
/// sha256) the server does not hold, so a push carries only those.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TargetHashes {
    /// Lower-case hex sha256 digests.
    pub sha256: Vec<String>,
}

/// Catalog versions the server holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CatalogStatus {
    /// Trusted root version.
    pub root_version: u64,
    /// Targets version.
    pub targets_version: u64,
    /// Snapshot version.
    pub snapshot_version: u64,
    /// Timestamp version.
    pub timestamp_version: u64,
    /// Number of update documents.
    pub updates: u64,
    /// Number of payloads.
    pub payloads: u64,
    /// Every role's version and expiry, and whether it expires soon (issue 9, point 5).
    #[serde(default)]
    pub roles: Vec<RoleExpiry>,
    /// What the publisher must do before the catalog expires, for people.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Issue 10, point 7: the content store and what the cleanup freed.
    #[serde(default)]
    pub content: Option<ContentStatus>,
}

/// The server's content store (issue 10, point 7): what it holds and what the cleanup
/// evicted because no host can need it any more.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContentStatus {
    /// Blobs held (payloads and update documents).
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Payloads evicted so far.
    pub evicted: u64,
    /// The bytes their eviction freed.
    pub evicted_bytes: u64,
    /// When the cleanup last looked (absent before its first run).
    #[serde(default)]
    pub last_cleanup: Option<jiff::Timestamp>,
    /// How long a payload no host needs is kept, in seconds.
    #[serde(default)]
    pub retain_seconds: u64,
}

/// `POST /v1/agent/enroll`.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollRequest {
    /// The tenant's enrolment token.
    pub token: String,
    /// The host's name.
    pub hostname: String,
    /// The host's own ed25519 public key (hex), made by the agent at enrolment; the
    /// server checks every later check-in, report and facts upload against it
    /// (finding 8). Required: agents that send none are refused.
    #[serde(default)]
    pub public_key: Option<String>,
}

impl fmt::Debug for EnrollRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrollRequest")
            .field("token", &"<redacted>")
            .field("hostname", &self.hostname)
            .field("public_key", &self.public_key)
            .finish()
    }
}

/// The answer to an enrolment.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollResponse {
    /// The new host's id.
    pub host: HostId,
    /// Its tenant.
    pub tenant: TenantId,
    /// The host's own credential; only its hash is stored on the server.
    pub credential: String,
    /// The catalog root the server trusts (root.json), for agents that were not
    /// given one explicitly.
    pub catalog_root: Option<String>,
    /// The director's public key, which signs this host's assignments.
    #[serde(default)]
    pub director_key: Option<DirectorKeyInfo>,
}

/// The director's public key as agents pin it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DirectorKeyInfo {
    /// sha256 of the public key, hex.
    pub keyid: String,
    /// ed25519 public key, hex.
    pub public: String,
}

/// `GET /v1/director`, and the answers of the rotation steps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DirectorStatus {
    /// The key that signs assignments now.
    pub key: DirectorKeyInfo,
    /// Version of the root-signed certificate for it (0: none yet).
    pub certificate_version: u64,
    /// The key waiting for its certificate (after `POST /v1/director/rotation`).
    #[serde(default)]
    pub next: Option<DirectorKeyInfo>,
}

impl fmt::Debug for EnrollResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrollResponse")
            .field("host", &self.host)
            .field("tenant", &self.tenant)
            .field("credential", &"<redacted>")
            .finish()
    }
}

/// `POST /v1/agent/checkin`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckinRequest {
    /// The host's current inventory.
    pub inventory: Inventory,
    /// Issue 10, point 2: the host's `key=value` labels (`patchday-agent --label`,
    /// `/etc/patchday/labels`), which group rules match; absent from older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    /// Issue 13, point 1: what the agent found and did per baseline at this run (drift,
    /// repairs, measurements); absent from older agents and from runs with no baseline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baselines: Vec<BaselineReport>,
    /// Issue 10, point 8: what this run's last installs ended in (installed, waiting for a
    /// reboot, failed, staged for a window), which would otherwise come as a report just
    /// before this check-in; the server records them before it evaluates the host, as
    /// it records a report. Absent from older agents and from runs that installed nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<StateReport>,
}

/// Issue 13, point 1: one baseline on one host at one agent run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BaselineReport {
    /// Baseline name.
    pub name: String,
    /// The version applied on the host (empty when none could be applied yet).
    pub version: String,
    /// What the agent found changed by hand since it applied the baseline (empty: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
    /// Whether the drift found was repaired at this run.
    #[serde(default)]
    pub repaired: bool,
    /// What went wrong (apply refused, guard rolled back, repair failed), in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the checks measured: per firewall rule `packets`/`bytes` counters
    /// (`firewall.<rule>.packets`), and the like.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub measured: std::collections::BTreeMap<String, u64>,
}

/// One update the host must install now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssignmentEntry {
    /// The update.
    pub update: UpdateId,
    /// Its payload targets that apply to this host.
    pub targets: Vec<String>,
    /// Install by then.
    pub deadline: Option<Timestamp>,
}

/// The answer to a check-in.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckinResponse {
    /// What to install now, for people and tools reading the answer; agents take their
    /// assignments from `director` only (an unsigned list can be cut on the way).
    pub assignments: Vec<AssignmentEntry>,
    /// Suggested seconds until the next check-in.
    pub poll_seconds: u64,
    /// Director metadata (per-host TUF targets, JSON text) signing what this host must
    /// install. Every answer carries it, with no targets when there is nothing to do, so
    /// agents notice a withheld or stale answer.
    #[serde(default)]
    pub director: Option<String>,
    /// The director key certificate: the current director key, signed by a threshold
    /// of the catalog's root keys (JSON text). Agents follow a director key rotation
    /// through it.
    #[serde(default)]
    pub director_certificate: Option<String>,
    /// The digest of the audit facts the server holds for this host (issue 12, point 7):
    /// an agent whose facts have this digest does not send them again. Absent when the
    /// server holds none (or is older).
    #[serde(default)]
    pub facts_sha256: Option<String>,
}

// ---- Issue 10, point 6 (push): the long poll ----

/// `POST /v1/agent/wait`: hold until this host's generation differs from `since`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WaitRequest {
    /// The generation the agent last saw (0 on its first call).
    pub since: u64,
}

/// The answer to a wait (also the body of its 503 when the server holds too many).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WaitAnswer {
    /// The host's generation now: send it as `since` next time.
    pub generation: u64,
    /// Something that can change this host's assignments happened: check in now.
    pub wake: bool,
    /// When refused (503): seconds to wait before trying again (jittered); else 0.
    pub retry_after_seconds: u64,
    /// When woken: start the run at a uniformly random moment within this many seconds
    /// (issue 10). 0: now. This server answers 0: it holds a woken wait until it has
    /// room for the run (paced wakes); earlier servers named a spread here. Absent from
    /// still older servers.
    #[serde(default)]
    pub spread_seconds: u64,
}

// ---- end issue 10, point 6 (push) ----

/// One per-update state the agent reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StateReport {
    /// The update.
    pub update: UpdateId,
    /// Its state on the host.
    pub state: UpdateState,
    /// The installer's own message for failures.
    #[serde(default)]
    pub message: Option<String>,
}

/// `POST /v1/agent/report`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportRequest {
    /// State changes since the last report.
    pub states: Vec<StateReport>,
}

/// One row of the compliance report: one update on one host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComplianceRow {
    /// Tenant.
    pub tenant: TenantId,
    /// Host.
    pub host: HostId,
    /// Host name.
    pub hostname: String,
    /// The host's groups.
    pub groups: Vec<GroupId>,
    /// Update.
    pub update: UpdateId,
    /// Its severity.
    pub severity: Severity,
    /// Its state on the host.
    pub state: UpdateState,
    /// Failure message, or why the state is what it is.
    pub message: Option<String>,
}

/// `GET /v1/report`: every (host, update) pair that is not `not-applicable`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComplianceReport {
    /// When the server computed it.
    pub generated_at: Option<Timestamp>,
    /// Hosts covered, including those with no applicable updates.
    pub hosts: Vec<HostSummaryRow>,
    /// The rows.
    pub rows: Vec<ComplianceRow>,
}

/// A host listed in a compliance report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostSummaryRow {
    /// Tenant.
    pub tenant: TenantId,
    /// Host.
    pub host: HostId,
    /// Host name.
    pub hostname: String,
    /// Groups.
    pub groups: Vec<GroupId>,
    /// Last check-in.
    pub last_seen: Option<Timestamp>,
    /// What the host itself signed, and its agent's last error (findings 8 and 13).
    #[serde(default)]
    pub signed: HostSigned,
    /// dpkg's own words when the host's dpkg database is not clean: the host is
    /// **broken**, never compliant, whatever is declined (issue 9, point 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpkg_broken: Option<String>,
    /// Where the host stands as a whole (issue 9, point 7).
    #[serde(default)]
    pub compliance: HostCompliance,
    /// Why, for people: the updates, deadline, error or last check-in behind the state.
    #[serde(default)]
    pub compliance_reason: Option<String>,
}

// issue 8, findings 8 and 13: what a host signed, and its agent's failures.

/// What a host itself signed (finding 8) and the error its agent last reported
/// (finding 13), as operators see it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostSigned {
    /// Whether the host registered a signing key at enrolment (false: enrolled before
    /// signed check-ins; it must be enrolled again).
    pub key: bool,
    /// The last sequence number the host signed and the server accepted (0: none yet).
    pub sequence: u64,
    /// When that signed body arrived.
    #[serde(default)]
    pub at: Option<Timestamp>,
    /// The agent's last run error (catalog verification, clock, signature, disk...),
    /// cleared by its next successful run.
    #[serde(default)]
    pub agent_error: Option<String>,
    /// When the agent reported that error.
    #[serde(default)]
    pub agent_error_at: Option<Timestamp>,
}

impl HostSigned {
    /// One cell for tables: `yes, seq N`, `not yet`, or `no key: re-enrol`.
    pub fn signed_cell(&self) -> String {
        match (self.key, self.sequence) {
            (false, _) => "no key: re-enrol".into(),
            (true, 0) => "not yet".into(),
            (true, n) => format!("yes, seq {n}"),
        }
    }

    /// One cell for tables: `agent-error: ...` or `ok`.
    pub fn agent_cell(&self) -> String {
        match &self.agent_error {
            Some(e) => format!("agent-error: {e}"),
            None => "ok".into(),
        }
    }
}

/// `POST /v1/agent/status`: the outcome of the agent's last run (signed like every
/// host body). `error: None` clears a reported error.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentStatusRequest {
    /// Why the run failed before or outside any single update, or `None` after a
    /// successful run.
    #[serde(default)]
    pub error: Option<String>,
}

// ---- Finding 3 (issue 8): secrets that expire and can be revoked; host quotas ----

/// An operator token as listed: id, name and the secret's first characters, never the
/// secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenInfo {
    /// Stable id for `patchday token revoke ID`.
    pub id: String,
    /// Label.
    pub name: String,
    /// The secret's first characters (empty for tokens made before prefixes were kept).
    pub prefix: String,
    /// Role.
    pub role: Role,
    /// Tenant for tenant roles.
    pub tenant: Option<TenantId>,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it stops working (never when absent).
    pub expires_at: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
}

/// `POST /v1/tenants/{t}/enroll-tokens`: limits of a new enrolment token. Every field may
/// be left out: a token then works once, for 24 hours.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateEnrollToken {
    /// A label for people.
    #[serde(default)]
    pub name: Option<String>,
    /// When it stops working (default: 24 hours from now).
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    /// How many hosts may enrol with it (default 1).
    #[serde(default)]
    pub max_uses: Option<u32>,
    /// Any number of hosts may enrol with it (only when asked for).
    #[serde(default)]
    pub unlimited: bool,
    /// The group every host enrolled with it joins.
    #[serde(default)]
    pub group: Option<GroupId>,
}

/// An enrolment token as listed, never with its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollTokenInfo {
    /// Stable id for `patchday enroll-token revoke ID`.
    pub id: String,
    /// Label.
    pub name: String,
    /// The secret's first characters (empty for tokens made before prefixes were kept).
    pub prefix: String,
    /// Tenant.
    pub tenant: TenantId,
    /// Group its hosts join.
    pub group: Option<GroupId>,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it stops working (never when absent).
    pub expires_at: Option<Timestamp>,
    /// Use limit (unlimited when absent).
    pub max_uses: Option<u32>,
    /// Hosts enrolled with it so far.
    pub uses: u32,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
}

/// `PUT /v1/tenants/{t}/limits`: the tenant's host quota.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantLimits {
    /// Most hosts the tenant may have (no limit when absent).
    #[serde(default)]
    pub max_hosts: Option<u32>,
}

/// What `DELETE` of a host, group or tenant removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Removed {
    /// What was removed, e.g. `host web-1-ab12cd34`.
    pub removed: String,
    /// Hosts removed with it (a forced tenant removal).
    #[serde(default)]
    pub hosts: u64,
}

// ---- Finding 10 (issue 8): the operator audit log ----

/// One change an operator made: who, when, from where, what. Append-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogEntry {
    /// Position in the log (increasing; 0 for an entry not yet stored).
    pub seq: u64,
    /// When the server accepted the change.
    pub at: Timestamp,
    /// The tenant it concerns; absent for provider-wide changes (catalog, director key).
    pub tenant: Option<TenantId>,
    /// Name of the operator token that made it.
    pub actor: String,
    /// Id of that token (as `patchday token list` shows it).
    pub actor_id: String,
    /// The address the request came from.
    pub source: String,
    /// What was done, e.g. `approval.approve`, `host.remove`.
    pub action: String,
    /// What it was done to, e.g. `update PD-2026-0001 group web`.
    pub object: String,
    /// Details as a small JSON object.
    pub detail: serde_json::Value,
}

// ---- Issue 9, point 7: truthful compliance ----

/// Where one host stands as a whole. Only `up-to-date` is compliant; the decision is
/// `patchday_core::compliance::host_compliance`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum HostCompliance {
    /// Nothing it needs is missing (or an operator declined it with a reason).
    UpToDate,
    /// Everything is installed; a reboot is still needed for it to take effect.
    PendingReboot,
    /// Needs approved updates the agent has not installed yet (deadline not passed).
    ApprovedPending,
    /// Needs updates nobody approved (or declined without a reason).
    Exposed,
    /// An approved update's deadline passed and it is still missing.
    Overdue,
    /// The last install attempt of an approved update failed.
    Failed,
    /// The agent refuses the catalog because its metadata expired: nothing installs
    /// until the publisher re-signs (`patchday catalog refresh`).
    CatalogExpired,
    /// The host's dpkg database is broken (half-installed or unconfigured packages).
    Broken,
    /// Not seen within the expected interval: what the report knows is old. Also the
    /// state of a host that never checked in.
    #[default]
    Stale,
}

impl HostCompliance {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UpToDate => "up-to-date",
            Self::PendingReboot => "pending-reboot",
            Self::ApprovedPending => "approved-pending",
            Self::Exposed => "exposed",
            Self::Overdue => "overdue",
            Self::Failed => "failed",
            Self::CatalogExpired => "catalog-expired",
            Self::Broken => "broken",
            Self::Stale => "stale",
        }
    }

    /// Whether the host counts as compliant.
    pub fn is_compliant(self) -> bool {
        self == Self::UpToDate
    }
}

impl fmt::Display for HostCompliance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an agent's run error starts when the host's dpkg database is not clean (the
/// agent's `dpkg --audit` check): `broken: <dpkg's words>`. The report shows such a
/// host as `broken`.
pub const AGENT_ERROR_BROKEN_PREFIX: &str = "broken: ";

// ---- Issue 9, point 5: catalog upkeep ----

/// One TUF role of the served catalog and when it expires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoleExpiry {
    /// `root`, `targets`, `snapshot`, `timestamp`, or a delegated role's name.
    pub role: String,
    /// Its version.
    pub version: u64,
    /// When agents stop trusting it.
    pub expires: Timestamp,
    /// `ok`, `expires-soon` (within the server's warning time) or `expired`.
    pub state: ExpiryState,
}

/// How close a role is to its expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ExpiryState {
    /// Further away than the warning time.
    Ok,
    /// Within the warning time: re-sign it (`patchday catalog refresh`) and push.
    ExpiresSoon,
    /// Past: agents refuse the catalog.
    Expired,
}

impl fmt::Display for ExpiryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "ok",
            Self::ExpiresSoon => "expires-soon",
            Self::Expired => "expired",
        })
    }
}

// ---- Issue 10, point 1: state history ----

/// One change of a host's state for an update.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryEntry {
    /// The host.
    pub host: HostId,
    /// The update.
    pub update: UpdateId,
    /// The state it entered.
    pub state: UpdateState,
    /// The state it left (none: the first state recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<UpdateState>,
    /// The installer's message or the reason, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the server saw the change (whole seconds).
    pub at: Timestamp,
}

/// How long an update took from publication to installed, over the hosts of one tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimeToInstall {
    /// The update.
    pub update: UpdateId,
    /// When it first appeared in a pushed catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at: Option<Timestamp>,
    /// Hosts that needed it at some point.
    pub hosts: u64,
    /// Of those, hosts on which it was installed.
    pub installed: u64,
    /// Median seconds from publication to installed, over the installed hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median_seconds: Option<i64>,
    /// 90th percentile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90_seconds: Option<i64>,
    /// The slowest host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_seconds: Option<i64>,
}

/// `GET /v1/tenants/{t}/history`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryAnswer {
    /// The changes, oldest first.
    pub entries: Vec<HistoryEntry>,
    /// Per update among the entries: time from publication to installed.
    pub time_to_install: Vec<TimeToInstall>,
}

// ---- Issue 10, point 5: maintenance windows and reboot policy per group ----

/// A group's maintenance windows and reboot policy (`PUT /v1/tenants/{t}/groups/{g}/policy`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupPolicy {
    /// Weekly windows, `Sat 02:00-05:00 Europe/Berlin`; empty: install any time.
    #[serde(default)]
    pub windows: Vec<String>,
    /// `in-window`, `now` or `never`.
    pub reboot: String,
}

impl Default for GroupPolicy {
    fn default() -> Self {
        GroupPolicy {
            windows: Vec::new(),
            reboot: "never".to_string(),
        }
    }
}

/// One group's policy in `GET /v1/tenants/{t}/groups/policies`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupPolicyInfo {
    /// The group.
    pub group: GroupId,
    /// Its policy.
    #[serde(flatten)]
    pub policy: GroupPolicy,
}

// ---- Issue 10, points 2 and 3 (rings): rings, auto-approval rules, evidence gates ----

/// Which new updates a ring approves by itself; an empty list matches anything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AutoRule {
    /// Severities that match (empty: any).
    #[serde(default)]
    pub severities: Vec<Severity>,
    /// Classifications that match (empty: any).
    #[serde(default)]
    pub classifications: Vec<crate::update::Classification>,
    /// Source packages that match, any payload's (empty: any).
    #[serde(default)]
    pub source_packages: Vec<String>,
    /// Only updates fixing a CVE the server's KEV catalog lists (`patchday server --kev`).
    #[serde(default)]
    pub known_exploited: bool,
}

/// One ring of a tenant's rollout: a group, when its turn comes, and its evidence gate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Ring {
    /// The group this ring approves for.
    pub group: GroupId,
    /// Seconds after patch day (train updates) before the ring's turn; emergency updates
    /// skip it.
    pub deferral_seconds: i64,
    /// Seconds after the ring's approval by which hosts must have installed (the
    /// approval's deadline), if any.
    #[serde(default)]
    pub deadline_seconds: Option<i64>,
    /// Seconds a host may run past the deadline before it counts as overdue.
    #[serde(default)]
    pub grace_seconds: i64,
    /// Seconds the ring's evidence must have had before the next ring may follow.
    pub soak_seconds: i64,
    /// Approves matching updates by itself when its turn has come (none: only by hand).
    #[serde(default)]
    pub rule: Option<AutoRule>,
    /// Share of the ring's applicable hosts (per mille) that must be installed before
    /// the next ring (default 950).
    pub success_permille: u32,
    /// Share of failed hosts (per mille) above which the update halts (default 50).
    pub failure_permille: u32,
    /// Absolute number of failed hosts at which the update halts, if set.
    #[serde(default)]
    pub failure_count: Option<u32>,
}

/// `PUT /v1/tenants/{t}/rings`: the tenant's rings, first to last.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RingsRequest {
    /// In order: pilot first.
    pub rings: Vec<Ring>,
}

/// A halted rollout: no ring is approved further and no host not yet started gets it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RolloutHalt {
    /// The update.
    pub update: UpdateId,
    /// Why (the failing ring's evidence, or the operator's reason).
    pub reason: String,
    /// When.
    pub at: Timestamp,
    /// Who: an operator's token name, or `rollout gate`.
    pub by: String,
    /// When an operator resumed it (failures recorded before then no longer count);
    /// none while it is halted.
    #[serde(default)]
    pub resumed_at: Option<Timestamp>,
}

impl RolloutHalt {
    /// Whether the rollout is halted now (not resumed).
    pub fn active(&self) -> bool {
        self.resumed_at.is_none()
    }
}

/// `POST /v1/rollouts/{u}/halt`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HaltRequest {
    /// Why.
    pub reason: String,
}

/// One ring's progress for an update, from the state read model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RingProgress {
    /// The tenant.
    pub tenant: TenantId,
    /// The ring's group.
    pub group: GroupId,
    /// When the update was approved for it, if it was.
    #[serde(default)]
    pub approved_at: Option<Timestamp>,
    /// Hosts of the ring the update applies to.
    pub applicable: u32,
    /// Of those, installed (and back from the reboot it needed).
    pub installed: u32,
    /// Of those, failed.
    pub failed: u32,
    /// Hosts of the ring its waves admitted so far (0: no waves, an approval by hand).
    #[serde(default)]
    pub wave_admitted: u32,
    /// The gate's verdict in words.
    pub verdict: String,
}

/// `GET /v1/rollouts/{u}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RolloutStatus {
    /// The update.
    pub update: UpdateId,
    /// Set while the rollout is halted.
    #[serde(default)]
    pub halt: Option<RolloutHalt>,
    /// Every ring the operator may see, tenant by tenant.
    pub rings: Vec<RingProgress>,
}

/// `GET /v1/tenants/{t}/rings/preview?update=U`: per ring, the hosts an approval (by
/// hand or by the ring's rule) would touch, and what the rollout would do next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RingPreview {
    /// The ring's group.
    pub group: GroupId,
    /// Whether the ring's rule matches the update.
    pub rule_matches: bool,
    /// Hosts of the ring the update applies to and that do not have it yet.
    pub hosts: Vec<HostId>,
    /// What the rollout does next for this update in this tenant.
    pub next: String,
}

// ---- Issue 10, point 2: groups joined by rules on host facts ----

/// One membership rule of a group: a host matches when every given condition holds
/// (none given: refused); a group with several rules takes hosts matching any of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupRule {
    /// OS release glob, matched against `ID-VERSION_ID` (`debian-12`), `ID-CODENAME`
    /// (`debian-bookworm`) and `CODENAME` (`bookworm`) from the host's os-release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Hostname glob (`web-*`; `*` any run, `?` one character; case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Labels the host must report with exactly these values.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A stored group rule (`GET /v1/tenants/{t}/groups/rules`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupRuleInfo {
    /// Its number in the tenant (for `group rule remove`).
    pub id: u64,
    /// The group it puts hosts in.
    pub group: GroupId,
    /// The conditions.
    #[serde(flatten)]
    pub rule: GroupRule,
}

/// A host joining or leaving a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MembershipChange {
    /// The host.
    pub host: HostId,
    /// The group.
    pub group: GroupId,
    /// Joins (true) or leaves (false).
    pub join: bool,
}

/// `POST /v1/tenants/{t}/groups/{g}/rules/preview`: what adding a rule, or removing one,
/// would change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RulePreviewRequest {
    /// A rule to add to the group.
    #[serde(default)]
    pub add: Option<GroupRule>,
    /// The id of a rule of the group to remove.
    #[serde(default)]
    pub remove: Option<u64>,
}

/// The answer to a rule change or its preview: which hosts join and leave which groups.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuleChangeAnswer {
    /// The rule added (none for a removal or a preview).
    #[serde(default)]
    pub rule: Option<GroupRuleInfo>,
    /// The memberships that change (or would).
    pub changes: Vec<MembershipChange>,
}

/// What a group rule can match about a host: the hostname the server knows, the
/// os-release of its last inventory, and the labels its agent last reported.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MembershipFacts {
    /// The host's name as enrolled (what `patchday host list` shows).
    pub hostname: String,
    /// Its os-release (empty before the first check-in).
    #[serde(default)]
    pub os: crate::inventory::OsRelease,
    /// Its labels (empty before the first check-in, or from an older agent).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Issue 13, point 1: a host's latest report for one baseline, as the server stores it
/// (`GET /v1/tenants/{t}/baselines`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostBaseline {
    /// The host.
    pub host: HostId,
    /// Its name.
    pub hostname: String,
    /// The baseline.
    pub baseline: String,
    /// The version applied on the host.
    pub version: String,
    /// Drift the latest run found (empty: none).
    #[serde(default)]
    pub drift: Vec<String>,
    /// Whether the latest run repaired it.
    #[serde(default)]
    pub repaired: bool,
    /// What went wrong at the latest run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the latest run measured (firewall rule counters).
    #[serde(default)]
    pub measured: std::collections::BTreeMap<String, u64>,
    /// When the server received the report.
    pub reported_at: Timestamp,
    /// When drift was last found on this host (kept after it was repaired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drift_at: Option<Timestamp>,
    /// How many runs found drift (each one repaired or reported as an error).
    #[serde(default)]
    pub drift_runs: u64,
}

/// Issue 13, point 1: one run's drift finding, kept as history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BaselineDriftEvent {
    /// The host.
    pub host: HostId,
    /// The baseline.
    pub baseline: String,
    /// Its version then.
    pub version: String,
    /// What was found.
    pub drift: Vec<String>,
    /// Whether it was repaired.
    pub repaired: bool,
    /// When the server received it.
    pub at: Timestamp,
}

/// Issue 13, point 1: `GET /v1/tenants/{t}/baselines`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BaselinesAnswer {
    /// Latest report per host and baseline.
    pub hosts: Vec<HostBaseline>,
    /// Drift found, newest first (at most 1,000).
    pub drift: Vec<BaselineDriftEvent>,
}

/// Issue 14, point 4: one verdict of the mail attachment filter (`patchday milter`),
/// reported to `POST /v1/tenants/{t}/mail/verdicts` and listed by `GET`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MailVerdict {
    /// When the milter decided.
    pub time: Timestamp,
    /// accept, quarantine, tempfail or reject.
    pub verdict: String,
    /// Postfix's queue ID, when known.
    #[serde(default)]
    pub queue_id: Option<String>,
    /// The envelope sender.
    pub sender: String,
    /// The envelope recipients.
    pub recipients: Vec<String>,
    /// Why (empty for a clean accept).
    #[serde(default)]
    pub reasons: Vec<String>,
    /// The message size in bytes.
    pub size: u64,
    /// The quarantine ID, for `patchday milter release`.
    #[serde(default)]
    pub quarantine_id: Option<String>,
}

// ---- Issue 14, point 5: download and messenger folders scanned by the agent ----

/// What the agent's folder scan did with one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ScanOutcome {
    /// clamd found a signature; the file was moved into the quarantine.
    Quarantined,
    /// clamd could not scan it within the policy's bound (down, hung, refusing, or the
    /// file too large); it is retried and not passed as clean.
    Unscanned,
    /// A file reported unscanned earlier was scanned since and found clean.
    CleanAfterRetry,
    /// A quarantined file was put back by `patchday-agent quarantine release`.
    Released,
}

/// One file the folder scan reports (`POST /v1/agent/scan-findings`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScanFinding {
    /// When the agent decided.
    pub time: Timestamp,
    /// The baseline whose `[scan]` watched the folder.
    pub baseline: String,
    /// What happened.
    pub outcome: ScanOutcome,
    /// The file's path on the host.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its owner's uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<u32>,
    /// Its sha256 (hex), when read whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The signature clamd named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The quarantine id, for `patchday-agent quarantine release`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine_id: Option<String>,
    /// Why it is unscanned (clamd's error, "larger than max_file_mib").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /v1/agent/scan-findings`: findings of the host's folder scan, signed like a
/// check-in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScanFindingsRequest {
    /// At most 1,000.
    pub findings: Vec<ScanFinding>,
}

/// A finding as the server keeps it (`GET /v1/tenants/{t}/scan-findings`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostScanFinding {
    /// The host that reported it.
    pub host: HostId,
    /// Its name.
    pub hostname: String,
    /// When the server received it.
    pub received_at: Timestamp,
    /// What the host reported.
    pub finding: ScanFinding,
}

// ---- Issue 14, points 1-3: compliance-gated access ----

/// An Ed25519 public key as a JWK (RFC 8037): the server's token key, or a host key in
/// a token's `cnf` claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Jwk {
    /// Always `OKP`.
    pub kty: String,
    /// Always `Ed25519`.
    pub crv: String,
    /// The raw public key, base64url without padding.
    pub x: String,
    /// The key's id (its RFC 7638 thumbprint), for keys that sign tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// `EdDSA`, for keys that sign tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// `sig`, for keys that sign tokens.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

/// A JWK set (RFC 7517): `GET /v1/access/keys`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JwkSet {
    /// The keys that sign access tokens.
    pub keys: Vec<Jwk>,
}

/// The body of `POST /v1/agent/access-token` (signed like a check-in; nothing to say).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessTokenRequest {}

/// A compliant host's access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessTokenAnswer {
    /// The token (a JWT signed EdDSA by the server's access key).
    pub token: String,
    /// When it expires.
    pub expires_at: Timestamp,
    /// Its lifetime in seconds (the agent renews it after two thirds of it).
    pub lifetime_seconds: u64,
    /// The host's compliance when it was issued.
    pub compliance: HostCompliance,
}

/// Whether one host may hold an access token now, and why not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostAccess {
    /// The host.
    pub host: HostId,
    /// Its name.
    pub hostname: String,
    /// Whether it gets tokens (and passes the gates).
    pub allowed: bool,
    /// Its compliance, as the report says.
    pub compliance: HostCompliance,
    /// Why it is refused (`None` when allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /v1/tenants/{t}/access`: every host's access, for operators and gates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessList {
    /// The tenant.
    pub tenant: TenantId,
    /// When the server decided.
    pub generated_at: Timestamp,
    /// Changes whenever a host's access, or the keys, change: send it back as `known`
    /// to wait for the next change.
    pub etag: String,
    /// How long the tokens the server issues live.
    pub token_lifetime_seconds: u64,
    /// The keys that sign tokens (as `GET /v1/access/keys`).
    pub keys: JwkSet,
    /// Every host of the tenant.
    pub hosts: Vec<HostAccess>,
}
