//! The server's one door to the wall clock.

use jiff::Timestamp;

/// Where the server gets `now`.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the binary edge: the only clock read in the server
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}
