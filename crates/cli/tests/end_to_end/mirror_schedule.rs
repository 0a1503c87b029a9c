//! `patchday server --mirror-every` end to end (issue 9, point 1): the real server runs
//! the archive sync on its own schedule against a signed apt archive the test builds and
//! serves on 127.0.0.1, takes what the delegated mirror role signed in like a push, and
//! an agent installs it; no CLI call starts a run. A tampered archive during a scheduled
//! run changes nothing, and `/v1/health` says why.
//!
//! Issue 12, point 1: the server has no working catalog directory (no `--mirror-catalog`):
//! each run builds one from the store. A catalog pushed from another copy is simply what
//! the next run signs onto; and with two servers on one PostgreSQL, a run on the second
//! continues from the first's (nothing signed again, versions only rising), and an agent
//! checking in through the second verifies and installs what it signed.

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

/// A catalog delegating to a `mirror` role, the role's key and a directory with only
/// the online keys (snapshot and timestamp).
struct MirrorKeys {
    cat: Catalog,
    key: std::path::PathBuf,
    online: std::path::PathBuf,
}

fn mirror_keys(b: &Bins, dir: &Path) -> MirrorKeys {
    let cat = Catalog::new(b, dir);
    let key = delegate_mirror_role(&cat, dir);
    let online = dir.join("online-keys");
    std::fs::create_dir_all(&online).unwrap();
    for k in ["snapshot.pem", "timestamp.pem"] {
        std::fs::copy(cat.keys.join(k), online.join(k)).unwrap();
    }
    MirrorKeys { cat, key, online }
}

/// The server flags of a mirror every second over `dir/mirror.toml` (no working catalog
/// directory: issue 12, point 1), and `extra`.
fn mirror_flags(dir: &Path, keys: &MirrorKeys, extra: &[&str]) -> Vec<String> {
    let mut flags: Vec<String> = [
        "--mirror-every",
        "1s",
        "--mirror-config",
        dir.join("mirror.toml").to_str().unwrap(),
        "--mirror-key",
        keys.key.to_str().unwrap(),
        "--mirror-online-keys",
        keys.online.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    flags.extend(extra.iter().map(|s| s.to_string()));
    flags
}

/// A server in `dir` running the mirror every second with `flags`, its log in
/// `dir/server.log`.
fn mirror_server(b: &Bins, dir: &Path, keys: &MirrorKeys, flags: &[String]) -> Server {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::start_logged(b, dir, &keys.cat.root(), &flags, &[], &[])
}

/// An archive serving `bar`, a catalog delegating to a `mirror` role, pushed to a server
/// running the mirror every second with the role's key and only the online keys, and no
/// working catalog directory; returns once a run signed onto the pushed catalog.
fn scheduled_world(b: &Bins, dir: &Path) -> (AptArchive, Catalog, Server) {
    let mut archive = AptArchive::serve(dir);
    archive.publish(&[DebSpec::new("bar", "2.0-1")]);
    write_config(dir, &archive.url);
    let keys = mirror_keys(b, dir);
    let srv = mirror_server(b, dir, &keys, &mirror_flags(dir, &keys, &[]));
    // Before a catalog is pushed, a run has nothing to sign onto, and says so.
    health_until(&srv, dir, "asked for a catalog", |h| {
        h.contains("the server holds no catalog yet: push the catalog")
    });
    srv.cli(&["catalog", "push", "--repo", keys.cat.repo.to_str().unwrap()]);
    health_until(&srv, dir, "ran on the pushed catalog", |h| {
        h.contains("ok: 0 update(s) imported")
    });
    (archive, keys.cat, srv)
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
    // Issue 12, point 1: the run's progress is in the database, not a file of this
    // server; its work directory (DATA/mirror) holds only downloads and the evidence kept
    // for `catalog verify-upstream`, and the operator's catalog was never written to.
    let work = srv.data.join("mirror");
    assert!(
        !work.join("state.json").exists(),
        "the scheduled mirror kept its progress in a file"
    );
    assert!(
        std::fs::read_dir(work.join("evidence")).unwrap().count() >= 2,
        "the InRelease and index it verified are kept"
    );
    assert!(!cat.repo.join("mirror").exists());

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

/// Issue 12, point 1: a catalog pushed from another copy is simply what the next run
/// signs onto (there is no working copy of the server's to fall behind): no warning,
/// nothing to copy, and what the push brought stays served.
#[test]
fn scheduled_mirror_signs_onto_a_catalog_pushed_from_elsewhere() {
    let d = scratch();
    let dir = d.path();
    let b = bins();
    let (_archive, cat, srv) = scheduled_world(&b, dir);
    let deb = patchday_lab::build_deb(&DebSpec::new("baz", "1.0-1"), &dir.join("debs")).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_patchday"))
        .args(["catalog", "add-deb", "--keys"])
        .arg(&cat.keys)
        .arg("--repo")
        .arg(&cat.repo)
        .args(["--id", "PD-2026-0001", "--emergency", "test"])
        .arg(&deb)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    srv.cli(&["catalog", "push", "--repo", cat.repo.to_str().unwrap()]);
    let pushed = catalog_status(&srv);
    assert_eq!(pushed["updates"], 1, "{pushed}");

    let log = dir.join("server.log");
    let runs_before = std::fs::read_to_string(&log)
        .unwrap()
        .matches("the served catalog is not the one the last mirror run made")
        .count();
    health_until(&srv, dir, "ran on the pushed catalog", |_| {
        std::fs::read_to_string(&log)
            .unwrap()
            .matches("the served catalog is not the one the last mirror run made")
            .count()
            > runs_before
    });
    let health = health_until(&srv, dir, "ran again", |h| h.contains("ok: 0 update(s)"));
    assert!(!health.contains("warning"), "{health}");
    let after = catalog_status(&srv);
    for k in ["snapshot_version", "updates", "payloads"] {
        assert_eq!(pushed[k], after[k], "{k} changed: {pushed} → {after}");
    }
}

/// Issue 12, point 1: two servers on one PostgreSQL database and one payload directory,
/// each with the mirror schedule and no working catalog directory. Server A's run signs
/// a new libfoo version; A stops; server B takes the mirror's lease and, when the archive
/// publishes the next version, signs only that one onto A's catalog (A's update is not
/// signed again, versions only rise), and an agent checking in through B verifies the
/// catalog and installs what B signed.
#[test]
fn a_scheduled_mirror_run_on_another_server_continues_from_the_first_ones_catalog() {
    if !patchday_lab::require(patchday_lab::Requirement::Postgres) {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = rt
        .block_on(patchday_store_postgres::testing::ThrowawayDatabase::create(
            &patchday_lab::postgres_url().unwrap(),
        ))
        .unwrap();
    let d = scratch();
    let dir = d.path();
    let b = bins();
    let mut archive = AptArchive::serve(dir);
    archive.publish(&[DebSpec::new("bar", "2.0-1")]);
    write_config(dir, &archive.url);
    let keys = mirror_keys(&b, dir);
    let content = dir.join("content");
    let shared = [
        "--database",
        db.url(),
        "--content",
        content.to_str().unwrap(),
    ];
    let (dir_a, dir_b) = (dir.join("a"), dir.join("b"));
    std::fs::create_dir_all(&dir_a).unwrap();
    let mut a = mirror_server(&b, &dir_a, &keys, &mirror_flags(dir, &keys, &shared));
    a.cli(&["catalog", "push", "--repo", keys.cat.repo.to_str().unwrap()]);
    let weekday = first_weekday_of_month();
    a.cli(&[
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
    a.cli(&["group", "create", "--tenant", "acme", "web"]);
    let enroll = a
        .cli(&["enroll-token", "create", "--tenant", "acme"])
        .trim()
        .to_string();
    let old =
        patchday_lab::build_deb(&libfoo("libfoo1", "1.2-1", "amd64"), &dir.join("old")).unwrap();
    let h = Host::new(&b, dir, "web1");
    h.enrol_into_web(&a, &a.url, &enroll, &old);

    // A signs the first security update.
    archive.publish(&[
        DebSpec::new("bar", "2.0-1"),
        libfoo("libfoo1", "1.2-1+deb12u1", "amd64"),
    ]);
    let first = "mirror-DEB-libfoo-1.2-1_pdeb12u1";
    health_until(&a, &dir_a, "signed on A", |h| {
        h.contains(&format!("1 update(s) signed: {first}"))
    });
    let on_a = catalog_status(&a);
    let mirror_role_on_a = role_version(&a, "mirror");
    a.stop();

    // B: the same director key (the one private key replicas share), its own data
    // directory and work directory, no catalog directory of any kind.
    std::fs::create_dir_all(dir_b.join("server")).unwrap();
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(a.data.join("director"))
        .arg(dir_b.join("server/director"))
        .output()
        .unwrap();
    assert!(cp.status.success(), "{}", text(&cp));
    std::fs::copy(dir_a.join("admin-token"), dir_b.join("admin-token")).unwrap();
    let srv_b = mirror_server(&b, &dir_b, &keys, &mirror_flags(dir, &keys, &shared));
    archive.publish(&[
        DebSpec::new("bar", "2.0-1"),
        libfoo("libfoo1", "1.2-1+deb12u1", "amd64"),
        libfoo("libfoo1", "1.2-1+deb12u2", "amd64"),
    ]);
    let second = "mirror-DEB-libfoo-1.2-1_pdeb12u2";
    // B takes the lease once A's expires (a minute), and signs only the new version.
    let health = health_until(&srv_b, &dir_b, "signed on B", |h| {
        h.contains("mirror: last catalog taken in")
    });
    assert!(
        health.contains(&format!("1 update(s) signed: {second}")),
        "B signed {first} again or not {second}: {health}"
    );
    let on_b = catalog_status(&srv_b);
    assert_eq!(
        on_b["updates"].as_u64().unwrap(),
        on_a["updates"].as_u64().unwrap() + 1,
        "{on_a} → {on_b}"
    );
    for k in ["targets_version", "snapshot_version", "timestamp_version"] {
        assert!(
            on_b[k].as_u64().unwrap() >= on_a[k].as_u64().unwrap(),
            "{k} went down: {on_a} → {on_b}"
        );
    }
    assert!(on_b["snapshot_version"].as_u64() > on_a["snapshot_version"].as_u64());
    assert!(
        role_version(&srv_b, "mirror") >= mirror_role_on_a,
        "the mirror role's metadata went back"
    );
    assert!(!srv_b.data.join("mirror/state.json").exists());

    // An agent checking in through B verifies the catalog (both versions) and installs
    // what B signed.
    srv_b.cli(&["approve", "--tenant", "acme", "--group", "web", second]);
    let o = h.agent(&srv_b.url, None);
    assert!(o.status.success(), "agent through B: {}", text(&o));
    assert_eq!(h.version("libfoo1").as_deref(), Some("1.2-1+deb12u2"));
    let (state, _) = srv_b.update_state("web1", second);
    assert_eq!(state, "installed");
    drop(srv_b);
    drop(a);
    drop(db);
}

/// The version of delegated role `role` the served snapshot lists.
fn role_version(srv: &Server, role: &str) -> u64 {
    let get = |name: &str| -> Value {
        let (status, body) = srv.http_get(&format!("/v1/tuf/metadata/{name}"), Some(&srv.admin));
        assert_eq!(status, 200, "{name}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    let snapshot = get("timestamp.json")["signed"]["meta"]["snapshot.json"]["version"]
        .as_u64()
        .unwrap();
    get(&format!("{snapshot}.snapshot.json"))["signed"]["meta"][format!("{role}.json")]["version"]
        .as_u64()
        .unwrap_or(0)
}

/// Issue 12, point 1: with the mirror signing on the server, the publisher's copy of the
/// catalog falls behind the served one. Pushing it would roll the mirror's updates back
/// and is refused; `catalog pull` refuses to overwrite what was signed there and not
/// pushed, and into a fresh directory gives the served catalog (verified against the
/// operator's first root), which the publisher signs onto and pushes; the next scheduled
/// run signs onto that, and `verify-upstream` checks the pulled copy with the server's
/// kept evidence.
#[test]
fn a_publisher_pulls_the_served_catalog_signs_onto_it_and_the_mirror_goes_on_from_there() {
    let d = scratch();
    let dir = d.path();
    let b = bins();
    let (mut archive, cat, srv) = scheduled_world(&b, dir);
    srv.cli(&["tenant", "create", "acme"]);
    srv.cli(&["group", "create", "--tenant", "acme", "web"]);
    let enroll = srv
        .cli(&["enroll-token", "create", "--tenant", "acme"])
        .trim()
        .to_string();
    let old =
        patchday_lab::build_deb(&libfoo("libfoo1", "1.2-1", "amd64"), &dir.join("old")).unwrap();
    let h = Host::new(&b, dir, "web1");
    h.enrol_into_web(&srv, &srv.url, &enroll, &old);
    archive.publish(&[
        DebSpec::new("bar", "2.0-1"),
        libfoo("libfoo1", "1.2-1+deb12u1", "amd64"),
    ]);
    let first = "mirror-DEB-libfoo-1.2-1_pdeb12u1";
    health_until(&srv, dir, "signed the first", |h| {
        h.contains(&format!("1 update(s) signed: {first}"))
    });

    // The publisher's own copy, with an offline update signed onto it.
    let deb = patchday_lab::build_deb(&DebSpec::new("baz", "1.0-1"), &dir.join("debs")).unwrap();
    let add = |repo: &Path| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_patchday"))
            .args(["catalog", "add-deb", "--keys"])
            .arg(&cat.keys)
            .arg("--repo")
            .arg(repo)
            .args(["--id", "PD-2026-0001", "--emergency", "test"])
            .arg(&deb)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
    };
    add(&cat.repo);
    let stale = srv.cli_as(
        &srv.admin,
        &["catalog", "push", "--repo", cat.repo.to_str().unwrap()],
    );
    assert!(
        !stale.status.success(),
        "a copy without the mirror's update was taken: {}",
        text(&stale)
    );
    assert!(
        catalog_updates(&srv).contains(first),
        "the mirror's update is still served"
    );
    let refused = srv.cli_as(
        &srv.admin,
        &["catalog", "pull", "--repo", cat.repo.to_str().unwrap()],
    );
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("signed there and not pushed"),
        "{}",
        text(&refused)
    );

    // From the served catalog: pull, sign, push. Verified against the root given: the
    // first root of another catalog refuses the served one, and nothing is written.
    let pulled = dir.join("pulled");
    let other = Catalog::new(&b, &dir.join("other"));
    let foreign = srv.cli_as(
        &srv.admin,
        &[
            "catalog",
            "pull",
            "--repo",
            pulled.to_str().unwrap(),
            "--root",
            other.root().to_str().unwrap(),
        ],
    );
    assert!(!foreign.status.success(), "{}", text(&foreign));
    assert!(
        text(&foreign).contains("does not verify against"),
        "{}",
        text(&foreign)
    );
    assert!(
        !pulled.join("metadata").exists(),
        "a refused pull wrote metadata"
    );
    let root = cat.repo.join("metadata/1.root.json");
    let pull = || {
        srv.cli(&[
            "catalog",
            "pull",
            "--repo",
            pulled.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
        ])
    };
    let said = pull();
    assert!(said.contains("1 update document(s) fetched"), "{said}");
    add(&pulled);
    srv.cli(&["catalog", "push", "--repo", pulled.to_str().unwrap()]);
    let updates = catalog_updates(&srv);
    assert!(
        updates.contains(first) && updates.contains("PD-2026-0001"),
        "{updates}"
    );

    // The next scheduled run signs onto the pushed catalog.
    archive.publish(&[
        DebSpec::new("bar", "2.0-1"),
        libfoo("libfoo1", "1.2-1+deb12u1", "amd64"),
        libfoo("libfoo1", "1.2-1+deb12u2", "amd64"),
    ]);
    let second = "mirror-DEB-libfoo-1.2-1_pdeb12u2";
    health_until(&srv, dir, "signed the second", |h| {
        h.contains(&format!("1 update(s) signed: {second}"))
    });
    let updates = catalog_updates(&srv);
    for id in [first, second, "PD-2026-0001"] {
        assert!(updates.contains(id), "{id} is not served: {updates}");
    }

    // The served catalog, pulled again, re-checked against the evidence the server kept.
    pull();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_patchday"))
        .args(["catalog", "verify-upstream", "--repo"])
        .arg(&pulled)
        .arg("--config")
        .arg(dir.join("mirror.toml"))
        .arg("--work")
        .arg(srv.data.join("mirror"))
        .output()
        .unwrap();
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    assert!(said.contains("2 verified, 0 differ"), "{said}");
}

/// The served catalog's update ids (`/v1/tenants/acme/updates`).
fn catalog_updates(srv: &Server) -> String {
    let (status, body) = srv.http_get("/v1/tenants/acme/updates", Some(&srv.admin));
    assert_eq!(status, 200, "{body}");
    body
}

/// Issue 12, point 1: `--mirror-catalog` (an older server's working catalog) is only read:
/// its state file moves into the database at the first run, its publication times seed
/// the database's, nothing in it is written; a path that is not a directory stops the
/// server with what to do.
#[test]
fn an_older_servers_working_catalog_is_only_read_and_a_missing_one_is_refused() {
    let d = scratch();
    let dir = d.path();
    let b = bins();
    let mut archive = AptArchive::serve(dir);
    archive.publish(&[DebSpec::new("bar", "2.0-1")]);
    write_config(dir, &archive.url);
    let keys = mirror_keys(&b, dir);

    let missing = dir.join("no-such-catalog");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_patchday"))
        .args(["server", "--data"])
        .arg(dir.join("refused"))
        .args(["--listen", "127.0.0.1:0", "--catalog-root"])
        .arg(keys.cat.root())
        .args(mirror_flags(
            dir,
            &keys,
            &["--mirror-catalog", missing.to_str().unwrap()],
        ))
        .output()
        .unwrap();
    let said = text(&o);
    assert!(!o.status.success(), "{said}");
    assert!(
        said.contains("is not a directory") && said.contains("drop the flag"),
        "{said}"
    );

    // What a server before issue 12 left: its working catalog with the mirror's state
    // file and publication times.
    let old = dir.join("old-catalog");
    std::fs::create_dir_all(old.join("mirror")).unwrap();
    std::fs::write(
        old.join("mirror/state.json"),
        br#"{"sources":{"test-security":{"inrelease_sha256":"00","date":"2026-01-01T00:00:00Z","complete":false,"selection":""}},"imported":[]}"#,
    )
    .unwrap();
    std::fs::write(
        old.join("published.json"),
        br#"{"published":{"mirror-DEB-old-1":"2026-01-01T00:00:00Z"}}"#,
    )
    .unwrap();
    let srv = mirror_server(
        &b,
        dir,
        &keys,
        &mirror_flags(dir, &keys, &["--mirror-catalog", old.to_str().unwrap()]),
    );
    srv.cli(&["catalog", "push", "--repo", keys.cat.repo.to_str().unwrap()]);
    health_until(&srv, dir, "ran", |h| h.contains("ok: 0 update(s) imported"));
    assert!(old.join("mirror/state.json.moved-to-database").exists());
    assert!(!old.join("mirror/state.json").exists());
    let mut left: Vec<String> = std::fs::read_dir(&old)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["mirror", "published.json"],
        "the seed was written to"
    );
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap();
    assert!(
        log.contains("--mirror-catalog is no longer needed"),
        "{log}"
    );
}

/// Issue 12, point 1: the served catalog must delegate to the mirror's role (once checked
/// on the working directory at start; now on the catalog each run builds): a run says
/// what to do instead of signing nothing or failing at the first update.
#[test]
fn a_served_catalog_without_the_mirror_role_is_named_with_what_to_do() {
    let d = scratch();
    let dir = d.path();
    let b = bins();
    let mut archive = AptArchive::serve(dir);
    archive.publish(&[DebSpec::new("bar", "2.0-1")]);
    write_config(dir, &archive.url);
    let cat = Catalog::new(&b, dir);
    let mirror_keys_dir = dir.join("mirror-keys");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_patchday"))
        .args(["keys", "generate", "--keys"])
        .arg(&mirror_keys_dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let online = dir.join("online-keys");
    std::fs::create_dir_all(&online).unwrap();
    for k in ["snapshot.pem", "timestamp.pem"] {
        std::fs::copy(cat.keys.join(k), online.join(k)).unwrap();
    }
    let keys = MirrorKeys {
        cat,
        key: mirror_keys_dir.join("targets.pem"),
        online,
    };
    let srv = mirror_server(&b, dir, &keys, &mirror_flags(dir, &keys, &[]));
    srv.cli(&["catalog", "push", "--repo", keys.cat.repo.to_str().unwrap()]);
    let health = health_until(&srv, dir, "named the missing role", |h| {
        h.contains("does not delegate to the mirror role")
    });
    assert!(
        health.contains("patchday catalog delegate --role mirror"),
        "{health}"
    );
}
