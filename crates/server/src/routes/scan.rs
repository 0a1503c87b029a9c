//! Issue 14, point 5: the agents' folder scan. Each host reports what its scan
//! quarantined or could not scan, signed with its own key like a check-in (so a stolen
//! credential cannot invent findings for a host, and a host reports for itself only);
//! operators of the tenant list them (`patchday scan findings --tenant T`).

use axum::extract::{Path, Query, State};
use axum::Json;
use patchday_types::api::{ErrorCode, HostScanFinding, ScanFindingsRequest};
use patchday_types::TenantId;
use serde::Deserialize;

use crate::admission::Admitted;
use crate::auth::{Operator, SignedHost};
use crate::error::{ApiError, ApiResult};
use crate::limits::{MAX_MESSAGE, MAX_NAME};
use crate::state::AppState;

/// Most findings in one report.
const MAX_FINDINGS: usize = 1000;
/// Most findings one listing returns.
const MAX_LISTED: u32 = 10_000;
/// Longest path reported (Linux's PATH_MAX).
const MAX_PATH: usize = 4096;

fn check(req: &ScanFindingsRequest) -> Result<(), ApiError> {
    if req.findings.len() > MAX_FINDINGS {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "{} findings in one report; the limit is {MAX_FINDINGS} (the agent sends the rest next time)",
                req.findings.len()
            ),
        ));
    }
    for f in &req.findings {
        let names = [
            Some(&f.baseline),
            f.signature.as_ref(),
            f.quarantine_id.as_ref(),
        ];
        if names.iter().flatten().any(|n| n.len() > MAX_NAME) {
            return Err(ApiError::bad_request(format!(
                "baseline, signature and quarantine id are at most {MAX_NAME} bytes"
            )));
        }
        if f.sha256
            .as_ref()
            .is_some_and(|d| d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(ApiError::bad_request("sha256 must be 64 hex digits"));
        }
        if f.path.len() > MAX_PATH || f.reason.as_ref().is_some_and(|r| r.len() > MAX_MESSAGE) {
            return Err(ApiError::bad_request(format!(
                "a path is at most {MAX_PATH} bytes and a reason at most {MAX_MESSAGE}"
            )));
        }
    }
    Ok(())
}

/// `POST /v1/agent/scan-findings`: findings of the host's folder scan.
#[utoipa::path(
    post,
    path = "/v1/agent/scan-findings",
    tag = "agent",
    request_body = patchday_types::api::ScanFindingsRequest,
    responses((status = 200, description = "Kept (the body is `null`)"))
)]
pub async fn report(
    State(s): State<AppState>,
    _place: Admitted, // issue 10: before the body, its signature and the database
    SignedHost { who, body, .. }: SignedHost<ScanFindingsRequest>,
) -> ApiResult<Json<()>> {
    check(&body)?;
    for f in &body.findings {
        // Debug formatting: paths come from users' folders; controls are escaped.
        tracing::warn!(tenant = %who.tenant, host = %who.host, outcome = ?f.outcome, path = ?f.path, signature = ?f.signature, "folder scan finding");
    }
    s.store
        .tenant(&who.tenant)
        .await?
        .record_scan_findings(&who.host, &body.findings, s.clock.now())
        .await?;
    Ok(Json(()))
}

/// Query of `GET /v1/tenants/{t}/scan-findings`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FindingsQuery {
    /// Most findings to return (newest first; default 100).
    pub(crate) limit: Option<u32>,
}

/// `GET /v1/tenants/{t}/scan-findings?limit=N`: the newest findings first.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/scan-findings",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id"), FindingsQuery),
    responses((status = 200, description = "Findings, newest first", body = Vec<patchday_types::api::HostScanFinding>))
)]
pub async fn list(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
    Query(q): Query<FindingsQuery>,
) -> ApiResult<Json<Vec<HostScanFinding>>> {
    op.see(&t)?;
    let limit = q.limit.unwrap_or(100).min(MAX_LISTED);
    Ok(Json(s.store.tenant(&t).await?.scan_findings(limit).await?))
}
