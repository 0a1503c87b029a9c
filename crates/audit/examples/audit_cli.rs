//! `patchday audit` as a standalone program, for benchmarks and for trying the audit
//! before the lead mounts it in the `patchday` binary.
//!
//! `cargo run -p patchday-audit --example audit_cli -- --help`

use clap::Parser;

/// Security audit and plan for this host, an image root, or Cargo.lock files.
#[derive(Parser)]
#[command(name = "patchday-audit")]
struct Cli {
    #[command(flatten)]
    args: patchday_audit::cli::AuditArgs,
}

/// The binary's edge: the one place that reads the clock.
#[allow(clippy::disallowed_methods)]
fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let code = patchday_audit::cli::run(&cli.args, now())?;
    std::process::exit(code);
}
