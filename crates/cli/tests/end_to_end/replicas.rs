//! Issue 12, point 5: three `patchday server` replicas on one PostgreSQL database and one
//! shared payload directory (or, point 3, one S3 bucket on Garage), behind Debian's nginx. Agents enrol and check in through
//! nginx in a storm while an operator approves; one replica is killed in the middle.
//! Nothing is lost: every agent is served (nginx moves a request that died with its
//! replica to another one), every host installs the approved update, and the report and
//! each host's state history say so exactly once. Real PostgreSQL, nginx, servers,
//! agents and dpkg (`dpkg --root` sandbox hosts, so that many run at once).
//!
//! Point 1: a director certificate installed through one replica is served by the other
//! (it is in the database); a replica without the certified key signs nothing and says
//! which file to copy, then signs with it once it is copied, and its agents follow.

use crate::support::nginx::Nginx;
use patchday_lab::{DebSpec, Requirement};
use patchday_store_postgres::testing::ThrowawayDatabase;
use patchday_testkit::{scratch, text, AcmeWorld, Bins, Host, Server};
use std::path::Path;
use std::process::Command;

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

/// nginx in front of `upstreams` (`127.0.0.1:port`) on a free port, and its URL.
fn load_balancer(dir: &Path, upstreams: &[String]) -> (Nginx, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = dir.join("nginx");
    let p = p.display();
    let servers: String = upstreams
        .iter()
        .map(|u| format!("    server {u} max_fails=1 fail_timeout=60s;\n"))
        .collect();
    let http = format!(
        "  log_format upstream '$upstream_addr $status $request';
  access_log {p}/access.log upstream;
  client_max_body_size 0;
  upstream patchday {{
{servers}  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://patchday;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      # A request that died with its replica goes to another (POSTs too: a check-in
      # the dead replica had committed comes back as a replay, which the agent handles).
      proxy_next_upstream error timeout http_502 http_503 non_idempotent;
      proxy_read_timeout 300s;
    }}
  }}"
    );
    (
        Nginx::start(dir, port, &http),
        format!("http://127.0.0.1:{port}"),
    )
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

#[test]
fn three_replicas_behind_nginx_lose_nothing_when_one_dies_during_a_check_in_storm() {
    storm(Payloads::SharedDirectory);
}

/// Issue 12, point 3: the same, with the payloads in an S3-compatible bucket (Garage)
/// instead of a shared directory.
#[test]
fn three_replicas_on_one_bucket_lose_nothing_when_one_dies_during_a_check_in_storm() {
    if !patchday_lab::require(Requirement::S3) {
        return;
    }
    storm(Payloads::Bucket);
}

/// Where the replicas keep payloads.
enum Payloads {
    SharedDirectory,
    Bucket,
}

fn storm(payloads: Payloads) {
    if !patchday_lab::require(Requirement::Postgres) || !patchday_lab::require(Requirement::NGINX) {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = rt
        .block_on(ThrowawayDatabase::create(
            &patchday_lab::postgres_url().unwrap(),
        ))
        .unwrap();
    let url = db.url().to_string();
    let d = scratch();
    let dir = d.path();
    let b = bins();
    let pkgs = dir.join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let build = |v: &str| {
        let spec = DebSpec::new("pd-replica", v)
            .changelog(v, "Fix CVE-2099-0701.")
            .file(
                "/usr/share/pd-replica/version",
                v.as_bytes().to_vec(),
                0o644,
            );
        patchday_lab::build_deb(&spec, &pkgs).unwrap()
    };
    let (old, new) = (build("1.0-1"), build("1.0-2"));
    let mut flags = vec!["--database".to_string(), url.clone()];
    match payloads {
        Payloads::SharedDirectory => flags.extend([
            "--content".to_string(),
            dir.join("content").to_str().unwrap().to_string(),
        ]),
        Payloads::Bucket => flags.extend(crate::object_store::s3_flags(
            &patchday_lab::s3_server().unwrap(),
            &format!("replicas/{:016x}", rand::random::<u64>()),
            dir,
        )),
    }
    // Replica A pins the root, takes the catalog, makes tenant acme and a token.
    let dir_a = dir.join("a");
    std::fs::create_dir_all(&dir_a).unwrap();
    let w = AcmeWorld::start(
        &b,
        &dir_a,
        ("PD-R-1", &new, &["--emergency", "test", "--since", "1.0-1"]),
        &|_| flags.clone(),
        &["--unlimited"],
    );
    // B and C: the same director key (the one private key replicas share), their own
    // data directories.
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut replicas: Vec<Server> = Vec::new();
    for name in ["b", "c"] {
        let d = dir.join(name);
        std::fs::create_dir_all(d.join("server")).unwrap();
        assert!(Command::new("cp")
            .arg("-a")
            .arg(w.srv.data.join("director"))
            .arg(d.join("server/director"))
            .status()
            .unwrap()
            .success());
        std::fs::copy(dir_a.join("admin-token"), d.join("admin-token")).unwrap();
        replicas.push(Server::start_with(&b, &d, &w.cat.root(), &flag_refs));
    }
    let mut upstreams = vec![host_port(&w.srv.url)];
    upstreams.extend(replicas.iter().map(|s| host_port(&s.url)));
    let (_lb, lb_url) = load_balancer(dir, &upstreams);
    let mut front = w.srv;
    let replica_a_url = front.url.clone();
    front.url = lb_url.clone(); // the CLI goes through nginx from here on

    // Six hosts enrol through nginx, into group web.
    let hosts: Vec<Host> = (0..6)
        .map(|i| {
            let h = Host::sandbox(&b, dir, &format!("replica-host-{i}"));
            h.enrol_into_web(&front, &lb_url, &w.enroll, &old);
            h
        })
        .collect();

    // The storm: every agent checks in at once, three times, while the update is approved and
    // replica B is killed.
    let mut b_replica = replicas.remove(0);
    let b_addr = host_port(&b_replica.url);
    std::thread::scope(|s| {
        let runs: Vec<_> = hosts
            .iter()
            .map(|h| {
                let url = lb_url.clone();
                s.spawn(move || (0..3).map(|_| h.agent(&url, None)).collect::<Vec<_>>())
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(300));
        front.cli(&["approve", "--tenant", "acme", "--group", "web", "PD-R-1"]);
        b_replica.stop();
        for r in runs {
            for o in r.join().unwrap() {
                assert!(o.status.success(), "an agent was not served: {}", text(&o));
            }
        }
    });
    // Replica B did serve agents before it died, and nginx sent nothing to it after.
    let log = std::fs::read_to_string(dir.join("nginx/access.log")).unwrap();
    let served_by_b = log
        .lines()
        .filter(|l| l.starts_with(&b_addr) && l.contains(" 200 "))
        .count();
    assert!(served_by_b > 0, "replica B served nothing:\n{log}");
    let lines_before = log.lines().count();
    // Every host installs (a run that checked in before the approval does on the next).
    for h in &hosts {
        let o = h.agent(&lb_url, None);
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(h.version("pd-replica").as_deref(), Some("1.0-2"));
    }
    for i in 0..6 {
        let name = format!("replica-host-{i}");
        assert_eq!(front.update_state(&name, "PD-R-1").0, "installed", "{name}");
        let id = front.acme_host_id(&name);
        let history = front.cli(&[
            "history", "--tenant", "acme", "--host", &id, "--update", "PD-R-1", "--format", "json",
        ]);
        let h: serde_json::Value = serde_json::from_str(&history).unwrap();
        let rows = h["entries"].as_array().unwrap();
        let installed = rows.iter().filter(|r| r["state"] == "installed").count();
        assert_eq!(
            installed, 1,
            "{name}: installed once in the history: {history}"
        );
    }
    let log = std::fs::read_to_string(dir.join("nginx/access.log")).unwrap();
    for l in log.lines().skip(lines_before) {
        assert!(
            !l.starts_with(&format!("{b_addr} ")) || !l.contains(" 200 "),
            "a request after B died was answered by B: {l}"
        );
    }
    // The surviving replicas both answer, from the same database.
    for u in [&replica_a_url, &replicas[0].url] {
        let o = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("{u}/v1/ready"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout), "200", "{u}");
    }
}

/// Issue 12, point 1: two replicas on one PostgreSQL. The director key is rotated
/// through replica A; replica B reads the new certificate from the database, and until
/// the operator copies the new key file to it, signs nothing and fails `/v1/ready` with
/// what to copy (an agent following B's old key would refuse every answer as forged).
/// Once copied, an agent checking in through B receives the certificate, accepts the
/// rotation, and installs what B signs with the new key.
#[test]
fn a_director_certificate_installed_through_one_replica_is_served_by_the_other() {
    if !patchday_lab::require(Requirement::Postgres) {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = rt
        .block_on(ThrowawayDatabase::create(
            &patchday_lab::postgres_url().unwrap(),
        ))
        .unwrap();
    let url = db.url().to_string();
    let d = scratch();
    let dir = d.path();
    let b = bins();
    let pkgs = dir.join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let build = |v: &str| {
        let spec = DebSpec::new("pd-replica-cert", v)
            .changelog(v, "Fix CVE-2099-0711.")
            .file(
                "/usr/share/pd-replica-cert/version",
                v.as_bytes().to_vec(),
                0o644,
            );
        patchday_lab::build_deb(&spec, &pkgs).unwrap()
    };
    let (old, new) = (build("1.0-1"), build("1.0-2"));
    let flags = vec![
        "--database".to_string(),
        url.clone(),
        "--content".to_string(),
        dir.join("content").to_str().unwrap().to_string(),
    ];
    let dir_a = dir.join("a");
    std::fs::create_dir_all(&dir_a).unwrap();
    let a = AcmeWorld::start(
        &b,
        &dir_a,
        (
            "PD-RC-1",
            &new,
            &["--emergency", "test", "--since", "1.0-1"],
        ),
        &|_| flags.clone(),
        &["--unlimited"],
    );
    // Replica B: the same director key file, its own data directory.
    let dir_b = dir.join("b");
    std::fs::create_dir_all(dir_b.join("server")).unwrap();
    assert!(Command::new("cp")
        .arg("-a")
        .arg(a.srv.data.join("director"))
        .arg(dir_b.join("server/director"))
        .status()
        .unwrap()
        .success());
    std::fs::copy(dir_a.join("admin-token"), dir_b.join("admin-token")).unwrap();
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let replica_b = Server::start_with(&b, &dir_b, &a.cat.root(), &flag_refs);

    // A host enrolled through B, pinning the key both replicas hold.
    let h = Host::sandbox(&b, dir, "cert-host");
    h.enrol_into_web(&a.srv, &replica_b.url, &a.enroll, &old);
    let pinned_before = h.state_file("director-key.json");

    // The rotation, through A: A makes the next key, the root key holders sign, A installs.
    let out = a.srv.cli(&[
        "keys",
        "rotate",
        "--role",
        "director",
        "--keys",
        a.cat.keys.to_str().unwrap(),
    ]);
    assert!(out.contains("certificate v1"), "{out}");
    let stored = rt.block_on(async {
        use patchday_store::Store;
        let store = db.open().await.unwrap();
        let c = store.director_certificate().await.unwrap();
        store.pool().close().await;
        c
    });
    assert_eq!(
        stored.map(|c| c.version),
        Some(1),
        "the certificate is in PostgreSQL"
    );

    // B reads it (within a second) but lacks the new key: not ready, and says what to do.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, body) = replica_b.http_get("/v1/ready", None);
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("director: ") && body.contains("copy DATA/director/ed25519.pk8"),
        "{body}"
    );
    let (code, status) = replica_b.http_get("/v1/director", Some(&replica_b.admin));
    assert_eq!(code, 200, "{status}");
    assert!(status.contains("\"certificate_version\":1"), "{status}");

    // The operator copies A's key file to B: B signs with it at its next look.
    std::fs::copy(
        a.srv.data.join("director/ed25519.pk8"),
        replica_b.data.join("director/ed25519.pk8"),
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, body) = replica_b.http_get("/v1/ready", None);
    assert_eq!((code, body.trim()), (200, "ready"));

    // The agent, through B, receives the certificate and follows the rotation...
    let o = h.agent(&replica_b.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.state_file("director-certificate-version"), b"1");
    assert_ne!(h.state_file("director-key.json"), pinned_before);
    // ...and installs what B signs with the new key.
    a.srv
        .cli(&["approve", "--tenant", "acme", "--group", "web", "PD-RC-1"]);
    let o = h.agent(&replica_b.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.version("pd-replica-cert").as_deref(), Some("1.0-2"));
}
