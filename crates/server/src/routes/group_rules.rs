//! Issue 10, point 2: groups joined by rules on host facts.
//!
//! `GET /v1/tenants/{t}/groups/rules` lists a tenant's rules; `POST
//! /v1/tenants/{t}/groups/{g}/rules` adds one and `DELETE .../rules/{id}` removes one,
//! each re-evaluating every host of the tenant at once; `POST .../rules/preview` says
//! which hosts would join or leave, changing nothing. Each check-in re-evaluates its host
//! ([`at_checkin`]). Every membership change is written to the operator log with it
//! (`group.join`, `group.leave`). The matching is `patchday_core::membership`.

use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use jiff::Timestamp;
use patchday_core::membership::Memberships;
use patchday_core::membership::{check_labels, check_rule, membership_changes, rule_groups};
use patchday_store::{HostMemberships, TenantStore};
use patchday_types::api::{
    GroupRule, GroupRuleInfo, LogEntry, MembershipChange, MembershipFacts, RuleChangeAnswer,
    RulePreviewRequest,
};
use patchday_types::{GroupId, HostId, Inventory, TenantId};
use serde_json::json;
use std::collections::BTreeMap;

/// Most rules a tenant may have.
const MAX_RULES: usize = 256;

/// `GET /v1/tenants/{t}/groups/rules`.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/groups/rules",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id")),
    responses((status = 200, description = "Rules", body = Vec<patchday_types::api::GroupRuleInfo>))
)]
pub async fn list(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
) -> ApiResult<Json<Vec<GroupRuleInfo>>> {
    op.see(&t)?;
    Ok(Json(s.store.tenant(&t).await?.group_rules().await?))
}

/// `POST /v1/tenants/{t}/groups/{g}/rules`: adds a rule; every host of the tenant is
/// re-evaluated at once.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/groups/{group}/rules",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id"), ("group" = patchday_types::GroupId, Path, description = "Group id")),
    request_body = patchday_types::api::GroupRule,
    responses((status = 200, description = "The rule and the memberships it changed", body = patchday_types::api::RuleChangeAnswer))
)]
pub async fn add(
    State(s): State<AppState>,
    op: Operator,
    Path((t, g)): Path<(TenantId, GroupId)>,
    Json(rule): Json<GroupRule>,
) -> ApiResult<Json<RuleChangeAnswer>> {
    op.change(&t)?;
    check_rule(&rule).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let tenant = s.store.tenant(&t).await?;
    let rules = tenant.group_rules().await?;
    if rules.len() >= MAX_RULES {
        return Err(ApiError::bad_request(format!(
            "tenant {t} has {MAX_RULES} group rules, the most it may have: remove some \
             (`patchday group rule remove`)"
        )));
    }
    if let Some(same) = rules.iter().find(|r| r.group == g && r.rule == rule) {
        return Err(ApiError::conflict(format!(
            "group {g} has this rule already (rule {})",
            same.id
        )));
    }
    let now = s.clock.now();
    let entry = op.log_entry(
        now,
        Some(&t),
        "group.rule.add",
        format!("group {g}"),
        json!({ "rule": rule }),
    );
    let added = tenant.add_group_rule_logged(&g, &rule, &entry).await?;
    let cause = format!("rule {} of group {g} added", added.id);
    let changes = reevaluate_all(tenant.as_ref(), &op, now, &cause).await?;
    if !changes.is_empty() {
        s.push.tenant(&t); // issue 10, point 6: the hosts that joined or left learn at once
    }
    Ok(Json(RuleChangeAnswer {
        rule: Some(added),
        changes,
    }))
}

/// `DELETE /v1/tenants/{t}/groups/{g}/rules/{id}`: removes a rule; the hosts only it
/// put in the group leave at once.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant}/groups/{group}/rules/{id}",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id"), ("group" = patchday_types::GroupId, Path, description = "Group id"), ("id" = u64, Path, description = "Rule id")),
    responses((status = 200, description = "The memberships that changed", body = patchday_types::api::RuleChangeAnswer))
)]
pub async fn remove(
    State(s): State<AppState>,
    op: Operator,
    Path((t, g, id)): Path<(TenantId, GroupId, u64)>,
) -> ApiResult<Json<RuleChangeAnswer>> {
    op.change(&t)?;
    let tenant = s.store.tenant(&t).await?;
    let now = s.clock.now();
    let entry = op.log_entry(
        now,
        Some(&t),
        "group.rule.remove",
        format!("group {g}"),
        json!({ "rule": id }),
    );
    tenant.remove_group_rule_logged(&g, id, &entry).await?;
    let cause = format!("rule {id} of group {g} removed");
    let changes = reevaluate_all(tenant.as_ref(), &op, now, &cause).await?;
    if !changes.is_empty() {
        s.push.tenant(&t); // issue 10, point 6: the hosts that joined or left learn at once
    }
    Ok(Json(RuleChangeAnswer {
        rule: None,
        changes,
    }))
}

/// `POST /v1/tenants/{t}/groups/{g}/rules/preview`: the hosts that would join or leave
/// `g` if the rule were added (or rule `remove` removed); nothing changes.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/groups/{group}/rules/preview",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id"), ("group" = patchday_types::GroupId, Path, description = "Group id")),
    request_body = patchday_types::api::RulePreviewRequest,
    responses((status = 200, description = "What would change; nothing is changed", body = patchday_types::api::RuleChangeAnswer))
)]
pub async fn preview(
    State(s): State<AppState>,
    op: Operator,
    Path((t, g)): Path<(TenantId, GroupId)>,
    Json(req): Json<RulePreviewRequest>,
) -> ApiResult<Json<RuleChangeAnswer>> {
    op.see(&t)?;
    let tenant = s.store.tenant(&t).await?;
    if !tenant.list_groups().await?.iter().any(|x| x.id == g) {
        return Err(ApiError::not_found(format!(
            "group {g} not found: create it first (`patchday group create --tenant {t} {g}`)"
        )));
    }
    if req.add.is_none() && req.remove.is_none() {
        return Err(ApiError::bad_request(
            "say what to preview: a rule to add (--release, --hostname, --label) or --remove ID",
        ));
    }
    let mut rules = tenant.group_rules().await?;
    if let Some(id) = req.remove {
        let before = rules.len();
        rules.retain(|r| !(r.id == id && r.group == g));
        if rules.len() == before {
            return Err(ApiError::not_found(format!(
                "group {g} has no rule {id} (`patchday group rule list --tenant {t}`)"
            )));
        }
    }
    if let Some(rule) = req.add {
        check_rule(&rule).map_err(|e| ApiError::bad_request(e.to_string()))?;
        rules.push(GroupRuleInfo {
            id: 0,
            group: g.clone(),
            rule,
        });
    }
    let changes = tenant
        .memberships()
        .await?
        .iter()
        .flat_map(|h| changes_for(h, &h.facts, &rules))
        .filter(|c| c.group == g)
        .collect();
    Ok(Json(RuleChangeAnswer {
        rule: None,
        changes,
    }))
}

/// The membership changes the rules make for one host with these facts.
fn changes_for(
    host: &HostMemberships,
    facts: &MembershipFacts,
    rules: &[GroupRuleInfo],
) -> Vec<MembershipChange> {
    let current = Memberships {
        groups: host.groups.iter().cloned().collect(),
        by_rule: host.rule_groups.iter().cloned().collect(),
    };
    membership_changes(&host.host, &current, &rule_groups(rules, facts))
}

/// The log entry of one membership change a rule made.
fn change_entry(template: &LogEntry, c: &MembershipChange, cause: &str) -> LogEntry {
    LogEntry {
        action: if c.join { "group.join" } else { "group.leave" }.into(),
        object: format!("host {} group {}", c.host, c.group),
        detail: json!({ "host": c.host, "group": c.group, "by": "group rules", "cause": cause }),
        ..template.clone()
    }
}

/// Applies the changes with one log entry each (nothing when there are none).
async fn apply(
    tenant: &dyn TenantStore,
    changes: &[MembershipChange],
    template: &LogEntry,
    cause: &str,
) -> ApiResult<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let logs: Vec<LogEntry> = changes
        .iter()
        .map(|c| change_entry(template, c, cause))
        .collect();
    tenant
        .apply_membership_changes_logged(changes, &logs)
        .await?;
    for c in changes {
        tracing::info!(tenant = %tenant.id(), host = %c.host, group = %c.group, join = c.join, "{cause}: membership changed");
    }
    Ok(())
}

/// Re-evaluates every host of the tenant after its rules changed; the operator who
/// changed them is the actor of each membership change.
async fn reevaluate_all(
    tenant: &dyn TenantStore,
    op: &Operator,
    now: Timestamp,
    cause: &str,
) -> ApiResult<Vec<MembershipChange>> {
    let rules = tenant.group_rules().await?;
    let changes: Vec<MembershipChange> = tenant
        .memberships()
        .await?
        .iter()
        .flat_map(|h| changes_for(h, &h.facts, &rules))
        .collect();
    let template = op.log_entry(now, Some(tenant.id()), "", String::new(), json!({}));
    apply(tenant, &changes, &template, cause).await?;
    Ok(changes)
}

/// At a check-in: stores the host's facts when they changed (os-release from the
/// inventory, the labels its agent sent; none from an older agent) and brings its
/// rule-made memberships in line with the rules, before its assignments are computed.
pub async fn at_checkin(
    tenant: &dyn TenantStore,
    host: &HostId,
    inventory: &Inventory,
    labels: Option<&BTreeMap<String, String>>,
    now: Timestamp,
) -> ApiResult<Vec<MembershipChange>> {
    let stored = tenant.host_memberships(host).await?;
    let facts = MembershipFacts {
        hostname: stored.facts.hostname.clone(),
        os: inventory.os.clone(),
        labels: labels.cloned().unwrap_or_default(),
    };
    if facts != stored.facts {
        tenant.set_membership_facts(host, &facts).await?;
    }
    let rules = tenant.group_rules().await?;
    if rules.is_empty() && stored.rule_groups.is_empty() {
        return Ok(Vec::new());
    }
    let changes = changes_for(&stored, &facts, &rules);
    let template = LogEntry {
        seq: 0,
        at: now,
        tenant: Some(tenant.id().clone()),
        actor: "group rules".into(),
        actor_id: String::new(),
        source: "server".into(),
        action: String::new(),
        object: String::new(),
        detail: json!({}),
    };
    apply(tenant, &changes, &template, &format!("check-in of {host}")).await?;
    Ok(changes)
}

/// Checks the labels a check-in carries (finding 4: bounded, printable).
pub fn check_checkin_labels(labels: Option<&BTreeMap<String, String>>) -> ApiResult<()> {
    match labels {
        Some(l) => check_labels(l).map_err(|e| {
            ApiError::bad_request(format!(
                "the check-in's labels are refused: {e}; fix --label or /etc/patchday/labels on the host"
            ))
        }),
        None => Ok(()),
    }
}
