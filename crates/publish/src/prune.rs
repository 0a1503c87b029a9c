//! Dropping superseded updates from the signed catalog (issue 10, point 7, the publisher
//! half): an update superseded for longer than a retention leaves the catalog, its
//! document and payloads with it, so the catalog's metadata and the publisher's `targets/`
//! stay bounded however many mirror runs or releases follow. The server then drops the
//! updates on intake and its cleanup removes the blobs no target lists
//! (`content.drop-unlisted`).
//!
//! Used by `patchday mirror run` (and the server's `--mirror-every` schedule) when the
//! mirror configuration says `retain = "90d"`, and by `patchday catalog prune`.
//!
//! The rule ([`superseded_before`]) is pure: an update goes when a successor supersedes
//! it (by naming it in `supersedes`, or by carrying a newer version of every one of its
//! payloads), that successor was first published at or before the cutoff, and the
//! catalog still keeps, in updates nothing supersedes, a version at least as new of each
//! of its payloads and the highest release counter of each of its packages. So the newest
//! update of a package, and every update not superseded, always stays.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use anyhow::Context;
use jiff::Timestamp;
use patchday_pkg::version::compare_deb;
use patchday_trust::{Expiries, KeyPaths, ListedTarget, Removal};
use patchday_types::{PayloadKind, PayloadRef, TargetCustom, UpdateDocument, UpdateId};

use crate::update::DelegatedSigner;

/// One update of the catalog as the prune sees it.
#[derive(Clone, Debug)]
pub struct Listed {
    /// Its signed document.
    pub doc: UpdateDocument,
    /// When this publisher first published it ([`Publications`]).
    pub published: Timestamp,
    /// The signed release counter of each of its payloads, by target name.
    pub counters: BTreeMap<String, u64>,
}

/// An update the prune drops, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// The update.
    pub id: UpdateId,
    /// The earliest published update that supersedes it.
    pub superseded_by: UpdateId,
    /// When that successor was published: the update is superseded since then.
    pub since: Timestamp,
}

type PackageKey<'a> = (PayloadKind, &'a str, &'a str);

fn key(p: &PayloadRef) -> PackageKey<'_> {
    (p.kind, p.package.as_str(), p.architecture.as_str())
}

fn newer(a: &str, b: &str) -> bool {
    compare_deb(a, b).is_ok_and(|o| o.is_gt())
}

fn at_least(a: &str, b: &str) -> bool {
    compare_deb(a, b).is_ok_and(|o| o.is_ge())
}

/// The updates of `updates` superseded at or before `cutoff` that may leave the catalog
/// (see the module documentation), in the order given. Pure: `cutoff` is `now - retain`
/// for a mirror run, the operator's date for `catalog prune --superseded-before`.
pub fn superseded_before(updates: &[Listed], cutoff: Timestamp) -> Vec<Dropped> {
    // Which updates carry which version of each package.
    let mut carriers: HashMap<PackageKey<'_>, Vec<(usize, &str)>> = HashMap::new();
    for (i, u) in updates.iter().enumerate() {
        for p in &u.doc.payloads {
            carriers
                .entry(key(p))
                .or_default()
                .push((i, p.version.as_str()));
        }
    }
    let index: BTreeMap<&UpdateId, usize> = updates
        .iter()
        .enumerate()
        .map(|(i, u)| (&u.doc.id, i))
        .collect();
    // Direct successors: named supersedence, or a newer version of every payload.
    let mut successors: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); updates.len()];
    for (i, u) in updates.iter().enumerate() {
        for old in &u.doc.supersedes {
            if let Some(&j) = index.get(old) {
                if j != i {
                    successors[j].insert(i);
                }
            }
        }
        let mut by_version: Option<BTreeSet<usize>> = None;
        for p in &u.doc.payloads {
            let with_newer: BTreeSet<usize> = carriers
                .get(&key(p))
                .into_iter()
                .flatten()
                .filter(|(j, v)| *j != i && newer(v, &p.version))
                .map(|(j, _)| *j)
                .collect();
            by_version = Some(match by_version {
                None => with_newer,
                Some(s) => s.intersection(&with_newer).copied().collect(),
            });
        }
        successors[i].extend(by_version.unwrap_or_default());
    }
    let heads: Vec<usize> = (0..updates.len())
        .filter(|&i| successors[i].is_empty())
        .collect();
    // The highest release counter per (kind, package) among the heads, which all stay.
    let mut head_counter: HashMap<(PayloadKind, &str), u64> = HashMap::new();
    for &h in &heads {
        let u = &updates[h];
        for p in &u.doc.payloads {
            let c = u.counters.get(&p.target).copied().unwrap_or(0);
            let e = head_counter
                .entry((p.kind, p.package.as_str()))
                .or_default();
            *e = (*e).max(c);
        }
    }
    let mut out = Vec::new();
    for (i, u) in updates.iter().enumerate() {
        let Some(first) = successors[i]
            .iter()
            .map(|&j| &updates[j])
            .min_by_key(|s| (s.published, s.doc.id.clone()))
        else {
            continue;
        };
        if first.published > cutoff {
            continue;
        }
        let kept_elsewhere = u.doc.payloads.iter().all(|p| {
            heads.iter().any(|&h| {
                h != i
                    && updates[h]
                        .doc
                        .payloads
                        .iter()
                        .any(|q| key(q) == key(p) && at_least(&q.version, &p.version))
            })
        });
        let counters_kept = u.doc.payloads.iter().all(|p| {
            let c = u.counters.get(&p.target).copied().unwrap_or(0);
            c <= head_counter
                .get(&(p.kind, p.package.as_str()))
                .copied()
                .unwrap_or(0)
        });
        if kept_elsewhere && counters_kept {
            out.push(Dropped {
                id: u.doc.id.clone(),
                superseded_by: first.doc.id.clone(),
                since: first.published,
            });
        }
    }
    out
}

/// When this publisher first published each update of its catalog, kept beside it in
/// `published.json` (the update documents carry no time, and a catalog's metadata says
/// only when it was last signed). Written by every `add_update`; an update it does not
/// know (a catalog from before it) counts from its document file's modification time,
/// else from the prune's `now`: a lost file only postpones pruning, never hastens it.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Publications {
    /// First publication time by update id.
    pub published: BTreeMap<String, Timestamp>,
}

impl Publications {
    const FILE: &'static str = "published.json";

    /// Reads the record of `repo` (empty when absent or unreadable).
    pub fn load(repo: &Path) -> Self {
        std::fs::read(repo.join(Self::FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Writes the record of `repo`.
    pub fn save(&self, repo: &Path) -> anyhow::Result<()> {
        let path = repo.join(Self::FILE);
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Records that `id` was published at `now`, unless it was earlier.
    pub fn record(repo: &Path, id: &UpdateId, now: Timestamp) -> anyhow::Result<()> {
        let mut p = Self::load(repo);
        if p.published.contains_key(id.as_str()) {
            return Ok(());
        }
        p.published.insert(id.as_str().to_owned(), now);
        p.save(repo)
    }
}

/// What a prune did.
#[derive(Debug, Default)]
pub struct PruneReport {
    /// The updates dropped, with their successor.
    pub dropped: Vec<Dropped>,
    /// The targets taken out and the files deleted.
    pub removal: Removal,
}

impl PruneReport {
    /// One line per dropped update and a total, for the operator.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .dropped
            .iter()
            .map(|d| {
                format!(
                    "dropped {} from the catalog: superseded by {} since {}",
                    d.id, d.superseded_by, d.since
                )
            })
            .collect();
        out.push(format!(
            "pruned {} superseded update(s): {} target(s), {} file(s), {} bytes; re-signed {} role(s)",
            self.dropped.len(),
            self.removal.removed.len(),
            self.removal.files,
            self.removal.bytes,
            self.removal.resigned.len()
        ));
        out
    }
}

/// Which updates of the signing role a prune may drop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Only mirrored ones (with upstream evidence): a mirror run signing as the offline
    /// targets role leaves the operator's own updates to `patchday catalog prune`.
    Mirrored,
    /// Every update of the role (`patchday catalog prune`).
    All,
}

/// Whether `listed_role` is `role` or one of its hash bins.
fn in_role(listed_role: &str, role: &str) -> bool {
    listed_role == role
        || listed_role
            .strip_prefix(role)
            .is_some_and(|r| r.starts_with(".bin-"))
}

/// Drops from the catalog in `repo` the updates of the signing role (`role`, else the
/// offline targets role) within `scope` superseded at or before `cutoff` ([`superseded_before`]; every
/// update of the catalog counts as a successor), with their payloads unless a kept
/// update lists them too; re-signs their bins, snapshot and timestamp and deletes their
/// files.
pub async fn prune(
    keys: &KeyPaths,
    repo: &Path,
    role: Option<&DelegatedSigner>,
    scope: Scope,
    cutoff: Timestamp,
    now: Timestamp,
) -> anyhow::Result<PruneReport> {
    let listing = patchday_trust::catalog_listing(repo)
        .await
        .with_context(|| format!("reading the catalog in {}", repo.display()))?;
    let mut publications = Publications::load(repo);
    let mut updates = Vec::new();
    let mut roles: BTreeMap<UpdateId, &str> = BTreeMap::new();
    let mut mirrored: BTreeSet<UpdateId> = BTreeSet::new();
    for (name, l) in &listing {
        let Ok(TargetCustom::Update { id }) = serde_json::from_value(l.info.custom.clone()) else {
            continue;
        };
        let doc = read_document(repo, name, l)?;
        let published = match publications.published.get(id.as_str()) {
            Some(t) => *t,
            None => {
                let t = file_time(repo, name, l).unwrap_or(now);
                publications.published.insert(id.as_str().to_owned(), t);
                t
            }
        };
        let counters = doc
            .payloads
            .iter()
            .filter_map(|p| {
                let custom = listing.get(&p.target)?.info.custom.clone();
                match serde_json::from_value(custom).ok()? {
                    TargetCustom::Payload {
                        release_counter, ..
                    } => Some((p.target.clone(), release_counter)),
                    TargetCustom::Update { .. } => None,
                }
            })
            .collect();
        roles.insert(id.clone(), l.role.as_str());
        if doc.upstream.is_some() {
            mirrored.insert(id.clone());
        }
        updates.push(Listed {
            doc,
            published,
            counters,
        });
    }
    let signer = role.map(|r| r.role.as_str()).unwrap_or("targets");
    let dropped: Vec<Dropped> = superseded_before(&updates, cutoff)
        .into_iter()
        .filter(|d| roles.get(&d.id).is_some_and(|r| in_role(r, signer)))
        .filter(|d| scope == Scope::All || mirrored.contains(&d.id))
        .collect();
    let gone: BTreeSet<&UpdateId> = dropped.iter().map(|d| &d.id).collect();
    // Payload names a kept update still lists stay.
    let kept: BTreeSet<&str> = updates
        .iter()
        .filter(|u| !gone.contains(&u.doc.id))
        .flat_map(|u| u.doc.payloads.iter().map(|p| p.target.as_str()))
        .collect();
    let mut names = BTreeSet::new();
    for u in updates.iter().filter(|u| gone.contains(&u.doc.id)) {
        names.insert(UpdateDocument::target_name(&u.doc.id));
        for p in &u.doc.payloads {
            if !kept.contains(p.target.as_str()) {
                names.insert(p.target.clone());
            }
        }
    }
    let removal = if names.is_empty() {
        Removal::default()
    } else {
        let role_keys = role.map(|r| (r.role.as_str(), r.key_files.as_slice()));
        patchday_trust::remove_targets(keys, repo, role_keys, &names, now, &Expiries::default())
            .await
            .with_context(|| {
                format!(
                    "dropping {} superseded update(s) from {}",
                    dropped.len(),
                    repo.display()
                )
            })?
    };
    for d in &dropped {
        publications.published.remove(d.id.as_str());
    }
    publications.save(repo)?;
    Ok(PruneReport { dropped, removal })
}

/// The signed update document `name`, checked against the catalog's hash.
fn read_document(repo: &Path, name: &str, l: &ListedTarget) -> anyhow::Result<UpdateDocument> {
    let path = repo.join("targets").join(l.info.stored_name(name));
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    patchday_trust::check_bytes(name, &l.info, &bytes).with_context(|| {
        format!(
            "{} does not match the signed catalog: restore it from a backup or publish the update again",
            path.display()
        )
    })?;
    serde_json::from_slice(&bytes).with_context(|| format!("update document {name} is not valid"))
}

/// The modification time of a target's file (a catalog from before [`Publications`]).
fn file_time(repo: &Path, name: &str, l: &ListedTarget) -> Option<Timestamp> {
    let m = std::fs::metadata(repo.join("targets").join(l.info.stored_name(name))).ok()?;
    Timestamp::try_from(m.modified().ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchday_types::{Classification, Release, Severity, YearMonth};

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn payload(pkg: &str, ver: &str, arch: &str) -> PayloadRef {
        PayloadRef {
            target: format!("{pkg}_{ver}_{arch}.deb"),
            kind: PayloadKind::Deb,
            package: pkg.into(),
            version: ver.into(),
            architecture: arch.into(),
            source: pkg.into(),
            source_version: ver.into(),
        }
    }

    fn upd(id: &str, payloads: Vec<PayloadRef>, supersedes: &[&str], at: &str) -> Listed {
        let counters = payloads
            .iter()
            .map(|p| {
                // Counters follow the version's last digit, as publishing in order gives.
                let n = p.version.chars().last().and_then(|c| c.to_digit(10));
                (p.target.clone(), u64::from(n.unwrap_or(0)))
            })
            .collect();
        Listed {
            doc: UpdateDocument {
                id: UpdateId::new(id).unwrap(),
                title: id.into(),
                product: "debian".into(),
                classification: Classification::Security,
                severity: Severity::Important,
                cves: vec![],
                supersedes: supersedes
                    .iter()
                    .map(|s| UpdateId::new(*s).unwrap())
                    .collect(),
                release: Release::Train {
                    month: YearMonth {
                        year: 2026,
                        month: 12,
                    },
                },
                payloads,
                description: String::new(),
                tenants: vec![],
                upstream: None,
            },
            published: t(at),
            counters,
        }
    }

    fn ids(d: &[Dropped]) -> Vec<&str> {
        d.iter().map(|d| d.id.as_str()).collect()
    }

    #[test]
    fn a_newer_version_supersedes_once_the_retention_has_passed() {
        let u = [
            upd(
                "A-1",
                vec![payload("zlib1g", "1.2-1", "amd64")],
                &[],
                "2026-01-01T00:00:00Z",
            ),
            upd(
                "A-2",
                vec![payload("zlib1g", "1.2-2", "amd64")],
                &[],
                "2026-02-01T00:00:00Z",
            ),
            upd(
                "A-3",
                vec![payload("zlib1g", "1.2-3", "amd64")],
                &[],
                "2026-03-01T00:00:00Z",
            ),
        ];
        // A-1 is superseded since A-2 (Feb 1st), A-2 since A-3 (Mar 1st).
        assert!(superseded_before(&u, t("2026-01-31T23:59:59Z")).is_empty());
        let d = superseded_before(&u, t("2026-02-01T00:00:00Z"));
        assert_eq!(ids(&d), ["A-1"]);
        assert_eq!(d[0].superseded_by.as_str(), "A-2");
        assert_eq!(d[0].since, t("2026-02-01T00:00:00Z"));
        // The newest never goes, however late.
        assert_eq!(
            ids(&superseded_before(&u, t("2030-01-01T00:00:00Z"))),
            ["A-1", "A-2"]
        );
    }

    #[test]
    fn an_update_not_superseded_stays() {
        let u = [
            upd(
                "A-1",
                vec![payload("zlib1g", "1.2-1", "amd64")],
                &[],
                "2026-01-01T00:00:00Z",
            ),
            upd(
                "B-1",
                vec![payload("curl", "8.0-1", "amd64")],
                &[],
                "2026-01-01T00:00:00Z",
            ),
            // Only one of two architectures has a newer version.
            upd(
                "C-1",
                vec![
                    payload("libc6", "2.36-1", "amd64"),
                    payload("libc6", "2.36-1", "arm64"),
                ],
                &[],
                "2026-01-01T00:00:00Z",
            ),
            upd(
                "C-2",
                vec![payload("libc6", "2.36-2", "amd64")],
                &[],
                "2026-01-02T00:00:00Z",
            ),
        ];
        assert!(superseded_before(&u, t("2030-01-01T00:00:00Z")).is_empty());
    }

    #[test]
    fn a_named_supersedence_keeps_a_package_the_successor_does_not_carry() {
        let u = [
            upd(
                "A-1",
                vec![payload("tool", "1.0-1", "amd64")],
                &[],
                "2026-01-01T00:00:00Z",
            ),
            // B-1 names A-1 but ships another package: A-1 is still its package's newest.
            upd(
                "B-1",
                vec![payload("tool-ng", "2.0-1", "amd64")],
                &["A-1"],
                "2026-01-02T00:00:00Z",
            ),
            // D-2 names D-1 and carries its package again, same version: D-1 may go.
            upd(
                "D-1",
                vec![payload("agent", "3.0-1", "all")],
                &[],
                "2026-01-01T00:00:00Z",
            ),
            upd(
                "D-2",
                vec![payload("agent", "3.0-1", "all")],
                &["D-1"],
                "2026-01-03T00:00:00Z",
            ),
        ];
        assert_eq!(
            ids(&superseded_before(&u, t("2030-01-01T00:00:00Z"))),
            ["D-1"]
        );
    }

    #[test]
    fn updates_that_supersede_each_other_both_stay() {
        let u = [
            upd(
                "A-1",
                vec![payload("x", "1.0-1", "amd64")],
                &["A-2"],
                "2026-01-01T00:00:00Z",
            ),
            upd(
                "A-2",
                vec![payload("x", "1.0-1", "amd64")],
                &["A-1"],
                "2026-01-01T00:00:00Z",
            ),
        ];
        assert!(superseded_before(&u, t("2030-01-01T00:00:00Z")).is_empty());
    }

    #[test]
    fn the_highest_release_counter_of_a_package_stays() {
        // Published out of version order: the older version holds the higher counter.
        let mut u = vec![
            upd(
                "A-1",
                vec![payload("x", "1.0-1", "amd64")],
                &[],
                "2026-01-01T00:00:00Z",
            ),
            upd(
                "A-2",
                vec![payload("x", "1.0-2", "amd64")],
                &[],
                "2026-01-02T00:00:00Z",
            ),
        ];
        u[0].counters.insert("x_1.0-1_amd64.deb".into(), 9);
        assert!(superseded_before(&u, t("2030-01-01T00:00:00Z")).is_empty());
    }

    #[test]
    fn the_first_successor_starts_the_retention() {
        let u = [
            upd(
                "A-1",
                vec![payload("x", "1.0-1", "amd64")],
                &[],
                "2026-01-01T00:00:00Z",
            ),
            upd(
                "A-3",
                vec![payload("x", "1.0-3", "amd64")],
                &[],
                "2026-03-01T00:00:00Z",
            ),
            upd(
                "A-2",
                vec![payload("x", "1.0-2", "amd64")],
                &[],
                "2026-02-01T00:00:00Z",
            ),
        ];
        let d = superseded_before(&u, t("2026-02-15T00:00:00Z"));
        assert_eq!(ids(&d), ["A-1"]);
        assert_eq!(d[0].superseded_by.as_str(), "A-2");
    }

    #[test]
    fn role_and_bins() {
        assert!(in_role("mirror", "mirror"));
        assert!(in_role("mirror.bin-3f", "mirror"));
        assert!(!in_role("mirror2.bin-3f", "mirror"));
        assert!(in_role("targets.bin-00", "targets"));
        assert!(!in_role("tenant-acme", "targets"));
    }
}
