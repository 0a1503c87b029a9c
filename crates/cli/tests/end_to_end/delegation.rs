//! Issue 9, points 2 and 3, end to end with the real `patchday` server and the real agent
//! in lab hosts: an update signed by the online mirror role (its own key, delegated by the
//! offline targets key) installs; a tenant's private update is served to that tenant only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use patchday_lab::DebSpec;
use patchday_testkit::{scratch, text, Bins, Catalog, Host, Server, SigningHost};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

/// A package at 1.0-1 and its security update 1.0-2.
fn debs(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let out = dir.join("pkgs");
    std::fs::create_dir_all(&out).unwrap();
    let old = DebSpec::new(name, "1.0-1").changelog("1.0-1", "Initial release.");
    let new = DebSpec::new(name, "1.0-2")
        .changelog("1.0-2", "Fix CVE-2099-0909.")
        .changelog("1.0-1", "Initial release.");
    (
        patchday_lab::build_deb(&old, &out).unwrap(),
        patchday_lab::build_deb(&new, &out).unwrap(),
    )
}

fn patchday(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_patchday"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: std::process::Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    text(&o)
}

/// A server with `cat` pushed, tenants `acme` and `globex` (group `web` each), and an
/// enrolment token for `tenant`.
fn serve(dir: &Path, cat: &Catalog) -> Server {
    let srv = Server::start(&bins(), dir, &cat.root());
    srv.cli(&["catalog", "push", "--repo", cat.repo.to_str().unwrap()]);
    for t in ["acme", "globex"] {
        srv.cli(&["tenant", "create", t]);
        srv.cli(&["group", "create", "--tenant", t, "web"]);
    }
    srv
}

fn enroll_token(srv: &Server, tenant: &str) -> String {
    srv.cli(&["enroll-token", "create", "--tenant", tenant, "--unlimited"])
        .trim()
        .to_string()
}

/// Enrols a host holding `old` into `tenant`, puts it into group `web` and approves `id`.
fn enrolled_host(srv: &Server, dir: &Path, tenant: &str, name: &str, old: &Path, id: &str) -> Host {
    let h = Host::new(&bins(), dir, name);
    h.lab.install_deb(old).unwrap();
    let token = enroll_token(srv, tenant);
    let o = h.agent(&srv.url, Some(&token));
    assert!(o.status.success(), "enrol: {}", text(&o));
    let hosts: Vec<Value> =
        serde_json::from_str(&srv.cli(&["host", "list", "--tenant", tenant, "--format", "json"]))
            .unwrap();
    let host_id = hosts
        .iter()
        .find(|x| x["hostname"] == name)
        .and_then(|x| x["id"].as_str())
        .unwrap()
        .to_string();
    srv.cli(&["host", "set-groups", "--tenant", tenant, &host_id, "web"]);
    srv.cli(&["approve", "--tenant", tenant, "--group", "web", id]);
    h
}

#[test]
fn mirror_signed_update_installs_end_to_end_through_server_and_agent() {
    let _serial = patchday_testkit::serial();
    let d = scratch();
    let dir = d.path();
    let (old, new) = debs(dir, "pd-test-mirrored");
    let cat = Catalog::new(&bins(), dir);
    // The mirror's key, made on the mirror host; only its public half reaches the catalog.
    let mirror_keys = dir.join("mirror-keys");
    ok(patchday(&[
        "keys",
        "generate",
        "--keys",
        mirror_keys.to_str().unwrap(),
    ]));
    let mirror_key = mirror_keys.join("targets.pem");
    let mirror_key = mirror_key.to_str().unwrap();
    let (keys, repo) = (cat.keys.to_str().unwrap(), cat.repo.to_str().unwrap());
    ok(patchday(&[
        "catalog",
        "delegate",
        "--keys",
        keys,
        "--repo",
        repo,
        "--role",
        "mirror",
        "--key-file",
        mirror_key,
    ]));
    // Outside the mirror's paths (an id without the mirror- prefix): refused, nothing signed.
    let o = cat.add_deb(
        "PD-M-1",
        &new,
        &[
            "--emergency",
            "t",
            "--as",
            "mirror",
            "--key-file",
            mirror_key,
        ],
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("outside the paths delegated to role mirror"),
        "{}",
        text(&o)
    );
    let o = cat.add_deb(
        "mirror-DSA-9999-1",
        &new,
        &[
            "--emergency",
            "t",
            "--since",
            "1.0-1",
            "--as",
            "mirror",
            "--key-file",
            mirror_key,
        ],
    );
    assert!(o.status.success(), "{}", text(&o));

    let srv = serve(dir, &cat);
    let updates = srv.cli(&["updates", "--tenant", "acme"]);
    assert!(updates.contains("mirror-DSA-9999-1"), "{updates}");
    let h = enrolled_host(&srv, dir, "acme", "mirrored-1", &old, "mirror-DSA-9999-1");
    let o = h.agent(&srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.version("pd-test-mirrored").as_deref(), Some("1.0-2"));
}

/// The current file names (`N.tenant-acme.json`, `<sha>.<name>`) a probe asks for.
fn private_files(repo: &Path) -> (String, Vec<String>) {
    let meta = std::fs::read_dir(repo.join("metadata"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tenant-acme.json"))
        .max_by_key(|n| n.split('.').next().unwrap().parse::<u64>().unwrap())
        .unwrap();
    let targets: Vec<String> = std::fs::read_dir(repo.join("targets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tenant-acme~") || n.ends_with(".update-PD-ACME-1.json"))
        .collect();
    assert_eq!(targets.len(), 2, "{targets:?}");
    (meta, targets)
}

#[test]
fn private_update_is_served_to_its_own_tenant_only() {
    let _serial = patchday_testkit::serial();
    let d = scratch();
    let dir = d.path();
    let (old, new) = debs(dir, "pd-test-private");
    let cat = Catalog::new(&bins(), dir);
    let o = cat.add_deb(
        "PD-ACME-1",
        &new,
        &["--emergency", "t", "--since", "1.0-1", "--tenant", "acme"],
    );
    assert!(o.status.success(), "{}", text(&o));
    // Another tenant's private update beside it: the acme agent must do without its role.
    let o = cat.add_deb(
        "PD-GLOBEX-1",
        &new,
        &["--emergency", "t", "--since", "1.0-1", "--tenant", "globex"],
    );
    assert!(o.status.success(), "{}", text(&o));
    // Not in the shared targets role: the top-level targets.json does not list it.
    let top = std::fs::read_dir(cat.repo.join("metadata"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".targets.json"))
        .max()
        .unwrap();
    let top = std::fs::read_to_string(top).unwrap();
    assert!(
        !top.contains("PD-ACME-1") && !top.contains("pd-test-private"),
        "{top}"
    );

    let srv = serve(dir, &cat);
    let reader = |tenant: &str| {
        srv.cli(&[
            "token",
            "create",
            "--role",
            "read-only",
            "--tenant",
            tenant,
            "--name",
            "probe",
        ])
        .trim()
        .to_string()
    };
    let (acme_ro, globex_ro) = (reader("acme"), reader("globex"));
    let globex_host = SigningHost::enrol(&srv, &enroll_token(&srv, "globex"), "globex-probe")
        .unwrap()
        .credential;
    let acme_host = SigningHost::enrol(&srv, &enroll_token(&srv, "acme"), "acme-probe")
        .unwrap()
        .credential;

    let (meta, targets) = private_files(&cat.repo);
    let mut paths = vec![format!("/v1/tuf/metadata/{meta}")];
    paths.extend(targets.iter().map(|t| format!("/v1/tuf/targets/{t}")));
    for path in &paths {
        for (who, cred) in [
            ("globex read-only", &globex_ro),
            ("globex host", &globex_host),
        ] {
            let (code, body) = srv.http_get(path, Some(cred));
            assert_eq!(code, 404, "{who} read {path}: {body}");
        }
        for (who, cred) in [
            ("acme read-only", &acme_ro),
            ("acme host", &acme_host),
            ("provider admin", &srv.admin),
        ] {
            let (code, body) = srv.http_get(path, Some(cred));
            assert_eq!(code, 200, "{who} could not read {path}: {body}");
        }
    }
    // The shared metadata stays readable to everyone.
    for name in ["timestamp.json", "1.root.json"] {
        let (code, _) = srv.http_get(&format!("/v1/tuf/metadata/{name}"), Some(&globex_ro));
        assert_eq!(code, 200, "{name}");
    }

    // The owning tenant's agent installs it.
    let h = enrolled_host(&srv, dir, "acme", "private-1", &old, "PD-ACME-1");
    let o = h.agent(&srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.version("pd-test-private").as_deref(), Some("1.0-2"));
}
