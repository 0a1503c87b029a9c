//! Issue 12, point 3, with the real binaries: `patchday server --content s3://…` on a
//! real S3-compatible server (Garage, started by `.ci/run`, named in `PATCHDAY_TEST_S3`),
//! a catalog push whose payloads land in the bucket and nowhere on disk, a real agent on
//! an overlay host installing an update streamed through the server, then one sent to
//! the bucket by a presigned redirect (`--content-redirect`), and the cleanup removing
//! the payload no host needs from the bucket. Also: the flags refused with what to write.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use patchday_content::s3::{S3Config, S3Location, S3Store};
use patchday_content::ContentStore;
use patchday_lab::{DebSpec, Requirement, TestS3};
use patchday_testkit::{scratch, text, wait_for, AcmeWorld, Bins, Host};
use std::path::Path;
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

fn sha256_of(path: &Path) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        std::fs::read(path).unwrap(),
    ))
}

/// The `patchday server` flags for the bucket's `prefix` (the secret in a 0600 file).
pub(crate) fn s3_flags(s3: &TestS3, prefix: &str, dir: &Path) -> Vec<String> {
    patchday_testkit::s3_flags(s3, prefix, dir)
}

/// The test's own view of the bucket's prefix.
fn bucket(s3: &TestS3, prefix: &str) -> S3Store {
    let mut c = S3Config::new(S3Location {
        bucket: s3.bucket.clone(),
        prefix: prefix.into(),
    });
    c.endpoint = Some(s3.endpoint.clone());
    c.region = Some(s3.region.clone());
    c.access_key_id = Some(s3.access_key_id.clone());
    c.secret_access_key = Some(s3.secret_access_key.clone());
    S3Store::new(&c).unwrap()
}

/// `curl` without following redirects: (status, Location, body).
fn curl(url: &str, headers: &[String]) -> (u16, String, Vec<u8>) {
    let d = scratch();
    let body = d.path().join("body");
    let mut c = Command::new("curl");
    c.args(["-s", "-o"])
        .arg(&body)
        .args(["-w", "%{http_code} %{redirect_url}"]);
    for h in headers {
        c.arg("-H").arg(h);
    }
    let o = c.arg(url).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let (code, location) = out.split_once(' ').unwrap_or((&out, ""));
    (
        code.parse().unwrap_or(0),
        location.trim().to_string(),
        std::fs::read(&body).unwrap_or_default(),
    )
}

/// A TCP relay on 127.0.0.1 in front of the object store that keeps every byte clients
/// send (requests pass unchanged, Host header included, so presigned signatures hold):
/// the test reads what the agent sent the object store.
struct Tap {
    url: String,
    sent: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Tap {
    fn start(upstream: &str) -> Tap {
        use std::io::{Read, Write};
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let sent: std::sync::Arc<std::sync::Mutex<Vec<u8>>> = Default::default();
        let keep = sent.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let Ok(mut up) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                let (mut back, mut down) = (up.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut back, &mut down);
                    let _ = down.shutdown(std::net::Shutdown::Write);
                });
                let keep = keep.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = client.read(&mut buf) {
                        if n == 0 || up.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        keep.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    let _ = up.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Tap { url, sent }
    }

    /// What clients sent so far, as text (bodies included, lossy).
    fn sent(&self) -> String {
        String::from_utf8_lossy(&self.sent.lock().unwrap()).into_owned()
    }
}

#[test]
fn payloads_in_s3_reach_agents_streamed_and_by_redirect_and_cleanup_empties_the_bucket() {
    let _serial = patchday_testkit::serial();
    if !patchday_lab::require(Requirement::Root) || !patchday_lab::require(Requirement::S3) {
        return;
    }
    let mut s3 = patchday_lab::s3_server().unwrap();
    // Everything the server and the agent send the object store passes the tap.
    let tap = Tap::start(&s3.endpoint);
    s3.endpoint = tap.url.clone();
    let prefix = format!("e2e/{:016x}", rand::random::<u64>());
    let rt = runtime();
    let store = bucket(&s3, &prefix);

    let d = scratch();
    let dir = d.path().to_path_buf();
    let b = bins();
    let pkgs = dir.join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let spec = |v: &str| {
        DebSpec::new("pd-s3", v)
            .changelog(v, "Fix CVE-2099-1301.")
            .changelog("1.0-1", "Initial release.")
    };
    let old = patchday_lab::build_deb(
        &DebSpec::new("pd-s3", "1.0-1").changelog("1.0-1", "Initial release."),
        &pkgs,
    )
    .unwrap();
    let v2 = patchday_lab::build_deb(&spec("1.0-2"), &pkgs).unwrap();
    let v3 = patchday_lab::build_deb(&spec("1.0-3"), &pkgs).unwrap();
    let flags = s3_flags(&s3, &prefix, &dir);
    let mut w = AcmeWorld::start(
        &b,
        &dir,
        ("PD-S3-1", &v2, &["--emergency", "test", "--since", "1.0-1"]),
        &|_| flags.clone(),
        &["--unlimited"],
    );

    // The push put the payload in the bucket, and nothing in a directory.
    let sha2 = sha256_of(&v2);
    let keys = rt.block_on(store.keys()).unwrap();
    assert!(
        keys.contains(&sha2),
        "the payload is in the bucket: {keys:?}"
    );
    let on_disk = w.srv.data.join("content");
    assert!(
        !on_disk.exists() || std::fs::read_dir(&on_disk).unwrap().next().is_none(),
        "no payload on disk"
    );
    let (code, body) = w.srv.http_get("/v1/ready", None);
    assert_eq!((code, body.as_str()), (200, "ready"));

    // Streamed through the server (the default).
    let h = Host::new(&b, &dir, "s3-1");
    h.enrol_into_web(&w.srv, &w.srv.url, &w.enroll, &old);
    w.srv
        .cli(&["approve", "--tenant", "acme", "--group", "web", "PD-S3-1"]);
    let o = h.agent(&w.srv.url, None);
    assert!(o.status.success(), "install streamed: {}", text(&o));
    assert_eq!(h.version("pd-s3").as_deref(), Some("1.0-2"));

    // Redirected: the server answers 307 to a presigned URL of the bucket.
    let mut redirect = flags.clone();
    redirect.extend(
        [
            "--content-redirect",
            "--cleanup-every",
            "1s",
            "--retain",
            "0s",
        ]
        .map(String::from),
    );
    let redirect: Vec<&str> = redirect.iter().map(String::as_str).collect();
    w.srv.restart_with(&dir, &w.cat.root(), &redirect);
    let add = w.cat.add_deb(
        "PD-S3-2",
        &v3,
        &["--emergency", "test", "--supersedes", "PD-S3-1"],
    );
    assert!(add.status.success(), "{}", text(&add));
    w.srv
        .cli(&["catalog", "push", "--repo", w.cat.repo.to_str().unwrap()]);
    let sha3 = sha256_of(&v3);
    let target = std::fs::read_dir(w.cat.repo.join("targets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with(&format!("{sha3}.")))
        .expect("the payload in the catalog's targets");
    let (code, location, _) = curl(
        &format!("{}/v1/tuf/targets/{target}", w.srv.url),
        &[format!("Authorization: Bearer {}", w.srv.admin)],
    );
    assert_eq!(code, 307, "redirected");
    assert!(
        location.starts_with(&s3.endpoint) && location.contains("X-Amz-Signature"),
        "to a presigned URL of the bucket: {location}"
    );
    assert!(
        !location.contains(&s3.secret_access_key) && !location.contains(&w.srv.admin),
        "no secret in the URL"
    );
    let (code, _, bytes) = curl(&location, &[]);
    assert_eq!(code, 200);
    assert_eq!(
        bytes,
        std::fs::read(&v3).unwrap(),
        "the presigned URL serves the payload"
    );

    w.srv
        .cli(&["approve", "--tenant", "acme", "--group", "web", "PD-S3-2"]);
    let before = tap.sent().len();
    let o = h.agent(&w.srv.url, None);
    assert!(o.status.success(), "install redirected: {}", text(&o));
    assert_eq!(h.version("pd-s3").as_deref(), Some("1.0-3"));
    // The agent fetched the payload from the object store itself, by the presigned URL,
    // and sent it neither its host credential nor its signature.
    let agent_sent = tap.sent()[before..].to_string();
    let request = agent_sent
        .split("\r\n\r\n")
        .find(|r| r.contains("patchday-agent/") && r.contains(&sha3))
        .unwrap_or_else(|| {
            panic!("the agent's GET of the payload at the object store: {agent_sent}")
        });
    assert!(
        request.starts_with("GET ") && request.contains("X-Amz-Signature="),
        "{request}"
    );
    let lower = request.to_ascii_lowercase();
    assert!(
        !lower.contains("authorization:") && !lower.contains("patchday-signature"),
        "no credential or host signature went to the object store: {request}"
    );

    // Cleanup: the superseded payload no host needs leaves the bucket; the current
    // one stays.
    let o = h.agent(&w.srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    wait_for("the superseded payload to leave the bucket", || {
        !rt.block_on(store.keys()).unwrap().contains(&sha2)
    });
    assert!(rt.block_on(store.keys()).unwrap().contains(&sha3));

    // Scrub reads the bucket too (every object hashed; none missing or damaged).
    let mut scrub = vec!["server", "scrub", "--data", w.srv.data.to_str().unwrap()];
    scrub.extend(flags.iter().map(String::as_str));
    let o = Command::new(&b.patchday).args(&scrub).output().unwrap();
    assert!(o.status.success(), "scrub: {}", text(&o));
    assert!(text(&o).contains("0 damaged, 0 missing"), "{}", text(&o));

    // Clean up this test's prefix.
    rt.block_on(async {
        for k in store.keys().await.unwrap() {
            store.remove(&k).await.unwrap();
        }
    });
}

#[test]
fn object_store_flags_are_refused_with_what_to_write() {
    let d = scratch();
    let run = |args: &[&str]| {
        let o = Command::new(bins().patchday)
            .args(["server", "--data"])
            .arg(d.path().join("server"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
            .output()
            .unwrap();
        assert!(!o.status.success(), "{args:?}: {}", text(&o));
        text(&o)
    };
    let t = run(&["--content", "s3://Bad_Bucket/x"]);
    assert!(
        t.contains("bucket name") && t.contains("s3://BUCKET/PREFIX"),
        "{t}"
    );
    let t = run(&["--content-redirect"]);
    assert!(t.contains("--content s3://"), "{t}");
    let t = run(&[
        "--content",
        "/srv/payloads",
        "--content-endpoint",
        "http://127.0.0.1:1",
    ]);
    assert!(t.contains("is a directory"), "{t}");
    // An endpoint that does not answer: the server does not start, and says why.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let t = run(&[
        "--content",
        "s3://payloads/x",
        "--content-endpoint",
        &endpoint,
        "--content-access-key-id",
        "GK0",
    ]);
    assert!(
        t.contains("does not answer") && t.contains("retryable"),
        "{t}"
    );
}
