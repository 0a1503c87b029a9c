//! Patchday gates (issue 14, points 2 and 3): compliance-gated access for web
//! applications ([`http`]: nginx `auth_request`, Envoy `ext_authz`) and at the network
//! edge ([`nft`]: an nftables quarantine set), both kept current from the server's
//! per-tenant access list ([`follow`]).
//!
//! This crate decides and writes nftables documents; it reads no clock (callers pass
//! `now`), opens no database, and reaches the server only through
//! [`follow::AccessSource`].

#![warn(missing_docs)]

pub mod follow;
pub mod http;
pub mod nft;
