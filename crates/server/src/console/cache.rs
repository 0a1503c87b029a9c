//! The overview's per-tenant summaries, kept for [`FRESH_FOR`]: a page a whole
//! operations team leaves open costs one evaluation of each tenant per period, not one
//! per viewer and refresh. Only `/` reads it (and says how old its numbers are); the
//! tenant, host, updates and rollout pages evaluate at each request, and a decision
//! made in the console drops its tenant's entry.

use super::views::TenantOverview;
use jiff::{SignedDuration, Timestamp};
use patchday_types::TenantId;
use std::collections::HashMap;
use std::sync::Mutex;

/// How long a tenant's summary is shown before it is evaluated again.
pub const FRESH_FOR: SignedDuration = SignedDuration::from_secs(15);

/// Summaries by tenant, with when they were made.
#[derive(Default)]
pub struct OverviewCache {
    entries: Mutex<HashMap<TenantId, (Timestamp, TenantOverview)>>,
}

impl OverviewCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, (Timestamp, TenantOverview)>> {
        // A panic while holding it cannot leave a half-written entry: use it as it is.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The summary of `tenant` made less than [`FRESH_FOR`] before `now`, with its time.
    pub fn fresh(&self, tenant: &TenantId, now: Timestamp) -> Option<(Timestamp, TenantOverview)> {
        self.lock()
            .get(tenant)
            .filter(|(at, _)| now.duration_since(*at) < FRESH_FOR && *at <= now)
            .cloned()
    }

    /// Keeps `overview` of `tenant`, made at `at`.
    pub fn put(&self, tenant: TenantId, at: Timestamp, overview: TenantOverview) {
        self.lock().insert(tenant, (at, overview));
    }

    /// Drops `tenant`'s summary (a decision changed it).
    pub fn forget(&self, tenant: &TenantId) {
        self.lock().remove(tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overview(id: &str) -> TenantOverview {
        super::super::views::overview(&Default::default(), &[id.to_string()])
            .pop()
            .unwrap()
    }

    #[test]
    fn a_summary_is_shown_for_its_fresh_period_only_and_dropped_on_a_decision() {
        let c = OverviewCache::default();
        let t: TenantId = "acme".parse().unwrap();
        let at: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        c.put(t.clone(), at, overview("acme"));
        let later = |s: i64| at.checked_add(SignedDuration::from_secs(s)).unwrap();
        assert!(c.fresh(&t, later(14)).is_some());
        assert!(c.fresh(&t, later(15)).is_none(), "stale after FRESH_FOR");
        assert!(
            c.fresh(&t, later(-1)).is_none(),
            "a clock that went back re-evaluates"
        );
        c.forget(&t);
        assert!(c.fresh(&t, later(1)).is_none());
    }
}
