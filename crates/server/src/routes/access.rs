//! Issue 14, points 1-3: compliance access tokens for hosts, the keys that verify them,
//! and the per-tenant list of who may pass that the gates follow.

use crate::auth::{Operator, SignedHost};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::Json;
use patchday_types::api::{AccessList, AccessTokenAnswer, AccessTokenRequest, ErrorCode, JwkSet};
use patchday_types::TenantId;
use serde::Deserialize;
use std::time::Duration;

/// Longest a gate's wait for a change is held.
const MAX_WAIT: Duration = Duration::from_secs(120);
/// How often a held wait decides again even when nothing was reported: deadlines pass
/// and hosts go stale with time alone.
const RECHECK: Duration = Duration::from_secs(5);
/// How long a held wait lets changes gather before deciding again.
const COALESCE: Duration = Duration::from_secs(1);

/// `POST /v1/agent/access-token`: a compliant host's short-lived token, bound to its
/// own key and its tenant; a host that is not compliant is told why (403 not-compliant).
#[utoipa::path(
    post,
    path = "/v1/agent/access-token",
    tag = "agent",
    request_body = patchday_types::api::AccessTokenRequest,
    responses(
        (status = 200, description = "The token", body = patchday_types::api::AccessTokenAnswer),
        (status = 403, description = "The host is not compliant (the message says why)", body = patchday_types::api::ErrorBody)
    )
)]
pub async fn token(
    State(s): State<AppState>,
    SignedHost { who, .. }: SignedHost<AccessTokenRequest>,
) -> ApiResult<Json<AccessTokenAnswer>> {
    let now = s.clock.now();
    let tenant = s.store.tenant(&who.tenant).await?;
    let (e, catalog) = crate::access::evaluate_host(&s, tenant.as_ref(), &who.host).await?;
    let d = crate::access::decide(&s, &e, &catalog, now);
    if let Err(why) = d.decision {
        tracing::info!(tenant = %who.tenant, host = %who.host, reason = %why, "access token refused: not compliant");
        return Err(ApiError::new(
            ErrorCode::NotCompliant,
            format!(
                "host {} ({}) is not compliant, so it gets no access token: {why}; the agent installs what is approved at its next run (`patchday host access --tenant {}` shows every host and why)",
                who.host, e.host.hostname, who.tenant
            ),
        ));
    }
    let public = e.signing.public_key.as_deref().unwrap_or_default();
    let lifetime = s.config.access_token_lifetime;
    let jti = hex::encode(rand::random::<[u8; 16]>());
    let claims = patchday_trust::access::claims_for(
        who.host.as_str(),
        &e.host.hostname,
        who.tenant.as_str(),
        public,
        d.compliance.as_str(),
        now,
        lifetime,
        jti,
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let token = s.access_key.issue(&claims).map_err(ApiError::internal)?;
    Ok(Json(AccessTokenAnswer {
        token,
        expires_at: jiff::Timestamp::from_second(claims.exp).unwrap_or(now),
        lifetime_seconds: u64::try_from(lifetime.as_secs()).unwrap_or(0),
        compliance: d.compliance,
    }))
}

/// `GET /v1/access/keys`: the keys that sign access tokens (a JWKS), for gates that
/// verify offline. Public: they are public keys.
#[utoipa::path(
    get,
    path = "/v1/access/keys",
    tag = "agent",
    responses((status = 200, description = "The token keys (JWKS)", body = patchday_types::api::JwkSet))
)]
pub async fn keys(State(s): State<AppState>) -> Json<JwkSet> {
    Json(crate::access::key_set(&s))
}

/// Query of `GET /v1/tenants/{t}/access`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccessQuery {
    /// The `etag` the caller has: the answer waits (up to `wait` seconds) until it differs.
    known: Option<String>,
    /// Seconds to wait for a change (at most 120); 0 or absent: answer now.
    wait: Option<u64>,
}

/// `GET /v1/tenants/{t}/access`: every host's access and why not; with `known` and
/// `wait`, a long poll that answers as soon as something changed (a gate's push).
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/access",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id"), AccessQuery),
    responses((status = 200, description = "Every host's access", body = patchday_types::api::AccessList))
)]
pub async fn list(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
    Query(q): Query<AccessQuery>,
) -> ApiResult<Json<AccessList>> {
    op.see(&t)?;
    let tenant = s.store.tenant(&t).await?;
    let hold = Duration::from_secs(q.wait.unwrap_or(0)).min(MAX_WAIT);
    let until = tokio::time::Instant::now() + hold;
    // Held waits take a place like agents' waits do, so gates cannot use up connections.
    let _slot = if hold.is_zero() || q.known.is_none() {
        None
    } else {
        Some(s.push.admit().ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unavailable,
                "too many held waits; try again shortly",
            )
            .retry_after(5)
        })?)
    };
    loop {
        // Subscribed before deciding, so a change during the decision is not missed.
        let mut changes = s.push.access_changes();
        changes.borrow_and_update();
        let list = crate::access::tenant_list(&s, tenant.as_ref(), s.clock.now()).await?;
        let now = tokio::time::Instant::now();
        if q.known.as_deref() != Some(list.etag.as_str()) || now >= until {
            return Ok(Json(list));
        }
        let pause = (until - now).min(RECHECK);
        if let Ok(Ok(())) = tokio::time::timeout(pause, changes.changed()).await {
            // Every check-in signals a change: during a storm, decide at most once per
            // COALESCE per held wait, not once per check-in.
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            tokio::time::sleep(COALESCE.min(left)).await;
        }
    }
}
