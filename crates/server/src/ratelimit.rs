//! Failed logins per source address (issue 8, finding 9): each failure is logged with
//! the address, and an address with too many failures within a window is answered
//! 429 with `Retry-After` until the window ends, before its credential is even
//! looked up. Successful logins are not limited.

use jiff::{SignedDuration, Timestamp};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Failures an address may have within one window.
pub const MAX_FAILURES: u32 = 20;
/// The window.
pub const WINDOW: SignedDuration = SignedDuration::from_secs(60);
/// Addresses remembered at most (the oldest windows are dropped first).
const MAX_TRACKED: usize = 100_000;

/// Failed-login counts by address; `now` is always a parameter.
#[derive(Default)]
pub struct FailedLogins {
    by_addr: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Clone, Copy)]
struct Window {
    since: Timestamp,
    failures: u32,
}

impl FailedLogins {
    /// `Err(seconds)` to wait when `addr` is locked out at `now`.
    pub fn check(&self, addr: IpAddr, now: Timestamp) -> Result<(), u64> {
        let m = self.by_addr.lock().unwrap_or_else(|e| e.into_inner());
        match m.get(&addr) {
            Some(w) if w.failures >= MAX_FAILURES => {
                let left = (w.since + WINDOW).duration_since(now);
                if left.is_positive() {
                    Err(u64::try_from(left.as_secs()).unwrap_or(0).max(1))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed login from `addr` at `now`; returns the failures in its window.
    pub fn record(&self, addr: IpAddr, now: Timestamp) -> u32 {
        let mut m = self.by_addr.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_TRACKED && !m.contains_key(&addr) {
            m.retain(|_, w| now.duration_since(w.since) < WINDOW);
        }
        let w = m.entry(addr).or_insert(Window {
            since: now,
            failures: 0,
        });
        if now.duration_since(w.since) >= WINDOW {
            *w = Window {
                since: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
        w.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_locked_out_after_too_many_failures_until_its_window_ends() {
        let l = FailedLogins::default();
        let a: IpAddr = "192.0.2.7".parse().unwrap();
        let b: IpAddr = "192.0.2.8".parse().unwrap();
        let t0: Timestamp = "2026-12-08T02:00:00Z".parse().unwrap();
        for i in 1..=MAX_FAILURES {
            assert_eq!(l.check(a, t0), Ok(()));
            assert_eq!(l.record(a, t0), i);
        }
        assert_eq!(l.check(a, t0), Err(60));
        assert_eq!(l.check(a, t0 + SignedDuration::from_secs(45)), Err(15));
        assert_eq!(l.check(b, t0), Ok(()), "other addresses are not affected");
        let later = t0 + WINDOW;
        assert_eq!(l.check(a, later), Ok(()));
        assert_eq!(l.record(a, later), 1, "a new window starts afresh");
    }
}
