//! Per-host statuses, from the host's inventory, its groups' decisions and its
//! agent's reports. Shared by check-in (assignments) and reports.

use crate::error::ApiError;
use patchday_core::applicability::{
    evaluate_indexed, fold_decisions, CatalogIndex, HostDecision, HostView, Reported, UpdateStatus,
};
use patchday_core::window::grace_end;
use patchday_store::{HostRecord, TenantStore};
use patchday_types::api::{Approval, Decision};
use patchday_types::{GroupId, Inventory, UpdateId, UpdateState};
use std::collections::BTreeMap;

/// Statuses of the updates that may apply to one host (those naming one of its
/// packages; every other update is not applicable), from `inventory` when the caller has
/// it at hand (a check-in), else from the stored one.
pub async fn host_statuses(
    tenant: &dyn TenantStore,
    host: &HostRecord,
    approvals: &[Approval],
    catalog: &CatalogIndex,
    inventory: Option<&Inventory>,
) -> Result<Vec<UpdateStatus>, ApiError> {
    let stored;
    let inventory = match inventory {
        Some(i) => Some(i),
        None => {
            stored = tenant.inventory(&host.id).await?;
            stored.as_ref()
        }
    };
    let mut per_update: BTreeMap<UpdateId, Vec<HostDecision>> = BTreeMap::new();
    let mut approved_at: BTreeMap<UpdateId, jiff::Timestamp> = BTreeMap::new();
    // Issue 10, point 2: a ring's grace period after the deadline before it is overdue.
    let graces = ring_graces(tenant).await?;
    for a in approvals.iter().filter(|a| host.groups.contains(&a.group)) {
        let grace = graces.get(&a.group).copied().unwrap_or(0);
        per_update
            .entry(a.update.clone())
            .or_default()
            .push(HostDecision {
                decision: a.decision,
                deadline: a.deadline,
                overdue_at: grace_end(a.deadline, Some(grace)),
            });
        if a.decision == Decision::Approve {
            let e = approved_at.entry(a.update.clone()).or_insert(a.decided_at);
            *e = (*e).min(a.decided_at);
        }
    }
    let decisions: BTreeMap<UpdateId, HostDecision> = per_update
        .into_iter()
        .filter_map(|(k, v)| fold_decisions(&v).map(|d| (k, d)))
        .collect();
    // Issue 10, point 3: a report about a declined update counts when newer than the decline.
    let mut declined_at: BTreeMap<UpdateId, jiff::Timestamp> = BTreeMap::new();
    for a in approvals
        .iter()
        .filter(|a| host.groups.contains(&a.group) && a.decision == Decision::Decline)
    {
        let e = declined_at.entry(a.update.clone()).or_insert(a.decided_at);
        *e = (*e).max(a.decided_at);
    }
    let reported: BTreeMap<UpdateId, Reported> = tenant
        .states(&host.id)
        .await?
        .into_iter()
        .map(|s| {
            let after = match approved_at.get(&s.report.update) {
                Some(t) => s.at >= *t,
                None => declined_at.get(&s.report.update).is_none_or(|t| s.at >= *t),
            };
            (
                s.report.update.clone(),
                Reported {
                    state: s.report.state,
                    message: s.report.message,
                    after_approval: after,
                },
            )
        })
        .collect();
    // Updates the publisher released to other tenants only do not exist for this one.
    let tenant_id = tenant.id().as_str();
    let mut statuses = evaluate_indexed(
        &HostView {
            inventory,
            decisions: &decisions,
            reported: &reported,
        },
        catalog,
        |u| u.published_for(tenant_id),
    );
    // Issue 9, point 7: a declined update's message is the operator's reason (a decline
    // without one does not excuse the host; see `patchday_core::compliance`).
    for st in statuses
        .iter_mut()
        .filter(|s| s.state == UpdateState::Declined)
    {
        st.message = decline_reason(approvals, host, &st.update);
    }
    Ok(statuses)
}

/// The reason of the decline that applies to `host` (the first of its groups' declines
/// that has one).
fn decline_reason(approvals: &[Approval], host: &HostRecord, update: &UpdateId) -> Option<String> {
    approvals
        .iter()
        .filter(|a| {
            a.decision == Decision::Decline && &a.update == update && host.groups.contains(&a.group)
        })
        .find_map(|a| a.reason.clone())
}

/// Issue 10, point 2: the grace period (seconds) of each of the tenant's ring groups.
pub async fn ring_graces(tenant: &dyn TenantStore) -> Result<BTreeMap<GroupId, i64>, ApiError> {
    Ok(tenant
        .rings()
        .await?
        .into_iter()
        .map(|r| (r.group, r.grace_seconds))
        .collect())
}
