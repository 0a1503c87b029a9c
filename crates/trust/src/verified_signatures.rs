//! Signatures this process has already found valid (issue 10).
//!
//! A TUF client checks its trusted metadata again on every run (the trusted root by its
//! own keys, the local timestamp, snapshot and targets as rollback references), and a
//! long-running agent runs often: the same signatures over the same bytes, verified
//! again each time. The fleet simulator, 10,000 agents in one process, spent ~15% of its
//! CPU there. A success is remembered under the SHA-256 of everything it depends on
//! (algorithm, public key, signature, message, each length-prefixed); a later check of
//! the same four is answered from memory. Failures are never remembered. Finding a
//! remembered entry for different inputs would need a SHA-256 collision.

use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

/// Entries kept before the set starts over (32 bytes each: 256 KiB at most).
const CAPACITY: usize = 8192;

fn remembered() -> &'static Mutex<HashSet<[u8; 32]>> {
    static S: OnceLock<Mutex<HashSet<[u8; 32]>>> = OnceLock::new();
    S.get_or_init(Default::default)
}

fn digest(algorithm: &str, public: &[u8], signature: &[u8], message: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [algorithm.as_bytes(), public, signature, message] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// Whether `check` accepts (`algorithm`, `public`, `signature`, `message`), asking it only
/// when this process has not accepted exactly these before.
pub(crate) fn valid(
    algorithm: &str,
    public: &[u8],
    signature: &[u8],
    message: &[u8],
    check: impl FnOnce() -> bool,
) -> bool {
    let key = digest(algorithm, public, signature, message);
    let lock = || remembered().lock().unwrap_or_else(|p| p.into_inner());
    if lock().contains(&key) {
        return true;
    }
    if !check() {
        return false;
    }
    let mut set = lock();
    if set.len() >= CAPACITY {
        set.clear();
    }
    set.insert(key);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_success_on_exactly_the_same_inputs_is_remembered() {
        let mut asked = 0;
        let mut ask = |answer: bool| {
            asked += 1;
            answer
        };
        assert!(!valid("t-ed25519", b"k", b"s", b"m", || ask(false)));
        assert!(
            !valid("t-ed25519", b"k", b"s", b"m", || ask(false)),
            "a failure is asked again"
        );
        assert!(valid("t-ed25519", b"k", b"s", b"m", || ask(true)));
        assert!(
            valid("t-ed25519", b"k", b"s", b"m", || ask(false)),
            "a success is remembered"
        );
        assert_eq!(asked, 3);
        // Any part different is a new question; moving a byte between parts too.
        assert!(!valid("t-ed25519", b"k", b"s", b"M", || false));
        assert!(!valid("t-ed25519", b"K", b"s", b"m", || false));
        assert!(!valid("t-ed25519", b"k", b"S", b"m", || false));
        assert!(!valid("t-ecdsa", b"k", b"s", b"m", || false));
        assert!(!valid("t-ed25519", b"ks", b"", b"m", || false));
    }
}
