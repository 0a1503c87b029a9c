//! Pure domain logic. Nothing here does I/O or reads the clock: `now` is a parameter.

pub mod applicability;
pub mod calendar;
pub mod catalog_expiry;
pub mod cleanup; // issue 10, point 7 (second half)
pub mod compliance;
pub mod dependency_payloads;
pub mod history;
pub mod rollout; // issue 10, points 2 and 3 (rings)
pub mod supersedence;
pub mod window; // issue 10, point 7 (first half)
