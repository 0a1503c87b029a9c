//! The update document and its payloads, signed into a catalog (moved from the CLI so
//! that the server's scheduled mirror signs the same way, issue 9, point 1).

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
            PayloadKind::Baseline => format!("baseline {}", first.package),
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
    // Issue 10, point 7: the prune counts supersedence from here. Losing it only
    // postpones a prune (it then counts from the document file's time).
    if let Err(e) = crate::prune::Publications::record(repo, &doc.id, now) {
        tracing::warn!(error = %format!("{e:#}"), "could not record the publication time");
    }
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
    timestamp_snapshot_version(&bytes)
}

/// The snapshot version a `timestamp.json` lists (also the server's scheduled mirror's
/// comparison of its working catalog with the served one, issue 9, point 1).
pub fn timestamp_snapshot_version(timestamp: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(timestamp).ok()?;
    v["signed"]["meta"]["snapshot.json"]["version"].as_u64()
}
