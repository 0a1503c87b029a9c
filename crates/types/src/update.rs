//! Updates (advisories), their payloads, release trains and per-host states.

use crate::ids::UpdateId;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What kind of change an update makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Classification {
    /// Fixes a vulnerability.
    Security,
    /// Fixes a critical non-security defect.
    Critical,
    /// Fixes a defect.
    Bugfix,
    /// Adds a feature.
    Feature,
}

/// How urgent an update is; ordered from most to least severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Exploitable remotely without interaction; patch now.
    Critical,
    /// Serious; patch on the next patch day.
    Important,
    /// Limited impact.
    Moderate,
    /// Minor.
    Low,
}

macro_rules! kebab_enum_str {
    ($ty:ty, $what:literal, $($variant:ident => $s:literal),+) => {
        impl $ty {
            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $s),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok(Self::$variant),)+
                    _ => Err(format!(concat!("unknown ", $what, " {:?}; expected one of: {}"), s, [$($s),+].join(", "))),
                }
            }
        }
    };
}

kebab_enum_str!(Classification, "classification",
    Security => "security", Critical => "critical", Bugfix => "bugfix", Feature => "feature");
kebab_enum_str!(Severity, "severity",
    Critical => "critical", Important => "important", Moderate => "moderate", Low => "low");

/// A calendar month, the name of a release train: `2026-12`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct YearMonth {
    /// Year, four digits.
    pub year: i16,
    /// Month, 1 to 12.
    pub month: i8,
}

// Issue 11, point 3: on the wire a release month is a string, `2026-12`.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for YearMonth {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9]{4}-[0-9]{2}$"))
            .description(Some(
                "A calendar month, the name of a release train: `YYYY-MM`",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for YearMonth {
    fn name() -> std::borrow::Cow<'static, str> {
        "YearMonth".into()
    }
}

impl fmt::Display for YearMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for YearMonth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid release month {s:?}: expected YYYY-MM, for example 2026-12");
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let year: i16 = y.parse().map_err(|_| bad())?;
        let month: i8 = m.parse().map_err(|_| bad())?;
        if !(1..=12).contains(&month) || !(1970..=9999).contains(&year) {
            return Err(bad());
        }
        Ok(Self { year, month })
    }
}

impl TryFrom<String> for YearMonth {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<YearMonth> for String {
    fn from(m: YearMonth) -> String {
        m.to_string()
    }
}

/// When an update may be approved: on a monthly train's patch day, or at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "lane", rename_all = "kebab-case")]
pub enum Release {
    /// Waits for the patch day of this month, in each tenant's time zone.
    Train {
        /// The train's month.
        month: YearMonth,
    },
    /// Skips the wait and every deferral; the reason is recorded.
    Emergency {
        /// Why this update cannot wait for patch day.
        reason: String,
    },
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Release::Train { month } => write!(f, "train {month}"),
            Release::Emergency { .. } => f.write_str("emergency"),
        }
    }
}

/// How a payload is installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum PayloadKind {
    /// A Debian binary package installed with dpkg.
    Deb,
    /// A tar.zst with a manifest, for software without a package manager.
    Bundle,
    /// Issue 13, point 1: a baseline, a TOML policy (`baselines/<name>-<version>.toml`)
    /// the agent applies, re-verifies on every run and repairs when the host drifts.
    Baseline,
}

/// One payload of an update: a TUF target plus what it installs.
///
/// The same fields are carried as the target's signed `custom` data, and the agent
/// checks that the two agree before it installs anything.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PayloadRef {
    /// TUF target name, for example `payloads/libexpat1_2.5.0-1+deb12u5_amd64.deb`.
    pub target: String,
    /// Installer backend.
    pub kind: PayloadKind,
    /// Binary package (or bundle) name.
    pub package: String,
    /// Version it installs.
    pub version: String,
    /// Architecture (`all` for any).
    pub architecture: String,
    /// Source package name.
    pub source: String,
    /// Source package version.
    pub source_version: String,
}

/// One advisory: the signed document that is itself a TUF target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateDocument {
    /// Unique id, for example `PD-2026-0001`.
    pub id: UpdateId,
    /// One line for people.
    pub title: String,
    /// The product it belongs to (`debian-12`, a bundle's product name, ...).
    pub product: String,
    /// Kind of change.
    pub classification: Classification,
    /// Urgency.
    pub severity: Severity,
    /// CVE ids this update fixes.
    #[serde(default)]
    pub cves: Vec<String>,
    /// Updates this one replaces.
    #[serde(default)]
    pub supersedes: Vec<UpdateId>,
    /// Train month or emergency lane.
    pub release: Release,
    /// What it installs; at least one.
    pub payloads: Vec<PayloadRef>,
    /// Longer text (changelog excerpt).
    #[serde(default)]
    pub description: String,
    /// Tenants this update is published for; empty means every tenant. Signed with the
    /// document, so neither the server nor its director key can hand a customer's own
    /// software to another customer's hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
    /// Where a mirrored update came from (issue 9, point 2): the upstream archive's signed
    /// evidence, signed into the document by the mirror role. Absent for hand-published ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamEvidence>,
}

/// Issue 9, point 2: the upstream apt archive evidence a mirrored update was imported
/// from, so `patchday catalog verify-upstream` can re-check it later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub struct UpstreamEvidence {
    /// URL of the `InRelease` file the update came from.
    pub in_release_url: String,
    /// sha256 (hex) of that `InRelease` file.
    pub in_release_sha256: String,
    /// Path of the index (e.g. `main/binary-amd64/Packages.xz`) relative to the suite.
    pub index_path: String,
    /// sha256 (hex) of that index, as `InRelease` lists it.
    pub index_sha256: String,
    /// Fingerprint of the OpenPGP key that signed `InRelease`.
    pub archive_key_fingerprint: String,
}

impl UpdateDocument {
    /// The TUF target name under which this document is published.
    pub fn target_name(id: &UpdateId) -> String {
        format!("update-{id}.json")
    }

    /// Whether the publisher released this update to `tenant` (every tenant when the
    /// signed list is empty).
    pub fn published_for(&self, tenant: &str) -> bool {
        self.tenants.is_empty() || self.tenants.iter().any(|t| t == tenant)
    }
}

/// The signed `custom` object of every catalog target: what the target is.
///
/// The agent installs a payload only when this signed description agrees with the
/// update document that names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum TargetCustom {
    /// An update document (`update-<id>.json`).
    Update {
        /// The update's id.
        id: UpdateId,
    },
    /// A payload.
    Payload {
        /// Installer backend.
        kind: PayloadKind,
        /// Package or bundle name.
        package: String,
        /// Version it installs.
        version: String,
        /// Architecture.
        architecture: String,
        /// Source package.
        source: String,
        /// Source version.
        source_version: String,
        /// Uptane's release counter: per package, one more than any earlier payload of
        /// that package in this catalog. Agents never accept a lower one than they
        /// installed, whatever the version strings say. 0 = none (catalogs made elsewhere).
        #[serde(default, skip_serializing_if = "is_zero")]
        release_counter: u64,
    },
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl TargetCustom {
    /// The custom object for a payload.
    pub fn for_payload(p: &PayloadRef, release_counter: u64) -> Self {
        TargetCustom::Payload {
            kind: p.kind,
            package: p.package.clone(),
            version: p.version.clone(),
            architecture: p.architecture.clone(),
            source: p.source.clone(),
            source_version: p.source_version.clone(),
            release_counter,
        }
    }

    /// The signed release counter (0 for update documents and unnumbered payloads).
    pub fn release_counter(&self) -> u64 {
        match self {
            TargetCustom::Payload {
                release_counter, ..
            } => *release_counter,
            TargetCustom::Update { .. } => 0,
        }
    }

    /// Whether this signed description agrees with a payload reference (the release
    /// counter is the catalog's alone and is not part of the document).
    pub fn describes(&self, p: &PayloadRef) -> bool {
        *self == Self::for_payload(p, self.release_counter())
    }
}

/// Where one update stands on one host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum UpdateState {
    /// The host has none of the update's packages, or already has newer ones.
    NotApplicable,
    /// Applicable, not yet installed, not approved for any of the host's groups.
    Needed,
    /// Applicable and approved; the agent has not started.
    Approved,
    /// The agent is downloading the payloads.
    Downloading,
    /// Payloads are downloaded and verified.
    Downloaded,
    /// The installer is running.
    Installing,
    /// Installed; the host must reboot for it to take effect.
    InstalledPendingReboot,
    /// Installed, verified by dpkg after the fact.
    Installed,
    /// The last attempt failed; the message is the installer's own.
    Failed,
    /// A newer approved update replaces it.
    Superseded,
    /// An operator declined it for the host's group.
    Declined,
    /// Issue 10, point 3: declined with removal, and the agent took it back (removed the
    /// package it brought, or downgraded to the signed payload before it).
    Removed,
    /// Issue 10, point 3: declined with removal, and the agent could not take it back;
    /// the message says why (nothing older signed, something depends on it, essential).
    RemoveFailed,
}

kebab_enum_str!(UpdateState, "update state",
    NotApplicable => "not-applicable", Needed => "needed", Approved => "approved",
    Downloading => "downloading", Downloaded => "downloaded", Installing => "installing",
    InstalledPendingReboot => "installed-pending-reboot", Installed => "installed",
    Failed => "failed", Superseded => "superseded", Declined => "declined",
    Removed => "removed", RemoveFailed => "remove-failed");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn year_month() {
        let m: YearMonth = "2026-12".parse().unwrap();
        assert_eq!(
            m,
            YearMonth {
                year: 2026,
                month: 12
            }
        );
        assert_eq!(m.to_string(), "2026-12");
        assert!("2026-13".parse::<YearMonth>().is_err());
        assert!("26-1".parse::<YearMonth>().is_err());
    }

    #[test]
    fn enums_roundtrip() {
        for s in ["installed-pending-reboot", "not-applicable", "failed"] {
            let st: UpdateState = s.parse().unwrap();
            assert_eq!(st.as_str(), s);
            assert_eq!(serde_json::to_string(&st).unwrap(), format!("\"{s}\""));
        }
        assert!(Severity::Critical < Severity::Low);
        assert!("urgent"
            .parse::<Severity>()
            .unwrap_err()
            .contains("critical"));
    }

    #[test]
    fn release_json() {
        let r: Release = serde_json::from_str(r#"{"lane":"train","month":"2026-12"}"#).unwrap();
        assert_eq!(r.to_string(), "train 2026-12");
        let e: Release = serde_json::from_str(r#"{"lane":"emergency","reason":"worm"}"#).unwrap();
        assert!(matches!(e, Release::Emergency { .. }));
    }
}
