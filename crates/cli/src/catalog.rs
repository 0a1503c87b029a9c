//! Publishing: catalog keys, signing updates offline, and pushing the signed result.

use anyhow::Context;
use patchday_trust::{Expiries, KeyPaths, NewTarget};
use patchday_types::{
    Classification, PayloadKind, PayloadRef, Release, Severity, TargetCustom, UpdateDocument,
    UpdateId,
};
use std::path::{Path, PathBuf};

/// What the publisher says about a new update.
#[derive(Clone, Debug)]
pub struct UpdateOptions {
    /// Update id.
    pub id: UpdateId,
    /// Title; derived from the package when absent.
    pub title: Option<String>,
    /// Product; `debian` for packages, the bundle name for bundles, when absent.
    pub product: Option<String>,
    /// Classification; `security` when CVEs are named, else `bugfix`, when absent.
    pub classification: Option<Classification>,
    /// Severity.
    pub severity: Severity,
    /// Train month or emergency lane.
    pub release: Release,
    /// Updates this one replaces.
    pub supersedes: Vec<UpdateId>,
    /// Count CVEs from changelog entries newer than this version (default: the newest entry only).
    pub since: Option<String>,
    /// Tenants it is published for (empty: all).
    pub tenants: Vec<String>,
    /// Sign as this delegated role instead of the offline targets role (issue 9, point 2).
    pub role: Option<DelegatedSigner>,
    /// Where a mirrored update came from, signed into its document (issue 9, point 2).
    pub upstream: Option<patchday_types::UpstreamEvidence>,
}

/// Issue 9, point 2: a delegated role and the key file(s) that sign for it (a mirror's key).
#[derive(Clone, Debug)]
pub struct DelegatedSigner {
    /// Role name, e.g. `mirror`.
    pub role: String,
    /// Its key file(s).
    pub key_files: Vec<PathBuf>,
}

/// The role that holds one tenant's private updates (issue 9, point 3).
pub fn tenant_role(tenant: &str) -> String {
    format!("tenant-{tenant}")
}

/// The target name of `name` published by delegated `role`: `<role>~<name>` (`~` appears in no
/// role or tenant name, so one role's names never fall under another role's prefix).
pub fn role_target_name(role: &str, name: &str) -> String {
    format!("{role}~{name}")
}

/// Default paths of a delegated role: its payloads (`<role>~*`) and update documents whose
/// id starts with `<role>-` (`update-<role>-*`).
pub fn default_role_paths(role: &str) -> Vec<String> {
    vec![format!("{role}~*"), format!("update-{role}-*")]
}

/// Delegates to `role` from the offline targets role (`keys`), held by `key_files`.
pub async fn delegate(
    keys: &KeyPaths,
    repo: &Path,
    role: &str,
    paths: &[String],
    key_files: &[PathBuf],
    threshold: u64,
    now: jiff::Timestamp,
) -> anyhow::Result<patchday_trust::CatalogVersion> {
    let paths = if paths.is_empty() {
        default_role_paths(role)
    } else {
        paths.to_vec()
    };
    patchday_trust::delegate_role(
        keys,
        repo,
        role,
        &paths,
        key_files,
        threshold,
        now,
        &Expiries::default(),
    )
    .await
    .with_context(|| {
        format!(
            "delegating {} to role {role} in {}",
            paths.join(", "),
            repo.display()
        )
    })
}

/// Issue 9, point 3: makes sure `tenant`'s private role exists: created on first use (and
/// again after a targets key rotation), signed by the offline targets key (which also signs
/// for it), trusted for the tenant's
/// payloads (`tenant-<t>~*`) and for update documents (`update-*`: documents keep their
/// names, and naming each one in the delegation would show other tenants its id).
async fn ensure_tenant_role(
    keys: &KeyPaths,
    repo: &Path,
    tenant: &str,
    now: jiff::Timestamp,
) -> anyhow::Result<String> {
    let role = tenant_role(tenant);
    let existing = patchday_trust::delegated_roles(repo)
        .await
        .with_context(|| format!("reading the catalog in {}", repo.display()))?;
    let key_id = patchday_trust::public_key_id(&keys.targets)
        .with_context(|| format!("reading the targets key {}", keys.targets.display()))?;
    // Missing, or held by a targets key rotated out since: (re-)delegate to the current one.
    if !existing
        .iter()
        .any(|d| d.role == role && d.keyids.contains(&key_id))
    {
        let paths = vec![role_target_name(&role, "*"), "update-*".to_owned()];
        delegate(
            keys,
            repo,
            &role,
            &paths,
            std::slice::from_ref(&keys.targets),
            1,
            now,
        )
        .await?;
    }
    Ok(role)
}

/// Debian's file-name form of a version (no epoch).
fn file_version(v: &str) -> &str {
    v.split_once(':').map(|(_, r)| r).unwrap_or(v)
}

/// What an update carries: its payload files, their descriptions, CVEs and text.
#[derive(Clone, Debug, Default)]
pub struct UpdateContent {
    /// Payload files, in the order of `payloads`.
    pub files: Vec<PathBuf>,
    /// Their descriptions.
    pub payloads: Vec<PayloadRef>,
    /// CVEs fixed.
    pub cves: Vec<String>,
    /// Changelog excerpt.
    pub description: String,
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

/// Signs an update (document + payload files) into the catalog at `repo`.
pub async fn add_update(
    keys: &KeyPaths,
    repo: &Path,
    content: UpdateContent,
    opts: &UpdateOptions,
    now: jiff::Timestamp,
) -> anyhow::Result<UpdateDocument> {
    let UpdateContent {
        files,
        mut payloads,
        cves,
        description,
    } = content;
    // Issue 9: who signs. A delegated role (the mirror's key), one tenant's private role, or
    // the offline targets role.
    let signer: Option<(String, Vec<PathBuf>)> = match (&opts.role, opts.tenants.as_slice()) {
        (Some(_), [_, ..]) => anyhow::bail!(
            "--as and --tenant do not go together: a tenant's private update is signed into its own role"
        ),
        (Some(r), []) => Some((r.role.clone(), r.key_files.clone())),
        (None, []) => None,
        (None, [tenant]) => Some((
            ensure_tenant_role(keys, repo, tenant, now).await?,
            vec![keys.targets.clone()],
        )),
        (None, [_, _, ..]) => anyhow::bail!(
            "a private update is for one tenant: publish it once per tenant (each tenant's updates live in the tenant's own role, served to that tenant only)"
        ),
    };
    if let Some((role, _)) = &signer {
        for p in &mut payloads {
            p.target = role_target_name(role, &p.target);
        }
    }
    let first = payloads
        .first()
        .context("an update needs at least one payload")?;
    let doc = UpdateDocument {
        id: opts.id.clone(),
        title: opts.title.clone().unwrap_or_else(|| {
            if cves.is_empty() {
                format!("{} {} update", first.source, first.source_version)
            } else {
                format!(
                    "{} {} security update ({} CVE{})",
                    first.source,
                    first.source_version,
                    cves.len(),
                    if cves.len() == 1 { "" } else { "s" }
                )
            }
        }),
        product: opts.product.clone().unwrap_or_else(|| match first.kind {
            PayloadKind::Deb => "debian".into(),
            PayloadKind::Bundle => first.package.clone(),
        }),
        classification: opts.classification.unwrap_or(if cves.is_empty() {
            Classification::Bugfix
        } else {
            Classification::Security
        }),
        severity: opts.severity,
        cves,
        supersedes: opts.supersedes.clone(),
        release: opts.release.clone(),
        payloads: payloads.clone(),
        description,
        tenants: opts.tenants.clone(),
        upstream: opts.upstream.clone(),
    };
    let tmp = tempfile::tempdir()?;
    let doc_path = tmp.path().join("doc.json");
    std::fs::write(&doc_path, serde_json::to_vec_pretty(&doc)?)?;
    let mut targets = vec![NewTarget {
        name: UpdateDocument::target_name(&doc.id),
        path: doc_path,
        custom: serde_json::to_value(TargetCustom::Update { id: doc.id.clone() })?,
    }];
    let cache = CounterCache::load(repo).await?;
    let counters = release_counters(&cache, &payloads);
    for ((p, f), counter) in payloads.iter().zip(&files).zip(counters.iter().copied()) {
        targets.push(NewTarget {
            name: p.target.clone(),
            path: f.clone(),
            custom: serde_json::to_value(TargetCustom::for_payload(p, counter))?,
        });
    }
    match signer {
        None => patchday_trust::add_targets(keys, repo, targets, now, &Expiries::default())
            .await
            .with_context(|| format!("signing update {} into {}", doc.id, repo.display()))?,
        Some((role, key_files)) => patchday_trust::add_targets_as(
            keys,
            repo,
            &role,
            &key_files,
            targets,
            now,
            &Expiries::default(),
        )
        .await
        .with_context(|| {
            format!(
                "signing update {} into {} as role {role}",
                doc.id,
                repo.display()
            )
        })?,
    };
    CounterCache::record(repo, &payloads, &counters, cache);
    Ok(doc)
}

/// Uptane release counters for new payloads: per (kind, package), one more than the
/// highest the catalog already signed, so the order of publication is the order agents
/// accept, whatever the version strings claim.
fn release_counters(highest: &CounterCache, payloads: &[PayloadRef]) -> Vec<u64> {
    // Architectures of one package published together share one counter.
    let mut fresh: std::collections::HashMap<(PayloadKind, String), u64> =
        std::collections::HashMap::new();
    payloads
        .iter()
        .map(|p| {
            let key = (p.kind, p.package.clone());
            let next = highest.get(&key).saturating_add(1);
            *fresh.entry(key).or_insert(next)
        })
        .collect()
}

/// The highest release counter per (kind, package) of a catalog, kept next to it in
/// `release-counters.json` with the snapshot version it describes (issue 9, point 6):
/// reading every role of a large catalog on each `catalog add-*` would make adding the
/// ten-thousandth update slower than the tenth. Not trusted for anything but numbering:
/// when the snapshot moved on without it (another tool signed, the file is gone or
/// damaged), it is rebuilt from the signed catalog.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct CounterCache {
    snapshot: u64,
    highest: std::collections::BTreeMap<String, u64>,
}

impl CounterCache {
    const FILE: &'static str = "release-counters.json";

    fn key(kind: PayloadKind, package: &str) -> String {
        format!("{kind:?} {package}")
    }

    fn get(&self, key: &(PayloadKind, String)) -> u64 {
        self.highest
            .get(&Self::key(key.0, &key.1))
            .copied()
            .unwrap_or(0)
    }

    async fn load(repo: &Path) -> anyhow::Result<Self> {
        let snapshot = snapshot_version(repo);
        if let Some(c) = std::fs::read(repo.join(Self::FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<CounterCache>(&b).ok())
            .filter(|c| Some(c.snapshot) == snapshot)
        {
            return Ok(c);
        }
        let existing = patchday_trust::catalog_targets(repo)
            .await
            .with_context(|| format!("reading the catalog in {}", repo.display()))?;
        let mut cache = CounterCache {
            snapshot: snapshot.unwrap_or(0),
            highest: Default::default(),
        };
        for custom in existing.into_values() {
            if let Ok(TargetCustom::Payload {
                kind,
                package,
                release_counter,
                ..
            }) = serde_json::from_value(custom)
            {
                let h = cache.highest.entry(Self::key(kind, &package)).or_default();
                *h = (*h).max(release_counter);
            }
        }
        Ok(cache)
    }

    /// Records the counters just signed, for the snapshot the signing produced.
    fn record(repo: &Path, payloads: &[PayloadRef], counters: &[u64], before: Self) {
        let mut cache = before;
        for (p, c) in payloads.iter().zip(counters) {
            let h = cache
                .highest
                .entry(Self::key(p.kind, &p.package))
                .or_default();
            *h = (*h).max(*c);
        }
        cache.snapshot = snapshot_version(repo).unwrap_or(0);
        // Only a cache: failing to write it costs the next add a full read, nothing more.
        if let Ok(bytes) = serde_json::to_vec(&cache) {
            let _ = std::fs::write(repo.join(Self::FILE), bytes);
        }
    }
}

/// The snapshot version the catalog's `timestamp.json` lists.
fn snapshot_version(repo: &Path) -> Option<u64> {
    let bytes = std::fs::read(repo.join("metadata/timestamp.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["signed"]["meta"]["snapshot.json"]["version"].as_u64()
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

/// Packs a catalog's `metadata/` and `targets/` into a tar file for pushing.
pub fn pack(repo: &Path) -> anyhow::Result<tempfile::NamedTempFile> {
    pack_except(repo, &std::collections::BTreeSet::new())
}

/// Like [`pack`], leaving out the target files whose sha256 is in `present`.
fn pack_except(
    repo: &Path,
    present: &std::collections::BTreeSet<String>,
) -> anyhow::Result<tempfile::NamedTempFile> {
    let out = tempfile::NamedTempFile::new()?;
    let mut b = tar::Builder::new(out.reopen()?);
    for sub in ["metadata", "targets"] {
        let dir = repo.join(sub);
        if !dir.is_dir() {
            anyhow::bail!(
                "{} is not a catalog (no {sub}/): run `patchday catalog init` first",
                repo.display()
            );
        }
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let held = sub == "targets"
                && name
                    .split_once('.')
                    .is_some_and(|(sha, _)| present.contains(sha));
            if e.file_type()?.is_file() && !held {
                b.append_path_with_name(e.path(), Path::new(sub).join(e.file_name()))?;
            }
        }
    }
    b.finish()?;
    Ok(out)
}

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
