//! Issue 11, point 5: `GET /v1/notifications[?tenant=T&limit=N]`: the notification
//! targets and the delivery log, scoped like the operator log: a tenant's token sees its
//! tenant's targets and events; a provider admin sees everything, the server's own
//! events (catalog expiry, an operator's halt) and global targets included.

use crate::auth::Operator;
use crate::error::ApiResult;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::Json;
use patchday_types::notify::NotificationsView;
use patchday_types::TenantId;
use serde::Deserialize;

/// Query of `GET /v1/notifications`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotifyQuery {
    /// Only this tenant's targets and events.
    tenant: Option<TenantId>,
    /// At most this many deliveries (default 200).
    limit: Option<u32>,
}

/// `GET /v1/notifications`.
#[utoipa::path(
    get,
    path = "/v1/notifications",
    tag = "operator",
    params(NotifyQuery),
    responses((status = 200, description = "Notification targets and the delivery log in scope", body = patchday_types::notify::NotificationsView))
)]
pub async fn list(
    State(s): State<AppState>,
    op: Operator,
    Query(q): Query<NotifyQuery>,
) -> ApiResult<Json<NotificationsView>> {
    let scope = op.listing_scope(q.tenant.as_ref())?;
    let limit = q.limit.unwrap_or(200).clamp(1, 10_000);
    let targets = s
        .config
        .notify
        .targets
        .iter()
        .filter(|t| match &scope {
            None => true,
            Some(own) => t.tenant.as_ref() == Some(own),
        })
        .map(|t| t.info())
        .collect();
    let deliveries = s.store.notification_log(scope.as_ref(), limit).await?;
    Ok(Json(NotificationsView {
        targets,
        deliveries,
    }))
}
