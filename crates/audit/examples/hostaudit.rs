//! Collect facts from this host (or `--root DIR`) and run the hardening checks; print
//! one line per finding and a summary with the time taken. Used by
//! `bench/audit-host.sh`.
//!
//! Usage: `hostaudit [--root DIR] [--json] [--quiet]`

use patchday_audit::facts::{self, CollectOptions};
use patchday_audit::hardening;
use patchday_audit::model::Outcome;
use std::io::Write;

#[allow(clippy::disallowed_methods)] // a binary edge: timing the run is its purpose
fn main() -> std::process::ExitCode {
    let mut opts = CollectOptions::host();
    let mut json = false;
    let mut quiet = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--root" => match args.next() {
                Some(dir) => opts = CollectOptions::image(dir),
                None => {
                    eprintln!("--root needs a directory");
                    return std::process::ExitCode::from(2);
                }
            },
            "--json" => json = true,
            "--quiet" => quiet = true,
            other => {
                eprintln!(
                    "unknown argument {other}; usage: hostaudit [--root DIR] [--json] [--quiet]"
                );
                return std::process::ExitCode::from(2);
            }
        }
    }
    let start = std::time::Instant::now();
    let facts = match facts::collect(&opts) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let collected = start.elapsed();
    let findings = hardening::check(&facts);
    let total = start.elapsed();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if json {
        let doc = serde_json::json!({ "facts": facts, "findings": findings });
        if serde_json::to_writer_pretty(&mut out, &doc).is_err() {
            return std::process::ExitCode::from(1);
        }
        let _ = writeln!(out);
    } else if !quiet {
        for f in &findings {
            let o = match f.outcome {
                Outcome::Pass => "pass",
                Outcome::Fail => "FAIL",
                Outcome::NotApplicable => "n/a ",
            };
            let _ = writeln!(out, "{o} {:<44} {:<28} {}", f.check, f.subject, f.reason);
        }
    }
    let count = |o| findings.iter().filter(|f| f.outcome == o).count();
    let suites: usize = facts.apt_suites.values().map(|s| s.len()).sum();
    eprintln!(
        "{} packages, {} apt suites ({} entries), {} sysctl keys, {} binaries; {} findings ({} fail, {} pass, {} n/a); collect {:.1} ms, total {:.1} ms",
        facts.packages.len(),
        facts.apt_suites.len(),
        suites,
        facts.sysctl.len(),
        facts.binaries.len(),
        findings.len(),
        count(Outcome::Fail),
        count(Outcome::Pass),
        count(Outcome::NotApplicable),
        collected.as_secs_f64() * 1000.0,
        total.as_secs_f64() * 1000.0,
    );
    if out.flush().is_err() {
        return std::process::ExitCode::from(1);
    }
    std::process::ExitCode::SUCCESS
}
