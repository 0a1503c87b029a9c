//! Issue 10, point 6 (push): between runs the agent holds `POST /v1/agent/wait`, so it
//! learns within a moment that an approval, a ring, a window or the catalog changed,
//! instead of at its next poll. Polling stays the fallback: whatever happens to the
//! waits (a server without push, refusals, errors), the agent runs again when its
//! interval is over. Failed runs and connection errors back off exponentially with
//! jitter, so a fleet that lost its server does not come back all at once.

use crate::run::AgentConfig;
use crate::state::StateDir;
use patchday_types::api::{WaitAnswer, WaitRequest};
use reqwest::StatusCode;
use std::time::Duration;
use tokio::time::Instant;

/// How long the agent reads a wait's answer: above any hold the server chooses (it
/// holds at most 300 s), so only a dead connection runs into it.
const WAIT_READ_TIMEOUT: Duration = Duration::from_secs(360);

/// Largest wait answer read (it is a few numbers).
const MAX_WAIT_ANSWER: usize = 4 << 10;

/// Why [`until_work`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Woken {
    /// The server said something changed for this host.
    Pushed,
    /// The poll interval is over (the fallback).
    Interval,
}

/// The `attempt`-th delay (1, 2, ...) of an exponential back-off from `base` up to
/// `cap`, jittered into its upper half so that a fleet spreads out without anyone
/// coming back much sooner than `base`.
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let base = base.max(Duration::from_secs(1));
    let cap = cap.max(base);
    let shift = attempt.saturating_sub(1).min(20);
    let full = base.saturating_mul(1 << shift).min(cap);
    let half = full / 2;
    let span = u64::try_from((full - half).as_millis()).unwrap_or(u64::MAX);
    half + Duration::from_millis(rand::random::<u64>() % (span + 1))
}

/// The poll interval with up to a tenth of jitter added (the fallback's spread).
pub fn jittered(interval: Duration) -> Duration {
    let tenth = u64::try_from((interval / 10).as_millis()).unwrap_or(u64::MAX);
    interval + Duration::from_millis(rand::random::<u64>() % (tenth + 1))
}

/// Most jitter added to a run that falls due (a window opening): a fleet whose window
/// opens at 02:00 spreads over a minute, not over a tenth of the days it waited.
const DUE_JITTER: Duration = Duration::from_secs(60);

/// How long until the next run: the interval (jittered), or sooner when something the
/// last run left waiting falls due (one second after it, plus up to [`DUE_JITTER`]).
pub fn next_run(interval: Duration, due: Option<Duration>) -> Duration {
    match due {
        Some(d) if d < interval => {
            let spread = u64::try_from((d / 10).min(DUE_JITTER).as_millis()).unwrap_or(0);
            d + Duration::from_secs(1) + Duration::from_millis(rand::random::<u64>() % (spread + 1))
        }
        _ => jittered(interval),
    }
}

/// One wait, as the agent sees it.
enum Outcome {
    Answer(WaitAnswer),
    /// 503: too many held; come back after this long.
    Busy(Duration),
    /// The server has no `/v1/agent/wait` (an older server): poll only.
    Unsupported,
    /// Issue 12, point 5: the answer broke off after the server took the wait (the
    /// server, or the replica a load balancer chose, went away during the hold).
    Broken(anyhow::Error),
}

/// Most of the spread of the first reconnect after a hold broke off (issue 12, point 5).
const RECONNECT_SPREAD: Duration = Duration::from_secs(5);

/// The pause before the first reconnect after a hold broke off: at a random moment
/// within `retry` (at most [`RECONNECT_SPREAD`]), at least a quarter of a second, so the
/// agents a dead replica held come back spread out, and soon: through a load balancer a
/// live replica answers at once.
pub fn reconnect_pause(retry: Duration) -> Duration {
    let floor = Duration::from_millis(250);
    let spread = retry.min(RECONNECT_SPREAD).max(floor);
    let span = u64::try_from((spread - floor).as_millis()).unwrap_or(0);
    floor + Duration::from_millis(rand::random::<u64>() % (span + 1))
}

async fn wait_once(cfg: &AgentConfig, since: u64) -> anyhow::Result<Outcome> {
    let state = StateDir::open(&cfg.state_dir)?;
    let Some(id) = state.identity()? else {
        anyhow::bail!("not enrolled yet: nothing to wait for");
    };
    let mut long = cfg.clone();
    long.read_timeout = WAIT_READ_TIMEOUT.max(cfg.read_timeout);
    let client = crate::signed::host_client(&long, &state, &id)?;
    let resp = client
        .post_response("v1/agent/wait", &WaitRequest { since })
        .await?;
    match resp.status() {
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => Ok(Outcome::Unsupported),
        StatusCode::SERVICE_UNAVAILABLE => {
            let header = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let body = crate::client::decode_capped::<WaitAnswer>(resp, MAX_WAIT_ANSWER)
                .await
                .ok()
                .map(|a| a.retry_after_seconds);
            // A storage 503 has no Retry-After: back off a minute.
            let secs = header.or(body).unwrap_or(60).clamp(1, 3600);
            Ok(Outcome::Busy(Duration::from_secs(secs)))
        }
        status if status.is_success() => {
            // Held for up to the server's hold, with heartbeats: a body that breaks off
            // means the server went away, not that it refused.
            match crate::client::decode_capped(resp, MAX_WAIT_ANSWER).await {
                Ok(answer) => Ok(Outcome::Answer(answer)),
                Err(e) => Ok(Outcome::Broken(e)),
            }
        }
        _ => Ok(Outcome::Answer(
            crate::client::decode_capped(resp, MAX_WAIT_ANSWER).await?,
        )),
    }
}

/// The generation now, for the daemon's start (so its first wait does not wake at
/// once); 0 when the server cannot say.
pub async fn current_generation(cfg: &AgentConfig) -> u64 {
    match wait_once(cfg, 0).await {
        Ok(Outcome::Answer(a)) => a.generation,
        _ => 0,
    }
}

/// Holds waits until the server pushes (`Woken::Pushed`) or `interval` (already
/// jittered: [`next_run`]) is over; `since`
/// follows the generations the server names. `retry` is the back-off's first step after
/// a failed wait.
pub async fn until_work(
    cfg: &AgentConfig,
    since: &mut u64,
    interval: Duration,
    retry: Duration,
) -> Woken {
    let deadline = Instant::now() + interval;
    let mut errors: u32 = 0;
    // Issue 12, point 5: whether the last hold broke off (its quick retry is spent).
    let mut broke = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Woken::Interval;
        }
        let asked = Instant::now();
        let outcome = tokio::select! {
            o = wait_once(cfg, *since) => o,
            () = tokio::time::sleep(left) => return Woken::Interval,
        };
        let pause = match outcome {
            Ok(Outcome::Answer(a)) => {
                errors = 0;
                broke = false;
                let changed = a.generation != *since;
                *since = a.generation;
                if a.wake && changed {
                    // Issue 10: the server names the time it needs for everyone woken
                    // with this agent; start at a random moment within it.
                    if a.spread_seconds > 0 {
                        let spread = Duration::from_secs(a.spread_seconds.min(3600));
                        let pause = spread.mul_f64(rand::random::<f64>());
                        tracing::info!(
                            seconds = pause.as_secs(),
                            spread = spread.as_secs(),
                            "woken with many others: starting within the server's spread"
                        );
                        tokio::time::sleep(pause).await;
                    }
                    return Woken::Pushed;
                }
                // An answer that holds nothing (a misbehaving server or proxy) must
                // not make the agent spin.
                if asked.elapsed() >= Duration::from_secs(1) {
                    continue;
                }
                Duration::from_secs(1)
            }
            Ok(Outcome::Busy(after)) => {
                tracing::info!(
                    seconds = after.as_secs(),
                    "the server holds too many waits: waiting as it asks"
                );
                after
            }
            Ok(Outcome::Unsupported) => {
                tracing::info!("the server has no push (/v1/agent/wait): polling only");
                left
            }
            Ok(Outcome::Broken(e)) => {
                // Issue 12, point 5: the first break after a held wait is retried soon
                // (another replica behind the same URL takes the wait, with the same
                // `since`: it wakes this agent at once if anything changed meanwhile);
                // breaks in a row back off like any error.
                let pause = if errors == 0 && !broke {
                    broke = true;
                    reconnect_pause(retry)
                } else {
                    errors = errors.saturating_add(1);
                    backoff(errors, retry, interval)
                };
                tracing::warn!(
                    error = %format!("{e:#}"),
                    millis = pause.as_millis(),
                    "the held wait broke off (server or replica gone): waiting again after a short jittered pause"
                );
                pause
            }
            Err(e) => {
                errors = errors.saturating_add(1);
                let pause = backoff(errors, retry, interval);
                tracing::warn!(
                    error = %format!("{e:#}"),
                    seconds = pause.as_secs(),
                    "waiting for work failed: trying again after a jittered back-off"
                );
                pause
            }
        };
        tokio::time::sleep(pause.min(left)).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_run_falls_due_soon_after_its_moment_not_a_tenth_of_the_interval_later() {
        let hour = Duration::from_secs(3600);
        for _ in 0..200 {
            // A window opening in 3 days, with an hourly interval: the interval.
            let far = next_run(hour, Some(Duration::from_secs(3 * 86_400)));
            assert!(far >= hour && far <= hour + hour / 10, "{far:?}");
            // One opening in 20 minutes: a second after it, spread over at most a minute.
            let soon = next_run(hour, Some(Duration::from_secs(1200)));
            assert!(
                soon >= Duration::from_secs(1201) && soon <= Duration::from_secs(1261),
                "{soon:?}"
            );
            // Due now: a second later, spread over nothing.
            assert_eq!(next_run(hour, Some(Duration::ZERO)), Duration::from_secs(1));
            assert!(next_run(hour, None) >= hour);
        }
    }

    #[test]
    fn a_broken_hold_is_retried_within_seconds_spread_out() {
        let spread: std::collections::BTreeSet<Duration> = (0..200)
            .map(|_| {
                let p = reconnect_pause(Duration::from_secs(30));
                assert!(
                    p >= Duration::from_millis(250) && p <= Duration::from_secs(5),
                    "{p:?}"
                );
                p
            })
            .collect();
        assert!(spread.len() > 50, "jittered: {spread:?}");
        for _ in 0..50 {
            let p = reconnect_pause(Duration::from_secs(2));
            assert!(p >= Duration::from_millis(250) && p <= Duration::from_secs(2));
        }
        assert_eq!(
            reconnect_pause(Duration::from_millis(1)),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_in_the_upper_half() {
        let (base, cap) = (Duration::from_secs(30), Duration::from_secs(3600));
        for _ in 0..200 {
            let first = backoff(1, base, cap);
            assert!(
                first >= Duration::from_secs(15) && first <= base,
                "{first:?}"
            );
            let third = backoff(3, base, cap);
            assert!(
                third >= Duration::from_secs(60) && third <= Duration::from_secs(120),
                "{third:?}"
            );
            let late = backoff(40, base, cap);
            assert!(late >= cap / 2 && late <= cap, "{late:?}");
        }
        let spread: std::collections::BTreeSet<Duration> =
            (0..50).map(|_| backoff(2, base, cap)).collect();
        assert!(spread.len() > 10, "jittered: {spread:?}");
        let j = jittered(Duration::from_secs(100));
        assert!(j >= Duration::from_secs(100) && j <= Duration::from_secs(110));
    }
}
