//! What the console's pages show, computed from the API's own answers by pure
//! functions (no I/O, no clock), so the numbers on a page are the numbers of
//! `GET /v1/report` and can be tested without a browser.

use crate::fleet_view::Counted;
use patchday_core::applicability::CatalogIndex;
use patchday_core::compliance::Verdict;
pub use patchday_core::compliance::{is_open, SEVERITIES};
#[cfg(test)]
use patchday_types::api::ComplianceReport;
use patchday_types::api::{HostCompliance, HostSummaryRow};
use patchday_types::Severity;

/// Every host state, in the order the overview lists them (best first).
pub const HOST_STATES: [HostCompliance; 9] = [
    HostCompliance::UpToDate,
    HostCompliance::PendingReboot,
    HostCompliance::ApprovedPending,
    HostCompliance::Exposed,
    HostCompliance::Overdue,
    HostCompliance::Failed,
    HostCompliance::CatalogExpired,
    HostCompliance::Broken,
    HostCompliance::Stale,
];

/// One host as a line in a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostLine {
    /// Host id (for the link).
    pub id: String,
    /// Its name.
    pub hostname: String,
    /// Its state as a whole.
    pub state: String,
    /// Why.
    pub reason: String,
}

impl From<&HostSummaryRow> for HostLine {
    fn from(h: &HostSummaryRow) -> Self {
        HostLine {
            id: h.host.to_string(),
            hostname: h.hostname.clone(),
            state: h.compliance.as_str().to_string(),
            reason: h.compliance_reason.clone().unwrap_or_default(),
        }
    }
}

impl HostLine {
    /// A host read from its kept summary, with where it stands (as [`HostLine::from`] a
    /// report's host row).
    pub fn counted(c: &Counted, v: &Verdict) -> Self {
        HostLine {
            id: c.host.id.to_string(),
            hostname: c.host.hostname.clone(),
            state: v.state.as_str().to_string(),
            reason: v.reason.clone().unwrap_or_default(),
        }
    }
}

/// A count with its label and a CSS class (`state-…`, `severity-…`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Count {
    /// What is counted.
    pub label: String,
    /// How many.
    pub n: usize,
}

/// One tenant's fleet at a glance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantOverview {
    /// Tenant id.
    pub id: String,
    /// Hosts.
    pub hosts: usize,
    /// Hosts up to date.
    pub compliant: usize,
    /// Hosts per state (every state, zeros included, so the table never changes shape).
    pub by_state: Vec<Count>,
    /// Host-update pairs still open (needed, approved and not yet installed, failed,
    /// waiting for a reboot) per severity.
    pub exposure: Vec<Count>,
    /// Hosts past a deadline (the first [`LISTED`]; `by_state` has the count).
    pub overdue: Vec<HostLine>,
    /// Hosts whose dpkg or agent is broken, or whose update failed.
    pub broken: Vec<HostLine>,
    /// Hosts not heard from.
    pub stale: Vec<HostLine>,
    /// Whether a list above was cut at [`LISTED`] (the tenant page lists every host).
    pub cut: bool,
}

/// Hosts the overview names per list; the tenant page lists all.
pub const LISTED: usize = 20;

impl TenantOverview {
    /// Compliant share in whole percent (100 for an empty fleet: nothing is exposed).
    pub fn percent(&self) -> usize {
        (self.compliant * 100)
            .checked_div(self.hosts)
            .unwrap_or(100)
    }
}

/// One tenant's overview, counted host by host (the console reads the fleet's kept
/// summaries page by page and adds each host here; no report rows are built).
#[derive(Clone, Debug)]
pub struct Tally {
    id: String,
    hosts: usize,
    compliant: usize,
    by_state: [usize; HOST_STATES.len()],
    exposure: [usize; SEVERITIES.len()],
    overdue: Vec<HostLine>,
    broken: Vec<HostLine>,
    stale: Vec<HostLine>,
}

impl Tally {
    /// Nothing counted yet for tenant `id`.
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_string(),
            hosts: 0,
            compliant: 0,
            by_state: [0; HOST_STATES.len()],
            exposure: [0; SEVERITIES.len()],
            overdue: Vec::new(),
            broken: Vec::new(),
            stale: Vec::new(),
        }
    }

    /// Counts one host: its line, its state as a whole, and the severity of each update
    /// still open on it.
    pub fn add(
        &mut self,
        line: impl FnOnce() -> HostLine,
        state: HostCompliance,
        open: impl IntoIterator<Item = Severity>,
    ) {
        self.hosts += 1;
        if state.is_compliant() {
            self.compliant += 1;
        }
        if let Some(i) = HOST_STATES.iter().position(|s| *s == state) {
            self.by_state[i] += 1;
        }
        for sev in open {
            if let Some(i) = SEVERITIES.iter().position(|s| *s == sev) {
                self.exposure[i] += 1;
            }
        }
        let list = match state {
            HostCompliance::Overdue => Some(&mut self.overdue),
            HostCompliance::Broken | HostCompliance::Failed => Some(&mut self.broken),
            HostCompliance::Stale => Some(&mut self.stale),
            _ => None,
        };
        // One more than is shown: whether the list was cut.
        if let Some(l) = list.filter(|l| l.len() <= LISTED) {
            l.push(line());
        }
    }

    /// Counts a host read from its kept summary: its exposure is the severity of each
    /// open update the catalog has (as the report's rows count it).
    pub fn add_counted(&mut self, c: &Counted, v: &Verdict, catalog: &CatalogIndex) {
        let open = c
            .statuses
            .iter()
            .filter(|st| is_open(st.state))
            .filter_map(|st| catalog.get(st.update.as_str()).map(|u| u.severity));
        self.add(|| HostLine::counted(c, v), v.state, open);
    }

    /// The overview.
    pub fn finish(self) -> TenantOverview {
        let (mut overdue, mut broken, mut stale) = (self.overdue, self.broken, self.stale);
        let cut = [&overdue, &broken, &stale].iter().any(|l| l.len() > LISTED);
        for l in [&mut overdue, &mut broken, &mut stale] {
            l.truncate(LISTED);
        }
        let counts = |labels: &mut dyn Iterator<Item = &'static str>, n: &[usize]| {
            labels
                .zip(n)
                .map(|(label, n)| Count {
                    label: label.to_string(),
                    n: *n,
                })
                .collect()
        };
        TenantOverview {
            id: self.id,
            hosts: self.hosts,
            compliant: self.compliant,
            by_state: counts(&mut HOST_STATES.iter().map(|s| s.as_str()), &self.by_state),
            exposure: counts(&mut SEVERITIES.iter().map(|s| s.as_str()), &self.exposure),
            overdue,
            broken,
            stale,
            cut,
        }
    }
}

/// The overview of every tenant in `report`, in the report's tenant order (what the
/// console's tally of kept summaries must agree with, host for host).
#[cfg(test)]
pub fn overview(report: &ComplianceReport, tenants: &[String]) -> Vec<TenantOverview> {
    tenants
        .iter()
        .map(|t| {
            let mut tally = Tally::new(t);
            for h in report.hosts.iter().filter(|h| h.tenant.as_str() == t) {
                let open = report
                    .rows
                    .iter()
                    .filter(|r| r.tenant.as_str() == t && r.host == h.host && is_open(r.state))
                    .map(|r| r.severity);
                tally.add(|| HostLine::from(h), h.compliance, open);
            }
            tally.finish()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchday_types::api::ComplianceRow;
    use patchday_types::{Severity, UpdateState};

    fn host(tenant: &str, name: &str, c: HostCompliance) -> HostSummaryRow {
        HostSummaryRow {
            tenant: tenant.parse().unwrap(),
            host: format!("h-{name}").parse().unwrap(),
            hostname: name.into(),
            groups: vec![],
            last_seen: None,
            signed: Default::default(),
            dpkg_broken: None,
            compliance: c,
            compliance_reason: Some(format!("{name} because")),
        }
    }

    fn row(tenant: &str, name: &str, sev: Severity, state: UpdateState) -> ComplianceRow {
        ComplianceRow {
            tenant: tenant.parse().unwrap(),
            host: format!("h-{name}").parse().unwrap(),
            hostname: name.into(),
            groups: vec![],
            update: "PD-1".parse().unwrap(),
            severity: sev,
            state,
            message: None,
        }
    }

    #[test]
    fn the_overview_counts_states_and_open_exposure_per_tenant() {
        let report = ComplianceReport {
            generated_at: None,
            hosts: vec![
                host("acme", "a", HostCompliance::UpToDate),
                host("acme", "b", HostCompliance::Overdue),
                host("acme", "c", HostCompliance::Broken),
                host("acme", "d", HostCompliance::Stale),
                host("globex", "g", HostCompliance::Exposed),
            ],
            rows: vec![
                row("acme", "b", Severity::Critical, UpdateState::Approved),
                row("acme", "a", Severity::Critical, UpdateState::Installed),
                row("acme", "c", Severity::Low, UpdateState::Failed),
                row("globex", "g", Severity::Critical, UpdateState::Needed),
            ],
        };
        let o = overview(&report, &["acme".into()]);
        assert_eq!(o.len(), 1, "only the tenants asked for");
        let acme = &o[0];
        assert_eq!((acme.hosts, acme.compliant, acme.percent()), (4, 1, 25));
        let n = |v: &[Count], l: &str| v.iter().find(|c| c.label == l).unwrap().n;
        assert_eq!(n(&acme.by_state, "overdue"), 1);
        assert_eq!(n(&acme.by_state, "exposed"), 0, "zeros are listed");
        assert_eq!(
            n(&acme.exposure, "critical"),
            1,
            "installed is not exposure; globex's row is not acme's"
        );
        assert_eq!(n(&acme.exposure, "low"), 1);
        assert_eq!(acme.overdue[0].hostname, "b");
        assert_eq!(acme.broken[0].hostname, "c");
        assert_eq!(acme.stale[0].reason, "d because");
    }

    #[test]
    fn long_lists_are_cut_for_the_overview() {
        let report = ComplianceReport {
            generated_at: None,
            hosts: (0..LISTED + 5)
                .map(|i| host("acme", &format!("s{i}"), HostCompliance::Stale))
                .collect(),
            rows: vec![],
        };
        let o = &overview(&report, &["acme".into()])[0];
        assert_eq!((o.stale.len(), o.cut), (LISTED, true));
        let n = o.by_state.iter().find(|c| c.label == "stale").unwrap().n;
        assert_eq!(n, LISTED + 5, "the count stays whole");
    }

    #[test]
    fn an_empty_fleet_is_fully_compliant() {
        let o = overview(&ComplianceReport::default(), &["acme".into()]);
        assert_eq!(o[0].percent(), 100);
    }

    /// Issue 11, point 1: the overview counted from the kept summaries equals the one
    /// counted from the report's rows and host summaries (the whole evaluations), for a
    /// fleet with a host in every state, open updates of every severity, an update the
    /// catalog no longer has, decisions with and without a reason, and more overdue hosts
    /// than the overview lists.
    #[test]
    fn the_overview_from_kept_summaries_equals_the_reports_for_a_mixed_fleet() {
        use crate::fleet_view::{self, Counted, Evaluated, Shared};
        use patchday_core::applicability::UpdateStatus;
        use patchday_store::{HostMarks, HostRecord, HostSigning};
        use patchday_types::{Classification, PayloadKind, PayloadRef, Release, UpdateDocument};

        let ts = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let now = ts("2026-12-01T12:00:00Z");
        let stale_after = jiff::SignedDuration::from_hours(1);
        let doc = |id: &str, severity| UpdateDocument {
            id: id.parse().unwrap(),
            title: id.into(),
            product: "debian-12".into(),
            classification: Classification::Security,
            severity,
            cves: vec![],
            supersedes: vec![],
            release: Release::Emergency {
                reason: "test".into(),
            },
            payloads: vec![PayloadRef {
                target: format!("{id}.deb"),
                kind: PayloadKind::Deb,
                package: id.to_lowercase(),
                version: "1.0-2".into(),
                architecture: "amd64".into(),
                source: id.to_lowercase(),
                source_version: "1.0-2".into(),
            }],
            description: String::new(),
            tenants: vec![],
            upstream: None,
        };
        let catalog = CatalogIndex::new(vec![
            doc("PD-A", Severity::Critical),
            doc("PD-B", Severity::Important),
            doc("PD-C", Severity::Moderate),
            doc("PD-D", Severity::Low),
        ]);
        let st = |u: &str, state: UpdateState| UpdateStatus {
            update: u.parse().unwrap(),
            state,
            message: None,
            missing: vec![format!("{u}.deb")],
            deadline: None,
            overdue_at: None,
        };
        let due = |mut s: UpdateStatus, deadline: &str, overdue_at: Option<&str>| {
            s.deadline = Some(ts(deadline));
            s.overdue_at = overdue_at.map(ts);
            s
        };
        let said = |mut s: UpdateStatus, m: &str| {
            s.message = Some(m.into());
            s
        };
        let seen = Some("2026-12-01T11:50:00Z");
        // (name, last seen, agent error, dpkg's words, statuses)
        type Case = (
            String,
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
            Vec<UpdateStatus>,
        );
        let mut fleet: Vec<Case> = vec![
            (
                "up".into(),
                seen,
                None,
                None,
                vec![
                    st("PD-A", UpdateState::Installed),
                    st("PD-B", UpdateState::Superseded),
                ],
            ),
            (
                "exposed".into(),
                seen,
                None,
                None,
                vec![
                    st("PD-A", UpdateState::Installed),
                    st("PD-B", UpdateState::Needed),
                ],
            ),
            (
                "pending".into(),
                seen,
                None,
                None,
                vec![due(
                    st("PD-C", UpdateState::Approved),
                    "2026-12-02T00:00:00Z",
                    None,
                )],
            ),
            (
                "graced".into(),
                seen,
                None,
                None,
                vec![due(
                    st("PD-C", UpdateState::Downloading),
                    "2026-11-30T00:00:00Z",
                    Some("2026-12-01T00:00:00Z"),
                )],
            ),
            (
                "in-grace".into(),
                seen,
                None,
                None,
                vec![due(
                    st("PD-C", UpdateState::Downloaded),
                    "2026-11-30T00:00:00Z",
                    Some("2026-12-03T00:00:00Z"),
                )],
            ),
            (
                "reboot".into(),
                seen,
                None,
                None,
                vec![st("PD-A", UpdateState::InstalledPendingReboot)],
            ),
            (
                "reboot-late".into(),
                seen,
                None,
                None,
                vec![due(
                    st("PD-A", UpdateState::InstalledPendingReboot),
                    "2026-11-30T00:00:00Z",
                    None,
                )],
            ),
            (
                "failed".into(),
                seen,
                Some("install PD-D: dpkg said no"),
                None,
                vec![
                    said(st("PD-D", UpdateState::Failed), "dpkg said no"),
                    st("PD-A", UpdateState::Approved),
                ],
            ),
            (
                "remove-failed".into(),
                seen,
                None,
                None,
                vec![st("PD-C", UpdateState::RemoveFailed)],
            ),
            (
                "dpkg".into(),
                seen,
                None,
                Some("pd-x is half-configured"),
                vec![st("PD-B", UpdateState::Needed)],
            ),
            (
                "agent-broken".into(),
                seen,
                Some("broken: dpkg was interrupted"),
                None,
                vec![st("PD-A", UpdateState::Approved)],
            ),
            (
                "expired".into(),
                seen,
                Some("run: catalog rejected: timestamp expired at 2026-11-30T00:00:00Z"),
                None,
                vec![st("PD-B", UpdateState::Needed)],
            ),
            (
                "stale".into(),
                Some("2026-12-01T09:00:00Z"),
                None,
                None,
                vec![st("PD-B", UpdateState::Needed)],
            ),
            ("never".into(), None, None, None, vec![]),
            (
                "declined".into(),
                seen,
                None,
                None,
                vec![st("PD-B", UpdateState::Declined)],
            ),
            (
                "excused".into(),
                seen,
                None,
                None,
                vec![said(st("PD-B", UpdateState::Declined), "tested elsewhere")],
            ),
            (
                "uncatalogued".into(),
                seen,
                None,
                None,
                vec![
                    st("PD-Z", UpdateState::Needed),
                    st("PD-D", UpdateState::Needed),
                ],
            ),
            (
                "other-error".into(),
                seen,
                Some("download: connection reset"),
                None,
                vec![st("PD-A", UpdateState::Approved)],
            ),
        ];
        for i in 0..LISTED + 2 {
            fleet.push((
                format!("late-{i:02}"),
                seen,
                None,
                None,
                vec![due(
                    st("PD-A", UpdateState::Approved),
                    "2026-11-30T00:00:00Z",
                    None,
                )],
            ));
        }

        let shared = Shared::new("catalog-1", 7);
        let tenant: patchday_types::TenantId = "acme".parse().unwrap();
        let mut report = ComplianceReport::default();
        let mut tally = Tally::new("acme");
        for (i, (name, last_seen, error, dpkg, statuses)) in fleet.into_iter().enumerate() {
            let host = HostRecord {
                id: format!("h-{i:03}").parse().unwrap(),
                hostname: name,
                groups: vec!["web".parse().unwrap()],
                enrolled_at: ts("2026-11-01T00:00:00Z"),
                last_seen: last_seen.map(ts),
                facts_sha256: None,
            };
            let kept = fleet_view::verdict(
                &shared,
                &host,
                &HostMarks::default(),
                &statuses,
                dpkg.map(String::from),
            )
            .unwrap();
            assert!(
                kept.summary.len() <= kept.body.len(),
                "the summary is the smaller"
            );
            // The report's way: the whole evaluation, its rows and host summary.
            let (whole, dpkg_broken) = fleet_view::read(&kept.body).unwrap();
            let agent_error = error.map(|e| (e.to_string(), now));
            let (rows, summary) = crate::routes::report::host_rows(
                &tenant,
                Evaluated {
                    host: host.clone(),
                    signing: HostSigning {
                        agent_error: agent_error.clone(),
                        ..Default::default()
                    },
                    statuses: whole,
                    dpkg_broken,
                },
                &catalog,
                stale_after,
                now,
            );
            report.rows.extend(rows);
            report.hosts.push(summary);
            // The console's way: the kept summary.
            let (statuses, dpkg_broken) = fleet_view::read(&kept.summary).unwrap();
            let c = Counted {
                host,
                agent_error: agent_error.map(|(e, _)| e),
                statuses,
                dpkg_broken,
            };
            let v = c.verdict(stale_after, now);
            assert_eq!(
                (v.state, v.reason.clone().unwrap_or_default()),
                (
                    report.hosts.last().unwrap().compliance,
                    report
                        .hosts
                        .last()
                        .unwrap()
                        .compliance_reason
                        .clone()
                        .unwrap_or_default()
                ),
                "{}: the same state and reason",
                c.host.hostname
            );
            tally.add_counted(&c, &v, &catalog);
        }
        let counted = tally.finish();
        let from_report = overview(&report, &["acme".into()]).pop().unwrap();
        assert_eq!(counted, from_report);
        // And the fleet is as mixed as it claims: a host in every state, exposure at every
        // severity.
        let n = |v: &[Count], l: &str| v.iter().find(|c| c.label == l).unwrap().n;
        for state in HOST_STATES {
            assert!(n(&counted.by_state, state.as_str()) > 0, "no {state} host");
        }
        for sev in SEVERITIES {
            assert!(
                n(&counted.exposure, sev.as_str()) > 0,
                "no {} exposure",
                sev.as_str()
            );
        }
        assert!(counted.cut, "more overdue hosts than listed");
    }
}
