//! Which other payloads of the catalog an assignment must bring along (issue 9, point 4).
//!
//! An approved update's new binary may need a package version the host does not have
//! (a new library, `libfoo2 (>= 2.0)`). When another update of the catalog publishes a
//! package that satisfies it, the check-in assigns that payload too, and the agent
//! installs both in one dpkg run, checked whole before dpkg is touched. The decision
//! follows dpkg's rules from [`patchday_pkg::depends`]; this module only chooses, for each
//! unmet dependency, the catalog's best payload, transitively.
//!
//! Pure: the caller hands over the host's installed packages and the catalog's payloads
//! by package name; names it has not handed over yet come back in
//! [`Closure::wanted`], so the caller can load just those and ask again.

use std::collections::{BTreeMap, BTreeSet};

use patchday_pkg::depends::{resolves_for, satisfies, unmet_needs, PackageFacts};
use patchday_pkg::version::compare_deb;
use patchday_types::UpdateId;

/// One payload the catalog publishes, with the facts of its control file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogPayload {
    /// The update that publishes it.
    pub update: UpdateId,
    /// Its TUF target name.
    pub target: String,
    /// Its control file's facts.
    pub facts: PackageFacts,
}

/// What one assigned update's dpkg run must include beyond its own payloads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Closure {
    /// Payloads of other updates, in the order they were found.
    pub payloads: Vec<CatalogPayload>,
    /// Dependencies neither the host nor the catalog satisfies (`app 2 needs libx (>=
    /// 3)`): the agent will refuse the update with them until they are published.
    pub unmet: Vec<String>,
    /// Package names whose catalog payloads the caller has not handed over yet: load
    /// them and ask again (empty when the answer is final).
    pub wanted: BTreeSet<String>,
}

/// The catalog payloads that installing `own` (an update's payloads the host is
/// assigned) on a host with `installed` packages and native architecture `native` needs
/// in the same dpkg run, taken from `catalog` (package name → payloads with that name;
/// a name missing from the map is [`Closure::wanted`]). For each unmet dependency the
/// first alternative the catalog satisfies wins, with its highest version that fits the
/// host's architecture and moves no installed package backwards; chosen payloads' own
/// dependencies are resolved the same way.
pub fn dependency_payloads(
    installed: &[PackageFacts],
    native: &str,
    own: &[PackageFacts],
    catalog: &BTreeMap<String, Vec<CatalogPayload>>,
) -> Closure {
    let mut out = Closure::default();
    let mut incoming: Vec<PackageFacts> = own.to_vec();
    let mut given_up: BTreeSet<String> = BTreeSet::new();
    // Each round adds at least one payload or ends; a catalog is finite.
    loop {
        let mut added = None;
        for (depender, group) in unmet_needs(installed, &incoming, native) {
            let key = format!("{} {} needs {group}", depender.name, depender.version);
            if given_up.contains(&key) {
                continue;
            }
            let from = resolves_for(depender, native);
            let mut unknown = false;
            let mut pick: Option<&CatalogPayload> = None;
            for rel in &group.0 {
                let Some(candidates) = catalog.get(&rel.name) else {
                    out.wanted.insert(rel.name.clone());
                    unknown = true;
                    continue;
                };
                for c in candidates {
                    let fits = c.facts.architecture == native || c.facts.architecture == "all";
                    let taken = incoming.iter().any(|p| p.name == c.facts.name);
                    if !fits
                        || taken
                        || !satisfies(rel, &c.facts, from, native)
                        || downgrades(installed, &c.facts)
                    {
                        continue;
                    }
                    let better = pick.is_none_or(|p| {
                        compare_deb(&c.facts.version, &p.facts.version).is_ok_and(|o| o.is_gt())
                    });
                    if better {
                        pick = Some(c);
                    }
                }
                if pick.is_some() {
                    break;
                }
            }
            match (pick, unknown) {
                (Some(c), _) => {
                    added = Some(c.clone());
                    break;
                }
                // Ask for the names first; the answer may be in them.
                (None, true) => {}
                (None, false) => {
                    given_up.insert(key.clone());
                    out.unmet.push(key);
                }
            }
        }
        match added {
            Some(c) => {
                incoming.push(c.facts.clone());
                out.payloads.push(c);
            }
            None => break,
        }
    }
    if !out.wanted.is_empty() {
        // Not final: what is unmet may be met by the names still to load.
        out.unmet.clear();
    }
    out
}

/// Would `p` move an installed package of its name and architecture backwards?
fn downgrades(installed: &[PackageFacts], p: &PackageFacts) -> bool {
    installed.iter().any(|i| {
        i.name == p.name
            && (i.architecture == p.architecture
                || i.architecture == "all"
                || p.architecture == "all")
            && compare_deb(&p.version, &i.version).is_ok_and(|o| o.is_lt())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchday_pkg::depends::facts_from_control;

    fn pkg(name: &str, version: &str, depends: &str) -> PackageFacts {
        facts_from_control(&format!(
            "Package: {name}\nVersion: {version}\nArchitecture: amd64\nDepends: {depends}\n"
        ))
        .unwrap()
    }

    fn payload(update: &str, facts: PackageFacts) -> CatalogPayload {
        CatalogPayload {
            update: UpdateId::new(update).unwrap(),
            target: format!(
                "{}_{}_{}.deb",
                facts.name, facts.version, facts.architecture
            ),
            facts,
        }
    }

    fn catalog(
        entries: &[CatalogPayload],
        also_known: &[&str],
    ) -> BTreeMap<String, Vec<CatalogPayload>> {
        let mut m: BTreeMap<String, Vec<CatalogPayload>> = BTreeMap::new();
        for e in entries {
            m.entry(e.facts.name.clone()).or_default().push(e.clone());
        }
        for n in also_known {
            m.entry((*n).to_string()).or_default();
        }
        m
    }

    fn targets(c: &Closure) -> Vec<&str> {
        c.payloads.iter().map(|p| p.target.as_str()).collect()
    }

    #[test]
    fn a_new_library_version_comes_from_the_update_that_publishes_it() {
        let installed = vec![
            pkg("app", "1.0-1", "libnew1 (>= 1.0)"),
            pkg("libnew1", "1.0-1", ""),
        ];
        let app = pkg("app", "1.0-2", "libnew2 (>= 2.0), libc6");
        let lib_old = payload("DEB-libnew-2.0-1", pkg("libnew2", "2.0-1", ""));
        let lib_new = payload("DEB-libnew-2.0-3", pkg("libnew2", "2.0-3", ""));
        let libc = pkg("libc6", "2.36-9", "");
        let mut installed = installed;
        installed.push(libc);
        // First ask: the names are wanted.
        let first = dependency_payloads(
            &installed,
            "amd64",
            std::slice::from_ref(&app),
            &BTreeMap::new(),
        );
        assert_eq!(first.wanted, BTreeSet::from(["libnew2".to_string()]));
        assert!(first.payloads.is_empty() && first.unmet.is_empty());
        // With them: the highest version wins.
        let cat = catalog(&[lib_old, lib_new], &[]);
        let c = dependency_payloads(&installed, "amd64", &[app], &cat);
        assert_eq!(targets(&c), ["libnew2_2.0-3_amd64.deb"]);
        assert_eq!(c.payloads[0].update.as_str(), "DEB-libnew-2.0-3");
        assert!(c.unmet.is_empty() && c.wanted.is_empty(), "{c:?}");
    }

    #[test]
    fn dependencies_are_followed_transitively_and_what_nobody_has_is_named() {
        let installed = vec![pkg("app", "1", "")];
        let app = pkg("app", "2", "liba (>= 2)");
        let liba = payload("U-A", pkg("liba", "2", "libb (= 3)"));
        let libb = payload("U-B", pkg("libb", "3", "libgone (>= 9)"));
        let cat = catalog(&[liba, libb], &["libgone"]);
        let c = dependency_payloads(&installed, "amd64", &[app], &cat);
        assert_eq!(targets(&c), ["liba_2_amd64.deb", "libb_3_amd64.deb"]);
        assert_eq!(c.unmet, ["libb 3 needs libgone (>= 9)"]);
        assert!(c.wanted.is_empty());
    }

    #[test]
    fn a_satisfied_host_needs_nothing_and_nothing_moves_backwards() {
        let installed = vec![pkg("libx", "5", ""), pkg("app", "1", "libx")];
        let app = pkg("app", "2", "libx (>= 4)");
        let c = dependency_payloads(&installed, "amd64", &[app], &BTreeMap::new());
        assert_eq!(c, Closure::default());
        // An older libx in the catalog never satisfies by moving libx back.
        let app = pkg("app", "2", "libx (<< 5)");
        let cat = catalog(&[payload("U-X", pkg("libx", "4", ""))], &[]);
        let c = dependency_payloads(&installed, "amd64", &[app], &cat);
        assert!(c.payloads.is_empty());
        assert_eq!(c.unmet, ["app 2 needs libx (<< 5)"]);
    }

    #[test]
    fn another_architecture_and_the_first_satisfiable_alternative() {
        let installed = vec![];
        let app = pkg("app", "2", "libq | libr (>= 1)");
        let i386 = CatalogPayload {
            facts: facts_from_control("Package: libq\nVersion: 9\nArchitecture: i386\n").unwrap(),
            ..payload("U-Q", pkg("libq", "9", ""))
        };
        let libr = payload("U-R", pkg("libr", "1", ""));
        let cat = catalog(&[i386, libr], &[]);
        let c = dependency_payloads(&installed, "amd64", &[app], &cat);
        assert_eq!(targets(&c), ["libr_1_amd64.deb"]);
    }
}
