//! Issue 9, point 4 (closure): `POST /v1/tenants/{t}/hosts/{h}/repair`, the server-side
//! repair assignment. The next check-in answer signs the instruction; the agent runs the
//! same recovery as `patchday-agent repair` and the request is cleared once the host
//! reports a clean dpkg database.

use axum::extract::{Path, State};
use axum::Json;
use patchday_types::{HostId, TenantId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::Operator;
use crate::error::ApiResult;
use crate::state::AppState;

/// The body of a repair request.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RepairHost {
    /// Let `apt-get -f install` install or remove packages.
    #[serde(default)]
    pub allow_apt: bool,
}

/// `POST /v1/tenants/{t}/hosts/{h}/repair`.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/hosts/{host}/repair",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id"), ("host" = patchday_types::HostId, Path, description = "Host id")),
    request_body = RepairHost,
    responses((status = 200, description = "Done (the body is `null`)"))
)]
pub async fn request(
    State(s): State<AppState>,
    op: Operator,
    Path((t, h)): Path<(TenantId, HostId)>,
    Json(req): Json<RepairHost>,
) -> ApiResult<Json<()>> {
    op.change(&t)?;
    let now = s.clock.now();
    let entry = op.log_entry(
        now,
        Some(&t),
        "host.repair",
        format!("host {h}"),
        json!({ "allow_apt": req.allow_apt }),
    );
    s.store
        .tenant(&t)
        .await?
        .request_repair_logged(&h, req.allow_apt, now, &entry)
        .await?;
    s.push.tenant(&t); // issue 10, point 6 (push): the repair travels in the next answer
    Ok(Json(()))
}
