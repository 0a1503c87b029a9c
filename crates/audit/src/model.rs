//! The audit's shared vocabulary: facts in, findings out.

use patchday_types::{InstalledPackage, OsRelease};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything the checks look at, collected from one host (or a `--root` image).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Facts {
    /// Host name.
    pub hostname: String,
    /// Parsed os-release.
    pub os: OsRelease,
    /// dpkg native architecture.
    pub architecture: String,
    /// Installed packages with source package and source version.
    pub packages: Vec<InstalledPackage>,
    /// Running kernel (`uname -r`); empty for an image.
    pub kernel_running: String,
    /// Kernel packages installed (`linux-image-*`) with versions.
    pub kernels_installed: Vec<String>,
    /// Whether /run/reboot-required exists.
    pub reboot_required: bool,
    /// Newest version of each binary package per apt suite found in the host's apt
    /// lists: suite (e.g. `bookworm-security`) -> package -> version.
    pub apt_suites: BTreeMap<String, BTreeMap<String, String>>,
    /// sysctl name (dotted) -> value; absent keys mean "unsupported by this kernel".
    pub sysctl: BTreeMap<String, String>,
    /// CPU advertises NX; None when unknown.
    pub cpu_nx: Option<bool>,
    /// Kernel command line.
    pub cmdline: String,
    /// ELF hardening of setuid binaries and binaries behind listening sockets.
    pub binaries: Vec<BinaryFacts>,
    /// A host firewall ruleset is loaded (nftables/iptables); None when unknown.
    pub firewall_loaded: Option<bool>,
    /// sshd effective settings (lower-case keys), empty when sshd is absent.
    pub sshd: BTreeMap<String, String>,
    /// Issue 13, point 5: the enterprise policy Chromium and Firefox read.
    #[serde(default)]
    pub browser_policy: BrowserPolicyFacts,
}

/// The enterprise policy the browsers of a host read, policy name to value.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BrowserPolicyFacts {
    /// Chromium's managed policy directory, merged as Chromium merges it.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub chromium: BTreeMap<String, serde_json::Value>,
    /// The `policies` object of the `policies.json` Firefox reads.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub firefox: BTreeMap<String, serde_json::Value>,
}

/// Hardening properties of one ELF file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BinaryFacts {
    /// Absolute path on the host.
    pub path: String,
    /// Why it was examined.
    pub reason: BinaryReason,
    /// The package that owns it, when dpkg knows.
    pub package: Option<String>,
    /// Position-independent executable.
    pub pie: bool,
    /// RELRO level.
    pub relro: Relro,
    /// A stack protector symbol is referenced.
    pub canary: bool,
    /// The stack is not executable.
    pub nx: bool,
    /// `_chk` fortified functions are referenced.
    pub fortify: bool,
    /// RPATH value, if any.
    pub rpath: Option<String>,
    /// RUNPATH value, if any.
    pub runpath: Option<String>,
}

/// Why a binary was examined.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum BinaryReason {
    /// It has the setuid or setgid bit.
    #[default]
    Setuid,
    /// A process running it has a listening socket.
    Listening,
    /// Named explicitly (benchmarks, `--elf`).
    Requested,
}

/// RELRO level of an ELF file.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Relro {
    /// No GNU_RELRO segment.
    #[default]
    None,
    /// GNU_RELRO without BIND_NOW.
    Partial,
    /// GNU_RELRO with BIND_NOW.
    Full,
}

/// The outcome of one check on one subject.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The check failed: something to do.
    Fail,
    /// The check passed.
    Pass,
    /// The check does not apply here (with a reason).
    NotApplicable,
}

/// What kind of check produced a finding.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// The release itself is past its support dates.
    EndOfLife,
    /// A package has limited or ended security support.
    PackageSupport,
    /// A newer version exists in a security suite.
    MissingUpdate,
    /// A known vulnerability affects an installed version.
    Vulnerability,
    /// A newer kernel is installed than the one running, or reboot-required is set.
    RebootNeeded,
    /// A kernel or binary hardening setting.
    Hardening,
}

/// One result of the audit.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Finding {
    /// Stable check id, e.g. `hardening.sysctl.kernel.randomize_va_space`.
    pub check: String,
    /// Kind of check.
    pub kind: FindingKind,
    /// Pass, fail or not applicable.
    pub outcome: Outcome,
    /// What was examined: a package, a binary path, a sysctl name.
    pub subject: String,
    /// Why this outcome, in one sentence.
    pub reason: String,
    /// What to do about it; empty when nothing.
    pub remediation: String,
    /// CVE or advisory ids involved.
    #[serde(default)]
    pub ids: Vec<String>,
    /// Severity when known (`critical`, `high`, ...).
    #[serde(default)]
    pub severity: Option<String>,
    /// In the CISA known-exploited catalog.
    #[serde(default)]
    pub known_exploited: bool,
    /// Source package and fixed version, when a package upgrade fixes it.
    #[serde(default)]
    pub fix: Option<Fix>,
}

/// A package upgrade that closes a finding.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Fix {
    /// Source package name.
    pub source: String,
    /// The version that fixes it.
    pub version: String,
}
