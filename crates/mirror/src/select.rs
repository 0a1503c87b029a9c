//! What to import, and how binaries group into updates: one per source version.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::index::BinaryPackage;

/// Which source versions a run imports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Everything the indexes list.
    All,
    /// Source versions of these source or binary package names.
    Packages(BTreeSet<String>),
    /// Versions newer than one installed somewhere: source name → installed source
    /// versions across the fleet.
    Installed(BTreeMap<String, BTreeSet<String>>),
}

impl Selection {
    /// Whether the source version `group` belongs to should be imported.
    pub fn wants(&self, source: &str, source_version: &str, binaries: &[BinaryPackage]) -> bool {
        match self {
            Selection::All => true,
            Selection::Packages(names) => {
                names.contains(source) || binaries.iter().any(|b| names.contains(&b.package))
            }
            Selection::Installed(installed) => installed.get(source).is_some_and(|versions| {
                versions.iter().any(|v| {
                    patchday_pkg::version::compare_deb(source_version, v).is_ok_and(|o| o.is_gt())
                })
            }),
        }
    }

    /// The oldest installed version of `source`, when the fleet's inventory is known:
    /// changelog entries newer than it count.
    pub fn oldest_installed(&self, source: &str) -> Option<&str> {
        match self {
            Selection::Installed(m) => m.get(source).and_then(|vs| {
                vs.iter()
                    .min_by(|a, b| {
                        patchday_pkg::version::compare_deb(a, b)
                            .unwrap_or(std::cmp::Ordering::Equal)
                    })
                    .map(String::as_str)
            }),
            _ => None,
        }
    }
}

/// Binaries grouped by (source, source version); arch-all packages seen in several
/// architecture indexes appear once.
pub fn group_by_source(
    binaries: impl IntoIterator<Item = BinaryPackage>,
) -> BTreeMap<(String, String), Vec<BinaryPackage>> {
    let mut out: BTreeMap<(String, String), Vec<BinaryPackage>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for b in binaries {
        if !seen.insert(b.filename.clone()) {
            continue;
        }
        out.entry((b.source.clone(), b.source_version.clone()))
            .or_default()
            .push(b);
    }
    for v in out.values_mut() {
        v.sort_by(|a, b| (&a.package, &a.architecture).cmp(&(&b.package, &b.architecture)));
    }
    out
}

/// The deterministic update id of a source version: `DEB-<source>-<version>`, with the
/// characters ids may not hold written out (`:` → `_e`, `+` → `_p`, `~` → `_t`; `_`
/// never occurs in Debian names or versions, so the mapping is one-to-one). Ids longer
/// than 64 characters keep a prefix and 12 hex digits of a hash of the full name.
pub fn update_id(source: &str, version: &str) -> String {
    let mut id = String::from("DEB-");
    for c in format!("{source}-{version}").chars() {
        match c {
            ':' => id.push_str("_e"),
            '+' => id.push_str("_p"),
            '~' => id.push_str("_t"),
            c => id.push(c),
        }
    }
    if id.len() <= 64 {
        return id;
    }
    let h = hex::encode(Sha256::digest(format!("{source} {version}")));
    let prefix: String = id.chars().take(64 - 13).collect();
    format!("{prefix}-{}", &h[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid_and_distinct() {
        let a = update_id("openssl", "3.0.15-1~deb12u1");
        assert_eq!(a, "DEB-openssl-3.0.15-1_tdeb12u1");
        assert!(patchday_types::UpdateId::new(&a).is_ok());
        assert_ne!(update_id("a", "1+b1"), update_id("a", "1~b1"));
        assert_eq!(update_id("libstdc++", "1"), "DEB-libstdc_p_p-1");
        let long = update_id(&"x".repeat(80), "1:2.3+dfsg-1");
        assert_eq!(long.len(), 64);
        assert!(patchday_types::UpdateId::new(&long).is_ok());
        assert_eq!(long, update_id(&"x".repeat(80), "1:2.3+dfsg-1"));
    }

    #[test]
    fn installed_selection_takes_only_newer() {
        let sel = Selection::Installed(BTreeMap::from([(
            "openssl".to_string(),
            BTreeSet::from(["3.0.14-1~deb12u2".to_string()]),
        )]));
        assert!(sel.wants("openssl", "3.0.15-1~deb12u1", &[]));
        assert!(!sel.wants("openssl", "3.0.14-1~deb12u2", &[]));
        assert!(!sel.wants("curl", "9", &[]));
    }
}
