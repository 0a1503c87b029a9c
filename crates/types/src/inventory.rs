//! What an agent reports about its host: the facts applicability is computed from.

use serde::{Deserialize, Serialize};

/// One package that dpkg reports as installed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstalledPackage {
    /// Binary package name.
    pub name: String,
    /// Binary version as dpkg reports it.
    pub version: String,
    /// Architecture (`amd64`, `all`, ...).
    pub architecture: String,
    /// Source package name (equals `name` when dpkg records none).
    pub source: String,
    /// Source version (equals `version` when dpkg records none).
    pub source_version: String,
}

/// A bundle (software without a package manager) that the agent installed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstalledBundle {
    /// Bundle name from its manifest.
    pub name: String,
    /// Installed version, compared with Debian version ordering.
    pub version: String,
}

/// Issue 13, point 1: a baseline the agent applied (and keeps applied): the version the
/// server's applicability compares, like a bundle's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppliedBaseline {
    /// Baseline name from its policy file.
    pub name: String,
    /// Applied version, compared with Debian version ordering.
    pub version: String,
}

/// The `os-release` fields that matter for applicability and support dates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OsRelease {
    /// `ID`, for example `debian`.
    pub id: String,
    /// `VERSION_ID`, for example `12`.
    pub version_id: String,
    /// `VERSION_CODENAME`, for example `bookworm`.
    pub version_codename: String,
    /// `PRETTY_NAME`.
    pub pretty_name: String,
}

/// Everything a host reports at check-in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Inventory {
    /// The host's own name.
    pub hostname: String,
    /// Parsed `/etc/os-release`.
    pub os: OsRelease,
    /// dpkg's native architecture.
    pub architecture: String,
    /// `uname -r` of the running kernel.
    pub kernel_running: String,
    /// Whether `/run/reboot-required` exists.
    pub reboot_required: bool,
    /// Packages dpkg reports as installed (`install ok installed`).
    pub packages: Vec<InstalledPackage>,
    /// Packages dpkg lists as present but not fully installed (a failed or killed
    /// install): whatever their version, they still need the update.
    #[serde(default)]
    pub unfinished: Vec<InstalledPackage>,
    /// Bundles installed by the agent.
    #[serde(default)]
    pub bundles: Vec<InstalledBundle>,
    /// Issue 13, point 1: baselines applied by the agent (and enforced at its last run).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baselines: Vec<AppliedBaseline>,
    /// dpkg's own words when its database is not clean (`dpkg --audit`): the host is
    /// **broken** until repaired, whatever its updates say (issue 9, point 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpkg_broken: Option<String>,
}

impl Inventory {
    /// The installed package with this name and an architecture compatible with `arch`.
    pub fn package(&self, name: &str, arch: &str) -> Option<&InstalledPackage> {
        self.packages.iter().find(|p| {
            p.name == name && (arch == "all" || p.architecture == "all" || p.architecture == arch)
        })
    }
    /// Whether dpkg lists this package as half-installed or half-configured.
    pub fn is_unfinished(&self, name: &str, arch: &str) -> bool {
        self.unfinished.iter().any(|p| {
            p.name == name && (arch == "all" || p.architecture == "all" || p.architecture == arch)
        })
    }
    /// Whether a payload built for `arch` can go on this host: `all`, the native
    /// architecture, or a foreign one this package is already installed for (multiarch).
    /// An inventory that does not say its architecture fits everything (the agent, which
    /// always knows, checks again).
    pub fn fits_architecture(&self, package: &str, arch: &str) -> bool {
        arch == "all"
            || self.architecture.is_empty()
            || self.architecture == arch
            || self
                .packages
                .iter()
                .chain(&self.unfinished)
                .any(|p| p.name == package && p.architecture == arch)
    }
    /// Issue 13, point 1: the applied baseline with this name.
    pub fn baseline(&self, name: &str) -> Option<&AppliedBaseline> {
        self.baselines.iter().find(|b| b.name == name)
    }
    /// The installed bundle with this name.
    pub fn bundle(&self, name: &str) -> Option<&InstalledBundle> {
        self.bundles.iter().find(|b| b.name == name)
    }
}
