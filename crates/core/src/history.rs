//! What the state history says about how fast updates reached hosts (issue 10, point 1):
//! the figure a provider's service level is about, time from publication to installed.

use patchday_types::api::{HistoryEntry, TimeToInstall};
use patchday_types::{HostId, UpdateId, UpdateState};
use std::collections::{BTreeMap, BTreeSet};

/// Per update among `entries` (oldest first): how many hosts needed it, on how many it
/// was installed, and the median, 90th percentile and maximum time from its publication
/// (`published`) to the first time each host reported it installed. A host counts as
/// installed from its first `installed` or `installed-pending-reboot` entry.
pub fn time_to_install(
    entries: &[HistoryEntry],
    published: &BTreeMap<UpdateId, jiff::Timestamp>,
) -> Vec<TimeToInstall> {
    let mut hosts: BTreeMap<&UpdateId, BTreeSet<&HostId>> = BTreeMap::new();
    let mut installed: BTreeMap<&UpdateId, BTreeMap<&HostId, jiff::Timestamp>> = BTreeMap::new();
    for e in entries {
        if e.state == UpdateState::NotApplicable {
            continue;
        }
        hosts.entry(&e.update).or_default().insert(&e.host);
        if matches!(
            e.state,
            UpdateState::Installed | UpdateState::InstalledPendingReboot
        ) {
            installed
                .entry(&e.update)
                .or_default()
                .entry(&e.host)
                .or_insert(e.at);
        }
    }
    hosts
        .into_iter()
        .map(|(update, hs)| {
            let at = published.get(update).copied();
            let mut secs: Vec<i64> = match at {
                Some(p) => installed
                    .get(update)
                    .map(|m| m.values().map(|t| t.as_second() - p.as_second()).collect())
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            secs.sort_unstable();
            let pick = |q: f64| -> Option<i64> {
                if secs.is_empty() {
                    return None;
                }
                // Nearest rank: the smallest value with at least q of the hosts at or below.
                let rank = ((q * secs.len() as f64).ceil() as usize).clamp(1, secs.len());
                secs.get(rank - 1).copied()
            };
            TimeToInstall {
                update: update.clone(),
                published_at: at,
                hosts: hs.len() as u64,
                installed: installed.get(update).map_or(0, |m| m.len() as u64),
                median_seconds: pick(0.5),
                p90_seconds: pick(0.9),
                max_seconds: secs.last().copied(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(host: &str, update: &str, state: UpdateState, at: &str) -> HistoryEntry {
        HistoryEntry {
            host: host.parse().unwrap(),
            update: update.parse().unwrap(),
            state,
            previous: None,
            message: None,
            at: at.parse().unwrap(),
        }
    }

    #[test]
    fn time_from_publication_to_first_installed_per_host() {
        use UpdateState::*;
        let entries = [
            e("a", "U1", Needed, "2026-12-01T10:00:00Z"),
            e("a", "U1", Approved, "2026-12-01T10:05:00Z"),
            e("a", "U1", InstalledPendingReboot, "2026-12-01T10:10:00Z"),
            e("a", "U1", Installed, "2026-12-01T11:00:00Z"),
            e("b", "U1", Approved, "2026-12-01T10:05:00Z"),
            e("b", "U1", Installed, "2026-12-01T10:30:00Z"),
            e("c", "U1", Failed, "2026-12-01T10:30:00Z"),
            e("c", "U2", Needed, "2026-12-01T10:30:00Z"),
        ];
        let published: BTreeMap<UpdateId, jiff::Timestamp> = [(
            "U1".parse().unwrap(),
            "2026-12-01T10:00:00Z".parse().unwrap(),
        )]
        .into();
        let t = time_to_install(&entries, &published);
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].hosts, t[0].installed), (3, 2));
        // a: 10 minutes (pending reboot counts as installed), b: 30 minutes.
        assert_eq!(t[0].median_seconds, Some(600));
        assert_eq!(t[0].p90_seconds, Some(1800));
        assert_eq!(t[0].max_seconds, Some(1800));
        // No publication time known: counts, no durations.
        assert_eq!(
            (t[1].hosts, t[1].installed, t[1].median_seconds),
            (1, 0, None)
        );
    }
}
