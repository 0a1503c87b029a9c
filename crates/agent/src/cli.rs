//! The agent's command line, shared by `patchday-agent` and the demo.

use crate::{run_once, AgentConfig};
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

/// Patchday agent: reports inventory, installs approved updates after verifying them
/// against the signed catalog, and reports what dpkg says.
///
/// Example: patchday-agent --server http://patchday.example:8470 --state /var/lib/patchday-agent --enroll-token pde_... --once
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
pub struct Args {
    /// Server base URL.
    #[arg(long, env = "PATCHDAY_SERVER")]
    pub server: String,
    /// State directory (identity, pinned root, downloads).
    #[arg(long, default_value = "/var/lib/patchday-agent")]
    pub state: PathBuf,
    /// Enrolment token (first run only).
    #[arg(long, env = "PATCHDAY_ENROLL_TOKEN", hide_env_values = true)]
    pub enroll_token: Option<patchday_types::Secret>,
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
    #[arg(long, default_value_t = 3600)]
    pub interval: u64,
    /// Seconds a transfer may stall before the agent gives up (and retries next run).
    #[arg(long, default_value_t = 30)]
    pub stall_timeout: u64,
    /// Seconds one payload download may take.
    #[arg(long, default_value_t = 1800)]
    pub download_timeout: u64,
    /// The server's CA certificate (PEM) to pin at enrolment; later runs use the pinned copy.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Do not collect and send security-audit facts.
    #[arg(long)]
    pub no_audit: bool,
    /// Log as JSON.
    #[arg(long)]
    pub log_json: bool,
}

/// Runs the agent with parsed arguments until done (`--once`) or forever.
pub async fn run(args: Args) -> std::process::ExitCode {
    let cfg = AgentConfig {
        server: args.server.clone(),
        state_dir: args.state.clone(),
        enroll_token: args.enroll_token.clone(),
        root: args.root.clone(),
        dpkg_args: args.dpkg_args.clone(),
        catalog_root: args.catalog_root.clone(),
        read_timeout: Duration::from_secs(args.stall_timeout),
        download_deadline: Duration::from_secs(args.download_timeout),
        audit: !args.no_audit,
        ca: args.ca.clone(),
    };
    loop {
        let result = run_once(&cfg).await;
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
                if s.poll_seconds > 0 {
                    wait = wait.min(s.poll_seconds);
                }
            }
            Err(e) => eprintln!("error: {e:#}"),
        }
        if args.once {
            return match result {
                Ok(s) if s.failed.is_empty() => std::process::ExitCode::SUCCESS,
                _ => std::process::ExitCode::FAILURE,
            };
        }
        // Jitter spreads a fleet's check-ins so they do not arrive together.
        let jitter = rand::random::<u64>() % (wait / 10 + 1);
        tokio::time::sleep(Duration::from_secs(wait + jitter)).await;
    }
}
