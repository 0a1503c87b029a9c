//! Issue 13, point 4: a browser-policy baseline published as a signed catalog update,
//! approved, applied by the real agent in an overlay host (so the policy lands in the
//! host's /etc/chromium/policies/managed, never the machine's), and proven in real
//! headless Chromium from Debian started inside that host: before the baseline both
//! origins run script; with it, a page on the untrusted origin (127.0.0.1) cannot while
//! the trusted one (127.0.0.2, on the allow-list) can, and chrome://policy shows the
//! policies as applied. A hand edit of the policy file and a local file overriding it are
//! repaired at the next run and reported; the browser then obeys the baseline again.
//! Point 5 on the same host: `patchday audit` finds the browser unmanaged and proposes the
//! baseline that closes it, and agrees once the baseline is applied.
//! Screenshots land in `target/console-screenshots/browser-policy-*.png`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::browser::{Browser, CHROMEDRIVER};
use patchday_testkit::{require, scratch, text, Bins, Catalog, Host, Requirement, Server};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

/// The page both origins serve: its script rewrites the text and asks for `/ran`, so the
/// server sees whether script ran even if the page text could not be read.
const PAGE: &str = "<!doctype html><title>origin</title><p id=\"state\">script did not run</p>\
<script>document.getElementById('state').textContent='script ran';new Image().src='/ran';</script>";

/// A tiny HTTP server on `addr:0` that records the paths it was asked for.
struct Site {
    origin: String,
    paths: Arc<Mutex<Vec<String>>>,
}

impl Site {
    fn start(addr: &str) -> Site {
        let listener = TcpListener::bind(format!("{addr}:0")).unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let paths = Arc::new(Mutex::new(Vec::new()));
        let seen = paths.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf);
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                seen.lock().unwrap().push(path.clone());
                let (status, body) = if path == "/" {
                    ("200 OK", PAGE)
                } else {
                    ("404 Not Found", "")
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Site { origin, paths }
    }

    /// Whether the page's script asked for `/ran`.
    fn script_ran(&self) -> bool {
        self.paths.lock().unwrap().iter().any(|p| p == "/ran")
    }

    fn forget(&self) {
        self.paths.lock().unwrap().clear();
    }
}

fn policy(trusted: &str) -> String {
    format!(
        r#"[baseline]
name = "lab-browser"
version = "1"
description = "script only on the trusted origin"

[browser]
downloads = "block-dangerous"
safe_browsing = "standard"

[browser.javascript]
mode = "allow-list"
sites = ["{trusted}"]

[browser.extensions]
chromium = []
firefox = []

[browser.updates]
relaunch_within_hours = 24
"#
    )
}

/// Chromium in `host` (chromedriver started inside it, so the browser reads the host's
/// /etc).
fn browser_in(host: &Host) -> Browser {
    Browser::start_with(host.lab.command(Path::new("/usr/bin/chromedriver"), &[]))
}

/// Every text node of the page, shadow roots included (chrome://policy is built of
/// custom elements).
fn all_text(b: &Browser) -> String {
    b.script(
        "function t(n){let s='';if(n.shadowRoot)s+=t(n.shadowRoot);\
         for(const c of n.childNodes){s+=c.nodeType===3?c.textContent+' ':t(c);}return s;}\
         return t(document.documentElement);",
    )
    .as_str()
    .unwrap_or_default()
    .to_string()
}

/// Loads `site` and says whether its script ran: the server's record of `/ran`, and the
/// page text agreeing. Waits long enough for a script that runs to have asked for `/ran`.
fn runs_script(b: &Browser, site: &Site, shot: &str) -> bool {
    site.forget();
    b.go(&format!("{}/", site.origin));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !site.script_ran() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let ran = site.script_ran();
    let shown = b.text();
    assert_eq!(
        shown.contains("script ran"),
        ran,
        "page text and server disagree on {}: {shown}",
        site.origin
    );
    b.screenshot(&format!("browser-policy-{shot}"));
    ran
}

fn report_row(srv: &Server) -> serde_json::Value {
    let report = srv.cli(&["baseline", "report", "--tenant", "acme", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&report).unwrap();
    rows.into_iter()
        .find(|r| r["hostname"] == "browser1" && r["baseline"] == "lab-browser")
        .unwrap_or_else(|| panic!("no report row: {report}"))
}

/// `patchday audit` run inside `host` (its live facts): the plan as JSON, and the
/// proposed baseline it wrote, if any.
fn audit_in(host: &Host, bins: &Bins) -> (serde_json::Value, Option<String>) {
    let _ = host.run_in("rm", &["-f", "/root/proposed.toml", "/root/plan.json"]);
    let patchday = bins.patchday.to_str().unwrap();
    // Exit status 1 means "failing findings remain", so only the plan file is judged.
    let _ = host.run_in(
        patchday,
        &[
            "audit",
            "--format",
            "json",
            "--output",
            "/root/plan.json",
            "--propose-baseline",
            "/root/proposed.toml",
        ],
    );
    let (_, out) = host.run_in("cat", &["/root/plan.json"]);
    let json = &out[out
        .find('{')
        .unwrap_or_else(|| panic!("no audit plan: {out}"))..];
    let plan: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("audit JSON: {e}: {out}"));
    let (ok, proposed) = host.run_in("cat", &["/root/proposed.toml"]);
    (plan, ok.then_some(proposed))
}

/// The outcome (`fail`, `pass`, `not-applicable`) of check `id` in an audit plan.
fn outcome(plan: &serde_json::Value, id: &str) -> &'static str {
    let has = |list: &serde_json::Value| {
        list.as_array()
            .is_some_and(|l| l.iter().any(|f| f["check"] == id))
    };
    let failing = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| has(&a["findings"]));
    if failing {
        "fail"
    } else if has(&plan["passed"]) {
        "pass"
    } else if has(&plan["not_applicable"]) {
        "not-applicable"
    } else {
        "absent"
    }
}

const CHROMIUM_FILE: &str = "/etc/chromium/policies/managed/patchday-lab-browser.json";

#[test]
fn browser_baseline_blocks_script_on_untrusted_origins_in_real_chromium_and_drift_is_repaired() {
    if !require(Requirement::Root) || !require(Requirement::Chromium) || !require(CHROMEDRIVER) {
        return;
    }
    let _serial = patchday_testkit::serial();
    let dir = scratch();
    let bins = bins();
    let untrusted = Site::start("127.0.0.1");
    let trusted = Site::start("127.0.0.2");

    let cat = Catalog::new(&bins, dir.path());
    let file = dir.path().join("lab-browser.toml");
    std::fs::write(&file, policy(&trusted.origin)).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_patchday"))
        .args(["baseline", "check"])
        .arg(&file)
        .output()
        .unwrap();
    let shown = text(&o);
    assert!(o.status.success(), "{shown}");
    assert!(
        shown.contains("DefaultJavaScriptSetting") && shown.contains("JavaScript per site"),
        "check shows the policies and what Firefox cannot enforce: {shown}"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_patchday"))
        .args(["catalog", "add-baseline", "--keys"])
        .arg(&cat.keys)
        .arg("--repo")
        .arg(&cat.repo)
        .args(["--id", "PD-BR-1", "--emergency", "browser policy"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(o.status.success(), "add-baseline: {}", text(&o));

    let srv = Server::start(&bins, dir.path(), &cat.root());
    patchday_testkit::acme_with_web(&srv, &cat.repo);
    let enroll = patchday_testkit::acme_enroll_token(&srv, &["--unlimited"]);
    let host = Host::new(&bins, dir.path(), "browser1");
    let o = host.agent(&srv.url, Some(&enroll));
    assert!(o.status.success(), "enrol: {}", text(&o));
    let id = srv.acme_host_id("browser1");
    srv.cli(&["host", "set-groups", "--tenant", "acme", &id, "web"]);

    // Point 5: the audit, run inside the host (managed or not, it is the same command),
    // finds the browser unmanaged and proposes the baseline that closes it.
    let (plan, proposed) = audit_in(&host, &bins);
    assert_eq!(
        outcome(&plan, "baseline.browser.chromium.javascript"),
        "fail",
        "{plan}"
    );
    let proposed = proposed.expect("a proposed baseline");
    assert!(
        proposed.contains("# closes: baseline.browser.chromium.javascript"),
        "{proposed}"
    );
    let proposed_file = dir.path().join("proposed.toml");
    std::fs::write(&proposed_file, &proposed).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_patchday"))
        .args(["baseline", "check"])
        .arg(&proposed_file)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "the proposal does not check: {}",
        text(&o)
    );

    // Without the baseline both origins run script (so the checks below can fail).
    {
        let b = browser_in(&host);
        assert!(
            runs_script(&b, &untrusted, "1-before-untrusted"),
            "script did not run before any policy"
        );
        assert!(runs_script(&b, &trusted, "1-before-trusted"));
    }

    srv.cli(&["approve", "--tenant", "acme", "--group", "web", "PD-BR-1"]);
    let o = host.agent(&srv.url, None);
    assert!(o.status.success(), "apply: {}", text(&o));
    assert_eq!(srv.update_state("browser1", "PD-BR-1").0, "installed");
    let (ok, policy_file) = host.run_in("cat", &[CHROMIUM_FILE]);
    assert!(
        ok && policy_file.contains("\"DefaultJavaScriptSetting\": 2"),
        "{policy_file}"
    );
    let (ok, content) = host.run_in("cat", &["/etc/firefox-esr/policies/policies.json"]);
    assert!(ok && content.contains("\"ExtensionSettings\""), "{content}");
    // The machine itself is untouched.
    assert!(!Path::new(CHROMIUM_FILE).exists());
    // The audit agrees now: the browser items the baseline sets pass.
    let (plan, _) = audit_in(&host, &bins);
    for check in [
        "baseline.browser.chromium.javascript",
        "baseline.browser.chromium.extensions",
        "baseline.browser.chromium.downloads",
        "baseline.browser.chromium.safe_browsing",
        "baseline.browser.chromium.updates",
    ] {
        assert_eq!(outcome(&plan, check), "pass", "{check}: {plan}");
    }

    {
        let b = browser_in(&host);
        b.go("chrome://policy");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut page = all_text(&b);
        while !page.contains("JavaScriptAllowedForUrls") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(300));
            page = all_text(&b);
        }
        b.screenshot("browser-policy-2-chrome-policy");
        // Every policy the baseline's file sets is listed from the platform (the managed
        // directory) with status OK: none unknown to this Chromium, none in error.
        let page = page.split_whitespace().collect::<Vec<_>>().join(" ");
        let json = &policy_file[policy_file.find('{').unwrap()..=policy_file.rfind('}').unwrap()];
        let names: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).unwrap();
        assert!(
            names.contains_key("JavaScriptAllowedForUrls"),
            "{policy_file}"
        );
        for name in names.keys() {
            let row = page
                .find(&format!(" {name} "))
                .map(|at| &page[at..])
                .and_then(|rest| rest.split("Error Warning Info").next())
                .unwrap_or_else(|| panic!("chrome://policy lacks {name}: {page}"));
            assert!(
                row.contains("Platform") && row.contains("Status OK"),
                "chrome://policy does not show {name} as applied: {row}"
            );
        }
        assert!(page.contains(&trusted.origin), "{page}");
        assert!(page.contains("Platform"), "source of the policies: {page}");
        assert!(
            !runs_script(&b, &untrusted, "3-applied-untrusted"),
            "the untrusted origin ran script under the baseline"
        );
        assert!(
            runs_script(&b, &trusted, "3-applied-trusted"),
            "the allow-listed origin could not run script"
        );
    }

    // Drift: the file edited by hand, and a local file that would override the baseline
    // (Chromium lets the file whose name sorts last win).
    let (ok, out) = host.run_in(
        "sh",
        &[
            "-c",
            &format!(
                "sed -i 's/\"DefaultJavaScriptSetting\": 2/\"DefaultJavaScriptSetting\": 1/' {CHROMIUM_FILE} && \
                 echo '{{\"DefaultJavaScriptSetting\": 1}}' > /etc/chromium/policies/managed/zz-local.json"
            ),
        ],
    );
    assert!(ok, "{out}");
    {
        let b = browser_in(&host);
        assert!(
            runs_script(&b, &untrusted, "4-drifted-untrusted"),
            "the hand edit did not let script run (the drift would prove nothing)"
        );
    }
    let o = host.agent(&srv.url, None);
    assert!(o.status.success(), "repair run: {}", text(&o));
    assert!(text(&o).contains("baseline drift repaired"), "{}", text(&o));
    let (_, content) = host.run_in("cat", &[CHROMIUM_FILE]);
    assert!(
        content.contains("\"DefaultJavaScriptSetting\": 2"),
        "{content}"
    );
    let (gone, _) = host.run_in(
        "test",
        &["-e", "/etc/chromium/policies/managed/zz-local.json"],
    );
    assert!(
        !gone,
        "the overriding file is still in Chromium's directory"
    );
    let (kept, _) = host.run_in(
        "test",
        &[
            "-e",
            "/var/lib/patchday/displaced/etc_chromium_policies_managed-zz-local.json",
        ],
    );
    assert!(kept, "the overriding file was not kept for the admin");
    {
        let b = browser_in(&host);
        assert!(
            !runs_script(&b, &untrusted, "5-repaired-untrusted"),
            "script ran after the repair"
        );
        assert!(runs_script(&b, &trusted, "5-repaired-trusted"));
    }
    let row = report_row(&srv);
    assert_eq!(row["repaired"], true, "{row}");
    let drift: Vec<&str> = row["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!(
        drift.contains(&format!("file {CHROMIUM_FILE} was changed by hand").as_str()),
        "{row}"
    );
    assert!(
        drift
            .iter()
            .any(|d| d.contains("zz-local.json set DefaultJavaScriptSetting over the baseline")),
        "{row}"
    );
    // Two Chromium directories (Chromium, Google Chrome) and two Firefox files.
    assert_eq!(row["measured"]["browser.policy_files"], 4, "{row}");
}
