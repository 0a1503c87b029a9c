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
//! - **Paced wakes**: a woken wait is answered when this server has room for the run it
//!   starts ([`Admission::released`]), in the order the waits were woken. Runs in flight
//!   (from the answer to the agent's next wait) are kept within a window that adapts to
//!   the queue of admitted requests: it widens while their expected wait stays under
//!   [`QUEUE_WAIT_LOW`] and the window is what holds agents back, and narrows when it
//!   exceeds [`QUEUE_WAIT_HIGH`]. Small fleets are released at once; no wait is held
//!   longer than [`MAX_HOLD`].
//!
//! The rate is measured, not configured: an exponentially weighted mean of how long an
//! admitted request held its place, so it falls when the database slows down (a busy
//! writer makes requests hold their places longer) and rises again when it recovers.
//!
//! Why paced wakes and not a spread named in the answer (what this server did before,
//! `spread_seconds`, still honoured by agents): a spread is fixed when the wake is
//! answered, from a rate of check-ins alone, while a run also costs downloads and the
//! agent's own work. At 10,000 hosts the spread named was 7 s for a rollout that took 35:
//! the admission queue overflowed into 503s, and the last hosts waited out their
//! `Retry-After` (a tail of 8-10 s with idle cores). A window of runs in flight bounds
//! the queue whatever a run costs; it widens by itself where runs are long (real installs
//! take minutes, and cost this server nothing while dpkg works).

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use patchday_types::{HostId, TenantId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Longest a request waits in the queue before it is told to come back later instead.
pub const MAX_QUEUE_WAIT: Duration = Duration::from_secs(5);
/// Service time assumed before anything was measured: 5 ms.
const INITIAL_SERVICE_MICROS: u64 = 5_000;
/// Paced wakes: the window of runs in flight widens while admitted requests expect to
/// wait less than this (and the window is what holds agents back).
pub const QUEUE_WAIT_LOW: Duration = Duration::from_millis(50);
/// Paced wakes: the window narrows while admitted requests expect to wait more than this.
///
/// Low on purpose: a run's check-ins are its cheap part, so a queue of them shows late
/// that the machine is saturated. With 250 ms / 1 s the 10,000-host benchmark kept
/// 1,500-4,000 runs in flight, whose downloads then outlasted the agent's 2 s and each
/// sent a "downloading" report (0.15-0.9 per host, all extra work); with 50 / 250 ms
/// about 1,000, and next to no such reports (fifteenth run, BENCHMARKS.md).
pub const QUEUE_WAIT_HIGH: Duration = Duration::from_millis(250);
/// How often the pacer looks for room while woken waits are held.
const PACE_TICK: Duration = Duration::from_millis(5);
/// How often the window adapts (widening by a sixteenth, narrowing by a thirty-second).
const ADAPT_EVERY: Duration = Duration::from_millis(100);
/// A run whose agent has not come back to wait within this no longer counts as in flight
/// (it failed, switched to polling, or went to another replica).
const RUN_ALLOWANCE: Duration = Duration::from_secs(600);
/// Longest a woken wait is held for release. The window narrows on any queue of agent
/// requests, also one its runs did not cause (polling agents, a slow database), and must
/// not keep woken agents back for ever: past this the run goes ahead uncounted, and
/// admission (its queue, then 503 with `Retry-After`) bounds what it costs.
pub const MAX_HOLD: Duration = Duration::from_secs(60);
/// The window before anything was learnt, per admitted request at once.
const INITIAL_WINDOW_PER_PLACE: usize = 100;

/// The admission gate of agent requests.
#[derive(Debug)]
pub struct Admission {
    permits: Arc<Semaphore>,
    concurrency: usize,
    queued: AtomicUsize,
    /// Mean time an admitted request holds its place, in microseconds (EWMA, 1/16).
    service_micros: AtomicU64,
    /// Paced wakes: the pacer adds a permit for each woken wait it releases.
    release: Arc<Semaphore>,
    /// Woken waits held for release.
    awaiting: AtomicUsize,
    /// Whether a pacer task runs.
    pacing: AtomicBool,
    /// Runs in flight and their window.
    runs: Mutex<Runs>,
    /// How many runs are in flight (read without the lock at admission).
    in_flight: AtomicUsize,
    /// [`MAX_HOLD`] (shorter in tests).
    max_hold: Duration,
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
            release: Arc::new(Semaphore::new(0)),
            awaiting: AtomicUsize::new(0),
            pacing: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            max_hold: MAX_HOLD,
            runs: Mutex::new(Runs {
                in_flight: HashMap::new(),
                granted: 0,
                window: concurrency * INITIAL_WINDOW_PER_PLACE,
                adapted: None,
            }),
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

    /// Waits until this server has room for the run of a woken agent (`tenant`, `host`),
    /// behind every wait woken before it; the run counts as in flight from then until
    /// [`Admission::run_ended`]. Cancel-safe: a wait whose agent left gives up its turn.
    /// Held at most [`MAX_HOLD`]; a run let go then does not count as in flight.
    pub async fn released(self: &Arc<Self>, tenant: &TenantId, host: &HostId) {
        let _awaiting = Counted::new(&self.awaiting);
        self.start_pacer();
        match tokio::time::timeout(self.max_hold, self.release.acquire()).await {
            Ok(Ok(p)) => p.forget(),
            // Never closed while the state lives; released at once if it were.
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::debug!(
                    host = host.as_str(),
                    held_seconds = self.max_hold.as_secs(),
                    "paced wakes: held as long as it may be; the run goes ahead uncounted"
                );
                return;
            }
        }
        let mut runs = self.lock_runs();
        runs.granted = runs.granted.saturating_sub(1);
        runs.in_flight
            .insert((tenant.clone(), host.clone()), Instant::now());
        self.in_flight
            .store(runs.in_flight.len(), Ordering::Release);
    }

    /// The agent (`tenant`, `host`) waits again: its run, if one was released, ended.
    pub fn run_ended(&self, tenant: &TenantId, host: &HostId) {
        let mut runs = self.lock_runs();
        if !runs.in_flight.is_empty() {
            runs.in_flight.remove(&(tenant.clone(), host.clone()));
            self.in_flight
                .store(runs.in_flight.len(), Ordering::Release);
        }
    }

    /// Woken waits held for release now.
    pub fn awaiting_release(&self) -> usize {
        self.awaiting.load(Ordering::Acquire)
    }

    /// Runs in flight now and the window they are kept in.
    pub fn runs_in_flight(&self) -> (usize, usize) {
        let runs = self.lock_runs();
        (runs.in_flight.len(), runs.window)
    }

    fn lock_runs(&self) -> std::sync::MutexGuard<'_, Runs> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the pacer unless one runs. It ends when no woken wait is held and starts
    /// again with the next, so an idle server has no timer ticking.
    fn start_pacer(self: &Arc<Self>) {
        if self.pacing.swap(true, Ordering::AcqRel) {
            return;
        }
        let gate = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PACE_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if gate.awaiting.load(Ordering::Acquire) == 0 {
                    gate.pacing.store(false, Ordering::Release);
                    // A wait that came between the check and the store found a pacer
                    // running and started none: go on for it, unless it started one.
                    if gate.awaiting.load(Ordering::Acquire) == 0
                        || gate.pacing.swap(true, Ordering::AcqRel)
                    {
                        return;
                    }
                }
                gate.pace(Instant::now());
            }
        });
    }

    /// One look for room: adapts the window when due, then releases as many held waits
    /// as it has room for.
    fn pace(&self, now: Instant) {
        let queue_wait = self.queued() as f64 / self.rate_per_second();
        let min_window = 2 * self.concurrency;
        let mut runs = self.lock_runs();
        let held = self
            .awaiting
            .load(Ordering::Acquire)
            .saturating_sub(runs.granted);
        if held == 0 {
            return;
        }
        if runs
            .adapted
            .is_none_or(|t| now.duration_since(t) >= ADAPT_EVERY)
        {
            runs.adapted = Some(now);
            runs.in_flight
                .retain(|_, at| now.duration_since(*at) < RUN_ALLOWANCE);
            self.in_flight
                .store(runs.in_flight.len(), Ordering::Release);
            // Narrowing is much gentler than widening: a narrower window shows in the
            // queue only as the runs in flight end, seconds later, and too narrow a
            // window leaves the machine idle while agents wait.
            if queue_wait > QUEUE_WAIT_HIGH.as_secs_f64() {
                let step = (runs.window / 32).max(1);
                runs.window = runs.window.saturating_sub(step).max(min_window);
            } else if queue_wait < QUEUE_WAIT_LOW.as_secs_f64()
                && runs.in_flight.len() + runs.granted >= runs.window
            {
                let step = (runs.window / 16).max(1);
                runs.window = runs.window.saturating_add(step);
            }
            tracing::trace!(
                window = runs.window,
                in_flight = runs.in_flight.len(),
                held,
                queue_wait,
                "paced wakes"
            );
        }
        // Permits granted and not yet taken are runs about to be in flight (a waiter
        // given one may not have run yet; a permit a leaving waiter gave back is taken
        // by the next).
        let room = runs
            .window
            .saturating_sub(runs.in_flight.len() + runs.granted);
        let grant = room.min(held);
        runs.granted += grant;
        drop(runs);
        self.release.add_permits(grant);
    }

    /// A place, or the seconds after which to come back (jittered: between the time the
    /// queue needs to drain and twice that, at least one second).
    pub async fn enter(self: &Arc<Self>) -> Result<Place, u64> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Ok(self.place(p));
        }
        let ahead = self.queued.fetch_add(1, Ordering::AcqRel);
        // Runs released by paced wakes have at most one request here each, and are
        // bounded by their window: they may queue beyond MAX_QUEUE_WAIT (a 503 would hold
        // a run, and its place in the window, for a whole Retry-After).
        let rate = self.rate_per_second();
        let others = ahead.saturating_sub(self.in_flight.load(Ordering::Acquire));
        if others as f64 / rate > MAX_QUEUE_WAIT.as_secs_f64() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            let base = ((ahead as f64 / rate).ceil() as u64).max(1);
            return Err(base + rand::random::<u64>() % (base + 1));
        }
        // Queued: the count goes down whether the place comes or the client leaves.
        let _queued = Counted(&self.queued);
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

/// Runs released by paced wakes and not ended yet, and the window they are kept in.
#[derive(Debug)]
struct Runs {
    in_flight: HashMap<(TenantId, HostId), Instant>,
    /// Releases granted whose waiter has not taken them yet.
    granted: usize,
    window: usize,
    /// When the window last adapted.
    adapted: Option<Instant>,
}

/// One more in a count while it lives.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count)
    }
}

impl Drop for Counted<'_> {
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

    fn host(i: usize) -> (TenantId, HostId) {
        (
            TenantId::new("acme").unwrap(),
            HostId::new(format!("h{i}")).unwrap(),
        )
    }

    /// Hosts 0..n woken, each waiting for its release.
    fn woken(gate: &Arc<Admission>, n: usize) -> Vec<tokio::task::JoinHandle<()>> {
        (0..n)
            .map(|i| {
                let g = gate.clone();
                tokio::spawn(async move {
                    let (t, h) = host(i);
                    g.released(&t, &h).await;
                })
            })
            .collect()
    }

    /// Waits until `cond` holds, at most 5 s.
    async fn eventually(what: &str, cond: impl Fn() -> bool) {
        let until = Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(Instant::now() < until, "never happened: {what}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test]
    async fn woken_waits_are_released_in_order_within_a_window_that_adapts() {
        // One at a time, one a second; the pacer driven by hand (none started).
        let gate = Arc::new(Admission::new(1));
        for _ in 0..200 {
            gate.record(Duration::from_secs(1));
        }
        gate.pacing.store(true, Ordering::Release);
        gate.lock_runs().window = 2;
        let order = Arc::new(Mutex::new(Vec::new()));
        let released = || order.lock().unwrap().clone();
        let mut waits = Vec::new();
        let wake = |i: usize| {
            let (g, o) = (gate.clone(), order.clone());
            tokio::spawn(async move {
                let (t, h) = host(i);
                g.released(&t, &h).await;
                o.lock().unwrap().push(i);
            })
        };
        for i in 0..5 {
            waits.push(wake(i));
            // Woken in this order.
            eventually("the wait is held", || gate.awaiting_release() == i + 1).await;
        }
        let t0 = Instant::now();
        gate.pace(t0);
        eventually("two released", || released().len() == 2).await;
        gate.pace(t0 + Duration::from_millis(1));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(released(), [0, 1], "no more than the window");
        assert_eq!(gate.runs_in_flight(), (2, 2));
        // A run ends when its agent waits again: room for the next in line.
        let (t, h) = host(0);
        gate.run_ended(&t, &h);
        gate.run_ended(&t, &h); // twice, or for a host not in flight: nothing
        gate.pace(t0 + Duration::from_millis(2));
        eventually("the third released", || released().len() == 3).await;
        assert_eq!(released(), [0, 1, 2]);
        // The queue is short and the window holds agents back: it widens.
        gate.pace(t0 + ADAPT_EVERY);
        eventually("the fourth released", || released().len() == 4).await;
        assert_eq!(gate.runs_in_flight(), (3, 3));
        // An agent that leaves gives up its turn.
        waits[4].abort();
        eventually("the left wait uncounted", || gate.awaiting_release() == 0).await;
        // Admitted requests expect to wait 2 s (> QUEUE_WAIT_HIGH): the window narrows.
        let working = gate.enter().await.unwrap();
        let queued: Vec<_> = (0..2)
            .map(|_| {
                let g = gate.clone();
                tokio::spawn(async move { g.enter().await.map(|_| ()) })
            })
            .collect();
        eventually("two queued", || gate.queued() == 2).await;
        waits.push(wake(5));
        eventually("the wait is held", || gate.awaiting_release() == 1).await;
        gate.pace(t0 + 2 * ADAPT_EVERY);
        assert_eq!(gate.runs_in_flight(), (3, 2));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(released(), [0, 1, 2, 3]);
        // Runs never ended stop counting after RUN_ALLOWANCE.
        gate.pace(t0 + 3 * ADAPT_EVERY + RUN_ALLOWANCE);
        eventually("the last released", || released().len() == 5).await;
        assert_eq!(released(), [0, 1, 2, 3, 5]);
        assert_eq!(
            gate.runs_in_flight(),
            (1, 2),
            "never below twice the concurrency"
        );
        drop(working);
        for q in queued {
            q.await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn a_woken_wait_is_held_no_longer_than_max_hold() {
        // No pacer and no room: only the bound lets it go.
        let mut gate = Admission::new(1);
        gate.max_hold = Duration::from_millis(50);
        let gate = Arc::new(gate);
        gate.pacing.store(true, Ordering::Release);
        gate.lock_runs().window = 0;
        let (t, h) = host(0);
        tokio::time::timeout(Duration::from_secs(5), gate.released(&t, &h))
            .await
            .expect("let go after max_hold");
        assert_eq!(gate.runs_in_flight(), (0, 0), "a run let go is not counted");
        assert_eq!(gate.awaiting_release(), 0);
    }

    #[tokio::test]
    async fn the_pacer_runs_while_waits_are_held_and_stops_after() {
        let gate = Arc::new(Admission::new(8));
        let waits = woken(&gate, 3);
        for w in waits {
            tokio::time::timeout(Duration::from_secs(5), w)
                .await
                .expect("a small fleet is released at once")
                .unwrap();
        }
        assert_eq!(gate.runs_in_flight(), (3, 800));
        eventually("the pacer stops when nothing is held", || {
            !gate.pacing.load(Ordering::Acquire)
        })
        .await;
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
        // Runs released by paced wakes (three here) may queue beyond that, one each.
        gate.pacing.store(true, Ordering::Release);
        let runs = woken(&gate, 3);
        eventually("three woken", || gate.awaiting_release() == 3).await;
        gate.pace(Instant::now());
        for r in runs {
            r.await.unwrap();
        }
        for _ in 0..3 {
            let g = gate.clone();
            queued.push(tokio::spawn(async move { g.enter().await.map(|_| ()) }));
        }
        eventually("nine queued", || gate.queued() == 9).await;
        let refused = gate.enter().await.err().expect("refused");
        assert!(
            (9..=19).contains(&refused),
            "the whole queue's drain time: {refused}"
        );
        drop(held);
        for q in queued {
            q.await.unwrap().unwrap();
        }
        assert_eq!(gate.queued(), 0);
    }
}
