//! patchday-lab: throwaway Debian hosts and test/demo packages for `patchday demo` and the integration tests.
//!
//! - [`LabHost`]: an overlay of `/` in a private mount namespace (root) or a `dpkg --root` sandbox.
//! - [`DebSpec`] and [`build_deb`]: synthetic packages with changelogs, reboot requests and failing scripts.
//! - [`find_real_update`] and [`download_real_update`]: genuine Debian security updates via apt.
//! - [`require()`]: what a test needs from the machine; skipped outside CI, a failure in CI.
//!
//! This crate never changes the real machine's package state and never runs `apt-get update`.

mod deb;
mod error;
mod host;
mod process;
mod real;
pub mod require;

pub use deb::{build_deb, ChangelogItem, DebSpec, DEFAULT_CHANGELOG_DATE, LAB_MAINTAINER};
pub use error::LabError;
pub use host::{
    best_kind, cleanup_stale, DpkgHealth, HostKind, LabHost, DEFAULT_BASE, INBOX_IN_HOST,
};
pub use real::{
    download_real_update, find_real_update, RealUpdate, DEFAULT_REAL_UPDATE_CANDIDATES,
    DOWNLOAD_LIMIT,
};
pub use require::{
    postgres_url, require, s3_server, skip_or_fail, Requirement, TestS3, POSTGRES_VARIABLE,
    S3_VARIABLE,
};
