//! `patchday mirror run` end to end (issue 9, point 1): a signed apt archive built by the
//! test and served on 127.0.0.1, the real `patchday` server, a real host's inventory as
//! the selection, the real catalog signing path, and the agent installing the result.

// Test helpers outside #[test] fns fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use patchday_lab::DebSpec;
use patchday_testkit::{scratch, text, Bins, Catalog, Host, Server};
use serde_json::Value;

#[path = "common/apt_archive.rs"]
mod apt_archive;
use apt_archive::{last_month, mirror_run, signed_archive, write_config};

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

fn libfoo(name: &str, version: &str, arch: &str) -> DebSpec {
    DebSpec::new(name, version)
        .architecture(arch)
        .source("libfoo", version)
        .changelog(version, "Security upload (DSA-5999-1): fix CVE-2026-1111.")
        .changelog("1.2-1", "Initial release.")
}

#[test]
fn mirror_run_imports_what_the_fleet_has_installed_as_one_update_per_source() {
    let d = scratch();
    let dir = d.path();
    let b = bins();
    let url = signed_archive(
        dir,
        &[
            libfoo("libfoo1", "1.2-1+deb12u1", "amd64"),
            libfoo("libfoo-dev", "1.2-1+deb12u1", "amd64"),
            libfoo("libfoo-doc", "1.2-1+deb12u1", "all"),
            DebSpec::new("bar", "2.0-1"),
        ],
    );
    write_config(dir, &url);
    let cat = Catalog::new(&b, dir);
    let srv = Server::start(&b, dir, &cat.root());
    // Agents verify the catalog on every run: the server has one before hosts enrol.
    srv.cli(&["catalog", "push", "--repo", cat.repo.to_str().unwrap()]);
    srv.cli(&["tenant", "create", "acme"]);
    srv.cli(&["group", "create", "--tenant", "acme", "web"]);
    let enroll = srv
        .cli(&["enroll-token", "create", "--tenant", "acme"])
        .trim()
        .to_string();
    // The host has the old libfoo1 and nothing of bar.
    let old =
        patchday_lab::build_deb(&libfoo("libfoo1", "1.2-1", "amd64"), &dir.join("old")).unwrap();
    let h = Host::new(&b, dir, "web1");
    h.lab.install_deb(&old).unwrap();
    let o = h.agent(&srv.url, Some(&enroll));
    assert!(o.status.success(), "enrol: {}", text(&o));

    // A tenant token of another tenant sees none of acme's packages.
    srv.cli(&["tenant", "create", "other"]);
    let other = srv
        .cli(&[
            "token",
            "create",
            "--role",
            "read-only",
            "--tenant",
            "other",
            "--name",
            "o",
        ])
        .trim()
        .to_string();
    let (status, body) = srv.http_get("/v1/fleet/source-packages", Some(&other));
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["hosts"], 0);
    assert_eq!(v["sources"], serde_json::json!({}));

    // Last month's train, so its patch day has passed and it can be approved now.
    let last_month = last_month();
    let run = [
        "--server",
        &srv.url,
        "--token",
        &srv.admin,
        "--train",
        &last_month,
    ];
    let o = mirror_run(&cat, dir, &run);
    assert!(o.status.success(), "mirror run: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("signed 1 update(s)"), "{out}");
    assert!(out.contains("DEB-libfoo-1.2-1_pdeb12u1"), "{out}");

    // One signed document with all three binaries, its CVE and DSA.
    let targets = std::fs::read_dir(cat.repo.join("targets")).unwrap();
    let doc = targets
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.to_str()
                .unwrap()
                .ends_with("update-DEB-libfoo-1.2-1_pdeb12u1.json")
        })
        .expect("update document signed into the catalog");
    let doc: Value = serde_json::from_slice(&std::fs::read(doc).unwrap()).unwrap();
    assert_eq!(doc["payloads"].as_array().unwrap().len(), 3);
    assert_eq!(doc["cves"], serde_json::json!(["CVE-2026-1111"]));
    assert!(
        doc["title"].as_str().unwrap().contains("DSA-5999-1"),
        "{doc}"
    );
    // The upstream evidence is signed into the document (issue 9, point 2).
    let up = &doc["upstream"];
    assert!(
        up["in-release-url"]
            .as_str()
            .unwrap()
            .ends_with("/InRelease"),
        "{doc}"
    );
    assert_eq!(up["in-release-sha256"].as_str().unwrap().len(), 64, "{doc}");
    assert!(
        up["index-path"].as_str().unwrap().contains("Packages"),
        "{doc}"
    );
    assert_eq!(up["index-sha256"].as_str().unwrap().len(), 64, "{doc}");
    assert!(
        !up["archive-key-fingerprint"].as_str().unwrap().is_empty(),
        "{doc}"
    );

    // Nothing new: the second run says so and signs nothing.
    let o = mirror_run(&cat, dir, &run);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("unchanged"),
        "{}",
        text(&o)
    );

    // The fleet installs it like any update.
    srv.cli(&["catalog", "push", "--repo", cat.repo.to_str().unwrap()]);
    let hosts: Vec<Value> =
        serde_json::from_str(&srv.cli(&["host", "list", "--tenant", "acme", "--format", "json"]))
            .unwrap();
    let id = hosts[0]["id"].as_str().unwrap().to_string();
    srv.cli(&["host", "set-groups", "--tenant", "acme", &id, "web"]);
    srv.cli(&[
        "approve",
        "--tenant",
        "acme",
        "--group",
        "web",
        "DEB-libfoo-1.2-1_pdeb12u1",
    ]);
    let o = h.agent(&srv.url, None);
    assert!(o.status.success(), "agent: {}", text(&o));
    assert_eq!(h.version("libfoo1").as_deref(), Some("1.2-1+deb12u1"));
}

#[test]
fn mirror_run_with_a_wrong_archive_key_signs_nothing() {
    let d = scratch();
    let dir = d.path();
    let url = signed_archive(dir, &[DebSpec::new("bar", "2.0-1")]);
    write_config(dir, &url);
    // Another archive's key in place of the pinned one.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    signed_archive(&other, &[DebSpec::new("baz", "1")]);
    std::fs::copy(
        other.join("archive-keyring.gpg"),
        dir.join("archive-keyring.gpg"),
    )
    .unwrap();
    let cat = Catalog::new(&bins(), dir);
    let o = mirror_run(&cat, dir, &["--all"]);
    assert!(!o.status.success());
    let err = text(&o);
    assert!(
        err.contains("does not verify against the pinned keyring"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(cat.repo.join("targets")).unwrap().count(),
        0,
        "nothing signed"
    );
}

/// Issue 9, point 2: the mirror signs as the delegated `mirror` role with its own key, so
/// the offline targets key stays offline; its updates carry the role's name and verify
/// under the delegation's paths, and the offline targets role lists none of them.
#[test]
fn mirror_run_as_the_delegated_mirror_role_signs_inside_its_paths() {
    let d = scratch();
    let dir = d.path();
    let url = signed_archive(dir, &[DebSpec::new("bar", "2.0-1")]);
    write_config(dir, &url);
    let cat = Catalog::new(&bins(), dir);
    let mirror_keys = dir.join("mirror-keys");
    let patchday = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_patchday"))
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", text(&o));
    };
    patchday(&["keys", "generate", "--keys", mirror_keys.to_str().unwrap()]);
    let mirror_key = mirror_keys.join("targets.pem");
    patchday(&[
        "catalog",
        "delegate",
        "--keys",
        cat.keys.to_str().unwrap(),
        "--repo",
        cat.repo.to_str().unwrap(),
        "--role",
        "mirror",
        "--key-file",
        mirror_key.to_str().unwrap(),
    ]);
    let o = mirror_run(
        &cat,
        dir,
        &[
            "--all",
            "--as",
            "mirror",
            "--key-file",
            mirror_key.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    // The mirror's hash bins (issue 9, point 6: `N.mirror.bin-xx.json`, current versions
    // only) list what the mirror role signed.
    let targets: Vec<String> = std::fs::read_dir(cat.repo.join("metadata"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(".mirror.bin-"))
        })
        .flat_map(|p| {
            let role: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
            role["signed"]["targets"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        targets
            .iter()
            .any(|n| n.starts_with("update-mirror-DEB-bar-")),
        "the mirror role signs the update document: {targets:?}"
    );

    assert!(
        targets.iter().any(|n| n.starts_with("mirror~bar_")),
        "and its payloads: {targets:?}"
    );
    // A second run finds the update it already signed as the role.
    let o = mirror_run(
        &cat,
        dir,
        &[
            "--all",
            "--as",
            "mirror",
            "--key-file",
            mirror_key.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
}
