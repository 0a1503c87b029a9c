//! `patchday server --mirror-every` end to end (issue 9, point 1): the real server runs
//! the archive sync on its own schedule against a signed apt archive the test builds and
//! serves on 127.0.0.1, takes what the delegated mirror role signed in like a push, and
//! an agent installs it; no CLI call starts a run. A tampered archive during a scheduled
//! run changes nothing, and `/v1/health` says why.

// Test helpers outside #[test] fns fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use patchday_lab::DebSpec;
use patchday_testkit::{scratch, text, Bins, Catalog, Host, Server};
use serde_json::Value;

use crate::support::apt_archive;
use apt_archive::{delegate_mirror_role, libfoo, wall_clock, write_config, AptArchive};

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

/// An archive serving `bar`, a catalog delegating to a `mirror` role, and a server
/// running the mirror every second over that catalog with the role's key and only the
/// online keys (snapshot and timestamp); returns once its first run took the catalog in.
fn scheduled_world(b: &Bins, dir: &Path) -> (AptArchive, Catalog, Server) {
    let mut archive = AptArchive::serve(dir);
    archive.publish(&[DebSpec::new("bar", "2.0-1")]);
    write_config(dir, &archive.url);
    let cat = Catalog::new(b, dir);
    let key = delegate_mirror_role(&cat, dir);
    let online = dir.join("online-keys");
    std::fs::create_dir_all(&online).unwrap();
    for k in ["snapshot.pem", "timestamp.pem"] {
        std::fs::copy(cat.keys.join(k), online.join(k)).unwrap();
    }
    let srv = Server::start_logged(
        b,
        dir,
        &cat.root(),
        &[
            "--mirror-every",
            "1s",
            "--mirror-config",
            dir.join("mirror.toml").to_str().unwrap(),
            "--mirror-catalog",
            cat.repo.to_str().unwrap(),
            "--mirror-key",
            key.to_str().unwrap(),
            "--mirror-online-keys",
            online.to_str().unwrap(),
        ],
        &[],
        &[],
    );
    // The first run takes the catalog in (it is ahead of the empty served one).
    health_until(&srv, dir, "took the catalog in", |h| {
        h.contains("mirror: last catalog taken in")
    });
    (archive, cat, srv)
}

/// Polls `/v1/health` until a scheduled run's line satisfies `done`; returns the body.
fn health_until(srv: &Server, dir: &Path, what: &str, done: impl Fn(&str) -> bool) -> String {
    for _ in 0..600 {
        let (status, body) = srv.http_get("/v1/health", None);
        if status == 200 && done(&body) {
            return body;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (_, body) = srv.http_get("/v1/health", None);
    panic!(
        "no scheduled mirror run {what}; health: {body}\nserver log: {}",
        std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
    );
}

fn catalog_status(srv: &Server) -> Value {
    let (status, body) = srv.http_get("/v1/catalog", Some(&srv.admin));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The weekday of this month's first day: a patch day in its first week at 00:00 UTC
/// has passed, so this month's train (the schedule's) can be approved now.
fn first_weekday_of_month() -> String {
    let today = wall_clock().to_zoned(jiff::tz::TimeZone::UTC).date();
    let first = today.first_of_month();
    format!("{:?}", first.weekday()).to_lowercase()
}

#[test]
fn scheduled_mirror_imports_a_new_source_version_without_any_cli_call_and_the_agent_installs_it() {
    let d = scratch();
    let dir = d.path();
    let b = bins();
    let (mut archive, cat, srv) = scheduled_world(&b, dir);
    let weekday = first_weekday_of_month();
    srv.cli(&[
        "tenant",
        "create",
        "acme",
        "--week",
        "first",
        "--weekday",
        &weekday,
        "--time",
        "00:00",
    ]);
    srv.cli(&["group", "create", "--tenant", "acme", "web"]);
    let enroll = srv
        .cli(&["enroll-token", "create", "--tenant", "acme"])
        .trim()
        .to_string();
    let old =
        patchday_lab::build_deb(&libfoo("libfoo1", "1.2-1", "amd64"), &dir.join("old")).unwrap();
    let h = Host::new(&b, dir, "web1");
    h.enrol_into_web(&srv, &srv.url, &enroll, &old);

    // A new source version appears in the archive; nobody runs anything.
    archive.publish(&[
        DebSpec::new("bar", "2.0-1"),
        libfoo("libfoo1", "1.2-1+deb12u1", "amd64"),
        libfoo("libfoo-doc", "1.2-1+deb12u1", "all"),
    ]);
    let id = "mirror-DEB-libfoo-1.2-1_pdeb12u1";
    let health = health_until(&srv, dir, "imported the new version", |h| {
        h.contains(&format!("1 update(s) signed: {id}"))
    });
    assert!(!health.contains("warning"), "{health}");
    let (status, body) = srv.http_get("/v1/tenants/acme/updates", Some(&srv.admin));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(id), "the served catalog lists {id}: {body}");
    // Issue 12, point 1: the run's progress is in the database, not a file of this server.
    assert!(
        !cat.repo.join("mirror/state.json").exists(),
        "the scheduled mirror kept its progress in a file"
    );

    srv.cli(&["approve", "--tenant", "acme", "--group", "web", id]);
    let o = h.agent(&srv.url, None);
    assert!(o.status.success(), "agent: {}", text(&o));
    assert_eq!(h.version("libfoo1").as_deref(), Some("1.2-1+deb12u1"));
}

#[test]
fn scheduled_mirror_run_on_a_tampered_index_changes_nothing_and_health_says_why() {
    let d = scratch();
    let dir = d.path();
    let b = bins();
    let (mut archive, _cat, srv) = scheduled_world(&b, dir);
    let before = catalog_status(&srv);

    // A genuinely signed InRelease, but the index served beside it is another one.
    let genuine = archive.publish_tampered(&[DebSpec::new("bar", "2.0-2")], |gz| {
        let mut forged = gz.to_vec();
        forged.extend_from_slice(b"forged");
        forged
    });

    let health = health_until(&srv, dir, "failed on the forged index", |h| {
        h.contains("failed") && h.contains("index does not match the SHA256 in InRelease")
    });
    assert!(health.contains("the next run"), "says it retries: {health}");
    assert!(
        health.starts_with("ok"),
        "the server keeps serving: {health}"
    );
    let after = catalog_status(&srv);
    for k in ["targets_version", "snapshot_version", "updates", "payloads"] {
        assert_eq!(before[k], after[k], "{k} changed: {before} → {after}");
    }
    // The next run retries, and succeeds once the archive is whole again.
    std::fs::write(archive.packages_gz(), &genuine).unwrap();
    health_until(&srv, dir, "recovered", |h| h.contains("ok: 0 update(s)"));
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap();
    assert!(log.contains("scheduled mirror run failed"), "{log}");
}

/// A catalog pushed from another copy leaves the server's working catalog behind: the
/// schedule takes nothing in (it would roll the catalog back), says what to do, and is
/// well again once that catalog is copied into its directory.
#[test]
fn scheduled_mirror_behind_a_catalog_pushed_from_elsewhere_says_so_and_recovers() {
    let d = scratch();
    let dir = d.path();
    let b = bins();
    let (_archive, cat, srv) = scheduled_world(&b, dir);
    let elsewhere = dir.join("elsewhere");
    let cp = |from: &Path, to: &Path| {
        let o = std::process::Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
    };
    cp(&cat.repo, &elsewhere);
    let deb = patchday_lab::build_deb(&DebSpec::new("baz", "1.0-1"), &dir.join("debs")).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_patchday"))
        .args(["catalog", "add-deb", "--keys"])
        .arg(&cat.keys)
        .arg("--repo")
        .arg(&elsewhere)
        .args(["--id", "PD-2026-0001", "--emergency", "test"])
        .arg(&deb)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    srv.cli(&["catalog", "push", "--repo", elsewhere.to_str().unwrap()]);
    let pushed = catalog_status(&srv);

    let health = health_until(&srv, dir, "noticed the pushed catalog", |h| {
        h.contains("is ahead of the mirror's working catalog")
    });
    assert!(
        health.contains(&format!("copy that catalog into {}", cat.repo.display())),
        "{health}"
    );
    assert_eq!(
        catalog_status(&srv)["targets_version"],
        pushed["targets_version"]
    );

    for sub in ["metadata", "targets"] {
        std::fs::remove_dir_all(cat.repo.join(sub)).unwrap();
        cp(&elsewhere.join(sub), &cat.repo.join(sub));
    }
    health_until(&srv, dir, "recovered", |h| {
        h.contains("mirror: last run at") && h.contains("ok: 0 update(s)")
    });
    assert_eq!(catalog_status(&srv)["updates"], pushed["updates"]);
}
