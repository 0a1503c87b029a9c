//! Issue 12, point 6: `patchday server backup` of a running server and `patchday server
//! restore` into a new data directory, which a new server then serves: an agent enrolled
//! before the backup goes on without enrolling again (the director key, the trusted
//! catalog and the payloads came back with the database) and installs an update approved
//! on the restored server; one enrolled after the backup is told to enrol again. Real
//! server, CLI, agent and dpkg (a `dpkg --root` sandbox host).

use patchday_lab::DebSpec;
use patchday_testkit::{scratch, text, AcmeWorld, Bins, Host, Server};
use std::process::Command;

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

fn patchday(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_patchday"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_restored_server_serves_the_agents_enrolled_before_its_backup() {
    patchday_testkit::on_the_data_directory(
        "PostgreSQL is backed up with pg_dump and a bucket by the object store's own means (README, Backup)",
    );
    let d = scratch();
    let dir = d.path();
    let b = bins();
    let pkgs = dir.join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let build = |v: &str| {
        let spec = DebSpec::new("pd-backup", v)
            .changelog(v, "Fix CVE-2099-0601.")
            .file("/usr/share/pd-backup/version", v.as_bytes().to_vec(), 0o644);
        patchday_lab::build_deb(&spec, &pkgs).unwrap()
    };
    let (old, new) = (build("1.0-1"), build("1.0-2"));
    let AcmeWorld { cat, srv, enroll } = AcmeWorld::start(
        &b,
        dir,
        ("PD-B-1", &new, &["--emergency", "test", "--since", "1.0-1"]),
        &|_| vec![],
        &["--unlimited"],
    );
    let mut srv = srv;
    let before = Host::sandbox(&b, dir, "backup-before");
    before.lab.install_deb(&old).unwrap();
    let o = before.agent(&srv.url, Some(&enroll));
    assert!(o.status.success(), "{}", text(&o));
    let id = srv.acme_host_id("backup-before");
    srv.cli(&["host", "set-groups", "--tenant", "acme", &id, "web"]);

    // The backup, taken while the server runs.
    let backup = dir.join("patchday.tar");
    let data = srv.data.to_str().unwrap().to_string();
    let o = patchday(&[
        "server",
        "backup",
        "--data",
        &data,
        "--out",
        backup.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("payloads"), "{}", text(&o));
    // Never over an existing file.
    let o = patchday(&[
        "server",
        "backup",
        "--data",
        &data,
        "--out",
        backup.to_str().unwrap(),
    ]);
    assert!(
        !o.status.success() && text(&o).contains("exists"),
        "{}",
        text(&o)
    );

    // A host enrolled after the backup.
    let after = Host::sandbox(&b, dir, "backup-after");
    let o = after.agent(&srv.url, Some(&enroll));
    assert!(o.status.success(), "{}", text(&o));
    srv.stop();

    // Restore into a new directory (never over a used one) and serve it.
    let dir2 = dir.join("restored");
    std::fs::create_dir_all(&dir2).unwrap();
    let o = patchday(&[
        "server",
        "restore",
        "--from",
        backup.to_str().unwrap(),
        "--data",
        &data,
    ]);
    assert!(
        !o.status.success() && text(&o).contains("not empty"),
        "{}",
        text(&o)
    );
    let data2 = dir2.join("server");
    let o = patchday(&[
        "server",
        "restore",
        "--from",
        backup.to_str().unwrap(),
        "--data",
        data2.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("1 hosts"), "{}", text(&o));
    std::fs::copy(dir.join("admin-token"), dir2.join("admin-token")).unwrap();
    let restored = Server::start_with(&b, &dir2, &cat.root(), &[]);
    restored.cli(&["approve", "--tenant", "acme", "--group", "web", "PD-B-1"]);

    // The host from before the backup installs from the restored server, unenrolled.
    let o = before.agent(&restored.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(before.version("pd-backup").as_deref(), Some("1.0-2"));
    assert_eq!(
        restored.update_state("backup-before", "PD-B-1").0,
        "installed"
    );

    // The one from after it is told why it is refused and what to do.
    let o = after.agent(&restored.url, None);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("restored from a backup") && text(&o).contains("enrolment token"),
        "{}",
        text(&o)
    );

    // A directory that is not a server's is refused, naming what a restore would lack.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = patchday(&[
        "server",
        "backup",
        "--data",
        empty.to_str().unwrap(),
        "--out",
        dir.join("x.tar").to_str().unwrap(),
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("director key"), "{}", text(&o));
    assert!(!dir.join("x.tar").exists());
}
