//! Mail attachment filtering for Postfix (issue 14, point 4): a milter that applies a
//! per-tenant attachment policy by content, opens archives within bounds, finds Office
//! macros and encrypted archives, scans with clamd, and answers accept, reject (5xx with
//! the reason), quarantine, or tempfail (4xx) when it cannot be sure.
//!
//! Owns: the policy file, inspection, verdicts, the quarantine
//! directory and the verdict log (the clamd client is `patchday-clamd`, shared with the
//! agent's folder scanner). Must not touch: the Patchday database (verdicts go to
//! the server over HTTP), Postfix's queue (only `sendmail` re-injects).

pub mod content;
pub mod inspect;
pub mod milter;
pub mod policy;
pub mod quarantine;
pub mod record;
pub mod samples;
pub mod verdict;

pub use milter::{serve, Engine, Report};
