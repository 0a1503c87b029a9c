//! Issue 10, points 2 and 3 (rings): a tenant's rings, the preview of what an approval
//! would touch, and the rollout's status, halt and resume (operator actions, logged).

use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::rollout::ring_views;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::Json;
use patchday_core::rollout::{judge, next_step, rule_matches, Gate, Step};
use patchday_types::api::{
    HaltRequest, Ring, RingPreview, RingProgress, RingsRequest, RolloutHalt, RolloutStatus,
};
use patchday_types::{TenantId, UpdateId, UpdateState};
use serde::Deserialize;
use serde_json::json;

/// Most rings a tenant may have.
const MAX_RINGS: usize = 32;

fn check(rings: &[Ring], groups: &[patchday_types::GroupId]) -> ApiResult<()> {
    if rings.len() > MAX_RINGS {
        return Err(ApiError::bad_request(format!(
            "{} rings given; at most {MAX_RINGS}",
            rings.len()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for r in rings {
        if !groups.contains(&r.group) {
            return Err(ApiError::not_found(format!(
                "group {} not found: create it first (`patchday group create --tenant T {}`)",
                r.group, r.group
            )));
        }
        if !seen.insert(&r.group) {
            return Err(ApiError::bad_request(format!(
                "group {} is named by two rings; each ring is one group",
                r.group
            )));
        }
        if r.deferral_seconds < 0 || r.soak_seconds < 0 || r.grace_seconds < 0 {
            return Err(ApiError::bad_request(format!(
                "ring {}: deferral, soak and grace cannot be negative",
                r.group
            )));
        }
        if r.success_permille > 1000 || r.failure_permille > 1000 {
            return Err(ApiError::bad_request(format!(
                "ring {}: ratios are per mille, 0 to 1000",
                r.group
            )));
        }
    }
    Ok(())
}

/// `PUT /v1/tenants/{t}/rings`.
#[utoipa::path(
    put,
    path = "/v1/tenants/{tenant}/rings",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id")),
    request_body = patchday_types::api::RingsRequest,
    responses((status = 200, description = "The rings now in force", body = Vec<patchday_types::api::Ring>))
)]
pub async fn set(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
    Json(req): Json<RingsRequest>,
) -> ApiResult<Json<Vec<Ring>>> {
    op.change(&t)?;
    let tenant = s.store.tenant(&t).await?;
    let groups: Vec<_> = tenant
        .list_groups()
        .await?
        .into_iter()
        .map(|g| g.id)
        .collect();
    check(&req.rings, &groups)?;
    let entry = op.log_entry(
        s.clock.now(),
        Some(&t),
        "rings.set",
        format!("tenant {t} rings"),
        json!({ "rings": req.rings }),
    );
    tenant.set_rings_logged(&req.rings, &entry).await?;
    s.push.tenant(&t); // issue 10, point 6 (push)
    Ok(Json(req.rings))
}

/// `GET /v1/tenants/{t}/rings`.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/rings",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id")),
    responses((status = 200, description = "Rings in order", body = Vec<patchday_types::api::Ring>))
)]
pub async fn list(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
) -> ApiResult<Json<Vec<Ring>>> {
    op.see(&t)?;
    Ok(Json(s.store.tenant(&t).await?.rings().await?))
}

/// Query of the preview.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PreviewQuery {
    pub(crate) update: UpdateId,
}

/// `GET /v1/tenants/{t}/rings/preview?update=U`.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/rings/preview",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id"), PreviewQuery),
    responses((status = 200, description = "When each ring would receive the update", body = Vec<patchday_types::api::RingPreview>))
)]
pub async fn preview(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
    Query(q): Query<PreviewQuery>,
) -> ApiResult<Json<Vec<RingPreview>>> {
    op.see(&t)?;
    let tenant = s.store.tenant(&t).await?;
    let catalog = s.catalog_index.index(s.store.as_ref()).await?;
    let u = catalog
        .get(q.update.as_str())
        .filter(|u| u.published_for(t.as_str()))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "update {} is not in the catalog for tenant {t}",
                q.update
            ))
        })?;
    let rings = tenant.rings().await?;
    let approvals = tenant.list_approvals().await?;
    let hosts = tenant.list_hosts().await?;
    let now = s.clock.now();
    let halt = crate::rollout::halt_of(&s, &u.id).await?;
    let forgiven = halt.as_ref().and_then(|h| h.resumed_at);
    let halted = halt.filter(RolloutHalt::active);
    let views = ring_views(tenant.as_ref(), &rings, &approvals, &hosts, &u.id, forgiven).await?;
    let progress: Vec<_> = views.iter().map(|v| (v.approved_at, v.evidence)).collect();
    let pd = tenant.get().await?.patch_day;
    let release = crate::rollout::release_at_for(&s, &pd, u, now).await?;
    let kev = crate::rollout::known_exploited(&s, u);
    let next = match (&halted, next_step(u, kev, &rings, &progress, release, now)) {
        (Some(h), _) => format!("halted: {}", h.reason),
        (None, Step::Approve { ring, .. }) => {
            format!("approve ring {} ({})", ring + 1, rings[ring].group)
        }
        (None, Step::Halt(why)) => format!("halt: {why}"),
        (None, Step::Wait(why)) => format!("wait: {why}"),
    };
    Ok(Json(
        rings
            .iter()
            .zip(&views)
            .map(|(r, v)| RingPreview {
                group: r.group.clone(),
                rule_matches: r
                    .rule
                    .as_ref()
                    .is_some_and(|rule| rule_matches(rule, u, kev)),
                hosts: v
                    .hosts
                    .iter()
                    .filter(|(_, st)| {
                        st.is_some_and(|st| {
                            !matches!(
                                st,
                                UpdateState::Installed
                                    | UpdateState::NotApplicable
                                    | UpdateState::Declined
                                    | UpdateState::Removed
                                    | UpdateState::RemoveFailed
                                    | UpdateState::Superseded
                            )
                        })
                    })
                    .map(|(h, _)| h.clone())
                    .collect(),
                next: next.clone(),
            })
            .collect(),
    ))
}

/// `GET /v1/rollouts/{u}`: the halt, and every ring this operator may see.
#[utoipa::path(
    get,
    path = "/v1/rollouts/{update}",
    tag = "operator",
    params(("update" = patchday_types::UpdateId, Path, description = "Update id")),
    responses((status = 200, description = "The halt and every visible ring", body = patchday_types::api::RolloutStatus))
)]
pub async fn status(
    State(s): State<AppState>,
    op: Operator,
    Path(u): Path<UpdateId>,
) -> ApiResult<Json<RolloutStatus>> {
    let now = s.clock.now();
    let halt = crate::rollout::halt_of(&s, &u).await?;
    let mut out = Vec::new();
    for t in s.store.list_tenants().await? {
        if op.see(&t.id).is_err() {
            continue;
        }
        let tenant = s.store.tenant(&t.id).await?;
        let rings = tenant.rings().await?;
        if rings.is_empty() {
            // Nothing to show, and its hosts not read (10,000 of them cost the console's
            // rollout page most of a second).
            continue;
        }
        let approvals = tenant.list_approvals().await?;
        let hosts = tenant.list_hosts().await?;
        let forgiven = halt.as_ref().and_then(|h| h.resumed_at);
        let views = ring_views(tenant.as_ref(), &rings, &approvals, &hosts, &u, forgiven).await?;
        for (r, v) in rings.iter().zip(views) {
            let verdict = match v.approved_at {
                None if v.declined => "declined".to_string(),
                None => "not approved".to_string(),
                Some(at) => match judge(r, v.evidence, at, now) {
                    Gate::Passed => "passed".to_string(),
                    Gate::Waiting(why) => format!("waiting: {why}"),
                    Gate::Halt(why) => format!("failing: {why}"),
                },
            };
            let admitted = tenant.wave_admitted(&u, &r.group).await?.len();
            out.push(RingProgress {
                wave_admitted: u32::try_from(admitted).unwrap_or(u32::MAX),
                tenant: t.id.clone(),
                group: r.group.clone(),
                approved_at: v.approved_at,
                applicable: v.evidence.applicable,
                installed: v.evidence.installed,
                failed: v.evidence.failed,
                verdict,
            });
        }
    }
    Ok(Json(RolloutStatus {
        update: u,
        halt,
        rings: out,
    }))
}

/// `POST /v1/rollouts/{u}/halt`: every tenant's rollout of `u` stops (provider admins).
#[utoipa::path(
    post,
    path = "/v1/rollouts/{update}/halt",
    tag = "operator",
    params(("update" = patchday_types::UpdateId, Path, description = "Update id")),
    request_body = patchday_types::api::HaltRequest,
    responses((status = 200, description = "The halt", body = patchday_types::api::RolloutHalt))
)]
pub async fn halt(
    State(s): State<AppState>,
    op: Operator,
    Path(u): Path<UpdateId>,
    Json(req): Json<HaltRequest>,
) -> ApiResult<Json<RolloutHalt>> {
    op.provider()?;
    let reason = req.reason.trim();
    if reason.is_empty() {
        return Err(ApiError::bad_request(
            "halting a rollout needs a reason (patchday rollout halt --update U --reason \"...\")",
        ));
    }
    let now = s.clock.now();
    let h = RolloutHalt {
        update: u.clone(),
        reason: reason.to_string(),
        at: now,
        by: op.name.clone(),
        resumed_at: None,
    };
    let entry = op.log_entry(
        now,
        None,
        "rollout.halt",
        format!("update {u}"),
        json!({ "reason": reason }),
    );
    if !crate::rollout::halt(&s, &h, Some(&entry), None).await? {
        return Err(ApiError::conflict(format!(
            "the rollout of {u} is halted already"
        )));
    }
    Ok(Json(h))
}

/// `POST /v1/rollouts/{u}/resume` (provider admins).
#[utoipa::path(
    post,
    path = "/v1/rollouts/{update}/resume",
    tag = "operator",
    params(("update" = patchday_types::UpdateId, Path, description = "Update id")),
    responses((status = 200, description = "Done (the body is `null`)"))
)]
pub async fn resume(
    State(s): State<AppState>,
    op: Operator,
    Path(u): Path<UpdateId>,
) -> ApiResult<Json<()>> {
    op.provider()?;
    let entry = op.log_entry(
        s.clock.now(),
        None,
        "rollout.resume",
        format!("update {u}"),
        json!({}),
    );
    if !s.store.resume_rollout(&u, s.clock.now(), &entry).await? {
        return Err(ApiError::conflict(format!(
            "the rollout of {u} is not halted"
        )));
    }
    tracing::info!(update = %u, by = %op.name, "rollout resumed");
    s.push.everyone(); // issue 10, point 6 (push): held hosts of every tenant may go on
    Ok(Json(()))
}
