//! `patchday-agent`: runs on each managed host.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = patchday_agent::cli::Args::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let sub = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_json {
        sub.json().init();
    } else {
        sub.init();
    }
    patchday_agent::cli::run(args).await
}
