//! Issue 10, point 7 (second half): the content store stays bounded without operator
//! action. Every `--cleanup-every`, the cleanup evicts the payloads no host can need any
//! more ([`patchday_core::cleanup::payload_verdict`] decides, with `--retain`), records
//! each eviction with one operator log entry (actor `cleanup`), and forgets an eviction
//! whose payload is needed again (an operator approved its update again), so the next
//! push uploads it. Pushes (`/v1/catalog/missing`), intake and scrub skip evicted
//! payloads; a request for one answers 410 Gone.

use crate::error::ApiResult;
use crate::state::AppState;
use jiff::Timestamp;
use patchday_core::cleanup::{
    newer_version, payload_verdict, GroupDecision, TenantUse, UpdateUse, Verdict,
};
use patchday_store::PayloadEviction;
use patchday_types::api::{ContentStatus, Decision, LogEntry};
use patchday_types::{PayloadRef, UpdateDocument, UpdateId, UpdateState};
use std::collections::{BTreeMap, HashMap};

/// Who the operator log names for what the cleanup does.
pub const ACTOR: &str = "cleanup";

/// The cleanup's last run (for `/v1/catalog` and `/v1/health`).
#[derive(Default)]
pub struct CleanupRuns {
    last: std::sync::Mutex<Option<Timestamp>>,
}

impl CleanupRuns {
    fn set(&self, at: Timestamp) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
    }

    /// When the cleanup last finished a pass.
    pub fn last(&self) -> Option<Timestamp> {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct Pass {
    /// Payloads evicted by this pass.
    pub evicted: Vec<PayloadEviction>,
    /// Bytes removed from the content store.
    pub freed: u64,
    /// Evicted payloads that are needed again (their evictions are forgotten).
    pub needed_again: Vec<String>,
    /// Blobs no target of the current catalog names any more (the publisher dropped
    /// their updates), removed.
    pub orphans: Vec<String>,
}

/// Runs the cleanup forever, every `every`.
pub async fn run(state: AppState, every: std::time::Duration) {
    loop {
        // Issue 12, point 5: one replica at a time.
        if !crate::lease::hold(&state, crate::lease::CLEANUP, every).await {
            tokio::time::sleep(every).await;
            continue;
        }
        match pass(&state, state.clock.now()).await {
            Ok(p)
                if !p.evicted.is_empty() || !p.needed_again.is_empty() || !p.orphans.is_empty() =>
            {
                tracing::info!(
                    evicted = p.evicted.len(),
                    unlisted = p.orphans.len(),
                    freed_bytes = p.freed,
                    needed_again = p.needed_again.len(),
                    "content store cleaned up"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e.message, "the cleanup could not run this time"),
        }
        tokio::time::sleep(every).await;
    }
}

/// The sha256 of every evicted payload: a push is not asked for them, intake and scrub do
/// not miss them.
pub async fn evicted_digests(
    store: &dyn patchday_store::Store,
) -> patchday_store::Result<std::collections::BTreeSet<String>> {
    Ok(store
        .evictions()
        .await?
        .into_iter()
        .map(|e| e.sha256)
        .collect())
}

/// The content store's figures for status answers.
pub async fn content_status(state: &AppState) -> ApiResult<ContentStatus> {
    let usage = state.content.usage().await?;
    let evictions = state.store.evictions().await?;
    Ok(ContentStatus {
        blobs: usage.blobs,
        bytes: usage.bytes,
        evicted: evictions.len() as u64,
        evicted_bytes: evictions.iter().map(|e| e.length).sum(),
        last_cleanup: state.cleanup_runs.last(),
        retain_seconds: u64::try_from(state.config.retain.as_secs()).unwrap_or(0),
    })
}

/// The bytes of one payload and every update that lists them.
struct Listed<'a> {
    name: String,
    length: u64,
    payload: &'a PayloadRef,
    updates: Vec<&'a UpdateDocument>,
}

/// One pass at `now`: evicts what no host can need, forgets evictions of what is needed again.
pub async fn pass(state: &AppState, now: Timestamp) -> ApiResult<Pass> {
    // Serialised with intake, which counts on the payloads it did not receive being held.
    let _guard = state.catalog_lock.lock().await;
    let catalog = state.catalog_index.index(state.store.as_ref()).await?;
    let retain = state.config.retain;
    let all: Vec<&PayloadRef> = catalog
        .updates()
        .iter()
        .flat_map(|u| u.payloads.iter())
        .collect();
    let names: Vec<String> = {
        let mut n: Vec<String> = all.iter().map(|p| p.target.clone()).collect();
        n.sort();
        n.dedup();
        n
    };
    let targets = crate::catalog::targets_by_name(state.store.as_ref(), &names).await?;
    // By content: two names with the same bytes share one blob.
    let mut by_sha: BTreeMap<String, Listed> = BTreeMap::new();
    for u in catalog.updates() {
        for p in &u.payloads {
            let Some(t) = targets.get(&p.target) else {
                continue;
            };
            let l = by_sha.entry(t.sha256.clone()).or_insert_with(|| Listed {
                name: t.name.clone(),
                length: t.length,
                payload: p,
                updates: Vec::new(),
            });
            if !l.updates.iter().any(|x| x.id == u.id) {
                l.updates.push(u);
            }
        }
    }
    let evicted: HashMap<String, PayloadEviction> = state
        .store
        .evictions()
        .await?
        .into_iter()
        .map(|e| (e.sha256.clone(), e))
        .collect();
    // Each package's payloads (by name and architecture), so finding a newer version
    // costs one package's history, not the catalog's.
    let mut by_package: HashMap<(&str, &str), Vec<&PayloadRef>> = HashMap::new();
    for p in &all {
        by_package
            .entry((p.package.as_str(), p.architecture.as_str()))
            .or_default()
            .push(p);
    }
    let mut uses = Uses::new(state);
    let mut out = Pass::default();
    let mut to_remove = Vec::new();
    for (sha, l) in &by_sha {
        let was = evicted.contains_key(sha);
        // The quick answers first: a catalog's history is mostly updates nobody
        // superseded and its packages' newest versions.
        if !was
            && l.updates
                .iter()
                .any(|u| catalog.successors(&u.id).is_none())
        {
            continue;
        }
        let p = l.payload;
        let newer = by_package
            .get(&(p.package.as_str(), p.architecture.as_str()))
            .and_then(|same| newer_version(p, same.iter().copied()));
        if !was && newer.is_none() {
            continue;
        }
        let mut listing = Vec::new();
        for u in &l.updates {
            let successors: Vec<UpdateId> = catalog
                .successors(&u.id)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            listing.push(uses.of(u, &successors).await?);
        }
        match payload_verdict(&listing, newer, now, retain) {
            Verdict::Evict(reason) if !was => {
                out.evicted.push(PayloadEviction {
                    sha256: sha.clone(),
                    name: l.name.clone(),
                    length: l.length,
                    evicted_at: now,
                    reason,
                });
                to_remove.push(sha.clone());
            }
            // Recorded before an interrupted pass removed the bytes: finish it.
            Verdict::Evict(_) => to_remove.push(sha.clone()),
            Verdict::Keep(why) if was => {
                tracing::warn!(sha256 = %sha, name = %l.name, reason = %why, "an evicted payload is needed again: push the catalog again to restore it");
                out.needed_again.push(sha.clone());
            }
            Verdict::Keep(_) => {}
        }
    }
    // Recorded first, then removed: a pass killed in between leaves a recorded eviction
    // whose bytes the next pass removes, never a payload the catalog lacks unrecorded.
    if !out.evicted.is_empty() {
        let entry = log_entry(
            now,
            "content.evict",
            serde_json::json!({
                "payloads": out.evicted.iter().map(|e| serde_json::json!({
                    "sha256": e.sha256, "name": e.name, "length": e.length, "reason": e.reason,
                })).collect::<Vec<_>>(),
                "bytes": out.evicted.iter().map(|e| e.length).sum::<u64>(),
                "retain_seconds": retain.as_secs(),
            }),
        );
        state.store.record_evictions(&out.evicted, &entry).await?;
    }
    for sha in &to_remove {
        if let Some(n) = state.content.remove(sha).await? {
            out.freed += n;
        }
    }
    if !out.needed_again.is_empty() {
        let entry = log_entry(
            now,
            "content.needed-again",
            serde_json::json!({
                "sha256": out.needed_again,
                "what_to_do": "push the catalog again: the server asks for these payloads again",
            }),
        );
        state
            .store
            .forget_evictions(&out.needed_again, &entry)
            .await?;
    }
    // Blobs of targets the publisher dropped from the catalog: nobody can ask for them
    // (a target request names a listed target), so they go at once.
    let listed = state.store.catalog_digests().await?;
    let mut orphan_bytes = 0;
    for key in state.content.keys().await? {
        if !listed.contains(&key) {
            if let Some(n) = state.content.remove(&key).await? {
                orphan_bytes += n;
                out.orphans.push(key);
            }
        }
    }
    if !out.orphans.is_empty() {
        out.freed += orphan_bytes;
        let entry = log_entry(
            now,
            "content.drop-unlisted",
            serde_json::json!({ "sha256": out.orphans, "bytes": orphan_bytes }),
        );
        state.store.append_log(&entry).await?;
    }
    // Issue 12, point 4: files kept from a cut-off push that no push used within a day.
    crate::resume::expire(&state.config.data_dir, now);
    state.cleanup_runs.set(now);
    Ok(out)
}

fn log_entry(at: Timestamp, action: &str, detail: serde_json::Value) -> LogEntry {
    LogEntry {
        seq: 0,
        at,
        tenant: None,
        actor: ACTOR.into(),
        actor_id: String::new(),
        source: "server".into(),
        action: action.into(),
        object: "content store".into(),
        detail,
    }
}

/// Reads what the verdict needs, once per tenant and per update in one pass.
struct Uses<'s> {
    state: &'s AppState,
    tenants: Option<Vec<TenantData>>,
    published: HashMap<UpdateId, Option<Timestamp>>,
}

struct TenantData {
    id: patchday_types::TenantId,
    store: std::sync::Arc<dyn patchday_store::TenantStore>,
    groups: Vec<patchday_types::GroupId>,
    approvals: Vec<patchday_types::api::Approval>,
    repairing: std::collections::BTreeSet<patchday_types::HostId>,
}

impl<'s> Uses<'s> {
    fn new(state: &'s AppState) -> Self {
        Self {
            state,
            tenants: None,
            published: HashMap::new(),
        }
    }

    async fn tenants(&mut self) -> ApiResult<&[TenantData]> {
        if self.tenants.is_none() {
            let mut v = Vec::new();
            for t in self.state.store.list_tenants().await? {
                let store = self.state.store.tenant(&t.id).await?;
                let groups = store
                    .list_groups()
                    .await?
                    .into_iter()
                    .map(|g| g.id)
                    .collect();
                let approvals = store.list_approvals().await?;
                let mut repairing = std::collections::BTreeSet::new();
                for h in store.list_hosts().await? {
                    if store.repair_request(&h.id).await?.is_some() {
                        repairing.insert(h.id);
                    }
                }
                v.push(TenantData {
                    id: t.id,
                    store,
                    groups,
                    approvals,
                    repairing,
                });
            }
            self.tenants = Some(v);
        }
        Ok(self.tenants.as_deref().unwrap_or_default())
    }

    /// Since when a successor of an update is published (the earliest of them).
    async fn superseded_since(&mut self, successors: &[UpdateId]) -> ApiResult<Option<Timestamp>> {
        let unknown: Vec<UpdateId> = successors
            .iter()
            .filter(|s| !self.published.contains_key(*s))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            let found = self.state.store.published_at(&unknown).await?;
            for u in unknown {
                let at = found.iter().find(|(id, _)| *id == u).map(|(_, at)| *at);
                self.published.insert(u, at);
            }
        }
        Ok(successors
            .iter()
            .filter_map(|s| self.published.get(s).copied().flatten())
            .min())
    }

    async fn of(&mut self, u: &UpdateDocument, successors: &[UpdateId]) -> ApiResult<UpdateUse> {
        let superseded_since = self.superseded_since(successors).await?;
        let mut tenants = Vec::new();
        if superseded_since.is_some() {
            for t in self.tenants().await? {
                if !u.published_for(t.id.as_str()) {
                    continue;
                }
                let states: Vec<(patchday_types::HostId, UpdateState, Timestamp)> =
                    t.store.update_states(&u.id).await?;
                let groups = t
                    .groups
                    .iter()
                    .map(|g| {
                        match t
                            .approvals
                            .iter()
                            .find(|a| a.update == u.id && &a.group == g)
                        {
                            Some(a) if a.decision == Decision::Decline => {
                                GroupDecision::Declined(a.decided_at)
                            }
                            Some(a) if a.decision == Decision::Approve => GroupDecision::Approved,
                            _ => GroupDecision::Undecided,
                        }
                    })
                    .collect();
                tenants.push(TenantUse {
                    tenant: t.id.to_string(),
                    groups,
                    repair_pending: states.iter().any(|(h, s, _)| {
                        *s != UpdateState::NotApplicable && t.repairing.contains(h)
                    }),
                    states: states.into_iter().map(|(_, s, _)| s).collect(),
                });
            }
        }
        Ok(UpdateUse {
            update: u.id.clone(),
            superseded_since,
            tenants,
        })
    }
}
