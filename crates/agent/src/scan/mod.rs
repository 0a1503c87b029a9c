//! Issue 14, point 5: download and messenger folders scanned with clamd.
//!
//! `patchday-agent scan-folders` runs [`supervise`] (the package's
//! `patchday-agent-scan.service`: its own unit, because it opens hostile files and so gets
//! a much tighter sandbox than the agent's dpkg runs can have): whenever an applied
//! baseline has a `[scan]` table, a watcher runs for it (started, restarted with a new
//! version, stopped when the baseline goes), and a heartbeat tells the agent's runs that
//! the scan is alive (a baseline whose scan is not running is reported). A watcher:
//! - watches the folders its globs name (inotify, re-expanded every few seconds, so a new
//!   user's `Downloads` is picked up) for `IN_CLOSE_WRITE` and `IN_MOVED_TO`: a file is
//!   scanned once it is complete, and a download still named `.crdownload` or `.part` only
//!   once renamed; files already there when it starts (or when a folder appears) are
//!   scanned once;
//! - opens each file without following links and without blocking (a FIFO cannot hang
//!   it), checks it is a regular file, and streams that descriptor to clamd (`zINSTREAM`):
//!   the bytes judged are the bytes of the inode it opened;
//! - moves a hit into the quarantine ([`quarantine`]) and reports it;
//! - never passes a file clamd could not scan: it is retried with back-off, reported as
//!   unscanned once `unscanned_after_seconds` have passed (and held in the quarantine with
//!   `when_clamd_down = "quarantine"`), and reported again when a later scan finds it
//!   clean;
//! - keeps memory bounded: at most [`MAX_QUEUE`] paths wait and [`MAX_PENDING`] retries
//!   are tracked; beyond that (or when the kernel's own event queue overflows) it forgets
//!   the paths and walks its folders again once the queue has drained; scans are paced at
//!   `max_scans_per_second`, one at a time.
//!
//! Findings go to the server signed with the host key (`POST /v1/agent/scan-findings`)
//! from a bounded outbox, retried until the server takes them.

pub mod quarantine;

use crate::run::AgentConfig;
use futures::StreamExt;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use patchday_baseline::scan::{Scan, WhenClamdDown};
use patchday_baseline::Policy;
use patchday_clamd::{Clamd, ScanResult};
use patchday_types::api::{ScanFinding, ScanFindingsRequest, ScanOutcome};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Most paths waiting to be scanned.
pub const MAX_QUEUE: usize = 10_000;
/// Most files tracked for a retry.
pub const MAX_PENDING: usize = 10_000;
/// Most folders one watcher watches.
pub const MAX_FOLDERS: usize = 1024;
/// Most findings waiting for the server.
pub const MAX_OUTBOX: usize = 1000;
/// Most files remembered as scanned clean (so a walk of a folder with many clean files
/// makes progress instead of queueing the same first files again); about 50 bytes each.
pub const MAX_CLEAN: usize = 200_000;
/// How often folders are re-expanded, retries looked at and findings sent.
const TICK: Duration = Duration::from_secs(2);

/// The `[scan]` tables of the applied baselines, by baseline name.
pub fn scan_policies(root: &Path) -> BTreeMap<String, Scan> {
    let Ok(reg) = crate::install::baseline::registry(root) else {
        return BTreeMap::new();
    };
    reg.into_iter()
        .filter_map(|(name, e)| {
            Policy::parse(&e.policy)
                .ok()
                .and_then(|p| p.scan)
                .map(|s| (name, s))
        })
        .collect()
}

fn heartbeat_path(root: &Path) -> PathBuf {
    root.join("var/lib/patchday/scan-heartbeat")
}

/// Whether `scan-folders` said it was alive within the last minute (read by the agent's
/// baseline check at every run).
pub fn running(root: &Path, now: jiff::Timestamp) -> bool {
    std::fs::read_to_string(heartbeat_path(root))
        .ok()
        .and_then(|s| s.trim().parse::<jiff::Timestamp>().ok())
        .is_some_and(|at| now.duration_since(at).as_secs() < 60)
}

/// The path on the machine of a host path (below the agent's root).
pub fn on_machine(root: &Path, host_path: &str) -> PathBuf {
    root.join(host_path.trim_start_matches('/'))
}

/// The host's view of a path on the machine.
fn on_host(root: &Path, path: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(rel) => format!("/{}", rel.display()),
        Err(_) => path.display().to_string(),
    }
}

/// Runs the folder scans the applied baselines ask for, until the process ends: checks
/// the baseline registry every `every`, starts a watcher for each `[scan]`, restarts one
/// whose policy changed or that stopped, stops one whose baseline went, and sends the
/// findings.
pub async fn supervise(cfg: AgentConfig, every: Duration) {
    let outbox = Outbox::at(cfg.state_dir.join("scan-outbox.json"));
    let mut running: BTreeMap<String, (Scan, tokio::task::JoinHandle<()>)> = BTreeMap::new();
    loop {
        let wanted = scan_policies(&cfg.root);
        running.retain(|name, (scan, task)| {
            let keep = wanted.get(name) == Some(scan) && !task.is_finished();
            if !keep {
                task.abort();
                tracing::info!(baseline = %name, "folder scan stopped");
            }
            keep
        });
        for (name, scan) in wanted {
            if running.contains_key(&name) {
                continue;
            }
            tracing::info!(baseline = %name, folders = ?scan.folders, "folder scan started");
            let task = tokio::spawn(watch(
                cfg.root.clone(),
                name.clone(),
                scan.clone(),
                outbox.clone(),
            ));
            running.insert(name, (scan, task));
        }
        outbox.send(&cfg).await;
        if !running.is_empty() {
            let beat = crate::run::clock_now().to_string();
            if let Err(e) =
                crate::state::write_atomic(&heartbeat_path(&cfg.root), beat.as_bytes(), 0o600)
            {
                tracing::warn!(error = %format!("{e:#}"), "cannot write the folder scan's heartbeat");
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// Findings waiting for the server: bounded (the oldest go first when full, counted in
/// the log), sent in order, kept in a file (when given) at every send, so a restart
/// loses at most the findings of the last few seconds (the host's log has them all).
#[derive(Clone, Default)]
pub struct Outbox {
    waiting: Arc<Mutex<VecDeque<ScanFinding>>>,
    file: Option<Arc<PathBuf>>,
    /// Changed since the file was written.
    dirty: Arc<std::sync::atomic::AtomicBool>,
}

impl Outbox {
    /// An outbox kept in `file`, with what a previous run left there.
    pub fn at(file: PathBuf) -> Outbox {
        let mut waiting: VecDeque<ScanFinding> = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(file = %file.display(), error = %e, "the scan findings outbox is unreadable; starting empty (the host's log has the findings)");
                VecDeque::new()
            }),
            Err(_) => VecDeque::new(),
        };
        while waiting.len() > MAX_OUTBOX {
            waiting.pop_front();
        }
        Outbox {
            waiting: Arc::new(Mutex::new(waiting)),
            file: Some(Arc::new(file)),
            dirty: Arc::default(),
        }
    }

    /// Writes the file when something changed (once per send, not per finding: a flood
    /// of hits with the server away would otherwise rewrite it for every one).
    fn save(&self) {
        let Some(file) = &self.file else { return };
        if !self.dirty.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let waiting = self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let written = serde_json::to_vec(&waiting)
            .map_err(anyhow::Error::from)
            .and_then(|b| crate::state::write_atomic(file, &b, 0o600));
        if let Err(e) = written {
            tracing::warn!(file = %file.display(), error = %format!("{e:#}"), "cannot keep the scan findings outbox on disk");
        }
    }

    /// How many findings wait.
    pub fn len(&self) -> usize {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues a finding (and logs it: the host's own journal keeps every finding).
    pub fn push(&self, f: ScanFinding) {
        tracing::warn!(outcome = ?f.outcome, path = ?f.path, signature = ?f.signature, quarantine = ?f.quarantine_id, reason = ?f.reason, "folder scan finding");
        let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if w.len() >= MAX_OUTBOX {
            w.pop_front();
            tracing::error!("the scan findings outbox is full (the server unreachable for long?): the oldest finding is dropped from it; the host's log keeps it");
        }
        w.push_back(f);
        self.dirty.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Sends what waits; what the server did not take stays.
    pub async fn send(&self, cfg: &AgentConfig) {
        self.send_waiting(cfg).await;
        self.save();
    }

    async fn send_waiting(&self, cfg: &AgentConfig) {
        let batch: Vec<ScanFinding> = {
            let w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            if w.is_empty() {
                return;
            }
            w.iter().cloned().collect()
        };
        match post_findings(cfg, batch.clone()).await {
            Ok(()) => {
                let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
                for _ in 0..batch.len().min(w.len()) {
                    w.pop_front();
                }
                self.dirty.store(true, std::sync::atomic::Ordering::SeqCst);
                tracing::info!(
                    findings = batch.len(),
                    "scan findings reported to the server"
                );
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "could not report scan findings; trying again shortly")
            }
        }
    }
}

/// Posts findings signed with the host key.
pub async fn post_findings(cfg: &AgentConfig, findings: Vec<ScanFinding>) -> anyhow::Result<()> {
    let state = crate::state::StateDir::open(&cfg.state_dir)?;
    let Some(id) = state.identity()? else {
        anyhow::bail!("the agent is not enrolled yet: findings wait until it is");
    };
    let client = crate::signed::host_client(cfg, &state, &id)?;
    client
        .post::<_, ()>("v1/agent/scan-findings", &ScanFindingsRequest { findings })
        .await
}

/// Paths waiting for a scan, each once, at most [`MAX_QUEUE`]; past that, a walk of every
/// folder is owed instead.
#[derive(Default)]
struct Queue {
    order: VecDeque<PathBuf>,
    queued: HashSet<PathBuf>,
    walk_owed: bool,
}

impl Queue {
    fn push(&mut self, p: PathBuf) {
        if self.queued.contains(&p) {
            return;
        }
        if self.order.len() >= MAX_QUEUE {
            self.walk_owed = true;
            return;
        }
        self.queued.insert(p.clone());
        self.order.push_back(p);
    }

    fn pop(&mut self) -> Option<PathBuf> {
        let p = self.order.pop_front()?;
        self.queued.remove(&p);
        Some(p)
    }
}

/// A file clamd could not scan yet.
struct Pending {
    since: Instant,
    next_try: Instant,
    tries: u32,
    /// Reported as unscanned already.
    reported: bool,
    /// Held in the quarantine under this id (`when_clamd_down = "quarantine"`).
    held: Option<String>,
    /// Where the host sees it.
    host_path: String,
}

/// One watcher's state.
struct Watcher {
    root: PathBuf,
    baseline: String,
    scan: Scan,
    clamd: Clamd,
    quarantine: PathBuf,
    outbox: Outbox,
    queue: Queue,
    pending: HashMap<PathBuf, Pending>,
    /// Files too large to scan, reported once each (inode, size).
    too_large: HashSet<(u64, u64, u64)>,
    /// Files scanned clean, as they were then: walks skip them.
    clean: HashSet<Identity>,
    folders: HashMap<WatchDescriptor, PathBuf>,
}

/// What one scan attempt came to.
enum Attempt {
    /// Nothing to do (gone, a link, not a regular file, a partial download).
    Skipped,
    Clean,
    Quarantined,
    /// clamd could not answer.
    Failed(String),
}

async fn watch(root: PathBuf, baseline: String, scan: Scan, outbox: Outbox) {
    if let Err(e) = watch_inner(root, baseline.clone(), scan, outbox).await {
        tracing::error!(baseline = %baseline, error = %format!("{e:#}"), "folder scan stopped; it is started again shortly");
    }
}

async fn watch_inner(
    root: PathBuf,
    baseline: String,
    scan: Scan,
    outbox: Outbox,
) -> anyhow::Result<()> {
    let clamd = Clamd {
        address: scan
            .clamd
            .parse()
            .map_err(|e: String| anyhow::anyhow!("scan.clamd: {e}"))?,
        timeout: Duration::from_secs(scan.timeout_seconds),
    };
    let quarantine = on_machine(&root, &scan.quarantine);
    quarantine::prepare(&quarantine)?;
    let inotify = Inotify::init().map_err(|e| {
        anyhow::anyhow!("inotify is not available ({e}); raise fs.inotify.max_user_instances")
    })?;
    let mut events = inotify.into_event_stream(vec![0u8; 64 * 1024])?;
    let mut w = Watcher {
        root,
        baseline,
        scan,
        clamd,
        quarantine,
        outbox,
        queue: Queue::default(),
        pending: HashMap::new(),
        too_large: HashSet::new(),
        clean: HashSet::new(),
        folders: HashMap::new(),
    };
    let mut watches = events.watches();
    w.refresh(&mut watches);
    let mut tick = tokio::time::interval(TICK);
    let pace = Duration::from_secs(1) / w.scan.max_scans_per_second.max(1);
    let mut next_scan = tokio::time::Instant::now();
    loop {
        let work = !w.queue.order.is_empty();
        tokio::select! {
            biased;
            ev = events.next() => {
                let Some(ev) = ev else {
                    anyhow::bail!("the inotify stream ended");
                };
                let ev = ev?;
                if ev.mask.contains(EventMask::Q_OVERFLOW) {
                    tracing::warn!("more folder events than the kernel queues: walking the folders again");
                    w.queue.walk_owed = true;
                } else if ev.mask.contains(EventMask::IGNORED) {
                    w.folders.remove(&ev.wd);
                } else if let (Some(dir), Some(name)) = (w.folders.get(&ev.wd), ev.name) {
                    w.queue.push(dir.join(name));
                }
            }
            _ = tick.tick() => {
                w.refresh(&mut watches);
                w.due_retries();
            }
            _ = tokio::time::sleep_until(next_scan), if work => {
                if let Some(p) = w.queue.pop() {
                    w.process(&p).await;
                }
                next_scan = tokio::time::Instant::now() + pace;
            }
        }
    }
}

impl Watcher {
    /// Watches folders that appeared (their files are queued: the first scan of what is
    /// already there) and walks every folder when a walk is owed and the queue is empty.
    fn refresh(&mut self, watches: &mut inotify::Watches) {
        let known: HashSet<PathBuf> = self.folders.values().cloned().collect();
        for f in patchday_baseline::scan::expand(&self.root, &self.scan.folders, MAX_FOLDERS) {
            if known.contains(&f.path) {
                continue;
            }
            let mask = WatchMask::CLOSE_WRITE
                | WatchMask::MOVED_TO
                | WatchMask::ONLYDIR
                | WatchMask::DONT_FOLLOW
                | WatchMask::EXCL_UNLINK;
            match watches.add(&f.path, mask) {
                Ok(wd) => {
                    tracing::info!(folder = ?on_host(&self.root, &f.path), "watching folder");
                    self.folders.insert(wd, f.path.clone());
                    self.walk(&f.path);
                }
                Err(e) => {
                    tracing::warn!(folder = ?on_host(&self.root, &f.path), error = %e, "cannot watch folder (raise fs.inotify.max_user_watches?)")
                }
            }
        }
        if self.queue.walk_owed && self.queue.order.is_empty() {
            self.queue.walk_owed = false;
            let dirs: Vec<PathBuf> = self.folders.values().cloned().collect();
            for d in dirs {
                self.walk(&d);
            }
        }
    }

    /// Queues the files directly in `dir` not known clean as they are; stops when the
    /// queue is full (another walk is then owed).
    fn walk(&mut self, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if self.queue.order.len() >= MAX_QUEUE {
                self.queue.walk_owed = true;
                return;
            }
            // DirEntry::metadata does not follow links.
            let Ok(m) = e.metadata() else { continue };
            if m.is_file() && !self.clean.contains(&identity(&m)) {
                self.queue.push(e.path());
            }
        }
    }

    /// Queues the retries that are due.
    fn due_retries(&mut self) {
        let now = Instant::now();
        let due: Vec<PathBuf> = self
            .pending
            .iter()
            .filter(|(_, p)| p.next_try <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for p in due {
            self.queue.push(p);
        }
    }

    async fn process(&mut self, path: &Path) {
        let attempt = self.attempt(path).await;
        match attempt {
            Attempt::Skipped | Attempt::Quarantined => {
                self.pending.remove(path);
            }
            Attempt::Clean => {
                if let Some(p) = self.pending.remove(path) {
                    if p.reported {
                        let mut f = self.finding(ScanOutcome::CleanAfterRetry, &p.host_path);
                        f.quarantine_id = p.held.clone();
                        if let Some(id) = &p.held {
                            // Held unscanned, now clean: back where it was.
                            match quarantine::release(&self.quarantine, &self.root, id, None, false)
                            {
                                Ok((r, _)) => f.size = r.size,
                                Err(e) => {
                                    f.reason = Some(format!("clean, but it could not be put back: {e:#}; release it by hand"));
                                }
                            }
                        }
                        self.outbox.push(f);
                    }
                }
            }
            Attempt::Failed(reason) => self.failed(path, reason),
        }
    }

    fn finding(&self, outcome: ScanOutcome, host_path: &str) -> ScanFinding {
        ScanFinding {
            time: crate::run::clock_now(),
            baseline: self.baseline.clone(),
            outcome,
            path: host_path.to_owned(),
            size: 0,
            owner: None,
            sha256: None,
            signature: None,
            quarantine_id: None,
            reason: None,
        }
    }

    /// clamd could not scan `path`: retried with back-off; reported once the bound
    /// passed (and held in the quarantine when the policy says so).
    fn failed(&mut self, path: &Path, reason: String) {
        let now = Instant::now();
        if !self.pending.contains_key(path) {
            if self.pending.len() >= MAX_PENDING {
                // Not forgotten: the next walk finds it again.
                self.queue.walk_owed = true;
                return;
            }
            let host_path = on_host(&self.root, path);
            self.pending.insert(
                path.to_path_buf(),
                Pending {
                    since: now,
                    next_try: now,
                    tries: 0,
                    reported: false,
                    held: None,
                    host_path,
                },
            );
        }
        let bound = Duration::from_secs(self.scan.unscanned_after_seconds);
        let hold = self.scan.when_clamd_down == WhenClamdDown::Quarantine;
        let Some(p) = self.pending.get_mut(path) else {
            return;
        };
        p.tries = p.tries.saturating_add(1);
        let backoff =
            Duration::from_secs(2u64.saturating_pow(p.tries.min(5))).min(Duration::from_secs(15));
        p.next_try = now + backoff;
        tracing::warn!(path = ?p.host_path, tries = p.tries, error = %reason, "not scanned yet; retrying");
        if p.reported || now.duration_since(p.since) < bound {
            return;
        }
        p.reported = true;
        let host_path = p.host_path.clone();
        let already_held = p.held.is_some();
        let mut f = self.finding(ScanOutcome::Unscanned, &host_path);
        f.reason = Some(format!(
            "not scanned for {}s: {reason}; kept {} and retried",
            bound.as_secs(),
            if hold {
                "in the quarantine"
            } else {
                "in place"
            }
        ));
        if hold && !already_held {
            match self.hold(path, &host_path) {
                Ok(r) => {
                    f.size = r.size;
                    f.owner = Some(r.uid);
                    f.sha256 = Some(r.sha256.clone());
                    f.quarantine_id = Some(r.id.clone());
                    // From now on the retries scan the held copy.
                    let bin = self.quarantine.join(format!("{}.quarantined", r.id));
                    if let Some(mut p) = self.pending.remove(path) {
                        p.held = Some(r.id);
                        self.pending.insert(bin, p);
                    }
                }
                Err(e) => {
                    f.reason = Some(format!(
                        "{}; it could not be held: {e:#}",
                        f.reason.unwrap_or_default()
                    ));
                }
            }
        }
        self.outbox.push(f);
    }

    /// Moves a file clamd could not scan into the quarantine (held, no signature).
    fn hold(&self, path: &Path, host_path: &str) -> anyhow::Result<quarantine::Record> {
        let mut file = open_regular(path)?.ok_or_else(|| anyhow::anyhow!("it is gone"))?;
        let meta = file.metadata()?;
        let sha256 = quarantine::digest(&mut file)?;
        quarantine::take(
            &self.quarantine,
            quarantine::Taken {
                path,
                host_path: host_path.to_owned(),
                file: &mut file,
                meta: &meta,
                sha256,
                signature: None,
                baseline: &self.baseline,
            },
            crate::run::clock_now(),
        )
    }

    async fn attempt(&mut self, path: &Path) -> Attempt {
        let held = self.pending.get(path).and_then(|p| p.held.clone());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if held.is_none() && self.scan.is_partial(&name) {
            return Attempt::Skipped;
        }
        let mut file = match open_regular(path) {
            Ok(Some(f)) => f,
            Ok(None) => return Attempt::Skipped,
            Err(e) => return Attempt::Failed(format!("cannot open it: {e:#}")),
        };
        let meta = match file.metadata() {
            Ok(m) => m,
            Err(e) => return Attempt::Failed(format!("cannot stat it: {e}")),
        };
        let host_path = self
            .pending
            .get(path)
            .map(|p| p.host_path.clone())
            .unwrap_or_else(|| on_host(&self.root, path));
        let max = self.scan.max_file_bytes();
        if meta.len() > max {
            if self.too_large.len() >= MAX_PENDING {
                self.too_large.clear();
            }
            if self.too_large.insert((meta.dev(), meta.ino(), meta.len())) {
                let mut f = self.finding(ScanOutcome::Unscanned, &host_path);
                f.size = meta.len();
                f.owner = Some(meta.uid());
                f.reason = Some(format!(
                    "larger than max_file_mib ({} MiB): not scanned",
                    self.scan.max_file_mib
                ));
                self.outbox.push(f);
            }
            return Attempt::Skipped;
        }
        let result = match file.try_clone() {
            Ok(dup) => {
                let mut reader = tokio::fs::File::from_std(dup).take(max.saturating_add(1));
                self.clamd.scan_reader(&mut reader).await
            }
            Err(e) => return Attempt::Failed(format!("cannot read it: {e}")),
        };
        let signature = match result {
            Ok(ScanResult::Clean) => {
                tracing::debug!(path = ?host_path, "clean");
                if self.clean.len() >= MAX_CLEAN {
                    // Forgetting costs only rescans, never a file passed unscanned.
                    self.clean.clear();
                }
                self.clean.insert(identity(&meta));
                return Attempt::Clean;
            }
            Ok(ScanResult::Found(sig)) => sig,
            Err(e) => return Attempt::Failed(e.to_string()),
        };
        let sha256 = match quarantine::digest(&mut file) {
            Ok(d) => d,
            Err(e) => return Attempt::Failed(format!("cannot read it for its digest: {e:#}")),
        };
        let mut f = self.finding(ScanOutcome::Quarantined, &host_path);
        f.size = meta.len();
        f.owner = Some(meta.uid());
        f.sha256 = Some(sha256.clone());
        f.signature = Some(signature.clone());
        let released = quarantine::released(&self.quarantine)
            .iter()
            .any(|r| r.sha256 == sha256 && r.path == host_path);
        if released {
            // Released by an admin: left in place (or put back, when held unscanned).
            tracing::info!(path = ?host_path, signature = %signature, "released from the quarantine by an admin: left alone");
            return Attempt::Clean;
        }
        if let Some(id) = held {
            // Already in the quarantine: it stays, now with its signature.
            match quarantine::record(&self.quarantine, &id) {
                Ok(mut r) => {
                    r.signature = Some(signature);
                    r.held_unscanned = false;
                    if let Err(e) = quarantine::save(&self.quarantine, &r) {
                        tracing::error!(error = %format!("{e:#}"), "could not update the quarantine record");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "quarantine record unreadable")
                }
            }
            f.quarantine_id = Some(id);
            self.outbox.push(f);
            return Attempt::Quarantined;
        }
        let taken = quarantine::take(
            &self.quarantine,
            quarantine::Taken {
                path,
                host_path,
                file: &mut file,
                meta: &meta,
                sha256,
                signature: Some(signature),
                baseline: &self.baseline,
            },
            crate::run::clock_now(),
        );
        match taken {
            Ok(r) => {
                f.quarantine_id = Some(r.id);
                if !r.original_removed {
                    f.reason = Some(
                        "the path changed before removal; the scanned inode was made unreadable"
                            .into(),
                    );
                }
                self.outbox.push(f);
                Attempt::Quarantined
            }
            Err(e) => Attempt::Failed(format!(
                "found {} but could not quarantine it: {e:#}",
                f.signature.unwrap_or_default()
            )),
        }
    }
}

/// A file as it was: device, inode, size and status-change time (ctime: set by the
/// kernel at every write, rename or chmod, and not settable by users as mtime is).
type Identity = (u64, u64, u64, i64, i64);

fn identity(m: &std::fs::Metadata) -> Identity {
    (m.dev(), m.ino(), m.len(), m.ctime(), m.ctime_nsec())
}

/// Opens `path` for reading without following a link at its last component and without
/// blocking (a FIFO or device cannot hang the scan); `None` when it is gone, a link or
/// not a regular file.
fn open_regular(path: &Path) -> anyhow::Result<Option<std::fs::File>> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path);
    let f = match f {
        Ok(f) => f,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ELOOP) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e.into()),
    };
    if !f.metadata()?.is_file() {
        return Ok(None);
    }
    Ok(Some(f))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn the_queue_is_bounded_and_owes_a_walk_past_its_bound() {
        let mut q = Queue::default();
        for i in 0..MAX_QUEUE + 5 {
            q.push(PathBuf::from(format!("/d/{i}")));
        }
        q.push(PathBuf::from("/d/0"));
        assert_eq!(q.order.len(), MAX_QUEUE);
        assert!(q.walk_owed);
        assert_eq!(q.pop(), Some(PathBuf::from("/d/0")));
        q.push(PathBuf::from("/d/0"));
        assert_eq!(q.order.len(), MAX_QUEUE);
    }

    #[test]
    fn links_fifos_and_missing_files_are_not_opened() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("real"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("link")).unwrap();
        let fifo = d.path().join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        assert!(open_regular(&d.path().join("real")).unwrap().is_some());
        assert!(open_regular(&d.path().join("link")).unwrap().is_none());
        assert!(
            open_regular(&fifo).unwrap().is_none(),
            "a FIFO neither hangs nor is read"
        );
        assert!(open_regular(&d.path().join("gone")).unwrap().is_none());
    }

    #[test]
    fn the_outbox_is_bounded_and_survives_a_restart() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("scan-outbox.json");
        let out = Outbox::at(file.clone());
        let finding = |n: u64| ScanFinding {
            time: jiff::Timestamp::UNIX_EPOCH,
            baseline: "b".into(),
            outcome: ScanOutcome::Unscanned,
            path: format!("/home/a/Downloads/{n}"),
            size: n,
            owner: None,
            sha256: None,
            signature: None,
            quarantine_id: None,
            reason: None,
        };
        for n in 0..(MAX_OUTBOX as u64 + 3) {
            out.push(finding(n));
        }
        assert_eq!(out.len(), MAX_OUTBOX);
        assert!(!file.exists(), "written at a send, not per finding");
        out.save();
        let again = Outbox::at(file);
        assert_eq!(again.len(), MAX_OUTBOX);
        let first = again.waiting.lock().unwrap().front().cloned().unwrap();
        assert_eq!(first.size, 3, "the oldest went first");
    }

    #[test]
    fn host_paths_are_below_the_root() {
        let root = Path::new("/srv/img");
        assert_eq!(
            on_machine(root, "/home/a/Downloads"),
            PathBuf::from("/srv/img/home/a/Downloads")
        );
        assert_eq!(on_host(root, Path::new("/srv/img/home/a/x")), "/home/a/x");
        assert_eq!(on_host(Path::new("/"), Path::new("/home/a/x")), "/home/a/x");
    }
}
