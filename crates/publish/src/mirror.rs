//! The mirror's publisher (issue 9, points 1 and 2): signs each mirrored update with the
//! same [`add_update`] as `patchday catalog add-deb`, as the offline targets role or a
//! delegated mirror role, with its upstream evidence in the signed document. Used by
//! `patchday mirror run` and by the server's `--mirror-every` schedule.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Context;
use async_trait::async_trait;
use patchday_mirror::sync::{MirroredUpdate, Publish};
use patchday_mirror::MirrorError;
use patchday_trust::KeyPaths;
use patchday_types::{PayloadKind, PayloadRef, Release, Severity, UpdateId, YearMonth};

use crate::update::{add_update, DelegatedSigner, UpdateContent, UpdateOptions};

/// Signs mirrored updates into the catalog with the offline keys, through the same
/// `add_update` as `patchday catalog add-deb`. The one place to change to sign as a
/// delegated mirror role.
pub struct CatalogPublisher {
    keys: KeyPaths,
    repo: PathBuf,
    month: YearMonth,
    severity: Severity,
    tenants: Vec<String>,
    existing: BTreeSet<String>,
    now: jiff::Timestamp,
    /// Issue 9, point 2: the delegated role that signs, if not the offline targets key.
    role: Option<DelegatedSigner>,
}

/// Who signs a mirror run's updates, and how they are released.
#[derive(Clone, Debug)]
pub struct PublishSettings {
    /// The catalog's key files (snapshot and timestamp; targets when no role signs).
    pub keys: KeyPaths,
    /// Catalog directory.
    pub repo: PathBuf,
    /// Severity when no tracker rates an update.
    pub severity: Severity,
    /// Tenants the updates are for (empty: every tenant).
    pub tenants: Vec<String>,
    /// The delegated role that signs, if not the offline targets key.
    pub role: Option<DelegatedSigner>,
}

impl CatalogPublisher {
    /// Reads which updates the catalog in `settings.repo` already holds.
    /// Updates go on `month`'s train (known-exploited ones to the emergency lane).
    pub async fn open(
        settings: PublishSettings,
        month: YearMonth,
        now: jiff::Timestamp,
    ) -> anyhow::Result<Self> {
        let existing = patchday_trust::catalog_targets(&settings.repo)
            .await
            .with_context(|| {
                format!(
                    "reading the catalog in {} (create it with `patchday catalog init`)",
                    settings.repo.display()
                )
            })?
            .into_keys()
            .collect();
        Ok(CatalogPublisher {
            keys: settings.keys,
            repo: settings.repo,
            month,
            severity: settings.severity,
            tenants: settings.tenants,
            existing,
            now,
            role: settings.role,
        })
    }
}

/// The upstream evidence as the update document signs it: the InRelease (URL, sha256,
/// signing key) and the first index that lists the update's binaries (all of them are in
/// the description).
fn signed_evidence(e: &patchday_mirror::UpstreamEvidence) -> patchday_types::UpstreamEvidence {
    let (index_path, index_sha256) = e.indexes.first().cloned().unwrap_or_default();
    patchday_types::UpstreamEvidence {
        in_release_url: e.inrelease_url.clone(),
        in_release_sha256: e.inrelease_sha256.clone(),
        index_path,
        index_sha256,
        archive_key_fingerprint: e.signed_by.clone(),
    }
}

impl PublishSettings {
    /// The update id as signed: a delegated role's updates carry its name first, so that
    /// their documents (`update-mirror-*`) lie inside the role's paths.
    pub fn signed_id(&self, id: &str) -> String {
        signed_id(self.role.as_ref(), id)
    }
}

impl CatalogPublisher {
    fn signed_id(&self, id: &str) -> String {
        signed_id(self.role.as_ref(), id)
    }
}

fn signed_id(role: Option<&DelegatedSigner>, id: &str) -> String {
    match role {
        Some(r) => format!("{}-{id}", r.role),
        None => id.to_owned(),
    }
}

/// The signed document's text for a mirrored update: title and description.
pub fn describe(u: &MirroredUpdate) -> (String, String) {
    let mut ids: Vec<String> = u.advisories.clone();
    if !u.cves.is_empty() {
        ids.push(format!(
            "{} CVE{}",
            u.cves.len(),
            if u.cves.len() == 1 { "" } else { "s" }
        ));
    }
    let kind = if u.cves.is_empty() && u.advisories.is_empty() {
        "update"
    } else {
        "security update"
    };
    let title = if ids.is_empty() {
        format!("{} {} {kind}", u.source, u.version)
    } else {
        format!("{} {} {kind} ({})", u.source, u.version, ids.join(", "))
    };
    let mut d = String::new();
    if !u.advisories.is_empty() {
        d.push_str(&format!("Advisories: {}\n", u.advisories.join(", ")));
    }
    if !u.known_exploited.is_empty() {
        d.push_str(&format!(
            "Known exploited (CISA KEV): {}\n",
            u.known_exploited.join(", ")
        ));
    }
    let e = &u.evidence;
    d.push_str(&format!(
        "Upstream: {} (sha256 {}, Date {}, signed by {})\n",
        e.inrelease_url, e.inrelease_sha256, e.release_date, e.signed_by
    ));
    for (path, sha) in &e.indexes {
        d.push_str(&format!("Index: {path} (sha256 {sha})\n"));
    }
    d.push('\n');
    d.push_str(&u.description);
    (title, d)
}

fn file_version(v: &str) -> &str {
    v.split_once(':').map(|(_, r)| r).unwrap_or(v)
}

#[async_trait]
impl Publish for CatalogPublisher {
    async fn published(&self, id: &str) -> Result<bool, MirrorError> {
        let id = UpdateId::new(self.signed_id(id)).map_err(|e| MirrorError::Publish {
            id: id.to_owned(),
            detail: e.to_string(),
        })?;
        Ok(self
            .existing
            .contains(&patchday_types::UpdateDocument::target_name(&id)))
    }

    async fn publish(&self, u: &MirroredUpdate) -> Result<(), MirrorError> {
        let fail = |detail: String| MirrorError::Publish {
            id: u.id.clone(),
            detail,
        };
        let id = UpdateId::new(self.signed_id(&u.id)).map_err(|e| fail(e.to_string()))?;
        let (title, description) = describe(u);
        let payloads = u
            .binaries
            .iter()
            .map(|(b, _)| PayloadRef {
                target: format!(
                    "{}_{}_{}.deb",
                    b.package,
                    file_version(&b.version),
                    b.architecture
                ),
                kind: PayloadKind::Deb,
                package: b.package.clone(),
                version: b.version.clone(),
                architecture: b.architecture.clone(),
                source: b.source.clone(),
                source_version: b.source_version.clone(),
            })
            .collect();
        let content = UpdateContent {
            files: u.binaries.iter().map(|(_, p)| p.clone()).collect(),
            payloads,
            cves: u.cves.clone(),
            description,
        };
        let release = if u.known_exploited.is_empty() {
            Release::Train { month: self.month }
        } else {
            Release::Emergency {
                reason: format!(
                    "known exploited (CISA KEV): {}",
                    u.known_exploited.join(", ")
                ),
            }
        };
        let severity = if u.known_exploited.is_empty() {
            u.severity.unwrap_or(self.severity)
        } else {
            Severity::Critical
        };
        let opts = UpdateOptions {
            id,
            title: Some(title),
            product: None,
            classification: None,
            severity,
            release,
            supersedes: Vec::new(),
            since: None,
            tenants: self.tenants.clone(),
            role: self.role.clone(),
            upstream: Some(signed_evidence(&u.evidence)),
        };
        add_update(&self.keys, &self.repo, content, &opts, self.now)
            .await
            .map_err(|e| fail(format!("{e:#}")))?;
        Ok(())
    }
}

/// One mirror run, as `patchday mirror run` and the server's `--mirror-every` schedule
/// both do it (issue 9, point 1).
#[derive(Clone, Debug)]
pub struct MirrorJob {
    /// Mirror configuration (TOML with [[source]] tables).
    pub config: PathBuf,
    /// State and downloads [default: REPO/mirror].
    pub work: Option<PathBuf>,
    /// Debian security tracker JSON.
    pub debian_tracker: Option<PathBuf>,
    /// CISA KEV JSON.
    pub kev: Option<PathBuf>,
    /// Release codename for the tracker [default: the first source's suite without its
    /// `-security`/`-updates` suffix].
    pub codename: Option<String>,
    /// Release train [default: the month of `now`].
    pub train: Option<YearMonth>,
    /// Who signs, into which catalog.
    pub publish: PublishSettings,
    /// Issue 10, point 7: how long a superseded mirrored update stays in the catalog
    /// [default: the configuration's `retain`, else [`DEFAULT_RETAIN`]]; `Some(None)`
    /// keeps them forever.
    pub retain: Option<Option<jiff::SignedDuration>>,
}

/// How long a superseded mirrored update stays in the catalog when neither the
/// configuration nor the command says (issue 10, point 7): 180 days, six patch days. Far
/// longer than any rollout or the server's payload retention (30 days), and no host
/// installs a superseded version meanwhile (the successor is what every host gets); long
/// enough that an operator reading last quarter's report still finds the update.
pub const DEFAULT_RETAIN: jiff::SignedDuration = jiff::SignedDuration::from_hours(180 * 24);

/// What one mirror run did: the sync, and what left the catalog.
#[derive(Debug)]
pub struct JobReport {
    /// What the sync signed.
    pub sync: patchday_mirror::SyncReport,
    /// The superseded updates dropped (issue 10, point 7); `None` when pruning is off.
    pub pruned: Option<crate::prune::PruneReport>,
}

impl MirrorJob {
    /// The work directory (state, downloads, kept upstream evidence).
    pub fn work_dir(&self) -> PathBuf {
        self.work
            .clone()
            .unwrap_or_else(|| self.publish.repo.join("mirror"))
    }
}

/// Runs the mirror once: verifies every source, imports what `selection` names and signs
/// it into the catalog. A rerun resumes where a failed run stopped, from the progress
/// kept in `progress` (issue 12, point 1: the server's database; `None`: a file in the
/// work directory).
pub async fn run_job(
    job: &MirrorJob,
    selection: patchday_mirror::Selection,
    fleet_binaries: Option<patchday_mirror::closure::FleetBinaries>,
    fetch: &dyn patchday_mirror::Fetch,
    progress: Option<std::sync::Arc<dyn patchday_mirror::state::Progress>>,
    now: jiff::Timestamp,
) -> anyhow::Result<JobReport> {
    let cfg = patchday_mirror::MirrorConfig::load(&job.config)?;
    let retain = job.retain.unwrap_or_else(|| match cfg.retain.as_deref() {
        Some(r) if patchday_mirror::config::retention_is_off(r) => None,
        Some(_) => cfg.retention(),
        None => Some(DEFAULT_RETAIN),
    });
    let codename = job.codename.clone().unwrap_or_else(|| {
        let suite = cfg.sources.first().map(|s| s.suite.as_str()).unwrap_or("");
        suite.split(['-', '/']).next().unwrap_or(suite).to_owned()
    });
    let feeds = patchday_mirror::advisories::Feeds::load(
        job.debian_tracker.as_deref(),
        job.kev.as_deref(),
        &codename,
    )?;
    let month = job.train.unwrap_or_else(|| {
        let d = now.to_zoned(jiff::tz::TimeZone::UTC).date();
        YearMonth {
            year: d.year(),
            month: d.month(),
        }
    });
    let publisher = CatalogPublisher::open(job.publish.clone(), month, now).await?;
    let opts = patchday_mirror::SyncOptions {
        work_dir: job.work_dir(),
        now,
        selection,
        feeds,
        fleet_binaries,
        progress,
    };
    let report = patchday_mirror::sync::run(&cfg, fetch, &publisher, &opts)
        .await
        .context("mirror run stopped (a rerun resumes where it stopped)")?;
    // Issue 9, point 6: the role's hash bins that no new update touched still expire; the
    // mirror re-signs those due within two weeks (the offline role's are `catalog refresh`'s).
    if let Some(signer) = &job.publish.role {
        let resigned = patchday_trust::refresh_targets(
            &job.publish.keys,
            &job.publish.repo,
            Some((signer.role.as_str(), signer.key_files.as_slice())),
            now,
            &patchday_trust::Expiries::default(),
            jiff::SignedDuration::from_hours(14 * 24),
        )
        .await
        .with_context(|| format!("re-signing the {} role's expiring bins", signer.role))?;
        if !resigned.is_empty() {
            tracing::info!(roles = resigned.len(), "re-signed expiring mirror metadata");
        }
    }
    // Issue 10, point 7: superseded mirrored updates leave the catalog after `retain`.
    let pruned = match retain {
        None => None,
        Some(retain) => {
            let cutoff = now
                .checked_sub(retain)
                .context("the retention reaches before the year -9999")?;
            let p = crate::prune::prune(
                &job.publish.keys,
                &job.publish.repo,
                job.publish.role.as_ref(),
                crate::prune::Scope::Mirrored,
                cutoff,
                now,
            )
            .await
            .context("dropping superseded updates from the catalog (a rerun tries again)")?;
            for d in &p.dropped {
                tracing::info!(
                    update = %d.id,
                    superseded_by = %d.superseded_by,
                    since = %d.since,
                    "dropped a superseded update from the catalog"
                );
            }
            Some(p)
        }
    };
    Ok(JobReport {
        sync: report,
        pruned,
    })
}
