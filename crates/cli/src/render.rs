//! Turning API answers into tables, JSON and CSV.

use patchday_text::{csv_cell, terminal};
use patchday_types::api::{ComplianceReport, HostCompliance};
use patchday_types::UpdateState;
use serde::Serialize;
use std::collections::BTreeMap;

/// Output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// JSON for scripts.
    Json,
    /// CSV for spreadsheets.
    Csv,
}

/// A rectangular result.
#[derive(Debug, Default, Serialize)]
pub struct Table {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows.
    pub rows: Vec<Vec<String>>,
    /// Columns whose cells are counts: JSON shows them as numbers (issue 9, point 7).
    #[serde(skip)]
    pub numeric: std::collections::BTreeSet<String>,
}

impl Table {
    /// A table with these columns.
    pub fn new(cols: &[&str]) -> Self {
        Self {
            columns: cols.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
            numeric: Default::default(),
        }
    }

    /// Marks columns as counts, written as JSON numbers.
    pub fn numbers(mut self, cols: &[&str]) -> Self {
        self.numeric.extend(cols.iter().map(|c| c.to_string()));
        self
    }

    /// Renders in a format.
    pub fn render(&self, f: Format) -> String {
        match f {
            Format::Table => self.text(),
            Format::Csv => self.csv(),
            Format::Json => {
                // Counts are numbers; an empty count (no limit) is null.
                let cell = |col: &str, v: &str| match (self.numeric.contains(col), v.parse::<u64>())
                {
                    (true, Ok(n)) => serde_json::Value::from(n),
                    (true, Err(_)) if v.is_empty() => serde_json::Value::Null,
                    _ => serde_json::Value::from(v),
                };
                let objs: Vec<BTreeMap<&str, serde_json::Value>> = self
                    .rows
                    .iter()
                    .map(|r| {
                        self.columns
                            .iter()
                            .map(String::as_str)
                            .zip(r.iter().map(String::as_str))
                            .map(|(c, v)| (c, cell(c, v)))
                            .collect()
                    })
                    .collect();
                serde_json::to_string_pretty(&objs).unwrap_or_default() + "\n"
            }
        }
    }

    /// Aligned columns; every cell through `patchday_text::terminal` (issue 8, finding 5).
    fn text(&self) -> String {
        let escaped: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(|c| terminal(c).into_owned()).collect())
            .collect();
        let mut w: Vec<usize> = self
            .columns
            .iter()
            .map(|c| terminal(c).chars().count())
            .collect();
        for r in &escaped {
            for (i, c) in r.iter().enumerate() {
                if let Some(x) = w.get_mut(i) {
                    *x = (*x).max(c.chars().count());
                }
            }
        }
        let line = |r: &Vec<String>| {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{:<width$}", c, width = w.get(i).copied().unwrap_or(0)))
                .collect();
            cells.join("  ").trim_end().to_string() + "\n"
        };
        let mut out = line(
            &self
                .columns
                .iter()
                .map(|c| terminal(c).to_uppercase())
                .collect(),
        );
        for r in &escaped {
            out.push_str(&line(r));
        }
        out
    }

    /// RFC 4180 CSV written by the `csv` crate; every cell through
    /// `patchday_text::csv_cell` (no control characters, no formula cells; issue 8,
    /// finding 5).
    fn csv(&self) -> String {
        let mut w = csv::WriterBuilder::new()
            .flexible(true)
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        for r in std::iter::once(&self.columns).chain(&self.rows) {
            // Writing to a Vec cannot fail; a row of other length is written as it is.
            let _ = w.write_record(r.iter().map(|c| csv_cell(c).into_owned()));
        }
        let bytes = w.into_inner().unwrap_or_default();
        String::from_utf8(bytes).unwrap_or_default()
    }
}

/// Counts of per-(host, update) states.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    hosts: usize,
    compliant: usize,
    needed: usize,
    approved: usize,
    installed: usize,
    pending_reboot: usize,
    failed: usize,
    declined: usize,
    /// Hosts per `HOST_STATE_COLS` entry.
    host_states: [usize; 8],
}

impl Counts {
    fn add(&mut self, s: UpdateState) {
        match s {
            UpdateState::Needed => self.needed += 1,
            UpdateState::Approved
            | UpdateState::Downloading
            | UpdateState::Downloaded
            | UpdateState::Installing => self.approved += 1,
            UpdateState::Installed => self.installed += 1,
            UpdateState::InstalledPendingReboot => self.pending_reboot += 1,
            UpdateState::Failed => self.failed += 1,
            // Issue 10, point 3: a decline with removal is still a decline.
            UpdateState::Declined | UpdateState::Removed | UpdateState::RemoveFailed => {
                self.declined += 1
            }
            _ => {}
        }
    }
    fn cells(&self, with_hosts: bool) -> Vec<String> {
        let mut v = Vec::new();
        if with_hosts {
            v.push(self.hosts.to_string());
            v.push(self.compliant.to_string());
            v.extend(self.host_states.map(|n| n.to_string()));
        }
        v.extend(
            [
                self.needed,
                self.approved,
                self.installed,
                self.pending_reboot,
                self.failed,
                self.declined,
            ]
            .map(|n| n.to_string()),
        );
        v
    }
}

const COUNT_COLS: [&str; 6] = [
    "needed",
    "approved",
    "installed",
    "pending-reboot",
    "failed",
    "declined",
];

/// Report grouping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    /// One row per tenant.
    Tenant,
    /// One row per (tenant, group).
    Group,
    /// One row per host.
    Host,
    /// One row per (tenant, update).
    Update,
    /// One row per (host, update).
    Detail,
}

/// Whether a host (by tenant and id) is compliant: the server's verdict is
/// `up-to-date` (nothing it needs is missing, approved or not, unless declined with a
/// reason; issue 9, point 7).
pub fn compliant_hosts(r: &ComplianceReport) -> BTreeMap<(String, String), bool> {
    r.hosts
        .iter()
        .map(|h| {
            (
                (h.tenant.to_string(), h.host.to_string()),
                h.compliance.is_compliant(),
            )
        })
        .collect()
}

/// Host states counted in tenant and group tables (issue 9, point 7).
const HOST_STATE_COLS: [HostCompliance; 8] = [
    HostCompliance::Exposed,
    HostCompliance::ApprovedPending,
    HostCompliance::Overdue,
    HostCompliance::Failed,
    HostCompliance::Broken,
    HostCompliance::CatalogExpired,
    HostCompliance::PendingReboot,
    HostCompliance::Stale,
];

/// Each host's update states, in one pass over the rows (issue 12, point 7: a filter
/// over all rows per host made the host and group tables quadratic, 33 s at 10,000
/// hosts).
fn states_by_host(
    r: &ComplianceReport,
) -> std::collections::HashMap<
    (&patchday_types::TenantId, &patchday_types::HostId),
    Vec<patchday_types::UpdateState>,
> {
    let mut m: std::collections::HashMap<_, Vec<_>> = std::collections::HashMap::new();
    for row in &r.rows {
        m.entry((&row.tenant, &row.host))
            .or_default()
            .push(row.state);
    }
    m
}

/// Builds the report table at a grouping level.
pub fn report_table(r: &ComplianceReport, by: By) -> Table {
    let compliant = compliant_hosts(r);
    let is_ok = |t: &str, h: &str| {
        compliant
            .get(&(t.to_string(), h.to_string()))
            .copied()
            .unwrap_or(true)
    };
    match by {
        By::Detail => {
            let mut t = Table::new(&[
                "tenant", "host", "hostname", "update", "severity", "state", "message",
            ]);
            for row in &r.rows {
                t.rows.push(vec![
                    row.tenant.to_string(),
                    row.host.to_string(),
                    row.hostname.clone(),
                    row.update.to_string(),
                    row.severity.to_string(),
                    row.state.to_string(),
                    row.message.clone().unwrap_or_default(),
                ]);
            }
            t
        }
        By::Host => {
            // issue 9, point 7: the host's state and why, from the server's verdict.
            let mut cols = vec![
                "tenant",
                "host",
                "hostname",
                "groups",
                "compliant",
                "status",
                "why",
            ];
            cols.extend(COUNT_COLS);
            cols.extend(SIGNED_COLS); // issue 8, findings 8 and 13
            cols.push("dpkg"); // issue 9, point 4
            let mut t = Table::new(&cols).numbers(&COUNT_COLS);
            let states = states_by_host(r);
            for h in &r.hosts {
                let mut c = Counts::default();
                for state in states.get(&(&h.tenant, &h.host)).into_iter().flatten() {
                    c.add(*state);
                }
                let mut cells = vec![
                    h.tenant.to_string(),
                    h.host.to_string(),
                    h.hostname.clone(),
                    h.groups
                        .iter()
                        .map(|g| g.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                    if is_ok(h.tenant.as_str(), h.host.as_str()) {
                        "yes"
                    } else {
                        "no"
                    }
                    .to_string(),
                    h.compliance.to_string(),
                    h.compliance_reason.clone().unwrap_or_default(),
                ];
                cells.extend(c.cells(false));
                cells.extend(signed_cells(&h.signed)); // issue 8, findings 8 and 13
                cells.push(dpkg_cell(h.dpkg_broken.as_deref())); // issue 9, point 4
                t.rows.push(cells);
            }
            t
        }
        By::Update => {
            let mut cols = vec!["tenant", "update", "severity"];
            cols.extend(COUNT_COLS);
            let mut t = Table::new(&cols).numbers(&COUNT_COLS);
            let mut m: BTreeMap<(String, String), (String, Counts)> = BTreeMap::new();
            for row in &r.rows {
                let e = m
                    .entry((row.tenant.to_string(), row.update.to_string()))
                    .or_insert_with(|| (row.severity.to_string(), Counts::default()));
                e.1.add(row.state);
            }
            for ((tn, u), (sev, c)) in m {
                let mut cells = vec![tn, u, sev];
                cells.extend(c.cells(false));
                t.rows.push(cells);
            }
            t
        }
        By::Tenant | By::Group => {
            let mut cols = if by == By::Tenant {
                vec!["tenant"]
            } else {
                vec!["tenant", "group"]
            };
            let mut numeric = vec!["hosts", "compliant-hosts"];
            numeric.extend(HOST_STATE_COLS.map(HostCompliance::as_str));
            numeric.extend(COUNT_COLS);
            cols.extend(&numeric);
            let mut t = Table::new(&cols).numbers(&numeric);
            let mut m: BTreeMap<Vec<String>, Counts> = BTreeMap::new();
            let states = states_by_host(r);
            for h in &r.hosts {
                let keys: Vec<Vec<String>> = if by == By::Tenant {
                    vec![vec![h.tenant.to_string()]]
                } else if h.groups.is_empty() {
                    vec![vec![h.tenant.to_string(), "(none)".into()]]
                } else {
                    h.groups
                        .iter()
                        .map(|g| vec![h.tenant.to_string(), g.to_string()])
                        .collect()
                };
                for k in keys {
                    let c = m.entry(k).or_default();
                    c.hosts += 1;
                    if is_ok(h.tenant.as_str(), h.host.as_str()) {
                        c.compliant += 1;
                    }
                    if let Some(i) = HOST_STATE_COLS.iter().position(|s| *s == h.compliance) {
                        c.host_states[i] += 1;
                    }
                    for state in states.get(&(&h.tenant, &h.host)).into_iter().flatten() {
                        c.add(*state);
                    }
                }
            }
            for (k, c) in m {
                let mut cells = k;
                cells.extend(c.cells(true));
                t.rows.push(cells);
            }
            t
        }
    }
}

// issue 8, findings 8 and 13: what each host signed, and its agent's last error.

/// Columns appended to host tables.
pub const SIGNED_COLS: [&str; 2] = ["signed", "agent"];

/// `signed` (`yes, seq N`, `not yet`, `no key: re-enrol`) and `agent` (`ok` or
/// `agent-error: ...`) cells of a host.
pub fn signed_cells(s: &patchday_types::api::HostSigned) -> [String; 2] {
    [s.signed_cell(), s.agent_cell()]
}

/// `dpkg` cell of a host (issue 9, point 4): `ok`, or `broken: ` and dpkg's words.
pub fn dpkg_cell(broken: Option<&str>) -> String {
    match broken {
        None => "ok".into(),
        Some(m) => format!("broken: {m}"),
    }
}

// ---- Finding 3/10 (issue 8): tokens, enrolment tokens and the operator log ----

fn when(t: Option<jiff::Timestamp>, none: &str) -> String {
    t.map(|t| t.to_string()).unwrap_or_else(|| none.into())
}

/// `active`, `revoked` or `expired` at `now`.
fn token_state(
    revoked: Option<jiff::Timestamp>,
    expires: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> &'static str {
    match (revoked, expires) {
        (Some(_), _) => "revoked",
        (None, Some(e)) if e <= now => "expired",
        _ => "active",
    }
}

/// Operator tokens by id, name and prefix (never the secret), with their state at `now`.
pub fn token_table(tokens: &[patchday_types::api::TokenInfo], now: jiff::Timestamp) -> Table {
    let mut t = Table::new(&[
        "id", "name", "prefix", "role", "tenant", "created", "expires", "state",
    ]);
    for k in tokens {
        t.rows.push(vec![
            k.id.clone(),
            k.name.clone(),
            k.prefix.clone(),
            k.role.to_string(),
            k.tenant
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            k.created_at.to_string(),
            when(k.expires_at, "never"),
            token_state(k.revoked_at, k.expires_at, now).into(),
        ]);
    }
    t
}

/// Enrolment tokens by id, name and prefix, with uses and their state at `now`.
pub fn enroll_token_table(
    tokens: &[patchday_types::api::EnrollTokenInfo],
    now: jiff::Timestamp,
) -> Table {
    let mut t = Table::new(&["id", "name", "prefix", "group", "uses", "expires", "state"]);
    for k in tokens {
        let used_up = k.max_uses.is_some_and(|m| k.uses >= m);
        let state = match token_state(k.revoked_at, k.expires_at, now) {
            "active" if used_up => "used-up",
            s => s,
        };
        t.rows.push(vec![
            k.id.clone(),
            k.name.clone(),
            k.prefix.clone(),
            k.group
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            match k.max_uses {
                Some(m) => format!("{}/{m}", k.uses),
                None => format!("{}/unlimited", k.uses),
            },
            when(k.expires_at, "never"),
            state.into(),
        ]);
    }
    t
}

/// The operator log: who, when, from where, what.
pub fn log_table(entries: &[patchday_types::api::LogEntry]) -> Table {
    let mut t = Table::new(&[
        "seq", "at", "tenant", "actor", "actor-id", "source", "action", "object", "detail",
    ]);
    for e in entries {
        t.rows.push(vec![
            e.seq.to_string(),
            e.at.to_string(),
            e.tenant
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            e.actor.clone(),
            e.actor_id.clone(),
            e.source.clone(),
            e.action.clone(),
            e.object.clone(),
            e.detail.to_string(),
        ]);
    }
    t
}

/// Issue 10, point 1: the state history, one row per change.
pub fn history_table(entries: &[patchday_types::api::HistoryEntry]) -> Table {
    let mut t = Table::new(&["at", "host", "update", "from", "to", "message"]);
    for e in entries {
        t.rows.push(vec![
            e.at.to_string(),
            e.host.to_string(),
            e.update.to_string(),
            e.previous.map(|p| p.to_string()).unwrap_or_default(),
            e.state.to_string(),
            e.message.clone().unwrap_or_default(),
        ]);
    }
    t
}

/// Issue 10, point 1: time from publication to installed, per update.
pub fn time_to_install_table(rows: &[patchday_types::api::TimeToInstall]) -> Table {
    let mut t = Table::new(&[
        "update",
        "published",
        "hosts",
        "installed",
        "median",
        "p90",
        "max",
    ]);
    let d = |s: Option<i64>| {
        s.map(|s| format!("{:#}", jiff::SignedDuration::from_secs(s)))
            .unwrap_or_default()
    };
    for r in rows {
        t.rows.push(vec![
            r.update.to_string(),
            r.published_at.map(|p| p.to_string()).unwrap_or_default(),
            r.hosts.to_string(),
            r.installed.to_string(),
            d(r.median_seconds),
            d(r.p90_seconds),
            d(r.max_seconds),
        ]);
    }
    t
}

/// Issue 8, finding 5: server-provided text in tables and CSV.
/// Issue 13, point 1: baseline compliance per host and baseline.
pub fn baseline_table(rows: &[patchday_types::api::HostBaseline]) -> Table {
    let mut t = Table::new(&[
        "host",
        "baseline",
        "version",
        "status",
        "drift found",
        "last drift",
        "drift runs",
        "reported",
    ]);
    for r in rows {
        let status = match (&r.error, r.drift.is_empty(), r.repaired) {
            (Some(e), _, _) => format!("error: {e}"),
            (None, true, _) => "enforced".to_string(),
            (None, false, true) => "drift repaired".to_string(),
            (None, false, false) => "drift not repaired".to_string(),
        };
        t.rows.push(vec![
            r.hostname.clone(),
            r.baseline.clone(),
            r.version.clone(),
            status,
            r.drift.join("; "),
            r.last_drift_at.map(|a| a.to_string()).unwrap_or_default(),
            r.drift_runs.to_string(),
            r.reported_at.to_string(),
        ]);
    }
    t
}

/// Issue 14, point 5: `patchday scan findings`.
pub fn scan_findings_table(rows: &[patchday_types::api::HostScanFinding]) -> Table {
    let mut t = Table::new(&[
        "time",
        "host",
        "outcome",
        "path",
        "signature",
        "quarantine id",
        "owner",
        "size",
        "reason",
    ]);
    for r in rows {
        let f = &r.finding;
        let outcome = serde_json::to_value(f.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        t.rows.push(vec![
            f.time.to_string(),
            r.hostname.clone(),
            outcome,
            f.path.clone(),
            f.signature.clone().unwrap_or_default(),
            f.quarantine_id.clone().unwrap_or_default(),
            f.owner.map(|o| o.to_string()).unwrap_or_default(),
            f.size.to_string(),
            f.reason.clone().unwrap_or_default(),
        ]);
    }
    t
}

#[cfg(test)]
mod escaping_tests {
    use super::*;

    /// A hostname as a hostile agent would enrol it: clear screen, an OSC title, CR over
    /// the row, a fake row, a right-to-left override, a formula.
    const HOSTILE: &str =
        "=cmd|' /C calc'!A0\u{1b}[2J\u{1b}]0;pwned\u{7}\racme  fake  yes\n\u{202e}gpj.exe";

    fn table() -> Table {
        let mut t = Table::new(&["id", "hostname", "os"]);
        t.rows
            .push(vec!["h-1".into(), HOSTILE.into(), "-1+2".into()]);
        t.rows
            .push(vec!["h-2".into(), "web-2".into(), "@SUM(A1)".into()]);
        t
    }

    fn unsafe_char(c: char) -> bool {
        c != '\n' && patchday_text::is_unsafe_for_terminal(c)
    }

    #[test]
    fn table_output_escapes_control_and_bidi_characters() {
        let out = table().render(Format::Table);
        assert!(!out.chars().any(unsafe_char), "{out:?}");
        assert_eq!(out.lines().count(), 3, "no fake row:\n{out}");
        assert!(out.contains(
            "=cmd|' /C calc'!A0\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\u{d}acme  fake  yes\\u{a}\\u{202e}gpj.exe"
        ));
        // Columns stay aligned on the escaped text.
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1].find("-1+2"), lines[2].find("@SUM(A1)"));
    }

    #[test]
    fn csv_output_has_no_formula_cells_and_no_control_characters() {
        let out = table().render(Format::Csv);
        assert!(!out.chars().any(unsafe_char), "{out:?}");
        let mut r = csv::ReaderBuilder::new().from_reader(out.as_bytes());
        let rows: Vec<Vec<String>> = r
            .records()
            .map(|rec| rec.map(|rec| rec.iter().map(String::from).collect()))
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        assert_eq!(
            rows,
            vec![
                vec![
                    "h-1".to_string(),
                    "'=cmd|' /C calc'!A0\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\u{d}acme  fake  yes\\u{a}\\u{202e}gpj.exe".into(),
                    "'-1+2".into(),
                ],
                vec!["h-2".into(), "web-2".into(), "'@SUM(A1)".into()],
            ]
        );
    }

    #[test]
    fn json_output_stays_exact() {
        let out = table().render(Format::Json);
        let back: Vec<BTreeMap<String, String>> = serde_json::from_str(&out).unwrap_or_default();
        assert_eq!(back[0]["hostname"], HOSTILE);
        assert_eq!(back[1]["os"], "@SUM(A1)");
    }
}
