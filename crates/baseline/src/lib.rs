//! Baselines (issue 13): policy documents an operator writes, signed into the catalog like
//! an update's payload, that the agent applies, re-verifies on every run and repairs.
//!
//! This crate owns the policy model ([`policy`]: strict TOML, unknown keys refused), its
//! compilation to what the host needs ([`firewall`]: one nftables table as `nft -j` JSON,
//! built with serde), the host's accounts the compilation resolves names with
//! ([`accounts`]), running `nft` and reading back what the kernel holds ([`nft`]: apply,
//! drift fingerprint, per-rule counters, the previous ruleset for the lock-out guard) and
//! the operator's diff between two versions ([`diff`]), memory-protection profiles
//! ([`memory`]) and browser policy compiled to Chromium's and Firefox's enterprise policy
//! files ([`browser`]), and the download-folder scan the agent runs ([`scan`]: the
//! `[scan]` table and its folder globs).
//!
//! It must not touch: the network beyond running `nft`, the catalog, the server, the clock
//! (the agent's guard waits; this crate only says what to restore).

pub mod accounts;
pub mod browser;
pub mod diff;
pub mod firewall;
pub mod memory;
pub mod nft;
pub mod policy;
pub mod scan;

pub use policy::Policy;

/// Why a baseline could not be read, compiled or applied, worded for an admin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BaselineError {
    /// The policy file is not valid TOML or does not fit the model.
    #[error("baseline policy rejected: {0}")]
    Policy(String),
    /// The policy names something the host does not have (a user, a group).
    #[error("baseline cannot be compiled for this host: {0}")]
    Host(String),
    /// `nft` refused the ruleset or could not be run.
    #[error("nftables: {0}")]
    Nft(String),
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, BaselineError>;
