//! `patchday demo` on the real Debian security archive (issue 9, "Real parts and tests"):
//! overlay copies of this machine go from vulnerable to compliant on its genuine pending
//! security updates, mirrored through the delegated mirror role, with dpkg and apt agreeing
//! on every host; and when the archive does not answer, the demo says so and falls back.
//!
//! The archive path needs root (overlay hosts), Debian's archive keyring and the archive.
//! An archive that does not answer (this test's probe, or the demo after the probe) fails
//! the test under CI and skips it elsewhere (`patchday_lab::skip_or_fail`).

use std::path::PathBuf;
use std::process::{Command, Output};

use patchday_lab::{require, skip_or_fail, Requirement};
use patchday_testkit::{scratch, serial};

const INRELEASE: &str =
    "http://security.debian.org/debian-security/dists/bookworm-security/InRelease";

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Packages mirrored by earlier runs of this test (the first run downloads ~1.9 GB).
fn cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("demo-archive-cache")
}

/// Whether the security archive answers right now (the InRelease, with curl).
fn archive_answers() -> Result<(), String> {
    let o = Command::new("curl")
        .args(["-fsS", "-m", "20", "-o", "/dev/null", INRELEASE])
        .output()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).trim().to_owned())
    }
}

// Minutes of real dpkg work on four copies of this machine: `.ci/run` runs it beside the
// rest of the suite (`--ignored`), so it never holds the other tests up and still runs
// (and fails the run) under CI.
#[test]
#[ignore = "long: .ci/run runs it beside the workspace tests with --ignored"]
fn demo_on_the_real_archive_leaves_no_host_vulnerable_or_with_unmet_dependencies() {
    if !require(Requirement::Root)
        || !require(Requirement::DEBIAN_KEYRING)
        || !require(Requirement::DPKG_DEB)
        || !require(Requirement::APT_GET)
    {
        return;
    }
    if let Err(e) = archive_answers() {
        // Under CI a missing archive fails the test; elsewhere it skips.
        skip_or_fail(
            Requirement::DebianArchive,
            &format!("{INRELEASE} did not answer: {e}"),
        );
        return;
    }
    let _serial = serial();
    let d = scratch();
    let o = Command::new(env!("CARGO_BIN_EXE_patchday"))
        .args(["demo", "--dir"])
        .arg(d.path().join("demo"))
        .arg("--archive-cache")
        .arg(cache())
        .output()
        .unwrap();
    let t = text(&o);
    if t.contains("the Debian security archive path is not taken") {
        skip_or_fail(
            Requirement::DebianArchive,
            &format!("the archive answered this test, then not the demo: {t}"),
        );
        return;
    }
    assert!(o.status.success(), "{t}");
    for expected in [
        "bookworm-security/InRelease answered",
        "signed as the delegated mirror role",
        "catalog pushed: the server verified the mirror role's signatures",
        "every host is compliant (4 of 4), and dpkg on each host agrees",
    ] {
        assert!(t.contains(expected), "missing {expected:?} in:\n{t}");
    }
    // dpkg has every upgraded package on every host; dpkg --audit and apt-get check
    // find nothing (no half-installed package, no unmet dependency).
    assert_eq!(
        t.matches("dpkg --audit and apt-get check find nothing")
            .count(),
        4,
        "{t}"
    );
    assert!(!t.contains("dpkg reports"), "{t}");
    // Whatever the hosts hold back is listed with its reason, and declined with it.
    for line in t.lines().filter(|l| l.contains("HOLD BACK")) {
        assert!(line.contains("held back until"), "{line}");
    }
    assert!(
        !d.path().join("demo").exists(),
        "the demo cleans up after itself"
    );
}

#[test]
fn demo_says_it_falls_back_when_the_archive_does_not_answer() {
    if !require(Requirement::Root)
        || !require(Requirement::DEBIAN_KEYRING)
        || !require(Requirement::DPKG_DEB)
    {
        return;
    }
    let _serial = serial();
    let d = scratch();
    // Port 9 (discard) on the loopback: nothing listens, the connection is refused.
    let o = Command::new(env!("CARGO_BIN_EXE_patchday"))
        .args([
            "demo",
            "--archive-uri",
            "http://127.0.0.1:9/debian-security",
            "--dir",
        ])
        .arg(d.path().join("demo"))
        .arg("--archive-cache")
        .arg(d.path().join("cache"))
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains(
            "the Debian security archive path is not taken (the Debian security archive did not answer: "
        ) && t.contains("127.0.0.1:9/debian-security/dists/bookworm-security/InRelease"),
        "{t}"
    );
    assert!(t.contains("every host is compliant (4 of 4)"), "{t}");
    assert!(!t.contains("signed as the delegated mirror role"), "{t}");
}
