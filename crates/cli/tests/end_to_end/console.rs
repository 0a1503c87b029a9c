//! Issue 11, point 2: the operator console in a real browser. Headless Chromium from
//! Debian, driven by chromedriver over W3C WebDriver (plain JSON over HTTP, so no
//! browser crate to build), against the real server binary and a real agent on an
//! overlay host: log in with a tenant token, approve an update from the page, watch
//! the host go compliant as the agent installs it, be refused another tenant's page and
//! a form without its CSRF token. Screenshots land in `target/console-screenshots/`.
//! The browser driver is `support/browser.rs` (shared with the browser-policy test).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::browser::{screenshot_dir, Browser, CHROMEDRIVER, LIMIT};
use patchday_lab::{DebSpec, Requirement};
use patchday_testkit::{scratch, AcmeWorld, Bins, Host, Server};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

fn requirements_met() -> bool {
    patchday_lab::require(Requirement::Root)
        && patchday_lab::require(Requirement::Chromium)
        && patchday_lab::require(CHROMEDRIVER)
}

/// Tenants `acme` (group `web`, host `console-a` on `pd-console` 1.0-1, update
/// `PD-C-1` to 1.0-2 in the emergency lane so it is approvable at once) and `globex`.
struct World {
    _dir: tempfile::TempDir,
    srv: Server,
    host: Host,
    acme_admin: String,
}

fn world() -> World {
    let d = scratch();
    let dir = d.path().to_path_buf();
    let pkgs = dir.join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let old = patchday_lab::build_deb(
        &DebSpec::new("pd-console", "1.0-1").changelog("1.0-1", "Initial release."),
        &pkgs,
    )
    .unwrap();
    let new = patchday_lab::build_deb(
        &DebSpec::new("pd-console", "1.0-2")
            .changelog("1.0-2", "Fix CVE-2099-1101.")
            .changelog("1.0-1", "Initial release."),
        &pkgs,
    )
    .unwrap();
    let AcmeWorld { srv, enroll, .. } = AcmeWorld::start(
        &bins(),
        &dir,
        ("PD-C-1", &new, &["--emergency", "test", "--since", "1.0-1"]),
        &|_| Vec::new(),
        &["--unlimited"],
    );
    srv.cli(&["tenant", "create", "globex"]);
    let acme_admin = srv
        .cli(&[
            "token",
            "create",
            "--role",
            "tenant-admin",
            "--tenant",
            "acme",
            "--name",
            "acme-ops",
        ])
        .trim()
        .to_string();
    let host = Host::new(&bins(), &dir, "console-a");
    host.enrol_into_web(&srv, &srv.url, &enroll, &old);
    World {
        _dir: d,
        srv,
        host,
        acme_admin,
    }
}

/// Tenant acme's approvals, as the API lists them.
fn approvals(srv: &Server) -> String {
    let (status, body) = srv.http_get("/v1/tenants/acme/approvals", Some(&srv.admin));
    assert_eq!(status, 200, "{body}");
    body
}

fn log_in(b: &Browser, srv: &Server, token: &str) {
    b.go(&format!("{}/", srv.url));
    assert!(
        b.url().ends_with("/console/login"),
        "signed out, / sends the browser to the login page: {}",
        b.url()
    );
    b.type_into("#token", token);
    b.click("#login");
    b.until("the overview", |t| t.contains("Fleet overview"));
}

#[test]
fn an_operator_approves_from_the_console_and_watches_the_host_go_compliant() {
    if !requirements_met() {
        return;
    }
    let _serial = patchday_testkit::serial();
    let w = world();
    let b = Browser::start();
    log_in(&b, &w.srv, &w.acme_admin);
    let overview = b.text();
    assert!(overview.contains("acme"), "{overview}");
    assert!(
        !overview.contains("globex"),
        "a tenant token sees its tenant only: {overview}"
    );
    b.screenshot("01-overview");

    // The updates page says what the approval would touch, then approve from it.
    b.go(&format!("{}/console/tenants/acme/updates", w.srv.url));
    let updates = b.text();
    assert!(updates.contains("PD-C-1"), "{updates}");
    assert!(
        updates.contains("group web: 1 host(s): console-a"),
        "the page says which hosts an approval touches: {updates}"
    );
    b.screenshot("02-updates");
    b.click("#approve-PD-C-1");
    b.until("the rollout page", |t| t.contains("Rollout of PD-C-1"));
    assert!(
        b.url().ends_with("/console/tenants/acme/rollouts/PD-C-1"),
        "{}",
        b.url()
    );
    assert!(
        approvals(&w.srv).contains("PD-C-1"),
        "the approval made in the browser is the server's"
    );

    // A real agent installs it; the rollout page (its script polling the JSON
    // fragment, no reload) shows the host installed.
    let o = w.host.agent(&w.srv.url, None);
    assert!(o.status.success(), "{}", patchday_testkit::text(&o));
    assert_eq!(w.host.version("pd-console").as_deref(), Some("1.0-2"));
    let deadline = Instant::now() + LIMIT;
    loop {
        let state = b.script(
            "var c = document.querySelector('td.host-state[data-host=\"console-a\"]'); return c ? c.textContent : '';",
        );
        if state == "installed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rollout page never showed console-a installed: {state} {}",
            b.text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    b.screenshot("03-rollout-installed");

    // The tenant page: the host is compliant.
    b.go(&format!("{}/console/tenants/acme", w.srv.url));
    let tenant = b.text();
    assert!(tenant.contains("100 %"), "{tenant}");
    let state = b.script(
        "return document.querySelector('#hosts td.host-state[data-host=\"console-a\"]').textContent;",
    );
    assert_eq!(state, "up-to-date", "{tenant}");
    b.screenshot("04-tenant-compliant");

    // Host detail: its history shows the install.
    b.click("#hosts a");
    let host = b.until("the host page", |t| t.contains("Host console-a"));
    assert!(host.contains("State history"), "{host}");
    assert!(host.contains("installed"), "{host}");
    b.resize(390, 844);
    b.screenshot("05-host-on-a-phone");
    b.resize(1280, 900);

    // Catalog expiry, the operator log (the approval and the login, from the console)
    // and the fleet audit plan render for this tenant's operator.
    b.go(&format!("{}/console/catalog", w.srv.url));
    let catalog = b.text();
    assert!(
        catalog.contains("Expiry of every role") && catalog.contains("timestamp"),
        "{catalog}"
    );
    b.go(&format!("{}/console/log", w.srv.url));
    let log = b.text();
    assert!(
        log.contains("approval.approve") && log.contains("console.login"),
        "{log}"
    );
    assert!(log.contains("acme-ops"), "the log names who: {log}");
    b.go(&format!("{}/console/tenants/acme/audit", w.srv.url));
    assert!(b.text().contains("Audit plan for acme"), "{}", b.text());
    drop(b);

    customer_report_of_the_day(&w);
}

/// Issue 11, point 6: the tenant's report for the day of the approval, as HTML and as
/// a PDF printed by Chromium, and the HTML rendered to PNG for review.
fn customer_report_of_the_day(w: &World) {
    let approvals: Value = serde_json::from_str(&approvals(&w.srv)).unwrap();
    let day = approvals[0]["decided_at"].as_str().unwrap()[..10].to_string();
    let out = tempfile::tempdir().unwrap();
    let (html, pdf) = (out.path().join("acme.html"), out.path().join("acme.pdf"));
    w.srv.cli(&[
        "report",
        "--tenant",
        "acme",
        "--from",
        &day,
        "--to",
        &day,
        "--html",
        html.to_str().unwrap(),
        "--pdf",
        pdf.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(text.contains("Patch report for acme"), "{text}");
    assert!(
        text.contains(&format!("Period {day}T00:00:00Z")),
        "the period is named: {text}"
    );
    assert!(
        text.contains("<b id=\"installs\">1</b>"),
        "the install of the day is counted: {text}"
    );
    assert!(text.contains("Nothing remains open."), "{text}");
    assert!(!text.contains("<details"), "print shows everything");
    let pdf_bytes = std::fs::read(&pdf).unwrap();
    assert!(pdf_bytes.starts_with(b"%PDF"), "a PDF");

    let png = screenshot_dir().join("08-customer-report.png");
    patchday_cli::customer_report::screenshot_png(&html, &png).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "{} bytes",
        bytes.len()
    );
}

/// Console answers carry the security headers, and the login cookie its attributes.
fn assert_security_headers(srv: &Server) {
    let o = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null"])
        .arg(format!("{}/console/login", srv.url))
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&o.stdout).to_lowercase();
    for h in [
        "content-security-policy: default-src 'none'; script-src 'self'; style-src 'self'",
        "frame-ancestors 'none'",
        "x-frame-options: deny",
        "x-content-type-options: nosniff",
        "referrer-policy: no-referrer",
        "set-cookie: patchday_login=",
        "httponly; samesite=strict",
    ] {
        assert!(headers.contains(h), "missing {h:?} in {headers}");
    }
}

#[test]
fn the_console_refuses_another_tenants_page_a_form_without_its_csrf_token_and_an_ended_session() {
    if !requirements_met() {
        return;
    }
    let _serial = patchday_testkit::serial();
    let w = world();
    assert_security_headers(&w.srv);
    let b = Browser::start();
    log_in(&b, &w.srv, &w.acme_admin);

    // Another tenant's page: not found, like the API (existence is not revealed).
    b.go(&format!("{}/console/tenants/globex", w.srv.url));
    let refused = b.text();
    assert!(
        refused.contains("Not done (404)") && refused.contains("tenant globex not found"),
        "{refused}"
    );
    b.screenshot("06-other-tenant-refused");
    let (status, _) = w.srv.http_get("/console/tenants/globex", None);
    assert_eq!(status, 303, "signed out, the page sends to the login");

    // A form whose CSRF token was taken out: refused, and nothing is approved.
    b.go(&format!("{}/console/tenants/acme/updates", w.srv.url));
    b.script("document.querySelector('form.decide input[name=csrf]').remove();");
    b.click("#approve-PD-C-1");
    let refused = b.until("the refusal", |t| t.contains("Not done"));
    assert!(
        refused.contains("Not done (403)") && refused.contains("CSRF"),
        "{refused}"
    );
    b.screenshot("07-csrf-refused");
    assert!(
        !approvals(&w.srv).contains("PD-C-1"),
        "nothing was approved"
    );

    // Logging out ends the session server-side: the old cookie opens nothing.
    let cookie = b.call("GET", &b.s("/cookie/patchday_session"), None)["value"]
        .as_str()
        .unwrap()
        .to_string();
    b.go(&format!("{}/", w.srv.url));
    b.click(".logout button");
    b.until("the login page", |t| t.contains("Operator token"));
    let o = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
        .arg(format!("Cookie: patchday_session={cookie}"))
        .arg(format!("{}/console/tenants/acme", w.srv.url))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "303",
        "the session is gone"
    );
}

/// Issue 11, point 1: rings are edited and a rollout halted and resumed from the
/// console, through the API's own handlers (checked, logged), with the effect visible
/// to the API; a tenant admin is offered no halt (provider admins only).
#[test]
fn an_operator_edits_rings_and_halts_then_resumes_a_rollout_from_the_console() {
    if !requirements_met() {
        return;
    }
    let _serial = patchday_testkit::serial();
    let w = world();
    let b = Browser::start();

    // A tenant admin sees the rollout but no halt form.
    log_in(&b, &w.srv, &w.acme_admin);
    b.go(&format!(
        "{}/console/tenants/acme/rollouts/PD-C-1",
        w.srv.url
    ));
    b.until("the rollout page", |t| t.contains("Rollout of PD-C-1"));
    assert!(
        !b.text().contains("Halt the rollout"),
        "halting is for provider admins"
    );
    b.go(&format!("{}/", w.srv.url));
    b.click(".logout button");
    b.until("the login page", |t| t.contains("Operator token"));

    // The provider admin replaces acme's rings with the form.
    log_in(&b, &w.srv, &w.srv.admin);
    b.go(&format!("{}/console/tenants/acme/rings", w.srv.url));
    b.until("the rings page", |t| t.contains("No rings"));
    b.script("document.querySelector('#rings').value = 'web:0d:2d:1d';");
    b.script("document.querySelector('#soak').value = '2h';");
    b.script("document.querySelector('input[name=severity-critical]').checked = true;");
    b.click("#set-rings");
    let page = b.until("the rings in force", |t| t.contains("In force"));
    assert!(
        page.contains("automatic: critical") && page.contains("2h"),
        "{page}"
    );
    b.screenshot("08-rings-set");
    let (status, rings) = w.srv.http_get("/v1/tenants/acme/rings", Some(&w.srv.admin));
    assert_eq!(status, 200, "{rings}");
    let rings: serde_json::Value = serde_json::from_str(&rings).unwrap();
    assert_eq!(rings[0]["group"], "web");
    assert_eq!(rings[0]["deadline_seconds"], 2 * 86_400);
    assert_eq!(rings[0]["grace_seconds"], 86_400);
    assert_eq!(rings[0]["soak_seconds"], 7200);
    assert_eq!(rings[0]["rule"]["severities"][0], "critical");

    // A bad ring is refused with words that say what to write; nothing changes.
    b.go(&format!("{}/console/tenants/acme/rings", w.srv.url));
    b.script("document.querySelector('#rings').value = 'web:soon';");
    b.click("#set-rings");
    let refused = b.until("the refusal", |t| t.contains("Not done"));
    assert!(refused.contains("not a duration"), "{refused}");
    let (_, again) = w.srv.http_get("/v1/tenants/acme/rings", Some(&w.srv.admin));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&again).unwrap(),
        rings
    );

    // Halt with a reason, then resume.
    b.go(&format!(
        "{}/console/tenants/acme/rollouts/PD-C-1",
        w.srv.url
    ));
    b.type_into("#halt-reason", "postinst fails on arm64");
    b.click("#halt-rollout");
    let halted = b.until("the halt", |t| t.contains("halted by"));
    assert!(halted.contains("postinst fails on arm64"), "{halted}");
    b.screenshot("09-rollout-halted");
    let (_, status) = w.srv.http_get("/v1/rollouts/PD-C-1", Some(&w.srv.admin));
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["halt"]["reason"], "postinst fails on arm64");
    assert!(status["halt"]["resumed_at"].is_null());
    b.click("#resume-rollout");
    b.until("the halt form again", |t| t.contains("Halt the rollout"));
    let (_, status) = w.srv.http_get("/v1/rollouts/PD-C-1", Some(&w.srv.admin));
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(!status["halt"]["resumed_at"].is_null(), "{status}");
}
