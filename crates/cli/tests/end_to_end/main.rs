//! The CLI's end-to-end tests: real servers, agents, dpkg, browsers and mail on this
//! machine. One test binary with a module per subject, not one binary per file: each
//! binary links the whole workspace (hundreds of megabytes with debug information), and
//! twenty-four of them once filled CI's disk. Lab-host tests still run one at a time
//! across all modules (`patchday_testkit::serial`), as they did across binaries.
//! Run one subject with `cargo test -p patchday-cli --test end_to_end rings::`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support {
    pub mod apt_archive;
    pub mod browser;
    pub mod clamd;
    pub mod nginx;
    pub mod recording_proxy;
}

mod agent_trust;
mod api;
mod backup;
mod baseline;
mod browser_policy;
mod compliance;
mod console;
mod decline_remove;
mod delegation;
mod demo_archive;
mod dependency_closure;
mod facts;
mod gate; // issue 14, points 1-3: compliance-gated access (nginx, nftables)
mod group_rules;
mod lifecycle;
mod milter;
mod mirror;
mod mirror_schedule;
mod object_store; // issue 12, point 3: payloads in an S3-compatible bucket
mod output_escaping;
mod packaging;
mod pipeline;
mod postgres;
mod push;
mod replicas;
mod resume;
mod rings;
mod safe_installs;
mod scan; // issue 14, point 5: download folders scanned with clamd
mod server_hardening;
mod signed_checkins;
mod windows;
