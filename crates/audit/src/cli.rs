//! `patchday audit`: collect facts (or read them), import advisory feeds, run the checks,
//! build the plan and print it. Runs without a server.

use crate::advisory::AdvisoryDb;
use crate::checks::SecuritySupport;
use crate::feeds::{assess, FeedPaths, Feeds};
use crate::model::{Facts, Finding, FindingKind, Fix, Outcome};
use crate::report::Format;
use anyhow::Context as _;
use std::path::{Path, PathBuf};

/// Arguments of `patchday audit`.
#[derive(Clone, Debug, clap::Args)]
#[command(
    after_help = "Example:\n  patchday audit --osv ./osv --debian-tracker tracker.json \
--kev known_exploited_vulnerabilities.json --format html --output plan.html"
)]
pub struct AuditArgs {
    /// Root of the system to audit (an image or overlay host); default: the running host.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// OSV advisories: a JSON file or a directory of them (repeatable).
    #[arg(long, value_name = "PATH")]
    pub osv: Vec<PathBuf>,
    /// Debian security tracker JSON (repeatable).
    #[arg(long, value_name = "PATH")]
    pub debian_tracker: Vec<PathBuf>,
    /// CISA known-exploited-vulnerabilities catalog JSON.
    #[arg(long, value_name = "PATH")]
    pub kev: Option<PathBuf>,
    /// distro-info-data CSV [default: ROOT/usr/share/distro-info/<os id>.csv, then the host's].
    #[arg(long, value_name = "PATH")]
    pub distro_info: Option<PathBuf>,
    /// debian-security-support directory [default: ROOT/usr/share/debian-security-support].
    #[arg(long, value_name = "DIR")]
    pub security_support: Option<PathBuf>,
    /// Read facts from this JSON file (as an agent reports them) instead of collecting.
    #[arg(long, value_name = "FILE", conflicts_with = "root")]
    pub facts: Option<PathBuf>,
    /// Also match the crates.io packages of these Cargo.lock files (repeatable).
    #[arg(long, value_name = "FILE")]
    pub cargo_lock: Vec<PathBuf>,
    /// Directory of downloaded `.deb` files (`apt-get download`, /var/cache/apt/archives):
    /// add the CVEs that pending security updates fix, from their changelog.Debian.gz.
    #[arg(long, value_name = "DIR")]
    pub debs: Option<PathBuf>,
    /// Do not audit a host: only the given lockfiles.
    #[arg(long)]
    pub no_host: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write the report here instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Issue 13, point 5: also write the baseline that would close the hardening findings
    /// (kernel settings, firewall, browser policy) to this file, for review and
    /// `patchday catalog add-baseline`; nothing is written when there is nothing to close.
    #[arg(long, value_name = "FILE")]
    pub propose_baseline: Option<PathBuf>,
}

/// Runs the audit; returns the exit code: 0 when no failing finding remains outside
/// the informational items, 1 otherwise.
pub fn run(args: &AuditArgs, now: jiff::Timestamp) -> anyhow::Result<i32> {
    let facts = load_facts(args)?;
    let root = args.root.clone().unwrap_or_else(|| PathBuf::from("/"));

    let feeds = Feeds::load(&FeedPaths {
        osv: args.osv.clone(),
        debian_tracker: args.debian_tracker.clone(),
        kev: args.kev.clone(),
        distro_info: distro_info_path(args, &root, &facts),
    })?;
    let db = &feeds.advisories;
    let security_support = match support_dir(args, &root) {
        Some(dir) if !args.no_host => {
            let major = facts.os.version_id.split('.').next().unwrap_or_default();
            Some(SecuritySupport::load_dir(&dir, major).with_context(|| {
                format!("reading debian-security-support lists in {}", dir.display())
            })?)
        }
        _ => None,
    };

    let mut findings: Vec<Finding> = Vec::new();
    if !args.no_host {
        let mut host = assess(&facts, &feeds, security_support.as_ref(), now);
        if let Some(dir) = &args.debs {
            let done = crate::pending::pending_update_cves(&mut host, &facts, dir);
            for (path, error) in &done.errors {
                eprintln!("warning: skipping {}: {error}", path.display());
            }
        }
        findings.extend(host);
    }
    for lock in &args.cargo_lock {
        findings.extend(cargo_lock_findings(db, lock)?);
    }

    let plan = crate::plan::build(&facts, findings, now);
    if let (Some(path), Some(p)) = (&args.propose_baseline, &plan.proposed_baseline) {
        std::fs::write(path, &p.policy)
            .with_context(|| format!("writing the proposed baseline to {}", path.display()))?;
    }
    let rendered = crate::report::render(&plan, args.format).context("rendering the report")?;
    match &args.output {
        Some(path) => std::fs::write(path, rendered)
            .with_context(|| format!("writing the report to {}", path.display()))?,
        None => print!("{rendered}"),
    }
    Ok(if plan.has_failing() { 1 } else { 0 })
}

fn load_facts(args: &AuditArgs) -> anyhow::Result<Facts> {
    if let Some(path) = &args.facts {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading facts {}", path.display()))?;
        return serde_json::from_str(&text)
            .with_context(|| format!("{} is not a facts JSON document", path.display()));
    }
    if args.no_host {
        return Ok(Facts::default());
    }
    let opts = match &args.root {
        Some(root) if root != Path::new("/") => crate::facts::CollectOptions::image(root),
        _ => crate::facts::CollectOptions::host(),
    };
    crate::facts::collect(&opts).context("collecting facts")
}

fn distro_info_path(args: &AuditArgs, root: &Path, facts: &Facts) -> Option<PathBuf> {
    if let Some(p) = &args.distro_info {
        return Some(p.clone());
    }
    if args.no_host {
        return None;
    }
    let id = if facts.os.id.is_empty() {
        "debian"
    } else {
        facts.os.id.as_str()
    };
    let rel = format!("usr/share/distro-info/{id}.csv");
    [root.join(&rel), Path::new("/").join(&rel)]
        .into_iter()
        .find(|p| p.is_file())
}

fn support_dir(args: &AuditArgs, root: &Path) -> Option<PathBuf> {
    if let Some(p) = &args.security_support {
        return Some(p.clone());
    }
    let rel = "usr/share/debian-security-support";
    [root.join(rel), Path::new("/").join(rel)]
        .into_iter()
        .find(|p| p.is_dir())
}

/// Findings for the crates.io packages of one `Cargo.lock`.
pub fn cargo_lock_findings(db: &AdvisoryDb, lock: &Path) -> anyhow::Result<Vec<Finding>> {
    let text =
        std::fs::read_to_string(lock).with_context(|| format!("reading {}", lock.display()))?;
    let hits = db.scan_cargo_lock(&text);
    if hits.is_empty() {
        return Ok(vec![Finding {
            check: "known-vulnerability.cargo-lock".into(),
            kind: FindingKind::Vulnerability,
            outcome: Outcome::Pass,
            subject: lock.display().to_string(),
            reason: format!(
                "no imported advisory affects the crates in {}",
                lock.display()
            ),
            remediation: String::new(),
            ids: Vec::new(),
            severity: None,
            known_exploited: false,
            fix: None,
        }]);
    }
    Ok(hits
        .into_iter()
        .map(|(p, m)| Finding {
            check: "known-vulnerability.cargo-lock".into(),
            kind: FindingKind::Vulnerability,
            outcome: Outcome::Fail,
            subject: p.name.clone(),
            reason: format!(
                "{} {} in {} is affected by {}{}{}",
                p.name,
                p.version,
                lock.display(),
                m.matched.join(", "),
                if m.summary.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", m.summary)
                },
                m.informational
                    .as_deref()
                    .map(|i| format!("; {i}"))
                    .unwrap_or_default()
            ),
            remediation: match &m.fixed {
                Some(v) => format!(
                    "cargo update -p {} --precise {}",
                    crate::command::word(&format!("{}@{}", p.name, p.version)),
                    crate::command::word(v)
                ),
                None => format!("no fixed version of {}: replace it", p.name),
            },
            ids: m.ids,
            severity: m
                .informational
                .is_some()
                .then(|| "unimportant".to_string())
                .or(m.severity.map(|s| s.as_str().to_string())),
            known_exploited: m.known_exploited,
            fix: m.fixed.map(|version| Fix {
                source: p.name,
                version,
            }),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use patchday_types::{InstalledPackage, OsRelease};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: AuditArgs,
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    /// The whole command over fixtures: facts JSON, an OSV directory, a tracker file,
    /// a KEV catalog, a distro-info CSV and a Cargo.lock; every format.
    #[test]
    fn run_end_to_end_over_fixture_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let facts = Facts {
            hostname: "db1".into(),
            os: OsRelease {
                id: "debian".into(),
                version_id: "12".into(),
                version_codename: "bookworm".into(),
                pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
            },
            packages: vec![InstalledPackage {
                name: "libssl3".into(),
                version: "3.0.14-1~deb12u2".into(),
                architecture: "amd64".into(),
                source: "openssl".into(),
                source_version: "3.0.14-1~deb12u2".into(),
            }],
            apt_suites: [(
                "bookworm-security".to_string(),
                [("libssl3".to_string(), "3.0.15-1~deb12u1".to_string())]
                    .into_iter()
                    .collect(),
            )]
            .into_iter()
            .collect(),
            ..Facts::default()
        };
        let facts_path = write(d, "facts.json", &serde_json::to_string(&facts).unwrap());
        write(
            d,
            "osv/debian/DSA-1.json",
            r#"{"id": "DSA-1", "aliases": ["CVE-2099-1"], "affected": [{"package": {"ecosystem": "Debian:12", "name": "openssl"},
               "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.15-1~deb12u1"}]}]}]}"#,
        );
        write(
            d,
            "osv/crates/RUSTSEC-2099-1.json",
            r#"{"id": "RUSTSEC-2099-1", "affected": [{"package": {"ecosystem": "crates.io", "name": "demo"},
               "ranges": [{"type": "SEMVER", "events": [{"introduced": "0.0.0-0"}, {"fixed": "1.0.1"}]}]}]}"#,
        );
        write(d, "osv/notes.txt", "not json: ignored");
        let tracker = write(
            d,
            "tracker.json",
            r#"{"openssl": {"CVE-2099-2": {"releases": {"bookworm": {"status": "resolved", "fixed_version": "3.0.15-1~deb12u1", "urgency": "high"}}}}}"#,
        );
        let kev = write(
            d,
            "kev.json",
            r#"{"vulnerabilities": [{"cveID": "CVE-2099-1"}]}"#,
        );
        let csv = write(
            d,
            "debian.csv",
            "version,codename,series,created,release,eol,eol-lts,eol-elts\n12,Bookworm,bookworm,2021-08-14,2023-06-10,2026-07-11,2028-06-30,2033-06-30\n13,Trixie,trixie,2023-06-10,2025-08-09,2028-08-09,2030-06-30,2035-06-30\n",
        );
        let lock = write(
            d,
            "Cargo.lock",
            "version = 3\n\n[[package]]\nname = \"demo\"\nversion = \"1.0.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
        );
        let now: jiff::Timestamp = "2026-01-15T10:00:00Z".parse().unwrap();
        for (format, file) in [
            ("json", "plan.json"),
            ("html", "plan.html"),
            ("text", "plan.txt"),
        ] {
            let out = d.join(file);
            let cli = Cli::parse_from([
                "audit".as_ref(),
                "--facts".as_ref(),
                facts_path.as_os_str(),
                "--osv".as_ref(),
                d.join("osv").as_os_str(),
                "--debian-tracker".as_ref(),
                tracker.as_os_str(),
                "--kev".as_ref(),
                kev.as_os_str(),
                "--distro-info".as_ref(),
                csv.as_os_str(),
                "--security-support".as_ref(),
                d.join("none").as_os_str(),
                "--cargo-lock".as_ref(),
                lock.as_os_str(),
                "--format".as_ref(),
                format.as_ref(),
                "--output".as_ref(),
                out.as_os_str(),
            ] as [&std::ffi::OsStr; 19]);
            assert_eq!(run(&cli.args, now).unwrap(), 1);
            let text = std::fs::read_to_string(&out).unwrap();
            if format == "json" {
                let plan: crate::plan::Plan = serde_json::from_str(&text).unwrap();
                let first = &plan.actions[0];
                assert_eq!(first.section, crate::plan::Section::KnownExploited);
                assert_eq!(first.subject, "openssl");
                assert_eq!(first.ids, vec!["CVE-2099-1", "CVE-2099-2", "DSA-1"]);
                // missing update + two vulnerabilities, one upgrade.
                assert_eq!(first.findings.len(), 3);
                let demo = plan.actions.iter().find(|a| a.subject == "demo").unwrap();
                assert_eq!(demo.fix.as_ref().unwrap().version, "1.0.1");
                assert!(plan.passed.iter().any(|f| f.check == "end-of-life.release"));
            } else {
                assert!(
                    text.contains("Upgrade openssl to 3.0.15-1~deb12u1"),
                    "{text}"
                );
            }
        }
    }

    /// `--debs DIR`: the pending update's changelog adds the CVEs it fixes.
    #[test]
    fn debs_flag_adds_cves_from_the_fixed_changelog() {
        use crate::pending::tests::{build_deb, have_dpkg_deb, CHANGELOG};
        if !have_dpkg_deb() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let debs = d.join("debs");
        std::fs::create_dir_all(&debs).unwrap();
        build_deb(d, &debs, "demo", "1.0-1+deb12u2", Some(CHANGELOG));
        let facts = Facts {
            packages: vec![InstalledPackage {
                name: "demo".into(),
                version: "1.0-1+deb12u1".into(),
                architecture: "all".into(),
                source: "demo".into(),
                source_version: "1.0-1+deb12u1".into(),
            }],
            apt_suites: [(
                "bookworm-security".to_string(),
                [("demo".to_string(), "1.0-1+deb12u2".to_string())]
                    .into_iter()
                    .collect(),
            )]
            .into_iter()
            .collect(),
            ..Facts::default()
        };
        let facts_path = write(d, "facts.json", &serde_json::to_string(&facts).unwrap());
        let out = d.join("plan.json");
        let cli = Cli::parse_from([
            "audit".as_ref(),
            "--facts".as_ref(),
            facts_path.as_os_str(),
            "--debs".as_ref(),
            debs.as_os_str(),
            "--security-support".as_ref(),
            d.join("none").as_os_str(),
            "--format".as_ref(),
            "json".as_ref(),
            "--output".as_ref(),
            out.as_os_str(),
        ] as [&std::ffi::OsStr; 11]);
        assert_eq!(
            run(&cli.args, "2026-11-26T10:00:00Z".parse().unwrap()).unwrap(),
            1
        );
        let plan: crate::plan::Plan =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        let demo = plan.actions.iter().find(|a| a.subject == "demo").unwrap();
        assert_eq!(demo.ids, vec!["CVE-2099-0002", "CVE-2099-0003"]);
    }
}
