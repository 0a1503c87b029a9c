//! Issue 11, point 1: every host of a tenant evaluated for the fleet views (the report,
//! the console, the compliance gauge of `/metrics`, the notification scan) without
//! re-reading and re-evaluating 10,000 inventories per request.
//!
//! A host's statuses depend on the catalog, the tenant's decisions and ring grace
//! periods, the host's groups, its inventory (which changes only at a check-in, which
//! moves `last_seen`) and its agent's reports. The fleet is read in one query
//! ([`TenantStore::fleet`]) with each host's stored evaluation and the fingerprint
//! ("basis") of what it was made from; a host whose basis still holds is taken as
//! stored, the others are evaluated again (their inventory read) and stored back in one
//! transaction. What depends on the time (stale, overdue) and on the agent's last error
//! is decided at read time from the statuses, never stored, so a reused evaluation is as
//! true as a fresh one. A check-in writes nothing for it.

use crate::compliance::{host_statuses, ring_graces};
use crate::error::ApiError;
use patchday_core::applicability::{CatalogIndex, UpdateStatus};
use patchday_store::{FleetHost, HostRecord, HostSigning, StoredVerdict, TenantStore};
use patchday_types::api::Approval;
use patchday_types::{UpdateId, UpdateState};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Raised when the stored body's format or the evaluation's rules change: every stored
/// evaluation is then made again once.
const FORMAT: &str = "fleet-view-1";

/// Most evaluations written back in one transaction.
const WRITE_BATCH: usize = 500;

/// One host, evaluated.
#[derive(Clone, Debug)]
pub struct Evaluated {
    /// The host.
    pub host: HostRecord,
    /// What it signed and its agent's last error.
    pub signing: HostSigning,
    /// Its statuses, not-applicable ones left out.
    pub statuses: Vec<UpdateStatus>,
    /// A broken dpkg database, in dpkg's words (issue 9, point 4).
    pub dpkg_broken: Option<String>,
}

/// What is stored per host.
#[derive(Serialize, Deserialize)]
struct Body {
    statuses: Vec<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dpkg_broken: Option<String>,
}

/// [`UpdateStatus`] as stored.
#[derive(Serialize, Deserialize)]
struct Status {
    update: UpdateId,
    state: UpdateState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    missing: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deadline: Option<jiff::Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    overdue_at: Option<jiff::Timestamp>,
}

impl From<&UpdateStatus> for Status {
    fn from(s: &UpdateStatus) -> Self {
        Self {
            update: s.update.clone(),
            state: s.state,
            message: s.message.clone(),
            missing: s.missing.clone(),
            deadline: s.deadline,
            overdue_at: s.overdue_at,
        }
    }
}

impl From<Status> for UpdateStatus {
    fn from(s: Status) -> Self {
        Self {
            update: s.update,
            state: s.state,
            message: s.message,
            missing: s.missing,
            deadline: s.deadline,
            overdue_at: s.overdue_at,
        }
    }
}

/// The fingerprint of what every host of the tenant shares: the catalog's content, the
/// decisions and the ring grace periods.
async fn tenant_basis(
    tenant: &dyn TenantStore,
    catalog_version: &str,
    approvals: &[Approval],
) -> Result<Sha256, ApiError> {
    let mut h = Sha256::new();
    h.update(FORMAT.as_bytes());
    h.update(b"\0catalog\0");
    h.update(catalog_version.as_bytes());
    h.update(b"\0approvals\0");
    h.update(serde_json::to_vec(approvals).map_err(ApiError::internal)?);
    h.update(b"\0graces\0");
    let graces = ring_graces(tenant).await?;
    h.update(serde_json::to_vec(&graces).map_err(ApiError::internal)?);
    Ok(h)
}

/// The basis of one host's evaluation: the tenant's, its groups, its last check-in and
/// its reports.
fn host_basis(tenant: &Sha256, f: &FleetHost) -> String {
    let mut h = tenant.clone();
    h.update(b"\0host\0");
    h.update(f.host.id.as_str().as_bytes());
    for g in &f.host.groups {
        h.update(b"\0group\0");
        h.update(g.as_str().as_bytes());
    }
    h.update(b"\0seen\0");
    if let Some(seen) = f.host.last_seen {
        h.update(seen.to_string().as_bytes());
    }
    h.update(b"\0states\0");
    h.update(f.states_mark.as_bytes());
    hex::encode(h.finalize())
}

/// Every host of `tenant`, evaluated; stored evaluations reused where their basis holds.
pub async fn evaluate(
    tenant: &dyn TenantStore,
    approvals: &[Approval],
    catalog_version: &str,
    catalog: &CatalogIndex,
) -> Result<Vec<Evaluated>, ApiError> {
    let shared = tenant_basis(tenant, catalog_version, approvals).await?;
    let fleet = tenant.fleet().await?;
    let mut out = Vec::with_capacity(fleet.len());
    let mut fresh = Vec::new();
    for f in fleet {
        let basis = host_basis(&shared, &f);
        let stored = f
            .verdict
            .as_ref()
            .filter(|v| v.basis == basis)
            .and_then(|v| match serde_json::from_str::<Body>(&v.body) {
                Ok(b) => Some(b),
                Err(e) => {
                    // A cache: an unreadable entry is made again, and said once.
                    tracing::warn!(host = %f.host.id, error = %e, "stored evaluation unreadable; evaluating again");
                    None
                }
            });
        let (statuses, dpkg_broken) = match stored {
            Some(b) => (
                b.statuses.into_iter().map(Into::into).collect(),
                b.dpkg_broken,
            ),
            None => {
                let inventory = tenant.inventory(&f.host.id).await?;
                let dpkg_broken = inventory.as_ref().and_then(|i| i.dpkg_broken.clone());
                let statuses: Vec<UpdateStatus> =
                    host_statuses(tenant, &f.host, approvals, catalog, inventory.as_ref())
                        .await?
                        .into_iter()
                        .filter(|s| s.state != UpdateState::NotApplicable)
                        .collect();
                let body = Body {
                    statuses: statuses.iter().map(Status::from).collect(),
                    dpkg_broken: dpkg_broken.clone(),
                };
                fresh.push(StoredVerdict {
                    host: f.host.id.clone(),
                    basis,
                    body: serde_json::to_string(&body).map_err(ApiError::internal)?,
                });
                (statuses, dpkg_broken)
            }
        };
        out.push(Evaluated {
            host: f.host,
            signing: f.signing,
            statuses,
            dpkg_broken,
        });
    }
    if !fresh.is_empty() {
        tracing::debug!(
            tenant = %tenant.id(),
            evaluated = fresh.len(),
            reused = out.len() - fresh.len(),
            "fleet view: hosts evaluated again"
        );
    }
    for chunk in fresh.chunks(WRITE_BATCH) {
        // Keeping them is an optimisation: a failure (a full disk) costs the next view
        // time, never this view its answer.
        if let Err(e) = tenant.put_verdicts(chunk).await {
            tracing::warn!(error = %e, "could not keep the fleet view's evaluations");
            break;
        }
    }
    Ok(out)
}
