//! Operator routes: tenants, tokens, groups, hosts, updates, approvals, reports.

use crate::auth::{new_secret, Operator};
use crate::compliance::host_statuses;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::Json;
use patchday_core::calendar::{parse_schedule, wait_message, PatchDaySchedule};
use patchday_store::{hash_secret, TokenRecord};
use patchday_types::api::HostSigned;
use patchday_types::api::{
    Approval, ApprovalRequest, ComplianceReport, ComplianceRow, CreateTenant, CreateToken,
    Decision, Group, HostSummary, HostSummaryRow, PatchDayConfig, Role, SecretCreated,
    SetHostGroups, Tenant, TenantUpdate,
};
use patchday_types::{HostId, TenantId, UpdateState};
use serde::Deserialize;

fn schedule(pd: &PatchDayConfig) -> Result<PatchDaySchedule, ApiError> {
    parse_schedule(&pd.week, &pd.weekday, &pd.time, &pd.time_zone)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `GET /v1/tenants`.
pub async fn list_tenants(State(s): State<AppState>, op: Operator) -> ApiResult<Json<Vec<Tenant>>> {
    let all = s.store.list_tenants().await?;
    Ok(Json(
        all.into_iter().filter(|t| op.see(&t.id).is_ok()).collect(),
    ))
}

/// `POST /v1/tenants`.
pub async fn create_tenant(
    State(s): State<AppState>,
    op: Operator,
    Json(req): Json<CreateTenant>,
) -> ApiResult<Json<Tenant>> {
    op.provider()?;
    let patch_day = req.patch_day.unwrap_or_default();
    schedule(&patch_day)?;
    let t = Tenant {
        id: req.id,
        name: req.name,
        patch_day,
    };
    s.store.create_tenant(&t, s.clock.now()).await?;
    Ok(Json(t))
}

/// `POST /v1/tokens`.
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
    let secret = new_secret("pd");
    s.store
        .put_token(&TokenRecord {
            hash: hash_secret(&secret),
            name: req.name,
            role: req.role,
            tenant: req.tenant.clone(),
            created_at: s.clock.now(),
        })
        .await?;
    Ok(Json(SecretCreated {
        secret,
        role: Some(req.role),
        tenant: req.tenant,
    }))
}

/// `POST /v1/tenants/{t}/enroll-tokens`.
pub async fn create_enroll_token(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
) -> ApiResult<Json<SecretCreated>> {
    op.change(&t)?;
    let tenant = s.store.tenant(&t).await?;
    let secret = new_secret("pde");
    tenant
        .add_enroll_token(&hash_secret(&secret), s.clock.now())
        .await?;
    Ok(Json(SecretCreated {
        secret,
        role: None,
        tenant: Some(t),
    }))
}

/// `PUT /v1/tenants/{t}/patch-day`.
pub async fn set_patch_day(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
    Json(pd): Json<PatchDayConfig>,
) -> ApiResult<Json<Tenant>> {
    op.change(&t)?;
    schedule(&pd)?;
    let tenant = s.store.tenant(&t).await?;
    tenant.set_patch_day(&pd).await?;
    Ok(Json(tenant.get().await?))
}

/// `GET /v1/tenants/{t}/groups`.
pub async fn list_groups(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
) -> ApiResult<Json<Vec<Group>>> {
    op.see(&t)?;
    Ok(Json(s.store.tenant(&t).await?.list_groups().await?))
}

/// `POST /v1/tenants/{t}/groups`.
pub async fn create_group(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
    Json(g): Json<Group>,
) -> ApiResult<Json<Group>> {
    op.change(&t)?;
    s.store.tenant(&t).await?.create_group(&g).await?;
    Ok(Json(g))
}

/// `GET /v1/tenants/{t}/hosts`.
pub async fn list_hosts(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
) -> ApiResult<Json<Vec<HostSummary>>> {
    op.see(&t)?;
    let tenant = s.store.tenant(&t).await?;
    let mut out = Vec::new();
    for h in tenant.list_hosts().await? {
        let os = tenant
            .inventory(&h.id)
            .await?
            .map(|i| i.os.pretty_name)
            .unwrap_or_default();
        let signed = host_signed(tenant.as_ref(), &h.id).await?;
        out.push(HostSummary {
            id: h.id,
            hostname: h.hostname,
            groups: h.groups,
            last_seen: h.last_seen,
            os,
            signed,
        });
    }
    Ok(Json(out))
}

/// `PUT /v1/tenants/{t}/hosts/{h}/groups`.
pub async fn set_host_groups(
    State(s): State<AppState>,
    op: Operator,
    Path((t, h)): Path<(TenantId, HostId)>,
    Json(req): Json<SetHostGroups>,
) -> ApiResult<Json<()>> {
    op.change(&t)?;
    s.store
        .tenant(&t)
        .await?
        .set_host_groups(&h, &req.groups)
        .await?;
    Ok(Json(()))
}

/// `GET /v1/tenants/{t}/updates`: the catalog as this tenant's calendar sees it.
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
    for u in s.store.catalog_updates().await? {
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
pub async fn list_approvals(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
) -> ApiResult<Json<Vec<Approval>>> {
    op.see(&t)?;
    Ok(Json(s.store.tenant(&t).await?.list_approvals().await?))
}

/// `POST /v1/tenants/{t}/approvals`.
pub async fn approve(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
    Json(req): Json<ApprovalRequest>,
) -> ApiResult<Json<Approval>> {
    op.change(&t)?;
    let tenant = s.store.tenant(&t).await?;
    let updates = s.store.catalog_updates().await?;
    let u = patchday_store::find_update(&updates, &req.update)
        .filter(|u| u.published_for(t.as_str()))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "update {} is not in the catalog for tenant {t}; push the catalog first (or it is published for other tenants only)",
                req.update
            ))
        })?;
    let now = s.clock.now();
    if req.decision == Decision::Approve {
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
    };
    tenant.put_approval(&a).await?;
    Ok(Json(a))
}

/// Query of `GET /v1/report`.
#[derive(Deserialize)]
pub struct ReportQuery {
    tenant: Option<TenantId>,
}

/// `GET /v1/report`: compliance of every host in scope.
pub async fn report(
    State(s): State<AppState>,
    op: Operator,
    Query(q): Query<ReportQuery>,
) -> ApiResult<Json<ComplianceReport>> {
    let tenants: Vec<TenantId> = match q.tenant {
        Some(t) => {
            op.see(&t)?;
            vec![t]
        }
        None => s
            .store
            .list_tenants()
            .await?
            .into_iter()
            .map(|t| t.id)
            .filter(|t| op.see(t).is_ok())
            .collect(),
    };
    let updates = s.store.catalog_updates().await?;
    let mut report = ComplianceReport {
        generated_at: Some(s.clock.now()),
        ..Default::default()
    };
    for t in tenants {
        let tenant = s.store.tenant(&t).await?;
        let approvals = tenant.list_approvals().await?;
        for h in tenant.list_hosts().await? {
            let signed = host_signed(tenant.as_ref(), &h.id).await?;
            for mut st in host_statuses(tenant.as_ref(), &h, &approvals, &updates, None).await? {
                if st.state == UpdateState::NotApplicable {
                    continue;
                }
                // finding 13: why an approved update is not moving on this host.
                if let (UpdateState::Approved, None, Some(e)) =
                    (st.state, &st.message, &signed.agent_error)
                {
                    st.message = Some(format!("agent-error: {e}"));
                }
                let Some(u) = patchday_store::find_update(&updates, &st.update) else {
                    continue;
                };
                report.rows.push(ComplianceRow {
                    tenant: t.clone(),
                    host: h.id.clone(),
                    hostname: h.hostname.clone(),
                    groups: h.groups.clone(),
                    update: st.update,
                    severity: u.severity,
                    state: st.state,
                    message: st.message,
                });
            }
            report.hosts.push(HostSummaryRow {
                tenant: t.clone(),
                host: h.id,
                hostname: h.hostname,
                groups: h.groups,
                last_seen: h.last_seen,
                signed,
            });
        }
    }
    Ok(Json(report))
}

// issue 8, findings 8 and 13: what each host itself signed, and its agent's errors.
async fn host_signed(
    tenant: &dyn patchday_store::TenantStore,
    id: &HostId,
) -> ApiResult<HostSigned> {
    let s = tenant.host_signing(id).await?;
    let (agent_error, agent_error_at) = match s.agent_error {
        Some((e, at)) => (Some(e), Some(at)),
        None => (None, None),
    };
    Ok(HostSigned {
        key: s.public_key.is_some(),
        sequence: s.last_sequence,
        at: s.last_signed_at,
        agent_error,
        agent_error_at,
    })
}
