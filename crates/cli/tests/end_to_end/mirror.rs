//! `patchday mirror run` end to end (issue 9, point 1): a signed apt archive built by the
//! test and served on 127.0.0.1, the real `patchday` server, a real host's inventory as
//! the selection, the real catalog signing path, and the agent installing the result.

// Test helpers outside #[test] fns fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

use patchday_lab::DebSpec;
use patchday_testkit::{scratch, text, Bins, Catalog, Host, Server};
use serde_json::Value;

use crate::support::apt_archive;
use apt_archive::{delegate_mirror_role, libfoo, mirror_run, wall_clock, write_config, AptArchive};

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

/// Builds and serves a signed archive of `debs` in `dir` (keyring in
/// `dir/archive-keyring.gpg`) and returns its URL.
fn signed_archive(dir: &Path, debs: &[DebSpec]) -> String {
    let mut a = AptArchive::serve(dir);
    a.publish(debs);
    a.url
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
    let last_month = wall_clock()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .checked_sub(jiff::Span::new().months(1))
        .unwrap()
        .strftime("%Y-%m")
        .to_string();
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
    let mirror_key = delegate_mirror_role(&cat, dir);
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

// ---- Issue 9, point 2: `patchday catalog verify-upstream` ----

const LIBFOO_UPDATE: &str = "mirror-DEB-libfoo-1.2-1_pdeb12u1";

/// An archive with libfoo 1.2-1+deb12u1, a catalog delegating to `mirror`, and a mirror
/// run that signed libfoo's update as that role. Returns the archive and the role's key.
fn mirrored_libfoo(dir: &Path, cat: &Catalog) -> (AptArchive, std::path::PathBuf) {
    let mut archive = AptArchive::serve(dir);
    archive.publish(&[
        libfoo("libfoo1", "1.2-1+deb12u1", "amd64"),
        libfoo("libfoo-doc", "1.2-1+deb12u1", "all"),
    ]);
    write_config(dir, &archive.url);
    let key = delegate_mirror_role(cat, dir);
    let o = mirror_run(
        cat,
        dir,
        &[
            "--all",
            "--as",
            "mirror",
            "--key-file",
            key.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    (archive, key)
}

fn verify_upstream(cat: &Catalog, dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patchday"))
        .args(["catalog", "verify-upstream", "--repo"])
        .arg(&cat.repo)
        .arg("--config")
        .arg(dir.join("mirror.toml"))
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn verify_upstream_verifies_a_genuinely_mirrored_update_also_after_the_archive_moved_on() {
    let d = scratch();
    let dir = d.path();
    let cat = Catalog::new(&bins(), dir);
    let (mut archive, _) = mirrored_libfoo(dir, &cat);
    let o = verify_upstream(&cat, dir, &["--update", LIBFOO_UPDATE]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!("{LIBFOO_UPDATE}: verified (2 payload(s))")),
        "{out}"
    );
    // The archive moves on: its InRelease and index no longer list libfoo's version; the
    // copies the mirror kept still verify with the pinned key.
    archive.publish(&[DebSpec::new("bar", "2.0-1")]);
    let o = verify_upstream(&cat, dir, &["--all"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("1 verified, 0 differ"),
        "{}",
        text(&o)
    );
}

/// A stolen mirror key (with the online snapshot and timestamp keys a server running
/// `--mirror-every` holds) re-signs libfoo's update with other bytes for its payload and
/// the genuine upstream evidence copied into the document: the catalog verifies (the
/// key may sign under `mirror`), but verify-upstream finds what the archive never
/// published, and exits 1.
#[test]
fn verify_upstream_reports_a_payload_swapped_with_a_stolen_mirror_key() {
    let d = scratch();
    let dir = d.path();
    let cat = Catalog::new(&bins(), dir);
    let (_archive, key) = mirrored_libfoo(dir, &cat);
    let genuine = std::fs::read_dir(cat.repo.join("targets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.to_str()
                .unwrap()
                .ends_with(&format!("update-{LIBFOO_UPDATE}.json"))
        })
        .unwrap();
    let genuine: patchday_types::UpdateDocument =
        serde_json::from_slice(&std::fs::read(genuine).unwrap()).unwrap();

    let evil = patchday_lab::build_deb(
        &DebSpec::new("libfoo1", "1.2-1+deb12u1")
            .source("libfoo", "1.2-1+deb12u1")
            .changelog("1.2-1+deb12u1", "Nothing to see here."),
        &dir.join("evil"),
    )
    .unwrap();
    let payload = genuine
        .payloads
        .iter()
        .find(|p| p.package == "libfoo1")
        .unwrap();
    // What the thief signs, with the mirror key and the online keys.
    let sign = |id: &patchday_types::UpdateId,
                content: patchday_publish::UpdateContent,
                upstream: Option<patchday_types::UpstreamEvidence>| {
        let opts = patchday_publish::UpdateOptions {
            id: id.clone(),
            title: None,
            product: None,
            classification: None,
            severity: genuine.severity,
            release: genuine.release.clone(),
            supersedes: Vec::new(),
            since: None,
            tenants: Vec::new(),
            role: Some(patchday_publish::DelegatedSigner {
                role: "mirror".into(),
                key_files: vec![key.clone()],
            }),
            upstream,
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(patchday_publish::add_update(
            &patchday_trust::KeyPaths::in_dir(&cat.keys),
            &cat.repo,
            content,
            &opts,
            wall_clock(),
        ))
        .unwrap();
    };
    sign(
        &genuine.id,
        patchday_publish::UpdateContent {
            files: vec![evil],
            payloads: vec![patchday_types::PayloadRef {
                // The role prefixes its target names itself.
                target: payload.target.trim_start_matches("mirror~").to_owned(),
                ..payload.clone()
            }],
            cves: genuine.cves.clone(),
            description: genuine.description.clone(),
        },
        genuine.upstream.clone(),
    );
    // And an update of its own, without any upstream evidence.
    let rogue = patchday_lab::build_deb(&DebSpec::new("rogue", "1"), &dir.join("rogue")).unwrap();
    sign(
        &patchday_types::UpdateId::new("mirror-DEB-rogue-1").unwrap(),
        patchday_cli::catalog::describe_debs(&[rogue], None).unwrap(),
        None,
    );

    let o = verify_upstream(&cat, dir, &["--all"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("{LIBFOO_UPDATE}: MISMATCH")), "{out}");
    assert!(
        out.contains(&format!(
            "payload {}: the catalog signs sha256",
            payload.target
        )) && out.contains("the archive's index lists"),
        "{out}"
    );
    assert!(
        out.contains(
            "mirror-DEB-rogue-1: MISMATCH\n  - signed by the mirror role but records no upstream evidence"
        ),
        "{out}"
    );
    assert!(out.contains("0 verified, 2 differ"), "{out}");
}

// ---- Issue 10, point 7: superseded mirrored updates leave the catalog ----

/// The files of the catalog's `metadata/` other than root versions, and their bytes.
fn metadata_size(cat: &Catalog) -> (usize, u64) {
    let mut out = (0, 0);
    for e in std::fs::read_dir(cat.repo.join("metadata")).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().ends_with("root.json") {
            continue;
        }
        out.0 += 1;
        out.1 += e.metadata().unwrap().len();
    }
    out
}

/// Every name the mirror role's hash bins list now.
fn mirror_targets(cat: &Catalog) -> Vec<String> {
    let meta = cat.repo.join("metadata");
    let snapshot = std::fs::read_dir(&meta)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".snapshot.json"))
        .max_by_key(|n| n.split('.').next().unwrap().parse::<u64>().unwrap())
        .unwrap();
    let snapshot: Value =
        serde_json::from_slice(&std::fs::read(meta.join(snapshot)).unwrap()).unwrap();
    let mut names = Vec::new();
    for (file, m) in snapshot["signed"]["meta"].as_object().unwrap() {
        if !file.starts_with("mirror.bin-") {
            continue;
        }
        let path = meta.join(format!("{}.{file}", m["version"]));
        let role: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        names.extend(
            role["signed"]["targets"]
                .as_object()
                .unwrap()
                .keys()
                .cloned(),
        );
    }
    names.sort();
    names
}

/// The sha256 of the catalog's stored payload of `name` (`targets/<sha>.<name>`).
fn stored_sha(cat: &Catalog, name: &str) -> Option<String> {
    std::fs::read_dir(cat.repo.join("targets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find_map(|f| {
            let (sha, rest) = f.split_once('.')?;
            (rest == name).then(|| sha.to_owned())
        })
}

#[test]
fn k_mirror_runs_each_superseding_the_last_keep_the_catalog_and_the_server_bounded() {
    // It reads the payload directory to see what the cleanup kept.
    patchday_testkit::on_the_data_directory(
        "object_store:: (cleanup empties the bucket of what no host needs)",
    );
    let d = scratch();
    let dir = d.path();
    let b = bins();
    let mut archive = AptArchive::serve(dir);
    archive.publish(&[libfoo("libfoo1", "1.2-1+deb12u1", "amd64")]);
    write_config(dir, &archive.url);
    let cat = Catalog::new(&b, dir);
    let key = delegate_mirror_role(&cat, dir);
    let srv = Server::start_with(
        &b,
        dir,
        &cat.root(),
        &["--cleanup-every", "1s", "--retain", "0s"],
    );
    srv.cli(&["tenant", "create", "acme"]);
    let run = [
        "--all",
        "--as",
        "mirror",
        "--key-file",
        key.to_str().unwrap(),
        "--retain",
        "0s",
    ];
    const K: u32 = 6;
    let mut payload_shas = Vec::new();
    let mut sizes = Vec::new();
    for k in 1..=K {
        if k > 1 {
            archive.publish(&[libfoo("libfoo1", &format!("1.2-1+deb12u{k}"), "amd64")]);
        }
        let o = mirror_run(&cat, dir, &run);
        assert!(o.status.success(), "run {k}: {}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let payload = format!("mirror~libfoo1_1.2-1+deb12u{k}_amd64.deb");
        payload_shas.push(stored_sha(&cat, &payload).expect("the new payload is in targets/"));
        if k > 1 {
            // The previous version leaves, said so, with its successor.
            let prev = format!("mirror-DEB-libfoo-1.2-1_pdeb12u{}", k - 1);
            let this = format!("mirror-DEB-libfoo-1.2-1_pdeb12u{k}");
            assert!(
                out.contains(&format!(
                    "dropped {prev} from the catalog: superseded by {this}"
                )),
                "run {k}: {out}"
            );
        }
        // The catalog lists one update of libfoo (its document and its payload), not k.
        let listed = mirror_targets(&cat);
        assert_eq!(
            listed,
            vec![
                payload.clone(),
                format!("update-mirror-DEB-libfoo-1.2-1_pdeb12u{k}.json")
            ],
            "run {k}"
        );
        // The publisher's targets/ holds just those files.
        let files = std::fs::read_dir(cat.repo.join("targets")).unwrap().count();
        assert_eq!(
            files, 2,
            "run {k}: targets/ keeps only what the catalog lists"
        );
        sizes.push(metadata_size(&cat));
        // The server verifies the pruned catalog against its pinned root and takes it in.
        let pushed = srv.cli(&["catalog", "push", "--repo", cat.repo.to_str().unwrap()]);
        assert!(!pushed.is_empty(), "run {k}");
    }
    // Metadata stays bounded: every target entry beyond the newest update is gone (above),
    // no file grows with K but the snapshot (one entry per bin), and the files are at
    // most top-level targets, snapshot, timestamp, the mirror role and its 256 hash bins
    // (an emptied bin stays, empty, so that a bin made again never restarts its version).
    let (files_k, bytes_k) = sizes[K as usize - 1];
    assert!(files_k <= 4 + 256, "{sizes:?}");
    assert!(
        bytes_k <= files_k as u64 * 1500,
        "a metadata file grew with K: {sizes:?}"
    );

    // A TUF client (tough, as the agent verifies) still verifies the catalog, and the one
    // kept update still matches its upstream evidence.
    let o = verify_upstream(&cat, dir, &["--all"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("mirror-DEB-libfoo-1.2-1_pdeb12u{K}")),
        "{}",
        text(&o)
    );

    // The server dropped the old updates on intake, and its cleanup the blobs no target
    // lists (`content.drop-unlisted`): only the newest payload is held.
    let blob = |sha: &str| srv.data.join("content").join(&sha[..2]).join(sha);
    let (old, newest) = payload_shas.split_at(K as usize - 1);
    for _ in 0..1200 {
        if old.iter().all(|s| !blob(s).exists()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let held: Vec<&String> = payload_shas.iter().filter(|s| blob(s).exists()).collect();
    assert_eq!(held, vec![&newest[0]], "only the newest payload is held");
    let updates = srv.cli(&["updates", "--tenant", "acme", "--format", "json"]);
    assert!(
        updates.contains(&format!("\"mirror-DEB-libfoo-1.2-1_pdeb12u{K}\"")),
        "{updates}"
    );
    assert!(
        !updates.contains("\"mirror-DEB-libfoo-1.2-1_pdeb12u1\""),
        "the server no longer lists the dropped updates: {updates}"
    );
}
