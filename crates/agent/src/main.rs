//! `patchday-agent`: runs on each managed host.

use clap::{CommandFactory, Parser};
use std::io::IsTerminal;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Issue 11, point 7: `--config FILE` supplies the flags not given.
    let argv = match patchday_agent::config_file::expand(
        &patchday_agent::cli::Args::command(),
        std::env::args_os().collect(),
        &[],
    ) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let args = patchday_agent::cli::Args::parse_from(argv);
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let sub = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Issue 11, point 7: no colour codes in a journal or a file.
        .with_ansi(std::io::stderr().is_terminal());
    if args.log_json {
        sub.json().init();
    } else {
        sub.init();
    }
    patchday_agent::cli::run(args).await
}
