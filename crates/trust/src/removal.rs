//! Issue 10, point 3: may this host take a declined update back, and how? One pure
//! decision, like [`crate::decision::decide`] for installs.
//!
//! An operator's `patchday decline U --remove` reaches the agent only inside the signed
//! director answer ([`crate::director::DirectorTargets::remove`]). [`decide`] holds it
//! against what this agent itself recorded when it installed U (so a compromised server
//! cannot invent a removal for an update this host never installed), the signed update
//! document (the agent acts only on packages the catalog names for U), the host's
//! inventory (still at U's versions) and the verified catalog (a downgrade goes only to
//! a signed payload: the newest older one for that package and architecture). Each
//! refusal is one [`RemovalRefusal`] variant. Whether something installed still needs a
//! package is dpkg's database, checked by the agent with
//! `patchday_pkg::depends::check_take_back` before anything changes.

use std::cmp::Ordering;

use patchday_types::{Inventory, PayloadKind, PayloadRef, TargetCustom, UpdateDocument, UpdateId};
use serde::{Deserialize, Serialize};

use crate::director::DirectorTargets;
use crate::verify::{TargetInfo, VerifiedCatalog};

/// One payload this agent installed for an update, with what the host had before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledPayload {
    /// Installer backend.
    pub kind: PayloadKind,
    /// Package (or bundle) name.
    pub package: String,
    /// The payload's architecture.
    pub architecture: String,
    /// The version the payload installed.
    pub version: String,
    /// The version installed before it; `None`: the update brought the package.
    pub before: Option<String>,
}

/// Why a removal is refused; the host reports it as `remove-failed` with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RemovalRefusal {
    /// The signed answer does not ask for it (only the signed field counts).
    #[error("removal of {update} refused: the signed director answer does not ask for it")]
    NotInstructed {
        /// The update.
        update: UpdateId,
    },
    /// The update's document could not be read from the catalog.
    #[error("removal of {update} refused: its signed update document cannot be read: {detail}")]
    DocumentUnreadable {
        /// The update.
        update: UpdateId,
        /// Why.
        detail: String,
    },
    /// The document read is another update's.
    #[error("removal of {update} refused: the signed document names {names}")]
    DocumentNamesOther {
        /// The update.
        update: UpdateId,
        /// The id the document carries.
        names: UpdateId,
    },
    /// This agent never installed the update (or installed it before it kept records).
    #[error("cannot remove {update}: this agent has no record of installing it (it was never installed here, or before the agent recorded installs); nothing was changed")]
    NeverInstalled {
        /// The update.
        update: UpdateId,
    },
    /// The host no longer has any of the update's versions (something newer replaced them).
    #[error("cannot remove {update}: the host no longer has the versions it installed ({detail}); nothing was changed")]
    NoLongerInstalled {
        /// The update.
        update: UpdateId,
        /// Each package with what is installed now.
        detail: String,
    },
    /// An upgraded package has no older signed payload to go back to.
    #[error("cannot remove {update}: {package} {version} was an upgrade from {before}, and the signed catalog has no older {package} ({architecture}) to go back to; nothing was changed")]
    NoOlderPayload {
        /// The update.
        update: UpdateId,
        /// The package.
        package: String,
        /// The architecture.
        architecture: String,
        /// The version installed now.
        version: String,
        /// The version before the update.
        before: String,
    },
    /// Bundles are not taken back (their registry keeps no older copy).
    #[error("cannot remove {update}: {package} is a bundle, and bundles are not taken back; nothing was changed")]
    Bundle {
        /// The update.
        update: UpdateId,
        /// The bundle.
        package: String,
    },
    /// A version that Debian ordering cannot compare.
    #[error("cannot remove {update}: {detail}; nothing was changed")]
    UnorderableVersion {
        /// The update.
        update: UpdateId,
        /// The ordering error.
        detail: String,
    },
}

/// One step of taking an update back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TakeBack {
    /// `dpkg --remove`: the update brought the package.
    Remove {
        /// Package name.
        package: String,
        /// Its architecture.
        architecture: String,
        /// The version installed now (the update's).
        version: String,
    },
    /// `dpkg -i` of an older signed payload: the update upgraded the package.
    Downgrade {
        /// The version installed now (the update's).
        from: String,
        /// The older payload, as the catalog signed it.
        payload: PayloadRef,
        /// Its signed length and sha256.
        info: TargetInfo,
    },
}

/// A removal cleared to run: every step, all checked before any runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// The update.
    pub update: UpdateId,
    /// Downgrades first (one `dpkg -i` run), then removals (one `dpkg --remove` run).
    pub steps: Vec<TakeBack>,
}

/// Everything [`decide`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct RemovalInput<'a> {
    /// The director answer, already verified.
    pub director: &'a DirectorTargets,
    /// The catalog, already verified against the pinned root.
    pub catalog: &'a VerifiedCatalog,
    /// The update's document, read with its signed length and hash (`Err`: why not).
    pub document: Result<&'a UpdateDocument, &'a str>,
    /// What this agent recorded when it installed the update (`None`: no record).
    pub record: Option<&'a [InstalledPayload]>,
    /// dpkg's view now.
    pub inventory: &'a Inventory,
}

/// May this host take `update` back, and with which steps? Pure.
pub fn decide(input: &RemovalInput<'_>, update: &UpdateId) -> Result<Removal, RemovalRefusal> {
    if !input.director.remove.contains_key(update.as_str()) {
        return Err(RemovalRefusal::NotInstructed {
            update: update.clone(),
        });
    }
    let doc = input
        .document
        .map_err(|detail| RemovalRefusal::DocumentUnreadable {
            update: update.clone(),
            detail: detail.to_string(),
        })?;
    if &doc.id != update {
        return Err(RemovalRefusal::DocumentNamesOther {
            update: update.clone(),
            names: doc.id.clone(),
        });
    }
    let record =
        input
            .record
            .filter(|r| !r.is_empty())
            .ok_or_else(|| RemovalRefusal::NeverInstalled {
                update: update.clone(),
            })?;
    // Only packages the signed document names for this update, at its versions, and
    // still installed at them: the record alone never makes the agent act.
    let mut downgrades = Vec::new();
    let mut removals = Vec::new();
    let mut moved_on = Vec::new();
    for r in record {
        let signed = doc.payloads.iter().any(|p| {
            p.kind == r.kind
                && p.package == r.package
                && p.architecture == r.architecture
                && p.version == r.version
        });
        if !signed {
            continue;
        }
        if r.kind != PayloadKind::Deb {
            return Err(RemovalRefusal::Bundle {
                update: update.clone(),
                package: r.package.clone(),
            });
        }
        let now = input
            .inventory
            .package(&r.package, &r.architecture)
            .map(|p| p.version.clone());
        if now.as_deref() != Some(r.version.as_str()) {
            moved_on.push(format!(
                "{} is {}",
                r.package,
                now.as_deref().unwrap_or("not installed")
            ));
            continue;
        }
        match &r.before {
            None => removals.push(TakeBack::Remove {
                package: r.package.clone(),
                architecture: r.architecture.clone(),
                version: r.version.clone(),
            }),
            Some(before) => {
                let (payload, info) = newest_older(input.catalog, r)
                    .map_err(|detail| RemovalRefusal::UnorderableVersion {
                        update: update.clone(),
                        detail,
                    })?
                    .ok_or_else(|| RemovalRefusal::NoOlderPayload {
                        update: update.clone(),
                        package: r.package.clone(),
                        architecture: r.architecture.clone(),
                        version: r.version.clone(),
                        before: before.clone(),
                    })?;
                downgrades.push(TakeBack::Downgrade {
                    from: r.version.clone(),
                    payload,
                    info,
                });
            }
        }
    }
    if downgrades.is_empty() && removals.is_empty() {
        return Err(if moved_on.is_empty() {
            RemovalRefusal::NeverInstalled {
                update: update.clone(),
            }
        } else {
            RemovalRefusal::NoLongerInstalled {
                update: update.clone(),
                detail: moved_on.join(", "),
            }
        });
    }
    downgrades.append(&mut removals);
    Ok(Removal {
        update: update.clone(),
        steps: downgrades,
    })
}

/// The newest payload the signed catalog has for the record's package, kind and
/// architecture that is older than the version the update installed.
fn newest_older(
    catalog: &VerifiedCatalog,
    r: &InstalledPayload,
) -> Result<Option<(PayloadRef, TargetInfo)>, String> {
    let mut best: Option<(PayloadRef, TargetInfo)> = None;
    for (name, info) in &catalog.targets {
        let Ok(TargetCustom::Payload {
            kind,
            package,
            version,
            architecture,
            source,
            source_version,
            ..
        }) = serde_json::from_value::<TargetCustom>(info.custom.clone())
        else {
            continue;
        };
        if kind != r.kind || package != r.package || architecture != r.architecture {
            continue;
        }
        let older = patchday_pkg::version::compare_deb(&version, &r.version)
            .map_err(|e| e.to_string())?
            == Ordering::Less;
        if !older {
            continue;
        }
        let newer_than_best = match &best {
            None => true,
            Some((b, _)) => {
                patchday_pkg::version::compare_deb(&version, &b.version)
                    .map_err(|e| e.to_string())?
                    == Ordering::Greater
            }
        };
        if newer_than_best {
            best = Some((
                PayloadRef {
                    target: name.clone(),
                    kind,
                    package,
                    version,
                    architecture,
                    source,
                    source_version,
                },
                info.clone(),
            ));
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::director::RemoveInstruction;
    use patchday_types::{Classification, InstalledPackage, Release, Severity};

    fn payload(pkg: &str, ver: &str) -> PayloadRef {
        PayloadRef {
            target: format!("payloads/{pkg}_{ver}_amd64.deb"),
            kind: PayloadKind::Deb,
            package: pkg.into(),
            version: ver.into(),
            architecture: "amd64".into(),
            source: pkg.into(),
            source_version: ver.into(),
        }
    }

    fn doc(id: &str, payloads: Vec<PayloadRef>) -> UpdateDocument {
        UpdateDocument {
            id: UpdateId::new(id).unwrap(),
            title: id.into(),
            product: "debian-12".into(),
            classification: Classification::Security,
            severity: Severity::Important,
            cves: vec![],
            supersedes: vec![],
            release: Release::Emergency {
                reason: "test".into(),
            },
            payloads,
            description: String::new(),
            tenants: vec![],
            upstream: None,
        }
    }

    fn catalog(payloads: &[PayloadRef]) -> VerifiedCatalog {
        VerifiedCatalog {
            root_version: 1,
            targets_version: 1,
            snapshot_version: 1,
            timestamp_version: 1,
            timestamp_expires: "2030-01-01T00:00:00Z".parse().unwrap(),
            targets: payloads
                .iter()
                .map(|p| {
                    (
                        p.target.clone(),
                        TargetInfo {
                            length: 1,
                            sha256: "ab".repeat(32),
                            custom: serde_json::to_value(TargetCustom::for_payload(p, 1)).unwrap(),
                        },
                    )
                })
                .collect(),
        }
    }

    fn director(remove: &[&str]) -> DirectorTargets {
        DirectorTargets {
            kind: "targets".into(),
            spec_version: "1.0.0".into(),
            version: 1,
            expires: "2030-01-01T00:00:00Z".into(),
            host: Some("h".into()),
            targets: Default::default(),
            install_with: Default::default(),
            repair: None,
            schedule: Default::default(),
            remove: remove
                .iter()
                .map(|u| {
                    (
                        u.to_string(),
                        RemoveInstruction {
                            reason: "bad build".into(),
                            by: "admin".into(),
                            requested: "2026-12-01T00:00:00Z".into(),
                        },
                    )
                })
                .collect(),
        }
    }

    fn inventory(pkgs: &[(&str, &str)]) -> Inventory {
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

    fn record(pkg: &str, ver: &str, before: Option<&str>) -> InstalledPayload {
        InstalledPayload {
            kind: PayloadKind::Deb,
            package: pkg.into(),
            architecture: "amd64".into(),
            version: ver.into(),
            before: before.map(String::from),
        }
    }

    #[test]
    fn an_upgrade_goes_back_to_the_newest_older_signed_payload_and_a_new_package_is_removed() {
        let u = UpdateId::new("PD-2").unwrap();
        let d = doc(
            "PD-2",
            vec![payload("app", "1.1"), payload("newlib", "1.0")],
        );
        let cat = catalog(&[
            payload("app", "0.9"),
            payload("app", "1.0"),
            payload("app", "1.1"),
            payload("newlib", "1.0"),
        ]);
        let dt = director(&["PD-2"]);
        let rec = [
            record("app", "1.1", Some("1.0")),
            record("newlib", "1.0", None),
        ];
        let inv = inventory(&[("app", "1.1"), ("newlib", "1.0")]);
        let r = decide(
            &RemovalInput {
                director: &dt,
                catalog: &cat,
                document: Ok(&d),
                record: Some(&rec),
                inventory: &inv,
            },
            &u,
        )
        .unwrap();
        assert_eq!(r.steps.len(), 2);
        assert!(
            matches!(&r.steps[0], TakeBack::Downgrade { payload, .. } if payload.version == "1.0")
        );
        assert!(matches!(&r.steps[1], TakeBack::Remove { package, .. } if package == "newlib"));
    }

    #[test]
    fn a_compromised_server_cannot_invent_a_removal() {
        let u = UpdateId::new("PD-2").unwrap();
        let d = doc("PD-2", vec![payload("app", "1.1")]);
        let cat = catalog(&[payload("app", "1.0"), payload("app", "1.1")]);
        let inv = inventory(&[("app", "1.1")]);
        let rec = [record("app", "1.1", Some("1.0"))];
        let input = |dt, record| RemovalInput {
            director: dt,
            catalog: &cat,
            document: Ok(&d),
            record,
            inventory: &inv,
        };
        // Unsigned: the answer does not carry it.
        let none = director(&[]);
        assert!(matches!(
            decide(&input(&none, Some(&rec)), &u),
            Err(RemovalRefusal::NotInstructed { .. })
        ));
        // Signed, but this agent never installed the update (the host has app 1.1 from
        // elsewhere): nothing happens.
        let dt = director(&["PD-2"]);
        assert!(matches!(
            decide(&input(&dt, None), &u),
            Err(RemovalRefusal::NeverInstalled { .. })
        ));
        // A record for packages the signed document does not name counts for nothing.
        let other = [record("libc6", "2.36", Some("2.35"))];
        assert!(matches!(
            decide(&input(&dt, Some(&other)), &u),
            Err(RemovalRefusal::NeverInstalled { .. })
        ));
        // Something newer replaced it since: nothing to take back.
        let inv2 = inventory(&[("app", "1.2")]);
        let moved = RemovalInput {
            inventory: &inv2,
            ..input(&dt, Some(&rec))
        };
        assert!(matches!(
            decide(&moved, &u),
            Err(RemovalRefusal::NoLongerInstalled { .. })
        ));
    }

    #[test]
    fn an_upgrade_without_an_older_signed_payload_is_refused_with_the_reason() {
        let u = UpdateId::new("PD-2").unwrap();
        let d = doc("PD-2", vec![payload("app", "1.1")]);
        let cat = catalog(&[payload("app", "1.1"), payload("other", "0.1")]);
        let dt = director(&["PD-2"]);
        let rec = [record("app", "1.1", Some("1.0"))];
        let inv = inventory(&[("app", "1.1")]);
        let err = decide(
            &RemovalInput {
                director: &dt,
                catalog: &cat,
                document: Ok(&d),
                record: Some(&rec),
                inventory: &inv,
            },
            &u,
        )
        .unwrap_err();
        assert!(matches!(err, RemovalRefusal::NoOlderPayload { .. }));
        assert!(
            err.to_string()
                .contains("the signed catalog has no older app (amd64) to go back to"),
            "{err}"
        );
    }
}
