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
