//! Issue 10, points 2 and 3 (rings): the rollout task. At the server's `now`, for every
//! tenant with rings and every update of the catalog, it reads the state read model
//! (`host_update_state`), lets [`patchday_core::rollout::next_step`] decide, and then
//! approves the next ring by its rule, halts the update for every tenant when a ring's
//! failures cross its threshold (and notifies the webhook), and opens a ring's waves.
//! The check-in asks [`held`] which assignments a halt or a wave still holds back.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use jiff::Timestamp;
use patchday_core::calendar::parse_schedule;
use patchday_core::rollout::{next_step, wave_halt, wave_size, Evidence, Step};
use patchday_store::TenantStore;
use patchday_types::api::{Approval, Decision, LogEntry, Ring, RolloutHalt};
use patchday_types::{HostId, TenantId, UpdateDocument, UpdateId, UpdateState};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};

/// Who the log names for what the rollout task does.
pub const ACTOR: &str = "rollout gate";

/// Queues the halt's notification (issue 11, point 5): once per halt, for the tenant
/// whose ring failed (`None` when an operator halted it for every tenant).
pub async fn notify(state: &AppState, halt: &RolloutHalt, tenant: Option<&TenantId>) {
    crate::notify::enqueue(
        state,
        crate::notify::event(
            patchday_types::notify::NotifyEvent::RolloutHalted,
            format!("{}:{}", halt.update, halt.at.as_second()),
            tenant.cloned(),
            format!("rollout of {} halted: {}", halt.update, halt.reason),
            serde_json::json!({ "halt": halt }),
            halt.at,
        ),
    )
    .await;
}

/// Halts `update` (every tenant) and notifies; the operator's `log`, or none for the gate
/// (then `tenant` is the tenant whose ring failed).
pub async fn halt(
    state: &AppState,
    halt: &RolloutHalt,
    log: Option<&LogEntry>,
    tenant: Option<&TenantId>,
) -> ApiResult<bool> {
    let new = state.store.halt_rollout(halt, log).await?;
    if new {
        tracing::warn!(update = %halt.update, reason = %halt.reason, by = %halt.by, "rollout halted");
        // Issue 10, point 6 (push): agents that have not started drop the assignment.
        state.push.everyone();
        notify(state, halt, tenant).await;
    }
    Ok(new)
}

/// The log entry of an approval or decline the server makes by itself (its
/// `decided_by` is the actor).
fn approval_entry(a: &Approval, t: &TenantId, action: &str, detail: serde_json::Value) -> LogEntry {
    LogEntry {
        seq: 0,
        at: a.decided_at,
        tenant: Some(t.clone()),
        actor: a.decided_by.clone(),
        actor_id: String::new(),
        source: "server".into(),
        action: action.into(),
        object: format!("update {} group {}", a.update, a.group),
        detail,
    }
}

/// Whether `u` fixes a CVE the server's KEV catalog (`--kev`) lists.
pub fn known_exploited(state: &AppState, u: &UpdateDocument) -> bool {
    u.cves
        .iter()
        .any(|c| state.feeds.advisories.known_exploited(c).is_some())
}

/// The halt of `update`, active or resumed, if it was ever halted.
pub async fn halt_of(state: &AppState, update: &UpdateId) -> ApiResult<Option<RolloutHalt>> {
    Ok(state
        .store
        .rollout_halts()
        .await?
        .into_iter()
        .find(|h| &h.update == update))
}

/// Runs the rollout forever, every `every`.
pub async fn run(state: AppState, every: std::time::Duration) {
    let mut last = state.clock.now();
    loop {
        // Issue 10, point 6 (push): a train update becomes installable when the tenant's
        // patch day comes, with nobody approving anything then: wake that tenant's agents.
        let now = state.clock.now();
        if let Err(e) = wake_on_patch_day(&state, last, now).await {
            tracing::warn!(error = %e.message, "cannot look for patch days this time");
        }
        last = now;
        // Issue 12, point 5: the waking above is per replica (each holds its own agents'
        // waits); the rollout itself advances on one replica at a time.
        if crate::lease::hold(&state, crate::lease::ROLLOUT, every).await {
            if let Err(e) = tick(&state, state.clock.now()).await {
                tracing::warn!(error = %e.message, "the rollout could not advance this time");
            }
            // Issue 10, point 7 (first half).
            if let Err(e) = decline_superseded(&state, state.clock.now()).await {
                tracing::warn!(error = %e.message, "cannot decline superseded updates this time");
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// Wakes the agents of every tenant whose patch day came in `(from, to]`.
async fn wake_on_patch_day(state: &AppState, from: Timestamp, to: Timestamp) -> ApiResult<()> {
    for t in state.store.list_tenants().await? {
        let pd = &t.patch_day;
        let Ok(sched) = parse_schedule(&pd.week, &pd.weekday, &pd.time, &pd.time_zone) else {
            continue; // refused when it was set; nothing to wake for
        };
        if sched.came_between(from, to) {
            tracing::info!(tenant = %t.id, "patch day: waking the tenant's agents");
            state.push.tenant(&t.id);
        }
    }
    Ok(())
}

/// One ring's view of an update: when it was approved, by the rule or not, its evidence.
pub struct RingView {
    /// When the ring's group got the approval.
    pub approved_at: Option<Timestamp>,
    /// Approved by the ring's rule (its waves apply).
    pub by_rule: bool,
    /// Declined for the ring's group.
    pub declined: bool,
    /// The ring's evidence.
    pub evidence: Evidence,
    /// The ring's hosts (group members) with their current state, if any.
    pub hosts: Vec<(HostId, Option<UpdateState>)>,
}

/// Every ring's view of `update` in `tenant`, from the state read model. Failures
/// recorded before `forgiven_until` (an operator's resume) count as not yet installed.
pub async fn ring_views(
    tenant: &dyn TenantStore,
    rings: &[Ring],
    approvals: &[Approval],
    hosts: &[patchday_store::HostRecord],
    update: &UpdateId,
    forgiven_until: Option<Timestamp>,
) -> ApiResult<Vec<RingView>> {
    let states: HashMap<HostId, UpdateState> = tenant
        .update_states(update)
        .await?
        .into_iter()
        .map(|(h, st, since)| match forgiven_until {
            Some(r) if st == UpdateState::Failed && since <= r => (h, UpdateState::Approved),
            _ => (h, st),
        })
        .collect();
    Ok(rings
        .iter()
        .map(|ring| {
            let a = approvals
                .iter()
                .find(|a| &a.update == update && a.group == ring.group);
            let members: Vec<(HostId, Option<UpdateState>)> = hosts
                .iter()
                .filter(|h| h.groups.contains(&ring.group))
                .map(|h| (h.id.clone(), states.get(&h.id).copied()))
                .collect();
            RingView {
                approved_at: a
                    .filter(|a| a.decision == Decision::Approve)
                    .map(|a| a.decided_at),
                by_rule: a.is_some_and(|a| a.decided_by == rule_actor(ring)),
                declined: a.is_some_and(|a| a.decision == Decision::Decline),
                evidence: Evidence::count(members.iter().filter_map(|(_, s)| *s)),
                hosts: members,
            }
        })
        .collect())
}

/// The name an approval by a ring's rule is recorded under.
pub fn rule_actor(ring: &Ring) -> String {
    format!("rule of ring {}", ring.group)
}

/// When the tenant's rings count from for `u`: its patch day, or its publication.
pub async fn release_at_for(
    state: &AppState,
    pd: &patchday_types::api::PatchDayConfig,
    u: &UpdateDocument,
    now: Timestamp,
) -> ApiResult<Timestamp> {
    let sched = parse_schedule(&pd.week, &pd.weekday, &pd.time, &pd.time_zone)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    match sched
        .approvable_at(&u.release)
        .map_err(|e| ApiError::bad_request(e.to_string()))?
    {
        Some(z) => Ok(z.timestamp()),
        None => Ok(state
            .store
            .published_at(std::slice::from_ref(&u.id))
            .await?
            .first()
            .map(|(_, at)| *at)
            .unwrap_or(now)),
    }
}

/// One round over every tenant with rings.
pub async fn tick(state: &AppState, now: Timestamp) -> ApiResult<()> {
    let halts = state.store.rollout_halts().await?;
    let catalog = state.catalog_index.index(state.store.as_ref()).await?;
    for t in state.store.list_tenants().await? {
        let tenant = state.store.tenant(&t.id).await?;
        let rings = tenant.rings().await?;
        if rings.is_empty() {
            continue;
        }
        let approvals = tenant.list_approvals().await?;
        let hosts = tenant.list_hosts().await?;
        for u in catalog.updates() {
            if !u.published_for(t.id.as_str()) {
                continue;
            }
            let halt = halts.iter().find(|h| h.update == u.id);
            if halt.is_some_and(|h| h.active()) {
                continue;
            }
            // Untouched by the rings (no ring approved it, the first ring's rule does
            // not take it): skip without reading its states.
            let touched = approvals
                .iter()
                .any(|a| a.update == u.id && rings.iter().any(|r| r.group == a.group));
            let first = rings
                .first()
                .and_then(|r| r.rule.as_ref())
                .is_some_and(|rule| {
                    patchday_core::rollout::rule_matches(rule, u, known_exploited(state, u))
                });
            if !touched && !first {
                continue;
            }
            let forgiven = halt.and_then(|h| h.resumed_at);
            let views =
                ring_views(tenant.as_ref(), &rings, &approvals, &hosts, &u.id, forgiven).await?;
            advance(state, tenant.as_ref(), &t.id, &rings, &views, u, now).await?;
        }
    }
    Ok(())
}

/// Decides and does the next step for one update in one tenant, and opens waves.
async fn advance(
    state: &AppState,
    tenant: &dyn TenantStore,
    t: &TenantId,
    rings: &[Ring],
    views: &[RingView],
    u: &UpdateDocument,
    now: Timestamp,
) -> ApiResult<()> {
    // Nothing in this tenant needs it (no host ever had a state for it): nothing to do.
    if views
        .iter()
        .all(|v| v.evidence.applicable == 0 && v.approved_at.is_none())
    {
        return Ok(());
    }
    // A ring declined by an operator stops the rings after it.
    let stop = views.iter().position(|v| v.declined).unwrap_or(views.len());
    let progress: Vec<(Option<Timestamp>, Evidence)> = views[..stop]
        .iter()
        .map(|v| (v.approved_at, v.evidence))
        .collect();
    let pd = tenant.get().await?.patch_day;
    let release = release_at_for(state, &pd, u, now).await?;
    let kev = known_exploited(state, u);
    match next_step(u, kev, &rings[..stop], &progress, release, now) {
        Step::Halt(reason) => {
            let h = RolloutHalt {
                update: u.id.clone(),
                reason: format!("tenant {t}: {reason}"),
                at: now,
                by: ACTOR.into(),
                resumed_at: None,
            };
            halt(state, &h, None, Some(t)).await?;
            return Ok(());
        }
        Step::Approve { ring, deadline } => {
            let r = &rings[ring];
            let a = Approval {
                update: u.id.clone(),
                group: r.group.clone(),
                decision: Decision::Approve,
                deadline,
                decided_at: now,
                decided_by: rule_actor(r),
                reason: Some(format!("ring {} of {}, by its rule", ring + 1, rings.len())),
                emergency: false,
                remove: false,
            };
            let entry = approval_entry(
                &a,
                t,
                "approval.rule",
                serde_json::json!({ "update": u.id, "group": r.group, "ring": ring + 1, "deadline": deadline, "rule": r.rule }),
            );
            // The first wave before the approval, so no check-in sees the approval
            // without its wave (nothing admitted yet, so nothing to halt on).
            open_waves(tenant, r, &u.id, &views[ring].hosts, now).await?;
            tenant.put_approval_logged(&a, &entry).await?;
            state.push.tenant(t); // issue 10, point 6 (push)
            tracing::info!(tenant = %t, update = %u.id, group = %r.group, "ring approved by its rule");
        }
        Step::Wait(_) => {}
    }
    for (r, v) in rings.iter().zip(views).take(stop) {
        if !v.by_rule {
            continue;
        }
        match open_waves(tenant, r, &u.id, &v.hosts, now).await? {
            Waves::Opened => state.push.tenant(t), // issue 10, point 6 (push): a wave opened
            Waves::Unchanged => {}
            // The admitted wave failed over the ring's threshold: halt now, before the
            // rest of the ring (the wave's evidence is all there is, and waiting for the
            // ring's never comes: the rest is held until the wave passes).
            Waves::Halt(reason) => {
                let h = RolloutHalt {
                    update: u.id.clone(),
                    reason: format!(
                        "tenant {t}: the admitted wave of ring {}: {reason}",
                        r.group
                    ),
                    at: now,
                    by: ACTOR.into(),
                    resumed_at: None,
                };
                halt(state, &h, None, Some(t)).await?;
                return Ok(());
            }
        }
    }
    Ok(())
}

/// What [`open_waves`] did.
enum Waves {
    /// Admitted more hosts.
    Opened,
    /// Nothing to do yet.
    Unchanged,
    /// The admitted hosts' failures cross the ring's threshold.
    Halt(String),
}

/// Admits the next wave of a ring's hosts once the admitted ones show the evidence.
async fn open_waves(
    tenant: &dyn TenantStore,
    ring: &Ring,
    update: &UpdateId,
    hosts: &[(HostId, Option<UpdateState>)],
    now: Timestamp,
) -> ApiResult<Waves> {
    // A stable order per update, so each update's first wave is a different slice.
    let mut order: Vec<&(HostId, Option<UpdateState>)> = hosts.iter().collect();
    order.sort_by_key(|(h, _)| Sha256::digest(format!("{update}\n{h}").as_bytes()));
    let rows = tenant.wave_admitted(update, &ring.group).await?;
    let last = rows.iter().map(|(_, at)| *at).max();
    let admitted: BTreeSet<HostId> = rows.into_iter().map(|(h, _)| h).collect();
    let e = Evidence::count(
        order
            .iter()
            .filter(|(h, _)| admitted.contains(h))
            .filter_map(|(_, s)| *s),
    );
    let total = u32::try_from(order.len()).unwrap_or(u32::MAX);
    let have = u32::try_from(admitted.len()).unwrap_or(u32::MAX);
    if let Some(reason) = wave_halt(ring, e) {
        return Ok(Waves::Halt(reason));
    }
    let size = wave_size(ring, total, have, e, last, now) as usize;
    let next: Vec<HostId> = order
        .iter()
        .take(size)
        .map(|(h, _)| h.clone())
        .filter(|h| !admitted.contains(h))
        .collect();
    if !next.is_empty() {
        tracing::info!(update = %update, group = %ring.group, hosts = next.len(), "wave opened");
        tenant.admit_wave(update, &ring.group, &next, now).await?;
    }
    Ok(if next.is_empty() {
        Waves::Unchanged
    } else {
        Waves::Opened
    })
}

/// The check-in's question: of this host's assignments, which do a halt or a wave hold
/// back? A halt holds every host that has not started (approved, or failed before);
/// a wave holds the hosts of a ring it has not admitted yet.
pub async fn held(
    state: &AppState,
    tenant: &dyn TenantStore,
    host: &HostId,
    statuses: &[patchday_core::applicability::UpdateStatus],
) -> ApiResult<BTreeSet<UpdateId>> {
    let assigned: Vec<&patchday_core::applicability::UpdateStatus> =
        statuses.iter().filter(|st| st.is_assigned()).collect();
    if assigned.is_empty() {
        return Ok(BTreeSet::new());
    }
    let halts: BTreeSet<UpdateId> = state
        .store
        .rollout_halts()
        .await?
        .into_iter()
        .filter(RolloutHalt::active)
        .map(|h| h.update)
        .collect();
    let mut held: BTreeSet<UpdateId> = assigned
        .iter()
        .filter(|st| halts.contains(&st.update))
        .filter(|st| matches!(st.state, UpdateState::Approved | UpdateState::Failed))
        .map(|st| st.update.clone())
        .collect();
    let not_started: Vec<UpdateId> = assigned
        .iter()
        .filter(|st| st.state == UpdateState::Approved)
        .map(|st| st.update.clone())
        .collect();
    held.extend(tenant.wave_held(host, &not_started).await?);
    Ok(held)
}

// ---- Issue 10, point 7 (first half): superseded updates decline themselves ----

/// Who the log names for a decline of a superseded update.
pub const SUPERSEDENCE: &str = "supersedence";

/// In every tenant, declines (for every group not declining it yet) each update whose
/// successor is installed on every host that needed it, with the reason and a log entry.
pub async fn decline_superseded(state: &AppState, now: Timestamp) -> ApiResult<()> {
    let catalog = state.catalog_index.index(state.store.as_ref()).await?;
    let pairs: Vec<(&UpdateDocument, &UpdateDocument)> = catalog
        .updates()
        .iter()
        .flat_map(|new| {
            new.supersedes
                .iter()
                .filter_map(|old| catalog.get(old.as_str()))
                .map(move |old| (old, new))
        })
        .collect();
    if pairs.is_empty() {
        return Ok(());
    }
    for t in state.store.list_tenants().await? {
        let tenant = state.store.tenant(&t.id).await?;
        let groups = tenant.list_groups().await?;
        let approvals = tenant.list_approvals().await?;
        for (old, new) in &pairs {
            if !old.published_for(t.id.as_str()) || !new.published_for(t.id.as_str()) {
                continue;
            }
            let open: Vec<_> = groups
                .iter()
                .filter(|g| {
                    !approvals.iter().any(|a| {
                        a.update == old.id && a.group == g.id && a.decision == Decision::Decline
                    })
                })
                .collect();
            if open.is_empty() {
                continue;
            }
            let strip = |v: Vec<(HostId, UpdateState, Timestamp)>| -> Vec<(HostId, UpdateState)> {
                v.into_iter().map(|(h, s, _)| (h, s)).collect()
            };
            let old_states = strip(tenant.update_states(&old.id).await?);
            let new_states = strip(tenant.update_states(&new.id).await?);
            let Some(hosts) =
                patchday_core::supersedence::successor_everywhere(&old_states, &new_states)
            else {
                continue;
            };
            let reason = format!(
                "superseded by {}, installed on every host that needed it ({hosts})",
                new.id
            );
            for g in open {
                let a = Approval {
                    update: old.id.clone(),
                    group: g.id.clone(),
                    decision: Decision::Decline,
                    deadline: None,
                    decided_at: now,
                    decided_by: SUPERSEDENCE.into(),
                    reason: Some(reason.clone()),
                    emergency: false,
                    remove: false,
                };
                let entry = approval_entry(
                    &a,
                    &t.id,
                    "approval.decline",
                    serde_json::json!({ "update": old.id, "group": g.id, "reason": reason, "successor": new.id }),
                );
                tenant.put_approval_logged(&a, &entry).await?;
            }
            state.push.tenant(&t.id); // issue 10, point 6 (push)
            tracing::info!(tenant = %t.id, update = %old.id, successor = %new.id, "superseded update declined");
        }
    }
    Ok(())
}
