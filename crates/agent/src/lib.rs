//! The Patchday agent: what runs on a managed host.
//!
//! One run: enrol if needed → report inventory → receive assignments → verify the
//! catalog against the pinned root → for each assigned update, check that the
//! update document and every payload agree with the signed catalog → download
//! (resumable) → check length and sha256 → install (dpkg or bundle) → verify with
//! dpkg itself → report each state → report the inventory again.
//!
//! Everything it says about its host (check-ins, state reports, audit facts, the
//! outcome of a run) is signed with the host's own key, made at enrolment ([`signed`]).
//!
//! It carries no server code and never decides what is approved.

// Issue 14, points 1 and 2: compliance access tokens and request proofs.
pub mod access;
pub mod cli;
pub mod client;
pub mod config_file; // issue 11, point 7: --config FILE, keys from the flags
pub mod download;
pub mod install;
pub mod inventory;
pub mod push; // issue 10, point 6: long-poll waits, back-off
pub mod run;
pub mod scan; // issue 14, point 5: download and messenger folders scanned with clamd
pub mod signed;
pub mod state;
mod take_back; // issue 10, point 3: decline with removal
pub mod window; // issue 10, point 5: maintenance windows, deadlines, reboots

pub use run::{run_once, AgentConfig, RunSummary};
