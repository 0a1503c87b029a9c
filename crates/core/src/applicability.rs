//! Which updates a host needs, and where each one stands.
//!
//! The truth about what is installed is the host's inventory (what dpkg says), never
//! the agent's claim: an agent that reports "installed" while dpkg still lists the
//! old version shows up as failed.

use patchday_pkg::version::compare_deb;
use patchday_types::api::Decision;
use patchday_types::{Inventory, PayloadKind, PayloadRef, UpdateDocument, UpdateId, UpdateState};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// How one payload relates to one host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadFit {
    /// The host does not have the package (or has another architecture).
    Absent,
    /// The host has an older version: installing it is needed.
    Older,
    /// The host has this version or a newer one.
    Satisfied,
}

/// How a payload fits a host's inventory.
pub fn payload_fit(inv: &Inventory, p: &PayloadRef) -> PayloadFit {
    if !inv.fits_architecture(&p.package, &p.architecture) {
        // Another architecture's build of a package this host has (as `all`, say).
        return PayloadFit::Absent;
    }
    if p.kind == PayloadKind::Deb && inv.is_unfinished(&p.package, &p.architecture) {
        // A failed or killed install: dpkg does not call it installed, so neither do we.
        return PayloadFit::Older;
    }
    let installed = match p.kind {
        PayloadKind::Deb => inv
            .package(&p.package, &p.architecture)
            .map(|i| i.version.as_str()),
        PayloadKind::Bundle => inv.bundle(&p.package).map(|b| b.version.as_str()),
        PayloadKind::Baseline => inv.baseline(&p.package).map(|b| b.version.as_str()),
    };
    match installed {
        // Issue 13, point 1: a baseline applies to every host; not applied yet means needed.
        None if p.kind == PayloadKind::Baseline => PayloadFit::Older,
        None => PayloadFit::Absent,
        Some(v) => match compare_deb(v, &p.version) {
            Ok(Ordering::Less) => PayloadFit::Older,
            Ok(_) => PayloadFit::Satisfied,
            // An unparsable version cannot be ordered; treat the package as absent
            // rather than guess (the audit reports malformed versions).
            Err(_) => PayloadFit::Absent,
        },
    }
}

/// Whether an update applies to a host, and which of its payloads it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applicability {
    /// None of its packages are on the host.
    NotApplicable,
    /// Every package it touches is already at its version or newer.
    Installed,
    /// These payload targets are missing.
    Missing(Vec<String>),
}

/// Applicability of one update on one host.
pub fn applicability(inv: &Inventory, update: &UpdateDocument) -> Applicability {
    let mut missing = Vec::new();
    let mut any_present = false;
    for p in &update.payloads {
        match payload_fit(inv, p) {
            PayloadFit::Absent => {}
            PayloadFit::Satisfied => any_present = true,
            PayloadFit::Older => {
                any_present = true;
                missing.push(p.target.clone());
            }
        }
    }
    match (any_present, missing.is_empty()) {
        (false, _) => Applicability::NotApplicable,
        (true, true) => Applicability::Installed,
        (true, false) => Applicability::Missing(missing),
    }
}

/// The last state an agent reported for an update, with its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reported {
    /// The reported state.
    pub state: UpdateState,
    /// The installer's message.
    pub message: Option<String>,
    /// Whether the report is newer than the approval it acted on (for a declined update,
    /// newer than the decline: issue 10, point 3).
    pub after_approval: bool,
}

/// An operator decision that applies to a host (through one of its groups).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostDecision {
    /// Approve or decline.
    pub decision: Decision,
    /// Deadline, if any.
    pub deadline: Option<jiff::Timestamp>,
    /// Issue 10, point 2: the deadline plus the ring's grace period, after which a host
    /// not installed counts as overdue (the deadline itself outside rings).
    pub overdue_at: Option<jiff::Timestamp>,
}

/// Folds the decisions of a host's groups: an approval in any group wins over a
/// decline in another (the host is in the approving group, so it must install), and
/// the earliest deadline wins.
pub fn fold_decisions<'a>(
    decisions: impl IntoIterator<Item = &'a HostDecision>,
) -> Option<HostDecision> {
    let mut out: Option<HostDecision> = None;
    for d in decisions {
        out = Some(match out.take() {
            None => d.clone(),
            Some(cur) => match (cur.decision, d.decision) {
                (Decision::Approve, Decision::Approve) => HostDecision {
                    decision: Decision::Approve,
                    deadline: earliest(cur.deadline, d.deadline),
                    overdue_at: earliest(cur.overdue_at, d.overdue_at),
                },
                (Decision::Approve, Decision::Decline) => cur,
                (Decision::Decline, _) => d.clone(),
            },
        });
    }
    out
}

fn earliest(a: Option<jiff::Timestamp>, b: Option<jiff::Timestamp>) -> Option<jiff::Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Everything known about one host, as input to [`evaluate`].
pub struct HostView<'a> {
    /// Its latest inventory; `None` before the first check-in.
    pub inventory: Option<&'a Inventory>,
    /// Decisions per update, already folded over the host's groups.
    pub decisions: &'a BTreeMap<UpdateId, HostDecision>,
    /// The agent's last report per update.
    pub reported: &'a BTreeMap<UpdateId, Reported>,
}

/// One update's status on one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateStatus {
    /// The update.
    pub update: UpdateId,
    /// Its state.
    pub state: UpdateState,
    /// Why, or the installer's message.
    pub message: Option<String>,
    /// Payload targets the host must install (for assignments).
    pub missing: Vec<String>,
    /// Deadline from the approval.
    pub deadline: Option<jiff::Timestamp>,
    /// When the host counts as overdue if not installed: the deadline plus the ring's
    /// grace period (issue 10, point 2).
    pub overdue_at: Option<jiff::Timestamp>,
}

impl UpdateStatus {
    /// Whether the agent must act on it now.
    pub fn is_assigned(&self) -> bool {
        matches!(
            self.state,
            UpdateState::Approved
                | UpdateState::Downloading
                | UpdateState::Downloaded
                | UpdateState::Installing
                | UpdateState::Failed
        )
    }
}

/// The catalog's update documents, indexed once per catalog version (issue 9, point 6):
/// by the package and bundle names their payloads install, by id and by target name, with
/// the supersedence closure worked out. A check-in then touches only the updates that name
/// one of the host's packages, so its cost follows the host, not the catalog's history.
#[derive(Debug, Default)]
pub struct CatalogIndex {
    updates: Vec<UpdateDocument>,
    by_name: HashMap<String, Vec<usize>>,
    by_id: HashMap<UpdateId, usize>,
    by_target: HashMap<String, usize>,
    superseded_by: BTreeMap<UpdateId, BTreeSet<UpdateId>>,
    /// Issue 13, point 1: updates carrying a baseline, relevant to every host.
    baselines: Vec<usize>,
}

impl CatalogIndex {
    /// Indexes `updates` (kept in the given order).
    pub fn new(updates: Vec<UpdateDocument>) -> Self {
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_id = HashMap::new();
        let mut by_target = HashMap::new();
        let mut baselines = Vec::new();
        for (i, u) in updates.iter().enumerate() {
            if u.payloads.iter().any(|p| p.kind == PayloadKind::Baseline) {
                baselines.push(i);
            }
            by_id.insert(u.id.clone(), i);
            by_target.insert(UpdateDocument::target_name(&u.id), i);
            let names: BTreeSet<&str> = u.payloads.iter().map(|p| p.package.as_str()).collect();
            for n in names {
                by_name.entry(n.to_owned()).or_default().push(i);
            }
        }
        let superseded_by = superseded_by(&updates);
        CatalogIndex {
            updates,
            by_name,
            by_id,
            by_target,
            superseded_by,
            baselines,
        }
    }

    /// Every update, in catalog order.
    pub fn updates(&self) -> &[UpdateDocument] {
        &self.updates
    }

    /// How many updates the catalog has.
    pub fn len(&self) -> usize {
        self.updates.len()
    }

    /// Whether the catalog has no update.
    pub fn is_empty(&self) -> bool {
        self.updates.is_empty()
    }

    /// The update with this id.
    pub fn get(&self, id: &str) -> Option<&UpdateDocument> {
        let id = UpdateId::new(id).ok()?;
        self.by_id.get(&id).and_then(|&i| self.updates.get(i))
    }

    /// The updates that (transitively) supersede `id` (issue 10, point 7: cleanup).
    pub fn successors(&self, id: &UpdateId) -> Option<&BTreeSet<UpdateId>> {
        self.superseded_by.get(id)
    }

    /// The update whose document is the target `name` (`update-<id>.json`).
    pub fn by_target_name(&self, name: &str) -> Option<&UpdateDocument> {
        self.by_target.get(name).and_then(|&i| self.updates.get(i))
    }

    /// The updates that name a package or bundle the host has (installed or left
    /// unfinished), and every baseline (issue 13), in catalog order: every other update is
    /// not applicable to it.
    pub fn relevant(&self, inv: &Inventory) -> Vec<&UpdateDocument> {
        let names = inv
            .packages
            .iter()
            .chain(&inv.unfinished)
            .map(|p| p.name.as_str())
            .chain(inv.bundles.iter().map(|b| b.name.as_str()));
        let hits: BTreeSet<usize> = names
            .filter_map(|n| self.by_name.get(n))
            .flatten()
            .chain(&self.baselines)
            .copied()
            .collect();
        hits.into_iter()
            .filter_map(|i| self.updates.get(i))
            .collect()
    }
}

// ---- issue 9, point 4 (closure): dependency payloads are looked up by package name ----
impl CatalogIndex {
    /// The updates whose payloads install the package or bundle `name`, in catalog order.
    pub fn naming(&self, name: &str) -> Vec<&UpdateDocument> {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|&i| self.updates.get(i))
            .collect()
    }
}

/// Computes the status of every update for one host (a convenience over
/// [`evaluate_indexed`] for a catalog indexed on the spot).
pub fn evaluate(host: &HostView<'_>, updates: &[UpdateDocument]) -> Vec<UpdateStatus> {
    let index = CatalogIndex::new(updates.to_vec());
    let all: Vec<&UpdateDocument> = index.updates().iter().collect();
    evaluate_among(host, &index, &all)
}

/// The status of each update of `catalog` that may apply to the host (those naming one
/// of its packages, see [`CatalogIndex::relevant`]) and that `visible` lets through (an
/// update published for other tenants only does not exist for this host). Updates left
/// out are not applicable.
pub fn evaluate_indexed(
    host: &HostView<'_>,
    catalog: &CatalogIndex,
    visible: impl Fn(&UpdateDocument) -> bool,
) -> Vec<UpdateStatus> {
    let Some(inv) = host.inventory else {
        return Vec::new();
    };
    let updates: Vec<&UpdateDocument> = catalog
        .relevant(inv)
        .into_iter()
        .filter(|u| visible(u))
        .collect();
    evaluate_among(host, catalog, &updates)
}

/// Computes the status of `updates` (of `catalog`) for one host.
///
/// Order of precedence: not applicable; installed (from inventory; pending reboot
/// when the agent said so and the host still wants a reboot); superseded by an
/// approved successor among `updates`; declined; approved (refined by the agent's last
/// report); needed.
fn evaluate_among(
    host: &HostView<'_>,
    catalog: &CatalogIndex,
    updates: &[&UpdateDocument],
) -> Vec<UpdateStatus> {
    let Some(inv) = host.inventory else {
        return Vec::new();
    };
    let app: BTreeMap<&UpdateId, Applicability> = updates
        .iter()
        .map(|u| (&u.id, applicability(inv, u)))
        .collect();
    let approved = |id: &UpdateId| {
        host.decisions
            .get(id)
            .is_some_and(|d| d.decision == Decision::Approve)
    };
    let superseded_by = &catalog.superseded_by;

    let mut out = Vec::new();
    for &u in updates {
        let status = |state, message: Option<String>, missing: Vec<String>| UpdateStatus {
            update: u.id.clone(),
            state,
            message,
            missing,
            deadline: host.decisions.get(&u.id).and_then(|d| d.deadline),
            overdue_at: host.decisions.get(&u.id).and_then(|d| d.overdue_at),
        };
        let missing = match app.get(&u.id) {
            Some(Applicability::Missing(m)) => m.clone(),
            Some(Applicability::Installed) => {
                // Issue 10, point 3: declined with removal, and the agent could not take
                // it back (or says it did while dpkg still lists it).
                if let Some(st) = take_back_state(host, &u.id, true) {
                    out.push(status(st.0, st.1, Vec::new()));
                    continue;
                }
                let pending = inv.reboot_required
                    && host
                        .reported
                        .get(&u.id)
                        .is_some_and(|r| r.state == UpdateState::InstalledPendingReboot);
                out.push(status(
                    if pending {
                        UpdateState::InstalledPendingReboot
                    } else {
                        UpdateState::Installed
                    },
                    None,
                    Vec::new(),
                ));
                continue;
            }
            _ => {
                out.push(status(UpdateState::NotApplicable, None, Vec::new()));
                continue;
            }
        };
        // A successor that is approved (and applies here) replaces this update.
        if let Some(succ) = superseded_by.get(&u.id).and_then(|succs| {
            succs.iter().find(|s| {
                approved(s)
                    && matches!(
                        app.get(s),
                        Some(Applicability::Missing(_) | Applicability::Installed)
                    )
            })
        }) {
            out.push(status(
                UpdateState::Superseded,
                Some(format!("superseded by {succ}")),
                Vec::new(),
            ));
            continue;
        }
        match host.decisions.get(&u.id).map(|d| d.decision) {
            Some(Decision::Decline) => match take_back_state(host, &u.id, false) {
                // Issue 10, point 3: the agent's report of taking it back.
                Some((state, message)) => out.push(status(state, message, missing)),
                None => out.push(status(UpdateState::Declined, None, missing)),
            },
            Some(Decision::Approve) => {
                let (state, message) = match host.reported.get(&u.id) {
                    Some(r) if r.after_approval => match r.state {
                        UpdateState::Downloading
                        | UpdateState::Downloaded
                        | UpdateState::Installing
                        | UpdateState::Failed => (r.state, r.message.clone()),
                        UpdateState::Installed | UpdateState::InstalledPendingReboot => (
                            UpdateState::Failed,
                            Some(
                                "the agent reported it installed, but the host's dpkg inventory still lists an older version".into(),
                            ),
                        ),
                        _ => (UpdateState::Approved, None),
                    },
                    _ => (UpdateState::Approved, None),
                };
                out.push(status(state, message, missing));
            }
            None => out.push(status(UpdateState::Needed, None, missing)),
        }
    }
    out
}

/// Issue 10, point 3: the state of a declined update the agent reported taking back (or
/// failing to), when that report is newer than the decline. `still_installed`: dpkg's
/// inventory still lists the update's versions, so a "removed" is not the truth.
fn take_back_state(
    host: &HostView<'_>,
    update: &UpdateId,
    still_installed: bool,
) -> Option<(UpdateState, Option<String>)> {
    if host.decisions.get(update).map(|d| d.decision) != Some(Decision::Decline) {
        return None;
    }
    let r = host.reported.get(update).filter(|r| r.after_approval)?;
    match (r.state, still_installed) {
        (UpdateState::RemoveFailed, _) | (UpdateState::Removed, false) => {
            Some((r.state, r.message.clone()))
        }
        (UpdateState::Removed, true) => Some((
            UpdateState::RemoveFailed,
            Some("the agent reported it removed, but the host's dpkg inventory still lists the update's versions".into()),
        )),
        _ => None,
    }
}

/// For each update, the updates that (transitively) supersede it.
fn superseded_by(updates: &[UpdateDocument]) -> BTreeMap<UpdateId, BTreeSet<UpdateId>> {
    let mut direct: BTreeMap<UpdateId, BTreeSet<UpdateId>> = BTreeMap::new();
    for u in updates {
        for old in &u.supersedes {
            direct.entry(old.clone()).or_default().insert(u.id.clone());
        }
    }
    // Transitive closure; catalogs are small enough for a simple fixpoint, and a
    // cycle (a publishing mistake) terminates because sets only grow.
    let mut changed = true;
    while changed {
        changed = false;
        let snapshot = direct.clone();
        for succs in direct.values_mut() {
            let extra: Vec<UpdateId> = succs
                .iter()
                .filter_map(|s| snapshot.get(s))
                .flatten()
                .filter(|x| !succs.contains(*x))
                .cloned()
                .collect();
            if !extra.is_empty() {
                succs.extend(extra);
                changed = true;
            }
        }
    }
    direct
}

// Whether a host is compliant is `crate::compliance::host_compliance` (issue 9, point 7):
// nothing it needs may be missing, approved or not.

#[cfg(test)]
mod tests {
    use super::*;
    use patchday_types::{Classification, InstalledPackage, Release, Severity, YearMonth};

    fn inv(pkgs: &[(&str, &str)]) -> Inventory {
        Inventory {
            architecture: "amd64".into(),
            packages: pkgs
                .iter()
                .map(|(n, v)| InstalledPackage {
                    name: n.to_string(),
                    version: v.to_string(),
                    architecture: "amd64".into(),
                    source: n.to_string(),
                    source_version: v.to_string(),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn upd(id: &str, pkg: &str, ver: &str, supersedes: &[&str]) -> UpdateDocument {
        UpdateDocument {
            id: UpdateId::new(id).unwrap(),
            title: id.into(),
            product: "debian-12".into(),
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
                    month: 11,
                },
            },
            payloads: vec![PayloadRef {
                target: format!("{pkg}_{ver}_amd64.deb"),
                kind: PayloadKind::Deb,
                package: pkg.into(),
                version: ver.into(),
                architecture: "amd64".into(),
                source: pkg.into(),
                source_version: ver.into(),
            }],
            description: String::new(),
            tenants: vec![],
            upstream: None,
        }
    }

    /// Issue 13, point 1: a baseline applies to every host (needed until applied), is
    /// satisfied by the applied version or a newer one, and is relevant without naming a
    /// package the host has.
    #[test]
    fn a_baseline_is_needed_everywhere_until_applied() {
        let mut doc = upd("PD-BL-1", "web-fw", "2", &[]);
        doc.payloads[0].kind = PayloadKind::Baseline;
        doc.payloads[0].architecture = "all".into();
        doc.payloads[0].target = "baseline-web-fw-2.toml".into();
        let mut host = inv(&[("libfoo", "1.0")]);
        assert_eq!(
            applicability(&host, &doc),
            Applicability::Missing(vec!["baseline-web-fw-2.toml".into()])
        );
        let index = CatalogIndex::new(vec![doc.clone(), upd("PD-X", "other", "1", &[])]);
        let relevant: Vec<&str> = index
            .relevant(&host)
            .iter()
            .map(|u| u.id.as_str())
            .collect();
        assert_eq!(relevant, vec!["PD-BL-1"]);
        host.baselines.push(patchday_types::AppliedBaseline {
            name: "web-fw".into(),
            version: "1".into(),
        });
        assert!(matches!(
            applicability(&host, &doc),
            Applicability::Missing(_)
        ));
        host.baselines[0].version = "2".into();
        assert_eq!(applicability(&host, &doc), Applicability::Installed);
    }

    fn approve() -> HostDecision {
        HostDecision {
            decision: Decision::Approve,
            deadline: None,
            overdue_at: None,
        }
    }

    fn run(
        i: &Inventory,
        ups: &[UpdateDocument],
        dec: &[(&str, HostDecision)],
        rep: &[(&str, UpdateState)],
    ) -> Vec<UpdateStatus> {
        let decisions = dec
            .iter()
            .map(|(k, v)| (UpdateId::new(*k).unwrap(), v.clone()))
            .collect();
        let reported = rep
            .iter()
            .map(|(k, s)| {
                (
                    UpdateId::new(*k).unwrap(),
                    Reported {
                        state: *s,
                        message: Some("dpkg said no".into()),
                        after_approval: true,
                    },
                )
            })
            .collect();
        evaluate(
            &HostView {
                inventory: Some(i),
                decisions: &decisions,
                reported: &reported,
            },
            ups,
        )
    }

    #[test]
    fn epochs_and_tildes_decide_applicability() {
        let u = upd("U1", "libfoo", "1:1.0", &[]);
        assert!(matches!(
            applicability(&inv(&[("libfoo", "9.9")]), &u),
            Applicability::Missing(_)
        ));
        assert_eq!(
            applicability(&inv(&[("libfoo", "1:1.0")]), &u),
            Applicability::Installed
        );
        let t = upd("U2", "libfoo", "1.0", &[]);
        assert!(matches!(
            applicability(&inv(&[("libfoo", "1.0~rc1")]), &t),
            Applicability::Missing(_)
        ));
        assert_eq!(
            applicability(&inv(&[("libbar", "1")]), &t),
            Applicability::NotApplicable
        );
    }

    #[test]
    fn a_declined_update_taken_back_shows_what_the_agent_did_and_dpkg_confirms() {
        let decline = HostDecision {
            decision: Decision::Decline,
            deadline: None,
            overdue_at: None,
        };
        let ups = [upd("U", "a", "2", &[])];
        let state = |i: &Inventory, rep: &[(&str, UpdateState)]| {
            let s = run(i, &ups, &[("U", decline.clone())], rep);
            (s[0].state, s[0].message.clone())
        };
        let back = inv(&[("a", "1")]);
        let still = inv(&[("a", "2")]);
        // Taken back (the host is at the older version again): removed.
        assert_eq!(
            state(&back, &[("U", UpdateState::Removed)]).0,
            UpdateState::Removed
        );
        // Refused by the agent: still installed, and the report says why.
        assert_eq!(
            state(&still, &[("U", UpdateState::RemoveFailed)]),
            (UpdateState::RemoveFailed, Some("dpkg said no".into()))
        );
        // "Removed" while dpkg still lists it is not the truth.
        assert_eq!(
            state(&still, &[("U", UpdateState::Removed)]).0,
            UpdateState::RemoveFailed
        );
        // Without a report: a plain decline (installed stays installed).
        assert_eq!(state(&back, &[]).0, UpdateState::Declined);
        assert_eq!(state(&still, &[]).0, UpdateState::Installed);
    }

    #[test]
    fn half_configured_package_still_needs_the_update() {
        let u = upd("U1", "libfoo", "2", &[]);
        let mut i = inv(&[]);
        i.unfinished = inv(&[("libfoo", "2")]).packages;
        assert_eq!(
            applicability(&i, &u),
            Applicability::Missing(vec!["libfoo_2_amd64.deb".into()])
        );
    }

    #[test]
    fn states_follow_decisions_and_truth() {
        let i = inv(&[("a", "1"), ("b", "1"), ("c", "2"), ("d", "1")]);
        let ups = [
            upd("A", "a", "2", &[]),
            upd("B", "b", "2", &[]),
            upd("C", "c", "2", &[]),
            upd("D", "d", "2", &[]),
        ];
        let dec = [
            ("A", approve()),
            (
                "B",
                HostDecision {
                    decision: Decision::Decline,
                    deadline: None,
                    overdue_at: None,
                },
            ),
            ("D", approve()),
        ];
        let s = run(&i, &ups, &dec, &[("D", UpdateState::Installed)]);
        assert_eq!(s[0].state, UpdateState::Approved);
        assert_eq!(s[1].state, UpdateState::Declined);
        assert_eq!(s[2].state, UpdateState::Installed);
        // The agent's claim does not beat dpkg's inventory.
        assert_eq!(s[3].state, UpdateState::Failed);
    }

    #[test]
    fn approved_successor_supersedes_transitively() {
        let i = inv(&[("a", "1")]);
        let ups = [
            upd("A1", "a", "2", &[]),
            upd("A2", "a", "3", &["A1"]),
            upd("A3", "a", "4", &["A2"]),
        ];
        let s = run(&i, &ups, &[("A1", approve()), ("A3", approve())], &[]);
        assert_eq!(s[0].state, UpdateState::Superseded);
        // A2 is not approved itself, but its approved successor A3 replaces it too.
        assert_eq!(s[1].state, UpdateState::Superseded);
        assert_eq!(s[2].state, UpdateState::Approved);
        assert_eq!(s[2].missing, vec!["a_4_amd64.deb".to_string()]);
        // Without the successor approved, the old one is offered.
        let s = run(&i, &ups, &[("A1", approve())], &[]);
        assert_eq!(s[0].state, UpdateState::Approved);
    }

    #[test]
    fn failed_report_is_kept_and_assigned_again() {
        let i = inv(&[("a", "1")]);
        let s = run(
            &i,
            &[upd("A", "a", "2", &[])],
            &[("A", approve())],
            &[("A", UpdateState::Failed)],
        );
        assert_eq!(s[0].state, UpdateState::Failed);
        assert_eq!(s[0].message.as_deref(), Some("dpkg said no"));
        assert!(s[0].is_assigned());
    }

    #[test]
    fn approval_beats_decline_and_earliest_deadline_wins() {
        let t1: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let t2: jiff::Timestamp = "2026-12-05T00:00:00Z".parse().unwrap();
        let ds = [
            HostDecision {
                decision: Decision::Decline,
                deadline: None,
                overdue_at: None,
            },
            HostDecision {
                decision: Decision::Approve,
                deadline: Some(t2),
                overdue_at: None,
            },
            HostDecision {
                decision: Decision::Approve,
                deadline: Some(t1),
                overdue_at: None,
            },
        ];
        let f = fold_decisions(&ds).unwrap();
        assert_eq!(f.decision, Decision::Approve);
        assert_eq!(f.deadline, Some(t1));
    }

    #[test]
    fn the_index_touches_only_updates_naming_the_hosts_packages() {
        let i = inv(&[("a", "1"), ("c", "2")]);
        let mut ups: Vec<UpdateDocument> = (0..500)
            .map(|n| upd(&format!("X{n:03}"), &format!("other{n}"), "2", &[]))
            .collect();
        ups.push(upd("A1", "a", "2", &[]));
        ups.push(upd("A2", "a", "3", &["A1"]));
        ups.push(upd("C", "c", "2", &[]));
        let index = CatalogIndex::new(ups.clone());
        let relevant: Vec<&str> = index.relevant(&i).iter().map(|u| u.id.as_str()).collect();
        assert_eq!(relevant, ["A1", "A2", "C"]);
        let decisions: BTreeMap<UpdateId, HostDecision> =
            [(UpdateId::new("A2").unwrap(), approve())].into();
        let reported = BTreeMap::new();
        let host = HostView {
            inventory: Some(&i),
            decisions: &decisions,
            reported: &reported,
        };
        let indexed = evaluate_indexed(&host, &index, |_| true);
        let full: Vec<UpdateStatus> = evaluate(&host, &ups)
            .into_iter()
            .filter(|s| s.state != UpdateState::NotApplicable)
            .collect();
        assert_eq!(indexed, full);
        assert_eq!(indexed[0].state, UpdateState::Superseded);
        // What the visibility filter leaves out is not evaluated at all.
        let hidden = evaluate_indexed(&host, &index, |u| u.id.as_str() != "A2");
        assert_eq!(hidden.len(), 2);
        assert_eq!(hidden[0].state, UpdateState::Needed);
        assert_eq!(
            index.by_target_name("update-C.json").unwrap().id.as_str(),
            "C"
        );
        assert!(index.get("nope").is_none());
    }

    #[test]
    fn another_architectures_build_does_not_apply() {
        let mut host = inv(&[("libfoo", "1.0-1")]);
        let p = |arch: &str| PayloadRef {
            target: format!("libfoo_1.0-2_{arch}.deb"),
            kind: PayloadKind::Deb,
            package: "libfoo".into(),
            version: "1.0-2".into(),
            architecture: arch.into(),
            source: "foo".into(),
            source_version: "1.0-2".into(),
        };
        assert_eq!(payload_fit(&host, &p("amd64")), PayloadFit::Older);
        assert_eq!(payload_fit(&host, &p("all")), PayloadFit::Older);
        assert_eq!(payload_fit(&host, &p("arm64")), PayloadFit::Absent);
        // The package was `Architecture: all` on the host: still only native builds fit.
        host.packages[0].architecture = "all".into();
        assert_eq!(payload_fit(&host, &p("arm64")), PayloadFit::Absent);
        assert_eq!(payload_fit(&host, &p("amd64")), PayloadFit::Older);
        // Multiarch: a foreign architecture the package is installed for.
        host.packages[0].architecture = "i386".into();
        assert_eq!(payload_fit(&host, &p("i386")), PayloadFit::Older);
    }
}
