//! Issue 12, point 2, with the real binaries: `patchday server --database postgres://…`
//! on a real PostgreSQL server (a throwaway database on the server named in
//! `PATCHDAY_TEST_POSTGRES`), with a real agent on an overlay host, through one enrol →
//! approve → install → compliant cycle; and an unknown database scheme refused with a
//! message that says what to write.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use patchday_lab::{DebSpec, Requirement};
use patchday_store::Store;
use patchday_store_postgres::testing::ThrowawayDatabase;
use patchday_testkit::{scratch, text, AcmeWorld, Bins, Host};
use std::process::Command;

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_host_enrols_installs_and_is_compliant_with_the_server_on_postgresql() {
    let _serial = patchday_testkit::serial();
    if !patchday_lab::require(Requirement::Postgres) {
        return;
    }
    let rt = runtime();
    let db = rt
        .block_on(ThrowawayDatabase::create(
            &patchday_lab::postgres_url().unwrap(),
        ))
        .unwrap();

    let d = scratch();
    let dir = d.path().to_path_buf();
    let b = bins();
    let pkgs = dir.join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let old = DebSpec::new("pd-pg", "1.0-1").changelog("1.0-1", "Initial release.");
    let new = DebSpec::new("pd-pg", "1.0-2")
        .changelog("1.0-2", "Fix CVE-2099-1201.")
        .changelog("1.0-1", "Initial release.");
    let old = patchday_lab::build_deb(&old, &pkgs).unwrap();
    let new = patchday_lab::build_deb(&new, &pkgs).unwrap();
    let url = db.url().to_string();
    let w = AcmeWorld::start(
        &b,
        &dir,
        (
            "PD-PG-1",
            &new,
            &["--emergency", "test", "--since", "1.0-1"],
        ),
        &|_| vec!["--database".into(), url.clone()],
        &["--unlimited"],
    );
    let srv = &w.srv;

    // Enrol: one agent run, then into group `web`.
    let h = Host::new(&b, &dir, "pg-1");
    h.enrol_into_web(srv, &srv.url, &w.enroll, &old);
    let row = srv.host_report("pg-1");
    assert_eq!(row["status"], "exposed", "{row}");

    // Approve, install, compliant.
    srv.cli(&["approve", "--tenant", "acme", "--group", "web", "PD-PG-1"]);
    let o = h.agent(&srv.url, None);
    assert!(o.status.success(), "install: {}", text(&o));
    assert_eq!(h.version("pd-pg").as_deref(), Some("1.0-2"));
    let row = srv.host_report("pg-1");
    assert_eq!(row["status"], "up-to-date", "{row}");
    assert_eq!(row["compliant"], "yes", "{row}");

    // Everything went to PostgreSQL, nothing to a SQLite file in the data directory.
    assert!(
        !srv.data.join("patchday.db").exists(),
        "the server opened SQLite as well"
    );
    let (hosts, log) = rt.block_on(async {
        let store = db.open().await.unwrap();
        let t = store.tenant(&"acme".parse().unwrap()).await.unwrap();
        let hosts = t.list_hosts().await.unwrap();
        let log = store
            .list_log(&patchday_store::LogScope::Everything, None, 1000)
            .await
            .unwrap();
        store.pool().close().await;
        (hosts, log)
    });
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    assert!(
        log.iter().any(|e| e.action.contains("approv")),
        "the approval's log entry is in PostgreSQL: {:?}",
        log.iter().map(|e| &e.action).collect::<Vec<_>>()
    );
}

#[test]
fn an_unknown_database_scheme_is_refused_with_what_to_write() {
    let d = scratch();
    let o = Command::new(bins().patchday)
        .args(["server", "--data"])
        .arg(d.path().join("server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--database",
            "mysql://db/patchday",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("unknown database scheme \"mysql\"") && t.contains("postgres://"),
        "{t}"
    );
}
