//! The agent's command line, shared by `patchday-agent` and the demo.

use crate::{run_once, AgentConfig};
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

/// How to enrol, shown under `--help` (finding 3 of issue 8: the token goes in the
/// environment or a file, not on the command line, where the process list shows it).
const ENROL_HELP: &str = "Enrol (first run) with the token in the environment or a file:
  PATCHDAY_ENROLL_TOKEN=pde_... patchday-agent --server https://patchday.example:8470 --ca ca.pem --once
  patchday-agent --server https://patchday.example:8470 --ca ca.pem --enroll-token-file /root/enrol.token --once
(--enroll-token VALUE works too, but the value is visible in the process list.)";

/// Patchday agent: reports inventory, installs approved updates after verifying them
/// against the signed catalog, and reports what dpkg says.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None, after_help = ENROL_HELP)]
pub struct Args {
    /// Server base URL. After enrolment a different URL is used and stored (the CA,
    /// catalog root, director key and host key pinned at enrolment stay).
    #[arg(long, env = "PATCHDAY_SERVER")]
    pub server: String,
    /// State directory (identity, pinned root, downloads).
    #[arg(long, default_value = "/var/lib/patchday-agent")]
    pub state: PathBuf,
    /// Enrolment token (first run only). Prefer the PATCHDAY_ENROLL_TOKEN environment
    /// variable or --enroll-token-file: a value on the command line is visible in the
    /// process list.
    #[arg(long, env = "PATCHDAY_ENROLL_TOKEN", hide_env_values = true)]
    pub enroll_token: Option<patchday_types::Secret>,
    /// File holding the enrolment token (first run only; read instead of --enroll-token).
    #[arg(long)]
    pub enroll_token_file: Option<PathBuf>,
    /// Root of the managed system (an image or a `dpkg --root` tree).
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Extra argument for dpkg (repeatable), e.g. --dpkg-arg=--force-script-chrootless.
    #[arg(long = "dpkg-arg", allow_hyphen_values = true)]
    pub dpkg_args: Vec<String>,
    /// Pin this catalog root.json instead of the one the server hands out at enrolment.
    #[arg(long)]
    pub catalog_root: Option<PathBuf>,
    /// Run once and exit (exit code 1 when an update failed).
    #[arg(long)]
    pub once: bool,
    /// Seconds between runs without --once (the server's suggestion wins when smaller).
    /// Between runs the agent holds a wait at the server and runs at once when it says
    /// something changed (issue 10, point 6), so the interval is only the fallback.
    #[arg(long, default_value_t = 3600)]
    pub interval: u64,
    /// Poll only: do not hold waits at the server between runs.
    #[arg(long)]
    pub no_push: bool,
    /// Seconds before retrying a failed run (or a failed wait), doubling with jitter up
    /// to the interval.
    #[arg(long, default_value_t = 30)]
    pub retry_seconds: u64,
    /// Seconds a transfer may stall before the agent gives up (and retries next run).
    #[arg(long, default_value_t = 30)]
    pub stall_timeout: u64,
    /// Seconds one payload download may take.
    #[arg(long, default_value_t = 1800)]
    pub download_timeout: u64,
    /// The server's CA certificate (PEM) to pin at enrolment; later runs use the pinned copy.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// The director key to pin at enrolment, instead of trusting the server's on first use:
    /// a file with `patchday director key` output, or the key's 64-digit id. Enrolment is
    /// refused when the server's key differs.
    #[arg(long, value_name = "FILE|KEYID")]
    pub director_key: Option<String>,
    /// Fail a run, saying so, when no valid signed answer from the server arrived for this
    /// long (a withheld or stale answer); answers signed longer ago are refused. E.g. 2h, 30m, 1d.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub max_silence: jiff::SignedDuration,
    /// Issue 10, point 5: the command that reboots the host when the signed reboot policy
    /// says so (`now`, or `in-window` inside a window), split on spaces.
    #[arg(long, default_value = "systemctl reboot")]
    pub reboot_command: String,
    /// Issue 10, point 2: a `key=value` label this host reports at every check-in, which
    /// group rules match (repeatable; wins over the same key in /etc/patchday/labels, one
    /// `key=value` a line).
    /// Example: --label env=prod --label site=fra
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Do not collect and send security-audit facts.
    #[arg(long)]
    pub no_audit: bool,
    /// Issue 14: keep a compliance access token in this file (mode 0644) while the host
    /// is compliant, renewed after two thirds of its lifetime; removed when the server
    /// refuses one. Without it the daemon asks for none.
    #[arg(long)]
    pub access_token_file: Option<PathBuf>,
    /// Log as JSON.
    #[arg(long)]
    pub log_json: bool,
    /// Settings file (TOML; each key is a flag above, `_` or `-`, e.g. `server`,
    /// `catalog_root`, `interval`; unknown keys are an error; flags and environment
    /// override it). Packages install /etc/patchday/agent.toml (issue 11, point 7).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// What to do (default: check in and install what is approved).
    #[command(subcommand)]
    pub command: Option<AgentCommand>,
}

/// Agent subcommands (issue 9, point 4).
#[derive(clap::Subcommand, Debug)]
pub enum AgentCommand {
    /// Recover a broken dpkg database as an admin would: `dpkg --configure -a`, then
    /// `apt-get -f install` only with --allow-apt (else it says what apt would do); then
    /// check in so the server sees the result. Installs no update.
    ///
    /// Example: patchday-agent repair --allow-apt
    Repair {
        /// Let `apt-get -f install` install or remove packages to fix dependencies.
        #[arg(long)]
        allow_apt: bool,
    },
    /// Issue 14: asks the server for a compliance access token now and writes it to
    /// --access-token-file (default: STATE/access-token); says why when the host is not
    /// compliant (exit code 2).
    ///
    /// Example: patchday-agent access-token --access-token-file /run/patchday/access-token
    AccessToken,
    /// Issue 14: signs one request for a gate with the host key and prints the two
    /// headers to send (`Authorization` and `Patchday-Proof`); valid for a minute, for
    /// this method and URL only. Needs read access to the host key (root).
    ///
    /// Example: mapfile -t h < <(patchday-agent access-proof --url https://app.example/); curl -H "${h[0]}" -H "${h[1]}" https://app.example/
    AccessProof {
        /// The request's method.
        #[arg(long, default_value = "GET")]
        method: String,
        /// The request's URL, exactly as the client sends it.
        #[arg(long)]
        url: String,
        /// The token file (`-`: standard input); default: --access-token-file, else
        /// STATE/access-token.
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Issue 14, point 5: runs the folder scans the applied baselines ask for (`[scan]`),
    /// until stopped: idles without one, starts, restarts and stops watchers as baselines
    /// change, reports findings to the server. The package runs it as
    /// patchday-agent-scan.service, in a tighter sandbox than the agent's.
    ///
    /// Example: patchday-agent --config /etc/patchday/agent.toml scan-folders
    ScanFolders,
    /// Issue 14, point 5: the folder scan's quarantine (root only).
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
}

/// `patchday-agent quarantine ...`.
#[derive(clap::Subcommand, Debug)]
pub enum QuarantineCommand {
    /// What the folder scan quarantined: id, signature, original path, owner, digest.
    ///
    /// Example: patchday-agent quarantine list
    List {
        /// The quarantine directory (default: the one the applied scan baseline names).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Puts a quarantined file back (where it was, or --to), with its owner and mode,
    /// never over an existing file; the scan then leaves a file with its digest alone.
    /// The release is reported to the server.
    ///
    /// Example: patchday-agent quarantine release 20261202T041100Z-0a1b2c3d
    Release {
        /// The id `quarantine list` shows.
        id: String,
        /// Another place to put it.
        #[arg(long)]
        to: Option<PathBuf>,
        /// The quarantine directory (default: the one the applied scan baseline names).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// The quarantine directory: given, or named by the applied scan baselines (one).
fn quarantine_dir(cfg: &AgentConfig, dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(d) = dir {
        return Ok(d);
    }
    let mut dirs: Vec<PathBuf> = crate::scan::scan_policies(&cfg.root)
        .values()
        .map(|s| crate::scan::on_machine(&cfg.root, &s.quarantine))
        .collect();
    dirs.dedup();
    match dirs.as_slice() {
        [one] => Ok(one.clone()),
        [] => {
            anyhow::bail!("no applied baseline scans folders here; give the quarantine with --dir")
        }
        _ => anyhow::bail!("the applied baselines name several quarantines; choose one with --dir"),
    }
}

/// `patchday-agent quarantine list|release`.
async fn quarantine(cfg: &AgentConfig, cmd: QuarantineCommand) -> anyhow::Result<()> {
    use crate::scan::quarantine as q;
    match cmd {
        QuarantineCommand::List { dir } => {
            let dir = quarantine_dir(cfg, dir)?;
            let records = q::list(&dir)?;
            if records.is_empty() {
                println!("the quarantine {} is empty", dir.display());
            }
            for r in records {
                let what = match &r.signature {
                    Some(s) => s.clone(),
                    None => "(held unscanned)".into(),
                };
                println!(
                    "{}  {}  {}  uid {}  {} bytes  sha256 {}",
                    r.id,
                    patchday_text::terminal(&what),
                    patchday_text::terminal(&r.original_path),
                    r.uid,
                    r.size,
                    r.sha256
                );
            }
            Ok(())
        }
        QuarantineCommand::Release { id, to, dir } => {
            let dir = quarantine_dir(cfg, dir)?;
            let (r, at) = q::release(&dir, &cfg.root, &id, to.as_deref(), true)?;
            println!(
                "released {} to {} (owner uid {}); the scan leaves this file (sha256 {}) alone there from now on",
                r.id,
                patchday_text::terminal(&at.display().to_string()),
                r.uid,
                r.sha256
            );
            let finding = patchday_types::api::ScanFinding {
                time: crate::run::clock_now(),
                baseline: r.baseline.clone(),
                outcome: patchday_types::api::ScanOutcome::Released,
                path: r.original_path.clone(),
                size: r.size,
                owner: Some(r.uid),
                sha256: Some(r.sha256.clone()),
                signature: r.signature.clone(),
                quarantine_id: Some(r.id.clone()),
                reason: None,
            };
            if let Err(e) = crate::scan::post_findings(cfg, vec![finding]).await {
                eprintln!("warning: the release could not be reported to the server: {e:#}");
            }
            Ok(())
        }
    }
}

/// How often `scan-folders` looks at the applied baselines for folder scans to start or
/// stop, and sends waiting scan findings.
const SCAN_SUPERVISION: Duration = Duration::from_secs(5);

/// `patchday-agent repair` (issue 9, point 4): runs the recovery, prints each step, and
/// reports a failure to the server like a failed run.
async fn repair(cfg: &AgentConfig, allow_apt: bool) -> std::process::ExitCode {
    match crate::run::repair(cfg, allow_apt).await {
        Ok(s) => {
            for step in &s.steps {
                println!("{step}");
            }
            println!("dpkg database is clean");
            crate::signed::report_outcome(cfg, &Ok(crate::RunSummary::default())).await;
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            crate::signed::report_outcome(cfg, &Err(e)).await;
            std::process::ExitCode::FAILURE
        }
    }
}

/// A positive duration such as `2h`, `30m`, `1d` or `PT2H`.
fn parse_label(s: &str) -> Result<(String, String), String> {
    patchday_core::membership::parse_label(s).map_err(|e| e.to_string())
}

fn parse_duration(s: &str) -> Result<jiff::SignedDuration, String> {
    let d = match s.trim().parse::<jiff::SignedDuration>() {
        Ok(d) => d,
        Err(_) => s
            .trim()
            .parse::<jiff::Span>()
            .and_then(|span| span.to_duration(jiff::SpanRelativeTo::days_are_24_hours()))
            .map_err(|e| format!("{s:?} is not a duration such as 2h, 30m or 1d: {e}"))?,
    };
    if d.is_negative() || d.is_zero() {
        return Err(format!("{s:?} must be longer than zero"));
    }
    Ok(d)
}

/// Runs the agent with parsed arguments until done (`--once`) or forever.
pub async fn run(args: Args) -> std::process::ExitCode {
    let enroll_token = match &args.enroll_token_file {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => Some(patchday_types::Secret::new(t.trim())),
            Err(e) => {
                eprintln!(
                    "error: cannot read --enroll-token-file {}: {e}",
                    p.display()
                );
                return std::process::ExitCode::FAILURE;
            }
        },
        None => args.enroll_token.clone(),
    };
    let cfg = AgentConfig {
        server: args.server.clone(),
        state_dir: args.state.clone(),
        enroll_token,
        root: args.root.clone(),
        dpkg_args: args.dpkg_args.clone(),
        catalog_root: args.catalog_root.clone(),
        read_timeout: Duration::from_secs(args.stall_timeout),
        download_deadline: Duration::from_secs(args.download_timeout),
        audit: !args.no_audit,
        ca: args.ca.clone(),
        director_key: args.director_key.clone(),
        max_silence: args.max_silence,
        reboot_command: args
            .reboot_command
            .split_whitespace()
            .map(String::from)
            .collect(),
        labels: args.labels.iter().cloned().collect(),
    };
    let token_file = args
        .access_token_file
        .clone()
        .unwrap_or_else(|| crate::access::default_token_file(&cfg));
    match args.command {
        Some(AgentCommand::Repair { allow_apt }) => return repair(&cfg, allow_apt).await,
        Some(AgentCommand::AccessToken) => {
            return match crate::access::fetch(&cfg, &token_file).await {
                Ok(crate::access::Fetched::Token(a)) => {
                    println!(
                        "access token written to {}, valid until {} (host {})",
                        token_file.display(),
                        a.expires_at,
                        a.compliance
                    );
                    std::process::ExitCode::SUCCESS
                }
                Ok(crate::access::Fetched::NotCompliant(why)) => {
                    println!("no access token: {why}");
                    std::process::ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        Some(AgentCommand::AccessProof {
            method,
            url,
            token_file: file,
        }) => {
            let file = file.unwrap_or(token_file);
            return match crate::access::proof_headers(&cfg, &method, &url, &file) {
                Ok(h) => {
                    print!("{h}");
                    std::process::ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        Some(AgentCommand::ScanFolders) => {
            crate::scan::supervise(cfg.clone(), SCAN_SUPERVISION).await;
            return std::process::ExitCode::SUCCESS;
        }
        Some(AgentCommand::Quarantine(cmd)) => {
            return match quarantine(&cfg, cmd).await {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        None => {}
    }
    // Issue 14: the daemon keeps the access token fresh beside its runs.
    if let (Some(file), false) = (&args.access_token_file, args.once) {
        tokio::spawn(crate::access::keep_fresh(
            cfg.clone(),
            file.clone(),
            Duration::from_secs(args.retry_seconds.clamp(1, 60)),
        ));
    }
    // Issue 10, point 6 (push): the generation seen before the first run, so that
    // whatever changes during it wakes the first wait.
    let mut since = if args.once || args.no_push {
        0
    } else {
        crate::push::current_generation(&cfg).await
    };
    let mut failed_runs: u32 = 0;
    loop {
        let result = run_once(&cfg).await;
        // finding 13: the operator sees a failed run in the report, not only the log.
        crate::signed::report_outcome(&cfg, &result).await;
        let mut wait = args.interval;
        match &result {
            Ok(s) => {
                println!(
                    "assigned {} installed {} failed {}",
                    s.assigned,
                    s.installed,
                    s.failed.len()
                );
                for (u, m) in &s.failed {
                    println!("failed {u}: {m}");
                }
                // Issue 10, point 3: decline with removal.
                for (u, m) in &s.removed {
                    println!("removed {u}: {m}");
                }
                for (u, m) in &s.remove_failed {
                    println!("remove-failed {u}: {m}");
                }
                // Issue 10, point 5: windows, reboots, an unreachable server.
                if let Some(e) = &s.offline {
                    println!("server unreachable ({e}): acted on the last signed answer");
                }
                for (u, m) in &s.waiting {
                    println!("waiting {u}: {m}");
                }
                for u in &s.reboot_completed {
                    println!("reboot completed {u}");
                }
                if let Some((us, why)) = &s.pending_reboot {
                    let us: Vec<String> = us.iter().map(ToString::to_string).collect();
                    println!("pending reboot {}: {why}", us.join(" "));
                }
                if !s.rebooted.is_empty() {
                    let us: Vec<String> = s.rebooted.iter().map(ToString::to_string).collect();
                    println!("rebooting for {}", us.join(" "));
                }
                if s.poll_seconds > 0 {
                    wait = wait.min(s.poll_seconds);
                }
            }
            Err(e) => eprintln!("error: {e:#}"),
        }
        if args.once {
            return match result {
                Ok(s) if s.failed.is_empty() && s.offline.is_none() => {
                    std::process::ExitCode::SUCCESS
                }
                _ => std::process::ExitCode::FAILURE,
            };
        }
        let interval = Duration::from_secs(wait.max(1));
        let retry = Duration::from_secs(args.retry_seconds.max(1));
        // Issue 10, point 6: a failed run (an error, a failed update, an unreachable
        // server) is tried again after a jittered, doubling back-off, not a whole interval.
        let failed = match &result {
            Ok(s) => !s.failed.is_empty() || s.offline.is_some(),
            Err(_) => true,
        };
        if failed {
            failed_runs = failed_runs.saturating_add(1);
            let pause = crate::push::backoff(failed_runs, retry, interval);
            println!("run failed: trying again in {}s", pause.as_secs());
            tokio::time::sleep(pause).await;
            continue;
        }
        failed_runs = 0;
        // Jitter spreads a fleet's check-ins so they do not arrive together; a run due
        // sooner (a window opening, a deadline) comes a little after that moment.
        let due = result.as_ref().ok().and_then(|s| s.due_in_seconds);
        let pause = crate::push::next_run(interval, due.map(Duration::from_secs));
        if let Some(d) = due.filter(|d| Duration::from_secs(*d) < interval) {
            println!("next run in {}s, when the waiting work falls due", d + 1);
        }
        if args.no_push {
            tokio::time::sleep(pause).await;
            continue;
        }
        if crate::push::until_work(&cfg, &mut since, pause, retry).await
            == crate::push::Woken::Pushed
        {
            println!("woken by the server: running now");
        }
    }
}
