//! Issue 14, points 1-3, with the real binaries: compliance access tokens from the
//! server to real agents in overlay hosts; Debian's nginx (`auth_request`) in front of a
//! test application, asking `patchday gate http`; and `patchday gate nft` on a gateway
//! namespace quarantining a laptop namespace with real traffic until its agent installs
//! the missing update.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::nginx::Nginx;
use patchday_lab::DebSpec;
use patchday_testkit::{
    require, scratch, text, wait_for, Bins, Catalog, Daemon, Host, Requirement, Server,
};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

/// A catalog with update `PD-G-1` (pd-gate-a 1.0-1 → 1.0-2); the old .deb.
fn catalog(dir: &Path) -> (Catalog, PathBuf) {
    let pkgs = dir.join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let cat = Catalog::new(&bins(), dir);
    let old = DebSpec::new("pd-gate-a", "1.0-1").changelog("1.0-1", "Initial release.");
    let new = DebSpec::new("pd-gate-a", "1.0-2")
        .changelog("1.0-2", "Fix CVE-2099-1401.")
        .changelog("1.0-1", "Initial release.");
    let old = patchday_lab::build_deb(&old, &pkgs).unwrap();
    let new = patchday_lab::build_deb(&new, &pkgs).unwrap();
    let o = cat.add_deb("PD-G-1", &new, &["--emergency", "test", "--since", "1.0-1"]);
    assert!(o.status.success(), "{}", text(&o));
    (cat, old)
}

/// Tenant `t` with group `web`, and an unlimited enrolment token into it.
fn tenant(srv: &Server, t: &str) -> String {
    srv.cli(&["tenant", "create", t]);
    srv.cli(&["group", "create", "--tenant", t, "web"]);
    srv.cli(&[
        "enroll-token",
        "create",
        "--tenant",
        t,
        "--unlimited",
        "--group",
        "web",
    ])
    .trim()
    .to_string()
}

/// The agent of `h` with `args` (a subcommand), with `stdin` as its input.
fn agent(h: &Host, srv: &Server, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = h.agent_command(&srv.url, None, args);
    match stdin {
        None => cmd.output().unwrap(),
        Some(input) => {
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        }
    }
}

/// `patchday-agent access-token` on `h`: (exit code, output).
fn fetch_token(h: &Host, srv: &Server) -> (i32, String) {
    let o = agent(h, srv, &["access-token"], None);
    (o.status.code().unwrap_or(-1), text(&o))
}

/// The proof headers `h` signs for a GET of `url` (with its own token, or `token`).
fn proof(h: &Host, srv: &Server, url: &str, token: Option<&str>) -> Vec<String> {
    let mut args = vec!["access-proof", "--method", "GET", "--url", url];
    if token.is_some() {
        args.extend(["--token-file", "-"]);
    }
    let o = agent(h, srv, &args, token);
    assert!(o.status.success(), "access-proof: {}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.contains(": "))
        .map(String::from)
        .collect()
}

/// GET `url` with `headers`: (status, the `Patchday-Reason` header, body).
fn get(url: &str, headers: &[String]) -> (u16, String, String) {
    let mut c = Command::new("curl");
    c.args(["-s", "-D", "-", "--max-time", "20"]);
    for h in headers {
        c.arg("-H").arg(h);
    }
    let o = c.arg(url).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let reason = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("patchday-reason"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, reason, body.to_string())
}

/// A tiny HTTP application that answers every request with `app: hello`.
fn start_app(bind: &str) -> u16 {
    let l = TcpListener::bind(bind).unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\nConnection: close\r\n\r\napp: hello",
            );
        }
    });
    port
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// nginx in front of the test application on `app`, asking the gate at `gate` (the
/// README's snippet, with this test's ports).
fn start_nginx(dir: &Path, port: u16, app: u16, gate: &str) -> Nginx {
    let http = format!(
        r#"  access_log off;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      auth_request /_patchday;
      auth_request_set $patchday_host $upstream_http_patchday_hostname;
      proxy_set_header X-Patchday-Host $patchday_host;
      error_page 401 403 = @patchday_refused;
      proxy_pass http://127.0.0.1:{app};
    }}
    location = /_patchday {{
      internal;
      proxy_pass http://{gate};
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Host $http_host;
    }}
    location @patchday_refused {{
      proxy_pass http://{gate};
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Host $http_host;
    }}
  }}
"#
    );
    Nginx::start(dir, port, &http)
}

/// `patchday gate http` for tenant `acme` on a free port: the daemon and its address.
fn start_gate(srv: &Server, dir: &Path) -> (Daemon, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_patchday"));
    cmd.args([
        "gate",
        "http",
        "--tenant",
        "acme",
        "--listen",
        "127.0.0.1:0",
    ])
    .args([
        "--wait-seconds",
        "5",
        "--server",
        &srv.url,
        "--token",
        &srv.admin,
    ])
    .env("RUST_LOG", "info");
    let gate = Daemon::spawn(cmd, dir.join("gate-http.log"));
    gate.until_logged("listening on ");
    let log = gate.log();
    let addr = log
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    (gate, addr)
}

fn access_row(srv: &Server, tenant: &str, hostname: &str) -> Value {
    let rows: Vec<Value> =
        serde_json::from_str(&srv.cli(&["host", "access", "--tenant", tenant, "--format", "json"]))
            .unwrap();
    rows.into_iter()
        .find(|r| r["hostname"] == hostname)
        .unwrap_or_else(|| panic!("{hostname} not in host access"))
}

#[test]
fn nginx_admits_a_compliant_host_and_refuses_lapsed_expired_foreign_and_replayed_tokens() {
    if !require(Requirement::NGINX) {
        return;
    }
    let _serial = patchday_testkit::serial();
    let d = scratch();
    let dir = d.path();
    let (cat, old) = catalog(dir);
    // Tokens live 10 s here, so that the expired case can wait for one.
    let srv = Server::start_with(
        &bins(),
        dir,
        &cat.root(),
        &["--access-token-lifetime", "10s"],
    );
    srv.cli(&["catalog", "push", "--repo", cat.repo.to_str().unwrap()]);
    let acme = tenant(&srv, "acme");
    let globex = tenant(&srv, "globex");

    // good: nothing missing. late: needs PD-G-1, not yet approved (not known-exploited:
    // still allowed). other: compliant, but of tenant globex.
    let good = Host::new(&bins(), dir, "gw-good");
    let late = Host::new(&bins(), dir, "gw-late");
    late.lab.install_deb(&old).unwrap();
    let other = Host::new(&bins(), dir, "gw-other");
    for (h, token) in [(&good, &acme), (&late, &acme), (&other, &globex)] {
        let o = h.agent(&srv.url, Some(token));
        assert!(o.status.success(), "enrol: {}", text(&o));
    }
    assert_eq!(access_row(&srv, "acme", "gw-late")["access"], "allowed");

    let app = start_app("127.0.0.1:0");
    let (_gate, gate_addr) = start_gate(&srv, dir);
    let port = free_port();
    let _nginx = start_nginx(dir, port, app, &gate_addr);
    let url = format!("http://127.0.0.1:{port}/reports?q=1");

    // Nothing: refused with the reason.
    let (status, reason, body) = get(&url, &[]);
    assert_eq!(status, 401, "{reason} {body}");
    assert!(reason.starts_with("no access token"), "{reason}");
    assert!(body.contains("no access token"), "the reason page: {body}");

    // A compliant host's request passes, and only with its own proof.
    let (code, out) = fetch_token(&good, &srv);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("access token written to"), "{out}");
    let captured = proof(&good, &srv, &url, None);
    let (status, reason, body) = get(&url, &captured);
    assert_eq!((status, body.as_str()), (200, "app: hello"), "{reason}");
    // The same request captured in flight and sent again within its window: refused, once
    // admitted (the nonce cache), with its reason on the page.
    let (status, reason, body) = get(&url, &captured);
    assert_eq!(status, 401, "a replayed proof was admitted: {body}");
    assert!(
        reason.starts_with("this proof of possession was used already"),
        "{reason}"
    );
    assert!(body.contains("proof-replayed"), "the reason page: {body}");
    // A fresh proof for the same request passes again.
    let (status, reason, _) = get(&url, &proof(&good, &srv, &url, None));
    assert_eq!(status, 200, "{reason}");
    let token_only: Vec<String> = proof(&good, &srv, &url, None)
        .into_iter()
        .filter(|h| h.starts_with("Authorization"))
        .collect();
    let (status, reason, _) = get(&url, &token_only);
    assert_eq!(status, 401);
    assert!(reason.starts_with("no proof of possession"), "{reason}");

    // A token replayed from another host: the thief (late) signs with its own key.
    let good_token = String::from_utf8(good.state_file("access-token")).unwrap();
    let (status, reason, body) = get(&url, &proof(&late, &srv, &url, Some(&good_token)));
    assert_eq!(status, 401, "{body}");
    assert!(
        reason.contains("not signed by the host key the token names"),
        "{reason}"
    );
    // A proof made for another URL does not open this one.
    let other_url = format!("http://127.0.0.1:{port}/admin");
    let (status, reason, _) = get(&url, &proof(&good, &srv, &other_url, None));
    assert_eq!(status, 401);
    assert!(reason.contains("not signed by the host key"), "{reason}");

    // A token of another tenant's (compliant) host.
    let (code, out) = fetch_token(&other, &srv);
    assert_eq!(code, 0, "{out}");
    let (status, reason, _) = get(&url, &proof(&other, &srv, &url, None));
    assert_eq!(status, 403);
    assert_eq!(
        reason,
        "the access token belongs to a host of tenant globex; this gate admits hosts of tenant acme"
    );

    // A host that falls out of compliance: refused at the gate with a valid token, and
    // refused a new token, each with the reason; the operator sees it too.
    let (code, out) = fetch_token(&late, &srv);
    assert_eq!(code, 0, "{out}");
    let (status, _, body) = get(&url, &proof(&late, &srv, &url, None));
    assert_eq!((status, body.as_str()), (200, "app: hello"));
    srv.cli(&[
        "approve",
        "--tenant",
        "acme",
        "--group",
        "web",
        "PD-G-1",
        "--deadline",
        "2020-01-01T00:00:00Z",
    ]);
    wait_for("the gate to hear that gw-late lapsed", || {
        get(&url, &proof(&late, &srv, &url, None)).0 == 403
    });
    let (status, reason, body) = get(&url, &proof(&late, &srv, &url, None));
    assert_eq!(status, 403);
    assert!(
        reason.starts_with("host gw-late (")
            && reason.ends_with("is not compliant: overdue: past its deadline: PD-G-1"),
        "{reason}"
    );
    assert!(body.contains("past its deadline: PD-G-1"), "{body}");
    let (code, out) = fetch_token(&late, &srv);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(
            "is not compliant, so it gets no access token: overdue: past its deadline: PD-G-1"
        ),
        "{out}"
    );
    assert!(
        late.state_file("access-token").is_empty(),
        "the lapsed token stays"
    );
    let row = access_row(&srv, "acme", "gw-late");
    assert_eq!(row["access"], "refused", "{row}");
    assert_eq!(row["why"], "overdue: past its deadline: PD-G-1", "{row}");
    assert_eq!(access_row(&srv, "acme", "gw-good")["access"], "allowed");

    // The agent's daemon keeps a token in its --access-token-file and renews it before
    // it expires (after two thirds of its 10 s).
    let file = match good.lab.root_dir() {
        Some(_) => good.lab.dir().join("agent-state/daemon-token"),
        None => PathBuf::from("/var/lib/patchday-agent/daemon-token"),
    };
    let daemon = Daemon::start(
        &good,
        &srv.url,
        dir,
        &["--access-token-file", file.to_str().unwrap()],
    );
    wait_for("the daemon to renew its token", || {
        daemon
            .log()
            .matches("access token renewed, valid until")
            .count()
            >= 2
    });
    drop(daemon);
    assert!(
        good.state_file("daemon-token").starts_with(b"ey"),
        "no token in the daemon's file"
    );

    // An expired token (with a fresh proof) is refused.
    let (code, out) = fetch_token(&good, &srv);
    assert_eq!(code, 0, "{out}");
    let token = String::from_utf8(good.state_file("access-token")).unwrap();
    let claims: Value = {
        use base64::Engine as _;
        let part = token.trim().split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(claims["tenant"], "acme");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        10
    );
    let exp = jiff::Timestamp::from_second(claims["exp"].as_i64().unwrap()).unwrap();
    #[allow(clippy::disallowed_methods)] // the test waits for a real expiry
    while jiff::Timestamp::now() <= exp + jiff::SignedDuration::from_secs(1) {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (status, reason, _) = get(&url, &proof(&good, &srv, &url, None));
    assert_eq!(status, 401);
    assert!(
        reason.starts_with("the access token expired at "),
        "{reason}"
    );

    // The keys gates verify with are public.
    let (code, body) = srv.http_get("/v1/access/keys", None);
    assert_eq!(code, 200, "{body}");
    let keys: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(keys["keys"][0]["crv"], "Ed25519", "{keys}");
    assert_eq!(keys["keys"][0]["kid"], claims_kid(&token), "{keys}");
}

fn claims_kid(token: &str) -> String {
    use base64::Engine as _;
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.trim().split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "patchday-access+jwt");
    header["kid"].as_str().unwrap().to_string()
}

// ---- point 3: the network edge ----

fn run(cmd: &mut Command) -> Output {
    let o = cmd.output().expect("run command");
    assert!(o.status.success(), "{cmd:?} failed: {}", text(&o));
    o
}

/// A gateway namespace between a laptop namespace and the test's own namespace (where
/// the server and the application listen), removed when dropped.
///
/// ```text
/// laptop (10.215.N.2) ── gateway (10.215.N.1 | 10.215.M.1) ── test's namespace
///                                                            10.215.M.2 server
///                                                            10.215.M.3 application
/// ```
struct Edge {
    laptop: String,
    gateway: String,
    outside: String,
    laptop_addr: String,
    server_addr: String,
    app_addr: String,
}

impl Edge {
    fn create() -> Edge {
        let tag = std::process::id() % 10000;
        let e = Edge {
            laptop: format!("pdg-lt-{tag}"),
            gateway: format!("pdg-gw-{tag}"),
            outside: format!("pdg{tag}o"),
            laptop_addr: "10.215.1.2".into(),
            server_addr: "10.215.2.2".into(),
            app_addr: "10.215.2.3".into(),
        };
        e.remove();
        let ip = |args: &[&str]| {
            run(Command::new("ip").args(args));
        };
        let inside = |ns: &str, args: &[&str]| {
            run(Command::new("ip").args(["netns", "exec", ns]).args(args));
        };
        ip(&["netns", "add", &e.laptop]);
        ip(&["netns", "add", &e.gateway]);
        // laptop ↔ gateway
        ip(&[
            "link", "add", "pdgl", "netns", &e.laptop, "type", "veth", "peer", "name", "pdgg",
            "netns", &e.gateway,
        ]);
        // gateway ↔ the test's namespace
        ip(&[
            "link", "add", &e.outside, "type", "veth", "peer", "name", "pdgs", "netns", &e.gateway,
        ]);
        inside(
            &e.laptop,
            &["ip", "addr", "add", "10.215.1.2/24", "dev", "pdgl"],
        );
        inside(&e.laptop, &["ip", "link", "set", "pdgl", "up"]);
        inside(&e.laptop, &["ip", "link", "set", "lo", "up"]);
        inside(
            &e.laptop,
            &["ip", "route", "add", "default", "via", "10.215.1.1"],
        );
        inside(
            &e.gateway,
            &["ip", "addr", "add", "10.215.1.1/24", "dev", "pdgg"],
        );
        inside(
            &e.gateway,
            &["ip", "addr", "add", "10.215.2.1/24", "dev", "pdgs"],
        );
        for dev in ["pdgg", "pdgs", "lo"] {
            inside(&e.gateway, &["ip", "link", "set", dev, "up"]);
        }
        inside(
            &e.gateway,
            &["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"],
        );
        ip(&["addr", "add", "10.215.2.2/24", "dev", &e.outside]);
        ip(&["addr", "add", "10.215.2.3/24", "dev", &e.outside]);
        ip(&["link", "set", &e.outside, "up"]);
        ip(&["route", "add", "10.215.1.0/24", "via", "10.215.2.1"]);
        e
    }

    fn remove(&self) {
        // Deleting the link takes its addresses and the route with it.
        let _ = Command::new("ip")
            .args(["link", "del", &self.outside])
            .output();
        for ns in [&self.laptop, &self.gateway] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }

    /// Whether a TCP connection from the laptop to `addr:port` opens.
    fn laptop_connects(&self, addr: &str, port: u16) -> bool {
        let script = format!("exec 3<>/dev/tcp/{addr}/{port}");
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.laptop,
                "timeout",
                "5",
                "bash",
                "-c",
                &script,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    /// `inner` (the agent in its overlay host) run inside the laptop namespace.
    fn on_laptop(&self, inner: &Command) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.laptop])
            .arg(inner.get_program())
            .args(inner.get_args());
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.remove();
    }
}

#[test]
fn a_lapsed_laptop_reaches_only_the_server_until_its_agent_installs_the_update() {
    if !require(Requirement::Root) || !require(Requirement::NetNs) || !require(Requirement::NFT) {
        return;
    }
    let _serial = patchday_testkit::serial();
    let d = scratch();
    let dir = d.path();
    let edge = Edge::create();
    let (cat, old) = catalog(dir);
    let srv = Server::start_with(
        &bins(),
        dir,
        &cat.root(),
        &["--listen", &format!("{}:0", edge.server_addr)],
    );
    let server_port: u16 = srv.url.rsplit(':').next().unwrap().parse().unwrap();
    srv.cli(&["catalog", "push", "--repo", cat.repo.to_str().unwrap()]);
    let acme = tenant(&srv, "acme");
    let app = start_app(&format!("{}:0", edge.app_addr));

    // The laptop, behind the gateway, enrols, then lapses: PD-G-1 is past its deadline.
    let laptop = Host::new(&bins(), dir, "laptop-1");
    laptop.lab.install_deb(&old).unwrap();
    let o = edge
        .on_laptop(&laptop.agent_command(&srv.url, Some(&acme), &[]))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "enrol through the gateway: {}",
        text(&o)
    );
    let id = srv.acme_host_id("laptop-1");
    assert!(
        edge.laptop_connects(&edge.app_addr, app),
        "the application is unreachable before any gate"
    );
    srv.cli(&[
        "approve",
        "--tenant",
        "acme",
        "--group",
        "web",
        "PD-G-1",
        "--deadline",
        "2020-01-01T00:00:00Z",
    ]);

    // The gate on the gateway, mapping the laptop's address to its host.
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        &edge.gateway,
        env!("CARGO_BIN_EXE_patchday"),
    ])
    .args(["gate", "nft", "--tenant", "acme", "--wait-seconds", "5"])
    .args(["--server", &srv.url, "--token", &srv.admin])
    .arg("--peer")
    .arg(format!("{id}={}", edge.laptop_addr))
    .args(["--reachable", "192.0.2.0/24"]);
    let gate = Daemon::spawn(cmd, dir.join("gate-nft.log"));
    gate.until_logged(&format!(
        "quarantined {} ({id}): overdue: past its deadline: PD-G-1",
        edge.laptop_addr
    ));
    let table = run(Command::new("ip").args([
        "netns",
        "exec",
        &edge.gateway,
        "nft",
        "list",
        "table",
        "inet",
        "patchday_gate",
    ]));
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(table.contains(&edge.laptop_addr), "{table}");
    assert!(
        table.contains(&edge.server_addr) && table.contains("192.0.2.0/24"),
        "{table}"
    );

    // Quarantined: the application is out of reach, the server is not.
    assert!(
        !edge.laptop_connects(&edge.app_addr, app),
        "a quarantined laptop reached the application"
    );
    assert!(
        edge.laptop_connects(&edge.server_addr, server_port),
        "a quarantined laptop cannot reach the Patchday server"
    );

    // Its agent installs the update through the quarantine, and the gate releases it.
    let o = edge
        .on_laptop(&laptop.agent_command(&srv.url, None, &[]))
        .output()
        .unwrap();
    assert!(o.status.success(), "agent run in quarantine: {}", text(&o));
    assert_eq!(laptop.version("pd-gate-a").as_deref(), Some("1.0-2"));
    gate.until_logged(&format!("released {} ({id})", edge.laptop_addr));
    assert!(
        edge.laptop_connects(&edge.app_addr, app),
        "a patched laptop is still quarantined: {}",
        gate.log()
    );
}
