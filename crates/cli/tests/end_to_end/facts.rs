//! Issue 12, point 7: audit facts travel only when they changed, compressed, with each
//! apt suite named by its digest and sent once per tenant; the server checks what it is
//! given, stores each distinct content once and puts a host's facts together again for
//! its audit. Real server, real agent, real signed bodies over HTTP on 127.0.0.1.

use patchday_audit::model::Facts;
use patchday_audit::upload::{self, FactsAnswer, FactsUpload};
use patchday_lab::DebSpec;
use patchday_testkit::{scratch, text, AcmeWorld, Bins, Host, Server, SigningHost};
use patchday_types::{InstalledPackage, OsRelease};
use std::collections::BTreeMap;

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

const METRICS_TOKEN: &str = "facts-metrics-secret-0123456789abcdef0123";

/// A host's facts with a big `bookworm` suite (as real apt lists are) and a small
/// `bookworm-security` one that has curl's fix.
fn facts(hostname: &str) -> Facts {
    let mut f = Facts {
        hostname: hostname.into(),
        os: OsRelease {
            id: "debian".into(),
            version_id: "12".into(),
            version_codename: "bookworm".into(),
            pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
        },
        architecture: "amd64".into(),
        packages: vec![InstalledPackage {
            name: "curl".into(),
            version: "7.88.1-10+deb12u5".into(),
            architecture: "amd64".into(),
            source: "curl".into(),
            source_version: "7.88.1-10+deb12u5".into(),
        }],
        ..Facts::default()
    };
    let main: BTreeMap<String, String> = (0..20_000)
        .map(|i| (format!("pkg-{i:05}"), format!("1.{i}-1")))
        .chain([("curl".to_string(), "7.88.1-10+deb12u5".to_string())])
        .collect();
    f.apt_suites.insert("bookworm".into(), main);
    f.apt_suites.insert(
        "bookworm-security".into(),
        [("curl".to_string(), "7.88.1-10+deb12u8".to_string())].into(),
    );
    f
}

fn answer(status: u16, body: &str) -> FactsAnswer {
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn post(h: &mut SigningHost, srv: &Server, up: &FactsUpload, zstd: bool) -> (u16, String) {
    let json = serde_json::to_vec(up).unwrap();
    if zstd {
        let wire = zstd::encode_all(json.as_slice(), 3).unwrap();
        if json.len() > 100_000 {
            assert!(
                wire.len() * 4 < json.len(),
                "{} -> {}",
                json.len(),
                wire.len()
            );
        }
        h.post_as(
            srv,
            "/v1/agent/facts",
            &json,
            Some((&["Content-Encoding: zstd"], &wire)),
        )
    } else {
        h.post(srv, "/v1/agent/facts", &json)
    }
}

/// The facts digest a check-in answer names for `h`.
fn held_digest(h: &mut SigningHost, srv: &Server, name: &str) -> Option<String> {
    let body = serde_json::json!({
        "inventory": {
            "hostname": name, "architecture": "amd64", "kernel_running": "", "reboot_required": false,
            "os": {"id": "debian", "version_id": "12", "version_codename": "bookworm", "pretty_name": "x"},
            "packages": [],
        },
    });
    let (status, answer) = h.post(srv, "/v1/agent/checkin", body.to_string().as_bytes());
    assert_eq!(status, 200, "{answer}");
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
    v["facts_sha256"].as_str().map(str::to_string)
}

/// Sum of `patchday_http_requests_total` for `POST /v1/agent/facts`.
fn facts_posts(srv: &Server) -> f64 {
    let (status, scrape) = srv.http_get("/metrics", Some(METRICS_TOKEN));
    assert_eq!(status, 200, "{scrape}");
    scrape
        .lines()
        .filter(|l| {
            l.starts_with("patchday_http_requests_total{")
                && l.contains("route=\"/v1/agent/facts\"")
                && l.contains("method=\"POST\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn facts_go_by_parts_suites_once_per_tenant_and_unchanged_facts_not_at_all() {
    let d = scratch();
    let dir = d.path();
    let b = bins();
    let pkgs = dir.join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let deb = patchday_lab::build_deb(&DebSpec::new("pd-facts", "1.0-2"), &pkgs).unwrap();
    let token_file = dir.join("metrics-token");
    std::fs::write(&token_file, METRICS_TOKEN).unwrap();
    let tf = token_file.to_str().unwrap().to_string();
    let AcmeWorld { srv, enroll, .. } = AcmeWorld::start(
        &b,
        dir,
        ("PD-F-1", &deb, &["--emergency", "test"]),
        &|_| vec!["--metrics-token-file".into(), tf.clone()],
        &["--unlimited"],
    );
    let mut one = SigningHost::enrol(&srv, &enroll, "facts-1").unwrap();
    let mut two = SigningHost::enrol(&srv, &enroll, "facts-2").unwrap();
    assert_eq!(held_digest(&mut one, &srv, "facts-1"), None, "no facts yet");

    // First upload: the suites by digest only; the server asks for both.
    let (mut up, contents) = upload::split(facts("facts-1"));
    let a = answer_of(post(&mut one, &srv, &up, true));
    assert!(!a.stored);
    let mut want: Vec<String> = up.suites.values().cloned().collect();
    want.sort();
    let mut got = a.missing.clone();
    got.sort();
    assert_eq!(got, want);

    // A suite sent under another content's digest is refused, and nothing is stored.
    let mut forged = up.clone();
    let security = up.suites["bookworm-security"].clone();
    let mut lie = contents[&security].clone();
    lie.insert("curl".into(), "99:9".into());
    forged.contents = contents.clone();
    forged.contents.insert(security.clone(), lie);
    let (status, body) = post(&mut one, &srv, &forged, false);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("another digest"), "{body}");
    assert_eq!(
        held_digest(&mut one, &srv, "facts-1"),
        None,
        "nothing stored"
    );

    // With the contents (compressed on the wire) they are stored, and check-ins name them.
    up.contents = contents.clone();
    let a = answer_of(post(&mut one, &srv, &up, true));
    assert!(a.stored && a.missing.is_empty(), "{a:?}");
    assert_eq!(
        held_digest(&mut one, &srv, "facts-1"),
        Some(up.sha256.clone())
    );

    // Another host of the tenant with the same suites sends none of them.
    let (up2, _) = upload::split(facts("facts-2"));
    let a = answer_of(post(&mut two, &srv, &up2, false));
    assert!(a.stored, "{a:?}");
    assert_ne!(up2.sha256, up.sha256);
    assert_eq!(
        held_digest(&mut two, &srv, "facts-2"),
        Some(up2.sha256.clone())
    );

    // The host's audit sees its suites again: curl's fix is in bookworm-security.
    let id = srv.acme_host_id("facts-2");
    let plan = srv.cli(&[
        "audit-report",
        "--tenant",
        "acme",
        "--host",
        &id,
        "--plan-format",
        "json",
    ]);
    assert!(plan.contains("7.88.1-10+deb12u8"), "{plan}");

    // Facts as older agents send them (whole, uncompressed) are still taken.
    let whole = serde_json::to_vec(&facts("facts-2")).unwrap();
    let a = answer_of(two.post(&srv, "/v1/agent/facts", &whole));
    assert!(a.stored, "{a:?}");
    assert_eq!(
        held_digest(&mut two, &srv, "facts-2"),
        Some(up2.sha256.clone())
    );

    // A compressed body that expands beyond the body limit is cut off, not buffered.
    let bomb = zstd::encode_all(vec![b' '; 64 << 20].as_slice(), 19).unwrap();
    assert!(bomb.len() < 64 << 10);
    let (status, body) = two.post_as(
        &srv,
        "/v1/agent/facts",
        b"{}",
        Some((&["Content-Encoding: zstd"], &bomb)),
    );
    assert_eq!(status, 413, "{body}");
    assert_eq!(srv.http_get("/v1/health", None).0, 200);

    // A real agent: its first run sends its facts; a second run with nothing changed
    // sends none (a sandbox host: its facts are an image's, not the live machine's).
    let h = Host::sandbox(&b, dir, "facts-agent");
    let before = facts_posts(&srv);
    let o = h.agent(&srv.url, Some(&enroll));
    assert!(o.status.success(), "{}", text(&o));
    let first = facts_posts(&srv);
    assert!(first > before, "the first run sent its facts");
    let o = h.agent(&srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        facts_posts(&srv),
        first,
        "unchanged facts are not sent again"
    );
    // A package installed by hand changes them: the next run sends them.
    h.lab.install_deb(&deb).unwrap();
    let o = h.agent(&srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(facts_posts(&srv) > first, "changed facts are sent");
}

fn answer_of((status, body): (u16, String)) -> FactsAnswer {
    answer(status, &body)
}
