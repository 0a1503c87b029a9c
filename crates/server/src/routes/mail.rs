//! Issue 14, point 4: the mail attachment filter's verdicts. `patchday milter run
//! --server` reports each verdict with an operator token of the tenant (a tenant-admin
//! token: reporting is a write); operators list them.

use axum::extract::{Path, Query, State};
use axum::Json;
use patchday_types::api::MailVerdict;
use patchday_types::TenantId;
use serde::Deserialize;

use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::limits::{MAX_MESSAGE, MAX_NAME};
use crate::state::AppState;

/// Most recipients or reasons in one verdict.
const MAX_ITEMS: usize = 1000;
/// Most verdicts one listing returns.
const MAX_LISTED: u32 = 10_000;

fn check(v: &MailVerdict) -> Result<(), ApiError> {
    let known = ["accept", "quarantine", "tempfail", "reject"];
    if !known.contains(&v.verdict.as_str()) {
        return Err(ApiError::bad_request(format!(
            "verdict must be one of {known:?}"
        )));
    }
    if v.recipients.len() > MAX_ITEMS || v.reasons.len() > MAX_ITEMS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_ITEMS} recipients and {MAX_ITEMS} reasons per verdict"
        )));
    }
    let names = [&v.sender]
        .into_iter()
        .chain(&v.recipients)
        .chain(v.queue_id.iter())
        .chain(v.quarantine_id.iter());
    if names.into_iter().any(|s| s.len() > MAX_NAME) {
        return Err(ApiError::bad_request(format!(
            "addresses and IDs are at most {MAX_NAME} bytes"
        )));
    }
    if v.reasons.iter().any(|r| r.len() > MAX_MESSAGE) {
        return Err(ApiError::bad_request(format!(
            "each reason is at most {MAX_MESSAGE} bytes"
        )));
    }
    Ok(())
}

/// `POST /v1/tenants/{t}/mail/verdicts`: one verdict from the milter.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/mail/verdicts",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id")),
    request_body = patchday_types::api::MailVerdict,
    responses((status = 200, description = "Kept (the body is `null`)"))
)]
pub async fn report(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
    Json(v): Json<MailVerdict>,
) -> ApiResult<Json<()>> {
    op.change(&t)?;
    check(&v)?;
    s.store.tenant(&t).await?.record_mail_verdict(&v).await?;
    Ok(Json(()))
}

/// Query of `GET /v1/tenants/{t}/mail/verdicts`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerdictQuery {
    /// Most verdicts to return (newest first; default 100).
    pub(crate) limit: Option<u32>,
}

/// `GET /v1/tenants/{t}/mail/verdicts?limit=N`: the newest verdicts first.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/mail/verdicts",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id"), VerdictQuery),
    responses((status = 200, description = "Verdicts, newest first", body = Vec<patchday_types::api::MailVerdict>))
)]
pub async fn list(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
    Query(q): Query<VerdictQuery>,
) -> ApiResult<Json<Vec<MailVerdict>>> {
    op.see(&t)?;
    let limit = q.limit.unwrap_or(100).min(MAX_LISTED);
    Ok(Json(s.store.tenant(&t).await?.mail_verdicts(limit).await?))
}
