//! Print the missing-security-update findings of this host (or `--root DIR`), one line
//! each, for `bench/audit-missing.sh`:
//!
//! `PACKAGE INSTALLED -> SECURITY_VERSION SECURITY_SUITE point=VERSION@SUITE|- ids=CVE,..|-`
//!
//! `point=` is the newest version outside the security suites (what a point release
//! offers), `ids=` the CVEs the pending update fixes per its changelog when `--debs DIR`
//! holds the fixed `.deb`. A summary goes to standard error.
//!
//! Usage: `missing_updates [--root DIR] [--debs DIR]`

use patchday_audit::checks::{self, is_security_suite};
use patchday_audit::facts::{self, CollectOptions};
use patchday_audit::model::{Facts, Outcome};
use patchday_audit::pending::pending_update_cves;
use std::cmp::Ordering;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

fn newest<'a>(facts: &'a Facts, name: &str, security: bool) -> Option<(&'a str, &'a str)> {
    facts
        .apt_suites
        .iter()
        .filter(|(s, _)| is_security_suite(s) == security && !s.ends_with("-backports"))
        .filter_map(|(s, pkgs)| pkgs.get(name).map(|v| (s.as_str(), v.as_str())))
        .max_by(|a, b| patchday_pkg::version::compare_deb(a.1, b.1).unwrap_or(Ordering::Equal))
}

fn main() -> ExitCode {
    let mut opts = CollectOptions::host();
    let mut debs: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--root", Some(dir)) => opts = CollectOptions::image(dir),
            ("--debs", Some(dir)) => debs = Some(PathBuf::from(dir)),
            _ => {
                eprintln!("usage: missing_updates [--root DIR] [--debs DIR]");
                return ExitCode::from(2);
            }
        }
    }
    // Only the packages and apt lists matter here.
    opts.scan_binaries = false;
    let facts = match facts::collect(&opts) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let mut findings = checks::missing_security_updates(&facts);
    if let Some(dir) = &debs {
        let done = pending_update_cves(&mut findings, &facts, dir);
        for (path, error) in &done.errors {
            eprintln!("warning: skipping {}: {error}", path.display());
        }
        eprintln!(
            "--debs {}: {} .deb files read, {} findings given CVE ids, {} without a newer .deb",
            dir.display(),
            done.debs_read,
            done.enriched,
            done.without_deb
        );
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failing = 0;
    for f in findings.iter().filter(|f| f.outcome == Outcome::Fail) {
        failing += 1;
        let installed = facts
            .packages
            .iter()
            .filter(|p| p.name == f.subject)
            .map(|p| p.version.as_str())
            .min_by(|a, b| patchday_pkg::version::compare_deb(a, b).unwrap_or(Ordering::Equal))
            .unwrap_or("?");
        let (sec_suite, sec_version) = newest(&facts, &f.subject, true).unwrap_or(("?", "?"));
        let point = newest(&facts, &f.subject, false)
            .map(|(s, v)| format!("{v}@{s}"))
            .unwrap_or_else(|| "-".into());
        let ids = if f.ids.is_empty() {
            "-".to_string()
        } else {
            f.ids.join(",")
        };
        let _ = writeln!(
            out,
            "{} {installed} -> {sec_version} {sec_suite} point={point} ids={ids}",
            f.subject
        );
    }
    for f in findings.iter().filter(|f| f.outcome != Outcome::Fail) {
        eprintln!("{:?}: {}", f.outcome, f.reason);
    }
    eprintln!(
        "{} installed packages, {} apt suites ({}); {failing} missing security updates",
        facts.packages.len(),
        facts.apt_suites.len(),
        facts
            .apt_suites
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    );
    if out.flush().is_err() {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
