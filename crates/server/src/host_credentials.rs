//! Host credentials remembered for a few seconds (issue 10, point 8).
//!
//! Every agent request names its host by a credential, and a rollout's requests came at
//! thousands a second: the lookup (`hosts.credential_hash`, then the host's signing key)
//! was the first read of each request, and with commits arriving every few milliseconds
//! SQLite had emptied the read connection's page cache each time, so it read its pages
//! again. A profile of a 10,000-host rollout put 8% of the server's CPU there. A host's
//! credential and its key never change (a key is set once, a credential lives as long as
//! its host row), so only a removal can make an answer wrong:
//!
//! - on this server, removing a host or a tenant forgets every remembered credential
//!   before the removal is answered ([`HostCredentials::forget_all`]): the credential
//!   stops working at once, as before;
//! - on another replica (or after another process changed the database), a removed
//!   host's credential is remembered at most [`REMEMBER`]. A signed body is refused at
//!   once even then (its sequence number is written to the host's row, which is gone);
//!   only reads of its own tenant's catalog and payloads may pass for those seconds.

use patchday_types::{HostId, TenantId};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a looked-up credential is trusted without reading the database again.
pub const REMEMBER: Duration = Duration::from_secs(10);

/// Most credentials remembered; past it, the stale ones go, or all of them.
const MOST: usize = 200_000;

/// A host as its credential names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownHost {
    /// Its tenant.
    pub tenant: TenantId,
    /// The host.
    pub host: HostId,
    /// Its signing key (hex), once read: it never changes after it is set.
    pub public_key: Option<String>,
}

/// Credential hashes (never credentials) to hosts, each with when it was read.
#[derive(Default)]
pub struct HostCredentials {
    known: Mutex<Known>,
}

#[derive(Default)]
struct Known {
    hosts: HashMap<String, (KnownHost, Instant)>,
    /// Counts [`HostCredentials::forget_all`]: a read that began before one is not kept.
    epoch: u64,
}

impl HostCredentials {
    /// The host `hash` named when it was read less than [`REMEMBER`] ago.
    pub fn get(&self, hash: &str, now: Instant) -> Option<KnownHost> {
        let known = self.lock();
        known
            .hosts
            .get(hash)
            .filter(|(_, at)| now.saturating_duration_since(*at) < REMEMBER)
            .map(|(h, _)| h.clone())
    }

    /// Where a read of the database begins: pass it to [`HostCredentials::put`].
    pub fn begin(&self) -> (Instant, u64) {
        (Instant::now(), self.lock().epoch)
    }

    /// Remembers what a read begun at `began` ([`HostCredentials::begin`]) said of
    /// `hash`, unless hosts were removed since it began (it may have seen one that is
    /// gone now).
    pub fn put(&self, hash: &str, host: KnownHost, began: (Instant, u64)) {
        let (at, epoch) = began;
        let mut known = self.lock();
        if known.epoch != epoch {
            return;
        }
        if known.hosts.len() >= MOST && !known.hosts.contains_key(hash) {
            known
                .hosts
                .retain(|_, (_, t)| at.saturating_duration_since(*t) < REMEMBER);
            if known.hosts.len() >= MOST {
                known.hosts.clear();
            }
        }
        known.hosts.insert(hash.to_string(), (host, at));
    }

    /// Adds the signing key read for `hash`, keeping when the entry was read.
    pub fn add_key(&self, hash: &str, public_key: &str) {
        if let Some((h, _)) = self.lock().hosts.get_mut(hash) {
            h.public_key = Some(public_key.to_string());
        }
    }

    /// Forgets `hash` (its host was not where the entry said).
    pub fn forget(&self, hash: &str) {
        self.lock().hosts.remove(hash);
    }

    /// Forgets every credential, and every read under way: called when hosts are
    /// removed, after the removal committed and before it is answered.
    pub fn forget_all(&self) {
        let mut known = self.lock();
        known.hosts.clear();
        known.epoch += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn host(key: Option<&str>) -> KnownHost {
        KnownHost {
            tenant: "acme".parse().unwrap(),
            host: "h-1".parse().unwrap(),
            public_key: key.map(str::to_string),
        }
    }

    #[test]
    fn remembered_for_a_while_then_read_again_and_forgotten_on_removal() {
        let c = HostCredentials::default();
        let began = c.begin();
        let t0 = began.0;
        assert_eq!(c.get("abc", t0), None);
        c.put("abc", host(None), began);
        assert_eq!(c.get("abc", t0 + Duration::from_secs(1)), Some(host(None)));
        c.add_key("abc", "00ff");
        assert_eq!(c.get("abc", t0), Some(host(Some("00ff"))));
        // The key keeps the entry's age: it is read again after REMEMBER all the same.
        assert_eq!(c.get("abc", t0 + REMEMBER), None);
        c.add_key("other", "11");
        assert_eq!(c.get("other", t0), None, "a key alone is never an entry");
        c.forget("abc");
        assert_eq!(c.get("abc", t0), None);
        c.put("abc", host(None), began);
        c.put("def", host(None), began);
        c.forget_all();
        assert_eq!((c.get("abc", t0), c.get("def", t0)), (None, None));
        // A read that began before the removal is not kept: it may have seen the host.
        c.put("abc", host(None), began);
        assert_eq!(c.get("abc", t0), None);
        c.put("abc", host(None), c.begin());
        assert!(c.get("abc", Instant::now()).is_some());
    }
}
