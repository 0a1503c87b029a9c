//! Per-host statuses, from the host's inventory, its groups' decisions and its
//! agent's reports. Shared by check-in (assignments) and reports.

use crate::error::ApiError;
use patchday_core::applicability::{
    evaluate, fold_decisions, HostDecision, HostView, Reported, UpdateStatus,
};
use patchday_store::{HostRecord, TenantStore};
use patchday_types::api::{Approval, Decision};
use patchday_types::{Inventory, UpdateDocument, UpdateId, UpdateState};
use std::collections::BTreeMap;

/// Statuses of every update for one host, from `inventory` when the caller has it at
/// hand (a check-in), else from the stored one.
pub async fn host_statuses(
    tenant: &dyn TenantStore,
    host: &HostRecord,
    approvals: &[Approval],
    updates: &[UpdateDocument],
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
    for a in approvals.iter().filter(|a| host.groups.contains(&a.group)) {
        per_update
            .entry(a.update.clone())
            .or_default()
            .push(HostDecision {
                decision: a.decision,
                deadline: a.deadline,
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
    let reported: BTreeMap<UpdateId, Reported> = tenant
        .states(&host.id)
        .await?
        .into_iter()
        .map(|s| {
            let after = approved_at.get(&s.report.update).is_none_or(|t| s.at >= *t);
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
    let visible: Vec<UpdateDocument> = updates
        .iter()
        .filter(|u| u.published_for(tenant.id().as_str()))
        .cloned()
        .collect();
    let mut statuses = evaluate(
        &HostView {
            inventory,
            decisions: &decisions,
            reported: &reported,
        },
        &visible,
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
