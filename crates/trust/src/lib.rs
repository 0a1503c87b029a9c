//! Patchday's catalog trust: keys, signing and verification of the TUF catalog.
//!
//! The catalog is a TUF repository (Uptane's image repository) with consistent snapshots and
//! flat target names: update documents `update-<ID>.json` and payload files such as
//! `libexpat1_2.5.0-1+deb12u5_amd64.deb`, each with signed `custom` JSON.
//!
//! - Publisher: [`generate_keys`] / [`generate_keyset`] (root k-of-n, default 2-of-3),
//!   [`init_catalog`], [`add_targets`], [`resign_timestamp`], [`rotate_root`] (all keys) and
//!   [`rotate_role`] (one role's keys); [`check_key_dir`] for key file permissions. Signing times are parameters (`now`).
//! - Server and agent: [`verify_repository`] (local directories), [`load_remote`] (any
//!   [`transport::Transport`], at a [`LoadTime`]), [`check_payload`] / [`read_verified_target`]
//!   for target files.
//! - Agent: [`decision::decide`], the whole security decision on one assignment as a pure
//!   function with one [`decision::Refusal`] per check.
//!   Both run [`client::Updater`], the crate's own TUF client (specification section 5, checked
//!   by the public conformance suite through the `patchday-tuf-client` binary). Time is a
//!   parameter except in [`verify_repository`]: see [`verify`](crate::verify).
//!
//! This crate does no HTTP, no storage of its own beyond the files it is pointed at, and no
//! installing.

#![warn(missing_docs)]

// issue 14, points 1 and 2: compliance access tokens and their proof of possession.
pub mod access;
pub mod client;
pub mod decision;
pub mod director;
// issue 10, point 3: taking a declined update back.
pub mod removal;
// issue 9, point 5: every role's expiry.
pub mod expiry;
// issue 8, finding 8: host-signed check-ins, reports and facts.
mod error;
pub mod host_signature;
mod keys;
mod names;
mod publish;
pub mod transport;
mod verified_signatures;
pub mod verify;

pub use error::TrustError;
pub use keys::{
    check_key_dir, check_key_dir_mode, check_key_file_mode, generate_keys, generate_keyset,
    public_key_id, KeyFileReport, KeyPaths, Role, DEFAULT_ROOT_KEYS, DEFAULT_ROOT_THRESHOLD,
    MAX_ROOT_KEYS,
};
pub use names::{check_target_name, MAX_TARGET_NAME_LEN};
pub use publish::{
    add_targets, add_targets_as, catalog_listing, catalog_targets, delegate_role, delegated_roles,
    init_catalog, refresh_targets, remove_targets, resign_timestamp, rotate_role, rotate_root,
    sign_online_timestamp, stored_target_name, CatalogVersion, Delegation, Expiries, ListedTarget,
    NewTarget, OnlineTimestamp, Removal,
};
pub use verify::{
    check_bytes, check_payload, check_target_file, load_remote, read_verified_target,
    verify_metadata_at, verify_repository_at, LoadTime, TargetDigest, TargetInfo, VerifiedCatalog,
    MAX_METADATA_FILE,
};
