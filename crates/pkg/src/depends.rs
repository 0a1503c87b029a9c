//! Whether one dpkg transaction leaves every dependency satisfied (issue 9, point 4).
//!
//! [`check_transaction`] is the decision the agent makes before touching dpkg: given the
//! host's installed packages (its dpkg status) and the packages it is about to install
//! in one `dpkg -i` run, does the result satisfy every `Depends`/`Pre-Depends` of the
//! new packages, keep satisfied what installed packages needed, and hit no
//! `Conflicts`/`Breaks`? It follows dpkg's rules: alternatives (`a | b`), version
//! relations (`<<`, `<=`, `=`, `>=`, `>>`, and the obsolete `<`, `>`), architecture
//! qualifiers (`:any`, `:native`, `:ARCH`), `Multi-Arch` and `Provides` (versioned or
//! not). Pure: the caller hands over the texts.

use crate::control;
use crate::version::compare_deb;
use std::cmp::Ordering;
use std::fmt;

/// A version relation operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `<<`
    Earlier,
    /// `<=` (and the obsolete `<`)
    EarlierEqual,
    /// `=`
    Equal,
    /// `>=` (and the obsolete `>`)
    LaterEqual,
    /// `>>`
    Later,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Earlier => "<<",
            Op::EarlierEqual => "<=",
            Op::Equal => "=",
            Op::LaterEqual => ">=",
            Op::Later => ">>",
        }
    }

    fn holds(self, ord: Ordering) -> bool {
        match self {
            Op::Earlier => ord == Ordering::Less,
            Op::EarlierEqual => ord != Ordering::Greater,
            Op::Equal => ord == Ordering::Equal,
            Op::LaterEqual => ord != Ordering::Less,
            Op::Later => ord == Ordering::Greater,
        }
    }
}

/// One package relation: `name[:arch] [(op version)]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relation {
    /// Package (or virtual package) name.
    pub name: String,
    /// Architecture qualifier (`any`, `native` or an architecture), when given.
    pub arch: Option<String>,
    /// Version constraint, when given.
    pub version: Option<(Op, String)>,
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(a) = &self.arch {
            write!(f, ":{a}")?;
        }
        if let Some((op, v)) = &self.version {
            write!(f, " ({} {v})", op.text())?;
        }
        Ok(())
    }
}

/// Alternatives (`a | b`): satisfied when any one is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alternatives(pub Vec<Relation>);

impl fmt::Display for Alternatives {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// A relation field that dpkg would not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse the relation {relation:?}: {reason}; the package's control file is malformed, rebuild it with dpkg-deb")]
pub struct BadRelation {
    /// The relation as written.
    pub relation: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

fn parse_relation(text: &str) -> Result<Relation, BadRelation> {
    let bad = |reason| BadRelation {
        relation: text.trim().to_string(),
        reason,
    };
    let text = text.trim();
    // Build profiles (`<!nocheck>`) and arch restrictions (`[amd64]`) only appear in
    // source packages; a binary package carrying them is malformed.
    if text.contains('[') || text.contains('<') && !text.contains('(') {
        return Err(bad(
            "architecture or profile restrictions in a binary package",
        ));
    }
    let (head, version) = match text.split_once('(') {
        None => (text, None),
        Some((head, rest)) => {
            let inner = rest
                .trim()
                .strip_suffix(')')
                .ok_or_else(|| bad("unclosed '('"))?
                .trim();
            let op_len = inner
                .find(|c: char| !matches!(c, '<' | '>' | '='))
                .ok_or_else(|| bad("a version relation without a version"))?;
            let op = match &inner[..op_len] {
                "<<" => Op::Earlier,
                "<=" | "<" => Op::EarlierEqual,
                "=" => Op::Equal,
                ">=" | ">" => Op::LaterEqual,
                ">>" => Op::Later,
                _ => return Err(bad("unknown version relation")),
            };
            let v = inner[op_len..].trim();
            if v.is_empty() || v.contains(char::is_whitespace) || compare_deb(v, v).is_err() {
                return Err(bad("invalid version"));
            }
            (head.trim(), Some((op, v.to_string())))
        }
    };
    let (name, arch) = match head.split_once(':') {
        None => (head, None),
        Some((n, a)) => (n, Some(a.to_string())),
    };
    if name.is_empty()
        || name.contains(char::is_whitespace)
        || arch
            .as_deref()
            .is_some_and(|a| a.is_empty() || a.contains(char::is_whitespace))
    {
        return Err(bad("not a package name"));
    }
    Ok(Relation {
        name: name.to_string(),
        arch,
        version,
    })
}

/// Parses a relation field (`Depends`, `Conflicts`, ...): comma-separated groups of
/// `|`-separated alternatives. An empty field has no groups.
pub fn parse_relations(field: &str) -> Result<Vec<Alternatives>, BadRelation> {
    field
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(|g| {
            g.split('|')
                .map(parse_relation)
                .collect::<Result<Vec<_>, _>>()
                .map(Alternatives)
        })
        .collect()
}

/// What the check needs to know of one package (installed or about to be).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageFacts {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Architecture (`all` for architecture-independent packages).
    pub architecture: String,
    /// `Multi-Arch` (`same`, `foreign`, `allowed` or empty).
    pub multi_arch: String,
    /// `Depends`.
    pub depends: Vec<Alternatives>,
    /// `Pre-Depends`.
    pub pre_depends: Vec<Alternatives>,
    /// `Conflicts`.
    pub conflicts: Vec<Alternatives>,
    /// `Breaks`.
    pub breaks: Vec<Alternatives>,
    /// `Provides` (each a name with an optional `= version`).
    pub provides: Vec<Relation>,
}

fn facts_of(p: &control::Paragraph) -> Result<Option<PackageFacts>, BadRelation> {
    let (Some(name), Some(version), Some(architecture)) = (
        p.get("Package").filter(|s| !s.is_empty()),
        p.get("Version").filter(|s| !s.is_empty()),
        p.get("Architecture").filter(|s| !s.is_empty()),
    ) else {
        return Ok(None);
    };
    let rel = |f: &str| parse_relations(&p.get(f).unwrap_or("").replace('\n', " "));
    Ok(Some(PackageFacts {
        name: name.to_string(),
        version: version.to_string(),
        architecture: architecture.to_string(),
        multi_arch: p.get("Multi-Arch").unwrap_or("").to_string(),
        depends: rel("Depends")?,
        pre_depends: rel("Pre-Depends")?,
        conflicts: rel("Conflicts")?,
        breaks: rel("Breaks")?,
        provides: rel("Provides")?.into_iter().flat_map(|a| a.0).collect(),
    }))
}

/// The facts of a `.deb`'s control file (as `dpkg-deb --field` prints it).
pub fn facts_from_control(text: &str) -> Result<PackageFacts, BadRelation> {
    let none = || BadRelation {
        relation: String::new(),
        reason: "the control file has no Package, Version or Architecture",
    };
    let paragraphs = control::parse(text, false).map_err(|_| none())?;
    match paragraphs.first() {
        Some(p) => facts_of(p)?.ok_or_else(none),
        None => Err(none()),
    }
}

/// The installed packages of a dpkg status file (`install ok installed`, `hold ok
/// installed`) with their relations. An entry with a malformed relation is kept without
/// it rather than failing the whole database: dpkg itself accepted it once.
pub fn facts_from_status(text: &str) -> Vec<PackageFacts> {
    let Ok(paragraphs) = control::parse(text, false) else {
        return Vec::new();
    };
    paragraphs
        .iter()
        .filter(|p| {
            p.get("Status").is_some_and(|s| {
                matches!(
                    s.split_whitespace().collect::<Vec<_>>().as_slice(),
                    ["install" | "hold", "ok", "installed"]
                )
            })
        })
        .filter_map(|p| match facts_of(p) {
            Ok(f) => f,
            Err(_) => {
                let mut stripped = p.clone();
                stripped.retain(|k| {
                    ["Package", "Version", "Architecture", "Multi-Arch"]
                        .iter()
                        .any(|f| k.eq_ignore_ascii_case(f))
                });
                facts_of(&stripped).ok().flatten()
            }
        })
        .collect()
}

/// Why a transaction is refused, in the words an admin reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unmet {
    /// A package being installed needs something the result would not have.
    Needs {
        /// The package with the dependency (`name version`).
        package: String,
        /// The unmet dependency, as written.
        needs: Alternatives,
    },
    /// An installed package needed something the transaction takes away.
    Breaks {
        /// The installed package whose dependency would break.
        installed: String,
        /// Its dependency, as written.
        needs: Alternatives,
    },
    /// A `Conflicts` or `Breaks` between a new package and one the host would have.
    Conflicts {
        /// The package declaring the relation.
        package: String,
        /// `Conflicts` or `Breaks`.
        field: &'static str,
        /// The relation it declares.
        relation: Relation,
        /// The package it hits (`name version`).
        with: String,
    },
}

impl fmt::Display for Unmet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unmet::Needs { package, needs } => write!(f, "{package} needs {needs}"),
            Unmet::Breaks { installed, needs } => write!(
                f,
                "installed {installed} needs {needs}, which this update would take away"
            ),
            Unmet::Conflicts {
                package,
                field,
                relation,
                with,
            } => write!(
                f,
                "{package} {field}: {relation}, and {with} would be installed"
            ),
        }
    }
}

/// The package set a transaction leaves: the installed ones, with each incoming package
/// replacing the installed instance of the same name and architecture.
fn result_set<'a>(
    installed: &'a [PackageFacts],
    incoming: &'a [PackageFacts],
) -> Vec<&'a PackageFacts> {
    let replaced = |i: &PackageFacts| {
        incoming.iter().any(|n| {
            n.name == i.name
                && (n.architecture == i.architecture
                    || n.architecture == "all"
                    || i.architecture == "all"
                    || n.multi_arch != "same")
        })
    };
    installed
        .iter()
        .filter(|i| !replaced(i))
        .chain(incoming.iter())
        .collect()
}

fn version_ok(constraint: &Option<(Op, String)>, have: Option<&str>) -> bool {
    match (constraint, have) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some((op, want)), Some(have)) => compare_deb(have, want).is_ok_and(|o| op.holds(o)),
    }
}

/// The architecture a package's relations are resolved for: its own, or the native
/// one for `all`.
fn arch_of<'a>(p: &'a PackageFacts, native: &'a str) -> &'a str {
    if p.architecture == "all" {
        native
    } else {
        &p.architecture
    }
}

/// Does `candidate` (a real package of that name) satisfy `rel` for a depender of
/// architecture `from`? dpkg's rules: unqualified needs the same architecture unless
/// the candidate is `all` or `Multi-Arch: foreign`; `:any` needs `Multi-Arch: allowed`.
fn real_match(rel: &Relation, candidate: &PackageFacts, from: &str, native: &str) -> bool {
    if candidate.name != rel.name || !version_ok(&rel.version, Some(&candidate.version)) {
        return false;
    }
    let arch_ok = match rel.arch.as_deref() {
        None => {
            candidate.architecture == "all"
                || candidate.architecture == from
                || candidate.multi_arch == "foreign"
        }
        Some("any") => {
            candidate.multi_arch == "allowed"
                || candidate.multi_arch == "foreign"
                || candidate.architecture == "all"
                || candidate.architecture == from
        }
        Some("native") => candidate.architecture == native || candidate.architecture == "all",
        Some(a) => candidate.architecture == a || candidate.architecture == "all",
    };
    arch_ok
}

/// Does `provider` satisfy `rel` through its `Provides`?
fn provides_match(rel: &Relation, provider: &PackageFacts, from: &str) -> bool {
    let arch_ok = provider.architecture == "all"
        || provider.architecture == from
        || provider.multi_arch == "foreign"
        || rel.arch.as_deref() == Some(provider.architecture.as_str());
    arch_ok
        && provider.provides.iter().any(|p| {
            p.name == rel.name
                && match (&rel.version, &p.version) {
                    (None, _) => true,
                    // An unversioned Provides never satisfies a versioned dependency.
                    (Some(_), None) => false,
                    (c, Some((_, v))) => version_ok(c, Some(v)),
                }
        })
}

fn satisfied(group: &Alternatives, set: &[&PackageFacts], from: &str, native: &str) -> bool {
    group.0.iter().any(|rel| {
        set.iter()
            .any(|c| real_match(rel, c, from, native) || provides_match(rel, c, from))
    })
}

/// Does the relation (a `Conflicts`/`Breaks` entry of `owner`) hit `other`?
fn hits(rel: &Relation, owner: &PackageFacts, other: &PackageFacts, native: &str) -> bool {
    if other.name == owner.name {
        return false; // a package never conflicts with itself
    }
    let arch_ok = |a: &str| match rel.arch.as_deref() {
        None | Some("any") => true,
        Some("native") => a == native || a == "all",
        Some(x) => a == x || a == "all",
    };
    (other.name == rel.name
        && arch_ok(&other.architecture)
        && version_ok(&rel.version, Some(&other.version)))
        || other.provides.iter().any(|p| {
            p.name == rel.name
                && match (&rel.version, &p.version) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (c, Some((_, v))) => version_ok(c, Some(v)),
                }
        })
}

fn label(p: &PackageFacts) -> String {
    format!("{} {}", p.name, p.version)
}

/// Checks that installing `incoming` together, in one dpkg run, on a host with
/// `installed` packages (its dpkg status) of native architecture `native` leaves no
/// dependency unmet and no conflict. Returns every problem found, first the new
/// packages' needs, then what installed packages would lose, then conflicts; dependencies
/// that were already unmet before the transaction are not its fault and are not reported.
pub fn check_transaction(
    installed: &[PackageFacts],
    incoming: &[PackageFacts],
    native: &str,
) -> Result<(), Vec<Unmet>> {
    let after = result_set(installed, incoming);
    let before: Vec<&PackageFacts> = installed.iter().collect();
    let mut unmet: Vec<Unmet> = unmet_needs(installed, incoming, native)
        .into_iter()
        .map(|(p, group)| Unmet::Needs {
            package: label(p),
            needs: group.clone(),
        })
        .collect();
    for p in after.iter().filter(|p| installed.contains(p)) {
        let from = arch_of(p, native);
        for group in p.pre_depends.iter().chain(&p.depends) {
            if satisfied(group, &before, from, native) && !satisfied(group, &after, from, native) {
                unmet.push(Unmet::Breaks {
                    installed: label(p),
                    needs: group.clone(),
                });
            }
        }
    }
    for owner in &after {
        let owner_new = incoming.contains(owner);
        for (field, rels) in [("Conflicts", &owner.conflicts), ("Breaks", &owner.breaks)] {
            for rel in rels.iter().flat_map(|g| &g.0) {
                for other in &after {
                    // Only conflicts the transaction brings in: a new package on either side.
                    if (owner_new || incoming.contains(other)) && hits(rel, owner, other, native) {
                        unmet.push(Unmet::Conflicts {
                            package: label(owner),
                            field,
                            relation: rel.clone(),
                            with: label(other),
                        });
                    }
                }
            }
        }
    }
    if unmet.is_empty() {
        Ok(())
    } else {
        Err(unmet)
    }
}

// ---- issue 10, point 3: taking a declined update back ----

/// Checks that taking an update back in one step leaves every dependency satisfied:
/// `incoming` (older versions, installed with `dpkg -i`) replace their installed
/// versions, then the packages named in `removing` (`dpkg --remove`) go. Refused when an
/// installed package would lose what it needs ([`Unmet::Breaks`], dpkg's "X depends on
/// Y"), when an older version needs what the host would not have, or conflicts.
/// Dependencies already unmet before are not its fault.
pub fn check_take_back(
    installed: &[PackageFacts],
    incoming: &[PackageFacts],
    removing: &[String],
    native: &str,
) -> Result<(), Vec<Unmet>> {
    let mut unmet = match check_transaction(installed, incoming, native) {
        Ok(()) => Vec::new(),
        Err(u) => u,
    };
    let after_install = result_set(installed, incoming);
    let after: Vec<&PackageFacts> = after_install
        .iter()
        .copied()
        .filter(|p| !removing.contains(&p.name))
        .collect();
    for p in &after {
        let from = arch_of(p, native);
        for group in p.pre_depends.iter().chain(&p.depends) {
            if satisfied(group, &after_install, from, native)
                && !satisfied(group, &after, from, native)
            {
                unmet.push(Unmet::Breaks {
                    installed: label(p),
                    needs: group.clone(),
                });
            }
        }
    }
    if unmet.is_empty() {
        Ok(())
    } else {
        Err(unmet)
    }
}

// ---- issue 9, point 4: the closure of new dependencies (server and mirror) ----

/// Does `candidate` satisfy `rel` for a depender of architecture `from` on a host of
/// native architecture `native`, by its own name and version or through its `Provides`?
/// dpkg's rules, as [`check_transaction`] applies them.
pub fn satisfies(rel: &Relation, candidate: &PackageFacts, from: &str, native: &str) -> bool {
    real_match(rel, candidate, from, native) || provides_match(rel, candidate, from)
}

/// The `Depends`/`Pre-Depends` groups of `incoming` that installing it together, in one
/// dpkg run, on a host with `installed` packages leaves unmet: each with the package that
/// declares it.
pub fn unmet_needs<'a>(
    installed: &[PackageFacts],
    incoming: &'a [PackageFacts],
    native: &str,
) -> Vec<(&'a PackageFacts, &'a Alternatives)> {
    let after = result_set(installed, incoming);
    let mut unmet = Vec::new();
    for p in incoming {
        let from = arch_of(p, native);
        for group in p.pre_depends.iter().chain(&p.depends) {
            if !satisfied(group, &after, from, native) {
                unmet.push((p, group));
            }
        }
    }
    unmet
}

/// Does version `have` meet the constraint (none: any version does)?
pub fn version_satisfies(constraint: &Option<(Op, String)>, have: &str) -> bool {
    version_ok(constraint, Some(have))
}

/// The architecture `p`'s relations resolve for on a host of native architecture
/// `native`: its own, or the native one for `all`.
pub fn resolves_for<'a>(p: &'a PackageFacts, native: &'a str) -> &'a str {
    arch_of(p, native)
}

/// The order of dpkg runs for packages installed together (`incoming`, as checked by
/// [`check_transaction`]): indices grouped into stages, each one `dpkg -i` run, so that a
/// package whose `Pre-Depends` names another package of the set (by name or `Provides`)
/// comes in a later run than it. dpkg needs a pre-dependency *configured* before it
/// unpacks the package; within one `dpkg -i` run it only unpacks, so the run stops half
/// way (`libpam-modules` pre-depends on `libpam-modules-bin` of the same version). apt
/// orders its dpkg runs the same way. Plain `Depends` stay in one run (dpkg configures
/// them together). A cycle of pre-dependencies (which dpkg cannot install either) keeps
/// its packages in one stage.
pub fn dpkg_stages(incoming: &[PackageFacts]) -> Vec<Vec<usize>> {
    let provides =
        |p: &PackageFacts, name: &str| p.name == name || p.provides.iter().any(|r| r.name == name);
    // needs[i]: the other packages of the set that i pre-depends on.
    let needs: Vec<Vec<usize>> = incoming
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut v: Vec<usize> = p
                .pre_depends
                .iter()
                .flat_map(|alts| alts.0.iter())
                .flat_map(|r| {
                    incoming
                        .iter()
                        .enumerate()
                        .filter(move |(j, q)| *j != i && provides(q, &r.name))
                        .map(|(j, _)| j)
                })
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        })
        .collect();
    let mut stage = vec![0usize; incoming.len()];
    // Longest-path layering; at most n rounds, so a cycle ends (its members stay as far
    // as the rounds took them, and the cycle is flattened below).
    for _ in 0..incoming.len() {
        let mut changed = false;
        for i in 0..incoming.len() {
            let want = needs[i]
                .iter()
                .map(|&j| stage[j] + 1)
                .max()
                .unwrap_or(0)
                .min(incoming.len());
            if want > stage[i] {
                stage[i] = want;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let cyclic = (0..incoming.len()).any(|i| needs[i].iter().any(|&j| stage[j] >= stage[i]));
    if cyclic {
        return vec![(0..incoming.len()).collect()];
    }
    let top = stage.iter().copied().max().unwrap_or(0);
    (0..=top)
        .map(|s| {
            (0..incoming.len())
                .filter(|&i| stage[i] == s)
                .collect::<Vec<_>>()
        })
        .filter(|v| !v.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(control: &str) -> PackageFacts {
        facts_from_control(control).unwrap()
    }

    fn status(entries: &[&str]) -> Vec<PackageFacts> {
        let text: Vec<String> = entries
            .iter()
            .map(|e| format!("{e}\nStatus: install ok installed\n"))
            .collect();
        facts_from_status(&text.join("\n"))
    }

    fn messages(r: Result<(), Vec<Unmet>>) -> Vec<String> {
        r.err()
            .unwrap_or_default()
            .iter()
            .map(|u| u.to_string())
            .collect()
    }

    const PY_OLD: &str = "Package: python3.11\nVersion: 3.11.2-6\nArchitecture: amd64\nMulti-Arch: allowed\nDepends: libpython3.11-stdlib (= 3.11.2-6), libc6 (>= 2.34)";
    const STDLIB_OLD: &str = "Package: libpython3.11-stdlib\nVersion: 3.11.2-6\nArchitecture: amd64\nMulti-Arch: same\nDepends: libc6 (>= 2.34)";
    const LIBC: &str = "Package: libc6\nVersion: 2.36-9\nArchitecture: amd64\nMulti-Arch: same";

    #[test]
    fn taking_back_refuses_a_removal_something_still_needs_and_allows_the_rest() {
        let app_old = "Package: pd-app\nVersion: 1.0\nArchitecture: amd64";
        let app_new = "Package: pd-app\nVersion: 1.1\nArchitecture: amd64\nDepends: pd-newlib";
        let lib = "Package: pd-newlib\nVersion: 1.0\nArchitecture: amd64";
        let user = "Package: pd-user\nVersion: 1\nArchitecture: amd64\nDepends: pd-newlib (>= 1.0)";
        let removing = ["pd-newlib".to_string()];
        // The downgrade drops pd-app's need for the library: it may go.
        let installed = status(&[app_new, lib]);
        assert_eq!(
            check_take_back(&installed, &[pkg(app_old)], &removing, "amd64"),
            Ok(())
        );
        // Without the downgrade, pd-app 1.1 still needs it.
        assert_eq!(
            messages(check_take_back(&installed, &[], &removing, "amd64")),
            ["installed pd-app 1.1 needs pd-newlib, which this update would take away"]
        );
        // Something installed since depends on it: refused, naming it.
        let installed = status(&[app_new, lib, user]);
        assert_eq!(
            messages(check_take_back(
                &installed,
                &[pkg(app_old)],
                &removing,
                "amd64"
            )),
            ["installed pd-user 1 needs pd-newlib (>= 1.0), which this update would take away"]
        );
        // A downgrade that an installed package's versioned need forbids is refused too.
        let strict = "Package: pd-user\nVersion: 1\nArchitecture: amd64\nDepends: pd-app (>= 1.1)";
        let installed = status(&[app_new, strict]);
        assert_eq!(
            messages(check_take_back(&installed, &[pkg(app_old)], &[], "amd64")),
            ["installed pd-user 1 needs pd-app (>= 1.1), which this update would take away"]
        );
    }

    #[test]
    fn relations_parse_as_dpkg_writes_them() {
        let r = parse_relations("libc6 (>= 2.34), default-mta | mail-transport-agent, python3:any (>> 3.11~),perl:native").unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].to_string(), "libc6 (>= 2.34)");
        assert_eq!(r[1].to_string(), "default-mta | mail-transport-agent");
        assert_eq!(r[2].0[0].arch.as_deref(), Some("any"));
        assert_eq!(r[2].0[0].version, Some((Op::Later, "3.11~".into())));
        assert_eq!(r[3].0[0].arch.as_deref(), Some("native"));
        assert_eq!(
            parse_relation("a (< 1)").unwrap().version,
            Some((Op::EarlierEqual, "1".into()))
        );
        assert!(parse_relations("libc6 (>= 2.34").is_err());
        assert!(parse_relations("libc6 (~ 2)").is_err());
        assert!(parse_relations("libc6 (>= )").is_err());
        assert!(parse_relations("").unwrap().is_empty());
    }

    #[test]
    fn one_sibling_alone_needs_the_other_at_the_new_version() {
        let installed = status(&[PY_OLD, STDLIB_OLD, LIBC]);
        let new_py = pkg("Package: python3.11\nVersion: 3.11.2-6+deb12u5\nArchitecture: amd64\nDepends: libpython3.11-stdlib (= 3.11.2-6+deb12u5), libc6 (>= 2.34)");
        assert_eq!(
            messages(check_transaction(
                &installed,
                std::slice::from_ref(&new_py),
                "amd64"
            )),
            ["python3.11 3.11.2-6+deb12u5 needs libpython3.11-stdlib (= 3.11.2-6+deb12u5)"]
        );
        // The other sibling alone takes away what the installed python3.11 needs.
        let new_lib = pkg("Package: libpython3.11-stdlib\nVersion: 3.11.2-6+deb12u5\nArchitecture: amd64\nMulti-Arch: same\nDepends: libc6 (>= 2.34)");
        assert_eq!(
            messages(check_transaction(&installed, std::slice::from_ref(&new_lib), "amd64")),
            ["installed python3.11 3.11.2-6 needs libpython3.11-stdlib (= 3.11.2-6), which this update would take away"]
        );
        // Both together, in one run: nothing unmet.
        assert_eq!(
            check_transaction(&installed, &[new_py, new_lib], "amd64"),
            Ok(())
        );
    }

    #[test]
    fn version_relations_follow_debian_ordering() {
        let installed = status(&[LIBC]);
        let needs = |dep: &str| {
            let p = pkg(&format!(
                "Package: x\nVersion: 1\nArchitecture: amd64\nDepends: {dep}"
            ));
            check_transaction(&installed, &[p], "amd64").is_ok()
        };
        assert!(needs("libc6 (>= 2.36~)"));
        assert!(needs("libc6 (>= 2.36-9)"));
        assert!(!needs("libc6 (>> 2.36-9)"));
        assert!(needs("libc6 (<< 2.36-10)"));
        assert!(!needs("libc6 (<< 2.36-9)"));
        assert!(needs("libc6 (<= 2.36-9)"));
        assert!(needs("libc6 (= 2.36-9)"));
        assert!(!needs("libc6 (= 2.36-9+b1)"));
        assert!(!needs("libc6 (>= 1:0)"));
        assert!(needs("libfoo | libc6 (>= 2.30)"));
        assert!(!needs("libfoo | libc6 (>= 3)"));
    }

    #[test]
    fn provides_count_versioned_only_for_versioned_dependencies() {
        let installed = status(&[
            "Package: exim4\nVersion: 4.96-15\nArchitecture: amd64\nProvides: mail-transport-agent, libfoo-abi (= 2.1)",
        ]);
        let needs = |dep: &str| {
            let p = pkg(&format!(
                "Package: x\nVersion: 1\nArchitecture: amd64\nDepends: {dep}"
            ));
            check_transaction(&installed, &[p], "amd64").is_ok()
        };
        assert!(needs("mail-transport-agent"));
        assert!(!needs("mail-transport-agent (>= 1)"));
        assert!(needs("libfoo-abi (>= 2)"));
        assert!(!needs("libfoo-abi (>= 3)"));
    }

    #[test]
    fn architecture_qualifiers_and_multi_arch() {
        let installed = status(&[
            "Package: libbar\nVersion: 1\nArchitecture: i386\nMulti-Arch: same",
            "Package: perl\nVersion: 5.36\nArchitecture: amd64\nMulti-Arch: allowed",
            "Package: make\nVersion: 4.3\nArchitecture: amd64\nMulti-Arch: foreign",
            "Package: tzdata\nVersion: 2024a\nArchitecture: all",
        ]);
        let ok = |arch: &str, dep: &str| {
            let p = pkg(&format!(
                "Package: x\nVersion: 1\nArchitecture: {arch}\nDepends: {dep}"
            ));
            check_transaction(&installed, &[p], "amd64").is_ok()
        };
        // Plain: same architecture, unless foreign or all.
        assert!(!ok("amd64", "libbar"));
        assert!(ok("i386", "libbar"));
        assert!(ok("i386", "make"));
        assert!(ok("i386", "tzdata"));
        assert!(!ok("i386", "perl"));
        // :any needs Multi-Arch: allowed (or foreign) in another architecture.
        assert!(ok("i386", "perl:any"));
        assert!(!ok("amd64", "libbar:any"));
        // :native and an explicit architecture.
        assert!(ok("i386", "perl:native"));
        assert!(!ok("amd64", "libbar:native"));
        assert!(ok("amd64", "libbar:i386"));
        // An `all` package resolves as native.
        assert!(ok("all", "perl"));
        assert!(!ok("all", "libbar"));
    }

    #[test]
    fn conflicts_and_breaks_refuse_in_both_directions() {
        let installed = status(&[
            LIBC,
            "Package: oldtool\nVersion: 1.0\nArchitecture: amd64\nBreaks: libc6 (>= 2.37)",
        ]);
        let new =
            pkg("Package: newtool\nVersion: 2\nArchitecture: amd64\nConflicts: oldtool (<< 2)");
        assert_eq!(
            messages(check_transaction(&installed, &[new], "amd64")),
            ["newtool 2 Conflicts: oldtool (<< 2), and oldtool 1.0 would be installed"]
        );
        let libc = pkg("Package: libc6\nVersion: 2.37-1\nArchitecture: amd64\nMulti-Arch: same");
        assert_eq!(
            messages(check_transaction(&installed, &[libc], "amd64")),
            ["oldtool 1.0 Breaks: libc6 (>= 2.37), and libc6 2.37-1 would be installed"]
        );
        // A conflict that exists already is not this transaction's.
        let unrelated = pkg("Package: y\nVersion: 1\nArchitecture: amd64");
        assert_eq!(check_transaction(&installed, &[unrelated], "amd64"), Ok(()));
    }

    #[test]
    fn dependencies_unmet_before_are_not_blamed_on_the_update() {
        let installed =
            status(&["Package: broken\nVersion: 1\nArchitecture: amd64\nDepends: gone"]);
        let p = pkg("Package: y\nVersion: 1\nArchitecture: amd64");
        assert_eq!(check_transaction(&installed, &[p], "amd64"), Ok(()));
    }

    #[test]
    fn half_configured_packages_satisfy_nothing() {
        let text = "Package: libfoo\nVersion: 2\nArchitecture: amd64\nStatus: install ok half-configured\n";
        let installed = facts_from_status(text);
        assert!(installed.is_empty());
        let p = pkg("Package: y\nVersion: 1\nArchitecture: amd64\nDepends: libfoo");
        assert_eq!(
            messages(check_transaction(&installed, &[p], "amd64")),
            ["y 1 needs libfoo"]
        );
    }

    #[test]
    fn this_machine_is_consistent() {
        // The real status file: apt keeps it consistent, so an empty transaction and a
        // reinstall of every package at its own version must both pass.
        let Ok(text) = std::fs::read_to_string("/var/lib/dpkg/status") else {
            return;
        };
        let installed = facts_from_status(&text);
        assert!(!installed.is_empty());
        let native = installed
            .iter()
            .find(|p| p.name == "dpkg")
            .map(|p| p.architecture.clone())
            .unwrap_or_else(|| "amd64".into());
        let r = check_transaction(&installed, &installed, &native);
        assert_eq!(r, Ok(()), "{:?}", messages(r.clone()));
    }

    #[test]
    fn a_pre_dependency_inside_one_update_gets_its_own_earlier_dpkg_run() {
        let modules = pkg("Package: libpam-modules\nVersion: 1.5.2-6+deb12u2\nArchitecture: amd64\nPre-Depends: libpam-modules-bin (= 1.5.2-6+deb12u2)\nDepends: libpam0g (>= 1.5)");
        let bin = pkg("Package: libpam-modules-bin\nVersion: 1.5.2-6+deb12u2\nArchitecture: amd64\nDepends: libpam0g (>= 1.5)");
        let lib = pkg("Package: libpam0g\nVersion: 1.5.2-6+deb12u2\nArchitecture: amd64");
        // Order given: the dependent first.
        assert_eq!(
            dpkg_stages(&[modules.clone(), bin.clone(), lib.clone()]),
            vec![vec![1, 2], vec![0]]
        );
        // Plain Depends only: one run.
        assert_eq!(dpkg_stages(&[bin.clone(), lib.clone()]), vec![vec![0, 1]]);
        // Through Provides, and a chain of two.
        let top = pkg("Package: top\nVersion: 1\nArchitecture: all\nPre-Depends: virtual-thing");
        let provider = pkg("Package: provider\nVersion: 1\nArchitecture: all\nProvides: virtual-thing\nPre-Depends: libpam-modules-bin");
        assert_eq!(
            dpkg_stages(&[top, provider, bin.clone()]),
            vec![vec![2], vec![1], vec![0]]
        );
        // A cycle cannot be ordered: one run, and dpkg says what it says.
        let a = pkg("Package: a\nVersion: 1\nArchitecture: all\nPre-Depends: b");
        let b = pkg("Package: b\nVersion: 1\nArchitecture: all\nPre-Depends: a");
        assert_eq!(dpkg_stages(&[a, b]), vec![vec![0, 1]]);
        assert!(dpkg_stages(&[]).is_empty());
    }
}
