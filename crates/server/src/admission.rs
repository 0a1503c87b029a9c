//! Issue 10 (a fleet woken at once): admission of agent work, sized to what the server
//! actually gets through.
//!
//! The first 10,000-host run showed what happens without it: an emergency approval woke
//! every agent, 10,000 check-ins entered the handlers together, each held a task, its
//! request and its place in the database's queue, and the server's memory grew to 7.4 GB
//! while the queue drained far slower than agents retried.
//!
//! Two measures, both before any database work:
//! - **Admission**: at most `concurrency` check-ins, reports and status posts run at
//!   once; more wait in a queue as long as the expected wait (queue length divided by the
//!   measured rate) stays under [`MAX_QUEUE_WAIT`]. Beyond that the request is answered
//!   503 with a jittered `Retry-After` of about the time the queue needs to drain, and
//!   costs nothing more (the agent's client honours it and comes back then).
//! - **Wake spread**: a wait's answer names `spread_seconds`, the time this server needs
//!   for the agents woken with it at its measured rate; each agent starts its run at a
//!   uniformly random moment within it. Small fleets get 0 and run at once.
//!
//! The rate is measured, not configured: an exponentially weighted mean of how long an
//! admitted request held its place, so it falls when the database slows down (a busy
//! writer makes requests hold their places longer) and rises again when it recovers.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Longest a request waits in the queue before it is told to come back later instead.
pub const MAX_QUEUE_WAIT: Duration = Duration::from_secs(5);
/// Longest spread named in a wait's answer: the agents' back-off covers the rest.
pub const MAX_SPREAD: Duration = Duration::from_secs(300);
/// Service time assumed before anything was measured: 5 ms.
const INITIAL_SERVICE_MICROS: u64 = 5_000;

/// The admission gate of agent requests.
#[derive(Debug)]
pub struct Admission {
    permits: Arc<Semaphore>,
    concurrency: usize,
    queued: AtomicUsize,
    /// Mean time an admitted request holds its place, in microseconds (EWMA, 1/16).
    service_micros: AtomicU64,
}

impl Admission {
    /// A gate letting `concurrency` requests work at once.
    pub fn new(concurrency: usize) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            permits: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            queued: AtomicUsize::new(0),
            service_micros: AtomicU64::new(INITIAL_SERVICE_MICROS),
        }
    }

    /// The default for this machine: four per core, at least eight (requests spend
    /// part of their time waiting for the database's single writer).
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self::new((cores * 4).max(8))
    }

    /// Requests this server gets through per second, as measured.
    pub fn rate_per_second(&self) -> f64 {
        let micros = self.service_micros.load(Ordering::Relaxed).max(1) as f64;
        self.concurrency as f64 * 1_000_000.0 / micros
    }

    /// Seconds over which `woken` agents should spread their runs: the time their
    /// check-ins take at the measured rate, 0 when that is under a second.
    pub fn spread_for(&self, woken: usize) -> u64 {
        let secs = woken as f64 / self.rate_per_second();
        if secs < 1.0 {
            0
        } else {
            (secs.ceil() as u64).min(MAX_SPREAD.as_secs())
        }
    }

    /// A place, or the seconds after which to come back (jittered: between the time the
    /// queue needs to drain and twice that, at least one second).
    pub async fn enter(self: &Arc<Self>) -> Result<Place, u64> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Ok(self.place(p));
        }
        let ahead = self.queued.fetch_add(1, Ordering::AcqRel);
        let wait = ahead as f64 / self.rate_per_second();
        if wait > MAX_QUEUE_WAIT.as_secs_f64() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            let base = (wait.ceil() as u64).max(1);
            return Err(base + rand::random::<u64>() % (base + 1));
        }
        // Queued: the count goes down whether the place comes or the client leaves.
        let _queued = Queued(&self.queued);
        match self.permits.clone().acquire_owned().await {
            Ok(p) => Ok(self.place(p)),
            // The semaphore is never closed while the state lives.
            Err(_) => Err(1),
        }
    }

    fn place(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Place {
        Place {
            _permit: permit,
            since: Instant::now(),
            gate: self.clone(),
        }
    }

    /// Requests waiting for a place now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    fn record(&self, held: Duration) {
        let sample = u64::try_from(held.as_micros()).unwrap_or(u64::MAX).max(1);
        let _ = self
            .service_micros
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                Some(old - old / 16 + sample / 16)
            });
    }
}

struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An admitted request's place, held until the handler returns; the time it was held
/// feeds the measured rate.
pub struct Place {
    _permit: OwnedSemaphorePermit,
    since: Instant,
    gate: Arc<Admission>,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.gate.record(self.since.elapsed());
    }
}

/// Extractor for agent handlers: listed before the body extractor, so a refused request
/// costs neither its body nor its signature check nor any database work.
pub struct Admitted(pub Place);

impl FromRequestParts<AppState> for Admitted {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        match s.admission.enter().await {
            Ok(p) => Ok(Self(p)),
            Err(retry) => {
                tracing::debug!(
                    queued = s.admission.queued(),
                    retry,
                    "agent request refused at admission"
                );
                // Counted in /metrics as a 503 of its route.
                Err(ApiError::new(
                    patchday_types::api::ErrorCode::Unavailable,
                    format!("the server is busy with other agents; try again in {retry} s"),
                )
                .retry_after(retry))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn spread_follows_the_measured_rate() {
        let gate = Admission::new(8);
        // 5 ms each, 8 at once: 1,600 a second.
        assert_eq!(gate.rate_per_second().round(), 1600.0);
        assert_eq!(gate.spread_for(100), 0, "a small fleet runs at once");
        assert_eq!(gate.spread_for(10_000), 7);
        // Slower service (the database is busy): a wider spread.
        for _ in 0..200 {
            gate.record(Duration::from_millis(50));
        }
        let rate = gate.rate_per_second().round() as u64;
        assert!((150..=170).contains(&rate), "{rate}");
        assert_eq!(gate.spread_for(10_000), 63);
        assert_eq!(gate.spread_for(10_000_000), MAX_SPREAD.as_secs());
    }

    #[tokio::test]
    async fn a_queue_longer_than_its_drain_time_is_refused_with_a_retry() {
        let gate = Arc::new(Admission::new(1));
        for _ in 0..200 {
            gate.record(Duration::from_secs(1)); // one a second
        }
        let held = gate.enter().await.unwrap();
        // Five may queue (5 s at one a second); the next is told to come back.
        let mut queued = Vec::new();
        for _ in 0..6 {
            let g = gate.clone();
            queued.push(tokio::spawn(async move { g.enter().await.map(|_| ()) }));
        }
        while gate.queued() < 6 {
            tokio::task::yield_now().await;
        }
        let refused = gate.enter().await.err().expect("refused");
        assert!((6..=13).contains(&refused), "{refused}");
        assert_eq!(gate.queued(), 6, "the refused request left the queue");
        drop(held);
        for q in queued {
            q.await.unwrap().unwrap();
        }
        assert_eq!(gate.queued(), 0);
    }
}
