//! Issue 12, point 5: push across replicas. An approval made through one replica wakes
//! the agents held by every replica within a moment, not at the end of their holds.
//!
//! The generations live in the store ([`Store::raise_push_generations`]); this module
//! moves them between the store and this replica's [`crate::push::PushHub`]:
//! - **Publishing.** A bump wakes this replica's waiters at once and leaves its scope in
//!   the hub's unsent set; one task raises the unsent scopes in the store, a batch at a
//!   time (bumps made meanwhile join the next batch: a flood coalesces into at most one
//!   row per tenant per round trip), and adopts the values the store returns. A raise
//!   that fails is tried again after a back-off; nothing is dropped.
//! - **Listening** (PostgreSQL: `LISTEN`, [`Store::push_announcements`]). Another
//!   replica's raise arrives as it commits and wakes the waiters here. After a lost
//!   subscription (or a flood announced as one resync) the replica reads every generation
//!   again; it also does so every [`RESYNC_EVERY`], so an announcement missed for any
//!   other reason (a half-open connection nobody noticed) costs seconds, not a hold.
//!   That read is one query per replica, never per agent. SQLite has nobody to listen to.

use crate::state::AppState;
use anyhow::Context;
use jiff::Timestamp;
use patchday_store::{PushAnnouncement, PushScope, Store};
use patchday_types::TenantId;
use std::time::Duration;

/// How often a listening replica reads every generation, besides after a lost
/// subscription: the longest a missed announcement can go unnoticed.
pub const RESYNC_EVERY: Duration = Duration::from_secs(5);
/// Longest pause between tries after the store failed.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The generations a starting server begins with: everyone's raised to at least `now`
/// in seconds (so agents that waited before the start check in once, and whatever a
/// stopped server had committed without announcing is not lost), each tenant's as stored.
pub async fn starting_generations(
    store: &dyn Store,
    now: Timestamp,
) -> anyhow::Result<(u64, Vec<(TenantId, u64)>)> {
    let start = u64::try_from(now.as_second()).unwrap_or(0);
    let raised = store
        .raise_push_generations(&[(PushScope::Everyone, start)])
        .await
        .context("raising the push generation at start")?;
    let global = raised
        .iter()
        .find(|(s, _)| *s == PushScope::Everyone)
        .map_or(start, |(_, g)| *g);
    let tenants = store
        .push_generations()
        .await
        .context("reading the push generations")?
        .into_iter()
        .filter_map(|(scope, g)| match scope {
            PushScope::Tenant(t) => Some((t, g)),
            PushScope::Everyone => None,
        })
        .collect();
    Ok((global, tenants))
}

/// Starts publishing this replica's bumps and, where the store announces raises,
/// listening for the other replicas'.
pub async fn spawn(state: &AppState) {
    tokio::spawn(publish(state.clone()));
    match state.store.push_announcements().await {
        Ok(Some(feed)) => {
            tokio::spawn(listen(state.clone(), feed));
            tokio::spawn(resync_regularly(state.clone()));
        }
        Ok(None) => {}
        Err(e) => {
            // Only a malformed configuration gets here (the connection is made lazily);
            // without announcements the regular read still carries every raise.
            tracing::warn!(error = %e, "cannot listen for other replicas' push events: reading them every {}s instead", RESYNC_EVERY.as_secs());
            tokio::spawn(resync_regularly(state.clone()));
        }
    }
}

/// The `n`-th pause after consecutive failures: 1, 2, 4 … seconds up to [`MAX_BACKOFF`].
fn backoff(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.saturating_sub(1).min(5)).min(MAX_BACKOFF)
}

async fn publish(state: AppState) {
    let hub = &state.push;
    let mut failures: u32 = 0;
    loop {
        hub.unsent_added().await;
        loop {
            let batch = hub.take_unsent();
            if batch.is_empty() {
                break;
            }
            match state.store.raise_push_generations(&batch).await {
                Ok(stored) => {
                    failures = 0;
                    for (scope, g) in &stored {
                        hub.adopt(scope, *g);
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let pause = backoff(failures);
                    tracing::warn!(
                        error = %e,
                        scopes = batch.len(),
                        seconds = pause.as_secs(),
                        "cannot hand push events to the other replicas yet (agents held here were woken): trying again"
                    );
                    hub.requeue_unsent(batch.into_iter().map(|(s, _)| s));
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

/// Reads every generation and adopts the higher ones.
async fn resync(state: &AppState) -> patchday_store::Result<usize> {
    let all = state.store.push_generations().await?;
    Ok(all
        .iter()
        .filter(|(scope, g)| state.push.adopt(scope, *g))
        .count())
}

async fn listen(state: AppState, mut feed: Box<dyn patchday_store::PushAnnouncements>) {
    // The feed's future is never cancelled halfway (a notification half read would be
    // lost): the regular read runs in a task of its own.
    let mut failures: u32 = 0;
    loop {
        match feed.next().await {
            Ok(PushAnnouncement::Raised(scope, g)) => {
                failures = 0;
                state.push.adopt(&scope, g);
            }
            Ok(PushAnnouncement::Resync) => {
                failures = 0;
                match resync(&state).await {
                    Ok(n) => tracing::debug!(raised = n, "push: generations read again"),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the push generations: the regular read tries again")
                    }
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let pause = backoff(failures);
                tracing::warn!(
                    error = %e,
                    seconds = pause.as_secs(),
                    "lost the other replicas' push events: listening again after a pause (reading them every {}s meanwhile)",
                    RESYNC_EVERY.as_secs()
                );
                tokio::time::sleep(pause).await;
            }
        }
    }
}

async fn resync_regularly(state: AppState) {
    let mut every = tokio::time::interval(RESYNC_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        match resync(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(raised = n, "push: the regular read raised generations"),
            Err(e) => tracing::debug!(error = %e, "cannot read the push generations now"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A restart raises everyone's generation (so agents held before it check in once)
    /// and keeps each tenant's.
    #[tokio::test]
    async fn a_start_raises_everyone_to_the_start_time_and_keeps_tenants() {
        let dir = tempfile::tempdir().unwrap();
        let store = patchday_store_sqlite::SqliteStore::open(&dir.path().join("patchday.db"))
            .await
            .unwrap();
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        let start = at("2026-12-02T10:00:00Z");
        let secs = u64::try_from(start.as_second()).unwrap();
        let (g, tenants) = starting_generations(&store, start).await.unwrap();
        assert_eq!((g, tenants.len()), (secs, 0));
        let acme: TenantId = "acme".parse().unwrap();
        store
            .raise_push_generations(&[(PushScope::Tenant(acme.clone()), 0)])
            .await
            .unwrap();
        // Restarted a second later (or with a clock that went back): still higher.
        let (again, tenants) = starting_generations(&store, at("2026-12-02T10:00:01Z"))
            .await
            .unwrap();
        assert_eq!(
            (again, tenants.clone()),
            (secs + 1, vec![(acme.clone(), 1)])
        );
        let (back, _) = starting_generations(&store, start).await.unwrap();
        assert_eq!(back, secs + 2);
    }

    #[test]
    fn back_off_doubles_to_half_a_minute() {
        let secs: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
