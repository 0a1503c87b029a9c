//! Issue 9, point 4, the closure of new dependencies and the server-side repair: a signed
//! apt archive built and served by the test, `patchday mirror run` against the real
//! server's inventories, the real check-in assigning dependency payloads in the director
//! metadata, and `patchday-agent` running real dpkg in overlay hosts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use patchday_lab::DebSpec;
use patchday_testkit::{
    acme_enroll_token, acme_with_web, scratch, text, Bins, Catalog, Host, Server,
};
use serde_json::Value;

use crate::support::apt_archive;
use apt_archive::{last_month, mirror_run, write_config, AptArchive};

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
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

/// A server with `cat`'s catalog, tenant `acme` with group `web`, and an enrolment token.
fn server(dir: &Path, cat: &Catalog) -> (Server, String) {
    let srv = Server::start(&bins(), dir, &cat.root());
    acme_with_web(&srv, &cat.repo);
    let enroll = acme_enroll_token(&srv, &["--unlimited"]);
    (srv, enroll)
}

/// Approves `update` for tenant `acme`'s group `web`.
fn approve_for_web(srv: &Server, update: &str) {
    srv.cli(&["approve", "--tenant", "acme", "--group", "web", update]);
}

/// A host with `others` and then `deb` installed, enrolled, in group `web`; returns it
/// and its id.
fn host(
    dir: &Path,
    srv: &Server,
    enroll: &str,
    name: &str,
    deb: &Path,
    others: &[PathBuf],
) -> (Host, String) {
    let h = Host::new(&bins(), dir, name);
    for d in others {
        h.lab.install_deb(d).unwrap();
    }
    let id = h.enrol_into_web(srv, &srv.url, enroll, deb);
    (h, id)
}

/// `dpkg --audit` and `apt-get check` in the host: no unmet dependency, nothing half done.
fn assert_consistent(h: &Host) {
    if !h.is_overlay() {
        return;
    }
    let (ok, out) = h.run_in("dpkg", &["--audit"]);
    assert!(ok && out.trim().is_empty(), "dpkg --audit: {out}");
    let (ok, out) = h.run_in("apt-get", &["check"]);
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
    let mut archive = AptArchive::serve(dir);
    archive.publish(&[
        pkg("pd-app", "1.0-2", "pd-app", Some("pd-libnew2 (>= 2.0-1)")),
        pkg("pd-libnew2", "2.0-1", "pd-libnew", None),
        pkg("pd-tool", "1.0-2", "pd-tool", Some("pd-libgone (>= 9)")),
        pkg("pd-unrelated", "3.0-1", "pd-unrelated", None),
    ]);
    write_config(dir, &archive.url);
    let old = dir.join("old");
    let app1 = patchday_lab::build_deb(&pkg("pd-app", "1.0-1", "pd-app", None), &old).unwrap();
    let tool1 = patchday_lab::build_deb(&pkg("pd-tool", "1.0-1", "pd-tool", None), &old).unwrap();
    let cat = Catalog::new(&b, dir);
    let (srv, enroll) = server(dir, &cat);
    let (h, _) = host(dir, &srv, &enroll, "closure-1", &app1, &[tool1]);

    // The mirror imports the library without being told, and names what nothing has.
    let train = last_month();
    let o = mirror_run(
        &cat,
        dir,
        &[
            "--server", &srv.url, "--token", &srv.admin, "--train", &train,
        ],
    );
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
    approve_for_web(&srv, "DEB-pd-app-1.0-2");
    let o = h.agent(&srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.version("pd-app").as_deref(), Some("1.0-2"));
    assert_eq!(h.version("pd-libnew2").as_deref(), Some("2.0-1"));
    assert_eq!(
        srv.update_state("closure-1", "DEB-pd-app-1.0-2").0,
        "installed"
    );
    assert_consistent(&h);

    // What no payload satisfies is refused before dpkg runs, by name and version.
    approve_for_web(&srv, "DEB-pd-tool-1.0-2");
    let o = h.agent(&srv.url, None);
    assert!(!o.status.success(), "{}", text(&o));
    let (state, msg) = srv.update_state("closure-1", "DEB-pd-tool-1.0-2");
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
    let (ok, out) = h.run_in("dpkg", &["--unpack", "/tmp/pd-needy.deb"]);
    assert!(ok, "dpkg --unpack: {out}");
}

/// A catalog with an update the host does not need, a server, and host `name` enrolled
/// into `web` with `pd-needy` left unpacked (see [`unpack_needy`]); `None` (skipped) where
/// the host is not an overlay, since `apt-get -f install` runs only there.
fn broken_world(dir: &Path, name: &str) -> Option<(Server, Host, String)> {
    let pkgs = dir.join("pkgs");
    let unrelated =
        patchday_lab::build_deb(&pkg("pd-elsewhere", "1.0-2", "pd-elsewhere", None), &pkgs)
            .unwrap();
    let base = patchday_lab::build_deb(&pkg("pd-base", "1.0-1", "pd-base", None), &pkgs).unwrap();
    let cat = Catalog::new(&bins(), dir);
    let o = cat.add_deb("PD-R-1", &unrelated, &["--emergency", "test"]);
    assert!(o.status.success(), "{}", text(&o));
    let (srv, enroll) = server(dir, &cat);
    let (h, id) = host(dir, &srv, &enroll, name, &base, &[]);
    // apt-get -f install runs only in an overlay host: a missing one fails under CI.
    if !h.is_overlay() && !patchday_lab::require(patchday_lab::Requirement::Root) {
        return None;
    }
    unpack_needy(&h, dir);
    Some((srv, h, id))
}

#[test]
fn a_broken_host_repaired_by_host_repair_becomes_clean_and_compliant() {
    let _serial = patchday_testkit::serial();
    let d = scratch();
    let dir = d.path();
    let Some((srv, h, id)) = broken_world(dir, "repair-2") else {
        return;
    };

    // The agent's own recovery cannot fix it: the host reports broken, the run goes on.
    let o = h.agent(&srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    let row = srv.host_report("repair-2");
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
    let row = srv.host_report("repair-2");
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
    let row = srv.host_report("repair-2");
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
    assert!(srv.host_report("repair-2")["dpkg"]
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
    let args = [
        "token",
        "create",
        "--role",
        "tenant-admin",
        "--tenant",
        "other",
        "--name",
        "o",
    ];
    let other = srv.cli(&args);
    let other = other.trim();
    let o = srv.cli_as(
        other,
        &["host", "repair", "--tenant", "acme", "web-1-00000000"],
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(
            "asking the host to repair its dpkg database: tenant acme not found (404 Not Found)"
        ),
        "{}",
        text(&o)
    );
}

/// The upstream URL and the change a [`rewriting_proxy`] makes.
type Rewrite = (String, fn(&mut Value));

/// A reverse proxy in front of the server that passes `inject` every check-in answer to
/// change, as a man in the middle would; returns its URL.
fn rewriting_proxy(upstream: &str, inject: fn(&mut Value)) -> String {
    use axum::body::{to_bytes, Body};
    use axum::extract::{Request, State};
    use axum::response::Response;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let upstream = upstream.trim_end_matches('/').to_string();
    async fn forward(State((upstream, inject)): State<Rewrite>, req: Request) -> Response {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut to =
            reqwest::Client::new().request(parts.method.clone(), format!("{upstream}{path}"));
        for (k, v) in parts.headers.iter().filter(|(k, _)| *k != "host") {
            to = to.header(k, v);
        }
        let answer = to
            .body(to_bytes(body, usize::MAX).await.unwrap())
            .send()
            .await
            .unwrap();
        let mut out = Response::builder().status(answer.status());
        for (k, v) in answer
            .headers()
            .iter()
            .filter(|(k, _)| *k != "content-length")
        {
            out = out.header(k, v);
        }
        let mut bytes = answer.bytes().await.unwrap().to_vec();
        if parts.uri.path() == "/v1/agent/checkin" {
            let mut v: Value = serde_json::from_slice(&bytes).unwrap();
            inject(&mut v);
            bytes = serde_json::to_vec(&v).unwrap();
        }
        out.body(Body::from(bytes)).unwrap()
    }
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new()
                .fallback(forward)
                .with_state((upstream, inject));
            axum::serve(l, app).await.unwrap();
        });
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
    let Some((srv, h, _)) = broken_world(dir, "mitm-1") else {
        return;
    };

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
    assert!(h.run_in("dpkg", &["--audit"]).1.contains("pd-needy"));

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
    assert!(h.run_in("dpkg", &["--audit"]).1.contains("pd-needy"));
    assert!(!text(&o).contains("asks for a repair"), "{}", text(&o));
}
