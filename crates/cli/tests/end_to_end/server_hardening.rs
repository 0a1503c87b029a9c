//! Issue 8, server hardening, against the real `patchday server`: slow and idle
//! connections, oversized bodies, failed logins, the admin token file, error
//! messages, Range requests, a full disk, damaged payloads and a server killed in the
//! middle of a catalog push.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use patchday_lab::DebSpec;
use patchday_testkit::{
    acme_enroll_token, acme_with_web, catalog_with, scratch, text, Bins, Catalog, Host, Server,
};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

/// A catalog with one emergency update `PD-H-1` (`name` 1.0-1 → 1.0-2); returns the
/// catalog, the old and the new .deb.
fn catalog(dir: &Path, name: &str) -> (Catalog, PathBuf, PathBuf) {
    let out = dir.join("pkgs");
    std::fs::create_dir_all(&out).unwrap();
    let old = DebSpec::new(name, "1.0-1").file(
        format!("/usr/share/{name}/version"),
        b"1.0-1\n".to_vec(),
        0o644,
    );
    let new = DebSpec::new(name, "1.0-2").file(
        format!("/usr/share/{name}/version"),
        b"1.0-2\n".to_vec(),
        0o644,
    );
    let old = patchday_lab::build_deb(&old, &out).unwrap();
    let new = patchday_lab::build_deb(&new, &out).unwrap();
    let cat = catalog_with(&bins(), dir, "PD-H-1", &new, &["--emergency", "test"]);
    (cat, old, new)
}

fn push(srv: &Server, repo: &Path) -> std::process::Output {
    srv.cli_as(
        &srv.admin,
        &["catalog", "push", "--repo", repo.to_str().unwrap()],
    )
}

/// `curl` with arbitrary arguments against `path`; returns (status, headers+body).
fn curl(srv: &Server, path: &str, args: &[&str]) -> (u16, String) {
    let o = Command::new("curl")
        .args(["-s", "-i", "--max-time", "30", "-w", "\n%{http_code}"])
        .args(args)
        .arg(format!("{}{path}", srv.url))
        .output()
        .expect("curl");
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = s.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn addr(srv: &Server) -> String {
    srv.url
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .to_string()
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
}

/// Whether the server closed `s` (EOF or reset) within `wait`.
fn closed_by_server(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 512];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue, // e.g. a 408 before the close
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

// --- finding 2: timeouts, connection cap, body caps -------------------------------

#[test]
fn slowloris_headers_are_cut_off_at_the_header_timeout() {
    let d = scratch();
    let (cat, _, _) = catalog(d.path(), "pd-h-slow");
    let srv = Server::start_logged(
        &bins(),
        d.path(),
        &cat.root(),
        &["--header-timeout", "2"],
        &[],
        &[],
    );
    let mut s = TcpStream::connect(addr(&srv)).unwrap();
    s.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // One header line every half second for up to 30 s: the server must hang up first.
    let mut cut = false;
    for i in 0..60 {
        std::thread::sleep(Duration::from_millis(500));
        if s.write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
            .is_err()
            || closed_by_server(&mut s, Duration::from_millis(1))
        {
            cut = true;
            break;
        }
    }
    assert!(cut, "a connection trickling headers was never cut off");
    // Real clients are unaffected.
    assert_eq!(srv.http_get("/v1/health", None), (200, "ok".into()));
}

#[test]
fn idle_connection_flood_beyond_the_fd_limit_does_not_stop_health() {
    let d = scratch();
    let (cat, _, _) = catalog(d.path(), "pd-h-flood");
    // The finding: idle connections exhausted the descriptors. Run the server with few,
    // and open more idle connections than it has.
    let srv = Server::start_logged(
        &bins(),
        d.path(),
        &cat.root(),
        &[],
        &["prlimit", "--nofile=256:256", "--"],
        &[],
    );
    let mut idle: Vec<TcpStream> = (0..400)
        .map(|_| TcpStream::connect(addr(&srv)).unwrap())
        .collect();
    assert_eq!(
        srv.http_get("/v1/health", None),
        (200, "ok".into()),
        "health must answer during an idle flood"
    );
    // The oldest idle connections were closed to make room.
    assert!(
        closed_by_server(&mut idle[0], Duration::from_secs(10)),
        "the oldest idle connection was kept beyond the cap"
    );
}

#[test]
fn max_connections_flag_caps_open_connections_and_health_still_answers() {
    let d = scratch();
    let (cat, _, _) = catalog(d.path(), "pd-h-cap");
    let srv = Server::start_logged(
        &bins(),
        d.path(),
        &cat.root(),
        &["--max-connections", "50"],
        &[],
        &[],
    );
    let mut idle: Vec<TcpStream> = (0..60)
        .map(|_| TcpStream::connect(addr(&srv)).unwrap())
        .collect();
    assert_eq!(srv.http_get("/v1/health", None), (200, "ok".into()));
    let mut closed = 0;
    for s in idle.iter_mut().take(20) {
        if closed_by_server(s, Duration::from_secs(5)) {
            closed += 1;
        }
    }
    assert!(
        closed >= 10,
        "60 idle connections + 1 against a cap of 50 closed only {closed} of the oldest 20"
    );
}

#[test]
fn tls_listener_cuts_off_silent_handshakes_and_keeps_answering_during_a_flood() {
    let d = scratch();
    let (cat, _, _) = catalog(d.path(), "pd-h-tls");
    let srv = Server::start_logged(
        &bins(),
        d.path(),
        &cat.root(),
        &[
            "--tls-self-signed",
            "--body-timeout",
            "2",
            "--max-connections",
            "20",
        ],
        &[],
        &[],
    );
    assert!(srv.url.starts_with("https://"), "{}", srv.url);
    // A client that connects and never says hello is dropped after the handshake timeout.
    let mut silent = TcpStream::connect(addr(&srv)).unwrap();
    assert!(
        closed_by_server(&mut silent, Duration::from_secs(20)),
        "a silent TLS client was kept"
    );
    let _idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(addr(&srv)).unwrap())
        .collect();
    assert_eq!(srv.http_get("/v1/health", None), (200, "ok".into()));
}

#[test]
fn client_that_never_reads_its_answers_is_cut_off() {
    let d = scratch();
    let (cat, _, _) = catalog(d.path(), "pd-h-noread");
    let srv = Server::start_logged(
        &bins(),
        d.path(),
        &cat.root(),
        &["--body-timeout", "2"],
        &[],
        &[],
    );
    // Pipelined requests whose answers are never read: once the socket buffers are
    // full the server's writes stall, and it must hang up rather than wait forever.
    let s = TcpStream::connect(addr(&srv)).unwrap();
    let mut w = s.try_clone().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let batch = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n".repeat(1000);
        let cut = (0..100_000).any(|_| w.write_all(&batch).is_err());
        let _ = tx.send(cut);
    });
    let cut = rx.recv_timeout(Duration::from_secs(60)).unwrap_or(false);
    assert!(cut, "a client that never reads was kept");
    drop(s);
    assert_eq!(srv.http_get("/v1/health", None), (200, "ok".into()));
}

#[test]
fn oversized_unauthenticated_enrolment_body_gets_413() {
    let d = scratch();
    let (cat, _, _) = catalog(d.path(), "pd-h-413");
    let srv = Server::start_logged(&bins(), d.path(), &cat.root(), &[], &[], &[]);
    let body = format!(
        "{{\"token\":\"pde_x\",\"hostname\":\"{}\"}}",
        "a".repeat(64 << 10)
    );
    let f = d.path().join("body.json");
    std::fs::write(&f, body).unwrap();
    let (code, _) = curl(
        &srv,
        "/v1/agent/enroll",
        &[
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &format!("@{}", f.display()),
        ],
    );
    assert_eq!(code, 413);
}

// --- finding 9: failed logins, token file, paths, Range -----------------------------

#[test]
fn brute_force_logins_are_logged_and_limited_per_address() {
    let d = scratch();
    let (cat, _, _) = catalog(d.path(), "pd-h-login");
    let srv = Server::start_logged(&bins(), d.path(), &cat.root(), &[], &[], &[]);
    for i in 0..20 {
        let (code, _) = srv.http_get("/v1/catalog", Some(&format!("pd_guess{i}")));
        assert_eq!(code, 401, "guess {i}");
    }
    let (code, answer) = curl(
        &srv,
        "/v1/catalog",
        &["-H", "Authorization: Bearer pd_guess21"],
    );
    assert_eq!(code, 429, "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after:"),
        "{answer}"
    );
    // Enrolment guesses from that address are held off too.
    let (code, _) = curl(
        &srv,
        "/v1/agent/enroll",
        &[
            "-H",
            "Content-Type: application/json",
            "--data",
            "{\"token\":\"pde_guess\",\"hostname\":\"h\"}",
        ],
    );
    assert_eq!(code, 429);
    let l = log(d.path());
    assert!(
        l.contains("failed login") && l.contains("127.0.0.1"),
        "failed logins are not logged with their address: {l}"
    );
}

#[test]
fn admin_token_file_is_not_written_through_a_planted_link() {
    let d = scratch();
    let (cat, _, _) = catalog(d.path(), "pd-h-tok");
    let victim = d.path().join("victim");
    std::fs::write(&victim, b"precious\n").unwrap();
    // The old code wrote FILE.tmp, following a link planted there.
    std::os::unix::fs::symlink(&victim, d.path().join("admin-token.tmp")).unwrap();
    let srv = Server::start_logged(&bins(), d.path(), &cat.root(), &[], &[], &[]);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious\n");
    let tok = d.path().join("admin-token");
    let meta = std::fs::symlink_metadata(&tok).unwrap();
    assert!(meta.file_type().is_file(), "the token file is a link");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    assert!(srv.admin.starts_with("pd_"));
}

#[test]
fn refused_catalog_push_answer_does_not_reveal_server_paths() {
    let d = scratch();
    let (cat, _, new) = catalog(d.path(), "pd-h-paths");
    let srv = Server::start_logged(&bins(), d.path(), &cat.root(), &[], &[], &[]);
    // A catalog whose payload file is missing from targets/: the server names it.
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        std::fs::read(&new).unwrap(),
    ));
    for e in std::fs::read_dir(cat.repo.join("targets")).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().starts_with(&sha) {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    let o = push(&srv, &cat.repo);
    assert!(!o.status.success());
    let t = text(&o);
    let data = srv.data.to_string_lossy().into_owned();
    assert!(
        !t.contains(&data) && !t.contains("staging-"),
        "the answer names server paths: {t}"
    );
}

/// A server with `package`'s catalog pushed: the server, the newer payload's bytes and
/// its consistent-snapshot target name.
fn serving_a_payload(d: &Path, package: &str) -> (Server, Vec<u8>, String) {
    let (cat, _, new) = catalog(d, package);
    let srv = Server::start_logged(&bins(), d, &cat.root(), &[], &[], &[]);
    assert!(push(&srv, &cat.repo).status.success());
    let bytes = std::fs::read(&new).unwrap();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    let name = std::fs::read_dir(cat.repo.join("targets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with(&sha))
        .unwrap();
    (srv, bytes, name)
}

#[test]
fn suffix_and_multiple_ranges_are_answered_as_http_allows() {
    let d = scratch();
    let (srv, bytes, name) = serving_a_payload(d.path(), "pd-h-range");
    let path = format!("/v1/tuf/targets/{name}");
    let auth = format!("Authorization: Bearer {}", srv.admin);
    let (code, answer) = curl(&srv, &path, &["-H", &auth, "-H", "Range: bytes=-10"]);
    assert_eq!(code, 206, "{answer}");
    let len = bytes.len();
    assert!(
        answer.contains(&format!("bytes {}-{}/{len}", len - 10, len - 1)),
        "{answer}"
    );
    let (code, _) = curl(&srv, &path, &["-H", &auth, "-H", "Range: bytes=0-1,5-6"]);
    assert_eq!(code, 200, "several ranges: the whole target");
}

/// Issue 10: a payload held in memory goes out over plain HTTP as the same region of its
/// file (`sendfile`); every byte, whole or by range, first fetch or cached, is the file's.
#[test]
fn payload_bytes_over_plain_http_are_the_files_whole_and_by_range() {
    let d = scratch();
    let (srv, bytes, name) = serving_a_payload(d.path(), "pd-h-bytes");
    let url = format!("{}/v1/tuf/targets/{name}", srv.url);
    let auth = format!("Authorization: Bearer {}", srv.admin);
    let fetch = |range: Option<&str>| {
        let out = d.path().join("fetched");
        let mut c = Command::new("curl");
        c.args(["-s", "--max-time", "30", "-o"]).arg(&out).args([
            "-w",
            "%{http_code}",
            "-H",
            &auth,
        ]);
        if let Some(r) = range {
            c.arg("-H").arg(format!("Range: bytes={r}"));
        }
        let o = c.arg(&url).output().expect("curl");
        let code: u16 = String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        (code, std::fs::read(&out).unwrap_or_default())
    };
    let len = bytes.len();
    assert!(len > 1000, "the test payload is {len} bytes");
    for round in 0..3 {
        let (code, got) = fetch(None);
        assert_eq!(code, 200, "round {round}");
        assert!(got == bytes, "round {round}: the whole payload differs");
        let (code, got) = fetch(Some("100-999"));
        assert_eq!(code, 206, "round {round}");
        assert!(
            got == bytes[100..1000],
            "round {round}: bytes 100-999 differ"
        );
        let (code, got) = fetch(Some(&format!("{}-", len - 7)));
        assert_eq!(code, 206, "round {round}");
        assert!(
            got == bytes[len - 7..],
            "round {round}: the last 7 bytes differ"
        );
    }
}

// --- finding 11: a full disk ------------------------------------------------------

fn status_code(o: &std::process::Output) -> String {
    text(o)
}

/// Enrols a host over HTTP with `token`; returns (status, host id, credential).
fn enroll_http(srv: &Server, token: &str, hostname: &str) -> (u16, String, String) {
    // As the agent enrols: with the public half of its own signing key (finding 8).
    let key = patchday_trust::host_signature::HostKey::ephemeral().unwrap();
    let (code, answer) = srv.enrol_over_http(token, hostname, &key);
    let v: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
    (
        code,
        v["host"].as_str().unwrap_or("").to_string(),
        v["credential"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn full_disk_writes_get_507_nothing_unstored_is_acknowledged_and_it_recovers_without_restart() {
    patchday_testkit::on_the_data_directory(
        "PostgreSQL's own disk is PostgreSQL's to guard; a bucket's errors are classed in crates/content's conformance suite",
    );
    let d = scratch();
    let (cat, _, _) = catalog(d.path(), "pd-h-full");
    let data = d.path().join("server");
    std::fs::create_dir_all(&data).unwrap();
    let m = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=20m", "tmpfs"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(m.success(), "mount tmpfs (needs root)");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(data.clone());
    let mut srv = Server::start_logged(&bins(), d.path(), &cat.root(), &[], &[], &[]);
    assert!(push(&srv, &cat.repo).status.success());
    srv.cli(&["tenant", "create", "acme"]);
    srv.cli(&["group", "create", "--tenant", "acme", "first"]);
    let enroll = acme_enroll_token(&srv, &["--unlimited"]);
    let (code, host, _) = enroll_http(&srv, &enroll, "full-0");
    assert_eq!(code, 200);
    let mut placed = Some("first".to_string());
    srv.cli(&["host", "set-groups", "--tenant", "acme", &host, "first"]);

    // Fill the filesystem, but for 256 KiB: some writes fit, then the disk is full.
    let reserve = data.join("reserve");
    std::fs::write(&reserve, vec![1u8; 256 << 10]).unwrap();
    let fill = data.join("fill");
    {
        let mut f = std::fs::File::create(&fill).unwrap();
        let chunk = vec![0u8; 1 << 16];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    std::fs::remove_file(&reserve).unwrap();
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    let mut credentials = Vec::new();
    for i in 0..60 {
        // Plain inserts, multi-statement transactions and enrolments, as the finding saw.
        let name = format!("g{i}");
        let o = srv.cli_as(&srv.admin, &["group", "create", "--tenant", "acme", &name]);
        if o.status.success() {
            acknowledged.push(name.clone());
            let o = srv.cli_as(
                &srv.admin,
                &["host", "set-groups", "--tenant", "acme", &host, &name],
            );
            if o.status.success() {
                placed = Some(name);
            } else {
                assert!(text(&o).contains("507"), "{}", text(&o));
            }
        } else {
            let t = status_code(&o);
            assert!(
                t.contains("507") || t.contains("disk is full"),
                "a write failed otherwise than with 507: {t}"
            );
            refused += 1;
        }
        let (code, id, cred) = enroll_http(&srv, &enroll, &format!("full-{i}"));
        match code {
            200 => credentials.push((id, cred)),
            507 => refused += 1,
            other => panic!("enrolment on a full disk answered {other}"),
        }
    }
    assert!(refused > 0, "no write was refused on a full disk");
    let (code, body) = srv.http_get("/v1/health", None);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("storage: cannot write"), "{body}");

    // Space comes back: writes succeed again without a restart, and health says ok.
    std::fs::remove_file(&fill).unwrap();
    let (code, body) = srv.http_get("/v1/health", None);
    assert_eq!((code, body.as_str()), (200, "ok"));
    srv.cli(&["group", "create", "--tenant", "acme", "after"]);
    acknowledged.push("after".into());
    let (code, id, cred) = enroll_http(&srv, &enroll, "after");
    assert_eq!(code, 200);
    credentials.push((id, cred));

    // Every acknowledged write is stored, also after a restart.
    srv.restart_with(d.path(), &cat.root(), &[]);
    let groups: Vec<Value> =
        serde_json::from_str(&srv.cli(&["group", "list", "--tenant", "acme", "--format", "json"]))
            .unwrap();
    for g in &acknowledged {
        assert!(
            groups.iter().any(|x| x["id"] == g.as_str()),
            "group {g} was acknowledged but is not stored: {groups:?}"
        );
    }
    let (code, body) = srv.http_get("/v1/tenants/acme/hosts", Some(&srv.admin));
    assert_eq!(code, 200, "{body}");
    let hosts: Vec<Value> = serde_json::from_str(&body).unwrap();
    let groups_of = hosts
        .iter()
        .find(|h| h["id"] == host.as_str())
        .map(|h| h["groups"].clone())
        .unwrap();
    assert_eq!(groups_of, serde_json::json!([placed.unwrap()]));
    for (id, cred) in &credentials {
        assert!(
            hosts.iter().any(|h| h["id"] == id.as_str()),
            "enrolment of {id} was answered but not stored"
        );
        let (code, _) = srv.http_get("/v1/tuf/metadata/timestamp.json", Some(cred));
        assert_eq!(code, 200, "the credential given to {id} is refused");
    }
}

// --- finding 14: damaged payloads -------------------------------------------------

#[test]
fn damaged_payload_is_quarantined_refused_repaired_by_a_repush_and_found_by_scrub() {
    patchday_testkit::on_the_data_directory(
        "an object changed behind the store's back is quarantined and scrubbed: crates/content's conformance suite and object_store::",
    );
    let _serial = patchday_testkit::serial();
    let d = scratch();
    let (cat, old, new) = catalog(d.path(), "pd-h-rot");
    let srv = Server::start_logged(&bins(), d.path(), &cat.root(), &[], &[], &[]);
    acme_with_web(&srv, &cat.repo);
    let enroll = acme_enroll_token(&srv, &[]);
    let h = Host::new(&bins(), d.path(), "rot-1");
    h.enrol_into_web(&srv, &srv.url, &enroll, &old);
    srv.cli(&["approve", "--tenant", "acme", "--group", "web", "PD-H-1"]);

    // Flip one byte of the stored payload.
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        std::fs::read(&new).unwrap(),
    ));
    let blob = srv.data.join("content").join(&sha[..2]).join(&sha);
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&blob, &bytes).unwrap();

    let o = h.agent(&srv.url, None);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("503"), "{}", text(&o));
    assert_eq!(h.version("pd-h-rot").as_deref(), Some("1.0-1"));
    let l = log(d.path());
    assert!(l.contains("sha256 mismatch") && l.contains(&sha), "{l}");
    assert!(
        !blob.exists(),
        "the damaged blob is still served from its place"
    );
    let aside = srv.data.join("content/quarantine").join(format!("{sha}.0"));
    assert_eq!(std::fs::read(&aside).unwrap(), bytes, "kept for inspection");

    // Scrub names what is missing now; a re-push repairs it; the agent installs.
    let data = srv.data.to_str().unwrap().to_string();
    let scrub = |expect_ok: bool| {
        let o = Command::new(&bins().patchday)
            .args(["server", "scrub", "--data", &data])
            .output()
            .unwrap();
        assert_eq!(o.status.success(), expect_ok, "{}", text(&o));
        text(&o)
    };
    assert!(scrub(false).contains("missing"));
    assert!(push(&srv, &cat.repo).status.success());
    assert!(scrub(true).contains("0 damaged"));
    let o = h.agent(&srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.version("pd-h-rot").as_deref(), Some("1.0-2"));

    // A truncated payload is found by scrub and quarantined; a re-push repairs it.
    let good = std::fs::read(&blob).unwrap();
    std::fs::write(&blob, &good[..good.len() / 2]).unwrap();
    let out = scrub(false);
    assert!(
        out.contains("damaged (quarantined)") && out.contains(&sha),
        "{out}"
    );
    assert!(!blob.exists());
    assert!(push(&srv, &cat.repo).status.success());
    assert_eq!(std::fs::read(&blob).unwrap(), good);
    // A re-push also repairs a damaged copy nobody has read yet.
    std::fs::write(&blob, &good[..10]).unwrap();
    assert!(push(&srv, &cat.repo).status.success());
    assert_eq!(std::fs::read(&blob).unwrap(), good);
}

// --- finding 15: a server killed in the middle of a catalog push --------------------

fn served_timestamp(srv: &Server) -> u64 {
    let (code, body) = srv.http_get("/v1/tuf/metadata/timestamp.json", Some(&srv.admin));
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["signed"]["version"].as_u64().unwrap()
}

fn staging_dirs(data: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for dir in [data.join("catalog"), data.join("catalog/incoming")] {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with("staging-") {
                    found.push(e.path());
                }
            }
        }
    }
    found
}

#[test]
fn server_killed_between_commit_and_state_swap_never_serves_an_older_timestamp() {
    let d = scratch();
    let (cat, _, _) = catalog(d.path(), "pd-h-crash");
    let second = patchday_lab::build_deb(
        &DebSpec::new("pd-h-crash2", "2.0-1").file(
            "/usr/share/pd-h-crash2/version".to_string(),
            b"2.0-1\n".to_vec(),
            0o644,
        ),
        &d.path().join("pkgs"),
    )
    .unwrap();
    let b = bins();
    let mut srv = Server::start_logged(&b, d.path(), &cat.root(), &[], &[], &[]);
    assert!(push(&srv, &cat.repo).status.success());
    let v1 = served_timestamp(&srv);
    // Keep the catalog as it is now, to replay it later.
    let old_repo = d.path().join("catalog-v1");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(&cat.repo)
        .arg(&old_repo)
        .status()
        .unwrap()
        .success());
    let o = cat.add_deb("PD-H-2", &second, &["--emergency", "second"]);
    assert!(o.status.success(), "{}", text(&o));

    // The server dies right after the database commit of the new catalog.
    drop(srv);
    let mut dying = Server::start_logged(
        &b,
        d.path(),
        &cat.root(),
        &[],
        &[],
        &[("PATCHDAY_FAILPOINT", "catalog-after-commit")],
    );
    let o = push(&dying, &cat.repo);
    assert!(!o.status.success(), "the failpoint did not fire");
    assert!(!dying.wait_exit().success());
    let data = dying.data.clone();
    drop(dying);
    assert!(
        !staging_dirs(&data).is_empty(),
        "the kill should leave staging directories"
    );

    srv = Server::start_logged(&b, d.path(), &cat.root(), &[], &[], &[]);
    assert_eq!(
        staging_dirs(&data),
        Vec::<PathBuf>::new(),
        "staging left behind"
    );
    let v2 = served_timestamp(&srv);
    assert!(v2 > v1, "the committed catalog is served");
    // Replaying the older catalog is a rollback and is refused; nothing goes back.
    let o = push(&srv, &old_repo);
    assert!(
        !o.status.success(),
        "an older catalog was accepted after the crash"
    );
    assert_eq!(served_timestamp(&srv), v2);
    // The current catalog can be pushed again.
    let o = push(&srv, &cat.repo);
    assert!(o.status.success(), "{}", text(&o));
    let v3 = served_timestamp(&srv);
    assert!(v3 >= v2);
    assert_eq!(staging_dirs(&data), Vec::<PathBuf>::new());

    // Issue 12, point 1: the trust lives in the database, nothing beside it; a restart
    // keeps refusing the older catalog.
    drop(srv);
    assert!(std::fs::symlink_metadata(data.join("catalog/datastore")).is_err());
    assert!(!data.join("catalog/states").exists());
    assert!(!data.join("catalog/root.json").exists());
    let srv = Server::start_logged(&b, d.path(), &cat.root(), &[], &[], &[]);
    assert!(!push(&srv, &old_repo).status.success());
    assert_eq!(served_timestamp(&srv), v3);
}
