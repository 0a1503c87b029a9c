//! Issue 10, point 6 (push): agents hold `POST /v1/agent/wait` and learn within a moment
//! that something changed for them, instead of at their next poll.
//!
//! The hub keeps one generation counter per tenant and one for everyone; a host's
//! generation is their sum, so it only grows. Every event that can change an assignment
//! calls [`PushHub::tenant`] or [`PushHub::everyone`]; a bump costs a counter increment,
//! wakes only the waiters of that tenant (or all) on this replica at once, and leaves the
//! scope for [`crate::push_relay`] to raise in the store, whence the other replicas
//! (issue 12, point 5) learn it and wake theirs. Generations are the same on every
//! replica, so an agent whose replica died waits on at another with the `since` it had.
//! Everyone's generation starts at least at the server's start time in seconds, so after
//! a restart every agent's `since` differs and each checks in once (nothing committed
//! and not yet announced when the server stopped is lost; the agents' jittered back-off
//! spreads those check-ins).
//!
//! Admission: at most `max_waiting` requests are held at once, well below the connection
//! cap (a held request keeps its connection busy, and a busy connection is never closed
//! to make room), so long polls cannot lock out check-ins, downloads and operators.
//! Beyond it a wait is answered 503 with a jittered `Retry-After`, before any database
//! work.

use crate::auth::SignedHost;
use crate::state::AppState;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use patchday_store::PushScope;
use patchday_types::api::{WaitAnswer, WaitRequest};
use patchday_types::TenantId;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// Longest hold when none is configured (`--long-poll-seconds`): ten minutes, so that a
/// fleet of 10,000 idle agents costs 17 signed waits a second, not 200.
pub const DEFAULT_LONG_POLL: Duration = Duration::from_secs(600);
/// How often a held wait sends one byte of whitespace when none is configured
/// (`--heartbeat-seconds`): below the 60-second idle timeouts of common proxies and load
/// balancers (nginx's `proxy_read_timeout`, cloud load balancers), so a long hold survives
/// them, and a vanished agent is noticed at the next write instead of at the hold's end.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(25);
/// Most held waits when none is configured (`--max-long-polls`).
pub const DEFAULT_MAX_LONG_POLLS: usize = 20_000;

/// How long waits are held and how many at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PushLimits {
    /// Longest hold of one wait.
    pub long_poll: Duration,
    /// Most waits held at once; more are answered 503.
    pub max_waiting: usize,
    /// How often a held wait sends a byte of whitespace (JSON allows it before the answer).
    pub heartbeat: Duration,
}

impl Default for PushLimits {
    fn default() -> Self {
        Self {
            long_poll: DEFAULT_LONG_POLL,
            max_waiting: DEFAULT_MAX_LONG_POLLS,
            heartbeat: DEFAULT_HEARTBEAT,
        }
    }
}

impl PushLimits {
    /// These limits with `max_waiting` kept below `connections`, leaving a tenth of the
    /// connections (at least 16) for everything that is not a long poll.
    pub fn within(self, connections: usize) -> Self {
        let room = connections
            .saturating_sub((connections / 10).max(16))
            .max(1);
        if self.max_waiting > room {
            tracing::info!(
                wanted = self.max_waiting,
                room,
                "--max-long-polls is above what the connection cap leaves; holding at most {room}"
            );
        }
        Self {
            max_waiting: self.max_waiting.min(room),
            ..self
        }
    }
}

/// The generation counters and the admission count.
pub struct PushHub {
    global: watch::Sender<u64>,
    tenants: Mutex<HashMap<TenantId, watch::Sender<u64>>>,
    waiting: Arc<AtomicUsize>,
    limits: PushLimits,
    /// Issue 14, points 2 and 3: bumped whenever a host's compliance may have changed (a
    /// host's check-in, report or status, or any event that wakes agents); the gates'
    /// long polls of `GET /v1/tenants/{t}/access` wait on it.
    access: watch::Sender<u64>,
    /// Issue 12, point 5: scopes bumped here and not yet raised in the store. At most one
    /// entry per tenant and one for everyone, so a flood of bumps coalesces.
    unsent: Mutex<HashSet<PushScope>>,
    /// Wakes the relay when `unsent` gained an entry.
    unsent_added: tokio::sync::Notify,
}

impl std::fmt::Debug for PushHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushHub")
            .field("global", &*self.global.borrow())
            .field("waiting", &self.waiting.load(Ordering::Relaxed))
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// One held wait's place; given back when dropped (answered, or the client went away).
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PushHub {
    /// A hub whose generations start at `start` (the server's start time in seconds).
    pub fn new(start: u64, limits: PushLimits) -> Self {
        Self {
            global: watch::Sender::new(start),
            tenants: Mutex::default(),
            waiting: Arc::new(AtomicUsize::new(0)),
            limits,
            access: watch::Sender::new(0),
            unsent: Mutex::default(),
            unsent_added: tokio::sync::Notify::new(),
        }
    }

    /// Issue 12, point 5: a hub starting from the generations in the store.
    pub fn starting(
        global: u64,
        tenants: impl IntoIterator<Item = (TenantId, u64)>,
        limits: PushLimits,
    ) -> Self {
        let hub = Self::new(global, limits);
        {
            let mut map = hub.tenants.lock().unwrap_or_else(|e| e.into_inner());
            for (t, g) in tenants {
                map.insert(t, watch::Sender::new(g));
            }
        }
        hub
    }

    /// Issue 14: a host's compliance may have changed; wake the gates' long polls.
    pub fn access_changed(&self) {
        self.access.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Issue 14: a receiver that sees [`PushHub::access_changed`].
    pub fn access_changes(&self) -> watch::Receiver<u64> {
        self.access.subscribe()
    }

    /// The limits in force.
    pub fn limits(&self) -> PushLimits {
        self.limits
    }

    fn tenant_sender(&self, t: &TenantId) -> watch::Sender<u64> {
        let mut map = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(t.clone())
            .or_insert_with(|| watch::Sender::new(0))
            .clone()
    }

    /// Something changed for hosts of `t`: wake them (on every replica).
    pub fn tenant(&self, t: &TenantId) {
        let sender = self.tenant_sender(t);
        sender.send_modify(|g| *g = g.wrapping_add(1));
        self.access_changed();
        self.unsent(PushScope::Tenant(t.clone()));
        tracing::debug!(tenant = %t, "push: tenant generation bumped");
    }

    /// Something changed for every tenant (catalog, director, a halt): wake everyone (on
    /// every replica).
    pub fn everyone(&self) {
        self.global.send_modify(|g| *g = g.wrapping_add(1));
        self.access_changed();
        self.unsent(PushScope::Everyone);
        tracing::debug!("push: global generation bumped");
    }

    /// Issue 12, point 5: `scope` has a bump the store has not heard of yet.
    fn unsent(&self, scope: PushScope) {
        let mut unsent = self.unsent.lock().unwrap_or_else(|e| e.into_inner());
        unsent.insert(scope);
        drop(unsent);
        // A permit is kept when the relay is busy: it looks again when done.
        self.unsent_added.notify_one();
    }

    /// Issue 12, point 5: returns once a bump is waiting to be raised in the store.
    pub async fn unsent_added(&self) {
        self.unsent_added.notified().await;
    }

    /// Issue 12, point 5: takes the scopes bumped here since the last call, each with its
    /// generation now (the floor the store raises it to).
    pub fn take_unsent(&self) -> Vec<(PushScope, u64)> {
        let scopes: Vec<PushScope> = {
            let mut unsent = self.unsent.lock().unwrap_or_else(|e| e.into_inner());
            unsent.drain().collect()
        };
        scopes
            .into_iter()
            .map(|scope| {
                let g = self.scope_generation(&scope);
                (scope, g)
            })
            .collect()
    }

    /// Issue 12, point 5: gives back scopes the store could not raise (tried again later).
    pub fn requeue_unsent(&self, scopes: impl IntoIterator<Item = PushScope>) {
        let mut unsent = self.unsent.lock().unwrap_or_else(|e| e.into_inner());
        unsent.extend(scopes);
    }

    fn scope_generation(&self, scope: &PushScope) -> u64 {
        match scope {
            PushScope::Everyone => *self.global.borrow(),
            PushScope::Tenant(t) => *self.tenant_sender(t).borrow(),
        }
    }

    /// Issue 12, point 5: `scope`'s generation is `generation` elsewhere (the store holds
    /// it, or another replica announced it): raises it here when it is higher, waking
    /// the waiters it concerns. Never lowers it. True when it rose.
    pub fn adopt(&self, scope: &PushScope, generation: u64) -> bool {
        let sender = match scope {
            PushScope::Everyone => self.global.clone(),
            PushScope::Tenant(t) => self.tenant_sender(t),
        };
        let raised = sender.send_if_modified(|g| {
            let higher = generation > *g;
            if higher {
                *g = generation;
            }
            higher
        });
        if raised {
            self.access_changed();
            tracing::debug!(scope = scope.key(), generation, "push: generation adopted");
        }
        raised
    }

    /// The generation of hosts of `t` now.
    pub fn generation(&self, t: &TenantId) -> u64 {
        let tenant = *self.tenant_sender(t).borrow();
        self.global.borrow().wrapping_add(tenant)
    }

    /// Takes a place among the held waits, or `None` when all are taken.
    pub fn admit(&self) -> Option<Slot> {
        let max = self.limits.max_waiting;
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.waiting.clone()))
    }

    /// Waits held now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Waits until the generation of `t` differs from `since`, at most `hold`: the
    /// generation then and whether it changed.
    pub async fn wait(&self, t: &TenantId, since: u64, hold: Duration) -> (u64, bool) {
        let mut global = self.global.subscribe();
        let mut tenant = self.tenant_sender(t).subscribe();
        let now = |g: &watch::Receiver<u64>, t: &watch::Receiver<u64>| {
            g.borrow().wrapping_add(*t.borrow())
        };
        let first = now(&global, &tenant);
        if first != since {
            return (first, true);
        }
        let changed = async {
            loop {
                // The senders live as long as the hub; an error cannot happen while a
                // request holds the state, and would only end the wait early.
                let r = tokio::select! {
                    r = global.changed() => r,
                    r = tenant.changed() => r,
                };
                let g = now(&global, &tenant);
                if r.is_err() || g != since {
                    return g;
                }
            }
        };
        match tokio::time::timeout(hold, changed).await {
            Ok(g) => (g, g != since),
            Err(_) => (now(&global, &tenant), false),
        }
    }

    /// Seconds a refused agent should wait: around the hold time, jittered so a refused
    /// crowd does not come back together.
    pub fn retry_after(&self) -> u64 {
        let base = self.limits.long_poll.as_secs().max(2);
        base / 2 + rand::random::<u64>() % (base + 1)
    }
}

/// `POST /v1/agent/wait` (issue 10, point 6): held until something changes for the
/// caller's tenant or the hold ends. Signed like a check-in; the admission check comes
/// first, so a refused wait costs no database work.
#[utoipa::path(
    post,
    path = "/v1/agent/wait",
    tag = "agent",
    request_body = patchday_types::api::WaitRequest,
    responses(
        (status = 200, description = "Something changed for the caller's tenant (`wake`), or the hold ended", body = patchday_types::api::WaitAnswer),
        (status = 503, description = "Too many waits held: retry after `retry_after_seconds` (also in `Retry-After`)", body = patchday_types::api::WaitAnswer)
    )
)]
pub async fn wait(State(s): State<AppState>, req: Request) -> Response {
    let push = s.push.clone();
    let Some(slot) = push.admit() else {
        let retry = push.retry_after();
        tracing::debug!(
            waiting = push.waiting(),
            retry,
            "push: too many waits held, refusing one"
        );
        let mut resp = (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(WaitAnswer {
                generation: 0,
                wake: false,
                retry_after_seconds: retry,
                spread_seconds: 0,
            }),
        )
            .into_response();
        resp.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(retry));
        return resp;
    };
    let SignedHost { who, body: ask, .. } =
        match SignedHost::<WaitRequest>::from_request(req, &s).await {
            Ok(b) => b,
            Err(refused) => return refused,
        };
    // The answer streams: a newline every heartbeat while held (JSON allows whitespace
    // before the value, so any agent reads it as before), then the answer. A heartbeat
    // that cannot be written means the agent is gone: the wait and its slot end there.
    // Issue 10: an agent that waits again has ended its run (paced wakes).
    s.admission.run_ended(&who.tenant, &who.host);
    let limits = push.limits();
    let admission = s.admission.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    tokio::spawn(async move {
        let held = push.wait(&who.tenant, ask.since, limits.long_poll);
        let mut beat = tokio::time::interval_at(
            tokio::time::Instant::now() + limits.heartbeat,
            limits.heartbeat,
        );
        let Some((generation, wake)) = with_heartbeat(held, &mut beat, &tx).await else {
            return;
        };
        // Issue 10: a woken agent is answered when this server has room for its run, in
        // the order the waits were woken (`admission.rs`, paced wakes); the heartbeat
        // goes on meanwhile, and an agent that leaves gives up its turn.
        if wake
            && with_heartbeat(admission.released(&who.tenant, &who.host), &mut beat, &tx)
                .await
                .is_none()
        {
            return;
        }
        // The place is free before the answer leaves: whoever reads it may wait again.
        drop(slot);
        let answer = WaitAnswer {
            generation,
            wake,
            retry_after_seconds: 0,
            // The server paces the runs itself: each starts at once.
            spread_seconds: 0,
        };
        if let Ok(body) = serde_json::to_vec(&answer) {
            let _ = tx.send(body).await;
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    (
        [(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

/// Runs `work` while sending a newline every `beat`: its result, or `None` when a
/// newline could not be written (the agent is gone).
async fn with_heartbeat<T>(
    work: impl std::future::Future<Output = T>,
    beat: &mut tokio::time::Interval,
    tx: &tokio::sync::mpsc::Sender<Vec<u8>>,
) -> Option<T> {
    tokio::pin!(work);
    loop {
        tokio::select! {
            r = &mut work => return Some(r),
            _ = beat.tick() => {
                if tx.send(b"\n".to_vec()).await.is_err() {
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::sync::Arc;

    fn t(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    #[tokio::test]
    async fn a_stale_since_answers_at_once_and_a_bump_wakes_only_its_tenant() {
        let hub = Arc::new(PushHub::new(1000, PushLimits::default()));
        let (acme, other) = (t("acme"), t("other"));
        assert_eq!(hub.generation(&acme), 1000);
        // Stale: at once, even with an hour's hold.
        assert_eq!(
            hub.wait(&acme, 0, Duration::from_secs(3600)).await,
            (1000, true)
        );
        // Current: held until the tenant's bump.
        let h = hub.clone();
        let a = acme.clone();
        let held = tokio::spawn(async move { h.wait(&a, 1000, Duration::from_secs(3600)).await });
        let o = hub.clone();
        let b = other.clone();
        let unmoved = tokio::spawn(async move { o.wait(&b, 1000, Duration::from_secs(1)).await });
        tokio::task::yield_now().await;
        hub.tenant(&acme);
        assert_eq!(held.await.unwrap(), (1001, true));
        assert_eq!(
            unmoved.await.unwrap(),
            (1000, false),
            "another tenant's bump wakes nobody here"
        );
        // Everyone's bump reaches every tenant.
        let o = hub.clone();
        let b = other.clone();
        let woken = tokio::spawn(async move { o.wait(&b, 1000, Duration::from_secs(3600)).await });
        tokio::task::yield_now().await;
        hub.everyone();
        assert_eq!(woken.await.unwrap(), (1001, true));
        assert_eq!(hub.generation(&acme), 1002);
    }

    /// Issue 12, point 5: what the relay takes to the store, and what it brings back.
    #[tokio::test]
    async fn bumps_coalesce_for_the_store_and_adopted_generations_wake_but_never_fall() {
        let acme = t("acme");
        let hub = Arc::new(PushHub::starting(
            1000,
            [(acme.clone(), 7)],
            PushLimits::default(),
        ));
        assert_eq!(
            hub.generation(&acme),
            1007,
            "a tenant starts where the store had it"
        );
        assert_eq!(hub.generation(&t("other")), 1000);
        // A hundred bumps of one tenant and two of everyone: two scopes to raise, each at
        // its generation now.
        for _ in 0..100 {
            hub.tenant(&acme);
        }
        hub.everyone();
        hub.everyone();
        let mut unsent = hub.take_unsent();
        unsent.sort();
        assert_eq!(
            unsent,
            [
                (PushScope::Everyone, 1002),
                (PushScope::Tenant(acme.clone()), 107)
            ]
        );
        assert!(hub.take_unsent().is_empty(), "taken once");
        // Given back after a failed raise: taken again, at the generation then.
        hub.requeue_unsent([PushScope::Everyone]);
        assert_eq!(hub.take_unsent(), [(PushScope::Everyone, 1002)]);

        // Another replica's higher generation wakes a held wait here...
        let h = hub.clone();
        let a = acme.clone();
        let held = tokio::spawn(async move { h.wait(&a, 1109, Duration::from_secs(3600)).await });
        tokio::task::yield_now().await;
        assert!(hub.adopt(&PushScope::Tenant(acme.clone()), 200));
        assert_eq!(held.await.unwrap(), (1202, true));
        // ...a lower or equal one changes nothing (a late announcement of an old raise),
        assert!(!hub.adopt(&PushScope::Tenant(acme.clone()), 150));
        assert!(!hub.adopt(&PushScope::Everyone, 1002));
        assert_eq!(hub.generation(&acme), 1202);
        // ...and an adopted generation is not sent back to the store.
        assert!(hub.take_unsent().is_empty());
    }

    #[test]
    fn admission_stops_at_the_cap_and_frees_on_drop() {
        let hub = PushHub::new(
            1,
            PushLimits {
                long_poll: Duration::from_secs(50),
                max_waiting: 2,
                heartbeat: DEFAULT_HEARTBEAT,
            },
        );
        let a = hub.admit().unwrap();
        let _b = hub.admit().unwrap();
        assert!(hub.admit().is_none());
        drop(a);
        assert!(hub.admit().is_some());
        let r = hub.retry_after();
        assert!((25..=76).contains(&r), "{r}");
    }

    #[test]
    fn long_polls_stay_below_the_connection_cap() {
        let l = PushLimits::default().within(10_000);
        assert_eq!(l.max_waiting, 9_000);
        assert_eq!(PushLimits::default().within(100).max_waiting, 84);
        let small = PushLimits {
            max_waiting: 10,
            ..PushLimits::default()
        };
        assert_eq!(small.within(10_000).max_waiting, 10);
    }
}
