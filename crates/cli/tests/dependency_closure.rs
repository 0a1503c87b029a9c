//! Issue 9, point 4, the closure of new dependencies and the server-side repair: a signed
//! apt archive built and served by the test, `patchday mirror run` against the real
//! server's inventories, the real check-in assigning dependency payloads in the director
//! metadata, and `patchday-agent` running real dpkg in overlay hosts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use patchday_lab::DebSpec;
use patchday_testkit::{scratch, text, Bins, Catalog, Host, Server};
use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, KeyType, SecretKeyParamsBuilder, SignedPublicKey,
};
use pgp::ser::Serialize as _;
use pgp::types::Password;
use serde_json::Value;
use sha2::{Digest, Sha256};

const SUITE: &str = "bookworm-security";

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

/// Release dates relative to the wall clock, which the CLI under test reads.
#[allow(clippy::disallowed_methods)]
fn wall_clock() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// `dir/archive` with `debs` in its pool, a `Packages.gz` that lists their `Depends`, and
/// an `InRelease` signed by a fresh key (public half in `dir/archive-keyring.gpg`),
/// served on 127.0.0.1; `dir/mirror.toml` names it. Returns the URL.
fn dependency_archive(dir: &Path, debs: &[DebSpec]) -> String {
    let root = dir.join("archive");
    let pool = root.join("pool/main");
    std::fs::create_dir_all(&pool).unwrap();
    let mut packages = String::new();
    for spec in debs {
        let p = patchday_lab::build_deb(spec, &pool).unwrap();
        let info = patchday_pkg::deb::read_deb(&p).unwrap().info;
        let bytes = std::fs::read(&p).unwrap();
        let depends = if info.depends.is_empty() {
            String::new()
        } else {
            format!("Depends: {}\n", info.depends)
        };
        packages.push_str(&format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\nSource: {} ({})\n{depends}Filename: pool/main/{}\nSize: {}\nSHA256: {}\n\n",
            info.package,
            info.version,
            info.architecture,
            info.source,
            info.source_version,
            p.file_name().unwrap().to_str().unwrap(),
            bytes.len(),
            hex::encode(Sha256::digest(&bytes)),
        ));
    }
    let bin = root.join(format!("dists/{SUITE}/main/binary-amd64"));
    std::fs::create_dir_all(&bin).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(packages.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    std::fs::write(bin.join("Packages.gz"), &gz).unwrap();
    let now = wall_clock();
    let fmt = |t: jiff::Timestamp| t.strftime("%a, %d %b %Y %H:%M:%S UTC").to_string();
    let release = format!(
        "Suite: {SUITE}\nCodename: {SUITE}\nDate: {}\nValid-Until: {}\nSHA256:\n {} {} main/binary-amd64/Packages.gz\n",
        fmt(now - jiff::SignedDuration::from_hours(1)),
        fmt(now + jiff::SignedDuration::from_hours(24 * 7)),
        hex::encode(Sha256::digest(&gz)),
        gz.len()
    );
    let key = SecretKeyParamsBuilder::default()
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id("Closure Test Archive <closure@test.invalid>".into())
        .passphrase(None)
        .build()
        .unwrap()
        .generate(rand::thread_rng())
        .unwrap();
    let signed = CleartextSignedMessage::sign(
        rand::thread_rng(),
        &release,
        &key.primary_key,
        &Password::empty(),
    )
    .unwrap();
    std::fs::write(
        root.join(format!("dists/{SUITE}/InRelease")),
        signed.to_armored_string(ArmorOptions::default()).unwrap(),
    )
    .unwrap();
    let mut f = std::fs::File::create(dir.join("archive-keyring.gpg")).unwrap();
    SignedPublicKey::from(key).to_writer(&mut f).unwrap();

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            let app =
                axum::Router::new().fallback_service(tower_http::services::ServeDir::new(root));
            axum::serve(l, app).await.unwrap();
        });
    });
    let url = format!("http://{addr}/");
    std::fs::write(
        dir.join("mirror.toml"),
        format!(
            "[[source]]\nname = \"test-security\"\nuri = \"{url}\"\nsuite = \"{SUITE}\"\ncomponents = [\"main\"]\narchitectures = [\"amd64\"]\nkeyring = \"archive-keyring.gpg\"\n"
        ),
    )
    .unwrap();
    url
}

/// A package of `source`, with a changelog entry naming a CVE.
fn pkg(name: &str, version: &str, source: &str, depends: Option<&str>) -> DebSpec {
    let mut s = DebSpec::new(name, version)
        .source(source, version)
        .changelog(version, "Security upload: fix CVE-2099-0950.")
        .file(
            format!("/usr/share/{name}/version"),
            format!("{version}\n").into_bytes(),
            0o644,
        );
    if let Some(d) = depends {
        s = s.depends(d);
    }
    s
}

fn run_mirror(cat: &Catalog, dir: &Path, srv: &Server) -> Output {
    let last_month = wall_clock()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .checked_sub(jiff::Span::new().months(1))
        .unwrap()
        .strftime("%Y-%m")
        .to_string();
    Command::new(env!("CARGO_BIN_EXE_patchday"))
        .args(["mirror", "run", "--config"])
        .arg(dir.join("mirror.toml"))
        .arg("--repo")
        .arg(&cat.repo)
        .arg("--keys")
        .arg(&cat.keys)
        .args([
            "--server",
            &srv.url,
            "--token",
            &srv.admin,
            "--train",
            &last_month,
        ])
        .env_remove("PATCHDAY_SERVER")
        .env_remove("PATCHDAY_TOKEN")
        .output()
        .unwrap()
}

/// A server with `cat`'s catalog, tenant `acme` with group `web`, and an enrolment token.
fn server(dir: &Path, cat: &Catalog) -> (Server, String) {
    let srv = Server::start(&bins(), dir, &cat.root());
    srv.cli(&["catalog", "push", "--repo", cat.repo.to_str().unwrap()]);
    srv.cli(&["tenant", "create", "acme"]);
    srv.cli(&["group", "create", "--tenant", "acme", "web"]);
    let enroll = srv
        .cli(&["enroll-token", "create", "--tenant", "acme", "--unlimited"])
        .trim()
        .to_string();
    (srv, enroll)
}

/// A host with `debs` installed, enrolled, in group `web`; returns it and its id.
fn host(dir: &Path, srv: &Server, enroll: &str, name: &str, debs: &[PathBuf]) -> (Host, String) {
    let h = Host::new(&bins(), dir, name);
    for d in debs {
        h.lab.install_deb(d).unwrap();
    }
    let o = h.agent(&srv.url, Some(enroll));
    assert!(o.status.success(), "enrol: {}", text(&o));
    let hosts: Vec<Value> =
        serde_json::from_str(&srv.cli(&["host", "list", "--tenant", "acme", "--format", "json"]))
            .unwrap();
    let id = hosts
        .iter()
        .find(|x| x["hostname"] == name)
        .and_then(|x| x["id"].as_str())
        .unwrap()
        .to_string();
    srv.cli(&["host", "set-groups", "--tenant", "acme", &id, "web"]);
    (h, id)
}

fn state_of(srv: &Server, hostname: &str, update: &str) -> (String, String) {
    let rows = srv.report_rows();
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

fn host_row(srv: &Server, hostname: &str) -> Value {
    let rows: Vec<Value> =
        serde_json::from_str(&srv.cli(&["report", "--by", "host", "--format", "json"])).unwrap();
    rows.into_iter()
        .find(|r| r["hostname"] == hostname)
        .unwrap_or_else(|| panic!("no report row for {hostname}"))
}

/// Runs a program in the host; returns (success, stdout + stderr).
fn in_host(h: &Host, program: &str, args: &[&str]) -> (bool, String) {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let o = h.lab.run(Path::new(program), &args).unwrap();
    (o.status.success(), text(&o))
}

/// `dpkg --audit` and `apt-get check` in the host: no unmet dependency, nothing half done.
fn assert_consistent(h: &Host) {
    if !h.is_overlay() {
        return;
    }
    let (ok, out) = in_host(h, "dpkg", &["--audit"]);
    assert!(ok && out.trim().is_empty(), "dpkg --audit: {out}");
    let (ok, out) = in_host(h, "apt-get", &["check"]);
    assert!(ok, "apt-get check: {out}");
}

#[test]
fn an_update_whose_binary_needs_a_new_library_is_mirrored_and_installed_together_with_it() {
    let _serial = patchday_testkit::serial();
    let d = scratch();
    let dir = d.path();
    let b = bins();
    // pd-app 1.0-2 moves to a new library (another source, installed on no host); pd-tool
    // 1.0-2 needs a library no archive has.
    dependency_archive(
        dir,
        &[
            pkg("pd-app", "1.0-2", "pd-app", Some("pd-libnew2 (>= 2.0-1)")),
            pkg("pd-libnew2", "2.0-1", "pd-libnew", None),
            pkg("pd-tool", "1.0-2", "pd-tool", Some("pd-libgone (>= 9)")),
            pkg("pd-unrelated", "3.0-1", "pd-unrelated", None),
        ],
    );
    let old = dir.join("old");
    let app1 = patchday_lab::build_deb(&pkg("pd-app", "1.0-1", "pd-app", None), &old).unwrap();
    let tool1 = patchday_lab::build_deb(&pkg("pd-tool", "1.0-1", "pd-tool", None), &old).unwrap();
    let cat = Catalog::new(&b, dir);
    let (srv, enroll) = server(dir, &cat);
    let (h, _) = host(dir, &srv, &enroll, "closure-1", &[app1, tool1]);

    // The mirror imports the library without being told, and names what nothing has.
    let o = run_mirror(&cat, dir, &srv);
    assert!(o.status.success(), "mirror run: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.contains("signed 3 update(s)"), "{out}");
    assert!(
        out.contains(
            "dependency DEB-pd-libnew-2.0-1: DEB-pd-app-1.0-2: pd-app 1.0-2 needs pd-libnew2 (>= 2.0-1)"
        ),
        "{out}"
    );
    assert!(
        out.contains("warning: DEB-pd-tool-1.0-2: pd-tool 1.0-2 needs pd-libgone (>= 9), which neither the fleet nor the archive has"),
        "{out}"
    );
    assert!(
        out.contains("  DEB-pd-tool-1.0-2"),
        "imported anyway: {out}"
    );
    assert!(!out.contains("pd-unrelated"), "{out}");

    // The operator approves the application only; the check-in brings the library along.
    srv.cli(&["catalog", "push", "--repo", cat.repo.to_str().unwrap()]);
    srv.cli(&[
        "approve",
        "--tenant",
        "acme",
        "--group",
        "web",
        "DEB-pd-app-1.0-2",
    ]);
    let o = h.agent(&srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.version("pd-app").as_deref(), Some("1.0-2"));
    assert_eq!(h.version("pd-libnew2").as_deref(), Some("2.0-1"));
    assert_eq!(
        state_of(&srv, "closure-1", "DEB-pd-app-1.0-2").0,
        "installed"
    );
    assert_consistent(&h);

    // What no payload satisfies is refused before dpkg runs, by name and version.
    srv.cli(&[
        "approve",
        "--tenant",
        "acme",
        "--group",
        "web",
        "DEB-pd-tool-1.0-2",
    ]);
    let o = h.agent(&srv.url, None);
    assert!(!o.status.success(), "{}", text(&o));
    let (state, msg) = state_of(&srv, "closure-1", "DEB-pd-tool-1.0-2");
    assert_eq!(state, "failed", "{msg}");
    assert!(
        msg.contains("nothing was changed: pd-tool 1.0-2 needs pd-libgone (>= 9)"),
        "{msg}"
    );
    assert_eq!(h.version("pd-tool").as_deref(), Some("1.0-1"));
    assert_consistent(&h);
}

/// `pd-needy` unpacked but not configurable: it depends on `pd-gone`, which no host and
/// no archive has. dpkg reports it; only apt (removing it) can fix it.
fn unpack_needy(h: &Host, dir: &Path) {
    let deb = patchday_lab::build_deb(
        &DebSpec::new("pd-needy", "1.0-1").depends("pd-gone (>= 1)"),
        &dir.join("needy"),
    )
    .unwrap();
    h.lab
        .write_file("/tmp/pd-needy.deb", &std::fs::read(&deb).unwrap())
        .unwrap();
    let (ok, out) = in_host(h, "dpkg", &["--unpack", "/tmp/pd-needy.deb"]);
    assert!(ok, "dpkg --unpack: {out}");
}

#[test]
fn a_broken_host_repaired_by_host_repair_becomes_clean_and_compliant() {
    let _serial = patchday_testkit::serial();
    let d = scratch();
    let dir = d.path();
    let b = bins();
    let cat = Catalog::new(&b, dir);
    let unrelated = patchday_lab::build_deb(
        &pkg("pd-elsewhere", "1.0-2", "pd-elsewhere", None),
        &dir.join("pkgs"),
    )
    .unwrap();
    let o = cat.add_deb("PD-R-1", &unrelated, &["--emergency", "test"]);
    assert!(o.status.success(), "{}", text(&o));
    let (srv, enroll) = server(dir, &cat);
    let (h, id) = host(dir, &srv, &enroll, "repair-2", &[]);
    if !h.is_overlay() {
        eprintln!("skipped: apt-get -f install runs only in an overlay host");
        return;
    }
    unpack_needy(&h, dir);

    // The agent's own recovery cannot fix it: the host reports broken, the run goes on.
    let o = h.agent(&srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    let row = host_row(&srv, "repair-2");
    assert!(
        row["dpkg"].as_str().unwrap().starts_with("broken: "),
        "{row}"
    );
    assert_eq!(row["compliant"], "no", "{row}");

    // Without apt, the signed repair runs, fails and says so; the request stays.
    let said = srv.cli(&["host", "repair", "--tenant", "acme", &id]);
    assert!(
        said.contains("will run the repair at its next check-in"),
        "{said}"
    );
    let o = h.agent(&srv.url, None);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("repair: the host is still broken: dpkg says:"),
        "{}",
        text(&o)
    );
    let row = host_row(&srv, "repair-2");
    assert!(
        row["agent"].as_str().unwrap().contains("still broken"),
        "{row}"
    );

    // With apt allowed, the repair removes what cannot be configured.
    srv.cli(&["host", "repair", "--tenant", "acme", &id, "--allow-apt"]);
    let o = h.agent(&srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("asks for a repair"), "{}", text(&o));
    assert_eq!(h.version("pd-needy"), None);
    assert_consistent(&h);
    let row = host_row(&srv, "repair-2");
    assert_eq!(row["dpkg"], "ok", "{row}");
    assert_eq!(row["agent"], "ok", "{row}");
    assert_eq!(row["compliant"], "yes", "{row}");
    let log = srv.cli(&["log", "--tenant", "acme"]);
    assert!(log.contains("host.repair"), "{log}");

    // Clean, the request is cleared: broken again, the next run repairs nothing.
    unpack_needy(&h, dir);
    let o = h.agent(&srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("asks for a repair"), "{}", text(&o));
    assert!(host_row(&srv, "repair-2")["dpkg"]
        .as_str()
        .unwrap()
        .starts_with("broken: "));
}

#[test]
fn host_repair_of_another_tenants_host_is_refused() {
    let _serial = patchday_testkit::serial();
    let d = scratch();
    let dir = d.path();
    let cat = Catalog::new(&bins(), dir);
    let (srv, _) = server(dir, &cat);
    srv.cli(&["tenant", "create", "other"]);
    let other = srv
        .cli(&[
            "token",
            "create",
            "--role",
            "tenant-admin",
            "--tenant",
            "other",
            "--name",
            "o",
        ])
        .trim()
        .to_string();
    let o = srv.cli_as(
        &other,
        &["host", "repair", "--tenant", "acme", "web-1-00000000"],
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("404") || text(&o).to_lowercase().contains("not found"),
        "{}",
        text(&o)
    );
}

/// A proxy in front of the server that adds `inject(check-in answer)` to every check-in
/// answer, as a man in the middle (or an unsigned field of a compromised proxy) would.
fn rewriting_proxy(upstream: &str, inject: fn(&mut Value)) -> String {
    use std::io::Read;
    let up = upstream.trim_start_matches("http://").to_string();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut client) = conn else { continue };
            let up = up.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut b).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
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
                let head = head.replacen("\r\n", "\r\nConnection: close\r\n", 1);
                let mut s = std::net::TcpStream::connect(&up).unwrap();
                s.write_all(head.as_bytes()).unwrap();
                s.write_all(&body).unwrap();
                let mut resp = Vec::new();
                s.read_to_end(&mut resp).unwrap();
                if head.starts_with("POST /v1/agent/checkin") {
                    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    let mut v: Value = serde_json::from_slice(&resp[split..]).unwrap();
                    inject(&mut v);
                    let body = serde_json::to_vec(&v).unwrap();
                    let mut out = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    out.extend(body);
                    resp = out;
                }
                let _ = client.write_all(&resp);
            });
        }
    });
    url
}

/// A repair instruction as the director metadata would carry it.
fn instruction() -> Value {
    serde_json::json!({"allow_apt": true, "requested": "2026-12-01T00:00:00Z"})
}

#[test]
fn a_repair_instruction_outside_the_signed_metadata_is_ignored() {
    let _serial = patchday_testkit::serial();
    let d = scratch();
    let dir = d.path();
    let cat = Catalog::new(&bins(), dir);
    let unrelated = patchday_lab::build_deb(
        &pkg("pd-elsewhere", "1.0-2", "pd-elsewhere", None),
        &dir.join("pkgs"),
    )
    .unwrap();
    let o = cat.add_deb("PD-R-2", &unrelated, &["--emergency", "test"]);
    assert!(o.status.success(), "{}", text(&o));
    let (srv, enroll) = server(dir, &cat);
    let (h, _) = host(dir, &srv, &enroll, "mitm-1", &[]);
    if !h.is_overlay() {
        eprintln!("skipped: apt-get -f install runs only in an overlay host");
        return;
    }
    unpack_needy(&h, dir);

    // Beside the signed metadata: in the answer, and in the director document's envelope.
    let beside = rewriting_proxy(&srv.url, |v| {
        v["repair"] = instruction();
        let mut doc: Value = serde_json::from_str(v["director"].as_str().unwrap()).unwrap();
        doc["repair"] = instruction();
        v["director"] = Value::String(doc.to_string());
    });
    let o = h.agent(&beside, None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("asks for a repair"), "{}", text(&o));
    assert!(in_host(&h, "dpkg", &["--audit"]).1.contains("pd-needy"));

    // Inside the signed object without the director key: the whole answer is refused.
    let inside = rewriting_proxy(&srv.url, |v| {
        let mut doc: Value = serde_json::from_str(v["director"].as_str().unwrap()).unwrap();
        doc["signed"]["repair"] = instruction();
        v["director"] = Value::String(doc.to_string());
    });
    let o = h.agent(&inside, None);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("not signed by the director key pinned at enrolment"),
        "{}",
        text(&o)
    );
    assert!(in_host(&h, "dpkg", &["--audit"]).1.contains("pd-needy"));
    assert!(!text(&o).contains("asks for a repair"), "{}", text(&o));
}
