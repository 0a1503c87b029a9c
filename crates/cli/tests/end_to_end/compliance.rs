//! Issue 9, points 7 and 5, with the real binaries: truthful compliance (a host is
//! compliant only when nothing it needs is missing, unless declined with a reason;
//! exposed, approved-pending, overdue, stale and catalog-expired hosts say so) and
//! catalog upkeep (`patchday catalog refresh`, every role's expiry, the warning).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use patchday_lab::DebSpec;
use patchday_testkit::{scratch, text, Bins, Catalog, Host, Server};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

struct World {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    cat: Catalog,
    srv: Server,
    enroll: String,
    /// Old .debs the hosts start with.
    old: Vec<PathBuf>,
}

/// A catalog with emergency updates `PD-C-1` (pd-comp-a 1.0-1 → 1.0-2) and `PD-C-2`
/// (pd-comp-b), a server with `flags`, tenant `acme` with group `web`.
fn world(flags: &[&str]) -> World {
    let d = scratch();
    let dir = d.path().to_path_buf();
    let b = bins();
    let pkgs = dir.join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let cat = Catalog::new(&b, &dir);
    let mut old = Vec::new();
    for (id, name) in [("PD-C-1", "pd-comp-a"), ("PD-C-2", "pd-comp-b")] {
        let o = DebSpec::new(name, "1.0-1").changelog("1.0-1", "Initial release.");
        let n = DebSpec::new(name, "1.0-2")
            .changelog("1.0-2", "Fix CVE-2099-0901.")
            .changelog("1.0-1", "Initial release.");
        old.push(patchday_lab::build_deb(&o, &pkgs).unwrap());
        let new = patchday_lab::build_deb(&n, &pkgs).unwrap();
        let out = cat.add_deb(id, &new, &["--emergency", "test", "--since", "1.0-1"]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let srv = Server::start_with(&b, &dir, &cat.root(), flags);
    srv.cli(&["catalog", "push", "--repo", cat.repo.to_str().unwrap()]);
    srv.cli(&["tenant", "create", "acme"]);
    srv.cli(&["group", "create", "--tenant", "acme", "web"]);
    let enroll = srv
        .cli(&[
            "enroll-token",
            "create",
            "--tenant",
            "acme",
            "--unlimited",
            "--group",
            "web",
        ])
        .trim()
        .to_string();
    World {
        _dir: d,
        dir,
        cat,
        srv,
        enroll,
        old,
    }
}

impl World {
    /// A host with both old packages, enrolled into group `web` (one agent run).
    fn host(&self, name: &str) -> Host {
        let h = Host::new(&bins(), &self.dir, name);
        for deb in &self.old {
            h.lab.install_deb(deb).unwrap();
        }
        let o = h.agent(&self.srv.url, Some(&self.enroll));
        assert!(o.status.success(), "enrol: {}", text(&o));
        h
    }

    /// The `report --by host --format json` row of a host.
    fn host_row(&self, hostname: &str) -> Value {
        let rows: Vec<Value> = serde_json::from_str(
            &self
                .srv
                .cli(&["report", "--by", "host", "--format", "json"]),
        )
        .unwrap();
        rows.into_iter()
            .find(|r| r["hostname"] == hostname)
            .unwrap_or_else(|| panic!("{hostname} is not in the report"))
    }

    /// (status, why) of a host.
    fn status(&self, hostname: &str) -> (String, String) {
        let r = self.host_row(hostname);
        (
            r["status"].as_str().unwrap().to_string(),
            r["why"].as_str().unwrap().to_string(),
        )
    }

    fn catalog(&self, args: &[&str]) -> String {
        let mut a = args.to_vec();
        a.extend([
            "--keys",
            self.cat.keys.to_str().unwrap(),
            "--repo",
            self.cat.repo.to_str().unwrap(),
        ]);
        let o = Command::new(&bins().patchday).args(&a).output().unwrap();
        assert!(o.status.success(), "patchday {a:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn push(&self) {
        self.srv
            .cli(&["catalog", "push", "--repo", self.cat.repo.to_str().unwrap()]);
    }

    fn catalog_status(&self) -> Value {
        serde_json::from_str(&self.srv.cli(&["catalog", "status", "--format", "json"])).unwrap()
    }
}

fn role<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == name)
        .unwrap_or_else(|| panic!("no role {name} in {status}"))
}

/// Waits (asserting nothing about time) until the wall clock is past `t`.
fn wait_until_past(t: jiff::Timestamp) {
    #[allow(clippy::disallowed_methods)] // the test waits for a real expiry
    while jiff::Timestamp::now() <= t {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn curl_post(srv: &Server, path: &str, body: &str) -> (u16, String) {
    let o = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", "POST"])
        .args(["-H", "Content-Type: application/json"])
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", srv.admin))
        .args(["--data", body])
        .arg(format!("{}{path}", srv.url))
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = t.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

#[test]
fn host_goes_exposed_then_approved_pending_then_up_to_date_and_only_a_reasoned_decline_excuses() {
    let _serial = patchday_testkit::serial();
    let w = world(&[]);
    let h = w.host("comp-1");

    // Nothing approved yet: the host needs two updates nobody approved.
    let row = w.host_row("comp-1");
    assert_eq!(row["status"], "exposed", "{row}");
    assert_eq!(row["compliant"], "no", "{row}");
    assert_eq!(row["why"], "needed, not approved: PD-C-1, PD-C-2", "{row}");
    assert_eq!(row["needed"], 2, "counts are JSON numbers: {row}");

    // A decline needs a reason, at the CLI and at the server.
    let o = w.srv.cli_as(
        &w.srv.admin,
        &["decline", "--tenant", "acme", "--group", "web", "PD-C-2"],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("--reason"), "{}", text(&o));
    let (code, body) = curl_post(
        &w.srv,
        "/v1/tenants/acme/approvals",
        r#"{"update":"PD-C-2","group":"web","decision":"decline","reason":"  "}"#,
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("declining update PD-C-2 needs a reason (patchday decline --reason"),
        "{body}"
    );
    let reason = "pd-comp-b is replaced by the vendor's build (ticket 42)";
    w.srv.cli(&[
        "decline", "--tenant", "acme", "--group", "web", "PD-C-2", "--reason", reason,
    ]);
    // PD-C-1 is still needed and unapproved: exposed, whatever the decline says.
    assert_eq!(
        w.status("comp-1"),
        ("exposed".into(), "needed, not approved: PD-C-1".into())
    );

    w.srv
        .cli(&["approve", "--tenant", "acme", "--group", "web", "PD-C-1"]);
    assert_eq!(
        w.status("comp-1"),
        (
            "approved-pending".into(),
            "approved, not installed yet: PD-C-1".into()
        )
    );

    let o = h.agent(&w.srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.version("pd-comp-a").as_deref(), Some("1.0-2"));
    assert_eq!(h.version("pd-comp-b").as_deref(), Some("1.0-1"));
    let row = w.host_row("comp-1");
    assert_eq!(row["status"], "up-to-date", "{row}");
    assert_eq!(row["compliant"], "yes", "{row}");
    assert_eq!(row["declined"], 1, "{row}");
    // The reason is stored and shown.
    let declined = w
        .srv
        .report_rows()
        .into_iter()
        .find(|r| r["update"] == "PD-C-2")
        .unwrap();
    assert_eq!(declined["state"], "declined");
    assert_eq!(declined["message"], format!("declined: {reason}"));

    // The report's JSON: times in whole seconds, numbers as numbers.
    let (code, body) = w.srv.http_get("/v1/report", Some(&w.srv.admin));
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let host = &v["hosts"][0];
    assert_eq!(host["compliance"], "up-to-date", "{host}");
    assert!(host["signed"]["sequence"].is_u64(), "{host}");
    for t in [
        &v["generated_at"],
        &host["last_seen"],
        &host["signed"]["at"],
    ] {
        let t = t.as_str().unwrap();
        assert!(
            t.len() == "2026-12-01T00:00:00Z".len() && !t.contains('.'),
            "a time with fractions of a second: {t}"
        );
    }
    // Tenant view: one host, compliant.
    let tenants: Vec<Value> =
        serde_json::from_str(&w.srv.cli(&["report", "--by", "tenant", "--format", "json"]))
            .unwrap();
    assert_eq!(tenants[0]["hosts"], 1);
    assert_eq!(tenants[0]["compliant-hosts"], 1);
    assert_eq!(tenants[0]["exposed"], 0);
}

#[test]
fn an_approval_past_its_deadline_is_overdue_and_a_silent_host_goes_stale() {
    let _serial = patchday_testkit::serial();
    let mut w = world(&[]);
    let _h = w.host("late-1");
    w.srv.cli(&[
        "approve",
        "--tenant",
        "acme",
        "--group",
        "web",
        "PD-C-1",
        "--deadline",
        "2020-01-01T00:00:00Z",
    ]);
    w.srv
        .cli(&["approve", "--tenant", "acme", "--group", "web", "PD-C-2"]);
    assert_eq!(
        w.status("late-1"),
        ("overdue".into(), "past its deadline: PD-C-1".into())
    );

    // The same host, with the server expecting a check-in every two seconds.
    let (_, body) = w.srv.http_get("/v1/report", Some(&w.srv.admin));
    let v: Value = serde_json::from_str(&body).unwrap();
    let last_seen: jiff::Timestamp = v["hosts"][0]["last_seen"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (dir, root) = (w.dir.clone(), w.cat.root());
    w.srv.restart_with(&dir, &root, &["--stale-after", "2s"]);
    wait_until_past(last_seen + jiff::SignedDuration::from_secs(3));
    let (status, why) = w.status("late-1");
    assert_eq!(status, "stale");
    assert!(
        why.starts_with("last seen ") && why.ends_with("(expected at least every 2s)"),
        "{why}"
    );
}

#[test]
fn catalog_refresh_extends_expiry_and_the_warning_appears_before_it() {
    let _serial = patchday_testkit::serial();
    // Snapshots live 35 days: a 40-day warning time flags the pushed one.
    let w = world(&["--catalog-expiry-warning", "40d"]);
    let before = w.catalog_status();
    let roles: Vec<&str> = before["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["role"].as_str().unwrap())
        .collect();
    // The top-level role's hash bins (issue 9, point 6) as one line.
    assert_eq!(
        roles,
        ["root", "targets", "targets.bin-*", "snapshot", "timestamp"],
        "{before}"
    );
    assert_eq!(
        role(&before, "snapshot")["state"],
        "expires-soon",
        "{before}"
    );
    assert_eq!(role(&before, "targets")["state"], "ok", "{before}");
    let warnings = before["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{before}");
    let w0 = warnings[0].as_str().unwrap();
    assert!(
        w0.starts_with("catalog snapshot (version ")
            && w0.ends_with("re-sign with `patchday catalog refresh --keys K --repo R` and push"),
        "{w0}"
    );
    let (code, health) = w.srv.http_get("/v1/health", None);
    assert_eq!(code, 200);
    assert_eq!(health, format!("ok\nwarning: {w0}"));
    // The table shows every role's expiry and warns on stderr.
    let o = w.srv.cli_as(&w.srv.admin, &["catalog", "status"]);
    let out = text(&o);
    assert!(
        out.contains("expires-soon") && out.contains(&format!("warning: {w0}")),
        "{out}"
    );

    // Refresh: snapshot and timestamp re-signed for longer; targets kept (not due);
    // no update added.
    let printed = w.catalog(&["catalog", "refresh", "--snapshot-expires", "60d"]);
    assert!(
        printed.contains("snapshot and timestamp re-signed; targets kept"),
        "{printed}"
    );
    w.push();
    let after = w.catalog_status();
    assert_eq!(role(&after, "snapshot")["state"], "ok", "{after}");
    assert!(after["warnings"].as_array().unwrap().is_empty(), "{after}");
    assert_eq!(
        role(&after, "targets")["version"],
        role(&before, "targets")["version"]
    );
    assert_eq!(
        role(&after, "snapshot")["version"].as_u64().unwrap(),
        role(&before, "snapshot")["version"].as_u64().unwrap() + 1
    );
    let exp = |s: &Value, r: &str| -> jiff::Timestamp {
        role(s, r)["expires"].as_str().unwrap().parse().unwrap()
    };
    assert!(exp(&after, "snapshot") > exp(&before, "snapshot"));
    assert_eq!(after["updates"], before["updates"]);
    assert_eq!(w.srv.http_get("/v1/health", None), (200, "ok".into()));

    // Targets within --targets-within is re-signed too, still without a new update.
    let printed = w.catalog(&["catalog", "refresh", "--targets-within", "100d"]);
    assert!(
        printed.contains("targets, snapshot and timestamp re-signed"),
        "{printed}"
    );
    w.push();
    let again = w.catalog_status();
    assert_eq!(
        role(&again, "targets")["version"].as_u64().unwrap(),
        role(&after, "targets")["version"].as_u64().unwrap() + 1
    );
    assert_eq!(again["updates"], before["updates"]);
}

#[test]
fn a_host_whose_catalog_expired_is_catalog_expired_in_the_report() {
    let _serial = patchday_testkit::serial();
    let w = world(&[]);
    let h = w.host("frozen-1");
    w.srv
        .cli(&["approve", "--tenant", "acme", "--group", "web", "PD-C-1"]);
    // A publisher who stopped re-signing: the timestamp lives 20 seconds.
    w.catalog(&["catalog", "refresh", "--timestamp-expires", "20s"]);
    w.push();
    let ts: jiff::Timestamp = role(&w.catalog_status(), "timestamp")["expires"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    wait_until_past(ts + jiff::SignedDuration::from_secs(1));

    let (code, health) = w.srv.http_get("/v1/health", None);
    assert_eq!(code, 503, "{health}");
    assert!(
        health.starts_with("catalog timestamp (version ")
            && health.contains("expired at")
            && health.contains("agents refuse the catalog and install nothing"),
        "{health}"
    );
    let o = h.agent(&w.srv.url, None);
    assert!(!o.status.success(), "{}", text(&o));
    assert_eq!(h.version("pd-comp-a").as_deref(), Some("1.0-1"));
    let (status, why) = w.status("frozen-1");
    assert_eq!(status, "catalog-expired", "{why}");
    assert!(
        why.contains("catalog rejected: timestamp expired at"),
        "{why}"
    );
}

/// Issue 10, point 1: every change of a host's state for an update is in the history,
/// with its time, and `patchday history` says how long the update took from publication
/// to installed.
#[test]
fn history_records_each_state_change_and_the_time_from_publication_to_installed() {
    let _serial = patchday_testkit::serial();
    let w = world(&[]);
    let h = w.host("hist-1");
    w.srv
        .cli(&["approve", "--tenant", "acme", "--group", "web", "PD-C-1"]);
    let o = h.agent(&w.srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.version("pd-comp-a").as_deref(), Some("1.0-2"));

    let hist: Value = serde_json::from_str(&w.srv.cli(&[
        "history", "--tenant", "acme", "--update", "PD-C-1", "--format", "json",
    ]))
    .unwrap();
    let states: Vec<(&str, &str)> = hist["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["previous"].as_str().unwrap_or("-"),
                e["state"].as_str().unwrap(),
            )
        })
        .collect();
    // Enrolment check-in: needed; the run's check-in after the approval: approved; the
    // agent's reports of steps under way, each only when the step is slow (issue 10,
    // point 8): downloading (over 2 s), installing (dpkg over 5 s); the check-in with
    // the new inventory and the outcome: installed.
    let mut expected = vec![("-", "needed"), ("needed", "approved")];
    let mut last = "approved";
    for step in ["downloading", "installing"] {
        if states.contains(&(last, step)) {
            expected.push((last, step));
            last = step;
        }
    }
    expected.push((last, "installed"));
    assert_eq!(states, expected, "{hist}");
    for e in hist["entries"].as_array().unwrap() {
        assert_eq!(e["host"].as_str().unwrap().split('-').next(), Some("hist"));
        let at = e["at"].as_str().unwrap();
        assert!(!at.contains('.'), "whole seconds: {at}");
    }
    let tti = &hist["time_to_install"][0];
    assert_eq!(tti["update"], "PD-C-1", "{hist}");
    assert_eq!(
        (tti["hosts"].as_u64(), tti["installed"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(tti["median_seconds"].as_i64().unwrap() >= 0, "{hist}");
    assert!(tti["published_at"].is_string(), "{hist}");
    // PD-C-2 was never approved: needed, and only that.
    let other: Value = serde_json::from_str(&w.srv.cli(&[
        "history", "--tenant", "acme", "--update", "PD-C-2", "--format", "json",
    ]))
    .unwrap();
    assert!(
        other["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["state"] == "needed"),
        "{other}"
    );
    // The table form names the states.
    let table = w.srv.cli(&[
        "history",
        "--tenant",
        "acme",
        "--host",
        hist["entries"][0]["host"].as_str().unwrap(),
    ]);
    assert!(
        table.contains("installed") && table.to_lowercase().contains("median"),
        "{table}"
    );
    // What the agent claimed before dpkg's inventory confirmed it is not a failure.
    assert!(!table.contains("failed"), "{table}");
}

/// Issue 10, point 4: an operator rushes a train update that is exploited today through
/// the emergency lane: it skips the tenant's patch day for that approval only, needs a
/// reason, and the log says who and why; the agent installs it.
#[test]
fn operator_emergency_lane_approves_a_train_update_before_patch_day_with_a_reason() {
    let _serial = patchday_testkit::serial();
    let w = world(&[]);
    // A train update for a month years ahead: its patch day has not come.
    let pkgs = w.dir.join("pkgs");
    let old = DebSpec::new("pd-comp-t", "1.0-1").changelog("1.0-1", "Initial release.");
    let new = DebSpec::new("pd-comp-t", "1.0-2")
        .changelog("1.0-2", "Fix CVE-2099-0999.")
        .changelog("1.0-1", "Initial release.");
    let old = patchday_lab::build_deb(&old, &pkgs).unwrap();
    let new = patchday_lab::build_deb(&new, &pkgs).unwrap();
    let out = w
        .cat
        .add_deb("PD-T-1", &new, &["--train", "2031-01", "--since", "1.0-1"]);
    assert!(out.status.success(), "{}", text(&out));
    w.push();
    let h = w.host("emerg-1");
    h.lab.install_deb(&old).unwrap();

    let approve = |extra: &[&str]| {
        let mut a = vec!["approve", "--tenant", "acme", "--group", "web", "PD-T-1"];
        a.extend_from_slice(extra);
        w.srv.cli_as(&w.srv.admin, &a)
    };
    let o = approve(&[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("cannot be approved yet"), "{}", text(&o));
    // The lane needs a reason, at the CLI and at the server.
    let o = approve(&["--emergency"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--reason"), "{}", text(&o));
    let (code, body) = curl_post(
        &w.srv,
        "/v1/tenants/acme/approvals",
        r#"{"update":"PD-T-1","group":"web","decision":"approve","emergency":true}"#,
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("needs a reason"), "{body}");
    let why = "CVE-2099-0999 exploited in the wild (KEV)";
    let o = approve(&["--emergency", "--reason", why]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("emergency lane"), "{}", text(&o));

    let log: Value =
        serde_json::from_str(&w.srv.cli(&["log", "--tenant", "acme", "--format", "json"])).unwrap();
    let entry = log
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "approval.emergency")
        .unwrap_or_else(|| panic!("no emergency entry in {log}"));
    assert_eq!(entry["detail"]["reason"], why, "{entry}");
    assert!(!entry["actor"].as_str().unwrap().is_empty(), "{entry}");

    let o = h.agent(&w.srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.version("pd-comp-t").as_deref(), Some("1.0-2"));
}
