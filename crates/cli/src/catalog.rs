//! Publishing: catalog keys, signing updates offline, and pushing the signed result.

use anyhow::Context;
use patchday_trust::{Expiries, KeyPaths};
use patchday_types::{PayloadKind, PayloadRef};
use std::path::{Path, PathBuf};

// Issue 9, point 1: signing lives in `patchday-publish`, shared with the server's
// scheduled mirror.
pub use patchday_publish::update::{
    add_update, default_role_paths, delegate, role_target_name, tenant_role, DelegatedSigner,
    UpdateContent, UpdateOptions,
};

/// Debian's file-name form of a version (no epoch).
fn file_version(v: &str) -> &str {
    v.split_once(':').map(|(_, r)| r).unwrap_or(v)
}

/// Reads `.deb` files and describes them as payloads, with CVEs and changelog text.
pub fn describe_debs(debs: &[PathBuf], since: Option<&str>) -> anyhow::Result<UpdateContent> {
    let mut payloads = Vec::new();
    let mut cves = Vec::new();
    let mut text = String::new();
    for path in debs {
        let pkg = patchday_pkg::deb::read_deb(path)
            .with_context(|| format!("importing {}", path.display()))?;
        let i = &pkg.info;
        payloads.push(PayloadRef {
            target: format!(
                "{}_{}_{}.deb",
                i.package,
                file_version(&i.version),
                i.architecture
            ),
            kind: PayloadKind::Deb,
            package: i.package.clone(),
            version: i.version.clone(),
            architecture: i.architecture.clone(),
            source: i.source.clone(),
            source_version: i.source_version.clone(),
        });
        if let Some(log) = &pkg.changelog {
            let entries = patchday_pkg::changelog::parse(log);
            let newer: Vec<_> = match since {
                Some(s) => entries
                    .iter()
                    .filter(|e| {
                        patchday_pkg::version::compare_deb(&e.version, s).is_ok_and(|o| o.is_gt())
                    })
                    .collect(),
                None => entries.iter().take(1).collect(),
            };
            for e in &newer {
                if text.len() < 8192 && !text.contains(&format!("({})", e.version)) {
                    text.push_str(&format!(
                        "{} ({})\n{}\n",
                        e.package,
                        e.version,
                        e.text.trim_end()
                    ));
                }
            }
            // Without --since, only the newest entry counts: CVEs newer than the
            // second entry's version.
            let floor = since
                .map(str::to_string)
                .or_else(|| entries.get(1).map(|e| e.version.clone()));
            let found = patchday_pkg::changelog::cves_since(log, floor.as_deref());
            for c in found {
                if !cves.contains(&c) {
                    cves.push(c);
                }
            }
        }
    }
    cves.sort();
    Ok(UpdateContent {
        files: debs.to_vec(),
        payloads,
        cves,
        description: text,
    })
}

/// Describes a bundle file as a payload.
pub fn describe_bundle(path: &Path) -> anyhow::Result<PayloadRef> {
    let m = patchday_agent::install::bundle::read_manifest(path)
        .with_context(|| format!("importing bundle {}", path.display()))?;
    if !patchday_pkg::version::is_valid_deb(&m.version) {
        anyhow::bail!(
            "bundle version {:?} is not a valid version (Debian ordering is used)",
            m.version
        );
    }
    Ok(PayloadRef {
        target: format!("{}_{}.tar.zst", m.name, file_version(&m.version)),
        kind: PayloadKind::Bundle,
        package: m.name.clone(),
        version: m.version.clone(),
        architecture: "all".into(),
        source: m.name,
        source_version: m.version,
    })
}

// Issue 9, point 1: packing is shared with the server's scheduled mirror.
pub use patchday_publish::pack::{pack, pack_except};

/// What one push sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PushStats {
    /// Target files in the catalog.
    pub targets: usize,
    /// Those uploaded (the server lacked them).
    pub uploaded: usize,
    /// Bytes of the upload.
    pub bytes: u64,
}

/// Pushes the catalog in `repo` (issue 9, point 6): its current metadata, and only the
/// target files the server does not hold yet, so a push costs what is new, not the
/// catalog's whole history.
pub async fn push(
    api: &crate::api::Api,
    repo: &Path,
) -> anyhow::Result<(patchday_types::api::CatalogStatus, PushStats)> {
    let mut hashes = std::collections::BTreeSet::new();
    let tdir = repo.join("targets");
    if tdir.is_dir() {
        for e in std::fs::read_dir(&tdir)? {
            let name = e?.file_name().to_string_lossy().into_owned();
            if let Some((sha, _)) = name.split_once('.') {
                hashes.insert(sha.to_owned());
            }
        }
    }
    let missing: std::collections::BTreeSet<String> = api
        .missing_targets(hashes.iter().cloned().collect())
        .await?
        .into_iter()
        .collect();
    let present: std::collections::BTreeSet<String> =
        hashes.difference(&missing).cloned().collect();
    let tar = pack_except(repo, &present)?;
    let bytes = tar.as_file().metadata()?.len();
    let status = api.push_catalog(tar.path()).await?;
    Ok((
        status,
        PushStats {
            targets: hashes.len(),
            uploaded: missing.len(),
            bytes,
        },
    ))
}

// ---- Issue 12, point 1: the served catalog back into a directory ----

/// What [`pull`] brought.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The served catalog's versions.
    pub root_version: u64,
    /// Top-level targets version.
    pub targets_version: u64,
    /// Snapshot version.
    pub snapshot_version: u64,
    /// Metadata files written.
    pub metadata: usize,
    /// Update documents fetched (the others were in `targets/` already).
    pub documents: usize,
}

/// The largest update document a pull accepts (the server's intake allows 4 MiB).
const MAX_DOCUMENT: u64 = 4 << 20;

/// Copies the catalog the server serves into `repo` (issue 12, point 1: the scheduled
/// mirror signs into the served catalog, so a publisher's or an auditor's copy is made
/// from it): every root version, the current targets, role, bin, snapshot and timestamp
/// metadata, and the update documents; payloads stay on the server (`catalog push` sends
/// only the files it lacks). Everything is verified against `root` (the catalog's first
/// root, the operator's own) before `repo` is touched, and a `repo` whose catalog is
/// ahead of the served one is refused (its signatures would be lost).
pub async fn pull(
    api: &crate::api::Api,
    repo: &Path,
    root: &Path,
    now: jiff::Timestamp,
) -> anyhow::Result<Pulled> {
    use patchday_types::TargetCustom;
    let limit = patchday_trust::verify::MAX_METADATA_FILE;
    let fetch = |name: String| async move {
        api.tuf_file(&format!("metadata/{name}"), limit)
            .await?
            .with_context(|| format!("the server serves no {name}: push a catalog first"))
    };
    let version = |bytes: &[u8], path: &str| -> anyhow::Result<u64> {
        let v: serde_json::Value = serde_json::from_slice(bytes).context("not JSON")?;
        v.pointer(path)
            .and_then(serde_json::Value::as_u64)
            .with_context(|| format!("no {path}"))
    };
    std::fs::create_dir_all(repo).with_context(|| format!("creating {}", repo.display()))?;
    let stage = tempfile::Builder::new()
        .prefix(".pull-")
        .tempdir_in(repo)
        .with_context(|| format!("staging in {}", repo.display()))?;
    let meta = stage.path().join("metadata");
    std::fs::create_dir_all(&meta)?;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let newest_root = fetch("root.json".into()).await?;
    let root_version = version(&newest_root, "/signed/version").context("the served root.json")?;
    anyhow::ensure!(
        root_version <= 256,
        "the served root claims version {root_version}: refused"
    );
    for v in 1..=root_version {
        let name = format!("{v}.root.json");
        files.push((name.clone(), fetch(name).await?));
    }
    files.push(("root.json".into(), newest_root));
    let timestamp = fetch("timestamp.json".into()).await?;
    let snapshot_version = version(&timestamp, "/signed/meta/snapshot.json/version")
        .context("the served timestamp.json")?;
    let snapshot_name = format!("{snapshot_version}.snapshot.json");
    let snapshot = fetch(snapshot_name.clone()).await?;
    let listed: serde_json::Value =
        serde_json::from_slice(&snapshot).context("the served snapshot is not JSON")?;
    if let Some(roles) = listed.pointer("/signed/meta").and_then(|m| m.as_object()) {
        for (role, m) in roles {
            let v = m["version"]
                .as_u64()
                .with_context(|| format!("the served snapshot lists {role} without a version"))?;
            anyhow::ensure!(
                !role.contains('/') && !role.starts_with('.'),
                "the served snapshot lists {role:?}: refused"
            );
            let name = format!("{v}.{role}");
            files.push((name.clone(), fetch(name).await?));
        }
    }
    files.push((snapshot_name, snapshot));
    files.push(("timestamp.json".into(), timestamp));
    for (name, bytes) in &files {
        std::fs::write(meta.join(name), bytes)?;
    }
    // The whole TUF workflow from the operator's first root: a server that forged or
    // rolled back anything is refused here, before the publisher signs onto it.
    let verified =
        patchday_trust::verify_metadata_at(root, &stage.path().join("datastore"), &meta, now)
            .await
            .with_context(|| {
                format!(
                    "the served catalog does not verify against {}: nothing was written",
                    root.display()
                )
            })?;
    if let Ok(local) = std::fs::read(repo.join("metadata/timestamp.json")) {
        // What was signed here and not pushed would be lost: a target the served catalog
        // lacks (or lists with other bytes), or a newer snapshot.
        let listing = patchday_trust::catalog_listing(repo)
            .await
            .with_context(|| {
                format!(
                    "reading the catalog in {} (move it away to start from the served catalog)",
                    repo.display()
                )
            })?;
        if let Some((name, _)) = listing.iter().find(|(n, l)| {
            verified
                .targets
                .get(*n)
                .is_none_or(|t| t.sha256 != l.info.sha256)
        }) {
            anyhow::bail!(
                "the catalog in {} lists {name}, which the served catalog does not: it was signed there and not pushed; push it first (`patchday catalog push --repo {}`), or move the directory away to start from the served catalog",
                repo.display(),
                repo.display()
            );
        }
        let local = patchday_publish::update::timestamp_snapshot_version(&local).unwrap_or(0);
        anyhow::ensure!(
            local <= verified.snapshot_version,
            "the catalog in {} is ahead of the served one (snapshot version {local}, the server's {}): push it first (`patchday catalog push --repo {}`); pulling would drop what it signed",
            repo.display(),
            verified.snapshot_version,
            repo.display()
        );
    }
    // Update documents (the prune and verify-upstream read them); not payloads.
    let targets = repo.join("targets");
    std::fs::create_dir_all(&targets)?;
    let mut documents = Vec::new();
    for (name, info) in &verified.targets {
        if !matches!(
            serde_json::from_value(info.custom.clone()),
            Ok(TargetCustom::Update { .. })
        ) {
            continue;
        }
        let file = info.stored_name(name);
        let held = std::fs::read(targets.join(&file))
            .is_ok_and(|b| patchday_trust::check_bytes(name, info, &b).is_ok());
        if held {
            continue;
        }
        let bytes = api
            .tuf_file(&format!("targets/{file}"), MAX_DOCUMENT)
            .await?
            .with_context(|| format!("the server serves no {file}"))?;
        patchday_trust::check_bytes(name, info, &bytes)
            .with_context(|| format!("the served {file} does not match the signed catalog"))?;
        documents.push((file, bytes));
    }
    // Into place: documents, then metadata (timestamp last), then the versions the
    // served catalog no longer lists go, as a signing step leaves them.
    for (file, bytes) in &documents {
        std::fs::write(targets.join(file), bytes)?;
    }
    let dest = repo.join("metadata");
    std::fs::create_dir_all(&dest)?;
    for (name, _) in files.iter().filter(|(n, _)| n != "timestamp.json") {
        std::fs::rename(meta.join(name), dest.join(name))?;
    }
    std::fs::rename(meta.join("timestamp.json"), dest.join("timestamp.json"))?;
    let current: std::collections::BTreeSet<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    for e in std::fs::read_dir(&dest)? {
        let name = e?.file_name().to_string_lossy().into_owned();
        let versioned = name.split_once('.').is_some_and(|(v, rest)| {
            !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) && rest != "root.json"
        });
        if versioned && !current.contains(name.as_str()) {
            std::fs::remove_file(dest.join(&name))?;
        }
    }
    Ok(Pulled {
        root_version: verified.root_version,
        targets_version: verified.targets_version,
        snapshot_version: verified.snapshot_version,
        metadata: files.len(),
        documents: documents.len(),
    })
}

// ---- Issue 9, point 5: catalog upkeep ----

/// Every role of the catalog in `repo` and its expiry, read from its metadata files.
pub fn local_role_expiries(repo: &Path) -> Vec<patchday_trust::expiry::RoleMeta> {
    let meta = repo.join("metadata");
    let root = std::fs::read(meta.join("root.json")).ok();
    patchday_trust::expiry::role_expiries(root.as_deref(), |name| {
        std::fs::read(meta.join(name)).ok()
    })
}

/// Re-signs snapshot and timestamp with fresh expiries, and targets too when it
/// expires within `targets_within` of `now`, adding nothing. Returns whether targets
/// was re-signed, and every role's expiry afterwards.
pub async fn refresh(
    keys: &KeyPaths,
    repo: &Path,
    now: jiff::Timestamp,
    exp: &Expiries,
    targets_within: jiff::SignedDuration,
) -> anyhow::Result<(bool, Vec<patchday_trust::expiry::RoleMeta>)> {
    let before = local_role_expiries(repo);
    // Top-level targets and its hash bins (issue 9, point 6) share the offline key.
    let targets_due = before
        .iter()
        .filter(|r| r.role == "targets" || r.role == "targets.bin-*")
        .any(|t| t.expires.duration_since(now) <= targets_within)
        || !before.iter().any(|r| r.role == "targets");
    if targets_due {
        // Re-signs targets and its bins that are due (new versions, fresh expiries),
        // snapshot and timestamp, adding nothing.
        patchday_trust::refresh_targets(keys, repo, None, now, exp, targets_within)
            .await
            .context("re-signing targets, snapshot and timestamp")?;
    } else {
        patchday_trust::resign_timestamp(keys, repo, now, exp)
            .await
            .context("re-signing snapshot and timestamp")?;
    }
    Ok((targets_due, local_role_expiries(repo)))
}
