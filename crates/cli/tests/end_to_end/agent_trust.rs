//! Issue 8, findings 6, 7, 12 and 15 (agent side), with the real `patchday` server, the
//! real agent in lab hosts, and a man in the middle between them.
//!
//! - 6: every check-in answer carries signed director metadata naming the host, and the
//!   agent takes its assignments from it alone; the catalog is refreshed on every run; a
//!   withheld or stale answer fails the run, with `--max-silence` as the bound.
//! - 7: the director key can be pinned out of band at enrolment.
//! - 12: a clock that ran ahead does not lock the agent out once corrected.
//! - 15: the agent's downloads/ keeps nothing of finished updates.
//!
//! And issue 12, point 1: a data directory whose director certificate is still the file
//! of a server before the certificate moved into the store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use patchday_agent::run::CLOCK_OFFSET_ENV;
use patchday_lab::DebSpec;
use patchday_testkit::{scratch, text, AcmeWorld, Bins, Host, Server};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

/// How the man in the middle changes a JSON answer to a POST (path, answer).
type Rewrite = Box<dyn Fn(&str, &mut Value) + Send>;

/// A plain-HTTP man in the middle: forwards everything, records request lines, and rewrites
/// the JSON answers of POST requests when told to.
struct Mitm {
    url: String,
    rewrite: Arc<Mutex<Option<Rewrite>>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Mitm {
    fn start(upstream: &str) -> Mitm {
        let up = upstream.trim_start_matches("http://").to_string();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let rewrite: Arc<Mutex<Option<Rewrite>>> = Arc::new(Mutex::new(None));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (rw, rq) = (rewrite.clone(), requests.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(client) = conn else { continue };
                let (up, rw, rq) = (up.clone(), rw.clone(), rq.clone());
                std::thread::spawn(move || relay(client, &up, &rw, &rq));
            }
        });
        Mitm {
            url,
            rewrite,
            requests,
        }
    }

    fn set(&self, f: impl Fn(&str, &mut Value) + Send + 'static) {
        *self.rewrite.lock().unwrap() = Some(Box::new(f));
    }

    fn clear(&self) {
        *self.rewrite.lock().unwrap() = None;
    }

    fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

/// Reads an HTTP head (up to the blank line) and the body its content-length announces.
fn read_message(r: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some((head, body))
}

fn relay(
    client: TcpStream,
    up: &str,
    rewrite: &Mutex<Option<Rewrite>>,
    requests: &Mutex<Vec<String>>,
) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut client = client;
    let Some((head, body)) = read_message(&mut reader) else {
        return;
    };
    let first = head.lines().next().unwrap_or("").to_string();
    requests.lock().unwrap().push(first.clone());
    let head = head.replacen("\r\n", "\r\nConnection: close\r\n", 1);
    let mut s = TcpStream::connect(up).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let path = first.split(' ').nth(1).unwrap_or("").to_string();
    let guard = rewrite.lock().unwrap();
    match (&*guard, first.starts_with("POST ")) {
        (Some(f), true) => {
            let mut up_reader = BufReader::new(s);
            let Some((resp_head, resp_body)) = read_message(&mut up_reader) else {
                return;
            };
            let status = resp_head.lines().next().unwrap_or("").to_string();
            let mut v: Value = serde_json::from_slice(&resp_body).unwrap_or(Value::Null);
            f(&path, &mut v);
            let out = serde_json::to_vec(&v).unwrap();
            let _ = write!(
                client,
                "{status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                out.len()
            );
            let _ = client.write_all(&out);
        }
        _ => {
            drop(guard);
            let _ = std::io::copy(&mut s, &mut client);
        }
    }
}

/// A library at 1.0-1 and its security update 1.0-2.
fn debs(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let out = dir.join("pkgs");
    std::fs::create_dir_all(&out).unwrap();
    let old = DebSpec::new(name, "1.0-1").changelog("1.0-1", "Initial release.");
    let new = DebSpec::new(name, "1.0-2")
        .changelog("1.0-2", "Fix CVE-2099-0101.")
        .changelog("1.0-1", "Initial release.");
    (
        patchday_lab::build_deb(&old, &out).unwrap(),
        patchday_lab::build_deb(&new, &out).unwrap(),
    )
}

struct World {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    srv: Server,
    enroll: String,
    old: PathBuf,
}

/// A catalog with `PD-T-1` (`name` 1.0-1 → 1.0-2, emergency lane), a server, tenant
/// `acme` with group `web`, and an enrolment token.
fn world(name: &str) -> World {
    let d = scratch();
    let dir = d.path().to_path_buf();
    let b = bins();
    let (old, new) = debs(&dir, name);
    let AcmeWorld { srv, enroll, .. } = AcmeWorld::start(
        &b,
        &dir,
        ("PD-T-1", &new, &["--emergency", "test", "--since", "1.0-1"]),
        &|_| vec![],
        &["--unlimited"],
    );
    World {
        _dir: d,
        dir,
        srv,
        enroll,
        old,
    }
}

impl World {
    /// A host with the old package, enrolled through `url` with `extra` agent flags.
    fn host(&self, url: &str, name: &str, extra: &[&str]) -> (Host, std::process::Output) {
        let h = Host::new(&bins(), &self.dir, name);
        h.lab.install_deb(&self.old).unwrap();
        let o = h
            .agent_command(url, Some(&self.enroll), extra)
            .output()
            .unwrap();
        (h, o)
    }

    /// Puts the host into group `web`, for which `PD-T-1` gets approved.
    fn approve_for(&self, hostname: &str) {
        let id = self.srv.acme_host_id(hostname);
        self.srv
            .cli(&["host", "set-groups", "--tenant", "acme", &id, "web"]);
        self.srv
            .cli(&["approve", "--tenant", "acme", "--group", "web", "PD-T-1"]);
    }
}

/// One agent run with extra flags and a clock offset in seconds.
fn run(h: &Host, url: &str, extra: &[&str], clock_offset: i64) -> std::process::Output {
    h.agent_command(url, None, extra)
        .env(CLOCK_OFFSET_ENV, clock_offset.to_string())
        .output()
        .unwrap()
}

#[allow(clippy::disallowed_methods)] // the test's own view of the time
fn wall_clock() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

fn assert_fails_with(o: &std::process::Output, expect: &str) {
    assert!(!o.status.success(), "expected a failure: {}", text(o));
    assert!(text(o).contains(expect), "expected {expect:?}: {}", text(o));
}

/// A file in the agent's state directory, as the test (outside the host) sees it.
fn state_path(h: &Host, rel: &str) -> PathBuf {
    match h.lab.root_dir() {
        Some(_) => h.lab.dir().join("agent-state").join(rel),
        None => Path::new("/var/lib/patchday-agent").join(rel),
    }
}

fn write_state(h: &Host, rel: &str, bytes: &[u8]) {
    match h.lab.root_dir() {
        Some(_) => {
            let p = state_path(h, rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        None => h.lab.write_file(state_path(h, rel), bytes).unwrap(),
    }
}

fn downloads(h: &Host) -> Vec<String> {
    let dir = state_path(h, "downloads");
    let mut names: Vec<String> = match h.lab.root_dir() {
        Some(_) => std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        None => {
            let o = h
                .lab
                .run(Path::new("/bin/ls"), &["-A".into(), dir.into()])
                .unwrap();
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_owned)
                .collect()
        }
    };
    names.sort();
    names
}

#[test]
fn a_man_in_the_middle_cannot_withhold_or_cut_assignments_unnoticed() {
    let _serial = patchday_testkit::serial();
    let w = world("pd-test-withhold");
    let m = Mitm::start(&w.srv.url);
    let (h, o) = w.host(&m.url, "withhold-1", &[]);
    assert!(o.status.success(), "enrol: {}", text(&o));
    // Another host's signed "nothing to do", to replay later.
    let (other, o) = w.host(&m.url, "withhold-2", &[]);
    assert!(o.status.success(), "enrol: {}", text(&o));
    let other_answer: Arc<Mutex<Option<Value>>> = Arc::default();
    {
        let capture = other_answer.clone();
        m.set(move |path, v| {
            if path == "/v1/agent/checkin" {
                *capture.lock().unwrap() = Some(v.clone());
            }
        });
    }
    let o = run(&other, &m.url, &[], 0);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("assigned 0"), "{}", text(&o));
    let other_answer = other_answer.lock().unwrap().clone().unwrap();
    assert!(
        other_answer["director"].is_string(),
        "the server signs an empty answer too: {other_answer}"
    );
    m.clear();
    w.approve_for("withhold-1");

    // The unsigned "nothing to do" of before: no director metadata, no assignments.
    m.set(|path, v| {
        if path == "/v1/agent/checkin" {
            v["director"] = Value::Null;
            v["assignments"] = serde_json::json!([]);
        }
    });
    assert_fails_with(&run(&h, &m.url, &[], 0), "without director metadata");
    assert_eq!(h.version("pd-test-withhold").as_deref(), Some("1.0-1"));

    // Another host's signed "nothing to do", replayed.
    let replay = other_answer.clone();
    m.set(move |path, v| {
        if path == "/v1/agent/checkin" {
            *v = replay.clone();
        }
    });
    assert_fails_with(&run(&h, &m.url, &[], 0), "not to this host");

    // Withheld for longer than --max-silence (the clock three hours on): the run says so.
    m.set(|path, v| {
        if path == "/v1/agent/checkin" {
            v["director"] = Value::Null;
        }
    });
    let o = run(&h, &m.url, &["--max-silence", "2h"], 3 * 3600);
    assert_fails_with(&o, "no valid signed director answer since");
    assert_fails_with(&o, "more than the --max-silence bound of 2h");

    // An answer older than the bound is stale (here: signed 30 minutes before this clock).
    m.clear();
    let o = run(&h, &m.url, &["--max-silence", "10m"], 1800);
    assert_fails_with(&o, "director answer is stale");
    assert_eq!(h.version("pd-test-withhold").as_deref(), Some("1.0-1"));

    // The unsigned list cut, the signed answer intact: the agent installs from the signed one.
    m.set(|path, v| {
        if path == "/v1/agent/checkin" {
            v["assignments"] = serde_json::json!([]);
        }
    });
    let o = run(&h, &m.url, &[], 0);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("assigned 1 installed 1"), "{}", text(&o));
    assert_eq!(h.version("pd-test-withhold").as_deref(), Some("1.0-2"));
}

#[test]
fn every_run_refreshes_the_catalog_even_with_nothing_to_do() {
    let _serial = patchday_testkit::serial();
    let w = world("pd-test-refresh");
    let m = Mitm::start(&w.srv.url);
    let (h, o) = w.host(&m.url, "refresh-1", &[]);
    assert!(o.status.success(), "enrol: {}", text(&o));
    m.take_requests();
    let o = run(&h, &m.url, &["--no-audit"], 0);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("assigned 0"), "{}", text(&o));
    let requests = m.take_requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("GET /v1/tuf/metadata/timestamp.json")),
        "no catalog refresh with nothing assigned: {requests:?}"
    );
}

#[test]
fn a_director_key_pinned_at_enrolment_refuses_another_key() {
    let _serial = patchday_testkit::serial();
    let w = world("pd-test-pin");
    // Out of band: the operator reads the key (here from the API, or with --data on the
    // server itself; both give the same key).
    let file = w.dir.join("director-key.json");
    w.srv
        .cli(&["director", "key", "-o", file.to_str().unwrap()]);
    let key: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let offline = w
        .srv
        .cli(&["director", "key", "--data", w.srv.data.to_str().unwrap()]);
    assert_eq!(serde_json::from_str::<Value>(&offline).unwrap(), key);
    let keyid = key["keyid"].as_str().unwrap().to_string();

    // A man in the middle hands out its own director key at enrolment.
    let m = Mitm::start(&w.srv.url);
    let forged = patchday_trust::director::DirectorKey::load_or_create(&w.dir.join("forged"))
        .unwrap()
        .public()
        .clone();
    m.set(move |path, v| {
        if path == "/v1/agent/enroll" {
            v["director_key"] = serde_json::json!({"keyid": forged.keyid, "public": forged.public});
        }
    });
    let (h, o) = w.host(&m.url, "pin-1", &["--director-key", file.to_str().unwrap()]);
    assert_fails_with(&o, "is not the pinned key");
    assert_fails_with(&o, "enrolment refused");
    assert!(h.state_file("identity.json").is_empty(), "nothing saved");
    let o = h
        .agent_command(&m.url, Some(&w.enroll), &["--director-key", &keyid])
        .output()
        .unwrap();
    assert_fails_with(&o, "is not the pinned key");
    // Without a pin the forged key is trusted on first use (with a warning), and the
    // genuine server's answers are then refused: what the pin prevents.
    let (h2, o) = w.host(&m.url, "pin-2", &[]);
    assert!(text(&o).contains("trusted on first use"), "{}", text(&o));
    assert_fails_with(&o, "not signed by the director key pinned at enrolment");
    drop(h2);

    // The genuine key, pinned by file or by key id, enrols.
    m.clear();
    let o = h
        .agent_command(&m.url, Some(&w.enroll), &["--director-key", &keyid])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let pinned: Value = serde_json::from_slice(&h.state_file("director-key.json")).unwrap();
    assert_eq!(pinned["keyid"], key["keyid"]);
    let (_h3, o) = w.host(
        &w.srv.url,
        "pin-3",
        &["--director-key", file.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn an_agent_whose_clock_ran_ahead_installs_once_the_clock_is_corrected() {
    let _serial = patchday_testkit::serial();
    let w = world("pd-test-clock");
    let (h, o) = w.host(&w.srv.url, "clock-1", &[]);
    assert!(o.status.success(), "enrol: {}", text(&o));
    w.approve_for("clock-1");
    // Two days ahead: the signed answer looks expired; nothing is installed.
    let o = run(&h, &w.srv.url, &[], 2 * 86_400);
    assert_fails_with(&o, "expired");
    assert_eq!(h.version("pd-test-clock").as_deref(), Some("1.0-1"));
    let remembered: Option<jiff::Timestamp> =
        serde_json::from_slice(&h.state_file("tuf/latest_known_time.json")).ok();
    assert!(
        remembered.is_none_or(|t| t < wall_clock() + jiff::SignedDuration::from_hours(1)),
        "the clock that ran ahead was remembered: {remembered:?}"
    );
    // As an agent before this fix left its datastore: two days ahead remembered.
    let ahead = wall_clock() + jiff::SignedDuration::from_hours(48);
    write_state(
        &h,
        "tuf/latest_known_time.json",
        &serde_json::to_vec(&ahead).unwrap(),
    );
    // The corrected clock: the agent installs, nobody deletes files by hand.
    let o = run(&h, &w.srv.url, &[], 0);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.version("pd-test-clock").as_deref(), Some("1.0-2"));
}

#[test]
fn downloads_of_finished_updates_and_stale_partials_are_removed() {
    let _serial = patchday_testkit::serial();
    let w = world("pd-test-leftover");
    let (h, o) = w.host(&w.srv.url, "leftover-1", &[]);
    assert!(o.status.success(), "enrol: {}", text(&o));
    // What killed runs left behind: a finished payload, a partial one, a dpkg link.
    let big = vec![0u8; 4 << 20];
    write_state(&h, &format!("downloads/{}.payload", "ab".repeat(32)), &big);
    write_state(&h, &format!("downloads/{}.part", "cd".repeat(32)), &big);
    write_state(&h, &format!("downloads/{}.deb", "ef".repeat(32)), b"x");
    assert_eq!(downloads(&h).len(), 3);
    w.approve_for("leftover-1");
    let o = run(&h, &w.srv.url, &[], 0);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.version("pd-test-leftover").as_deref(), Some("1.0-2"));
    let left = downloads(&h);
    assert!(
        left.iter()
            .all(|n| !n.starts_with("ab") && !n.starts_with("cd") && !n.starts_with("ef")),
        "stale downloads kept: {left:?}"
    );
    // The next run finds the update finished and keeps nothing of it.
    let o = run(&h, &w.srv.url, &[], 0);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(downloads(&h), Vec::<String>::new());
}

/// Issue 12, point 1: a server started on a data directory of a server before this one,
/// with the director key's certificate in `director/certificate.json`, moves it into the
/// store once (the operator log says so, the file is kept under another name), serves it
/// to agents, and keeps it across restarts.
#[test]
fn a_director_certificate_file_of_an_older_server_moves_into_the_store_once() {
    use patchday_trust::director::{certify, DirectorKey, KeyCertificate};
    let d = scratch();
    let dir = d.path();
    let b = bins();
    let (old, new) = debs(dir, "pd-test-upgrade");
    let AcmeWorld {
        cat,
        mut srv,
        enroll,
    } = AcmeWorld::start(
        &b,
        dir,
        ("PD-T-1", &new, &["--emergency", "test", "--since", "1.0-1"]),
        &|_| vec![],
        &["--unlimited"],
    );
    let h = Host::sandbox(&b, dir, "upgrade-1");
    h.lab.install_deb(&old).unwrap();
    let o = h.agent(&srv.url, Some(&enroll));
    assert!(o.status.success(), "{}", text(&o));

    // The older server's layout: its certificate (v1, for the key it signs with) as a
    // file; the database has none.
    srv.stop();
    let key = DirectorKey::load_or_create(&srv.data.join("director/ed25519.pk8")).unwrap();
    let cert = KeyCertificate::new(key.public().clone(), 1, wall_clock(), 30).unwrap();
    let keys = patchday_trust::KeyPaths::in_dir(&cat.keys);
    let signed = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(certify(&cert, &keys.root))
        .unwrap();
    let file = srv.data.join("director/certificate.json");
    std::fs::write(&file, &signed).unwrap();

    srv.restart_with(dir, &cat.root(), &[]);
    assert!(!file.exists(), "the file is no longer read");
    assert_eq!(
        std::fs::read(srv.data.join("director/certificate.json.moved-to-database")).unwrap(),
        signed,
        "and is kept, never lost"
    );
    let status = |srv: &Server| {
        let (code, body) = srv.http_get("/v1/director", Some(&srv.admin));
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()
    };
    assert_eq!(status(&srv)["certificate_version"], 1);
    let moved = |srv: &Server| {
        let (code, body) = srv.http_get("/v1/log?limit=1000", Some(&srv.admin));
        assert_eq!(code, 200, "{body}");
        body.matches("director.certificate.moved").count()
    };
    assert_eq!(moved(&srv), 1, "the operator log says so");

    // Agents receive it from the store.
    let o = h.agent(&srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.state_file("director-certificate-version"), b"1");

    // Once: a restart finds nothing to move and still serves it.
    srv.restart_with(dir, &cat.root(), &[]);
    assert_eq!(status(&srv)["certificate_version"], 1);
    assert_eq!(moved(&srv), 1);
    let o = h.agent(&srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
}
