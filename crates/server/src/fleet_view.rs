//! Issue 11, point 1: every host of a tenant evaluated for the fleet views (the report,
//! the console, the compliance gauge of `/metrics`, the notification scan) without
//! re-reading and re-evaluating 10,000 inventories per request.
//!
//! A host's statuses depend on the catalog, the tenant's decisions and ring grace
//! periods, the host's groups, its inventory and its agent's reports. Each host's
//! evaluation is kept with a fingerprint ("basis") of what it was made from: the catalog
//! version, the tenant's decisions mark (moved by the database itself at every change of
//! approvals and rings), the host's groups, and marks of its inventory (its digest) and
//! reports ([`HostMarks`]). A check-in and a state report keep the evaluation they make
//! anyway (in the transaction that records the host's states, and only when its basis
//! moved: an unchanged check-in writes nothing), so after a rollout the views find
//! nearly every host evaluated. A view reads the fleet in pages ([`FleetReader`]) and
//! evaluates again only the hosts whose basis moved since (after a new approval, say),
//! keeping those too. Marks are always read before the data they cover, so an
//! evaluation is never kept under a mark newer than what it saw. What depends on the
//! time (stale, overdue) and on the agent's last error is decided at read time from the
//! statuses, never stored, so a reused evaluation is as true as a fresh one.
//!
//! Beside the whole evaluation each host keeps its summary: only the statuses that decide
//! its state and its exposure ([`counts`]), and dpkg's words. The pages that count (the
//! console's overview, tenant and updates pages) read the summaries ([`Counted`],
//! [`FleetReader::summaries`]), small rows at 10,000 hosts; what needs every status (the
//! report, rollout progress) reads the whole.

use crate::compliance::host_statuses;
use crate::error::ApiError;
use patchday_core::applicability::{CatalogIndex, UpdateStatus};
use patchday_core::compliance::{host_compliance, is_open, HostFacts, Verdict};
use patchday_store::{
    HostMarks, HostRecord, HostSigning, MarksAtCheckin, StoredVerdict, TenantStore,
};
use patchday_types::api::Approval;
use patchday_types::{HostId, UpdateId, UpdateState};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Raised when the stored body's format or the evaluation's rules change: every stored
/// evaluation is then made again once.
const FORMAT: &str = "fleet-view-3";

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

/// One host as the counting pages read it: its kept summary.
#[derive(Clone, Debug)]
pub struct Counted {
    /// The host.
    pub host: HostRecord,
    /// Its agent's last run error.
    pub agent_error: Option<String>,
    /// The statuses its state and exposure depend on ([`counts`]), in the order the whole
    /// evaluation lists them.
    pub statuses: Vec<UpdateStatus>,
    /// A broken dpkg database, in dpkg's words.
    pub dpkg_broken: Option<String>,
}

impl Counted {
    /// Where the host stands at `now`: the report's own decision
    /// ([`crate::routes::host_verdict`]) on the statuses it reads.
    pub fn verdict(&self, stale_after: jiff::SignedDuration, now: jiff::Timestamp) -> Verdict {
        host_compliance(
            &self.statuses,
            &HostFacts {
                last_seen: self.host.last_seen,
                agent_error: self.agent_error.as_deref(),
                dpkg_broken: self.dpkg_broken.as_deref(),
            },
            stale_after,
            now,
        )
    }
}

/// Whether the summary keeps a status: every open one (the exposure, and what a state
/// depends on: failed, approved and pending, waiting for a reboot, with their deadlines)
/// and every declined one (a decline without a reason leaves the host exposed). The rest
/// (installed, superseded, removed...) decide nothing [`host_compliance`] or the
/// exposure read.
pub fn counts(s: &UpdateStatus) -> bool {
    is_open(s.state) || s.state == UpdateState::Declined
}

/// A status as the summary keeps it: what [`host_compliance`] reads (a decline's reason,
/// not an install's message or its missing packages).
fn summarised(s: &UpdateStatus) -> Status {
    Status {
        update: s.update.clone(),
        state: s.state,
        message: if s.state == UpdateState::Declined {
            s.message.clone()
        } else {
            None
        },
        missing: Vec::new(),
        deadline: s.deadline,
        overdue_at: s.overdue_at,
    }
}

/// What is stored per host (the whole evaluation, and in the same form its summary).
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

/// A kept evaluation's body or summary, read: its statuses and dpkg's words.
pub(crate) fn read(kept: &str) -> Result<(Vec<UpdateStatus>, Option<String>), serde_json::Error> {
    let b: Body = serde_json::from_str(kept)?;
    Ok((
        b.statuses.into_iter().map(Into::into).collect(),
        b.dpkg_broken,
    ))
}

/// What every host of a tenant shares in its basis: the catalog's content and the
/// tenant's decisions and rings (through the mark the database moves at each change).
#[derive(Clone)]
pub struct Shared(Sha256);

impl Shared {
    /// The shared part of the basis for a catalog version and a decisions mark read
    /// before the decisions themselves.
    pub fn new(catalog_version: &str, decisions: i64) -> Self {
        let mut h = Sha256::new();
        h.update(FORMAT.as_bytes());
        h.update(b"\0catalog\0");
        h.update(catalog_version.as_bytes());
        h.update(b"\0decisions\0");
        h.update(decisions.to_le_bytes());
        Self(h)
    }

    /// The basis of one host's evaluation: the shared part, its groups, and the marks of
    /// its inventory and reports.
    fn basis(&self, host: &HostRecord, marks: &HostMarks) -> String {
        let mut h = self.0.clone();
        h.update(b"\0host\0");
        h.update(host.id.as_str().as_bytes());
        for g in &host.groups {
            h.update(b"\0group\0");
            h.update(g.as_str().as_bytes());
        }
        h.update(b"\0inventory\0");
        h.update(marks.inventory.as_bytes());
        h.update(b"\0states\0");
        h.update(marks.states.as_bytes());
        hex::encode(h.finalize())
    }
}

/// One host's evaluation as it is kept: `statuses` as [`crate::compliance::host_statuses`]
/// made them (not-applicable ones are left out here), with the basis of `marks`, which
/// must have been read before what the evaluation read.
pub fn verdict(
    shared: &Shared,
    host: &HostRecord,
    marks: &HostMarks,
    statuses: &[UpdateStatus],
    dpkg_broken: Option<String>,
) -> Result<StoredVerdict, ApiError> {
    let summary = Body {
        statuses: statuses
            .iter()
            .filter(|s| counts(s))
            .map(summarised)
            .collect(),
        dpkg_broken: dpkg_broken.clone(),
    };
    let body = Body {
        statuses: statuses
            .iter()
            .filter(|s| s.state != UpdateState::NotApplicable)
            .map(Status::from)
            .collect(),
        dpkg_broken,
    };
    Ok(StoredVerdict {
        host: host.id.clone(),
        basis: shared.basis(host, marks),
        body: serde_json::to_string(&body).map_err(ApiError::internal)?,
        summary: serde_json::to_string(&summary).map_err(ApiError::internal)?,
    })
}

/// The evaluation a check-in or a state report just made, to keep in the transaction
/// that records the host's states; `None` when the one kept has the same basis (an
/// unchanged check-in writes nothing). `at` was read before the host, its decisions and
/// its states.
pub fn kept(
    catalog_version: &str,
    at: &MarksAtCheckin,
    host: &HostRecord,
    statuses: &[UpdateStatus],
    dpkg_broken: Option<String>,
) -> Result<Option<StoredVerdict>, ApiError> {
    let shared = Shared::new(catalog_version, at.decisions);
    if at.basis.as_deref() == Some(shared.basis(host, &at.host).as_str()) {
        return Ok(None);
    }
    verdict(&shared, host, &at.host, statuses, dpkg_broken).map(Some)
}

/// Issue 10, point 8: how an agent's report of work under way (downloading, downloaded,
/// installing, failed) carries the host's kept evaluation forward, for
/// [`TenantStore::report_on_kept`], instead of evaluating the host again. It can when the
/// kept evaluation is the host's current one (its basis is that of the marks read in the
/// report's transaction) and says each reported update is assigned (approved, not
/// superseded, missing here): the evaluation of such an update is then the agent's word
/// (`patchday_core::applicability`'s approved branch), and the report changes nothing else
/// the evaluation reads. The new evaluation is kept under the marks as they stand after
/// the report; `None` (evaluate in full) otherwise.
pub fn carry_report<'a>(
    catalog_version: &'a str,
    host: &'a HostRecord,
    reports: &'a [patchday_types::api::StateReport],
) -> impl Fn(&MarksAtCheckin, Option<&str>) -> Option<patchday_store::CarriedForward> + Sync + 'a {
    move |before, body| {
        let shared = Shared::new(catalog_version, before.decisions);
        if before.basis.as_deref() != Some(shared.basis(host, &before.host).as_str()) {
            return None;
        }
        let (mut statuses, dpkg_broken) = read(body?).ok()?;
        let mut history = Vec::with_capacity(reports.len());
        for r in reports {
            let under_way = matches!(
                r.state,
                UpdateState::Downloading
                    | UpdateState::Downloaded
                    | UpdateState::Installing
                    | UpdateState::Failed
            );
            let st = statuses.iter_mut().find(|st| st.update == r.update)?;
            if !under_way || !st.is_assigned() {
                return None;
            }
            st.state = r.state;
            st.message = r.message.clone();
            history.push(patchday_types::api::StateReport {
                update: st.update.clone(),
                state: st.state,
                message: st.message.clone(),
            });
        }
        let (host, version) = (host.clone(), catalog_version.to_owned());
        Some(patchday_store::CarriedForward {
            history,
            keep: Box::new(move |after| {
                let shared = Shared::new(&version, after.decisions);
                verdict(&shared, &host, &after.host, &statuses, dpkg_broken).ok()
            }),
        })
    }
}

/// Hosts read per page: bounds a view's memory whatever the fleet's size.
pub const PAGE: u32 = 1000;

/// A tenant's fleet, evaluated page by page; stored evaluations reused where their basis
/// holds (a check-in or a report keeps the host's evaluation when it makes one, so after
/// a rollout nearly every host's is there).
pub struct FleetReader<'a> {
    tenant: &'a dyn TenantStore,
    metrics: &'a crate::metrics::Metrics,
    catalog: &'a CatalogIndex,
    shared: Shared,
    approvals: Vec<Approval>,
}

impl<'a> FleetReader<'a> {
    /// Reads the decisions mark, then the decisions (that order: an evaluation is never
    /// kept under a mark newer than what it read).
    pub async fn open(
        tenant: &'a dyn TenantStore,
        catalog_version: &str,
        catalog: &'a CatalogIndex,
        metrics: &'a crate::metrics::Metrics,
    ) -> Result<FleetReader<'a>, ApiError> {
        let decisions = tenant.decisions_mark().await?;
        let approvals = tenant.list_approvals().await?;
        Ok(Self {
            tenant,
            metrics,
            catalog,
            shared: Shared::new(catalog_version, decisions),
            approvals,
        })
    }

    /// Every host, evaluated (for views that need them all at once).
    pub async fn all(&self) -> Result<Vec<Evaluated>, ApiError> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self.page(after.as_ref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.host.id.clone());
            let full = page.len() == PAGE as usize;
            out.extend(page);
            if !full {
                break;
            }
        }
        Ok(out)
    }

    /// At most `limit` hosts after `after`, in host id order, evaluated.
    pub async fn page(
        &self,
        after: Option<&HostId>,
        limit: u32,
    ) -> Result<Vec<Evaluated>, ApiError> {
        let fleet = self.tenant.fleet_page(after, limit).await?;
        let mut out = Vec::with_capacity(fleet.len());
        let mut fresh = Vec::new();
        for f in fleet {
            let basis = self.shared.basis(&f.host, &f.marks);
            let stored = f
                .verdict
                .as_ref()
                .filter(|v| v.basis == basis)
                .and_then(|v| match read(&v.body) {
                    Ok(b) => Some(b),
                    Err(e) => {
                        // A cache: an unreadable entry is made again, and said once.
                        tracing::warn!(host = %f.host.id, error = %e, "stored evaluation unreadable; evaluating again");
                        None
                    }
                });
            let (statuses, dpkg_broken) = match stored {
                Some(b) => b,
                None => {
                    let (statuses, dpkg_broken, kept) = self.evaluate(&f.host, &f.marks).await?;
                    fresh.push(kept);
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
        self.keep(out.len(), &fresh).await;
        Ok(out)
    }

    /// At most `limit` hosts after `after`, in host id order, as the counting pages read
    /// them: each host's kept summary where its basis holds (no whole evaluation read,
    /// none parsed), the others evaluated again and kept whole.
    pub async fn summaries(
        &self,
        after: Option<&HostId>,
        limit: u32,
    ) -> Result<Vec<Counted>, ApiError> {
        let fleet = self.tenant.fleet_summaries(after, limit).await?;
        let mut out = Vec::with_capacity(fleet.len());
        let mut fresh = Vec::new();
        for f in fleet {
            let basis = self.shared.basis(&f.host, &f.marks);
            let stored = f
                .kept
                .as_ref()
                .filter(|k| k.basis == basis)
                .and_then(|k| match read(&k.summary) {
                    Ok(b) => Some(b),
                    Err(e) => {
                        tracing::warn!(host = %f.host.id, error = %e, "stored summary unreadable; evaluating again");
                        None
                    }
                });
            let (statuses, dpkg_broken) = match stored {
                Some(b) => b,
                None => {
                    let (statuses, dpkg_broken, kept) = self.evaluate(&f.host, &f.marks).await?;
                    fresh.push(kept);
                    (statuses.into_iter().filter(counts).collect(), dpkg_broken)
                }
            };
            out.push(Counted {
                host: f.host,
                agent_error: f.agent_error.map(|(e, _)| e),
                statuses,
                dpkg_broken,
            });
        }
        self.keep(out.len(), &fresh).await;
        Ok(out)
    }

    /// Every host as the counting pages read them, page by page into `each`.
    pub async fn each_summary(
        &self,
        mut each: impl FnMut(Counted) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let mut after = None;
        loop {
            let page = self.summaries(after.as_ref(), PAGE).await?;
            let full = page.len() == PAGE as usize;
            after = page.last().map(|c| c.host.id.clone());
            for c in page {
                each(c)?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// One host evaluated again (its basis moved, or it has none): its statuses (not
    /// applicable ones left out), dpkg's words, and the evaluation to keep.
    async fn evaluate(
        &self,
        host: &HostRecord,
        marks: &HostMarks,
    ) -> Result<(Vec<UpdateStatus>, Option<String>, StoredVerdict), ApiError> {
        let inventory = self.tenant.inventory(&host.id).await?;
        let dpkg_broken = inventory.as_ref().and_then(|i| i.dpkg_broken.clone());
        let statuses: Vec<UpdateStatus> = host_statuses(
            self.tenant,
            host,
            &self.approvals,
            self.catalog,
            inventory.as_ref(),
        )
        .await?
        .into_iter()
        .filter(|s| s.state != UpdateState::NotApplicable)
        .collect();
        let kept = verdict(&self.shared, host, marks, &statuses, dpkg_broken.clone())?;
        Ok((statuses, dpkg_broken, kept))
    }

    /// Counts a page's reuse and keeps the evaluations it made again.
    async fn keep(&self, read: usize, fresh: &[StoredVerdict]) {
        self.metrics.fleet_view(read - fresh.len(), fresh.len());
        if !fresh.is_empty() {
            tracing::debug!(
                tenant = %self.tenant.id(),
                evaluated = fresh.len(),
                reused = read - fresh.len(),
                "fleet view: hosts evaluated again"
            );
        }
        for chunk in fresh.chunks(WRITE_BATCH) {
            // Keeping them is an optimisation: a failure (a full disk) costs the next view
            // time, never this view its answer.
            if let Err(e) = self.tenant.put_verdicts(chunk).await {
                tracing::warn!(error = %e, "could not keep the fleet view's evaluations");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use patchday_types::api::StateReport;

    fn host() -> HostRecord {
        HostRecord {
            id: HostId::new("web-1").unwrap(),
            hostname: "web-1".into(),
            groups: vec![patchday_types::GroupId::new("web").unwrap()],
            enrolled_at: "2026-12-01T00:00:00Z".parse().unwrap(),
            last_seen: None,
            facts_sha256: None,
        }
    }

    fn status(update: &str, state: UpdateState) -> UpdateStatus {
        UpdateStatus {
            update: UpdateId::new(update).unwrap(),
            state,
            message: None,
            missing: vec![format!("{update}.deb")],
            deadline: None,
            overdue_at: None,
        }
    }

    fn report(update: &str, state: UpdateState) -> StateReport {
        StateReport {
            update: UpdateId::new(update).unwrap(),
            state,
            message: Some(format!("{state}")),
        }
    }

    /// The host's marks with the kept evaluation of `statuses` made under them.
    fn kept(statuses: &[UpdateStatus]) -> (MarksAtCheckin, String) {
        let mut marks = MarksAtCheckin {
            decisions: 7,
            host: HostMarks {
                states: String::new(),
                inventory: "inv-1".into(),
            },
            basis: None,
        };
        let v = verdict(
            &Shared::new("cat-1", 7),
            &host(),
            &marks.host,
            statuses,
            None,
        )
        .unwrap();
        marks.basis = Some(v.basis);
        (marks, v.body)
    }

    #[test]
    fn a_report_of_work_under_way_carries_the_kept_evaluation_forward() {
        let h = host();
        let (marks, body) = kept(&[
            status("U1", UpdateState::Approved),
            status("U2", UpdateState::Needed),
        ]);
        let reports = [report("U1", UpdateState::Installing)];
        let carry = carry_report("cat-1", &h, &reports);
        let carried = carry(&marks, Some(&body)).expect("carried forward");
        assert_eq!(carried.history, reports);
        // Kept under the marks after the report, with only U1 changed.
        let after = MarksAtCheckin {
            host: HostMarks {
                states: "U1=installing@t".into(),
                ..marks.host.clone()
            },
            ..marks.clone()
        };
        let v = (carried.keep)(&after).unwrap();
        assert_eq!(
            Some(v.basis.as_str()),
            Some(Shared::new("cat-1", 7).basis(&h, &after.host).as_str())
        );
        let (statuses, _) = read(&v.body).unwrap();
        assert_eq!(
            statuses
                .iter()
                .map(|s| (s.update.as_str(), s.state, s.message.as_deref()))
                .collect::<Vec<_>>(),
            [
                ("U1", UpdateState::Installing, Some("installing")),
                ("U2", UpdateState::Needed, None)
            ]
        );
        assert_eq!(
            statuses[0].missing,
            ["U1.deb"],
            "the rest of the status stays"
        );
    }

    #[test]
    fn a_report_falls_back_to_a_full_evaluation_when_the_kept_one_cannot_say() {
        let h = host();
        let (marks, body) = kept(&[
            status("U1", UpdateState::Approved),
            status("U2", UpdateState::Declined),
            status("U3", UpdateState::Superseded),
        ]);
        let none = |reports: &[StateReport], marks: &MarksAtCheckin, body: Option<&str>| {
            carry_report("cat-1", &h, reports)(marks, body).is_none()
        };
        let installing = [report("U1", UpdateState::Installing)];
        assert!(
            !none(&installing, &marks, Some(&body)),
            "the case that carries"
        );
        // The kept evaluation is not the current one: a decision, the catalog, the
        // inventory or the states moved since, or there is none.
        for moved in [
            MarksAtCheckin {
                decisions: 8,
                ..marks.clone()
            },
            MarksAtCheckin {
                host: HostMarks {
                    inventory: "inv-2".into(),
                    ..marks.host.clone()
                },
                ..marks.clone()
            },
            MarksAtCheckin {
                host: HostMarks {
                    states: "U1=downloading@t".into(),
                    ..marks.host.clone()
                },
                ..marks.clone()
            },
            MarksAtCheckin {
                basis: None,
                ..marks.clone()
            },
        ] {
            assert!(none(&installing, &moved, Some(&body)), "{moved:?}");
        }
        assert!(carry_report("cat-2", &h, &installing)(&marks, Some(&body)).is_none());
        assert!(none(&installing, &marks, None), "no body");
        assert!(none(&installing, &marks, Some("not json")));
        // Updates the kept evaluation does not assign, or one it does not list.
        for u in ["U2", "U3", "U4"] {
            assert!(
                none(&[report(u, UpdateState::Installing)], &marks, Some(&body)),
                "{u}"
            );
        }
        // Outcomes the inventory decides, and take-back reports.
        for st in [
            UpdateState::Installed,
            UpdateState::InstalledPendingReboot,
            UpdateState::Removed,
            UpdateState::RemoveFailed,
        ] {
            assert!(none(&[report("U1", st)], &marks, Some(&body)), "{st:?}");
        }
        // One report that cannot carry makes the whole report fall back.
        assert!(none(
            &[
                report("U1", UpdateState::Installing),
                report("U2", UpdateState::Installing)
            ],
            &marks,
            Some(&body)
        ));
    }
}
