//! API types shared by the Patchday server, agent and CLI.
//!
//! This crate owns the wire vocabulary (ids, update documents, inventory, states,
//! API requests and responses, error codes). It holds no logic beyond parsing, display and
//! the one wildcard matcher ([`glob`]), and it must not depend on any other Patchday crate.

pub mod api;
pub mod glob;
pub mod ids;
pub mod inventory;
pub mod notify; // issue 11, point 5
pub mod secret;
pub mod update;

pub use ids::{GroupId, HostId, IdError, TenantId, UpdateId};
pub use inventory::{AppliedBaseline, InstalledBundle, InstalledPackage, Inventory, OsRelease};
pub use secret::Secret;
pub use update::{
    Classification, PayloadKind, PayloadRef, Release, Severity, TargetCustom, UpdateDocument,
    UpdateState, UpstreamEvidence, YearMonth,
};
