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

/// What an agent sends to `POST /v1/agent/facts`: an upload by parts (issue 12, point 7),
/// or the whole facts, as agents before it do.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum FactsBody {
    /// Facts by parts: the suites by digest, their contents only where asked.
    Upload(patchday_audit::upload::FactsUpload),
    /// The whole facts (older agents).
    Whole(Facts),
}

/// `POST /v1/agent/facts`: the host's audit facts, stored once per distinct content. The
/// body may be zstd-compressed (`Content-Encoding: zstd`); the signature covers the
/// uncompressed JSON.
#[utoipa::path(
    post,
    path = "/v1/agent/facts",
    tag = "agent",
    request_body = FactsBody,
    responses((status = 200, description = "Stored, or the digests of the suites to send with the upload again", body = patchday_audit::upload::FactsAnswer))
)]
pub async fn facts(
    State(s): State<AppState>,
    SignedHost { who, body, .. }: SignedHost<FactsBody>,
) -> ApiResult<Json<patchday_audit::upload::FactsAnswer>> {
    let tenant = s.store.tenant(&who.tenant).await?;
    let upload = match body {
        FactsBody::Upload(u) => u,
        FactsBody::Whole(f) => crate::facts::from_whole(f),
    };
    let answer = crate::facts::save(tenant.as_ref(), &who.host, upload, s.clock.now()).await?;
    Ok(Json(answer))
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
    tenant.host(&h).await?; // 404 for a host that is not the tenant's
    let facts = crate::facts::read(tenant.as_ref(), &h)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "host {h} has reported no audit facts yet; run its agent"
            ))
        })?;
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
    crate::facts::documents(tenant.as_ref(), |_, facts| {
        fleet.add_facts(t.as_str(), facts)
    })
    .await?;
    let feeds = s.feeds.clone();
    let report = tokio::task::spawn_blocking(move || fleet.audit(&feeds.advisories))
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(report))
}
