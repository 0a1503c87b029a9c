//! Issue 8, finding 5: terminal and CSV injection. A hostile host's agent reports text
//! with escape sequences (clear screen, an OSC window title), carriage returns, fake
//! lines, bidirectional overrides and a spreadsheet formula; `patchday report`,
//! `host list` and `audit-report` must show it escaped in tables and text, neutralised in
//! CSV, and exact in JSON.
//!
//! The text goes in through what an agent really sends: the host's os-release
//! `PRETTY_NAME` (inventory and audit facts) and dpkg's message of a failing maintainer
//! script (the state message). The hostname stays plain: the server may refuse odd
//! hostnames at enrolment; the rendering of stored hostnames is covered by the unit
//! tests in crates/cli/src/render.rs. The server refuses C0/C1 controls in inventory
//! fields (the test checks that first), so os-release carries a formula and bidi
//! overrides, and the state message carries the escape sequences.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use patchday_lab::DebSpec;
use patchday_testkit::{require, scratch, text, AcmeWorld, Bins, Host, Requirement};
use serde_json::Value;

/// ESC[2J, an OSC title, CR with a fake row, a right-to-left override, a formula.
const HOSTILE: &str =
    "=cmd|' /C calc'!A0\u{1b}[2J\u{1b}]0;pwned\u{7}\racme  h-fake  yes\u{202e}gpj.exe\u{9b}31m";

/// What still passes the server's limits in an os-release name (no C0/C1 controls; the
/// server refuses those in inventory fields): a formula, a fake row, bidi overrides.
const OS_HOSTILE: &str = "=cmd|' /C calc'!A0 acme  h-fake  yes\u{202e}gpj.exe\u{2066}";

/// The C0/C1 controls and bidi characters none of the outputs may carry.
fn has_unsafe(s: &str) -> Option<char> {
    s.chars().find(|&c| {
        c != '\n' && (c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{61c}'))
    })
}

fn assert_clean(what: &str, out: &str) {
    if let Some(c) = has_unsafe(out) {
        panic!("{what} carries {c:?}:\n{out:?}");
    }
}

/// Every cell of a CSV text (RFC 4180, as the `csv` crate reads it).
fn csv_cells(out: &str) -> Vec<String> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(out.as_bytes());
    r.records()
        .flat_map(|rec| rec.unwrap().iter().map(str::to_string).collect::<Vec<_>>())
        .collect()
}

fn assert_csv_safe(what: &str, out: &str) {
    assert_clean(what, out);
    for cell in csv_cells(out) {
        assert!(
            !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
            "{what}: the cell {cell:?} is a formula:\n{out}"
        );
    }
}

#[test]
fn hostile_agent_text_reaches_no_terminal_or_spreadsheet_unescaped() {
    if !require(Requirement::Root) {
        return; // the hostile os-release lives in an overlay host
    }
    let _serial = patchday_testkit::serial();
    let d = scratch();
    let dir = d.path();
    let b = Bins::new(env!("CARGO_BIN_EXE_patchday"));

    // An update whose maintainer script prints the hostile text and fails: dpkg's
    // message, and so the host's state message, carries it.
    let pkgs = dir.join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let old = patchday_lab::build_deb(&DebSpec::new("pd-test-escape", "1.0-1"), &pkgs).unwrap();
    let script = format!(
        "printf '%s\\n' \"$(printf '{}')\" >&2; exit 1",
        HOSTILE
            .replace('\'', "'\\''")
            .replace('\u{1b}', "\\033")
            .replace('\u{7}', "\\007")
            .replace('\r', "\\r")
    );
    let new = patchday_lab::build_deb(
        &DebSpec::new("pd-test-escape", "1.0-2")
            .changelog("1.0-2", "Fix CVE-2099-0501.")
            .postinst(script),
        &pkgs,
    )
    .unwrap();
    let AcmeWorld { srv, enroll, .. } = AcmeWorld::start(
        &b,
        dir,
        ("PD-T-1", &new, &["--emergency", "test"]),
        &|_| vec![],
        &[],
    );

    let h = Host::new(&b, dir, "esc-1");
    h.lab.install_deb(&old).unwrap();
    h.lab
        .write_file(
            "/etc/os-release",
            format!(
                "PRETTY_NAME=\"{HOSTILE}\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\n\
                 VERSION_CODENAME=bookworm\nID=debian\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let o = h.agent(&srv.url, Some(&enroll));
    assert!(
        !o.status.success() && text(&o).contains("os name contains control characters"),
        "the server refuses control characters in inventory fields: {}",
        text(&o)
    );
    h.lab
        .write_file(
            "/etc/os-release",
            format!(
                "PRETTY_NAME=\"{OS_HOSTILE}\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\n\
                 VERSION_CODENAME=bookworm\nID=debian\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let o = h.agent(&srv.url, None);
    assert!(o.status.success(), "check-in: {}", text(&o));
    let hosts: Vec<Value> =
        serde_json::from_str(&srv.cli(&["host", "list", "--tenant", "acme", "--format", "json"]))
            .unwrap();
    let id = hosts[0]["id"].as_str().unwrap().to_string();
    // JSON stays exact: the stored text comes back as the agent sent it.
    assert_eq!(hosts[0]["os"], OS_HOSTILE, "{hosts:?}");
    srv.cli(&["host", "set-groups", "--tenant", "acme", &id, "web"]);
    srv.cli(&["approve", "--tenant", "acme", "--group", "web", "PD-T-1"]);
    let o = h.agent(&srv.url, None);
    assert!(
        !o.status.success(),
        "the maintainer script fails: {}",
        text(&o)
    );

    let rows = srv.report_rows();
    let message = rows[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("=cmd|") && message.contains('\u{1b}') && message.contains('\u{202e}'),
        "the state message carries the hostile text as the agent sent it: {message:?}"
    );

    // `host list`: the os column.
    let table = srv.cli(&["host", "list", "--tenant", "acme"]);
    assert_clean("host list", &table);
    assert!(
        table.contains("=cmd|' /C calc'!A0 acme  h-fake  yes\\u{202e}gpj.exe\\u{2066}"),
        "{table}"
    );
    assert_eq!(
        table.lines().count(),
        2,
        "one header, one host, no fake row:\n{table}"
    );
    let csv = srv.cli(&["host", "list", "--tenant", "acme", "--format", "csv"]);
    assert_csv_safe("host list --format csv", &csv);
    assert!(
        csv_cells(&csv)
            .iter()
            .any(|c| c.starts_with("'=cmd|' /C calc'!A0 acme")),
        "{csv}"
    );

    // `report`: the message column, at every grouping.
    for by in ["detail", "host", "group", "tenant", "update"] {
        let table = srv.cli(&["report", "--by", by]);
        assert_clean(&format!("report --by {by}"), &table);
        let csv = srv.cli(&["report", "--by", by, "--format", "csv"]);
        assert_csv_safe(&format!("report --by {by} --format csv"), &csv);
    }
    let detail = srv.cli(&["report", "--by", "detail"]);
    assert!(
        detail.contains("\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\u{d}acme  h-fake  yes\\u{202e}gpj.exe"),
        "{detail}"
    );
    let json = srv.cli(&["report", "--by", "detail", "--format", "json"]);
    let back: Vec<Value> = serde_json::from_str(&json).unwrap();
    assert!(back[0]["message"]
        .as_str()
        .unwrap()
        .contains(HOSTILE.split('\r').next().unwrap()));

    // `audit-report`: the host's plan (its release is the hostile PRETTY_NAME), in text
    // and HTML, and the fleet table.
    let plan = srv.cli(&["audit-report", "--tenant", "acme", "--host", &id]);
    assert_clean("audit-report --host", &plan);
    assert!(plan.contains("(=cmd|' /C calc'!A0 acme"), "{plan}");
    let html = srv.cli(&[
        "audit-report",
        "--tenant",
        "acme",
        "--host",
        &id,
        "--plan-format",
        "html",
    ]);
    assert_clean("audit-report --plan-format html", &html);
    assert!(html.contains("=cmd|&#39; /C calc&#39;!A0 acme"), "{html}");
    let json = srv.cli(&[
        "audit-report",
        "--tenant",
        "acme",
        "--host",
        &id,
        "--plan-format",
        "json",
    ]);
    let plan_json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(plan_json["release"], OS_HOSTILE, "JSON stays exact");
    let fleet = srv.cli(&["audit-report", "--tenant", "acme"]);
    assert_clean("audit-report", &fleet);
    let fleet = srv.cli(&["audit-report", "--tenant", "acme", "--format", "csv"]);
    assert_csv_safe("audit-report --format csv", &fleet);
}
