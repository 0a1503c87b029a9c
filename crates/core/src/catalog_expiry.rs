//! Whether a catalog role expires soon (issue 9, point 5): one pure judgement, with the
//! warning people read. `now` is a parameter.

use jiff::{SignedDuration, Timestamp};
use patchday_types::api::{ExpiryState, RoleExpiry};

/// How long before expiry the server warns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpiryWarning {
    /// For root, targets, snapshot and delegated roles (`--catalog-expiry-warning`).
    pub roles: SignedDuration,
    /// For the timestamp, which lives a day and is re-signed daily
    /// (`--timestamp-expiry-warning`).
    pub timestamp: SignedDuration,
}

impl Default for ExpiryWarning {
    /// Seven days; six hours for the timestamp.
    fn default() -> Self {
        ExpiryWarning {
            roles: SignedDuration::from_hours(7 * 24),
            timestamp: SignedDuration::from_hours(6),
        }
    }
}

/// Judges one role at `now`.
pub fn judge(
    role: &str,
    version: u64,
    expires: Timestamp,
    warn: &ExpiryWarning,
    now: Timestamp,
) -> RoleExpiry {
    let window = if role == "timestamp" {
        warn.timestamp
    } else {
        warn.roles
    };
    let state = if expires <= now {
        ExpiryState::Expired
    } else if expires.duration_since(now) <= window {
        ExpiryState::ExpiresSoon
    } else {
        ExpiryState::Ok
    };
    RoleExpiry {
        role: role.to_string(),
        version,
        expires: expires.round(jiff::Unit::Second).unwrap_or(expires),
        state,
    }
}

/// The warning for a role that expires soon or expired, saying what to do.
pub fn warning(r: &RoleExpiry, now: Timestamp) -> Option<String> {
    let fix = if r.role == "root" {
        "sign a new root (`patchday keys rotate`) and push"
    } else {
        "re-sign with `patchday catalog refresh --keys K --repo R` and push"
    };
    match r.state {
        ExpiryState::Ok => None,
        ExpiryState::ExpiresSoon => Some(format!(
            "catalog {} (version {}) expires at {}, in {}: {fix}",
            r.role,
            r.version,
            r.expires,
            in_words(r.expires.duration_since(now))
        )),
        ExpiryState::Expired => Some(format!(
            "catalog {} (version {}) expired at {}: agents refuse the catalog and install nothing until you {fix}",
            r.role, r.version, r.expires
        )),
    }
}

fn in_words(d: SignedDuration) -> String {
    let s = d.as_secs().max(0);
    match (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60) {
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_snapshot_within_the_warning_time_expires_soon() {
        let now = at("2026-12-01T00:00:00Z");
        let r = judge(
            "snapshot",
            7,
            at("2026-12-05T12:00:00Z"),
            &ExpiryWarning::default(),
            now,
        );
        assert_eq!(r.state, ExpiryState::ExpiresSoon);
        assert_eq!(
            warning(&r, now).unwrap(),
            "catalog snapshot (version 7) expires at 2026-12-05T12:00:00Z, in 4d 12h: re-sign with `patchday catalog refresh --keys K --repo R` and push"
        );
    }

    #[test]
    fn a_day_long_timestamp_is_judged_by_its_own_warning_time() {
        let now = at("2026-12-01T00:00:00Z");
        let w = ExpiryWarning::default();
        let fresh = judge("timestamp", 3, at("2026-12-02T00:00:00Z"), &w, now);
        assert_eq!(fresh.state, ExpiryState::Ok);
        assert_eq!(warning(&fresh, now), None);
        let late = judge("timestamp", 3, at("2026-12-01T05:00:00Z"), &w, now);
        assert_eq!(late.state, ExpiryState::ExpiresSoon);
    }

    #[test]
    fn an_expired_role_says_agents_refuse_it() {
        let now = at("2026-12-01T00:00:00Z");
        let r = judge(
            "targets",
            4,
            at("2026-11-30T23:59:59.5Z"),
            &ExpiryWarning::default(),
            now,
        );
        assert_eq!(r.state, ExpiryState::Expired);
        assert_eq!(r.expires, at("2026-12-01T00:00:00Z"), "whole seconds");
        assert!(warning(&r, now)
            .unwrap()
            .starts_with("catalog targets (version 4) expired at"));
    }
}
