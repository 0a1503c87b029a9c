//! Groups joined by rules on host facts (issue 10, point 2).
//!
//! A group rule names an OS release, a hostname pattern and labels; a host matches when
//! every condition it gives holds, and a group takes the hosts matching any of its rules.
//! Rule-made memberships follow the rules (a host joins and leaves as its facts or the
//! rules change); manual memberships (`host set-groups`, an enrolment token's group) are
//! never removed by a rule. Labels are `key=value` pairs an agent reports.
//!
//! Pure: no clock, no storage.

use patchday_types::api::{GroupRule, GroupRuleInfo, MembershipChange, MembershipFacts};
use patchday_types::{GroupId, HostId, OsRelease};
use std::collections::{BTreeMap, BTreeSet};

/// Longest label key.
pub const MAX_LABEL_KEY: usize = 63;
/// Longest label value.
pub const MAX_LABEL_VALUE: usize = 255;
/// Most labels one host may report.
pub const MAX_LABELS: usize = 64;
/// Longest release or hostname pattern.
pub const MAX_PATTERN: usize = 255;

/// Why a label or a rule is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// Not `key=value`.
    #[error("label {given:?} is not key=value (e.g. env=prod)")]
    NotKeyValue {
        /// What was given.
        given: String,
    },
    /// A key with other characters than letters, digits, `.`, `_`, `-`, `/`, or too long.
    #[error("label key {key:?} is invalid: 1 to {MAX_LABEL_KEY} letters, digits, '.', '_', '-' or '/', starting with a letter or digit")]
    BadKey {
        /// The key.
        key: String,
    },
    /// A value with control characters or too long.
    #[error(
        "label {key}: its value is longer than {MAX_LABEL_VALUE} bytes or has control characters"
    )]
    BadValue {
        /// The key.
        key: String,
    },
    /// More labels than [`MAX_LABELS`].
    #[error("{count} labels; the limit is {MAX_LABELS}")]
    TooMany {
        /// How many were given.
        count: usize,
    },
    /// A rule with no condition would take every host.
    #[error("a group rule needs at least one condition: --release, --hostname or --label")]
    Empty,
    /// An empty, too long or control-character pattern.
    #[error(
        "{what} pattern {given:?} is invalid: 1 to {MAX_PATTERN} bytes without control characters"
    )]
    BadPattern {
        /// `release` or `hostname`.
        what: &'static str,
        /// What was given.
        given: String,
    },
}

/// Parses `key=value` (spaces around either side are trimmed).
pub fn parse_label(s: &str) -> Result<(String, String), RuleError> {
    let (k, v) = s.split_once('=').ok_or_else(|| RuleError::NotKeyValue {
        given: s.to_string(),
    })?;
    let (k, v) = (k.trim(), v.trim());
    check_label(k, v)?;
    Ok((k.to_string(), v.to_string()))
}

/// Checks one label's key and value.
pub fn check_label(key: &str, value: &str) -> Result<(), RuleError> {
    let key_ok = !key.is_empty()
        && key.len() <= MAX_LABEL_KEY
        && key.starts_with(|c: char| c.is_ascii_alphanumeric())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if !key_ok {
        return Err(RuleError::BadKey {
            key: key.chars().filter(|c| !c.is_control()).take(80).collect(),
        });
    }
    if value.len() > MAX_LABEL_VALUE || value.chars().any(char::is_control) {
        return Err(RuleError::BadValue {
            key: key.to_string(),
        });
    }
    Ok(())
}

/// Checks a whole label set (each label and the count).
pub fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), RuleError> {
    if labels.len() > MAX_LABELS {
        return Err(RuleError::TooMany {
            count: labels.len(),
        });
    }
    labels.iter().try_for_each(|(k, v)| check_label(k, v))
}

/// Parses a labels file (`/etc/patchday/labels`): one `key=value` per line; blank lines
/// and lines starting with `#` are skipped. A later line wins over an earlier one.
pub fn parse_labels_file(text: &str) -> Result<BTreeMap<String, String>, RuleError> {
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = parse_label(line)?;
        out.insert(k, v);
    }
    check_labels(&out)?;
    Ok(out)
}

/// Checks a rule before it is stored: at least one condition, sane patterns and labels.
pub fn check_rule(rule: &GroupRule) -> Result<(), RuleError> {
    if rule.release.is_none() && rule.hostname.is_none() && rule.labels.is_empty() {
        return Err(RuleError::Empty);
    }
    for (what, p) in [("release", &rule.release), ("hostname", &rule.hostname)] {
        if let Some(p) = p {
            if p.is_empty() || p.len() > MAX_PATTERN || p.chars().any(char::is_control) {
                return Err(RuleError::BadPattern {
                    what,
                    given: p.chars().filter(|c| !c.is_control()).take(80).collect(),
                });
            }
        }
    }
    check_labels(&rule.labels)
}

/// Case-insensitive wildcard match (`*`, `?`, `[a-z]`; see [`patchday_types::glob`]).
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    patchday_types::glob::matches(pattern, text, patchday_types::glob::Case::Insensitive)
}

/// The names a release rule is matched against: `debian-12`, `debian-bookworm`,
/// `bookworm` (those the os-release has parts for).
pub fn release_names(os: &OsRelease) -> Vec<String> {
    let mut names = Vec::new();
    if !os.id.is_empty() && !os.version_id.is_empty() {
        names.push(format!("{}-{}", os.id, os.version_id));
    }
    if !os.id.is_empty() && !os.version_codename.is_empty() {
        names.push(format!("{}-{}", os.id, os.version_codename));
    }
    if !os.version_codename.is_empty() {
        names.push(os.version_codename.clone());
    }
    names
}

/// Whether a host with these facts matches the rule (every condition it gives).
pub fn rule_matches(rule: &GroupRule, facts: &MembershipFacts) -> bool {
    let release = rule.release.as_deref().is_none_or(|p| {
        release_names(&facts.os)
            .iter()
            .any(|n| wildcard_match(p, n))
    });
    let hostname = rule
        .hostname
        .as_deref()
        .is_none_or(|p| wildcard_match(p, &facts.hostname));
    let labels = rule
        .labels
        .iter()
        .all(|(k, v)| facts.labels.get(k) == Some(v));
    release && hostname && labels
}

/// The groups the rules put a host with these facts in.
pub fn rule_groups(rules: &[GroupRuleInfo], facts: &MembershipFacts) -> BTreeSet<GroupId> {
    rules
        .iter()
        .filter(|r| rule_matches(&r.rule, facts))
        .map(|r| r.group.clone())
        .collect()
}

/// A host's memberships as stored: every group, and which of them a rule made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Memberships {
    /// All its groups.
    pub groups: BTreeSet<GroupId>,
    /// Those a rule made (the rest are manual).
    pub by_rule: BTreeSet<GroupId>,
}

/// The changes that bring a host's rule-made memberships to `wanted`: it joins the
/// wanted groups it is not in (a manual membership already counts), and leaves the
/// rule-made ones no rule wants. Manual memberships never change.
pub fn membership_changes(
    host: &HostId,
    current: &Memberships,
    wanted: &BTreeSet<GroupId>,
) -> Vec<MembershipChange> {
    let joins = wanted
        .iter()
        .filter(|g| !current.groups.contains(*g))
        .map(|g| (g, true));
    let leaves = current
        .by_rule
        .iter()
        .filter(|g| !wanted.contains(*g))
        .map(|g| (g, false));
    joins
        .chain(leaves)
        .map(|(g, join)| MembershipChange {
            host: host.clone(),
            group: g.clone(),
            join,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> GroupId {
        GroupId::new(s).unwrap()
    }

    fn bookworm(hostname: &str, labels: &[(&str, &str)]) -> MembershipFacts {
        MembershipFacts {
            hostname: hostname.into(),
            os: OsRelease {
                id: "debian".into(),
                version_id: "12".into(),
                version_codename: "bookworm".into(),
                pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
            },
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn rule(release: Option<&str>, hostname: Option<&str>, labels: &[(&str, &str)]) -> GroupRule {
        GroupRule {
            release: release.map(Into::into),
            hostname: hostname.map(Into::into),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn wildcards_match_like_a_shell_without_blowing_up() {
        assert!(wildcard_match("web-*", "web-1"));
        assert!(wildcard_match("WEB-*", "web-1"));
        assert!(wildcard_match("web-?", "web-1"));
        assert!(!wildcard_match("web-?", "web-12"));
        assert!(wildcard_match("*-db-*", "eu-db-3"));
        assert!(!wildcard_match("web-*", "db-1"));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("a", ""));
        assert!(wildcard_match("a*b*c", "aXbYbZc"));
        // A pattern that is exponential for naive recursion answers at once.
        let text = "a".repeat(200);
        assert!(!wildcard_match(&format!("{}b", "*a".repeat(30)), &text));
    }

    #[test]
    fn a_rule_needs_every_condition_it_gives() {
        let h = bookworm("web-1", &[("env", "prod"), ("site", "fra")]);
        assert!(rule_matches(&rule(Some("debian-12"), None, &[]), &h));
        assert!(rule_matches(&rule(Some("bookworm"), None, &[]), &h));
        assert!(rule_matches(&rule(Some("debian-bookworm"), None, &[]), &h));
        assert!(rule_matches(&rule(Some("debian-*"), None, &[]), &h));
        assert!(!rule_matches(&rule(Some("debian-11"), None, &[]), &h));
        assert!(rule_matches(
            &rule(Some("debian-12"), Some("web-*"), &[("env", "prod")]),
            &h
        ));
        assert!(!rule_matches(
            &rule(Some("debian-12"), Some("web-*"), &[("env", "test")]),
            &h
        ));
        assert!(!rule_matches(
            &rule(None, Some("db-*"), &[("env", "prod")]),
            &h
        ));
        assert!(!rule_matches(&rule(None, None, &[("role", "db")]), &h));
        // A host that never checked in has no release and no labels.
        let bare = MembershipFacts {
            hostname: "web-2".into(),
            ..Default::default()
        };
        assert!(rule_matches(&rule(None, Some("web-*"), &[]), &bare));
        assert!(!rule_matches(&rule(Some("*"), None, &[]), &bare));
    }

    #[test]
    fn several_rules_of_a_group_take_any_match() {
        let rules = vec![
            GroupRuleInfo {
                id: 1,
                group: g("web"),
                rule: rule(None, Some("web-*"), &[]),
            },
            GroupRuleInfo {
                id: 2,
                group: g("web"),
                rule: rule(None, None, &[("role", "web")]),
            },
            GroupRuleInfo {
                id: 3,
                group: g("prod"),
                rule: rule(None, None, &[("env", "prod")]),
            },
        ];
        let a = rule_groups(&rules, &bookworm("app-1", &[("role", "web")]));
        assert_eq!(a, [g("web")].into_iter().collect());
        let b = rule_groups(&rules, &bookworm("web-1", &[("env", "prod")]));
        assert_eq!(b, [g("prod"), g("web")].into_iter().collect());
    }

    #[test]
    fn rules_never_remove_manual_memberships_and_do_not_join_twice() {
        let h = HostId::new("h-1").unwrap();
        let current = Memberships {
            groups: [g("manual"), g("old-rule"), g("both")]
                .into_iter()
                .collect(),
            by_rule: [g("old-rule")].into_iter().collect(),
        };
        let wanted: BTreeSet<GroupId> = [g("both"), g("new")].into_iter().collect();
        let changes = membership_changes(&h, &current, &wanted);
        let text: Vec<String> = changes
            .iter()
            .map(|c| format!("{}{}", if c.join { "+" } else { "-" }, c.group))
            .collect();
        assert_eq!(text, ["+new", "-old-rule"]);
        // Nothing wanted: only rule-made memberships go.
        let gone = membership_changes(&h, &current, &BTreeSet::new());
        assert_eq!(gone.len(), 1);
        assert!(!gone[0].join && gone[0].group == g("old-rule"));
    }

    #[test]
    fn labels_and_rules_are_checked_with_what_to_write() {
        assert_eq!(
            parse_label(" env = prod ").unwrap(),
            ("env".into(), "prod".into())
        );
        assert!(matches!(
            parse_label("envprod"),
            Err(RuleError::NotKeyValue { .. })
        ));
        assert!(matches!(parse_label("-x=1"), Err(RuleError::BadKey { .. })));
        assert!(matches!(
            parse_label("x=a\u{1b}[2J"),
            Err(RuleError::BadValue { .. })
        ));
        let file = "# comment\n\nenv=prod\nsite=fra\nenv=test\n";
        let l = parse_labels_file(file).unwrap();
        assert_eq!(l.get("env").map(String::as_str), Some("test"));
        assert_eq!(l.len(), 2);
        assert_eq!(check_rule(&GroupRule::default()), Err(RuleError::Empty));
        assert!(matches!(
            check_rule(&rule(Some(""), None, &[])),
            Err(RuleError::BadPattern { .. })
        ));
        assert!(check_rule(&rule(None, Some("web-*"), &[])).is_ok());
        let e = RuleError::Empty.to_string();
        assert!(e.contains("--release, --hostname or --label"), "{e}");
    }
}
