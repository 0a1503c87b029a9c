//! Signs updates into a catalog directory with key files: the one signing path shared by
//! `patchday catalog add-*`, `patchday mirror run` and the server's scheduled mirror
//! (`patchday server --mirror-every`, issue 9, point 1).
//!
//! Owns: the update document a publisher signs ([`update::add_update`]), payload release
//! counters, the delegated and per-tenant roles that sign ([`update::DelegatedSigner`],
//! [`update::tenant_role`]), the mirror's [`mirror::CatalogPublisher`], dropping superseded
//! updates ([`prune::prune`], issue 10, point 7), and packing a catalog for intake
//! ([`pack::pack`]).
//!
//! Must not touch: the server's store, the network, or the clock (every call takes `now`).

pub mod mirror;
pub mod pack;
pub mod prune; // issue 10, point 7: superseded updates leave the catalog
pub mod update;

pub use mirror::CatalogPublisher;
pub use update::{
    add_update, default_role_paths, delegate, role_target_name, tenant_role, DelegatedSigner,
    UpdateContent, UpdateOptions,
};
