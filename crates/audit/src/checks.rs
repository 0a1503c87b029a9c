//! Checks over facts: missing security updates, known vulnerabilities (matched on the
//! source package and source version), end of life of the release and of single
//! packages, and reboots needed. Pure logic: the clock is the `now` parameter.

use crate::advisory::{host_ecosystems, AdvisoryDb, Severity, VersionScheme};
use crate::model::{Facts, Finding, FindingKind, Fix, Outcome};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Why check data could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CheckDataError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line of a data file could not be understood.
    #[error("{path}:{line}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        message: String,
    },
}

fn read(path: &Path) -> Result<String, CheckDataError> {
    std::fs::read_to_string(path).map_err(|source| CheckDataError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// One release row of a distro-info-data CSV.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DistroRelease {
    /// Numeric version (`12`); empty for sid/experimental.
    pub version: String,
    /// Display codename (`Bookworm`).
    pub codename: String,
    /// Series, the lower-case codename (`bookworm`).
    pub series: String,
    /// Release date, when released.
    pub release: Option<Date>,
    /// End of regular security support.
    pub eol: Option<Date>,
    /// End of LTS.
    pub eol_lts: Option<Date>,
    /// End of ELTS (commercial extended support).
    pub eol_elts: Option<Date>,
}

/// The release table of a distro-info-data CSV (`/usr/share/distro-info/debian.csv`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DistroInfo {
    /// Rows in file order.
    pub releases: Vec<DistroRelease>,
}

impl DistroInfo {
    /// Parses CSV text with the header `version,codename,series,created,release,eol[,eol-lts[,eol-elts]]`.
    pub fn parse(text: &str) -> Result<Self, CheckDataError> {
        let mut lines = text.lines().enumerate();
        let header: Vec<&str> = match lines.next() {
            Some((_, h)) => h.split(',').map(str::trim).collect(),
            None => return Ok(Self::default()),
        };
        let col = |name: &str| header.iter().position(|h| *h == name);
        let (Some(cv), Some(cc), Some(cs)) = (col("version"), col("codename"), col("series"))
        else {
            return Err(CheckDataError::Format {
                path: PathBuf::from("distro-info"),
                line: 1,
                message: "header lacks version,codename,series".into(),
            });
        };
        let (cr, ce, cl, cx) = (col("release"), col("eol"), col("eol-lts"), col("eol-elts"));
        let mut releases = Vec::new();
        for (n, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            let get = |c: Option<usize>| c.and_then(|c| f.get(c)).copied().unwrap_or("");
            let date = |c: Option<usize>| -> Result<Option<Date>, CheckDataError> {
                let s = get(c);
                if s.is_empty() {
                    return Ok(None);
                }
                s.parse::<Date>()
                    .map(Some)
                    .map_err(|e| CheckDataError::Format {
                        path: PathBuf::from("distro-info"),
                        line: n + 1,
                        message: format!("bad date {s:?}: {e}"),
                    })
            };
            releases.push(DistroRelease {
                version: get(Some(cv)).to_string(),
                codename: get(Some(cc)).to_string(),
                series: get(Some(cs)).to_string(),
                release: date(cr)?,
                eol: date(ce)?,
                eol_lts: date(cl)?,
                eol_elts: date(cx)?,
            });
        }
        Ok(Self { releases })
    }

    /// Reads and parses a distro-info-data CSV file.
    pub fn load(path: &Path) -> Result<Self, CheckDataError> {
        Self::parse(&read(path)?).map_err(|e| match e {
            CheckDataError::Format { line, message, .. } => CheckDataError::Format {
                path: path.to_path_buf(),
                line,
                message,
            },
            other => other,
        })
    }

    /// The row for a host: by VERSION_ID's major number, else by codename.
    pub fn find(&self, os: &patchday_types::OsRelease) -> Option<&DistroRelease> {
        let major = os.version_id.split('.').next().unwrap_or_default();
        self.releases
            .iter()
            .find(|r| {
                !r.version.is_empty()
                    && (r.version == os.version_id
                        || r.version.split('.').next() == Some(major) && !major.is_empty())
            })
            .or_else(|| {
                self.releases.iter().find(|r| {
                    !os.version_codename.is_empty()
                        && r.series.eq_ignore_ascii_case(&os.version_codename)
                })
            })
    }

    /// Series → OSV release name (`bookworm` → `12`, `sid` → `sid`), for the tracker import.
    pub fn release_names(&self) -> BTreeMap<String, String> {
        self.releases
            .iter()
            .map(|r| {
                let name = if r.version.is_empty() {
                    r.series.clone()
                } else {
                    r.version.clone()
                };
                (r.series.clone(), name)
            })
            .collect()
    }
}

/// One line of a debian-security-support list.
#[derive(Clone, Debug)]
pub struct SupportEntry {
    /// The source package name or pattern as written (`golang.*`).
    pub pattern: String,
    matcher: regex::Regex,
    /// Last supported version (ended lists).
    pub last_version: Option<String>,
    /// When support ended or ends (ended lists).
    pub date: Option<Date>,
    /// Details text or URL.
    pub details: String,
}

impl SupportEntry {
    /// True when the pattern matches this source package name (whole name).
    pub fn matches(&self, source: &str) -> bool {
        self.matcher.is_match(source)
    }
}

/// Per-package limited or ended security support from `debian-security-support`.
#[derive(Clone, Debug, Default)]
pub struct SecuritySupport {
    /// `security-support-limited` entries.
    pub limited: Vec<SupportEntry>,
    /// `security-support-ended.debN` entries for the host's release.
    pub ended: Vec<SupportEntry>,
}

fn anchored(pattern: &str) -> regex::Regex {
    regex::Regex::new(&format!("^(?:{pattern})$"))
        .or_else(|_| regex::Regex::new(&format!("^{}$", regex::escape(pattern))))
        .unwrap_or_else(|_| never_matches())
}

fn never_matches() -> regex::Regex {
    // `[^\s\S]` is a valid pattern that matches nothing; the fallback of a fallback.
    regex::Regex::new(r"[^\s\S]").unwrap_or_else(|_| never_matches())
}

fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(n, l)| (n + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// `text` after the first `n` whitespace-separated fields.
fn rest_after(line: &str, n: usize) -> String {
    let mut rest = line;
    for _ in 0..n {
        rest = rest.trim_start();
        rest = rest.find(char::is_whitespace).map_or("", |i| &rest[i..]);
    }
    rest.trim().to_string()
}

impl SecuritySupport {
    /// Parses `security-support-limited` (columns: source pattern, details).
    pub fn parse_limited(text: &str) -> Vec<SupportEntry> {
        content_lines(text)
            .filter_map(|(_, l)| {
                let pattern = l.split_whitespace().next()?.to_string();
                Some(SupportEntry {
                    matcher: anchored(&pattern),
                    pattern,
                    last_version: None,
                    date: None,
                    details: rest_after(l, 1),
                })
            })
            .collect()
    }

    /// Parses `security-support-ended.debN` (columns: source pattern, last version, date, details).
    pub fn parse_ended(text: &str) -> Result<Vec<SupportEntry>, CheckDataError> {
        content_lines(text)
            .map(|(n, l)| {
                let mut f = l.split_whitespace();
                let pattern = f.next().unwrap_or_default().to_string();
                let version = f.next().map(str::to_string);
                let date = match f.next() {
                    Some(d) => Some(d.parse::<Date>().map_err(|e| CheckDataError::Format {
                        path: PathBuf::from("security-support-ended"),
                        line: n,
                        message: format!("bad date {d:?}: {e}"),
                    })?),
                    None => None,
                };
                Ok(SupportEntry {
                    matcher: anchored(&pattern),
                    pattern,
                    last_version: version.filter(|v| v != "0"),
                    date,
                    details: rest_after(l, 3),
                })
            })
            .collect()
    }

    /// Loads `security-support-limited` and `security-support-ended.deb{major}` from a
    /// directory (`/usr/share/debian-security-support`); missing files mean no entries.
    pub fn load_dir(dir: &Path, release_major: &str) -> Result<Self, CheckDataError> {
        let mut s = Self::default();
        let limited = dir.join("security-support-limited");
        if limited.exists() {
            s.limited = Self::parse_limited(&read(&limited)?);
        }
        let ended = dir.join(format!("security-support-ended.deb{release_major}"));
        if ended.exists() {
            s.ended = Self::parse_ended(&read(&ended)?).map_err(|e| match e {
                CheckDataError::Format { line, message, .. } => CheckDataError::Format {
                    path: ended.clone(),
                    line,
                    message,
                },
                other => other,
            })?;
        }
        Ok(s)
    }
}

/// Imported data the checks may use; each part is optional.
#[derive(Clone, Copy, Debug, Default)]
pub struct CheckInputs<'a> {
    /// Advisory feeds (OSV, Debian tracker, KEV).
    pub advisories: Option<&'a AdvisoryDb>,
    /// distro-info-data release table.
    pub distro_info: Option<&'a DistroInfo>,
    /// debian-security-support lists.
    pub security_support: Option<&'a SecuritySupport>,
}

/// Runs every check of this module; missing-update findings are enriched with the ids
/// of the vulnerabilities their security version fixes.
pub fn run_all(facts: &Facts, inputs: &CheckInputs<'_>, now: Timestamp) -> Vec<Finding> {
    let mut out = Vec::new();
    match inputs.distro_info {
        Some(d) => out.extend(end_of_life(facts, d, now)),
        None => out.push(not_applicable(
            "end-of-life.release",
            FindingKind::EndOfLife,
            &release_label(facts),
            "no distro-info-data CSV given (install distro-info-data or pass --distro-info)",
        )),
    }
    if let Some(s) = inputs.security_support {
        out.extend(package_support(facts, s, now));
    }
    let mut missing = missing_security_updates(facts);
    let vulns = match inputs.advisories {
        Some(db) => known_vulnerabilities(facts, db),
        None => vec![not_applicable(
            "known-vulnerability",
            FindingKind::Vulnerability,
            "all packages",
            "no advisory feed given (--osv, --debian-tracker)",
        )],
    };
    link_fixed_ids(&mut missing, &vulns);
    out.extend(missing);
    out.extend(vulns);
    out.extend(reboot_needed(facts));
    out
}

fn not_applicable(check: &str, kind: FindingKind, subject: &str, reason: &str) -> Finding {
    finding(
        check,
        kind,
        Outcome::NotApplicable,
        subject,
        reason.to_string(),
        String::new(),
    )
}

fn finding(
    check: &str,
    kind: FindingKind,
    outcome: Outcome,
    subject: &str,
    reason: String,
    remediation: String,
) -> Finding {
    Finding {
        check: check.to_string(),
        kind,
        outcome,
        subject: subject.to_string(),
        reason,
        remediation,
        ids: Vec::new(),
        severity: None,
        known_exploited: false,
        fix: None,
    }
}

fn release_label(facts: &Facts) -> String {
    if !facts.os.pretty_name.is_empty() {
        facts.os.pretty_name.clone()
    } else {
        format!("{} {}", facts.os.id, facts.os.version_id)
            .trim()
            .to_string()
    }
}

fn deb_cmp(a: &str, b: &str) -> Ordering {
    VersionScheme::Debian.compare(a, b)
}

/// True for apt suites that carry security updates (`bookworm-security`, old `*/updates`).
pub fn is_security_suite(suite: &str) -> bool {
    suite.ends_with("-security") || suite.ends_with("/updates") || suite.contains("security")
}

/// The source version of a binary version: a trailing binNMU suffix (`+b1`) removed.
pub fn strip_binnmu(version: &str) -> &str {
    match version.rsplit_once("+b") {
        Some((head, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => head,
        _ => version,
    }
}

/// Missing security updates: installed version lower than the newest version of that
/// package in any `*-security` suite. Each finding explains how apt's candidate
/// compares, so the point-release case (candidate from `bookworm` or `bookworm-updates`,
/// below the security version, or above it) is visible.
pub fn missing_security_updates(facts: &Facts) -> Vec<Finding> {
    let security: Vec<(&str, &BTreeMap<String, String>)> = facts
        .apt_suites
        .iter()
        .filter(|(s, _)| is_security_suite(s))
        .map(|(s, p)| (s.as_str(), p))
        .collect();
    if security.is_empty() {
        return vec![not_applicable(
            "missing-security-update",
            FindingKind::MissingUpdate,
            "all packages",
            "no apt index of a -security suite on this host (an image without apt lists, or the \
             security archive is not in sources.list)",
        )];
    }
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for p in &facts.packages {
        if !seen.insert((p.name.as_str(), p.version.as_str())) {
            continue;
        }
        let Some((sec_suite, sec_version)) = security
            .iter()
            .filter_map(|(s, pkgs)| pkgs.get(&p.name).map(|v| (*s, v.as_str())))
            .max_by(|a, b| deb_cmp(a.1, b.1))
        else {
            continue;
        };
        if deb_cmp(&p.version, sec_version) != Ordering::Less {
            continue;
        }
        let mut reason = format!(
            "installed {} {} is lower than {} in {}",
            p.name, p.version, sec_version, sec_suite
        );
        let mut target = sec_version.to_string();
        // The newest version outside the security suites: what a point-release-only
        // upgrade (or an origin filter) sees.
        let point = facts
            .apt_suites
            .iter()
            .filter(|(s, _)| !is_security_suite(s) && !s.ends_with("-backports"))
            .filter_map(|(s, pkgs)| pkgs.get(&p.name).map(|v| (s.as_str(), v.as_str())))
            .max_by(|a, b| deb_cmp(a.1, b.1));
        match point {
            Some((suite, v)) if deb_cmp(v, sec_version) == Ordering::Greater => {
                reason.push_str(&format!(
                    "; apt's candidate {v} comes from {suite} (a point release) and is newer \
                     than the security version, so it includes the fix, but `apt-get -s \
                     upgrade` names {suite} as its origin and a filter on -security misses it"
                ));
                target = v.to_string();
            }
            Some((suite, v)) if v == sec_version => reason.push_str(&format!(
                "; the same version is also in {suite} (a point release), so `apt-get -s \
                 upgrade` may name {suite} as the candidate's origin and a filter on \
                 -security misses it"
            )),
            Some((suite, v)) if deb_cmp(v, &p.version) == Ordering::Greater => {
                reason.push_str(&format!(
                    "; {suite} (a point release) has {v}, newer than installed but lower \
                     than the security version: upgrading from the point release alone \
                     would leave the security fix pending"
                ))
            }
            _ => reason.push_str("; apt's candidate is that security version"),
        }
        let mut f = finding(
            "missing-security-update",
            FindingKind::MissingUpdate,
            Outcome::Fail,
            &p.name,
            reason,
            format!(
                "apt-get install --only-upgrade {}",
                crate::command::deb_package_version(&p.name, &target)
            ),
        );
        f.fix = Some(Fix {
            source: p.source.clone(),
            version: strip_binnmu(&target).to_string(),
        });
        out.push(f);
    }
    if out.is_empty() {
        out.push(finding(
            "missing-security-update",
            FindingKind::MissingUpdate,
            Outcome::Pass,
            "all packages",
            format!(
                "every installed package is at least at its version in {}",
                security
                    .iter()
                    .map(|(s, _)| *s)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            String::new(),
        ));
    }
    out
}

/// Known vulnerabilities: each distinct (source package, source version) is matched
/// against the host's ecosystems (`Debian:12`), because Debian's advisories name
/// source packages and binary versions can differ from the source version.
pub fn known_vulnerabilities(facts: &Facts, db: &AdvisoryDb) -> Vec<Finding> {
    let ecosystems = host_ecosystems(&facts.os);
    let mut sources: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for p in &facts.packages {
        let bins = sources
            .entry((p.source.as_str(), p.source_version.as_str()))
            .or_default();
        if !bins.contains(&p.name.as_str()) {
            bins.push(p.name.as_str());
        }
    }
    let mut out = Vec::new();
    for ((source, version), binaries) in &sources {
        let mut seen = BTreeSet::new();
        for eco in &ecosystems {
            for m in db.matches(eco, source, version) {
                if !seen.insert(m.ids.clone()) {
                    continue;
                }
                let what = if m.summary.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", m.summary)
                };
                let reason = match &m.fixed {
                    Some(fixed) => format!(
                        "source {source} {version} (binaries: {}) is affected by {}{what}; fixed in {fixed}",
                        binaries.join(", "),
                        m.matched.join(", ")
                    ),
                    None => format!(
                        "source {source} {version} (binaries: {}) is affected by {}{what}; no fixed version in {eco} yet{}",
                        binaries.join(", "),
                        m.matched.join(", "),
                        m.informational.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()
                    ),
                };
                let remediation = match &m.fixed {
                    Some(fixed) => format!(
                        "Upgrade source package {source} to {fixed} or later (apt-get install --only-upgrade {})",
                        crate::command::deb_packages(binaries.iter().copied())
                    ),
                    None => "No fix yet: watch for an update, or mitigate (disable or restrict the service)".into(),
                };
                let mut f = finding(
                    "known-vulnerability",
                    FindingKind::Vulnerability,
                    Outcome::Fail,
                    source,
                    reason,
                    remediation,
                );
                f.ids = m.ids.clone();
                f.severity = m.severity.map(|s| s.as_str().to_string());
                f.known_exploited = m.known_exploited;
                f.fix = m.fixed.as_ref().map(|v| Fix {
                    source: source.to_string(),
                    version: v.clone(),
                });
                out.push(f);
            }
        }
    }
    if out.is_empty() {
        out.push(finding(
            "known-vulnerability",
            FindingKind::Vulnerability,
            Outcome::Pass,
            "all packages",
            format!(
                "no imported advisory ({} advisories) affects the {} installed source packages in {}",
                db.len(),
                sources.len(),
                ecosystems.join(", ")
            ),
            String::new(),
        ));
    }
    out
}

/// Adds to each missing-update finding the ids of the vulnerabilities of its source
/// that its target version fixes (and their highest severity and KEV flag).
fn link_fixed_ids(missing: &mut [Finding], vulns: &[Finding]) {
    for m in missing.iter_mut().filter(|f| f.outcome == Outcome::Fail) {
        let Some(fix) = &m.fix else { continue };
        let mut ids: BTreeSet<String> = BTreeSet::new();
        let mut severity: Option<Severity> = None;
        for v in vulns.iter().filter(|v| v.outcome == Outcome::Fail) {
            let Some(vfix) = &v.fix else { continue };
            if vfix.source == fix.source
                && deb_cmp(&vfix.version, &fix.version) != Ordering::Greater
            {
                ids.extend(v.ids.iter().cloned());
                severity = severity.max(v.severity.as_deref().and_then(Severity::parse));
                m.known_exploited |= v.known_exploited;
            }
        }
        if !ids.is_empty() {
            m.ids = ids.into_iter().collect();
            m.severity = severity.map(|s| s.as_str().to_string());
        }
    }
}

fn today(now: Timestamp) -> Date {
    now.to_zoned(TimeZone::UTC).date()
}

/// End of life of the release from distro-info-data: fail past regular support (with
/// LTS and ELTS dates in the reason), pass otherwise with the date it ends.
pub fn end_of_life(facts: &Facts, distro: &DistroInfo, now: Timestamp) -> Vec<Finding> {
    let check = "end-of-life.release";
    let label = release_label(facts);
    let Some(r) = distro.find(&facts.os) else {
        return vec![not_applicable(
            check,
            FindingKind::EndOfLife,
            &label,
            &format!(
                "release {:?} ({:?}) is not in the distro-info table",
                facts.os.version_id, facts.os.version_codename
            ),
        )];
    };
    let today = today(now);
    let name = format!("{} {}", r.version, r.codename).trim().to_string();
    let next = distro
        .releases
        .iter()
        .skip_while(|x| x.series != r.series)
        .nth(1)
        .filter(|x| x.release.is_some_and(|d| d <= today))
        .map(|x| format!("{} ({})", x.version, x.codename))
        .unwrap_or_else(|| "a supported release".into());
    let mut f = match (r.release, r.eol) {
        (None, _) => finding(
            check,
            FindingKind::EndOfLife,
            Outcome::Pass,
            &label,
            format!("{name} is a development release (not yet released)"),
            String::new(),
        ),
        (_, None) => finding(
            check,
            FindingKind::EndOfLife,
            Outcome::Pass,
            &label,
            format!("{name} has no announced end of life"),
            String::new(),
        ),
        (_, Some(eol)) if today < eol => finding(
            check,
            FindingKind::EndOfLife,
            Outcome::Pass,
            &label,
            format!(
                "{name} has regular security support until {eol} ({} days){}",
                (eol - today).get_days(),
                r.eol_lts
                    .map(|d| format!(", LTS until {d}"))
                    .unwrap_or_default()
            ),
            String::new(),
        ),
        (_, Some(eol)) => {
            let (severity, reason) = match (r.eol_lts, r.eol_elts) {
                (Some(lts), _) if today < lts => (
                    "medium",
                    format!(
                        "{name}'s regular security support ended on {eol}; Debian LTS covers a \
                         subset of packages until {lts}"
                    ),
                ),
                (_, Some(elts)) if today < elts => (
                    "critical",
                    format!(
                        "{name} reached end of life: regular support ended on {eol}{}; only \
                         paid ELTS continues until {elts}",
                        r.eol_lts
                            .map(|d| format!(", LTS on {d}"))
                            .unwrap_or_default()
                    ),
                ),
                _ => (
                    "critical",
                    format!(
                        "{name} reached end of life: security support ended on {}",
                        r.eol_elts.or(r.eol_lts).unwrap_or(eol)
                    ),
                ),
            };
            let mut f = finding(
                check,
                FindingKind::EndOfLife,
                Outcome::Fail,
                &label,
                reason,
                format!("Upgrade the release to {next}"),
            );
            f.severity = Some(severity.to_string());
            f
        }
    };
    f.subject = label;
    vec![f]
}

/// Per-package support from debian-security-support: ended (date passed) fails, an
/// announced early end and limited support are reported as failing but informational.
pub fn package_support(facts: &Facts, support: &SecuritySupport, now: Timestamp) -> Vec<Finding> {
    let today = today(now);
    let mut sources: BTreeMap<&str, (&str, Vec<&str>)> = BTreeMap::new();
    for p in &facts.packages {
        let e = sources
            .entry(p.source.as_str())
            .or_insert((p.source_version.as_str(), Vec::new()));
        if !e.1.contains(&p.name.as_str()) {
            e.1.push(p.name.as_str());
        }
    }
    let mut out = Vec::new();
    for (source, (version, bins)) in &sources {
        if let Some(e) = support.ended.iter().find(|e| e.matches(source)) {
            let last = e
                .last_version
                .as_deref()
                .map(|v| format!(" (last supported version {v})"))
                .unwrap_or_default();
            let details = if e.details.is_empty() {
                String::new()
            } else {
                format!(": {}", e.details)
            };
            let (check, reason, remediation, severity) = match e.date {
                Some(d) if d > today => (
                    "package-support.ending",
                    format!("security support for {source} {version} ends on {d}{last}{details}"),
                    format!("Plan to replace or remove {} before {d}", bins.join(" ")),
                    None,
                ),
                _ => (
                    "package-support.ended",
                    format!(
                        "security support for {source} {version} ended{}{last}{details}",
                        e.date.map(|d| format!(" on {d}")).unwrap_or_default()
                    ),
                    format!("Replace or remove {}", bins.join(" ")),
                    Some("high".to_string()),
                ),
            };
            let mut f = finding(
                check,
                FindingKind::PackageSupport,
                Outcome::Fail,
                source,
                reason,
                remediation,
            );
            f.severity = severity;
            out.push(f);
        }
        if let Some(e) = support.limited.iter().find(|e| e.matches(source)) {
            out.push(finding(
                "package-support.limited",
                FindingKind::PackageSupport,
                Outcome::Fail,
                source,
                format!("security support for {source} is limited: {}", e.details),
                format!(
                    "Use {} only with trusted content, or replace it",
                    bins.join(" ")
                ),
            ));
        }
    }
    if out.is_empty() {
        out.push(finding(
            "package-support",
            FindingKind::PackageSupport,
            Outcome::Pass,
            "all packages",
            "no installed source package has limited or ended security support".into(),
            String::new(),
        ));
    }
    out
}

/// The kernel release (`uname -r` form) of an installed-kernel entry such as
/// `linux-image-6.1.0-28-amd64`, `linux-image-6.1.0-28-amd64 6.1.119-1` or `6.1.0-28-amd64`.
/// Meta packages (`linux-image-amd64`) give None.
pub fn kernel_release_of(entry: &str) -> Option<&str> {
    let name = entry.split([' ', '=', '\t']).next().unwrap_or(entry);
    let name = name.split(':').next().unwrap_or(name);
    let rel = name
        .strip_prefix("linux-image-unsigned-")
        .or_else(|| name.strip_prefix("linux-image-"))
        .unwrap_or(name);
    rel.starts_with(|c: char| c.is_ascii_digit()).then_some(rel)
}

/// Reboot needed: a newer kernel is installed than the one running, or the system
/// asked for a reboot (`/run/reboot-required`).
pub fn reboot_needed(facts: &Facts) -> Vec<Finding> {
    let check = "reboot-needed";
    let host = if facts.hostname.is_empty() {
        "host"
    } else {
        facts.hostname.as_str()
    };
    let newest = facts
        .kernels_installed
        .iter()
        .filter_map(|k| kernel_release_of(k))
        .max_by(|a, b| deb_cmp(a, b));
    let mut reasons = Vec::new();
    if let Some(newest) = newest {
        if !facts.kernel_running.is_empty()
            && deb_cmp(&facts.kernel_running, newest) == Ordering::Less
        {
            reasons.push(format!(
                "running kernel {} is older than the newest installed kernel {newest}",
                facts.kernel_running
            ));
        }
    }
    if facts.reboot_required {
        reasons.push("/run/reboot-required is present".to_string());
    }
    if !reasons.is_empty() {
        let mut f = finding(
            check,
            FindingKind::RebootNeeded,
            Outcome::Fail,
            host,
            reasons.join("; "),
            "Reboot in the next maintenance window".into(),
        );
        f.severity = Some("medium".into());
        return vec![f];
    }
    if facts.kernel_running.is_empty() {
        return vec![not_applicable(
            check,
            FindingKind::RebootNeeded,
            host,
            "no running kernel (an image, not a booted host)",
        )];
    }
    vec![finding(
        check,
        FindingKind::RebootNeeded,
        Outcome::Pass,
        host,
        format!(
            "running kernel {} is the newest installed and no reboot was requested",
            facts.kernel_running
        ),
        String::new(),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchday_types::{InstalledPackage, OsRelease};

    fn pkg(name: &str, version: &str, source: &str, source_version: &str) -> InstalledPackage {
        InstalledPackage {
            name: name.into(),
            version: version.into(),
            architecture: "amd64".into(),
            source: source.into(),
            source_version: source_version.into(),
        }
    }

    fn bookworm() -> OsRelease {
        OsRelease {
            id: "debian".into(),
            version_id: "12".into(),
            version_codename: "bookworm".into(),
            pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
        }
    }

    fn suites(entries: &[(&str, &str, &str)]) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut m: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (s, p, v) in entries {
            m.entry(s.to_string())
                .or_default()
                .insert(p.to_string(), v.to_string());
        }
        m
    }

    /// The November 2026 case: openssh-client's candidate comes from a point release.
    fn point_release_facts() -> Facts {
        Facts {
            hostname: "web1".into(),
            os: bookworm(),
            packages: vec![
                pkg(
                    "openssh-client",
                    "1:9.2p1-2+deb12u3",
                    "openssh",
                    "1:9.2p1-2+deb12u3",
                ),
                pkg("libssl3", "3.0.14-1~deb12u2", "openssl", "3.0.14-1~deb12u2"),
                pkg("curl", "7.88.1-10+deb12u7", "curl", "7.88.1-10+deb12u7"),
                pkg("bash", "5.2.15-2+b7", "bash", "5.2.15-2"),
            ],
            apt_suites: suites(&[
                ("bookworm", "openssh-client", "1:9.2p1-2+deb12u3"),
                ("bookworm-updates", "openssh-client", "1:9.2p1-2+deb12u4"),
                ("bookworm-security", "openssh-client", "1:9.2p1-2+deb12u5"),
                // The opposite: the point release already carries a newer build.
                ("bookworm", "libssl3", "3.0.15-1~deb12u1"),
                ("bookworm-security", "libssl3", "3.0.14-1~deb12u3"),
                // Up to date with security.
                ("bookworm-security", "curl", "7.88.1-10+deb12u7"),
                ("bookworm", "bash", "5.2.15-2+b7"),
            ]),
            ..Facts::default()
        }
    }

    #[test]
    fn point_release_candidate_does_not_hide_security_fix() {
        let f = missing_security_updates(&point_release_facts());
        assert_eq!(f.len(), 2, "{f:#?}");
        let ssh = f.iter().find(|x| x.subject == "openssh-client").unwrap();
        assert_eq!(ssh.outcome, Outcome::Fail);
        assert!(ssh.reason.contains("bookworm-updates"), "{}", ssh.reason);
        assert!(ssh.reason.contains("leave the security fix pending"));
        assert!(ssh.reason.contains("1:9.2p1-2+deb12u4"));
        assert_eq!(
            ssh.fix,
            Some(Fix {
                source: "openssh".into(),
                version: "1:9.2p1-2+deb12u5".into()
            })
        );
        let ssl = f.iter().find(|x| x.subject == "libssl3").unwrap();
        assert!(ssl.reason.contains("includes the fix"), "{}", ssl.reason);
        assert!(ssl.reason.contains("names bookworm as its origin"));
        assert_eq!(ssl.fix.as_ref().unwrap().version, "3.0.15-1~deb12u1");
        assert!(ssl.remediation.contains("libssl3=3.0.15-1~deb12u1"));
    }

    #[test]
    fn security_version_also_in_point_release_is_explained() {
        let mut facts = point_release_facts();
        facts
            .apt_suites
            .get_mut("bookworm")
            .unwrap()
            .insert("openssh-client".into(), "1:9.2p1-2+deb12u5".into());
        let f = missing_security_updates(&facts);
        let ssh = f.iter().find(|x| x.subject == "openssh-client").unwrap();
        assert!(ssh.reason.contains("also in bookworm"), "{}", ssh.reason);
        assert_eq!(ssh.fix.as_ref().unwrap().version, "1:9.2p1-2+deb12u5");
        // binNMU suffixes are dropped from the source fix version.
        assert_eq!(strip_binnmu("5.2.15-2+b7"), "5.2.15-2");
        assert_eq!(strip_binnmu("1.0+bzr5"), "1.0+bzr5");
    }

    #[test]
    fn no_security_suite_is_not_applicable_and_all_current_passes() {
        let mut facts = point_release_facts();
        facts.apt_suites.retain(|s, _| s == "bookworm");
        let f = missing_security_updates(&facts);
        assert_eq!(f[0].outcome, Outcome::NotApplicable);
        facts.apt_suites = suites(&[("bookworm-security", "curl", "7.88.1-10+deb12u7")]);
        let f = missing_security_updates(&facts);
        assert_eq!(f[0].outcome, Outcome::Pass);
    }

    #[test]
    fn vulnerabilities_match_the_source_package_and_version() {
        let mut db = AdvisoryDb::new();
        db.import_debian_tracker_str(
            r#"{"bash": {"CVE-2099-0001": {"releases": {"bookworm":
                  {"status": "resolved", "fixed_version": "5.2.15-2+deb12u1", "urgency": "medium"}}}},
                "openssh": {"CVE-2099-0002": {"releases": {"bookworm":
                  {"status": "resolved", "fixed_version": "1:9.2p1-2+deb12u5", "urgency": "high"}}}},
                "libssl3": {"CVE-2099-0003": {"releases": {"bookworm":
                  {"status": "open", "urgency": "high"}}}}}"#,
            &crate::advisory::debian_releases(),
        )
        .unwrap();
        let facts = point_release_facts();
        let v = known_vulnerabilities(&facts, &db);
        // bash: binary 5.2.15-2+b7 would be "above" 5.2.15-2+deb12u1's prefix compare,
        // but the source version 5.2.15-2 is what the tracker's range is about.
        let bash = v.iter().find(|f| f.subject == "bash").unwrap();
        assert_eq!(bash.ids, vec!["CVE-2099-0001"]);
        assert_eq!(bash.severity.as_deref(), Some("medium"));
        assert!(v.iter().any(|f| f.subject == "openssh"));
        // The tracker names the source (openssl), not the binary libssl3.
        assert!(v.iter().all(|f| f.subject != "libssl3"));
        let mut missing = missing_security_updates(&facts);
        link_fixed_ids(&mut missing, &v);
        let ssh = missing
            .iter()
            .find(|x| x.subject == "openssh-client")
            .unwrap();
        assert_eq!(ssh.ids, vec!["CVE-2099-0002"]);
        assert_eq!(ssh.severity.as_deref(), Some("high"));
    }

    const CSV: &str = "version,codename,series,created,release,eol,eol-lts,eol-elts\n\
        10,Buster,buster,2017-06-17,2019-07-06,2022-09-10,2024-06-30,2029-06-30\n\
        11,Bullseye,bullseye,2019-07-06,2021-08-14,2024-08-14,2026-08-31,2031-06-30\n\
        12,Bookworm,bookworm,2021-08-14,2023-06-10,2026-07-11,2028-06-30,2033-06-30\n\
        13,Trixie,trixie,2023-06-10,2025-08-09,2028-08-09,2030-06-30,2035-06-30\n\
        14,Forky,forky,2025-08-09\n\
        ,Sid,sid,1993-08-16\n";

    fn at(date: &str) -> Timestamp {
        format!("{date}T12:00:00Z").parse().unwrap()
    }

    #[test]
    fn end_of_life_around_now() {
        let d = DistroInfo::parse(CSV).unwrap();
        let facts = Facts {
            os: bookworm(),
            ..Facts::default()
        };
        let f = &end_of_life(&facts, &d, at("2026-07-10"))[0];
        assert_eq!(f.outcome, Outcome::Pass, "{f:?}");
        assert!(f.reason.contains("1 days"));
        let f = &end_of_life(&facts, &d, at("2026-07-11"))[0];
        assert_eq!(f.outcome, Outcome::Fail);
        assert_eq!(f.severity.as_deref(), Some("medium"));
        assert!(f.reason.contains("LTS"));
        assert_eq!(f.remediation, "Upgrade the release to 13 (Trixie)");
        let f = &end_of_life(&facts, &d, at("2028-07-01"))[0];
        assert_eq!(f.severity.as_deref(), Some("critical"));
        assert!(f.reason.contains("ELTS"));
        let f = &end_of_life(&facts, &d, at("2034-01-01"))[0];
        assert!(f.reason.contains("ended on 2033-06-30"));
        let forky = Facts {
            os: OsRelease {
                id: "debian".into(),
                version_codename: "forky".into(),
                ..OsRelease::default()
            },
            ..Facts::default()
        };
        assert_eq!(
            end_of_life(&forky, &d, at("2026-01-01"))[0].outcome,
            Outcome::Pass
        );
        let unknown = Facts {
            os: OsRelease {
                id: "plan9".into(),
                version_id: "4".into(),
                ..OsRelease::default()
            },
            ..Facts::default()
        };
        assert_eq!(
            end_of_life(&unknown, &d, at("2026-01-01"))[0].outcome,
            Outcome::NotApplicable
        );
        assert_eq!(
            d.release_names().get("bookworm").map(String::as_str),
            Some("12")
        );
        assert_eq!(
            d.release_names().get("sid").map(String::as_str),
            Some("sid")
        );
    }

    #[test]
    fn package_support_lists() {
        let limited = "# comment\n\nbinutils        Only suitable for trusted content\ngolang.*        See release notes\n";
        let ended = "# List\nwolfssl\t5.5.4-2+deb12u2\t\t2026-06-12  crypto library\nsuricata 1:6.0.10-1 2026-12-31 upstream ended\n";
        let s = SecuritySupport {
            limited: SecuritySupport::parse_limited(limited),
            ended: SecuritySupport::parse_ended(ended).unwrap(),
        };
        let facts = Facts {
            os: bookworm(),
            packages: vec![
                pkg(
                    "libwolfssl35",
                    "5.5.4-2+deb12u1",
                    "wolfssl",
                    "5.5.4-2+deb12u1",
                ),
                pkg("suricata", "1:6.0.10-1", "suricata", "1:6.0.10-1"),
                pkg("golang-1.19-go", "1.19.8-2", "golang-1.19", "1.19.8-2"),
                pkg("bash", "5.2.15-2+b7", "bash", "5.2.15-2"),
            ],
            ..Facts::default()
        };
        let f = package_support(&facts, &s, at("2026-11-01"));
        let checks: Vec<(&str, &str)> = f
            .iter()
            .map(|x| (x.check.as_str(), x.subject.as_str()))
            .collect();
        assert_eq!(
            checks,
            vec![
                ("package-support.limited", "golang-1.19"),
                ("package-support.ending", "suricata"),
                ("package-support.ended", "wolfssl"),
            ]
        );
        assert!(f[2].reason.contains("2026-06-12"));
        assert!(f[2].reason.contains("crypto library"));
    }

    #[test]
    fn reboot_needed_from_kernels() {
        let mut facts = Facts {
            hostname: "h".into(),
            kernel_running: "6.1.0-26-amd64".into(),
            kernels_installed: vec![
                "linux-image-6.1.0-26-amd64".into(),
                "linux-image-6.1.0-28-amd64 6.1.119-1".into(),
                "linux-image-amd64".into(),
            ],
            ..Facts::default()
        };
        let f = &reboot_needed(&facts)[0];
        assert_eq!(f.outcome, Outcome::Fail);
        assert!(f.reason.contains("6.1.0-28-amd64"));
        facts.kernel_running = "6.1.0-28-amd64".into();
        assert_eq!(reboot_needed(&facts)[0].outcome, Outcome::Pass);
        facts.reboot_required = true;
        assert_eq!(reboot_needed(&facts)[0].outcome, Outcome::Fail);
        facts.reboot_required = false;
        facts.kernel_running.clear();
        assert_eq!(reboot_needed(&facts)[0].outcome, Outcome::NotApplicable);
    }
}
