//! Operator routes: tenants, tokens, groups, hosts, updates, approvals, reports.

use crate::auth::{new_secret, Operator};
use crate::error::{ApiError, ApiResult};
use crate::limits;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::Json;
use patchday_core::calendar::{parse_schedule, wait_message, PatchDaySchedule};
use patchday_store::{hash_secret, NewEnrollToken, TokenRecord};
use patchday_types::api::HostSigned;
use patchday_types::api::{
    Approval, ApprovalRequest, CreateEnrollToken, CreateTenant, CreateToken, Decision,
    EnrollTokenInfo, Group, HostSummary, PatchDayConfig, Removed, Role, SecretCreated,
    SetHostGroups, Tenant, TenantLimits, TenantUpdate, TokenInfo,
};
use patchday_types::GroupId;
use patchday_types::{HostId, TenantId};
use serde::Deserialize;
use serde_json::json;

fn schedule(pd: &PatchDayConfig) -> Result<PatchDaySchedule, ApiError> {
    parse_schedule(&pd.week, &pd.weekday, &pd.time, &pd.time_zone)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `GET /v1/tenants`.
#[utoipa::path(
    get,
    path = "/v1/tenants",
    tag = "operator",
    responses((status = 200, description = "Tenants the token may see", body = Vec<patchday_types::api::Tenant>))
)]
pub async fn list_tenants(State(s): State<AppState>, op: Operator) -> ApiResult<Json<Vec<Tenant>>> {
    let all = s.store.list_tenants().await?;
    Ok(Json(
        all.into_iter().filter(|t| op.see(&t.id).is_ok()).collect(),
    ))
}

/// `POST /v1/tenants`.
#[utoipa::path(
    post,
    path = "/v1/tenants",
    tag = "operator",
    request_body = patchday_types::api::CreateTenant,
    responses((status = 200, description = "The new tenant", body = patchday_types::api::Tenant))
)]
pub async fn create_tenant(
    State(s): State<AppState>,
    op: Operator,
    Json(req): Json<CreateTenant>,
) -> ApiResult<Json<Tenant>> {
    op.provider()?;
    limits::name("tenant name", &req.name)?;
    limits::tenant_id(&req.id)?; // issue 9, point 6
    let patch_day = req.patch_day.unwrap_or_default();
    schedule(&patch_day)?;
    let t = Tenant {
        id: req.id,
        name: req.name,
        patch_day,
        max_hosts: req.max_hosts,
    };
    let now = s.clock.now();
    let detail = json!({ "name": t.name, "patch_day": t.patch_day, "max_hosts": t.max_hosts });
    let entry = op.log_entry(
        now,
        Some(&t.id),
        "tenant.create",
        format!("tenant {}", t.id),
        detail,
    );
    s.store.create_tenant_logged(&t, now, &entry).await?;
    Ok(Json(t))
}

/// `POST /v1/tokens`.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    tag = "operator",
    request_body = patchday_types::api::CreateToken,
    responses((status = 200, description = "The token, shown once", body = patchday_types::api::SecretCreated))
)]
pub async fn create_token(
    State(s): State<AppState>,
    op: Operator,
    Json(req): Json<CreateToken>,
) -> ApiResult<Json<SecretCreated>> {
    match (req.role, &req.tenant) {
        (Role::ProviderAdmin, None) => op.provider()?,
        (Role::ProviderAdmin, Some(_)) => {
            return Err(ApiError::bad_request(
                "a provider-admin token is not bound to a tenant; omit --tenant",
            ))
        }
        (_, Some(t)) => {
            op.change(t)?;
            if op.role == Role::TenantAdmin
                && req.role == Role::TenantAdmin
                && op.tenant.as_ref() != Some(t)
            {
                return Err(ApiError::forbidden(
                    "tenant admins create tokens for their own tenant only",
                ));
            }
            s.store.tenant(t).await?;
        }
        (_, None) => {
            return Err(ApiError::bad_request(
                "tenant-admin and read-only tokens need a tenant",
            ))
        }
    }
    limits::name("token name", &req.name)?;
    let now = s.clock.now();
    if let Some(at) = req.expires_at.filter(|at| *at <= now) {
        return Err(ApiError::bad_request(format!(
            "expiry {at} is in the past; give a later time or a duration such as --expires 30d"
        )));
    }
    let secret = new_secret("pd");
    let record = TokenRecord {
        hash: hash_secret(&secret),
        name: req.name,
        role: req.role,
        tenant: req.tenant.clone(),
        created_at: now,
    };
    let prefix = secret_prefix(&secret);
    let detail = json!({
        "id": token_id(&record.hash), "name": record.name, "prefix": prefix,
        "role": record.role, "expires_at": req.expires_at,
    });
    let entry = op.log_entry(
        now,
        req.tenant.as_ref(),
        "token.create",
        format!("token {}", token_id(&record.hash)),
        detail,
    );
    s.store
        .create_token(&record, &prefix, req.expires_at, &entry)
        .await?;
    Ok(Json(SecretCreated {
        secret,
        role: Some(req.role),
        tenant: req.tenant,
    }))
}

/// How long an enrolment token works unless asked otherwise (finding 3).
const ENROLL_TOKEN_LIFETIME: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// `POST /v1/tenants/{t}/enroll-tokens`: by default one use within 24 hours.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/enroll-tokens",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id")),
    request_body = Option<patchday_types::api::CreateEnrollToken>,
    responses((status = 200, description = "The enrolment token, shown once", body = patchday_types::api::SecretCreated))
)]
pub async fn create_enroll_token(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
    Json(req): Json<Option<CreateEnrollToken>>,
) -> ApiResult<Json<SecretCreated>> {
    op.change(&t)?;
    let req = req.unwrap_or_default();
    let tenant = s.store.tenant(&t).await?;
    let now = s.clock.now();
    let name = req.name.unwrap_or_default();
    limits::name("enrolment token name", &name)?;
    let max_uses = match (req.unlimited, req.max_uses) {
        (true, Some(_)) => {
            return Err(ApiError::bad_request(
                "give either a use limit (--uses N) or --unlimited, not both",
            ))
        }
        (true, None) => None,
        (false, Some(0)) => return Err(ApiError::bad_request("a use limit must be at least 1")),
        (false, n) => Some(n.unwrap_or(1)),
    };
    let expires_at = match req.expires_at {
        Some(at) if at <= now => {
            return Err(ApiError::bad_request(format!(
                "expiry {at} is in the past; give a later time or a duration such as --expires 7d"
            )))
        }
        Some(at) => at,
        None => now
            .checked_add(ENROLL_TOKEN_LIFETIME)
            .map_err(ApiError::internal)?,
    };
    let secret = new_secret("pde");
    let token = NewEnrollToken {
        hash: hash_secret(&secret),
        name,
        prefix: secret_prefix(&secret),
        group: req.group,
        created_at: now,
        expires_at: Some(expires_at),
        max_uses,
    };
    let detail = json!({
        "id": token_id(&token.hash), "name": token.name, "prefix": token.prefix,
        "group": token.group, "expires_at": token.expires_at, "max_uses": token.max_uses,
    });
    let entry = op.log_entry(
        now,
        Some(&t),
        "enroll-token.create",
        format!("enrolment token {}", token_id(&token.hash)),
        detail,
    );
    tenant.create_enroll_token(&token, &entry).await?;
    Ok(Json(SecretCreated {
        secret,
        role: None,
        tenant: Some(t),
    }))
}

/// `PUT /v1/tenants/{t}/patch-day`.
#[utoipa::path(
    put,
    path = "/v1/tenants/{tenant}/patch-day",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id")),
    request_body = patchday_types::api::PatchDayConfig,
    responses((status = 200, description = "The tenant with its new patch day", body = patchday_types::api::Tenant))
)]
pub async fn set_patch_day(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
    Json(pd): Json<PatchDayConfig>,
) -> ApiResult<Json<Tenant>> {
    op.change(&t)?;
    schedule(&pd)?;
    let tenant = s.store.tenant(&t).await?;
    let entry = op.log_entry(
        s.clock.now(),
        Some(&t),
        "tenant.patch-day",
        format!("tenant {t}"),
        json!(pd),
    );
    tenant.set_patch_day_logged(&pd, &entry).await?;
    s.push.tenant(&t); // issue 10, point 6 (push): the release train moved
    Ok(Json(tenant.get().await?))
}

/// `GET /v1/tenants/{t}/groups`.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/groups",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id")),
    responses((status = 200, description = "Groups", body = Vec<patchday_types::api::Group>))
)]
pub async fn list_groups(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
) -> ApiResult<Json<Vec<Group>>> {
    op.see(&t)?;
    Ok(Json(s.store.tenant(&t).await?.list_groups().await?))
}

/// `POST /v1/tenants/{t}/groups`.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/groups",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id")),
    request_body = patchday_types::api::Group,
    responses((status = 200, description = "The new group", body = patchday_types::api::Group))
)]
pub async fn create_group(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
    Json(g): Json<Group>,
) -> ApiResult<Json<Group>> {
    op.change(&t)?;
    limits::name("group name", &g.name)?;
    let entry = op.log_entry(
        s.clock.now(),
        Some(&t),
        "group.create",
        format!("group {}", g.id),
        json!({ "name": g.name }),
    );
    s.store
        .tenant(&t)
        .await?
        .create_group_logged(&g, &entry)
        .await?;
    Ok(Json(g))
}

/// `GET /v1/tenants/{t}/hosts`.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/hosts",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id")),
    responses((status = 200, description = "Hosts", body = Vec<patchday_types::api::HostSummary>))
)]
pub async fn list_hosts(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
) -> ApiResult<Json<Vec<HostSummary>>> {
    op.see(&t)?;
    let tenant = s.store.tenant(&t).await?;
    // Issue 10, point 2: which memberships rules made, and the labels rules match.
    let mut memberships: std::collections::BTreeMap<HostId, patchday_store::HostMemberships> =
        tenant
            .memberships()
            .await?
            .into_iter()
            .map(|m| (m.host.clone(), m))
            .collect();
    let mut out = Vec::new();
    for f in tenant.fleet().await? {
        let h = f.host;
        let m = memberships.remove(&h.id);
        let os = tenant
            .inventory(&h.id)
            .await?
            .map(|i| i.os.pretty_name)
            .unwrap_or_default();
        let signed = host_signed(&f.signing);
        out.push(HostSummary {
            id: h.id,
            hostname: h.hostname,
            groups: h.groups,
            last_seen: h.last_seen,
            os,
            signed,
            rule_groups: m
                .as_ref()
                .map(|m| m.rule_groups.clone())
                .unwrap_or_default(),
            labels: m.map(|m| m.facts.labels).unwrap_or_default(),
        });
    }
    Ok(Json(out))
}

/// `PUT /v1/tenants/{t}/hosts/{h}/groups`.
#[utoipa::path(
    put,
    path = "/v1/tenants/{tenant}/hosts/{host}/groups",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id"), ("host" = patchday_types::HostId, Path, description = "Host id")),
    request_body = patchday_types::api::SetHostGroups,
    responses((status = 200, description = "Done (the body is `null`)"))
)]
pub async fn set_host_groups(
    State(s): State<AppState>,
    op: Operator,
    Path((t, h)): Path<(TenantId, HostId)>,
    Json(req): Json<SetHostGroups>,
) -> ApiResult<Json<()>> {
    op.change(&t)?;
    let entry = op.log_entry(
        s.clock.now(),
        Some(&t),
        "host.set-groups",
        format!("host {h}"),
        json!({ "groups": req.groups }),
    );
    s.store
        .tenant(&t)
        .await?
        .set_host_groups_logged(&h, &req.groups, &entry)
        .await?;
    s.push.tenant(&t); // issue 10, point 6 (push): group membership changed
    Ok(Json(()))
}

/// `GET /v1/tenants/{t}/updates`: the catalog as this tenant's calendar sees it.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/updates",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id")),
    responses((status = 200, description = "Updates as this tenant sees them", body = Vec<patchday_types::api::TenantUpdate>))
)]
pub async fn tenant_updates(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
) -> ApiResult<Json<Vec<TenantUpdate>>> {
    op.see(&t)?;
    let tenant = s.store.tenant(&t).await?.get().await?;
    let sched = schedule(&tenant.patch_day)?;
    let now = s.clock.now();
    let mut out = Vec::new();
    let catalog = s.catalog_index.index(s.store.as_ref()).await?;
    for u in catalog.updates().iter().cloned() {
        if !u.published_for(t.as_str()) {
            continue;
        }
        let approvable = sched
            .is_approvable(&u.release, now)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let at = sched
            .approvable_at(&u.release)
            .map_err(|e| ApiError::bad_request(e.to_string()))?
            .map(|z| z.timestamp());
        let wait = wait_message(&sched, &u.release, now);
        out.push(TenantUpdate {
            update: u,
            approvable,
            approvable_at: at,
            wait,
        });
    }
    Ok(Json(out))
}

/// `GET /v1/tenants/{t}/approvals`.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/approvals",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id")),
    responses((status = 200, description = "Approvals", body = Vec<patchday_types::api::Approval>))
)]
pub async fn list_approvals(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
) -> ApiResult<Json<Vec<Approval>>> {
    op.see(&t)?;
    Ok(Json(s.store.tenant(&t).await?.list_approvals().await?))
}

/// `POST /v1/tenants/{t}/approvals`.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/approvals",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id")),
    request_body = patchday_types::api::ApprovalRequest,
    responses((status = 200, description = "The approval or decline", body = patchday_types::api::Approval))
)]
pub async fn approve(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
    Json(req): Json<ApprovalRequest>,
) -> ApiResult<Json<Approval>> {
    op.change(&t)?;
    let tenant = s.store.tenant(&t).await?;
    let catalog = s.catalog_index.index(s.store.as_ref()).await?;
    let u = catalog
        .get(req.update.as_str())
        .filter(|u| u.published_for(t.as_str()))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "update {} is not in the catalog for tenant {t}; push the catalog first (or it is published for other tenants only)",
                req.update
            ))
        })?;
    let now = s.clock.now();
    // issue 9, point 7: a decline excuses a host only with a reason, so it needs one.
    let reason = req
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(String::from);
    if req.decision == Decision::Decline && reason.is_none() {
        return Err(ApiError::bad_request(format!(
            "declining update {} needs a reason (patchday decline --reason \"...\"): reports show it, and a host counts as compliant without the update only because of it",
            req.update
        )));
    }
    // Issue 10, point 4: the operator's emergency lane skips patch day and deferrals for
    // this tenant (never a signature check: the update is still the signed catalog's),
    // and says who and why.
    if req.emergency {
        if req.decision != Decision::Approve {
            return Err(ApiError::bad_request(
                "the emergency lane is for approvals; a decline needs no hurry",
            ));
        }
        if reason.is_none() {
            return Err(ApiError::bad_request(format!(
                "an emergency approval of {} needs a reason (patchday approve --emergency --reason \"...\"): it skips the tenant's patch day, and the log and reports say why",
                req.update
            )));
        }
    }
    // Issue 10, point 3: removal goes with a decline only (the reason above is required).
    if req.remove && req.decision != Decision::Decline {
        return Err(ApiError::bad_request(
            "--remove takes an update back from the hosts that installed it; it goes with a decline (patchday decline U --group G --remove --reason \"...\"), not an approval",
        ));
    }
    if req.decision == Decision::Approve && !req.emergency {
        let sched = schedule(&tenant.get().await?.patch_day)?;
        if !sched
            .is_approvable(&u.release, now)
            .map_err(|e| ApiError::bad_request(e.to_string()))?
        {
            let why = wait_message(&sched, &u.release, now)
                .unwrap_or_else(|| "its patch day has not come".into());
            return Err(ApiError::conflict(format!(
                "update {} cannot be approved yet: {why}",
                u.id
            )));
        }
    }
    let a = Approval {
        update: req.update,
        group: req.group,
        decision: req.decision,
        deadline: req.deadline,
        decided_at: now,
        decided_by: op.name.clone(),
        reason,
        emergency: req.emergency,
        remove: req.remove,
    };
    let action = match (a.decision, a.emergency, a.remove) {
        (Decision::Approve, false, _) => "approval.approve",
        (Decision::Approve, true, _) => "approval.emergency",
        (Decision::Decline, _, false) => "approval.decline",
        (Decision::Decline, _, true) => "approval.decline-remove",
    };
    let detail = json!({ "update": a.update, "group": a.group, "deadline": a.deadline, "reason": a.reason, "emergency": a.emergency, "remove": a.remove });
    let object = format!("update {} group {}", a.update, a.group);
    let entry = op.log_entry(now, Some(&t), action, object, detail);
    tenant.put_approval_logged(&a, &entry).await?;
    s.push.tenant(&t); // issue 10, point 6 (push): wake the tenant's agents now
    Ok(Json(a))
}

/// A time as the report shows it: whole seconds (issue 9, point 7).
pub(crate) fn seconds(t: jiff::Timestamp) -> jiff::Timestamp {
    t.round(jiff::Unit::Second).unwrap_or(t)
}

// issue 8, findings 8 and 13: what each host itself signed, and its agent's errors.
pub(crate) fn host_signed(s: &patchday_store::HostSigning) -> HostSigned {
    let (agent_error, agent_error_at) = match &s.agent_error {
        Some((e, at)) => (Some(e.clone()), Some(*at)),
        None => (None, None),
    };
    HostSigned {
        key: s.public_key.is_some(),
        sequence: s.last_sequence,
        at: s.last_signed_at,
        agent_error,
        agent_error_at,
    }
}

// ---- Finding 3/4 (issue 8): listing and revoking secrets, removing hosts, groups and
// tenants, host quotas ----

/// A token's listed id: the first 12 hex digits of its hash (as the store keys it).
fn token_id(hash: &str) -> String {
    hash.chars().take(12).collect()
}

/// The first characters of a secret (`pd_1a2b3c4d`), for people to tell tokens apart;
/// 32 of its 256 random bits.
fn secret_prefix(secret: &str) -> String {
    let kind = secret.split('_').next().unwrap_or_default();
    secret.chars().take(kind.len() + 1 + 8).collect()
}

/// Query of `GET /v1/tokens`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokensQuery {
    tenant: Option<TenantId>,
}

/// `GET /v1/tokens`: operator tokens in scope (never their secrets).
#[utoipa::path(
    get,
    path = "/v1/tokens",
    tag = "operator",
    params(TokensQuery),
    responses((status = 200, description = "Tokens in scope", body = Vec<patchday_types::api::TokenInfo>))
)]
pub async fn list_tokens(
    State(s): State<AppState>,
    op: Operator,
    Query(q): Query<TokensQuery>,
) -> ApiResult<Json<Vec<TokenInfo>>> {
    let tenant = op.listing_scope(q.tenant.as_ref())?;
    Ok(Json(s.store.list_tokens(tenant.as_ref()).await?))
}

/// `DELETE /v1/tokens/{id}`: revokes an operator token; it stops working at once.
#[utoipa::path(
    delete,
    path = "/v1/tokens/{id}",
    tag = "operator",
    params(("id" = String, Path, description = "Token id (its hash prefix)")),
    responses((status = 200, description = "The revoked token", body = patchday_types::api::TokenInfo))
)]
pub async fn revoke_token(
    State(s): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<TokenInfo>> {
    let not_found = || ApiError::not_found(format!("token {id} not found"));
    let info = s.store.token_info(&id).await?.ok_or_else(not_found)?;
    match &info.tenant {
        // Provider tokens are the provider's business.
        None => op.provider()?,
        Some(t) => op.change(t).map_err(|e| match e.code {
            patchday_types::api::ErrorCode::NotFound => not_found(),
            _ => e,
        })?,
    }
    let now = s.clock.now();
    let detail = json!({ "name": info.name, "prefix": info.prefix, "role": info.role });
    let entry = op.log_entry(
        now,
        info.tenant.as_ref(),
        "token.revoke",
        format!("token {id}"),
        detail,
    );
    Ok(Json(s.store.revoke_token(&id, now, &entry).await?))
}

/// `GET /v1/tenants/{t}/enroll-tokens`.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/enroll-tokens",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id")),
    responses((status = 200, description = "Enrolment tokens", body = Vec<patchday_types::api::EnrollTokenInfo>))
)]
pub async fn list_enroll_tokens(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
) -> ApiResult<Json<Vec<EnrollTokenInfo>>> {
    op.see(&t)?;
    Ok(Json(s.store.tenant(&t).await?.list_enroll_tokens().await?))
}

/// `DELETE /v1/tenants/{t}/enroll-tokens/{id}`.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant}/enroll-tokens/{id}",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id"), ("id" = String, Path, description = "Enrolment token id")),
    responses((status = 200, description = "The revoked enrolment token", body = patchday_types::api::EnrollTokenInfo))
)]
pub async fn revoke_enroll_token(
    State(s): State<AppState>,
    op: Operator,
    Path((t, id)): Path<(TenantId, String)>,
) -> ApiResult<Json<EnrollTokenInfo>> {
    op.change(&t)?;
    let tenant = s.store.tenant(&t).await?;
    let now = s.clock.now();
    let entry = op.log_entry(
        now,
        Some(&t),
        "enroll-token.revoke",
        format!("enrolment token {id}"),
        json!({}),
    );
    Ok(Json(tenant.revoke_enroll_token(&id, now, &entry).await?))
}

/// `DELETE /v1/tenants/{t}/hosts/{h}`: the host's credential stops working at once.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant}/hosts/{host}",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id"), ("host" = patchday_types::HostId, Path, description = "Host id")),
    responses((status = 200, description = "What was removed", body = patchday_types::api::Removed))
)]
pub async fn remove_host(
    State(s): State<AppState>,
    op: Operator,
    Path((t, h)): Path<(TenantId, HostId)>,
) -> ApiResult<Json<Removed>> {
    op.change(&t)?;
    let tenant = s.store.tenant(&t).await?;
    let host = tenant.host(&h).await?;
    let now = s.clock.now();
    let detail = json!({ "hostname": host.hostname, "groups": host.groups });
    let entry = op.log_entry(now, Some(&t), "host.remove", format!("host {h}"), detail);
    let removed = tenant.remove_host(&h, now, &entry).await;
    // Issue 10, point 8: the credential stops working at once on this server.
    s.host_credentials.forget_all();
    removed?;
    tracing::info!(tenant = %t, host = %h, by = %op.name, "host removed");
    Ok(Json(Removed {
        removed: format!("host {h}"),
        hosts: 1,
    }))
}

/// `DELETE /v1/tenants/{t}/groups/{g}`: its memberships and approvals go with it.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant}/groups/{group}",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id"), ("group" = patchday_types::GroupId, Path, description = "Group id")),
    responses((status = 200, description = "What was removed", body = patchday_types::api::Removed))
)]
pub async fn remove_group(
    State(s): State<AppState>,
    op: Operator,
    Path((t, g)): Path<(TenantId, GroupId)>,
) -> ApiResult<Json<Removed>> {
    op.change(&t)?;
    let tenant = s.store.tenant(&t).await?;
    let entry = op.log_entry(
        s.clock.now(),
        Some(&t),
        "group.remove",
        format!("group {g}"),
        json!({}),
    );
    tenant.remove_group(&g, &entry).await?;
    s.push.tenant(&t); // issue 10, point 6 (push): its members' approvals went with it
    Ok(Json(Removed {
        removed: format!("group {g}"),
        hosts: 0,
    }))
}

/// Query of `DELETE /v1/tenants/{t}`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemoveTenantQuery {
    #[serde(default)]
    force: bool,
}

/// `DELETE /v1/tenants/{t}`: refused while the tenant has hosts unless `?force=true`.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant}",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id"), RemoveTenantQuery),
    responses((status = 200, description = "What was removed", body = patchday_types::api::Removed))
)]
pub async fn remove_tenant(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
    Query(q): Query<RemoveTenantQuery>,
) -> ApiResult<Json<Removed>> {
    op.provider()?;
    let now = s.clock.now();
    let entry = op.log_entry(
        now,
        Some(&t),
        "tenant.remove",
        format!("tenant {t}"),
        json!({ "force": q.force }),
    );
    let hosts = s.store.remove_tenant(&t, q.force, now, &entry).await;
    // Forgotten even if the removal failed part-way: a removed host must not stay known.
    s.host_credentials.forget_all();
    let hosts = hosts?;
    tracing::info!(tenant = %t, hosts, by = %op.name, "tenant removed");
    Ok(Json(Removed {
        removed: format!("tenant {t}"),
        hosts,
    }))
}

/// `PUT /v1/tenants/{t}/limits`: the host quota (provider admins only).
#[utoipa::path(
    put,
    path = "/v1/tenants/{tenant}/limits",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id")),
    request_body = patchday_types::api::TenantLimits,
    responses((status = 200, description = "The tenant with its new limits", body = patchday_types::api::Tenant))
)]
pub async fn set_limits(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
    Json(req): Json<TenantLimits>,
) -> ApiResult<Json<Tenant>> {
    op.provider()?;
    let tenant = s.store.tenant(&t).await?;
    let entry = op.log_entry(
        s.clock.now(),
        Some(&t),
        "tenant.limits",
        format!("tenant {t}"),
        json!(req),
    );
    tenant.set_max_hosts(req.max_hosts, &entry).await?;
    Ok(Json(tenant.get().await?))
}
