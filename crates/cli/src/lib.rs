//! The `patchday` command: runs the server, talks to it over its HTTP API like
//! `kubectl` or `fleetctl` do (server URL and token from flags, environment or a
//! config file), publishes the catalog offline with key files, and runs the demo.

pub mod api;
pub mod catalog;
// Issue 13, point 1: baselines (policy files published as updates).
pub mod baseline;
// Issue 11, point 6: the customer-ready report (HTML and PDF).
pub mod customer_report;
pub mod demo;
// Issue 14, points 2 and 3: compliance-gated access for web apps and the network edge.
pub mod gate;
// Issue 10, point 2: groups joined by rules on host facts.
pub mod group_rules;
pub mod keys;
// Issue 11, point 7: completions and man pages from the CLI definitions.
pub mod manuals;
// Issue 9, point 1: archive sync.
pub mod mirror;
// Issue 14, point 4: mail attachment filtering for Postfix.
pub mod milter;
// Issue 11, point 5: notification targets and the delivery log.
pub mod notify;
pub mod render;
// Issue 10, points 2 and 3: rings, evidence gates, halt and resume.
pub mod rings;
