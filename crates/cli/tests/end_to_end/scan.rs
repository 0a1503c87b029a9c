//! Issue 14, point 5: a baseline with `[scan]` published and approved like any update;
//! `patchday-agent scan-folders` (the package's scan unit) starts it by itself, with a real clamd (the
//! tests' own signatures) and a real server: a file already there, the EICAR file under a
//! harmless name, a clean file, a partial download renamed when complete, a link to a
//! system file outside the folder (which would be a hit if followed); clamd stopped (a new file is not passed as clean and is
//! reported unscanned, then scanned when clamd is back); and a release from the
//! quarantine.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::clamd::Clamd;
use patchday_lab::{require, Requirement};
use patchday_milter::samples;
use patchday_testkit::{text, Bins, Catalog, Daemon, Host, Server};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

fn policy(clamd_socket: &Path, version: &str, when_clamd_down: &str) -> String {
    format!(
        r#"[baseline]
name = "laptops"
version = "{version}"
description = "downloads and messenger transfers scanned"

[scan]
folders = ["/home/*/Downloads", "/home/*/.local/share/TelegramDesktop"]
clamd = "unix:{}"
quarantine = "/var/lib/patchday/quarantine"
max_file_mib = 10
when_clamd_down = "{when_clamd_down}"
unscanned_after_seconds = 5
timeout_seconds = 5
max_scans_per_second = 50
"#,
        clamd_socket.display()
    )
}

/// Signs a version of the policy into the catalog as update `id`.
fn publish(cat: &Catalog, dir: &Path, id: &str, policy_text: &str) {
    let file = dir.join(format!("{id}.toml"));
    std::fs::write(&file, policy_text).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_patchday"))
        .args(["baseline", "check"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        o.status.success() && text(&o).contains("scan: 2 folders"),
        "check: {}",
        text(&o)
    );
    let o = Command::new(env!("CARGO_BIN_EXE_patchday"))
        .args(["catalog", "add-baseline", "--keys"])
        .arg(&cat.keys)
        .arg("--repo")
        .arg(&cat.repo)
        .args(["--id", id, "--emergency", "download scanning"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(o.status.success(), "add-baseline: {}", text(&o));
}

/// `patchday scan findings` as JSON.
fn findings(srv: &Server) -> Vec<serde_json::Value> {
    let out = srv.cli(&[
        "scan", "findings", "--tenant", "acme", "--limit", "1000", "--format", "json",
    ]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Waits (up to two minutes) until a finding for `path` with `outcome` is on the server.
fn finding_for(srv: &Server, daemon: &Daemon, path: &str, outcome: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(f) = findings(srv)
            .into_iter()
            .find(|f| f["finding"]["path"] == path && f["finding"]["outcome"] == outcome)
        {
            return f;
        }
        assert!(
            Instant::now() < deadline,
            "no {outcome} finding for {path} on the server: {:?}\nagent: {}",
            findings(srv),
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn has_finding(srv: &Server, path: &str, outcome: &str) -> bool {
    findings(srv)
        .iter()
        .any(|f| f["finding"]["path"] == path && f["finding"]["outcome"] == outcome)
}

/// Writes `bytes` at `path` owned by uid/gid 1000, as a browser of that user would (the
/// owner set before the close that tells the scan the file is complete).
fn download(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    std::os::unix::fs::fchown(&f, Some(1000), Some(1000)).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn downloads_are_scanned_hits_quarantined_and_reported_and_clamd_down_never_means_clean() {
    if !require(Requirement::CLAMD) || !require(Requirement::Root) {
        return;
    }
    let tmp = patchday_testkit::scratch();
    let dir = tmp.path();
    let bins = bins();
    let clamd = Clamd::start(dir);
    let eicar = samples::eicar();

    let cat = Catalog::new(&bins, dir);
    publish(
        &cat,
        dir,
        "PD-SCAN-1",
        &policy(&clamd.socket, "1", "report"),
    );

    let srv = Server::start(&bins, dir, &cat.root());
    patchday_testkit::acme_with_web(&srv, &cat.repo);
    let enroll = patchday_testkit::acme_enroll_token(&srv, &["--unlimited"]);
    // A `dpkg --root` host: the agent runs on this machine with --root, so the folders and
    // the quarantine are below the host's root and inotify sees the test's writes.
    let host = Host::sandbox(&bins, dir, "laptop1");
    let root: PathBuf = host.lab.root_dir().unwrap().to_path_buf();
    let o = host.agent(&srv.url, Some(&enroll));
    assert!(o.status.success(), "enrol: {}", text(&o));
    let id = srv.acme_host_id("laptop1");
    srv.cli(&["host", "set-groups", "--tenant", "acme", &id, "web"]);
    srv.cli(&["approve", "--tenant", "acme", "--group", "web", "PD-SCAN-1"]);
    let o = host.agent(&srv.url, None);
    assert!(o.status.success(), "apply: {}", text(&o));
    assert_eq!(srv.update_state("laptop1", "PD-SCAN-1").0, "installed");

    let downloads = root.join("home/alice/Downloads");
    let telegram = root.join("home/alice/.local/share/TelegramDesktop");
    std::fs::create_dir_all(&downloads).unwrap();
    std::fs::create_dir_all(&telegram).unwrap();
    // Already there before the scan starts: scanned once at the start.
    download(&downloads.join("old-invoice.pdf"), &eicar);
    // A link to a file outside the folder (a system file that would be a hit if read):
    // never followed.
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/system-file"), &eicar).unwrap();
    std::os::unix::fs::symlink(root.join("etc/system-file"), downloads.join("system-link"))
        .unwrap();

    // What the package's patchday-agent-scan.service runs.
    let daemon = Daemon::start(&host, &srv.url, dir, &["scan-folders"]);
    daemon.until_logged("folder scan started");
    let old = finding_for(
        &srv,
        &daemon,
        "/home/alice/Downloads/old-invoice.pdf",
        "quarantined",
    );
    assert!(!downloads.join("old-invoice.pdf").exists());
    assert_eq!(old["hostname"], "laptop1");

    // EICAR under a harmless name, a clean file, a messenger transfer, a partial download.
    download(&downloads.join("holiday-photos.jpg"), &eicar);
    download(
        &downloads.join("notes.txt"),
        b"shopping list: milk, bread\n",
    );
    download(&telegram.join("contract.docx"), &eicar);
    download(&downloads.join("setup.exe.crdownload"), &eicar);
    let hit = finding_for(
        &srv,
        &daemon,
        "/home/alice/Downloads/holiday-photos.jpg",
        "quarantined",
    );
    let f = &hit["finding"];
    assert_eq!(f["signature"], "Patchday.Test.EICAR.UNOFFICIAL", "{hit}");
    assert_eq!(f["owner"], 1000, "{hit}");
    assert_eq!(f["size"], eicar.len(), "{hit}");
    finding_for(
        &srv,
        &daemon,
        "/home/alice/.local/share/TelegramDesktop/contract.docx",
        "quarantined",
    );
    assert!(!downloads.join("holiday-photos.jpg").exists());
    assert!(downloads.join("notes.txt").exists(), "the clean file stays");
    assert!(
        downloads.join("setup.exe.crdownload").exists(),
        "a download in progress is left alone until renamed"
    );
    assert!(std::fs::symlink_metadata(downloads.join("system-link")).is_ok());
    assert!(
        root.join("etc/system-file").exists(),
        "a link's target is never taken"
    );
    assert!(!has_finding(
        &srv,
        "/home/alice/Downloads/system-link",
        "quarantined"
    ));
    // The download completes: renamed to its final name, then scanned.
    std::fs::rename(
        downloads.join("setup.exe.crdownload"),
        downloads.join("setup.exe"),
    )
    .unwrap();
    finding_for(
        &srv,
        &daemon,
        "/home/alice/Downloads/setup.exe",
        "quarantined",
    );
    assert!(!downloads.join("setup.exe").exists());

    // The quarantine: root only, nothing executable, a record per file.
    let q = root.join("var/lib/patchday/quarantine");
    assert_eq!(
        std::fs::metadata(&q).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let qid = f["quarantine_id"].as_str().unwrap().to_string();
    let kept = q.join(format!("{qid}.quarantined"));
    let m = std::fs::metadata(&kept).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    assert_eq!(m.uid(), 0);
    assert_eq!(std::fs::read(&kept).unwrap(), eicar);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(q.join(format!("{qid}.json"))).unwrap()).unwrap();
    assert_eq!(
        record["original_path"],
        "/home/alice/Downloads/holiday-photos.jpg"
    );
    assert_eq!(record["uid"], 1000);
    assert_eq!(record["signature"], "Patchday.Test.EICAR.UNOFFICIAL");
    assert_eq!(record["sha256"], f["sha256"]);
    let o = host
        .agent_command(&srv.url, None, &["quarantine", "list"])
        .output()
        .unwrap();
    assert!(
        o.status.success() && text(&o).contains(&qid),
        "{}",
        text(&o)
    );

    // clamd down: a new file is not passed as clean. It is retried, reported unscanned
    // after the policy's bound, and scanned once clamd is back.
    let (conf, socket) = clamd.stop();
    download(&downloads.join("report.docx"), &eicar);
    download(&downloads.join("minutes.txt"), b"meeting minutes\n");
    let unscanned = finding_for(
        &srv,
        &daemon,
        "/home/alice/Downloads/report.docx",
        "unscanned",
    );
    let reason = unscanned["finding"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("not scanned for 5s") && reason.contains("clamd"),
        "{reason}"
    );
    finding_for(
        &srv,
        &daemon,
        "/home/alice/Downloads/minutes.txt",
        "unscanned",
    );
    assert!(
        downloads.join("report.docx").exists(),
        "kept in place and retried"
    );
    assert!(!has_finding(
        &srv,
        "/home/alice/Downloads/report.docx",
        "quarantined"
    ));
    let clamd = Clamd::start_with(conf, socket);
    finding_for(
        &srv,
        &daemon,
        "/home/alice/Downloads/report.docx",
        "quarantined",
    );
    assert!(!downloads.join("report.docx").exists());
    finding_for(
        &srv,
        &daemon,
        "/home/alice/Downloads/minutes.txt",
        "clean-after-retry",
    );
    assert!(downloads.join("minutes.txt").exists());

    // Release: back where it was, with its owner; the scan leaves the released file alone.
    let o = host
        .agent_command(&srv.url, None, &["quarantine", "release", &qid])
        .output()
        .unwrap();
    assert!(o.status.success(), "release: {}", text(&o));
    let back = downloads.join("holiday-photos.jpg");
    assert_eq!(std::fs::read(&back).unwrap(), eicar);
    assert_eq!(std::fs::metadata(&back).unwrap().uid(), 1000);
    assert!(!kept.exists());
    finding_for(
        &srv,
        &daemon,
        "/home/alice/Downloads/holiday-photos.jpg",
        "released",
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        back.exists(),
        "the released file was taken again: {}",
        daemon.log()
    );
    // Version 2 holds what clamd cannot scan in the quarantine: the scan follows the new
    // version by itself; a hit waits there and stays, a clean file comes back.
    let (conf, socket) = clamd.stop();
    publish(&cat, dir, "PD-SCAN-2", &policy(&socket, "2", "quarantine"));
    srv.cli(&["catalog", "push", "--repo", cat.repo.to_str().unwrap()]);
    srv.cli(&["approve", "--tenant", "acme", "--group", "web", "PD-SCAN-2"]);
    let o = host.agent(&srv.url, None);
    assert!(o.status.success(), "apply v2: {}", text(&o));
    assert_eq!(srv.update_state("laptop1", "PD-SCAN-2").0, "installed");
    daemon.until_logged("folder scan stopped");
    std::thread::sleep(Duration::from_secs(6)); // the new watcher is up
    download(&downloads.join("budget.xlsx"), &eicar);
    download(&downloads.join("agenda.txt"), b"1. coffee\n");
    let held = finding_for(
        &srv,
        &daemon,
        "/home/alice/Downloads/budget.xlsx",
        "unscanned",
    );
    assert!(held["finding"]["quarantine_id"].is_string(), "{held}");
    finding_for(
        &srv,
        &daemon,
        "/home/alice/Downloads/agenda.txt",
        "unscanned",
    );
    assert!(
        !downloads.join("budget.xlsx").exists(),
        "held in the quarantine"
    );
    assert!(
        !downloads.join("agenda.txt").exists(),
        "held in the quarantine"
    );
    let _clamd = Clamd::start_with(conf, socket);
    let hit = finding_for(
        &srv,
        &daemon,
        "/home/alice/Downloads/budget.xlsx",
        "quarantined",
    );
    assert_eq!(
        hit["finding"]["quarantine_id"],
        held["finding"]["quarantine_id"]
    );
    finding_for(
        &srv,
        &daemon,
        "/home/alice/Downloads/agenda.txt",
        "clean-after-retry",
    );
    assert!(downloads.join("agenda.txt").exists(), "put back once clean");
    assert!(!downloads.join("budget.xlsx").exists());
    // The new watcher's first walk met clamd down too: the files already there were held
    // and come back once scanned (the released one included: that file at that path).
    for name in ["notes.txt", "minutes.txt", "holiday-photos.jpg"] {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !downloads.join(name).exists() {
            assert!(
                Instant::now() < deadline,
                "{name} not put back: {}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    // The server's baseline report counts what the scan holds.
    let o = host.agent(&srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    let report = srv.cli(&["baseline", "report", "--tenant", "acme", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&report).unwrap();
    let row = rows
        .iter()
        .find(|r| r["baseline"] == "laptops")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(row["measured"]["scan.folders"], 2, "{row}");
    let o = host
        .agent_command(&srv.url, None, &["quarantine", "list"])
        .output()
        .unwrap();
    assert_eq!(
        row["measured"]["scan.quarantined"],
        5,
        "{row}\n{}\n{}",
        text(&o),
        daemon.log()
    );
    assert_eq!(row["measured"]["scan.running"], 1, "{row}");
    assert!(row["error"].is_null(), "{row}");
}
