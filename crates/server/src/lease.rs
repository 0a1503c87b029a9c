//! Background work on one replica at a time (issue 12, point 5). The catalog expiry
//! watch and notification scans run on every replica: their events are keyed, so the
//! outbox holds each once.
//!
//! Several `patchday server` processes on one PostgreSQL database each run the same
//! background loops; each pass first takes (or renews) a lease named after its work in
//! the store. The holder renews it every pass; when it dies, another replica takes over
//! once the lease expired (three passes, at least a minute). One server on SQLite always
//! holds every lease.

use crate::state::AppState;
use std::time::Duration;

/// Kinds of background work, each with its own lease.
pub const ROLLOUT: &str = "rollout";
/// The content store's cleanup.
pub const CLEANUP: &str = "cleanup";
/// The scheduled archive sync.
pub const MIRROR: &str = "mirror";
/// The online timestamp refresher.
pub const TIMESTAMP: &str = "timestamp";

/// How long a lease lasts past a pass: three passes, at least a minute.
fn lifetime(every: Duration) -> Duration {
    (every * 3).max(Duration::from_secs(60))
}

/// Whether this replica should do `work` now (it holds the lease, taken or renewed
/// here). A store that cannot answer means no: the next pass asks again.
pub async fn hold(state: &AppState, work: &str, every: Duration) -> bool {
    let now = state.clock.now();
    let until = match jiff::SignedDuration::try_from(lifetime(every))
        .ok()
        .and_then(|d| now.checked_add(d).ok())
    {
        Some(t) => t,
        None => return false,
    };
    match state
        .store
        .acquire_lease(work, &state.replica, now, until)
        .await
    {
        Ok(true) => true,
        Ok(false) => {
            tracing::debug!(work, "another replica holds this work's lease");
            false
        }
        Err(e) => {
            tracing::warn!(work, error = %e, "cannot take this work's lease: skipping this pass");
            false
        }
    }
}

/// This server's name among the replicas: kept in its data directory (`replica-id`,
/// made once), so a restarted server renews its own leases at once instead of waiting
/// for them to expire.
pub fn replica_name(data: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context;
    let path = data.join("replica-id");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let mut b = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    let name = hex::encode(b);
    patchday_trust::client::write_atomically(&path, name.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_outlives_three_passes_and_at_least_a_minute() {
        assert_eq!(lifetime(Duration::from_secs(5)), Duration::from_secs(60));
        assert_eq!(
            lifetime(Duration::from_secs(3600)),
            Duration::from_secs(10800)
        );
    }
}
