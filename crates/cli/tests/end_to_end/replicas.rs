//! Issue 12, point 5: three `patchday server` replicas on one PostgreSQL database and one
//! shared payload directory (or, point 3, one S3 bucket on Garage), behind Debian's
//! nginx. Agents enrol and check in through nginx in a storm while an operator approves;
//! one replica is killed in the middle. Nothing is lost: every agent is served (nginx
//! moves a request that died with its replica to another one), every host installs the
//! approved update, and the report and each host's state history say so exactly once.
//!
//! Push across replicas: agent daemons hold their waits spread over the three replicas;
//! an approval made through one wakes the agents every replica holds within seconds (not
//! at the end of their ten-minute holds), and agents whose replica dies wait on at
//! another through the same URL and learn of the next approval within seconds.
//!
//! Point 1: a director certificate installed through one replica is served by the other
//! (it is in the database); a replica without the certified key signs nothing and says
//! which file to copy, then signs with it once it is copied, and its agents follow.
//!
//! Real PostgreSQL, nginx, servers, agents and dpkg (`dpkg --root` sandbox hosts, so
//! that many run at once).

use crate::support::nginx::Nginx;
use patchday_lab::{DebSpec, Requirement};
use patchday_store_postgres::testing::ThrowawayDatabase;
use patchday_testkit::{scratch, text, AcmeWorld, Bins, Daemon, Host, Server, SigningHost};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

/// nginx in front of `upstreams` (`127.0.0.1:port`) on a free port, and its URL.
fn load_balancer(dir: &Path, upstreams: &[String], balance: Balance) -> (Nginx, String) {
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
    let method = match balance {
        Balance::RoundRobin => "",
        Balance::LeastConnections => "    least_conn;\n",
    };
    let http = format!(
        "  log_format upstream '$upstream_addr $status $request $msec';
  access_log {p}/access.log upstream;
  client_max_body_size 0;
  upstream patchday {{
{method}{servers}  }}
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

/// Three replicas on one throwaway PostgreSQL database behind nginx, tenant acme with
/// group web, update `PD-R-1` (`pd-replica` 1.0-1 → 1.0-2, emergency lane).
struct Cluster {
    /// Replica A, its `url` pointing at nginx (the CLI goes through nginx).
    front: Server,
    /// Replica A's own address.
    replica_a_url: String,
    /// Replicas B and C.
    others: Vec<Server>,
    lb: Nginx,
    lb_url: String,
    enroll: String,
    old: std::path::PathBuf,
    /// Fields drop in order: servers and nginx stop, then the database is dropped and
    /// the directory removed.
    _db: ThrowawayDatabase,
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
}

/// How nginx picks a replica.
#[derive(Clone, Copy)]
enum Balance {
    /// nginx's default.
    RoundRobin,
    /// The replica with the fewest open connections: held waits spread evenly.
    LeastConnections,
}

/// The `/metrics` scrape secret of the push tests' replicas.
const METRICS_TOKEN: &str = "replicas-metrics-secret-0123456789abcdef";

impl Cluster {
    /// Starts it, or `None` (skipped, or failed under CI) without PostgreSQL or nginx.
    fn start(payloads: Payloads, balance: Balance, extra: &[&str]) -> Option<Cluster> {
        if !patchday_lab::require(Requirement::Postgres)
            || !patchday_lab::require(Requirement::NGINX)
        {
            return None;
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
        let dir = d.path().to_path_buf();
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
                &dir,
            )),
        }
        let token_file = dir.join("metrics-token");
        std::fs::write(&token_file, METRICS_TOKEN).unwrap();
        flags.extend([
            "--metrics-token-file".to_string(),
            token_file.to_str().unwrap().to_string(),
        ]);
        flags.extend(extra.iter().map(|s| s.to_string()));
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
        let mut others: Vec<Server> = Vec::new();
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
            others.push(Server::start_with(&b, &d, &w.cat.root(), &flag_refs));
        }
        let mut upstreams = vec![host_port(&w.srv.url)];
        upstreams.extend(others.iter().map(|s| host_port(&s.url)));
        let (lb, lb_url) = load_balancer(&dir, &upstreams, balance);
        let mut front = w.srv;
        let replica_a_url = front.url.clone();
        front.url = lb_url.clone(); // the CLI goes through nginx from here on
        Some(Cluster {
            front,
            replica_a_url,
            others,
            lb,
            lb_url,
            enroll: w.enroll,
            old,
            _db: db,
            _dir: d,
            dir,
        })
    }

    /// Host `name` (a `dpkg --root` sandbox, so that many run at once) with 1.0-1,
    /// enrolled through nginx into group web.
    fn host(&self, name: &str) -> Host {
        let h = Host::sandbox(&bins(), &self.dir, name);
        h.enrol_into_web(&self.front, &self.lb_url, &self.enroll, &self.old);
        h
    }
}

fn storm(payloads: Payloads) {
    let _serial = patchday_testkit::serial();
    let Some(mut cluster) = Cluster::start(payloads, Balance::RoundRobin, &[]) else {
        return;
    };
    let lb_url = cluster.lb_url.clone();
    // Six hosts enrol through nginx, into group web.
    let hosts: Vec<Host> = (0..6)
        .map(|i| cluster.host(&format!("replica-host-{i}")))
        .collect();
    let front = &cluster.front;
    let replica_a_url = cluster.replica_a_url.clone();
    let access_log = cluster.lb.prefix.join("access.log");
    let mut replicas = std::mem::take(&mut cluster.others);

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
    let log = std::fs::read_to_string(&access_log).unwrap();
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
    let log = std::fs::read_to_string(&access_log).unwrap();
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
/// Two replicas on one throwaway PostgreSQL database and one payload directory: A (an
/// `AcmeWorld` whose catalog has update `id`, a new version of `package`) and B (A's
/// director key, its own data directory); the package's old deb; `None` where
/// PostgreSQL is missing outside CI.
struct TwoReplicas {
    _rt: tokio::runtime::Runtime,
    db: ThrowawayDatabase,
    _d: tempfile::TempDir,
    dir: std::path::PathBuf,
    a: AcmeWorld,
    b: Server,
    old: std::path::PathBuf,
}

fn two_replicas(package: &str, id: &str, cve: &str) -> Option<TwoReplicas> {
    // Under CI a missing PostgreSQL fails the test here (`require` panics); `.ci/run`
    // starts one. Only a developer's machine without it gets `None` (a skip).
    if !patchday_lab::require(Requirement::Postgres) {
        return None;
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
    let dir = d.path().to_path_buf();
    let b = bins();
    let pkgs = dir.join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let build = |v: &str| {
        let spec = DebSpec::new(package, v)
            .changelog(v, format!("Fix {cve}."))
            .file(
                format!("/usr/share/{package}/version"),
                v.as_bytes().to_vec(),
                0o644,
            );
        patchday_lab::build_deb(&spec, &pkgs).unwrap()
    };
    let (old, new) = (build("1.0-1"), build("1.0-2"));
    let flags = vec![
        "--database".to_string(),
        url,
        "--content".to_string(),
        dir.join("content").to_str().unwrap().to_string(),
    ];
    let dir_a = dir.join("a");
    std::fs::create_dir_all(&dir_a).unwrap();
    let a = AcmeWorld::start(
        &b,
        &dir_a,
        (id, &new, &["--emergency", "test", "--since", "1.0-1"]),
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
    Some(TwoReplicas {
        _rt: rt,
        db,
        _d: d,
        dir,
        a,
        b: replica_b,
        old,
    })
}

#[test]
fn a_director_certificate_installed_through_one_replica_is_served_by_the_other() {
    let Some(TwoReplicas {
        _rt: rt,
        db,
        _d,
        dir,
        a,
        b: replica_b,
        old,
    }) = two_replicas("pd-replica-cert", "PD-RC-1", "CVE-2099-0711")
    else {
        return;
    };
    let (dir, b) = (dir.as_path(), bins());

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

/// Issue 10, point 8: a replica remembers host credentials for seconds
/// (`server/src/host_credentials.rs`). A host removed through another replica is refused
/// at once for anything it signs (its sequence number has no row to go to), and for reads
/// once the remembered credential is older than its ten seconds.
#[test]
fn a_host_removed_through_one_replica_is_refused_by_the_other_that_remembers_it() {
    // Every field bound: what is left unbound (the database, the directory) would be
    // dropped with the temporary at once.
    let Some(TwoReplicas {
        _rt,
        db: _db,
        _d,
        dir,
        a,
        b: replica_b,
        old,
    }) = two_replicas("pd-replica-gone", "PD-RG-1", "CVE-2099-0712")
    else {
        return;
    };
    let b = bins();
    let dir = dir.as_path();

    // Enrolled and checked in through B, which now remembers its credential.
    let h = Host::sandbox(&b, dir, "gone-host");
    let id = h.enrol_into_web(&a.srv, &replica_b.url, &a.enroll, &old);
    let identity: serde_json::Value =
        serde_json::from_slice(&h.state_file("identity.json")).unwrap();
    let credential = identity["credential"].as_str().unwrap().to_string();
    let (code, body) = replica_b.http_get("/v1/tuf/metadata/timestamp.json", Some(&credential));
    assert_eq!(code, 200, "{body}");

    // Removed through A; B is not told.
    let out = a.srv.cli(&["host", "remove", "--tenant", "acme", &id]);
    assert!(out.contains("its credential no longer works"), "{out}");
    let removed_at = Instant::now();

    // At once: a signed check-in through B is refused, in the removal's own words.
    let o = h.agent(&replica_b.url, None);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("host {id} was removed from tenant acme at")),
        "{}",
        text(&o)
    );
    // After B's memory of the credential ran out (10 s), reads are refused as well.
    let remembered = Duration::from_secs(10);
    std::thread::sleep(remembered.saturating_sub(removed_at.elapsed()) + Duration::from_secs(1));
    let (code, body) = replica_b.http_get("/v1/tuf/metadata/timestamp.json", Some(&credential));
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("was removed from tenant acme"), "{body}");
}

// ---- Push across replicas ----

/// Agents of the push tests.
const AGENTS: usize = 6;
/// How soon every agent must have learned of an approval: generous for a loaded 2-core
/// machine, and far below the hold (600 s) after which an agent would learn of it anyway.
const WITHIN: Duration = Duration::from_secs(20);
/// How long the installs may take after that (nothing is asserted about their speed).
const INSTALLED_WITHIN: Duration = Duration::from_secs(180);

/// Waits held now by the replica at `url` (its `/metrics`).
fn held(url: &str) -> Option<u64> {
    let o = Command::new("curl")
        .args(["-s", "--max-time", "5", "-H"])
        .arg(format!("Authorization: Bearer {METRICS_TOKEN}"))
        .arg(format!("{url}/metrics"))
        .output()
        .ok()?;
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("patchday_push_connections_held "))
        .and_then(|n| n.trim().parse().ok())
}

/// Polls until `cond` holds, for at most `limit`; panics with `what` and the last
/// `state` otherwise.
fn until<T: std::fmt::Debug>(what: &str, limit: Duration, mut cond: impl FnMut() -> (bool, T)) {
    let deadline = Instant::now() + limit;
    loop {
        let (done, state) = cond();
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} (not within {limit:?}): {state:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Issue 12, point 5: agent daemons hold their waits spread over the three replicas
/// (nginx sends each new connection to the replica with the fewest); an approval made
/// through replica A wakes the agents held by B and C as well as A's within seconds,
/// instead of at the end of their ten-minute holds.
#[test]
fn an_approval_through_one_replica_wakes_the_agents_every_replica_holds() {
    push_across_replicas(Kill::None);
}

/// Issue 12, point 5: replica B dies while agents hold waits on it. They wait on through
/// the same nginx URL (so at A or C, with the generation they had), and the next
/// approval, made through A right after the kill, reaches every agent within seconds;
/// every host installs it, once.
#[test]
fn agents_whose_replica_died_wait_on_at_another_and_learn_of_the_next_approval_within_seconds() {
    push_across_replicas(Kill::ReplicaB);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kill {
    None,
    ReplicaB,
}

/// Seconds since the epoch, as nginx's `$msec` writes them.
#[allow(clippy::disallowed_methods)] // compared with nginx's wall clock: a test's edge
fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// When nginx saw waits end (`$msec`) after `since`, per replica in `urls`' order.
fn wait_ends(log: &Path, since: f64, urls: &[String]) -> Vec<Vec<f64>> {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    urls.iter()
        .map(|u| {
            let addr = host_port(u);
            log.lines()
                .filter(|l| l.starts_with(&format!("{addr} ")) && l.contains("/v1/agent/wait "))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .filter(|t| *t >= since)
                .collect()
        })
        .collect()
}

/// How many times each daemon said it was woken.
fn woken(daemons: &[Daemon]) -> Vec<usize> {
    daemons
        .iter()
        .map(|d| d.log().matches("woken by the server").count())
        .collect()
}

/// Polls until every daemon was woken more often than `before` says, for at most
/// [`WITHIN`]; how long after `started` each was seen woken.
fn until_all_woken(
    what: &str,
    daemons: &[Daemon],
    before: &[usize],
    started: Instant,
) -> Vec<Duration> {
    let mut learned: Vec<Option<Duration>> = vec![None; daemons.len()];
    until(what, WITHIN, || {
        for (i, n) in woken(daemons).into_iter().enumerate() {
            if learned[i].is_none() && n > before[i] {
                learned[i] = Some(started.elapsed());
            }
        }
        (learned.iter().all(Option::is_some), learned.clone())
    });
    learned.into_iter().flatten().collect()
}

/// Waits held by each of `urls` once they add up to `total` (and, with `everywhere`,
/// each holds some), within a minute.
fn until_held(what: &str, urls: &[String], total: usize, everywhere: bool) -> Vec<u64> {
    let mut counts = Vec::new();
    until(what, Duration::from_secs(60), || {
        counts = urls.iter().map(|u| held(u).unwrap_or(0)).collect();
        (
            counts.iter().sum::<u64>() == total as u64 && (!everywhere || !counts.contains(&0)),
            counts.clone(),
        )
    });
    counts
}

fn push_across_replicas(kill: Kill) {
    let _serial = patchday_testkit::serial();
    let Some(mut c) = Cluster::start(
        Payloads::SharedDirectory,
        Balance::LeastConnections,
        &["--long-poll-seconds", "600"],
    ) else {
        return;
    };
    let hosts: Vec<Host> = (0..AGENTS)
        .map(|i| c.host(&format!("push-replica-{i}")))
        .collect();
    // The agent's own defaults apart from the interval (an hour: only push can explain
    // a run within seconds), its back-off included.
    let daemons: Vec<Daemon> = hosts
        .iter()
        .map(|h| Daemon::start(h, &c.lb_url, &c.dir, &["--interval", "3600"]))
        .collect();
    for d in &daemons {
        d.until_logged("assigned 0 installed 0 failed 0");
    }
    let urls = |c: &Cluster| -> Vec<String> {
        std::iter::once(c.replica_a_url.clone())
            .chain(c.others.iter().map(|s| s.url.clone()))
            .collect()
    };
    // Every agent holds a wait, and every replica holds some of them.
    let counts = until_held(
        "every agent holds a wait, on every replica",
        &urls(&c),
        AGENTS,
        true,
    );
    let held_by_b = counts[1];
    let before = woken(&daemons);

    let mut dead = Vec::new();
    if kill == Kill::ReplicaB {
        let mut b = c.others.remove(0);
        b.stop();
        dead.push(b);
    }
    // The approval goes to replica A itself, not through nginx.
    let started = Instant::now();
    let approved_at = unix_seconds();
    c.front.url = c.replica_a_url.clone();
    c.front
        .cli(&["approve", "--tenant", "acme", "--group", "web", "PD-R-1"]);
    c.front.url = c.lb_url.clone();
    // Every agent learns of it within seconds (a held wait answers, or a reconnecting
    // agent's generation is found old), and runs.
    let learned = until_all_woken(
        "every agent learns of the approval",
        &daemons,
        &before,
        started,
    );
    eprintln!(
        "push across replicas ({}): held per replica {counts:?}; approval through A to each agent woken: {learned:?}",
        if dead.is_empty() { "no kill" } else { "B killed" },
    );
    if dead.is_empty() {
        // The figure in BENCHMARKS.md: when nginx saw each woken wait end, per replica,
        // after the first one A answered (A took the approval and woke its own at once;
        // B and C heard of it from the database).
        let ends = wait_ends(&c.lb.prefix.join("access.log"), approved_at, &urls(&c));
        let first_a = ends[0].iter().copied().fold(f64::INFINITY, f64::min);
        let after: Vec<Vec<i64>> = ends
            .iter()
            .map(|e| {
                e.iter()
                    .map(|t| ((t - first_a) * 1000.0).round() as i64)
                    .collect()
            })
            .collect();
        eprintln!("push across replicas: woken waits ended, ms after A's first, per replica A, B, C: {after:?}");
        assert!(
            after.iter().all(|e| !e.is_empty()),
            "every replica answered woken waits: {after:?}"
        );
    }
    // Nothing lost: every host installs it, once.
    for h in &hosts {
        let name = h.lab.name().to_string();
        until(&format!("{name} installs PD-R-1"), INSTALLED_WITHIN, || {
            let (state, msg) = c.front.update_state(&name, "PD-R-1");
            (state == "installed", (state, msg))
        });
        let id = c.front.acme_host_id(&name);
        let history = c.front.cli(&[
            "history", "--tenant", "acme", "--host", &id, "--update", "PD-R-1", "--format", "json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&history).unwrap();
        let installed = v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["state"] == "installed")
            .count();
        assert_eq!(installed, 1, "{name}: installed once: {history}");
    }
    // And they go on waiting, on the live replicas.
    until_held(
        "every agent waits again, on the live replicas",
        &urls(&c),
        AGENTS,
        false,
    );
    if kill == Kill::ReplicaB {
        // The agents B held saw their hold break off and waited on elsewhere.
        let broke = daemons
            .iter()
            .filter(|d| d.log().contains("the held wait broke off"))
            .count() as u64;
        assert!(
            broke >= held_by_b,
            "{held_by_b} agents were held by B, {broke} saw their hold break"
        );
        // C dies too, with nothing new to tell: its agents wait on at A with the
        // generation they had, which A knows (the replicas share generations), so none
        // of them checks in for nothing...
        let quiet = woken(&daemons);
        let mut c_replica = c.others.remove(0);
        c_replica.stop();
        dead.push(c_replica);
        until_held(
            "A holds every agent's wait after C died",
            &[c.replica_a_url.clone()],
            AGENTS,
            false,
        );
        assert_eq!(
            woken(&daemons),
            quiet,
            "an agent that moved to A with a generation A knows ran for nothing"
        );
        // ...and the next change for the tenant, made through A, reaches every one.
        let started = Instant::now();
        let id = c.front.acme_host_id("push-replica-0");
        c.front.url = c.replica_a_url.clone();
        c.front
            .cli(&["host", "set-groups", "--tenant", "acme", &id, "web"]);
        let learned = until_all_woken(
            "every agent learns of the next change after C died",
            &daemons,
            &quiet,
            started,
        );
        eprintln!("push after B and C died: a change through A to each agent woken: {learned:?}");
    }
    let logs: Vec<String> = daemons.iter().map(Daemon::log).collect();
    drop(daemons);
    for (h, log) in hosts.iter().zip(&logs) {
        assert_eq!(h.version("pd-replica").as_deref(), Some("1.0-2"), "{log}");
    }
}

/// Issue 12, point 5: a held wait's heartbeats pass nginx (its default configuration,
/// buffering on) as they are sent, so an agent behind a load balancer sees a live
/// connection through a ten-minute hold, and nginx's `proxy_read_timeout` (60 s by
/// default) never ends a hold whose heartbeat is shorter.
#[test]
fn the_heartbeats_of_a_held_wait_pass_nginx_as_they_are_sent() {
    if !patchday_lab::require(Requirement::NGINX) {
        return;
    }
    let d = scratch();
    let dir = d.path();
    let pkgs = dir.join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let deb = patchday_lab::build_deb(&DebSpec::new("pd-beat", "1.0-2"), &pkgs).unwrap();
    let mut w = AcmeWorld::start(
        &bins(),
        dir,
        ("PD-B-1", &deb, &["--emergency", "test"]),
        &|_| {
            vec![
                "--long-poll-seconds".into(),
                "60".into(),
                "--heartbeat-seconds".into(),
                "5".into(),
            ]
        },
        &["--unlimited"],
    );
    let (_lb, lb_url) = load_balancer(dir, &[host_port(&w.srv.url)], Balance::RoundRobin);
    let mut host = SigningHost::enrol(&w.srv, &w.enroll, "beat-through-nginx").unwrap();
    w.srv.url = lb_url;
    let (_, _, first) = crate::push::wait_raw(&w.srv, &mut host, 0, None);
    let generation: serde_json::Value = serde_json::from_str(first.trim()).unwrap();
    let g = generation["generation"].as_u64().unwrap();
    // Held for a minute; curl gives up after 12 s and shows what arrived by then (the
    // answer's head leaves with the first heartbeat).
    let (code, _, early) = crate::push::wait_raw(&w.srv, &mut host, g, Some(12.0));
    assert_eq!(code, 200, "the answer's head came through nginx: {early:?}");
    assert_eq!(
        early, "\n\n",
        "two heartbeats (one every 5 s) within 12 s through nginx, and no answer yet"
    );
}
