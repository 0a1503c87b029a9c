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
    // Issue 8, findings 9, 11 and 14 (server hardening).
    /// Too many failed logins from this address; retry after the `Retry-After` seconds (429).
    TooManyRequests,
    /// The server cannot store anything now (disk full); nothing was changed (507).
    InsufficientStorage,
    /// What was asked for is there but cannot be served now (503).
    Unavailable,
}

/// The JSON body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Error class.
    pub error: ErrorCode,
    /// What happened and what to do.
    pub message: String,
}

/// A tenant's patch-day rule, as strings; `patchday-core` parses and checks it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
pub struct Tenant {
    /// Id.
    pub id: TenantId,
    /// Display name.
    pub name: String,
    /// Patch-day rule.
    pub patch_day: PatchDayConfig,
}

/// `POST /v1/tenants`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateTenant {
    /// Id.
    pub id: TenantId,
    /// Display name.
    pub name: String,
    /// Patch-day rule; second Tuesday 10:00 UTC when absent.
    #[serde(default)]
    pub patch_day: Option<PatchDayConfig>,
}

/// `POST /v1/tokens`: a new operator token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateToken {
    /// A label for people.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The tenant for tenant-admin and read-only tokens.
    #[serde(default)]
    pub tenant: Option<TenantId>,
}

/// A freshly created secret, shown exactly once.
#[derive(Clone, Serialize, Deserialize)]
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
pub struct Group {
    /// Id.
    pub id: GroupId,
    /// Display name.
    pub name: String,
}

/// A host as operators see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// `PUT /v1/tenants/{t}/hosts/{h}/groups`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SetHostGroups {
    /// The complete new group list.
    pub groups: Vec<GroupId>,
}

/// An operator's decision on an update for a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Install on the group's hosts.
    Approve,
    /// Do not install; hosts report it as declined.
    Decline,
}

/// `POST /v1/tenants/{t}/approvals`.
#[derive(Clone, Debug, Serialize, Deserialize)]
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
}

/// A recorded approval or decline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// An update as a tenant sees it: the signed document plus its release status.
#[derive(Clone, Debug, Serialize, Deserialize)]
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

/// Catalog versions the server holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// `POST /v1/agent/enroll`.
#[derive(Clone, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// The tenant's enrolment token.
    pub token: String,
    /// The host's name.
    pub hostname: String,
}

impl fmt::Debug for EnrollRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrollRequest")
            .field("token", &"<redacted>")
            .field("hostname", &self.hostname)
            .finish()
    }
}

/// The answer to an enrolment.
#[derive(Clone, Serialize, Deserialize)]
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
pub struct DirectorKeyInfo {
    /// sha256 of the public key, hex.
    pub keyid: String,
    /// ed25519 public key, hex.
    pub public: String,
}

/// `GET /v1/director`, and the answers of the rotation steps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
pub struct CheckinRequest {
    /// The host's current inventory.
    pub inventory: Inventory,
}

/// One update the host must install now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
pub struct CheckinResponse {
    /// What to install now.
    pub assignments: Vec<AssignmentEntry>,
    /// Suggested seconds until the next check-in.
    pub poll_seconds: u64,
    /// Director metadata signing `assignments` (per-host TUF targets, JSON text).
    #[serde(default)]
    pub director: Option<String>,
    /// The director key certificate: the current director key, signed by a threshold
    /// of the catalog's root keys (JSON text). Agents follow a director key rotation
    /// through it.
    #[serde(default)]
    pub director_certificate: Option<String>,
}

/// One per-update state the agent reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
pub struct ReportRequest {
    /// State changes since the last report.
    pub states: Vec<StateReport>,
}

/// One row of the compliance report: one update on one host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
}
