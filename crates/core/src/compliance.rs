//! Where a host stands as a whole (issue 9, point 7): one pure decision from its
//! per-update statuses, its agent's last run error and when it was last seen.
//!
//! A host is compliant only when nothing it needs is missing, approved or not, unless
//! an operator declined it with a reason. Precedence, worst first: broken, stale,
//! catalog expired, failed, overdue, exposed, approved and pending, pending reboot, up
//! to date.

use crate::applicability::UpdateStatus;
use jiff::{SignedDuration, Timestamp};
use patchday_types::api::{HostCompliance, AGENT_ERROR_BROKEN_PREFIX};
use patchday_types::{UpdateId, UpdateState};

/// What an agent's last run error means for the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentSignal {
    /// The host's dpkg database is not clean.
    Broken,
    /// The agent refused the catalog because a role's metadata expired.
    CatalogExpired,
    /// Any other run error (shown, but the per-update states decide).
    Other,
}

/// Maps an agent's run error (`agent-error: ...` in the report) to its meaning. The
/// one place that reads the agent's words: `broken: ...` from the agent's dpkg audit,
/// and the trust library's `catalog rejected: ROLE expired ...`.
pub fn agent_signal(error: &str) -> AgentSignal {
    let e = error.trim_start();
    if e.starts_with(AGENT_ERROR_BROKEN_PREFIX) {
        return AgentSignal::Broken;
    }
    // The agent sends its error chain (`context: cause`); the trust error is a link.
    let expired = e.split(": ").collect::<Vec<_>>().windows(2).any(|w| {
        matches!(w, [a, b] if a.ends_with("catalog rejected")
            && b.split_once(' ').is_some_and(|(_role, rest)| rest.starts_with("expired")))
    });
    if expired {
        AgentSignal::CatalogExpired
    } else {
        AgentSignal::Other
    }
}

/// What is known about a host besides its per-update statuses.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostFacts<'a> {
    /// Its last check-in; `None` if it never checked in.
    pub last_seen: Option<Timestamp>,
    /// Its agent's last run error, cleared by a successful run.
    pub agent_error: Option<&'a str>,
    /// dpkg's own words when the host's dpkg database is not clean (`dpkg --audit`, sent
    /// with every check-in): the host is broken whatever is declined.
    pub dpkg_broken: Option<&'a str>,
}

/// The decision for one host, with the reason people read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The state.
    pub state: HostCompliance,
    /// Why: the updates, deadline, error or last check-in behind it.
    pub reason: Option<String>,
}

/// Where a host stands at `now`. A host not seen for longer than `stale_after` is
/// stale whatever it said before (its statuses are old news).
pub fn host_compliance(
    statuses: &[UpdateStatus],
    host: &HostFacts<'_>,
    stale_after: SignedDuration,
    now: Timestamp,
) -> Verdict {
    let verdict = |state, reason: String| Verdict {
        state,
        reason: Some(reason),
    };
    if let Some(words) = host.dpkg_broken {
        return verdict(HostCompliance::Broken, format!("dpkg: {words}"));
    }
    let signal = host.agent_error.map(agent_signal);
    if let (Some(AgentSignal::Broken), Some(e)) = (signal, host.agent_error) {
        return verdict(HostCompliance::Broken, e.to_string());
    }
    match host.last_seen {
        None => return verdict(HostCompliance::Stale, "never checked in".into()),
        Some(seen) => {
            let age = now.duration_since(seen);
            if age > stale_after {
                return verdict(
                    HostCompliance::Stale,
                    format!(
                        "last seen {} ago at {} (expected at least every {})",
                        human(age),
                        seen.round(jiff::Unit::Second).unwrap_or(seen),
                        human(stale_after)
                    ),
                );
            }
        }
    }
    if let (Some(AgentSignal::CatalogExpired), Some(e)) = (signal, host.agent_error) {
        return verdict(HostCompliance::CatalogExpired, e.to_string());
    }
    let ids = |pred: &dyn Fn(&UpdateStatus) -> bool| -> Vec<String> {
        statuses
            .iter()
            .filter(|s| pred(s))
            .map(|s| s.update.to_string())
            .collect()
    };
    let failed = ids(&|s| s.state == UpdateState::Failed);
    if !failed.is_empty() {
        return verdict(HostCompliance::Failed, list("failed", &failed));
    }
    let outstanding = |s: &UpdateStatus| {
        matches!(
            s.state,
            UpdateState::Approved
                | UpdateState::Downloading
                | UpdateState::Downloaded
                | UpdateState::Installing
        )
    };
    // Issue 10, point 2: not installed (a pending reboot included) by the deadline plus
    // the ring's grace period (the deadline alone outside rings).
    let is_overdue = |s: &UpdateStatus| {
        (outstanding(s) || s.state == UpdateState::InstalledPendingReboot)
            && s.overdue_at.or(s.deadline).is_some_and(|d| d <= now)
    };
    let overdue = ids(&is_overdue);
    if !overdue.is_empty() {
        let graced = statuses
            .iter()
            .any(|s| is_overdue(s) && s.overdue_at.is_some_and(|o| Some(o) != s.deadline));
        let what = if graced {
            "past its deadline and grace period"
        } else {
            "past its deadline"
        };
        return verdict(HostCompliance::Overdue, list(what, &overdue));
    }
    let exposed = ids(&|s| {
        s.state == UpdateState::Needed
            || (s.state == UpdateState::Declined
                && s.message.as_deref().is_none_or(|r| r.trim().is_empty()))
    });
    if !exposed.is_empty() {
        return verdict(
            HostCompliance::Exposed,
            list("needed, not approved", &exposed),
        );
    }
    let pending = ids(&outstanding);
    if !pending.is_empty() {
        return verdict(
            HostCompliance::ApprovedPending,
            list("approved, not installed yet", &pending),
        );
    }
    let reboot = ids(&|s| s.state == UpdateState::InstalledPendingReboot);
    if !reboot.is_empty() {
        return verdict(
            HostCompliance::PendingReboot,
            list("installed, reboot needed", &reboot),
        );
    }
    Verdict {
        state: HostCompliance::UpToDate,
        reason: None,
    }
}

/// Issue 14, point 1: whether a host may hold a compliance access token, from its
/// [`Verdict`] (the report's decision, not a second one) and its statuses. Refused:
/// a broken or stale host, an expired catalog, a failed install, anything overdue (a
/// baseline is an update, so an assigned baseline not applied by its deadline too), and
/// any update still missing that fixes a known-exploited vulnerability (`exploited`),
/// approved or not. An update inside its deadline, or needed but not yet approved, does
/// not lock a host out unless it is known-exploited. `Err` says why, for the host and the
/// operator.
pub fn access(
    verdict: &Verdict,
    statuses: &[UpdateStatus],
    exploited: &dyn Fn(&UpdateId) -> bool,
) -> Result<(), String> {
    let why = || verdict.reason.clone().unwrap_or_default();
    match verdict.state {
        HostCompliance::Broken
        | HostCompliance::Stale
        | HostCompliance::CatalogExpired
        | HostCompliance::Failed
        | HostCompliance::Overdue => return Err(format!("{}: {}", verdict.state, why())),
        _ => {}
    }
    let missing: Vec<String> = statuses
        .iter()
        .filter(|s| is_open(s.state) && exploited(&s.update))
        .map(|s| s.update.to_string())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(list("known-exploited, not installed", &missing))
    }
}

fn list(what: &str, ids: &[String]) -> String {
    format!("{what}: {}", ids.join(", "))
}

/// `3h`, `2d 4h`, `15m`, `40s`: an age for people.
fn human(d: SignedDuration) -> String {
    let s = d.as_secs().max(0);
    let (days, hours, mins) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

// Issue 11, points 1 and 6: what the console's overview and the customer report count.

/// Severities, worst first (the order summaries list them in).
pub const SEVERITIES: [patchday_types::Severity; 4] = [
    patchday_types::Severity::Critical,
    patchday_types::Severity::Important,
    patchday_types::Severity::Moderate,
    patchday_types::Severity::Low,
];

/// Whether a host still lacks what this state says it needs: the update is needed,
/// approved and not yet installed, failed, or waits for a reboot (exposure).
pub fn is_open(state: UpdateState) -> bool {
    matches!(
        state,
        UpdateState::Needed
            | UpdateState::Approved
            | UpdateState::Downloading
            | UpdateState::Downloaded
            | UpdateState::Installing
            | UpdateState::InstalledPendingReboot
            | UpdateState::Failed
            | UpdateState::RemoveFailed
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchday_types::UpdateId;

    const NOW: &str = "2026-12-08T02:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    fn st(id: &str, state: UpdateState) -> UpdateStatus {
        UpdateStatus {
            update: UpdateId::new(id).unwrap(),
            state,
            message: None,
            missing: vec![],
            deadline: None,
            overdue_at: None,
        }
    }

    fn seen_ago(secs: i64) -> HostFacts<'static> {
        HostFacts {
            last_seen: Some(now() - SignedDuration::from_secs(secs)),
            agent_error: None,
            dpkg_broken: None,
        }
    }

    #[test]
    fn a_broken_dpkg_database_is_broken_whatever_is_installed_or_declined() {
        let host = HostFacts {
            dpkg_broken: Some("The following packages are only half configured: pd-x"),
            ..seen_ago(86_400 * 30)
        };
        let v = decide(&[st("PD-1", UpdateState::Installed)], &host);
        assert_eq!(v.state, HostCompliance::Broken);
        assert_eq!(
            v.reason.as_deref(),
            Some("dpkg: The following packages are only half configured: pd-x")
        );
        assert!(!v.state.is_compliant());
    }

    fn decide(statuses: &[UpdateStatus], host: &HostFacts<'_>) -> Verdict {
        host_compliance(statuses, host, SignedDuration::from_hours(3), now())
    }

    #[test]
    fn nothing_needed_is_up_to_date() {
        let v = decide(
            &[
                st("PD-1", UpdateState::Installed),
                st("PD-2", UpdateState::Superseded),
            ],
            &seen_ago(60),
        );
        assert_eq!(v.state, HostCompliance::UpToDate);
        assert!(v.state.is_compliant());
        assert_eq!(v.reason, None);
    }

    #[test]
    fn needed_and_unapproved_is_exposed_not_compliant() {
        let v = decide(
            &[
                st("PD-1", UpdateState::Installed),
                st("PD-2", UpdateState::Needed),
            ],
            &seen_ago(60),
        );
        assert_eq!(v.state, HostCompliance::Exposed);
        assert!(!v.state.is_compliant());
        assert_eq!(v.reason.as_deref(), Some("needed, not approved: PD-2"));
    }

    #[test]
    fn declined_with_a_reason_is_up_to_date_without_one_exposed() {
        let mut d = st("PD-1", UpdateState::Declined);
        d.message = Some("replaced by the vendor's build, ticket 42".into());
        assert_eq!(
            decide(std::slice::from_ref(&d), &seen_ago(60)).state,
            HostCompliance::UpToDate
        );
        d.message = None;
        assert_eq!(
            decide(std::slice::from_ref(&d), &seen_ago(60)).state,
            HostCompliance::Exposed
        );
        d.message = Some("  ".into());
        assert_eq!(decide(&[d], &seen_ago(60)).state, HostCompliance::Exposed);
    }

    #[test]
    fn approved_and_not_yet_installed_is_approved_pending() {
        let mut a = st("PD-1", UpdateState::Downloading);
        a.deadline = Some(now() + SignedDuration::from_hours(1));
        let v = decide(&[a, st("PD-2", UpdateState::Approved)], &seen_ago(60));
        assert_eq!(v.state, HostCompliance::ApprovedPending);
        assert_eq!(
            v.reason.as_deref(),
            Some("approved, not installed yet: PD-1, PD-2")
        );
    }

    #[test]
    fn a_passed_deadline_is_overdue_and_outranks_exposed() {
        let mut a = st("PD-1", UpdateState::Approved);
        a.deadline = Some(now() - SignedDuration::from_secs(1));
        let v = decide(&[a, st("PD-2", UpdateState::Needed)], &seen_ago(60));
        assert_eq!(v.state, HostCompliance::Overdue);
        assert_eq!(v.reason.as_deref(), Some("past its deadline: PD-1"));
    }

    #[test]
    fn a_failed_install_is_failed() {
        let mut a = st("PD-1", UpdateState::Approved);
        a.deadline = Some(now() - SignedDuration::from_secs(1));
        let v = decide(&[a, st("PD-2", UpdateState::Failed)], &seen_ago(60));
        assert_eq!(v.state, HostCompliance::Failed);
        assert_eq!(v.reason.as_deref(), Some("failed: PD-2"));
    }

    #[test]
    fn installed_awaiting_reboot_is_pending_reboot() {
        let v = decide(
            &[st("PD-1", UpdateState::InstalledPendingReboot)],
            &seen_ago(60),
        );
        assert_eq!(v.state, HostCompliance::PendingReboot);
        assert!(!v.state.is_compliant());
    }

    #[test]
    fn not_seen_within_the_interval_is_stale_whatever_it_said() {
        let v = decide(
            &[st("PD-1", UpdateState::Installed)],
            &seen_ago(3 * 3600 + 1),
        );
        assert_eq!(v.state, HostCompliance::Stale);
        assert_eq!(
            v.reason.as_deref(),
            Some("last seen 3h ago at 2026-12-07T22:59:59Z (expected at least every 3h)")
        );
        // Exactly at the limit it still counts as seen.
        let v = decide(&[st("PD-1", UpdateState::Installed)], &seen_ago(3 * 3600));
        assert_eq!(v.state, HostCompliance::UpToDate);
        let never = HostFacts::default();
        assert_eq!(
            decide(&[], &never),
            Verdict {
                state: HostCompliance::Stale,
                reason: Some("never checked in".into())
            }
        );
    }

    #[test]
    fn a_broken_dpkg_database_is_broken_and_a_decline_does_not_hide_it() {
        let mut d = st("PD-1", UpdateState::Declined);
        d.message = Some("tested, not needed".into());
        let e = "broken: dpkg --audit: The following packages are only half configured: python3.11";
        let host = HostFacts {
            agent_error: Some(e),
            ..seen_ago(60)
        };
        let v = decide(&[d], &host);
        assert_eq!(v.state, HostCompliance::Broken);
        assert_eq!(v.reason.as_deref(), Some(e));
        // Broken outranks stale: the last thing the agent said is that dpkg is broken.
        let host = HostFacts {
            agent_error: Some(e),
            ..seen_ago(86_400)
        };
        assert_eq!(decide(&[], &host).state, HostCompliance::Broken);
    }

    #[test]
    fn an_expired_catalog_is_catalog_expired() {
        let e = "verifying the catalog: catalog rejected: timestamp expired at 2026-11-01T00:00:00Z (freeze attack, or the publisher must re-sign)";
        assert_eq!(agent_signal(e), AgentSignal::CatalogExpired);
        let host = HostFacts {
            agent_error: Some(e),
            ..seen_ago(60)
        };
        let v = decide(&[st("PD-1", UpdateState::Approved)], &host);
        assert_eq!(v.state, HostCompliance::CatalogExpired);
        assert_eq!(v.reason.as_deref(), Some(e));
    }

    #[test]
    fn other_agent_errors_leave_the_update_states_to_decide() {
        assert_eq!(
            agent_signal("catalog rejected: snapshot version 7 is older than trusted version 9"),
            AgentSignal::Other
        );
        assert_eq!(agent_signal("disk full: /var/cache"), AgentSignal::Other);
        let host = HostFacts {
            agent_error: Some("disk full: /var/cache"),
            ..seen_ago(60)
        };
        assert_eq!(decide(&[], &host).state, HostCompliance::UpToDate);
    }

    // Issue 10, point 2: the ring's grace period.
    #[test]
    fn within_the_grace_period_a_host_is_not_overdue_and_after_it_is() {
        let mut a = st("PD-1", UpdateState::Approved);
        a.deadline = Some(now() - SignedDuration::from_hours(1));
        a.overdue_at = Some(now() + SignedDuration::from_hours(23));
        let v = decide(std::slice::from_ref(&a), &seen_ago(60));
        assert_eq!(v.state, HostCompliance::ApprovedPending);
        a.overdue_at = Some(now() - SignedDuration::from_secs(1));
        let v = decide(std::slice::from_ref(&a), &seen_ago(60));
        assert_eq!(v.state, HostCompliance::Overdue);
        assert_eq!(
            v.reason.as_deref(),
            Some("past its deadline and grace period: PD-1")
        );
        // Installed but still waiting for its reboot after the grace period: overdue.
        let mut r = st("PD-2", UpdateState::InstalledPendingReboot);
        r.deadline = Some(now() - SignedDuration::from_hours(2));
        r.overdue_at = Some(now() + SignedDuration::from_hours(1));
        assert_eq!(
            decide(std::slice::from_ref(&r), &seen_ago(60)).state,
            HostCompliance::PendingReboot
        );
        r.overdue_at = Some(now() - SignedDuration::from_hours(1));
        assert_eq!(decide(&[r], &seen_ago(60)).state, HostCompliance::Overdue);
    }

    // Issue 14, point 1: who may hold an access token.
    #[test]
    fn access_is_refused_when_overdue_stale_or_missing_a_known_exploited_fix() {
        let none = |_: &UpdateId| false;
        let kev = |u: &UpdateId| u.as_str() == "PD-KEV";
        // Up to date: allowed.
        let v = decide(&[], &seen_ago(60));
        assert_eq!(access(&v, &[], &none), Ok(()));
        // Approved, inside its deadline: allowed; needed and not approved: allowed...
        let pending = st("PD-1", UpdateState::Approved);
        let v = decide(std::slice::from_ref(&pending), &seen_ago(60));
        assert_eq!(access(&v, std::slice::from_ref(&pending), &none), Ok(()));
        let needed = st("PD-KEV", UpdateState::Needed);
        let v = decide(std::slice::from_ref(&needed), &seen_ago(60));
        assert_eq!(access(&v, std::slice::from_ref(&needed), &none), Ok(()));
        // ...unless it fixes a known-exploited vulnerability.
        assert_eq!(
            access(&v, std::slice::from_ref(&needed), &kev),
            Err("known-exploited, not installed: PD-KEV".into())
        );
        // Installed: the same update no longer counts.
        let done = st("PD-KEV", UpdateState::Installed);
        let v = decide(std::slice::from_ref(&done), &seen_ago(60));
        assert_eq!(access(&v, std::slice::from_ref(&done), &kev), Ok(()));
        // Overdue and stale: refused with the report's reason.
        let mut late = st("PD-1", UpdateState::Approved);
        late.deadline = Some(now() - SignedDuration::from_hours(1));
        let v = decide(std::slice::from_ref(&late), &seen_ago(60));
        assert_eq!(
            access(&v, std::slice::from_ref(&late), &none),
            Err("overdue: past its deadline: PD-1".into())
        );
        let v = decide(&[], &seen_ago(7 * 86_400));
        let e = access(&v, &[], &none).unwrap_err();
        assert!(e.starts_with("stale: last seen 7d ago"), "{e}");
        let failed = st("PD-1", UpdateState::Failed);
        let v = decide(std::slice::from_ref(&failed), &seen_ago(60));
        assert!(access(&v, &[failed], &none)
            .unwrap_err()
            .starts_with("failed: "));
    }
}
