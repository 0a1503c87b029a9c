//! The agent's security decision as one pure function: may this host install this update?
//!
//! [`decide`] holds a verified director answer ([`DirectorTargets`], checked by
//! [`crate::director::verify`]) against the verified catalog ([`VerifiedCatalog`]), the
//! signed update document, this host's identity and inventory, and the release counters it
//! installed before, at `now`. It does no I/O and reads no clock; each refusal is one
//! [`Refusal`] variant, so tests (and admins) see exactly which check failed.
//!
//! Uptane's full verification: the director may only choose among payloads the offline
//! keys published for this tenant and architecture, with exactly the length, sha256 and
//! release counter the catalog signed, never an earlier release than installed and never a
//! lower version.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use patchday_types::{Inventory, PayloadKind, PayloadRef, TargetCustom, UpdateDocument, UpdateId};
use serde::{Deserialize, Serialize};

use crate::director::DirectorTargets;
use crate::verify::{TargetInfo, VerifiedCatalog};

/// Why an update (or a whole director answer) is refused; one variant per check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The director answer expired by this host's clock (freeze, or a clock far ahead).
    #[error("assignment rejected: expiry: the director answer expired at {expires} and it is {now} here (a withheld answer, or check this host's clock)")]
    DirectorExpired {
        /// The answer's signed expiry.
        expires: String,
        /// This host's time.
        now: Timestamp,
    },
    /// The catalog's timestamp expired (the publisher or the online timestamp key must re-sign).
    #[error("catalog rejected: timestamp expired at {expires} and it is {now} here (freeze attack, or the publisher must re-sign)")]
    CatalogExpired {
        /// The timestamp's expiry.
        expires: Timestamp,
        /// This host's time.
        now: Timestamp,
    },
    /// The director answer is older than the operator's `--max-silence` allows.
    #[error("director answer is stale: it was signed at {signed_at}, {age} ago, more than the --max-silence bound of {bound} (a replayed answer, or check this host's clock)")]
    StaleAnswer {
        /// When the server signed it.
        signed_at: Timestamp,
        /// Its age by this host's clock.
        age: HumanDuration,
        /// The operator's bound.
        bound: HumanDuration,
    },
    /// No valid signed director answer for longer than `--max-silence`.
    #[error("no valid signed director answer since {since}, more than the --max-silence bound of {bound}: the server is unreachable, or someone withholds or tampers with its answers")]
    Silence {
        /// When the last valid answer was signed (or the agent enrolled).
        since: Timestamp,
        /// The operator's bound.
        bound: HumanDuration,
    },
    /// The director answer names a target under an invalid update id.
    #[error("assignment rejected: director: {target} is assigned for update {update:?}, which is not a valid update id")]
    BadUpdateId {
        /// The target.
        target: String,
        /// The update field.
        update: String,
    },
    /// The update's document is not part of the signed assignment.
    #[error("assignment rejected: director: {target} is not in the signed assignment")]
    NotAssigned {
        /// The missing target.
        target: String,
    },
    /// A target is signed for another update than the one it is processed with.
    #[error(
        "assignment rejected: director: {target} is signed for update {signed_for}, not {update}"
    )]
    WrongUpdate {
        /// The target.
        target: String,
        /// What the director signed.
        signed_for: String,
        /// The update being decided.
        update: UpdateId,
    },
    /// A target is assigned to another host.
    #[error(
        "assignment rejected: host: {target} is assigned to {assigned}, not to this host ({host})"
    )]
    WrongHost {
        /// The target.
        target: String,
        /// The host the director named.
        assigned: String,
        /// This host.
        host: String,
    },
    /// The director assigned a target for another tenant.
    #[error("assignment rejected: tenant: {target} is assigned for tenant {assigned}, and this host belongs to {tenant}")]
    WrongTenant {
        /// The target.
        target: String,
        /// The tenant the director named.
        assigned: String,
        /// This host's tenant.
        tenant: String,
    },
    /// The director assigned a target for another architecture.
    #[error("assignment rejected: architecture: {target} is assigned for an {assigned} host, and this host is {host}")]
    WrongArchitecture {
        /// The target.
        target: String,
        /// The architecture the director named.
        assigned: String,
        /// This host's architecture.
        host: String,
    },
    /// The catalog does not list a target the director assigned.
    #[error("assignment rejected: the catalog does not publish {target}")]
    NotInCatalog {
        /// The target.
        target: String,
    },
    /// The director's length or sha256 differs from the catalog's.
    #[error("assignment rejected: director and catalog disagree on {target} (length or sha256); a stolen director key cannot make a payload installable")]
    CatalogDisagrees {
        /// The target.
        target: String,
    },
    /// The catalog's signed description of a target cannot be read.
    #[error("assignment rejected: {target}: signed description unreadable: {detail}")]
    UnreadableDescription {
        /// The target.
        target: String,
        /// The parse error.
        detail: String,
    },
    /// The director's release counter differs from the catalog's.
    #[error("assignment rejected: release counter: the director says {director} for {target}, the catalog signed {catalog}")]
    CounterMismatch {
        /// The target.
        target: String,
        /// The director's counter.
        director: u64,
        /// The catalog's counter.
        catalog: u64,
    },
    /// The signed payload is built for an architecture this host cannot install.
    #[error(
        "assignment rejected: architecture: {target} is built for {built}, and this host is {host}"
    )]
    BuiltForOtherArchitecture {
        /// The target.
        target: String,
        /// The payload's signed architecture.
        built: String,
        /// This host's architecture.
        host: String,
    },
    /// The payload is an earlier release than the host installed.
    #[error("assignment rejected: release counter: {target} is release {offered} of {package}, older than release {installed} installed here (rollback attack?)")]
    ReleaseRollback {
        /// The target.
        target: String,
        /// Package name.
        package: String,
        /// The payload's counter.
        offered: u64,
        /// The highest counter installed.
        installed: u64,
    },
    /// The update document could not be fetched or read.
    #[error("update document {target} is not valid: {detail}")]
    DocumentUnreadable {
        /// The document's target name.
        target: String,
        /// What was wrong.
        detail: String,
    },
    /// The update document names another update.
    #[error("update document {target} names {names} instead of {update}")]
    DocumentNamesOther {
        /// The document's target name.
        target: String,
        /// The id inside.
        names: UpdateId,
        /// The update being decided.
        update: UpdateId,
    },
    /// The update is published for other tenants only.
    #[error("assignment rejected: tenant: update {update} is published for {} only, and this host belongs to {tenant}", .published.join(", "))]
    NotPublishedForTenant {
        /// The update.
        update: UpdateId,
        /// The tenants it is published for.
        published: Vec<String>,
        /// This host's tenant.
        tenant: String,
    },
    /// The director assigned a payload the update document does not name.
    #[error("the server assigned payload {target}, which update {update} does not name; refused")]
    PayloadNotInDocument {
        /// The payload.
        target: String,
        /// The update.
        update: UpdateId,
    },
    /// The catalog's signed description and the update document differ.
    #[error("payload {target}: the signed catalog and the update document disagree; refused")]
    DocumentDisagrees {
        /// The payload.
        target: String,
    },
    /// The update was assigned without any payload.
    #[error("update {update} was assigned with no payload")]
    NoPayload {
        /// The update.
        update: UpdateId,
    },
    /// Installing would move a package to an older version.
    #[error("payload {target} would downgrade {package} from {installed} to {offered}; refused (rollback attack?)")]
    Downgrade {
        /// The payload.
        target: String,
        /// Package or bundle name.
        package: String,
        /// Installed version.
        installed: String,
        /// Offered version.
        offered: String,
    },
    /// Versions cannot be ordered, so a downgrade cannot be ruled out.
    #[error("payload {target}: cannot order versions: {detail}; refused")]
    UnorderableVersion {
        /// The payload.
        target: String,
        /// The parser's message.
        detail: String,
    },
}

/// A duration printed for people (`2h 5m`), for refusal messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub SignedDuration);

impl std::fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

/// Installed release counters by `kind:package`: Uptane's guard that no package goes back
/// to an earlier release, whatever its version string says.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseCounters(pub BTreeMap<String, u64>);

impl ReleaseCounters {
    fn key(kind: PayloadKind, package: &str) -> String {
        let kind = match kind {
            PayloadKind::Deb => "deb",
            PayloadKind::Bundle => "bundle",
            PayloadKind::Baseline => "baseline",
        };
        format!("{kind}:{package}")
    }
    /// The highest counter installed for a package (0 when none).
    pub fn get(&self, kind: PayloadKind, package: &str) -> u64 {
        self.0.get(&Self::key(kind, package)).copied().unwrap_or(0)
    }
    /// Raises the counter of a package to `n` (never lowers it).
    pub fn raise(&mut self, kind: PayloadKind, package: &str, n: u64) {
        let e = self.0.entry(Self::key(kind, package)).or_default();
        *e = (*e).max(n);
    }
    /// Raises the counters of every payload of an installed update.
    pub fn record(&mut self, install: &Install) {
        for (p, info) in &install.payloads {
            if let Ok(TargetCustom::Payload {
                kind,
                package,
                release_counter,
                ..
            }) = serde_json::from_value::<TargetCustom>(info.custom.clone())
            {
                self.raise(kind, &package, release_counter);
            } else {
                self.raise(p.kind, &p.package, 0);
            }
        }
    }
}

/// Who this host is, as it enrolled.
#[derive(Debug, Clone, Copy)]
pub struct HostIdentity<'a> {
    /// Host id.
    pub host: &'a str,
    /// Tenant id.
    pub tenant: &'a str,
}

/// One update the signed director answer assigns, with its payload target names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The update.
    pub update: UpdateId,
    /// Payload target names (the document, `update-<id>.json`, is implied).
    pub targets: Vec<String>,
}

impl Assignment {
    /// The update document's target name.
    pub fn document(&self) -> String {
        UpdateDocument::target_name(&self.update)
    }
}

/// What the director answer assigns, grouped by update, in update order. Assignments are
/// taken from the signed answer only, so nobody on the way can drop one unnoticed.
pub fn assignments(director: &DirectorTargets) -> Result<Vec<Assignment>, Refusal> {
    let mut by_update: BTreeMap<UpdateId, Vec<String>> = BTreeMap::new();
    for (name, target) in &director.targets {
        let update =
            UpdateId::new(target.custom.update.clone()).map_err(|_| Refusal::BadUpdateId {
                target: name.clone(),
                update: target.custom.update.clone(),
            })?;
        let payloads = by_update.entry(update.clone()).or_default();
        if *name != UpdateDocument::target_name(&update) {
            payloads.push(name.clone());
        }
    }
    Ok(by_update
        .into_iter()
        .map(|(update, targets)| Assignment { update, targets })
        .collect())
}

/// Everything [`decide`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct DecisionInput<'a> {
    /// The director answer, already verified (signature, version, expiry, host).
    pub director: &'a DirectorTargets,
    /// The catalog, already verified against the pinned root.
    pub catalog: &'a VerifiedCatalog,
    /// This host.
    pub host: HostIdentity<'a>,
    /// dpkg's and the bundle registry's view now.
    pub inventory: &'a Inventory,
    /// The highest release counters installed.
    pub counters: &'a ReleaseCounters,
    /// The update document, read from the catalog with its signed length and hash
    /// (`Err` with the reason when it could not be read).
    pub document: Result<&'a UpdateDocument, &'a str>,
    /// This host's time.
    pub now: Timestamp,
}

/// An update cleared for installing: its payloads as the document and catalog describe them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    /// The update.
    pub update: UpdateId,
    /// Its payloads with their signed length and sha256.
    pub payloads: Vec<(PayloadRef, TargetInfo)>,
}

/// May this host install `assignment`? The whole security decision, pure.
pub fn decide(input: &DecisionInput<'_>, assignment: &Assignment) -> Result<Install, Refusal> {
    fresh(input)?;
    let update = &assignment.update;
    let doc_name = assignment.document();
    for name in std::iter::once(&doc_name).chain(assignment.targets.iter()) {
        director_agrees(input, update, name)?;
    }
    let doc = input
        .document
        .map_err(|detail| Refusal::DocumentUnreadable {
            target: doc_name.clone(),
            detail: detail.to_string(),
        })?;
    if &doc.id != update {
        return Err(Refusal::DocumentNamesOther {
            target: doc_name,
            names: doc.id.clone(),
            update: update.clone(),
        });
    }
    if !doc.published_for(input.host.tenant) {
        return Err(Refusal::NotPublishedForTenant {
            update: update.clone(),
            published: doc.tenants.clone(),
            tenant: input.host.tenant.to_string(),
        });
    }
    // Every assigned payload must be named by the document and described identically by
    // the signed catalog: the server chooses among published payloads only.
    let mut payloads = Vec::new();
    for t in &assignment.targets {
        let p = doc
            .payloads
            .iter()
            .find(|p| &p.target == t)
            .ok_or_else(|| Refusal::PayloadNotInDocument {
                target: t.clone(),
                update: update.clone(),
            })?;
        let info = catalog_target(input.catalog, t)?;
        if !signed_description(t, info)?.describes(p) {
            return Err(Refusal::DocumentDisagrees { target: t.clone() });
        }
        payloads.push((p.clone(), info.clone()));
    }
    if payloads.is_empty() {
        return Err(Refusal::NoPayload {
            update: update.clone(),
        });
    }
    // Never move a package backwards, whoever asks.
    for (p, _) in &payloads {
        downgrade(input.inventory, p)?;
    }
    Ok(Install {
        update: update.clone(),
        payloads,
    })
}

/// The director answer and the catalog are both still valid at `now`.
fn fresh(input: &DecisionInput<'_>) -> Result<(), Refusal> {
    let expired = match input.director.expires.parse::<Timestamp>() {
        Ok(t) => t <= input.now,
        Err(_) => true,
    };
    if expired {
        return Err(Refusal::DirectorExpired {
            expires: input.director.expires.clone(),
            now: input.now,
        });
    }
    if input.catalog.timestamp_expires <= input.now {
        return Err(Refusal::CatalogExpired {
            expires: input.catalog.timestamp_expires,
            now: input.now,
        });
    }
    Ok(())
}

fn catalog_target<'c>(catalog: &'c VerifiedCatalog, name: &str) -> Result<&'c TargetInfo, Refusal> {
    catalog.target(name).map_err(|_| Refusal::NotInCatalog {
        target: name.to_string(),
    })
}

fn signed_description(name: &str, info: &TargetInfo) -> Result<TargetCustom, Refusal> {
    serde_json::from_value(info.custom.clone()).map_err(|e| Refusal::UnreadableDescription {
        target: name.to_string(),
        detail: e.to_string(),
    })
}

/// One assigned target: signed for this update, host, tenant and architecture, and exactly
/// what the catalog signed, never an earlier release than installed.
fn director_agrees(
    input: &DecisionInput<'_>,
    update: &UpdateId,
    name: &str,
) -> Result<(), Refusal> {
    let d = input
        .director
        .targets
        .get(name)
        .ok_or_else(|| Refusal::NotAssigned {
            target: name.to_string(),
        })?;
    if d.custom.update != update.as_str() {
        return Err(Refusal::WrongUpdate {
            target: name.to_string(),
            signed_for: d.custom.update.clone(),
            update: update.clone(),
        });
    }
    if d.custom.host != input.host.host {
        return Err(Refusal::WrongHost {
            target: name.to_string(),
            assigned: d.custom.host.clone(),
            host: input.host.host.to_string(),
        });
    }
    if d.custom.tenant != input.host.tenant {
        return Err(Refusal::WrongTenant {
            target: name.to_string(),
            assigned: d.custom.tenant.clone(),
            tenant: input.host.tenant.to_string(),
        });
    }
    if d.custom.architecture != input.inventory.architecture {
        return Err(Refusal::WrongArchitecture {
            target: name.to_string(),
            assigned: d.custom.architecture.clone(),
            host: input.inventory.architecture.clone(),
        });
    }
    let c = catalog_target(input.catalog, name)?;
    if d.length != c.length || d.hashes.get("sha256") != Some(&c.sha256) {
        return Err(Refusal::CatalogDisagrees {
            target: name.to_string(),
        });
    }
    let signed = signed_description(name, c)?;
    if d.custom.release_counter != signed.release_counter() {
        return Err(Refusal::CounterMismatch {
            target: name.to_string(),
            director: d.custom.release_counter,
            catalog: signed.release_counter(),
        });
    }
    if let TargetCustom::Payload {
        kind,
        package,
        architecture,
        release_counter,
        ..
    } = &signed
    {
        if !input.inventory.fits_architecture(package, architecture) {
            return Err(Refusal::BuiltForOtherArchitecture {
                target: name.to_string(),
                built: architecture.clone(),
                host: input.inventory.architecture.clone(),
            });
        }
        let installed = input.counters.get(*kind, package);
        if *release_counter < installed {
            return Err(Refusal::ReleaseRollback {
                target: name.to_string(),
                package: package.clone(),
                offered: *release_counter,
                installed,
            });
        }
    }
    Ok(())
}

/// Refuses a payload that would move an installed package (or bundle) to an older version.
pub fn downgrade(inv: &Inventory, p: &PayloadRef) -> Result<(), Refusal> {
    let installed = match p.kind {
        PayloadKind::Deb => inv
            .package(&p.package, &p.architecture)
            .map(|i| i.version.clone()),
        PayloadKind::Bundle => inv.bundle(&p.package).map(|b| b.version.clone()),
        PayloadKind::Baseline => inv.baseline(&p.package).map(|b| b.version.clone()),
    };
    let Some(installed) = installed else {
        return Ok(());
    };
    match patchday_pkg::version::compare_deb(&installed, &p.version) {
        Ok(std::cmp::Ordering::Greater) => Err(Refusal::Downgrade {
            target: p.target.clone(),
            package: p.package.clone(),
            installed,
            offered: p.version.clone(),
        }),
        Ok(_) => Ok(()),
        Err(e) => Err(Refusal::UnorderableVersion {
            target: p.target.clone(),
            detail: e.to_string(),
        }),
    }
}

/// The signed answer must be younger than the operator's bound (`--max-silence`).
pub fn check_fresh_answer(
    signed_at: Timestamp,
    now: Timestamp,
    bound: SignedDuration,
) -> Result<(), Refusal> {
    let age = now.duration_since(signed_at);
    if age > bound {
        return Err(Refusal::StaleAnswer {
            signed_at,
            age: HumanDuration(age),
            bound: HumanDuration(bound),
        });
    }
    Ok(())
}

/// When no valid answer arrived this run: a failure once the last valid one (signed at
/// `last_valid`, or the enrolment time before the first) is older than `bound`.
pub fn check_silence(
    last_valid: Timestamp,
    now: Timestamp,
    bound: SignedDuration,
) -> Result<(), Refusal> {
    if now.duration_since(last_valid) > bound {
        return Err(Refusal::Silence {
            since: last_valid,
            bound: HumanDuration(bound),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! One test per refusal, without HTTP or dpkg: the world is a signed director answer, a
    //! verified catalog and a host, built by hand, then changed in exactly one place.
    use super::*;
    use crate::director::{AssignedCustom, AssignedTarget};
    use patchday_types::{
        Classification, InstalledBundle, InstalledPackage, Release, Severity, YearMonth,
    };

    const DOC: &str = "update-PD-1.json";
    const DEB: &str = "libfoo_1.0-2_amd64.deb";

    fn now() -> Timestamp {
        "2026-11-26T12:00:00Z".parse().unwrap()
    }

    fn payload() -> PayloadRef {
        PayloadRef {
            target: DEB.into(),
            kind: PayloadKind::Deb,
            package: "libfoo".into(),
            version: "1.0-2".into(),
            architecture: "amd64".into(),
            source: "foo".into(),
            source_version: "1.0-2".into(),
        }
    }

    /// Everything an honest run sees; each test breaks one part.
    struct World {
        director: DirectorTargets,
        catalog: VerifiedCatalog,
        inventory: Inventory,
        counters: ReleaseCounters,
        document: UpdateDocument,
        tenant: &'static str,
        now: Timestamp,
    }

    fn assigned(length: u64, sha: &str, counter: u64) -> AssignedTarget {
        AssignedTarget {
            length,
            hashes: [("sha256".to_string(), sha.to_string())].into(),
            custom: AssignedCustom {
                update: "PD-1".into(),
                tenant: "acme".into(),
                host: "h1".into(),
                architecture: "amd64".into(),
                groups: vec![],
                release_counter: counter,
            },
        }
    }

    fn world() -> World {
        let doc_sha = "aa".repeat(32);
        let deb_sha = "bb".repeat(32);
        let director = DirectorTargets {
            kind: "targets".into(),
            spec_version: "1.0.0".into(),
            version: 100,
            expires: "2026-11-26T13:00:00Z".into(),
            host: Some("h1".into()),
            targets: [
                (DOC.to_string(), assigned(10, &doc_sha, 0)),
                (DEB.to_string(), assigned(20, &deb_sha, 3)),
            ]
            .into(),
            install_with: Default::default(),
            repair: None,
            schedule: Default::default(),
            remove: Default::default(),
        };
        let catalog = VerifiedCatalog {
            root_version: 1,
            targets_version: 1,
            snapshot_version: 1,
            timestamp_version: 1,
            timestamp_expires: "2026-11-27T12:00:00Z".parse().unwrap(),
            targets: [
                (
                    DOC.to_string(),
                    TargetInfo {
                        length: 10,
                        sha256: doc_sha,
                        custom: serde_json::json!({"type": "update", "id": "PD-1"}),
                    },
                ),
                (
                    DEB.to_string(),
                    TargetInfo {
                        length: 20,
                        sha256: deb_sha,
                        custom: serde_json::to_value(TargetCustom::for_payload(&payload(), 3))
                            .unwrap(),
                    },
                ),
            ]
            .into(),
        };
        let inventory = Inventory {
            architecture: "amd64".into(),
            packages: vec![InstalledPackage {
                name: "libfoo".into(),
                version: "1.0-1".into(),
                architecture: "amd64".into(),
                source: "foo".into(),
                source_version: "1.0-1".into(),
            }],
            ..Default::default()
        };
        let document = UpdateDocument {
            id: UpdateId::new("PD-1").unwrap(),
            title: "fix".into(),
            product: "debian-12".into(),
            classification: Classification::Security,
            severity: Severity::Important,
            cves: vec![],
            supersedes: vec![],
            release: Release::Train {
                month: YearMonth {
                    year: 2026,
                    month: 11,
                },
            },
            payloads: vec![payload()],
            description: String::new(),
            tenants: vec![],
            upstream: None,
        };
        World {
            director,
            catalog,
            inventory,
            counters: ReleaseCounters::default(),
            document,
            tenant: "acme",
            now: now(),
        }
    }

    impl World {
        fn decide(&self) -> Result<Install, Refusal> {
            let assignment = assignments(&self.director)?
                .into_iter()
                .next()
                .expect("one assignment");
            decide(
                &DecisionInput {
                    director: &self.director,
                    catalog: &self.catalog,
                    host: HostIdentity {
                        host: "h1",
                        tenant: self.tenant,
                    },
                    inventory: &self.inventory,
                    counters: &self.counters,
                    document: Ok(&self.document),
                    now: self.now,
                },
                &assignment,
            )
        }
        fn director_custom(&mut self, f: impl Fn(&mut AssignedCustom)) {
            for t in self.director.targets.values_mut() {
                f(&mut t.custom);
            }
        }
    }

    #[test]
    fn an_honest_assignment_is_installed_and_its_counters_recorded() {
        let w = world();
        let install = w.decide().unwrap();
        assert_eq!(install.update.as_str(), "PD-1");
        assert_eq!(install.payloads.len(), 1);
        assert_eq!(install.payloads[0].0, payload());
        let mut c = ReleaseCounters::default();
        c.record(&install);
        assert_eq!(c.get(PayloadKind::Deb, "libfoo"), 3);
    }

    #[test]
    fn assignments_come_from_the_signed_answer_grouped_by_update() {
        let mut w = world();
        let mut other = assigned(5, &"cc".repeat(32), 0);
        other.custom.update = "PD-2".into();
        w.director
            .targets
            .insert("update-PD-2.json".into(), other.clone());
        let got = assignments(&w.director).unwrap();
        assert_eq!(
            got.iter().map(|a| a.update.as_str()).collect::<Vec<_>>(),
            ["PD-1", "PD-2"]
        );
        assert_eq!(got[0].targets, [DEB]);
        assert!(got[1].targets.is_empty());
        // A signed "nothing to do".
        w.director.targets.clear();
        assert_eq!(assignments(&w.director).unwrap(), vec![]);
        // An update id that is not one.
        other.custom.update = "../evil".into();
        w.director.targets.insert("x".into(), other);
        assert!(matches!(
            assignments(&w.director),
            Err(Refusal::BadUpdateId { .. })
        ));
    }

    #[test]
    fn an_expired_director_answer_is_refused() {
        let mut w = world();
        w.now = "2026-11-26T13:00:00Z".parse().unwrap();
        assert!(matches!(w.decide(), Err(Refusal::DirectorExpired { .. })));
    }

    #[test]
    fn an_expired_catalog_is_refused() {
        let mut w = world();
        w.catalog.timestamp_expires = "2026-11-26T11:00:00Z".parse().unwrap();
        assert!(matches!(w.decide(), Err(Refusal::CatalogExpired { .. })));
    }

    #[test]
    fn an_update_whose_document_is_not_assigned_is_refused() {
        let mut w = world();
        w.director.targets.remove(DOC);
        assert_eq!(w.decide(), Err(Refusal::NotAssigned { target: DOC.into() }));
    }

    #[test]
    fn a_target_signed_for_another_update_is_refused() {
        let mut w = world();
        let assignment = Assignment {
            update: UpdateId::new("PD-1").unwrap(),
            targets: vec![DEB.into()],
        };
        w.director.targets.get_mut(DEB).unwrap().custom.update = "PD-9".into();
        let input = DecisionInput {
            director: &w.director,
            catalog: &w.catalog,
            host: HostIdentity {
                host: "h1",
                tenant: "acme",
            },
            inventory: &w.inventory,
            counters: &w.counters,
            document: Ok(&w.document),
            now: w.now,
        };
        assert!(matches!(
            decide(&input, &assignment),
            Err(Refusal::WrongUpdate { signed_for, .. }) if signed_for == "PD-9"
        ));
    }

    #[test]
    fn another_hosts_assignment_is_refused() {
        let mut w = world();
        w.director_custom(|c| c.host = "h2".into());
        assert!(matches!(w.decide(), Err(Refusal::WrongHost { assigned, .. }) if assigned == "h2"));
    }

    #[test]
    fn another_tenants_assignment_is_refused() {
        let mut w = world();
        w.director_custom(|c| c.tenant = "globex".into());
        assert!(
            matches!(w.decide(), Err(Refusal::WrongTenant { assigned, .. }) if assigned == "globex")
        );
    }

    #[test]
    fn an_assignment_for_another_architecture_is_refused() {
        let mut w = world();
        w.director_custom(|c| c.architecture = "arm64".into());
        assert!(matches!(
            w.decide(),
            Err(Refusal::WrongArchitecture { assigned, .. }) if assigned == "arm64"
        ));
    }

    #[test]
    fn a_payload_the_catalog_does_not_publish_is_refused() {
        let mut w = world();
        w.catalog.targets.remove(DEB);
        assert_eq!(
            w.decide(),
            Err(Refusal::NotInCatalog { target: DEB.into() })
        );
    }

    #[test]
    fn a_director_lying_about_length_or_hash_is_refused() {
        let mut w = world();
        w.director.targets.get_mut(DEB).unwrap().length = 21;
        assert_eq!(
            w.decide(),
            Err(Refusal::CatalogDisagrees { target: DEB.into() })
        );
        let mut w = world();
        w.director
            .targets
            .get_mut(DEB)
            .unwrap()
            .hashes
            .insert("sha256".into(), "11".repeat(32));
        assert_eq!(
            w.decide(),
            Err(Refusal::CatalogDisagrees { target: DEB.into() })
        );
    }

    #[test]
    fn an_unreadable_signed_description_is_refused() {
        let mut w = world();
        w.catalog.targets.get_mut(DEB).unwrap().custom = serde_json::json!({"type": "nonsense"});
        assert!(matches!(
            w.decide(),
            Err(Refusal::UnreadableDescription { .. })
        ));
    }

    #[test]
    fn a_director_lying_about_the_release_counter_is_refused() {
        let mut w = world();
        w.director
            .targets
            .get_mut(DEB)
            .unwrap()
            .custom
            .release_counter = 99;
        assert_eq!(
            w.decide(),
            Err(Refusal::CounterMismatch {
                target: DEB.into(),
                director: 99,
                catalog: 3
            })
        );
    }

    #[test]
    fn a_payload_built_for_another_architecture_is_refused() {
        let mut w = world();
        // An arm64 host without libfoo:amd64 already installed (multiarch would fit).
        w.inventory.architecture = "arm64".into();
        w.inventory.packages.clear();
        w.director_custom(|c| c.architecture = "arm64".into());
        assert!(matches!(
            w.decide(),
            Err(Refusal::BuiltForOtherArchitecture { built, host, .. }) if built == "amd64" && host == "arm64"
        ));
    }

    #[test]
    fn an_earlier_release_than_installed_is_refused() {
        let mut w = world();
        w.counters.raise(PayloadKind::Deb, "libfoo", 4);
        assert_eq!(
            w.decide(),
            Err(Refusal::ReleaseRollback {
                target: DEB.into(),
                package: "libfoo".into(),
                offered: 3,
                installed: 4
            })
        );
        // The same release again is fine (a reinstall), and kinds are counted apart.
        let mut w = world();
        w.counters.raise(PayloadKind::Deb, "libfoo", 3);
        w.counters.raise(PayloadKind::Bundle, "libfoo", 9);
        assert!(w.decide().is_ok());
    }

    #[test]
    fn an_unreadable_update_document_is_refused() {
        let w = world();
        let assignment = assignments(&w.director).unwrap().remove(0);
        let input = DecisionInput {
            director: &w.director,
            catalog: &w.catalog,
            host: HostIdentity {
                host: "h1",
                tenant: "acme",
            },
            inventory: &w.inventory,
            counters: &w.counters,
            document: Err("expected value at line 1"),
            now: w.now,
        };
        assert_eq!(
            decide(&input, &assignment),
            Err(Refusal::DocumentUnreadable {
                target: DOC.into(),
                detail: "expected value at line 1".into()
            })
        );
    }

    #[test]
    fn a_document_naming_another_update_is_refused() {
        let mut w = world();
        w.document.id = UpdateId::new("PD-2").unwrap();
        assert!(matches!(
            w.decide(),
            Err(Refusal::DocumentNamesOther { names, .. }) if names.as_str() == "PD-2"
        ));
    }

    #[test]
    fn an_update_published_for_other_tenants_is_refused() {
        let mut w = world();
        w.document.tenants = vec!["globex".into()];
        let err = w.decide().unwrap_err();
        assert!(matches!(&err, Refusal::NotPublishedForTenant { tenant, .. } if tenant == "acme"));
        assert!(err
            .to_string()
            .contains("tenant: update PD-1 is published for globex only"));
        w.document.tenants = vec!["globex".into(), "acme".into()];
        assert!(w.decide().is_ok());
    }

    #[test]
    fn a_payload_the_document_does_not_name_is_refused() {
        let mut w = world();
        w.document.payloads[0].target = "libfoo_1.0-3_amd64.deb".into();
        assert!(matches!(
            w.decide(),
            Err(Refusal::PayloadNotInDocument { target, .. }) if target == DEB
        ));
    }

    #[test]
    fn a_document_that_disagrees_with_the_catalog_is_refused() {
        let mut w = world();
        w.document.payloads[0].version = "9.9-9".into();
        assert_eq!(
            w.decide(),
            Err(Refusal::DocumentDisagrees { target: DEB.into() })
        );
    }

    #[test]
    fn an_update_without_payloads_is_refused() {
        let mut w = world();
        w.director.targets.remove(DEB);
        assert!(matches!(w.decide(), Err(Refusal::NoPayload { .. })));
    }

    #[test]
    fn a_version_downgrade_is_refused_whatever_the_counters() {
        let mut w = world();
        w.inventory.packages[0].version = "1:1.0-1".into();
        let err = w.decide().unwrap_err();
        assert_eq!(
            err,
            Refusal::Downgrade {
                target: DEB.into(),
                package: "libfoo".into(),
                installed: "1:1.0-1".into(),
                offered: "1.0-2".into()
            }
        );
        assert!(err
            .to_string()
            .contains("would downgrade libfoo from 1:1.0-1 to 1.0-2"));
        // Bundles too.
        let bundle = PayloadRef {
            kind: PayloadKind::Bundle,
            ..payload()
        };
        let inv = Inventory {
            bundles: vec![InstalledBundle {
                name: "libfoo".into(),
                version: "2.0".into(),
            }],
            ..Default::default()
        };
        assert!(matches!(
            downgrade(&inv, &bundle),
            Err(Refusal::Downgrade { .. })
        ));
        assert_eq!(downgrade(&Inventory::default(), &payload()), Ok(()));
    }

    #[test]
    fn an_unorderable_version_is_refused() {
        let mut w = world();
        w.inventory.packages[0].version = "not a version!".into();
        assert!(matches!(
            w.decide(),
            Err(Refusal::UnorderableVersion { .. })
        ));
    }

    #[test]
    fn a_stale_answer_and_a_long_silence_are_refused() {
        let bound = SignedDuration::from_hours(2);
        let signed: Timestamp = "2026-11-26T09:00:00Z".parse().unwrap();
        assert!(matches!(
            check_fresh_answer(signed, now(), bound),
            Err(Refusal::StaleAnswer { .. })
        ));
        assert_eq!(
            check_fresh_answer(now() - SignedDuration::from_mins(5), now(), bound),
            Ok(())
        );
        let err = check_silence(signed, now(), bound).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no valid signed director answer since 2026-11-26T09:00:00Z, more than the --max-silence bound of 2h: the server is unreachable, or someone withholds or tampers with its answers"
        );
        assert_eq!(check_silence(now(), now(), bound), Ok(()));
    }
}
