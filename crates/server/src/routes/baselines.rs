//! Issue 13, point 1: baseline compliance, read from what agents reported at check-in
//! (`host_baselines`, `baseline_drift`), scoped like everything else.

use crate::auth::Operator;
use crate::error::ApiResult;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use patchday_types::api::BaselinesAnswer;
use patchday_types::TenantId;

/// Most drift events one answer lists.
const MAX_DRIFT: u32 = 1000;

/// `GET /v1/tenants/{t}/baselines`.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/baselines",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id")),
    responses((status = 200, description = "Each host's latest report per baseline, and drift found", body = patchday_types::api::BaselinesAnswer))
)]
pub async fn list(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
) -> ApiResult<Json<BaselinesAnswer>> {
    op.see(&t)?;
    let tenant = s.store.tenant(&t).await?;
    Ok(Json(BaselinesAnswer {
        hosts: tenant.baseline_reports().await?,
        drift: tenant.baseline_drift(MAX_DRIFT).await?,
    }))
}
