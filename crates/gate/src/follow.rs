//! The tenant's access list, kept current through the server's long poll
//! (`GET /v1/tenants/{t}/access?known=ETAG&wait=S`): the server answers as soon as any
//! host's access changes (a check-in, a report, an approval), or when the wait ends with
//! the same list, which confirms it is still current.

use patchday_types::api::AccessList;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Where the list comes from (the CLI's HTTP client; tests' own).
#[async_trait::async_trait]
pub trait AccessSource: Send + Sync {
    /// The tenant's list; with `known`, the server holds the answer up to `wait` until
    /// the list differs from it. `Err` says what went wrong, for the log.
    async fn fetch(&self, known: Option<&str>, wait: Duration) -> Result<AccessList, String>;
}

/// The latest list and when the server last confirmed it.
#[derive(Clone, Debug)]
pub struct Current {
    /// The list.
    pub list: AccessList,
    /// When it arrived or was last confirmed.
    pub received: Instant,
}

/// What the gates read: `None` until the first answer.
pub type View = watch::Receiver<Option<Current>>;

/// A channel for [`follow`] to write and the gates to read.
pub fn channel() -> (watch::Sender<Option<Current>>, View) {
    watch::channel(None)
}

/// Follows the server until the process ends: each answer replaces the list (also an
/// unchanged one, which refreshes `received`); a failure is logged and retried after
/// `retry`, doubling up to eight times it.
pub async fn follow(
    source: Arc<dyn AccessSource>,
    tx: watch::Sender<Option<Current>>,
    wait: Duration,
    retry: Duration,
) {
    let mut failures: u32 = 0;
    loop {
        let known = tx.borrow().as_ref().map(|c| c.list.etag.clone());
        match source.fetch(known.as_deref(), wait).await {
            Ok(list) => {
                if failures > 0 {
                    tracing::info!("the Patchday server answers again");
                }
                failures = 0;
                tx.send_replace(Some(Current {
                    list,
                    received: Instant::now(),
                }));
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let pause = retry.saturating_mul(1 << failures.min(4).saturating_sub(1));
                tracing::warn!(error = %e, retry_in = pause.as_secs(), "cannot read the access list from the Patchday server");
                tokio::time::sleep(pause).await;
            }
        }
    }
}
