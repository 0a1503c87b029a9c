//! What agents call: enrol, check in (inventory in, assignments out), report states.

use crate::auth::{new_secret, HostAuth};
use crate::compliance::host_statuses;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use patchday_store::hash_secret;
use patchday_types::api::{
    AssignmentEntry, CheckinRequest, CheckinResponse, EnrollRequest, EnrollResponse, ErrorCode,
    ReportRequest,
};
use patchday_types::HostId;

/// `POST /v1/agent/enroll`.
pub async fn enroll(
    State(s): State<AppState>,
    Json(req): Json<EnrollRequest>,
) -> ApiResult<Json<EnrollResponse>> {
    let tenant_id = s
        .store
        .enroll_token_tenant(&hash_secret(&req.token))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "unknown enrolment token: ask the tenant admin for one (`patchday enroll-token create --tenant T`)",
            )
        })?;
    let tenant = s.store.tenant(&tenant_id).await?;
    let credential = new_secret("pdh");
    let mut suffix = [0u8; 4];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut suffix);
    let base: String = req
        .hostname
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    let base = if base.is_empty() {
        "host".to_string()
    } else {
        base.to_lowercase()
    };
    let id = HostId::new(format!("{base}-{}", hex::encode(suffix)))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    tenant
        .create_host(&id, &req.hostname, &hash_secret(&credential), s.clock.now())
        .await?;
    tracing::info!(tenant = %tenant_id, host = %id, "host enrolled");
    let root = std::fs::read_to_string(crate::catalog::pinned_root(&s.config.data_dir)).ok();
    Ok(Json(EnrollResponse {
        host: id,
        tenant: tenant_id,
        credential,
        catalog_root: root,
    }))
}

/// `POST /v1/agent/checkin`.
pub async fn checkin(
    State(s): State<AppState>,
    who: HostAuth,
    Json(req): Json<CheckinRequest>,
) -> ApiResult<Json<CheckinResponse>> {
    let tenant = s.store.tenant(&who.tenant).await?;
    tenant
        .save_inventory(&who.host, &req.inventory, s.clock.now())
        .await?;
    let host = tenant.host(&who.host).await?;
    let approvals = tenant.list_approvals().await?;
    let updates = s.store.catalog_updates().await?;
    let statuses = host_statuses(tenant.as_ref(), &host, &approvals, &updates).await?;
    let assignments = statuses
        .into_iter()
        .filter(|st| st.is_assigned() && !st.missing.is_empty())
        .map(|st| AssignmentEntry {
            update: st.update,
            targets: st.missing,
            deadline: st.deadline,
        })
        .collect();
    Ok(Json(CheckinResponse {
        assignments,
        poll_seconds: s.config.poll_seconds,
    }))
}

/// `POST /v1/agent/report`.
pub async fn report(
    State(s): State<AppState>,
    who: HostAuth,
    Json(req): Json<ReportRequest>,
) -> ApiResult<Json<()>> {
    if req.states.len() > 10_000 {
        return Err(ApiError::bad_request("too many states in one report"));
    }
    let tenant = s.store.tenant(&who.tenant).await?;
    tenant
        .put_states(&who.host, &req.states, s.clock.now())
        .await?;
    Ok(Json(()))
}
