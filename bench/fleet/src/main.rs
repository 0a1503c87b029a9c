//! `patchday-fleet`: the fleet simulator of issue 10, point 8.
//!
//! Runs N simulated hosts as async tasks against a real `patchday server` (a separate
//! process, so that its CPU-seconds and peak memory come from its own `/proc` entry).
//! Each host has its own state directory (identity, ed25519 host key, pinned catalog
//! root and director key, TUF datastore, release counters) and a fake root whose dpkg
//! status file holds a few packages, and speaks the real agent protocol through the
//! agent's own code: `patchday_agent::run::enroll`, signed requests
//! (`client::Signer`), `inventory::collect`, the director signature and TUF catalog
//! check (`run::signed_answer_and_catalog`), `trust::decision::decide`, verified
//! downloads (`download::fetch_target` for update documents, `download::fetch_and_discard`
//! for payloads: the same transfer, signed length and sha256, the bytes not kept, as
//! ten thousand hosts' disks are one page cache here). Only dpkg is simulated: an install is a sleep of a fixed cost, after which the status file
//! carries the new version (so the server's "installed" comes from the inventory,
//! as with a real host).
//!
//! Delivery: `--mode push` holds `POST /v1/agent/wait` (the push contract: `{since}` →
//! `{generation, wake, retry_after_seconds}`); `--mode poll` checks in every
//! `--poll-seconds` at a uniformly random phase. A failed run retries with jittered
//! back-off.
//!
//! Measures from the moment `--approve` runs: time until 50/90/99/100% of the expected
//! hosts report installed (their check-in after the install was answered), server
//! CPU-seconds and peak RSS (VmHWM, reset at approval through `/proc/PID/clear_refs`),
//! bytes over loopback, and before that the idle cost (server CPU per second with all
//! hosts connected and nothing to do). Prints a summary and one `FLEET-JSON` line.

use anyhow::{bail, Context};
use clap::Parser;
use patchday_agent::client::{Client, Signer};
use patchday_agent::run::{enroll, signed_answer_and_catalog};
use patchday_agent::state::{Identity, StateDir};
use patchday_agent::AgentConfig;
use patchday_trust::decision::{self, DecisionInput, HostIdentity};
use patchday_types::api::{
    CheckinRequest, CheckinResponse, ReportRequest, StateReport, WaitAnswer, WaitRequest,
};
use patchday_types::{UpdateDocument, UpdateId, UpdateState};
use rand::Rng;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

// Ten thousand hosts in one process download at once: hyper's read buffers (up to
// ~400 KB per connection, a new one whenever the last chunk is still held) churned
// glibc's malloc (a quarter of the simulator's CPU in `_int_malloc`,
// `malloc_consolidate` and page faults). jemalloc's size classes and thread caches
// take that churn; what is measured is the server, in its own process.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Simulated hosts against a real server; see the crate documentation.
#[derive(Parser, Debug)]
#[command(
    about = "Fleet simulator: N simulated agents (real protocol and verification, simulated dpkg) against a real patchday server",
    after_help = "Example: patchday-fleet --server http://127.0.0.1:8470 --group fleet=token.txt:10000 --package pd-fleet-a:1.0-1 --mode push --server-pid 1234 --approve 'patchday approve --tenant acme --group fleet PD-FLEET-A --emergency --reason bench'"
)]
struct Args {
    /// Server base URL.
    #[arg(long)]
    server: String,
    /// Hosts to simulate: GROUP=TOKEN_FILE:COUNT (repeatable); each enrols with the
    /// token in TOKEN_FILE (an enrolment token naming GROUP).
    #[arg(long = "group", required = true)]
    groups: Vec<String>,
    /// Packages every host has: NAME:VERSION[:SOURCE] (repeatable).
    #[arg(long = "package", required = true)]
    packages: Vec<String>,
    /// State directory of all simulated hosts (kept between runs: hosts enrolled there
    /// are reused). Default: /dev/shm/patchday-fleet.
    #[arg(long, default_value = "/dev/shm/patchday-fleet")]
    state: PathBuf,
    /// push (long-poll `/v1/agent/wait`) or poll (check in every --poll-seconds).
    #[arg(long, default_value = "push")]
    mode: Mode,
    /// Poll interval in poll mode; each host starts at a uniformly random phase.
    #[arg(long, default_value_t = 300)]
    poll_seconds: u64,
    /// Simulated cost of one install (dpkg's work), in milliseconds.
    #[arg(long, default_value_t = 2000)]
    install_ms: u64,
    /// Hosts of this group fail their installs, one in every --fail-every.
    #[arg(long)]
    fail_group: Option<String>,
    /// See --fail-group (100: 1% of that group fails).
    #[arg(long, default_value_t = 100)]
    fail_every: usize,
    /// The server's process id, for its CPU, peak memory and I/O from /proc.
    #[arg(long)]
    server_pid: u32,
    /// Seconds of idle measurement (all hosts connected, nothing to do) before approval.
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,
    /// Shell command that approves (the moment it starts is time zero).
    #[arg(long, required_unless_present = "setup_only")]
    approve: Option<String>,
    /// Groups whose hosts should install (default: every group given).
    #[arg(long, value_delimiter = ',')]
    expect: Vec<String>,
    /// Longest wait after approval, in seconds.
    #[arg(long, default_value_t = 600)]
    horizon_seconds: u64,
    /// Shell command run every 2 s after approval; when it exits 0 (the rollout halted)
    /// the run ends --halt-grace-seconds later.
    #[arg(long)]
    halt_check: Option<String>,
    /// See --halt-check.
    #[arg(long, default_value_t = 20)]
    halt_grace_seconds: u64,
    /// Enrolments (and first check-ins) at a time while the fleet is set up.
    #[arg(long, default_value_t = 32)]
    setup_concurrency: usize,
    /// A name for this run in the output.
    #[arg(long, default_value = "fleet")]
    label: String,
    /// Issue 12, point 8 (load): set the hosts up, then have every host check in once
    /// more (unchanged, signed and verified as at any run) at --setup-concurrency at a
    /// time, print the figures (SETUP-JSON) and end: no idle, no approval.
    #[arg(long)]
    setup_only: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    Push,
    Poll,
}

/// One package line of a fake dpkg status file.
#[derive(Clone, Debug)]
struct Package {
    name: String,
    version: String,
    source: String,
    architecture: String,
    /// dpkg's status word: `installed`, or `half-configured` after a failed postinst.
    status: String,
}

/// A simulated host.
struct Host {
    cfg: AgentConfig,
    state: StateDir,
    id: Identity,
    client: Client,
    group: usize,
    fails: bool,
    packages: tokio::sync::Mutex<Vec<Package>>,
    /// Its first assignment after the approval was announced.
    announced: std::sync::atomic::AtomicBool,
    /// Installed (or failed) by a run whose closing check-in did not get through: the
    /// retry's check-in, with the new inventory, is the one that counts.
    settled: std::sync::atomic::AtomicU8,
}

/// `Host::settled`: nothing pending.
const SETTLED_NONE: u8 = 0;
/// `Host::settled`: installed, its closing check-in not answered yet.
const SETTLED_INSTALLED: u8 = 1;
/// `Host::settled`: failed, its closing check-in not answered yet.
const SETTLED_FAILED: u8 = 2;

/// What a host tells the collector.
enum Event {
    /// Its first run after enrolment (or reuse) is done.
    Ready,
    /// A run got an assignment (first time after approval only counts).
    Assigned {
        host: usize,
        group: usize,
        at: Duration,
    },
    /// Installed and checked in with the new inventory.
    Installed { host: usize, at: Duration },
    /// The simulated install failed (reported as failed).
    Failed { host: usize, at: Duration },
    /// A run failed (retried with back-off).
    Error(String),
}

/// Time zero: the moment the approval command started.
static APPROVED_AT: OnceLock<Instant> = OnceLock::new();

fn since_approval() -> Option<Duration> {
    APPROVED_AT.get().map(|t| t.elapsed())
}

/// The simulator's one clock read (the binary edge).
#[allow(clippy::disallowed_methods)]
fn clock_now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

fn status_text(hostname: &str, packages: &[Package]) -> String {
    let mut s = String::new();
    let dpkg = Package {
        name: "dpkg".into(),
        version: "1.21.22".into(),
        source: "dpkg".into(),
        architecture: "amd64".into(),
        status: "installed".into(),
    };
    for p in std::iter::once(&dpkg).chain(packages) {
        s.push_str(&format!(
            "Package: {}\nStatus: install ok {}\nPriority: optional\nArchitecture: {}\nSource: {}\nVersion: {}\nDescription: simulated package of {hostname}\n\n",
            p.name, p.status, p.architecture, p.source, p.version
        ));
    }
    s
}

fn write_root(root: &Path, hostname: &str, packages: &[Package]) -> anyhow::Result<()> {
    std::fs::create_dir_all(root.join("var/lib/dpkg"))?;
    std::fs::create_dir_all(root.join("etc"))?;
    std::fs::write(root.join("etc/hostname"), format!("{hostname}\n"))?;
    std::fs::write(
        root.join("etc/os-release"),
        "ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
    )?;
    patchday_agent::state::write_atomic(
        &patchday_agent::inventory::status_path(root),
        status_text(hostname, packages).as_bytes(),
        0o644,
    )
}

fn parse_groups(groups: &[String]) -> anyhow::Result<Vec<(String, String, usize)>> {
    groups
        .iter()
        .map(|g| {
            let (name, rest) = g
                .split_once('=')
                .with_context(|| format!("--group {g:?}: expected GROUP=TOKEN_FILE:COUNT"))?;
            let (file, count) = rest
                .rsplit_once(':')
                .with_context(|| format!("--group {g:?}: expected GROUP=TOKEN_FILE:COUNT"))?;
            let token = std::fs::read_to_string(file)
                .with_context(|| format!("--group {g:?}: reading the token file {file}"))?;
            let count = count
                .parse()
                .with_context(|| format!("--group {g:?}: {count:?} is not a count"))?;
            Ok((name.to_string(), token.trim().to_string(), count))
        })
        .collect()
}

fn parse_packages(packages: &[String]) -> anyhow::Result<Vec<Package>> {
    packages
        .iter()
        .map(|p| {
            let mut parts = p.split(':');
            let (Some(name), Some(version)) = (parts.next(), parts.next()) else {
                bail!("--package {p:?}: expected NAME:VERSION[:SOURCE]");
            };
            Ok(Package {
                name: name.into(),
                version: version.into(),
                source: parts.next().unwrap_or(name).into(),
                architecture: "amd64".into(),
                status: "installed".into(),
            })
        })
        .collect()
}

/// Enrols a host (or reuses the one enrolled in its state directory before).
async fn make_host(
    args: &Args,
    base: &Client,
    group: (usize, &str, &str),
    index: usize,
    packages: &[Package],
    fails: bool,
) -> anyhow::Result<Host> {
    let (group, group_name, token) = group;
    let dir = args.state.join(format!("{group_name}-{index:05}"));
    let root = dir.join("root");
    let hostname = format!("sim-{group_name}-{index:05}");
    let cfg = AgentConfig {
        server: args.server.clone(),
        state_dir: dir.join("state"),
        enroll_token: Some(patchday_types::Secret::new(token)),
        root: root.clone(),
        dpkg_args: vec![],
        catalog_root: None,
        read_timeout: Duration::from_secs(120),
        download_deadline: Duration::from_secs(600),
        audit: false,
        ca: None,
        director_key: None,
        max_silence: patchday_agent::run::DEFAULT_MAX_SILENCE,
        reboot_command: vec![],
        labels: Default::default(),
    };
    let state = StateDir::open(&cfg.state_dir)?;
    let id = match state.identity()? {
        Some(id) => id,
        None => {
            write_root(&root, &hostname, packages)?;
            enroll(&cfg, &state, clock_now()).await?
        }
    };
    let inventory = patchday_agent::inventory::collect(&root)?;
    let packages = inventory
        .packages
        .into_iter()
        .map(|p| (p, "installed"))
        .chain(
            inventory
                .unfinished
                .into_iter()
                .map(|p| (p, "half-configured")),
        )
        .filter(|(p, _)| p.name != "dpkg")
        .map(|(p, status)| Package {
            name: p.name,
            version: p.version,
            source: p.source,
            architecture: p.architecture,
            status: status.into(),
        })
        .collect();
    let signer = Signer::new(
        state.host_key()?,
        id.tenant.as_str(),
        id.host.as_str(),
        state.sequence_path(),
    );
    let client = base.with_credential(id.credential.clone()).signing(signer);
    Ok(Host {
        cfg,
        state,
        id,
        client,
        group,
        fails,
        packages: tokio::sync::Mutex::new(packages),
        announced: std::sync::atomic::AtomicBool::new(false),
        settled: std::sync::atomic::AtomicU8::new(SETTLED_NONE),
    })
}

async fn report(host: &Host, update: &UpdateId, state: UpdateState, message: Option<String>) {
    let body = ReportRequest {
        states: vec![StateReport {
            update: update.clone(),
            state,
            message,
        }],
    };
    // As the agent: a lost report is repaired by the next check-in's inventory.
    let _ = host.client.post::<_, ()>("v1/agent/report", &body).await;
}

/// What one run did.
#[derive(Default)]
struct RunOutcome {
    installed: bool,
    failed: bool,
}

/// One agent run: check in, verify the signed answer and the catalog, decide, download
/// and verify, simulated install, check in with the new inventory and the outcome.
async fn run_once(
    host: &Host,
    install: Duration,
    tell: Option<(&mpsc::UnboundedSender<Event>, usize)>,
) -> anyhow::Result<RunOutcome> {
    let now = clock_now();
    let mut out = RunOutcome::default();
    let inventory = patchday_agent::inventory::collect(&host.cfg.root)?;
    let last_answer = host.state.last_director_answer();
    let resp: CheckinResponse = host
        .client
        .post(
            "v1/agent/checkin",
            &CheckinRequest {
                inventory,
                labels: None,
                baselines: Vec::new(),
                states: Vec::new(),
            },
        )
        .await?;
    let (dt, catalog) = signed_answer_and_catalog(
        &host.cfg,
        &host.state,
        &host.id,
        &host.client,
        &resp,
        now,
        last_answer,
    )
    .await?;
    let assignments = decision::assignments(&dt)?;
    if assignments.is_empty() {
        return Ok(out);
    }
    if let (Some((tx, index)), Some(at)) = (tell, since_approval()) {
        if !host.announced.swap(true, Ordering::Relaxed) {
            let _ = tx.send(Event::Assigned {
                host: index,
                group: host.group,
                at,
            });
        }
    }
    let mut counters = host.state.release_counters()?;
    // As the agent: an install's outcome goes with the next report or the closing check-in.
    let mut outcomes: Vec<StateReport> = Vec::new();
    for a in &assignments {
        if !outcomes.is_empty() {
            let states = std::mem::take(&mut outcomes);
            let _ = host
                .client
                .post::<_, ()>("v1/agent/report", &ReportRequest { states })
                .await;
        }
        // The update document, fetched and checked against the catalog as the agent does.
        let name = a.document();
        let document: Result<UpdateDocument, String> = match catalog.target(&name) {
            Ok(info) => {
                let path = patchday_agent::download::fetch_target(
                    &host.client,
                    &host.state.downloads(),
                    &name,
                    info,
                    host.cfg.download_deadline,
                )
                .await?;
                serde_json::from_slice(&std::fs::read(&path)?).map_err(|e| e.to_string())
            }
            Err(_) => Err("the catalog does not list it".into()),
        };
        let inventory = patchday_agent::inventory::collect(&host.cfg.root)?;
        let input = DecisionInput {
            director: &dt,
            catalog: &catalog,
            host: HostIdentity {
                host: host.id.host.as_str(),
                tenant: host.id.tenant.as_str(),
            },
            inventory: &inventory,
            counters: &counters,
            document: document.as_ref().map_err(String::as_str),
            now,
        };
        let decided = match decision::decide(&input, a) {
            Ok(d) => d,
            Err(refusal) => {
                report(
                    host,
                    &a.update,
                    UpdateState::Failed,
                    Some(refusal.to_string()),
                )
                .await;
                bail!("{}: refused: {refusal}", a.update);
            }
        };
        // As the agent: "downloading" only when the download outlasts
        // DOWNLOADING_REPORT_AFTER.
        // The agent's transfer and checks (`fetch_and_discard`); the bytes are not kept:
        // the install is simulated, and ten thousand hosts' disks are one page cache here.
        let fetch = async {
            for (p, info) in &decided.payloads {
                patchday_agent::download::fetch_and_discard(
                    &host.client,
                    &p.target,
                    info,
                    host.cfg.download_deadline,
                )
                .await?;
            }
            Ok::<_, anyhow::Error>(())
        };
        patchday_agent::download::saying_when_slow(
            patchday_agent::run::DOWNLOADING_REPORT_AFTER,
            fetch,
            report(host, &a.update, UpdateState::Downloading, None),
        )
        .await?;
        // dpkg's work, simulated; "installing" only when it outlasts
        // INSTALLING_REPORT_AFTER, as the agent does.
        patchday_agent::download::saying_when_slow(
            patchday_agent::run::INSTALLING_REPORT_AFTER,
            tokio::time::sleep(install),
            report(host, &a.update, UpdateState::Installing, None),
        )
        .await;
        // What dpkg leaves: the new version, configured, or half-configured when the
        // (simulated) postinst failed, as a real failing package does.
        {
            let mut pkgs = host.packages.lock().await;
            for (p, _) in &decided.payloads {
                for have in pkgs.iter_mut().filter(|h| h.name == p.package) {
                    have.version = p.version.clone();
                    have.status = if host.fails {
                        "half-configured"
                    } else {
                        "installed"
                    }
                    .into();
                }
            }
            patchday_agent::state::write_atomic(
                &patchday_agent::inventory::status_path(&host.cfg.root),
                status_text(&inventory.hostname, &pkgs).as_bytes(),
                0o644,
            )?;
        }
        if host.fails {
            outcomes.push(StateReport {
                update: a.update.clone(),
                state: UpdateState::Failed,
                message: Some("simulated failure: installed pd post-installation script subprocess returned error exit status 1".into()),
            });
            out.failed = true;
            host.settled.store(SETTLED_FAILED, Ordering::Relaxed);
            continue;
        }
        counters.record(&decided);
        host.state.save_release_counters(&counters)?;
        outcomes.push(StateReport {
            update: a.update.clone(),
            state: UpdateState::Installed,
            message: None,
        });
        out.installed = true;
        host.settled.store(SETTLED_INSTALLED, Ordering::Relaxed);
    }
    // The truth as dpkg now sees it.
    let inventory = patchday_agent::inventory::collect(&host.cfg.root)?;
    let closing = host
        .client
        .post::<_, CheckinResponse>(
            "v1/agent/checkin",
            &CheckinRequest {
                inventory,
                labels: None,
                baselines: Vec::new(),
                states: outcomes.clone(),
            },
        )
        .await;
    if closing.is_err() && !outcomes.is_empty() {
        // As the agent: the outcomes are not lost with a refused check-in.
        let _ = host
            .client
            .post::<_, ()>("v1/agent/report", &ReportRequest { states: outcomes })
            .await;
    }
    closing?;
    Ok(out)
}

/// A run, retried with the agent's jittered exponential back-off (1 s doubling to 60 s)
/// until it works.
async fn run_until_done(
    index: usize,
    host: &Host,
    install: Duration,
    tx: &mpsc::UnboundedSender<Event>,
) {
    let mut attempt = 0u32;
    loop {
        match run_once(host, install, Some((tx, index))).await {
            Ok(mut o) => {
                // A retry after a closing check-in that failed finds nothing to do: what
                // the earlier attempt did is what this check-in reported.
                match host.settled.swap(SETTLED_NONE, Ordering::Relaxed) {
                    SETTLED_INSTALLED => o.installed = true,
                    SETTLED_FAILED => o.failed = !o.installed,
                    _ => {}
                }
                if let Some(at) = since_approval() {
                    if o.installed {
                        let _ = tx.send(Event::Installed { host: index, at });
                    } else if o.failed {
                        let _ = tx.send(Event::Failed { host: index, at });
                    }
                }
                return;
            }
            Err(e) => {
                let _ = tx.send(Event::Error(format!("{e:#}")));
                attempt = attempt.saturating_add(1);
                tokio::time::sleep(patchday_agent::push::backoff(
                    attempt,
                    Duration::from_secs(1),
                    Duration::from_secs(60),
                ))
                .await;
            }
        }
    }
}

/// A host's life after setup: push (long-poll) or poll.
async fn live(
    index: usize,
    host: Arc<Host>,
    args: Arc<Args>,
    start: Instant,
    tx: mpsc::UnboundedSender<Event>,
) {
    let install = Duration::from_millis(args.install_ms);
    match args.mode {
        Mode::Push => {
            let mut since = 0u64;
            let mut ready = false;
            let mut errors = 0u32;
            loop {
                match host
                    .client
                    .post::<_, WaitAnswer>("v1/agent/wait", &WaitRequest { since })
                    .await
                {
                    Ok(w) => {
                        errors = 0;
                        since = w.generation;
                        if w.wake {
                            // As the agent does (`patchday_agent::push`): start within
                            // the spread the server names for everyone woken at once.
                            if w.spread_seconds > 0 {
                                let ms = rand::thread_rng()
                                    .gen_range(0..=w.spread_seconds.saturating_mul(1000));
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                            }
                            run_until_done(index, &host, install, &tx).await;
                        } else if w.retry_after_seconds > 0 {
                            // The server asks for a pause before the next wait.
                            let ms = rand::thread_rng()
                                .gen_range(0..=w.retry_after_seconds.saturating_mul(1000));
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                        }
                        if !ready {
                            ready = true;
                            let _ = tx.send(Event::Ready);
                        }
                    }
                    Err(e) => {
                        // 503 (too many waiting) or a dropped connection: the agent's
                        // jittered back-off (`patchday_agent::push::backoff`).
                        errors = errors.saturating_add(1);
                        let _ = tx.send(Event::Error(format!("wait: {e:#}")));
                        tokio::time::sleep(patchday_agent::push::backoff(
                            errors,
                            Duration::from_secs(1),
                            Duration::from_secs(60),
                        ))
                        .await;
                    }
                }
            }
        }
        Mode::Poll => {
            let _ = tx.send(Event::Ready);
            let period = Duration::from_secs(args.poll_seconds.max(1));
            let phase = rand::thread_rng().gen_range(0..period.as_millis().max(1) as u64);
            let mut next = start + Duration::from_millis(phase);
            loop {
                tokio::time::sleep_until(next.into()).await;
                run_until_done(index, &host, install, &tx).await;
                next += period;
            }
        }
    }
}

/// `--setup-only`: every host checks in once more (its inventory unchanged), at most
/// --setup-concurrency at a time; the rate, the server's CPU per check-in and its memory.
async fn recheck(
    args: &Args,
    hosts: &[Arc<Host>],
    setup_seconds: f64,
    ticks: f64,
) -> anyhow::Result<()> {
    let before = sample(args.server_pid)?;
    let started = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(args.setup_concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for h in hosts {
        let (h, sem) = (h.clone(), sem.clone());
        tasks.spawn(async move {
            let _permit = sem.acquire().await;
            let t = Instant::now();
            run_once(&h, Duration::ZERO, None).await?;
            anyhow::Ok(t.elapsed().as_secs_f64())
        });
    }
    let mut latencies = Vec::with_capacity(hosts.len());
    while let Some(r) = tasks.join_next().await {
        latencies.push(r.context("a check-in task panicked")??);
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = sample(args.server_pid)?;
    latencies.sort_by(f64::total_cmp);
    let n = latencies.len();
    let at = |p: f64| {
        latencies
            .get(((n as f64 * p / 100.0).ceil() as usize).clamp(1, n.max(1)) - 1)
            .copied()
            .unwrap_or(0.0)
    };
    let figures = serde_json::json!({
        "label": args.label,
        "hosts": n,
        "setup_seconds": setup_seconds,
        "setups_per_second": n as f64 / setup_seconds,
        "checkins_per_second": n as f64 / seconds,
        "checkin_p50_ms": at(50.0) * 1000.0,
        "checkin_p99_ms": at(99.0) * 1000.0,
        "server_cpu_ms_per_checkin": (after.cpu_ticks - before.cpu_ticks) as f64 / ticks * 1000.0 / n.max(1) as f64,
        "server_rss_mib": after.rss_kib as f64 / 1024.0,
        "server_peak_rss_mib": after.hwm_kib as f64 / 1024.0,
        "loopback_bytes_per_checkin": after.lo_tx.saturating_sub(before.lo_tx) / n.max(1) as u64,
    });
    println!(
        "fleet set-up {} ({n} hosts): set-up {setup_seconds:.1} s ({:.0} hosts/s); one more check-in each: {:.0} check-ins/s, p50 {:.0} ms, p99 {:.0} ms, server {:.2} CPU-ms per check-in; server RSS {:.0} MiB (peak {:.0} MiB)",
        args.label,
        figures["setups_per_second"].as_f64().unwrap_or(0.0),
        figures["checkins_per_second"].as_f64().unwrap_or(0.0),
        figures["checkin_p50_ms"].as_f64().unwrap_or(0.0),
        figures["checkin_p99_ms"].as_f64().unwrap_or(0.0),
        figures["server_cpu_ms_per_checkin"].as_f64().unwrap_or(0.0),
        figures["server_rss_mib"].as_f64().unwrap_or(0.0),
        figures["server_peak_rss_mib"].as_f64().unwrap_or(0.0),
    );
    println!(
        "  loopback bytes per check-in {}",
        figures["loopback_bytes_per_checkin"]
    );
    println!("SETUP-JSON {figures}");
    Ok(())
}

/// The server process's figures from /proc.
#[derive(Clone, Copy, Debug, Default)]
struct ProcSample {
    cpu_ticks: u64,
    rss_kib: u64,
    hwm_kib: u64,
    wchar: u64,
    lo_tx: u64,
}

fn sample(pid: u32) -> anyhow::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat: is --server-pid right?"))?;
    // Fields after the command name (which may hold spaces) start at state (3).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let cpu_ticks = num(11) + num(12); // utime (14), stime (15)
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let wchar = io
        .lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let dev = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
    let lo_tx = dev
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("lo:"))
        .and_then(|l| l.split_whitespace().nth(8).and_then(|v| v.parse().ok()))
        .unwrap_or(0);
    Ok(ProcSample {
        cpu_ticks,
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
        wchar,
        lo_tx,
    })
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

async fn shell(cmd: &str) -> anyhow::Result<std::process::Output> {
    tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .await
        .with_context(|| format!("running {cmd:?}"))
}

#[derive(Serialize, Default)]
struct Figures {
    label: String,
    mode: String,
    hosts: usize,
    expected: usize,
    installed: usize,
    failed: usize,
    assigned_by_group: Vec<(String, usize)>,
    installed_by_group: Vec<(String, usize)>,
    failed_by_group: Vec<(String, usize)>,
    setup_seconds: f64,
    idle_seconds: f64,
    idle_cpu_per_second: f64,
    first_assigned_seconds: Option<f64>,
    assigned_p50_seconds: Option<f64>,
    p50_seconds: Option<f64>,
    p90_seconds: Option<f64>,
    p99_seconds: Option<f64>,
    p100_seconds: Option<f64>,
    rollout_seconds: f64,
    server_cpu_seconds: f64,
    /// The simulator's own CPU-seconds over the same time (it shares the machine).
    simulator_cpu_seconds: f64,
    server_peak_rss_mib: f64,
    server_peak_rss_mib_overall: f64,
    loopback_bytes: u64,
    server_wchar_bytes: u64,
    halted_at_seconds: Option<f64>,
    errors: usize,
    first_errors: Vec<String>,
}

fn percentile(done: &[f64], expected: usize, p: f64) -> Option<f64> {
    let need = ((expected as f64) * p / 100.0).ceil() as usize;
    if need == 0 {
        return Some(0.0);
    }
    done.get(need - 1).copied()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let groups = parse_groups(&args.groups)?;
    let packages = parse_packages(&args.packages)?;
    let expect: Vec<usize> = if args.expect.is_empty() {
        (0..groups.len()).collect()
    } else {
        args.expect
            .iter()
            .map(|e| {
                groups
                    .iter()
                    .position(|(g, _, _)| g == e)
                    .with_context(|| format!("--expect {e}: no such --group"))
            })
            .collect::<anyhow::Result<_>>()?
    };
    std::fs::create_dir_all(&args.state)
        .with_context(|| format!("creating --state {}", args.state.display()))?;
    let base = Client::new(&args.server, None, Duration::from_secs(120), None)?;
    let ticks = clock_ticks();

    // ---- Set-up: enrol (or reuse) every host, each with a first check-in. ----
    let setup_start = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(args.setup_concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut index = 0usize;
    for (g, (name, token, count)) in groups.iter().enumerate() {
        for i in 0..*count {
            let fails = args.fail_group.as_deref() == Some(name.as_str())
                && args.fail_every > 0
                && i % args.fail_every == args.fail_every - 1;
            let (args, base, name, token, packages, sem) = (
                args.clone(),
                base.clone(),
                name.clone(),
                token.clone(),
                packages.clone(),
                sem.clone(),
            );
            let my = index;
            tasks.spawn(async move {
                let _permit = sem.acquire().await;
                let host = make_host(&args, &base, (g, &name, &token), i, &packages, fails)
                    .await
                    .with_context(|| format!("setting up host {name}-{i}"))?;
                run_once(&host, Duration::ZERO, None)
                    .await
                    .with_context(|| format!("first check-in of host {name}-{i}"))?;
                anyhow::Ok((my, host))
            });
            index += 1;
        }
    }
    let total = index;
    let mut hosts: Vec<Option<Arc<Host>>> = (0..total).map(|_| None).collect();
    let mut done = 0usize;
    while let Some(r) = tasks.join_next().await {
        let (i, h) = r.context("a setup task panicked")??;
        hosts[i] = Some(Arc::new(h));
        done += 1;
        if done.is_multiple_of(1000) {
            eprintln!(
                "set up {done}/{total} hosts ({:.0} s)",
                setup_start.elapsed().as_secs_f64()
            );
        }
    }
    let hosts: Vec<Arc<Host>> = hosts.into_iter().flatten().collect();
    let setup_seconds = setup_start.elapsed().as_secs_f64();
    eprintln!("{total} hosts set up in {setup_seconds:.1} s");

    if args.setup_only {
        return recheck(&args, &hosts, setup_seconds, ticks).await;
    }

    // ---- Live: every host pushes or polls. ----
    let (tx, mut rx) = mpsc::unbounded_channel();
    let start = Instant::now();
    for (i, h) in hosts.iter().enumerate() {
        tokio::spawn(live(i, h.clone(), args.clone(), start, tx.clone()));
    }
    drop(tx);
    let errors = Arc::new(AtomicUsize::new(0));
    let mut first_errors = Vec::new();
    let mut ready = 0usize;
    let ready_deadline = Instant::now() + Duration::from_secs(300);
    while ready < total && Instant::now() < ready_deadline {
        match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
            Ok(Some(Event::Ready)) => ready += 1,
            Ok(Some(Event::Error(e))) => {
                errors.fetch_add(1, Ordering::Relaxed);
                if first_errors.len() < 5 {
                    first_errors.push(e);
                }
            }
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => bail!("every host task ended"),
        }
    }
    eprintln!("{ready}/{total} hosts connected ({:?} mode)", args.mode);
    // Let the first wave of waits settle, then measure the idle cost.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_a = sample(args.server_pid)?;
    let idle_t = Instant::now();
    let idle_end = idle_t + Duration::from_secs(args.idle_seconds);
    while Instant::now() < idle_end {
        if let Ok(Some(Event::Error(e))) =
            tokio::time::timeout(Duration::from_millis(500), rx.recv()).await
        {
            errors.fetch_add(1, Ordering::Relaxed);
            if first_errors.len() < 5 {
                first_errors.push(e);
            }
        }
    }
    let idle_b = sample(args.server_pid)?;
    let idle_seconds = idle_t.elapsed().as_secs_f64();
    let idle_cpu = (idle_b.cpu_ticks - idle_a.cpu_ticks) as f64 / ticks / idle_seconds;
    eprintln!(
        "idle: {:.1}% of one core over {idle_seconds:.0} s",
        idle_cpu * 100.0
    );

    // ---- Approval: time zero. ----
    let overall_hwm = sample(args.server_pid)?.hwm_kib;
    // Reset the peak so that VmHWM is the rollout's own (root or the server's owner).
    let _ = std::fs::write(format!("/proc/{}/clear_refs", args.server_pid), "5");
    let before = sample(args.server_pid)?;
    let sim_before = sample(std::process::id())?;
    let _ = APPROVED_AT.set(Instant::now());
    let out = shell(args.approve.as_deref().unwrap_or_default()).await?;
    if !out.status.success() {
        bail!(
            "--approve failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let expected: usize = expect.iter().map(|&g| groups[g].2).sum();
    let group_names: Vec<String> = groups.iter().map(|(g, _, _)| g.clone()).collect();
    let mut installed_at: Vec<Option<f64>> = vec![None; total];
    let mut failed_at: Vec<Option<f64>> = vec![None; total];
    let mut assigned_at: Vec<Option<f64>> = vec![None; total];
    let mut assigned = vec![0usize; groups.len()];
    let horizon = Duration::from_secs(args.horizon_seconds);
    let mut halted_at: Option<f64> = None;
    let mut next_halt_check = Instant::now();
    let mut peak = before;
    let mut last_sample = Instant::now();
    // Expected hosts with an outcome, counted as the events come (a scan of every host
    // per event cost the simulator ~5% of its CPU at 10,000 hosts).
    let mut finished = 0usize;
    let first_outcome = |host: usize, installed_at: &[Option<f64>], failed_at: &[Option<f64>]| {
        installed_at[host].is_none()
            && failed_at[host].is_none()
            && expect.contains(&hosts[host].group)
    };
    loop {
        let elapsed = since_approval().unwrap_or_default();
        if finished >= expected || elapsed >= horizon {
            break;
        }
        if let Some(h) = halted_at {
            if elapsed.as_secs_f64() > h + args.halt_grace_seconds as f64 {
                break;
            }
        }
        if let (Some(cmd), None) = (&args.halt_check, halted_at) {
            if Instant::now() >= next_halt_check {
                next_halt_check = Instant::now() + Duration::from_secs(2);
                if shell(cmd).await.is_ok_and(|o| o.status.success()) {
                    halted_at = Some(since_approval().unwrap_or_default().as_secs_f64());
                    eprintln!(
                        "the rollout halted at {:.1} s",
                        halted_at.unwrap_or_default()
                    );
                }
            }
        }
        if last_sample.elapsed() >= Duration::from_secs(1) {
            last_sample = Instant::now();
            if let Ok(s) = sample(args.server_pid) {
                peak.hwm_kib = peak.hwm_kib.max(s.hwm_kib);
            }
        }
        match tokio::time::timeout(Duration::from_millis(250), rx.recv()).await {
            Ok(Some(Event::Installed { host, at })) => {
                if first_outcome(host, &installed_at, &failed_at) {
                    finished += 1;
                }
                installed_at[host].get_or_insert(at.as_secs_f64());
            }
            Ok(Some(Event::Failed { host, at })) => {
                if first_outcome(host, &installed_at, &failed_at) {
                    finished += 1;
                }
                failed_at[host].get_or_insert(at.as_secs_f64());
            }
            Ok(Some(Event::Assigned { host, group, at })) => {
                assigned[group] += 1;
                assigned_at[host].get_or_insert(at.as_secs_f64());
            }
            Ok(Some(Event::Error(e))) => {
                errors.fetch_add(1, Ordering::Relaxed);
                if first_errors.len() < 5 {
                    first_errors.push(e);
                }
            }
            Ok(Some(Event::Ready)) | Err(_) => {}
            Ok(None) => bail!("every host task ended"),
        }
    }
    let after = sample(args.server_pid)?;
    let sim_after = sample(std::process::id())?;
    let rollout_seconds = since_approval().unwrap_or_default().as_secs_f64();
    let mut times: Vec<f64> = installed_at
        .iter()
        .zip(&hosts)
        .filter(|(_, h)| expect.contains(&h.group))
        .filter_map(|(t, _)| *t)
        .collect();
    times.sort_by(f64::total_cmp);
    let mut assigned_times: Vec<f64> = assigned_at.iter().filter_map(|t| *t).collect();
    assigned_times.sort_by(f64::total_cmp);
    let by_group = |v: &[Option<f64>]| -> Vec<(String, usize)> {
        group_names
            .iter()
            .enumerate()
            .map(|(g, n)| {
                (
                    n.clone(),
                    v.iter()
                        .zip(&hosts)
                        .filter(|(t, h)| t.is_some() && h.group == g)
                        .count(),
                )
            })
            .collect()
    };
    let figures = Figures {
        label: args.label.clone(),
        mode: format!("{:?}", args.mode).to_lowercase(),
        hosts: total,
        expected,
        installed: times.len(),
        failed: failed_at.iter().filter(|t| t.is_some()).count(),
        assigned_by_group: group_names
            .iter()
            .cloned()
            .zip(assigned.iter().copied())
            .collect(),
        installed_by_group: by_group(&installed_at),
        failed_by_group: by_group(&failed_at),
        setup_seconds,
        idle_seconds,
        idle_cpu_per_second: idle_cpu,
        first_assigned_seconds: assigned_times.first().copied(),
        assigned_p50_seconds: percentile(&assigned_times, expected, 50.0),
        p50_seconds: percentile(&times, expected, 50.0),
        p90_seconds: percentile(&times, expected, 90.0),
        p99_seconds: percentile(&times, expected, 99.0),
        p100_seconds: percentile(&times, expected, 100.0),
        rollout_seconds,
        server_cpu_seconds: (after.cpu_ticks - before.cpu_ticks) as f64 / ticks,
        simulator_cpu_seconds: (sim_after.cpu_ticks - sim_before.cpu_ticks) as f64 / ticks,
        server_peak_rss_mib: peak.hwm_kib.max(after.hwm_kib) as f64 / 1024.0,
        server_peak_rss_mib_overall: overall_hwm.max(after.hwm_kib) as f64 / 1024.0,
        loopback_bytes: after.lo_tx.saturating_sub(before.lo_tx),
        server_wchar_bytes: after.wchar.saturating_sub(before.wchar),
        halted_at_seconds: halted_at,
        errors: errors.load(Ordering::Relaxed),
        first_errors,
    };
    let show = |v: Option<f64>| v.map_or("not reached".to_string(), |s| format!("{s:.1} s"));
    println!(
        "fleet run {} ({} mode, {} hosts, {} expected to install)",
        figures.label, figures.mode, total, expected
    );
    println!("  set-up (enrol + first check-in): {setup_seconds:.1} s");
    println!(
        "  idle server CPU: {:.2}% of one core ({idle_seconds:.0} s, all hosts connected)",
        idle_cpu * 100.0
    );
    println!(
        "  first assignment {}, 50% assigned {}",
        show(figures.first_assigned_seconds),
        show(figures.assigned_p50_seconds)
    );
    println!(
        "  installed: 50% {}, 90% {}, 99% {}, 100% {}",
        show(figures.p50_seconds),
        show(figures.p90_seconds),
        show(figures.p99_seconds),
        show(figures.p100_seconds)
    );
    println!(
        "  installed {} / failed {} of {expected} in {rollout_seconds:.1} s",
        figures.installed, figures.failed
    );
    println!(
        "  per group: assigned {:?}, installed {:?}, failed {:?}",
        figures.assigned_by_group, figures.installed_by_group, figures.failed_by_group
    );
    println!("  simulator: {:.1} CPU-s", figures.simulator_cpu_seconds);
    println!("  server: {:.1} CPU-s, peak RSS {:.0} MiB during the rollout ({:.0} MiB since start), {} bytes written (wchar)", figures.server_cpu_seconds, figures.server_peak_rss_mib, figures.server_peak_rss_mib_overall, figures.server_wchar_bytes);
    println!(
        "  loopback bytes (both directions): {}",
        figures.loopback_bytes
    );
    if let Some(h) = halted_at {
        println!("  the rollout halted at {h:.1} s");
    }
    println!("  run errors (retried): {}", figures.errors);
    for e in &figures.first_errors {
        println!("    e.g. {e}");
    }
    println!("FLEET-JSON {}", serde_json::to_string(&figures)?);
    Ok(())
}
