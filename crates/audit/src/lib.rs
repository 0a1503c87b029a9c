//! The security audit: collect facts about a host, run checks over them, and turn the
//! findings into a prioritised plan.
//!
//! Facts are collected once (`facts`, `elf`); every check is pure logic over facts
//! and imported advisory data, so the same checks run in `patchday audit` on one host
//! and on the server over the facts that agents report.

pub mod advisory;
pub mod browser;
pub mod checks;
pub mod cli;
pub mod command;
pub mod elf;
pub mod facts;
pub mod feeds;
pub mod fleet;
pub mod hardening;
pub mod model;
pub mod pending;
pub mod plan;
pub mod proposal;
pub mod report;
pub mod upload;
