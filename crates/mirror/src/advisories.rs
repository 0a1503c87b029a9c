//! What an update fixes: CVE, DSA and DLA ids from its changelog, and, when the
//! operator gives them, severity from the Debian security tracker's urgency and the
//! known-exploited flag from CISA's KEV list (both read by `patchday-audit`'s importers).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

use patchday_audit::advisory::{debian_releases, AdvisoryDb, Severity as Urgency};
use patchday_types::Severity;
use regex::Regex;

use crate::MirrorError;

fn advisory_re() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(?i)\b(DSA|DLA)-(\d+)(-\d+)?\b").ok())
        .as_ref()
}

/// What the changelog entries newer than the installed version name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangelogFacts {
    /// CVE ids, sorted.
    pub cves: Vec<String>,
    /// DSA and DLA ids, sorted.
    pub advisories: Vec<String>,
    /// The entries' text (bounded), newest first.
    pub text: String,
}

/// Reads the changelog: entries newer than `since` (only the newest entry when `None`).
pub fn from_changelog(log: &str, since: Option<&str>) -> ChangelogFacts {
    let entries = patchday_pkg::changelog::parse(log);
    let floor = since
        .map(str::to_owned)
        .or_else(|| entries.get(1).map(|e| e.version.clone()));
    let cves = patchday_pkg::changelog::cves_since(log, floor.as_deref());
    let newer: Vec<_> = entries
        .iter()
        .filter(|e| match &floor {
            None => true,
            Some(f) => patchday_pkg::version::compare_deb(&e.version, f).is_ok_and(|o| o.is_gt()),
        })
        .collect();
    let mut advisories = BTreeSet::new();
    let mut text = String::new();
    for e in &newer {
        if let Some(re) = advisory_re() {
            for m in re.find_iter(&e.text) {
                advisories.insert(m.as_str().to_ascii_uppercase());
            }
        }
        if text.len() < 8192 {
            text.push_str(&format!(
                "{} ({})\n{}\n",
                e.package,
                e.version,
                e.text.trim_end()
            ));
        }
    }
    ChangelogFacts {
        cves,
        advisories: advisories.into_iter().collect(),
        text,
    }
}

/// The tracker and KEV data a run was given (either may be absent).
#[derive(Debug, Default)]
pub struct Feeds {
    db: Option<AdvisoryDb>,
    /// `Debian:<n>` ecosystem of the release the sources follow.
    ecosystem: String,
}

/// Severity and exploitation of one update, from the feeds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rating {
    /// Highest tracker urgency among its CVEs, mapped onto Patchday's scale.
    pub severity: Option<Severity>,
    /// CVE ids of it in CISA's KEV list.
    pub known_exploited: Vec<String>,
    /// CVE ids the tracker says this source version fixes (beyond the changelog's).
    pub tracker_cves: Vec<String>,
}

impl Feeds {
    /// Loads a Debian security tracker JSON and/or a KEV JSON for `codename` (`bookworm`).
    pub fn load(
        tracker: Option<&Path>,
        kev: Option<&Path>,
        codename: &str,
    ) -> Result<Self, MirrorError> {
        let releases = debian_releases();
        let number = releases
            .get(codename)
            .cloned()
            .unwrap_or_else(|| codename.to_owned());
        if tracker.is_none() && kev.is_none() {
            return Ok(Feeds::default());
        }
        let mut db = AdvisoryDb::new();
        if let Some(t) = tracker {
            db.import_debian_tracker_path(t, &releases)
                .map_err(|e| MirrorError::Advisories(e.to_string()))?;
        }
        if let Some(k) = kev {
            db.import_kev_path(k)
                .map_err(|e| MirrorError::Advisories(e.to_string()))?;
        }
        Ok(Feeds {
            db: Some(db),
            ecosystem: format!("Debian:{number}"),
        })
    }

    /// Rates `source` at `version`, which fixes `cves` (from its changelog), coming from
    /// `previous` (the oldest installed version, when known).
    pub fn rate(
        &self,
        source: &str,
        version: &str,
        previous: Option<&str>,
        cves: &[String],
    ) -> Rating {
        let Some(db) = &self.db else {
            return Rating::default();
        };
        // What was open in the previous version (or any version) and is fixed by this one.
        let before = previous.unwrap_or("0~");
        let mut worst: Option<Urgency> = None;
        let mut kev = BTreeSet::new();
        let mut tracker_cves = BTreeSet::new();
        for m in db.matches(&self.ecosystem, source, before) {
            let fixed_here = m.fixed.as_deref().is_some_and(|f| {
                patchday_pkg::version::compare_deb(f, version).is_ok_and(|o| o.is_le())
            });
            let named = m.ids.iter().any(|i| cves.contains(i));
            if !(fixed_here || named) {
                continue;
            }
            if let Some(cve) = m.ids.iter().find(|i| i.starts_with("CVE-")) {
                tracker_cves.insert(cve.clone());
            }
            if m.severity > worst {
                worst = m.severity;
            }
            if m.known_exploited {
                kev.extend(m.ids.iter().filter(|i| i.starts_with("CVE-")).cloned());
            }
        }
        // CVEs named only by the changelog can still be in KEV.
        for c in cves {
            if db.known_exploited(c).is_some() {
                kev.insert(c.clone());
            }
        }
        Rating {
            severity: worst.map(|u| match u {
                Urgency::Critical => Severity::Critical,
                Urgency::High => Severity::Important,
                Urgency::Medium => Severity::Moderate,
                Urgency::Low | Urgency::Unimportant => Severity::Low,
            }),
            known_exploited: kev.into_iter().collect(),
            tracker_cves: tracker_cves.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
openssl (3.0.15-1~deb12u1) bookworm-security; urgency=medium

  * Non-maintainer upload by the Security Team (DSA-5800-1).
  * Fixes CVE-2024-5535 and CVE-2024-9143.

 -- A <a@b.c>  Sun, 27 Oct 2024 12:38:27 +0100

openssl (3.0.14-1~deb12u2) bookworm; urgency=medium

  * Fixes CVE-2024-0001, see dla-3942-1.

 -- A <a@b.c>  Sun, 27 Oct 2024 12:38:27 +0100

openssl (3.0.14-1~deb12u1) bookworm; urgency=medium

  * Old.

 -- A <a@b.c>  Sun, 27 Oct 2024 12:38:27 +0100
";

    #[test]
    fn changelog_ids_since_installed() {
        let f = from_changelog(LOG, None);
        assert_eq!(f.cves, vec!["CVE-2024-5535", "CVE-2024-9143"]);
        assert_eq!(f.advisories, vec!["DSA-5800-1"]);
        let f = from_changelog(LOG, Some("3.0.14-1~deb12u1"));
        assert_eq!(f.cves.len(), 3);
        assert_eq!(f.advisories, vec!["DLA-3942-1", "DSA-5800-1"]);
    }
}
