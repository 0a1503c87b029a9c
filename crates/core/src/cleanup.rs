//! Issue 10, point 7 (second half): which payloads no host can need any more, so the
//! server's cleanup may evict them from the content store. Pure: the caller reads the
//! catalog, the decisions and the state read model, and hands over `now`.
//!
//! A payload may go when a newer version of its package is in the catalog, and every
//! update that lists it has been superseded for longer than the retention and, in every
//! tenant, is either declined by every group for longer than the retention (by
//! supersedence or an operator) or approved nowhere and needed by no host; and no host
//! has it pending (approved, downloading, installing, failed and to be retried).

use jiff::{SignedDuration, Timestamp};
use patchday_pkg::version::compare_deb;
use patchday_types::{PayloadRef, UpdateId, UpdateState};

/// One group's decision about an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupDecision {
    /// No decision.
    Undecided,
    /// Approved: a host of the group may be assigned it.
    Approved,
    /// Declined at this time.
    Declined(Timestamp),
}

/// How one tenant stands towards one update.
#[derive(Clone, Debug)]
pub struct TenantUse {
    /// The tenant, for the reason.
    pub tenant: String,
    /// Every group's decision about the update.
    pub groups: Vec<GroupDecision>,
    /// The current state of every host that has one for the update (the read model).
    pub states: Vec<UpdateState>,
    /// A host with a state for the update other than not-applicable has a pending repair.
    pub repair_pending: bool,
}

/// One update that lists the payload.
#[derive(Clone, Debug)]
pub struct UpdateUse {
    /// The update.
    pub update: UpdateId,
    /// Since when a successor is published (`None`: not superseded).
    pub superseded_since: Option<Timestamp>,
    /// Each tenant the update is published for.
    pub tenants: Vec<TenantUse>,
}

/// Whether a payload may leave the content store, and why (for the operator log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No host can need it any more.
    Evict(String),
    /// A host may still need it.
    Keep(String),
}

/// States in which a host may still download the update's payloads.
fn pending(s: UpdateState) -> bool {
    matches!(
        s,
        UpdateState::Approved
            | UpdateState::Downloading
            | UpdateState::Downloaded
            | UpdateState::Installing
            | UpdateState::Failed
    )
}

/// The newest version of `p`'s package (same kind and architecture) among `all` that is
/// newer than `p`'s, if any: without one, `p` is its package's newest and stays.
pub fn newer_version<'a>(
    p: &PayloadRef,
    all: impl IntoIterator<Item = &'a PayloadRef>,
) -> Option<&'a str> {
    all.into_iter()
        .filter(|o| o.kind == p.kind && o.package == p.package && o.architecture == p.architecture)
        .filter(|o| compare_deb(&o.version, &p.version).is_ok_and(|c| c.is_gt()))
        .map(|o| o.version.as_str())
        .max_by(|a, b| compare_deb(a, b).unwrap_or(std::cmp::Ordering::Equal))
}

/// Whether the payload that `listing` (every update naming it) carries may be evicted at
/// `now`, keeping everything for `retain` after it stopped being needed. `newer` is the
/// newer version of its package in the catalog ([`newer_version`]).
pub fn payload_verdict(
    listing: &[UpdateUse],
    newer: Option<&str>,
    now: Timestamp,
    retain: SignedDuration,
) -> Verdict {
    let Some(newer) = newer else {
        return Verdict::Keep("the newest version of its package in the catalog".into());
    };
    if listing.is_empty() {
        return Verdict::Keep("no update lists it".into());
    }
    let old_enough = |t: Timestamp| t.checked_add(retain).is_ok_and(|end| end <= now);
    for u in listing {
        let id = &u.update;
        let Some(since) = u.superseded_since else {
            return Verdict::Keep(format!("{id} is not superseded"));
        };
        if !old_enough(since) {
            return Verdict::Keep(format!(
                "{id} is superseded since {since}, within the retention"
            ));
        }
        for t in &u.tenants {
            let tenant = &t.tenant;
            if let Some(s) = t.states.iter().find(|s| pending(**s)) {
                return Verdict::Keep(format!("a host of tenant {tenant} has {id} {s}"));
            }
            if t.repair_pending {
                return Verdict::Keep(format!(
                    "a host of tenant {tenant} with {id} waits for a repair"
                ));
            }
            let declined_everywhere = t
                .groups
                .iter()
                .all(|g| matches!(g, GroupDecision::Declined(at) if old_enough(*at)));
            let wanted_nowhere = !t.groups.contains(&GroupDecision::Approved)
                && t.states.iter().all(|s| {
                    matches!(
                        s,
                        UpdateState::NotApplicable
                            | UpdateState::Superseded
                            | UpdateState::Declined
                    )
                });
            if !declined_everywhere && !wanted_nowhere {
                return Verdict::Keep(format!(
                    "tenant {tenant} has not declined {id} in every group for the retention"
                ));
            }
        }
    }
    let ids: Vec<&str> = listing.iter().map(|u| u.update.as_str()).collect();
    Verdict::Evict(format!(
        "{} superseded and declined or needed by no host in every tenant for longer than the retention; version {newer} of its package is in the catalog",
        ids.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchday_types::PayloadKind;
    use GroupDecision as G;
    use UpdateState as S;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn tenant(groups: Vec<GroupDecision>, states: Vec<UpdateState>) -> TenantUse {
        TenantUse {
            tenant: "acme".into(),
            groups,
            states,
            repair_pending: false,
        }
    }

    fn old(since: Option<&str>, tenants: Vec<TenantUse>) -> Vec<UpdateUse> {
        vec![UpdateUse {
            update: "PD-1".parse().unwrap(),
            superseded_since: since.map(ts),
            tenants,
        }]
    }

    const DAY: SignedDuration = SignedDuration::from_hours(24);

    fn verdict(listing: &[UpdateUse], now: &str) -> Verdict {
        payload_verdict(listing, Some("1.0-3"), ts(now), DAY)
    }

    fn evicted(v: &Verdict) -> bool {
        matches!(v, Verdict::Evict(_))
    }

    #[test]
    fn a_payload_declined_everywhere_goes_after_the_retention_only() {
        let declined = G::Declined(ts("2026-12-01T10:00:00Z"));
        let l = old(
            Some("2026-11-30T10:00:00Z"),
            vec![tenant(
                vec![declined, declined],
                vec![S::Declined, S::Installed],
            )],
        );
        assert!(
            !evicted(&verdict(&l, "2026-12-02T09:59:59Z")),
            "within the retention"
        );
        let v = verdict(&l, "2026-12-02T10:00:00Z");
        assert!(evicted(&v), "{v:?}");
        assert_eq!(
            payload_verdict(&l, None, ts("2026-12-09T00:00:00Z"), DAY),
            Verdict::Keep("the newest version of its package in the catalog".into())
        );
    }

    #[test]
    fn a_pending_host_a_repair_an_approval_or_a_missing_successor_keeps_it() {
        let d = G::Declined(ts("2026-11-01T00:00:00Z"));
        let now = "2026-12-09T00:00:00Z";
        for s in [
            S::Approved,
            S::Downloading,
            S::Downloaded,
            S::Installing,
            S::Failed,
        ] {
            let l = old(Some("2026-11-01T00:00:00Z"), vec![tenant(vec![d], vec![s])]);
            assert!(!evicted(&verdict(&l, now)), "{s}");
        }
        let mut t = tenant(vec![d], vec![S::Declined]);
        t.repair_pending = true;
        assert!(!evicted(&verdict(
            &old(Some("2026-11-01T00:00:00Z"), vec![t]),
            now
        )));
        // One group still approves it and a host needs it.
        let l = old(
            Some("2026-11-01T00:00:00Z"),
            vec![tenant(vec![d, G::Approved], vec![S::Superseded])],
        );
        assert!(!evicted(&verdict(&l, now)));
        let l = old(None, vec![tenant(vec![d], vec![])]);
        assert_eq!(
            verdict(&l, now),
            Verdict::Keep("PD-1 is not superseded".into())
        );
        // Undecided, and a host still needs it: an operator may approve it yet.
        let l = old(
            Some("2026-11-01T00:00:00Z"),
            vec![tenant(vec![G::Undecided], vec![S::Needed])],
        );
        assert!(!evicted(&verdict(&l, now)));
    }

    #[test]
    fn a_superseded_update_no_host_needs_goes_without_a_decline() {
        let l = old(
            Some("2026-11-01T00:00:00Z"),
            vec![tenant(vec![G::Undecided], vec![S::NotApplicable])],
        );
        assert!(evicted(&verdict(&l, "2026-12-09T00:00:00Z")));
        // No tenant at all (a mirror feeding a fresh server).
        let l = old(Some("2026-11-01T00:00:00Z"), vec![]);
        assert!(evicted(&verdict(&l, "2026-12-09T00:00:00Z")));
    }

    #[test]
    fn the_newest_version_of_a_package_is_found_per_kind_and_architecture() {
        let p = |pkg: &str, v: &str, arch: &str| PayloadRef {
            target: format!("payloads/{pkg}_{v}_{arch}.deb"),
            kind: PayloadKind::Deb,
            package: pkg.into(),
            version: v.into(),
            architecture: arch.into(),
            source: pkg.into(),
            source_version: v.into(),
        };
        let all = [
            p("a", "1.0-1", "amd64"),
            p("a", "1.0-10", "amd64"),
            p("a", "1.0-2", "amd64"),
            p("a", "2.0-1", "arm64"),
            p("b", "9", "amd64"),
        ];
        assert_eq!(newer_version(&all[0], &all), Some("1.0-10"));
        assert_eq!(newer_version(&all[1], &all), None);
        assert_eq!(newer_version(&all[3], &all), None);
    }
}
