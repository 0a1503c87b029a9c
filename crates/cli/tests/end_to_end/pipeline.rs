//! The whole pipeline with real binaries: `patchday server` on 127.0.0.1:0, the CLI,
//! catalogs signed with real keys, and `patchday-agent` running real dpkg inside
//! overlay hosts. Each attack or fault test asserts that nothing was installed and
//! that the error says which check failed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use patchday_lab::DebSpec;
use patchday_testkit::{
    acme_enroll_token, acme_with_web, scratch, text, AcmeWorld, Bins, Catalog, Host, Server,
};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

/// A library at 1.0-1 and its security update 1.0-2, with an optional big file and postinst.
fn debs(dir: &Path, name: &str, big: bool, postinst: Option<&str>) -> (PathBuf, PathBuf) {
    let out = dir.join("pkgs");
    std::fs::create_dir_all(&out).unwrap();
    let mut old = DebSpec::new(name, "1.0-1").changelog("1.0-1", "Initial release.");
    let mut new = DebSpec::new(name, "1.0-2")
        .changelog(
            "1.0-2",
            "Fix buffer overflow (CVE-2099-0101) and CVE-2099-0102.",
        )
        .changelog("1.0-1", "Initial release.");
    if big {
        // Incompressible, so the payload is large on the wire.
        let mut state: u64 = 0x9e3779b97f4a7c15;
        let noise: Vec<u8> = (0..3_000_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        new = new.file(format!("/usr/share/{name}/blob"), noise, 0o644);
    }
    if let Some(p) = postinst {
        new = new.postinst(p);
    }
    old = old.file(
        format!("/usr/share/{name}/version"),
        b"1.0-1\n".to_vec(),
        0o644,
    );
    let o = patchday_lab::build_deb(&old, &out).unwrap();
    let n = patchday_lab::build_deb(&new, &out).unwrap();
    (o, n)
}

struct World {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    cat: Catalog,
    srv: Server,
    enroll: String,
}

/// Catalog with one emergency update (`PD-T-1`: `name` 1.0-1 → 1.0-2), a server,
/// tenant `acme` with group `web`, and an enrolment token.
fn world(name: &str, big: bool, postinst: Option<&str>) -> (World, PathBuf, PathBuf) {
    world_with(name, big, postinst, &|_| vec![])
}

/// [`world`] with extra server flags, made from the catalog (e.g. its key paths).
fn world_with(
    name: &str,
    big: bool,
    postinst: Option<&str>,
    server_flags: &dyn Fn(&Catalog) -> Vec<String>,
) -> (World, PathBuf, PathBuf) {
    let d = scratch();
    let dir = d.path().to_path_buf();
    let b = bins();
    let (old, new) = debs(&dir, name, big, postinst);
    let AcmeWorld { cat, srv, enroll } = AcmeWorld::start(
        &b,
        &dir,
        (
            "PD-T-1",
            &new,
            &["--emergency", "test worm", "--since", "1.0-1"],
        ),
        server_flags,
        &["--unlimited"],
    );
    (
        World {
            _dir: d,
            dir,
            cat,
            srv,
            enroll,
        },
        old,
        new,
    )
}

impl World {
    /// A host with the old package, enrolled, in group `web`, with the update approved.
    fn host_approved(&self, name: &str, old: &Path) -> Host {
        let (h, _) = self.host_at(&self.srv.url, name, old);
        self.approve("PD-T-1");
        h
    }

    /// A host with `deb` installed, enrolled through `url` (which its agent keeps
    /// using), in group `web`; returns it with its host id.
    fn host_at(&self, url: &str, name: &str, deb: &Path) -> (Host, String) {
        let h = Host::new(&bins(), &self.dir, name);
        let id = h.enrol_into_web(&self.srv, url, &self.enroll, deb);
        (h, id)
    }

    /// Approves an update for group `web` of tenant `acme`.
    fn approve(&self, update: &str) {
        self.srv
            .cli(&["approve", "--tenant", "acme", "--group", "web", update]);
    }

    fn host_id(&self, hostname: &str) -> String {
        self.srv.acme_host_id(hostname)
    }

    fn state_of(&self, hostname: &str, update: &str) -> (String, String) {
        let rows = self.srv.report_rows();
        rows.iter()
            .find(|r| r["hostname"] == hostname && r["update"] == update)
            .map(|r| {
                (
                    r["state"].as_str().unwrap().to_string(),
                    r["message"].as_str().unwrap_or("").to_string(),
                )
            })
            .unwrap_or_else(|| ("absent".into(), format!("{rows:?}")))
    }
}

#[test]
fn host_goes_from_needed_to_installed_and_a_second_run_installs_nothing() {
    let _serial = patchday_testkit::serial();
    let (w, old, _) = world("pd-test-happy", false, None);
    let h = Host::new(&bins(), &w.dir, "happy-1");
    h.lab.install_deb(&old).unwrap();
    let o = h.agent(&w.srv.url, Some(&w.enroll));
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("assigned 0"), "{}", text(&o));
    assert_eq!(w.state_of("happy-1", "PD-T-1").0, "needed");

    let id = w.host_id("happy-1");
    w.srv
        .cli(&["host", "set-groups", "--tenant", "acme", &id, "web"]);
    w.srv
        .cli(&["approve", "--tenant", "acme", "--group", "web", "PD-T-1"]);
    assert_eq!(w.state_of("happy-1", "PD-T-1").0, "approved");
    // The update document's CVEs came from the package's changelog.
    let ups: Vec<Value> = serde_json::from_str(
        &w.srv
            .cli(&["updates", "--tenant", "acme", "--format", "json"]),
    )
    .unwrap();
    assert_eq!(ups[0]["cves"], 2, "counts are JSON numbers");

    let o = h.agent(&w.srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("installed 1"), "{}", text(&o));
    assert_eq!(h.version("pd-test-happy").as_deref(), Some("1.0-2"));
    assert_eq!(w.state_of("happy-1", "PD-T-1").0, "installed");
    if h.is_overlay() {
        let real = std::process::Command::new("dpkg-query")
            .args(["-W", "pd-test-happy"])
            .output()
            .unwrap();
        assert!(
            !real.status.success(),
            "the real machine must not have the package"
        );
    }

    let o = h.agent(&w.srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("assigned 0 installed 0 failed 0"),
        "{}",
        text(&o)
    );

    // Report formats agree.
    let csv = w.srv.cli(&["report", "--by", "host", "--format", "csv"]);
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .contains(",yes,up-to-date,,0,0,1,0,0,0"),
        "{csv}"
    );
    let table = w.srv.cli(&["report", "--by", "tenant"]);
    assert!(table.contains("acme"), "{table}");
}

#[test]
fn corrupted_payload_on_the_server_is_refused_and_nothing_is_installed() {
    patchday_testkit::on_the_data_directory(
        "an object changed behind the store's back is hashed again and quarantined: crates/content's conformance suite on S3",
    );
    let _serial = patchday_testkit::serial();
    let (w, old, new) = world("pd-test-corrupt", false, None);
    let h = w.host_approved("corrupt-1", &old);
    // Flip a byte of the payload in the server's content store (a compromised disk).
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        std::fs::read(&new).unwrap(),
    ));
    let blob = w.srv.data.join("content").join(&sha[..2]).join(&sha);
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();

    let o = h.agent(&w.srv.url, None);
    assert!(!o.status.success());
    // The server checks the payload's sha256 before serving it and refuses (503)
    // rather than send damaged bytes (issue 8, finding 14: server_hardening.rs).
    assert!(text(&o).contains("503"), "{}", text(&o));
    assert_eq!(h.version("pd-test-corrupt").as_deref(), Some("1.0-1"));
    let (state, msg) = w.state_of("corrupt-1", "PD-T-1");
    assert_eq!(state, "failed");
    assert!(msg.contains("503"), "{msg}");
}

#[test]
fn tampered_update_document_and_foreign_catalogs_are_refused_at_push() {
    let _serial = patchday_testkit::serial();
    let (w, _, new) = world("pd-test-tamper", false, None);
    let before = w.srv.cli(&["catalog", "status", "--format", "json"]);
    // A second update, then tamper with its signed document.
    let o = w
        .cat
        .add_deb("PD-T-2", &new, &["--train", "2026-01", "--title", "second"]);
    assert!(o.status.success(), "{}", text(&o));
    let doc = std::fs::read_dir(w.cat.repo.join("targets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".update-PD-T-2.json"))
        .unwrap();
    let s = std::fs::read_to_string(&doc)
        .unwrap()
        .replace("second", "SECOND");
    std::fs::write(&doc, s).unwrap();
    let o = w.srv.cli_as(
        &w.srv.admin,
        &["catalog", "push", "--repo", w.cat.repo.to_str().unwrap()],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("sha256 mismatch"), "{}", text(&o));
    assert_eq!(
        w.srv.cli(&["catalog", "status", "--format", "json"]),
        before,
        "a refused push changes nothing"
    );

    // A catalog made with other keys is refused as well.
    let other = scratch();
    let cat2 = Catalog::new(&bins(), other.path());
    let o = w.srv.cli_as(
        &w.srv.admin,
        &["catalog", "push", "--repo", cat2.repo.to_str().unwrap()],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("different root"), "{}", text(&o));
    assert_eq!(
        w.srv.cli(&["catalog", "status", "--format", "json"]),
        before
    );
}

#[test]
fn wrong_and_foreign_credentials_are_refused_and_change_nothing() {
    let _serial = patchday_testkit::serial();
    let (w, _, _) = world("pd-test-auth", false, None);
    let s = &w.srv;
    s.cli(&["tenant", "create", "globex"]);
    assert_eq!(s.http_get("/v1/tenants", None).0, 401);
    assert_eq!(s.http_get("/v1/tenants", Some("pd_wrong")).0, 401);
    let globex_admin = s
        .cli(&[
            "token",
            "create",
            "--role",
            "tenant-admin",
            "--tenant",
            "globex",
            "--name",
            "g",
        ])
        .trim()
        .to_string();
    let (code, body) = s.http_get("/v1/tenants/acme/hosts", Some(&globex_admin));
    assert_eq!(code, 404, "{body}");
    let (code, body) = s.http_get("/v1/tenants", Some(&globex_admin));
    assert_eq!(code, 200);
    assert!(
        !body.contains("acme"),
        "a tenant admin sees only its tenant: {body}"
    );
    let reader = s
        .cli(&[
            "token",
            "create",
            "--role",
            "read-only",
            "--tenant",
            "acme",
            "--name",
            "r",
        ])
        .trim()
        .to_string();
    let o = s.cli_as(
        &reader,
        &["approve", "--tenant", "acme", "--group", "web", "PD-T-1"],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("read-only"), "{}", text(&o));
    let o = s.cli_as(
        &globex_admin,
        &["approve", "--tenant", "acme", "--group", "web", "PD-T-1"],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("not found"), "{}", text(&o));
    let o = s.cli_as(&globex_admin, &["tenant", "create", "evil"]);
    assert!(!o.status.success(), "only a provider admin creates tenants");
    let approvals = s.http_get("/v1/tenants/acme/approvals", Some(&s.admin)).1;
    assert_eq!(approvals.trim(), "[]", "nothing was approved");
    // A host with a wrong enrolment token is refused and not created.
    let h = Host::new(&bins(), &w.dir, "auth-1");
    let o = h.agent(&s.url, Some("pde_wrong"));
    assert!(!o.status.success());
    assert!(text(&o).contains("unknown enrolment token"), "{}", text(&o));
    assert_eq!(
        s.http_get("/v1/tenants/acme/hosts", Some(&s.admin))
            .1
            .trim(),
        "[]"
    );
    // A host credential is not an operator token.
    let (code, _) = s.http_get("/v1/tenants", Some("pdh_0000"));
    assert_eq!(code, 401);
}

#[test]
fn malformed_deb_is_refused_at_import_and_the_catalog_is_unchanged() {
    let _serial = patchday_testkit::serial();
    let d = scratch();
    let b = bins();
    let (_, new) = debs(d.path(), "pd-test-malformed", false, None);
    let cat = Catalog::new(&b, d.path());
    let before = std::fs::read(cat.repo.join("metadata/timestamp.json")).unwrap();
    let bad = d.path().join("bad.deb");
    let bytes = std::fs::read(&new).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let o = cat.add_deb("PD-BAD", &bad, &["--emergency", "x"]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("bad.deb") && (t.contains("truncated") || t.contains("corrupt")),
        "{t}"
    );
    let garbage = d.path().join("garbage.deb");
    std::fs::write(&garbage, b"this is not a package").unwrap();
    let o = cat.add_deb("PD-BAD", &garbage, &["--emergency", "x"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("not a Debian package"), "{}", text(&o));
    assert_eq!(
        std::fs::read(cat.repo.join("metadata/timestamp.json")).unwrap(),
        before
    );
}

/// A TCP proxy that can cut the first payload response after `cut_after` bytes, and
/// records request heads.
struct Proxy {
    url: String,
    cut: Arc<AtomicBool>,
    heads: Arc<Mutex<Vec<String>>>,
    /// When set, check-ins are answered with this body instead of the server's:
    /// a compromised server choosing what hosts install.
    forge: Arc<Mutex<Option<String>>>,
    /// When set, payload responses trickle out a few bytes at a time (slow retrieval).
    trickle: Arc<AtomicBool>,
    /// When set, a GET whose request line contains this never ends (endless data).
    endless: Arc<Mutex<Option<&'static str>>>,
}

fn proxy(upstream: &str, cut_after: usize) -> Proxy {
    let up = upstream.trim_start_matches("http://").to_string();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let cut = Arc::new(AtomicBool::new(true));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let forge: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let trickle = Arc::new(AtomicBool::new(false));
    let endless: Arc<Mutex<Option<&'static str>>> = Arc::new(Mutex::new(None));
    let (c2, h2, f2, t2, e2) = (
        cut.clone(),
        heads.clone(),
        forge.clone(),
        trickle.clone(),
        endless.clone(),
    );
    std::thread::spawn(move || {
        for conn in l.incoming().take(200) {
            let Ok(mut client) = conn else { continue };
            let (up, cut, heads, forge, trickle, endless) = (
                up.clone(),
                c2.clone(),
                h2.clone(),
                f2.clone(),
                t2.clone(),
                e2.clone(),
            );
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut b = [0u8; 1];
                while !buf.ends_with(b"\r\n\r\n") {
                    if client.read(&mut b).unwrap_or(0) == 0 {
                        return;
                    }
                    buf.push(b[0]);
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                client.read_exact(&mut body).unwrap();
                heads.lock().unwrap().push(head.clone());
                let first_line = head.lines().next().unwrap_or("").to_string();
                if first_line.starts_with("GET ")
                    && endless
                        .lock()
                        .unwrap()
                        .is_some_and(|pat| first_line.contains(pat))
                {
                    // No length, no end: up to 256 MiB of JSON whitespace.
                    let _ = client.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{",
                    );
                    let spaces = [b' '; 65536];
                    for _ in 0..4096 {
                        if client.write_all(&spaces).is_err() {
                            return;
                        }
                    }
                    return;
                }
                if head.starts_with("POST /v1/agent/checkin") {
                    if let Some(body) = forge.lock().unwrap().clone() {
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = client.write_all(resp.as_bytes());
                        return;
                    }
                }
                let head = head.replacen("\r\n", "\r\nConnection: close\r\n", 1);
                let mut s = TcpStream::connect(&up).unwrap();
                s.write_all(head.as_bytes()).unwrap();
                s.write_all(&body).unwrap();
                let payload = head.contains("/v1/tuf/targets/") && head.contains(".deb");
                let limit = if payload && cut.swap(false, Ordering::SeqCst) {
                    cut_after
                } else {
                    usize::MAX
                };
                let mut sent = 0usize;
                let mut chunk = [0u8; 16384];
                loop {
                    let n = s.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    let n = n.min(limit - sent);
                    if payload && sent > 0 && trickle.load(Ordering::SeqCst) {
                        // 16 bytes every 200 ms: never idle long enough for a
                        // read timeout, and never done.
                        for piece in chunk[..n].chunks(16) {
                            if client.write_all(piece).is_err() {
                                return;
                            }
                            std::thread::sleep(std::time::Duration::from_millis(200));
                        }
                        sent += n;
                        continue;
                    }
                    if client.write_all(&chunk[..n]).is_err() {
                        break;
                    }
                    sent += n;
                    if sent >= limit {
                        break; // drop the connection mid-body
                    }
                }
            });
        }
    });
    Proxy {
        url,
        cut,
        heads,
        forge,
        trickle,
        endless,
    }
}

#[test]
fn download_cut_in_the_middle_resumes_where_it_stopped() {
    let _serial = patchday_testkit::serial();
    let (w, old, new) = world("pd-test-resume", true, None);
    let p = proxy(&w.srv.url, 1_000_000);
    let (h, _) = w.host_at(&p.url, "resume-1", &old);
    w.approve("PD-T-1");

    let o = h.agent(&p.url, None);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("connection dropped") || text(&o).contains("payload"),
        "{}",
        text(&o)
    );
    assert_eq!(h.version("pd-test-resume").as_deref(), Some("1.0-1"));
    assert!(!p.cut.load(Ordering::SeqCst), "the payload request was cut");

    let o = h.agent(&p.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.version("pd-test-resume").as_deref(), Some("1.0-2"));
    let heads = p.heads.lock().unwrap();
    let resumed = heads
        .iter()
        .find(|h| h.contains(".deb") && h.to_ascii_lowercase().contains("range: bytes="));
    let r = resumed.unwrap_or_else(|| panic!("no Range request: {heads:?}"));
    let from: u64 = r
        .to_ascii_lowercase()
        .split("range: bytes=")
        .nth(1)
        .unwrap()
        .split('-')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let size = std::fs::metadata(&new).unwrap().len();
    assert!(from > 0 && from < size, "resumed from {from} of {size}");
    assert_eq!(w.state_of("resume-1", "PD-T-1").0, "installed");
}

#[test]
fn agent_killed_during_install_is_never_reported_installed_and_is_finished_next_run() {
    let _serial = patchday_testkit::serial();
    use std::os::unix::process::CommandExt;
    let slow = "if [ -e /etc/pd-slow ]; then sleep 60; fi";
    let (w, old, _) = world("pd-test-kill", false, Some(slow));
    let h = w.host_approved("kill-1", &old);
    h.lab.write_file("/etc/pd-slow", b"1").unwrap();
    let log = w.dir.join("agent.log");
    let mut child = h
        .agent_command(&w.srv.url, None, &[])
        .process_group(0)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(w.dir.join("agent.err")).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while w.state_of("kill-1", "PD-T-1").0 != "installing" {
        assert!(
            std::time::Instant::now() < deadline,
            "agent never reached installing: {:?} {} {}",
            w.state_of("kill-1", "PD-T-1"),
            std::fs::read_to_string(&log).unwrap_or_default(),
            std::fs::read_to_string(w.dir.join("agent.err")).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500)); // dpkg is in the postinst now
    let pgid = child.id();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status();
    let _ = child.wait();
    // dpkg runs maintainer scripts in their own process group; reap them too, as a
    // reboot would.
    h.lab.kill_all().unwrap();
    assert_ne!(w.state_of("kill-1", "PD-T-1").0, "installed");
    assert_ne!(
        h.version("pd-test-kill").as_deref(),
        Some("1.0-2"),
        "dpkg must not call a half-configured package installed"
    );

    let _ = h
        .lab
        .run(Path::new("/bin/rm"), &["-f".into(), "/etc/pd-slow".into()])
        .unwrap();
    let o = h.agent(&w.srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.version("pd-test-kill").as_deref(), Some("1.0-2"));
    assert_eq!(w.state_of("kill-1", "PD-T-1").0, "installed");
}

#[test]
fn failing_maintainer_script_is_reported_with_dpkgs_message_and_retried() {
    let _serial = patchday_testkit::serial();
    let (w, old, _) = world(
        "pd-test-fail",
        false,
        Some("if [ -e /etc/pd-fail ]; then echo 'postinst: disk on fire' >&2; exit 1; fi"),
    );
    let h = w.host_approved("fail-1", &old);
    h.lab.write_file("/etc/pd-fail", b"1").unwrap();
    let o = h.agent(&w.srv.url, None);
    assert!(!o.status.success());
    let (state, msg) = w.state_of("fail-1", "PD-T-1");
    assert_eq!(state, "failed", "{msg} / agent: {}", text(&o));
    assert!(
        msg.contains("disk on fire") || msg.contains("post-installation"),
        "{msg}"
    );
    let _ = h
        .lab
        .run(Path::new("/bin/rm"), &["-f".into(), "/etc/pd-fail".into()])
        .unwrap();
    let o = h.agent(&w.srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(w.state_of("fail-1", "PD-T-1").0, "installed");
}

#[test]
fn train_update_waits_for_its_patch_day_and_an_older_catalog_is_refused() {
    let _serial = patchday_testkit::serial();
    let (w, _, new) = world("pd-test-train", false, None);
    // Keep a copy of the catalog as pushed (version N), then publish N+1.
    let old_copy = w.dir.join("catalog-old");
    let o = std::process::Command::new("cp")
        .arg("-a")
        .arg(&w.cat.repo)
        .arg(&old_copy)
        .output()
        .unwrap();
    assert!(o.status.success());
    let o = w.cat.add_deb("PD-T-FUTURE", &new, &["--train", "2099-01"]);
    assert!(o.status.success(), "{}", text(&o));
    w.srv
        .cli(&["catalog", "push", "--repo", w.cat.repo.to_str().unwrap()]);
    let o = w.srv.cli_as(
        &w.srv.admin,
        &[
            "approve",
            "--tenant",
            "acme",
            "--group",
            "web",
            "PD-T-FUTURE",
        ],
    );
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("2099-01 train") && t.contains("emergency lane"),
        "{t}"
    );
    let ups = w.srv.cli(&["updates", "--tenant", "acme"]);
    assert!(ups.contains("from 2099-01-13T10:00:00Z"), "{ups}");

    // Replaying the older catalog is a rollback.
    let o = w.srv.cli_as(
        &w.srv.admin,
        &["catalog", "push", "--repo", old_copy.to_str().unwrap()],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("rollback"), "{}", text(&o));
    let st: Value =
        serde_json::from_str(&w.srv.cli(&["catalog", "status", "--format", "json"])).unwrap();
    assert_eq!(st["updates"], 2, "the newer catalog stays");
}

#[test]
fn agents_report_audit_facts_and_the_server_plans_per_host_and_fleet() {
    let _serial = patchday_testkit::serial();
    let d = scratch();
    let dir = d.path();
    let b = bins();
    let (old, new) = debs(dir, "pd-test-audit", false, None);
    let osv = dir.join("osv.json");
    std::fs::write(
        &osv,
        r#"{"id":"PD-OSV-0001","modified":"2026-01-01T00:00:00Z","aliases":["CVE-2099-0101"],
           "summary":"buffer overflow in pd-test-audit",
           "affected":[{"package":{"ecosystem":"Debian:12","name":"pd-test-audit"},
             "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.0-2"}]}]}]}"#,
    )
    .unwrap();
    let AcmeWorld { srv, enroll, .. } = AcmeWorld::start(
        &b,
        dir,
        ("PD-T-1", &new, &["--emergency", "test"]),
        &|_| vec!["--osv".into(), osv.to_str().unwrap().into()],
        &["--unlimited"],
    );
    let h = Host::new(&b, dir, "audit-1");
    if !h.is_overlay() {
        patchday_lab::skip_or_fail(
            patchday_lab::Requirement::Root,
            "the host's os-release decides the OSV release",
        );
        return;
    }
    h.lab.install_deb(&old).unwrap();
    let o = h.agent(&srv.url, Some(&enroll));
    assert!(o.status.success(), "{}", text(&o));
    let id = srv.acme_host_id("audit-1");

    let plan = srv.cli(&[
        "audit-report",
        "--tenant",
        "acme",
        "--host",
        &id,
        "--plan-format",
        "json",
    ]);
    assert!(
        plan.contains("PD-OSV-0001") && plan.contains("CVE-2099-0101"),
        "{plan}"
    );
    let html = srv.cli(&[
        "audit-report",
        "--tenant",
        "acme",
        "--host",
        &id,
        "--plan-format",
        "html",
    ]);
    assert!(
        html.contains("<html") && html.contains("pd-test-audit"),
        "{html}"
    );
    let fleet = srv.cli(&["audit-report", "--tenant", "acme", "--format", "csv"]);
    let row = fleet
        .lines()
        .find(|l| l.contains("pd-test-audit"))
        .unwrap_or_else(|| panic!("{fleet}"));
    assert!(row.contains(",1.0-2,1,"), "one host needs the fix: {row}");

    // Patch it; the next facts show the truth and the fleet plan drops the action.
    srv.cli(&["host", "set-groups", "--tenant", "acme", &id, "web"]);
    srv.cli(&["approve", "--tenant", "acme", "--group", "web", "PD-T-1"]);
    let o = h.agent(&srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    let fleet = srv.cli(&["audit-report", "--tenant", "acme", "--format", "csv"]);
    assert!(!fleet.contains("pd-test-audit"), "{fleet}");
    // A host's plan is scoped like everything else.
    srv.cli(&["tenant", "create", "globex"]);
    let g = srv
        .cli(&[
            "token",
            "create",
            "--role",
            "read-only",
            "--tenant",
            "globex",
            "--name",
            "g",
        ])
        .trim()
        .to_string();
    assert_eq!(
        srv.http_get(&format!("/v1/tenants/acme/hosts/{id}/audit"), Some(&g))
            .0,
        404
    );
}

#[test]
fn demo_runs_in_dpkg_root_sandboxes() {
    let _serial = patchday_testkit::serial();
    let d = scratch();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_patchday"))
        .args(["demo", "--sandbox", "--synthetic", "--dir"])
        .arg(d.path().join("demo"))
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("dpkg --root sandboxes")
            && t.contains("rebooted")
            && t.contains("every host is compliant (4 of 4)"),
        "{t}"
    );
    assert!(
        !d.path().join("demo").exists(),
        "the demo cleans up after itself"
    );
}

#[allow(clippy::disallowed_methods)] // a forger's clock
fn wall_clock() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// The release counter the catalog signed for `name` (0 when none or not listed).
fn signed_counter(w: &World, name: &str) -> u64 {
    let meta = w.cat.repo.join("metadata");
    // Issue 9: `<role>~<file>` is listed by the delegated role, not by targets.json.
    let role = name.split_once('~').map_or("targets", |(r, _)| r);
    // Issue 9, point 6: the role lists it in its hash bin (catalogs keep current versions
    // only, so the bin's one file is its current version).
    let bin = &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(name.as_bytes()))[..2];
    let suffix = format!(".{role}.bin-{bin}.json");
    let newest = std::fs::read_dir(&meta)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            n.strip_suffix(&suffix)?.parse::<u64>().ok()
        })
        .max();
    // No such bin: nothing the catalog signed falls there.
    let Some(newest) = newest else { return 0 };
    let v: Value =
        serde_json::from_slice(&std::fs::read(meta.join(format!("{newest}{suffix}"))).unwrap())
            .unwrap();
    v["signed"]["targets"][name]["custom"]["release_counter"]
        .as_u64()
        .unwrap_or(0)
}

/// Director metadata signed with `key` (by default the server's own, stolen key): honest
/// fields for this host (custom fields as the server would sign them, version = now),
/// then `tweak` lies in the signed JSON.
fn forge_director_with(
    w: &World,
    key: &Path,
    host: &str,
    update: &str,
    names: &[&str],
    tweak: &dyn Fn(&mut Value),
) -> String {
    let key = patchday_trust::director::DirectorKey::load_or_create(key).unwrap();
    let published: Vec<PathBuf> = std::fs::read_dir(w.cat.repo.join("targets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let mut targets = serde_json::Map::new();
    for name in names {
        let (length, sha) = published
            .iter()
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .ends_with(&format!(".{name}"))
            })
            .map(|p| {
                let f = p.file_name().unwrap().to_string_lossy().into_owned();
                (
                    std::fs::metadata(p).unwrap().len(),
                    f.split('.').next().unwrap().to_string(),
                )
            })
            .unwrap_or((6, "00".repeat(32)));
        targets.insert(
            name.to_string(),
            serde_json::json!({
                "length": length,
                "hashes": {"sha256": sha},
                "custom": {
                    "update": update, "tenant": "acme", "host": host,
                    "architecture": patchday_testkit::native_architecture(), "groups": ["web"],
                    "release_counter": signed_counter(w, name),
                },
            }),
        );
    }
    let now = wall_clock();
    let mut signed = serde_json::json!({
        "_type": "targets",
        "spec_version": "1.0.0",
        "version": now.as_second(),
        "expires": patchday_trust::director::expires_in(now, 600).unwrap(),
        "host": host,
        "targets": targets,
    });
    tweak(&mut signed);
    String::from_utf8(key.sign(&signed).unwrap()).unwrap()
}

/// Director metadata signed with the server's own (stolen) key, honest fields.
fn forge_director(w: &World, host: &str, update: &str, names: &[&str]) -> String {
    forge_director_with(
        w,
        &w.srv.data.join("director/ed25519.pk8"),
        host,
        update,
        names,
        &|_| {},
    )
}

/// A forged check-in answer: one assignment, with the given director metadata.
fn answer(update: &str, target: &str, director: Option<String>) -> String {
    serde_json::json!({
        "assignments": [{"update": update, "targets": [target], "deadline": null}],
        "poll_seconds": 60,
        "director": director,
    })
    .to_string()
}

/// Runs the agent and asserts that it failed saying `expect`, with `pkg` still at `still`.
fn assert_refused(h: &Host, url: &str, expect: &str, pkg: &str, still: &str) {
    let o = h.agent(url, None);
    assert!(!o.status.success(), "expected a refusal: {}", text(&o));
    assert!(
        text(&o).contains(expect),
        "expected {expect:?}: {}",
        text(&o)
    );
    assert_eq!(h.version(pkg).as_deref(), Some(still), "{expect}");
}

/// A compromised server's playground: a host at `pd-test-forge` 1.0-3 (release 3,
/// installed honestly through Patchday), behind a proxy that can forge check-in answers.
/// The catalog holds 1.0-2 (release 1), 1.0-1 again (release 2), 1.0-3 (release 3),
/// an arm64 1.0-4 (release 4) and a 1.0-5 published for tenant globex only (release 5).
struct Forgery {
    w: World,
    h: Host,
    p: Proxy,
    host: String,
}

const V3_DEB: &str = "pd-test-forge_1.0-3_all.deb";
const OLD_DEB: &str = "pd-test-forge_1.0-1_all.deb";
const ARM_DEB: &str = "pd-test-forge_1.0-4_arm64.deb";
// Issue 9, point 3: a tenant's private payload lives in the tenant's own role.
const GLOBEX_DEB: &str = "tenant-globex~pd-test-forge_1.0-5_all.deb";

fn forgery() -> Forgery {
    let (w, old, new) = world("pd-test-forge", false, None);
    let out = w.dir.join("pkgs");
    let v3 = patchday_lab::build_deb(
        &DebSpec::new("pd-test-forge", "1.0-3").changelog("1.0-3", "Another fix."),
        &out,
    )
    .unwrap();
    let arm = patchday_lab::build_deb(
        &DebSpec::new("pd-test-forge", "1.0-4")
            .architecture("arm64")
            .changelog("1.0-4", "arm64 build."),
        &out,
    )
    .unwrap();
    std::fs::create_dir_all(out.join("globex")).unwrap();
    let globex = patchday_lab::build_deb(
        &DebSpec::new("pd-test-forge", "1.0-5").changelog("1.0-5", "Globex's own build."),
        &out.join("globex"),
    )
    .unwrap();
    for (id, deb, extra) in [
        ("PD-T-0", &old, vec!["--emergency", "old"]),
        ("PD-T-3", &v3, vec!["--emergency", "fix"]),
        ("PD-T-ARM", &arm, vec!["--emergency", "arm"]),
        (
            "PD-T-GLOBEX",
            &globex,
            vec!["--emergency", "customer build", "--tenant", "globex"],
        ),
    ] {
        let o = w.cat.add_deb(id, deb, &extra);
        assert!(o.status.success(), "{}", text(&o));
    }
    w.srv
        .cli(&["catalog", "push", "--repo", w.cat.repo.to_str().unwrap()]);
    let p = proxy(&w.srv.url, usize::MAX);
    p.cut.store(false, Ordering::SeqCst);
    let (h, host) = w.host_at(&p.url, "forge-1", &new);
    w.approve("PD-T-3");
    let o = h.agent(&p.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.version("pd-test-forge").as_deref(), Some("1.0-3"));
    Forgery { w, h, p, host }
}

impl Forgery {
    /// An assignment of `target` for `update`, signed with the stolen director key.
    fn stolen(&self, update: &str, target: &str, tweak: &dyn Fn(&mut Value)) -> String {
        answer(
            update,
            target,
            Some(forge_director_with(
                &self.w,
                &self.w.srv.data.join("director/ed25519.pk8"),
                &self.host,
                update,
                &[&format!("update-{update}.json"), target],
                tweak,
            )),
        )
    }

    /// Each forged answer is refused with its message and installs nothing.
    fn refused(&self, cases: &[(String, &str)]) {
        for (forged, expect) in cases {
            *self.p.forge.lock().unwrap() = Some(forged.clone());
            assert_refused(&self.h, &self.p.url, expect, "pd-test-forge", "1.0-3");
        }
        *self.p.forge.lock().unwrap() = None;
    }
}

/// Sets one custom field of every target.
fn every_target(field: &'static str, v: Value) -> impl Fn(&mut Value) {
    move |signed: &mut Value| {
        for t in signed["targets"].as_object_mut().unwrap().values_mut() {
            t["custom"][field] = v.clone();
        }
    }
}

#[test]
fn unsigned_foreign_replayed_or_delegating_assignments_are_refused() {
    let _serial = patchday_testkit::serial();
    let f = forgery();
    let doc0 = "update-PD-T-0.json";
    f.refused(&[
        // A man in the middle, or a server without its key.
        (answer("PD-T-0", OLD_DEB, None), "without director metadata"),
        (
            answer(
                "PD-T-0",
                OLD_DEB,
                Some(forge_director_with(
                    &f.w,
                    &f.w.dir.join("other-key"),
                    &f.host,
                    "PD-T-0",
                    &[doc0, OLD_DEB],
                    &|_| {},
                )),
            ),
            "not signed by the director key",
        ),
        // Another host's signed assignment, replayed.
        (
            answer(
                "PD-T-0",
                OLD_DEB,
                Some(forge_director(
                    &f.w,
                    "someone-else",
                    "PD-T-0",
                    &[doc0, OLD_DEB],
                )),
            ),
            "not to this host",
        ),
        // Director metadata older than the last accepted (rollback), expired (freeze),
        // or delegating.
        (
            f.stolen("PD-T-3", V3_DEB, &|s| s["version"] = 1.into()),
            "rollback: version 1 is older",
        ),
        (
            f.stolen("PD-T-3", V3_DEB, &|s| {
                s["expires"] = "2020-01-01T00:00:00Z".into()
            }),
            "expiry: expired at 2020-01-01",
        ),
        (
            f.stolen("PD-T-3", V3_DEB, &|s| {
                s["delegations"] = serde_json::json!({"keys": {}, "roles": []})
            }),
            "delegations: director metadata must not delegate",
        ),
    ]);
}

#[test]
fn director_lowering_a_release_counter_is_refused() {
    let _serial = patchday_testkit::serial();
    let f = forgery();
    assert_eq!(
        [
            "pd-test-forge_1.0-2_all.deb",
            OLD_DEB,
            V3_DEB,
            ARM_DEB,
            GLOBEX_DEB
        ]
        .map(|n| signed_counter(&f.w, n)),
        [1, 2, 3, 4, 5],
        "release counters follow the order of publication"
    );
    f.refused(&[
        // Earlier releases, honestly numbered: 1.0-1 (release 2) and 1.0-2 (release 1).
        (
            f.stolen("PD-T-0", OLD_DEB, &|_| {}),
            "release counter: pd-test-forge_1.0-1_all.deb is release 2 of pd-test-forge, older than release 3",
        ),
        (
            f.stolen("PD-T-1", "pd-test-forge_1.0-2_all.deb", &|_| {}),
            "release counter",
        ),
        // The director lying about the counter.
        (
            f.stolen("PD-T-0", OLD_DEB, &every_target("release_counter", 99.into())),
            "release counter: the director says 99",
        ),
    ]);
}

#[test]
fn director_assigning_another_tenants_or_architectures_payload_is_refused() {
    let _serial = patchday_testkit::serial();
    let f = forgery();
    // Acme's operators do not even see globex's update.
    let updates =
        f.w.srv
            .cli(&["updates", "--tenant", "acme", "--format", "json"]);
    assert!(!updates.contains("PD-T-GLOBEX"), "{updates}");
    f.refused(&[
        (
            f.stolen("PD-T-ARM", ARM_DEB, &|_| {}),
            "architecture: pd-test-forge_1.0-4_arm64.deb is built for arm64",
        ),
        (
            f.stolen(
                "PD-T-3",
                V3_DEB,
                &every_target("architecture", "arm64".into()),
            ),
            "architecture:",
        ),
        (
            f.stolen("PD-T-3", V3_DEB, &every_target("tenant", "globex".into())),
            "tenant: ",
        ),
        // Issue 9, point 3: acme's agent cannot even read globex's private role, so the
        // update is not in the catalog it verified.
        (
            f.stolen("PD-T-GLOBEX", GLOBEX_DEB, &|_| {}),
            "does not publish update-PD-T-GLOBEX.json",
        ),
    ]);
}

#[test]
fn stolen_director_key_cannot_make_an_unpublished_payload_installable() {
    let _serial = patchday_testkit::serial();
    let f = forgery();
    f.refused(&[
        // A payload the catalog does not list, with a made-up hash.
        (
            f.stolen("PD-T-1", "evil_6.6_all.deb", &|_| {}),
            "does not publish evil_6.6_all.deb",
        ),
        // A published payload, but one the named update does not contain.
        (f.stolen("PD-T-1", V3_DEB, &|_| {}), "does not name"),
        // An update that was never published.
        (
            f.stolen("PD-NOT-PUBLISHED", "x_1_all.deb", &|_| {}),
            "does not publish update-PD-NOT-PUBLISHED.json",
        ),
        // A published payload with another length and hash in the assignment.
        (
            f.stolen("PD-T-3", V3_DEB, &|s| {
                for t in s["targets"].as_object_mut().unwrap().values_mut() {
                    t["length"] = 12.into();
                    t["hashes"]["sha256"] = "11".repeat(32).into();
                }
            }),
            "director and catalog disagree",
        ),
    ]);
    // The honest server does not offer the arm64 build to this amd64 host, approved or not.
    f.w.approve("PD-T-ARM");
    let o = f.h.agent(&f.p.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("assigned 0"), "{}", text(&o));
}

/// `python3` with python-tuf importable, or None (the test then says it skipped; in CI
/// it fails instead).
fn python_tuf() -> Option<&'static str> {
    patchday_lab::require(patchday_lab::Requirement::PythonTuf).then_some("python3")
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

#[test]
fn python_tuf_ngclient_refreshes_and_downloads_from_patchday() {
    // It changes a payload file in the data directory.
    patchday_testkit::on_the_data_directory(
        "an object changed behind the store's back is hashed again and quarantined: crates/content's conformance suite on S3",
    );
    let _serial = patchday_testkit::serial();
    let Some(py) = python_tuf() else { return };
    let (w, _, new) = world("pd-test-ngclient", false, None);
    let name = "pd-test-ngclient_1.0-2_all.deb";
    let o = std::process::Command::new(py)
        .arg(script("ngclient_fetch.py"))
        .args([w.srv.url.as_str(), w.srv.admin.as_str()])
        .arg(w.cat.root())
        .arg(w.dir.join("ngclient"))
        .arg(name)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let path = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(std::fs::read(path).unwrap(), std::fs::read(&new).unwrap());
    // And a payload changed on the server is refused by the independent client too.
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        std::fs::read(&new).unwrap(),
    ));
    let blob = w.srv.data.join("content").join(&sha[..2]).join(&sha);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&blob, bytes).unwrap();
    let o = std::process::Command::new(py)
        .arg(script("ngclient_fetch.py"))
        .args([w.srv.url.as_str(), w.srv.admin.as_str()])
        .arg(w.cat.root())
        .arg(w.dir.join("ngclient2"))
        .arg(name)
        .output()
        .unwrap();
    assert!(!o.status.success());
    // The server itself now refuses a payload that fails its hash (503, issue 8,
    // finding 14); a client that got the bytes anyway would refuse them.
    assert!(
        text(&o).contains("LengthOrHashMismatch")
            || text(&o).contains("hash")
            || text(&o).contains("HTTP Error 503"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_catalog_made_by_python_tuf_is_accepted_served_and_installed() {
    let _serial = patchday_testkit::serial();
    let Some(py) = python_tuf() else { return };
    let d = scratch();
    let dir = d.path();
    let b = bins();
    let (old, new) = debs(dir, "pd-test-pytuf", false, None);
    let repo = dir.join("pyrepo");
    let o = std::process::Command::new(py)
        .arg(script("make_repo.py"))
        .arg(&repo)
        .arg(&new)
        .args(["PD-PY-1", "pd-test-pytuf", "1.0-2", "all"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let srv = Server::start(&b, dir, &repo.join("metadata/1.root.json"));
    acme_with_web(&srv, &repo);
    let enroll = acme_enroll_token(&srv, &["--unlimited"]);
    let h = Host::new(&b, dir, "pytuf-1");
    h.enrol_into_web(&srv, &srv.url, &enroll, &old);
    srv.cli(&["approve", "--tenant", "acme", "--group", "web", "PD-PY-1"]);
    let o = h.agent(&srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.version("pd-test-pytuf").as_deref(), Some("1.0-2"));
}

#[test]
fn slow_retrieval_is_abandoned_after_a_bounded_time_and_retried_later() {
    let _serial = patchday_testkit::serial();
    let (w, old, _) = world("pd-test-slow", true, None);
    let p = proxy(&w.srv.url, usize::MAX);
    p.cut.store(false, Ordering::SeqCst);
    let (h, _) = w.host_at(&p.url, "slow-1", &old);
    w.approve("PD-T-1");

    p.trickle.store(true, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let o = h
        .agent_command(
            &p.url,
            None,
            &["--stall-timeout", "2", "--download-timeout", "4"],
        )
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o).contains("did not finish within 4s"),
        "{}",
        text(&o)
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the agent gave up in bounded time"
    );
    assert_eq!(h.version("pd-test-slow").as_deref(), Some("1.0-1"));
    assert_eq!(w.state_of("slow-1", "PD-T-1").0, "failed");

    // The next run, on a normal link, finishes the job.
    p.trickle.store(false, Ordering::SeqCst);
    let o = h.agent(&p.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.version("pd-test-slow").as_deref(), Some("1.0-2"));
}

/// A plain TCP forwarder whose upstream can be switched: the network position of a
/// man in the middle (TLS passes through untouched).
fn tcp_forwarder(upstream: &str) -> (String, Arc<Mutex<String>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let up = Arc::new(Mutex::new(upstream.to_string()));
    let up2 = up.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().take(200) {
            let Ok(client) = conn else { continue };
            let target = up2.lock().unwrap().clone();
            std::thread::spawn(move || {
                let Ok(server) = TcpStream::connect(&target) else {
                    return;
                };
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let t = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut s2);
                    let _ = s2.shutdown(std::net::Shutdown::Write);
                });
                let (mut c, mut s) = (client, server);
                let _ = std::io::copy(&mut s, &mut c);
                let _ = c.shutdown(std::net::Shutdown::Write);
                let _ = t.join();
            });
        }
    });
    (addr, up)
}

#[test]
fn https_with_a_pinned_ca_refuses_a_man_in_the_middle_with_another_ca() {
    let _serial = patchday_testkit::serial();
    let d = scratch();
    let dir = d.path();
    let b = bins();
    let (old, new) = debs(dir, "pd-test-tls", false, None);
    let cat = Catalog::new(&b, dir);
    cat.add_emergency("PD-T-1", &new);
    let srv = Server::start_with(&b, dir, &cat.root(), &["--tls-self-signed"]);
    assert!(srv.url.starts_with("https://"), "{}", srv.url);
    assert_eq!(srv.http_get("/v1/health", None), (200, "ok".to_string()));
    acme_with_web(&srv, &cat.repo);
    let enroll = acme_enroll_token(&srv, &["--unlimited"]);
    let ca = srv.data.join("tls/ca.pem");
    let (fwd, upstream) = tcp_forwarder(srv.url.trim_start_matches("https://"));
    let url = format!("https://{fwd}");

    // Without the CA, the private certificate is not trusted.
    let stranger = Host::new(&b, dir, "tls-0");
    let o = stranger.agent(&url, Some(&enroll));
    assert!(!o.status.success());
    assert!(
        text(&o).to_lowercase().contains("certificate"),
        "{}",
        text(&o)
    );

    let h = Host::new(&b, dir, "tls-1");
    h.lab.install_deb(&old).unwrap();
    let o = h
        .agent_command(&url, Some(&enroll), &["--ca", ca.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let id = srv.acme_host_id("tls-1");
    srv.cli(&["host", "set-groups", "--tenant", "acme", &id, "web"]);
    srv.cli(&["approve", "--tenant", "acme", "--group", "web", "PD-T-1"]);

    // A man in the middle with a valid-looking certificate from another CA.
    let mitm_dir = dir.join("mitm");
    std::fs::create_dir_all(&mitm_dir).unwrap();
    let mitm = Server::start_with(&b, &mitm_dir, &cat.root(), &["--tls-self-signed"]);
    *upstream.lock().unwrap() = mitm.url.trim_start_matches("https://").to_string();
    let o = h.agent(&url, None);
    assert!(!o.status.success());
    assert!(
        text(&o).to_lowercase().contains("certificate"),
        "{}",
        text(&o)
    );
    assert_eq!(h.version("pd-test-tls").as_deref(), Some("1.0-1"));

    // Back on the real server, over the pinned CA, the update installs.
    *upstream.lock().unwrap() = srv.url.trim_start_matches("https://").to_string();
    let o = h.agent(&url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.version("pd-test-tls").as_deref(), Some("1.0-2"));
}

#[test]
fn endless_metadata_and_payloads_are_cut_off_and_nothing_is_installed() {
    let _serial = patchday_testkit::serial();
    let (w, old, _) = world("pd-test-endless", false, None);
    let p = proxy(&w.srv.url, usize::MAX);
    p.cut.store(false, Ordering::SeqCst);
    let (h, _) = w.host_at(&p.url, "endless-1", &old);
    w.approve("PD-T-1");
    *p.endless.lock().unwrap() = Some("/v1/tuf/metadata/timestamp.json");
    let limit = "timestamp.json is larger than the 65536 byte limit";
    assert_refused(&h, &p.url, limit, "pd-test-endless", "1.0-1");
    // A payload that goes on past its signed length.
    *p.endless.lock().unwrap() = Some(".deb ");
    let longer = "more than the signed length";
    assert_refused(&h, &p.url, longer, "pd-test-endless", "1.0-1");
    // The same agent, once the stream behaves, installs.
    *p.endless.lock().unwrap() = None;
    let o = h.agent(&p.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.version("pd-test-endless").as_deref(), Some("1.0-2"));
}

fn curl_put(w: &World, path: &str, body: &[u8]) -> (u16, String) {
    let f = w.dir.join("put-body");
    std::fs::write(&f, body).unwrap();
    let o = std::process::Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", "PUT"])
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", w.srv.admin))
        .arg("--data-binary")
        .arg(format!("@{}", f.display()))
        .arg(format!("{}{path}", w.srv.url))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = out.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

#[test]
fn director_key_rotation_is_followed_by_agents_and_the_retired_key_is_refused() {
    use patchday_trust::director::{certify, DirectorKey, KeyCertificate};
    let _serial = patchday_testkit::serial();
    let (w, old, _) = world("pd-test-rotate", false, None);
    let p = proxy(&w.srv.url, usize::MAX);
    p.cut.store(false, Ordering::SeqCst);
    let (h, host) = w.host_at(&p.url, "rotate-1", &old);
    let pinned_before = h.state_file("director-key.json");
    // A thief's copy of the key about to be retired.
    let retired = w.dir.join("retired.pk8");
    std::fs::copy(w.srv.data.join("director/ed25519.pk8"), &retired).unwrap();

    // The root key holders certify the server's next key (two of three sign).
    let out = w.srv.cli(&[
        "keys",
        "rotate",
        "--role",
        "director",
        "--keys",
        w.cat.keys.to_str().unwrap(),
    ]);
    assert!(out.contains("director key rotated"), "{out}");
    assert!(out.contains("certificate v1"), "{out}");
    // The agent follows at its next check-in, with nothing to install.
    let o = h.agent(&p.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_ne!(h.state_file("director-key.json"), pinned_before);
    assert_eq!(h.state_file("director-certificate-version"), b"1");

    // The retired key signs nothing this agent accepts any more.
    let deb = "pd-test-rotate_1.0-2_all.deb";
    let retired_says = answer(
        "PD-T-1",
        deb,
        Some(forge_director_with(
            &w,
            &retired,
            &host,
            "PD-T-1",
            &["update-PD-T-1.json", deb],
            &|_| {},
        )),
    );
    *p.forge.lock().unwrap() = Some(retired_says);
    let unsigned = "not signed by the director key";
    assert_refused(&h, &p.url, unsigned, "pd-test-rotate", "1.0-1");

    // A thief's key certified by one root key of three (threshold two): the server
    // refuses it, and so does the agent when a compromised server hands it out.
    let thief_path = w.dir.join("thief.pk8");
    let thief = DirectorKey::load_or_create(&thief_path).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cert = KeyCertificate::new(thief.public().clone(), 2, wall_clock(), 30).unwrap();
    let one = rt
        .block_on(certify(&cert, &[w.cat.keys.join("root-1.pem")]))
        .unwrap();
    let (code, body) = curl_put(&w, "/v1/director/certificate", &one);
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains("director key certificate rejected: signature"),
        "{body}"
    );
    let mut forged: Value = serde_json::from_str(&answer(
        "PD-T-1",
        deb,
        Some(forge_director_with(
            &w,
            &thief_path,
            &host,
            "PD-T-1",
            &["update-PD-T-1.json", deb],
            &|_| {},
        )),
    ))
    .unwrap();
    forged["director_certificate"] = Value::String(String::from_utf8(one).unwrap());
    *p.forge.lock().unwrap() = Some(forged.to_string());
    let change = "director key change refused";
    assert_refused(&h, &p.url, change, "pd-test-rotate", "1.0-1");

    // The honest path, signed by the new key, installs.
    *p.forge.lock().unwrap() = None;
    w.approve("PD-T-1");
    let o = h.agent(&p.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.version("pd-test-rotate").as_deref(), Some("1.0-2"));

    // Root key holders in different places sign one certificate file in turn; the
    // server takes it once two of the three have signed.
    use std::os::unix::fs::PermissionsExt;
    let cert_file = w.dir.join("director-cert.json");
    let holders: Vec<PathBuf> = ["root-1.pem", "root-3.pem"]
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let d = w.dir.join(format!("holder-{i}"));
            std::fs::create_dir(&d).unwrap();
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
            std::fs::copy(w.cat.keys.join(key), d.join("root-1.pem")).unwrap();
            d
        })
        .collect();
    let sign = |holder: &Path| {
        w.srv.cli_as(
            &w.srv.admin,
            &[
                "keys",
                "rotate",
                "--role",
                "director",
                "--keys",
                holder.to_str().unwrap(),
                "--certificate",
                cert_file.to_str().unwrap(),
            ],
        )
    };
    let o = sign(&holders[0]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("1 root key signature(s)"), "{}", text(&o));
    let o = sign(&holders[1]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("certificate v2"), "{}", text(&o));
    let o = h.agent(&p.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.state_file("director-certificate-version"), b"2");
}

#[test]
fn the_server_keeps_an_idle_catalog_fresh_with_its_online_timestamp_key() {
    let _serial = patchday_testkit::serial();
    // Every timestamp the server signs lives 4 s; the refresher looks every second.
    let online = |keys: &Path| {
        let key = keys.join("timestamp.pem");
        [
            "--timestamp-key",
            key.to_str().unwrap(),
            "--timestamp-lifetime",
            "4",
            "--timestamp-check",
            "1",
        ]
        .map(String::from)
        .to_vec()
    };
    let (mut w, old, _) = world_with("pd-test-fresh", false, None, &|cat| online(&cat.keys));
    let status = |srv: &Server| -> u64 {
        let v: Value =
            serde_json::from_str(&srv.cli(&["catalog", "status", "--format", "json"])).unwrap();
        v["timestamp_version"].as_u64().unwrap()
    };
    let pushed = status(&w.srv);
    // Two lifetimes with no push at all.
    std::thread::sleep(std::time::Duration::from_secs(9));
    let refreshed = status(&w.srv);
    assert!(refreshed >= pushed + 2, "{pushed} -> {refreshed}");
    // An agent verifying the catalog now finds it fresh and installs.
    let (h, _) = w.host_at(&w.srv.url, "fresh-1", &old);
    w.approve("PD-T-1");
    let o = h.agent(&w.srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.version("pd-test-fresh").as_deref(), Some("1.0-2"));
    // A push signed offline after the server's own timestamps is still accepted: the
    // server numbers the timestamp after both.
    w.cat.add_emergency("PD-T-2", &old);
    w.srv
        .cli(&["catalog", "push", "--repo", w.cat.repo.to_str().unwrap()]);
    let after_push = status(&w.srv);
    assert!(after_push > refreshed);

    // Rotating the timestamp key: the server restarts with the new key (it warns that
    // the trusted root does not name it yet), then the catalog whose root does is pushed.
    let keys2 = w.dir.join("keys-2");
    let repo = w.cat.repo.to_str().unwrap();
    let (k1, k2) = (w.cat.keys.to_str().unwrap(), keys2.to_str().unwrap());
    w.srv.cli(&["keys", "generate", "--keys", k2]);
    let rotate = [
        "keys",
        "rotate",
        "--role",
        "timestamp",
        "--keys",
        k1,
        "--new-keys",
        k2,
    ];
    w.srv.cli(&[&rotate[..], &["--repo", repo]].concat());
    let flags = online(&keys2);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let root = w.cat.root();
    w.srv.restart_with(&w.dir, &root, &flags);
    w.srv.cli(&["catalog", "push", "--repo", repo]);
    let rotated = status(&w.srv);
    assert!(rotated > after_push, "{after_push} -> {rotated}");
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert!(
        status(&w.srv) > rotated,
        "the refresher signs with the new key"
    );
    // A new agent walks root 1 -> 2 and accepts timestamps signed by the new key.
    let (h2, _) = w.host_at(&w.srv.url, "fresh-2", &old);
    let o = h2.agent(&w.srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h2.version("pd-test-fresh").as_deref(), Some("1.0-2"));
}
