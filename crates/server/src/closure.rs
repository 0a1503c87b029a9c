//! Issue 9, point 4 (closure): what a check-in answer signs beyond the applicable
//! payloads. The payloads of other catalog updates that an assigned update needs on this
//! host (chosen by [`patchday_core::dependency_payloads`] with dpkg's rules), grouped
//! into one dpkg run with it; and a pending repair request (`patchday host repair`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, OnceLock};

use patchday_core::applicability::CatalogIndex;
use patchday_core::dependency_payloads::{dependency_payloads, CatalogPayload};
use patchday_pkg::depends::{parse_relations, PackageFacts};
use patchday_store::TenantStore;
use patchday_trust::director::RepairInstruction;
use patchday_types::api::AssignmentEntry;
use patchday_types::{HostId, Inventory, PayloadKind, PayloadRef, UpdateDocument, UpdateId};

use crate::error::ApiResult;
use crate::state::AppState;

/// What the signed answer carries beside its targets.
#[derive(Clone, Debug, Default)]
pub struct AnswerExtras {
    /// Assigned update → the updates whose payloads go into its dpkg run.
    pub install_with: BTreeMap<String, BTreeSet<String>>,
    /// The host's pending repair request.
    pub repair: Option<RepairInstruction>,
    /// Issue 10, point 3: updates declined with removal that this host installed.
    pub remove: BTreeMap<String, patchday_trust::director::RemoveInstruction>,
}

/// The catalog's update documents as the closure reads them: by id, and the payloads
/// that install a package name.
pub trait CatalogPayloads {
    /// The update document with this id.
    fn document(&self, id: &UpdateId) -> Option<&UpdateDocument>;
    /// Every (update, payload) whose payload installs the package `name`.
    fn payloads_named(&self, name: &str) -> Vec<(&UpdateDocument, &PayloadRef)>;
}

impl CatalogPayloads for CatalogIndex {
    fn document(&self, id: &UpdateId) -> Option<&UpdateDocument> {
        self.get(id.as_str())
    }

    fn payloads_named(&self, name: &str) -> Vec<(&UpdateDocument, &PayloadRef)> {
        self.naming(name)
            .into_iter()
            .flat_map(|d| d.payloads.iter().map(move |p| (d, p)))
            .filter(|(_, p)| p.kind == PayloadKind::Deb && p.package == name)
            .collect()
    }
}

/// Most rounds of "load the wanted names, ask again" (each round is one level deeper).
const MAX_ROUNDS: usize = 32;

/// Adds to `assignments` the catalog payloads their own payloads need on this host, and
/// says which updates install together; then the host's repair request.
pub async fn answer_extras(
    s: &AppState,
    tenant: &dyn TenantStore,
    tenant_id: &str,
    host: &HostId,
    inventory: &Inventory,
    catalog: &(impl CatalogPayloads + ?Sized),
    assignments: &mut Vec<AssignmentEntry>,
) -> ApiResult<AnswerExtras> {
    let install_with =
        dependency_assignments(s, tenant_id, inventory, catalog, assignments).await?;
    let repair = repair_for_checkin(tenant, host, inventory, s.clock.now()).await?;
    Ok(AnswerExtras {
        install_with,
        repair,
        remove: BTreeMap::new(),
    })
}

async fn dependency_assignments(
    s: &AppState,
    tenant_id: &str,
    inventory: &Inventory,
    catalog: &(impl CatalogPayloads + ?Sized),
    assignments: &mut Vec<AssignmentEntry>,
) -> ApiResult<BTreeMap<String, BTreeSet<String>>> {
    let mut install_with: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if assignments.is_empty() {
        return Ok(install_with);
    }
    let native = inventory.architecture.as_str();
    let installed: Vec<PackageFacts> = inventory
        .packages
        .iter()
        .map(|p| bare_facts(&p.name, &p.version, &p.architecture))
        .collect();
    // Every assigned deb payload's facts, in one catalog query.
    let own_refs: Vec<Vec<&PayloadRef>> = assignments
        .iter()
        .map(|a| {
            catalog
                .document(&a.update)
                .map(|doc| {
                    doc.payloads
                        .iter()
                        .filter(|p| p.kind == PayloadKind::Deb && a.targets.contains(&p.target))
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    let mut all_own = payloads_facts(s, &own_refs.concat()).await?.into_iter();
    let mut added: Vec<(UpdateId, String, Option<jiff::Timestamp>, UpdateId)> = Vec::new();
    for (a, refs) in assignments.iter().zip(&own_refs) {
        let own: Vec<PackageFacts> = all_own.by_ref().take(refs.len()).collect();
        if own.is_empty() {
            continue;
        }
        let mut known: BTreeMap<String, Vec<CatalogPayload>> = BTreeMap::new();
        let mut closure = dependency_payloads(&installed, native, &own, &known);
        for _ in 0..MAX_ROUNDS {
            if closure.wanted.is_empty() {
                break;
            }
            for name in std::mem::take(&mut closure.wanted) {
                let named: Vec<(&UpdateDocument, &PayloadRef)> = catalog
                    .payloads_named(&name)
                    .into_iter()
                    .filter(|(d, p)| {
                        (p.architecture == native || p.architecture == "all")
                            && d.published_for(tenant_id)
                    })
                    .collect();
                let refs: Vec<&PayloadRef> = named.iter().map(|(_, p)| *p).collect();
                let facts = payloads_facts(s, &refs).await?;
                let found = named
                    .iter()
                    .zip(facts)
                    .map(|((d, p), facts)| CatalogPayload {
                        update: d.id.clone(),
                        target: p.target.clone(),
                        facts,
                    })
                    .collect();
                known.insert(name, found);
            }
            closure = dependency_payloads(&installed, native, &own, &known);
        }
        for m in &closure.unmet {
            tracing::info!(update = %a.update, unmet = %m, "an assigned update needs what neither the host nor the catalog has; the agent will refuse it until it is published");
        }
        for c in closure.payloads {
            added.push((a.update.clone(), c.target, a.deadline, c.update));
        }
    }
    for (update, target, deadline, from) in added {
        if from != update {
            install_with
                .entry(update.to_string())
                .or_default()
                .insert(from.to_string());
        }
        match assignments.iter_mut().find(|e| e.update == from) {
            Some(e) => {
                if !e.targets.contains(&target) {
                    e.targets.push(target);
                }
            }
            None => assignments.push(AssignmentEntry {
                update: from,
                targets: vec![target],
                deadline,
            }),
        }
    }
    Ok(install_with)
}

/// A package known by name, version and architecture only (an inventory entry).
fn bare_facts(name: &str, version: &str, architecture: &str) -> PackageFacts {
    PackageFacts {
        name: name.to_owned(),
        version: version.to_owned(),
        architecture: architecture.to_owned(),
        multi_arch: String::new(),
        depends: Vec::new(),
        pre_depends: Vec::new(),
        conflicts: Vec::new(),
        breaks: Vec::new(),
        provides: Vec::new(),
    }
}

/// Control facts by payload target name, with the sha256 they were read from (a target
/// whose content changed is read again).
type FactsCache = Mutex<HashMap<String, (String, PackageFacts)>>;

fn facts_cache() -> &'static FactsCache {
    static CACHE: OnceLock<FactsCache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The payload's name, version, architecture and `Depends`, read from its `.deb` (the
/// blob `sha256` of the content store, checked against it). `Pre-Depends` and `Provides`
/// are left to the agent's whole-transaction check. `Ok(Err)`: not a readable `.deb` (it
/// stays so); `Err`: the content could not be read now (damaged, missing, I/O).
async fn read_facts(s: &AppState, sha256: &str) -> Result<Result<PackageFacts, String>, String> {
    let dir = crate::catalog::tempdir_in(&s.config.data_dir.join("dependency-facts"))
        .map_err(|e| e.message)?;
    let path = dir.path().join("payload.deb");
    // A damaged blob is quarantined and logged here as when it is served.
    let mut blob = s
        .content
        .open_verified(sha256, 0)
        .await
        .map_err(|e| crate::error::ApiError::from(e).message)?;
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    tokio::io::copy(&mut blob.reader, &mut file)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    drop(file);
    let info = tokio::task::spawn_blocking(move || patchday_pkg::deb::read_deb_info(&path))
        .await
        .map_err(|e| e.to_string())?;
    Ok(info.map_err(|e| e.to_string()).map(|info| {
        let mut facts = bare_facts(&info.package, &info.version, &info.architecture);
        // A malformed Depends is the agent's to refuse; here it just needs nothing.
        facts.depends = parse_relations(&info.depends).unwrap_or_default();
        facts
    }))
}

/// The cached facts of `target` when its content is still `sha256`.
fn cached(target: &str, sha256: &str) -> Option<PackageFacts> {
    let cache = facts_cache().lock().ok()?;
    cache
        .get(target)
        .filter(|(sha, _)| sha == sha256)
        .map(|(_, f)| f.clone())
}

/// The facts of several payloads, with one catalog query, each read once per content. An
/// unreadable payload needs nothing here: the agent checks the real file.
async fn payloads_facts(s: &AppState, refs: &[&PayloadRef]) -> ApiResult<Vec<PackageFacts>> {
    let names: Vec<String> = refs.iter().map(|p| p.target.clone()).collect();
    let listed: HashMap<String, String> = s
        .store
        .catalog_targets(&names)
        .await?
        .into_iter()
        .map(|t| (t.name, t.sha256))
        .collect();
    let mut out = Vec::with_capacity(refs.len());
    for p in refs {
        let bare = || bare_facts(&p.package, &p.version, &p.architecture);
        let Some(sha) = listed.get(&p.target) else {
            out.push(bare());
            continue;
        };
        if let Some(f) = cached(&p.target, sha) {
            out.push(f);
            continue;
        }
        let facts = match read_facts(s, sha).await {
            Ok(read) => {
                let facts = read.unwrap_or_else(|e| {
                    tracing::warn!(payload = %p.target, error = %e, "the payload's dependencies are unreadable; it is assigned without dependency payloads");
                    bare()
                });
                if let Ok(mut cache) = facts_cache().lock() {
                    cache.insert(p.target.clone(), (sha.clone(), facts.clone()));
                }
                facts
            }
            // Tried again at the next check-in (a re-push repairs a damaged blob).
            Err(e) => {
                tracing::warn!(payload = %p.target, error = %e, "cannot read the payload now; it is assigned without dependency payloads");
                bare()
            }
        };
        out.push(facts);
    }
    Ok(out)
}

/// The repair instruction this answer signs, if the operator asked for one: sent until
/// the host reports a clean dpkg database after it was first sent, then cleared.
async fn repair_for_checkin(
    tenant: &dyn TenantStore,
    host: &HostId,
    inventory: &Inventory,
    now: jiff::Timestamp,
) -> ApiResult<Option<RepairInstruction>> {
    let Some(r) = tenant.repair_request(host).await? else {
        return Ok(None);
    };
    if r.sent_at.is_some() && inventory.dpkg_broken.is_none() {
        tenant.clear_repair(host).await?;
        tracing::info!(host = %host, "repair done: the host reports a clean dpkg database");
        return Ok(None);
    }
    tenant.repair_sent(host, now).await?;
    let requested = jiff::Timestamp::from_second(r.requested_at.as_second())
        .unwrap_or(r.requested_at)
        .to_string();
    Ok(Some(RepairInstruction {
        allow_apt: r.allow_apt,
        requested,
    }))
}
