//! Follows signed apt archives and turns what a fleet needs into Patchday updates.
//!
//! Owns: the mirror configuration ([`config`]), `InRelease` signature and freshness checks
//! ([`release`]), `Packages` index parsing ([`index`]), what to import ([`select`]), the
//! advisory ids and severity of an update ([`advisories`]), the state of past runs
//! ([`state`]) and the sync itself ([`sync`]), which reaches the network only through
//! [`fetch::Fetch`] and the catalog only through [`sync::Publish`]; and re-checks a
//! signed update against the upstream evidence it records ([`upstream`]).
//!
//! Must not touch: the catalog's keys or TUF metadata (the caller's `Publish` signs), the
//! server's store, or the clock (every check takes `now`).

pub mod advisories;
pub mod closure; // issue 9, point 4: the closure of new dependencies
pub mod config;
pub mod error;
pub mod fetch;
pub mod index;
pub mod release;
pub mod select;
pub mod state;
pub mod sync;
pub mod upstream; // issue 9, point 2: verify-upstream

pub use config::{MirrorConfig, SourceConfig};
pub use error::MirrorError;
pub use fetch::{Fetch, HttpFetch};
pub use select::Selection;
pub use sync::{MirroredUpdate, Publish, SyncOptions, SyncReport, UpstreamEvidence};
