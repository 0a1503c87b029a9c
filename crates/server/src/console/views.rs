//! What the console's pages show, computed from the API's own answers by pure
//! functions (no I/O, no clock), so the numbers on a page are the numbers of
//! `GET /v1/report` and can be tested without a browser.

pub use patchday_core::compliance::{is_open, SEVERITIES};
use patchday_types::api::{ComplianceReport, HostCompliance, HostSummaryRow};

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

/// The overview of every tenant in `report`, in the report's tenant order.
pub fn overview(report: &ComplianceReport, tenants: &[String]) -> Vec<TenantOverview> {
    tenants
        .iter()
        .map(|t| {
            let hosts: Vec<&HostSummaryRow> = report
                .hosts
                .iter()
                .filter(|h| h.tenant.as_str() == t)
                .collect();
            let lines = |want: &dyn Fn(HostCompliance) -> bool| -> Vec<HostLine> {
                hosts
                    .iter()
                    .filter(|h| want(h.compliance))
                    .take(LISTED + 1)
                    .map(|h| HostLine::from(*h))
                    .collect()
            };
            let by_state = HOST_STATES
                .iter()
                .map(|s| Count {
                    label: s.as_str().to_string(),
                    n: hosts.iter().filter(|h| h.compliance == *s).count(),
                })
                .collect();
            let exposure = SEVERITIES
                .iter()
                .map(|sev| Count {
                    label: sev.as_str().to_string(),
                    n: report
                        .rows
                        .iter()
                        .filter(|r| r.tenant.as_str() == t && r.severity == *sev)
                        .filter(|r| is_open(r.state))
                        .count(),
                })
                .collect();
            let (mut overdue, mut broken, mut stale) = (
                lines(&|c| c == HostCompliance::Overdue),
                lines(&|c| matches!(c, HostCompliance::Broken | HostCompliance::Failed)),
                lines(&|c| c == HostCompliance::Stale),
            );
            let cut = [&overdue, &broken, &stale].iter().any(|l| l.len() > LISTED);
            for l in [&mut overdue, &mut broken, &mut stale] {
                l.truncate(LISTED);
            }
            TenantOverview {
                id: t.clone(),
                hosts: hosts.len(),
                compliant: hosts.iter().filter(|h| h.compliance.is_compliant()).count(),
                by_state,
                exposure,
                overdue,
                broken,
                stale,
                cut,
            }
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
}
