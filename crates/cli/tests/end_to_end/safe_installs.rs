//! Issue 9, point 4: installs that cannot break apt. Real `patchday` server on
//! 127.0.0.1:0, catalogs signed through the CLI, and `patchday-agent` running real dpkg
//! inside overlay hosts: an update whose dependencies the host cannot meet is refused
//! before dpkg runs and changes nothing; siblings go in together; a broken dpkg database
//! is reported as broken without blocking unrelated updates; `repair` fixes it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use patchday_lab::DebSpec;
use patchday_testkit::{scratch, text, Bins, Catalog, Host, Server};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

struct World {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    srv: Server,
    enroll: String,
}

/// A catalog with the given updates (id, debs), a server with it, tenant `acme` with
/// group `web`, and an enrolment token.
fn world(updates: &[(&str, Vec<PathBuf>)], dir: tempfile::TempDir) -> World {
    let path = dir.path().to_path_buf();
    let b = bins();
    let cat = Catalog::new(&b, &path);
    for (id, debs) in updates {
        let mut args = vec![
            "catalog".to_string(),
            "add-deb".into(),
            "--keys".into(),
            cat.keys.to_str().unwrap().into(),
            "--repo".into(),
            cat.repo.to_str().unwrap().into(),
            "--id".into(),
            id.to_string(),
            "--emergency".into(),
            "test".into(),
        ];
        args.extend(debs.iter().map(|d| d.to_str().unwrap().to_string()));
        let o = std::process::Command::new(&b.patchday)
            .args(&args)
            .output()
            .unwrap();
        assert!(o.status.success(), "add-deb {id}: {}", text(&o));
    }
    let srv = Server::start(&b, &path, &cat.root());
    srv.cli(&["catalog", "push", "--repo", cat.repo.to_str().unwrap()]);
    srv.cli(&["tenant", "create", "acme"]);
    srv.cli(&["group", "create", "--tenant", "acme", "web"]);
    let enroll = srv
        .cli(&["enroll-token", "create", "--tenant", "acme", "--unlimited"])
        .trim()
        .to_string();
    World {
        _dir: dir,
        dir: path,
        srv,
        enroll,
    }
}

impl World {
    /// A host with `debs` installed (in order), enrolled, in group `web`.
    fn host(&self, name: &str, debs: &[&Path]) -> Host {
        let h = Host::new(&bins(), &self.dir, name);
        for d in debs {
            h.lab.install_deb(d).unwrap();
        }
        let o = h.agent(&self.srv.url, Some(&self.enroll));
        assert!(o.status.success(), "enrol: {}", text(&o));
        let hosts: Vec<Value> = serde_json::from_str(
            &self
                .srv
                .cli(&["host", "list", "--tenant", "acme", "--format", "json"]),
        )
        .unwrap();
        let id = hosts
            .iter()
            .find(|x| x["hostname"] == name)
            .and_then(|x| x["id"].as_str())
            .unwrap()
            .to_string();
        self.srv
            .cli(&["host", "set-groups", "--tenant", "acme", &id, "web"]);
        h
    }

    fn approve(&self, update: &str) {
        self.srv
            .cli(&["approve", "--tenant", "acme", "--group", "web", update]);
    }

    fn state_of(&self, hostname: &str, update: &str) -> (String, String) {
        self.srv.update_state(hostname, update)
    }

    /// The host's row of `patchday report --by host` (JSON).
    fn host_row(&self, hostname: &str) -> Value {
        self.srv.host_report(hostname)
    }
}

/// Runs a program in the host; returns (success, stdout + stderr).
fn in_host(h: &Host, program: &str, args: &[&str]) -> (bool, String) {
    h.run_in(program, args)
}

/// A `python3.11`-style pair built from one source: the interpreter needs the stdlib at
/// exactly its own version. Returns (old interpreter, old stdlib, new interpreter, new stdlib).
fn python_pair(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let out = dir.join("pkgs");
    std::fs::create_dir_all(&out).unwrap();
    let build = |name: &str, version: &str, depends: Option<&str>| {
        let mut spec = DebSpec::new(name, version)
            .source("pd-python", version)
            .changelog(version, "Fix CVE-2099-0901.")
            .file(
                format!("/usr/share/{name}/version"),
                format!("{version}\n").into_bytes(),
                0o644,
            );
        if let Some(d) = depends {
            spec = spec.depends(d);
        }
        patchday_lab::build_deb(&spec, &out).unwrap()
    };
    (
        build("pd-python", "1.0-1", Some("pd-libpython-stdlib (= 1.0-1)")),
        build("pd-libpython-stdlib", "1.0-1", None),
        build("pd-python", "1.0-2", Some("pd-libpython-stdlib (= 1.0-2)")),
        build("pd-libpython-stdlib", "1.0-2", None),
    )
}

#[test]
fn one_sibling_published_alone_is_refused_with_needs_and_nothing_changes() {
    let _serial = patchday_testkit::serial();
    let d = scratch();
    let (py1, lib1, py2, _lib2) = python_pair(d.path());
    // The publisher's slip: the interpreter alone.
    let w = world(&[("PD-T-1", vec![py2])], d);
    let h = w.host("slip-1", &[&lib1, &py1]);
    let listing = |h: &Host| {
        if h.is_overlay() {
            in_host(h, "dpkg", &["-l"]).1
        } else {
            String::new()
        }
    };
    let before = listing(&h);
    w.approve("PD-T-1");

    let o = h.agent(&w.srv.url, None);
    assert!(!o.status.success(), "{}", text(&o));
    let (state, msg) = w.state_of("slip-1", "PD-T-1");
    assert_eq!(state, "failed", "{msg}");
    assert!(
        msg.contains("refused before dpkg ran, nothing was changed: pd-python 1.0-2 needs pd-libpython-stdlib (= 1.0-2)"),
        "{msg}"
    );
    // Nothing changed: dpkg's list is the same and apt sees no unmet dependency.
    assert_eq!(before, listing(&h));
    assert_eq!(h.version("pd-python").as_deref(), Some("1.0-1"));
    assert_eq!(h.version("pd-libpython-stdlib").as_deref(), Some("1.0-1"));
    if h.is_overlay() {
        let (ok, out) = in_host(&h, "apt-get", &["check"]);
        assert!(ok, "apt-get check: {out}");
        let (ok, out) = in_host(&h, "dpkg", &["--audit"]);
        assert!(ok && out.trim().is_empty(), "dpkg --audit: {out}");
    }
    // The host is not broken: only the update was refused.
    assert_eq!(w.host_row("slip-1")["dpkg"], "ok");
}

#[test]
fn sibling_binaries_of_one_update_install_together_in_one_dpkg_run() {
    let _serial = patchday_testkit::serial();
    let d = scratch();
    let (py1, lib1, py2, lib2) = python_pair(d.path());
    let w = world(&[("PD-T-2", vec![py2, lib2])], d);
    let h = w.host("pair-1", &[&lib1, &py1]);
    w.approve("PD-T-2");

    let o = h.agent(&w.srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("installed 1 failed 0"), "{}", text(&o));
    assert_eq!(h.version("pd-python").as_deref(), Some("1.0-2"));
    assert_eq!(h.version("pd-libpython-stdlib").as_deref(), Some("1.0-2"));
    assert_eq!(w.state_of("pair-1", "PD-T-2").0, "installed");
    if h.is_overlay() {
        let (ok, out) = in_host(&h, "apt-get", &["check"]);
        assert!(ok, "apt-get check: {out}");
    }
}

/// An unrelated package whose postinst fails while /etc/pd-broken exists, and an update
/// `pd-other` 1.0-1 → 1.0-2. Returns (broken deb, old other, new other).
fn broken_and_other(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let out = dir.join("pkgs");
    std::fs::create_dir_all(&out).unwrap();
    let broken = DebSpec::new("pd-broken", "1.0-1").postinst(
        "if [ -e /etc/pd-broken ]; then echo 'postinst: cannot reach the license server' >&2; exit 1; fi",
    );
    let old = DebSpec::new("pd-other", "1.0-1");
    let new = DebSpec::new("pd-other", "1.0-2").changelog("1.0-2", "Fix CVE-2099-0902.");
    (
        patchday_lab::build_deb(&broken, &out).unwrap(),
        patchday_lab::build_deb(&old, &out).unwrap(),
        patchday_lab::build_deb(&new, &out).unwrap(),
    )
}

/// A host with `pd-other` 1.0-1 and `pd-broken` left half-configured by its failing
/// postinst, as dpkg leaves it.
fn broken_host(w: &World, name: &str, broken: &Path, old: &Path) -> Host {
    let h = w.host(name, &[old]);
    h.lab.write_file("/etc/pd-broken", b"1").unwrap();
    let err = h.lab.install_deb(broken).unwrap_err();
    assert!(
        err.to_string().contains("license server"),
        "the postinst must fail: {err}"
    );
    assert_eq!(h.version("pd-broken"), None, "left half-configured");
    h
}

#[test]
fn half_configured_unrelated_package_reports_broken_and_does_not_block_other_updates() {
    let _serial = patchday_testkit::serial();
    let d = scratch();
    let (broken, old, new) = broken_and_other(d.path());
    let w = world(&[("PD-T-3", vec![new])], d);
    let h = broken_host(&w, "broken-1", &broken, &old);
    w.approve("PD-T-3");

    // Before the fix, the failing `dpkg --configure -a` failed every update on this host.
    let o = h.agent(&w.srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("installed 1 failed 0"), "{}", text(&o));
    assert_eq!(h.version("pd-other").as_deref(), Some("1.0-2"));
    assert_eq!(w.state_of("broken-1", "PD-T-3").0, "installed");

    // Every update it needs is installed, and still the host is broken, in dpkg's words.
    let row = w.host_row("broken-1");
    assert_eq!(row["compliant"], "no", "{row}");
    let dpkg = row["dpkg"].as_str().unwrap();
    assert!(dpkg.starts_with("broken: "), "{dpkg}");
    assert!(dpkg.contains("pd-broken"), "{dpkg}");
    assert!(dpkg.contains("only half configured"), "{dpkg}");
}

#[test]
fn repair_configures_a_half_configured_package_and_a_decline_never_hides_a_broken_host() {
    let _serial = patchday_testkit::serial();
    let d = scratch();
    let (broken, old, new) = broken_and_other(d.path());
    let w = world(&[("PD-T-4", vec![new])], d);
    let h = broken_host(&w, "repair-1", &broken, &old);
    // A first run reports the host broken.
    let o = h.agent(&w.srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(w.host_row("repair-1")["dpkg"]
        .as_str()
        .unwrap()
        .starts_with("broken: "));

    // A decline of the one update it needs does not hide a broken host.
    w.srv.cli(&[
        "decline",
        "--tenant",
        "acme",
        "--group",
        "web",
        "--reason",
        "the vendor ships its own fix",
        "PD-T-4",
    ]);
    assert_eq!(w.state_of("repair-1", "PD-T-4").0, "declined");
    assert_eq!(w.host_row("repair-1")["compliant"], "no");

    // While the cause is there, repair fails, says so, and the report keeps it broken.
    let o = h
        .agent_command(&w.srv.url, None, &["repair"])
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("repair: the host is still broken: dpkg says:"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("license server"), "{}", text(&o));
    let row = w.host_row("repair-1");
    assert!(
        row["agent"].as_str().unwrap().contains("still broken"),
        "{row}"
    );

    // The admin removes the cause; repair finishes the configuration.
    let (ok, out) = in_host(&h, "/bin/rm", &["-f", "/etc/pd-broken"]);
    assert!(ok, "{out}");
    let o = h
        .agent_command(&w.srv.url, None, &["repair"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("dpkg --configure -a: done"),
        "{}",
        text(&o)
    );
    assert_eq!(h.version("pd-broken").as_deref(), Some("1.0-1"));
    assert_eq!(
        h.version("pd-other").as_deref(),
        Some("1.0-1"),
        "repair installs no update"
    );
    let row = w.host_row("repair-1");
    assert_eq!(row["dpkg"], "ok", "{row}");
    assert_eq!(row["agent"], "ok", "{row}");
    assert_eq!(row["compliant"], "yes", "{row}");
}
