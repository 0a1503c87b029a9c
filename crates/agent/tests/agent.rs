//! The agent binary's own failure messages, and the bundle backend's phases on a
//! real filesystem (stage, swap, commit, recover after a crash).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use patchday_agent::install::{bundle, Outcome};
use std::path::{Path, PathBuf};
use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_patchday-agent"))
}

#[test]
fn unenrolled_agent_says_how_to_enrol() {
    let d = tempfile::tempdir().unwrap();
    let o = agent()
        .args(["--server", "http://127.0.0.1:9", "--once", "--state"])
        .arg(d.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--enroll-token"), "{err}");
}

#[test]
fn unreachable_server_is_a_clear_error_and_leaves_no_identity() {
    let d = tempfile::tempdir().unwrap();
    let o = agent()
        .args([
            "--server",
            "http://127.0.0.1:9",
            "--once",
            "--enroll-token",
            "pde_x",
            "--state",
        ])
        .arg(d.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot reach the server"), "{err}");
    assert!(!d.path().join("identity.json").exists());
}

/// A bundle: manifest plus files; `raw` entries are written with unchecked names.
fn make_bundle(
    dir: &Path,
    version: &str,
    files: &[(&str, &str)],
    raw: &[(&str, tar::EntryType)],
) -> PathBuf {
    let path = dir.join(format!("tool_{version}.tar.zst"));
    let enc = zstd::Encoder::new(std::fs::File::create(&path).unwrap(), 3).unwrap();
    let mut b = tar::Builder::new(enc);
    let manifest = format!(r#"{{"name":"tool","version":"{version}","install_dir":"/opt/tool"}}"#);
    let mut add = |name: &str, data: &[u8], kind: tar::EntryType| {
        let mut h = tar::Header::new_gnu();
        let bytes = name.as_bytes();
        h.as_gnu_mut().unwrap().name[..bytes.len()].copy_from_slice(bytes);
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_entry_type(kind);
        if kind == tar::EntryType::Symlink {
            h.set_link_name("/etc/shadow").unwrap();
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    add(
        "manifest.json",
        manifest.as_bytes(),
        tar::EntryType::Regular,
    );
    for (n, c) in files {
        add(n, c.as_bytes(), tar::EntryType::Regular);
    }
    for (n, k) in raw {
        add(n, b"evil", *k);
    }
    b.into_inner().unwrap().finish().unwrap();
    path
}

fn read(root: &Path, p: &str) -> String {
    std::fs::read_to_string(root.join(p)).unwrap_or_default()
}

/// Issue 11, point 8: a bundle made the way people make archives, `tar -C dir .` (every
/// entry `./`-prefixed, and `./` itself), by GNU tar and zstd.
#[test]
fn a_bundle_made_with_tar_dash_c_dir_dot_installs() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    std::fs::create_dir_all(src.join("bin")).unwrap();
    std::fs::write(
        src.join("manifest.json"),
        r#"{"name":"tool","version":"1.4","install_dir":"/opt/tool"}"#,
    )
    .unwrap();
    std::fs::write(src.join("bin/tool"), "v1.4").unwrap();
    let tarball = d.path().join("tool_1.4.tar");
    let o = Command::new("tar")
        .arg("-C")
        .arg(&src)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let bundle = d.path().join("tool_1.4.tar.zst");
    let mut enc = zstd::Encoder::new(std::fs::File::create(&bundle).unwrap(), 3).unwrap();
    std::io::copy(&mut std::fs::File::open(&tarball).unwrap(), &mut enc).unwrap();
    enc.finish().unwrap();
    assert_eq!(bundle::read_manifest(&bundle).unwrap().version, "1.4");
    let root = d.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    assert_eq!(
        bundle::install(&root, &bundle, "tool", "1.4"),
        Outcome::Installed
    );
    assert_eq!(read(&root, "opt/tool/bin/tool"), "v1.4");
    assert!(!root.join("opt/tool/manifest.json").exists());
}

#[test]
fn bundle_update_swaps_in_and_a_bad_bundle_leaves_the_old_version() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let v1 = make_bundle(
        d.path(),
        "1.0",
        &[("bin/tool", "v1"), ("share/old", "x")],
        &[],
    );
    assert_eq!(
        bundle::install(&root, &v1, "tool", "1.0"),
        Outcome::Installed
    );
    assert_eq!(read(&root, "opt/tool/bin/tool"), "v1");
    assert_eq!(bundle::registry(&root).unwrap()["tool"].version, "1.0");

    let v2 = make_bundle(d.path(), "2.0", &[("bin/tool", "v2")], &[]);
    assert_eq!(
        bundle::install(&root, &v2, "tool", "2.0"),
        Outcome::Installed
    );
    assert_eq!(read(&root, "opt/tool/bin/tool"), "v2");
    assert!(
        !root.join("opt/tool/share/old").exists(),
        "the swap replaces the whole directory"
    );
    assert!(!root.join("opt/tool.patchday-old").exists());

    // A manifest that disagrees with the signed catalog.
    match bundle::install(&root, &v2, "tool", "3.0") {
        Outcome::Failed(m) => assert!(m.contains("signed catalog"), "{m}"),
        o => panic!("{o:?}"),
    }
    for (name, kind) in [
        ("../../etc/evil", tar::EntryType::Regular),
        ("bin/link", tar::EntryType::Symlink),
    ] {
        let bad = make_bundle(d.path(), "3.0", &[("bin/tool", "v3")], &[(name, kind)]);
        match bundle::install(&root, &bad, "tool", "3.0") {
            Outcome::Failed(m) => assert!(m.contains("bundle entry"), "{m}"),
            o => panic!("{o:?}"),
        }
        assert_eq!(
            read(&root, "opt/tool/bin/tool"),
            "v2",
            "a refused bundle changes nothing"
        );
        assert!(!root.join("etc/evil").exists() && !d.path().join("etc/evil").exists());
        assert!(!root.join("opt/tool.patchday-new").exists());
        assert_eq!(bundle::registry(&root).unwrap()["tool"].version, "2.0");
    }
}

#[test]
fn crash_before_commit_restores_and_crash_after_commit_cleans_up() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let v1 = make_bundle(d.path(), "1.0", &[("bin/tool", "v1")], &[]);
    assert_eq!(
        bundle::install(&root, &v1, "tool", "1.0"),
        Outcome::Installed
    );
    let live = root.join("opt/tool");
    let old = root.join("opt/tool.patchday-old");

    // Died after the swap, before the registry said 2.0: the old version comes back.
    std::fs::rename(&live, &old).unwrap();
    std::fs::create_dir_all(live.join("bin")).unwrap();
    std::fs::write(live.join("bin/tool"), "v2").unwrap();
    std::fs::write(
        live.join(".patchday-manifest.json"),
        r#"{"name":"tool","version":"2.0","install_dir":"/opt/tool"}"#,
    )
    .unwrap();
    bundle::recover(&root).unwrap();
    assert_eq!(read(&root, "opt/tool/bin/tool"), "v1");
    assert!(!old.exists());

    // Died after the commit, before cleaning: the new version stays, the old copy goes.
    let v2 = make_bundle(d.path(), "2.0", &[("bin/tool", "v2")], &[]);
    assert_eq!(
        bundle::install(&root, &v2, "tool", "2.0"),
        Outcome::Installed
    );
    std::fs::create_dir_all(old.join("bin")).unwrap();
    std::fs::write(old.join("bin/tool"), "v1").unwrap();
    bundle::recover(&root).unwrap();
    assert_eq!(read(&root, "opt/tool/bin/tool"), "v2");
    assert!(!old.exists());

    // A half-staged directory from a crash is discarded.
    std::fs::create_dir_all(root.join("opt/tool.patchday-new/bin")).unwrap();
    bundle::recover(&root).unwrap();
    assert!(!root.join("opt/tool.patchday-new").exists());
}

/// A hostile server (or a man in the middle) on 127.0.0.1 that answers every request with
/// `200 OK` and a JSON string that never ends. Returns its URL and, when the connection
/// closes, how many bytes it managed to send.
fn endless_json_server() -> (String, std::thread::JoinHandle<u64>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if c.read(&mut b).unwrap_or(0) == 0 {
                return 0;
            }
            head.push(b[0]);
        }
        let _ = c.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n\"",
        );
        let chunk = [b'a'; 65536];
        let mut sent = 0u64;
        // Stops only when the agent hangs up (or at 4 GiB, far past any cap).
        while sent < 4 << 30 {
            if c.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len() as u64;
        }
        sent
    });
    (url, h)
}

/// Finding 1: the enrolment and check-in answers are read with a cap while streaming. The
/// agent fails with the cap error, and the server could not push more than the cap plus
/// socket buffers before the agent hung up: memory stays bounded.
#[test]
fn endless_enrolment_and_checkin_answers_are_cut_off_at_the_cap() {
    let cap = patchday_agent::client::MAX_ANSWER_BYTES as u64;
    let expect = format!("is longer than {cap} bytes");

    // Enrolment.
    let d = tempfile::tempdir().unwrap();
    let (url, server) = endless_json_server();
    let o = agent()
        .args([
            "--server",
            &url,
            "--once",
            "--enroll-token",
            "pde_x",
            "--state",
        ])
        .arg(d.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains(&expect), "{err}");
    assert!(err.contains("/v1/agent/enroll"), "{err}");
    assert!(!d.path().join("identity.json").exists());
    let sent = server.join().unwrap();
    assert!(
        sent < cap + (64 << 20),
        "the agent kept reading: {sent} bytes"
    );

    // Check-in, as an enrolled agent.
    let d = tempfile::tempdir().unwrap();
    let (url, server) = endless_json_server();
    std::fs::write(
        d.path().join("identity.json"),
        serde_json::json!({"server": url, "tenant": "acme", "host": "h-1", "credential": "pdh_x"})
            .to_string(),
    )
    .unwrap();
    // An enrolled agent has its own signing key (finding 8), so the check-in is sent.
    patchday_trust::host_signature::HostKey::generate(&d.path().join("host-key.pk8")).unwrap();
    let root = d.path().join("root");
    std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let o = agent()
        .args(["--server", &url, "--once", "--no-audit", "--root"])
        .arg(&root)
        .arg("--state")
        .arg(d.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains(&expect), "{err}");
    assert!(err.contains("/v1/agent/checkin"), "{err}");
    let sent = server.join().unwrap();
    assert!(
        sent < cap + (64 << 20),
        "the agent kept reading: {sent} bytes"
    );
}
