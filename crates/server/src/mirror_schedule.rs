//! Issue 9, point 1: `patchday server --mirror-every 1h`: the archive sync on a schedule,
//! inside the server. Each tick runs the same job as `patchday mirror run`
//! ([`patchday_publish::mirror::run_job`]), selecting newer versions of the source
//! packages installed on at least one enrolled host, signed by the delegated mirror role
//! into the server's working catalog directory. When that catalog is ahead of the one
//! served, it goes through the same intake as a push ([`crate::catalog::intake_repo`]):
//! verified against the pinned root before anything is stored.
//!
//! Runs never overlap (one loop, the next tick waits for the run); a failed run is logged
//! with what to do, shown in `/v1/health`, and retried at the next tick.
//!
//! Issue 12, point 1: the run's progress (each source's last verified InRelease, for
//! replay protection, and the update ids signed) is in the store ([`StoreProgress`]),
//! saved as the run goes and stored again with the catalog the run made, in the same
//! transaction; a run on another replica or after a restart continues from it. A server
//! before this kept it as `MIRROR-WORK/state.json`: the first run moves it into the store.

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
    /// The mirror job (configuration, working catalog, keys).
    pub job: MirrorJob,
    /// Time between the starts of two runs (a longer run delays the next).
    pub every: std::time::Duration,
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

    /// The stored progress, encoded as the store keeps it.
    fn encode(state: &MirrorState) -> Result<Vec<u8>, MirrorError> {
        serde_json::to_vec(state).map_err(progress_failed)
    }

    /// Moves an older server's `state.json` into the store, once (renamed, not deleted).
    async fn adopt_file(&self) -> Result<MirrorState, MirrorError> {
        let path = MirrorState::path(&self.work_dir);
        if !path.exists() {
            return Ok(MirrorState::default());
        }
        let state = MirrorState::load(&self.work_dir)?;
        self.store
            .put_mirror_progress(&Self::encode(&state)?)
            .await
            .map_err(progress_failed)?;
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

#[async_trait::async_trait]
impl Progress for StoreProgress {
    async fn load(&self) -> Result<MirrorState, MirrorError> {
        match self.store.mirror_progress().await.map_err(progress_failed)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                MirrorError::Progress(format!(
                    "the stored mirror progress is unreadable ({e}); a server bug or a hand-edited database"
                ))
            }),
            None => self.adopt_file().await,
        }
    }
    async fn save(&self, state: &MirrorState) -> Result<(), MirrorError> {
        self.store
            .put_mirror_progress(&Self::encode(state)?)
            .await
            .map_err(progress_failed)
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
        let outcome = match run_once(&state, &schedule.job, at).await {
            Ok((imported, served)) => {
                tracing::info!(
                    imported = imported.len(),
                    served = ?served,
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

async fn run_once(
    state: &AppState,
    job: &MirrorJob,
    now: Timestamp,
) -> anyhow::Result<(Vec<String>, Option<u64>)> {
    use anyhow::Context;
    let (_, sources, binaries) = installed_sources(state, |_| true)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let fetch = patchday_mirror::HttpFetch::new()?;
    // Signing and hashing block: the run gets a thread of its own, so that requests keep
    // their workers while it runs.
    let owned = job.clone();
    let progress = StoreProgress::new(state.store.clone(), job.work_dir());
    let shared: Arc<dyn Progress> = Arc::new(progress.clone());
    let handle = tokio::runtime::Handle::current();
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
    // The working catalog is ahead of the served one (this run signed, or an earlier
    // run's intake failed): take it in like a push.
    let repo = &job.publish.repo;
    let local = std::fs::read(repo.join("metadata/timestamp.json")).with_context(|| {
        format!(
            "reading {}/metadata/timestamp.json (the --mirror-catalog directory must be a catalog)",
            repo.display()
        )
    })?;
    let served = state
        .store
        .catalog_metadata("timestamp.json")
        .await?
        .map_or(0, |t| snapshot_version(&t));
    let local = snapshot_version(&local);
    if local < served || (local == served && !imported.is_empty()) {
        // What this run signed is not served; once the operator replaces the working
        // copy, the next run signs again whatever that catalog lacks.
        let forgotten = progress.load().await?.forgetting_imports();
        progress.save(&forgotten).await?;
        anyhow::bail!(
            "the served catalog (snapshot version {served}) is ahead of the mirror's working catalog {} (snapshot version {local}): a catalog was pushed from elsewhere; copy that catalog into {}, and the next run signs again what it lacks",
            repo.display(),
            repo.display()
        );
    }
    if local == served {
        return Ok((imported, None));
    }
    // The progress the run ends on commits with the catalog it made.
    let ended_on = StoreProgress::encode(&progress.load().await?)?;
    let status = crate::catalog::intake_repo(state, repo, Some(ended_on))
        .await
        .map_err(|e| anyhow::anyhow!(e.message))
        .with_context(|| {
            format!(
                "taking in the mirror's catalog {} (if a catalog was pushed from elsewhere since, copy it into that directory)",
                repo.display()
            )
        })?;
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

    /// Issue 12, point 1: an older server's `state.json` moves into the store at the first
    /// load (renamed, not lost, the InRelease dates of replay protection kept); from then
    /// on the store is read, also by a replica with another work directory.
    #[tokio::test]
    async fn a_state_file_moves_into_the_store_once_and_replicas_read_the_store() {
        let d = tempfile::tempdir().unwrap();
        let store: Arc<dyn patchday_store::Store> = Arc::new(
            patchday_store_sqlite::SqliteStore::open(&d.path().join("patchday.db"))
                .await
                .unwrap(),
        );
        let work = d.path().join("mirror");
        std::fs::create_dir_all(&work).unwrap();
        let old = progress_with("mirror-DEB-a-1");
        old.save(&work).unwrap();

        let p = StoreProgress::new(store.clone(), work.clone());
        assert_eq!(p.load().await.unwrap(), old);
        assert!(
            !MirrorState::path(&work).exists(),
            "the file is no longer read"
        );
        assert!(
            work.join("state.json.moved-to-database").exists(),
            "and kept"
        );

        // A replica elsewhere reads what this one saves.
        let newer = progress_with("mirror-DEB-b-2");
        p.save(&newer).await.unwrap();
        let other = StoreProgress::new(store.clone(), d.path().join("elsewhere"));
        assert_eq!(other.load().await.unwrap(), newer);
        // A state file that shows up again later is not read over the store's.
        old.save(&work).unwrap();
        assert_eq!(p.load().await.unwrap(), newer);
    }
}
