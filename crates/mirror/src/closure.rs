//! The closure of new dependencies (issue 9, point 4): when a binary the mirror imports
//! needs a package version that neither the fleet's installed packages nor the other
//! binaries of its own update satisfy, the archive's package that satisfies it is
//! imported too, transitively.
//!
//! A dependency is imported as **its own source version's update** (`DEB-libfoo-2.0-1`),
//! not as an extra payload of the update that needs it: one binary then lives in exactly
//! one update, so applicability, supersession and the catalog's payload list stay
//! unambiguous; its advisories and upstream evidence are its own; a second update that
//! needs it (or a later run that selects it for the fleet) finds it already published;
//! and the server assigns it with the update that needs it, on the hosts that lack it
//! (`patchday_core::dependency_payloads`).
//!
//! Pure: the caller hands over the archive's binaries, what is selected and the fleet.

use std::collections::{BTreeMap, BTreeSet};

use patchday_pkg::depends::{
    parse_relations, satisfies, version_satisfies, Alternatives, PackageFacts, Relation,
};
use patchday_pkg::version::compare_deb;

use crate::index::BinaryPackage;
use crate::select;

/// The fleet's installed binary packages: name → installed versions (`None` in
/// [`dependency_closure`]: unknown, so only the update's own binaries count).
pub type FleetBinaries = BTreeMap<String, BTreeSet<String>>;

/// What the closure adds to a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Closure {
    /// Source versions to import because a selected one needs them, each with why
    /// (`DEB-app-2 needs libnew2 (>= 2.0)`), in the order found.
    pub added: Vec<((String, String), String)>,
    /// Versioned dependencies neither the fleet, the update nor the archive satisfies
    /// (`DEB-app-2: app 2 needs libgone (>= 9)`): the update is imported anyway, and
    /// agents refuse it with `needs …` until the dependency is published.
    pub unsatisfiable: Vec<String>,
}

fn facts(b: &BinaryPackage) -> PackageFacts {
    let rel = |s: &str| parse_relations(s).unwrap_or_default();
    PackageFacts {
        name: b.package.clone(),
        version: b.version.clone(),
        architecture: b.architecture.clone(),
        multi_arch: String::new(),
        depends: rel(&b.depends),
        pre_depends: rel(&b.pre_depends),
        conflicts: Vec::new(),
        breaks: Vec::new(),
        provides: rel(&b.provides).into_iter().flat_map(|a| a.0).collect(),
    }
}

/// Does the fleet have `rel`'s package, at a satisfying version on every host that has
/// it? (Inventories list no `Provides`, so only real names count.)
fn fleet_has(rel: &Relation, fleet: &FleetBinaries) -> bool {
    fleet.get(&rel.name).is_some_and(|versions| {
        !versions.is_empty() && versions.iter().all(|v| version_satisfies(&rel.version, v))
    })
}

/// The source versions `selected` (keys of `groups`) needs beyond itself, transitively.
/// `native` is the architecture `all` packages resolve for (the first configured one).
pub fn dependency_closure(
    groups: &BTreeMap<(String, String), Vec<BinaryPackage>>,
    selected: &[(String, String)],
    fleet: Option<&FleetBinaries>,
    native: &str,
) -> Closure {
    let empty = FleetBinaries::new();
    let fleet = fleet.unwrap_or(&empty);
    let all: Vec<(&(String, String), PackageFacts)> = groups
        .iter()
        .flat_map(|(k, bins)| bins.iter().map(move |b| (k, facts(b))))
        .collect();
    let mut out = Closure::default();
    let mut seen: BTreeSet<(String, String)> = selected.iter().cloned().collect();
    let mut work: Vec<(String, String)> = selected.to_vec();
    while let Some(key) = work.pop() {
        let Some(bins) = groups.get(&key) else {
            continue;
        };
        let id = select::update_id(&key.0, &key.1);
        let own: Vec<PackageFacts> = bins.iter().map(facts).collect();
        for p in &own {
            let from = if p.architecture == "all" {
                native
            } else {
                p.architecture.as_str()
            };
            for group in p.pre_depends.iter().chain(&p.depends) {
                let met_by_own = group
                    .0
                    .iter()
                    .any(|r| own.iter().any(|o| satisfies(r, o, from, native)));
                if met_by_own || group.0.iter().any(|r| fleet_has(r, fleet)) {
                    continue;
                }
                match provider(group, &all, from, native) {
                    Some(k) if seen.insert(k.clone()) => {
                        out.added.push((
                            k.clone(),
                            format!("{id}: {} {} needs {group}", p.name, p.version),
                        ));
                        work.push(k);
                    }
                    // Imported already (selected, or found for another dependency).
                    Some(_) => {}
                    // An unversioned name the archive does not have is most likely a
                    // virtual package the hosts provide; the agent checks it exactly.
                    None if group.0.iter().any(|r| r.version.is_some()) => out
                        .unsatisfiable
                        .push(format!("{id}: {} {} needs {group}", p.name, p.version)),
                    None => {}
                }
            }
        }
    }
    out
}

/// The source version of the archive's best package for `group`: the first alternative
/// any archive package satisfies, at its highest version.
fn provider(
    group: &Alternatives,
    all: &[(&(String, String), PackageFacts)],
    from: &str,
    native: &str,
) -> Option<(String, String)> {
    for rel in &group.0 {
        let best = all
            .iter()
            .filter(|(_, f)| satisfies(rel, f, from, native))
            .max_by(|a, b| {
                compare_deb(&a.1.version, &b.1.version).unwrap_or(std::cmp::Ordering::Equal)
            });
        if let Some((k, _)) = best {
            return Some((*k).clone());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin(name: &str, version: &str, source: &str, depends: &str) -> BinaryPackage {
        BinaryPackage {
            package: name.into(),
            version: version.into(),
            architecture: "amd64".into(),
            source: source.into(),
            source_version: version.into(),
            filename: format!("pool/{name}_{version}.deb"),
            size: 1,
            sha256: "ab".repeat(32),
            depends: depends.into(),
            pre_depends: String::new(),
            provides: String::new(),
        }
    }

    fn groups(bins: Vec<BinaryPackage>) -> BTreeMap<(String, String), Vec<BinaryPackage>> {
        select::group_by_source(bins)
    }

    fn key(s: &str, v: &str) -> (String, String) {
        (s.into(), v.into())
    }

    #[test]
    fn a_new_library_is_imported_transitively_and_a_missing_one_is_named() {
        let g = groups(vec![
            bin("app", "2", "app", "libnew2 (>= 2.0), libc6 (>= 2.34)"),
            bin("libnew2", "2.0-1", "libnew", "libdeep (>= 1)"),
            bin("libnew2", "2.0-3", "libnew", "libdeep (>= 1)"),
            bin("libdeep", "1", "deep", ""),
            bin("tool", "5", "tool", "libgone (>= 9), mail-transport-agent"),
            bin("unrelated", "1", "unrelated", ""),
        ]);
        let fleet = FleetBinaries::from([("libc6".into(), BTreeSet::from(["2.36-9".into()]))]);
        let c = dependency_closure(
            &g,
            &[key("app", "2"), key("tool", "5")],
            Some(&fleet),
            "amd64",
        );
        let added: Vec<&(String, String)> = c.added.iter().map(|(k, _)| k).collect();
        assert_eq!(added, [&key("libnew", "2.0-3"), &key("deep", "1")]);
        assert_eq!(c.added[0].1, "DEB-app-2: app 2 needs libnew2 (>= 2.0)");
        assert_eq!(c.unsatisfiable, ["DEB-tool-5: tool 5 needs libgone (>= 9)"]);
    }

    #[test]
    fn what_the_fleet_or_the_update_itself_has_is_not_imported() {
        let g = groups(vec![
            bin("app", "2", "app", "libapp (= 2), libx (>= 1.5)"),
            bin("libapp", "2", "app", ""),
            bin("libx", "1.6", "x", ""),
        ]);
        let fleet = FleetBinaries::from([("libx".into(), BTreeSet::from(["1.5".into()]))]);
        let c = dependency_closure(&g, &[key("app", "2")], Some(&fleet), "amd64");
        assert_eq!(c, Closure::default());
        // One host with an older libx is enough to need the archive's.
        let fleet =
            FleetBinaries::from([("libx".into(), BTreeSet::from(["1.5".into(), "1.4".into()]))]);
        let c = dependency_closure(&g, &[key("app", "2")], Some(&fleet), "amd64");
        assert_eq!(c.added.len(), 1, "{c:?}");
    }
}
