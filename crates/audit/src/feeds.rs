//! Advisory data loaded once, and the one function that turns facts into findings.
//! `patchday audit` (one host) and the server (facts reported by agents) both use it,
//! so a host gets the same findings wherever it is assessed.

use crate::advisory::{debian_releases, AdvisoryDb};
use crate::checks::{CheckInputs, DistroInfo, SecuritySupport};
use crate::model::{Facts, Finding};
use anyhow::Context as _;
use std::path::PathBuf;

/// Where the feeds are.
#[derive(Clone, Debug, Default)]
pub struct FeedPaths {
    /// OSV files or directories.
    pub osv: Vec<PathBuf>,
    /// Debian security tracker JSON files.
    pub debian_tracker: Vec<PathBuf>,
    /// CISA KEV catalog.
    pub kev: Option<PathBuf>,
    /// distro-info-data CSV.
    pub distro_info: Option<PathBuf>,
}

/// Loaded advisory data.
#[derive(Debug, Default)]
pub struct Feeds {
    /// OSV, tracker and KEV data.
    pub advisories: AdvisoryDb,
    /// Release support dates.
    pub distro_info: Option<DistroInfo>,
}

impl Feeds {
    /// Loads every feed named; an unreadable feed is an error that names it.
    pub fn load(p: &FeedPaths) -> anyhow::Result<Feeds> {
        let distro_info = match &p.distro_info {
            Some(path) => Some(
                DistroInfo::load(path)
                    .with_context(|| format!("reading distro-info {}", path.display()))?,
            ),
            None => None,
        };
        let mut db = AdvisoryDb::new();
        for path in &p.osv {
            db.import_osv_path(path)
                .with_context(|| format!("importing OSV advisories from {}", path.display()))?;
        }
        if !p.debian_tracker.is_empty() {
            let mut releases = debian_releases();
            if let Some(d) = &distro_info {
                releases.extend(d.release_names());
            }
            for path in &p.debian_tracker {
                db.import_debian_tracker_path(path, &releases)
                    .with_context(|| format!("importing the Debian tracker {}", path.display()))?;
            }
        }
        if let Some(path) = &p.kev {
            db.import_kev_path(path)
                .with_context(|| format!("importing the KEV catalog {}", path.display()))?;
        }
        Ok(Feeds {
            advisories: db,
            distro_info,
        })
    }
}

/// Every host check over one host's facts: missing updates, vulnerabilities, end of
/// life, package support, reboots, hardening.
pub fn assess(
    facts: &Facts,
    feeds: &Feeds,
    security_support: Option<&SecuritySupport>,
    now: jiff::Timestamp,
) -> Vec<Finding> {
    let inputs = CheckInputs {
        advisories: (!feeds.advisories.is_empty()).then_some(&feeds.advisories),
        distro_info: feeds.distro_info.as_ref(),
        security_support,
    };
    let mut findings = crate::checks::run_all(facts, &inputs, now);
    findings.extend(crate::hardening::check(facts));
    findings.extend(crate::browser::check(facts));
    findings
}
