//! Issue 9, point 1: `patchday server --mirror-every 1h`: the archive sync on a schedule,
//! inside the server. Each tick runs the same job as `patchday mirror run`
//! ([`patchday_publish::mirror::run_job`]), selecting newer versions of the source
//! packages installed on at least one enrolled host, signed by the delegated mirror role
//! into a working catalog. When the run changed it, it goes through the same intake as a
//! push ([`crate::catalog::intake_repo`]): verified against the pinned root before
//! anything is stored.
//!
//! Runs never overlap (one loop, the next tick waits for the run); a failed run is logged
//! with what to do, shown in `/v1/health`, and retried at the next tick.
//!
//! Issue 12, point 1: nothing a run needs is a file of one replica. The working catalog
//! is built from the store at each run ([`build_working_catalog`]: the served catalog's
//! metadata, its update documents from the content store, the publication times) in a
//! private temporary directory, signed into, taken in, and removed; the catalog is taken
//! in only onto the snapshot it was built from (`CatalogRecord::based_on_snapshot`), so
//! a push or another replica's run that came first is never overwritten. The run's
//! progress (each source's last verified InRelease, for replay protection, the update
//! ids signed, the publication times) is in the store ([`StoredProgress`]), committed
//! with the catalog the run made in the same transaction; while a run goes, only replay
//! protection is stored at once. A run on another replica or after a restart continues
//! from it. A server before this kept it as `MIRROR-WORK/state.json`: the first run moves
//! it into the store. Only downloads and the kept upstream evidence stay in the work
//! directory, a per-replica cache.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use jiff::Timestamp;
use patchday_mirror::state::{MirrorState, Progress};
use patchday_mirror::MirrorError;
use patchday_publish::mirror::MirrorJob;
use std::path::PathBuf;
use std::sync::Arc;

use crate::state::AppState;

/// What the schedule runs, and how often.
#[derive(Clone, Debug)]
pub struct MirrorSchedule {
    /// The mirror job (configuration, work directory, keys). Its `publish.repo` is
    /// replaced at each run by the working catalog built from the store (issue 12,
    /// point 1).
    pub job: MirrorJob,
    /// Time between the starts of two runs (a longer run delays the next).
    pub every: std::time::Duration,
    /// Issue 12, point 1: `--mirror-catalog`, the working catalog directory of a server
    /// before this, read only as a seed: its `published.json` (when each update was first
    /// published) until the store holds the publication times. Never written.
    pub seed: Option<PathBuf>,
}

/// How the last scheduled run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MirrorOutcome {
    /// Update ids signed by the run, and the catalog version then served when it changed.
    Ok {
        /// Update ids signed in this run.
        imported: Vec<String>,
        /// Targets version of the catalog taken in, when one was.
        served: Option<u64>,
    },
    /// What went wrong and what to do.
    Failed(String),
}

/// A scheduled run that changed the served catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorIntake {
    /// When the run started.
    pub at: Timestamp,
    /// Update ids it signed.
    pub ids: Vec<String>,
    /// Targets version taken in.
    pub targets_version: u64,
}

#[derive(Default)]
struct Runs {
    last: Option<(Timestamp, MirrorOutcome)>,
    last_intake: Option<MirrorIntake>,
    /// Issue 11, point 4: runs finished since the start, succeeded and failed.
    ok: u64,
    failed: u64,
}

/// The last scheduled run, and the last one that changed the served catalog, for
/// `/v1/health`.
#[derive(Default)]
pub struct MirrorRuns {
    runs: Mutex<Runs>,
}

impl MirrorRuns {
    fn set(&self, at: Timestamp, outcome: MirrorOutcome) {
        let mut g = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        match &outcome {
            MirrorOutcome::Ok { .. } => g.ok += 1,
            MirrorOutcome::Failed(_) => g.failed += 1,
        }
        if let MirrorOutcome::Ok {
            imported,
            served: Some(v),
        } = &outcome
        {
            g.last_intake = Some(MirrorIntake {
                at,
                ids: imported.clone(),
                targets_version: *v,
            });
        }
        g.last = Some((at, outcome));
    }

    /// The last run's time and outcome, if a run has finished.
    pub fn last(&self) -> Option<(Timestamp, MirrorOutcome)> {
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last
            .clone()
    }

    /// Issue 11, point 4: runs finished since the server started, (succeeded, failed).
    pub fn counts(&self) -> (u64, u64) {
        let g = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        (g.ok, g.failed)
    }

    /// The last run that changed the served catalog.
    pub fn last_intake(&self) -> Option<MirrorIntake> {
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_intake
            .clone()
    }
}

/// Lines for `/v1/health`: the last scheduled mirror run, when the server runs one.
pub fn health_lines(state: &AppState) -> Vec<String> {
    if state.config.mirror.is_none() {
        return Vec::new();
    }
    let runs = &state.mirror_runs;
    let mut lines = vec![match runs.last() {
        None => "mirror: no scheduled run has finished yet".into(),
        Some((at, MirrorOutcome::Ok { imported, .. })) => format!(
            "mirror: last run at {at} ok: {} update(s) imported",
            imported.len()
        ),
        Some((at, MirrorOutcome::Failed(e))) => {
            format!("warning: mirror: last run at {at} failed: {e}")
        }
    }];
    if let Some(MirrorIntake {
        at,
        ids,
        targets_version: version,
    }) = runs.last_intake()
    {
        let shown: Vec<&str> = ids.iter().take(5).map(String::as_str).collect();
        let more = ids.len().saturating_sub(shown.len());
        lines.push(format!(
            "mirror: last catalog taken in at {at}: targets version {version}, {} update(s) signed{}{}",
            ids.len(),
            if shown.is_empty() { String::new() } else { format!(": {}", shown.join(", ")) },
            if more > 0 { format!(" and {more} more") } else { String::new() },
        ));
    }
    lines
}

/// The scheduled mirror's progress as the store keeps it (the server's encoding, issue
/// 12, point 1): the mirror's own state, the snapshot version of the catalog it was
/// committed with, and when each update of that catalog was first published (the
/// working catalog's `published.json`, which the prune counts supersedence from).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredProgress {
    /// Replay protection per source and the update ids signed.
    #[serde(flatten)]
    pub state: MirrorState,
    /// The snapshot version of the catalog this progress was committed with; another
    /// one served means a catalog was pushed since (its imports are asked again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_snapshot: Option<u64>,
    /// First publication time by update id (`publish::prune::Publications`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<BTreeMap<String, Timestamp>>,
}

impl StoredProgress {
    /// As the store keeps it.
    pub fn encode(&self) -> Result<Vec<u8>, MirrorError> {
        serde_json::to_vec(self).map_err(progress_failed)
    }
}

/// The scheduled mirror's progress in the store (issue 12, point 1).
#[derive(Clone)]
pub struct StoreProgress {
    store: Arc<dyn patchday_store::Store>,
    /// The work directory, where servers before this kept `state.json`.
    work_dir: PathBuf,
}

impl std::fmt::Debug for StoreProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreProgress")
            .field("work_dir", &self.work_dir)
            .finish_non_exhaustive()
    }
}

fn progress_failed(e: impl std::fmt::Display) -> MirrorError {
    MirrorError::Progress(e.to_string())
}

impl StoreProgress {
    /// The progress of the mirror whose work directory is `work_dir`.
    pub fn new(store: Arc<dyn patchday_store::Store>, work_dir: PathBuf) -> Self {
        Self { store, work_dir }
    }

    /// The progress committed last (with the catalog of the last run that made one).
    pub async fn committed(&self) -> Result<StoredProgress, MirrorError> {
        match self.store.mirror_progress().await.map_err(progress_failed)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                MirrorError::Progress(format!(
                    "the stored mirror progress is unreadable ({e}); a server bug or a hand-edited database"
                ))
            }),
            None => Ok(StoredProgress {
                state: self.adopt_file().await?,
                ..StoredProgress::default()
            }),
        }
    }

    /// Replaces the stored progress.
    pub async fn put(&self, progress: &StoredProgress) -> Result<(), MirrorError> {
        self.store
            .put_mirror_progress(&progress.encode()?)
            .await
            .map_err(progress_failed)
    }

    /// Moves an older server's `state.json` into the store, once (renamed, not deleted).
    async fn adopt_file(&self) -> Result<MirrorState, MirrorError> {
        let path = MirrorState::path(&self.work_dir);
        if !path.exists() {
            return Ok(MirrorState::default());
        }
        let state = MirrorState::load(&self.work_dir)?;
        self.put(&StoredProgress {
            state: state.clone(),
            ..StoredProgress::default()
        })
        .await?;
        let moved = self.work_dir.join("state.json.moved-to-database");
        std::fs::rename(&path, &moved)
            .map_err(|e| progress_failed(format!("renaming {}: {e}", path.display())))?;
        tracing::warn!(
            from = %path.display(),
            "moved the mirror's progress into the database (issue 12); the file is kept as state.json.moved-to-database and no longer read"
        );
        Ok(state)
    }
}

/// One run's progress: what the run did is committed only with the catalog it made
/// (its working catalog is gone after the run, so an import the served catalog lacks
/// must be signed again); while it runs, only replay protection reaches the store at
/// once (a newer InRelease Date, its source marked as not done).
#[derive(Debug)]
struct RunProgress {
    store: StoreProgress,
    committed: tokio::sync::Mutex<StoredProgress>,
    current: Mutex<MirrorState>,
}

impl RunProgress {
    fn new(store: StoreProgress, committed: StoredProgress, start: MirrorState) -> Self {
        Self {
            store,
            committed: tokio::sync::Mutex::new(committed),
            current: Mutex::new(start),
        }
    }

    /// The state the run ended on.
    fn ended_on(&self) -> MirrorState {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// `committed` with the replay protection of `run` taken in: a source whose InRelease
/// the run verified keeps its newest Date, and is not done (looked at again next run).
fn with_replay_protection(committed: &StoredProgress, run: &MirrorState) -> StoredProgress {
    let mut out = committed.clone();
    for (name, seen) in &run.sources {
        match out.state.sources.get_mut(name) {
            Some(kept) if kept == seen => {}
            Some(kept) => {
                if seen.date > kept.date {
                    kept.date = seen.date;
                    kept.inrelease_sha256 = seen.inrelease_sha256.clone();
                }
                kept.complete = false;
            }
            None => {
                let mut s = seen.clone();
                s.complete = false;
                out.state.sources.insert(name.clone(), s);
            }
        }
    }
    out
}

#[async_trait::async_trait]
impl Progress for RunProgress {
    async fn load(&self) -> Result<MirrorState, MirrorError> {
        Ok(self.ended_on())
    }
    async fn save(&self, state: &MirrorState) -> Result<(), MirrorError> {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = state.clone();
        let mut committed = self.committed.lock().await;
        let protected = with_replay_protection(&committed, state);
        if protected != *committed {
            self.store.put(&protected).await?;
            *committed = protected;
        }
        Ok(())
    }
}

/// Runs the schedule forever: a run at start, then one `every` after each run ends, so
/// two never overlap.
pub async fn run(state: AppState, schedule: MirrorSchedule) {
    loop {
        // Issue 12, point 5: one replica at a time.
        if !crate::lease::hold(&state, crate::lease::MIRROR, schedule.every).await {
            tokio::time::sleep(schedule.every).await;
            continue;
        }
        let at = state.clock.now();
        let started = std::time::Instant::now();
        let outcome = match run_once(&state, &schedule, at).await {
            Ok((imported, served)) => {
                tracing::info!(
                    imported = imported.len(),
                    served = ?served,
                    elapsed_ms = started.elapsed().as_millis(),
                    "scheduled mirror run finished"
                );
                MirrorOutcome::Ok { imported, served }
            }
            Err(e) => {
                let msg = format!(
                    "{e:#}; nothing was taken into the served catalog; the next run (in {}s) retries",
                    schedule.every.as_secs()
                );
                tracing::error!(error = %msg, "scheduled mirror run failed");
                MirrorOutcome::Failed(msg)
            }
        };
        state.mirror_runs.set(at, outcome);
        tokio::time::sleep(schedule.every).await;
    }
}

/// Hosts read, source name → installed source versions, and (issue 9, point 4: the
/// closure of new dependencies) binary name → installed versions, over the hosts of the
/// tenants `visible` admits (`GET /v1/fleet/source-packages` and the schedule).
pub async fn installed_sources(
    state: &AppState,
    visible: impl Fn(&patchday_types::TenantId) -> bool,
) -> Result<(u64, Installed, Installed), crate::error::ApiError> {
    let mut hosts = 0;
    let mut sources: Installed = BTreeMap::new();
    let mut binaries: Installed = BTreeMap::new();
    for t in state.store.list_tenants().await? {
        if !visible(&t.id) {
            continue;
        }
        let tenant = state.store.tenant(&t.id).await?;
        for h in tenant.list_hosts().await? {
            let Some(inv) = tenant.inventory(&h.id).await? else {
                continue;
            };
            hosts += 1;
            for p in inv.packages {
                binaries.entry(p.name).or_default().insert(p.version);
                sources
                    .entry(p.source)
                    .or_default()
                    .insert(p.source_version);
            }
        }
    }
    Ok((hosts, sources, binaries))
}

/// Package name → installed versions.
type Installed = BTreeMap<String, BTreeSet<String>>;

/// Snapshot version of a timestamp's metadata (0 when unreadable).
fn snapshot_version(timestamp: &[u8]) -> u64 {
    patchday_publish::update::timestamp_snapshot_version(timestamp).unwrap_or(0)
}

/// A working catalog built from the store for one run (issue 12, point 1).
struct WorkingCatalog {
    /// The directory (`DATA/catalog/staging-*`, private, removed when dropped).
    dir: crate::catalog::TempDir,
    /// The snapshot version of the served catalog it is a copy of.
    snapshot: u64,
    /// The digests of the target files copied in from the content store (left out of
    /// the intake: the server holds them).
    held: BTreeSet<String>,
}

/// Update documents read from the content store at once while a working catalog is built.
const DOCUMENT_READS: usize = 16;

/// A plain file name from the store (never a path).
fn plain_name(name: &str) -> anyhow::Result<&str> {
    anyhow::ensure!(
        !name.is_empty() && !name.contains('/') && !name.starts_with('.'),
        "the stored catalog names a file {name:?}; a server bug or a hand-edited database"
    );
    Ok(name)
}

/// Builds the catalog directory the run signs into from what the store holds: every
/// metadata file of the served catalog (what `patchday-publish` reads to sign as the
/// delegated role: root, timestamp, snapshot, top-level targets, the roles and their
/// bins), the update documents (the prune reads each one), and `published.json`
/// (`published`). Payloads stay in the content store: signing reads only the metadata,
/// and the intake finds them there by hash.
async fn build_working_catalog(
    state: &AppState,
    published: &BTreeMap<String, Timestamp>,
) -> anyhow::Result<WorkingCatalog> {
    use anyhow::Context;
    let files = state.store.catalog_metadata_files().await?;
    let Some((_, timestamp)) = files.iter().find(|(n, _)| n == "timestamp.json") else {
        anyhow::bail!(
            "the server holds no catalog yet: push the catalog that delegates to the mirror role (`patchday catalog push --repo ~/catalog`); each run signs onto the served catalog"
        );
    };
    let snapshot = snapshot_version(timestamp);
    let dir = crate::catalog::tempdir_in(&state.config.data_dir.join("catalog"))
        .map_err(|e| anyhow::anyhow!(e.message))
        .context("making the mirror's working catalog directory")?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
    }
    let meta = dir.path().join("metadata");
    let targets = dir.path().join("targets");
    std::fs::create_dir_all(&meta)?;
    std::fs::create_dir_all(&targets)?;
    for (name, bytes) in &files {
        std::fs::write(meta.join(plain_name(name)?), bytes)?;
    }
    let names: Vec<String> = state
        .store
        .catalog_updates()
        .await?
        .iter()
        .map(|u| patchday_types::UpdateDocument::target_name(&u.id))
        .collect();
    let mut held = BTreeSet::new();
    // Several reads at once: an object store answers each in milliseconds.
    use futures::StreamExt;
    let mut reads = futures::stream::iter(state.store.catalog_targets(&names).await?)
        .map(|t| async move {
            let bytes = crate::catalog::stored_bytes(state, &t.name, &t.sha256, t.length).await;
            (t, bytes)
        })
        .buffer_unordered(DOCUMENT_READS);
    while let Some((t, bytes)) = reads.next().await {
        let bytes = bytes
            .map_err(|e| anyhow::anyhow!(e.message))
            .with_context(|| {
                format!("reading update document {} from the content store", t.name)
            })?;
        let file = patchday_trust::stored_target_name(plain_name(&t.name)?, &t.sha256);
        std::fs::write(targets.join(file), bytes)?;
        held.insert(t.sha256);
    }
    let record = patchday_publish::prune::Publications {
        published: published.clone(),
    };
    record.save(dir.path())?;
    Ok(WorkingCatalog {
        dir,
        snapshot,
        held,
    })
}

/// When each update of the served catalog was first published, for the prune: as the
/// last run committed it; before any (a server upgraded from a working catalog
/// directory), the seed directory's `published.json`, then the server's own first
/// intake of each update (never earlier than the truth, so a prune is only postponed).
async fn publications(
    state: &AppState,
    committed: &StoredProgress,
    seed: Option<&std::path::Path>,
) -> anyhow::Result<BTreeMap<String, Timestamp>> {
    if let Some(p) = &committed.published {
        return Ok(p.clone());
    }
    let mut out = seed
        .map(|dir| patchday_publish::prune::Publications::load(dir).published)
        .unwrap_or_default();
    let ids: Vec<patchday_types::UpdateId> = state
        .store
        .catalog_updates()
        .await?
        .into_iter()
        .map(|u| u.id)
        .filter(|id| !out.contains_key(id.as_str()))
        .collect();
    for (id, at) in state.store.published_at(&ids).await? {
        out.insert(id.as_str().to_owned(), at);
    }
    Ok(out)
}

async fn run_once(
    state: &AppState,
    schedule: &MirrorSchedule,
    now: Timestamp,
) -> anyhow::Result<(Vec<String>, Option<u64>)> {
    use anyhow::Context;
    let (_, sources, binaries) = installed_sources(state, |_| true)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let fetch = patchday_mirror::HttpFetch::new()?;
    let store_progress = StoreProgress::new(state.store.clone(), schedule.job.work_dir());
    let committed = store_progress.committed().await?;
    let published = publications(state, &committed, schedule.seed.as_deref()).await?;
    // Issue 12, point 1: the working catalog comes from the store, on whichever replica
    // holds the lease, and goes when the run ends.
    let building = std::time::Instant::now();
    let working = build_working_catalog(state, &published).await?;
    tracing::debug!(
        documents = working.held.len(),
        elapsed_ms = building.elapsed().as_millis(),
        "built the mirror's working catalog from the store"
    );
    let start = if committed.catalog_snapshot == Some(working.snapshot) {
        committed.state.clone()
    } else {
        // A catalog was pushed since the last run committed (or this is the first run
        // here): what that catalog holds is asked of it, not of the imports recorded.
        tracing::info!(
            served = working.snapshot,
            committed = ?committed.catalog_snapshot,
            "the served catalog is not the one the last mirror run made: every source is looked at again"
        );
        committed.state.clone().forgetting_imports()
    };
    let progress = Arc::new(RunProgress::new(store_progress.clone(), committed, start));
    let shared: Arc<dyn Progress> = progress.clone();
    let mut job = schedule.job.clone();
    job.publish.repo = working.dir.path().to_path_buf();
    let repo = job.publish.repo.clone();
    if let Some(role) = &job.publish.role {
        let delegated = patchday_trust::delegated_roles(&repo)
            .await
            .context("reading the served catalog's delegations")?;
        anyhow::ensure!(
            delegated.iter().any(|d| d.role == role.role),
            "the served catalog does not delegate to the {r} role: delegate it with the offline targets key (`patchday catalog delegate --role {r} --key-file MIRROR-KEY`) and push the catalog",
            r = role.role
        );
    }
    // Signing and hashing block: the run gets a thread of its own, so that requests keep
    // their workers while it runs.
    let handle = tokio::runtime::Handle::current();
    let owned = job.clone();
    let report = tokio::task::spawn_blocking(move || {
        handle.block_on(patchday_publish::mirror::run_job(
            &owned,
            patchday_mirror::Selection::Installed(sources),
            Some(binaries),
            &fetch,
            Some(shared),
            now,
        ))
    })
    .await
    .context("the mirror run's thread failed")??;
    let imported: Vec<String> = report
        .sync
        .sources
        .iter()
        .flat_map(|s| s.imported.iter().map(|id| job.publish.signed_id(id)))
        .collect();
    let local = std::fs::read(repo.join("metadata/timestamp.json"))
        .map(|t| snapshot_version(&t))
        .context("reading the working catalog's timestamp.json")?;
    let ended_on = StoredProgress {
        state: progress.ended_on(),
        catalog_snapshot: Some(local),
        published: Some(patchday_publish::prune::Publications::load(&repo).published),
    };
    if local == working.snapshot {
        // Nothing signed, nothing dropped: the served catalog is the run's.
        store_progress.put(&ended_on).await?;
        return Ok((imported, None));
    }
    // Taken in like a push, with the progress the run ended on in the same transaction,
    // and only onto the catalog it was built from.
    let status = crate::catalog::intake_repo(
        state,
        &repo,
        &working.held,
        Some(crate::catalog::MirrorCommit {
            progress: ended_on.encode()?,
            based_on_snapshot: working.snapshot,
        }),
    )
    .await
    .map_err(|e| anyhow::anyhow!(e.message))
    .context("taking in the mirror's catalog")?;
    Ok((imported, Some(status.targets_version)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use patchday_mirror::state::SourceState;

    fn progress_with(id: &str) -> MirrorState {
        let mut s = MirrorState::default();
        s.imported.insert(id.into());
        s.sources.insert(
            "debian-security".into(),
            SourceState {
                inrelease_sha256: "ab".repeat(32),
                date: "2026-12-01T10:00:00Z".parse().unwrap(),
                complete: true,
                selection: "x".into(),
            },
        );
        s
    }

    fn stored(state: MirrorState) -> StoredProgress {
        StoredProgress {
            state,
            ..StoredProgress::default()
        }
    }

    async fn sqlite(d: &tempfile::TempDir) -> Arc<dyn patchday_store::Store> {
        Arc::new(
            patchday_store_sqlite::SqliteStore::open(&d.path().join("patchday.db"))
                .await
                .unwrap(),
        )
    }

    /// Issue 12, point 1: an older server's `state.json` moves into the store at the first
    /// load (renamed, not lost, the InRelease dates of replay protection kept); from then
    /// on the store is read, also by a replica with another work directory.
    #[tokio::test]
    async fn a_state_file_moves_into_the_store_once_and_replicas_read_the_store() {
        let d = tempfile::tempdir().unwrap();
        let store = sqlite(&d).await;
        let work = d.path().join("mirror");
        std::fs::create_dir_all(&work).unwrap();
        let old = progress_with("mirror-DEB-a-1");
        old.save(&work).unwrap();

        let p = StoreProgress::new(store.clone(), work.clone());
        assert_eq!(p.committed().await.unwrap(), stored(old.clone()));
        assert!(
            !MirrorState::path(&work).exists(),
            "the file is no longer read"
        );
        assert!(
            work.join("state.json.moved-to-database").exists(),
            "and kept"
        );

        // A replica elsewhere reads what this one saves.
        let newer = stored(progress_with("mirror-DEB-b-2"));
        p.put(&newer).await.unwrap();
        let other = StoreProgress::new(store.clone(), d.path().join("elsewhere"));
        assert_eq!(other.committed().await.unwrap(), newer);
        // A state file that shows up again later is not read over the store's.
        old.save(&work).unwrap();
        assert_eq!(p.committed().await.unwrap(), newer);
    }

    /// Issue 12, point 1: what a server before the store-built working catalog stored
    /// (the bare mirror state) still reads, and what this one stores is that state with
    /// two more fields, so neither loses the other's replay protection.
    #[test]
    fn the_stored_progress_reads_the_older_encoding() {
        let old = progress_with("mirror-DEB-a-1");
        let bytes = serde_json::to_vec(&old).unwrap();
        let read: StoredProgress = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(read, stored(old.clone()));
        let mut now = read;
        now.catalog_snapshot = Some(7);
        now.published = Some(BTreeMap::from([(
            "mirror-DEB-a-1".to_string(),
            "2026-12-01T10:00:00Z".parse().unwrap(),
        )]));
        let back: MirrorState = serde_json::from_slice(&now.encode().unwrap()).unwrap();
        assert_eq!(back, old);
    }

    /// Issue 12, point 1: while a run goes, its imports stay with the run (its working
    /// catalog is gone if it fails, so they must be signed again), but a newer InRelease
    /// it verified is stored at once: a replayed older one is refused on any replica even
    /// if the run never finishes.
    #[tokio::test]
    async fn a_run_stores_replay_protection_at_once_and_its_imports_only_with_its_catalog() {
        let d = tempfile::tempdir().unwrap();
        let store = sqlite(&d).await;
        let p = StoreProgress::new(store.clone(), d.path().join("mirror"));
        let committed = StoredProgress {
            catalog_snapshot: Some(4),
            ..stored(progress_with("mirror-DEB-a-1"))
        };
        p.put(&committed).await.unwrap();
        let run = RunProgress::new(p.clone(), committed.clone(), committed.state.clone());
        let mut state = run.load().await.unwrap();
        let newer = state.sources.get_mut("debian-security").unwrap();
        newer.date = "2026-12-02T10:00:00Z".parse().unwrap();
        newer.inrelease_sha256 = "cd".repeat(32);
        state.imported.insert("mirror-DEB-a-2".into());
        run.save(&state).await.unwrap();

        let kept = p.committed().await.unwrap();
        let src = &kept.state.sources["debian-security"];
        assert_eq!(
            src.date,
            "2026-12-02T10:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert!(!src.complete, "the source is looked at again next run");
        assert_eq!(
            kept.state.imported, committed.state.imported,
            "the run's import is not stored before its catalog"
        );
        assert_eq!(kept.catalog_snapshot, Some(4));
        assert_eq!(
            run.ended_on(),
            state,
            "the run itself goes on from what it did"
        );
        // An older InRelease seen later (a replay) does not lower the stored Date.
        let mut replayed = state.clone();
        replayed.sources.get_mut("debian-security").unwrap().date =
            "2026-11-30T10:00:00Z".parse().unwrap();
        run.save(&replayed).await.unwrap();
        assert_eq!(
            p.committed().await.unwrap().state.sources["debian-security"].date,
            "2026-12-02T10:00:00Z".parse::<Timestamp>().unwrap()
        );
    }
}
