//! Finding 10 (issue 8): the operator log. Every change an operator makes is recorded
//! with who (token name and id), when, from where (peer address) and what (action,
//! object, a short JSON detail); entries are only ever appended, and read scoped like
//! everything else: a tenant token sees its tenant's entries, provider tokens see all,
//! provider-wide ones (catalog pushes, director keys) included.

use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::Json;
use jiff::Timestamp;
use patchday_store::LogScope;
use patchday_types::api::{LogEntry, Role};
use patchday_types::TenantId;
use serde::Deserialize;

/// Most entries one request returns.
const MAX_ENTRIES: u32 = 100_000;

impl Operator {
    /// A log entry for a change this operator is making now.
    pub fn log_entry(
        &self,
        now: Timestamp,
        tenant: Option<&TenantId>,
        action: &str,
        object: String,
        detail: serde_json::Value,
    ) -> LogEntry {
        LogEntry {
            seq: 0,
            at: now,
            tenant: tenant.cloned(),
            actor: self.name.clone(),
            actor_id: self.token_id.clone(),
            source: self.source.clone(),
            action: action.into(),
            object,
            detail,
        }
    }

    /// The tenant a listing is about: `asked` when this operator may see it, else the
    /// operator's own; `None` (everything) for a provider admin who names none.
    pub fn listing_scope(&self, asked: Option<&TenantId>) -> ApiResult<Option<TenantId>> {
        match (asked, self.role, &self.tenant) {
            (Some(t), _, _) => {
                self.see(t)?;
                Ok(Some(t.clone()))
            }
            (None, Role::ProviderAdmin, _) => Ok(None),
            (None, _, Some(own)) => Ok(Some(own.clone())),
            (None, _, None) => Err(ApiError::forbidden("this token has no tenant")),
        }
    }
}

/// Appends the entry of a change the store made without it; the change is not
/// acknowledged when this fails.
pub async fn record(s: &AppState, entry: &LogEntry) -> ApiResult<()> {
    s.store.append_log(entry).await.map_err(|e| {
        ApiError::internal(format!(
            "the change ({} {}) was made but its operator log entry could not be written: {e}",
            entry.action, entry.object
        ))
    })?;
    Ok(())
}

/// Records a provider-wide change (no tenant) this operator made now, as [`record`].
pub async fn record_provider(
    s: &AppState,
    op: &Operator,
    action: &str,
    object: &str,
    detail: serde_json::Value,
) -> ApiResult<()> {
    let entry = op.log_entry(s.clock.now(), None, action, object.into(), detail);
    record(s, &entry).await
}

/// Query of the log routes.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Only this tenant (`GET /v1/log`).
    pub(crate) tenant: Option<TenantId>,
    /// Entries at or after this time.
    pub(crate) since: Option<Timestamp>,
    /// At most this many entries.
    pub(crate) limit: Option<u32>,
}

/// `GET /v1/log`: the entries in the caller's scope (`?tenant=&since=&limit=`).
#[utoipa::path(
    get,
    path = "/v1/log",
    tag = "operator",
    params(LogQuery),
    responses((status = 200, description = "Operator log entries in scope", body = Vec<patchday_types::api::LogEntry>))
)]
pub async fn list(
    State(s): State<AppState>,
    op: Operator,
    Query(q): Query<LogQuery>,
) -> ApiResult<Json<Vec<LogEntry>>> {
    let scope = match op.listing_scope(q.tenant.as_ref())? {
        Some(t) => LogScope::Tenant(t),
        None => LogScope::Everything,
    };
    entries(&s, &scope, &q).await
}

/// `GET /v1/tenants/{t}/log`.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/log",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id"), LogQuery),
    responses((status = 200, description = "The tenant's operator log", body = Vec<patchday_types::api::LogEntry>))
)]
pub async fn tenant(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Json<Vec<LogEntry>>> {
    op.see(&t)?;
    entries(&s, &LogScope::Tenant(t), &q).await
}

async fn entries(s: &AppState, scope: &LogScope, q: &LogQuery) -> ApiResult<Json<Vec<LogEntry>>> {
    let limit = q.limit.unwrap_or(MAX_ENTRIES).min(MAX_ENTRIES);
    Ok(Json(s.store.list_log(scope, q.since, limit).await?))
}
