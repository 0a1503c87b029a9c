//! The security audit over facts that agents report: one host's plan, and the
//! tenant's fleet plan (deduplicated by release, source package and version).

use crate::auth::{Operator, SignedHost};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use patchday_audit::fleet::{Fleet, FleetReport};
use patchday_audit::model::Facts;
use patchday_audit::report::Format;
use patchday_types::{HostId, TenantId};
use serde::Deserialize;

/// `POST /v1/agent/facts`.
#[utoipa::path(
    post,
    path = "/v1/agent/facts",
    tag = "agent",
    request_body = patchday_audit::model::Facts,
    responses((status = 200, description = "Done (the body is `null`)"))
)]
pub async fn facts(
    State(s): State<AppState>,
    SignedHost {
        who, body: facts, ..
    }: SignedHost<Facts>,
) -> ApiResult<Json<()>> {
    let tenant = s.store.tenant(&who.tenant).await?;
    let text = serde_json::to_string(&facts).map_err(ApiError::internal)?;
    tenant.save_facts(&who.host, &text, s.clock.now()).await?;
    Ok(Json(()))
}

/// Query of the host audit.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FormatQuery {
    pub(crate) format: Option<String>,
}

/// `GET /v1/tenants/{t}/hosts/{h}/audit?format=text|json|html`.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/hosts/{host}/audit",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id"), ("host" = patchday_types::HostId, Path, description = "Host id"), FormatQuery),
    responses((status = 200, description = "The host's audit plan", content((patchday_audit::plan::Plan = "application/json"), (String = "text/plain"), (String = "text/html"))))
)]
pub async fn host(
    State(s): State<AppState>,
    op: Operator,
    Path((t, h)): Path<(TenantId, HostId)>,
    Query(q): Query<FormatQuery>,
) -> ApiResult<Response> {
    op.see(&t)?;
    let format = match q.format.as_deref().unwrap_or("json") {
        "json" => Format::Json,
        "html" => Format::Html,
        "text" => Format::Text,
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown format {other:?}: use json, html or text"
            )))
        }
    };
    let tenant = s.store.tenant(&t).await?;
    let (text, _) = tenant.facts(&h).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "host {h} has reported no audit facts yet; run its agent"
        ))
    })?;
    let facts: Facts = serde_json::from_str(&text).map_err(ApiError::internal)?;
    let now = s.clock.now();
    let findings = patchday_audit::feeds::assess(&facts, &s.feeds, None, now);
    let plan = patchday_audit::plan::build(&facts, findings, now);
    let body = patchday_audit::report::render(&plan, format).map_err(ApiError::internal)?;
    let mime = match format {
        Format::Json => "application/json",
        Format::Html => "text/html; charset=utf-8",
        Format::Text => "text/plain; charset=utf-8",
    };
    Ok(([(header::CONTENT_TYPE, mime)], body).into_response())
}

/// `GET /v1/tenants/{t}/audit`: the tenant's fleet plan.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/audit",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id")),
    responses((status = 200, description = "The fleet audit plan", body = patchday_audit::fleet::FleetReport))
)]
pub async fn fleet(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
) -> ApiResult<Json<FleetReport>> {
    op.see(&t)?;
    let tenant = s.store.tenant(&t).await?;
    let mut fleet = Fleet::new();
    for h in tenant.list_hosts().await? {
        if let Some((text, _)) = tenant.facts(&h.id).await? {
            let facts: Facts = serde_json::from_str(&text).map_err(ApiError::internal)?;
            fleet.add_facts(t.as_str(), &facts);
        }
    }
    let feeds = s.feeds.clone();
    let report = tokio::task::spawn_blocking(move || fleet.audit(&feeds.advisories))
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(report))
}
