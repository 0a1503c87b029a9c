//! Issue 10, point 3: decline with removal is an operator action. Real `patchday` server
//! on 127.0.0.1:0, catalogs signed through the CLI, `patchday-agent` running real dpkg in
//! overlay hosts: `patchday decline U --remove` takes U back where dpkg allows it (an
//! upgraded package goes back to the newest older signed payload, a package U brought is
//! removed) and a host that cannot (something installed needs it) reports why, changing
//! nothing. The state history and the operator log say what happened, who and why.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use patchday_lab::DebSpec;
use patchday_testkit::{scratch, text, Bins, Catalog, Host, Server};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

/// A server with a catalog of `updates` (id, debs; emergency lane), tenant `acme` with
/// group `web`, and an enrolment token.
struct World {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    srv: Server,
    enroll: String,
}

fn world(dir: tempfile::TempDir, updates: &[(&str, &[&Path])]) -> World {
    let path = dir.path().to_path_buf();
    let b = bins();
    let cat = Catalog::new(&b, &path);
    for (id, debs) in updates {
        let (first, rest) = debs.split_first().unwrap();
        let mut extra: Vec<&str> = vec!["--emergency", "test"];
        extra.extend(rest.iter().map(|d| d.to_str().unwrap()));
        let o = cat.add_deb(id, first, &extra);
        assert!(o.status.success(), "add-deb {id}: {}", text(&o));
    }
    let srv = Server::start(&b, &path, &cat.root());
    patchday_testkit::acme_with_web(&srv, &cat.repo);
    let enroll = patchday_testkit::acme_enroll_token(&srv, &["--unlimited"]);
    World {
        _dir: dir,
        dir: path,
        srv,
        enroll,
    }
}

impl World {
    /// An enrolled host of group `web` with `deb` installed.
    fn host(&self, name: &str, deb: &Path) -> Host {
        let h = Host::new(&bins(), &self.dir, name);
        h.enrol_into_web(&self.srv, &self.srv.url, &self.enroll, deb);
        h
    }

    fn run_agent(&self, h: &Host) -> String {
        let o = h.agent(&self.srv.url, None);
        assert!(o.status.success(), "{}", text(&o));
        text(&o)
    }

    fn decline_remove(&self, update: &str, reason: &str) {
        let out = self.srv.cli(&[
            "decline", "--tenant", "acme", "--group", "web", update, "--remove", "--reason", reason,
        ]);
        assert!(out.contains("declined with removal"), "{out}");
    }

    /// The states `update` went through on host `hostname`, oldest first.
    fn history(&self, hostname: &str, update: &str) -> Vec<(String, String)> {
        let id = self.srv.acme_host_id(hostname);
        let hist: Value = serde_json::from_str(&self.srv.cli(&[
            "history", "--tenant", "acme", "--host", &id, "--update", update, "--format", "json",
        ]))
        .unwrap();
        hist["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["state"].as_str().unwrap().to_string(),
                    e["message"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

fn build(dir: &Path, name: &str, version: &str, depends: Option<&str>) -> PathBuf {
    let mut spec = DebSpec::new(name, version)
        .changelog(version, "Fix CVE-2099-1001.")
        .file(
            format!("/usr/share/{name}/version"),
            format!("{version}\n").into_bytes(),
            0o644,
        );
    if let Some(d) = depends {
        spec = spec.depends(d);
    }
    patchday_lab::build_deb(&spec, &dir.join("pkgs")).unwrap()
}

#[test]
fn decline_remove_downgrades_to_the_signed_older_payload_and_reports_removed() {
    let _serial = patchday_testkit::serial();
    let d = scratch();
    let old = build(d.path(), "pd-dr-tool", "1.0-1", None);
    let new = build(d.path(), "pd-dr-tool", "1.0-2", None);
    let w = world(d, &[("PD-DR-1", &[&old]), ("PD-DR-2", &[&new])]);
    let h = w.host("dr-down-1", &old);
    w.srv
        .cli(&["approve", "--tenant", "acme", "--group", "web", "PD-DR-2"]);
    w.run_agent(&h);
    assert_eq!(h.version("pd-dr-tool").as_deref(), Some("1.0-2"));
    assert_eq!(w.srv.update_state("dr-down-1", "PD-DR-2").0, "installed");

    let why = "1.0-2 breaks the billing export";
    w.decline_remove("PD-DR-2", why);
    let out = w.run_agent(&h);
    assert!(out.contains("removed PD-DR-2"), "{out}");
    // Back at the older version, from the payload the catalog signed for PD-DR-1.
    assert_eq!(h.version("pd-dr-tool").as_deref(), Some("1.0-1"));
    let (state, msg) = w.srv.update_state("dr-down-1", "PD-DR-2");
    assert_eq!(state, "removed", "{msg}");
    assert!(
        msg.contains("pd-dr-tool 1.0-2 downgraded to 1.0-1") && msg.contains(why),
        "{msg}"
    );
    let hist = w.history("dr-down-1", "PD-DR-2");
    assert_eq!(
        hist.last().map(|e| e.0.as_str()),
        Some("removed"),
        "{hist:?}"
    );
    assert!(hist.iter().any(|e| e.0 == "installed"), "{hist:?}");
    // The operator log says who and why.
    let log: Value =
        serde_json::from_str(&w.srv.cli(&["log", "--tenant", "acme", "--format", "json"])).unwrap();
    let entry = log
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "approval.decline-remove")
        .unwrap_or_else(|| panic!("no decline-remove entry in {log}"));
    assert_eq!(entry["detail"]["reason"], why, "{entry}");
    assert_eq!(entry["detail"]["remove"], true, "{entry}");
    assert!(!entry["actor"].as_str().unwrap().is_empty(), "{entry}");
    // Done once: the next run changes nothing and the state stays.
    let out = w.run_agent(&h);
    assert!(!out.contains("PD-DR-2"), "{out}");
    assert_eq!(h.version("pd-dr-tool").as_deref(), Some("1.0-1"));
    assert_eq!(w.srv.update_state("dr-down-1", "PD-DR-2").0, "removed");
    if h.is_overlay() {
        let (ok, out) = h.run_in("dpkg", &["--audit"]);
        assert!(ok && out.trim().is_empty(), "dpkg --audit: {out}");
    }
}

#[test]
fn decline_remove_takes_out_a_package_the_update_brought_and_refuses_one_something_needs() {
    let _serial = patchday_testkit::serial();
    let d = scratch();
    let app1 = build(d.path(), "pd-dr-app", "1.0-1", None);
    let app2 = build(d.path(), "pd-dr-app", "1.0-2", Some("pd-dr-newlib"));
    let lib = build(d.path(), "pd-dr-newlib", "1.0-1", None);
    let user = build(d.path(), "pd-dr-user", "1", Some("pd-dr-newlib (>= 1.0-1)"));
    let w = world(d, &[("PD-DR-3", &[&app1]), ("PD-DR-4", &[&app2, &lib])]);
    let free = w.host("dr-new-1", &app1);
    let held = w.host("dr-new-2", &app1);
    w.srv
        .cli(&["approve", "--tenant", "acme", "--group", "web", "PD-DR-4"]);
    for h in [&free, &held] {
        w.run_agent(h);
        assert_eq!(h.version("pd-dr-app").as_deref(), Some("1.0-2"));
        assert_eq!(h.version("pd-dr-newlib").as_deref(), Some("1.0-1"));
    }
    // On one host, someone installed a package that needs the new library since.
    held.lab.install_deb(&user).unwrap();

    w.decline_remove("PD-DR-4", "the new library leaks memory");
    // Taken back: the upgrade goes back, the package it brought goes.
    let out = w.run_agent(&free);
    assert!(out.contains("removed PD-DR-4"), "{out}");
    assert_eq!(free.version("pd-dr-app").as_deref(), Some("1.0-1"));
    assert_eq!(free.version("pd-dr-newlib"), None);
    let (state, msg) = w.srv.update_state("dr-new-1", "PD-DR-4");
    assert_eq!(state, "removed", "{msg}");
    assert!(
        msg.contains("pd-dr-newlib 1.0-1 removed (the update brought it)"),
        "{msg}"
    );

    // Refused where dpkg would not allow it, with the reason; nothing changed.
    let out = w.run_agent(&held);
    assert!(out.contains("remove-failed PD-DR-4"), "{out}");
    assert_eq!(held.version("pd-dr-app").as_deref(), Some("1.0-2"));
    assert_eq!(held.version("pd-dr-newlib").as_deref(), Some("1.0-1"));
    assert_eq!(held.version("pd-dr-user").as_deref(), Some("1"));
    let (state, msg) = w.srv.update_state("dr-new-2", "PD-DR-4");
    assert_eq!(state, "remove-failed", "{msg}");
    assert!(
        msg.contains("installed pd-dr-user 1 needs pd-dr-newlib (>= 1.0-1)")
            && msg.contains("nothing was changed"),
        "{msg}"
    );
    let hist = w.history("dr-new-2", "PD-DR-4");
    assert_eq!(
        hist.last().map(|e| e.0.as_str()),
        Some("remove-failed"),
        "{hist:?}"
    );
    // Not retried at every check-in: the refusal is the host's answer until the operator
    // acts again.
    let out = w.run_agent(&held);
    assert!(!out.contains("PD-DR-4"), "{out}");
    assert_eq!(w.srv.update_state("dr-new-2", "PD-DR-4").0, "remove-failed");
}
