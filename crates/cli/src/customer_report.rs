//! Issue 11, point 6: the customer-ready report of one tenant for one period, as a
//! self-contained HTML file (an askama template, escaped by default) and a PDF printed
//! from it by headless Chromium. Built from what the API answers (the state history
//! read model, the compliance report, the tenant's updates and the fleet audit) by
//! pure functions; only [`print_pdf`] runs a program.

use anyhow::Context;
use askama::Template;
use jiff::{SignedDuration, Timestamp};
use patchday_audit::fleet::FleetReport;
use patchday_core::compliance::{is_open, SEVERITIES};
use patchday_types::api::{ComplianceReport, HistoryAnswer, HostCompliance, Tenant, TenantUpdate};
use patchday_types::{Severity, UpdateState};
use std::collections::BTreeMap;
use std::path::Path;

/// Everything the report is made from.
pub struct Input<'a> {
    /// The customer.
    pub tenant: &'a Tenant,
    /// Start of the period.
    pub from: Timestamp,
    /// End of the period.
    pub to: Timestamp,
    /// The tenant's whole state history.
    pub history: &'a HistoryAnswer,
    /// The tenant's compliance now.
    pub report: &'a ComplianceReport,
    /// The catalog as the tenant's calendar sees it (severities, titles, patch day).
    pub updates: &'a [TenantUpdate],
    /// The fleet audit plan.
    pub audit: &'a FleetReport,
}

/// One severity's line of the executive summary.
pub struct SeverityLine {
    /// Severity.
    pub severity: String,
    /// Open host-updates at the start of the period.
    pub then: usize,
    /// Open host-updates at its end.
    pub now: usize,
    /// Installs in the period.
    pub installs: usize,
    /// Median time from publication to installed, in words.
    pub median: String,
    /// Slowest.
    pub worst: String,
}

/// An open host-update and why it is open.
pub struct Remaining {
    /// Host name.
    pub host: String,
    /// Update id.
    pub update: String,
    /// Severity.
    pub severity: String,
    /// State.
    pub state: String,
    /// Why, in words.
    pub why: String,
}

/// A host that is not up to date as a whole (stale, broken...).
pub struct HostIssue {
    /// Host name.
    pub host: String,
    /// Its state.
    pub state: String,
    /// Why.
    pub why: String,
}

/// The report, ready to render.
#[derive(Template)]
#[template(path = "customer_report.html")]
pub struct CustomerReport {
    /// Customer name.
    pub customer: String,
    /// Tenant id.
    pub tenant: String,
    /// Period start.
    pub from: String,
    /// Period end.
    pub to: String,
    /// When the data was read.
    pub generated: String,
    /// Hosts now.
    pub hosts: usize,
    /// Hosts up to date now.
    pub compliant: usize,
    /// Open host-updates at start and end, all severities.
    pub open_then: usize,
    /// See `open_then`.
    pub open_now: usize,
    /// Installs in the period.
    pub installs: usize,
    /// Per severity.
    pub severities: Vec<SeverityLine>,
    /// Open host-updates now, worst first.
    pub remaining: Vec<Remaining>,
    /// Updates declined for this customer, with the reason.
    pub declined: Vec<Remaining>,
    /// Hosts not up to date as a whole.
    pub host_issues: Vec<HostIssue>,
    /// Fleet audit plan.
    pub audit: Vec<patchday_audit::fleet::FleetActionLine>,
    /// Hosts that reported audit facts.
    pub audit_hosts: usize,
}

/// A duration for people: `3 d 4 h`, `2 h 5 min`, `40 s`.
pub fn human(d: SignedDuration) -> String {
    let s = d.as_secs().max(0);
    let (days, hours, mins) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

fn median(v: &mut [i64]) -> Option<i64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    Some(v[v.len() / 2])
}

/// Builds the report (pure: `now` is the compliance report's time).
pub fn build(i: &Input<'_>) -> CustomerReport {
    let severity_of: BTreeMap<&str, Severity> = i
        .updates
        .iter()
        .map(|u| (u.update.id.as_str(), u.update.severity))
        .collect();
    let published: BTreeMap<&str, Timestamp> = i
        .history
        .time_to_install
        .iter()
        .filter_map(|t| t.published_at.map(|at| (t.update.as_str(), at)))
        .collect();
    // The state of each (host, update) as of a time: its last history entry by then.
    let states_at = |at: Timestamp| {
        let mut m: BTreeMap<(&str, &str), UpdateState> = BTreeMap::new();
        for e in i.history.entries.iter().filter(|e| e.at <= at) {
            m.insert((e.host.as_str(), e.update.as_str()), e.state);
        }
        m
    };
    let open_by_severity = |m: &BTreeMap<(&str, &str), UpdateState>, sev: Severity| {
        m.iter()
            .filter(|((_, u), s)| is_open(**s) && severity_of.get(u) == Some(&sev))
            .count()
    };
    let (then, now) = (states_at(i.from), states_at(i.to));
    // Installs in the period, with their time from publication.
    let mut per_sev: BTreeMap<Severity, Vec<i64>> = BTreeMap::new();
    let mut installs = 0;
    for e in &i.history.entries {
        if e.state != UpdateState::Installed
            || e.previous == Some(UpdateState::Installed)
            || e.at < i.from
            || e.at > i.to
        {
            continue;
        }
        installs += 1;
        if let (Some(sev), Some(p)) = (
            severity_of.get(e.update.as_str()),
            published.get(e.update.as_str()),
        ) {
            per_sev
                .entry(*sev)
                .or_default()
                .push(e.at.duration_since(*p).as_secs());
        }
    }
    let severities = SEVERITIES
        .iter()
        .map(|sev| {
            let mut v = per_sev.get(sev).cloned().unwrap_or_default();
            let worst = v.iter().max().copied();
            let med = median(&mut v);
            let words = |x: Option<i64>| {
                x.map(|s| human(SignedDuration::from_secs(s)))
                    .unwrap_or_else(|| "none installed".into())
            };
            SeverityLine {
                severity: sev.as_str().into(),
                then: open_by_severity(&then, *sev),
                now: open_by_severity(&now, *sev),
                installs: v.len(),
                median: words(med),
                worst: words(worst),
            }
        })
        .collect();
    let wait_of: BTreeMap<&str, &str> = i
        .updates
        .iter()
        .filter_map(|u| u.wait.as_deref().map(|w| (u.update.id.as_str(), w)))
        .collect();
    let why = |state: UpdateState, update: &str, message: Option<&str>| -> String {
        let base = match state {
            UpdateState::Needed => match wait_of.get(update) {
                Some(w) => format!("not approved yet: {w}"),
                None => "not approved yet".to_string(),
            },
            UpdateState::Approved => "approved; the host has not installed it yet".into(),
            UpdateState::Downloading | UpdateState::Downloaded | UpdateState::Installing => {
                "being installed".into()
            }
            UpdateState::InstalledPendingReboot => "installed; waiting for a reboot".into(),
            UpdateState::Failed => "the install failed".into(),
            UpdateState::RemoveFailed => "taking it back failed".into(),
            UpdateState::Declined => "declined".into(),
            other => other.as_str().into(),
        };
        match message.filter(|m| !m.is_empty()) {
            Some(m) => format!("{base} ({m})"),
            None => base,
        }
    };
    let rank = |s: &str| SEVERITIES.iter().position(|x| x.as_str() == s).unwrap_or(9);
    let mut remaining: Vec<Remaining> = i
        .report
        .rows
        .iter()
        .filter(|r| is_open(r.state))
        .map(|r| Remaining {
            host: r.hostname.clone(),
            update: r.update.to_string(),
            severity: r.severity.as_str().into(),
            state: r.state.as_str().into(),
            why: why(r.state, r.update.as_str(), r.message.as_deref()),
        })
        .collect();
    remaining.sort_by(|a, b| {
        (rank(&a.severity), &a.update, &a.host).cmp(&(rank(&b.severity), &b.update, &b.host))
    });
    let declined = i
        .report
        .rows
        .iter()
        .filter(|r| r.state == UpdateState::Declined)
        .map(|r| Remaining {
            host: r.hostname.clone(),
            update: r.update.to_string(),
            severity: r.severity.as_str().into(),
            state: r.state.as_str().into(),
            why: r.message.clone().unwrap_or_default(),
        })
        .collect();
    let host_issues = i
        .report
        .hosts
        .iter()
        .filter(|h| {
            matches!(
                h.compliance,
                HostCompliance::Stale
                    | HostCompliance::Broken
                    | HostCompliance::Failed
                    | HostCompliance::CatalogExpired
                    | HostCompliance::Overdue
            )
        })
        .map(|h| HostIssue {
            host: h.hostname.clone(),
            state: h.compliance.as_str().into(),
            why: h.compliance_reason.clone().unwrap_or_default(),
        })
        .collect();
    let mine = i.audit.tenant(i.tenant.id.as_str());
    let audit = i.audit.lines(i.tenant.id.as_str());
    let sec = |t: Timestamp| t.round(jiff::Unit::Second).unwrap_or(t).to_string();
    CustomerReport {
        customer: i.tenant.name.clone(),
        tenant: i.tenant.id.to_string(),
        from: sec(i.from),
        to: sec(i.to),
        generated: i.report.generated_at.map(sec).unwrap_or_default(),
        hosts: i.report.hosts.len(),
        compliant: i
            .report
            .hosts
            .iter()
            .filter(|h| h.compliance.is_compliant())
            .count(),
        open_then: then.values().filter(|s| is_open(**s)).count(),
        open_now: now.values().filter(|s| is_open(**s)).count(),
        installs,
        severities,
        remaining,
        declined,
        host_issues,
        audit,
        audit_hosts: mine.map_or(0, |r| r.hosts),
    }
}

/// Renders the report's HTML.
pub fn html(r: &CustomerReport) -> anyhow::Result<String> {
    r.render().context("rendering the report")
}

/// Prints `html` (a file) to `pdf` with headless Chromium.
pub fn print_pdf(html: &Path, pdf: &Path) -> anyhow::Result<()> {
    chromium(
        html,
        pdf,
        &[
            format!("--print-to-pdf={}", pdf.display()),
            "--no-pdf-header-footer".into(),
        ],
        b"%PDF",
    )
}

/// Renders `html` (a file) to a PNG screenshot with headless Chromium (what the test
/// looks at).
pub fn screenshot_png(html: &Path, png: &Path) -> anyhow::Result<()> {
    chromium(
        html,
        png,
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1000,1400".into(),
            "--hide-scrollbars".into(),
        ],
        b"\x89PNG",
    )
}

/// Runs headless Chromium on `html` with `args` and checks that `out` starts with `magic`.
fn chromium(html: &Path, out: &Path, args: &[String], magic: &[u8]) -> anyhow::Result<()> {
    let browser = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|n| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|d| d.join(n))
                .find(|p| p.is_file())
        })
        .context("--pdf needs headless Chromium on PATH (apt-get install chromium); --html works without it")?;
    let profile = tempfile::tempdir().context("making a browser profile directory")?;
    let html =
        std::fs::canonicalize(html).with_context(|| format!("reading {}", html.display()))?;
    let _ = std::fs::remove_file(out);
    let run = std::process::Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", html.display()))
        .output()
        .with_context(|| format!("running {}", browser.display()))?;
    let ok = std::fs::read(out).is_ok_and(|b| b.starts_with(magic));
    anyhow::ensure!(
        ok,
        "{} wrote nothing usable to {} (exit {}): {}",
        browser.display(),
        out.display(),
        run.status,
        String::from_utf8_lossy(&run.stderr)
            .lines()
            .last()
            .unwrap_or("")
    );
    Ok(())
}

/// A period bound: a date (`2026-11-01`, midnight UTC; for `--to` the end of that day
/// when `end_of_day`) or an RFC 3339 time.
pub fn parse_bound(s: &str, end_of_day: bool) -> anyhow::Result<Timestamp> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    let d: jiff::civil::Date = s.parse().with_context(|| {
        format!("{s:?} is neither a date (2026-11-01) nor an RFC 3339 time (2026-11-01T00:00:00Z)")
    })?;
    let d = if end_of_day { d.tomorrow()? } else { d };
    Ok(d.to_zoned(jiff::tz::TimeZone::UTC)?.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchday_types::api::{ComplianceRow, HistoryEntry, HostSummaryRow, TimeToInstall};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn entry(
        host: &str,
        update: &str,
        prev: Option<UpdateState>,
        state: UpdateState,
        at: &str,
    ) -> HistoryEntry {
        HistoryEntry {
            host: host.parse().unwrap(),
            update: update.parse().unwrap(),
            state,
            previous: prev,
            message: None,
            at: ts(at),
        }
    }

    fn update(id: &str, sev: Severity, wait: Option<&str>) -> TenantUpdate {
        let doc: patchday_types::UpdateDocument = serde_json::from_value(serde_json::json!({
            "id": id, "title": format!("{id} title"), "product": "debian", "classification": "security",
            "severity": sev.as_str(), "cves": [], "supersedes": [],
            "release": {"lane": "emergency", "reason": "t"}, "payloads": [], "description": ""
        }))
        .unwrap_or_else(|e| panic!("update document: {e}"));
        TenantUpdate {
            update: doc,
            approvable: wait.is_none(),
            approvable_at: None,
            wait: wait.map(String::from),
        }
    }

    #[test]
    fn the_summary_compares_the_period_start_and_end_and_times_installs_per_severity() {
        use UpdateState::*;
        let history = HistoryAnswer {
            entries: vec![
                entry("h1", "U-CRIT", None, Needed, "2026-11-01T10:00:00Z"),
                entry("h2", "U-CRIT", None, Needed, "2026-11-01T10:00:00Z"),
                entry("h1", "U-LOW", None, Needed, "2026-11-01T10:00:00Z"),
                entry(
                    "h1",
                    "U-CRIT",
                    Some(Needed),
                    Installed,
                    "2026-11-03T10:00:00Z",
                ),
                entry(
                    "h2",
                    "U-CRIT",
                    Some(Needed),
                    Installed,
                    "2026-11-05T10:00:00Z",
                ),
            ],
            time_to_install: vec![TimeToInstall {
                update: "U-CRIT".parse().unwrap(),
                published_at: Some(ts("2026-11-01T10:00:00Z")),
                hosts: 2,
                installed: 2,
                median_seconds: None,
                p90_seconds: None,
                max_seconds: None,
            }],
        };
        let tenant = Tenant {
            id: "acme".parse().unwrap(),
            name: "ACME Corp".into(),
            patch_day: Default::default(),
            max_hosts: None,
        };
        let report = ComplianceReport {
            generated_at: Some(ts("2026-11-30T00:00:00Z")),
            hosts: vec![HostSummaryRow {
                tenant: "acme".parse().unwrap(),
                host: "h1".parse().unwrap(),
                hostname: "web-1".into(),
                groups: vec![],
                last_seen: None,
                signed: Default::default(),
                dpkg_broken: None,
                compliance: HostCompliance::Stale,
                compliance_reason: Some("never checked in".into()),
            }],
            rows: vec![ComplianceRow {
                tenant: "acme".parse().unwrap(),
                host: "h1".parse().unwrap(),
                hostname: "web-1".into(),
                groups: vec![],
                update: "U-LOW".parse().unwrap(),
                severity: Severity::Low,
                state: Needed,
                message: None,
            }],
        };
        let updates = vec![
            update("U-CRIT", Severity::Critical, None),
            update(
                "U-LOW",
                Severity::Low,
                Some("approvable on patch day 2026-12-08"),
            ),
        ];
        let audit = FleetReport {
            tenants: vec![],
            host_names: vec![],
            distinct_package_versions: 0,
            package_entries: 0,
        };
        let r = build(&Input {
            tenant: &tenant,
            from: ts("2026-11-02T00:00:00Z"),
            to: ts("2026-11-30T00:00:00Z"),
            history: &history,
            report: &report,
            updates: &updates,
            audit: &audit,
        });
        assert_eq!((r.open_then, r.open_now, r.installs), (3, 1, 2));
        let crit = &r.severities[0];
        assert_eq!((crit.then, crit.now, crit.installs), (2, 0, 2));
        assert_eq!(
            crit.median, "4 d 0 h",
            "the median of 2 d and 4 d (upper middle)"
        );
        assert_eq!(crit.worst, "4 d 0 h");
        assert_eq!(r.severities[3].now, 1);
        assert_eq!(
            r.remaining[0].why,
            "not approved yet: approvable on patch day 2026-12-08"
        );
        assert_eq!(r.host_issues[0].why, "never checked in");
        let html = html(&r).unwrap();
        assert!(html.contains("ACME Corp") && html.contains("web-1"));
        assert!(!html.contains("<details"), "print shows everything");
    }

    #[test]
    fn hostile_names_are_escaped() {
        let mut r = build(&Input {
            tenant: &Tenant {
                id: "acme".parse().unwrap(),
                name: "<script>alert(1)</script>".into(),
                patch_day: Default::default(),
                max_hosts: None,
            },
            from: ts("2026-11-01T00:00:00Z"),
            to: ts("2026-11-30T00:00:00Z"),
            history: &HistoryAnswer {
                entries: vec![],
                time_to_install: vec![],
            },
            report: &ComplianceReport::default(),
            updates: &[],
            audit: &FleetReport {
                tenants: vec![],
                host_names: vec![],
                distinct_package_versions: 0,
                package_entries: 0,
            },
        });
        r.tenant = "a\"b".into();
        let html = html(&r).unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(
            html.contains("alert(1)"),
            "the name is shown, escaped: {html}"
        );
    }

    #[test]
    fn period_bounds_are_dates_or_times() {
        assert_eq!(
            parse_bound("2026-11-01", false).unwrap(),
            ts("2026-11-01T00:00:00Z")
        );
        assert_eq!(
            parse_bound("2026-11-30", true).unwrap(),
            ts("2026-12-01T00:00:00Z")
        );
        assert_eq!(
            parse_bound("2026-11-05T10:00:00Z", true).unwrap(),
            ts("2026-11-05T10:00:00Z")
        );
        assert!(parse_bound("last week", false)
            .unwrap_err()
            .to_string()
            .contains("neither a date"));
    }
}
