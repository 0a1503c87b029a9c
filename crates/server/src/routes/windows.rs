//! Issue 10, point 5: per group maintenance windows and reboot policy.
//!
//! `PUT /v1/tenants/{t}/groups/{g}/policy` sets them (validated here with
//! `patchday_core::window`, logged as `group.policy`), `GET /v1/tenants/{t}/groups/policies`
//! lists them, and [`schedule`] puts them, with each assignment's deadline, into the
//! signed check-in answer, the only place the agent takes them from.

use axum::extract::{Path, State};
use axum::Json;
use patchday_core::window::{RebootPolicy, WindowSchedule};
use patchday_store::{HostRecord, TenantStore};
use patchday_trust::director::InstallSchedule;
use patchday_types::api::{AssignmentEntry, Decision, GroupPolicy, GroupPolicyInfo};
use patchday_types::{GroupId, TenantId};
use serde_json::json;
use std::collections::BTreeMap;

use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// `PUT /v1/tenants/{t}/groups/{g}/policy`: replaces the group's windows and reboot policy.
#[utoipa::path(
    put,
    path = "/v1/tenants/{tenant}/groups/{group}/policy",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id"), ("group" = patchday_types::GroupId, Path, description = "Group id")),
    request_body = patchday_types::api::GroupPolicy,
    responses((status = 200, description = "The policy now in force", body = patchday_types::api::GroupPolicy))
)]
pub async fn set_policy(
    State(s): State<AppState>,
    op: Operator,
    Path((t, g)): Path<(TenantId, GroupId)>,
    Json(req): Json<GroupPolicy>,
) -> ApiResult<Json<GroupPolicy>> {
    op.change(&t)?;
    let policy = normalise(&req)?;
    let now = s.clock.now();
    let entry = op.log_entry(
        now,
        Some(&t),
        "group.policy",
        format!("group {g}"),
        json!({ "windows": policy.windows, "reboot": policy.reboot }),
    );
    s.store
        .tenant(&t)
        .await?
        .set_group_policy_logged(&g, &policy, &entry)
        .await?;
    s.push.tenant(&t); // issue 10, point 6 (push): the signed schedule changed
    Ok(Json(policy))
}

/// `GET /v1/tenants/{t}/groups/policies`.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/groups/policies",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id")),
    responses((status = 200, description = "Every group's policy", body = Vec<patchday_types::api::GroupPolicyInfo>))
)]
pub async fn list_policies(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
) -> ApiResult<Json<Vec<GroupPolicyInfo>>> {
    op.see(&t)?;
    let policies = s.store.tenant(&t).await?.group_policies().await?;
    Ok(Json(
        policies
            .into_iter()
            .map(|(group, policy)| GroupPolicyInfo { group, policy })
            .collect(),
    ))
}

/// Parses the windows and the reboot policy, and writes them in their canonical form.
fn normalise(req: &GroupPolicy) -> Result<GroupPolicy, ApiError> {
    let windows =
        WindowSchedule::parse(&req.windows).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let reboot: RebootPolicy = req
        .reboot
        .parse()
        .map_err(|e: patchday_core::window::WindowError| ApiError::bad_request(e.to_string()))?;
    Ok(GroupPolicy {
        windows: windows.texts(),
        reboot: reboot.to_string(),
    })
}

/// The signed schedule of each assignment: the windows of the host's groups that approved
/// it (of all its groups, for an update the closure added), the reboot policy the most
/// careful of them has, and the assignment's deadline. Groups whose policy was never set
/// count for nothing; an update none of whose groups has one gets no entry (any time,
/// never reboot).
pub async fn schedule(
    tenant: &dyn TenantStore,
    host: &HostRecord,
    assignments: &[AssignmentEntry],
) -> ApiResult<BTreeMap<String, InstallSchedule>> {
    let policies = tenant.group_policies().await?;
    let set: BTreeMap<&GroupId, &GroupPolicy> = policies
        .iter()
        .filter(|(g, p)| host.groups.contains(g) && **p != GroupPolicy::default())
        .collect();
    if set.is_empty() {
        return Ok(BTreeMap::new());
    }
    // Only the decisions about the assigned updates (issue 9, point 6).
    let ids: Vec<patchday_types::UpdateId> = assignments.iter().map(|a| a.update.clone()).collect();
    let approvals = tenant.list_approvals_for(&ids).await?;
    // Issue 10, point 2: the grace period of each ring's group.
    let graces = crate::compliance::ring_graces(tenant).await?;
    let mut out = BTreeMap::new();
    for a in assignments {
        let approves = |g: &GroupId| {
            approvals.iter().any(|ap| {
                ap.update == a.update && &ap.group == g && ap.decision == Decision::Approve
            })
        };
        let approving: Vec<&GroupPolicy> = set
            .iter()
            .filter(|(g, _)| approves(g))
            .map(|(_, p)| *p)
            .collect();
        // The shortest grace among the host's approving ring groups (none outside rings).
        let grace_seconds = host
            .groups
            .iter()
            .filter(|g| approves(g))
            .filter_map(|g| graces.get(g).copied())
            .min();
        let chosen: Vec<&GroupPolicy> = if approving.is_empty() {
            set.values().copied().collect()
        } else {
            approving
        };
        let mut windows: Vec<String> = Vec::new();
        for w in chosen.iter().flat_map(|p| p.windows.iter()) {
            if !windows.contains(w) {
                windows.push(w.clone());
            }
        }
        let reboot = chosen
            .iter()
            .filter_map(|p| p.reboot.parse::<RebootPolicy>().ok())
            .reduce(RebootPolicy::most_careful)
            .unwrap_or_default();
        out.insert(
            a.update.to_string(),
            InstallSchedule {
                windows,
                deadline: a
                    .deadline
                    .map(|d| d.round(jiff::Unit::Second).unwrap_or(d).to_string()),
                reboot: reboot.to_string(),
                grace_seconds: a.deadline.and(grace_seconds),
            },
        );
    }
    Ok(out)
}
