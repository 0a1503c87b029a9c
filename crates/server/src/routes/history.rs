//! Issue 10, point 1: the state history, a read model. Every change of a host's state for
//! an update is appended when the server evaluates the host (check-in, state report), and
//! read here, scoped like everything else, with the time from publication to installed.

use crate::auth::Operator;
use crate::error::ApiResult;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::Json;
use patchday_types::api::HistoryAnswer;
use patchday_types::{HostId, TenantId, UpdateId};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Most entries one request returns.
const MAX_ENTRIES: u32 = 100_000;

/// Query of `GET /v1/tenants/{t}/history`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    pub(crate) host: Option<HostId>,
    pub(crate) update: Option<UpdateId>,
    pub(crate) limit: Option<u32>,
}

/// `GET /v1/tenants/{t}/history?host=H&update=U&limit=N`.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/history",
    tag = "operator",
    params(("tenant" = patchday_types::TenantId, Path, description = "Tenant id"), HistoryQuery),
    responses((status = 200, description = "State changes and time to install", body = patchday_types::api::HistoryAnswer))
)]
pub async fn list(
    State(s): State<AppState>,
    op: Operator,
    Path(t): Path<TenantId>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<HistoryAnswer>> {
    op.see(&t)?;
    let tenant = s.store.tenant(&t).await?;
    if let Some(h) = &q.host {
        tenant.host(h).await?; // 404 for a host of another tenant, as everywhere
    }
    let limit = q.limit.unwrap_or(MAX_ENTRIES).min(MAX_ENTRIES);
    let mut entries = tenant
        .history(q.host.as_ref(), q.update.as_ref(), limit)
        .await?;
    for e in &mut entries {
        e.at = e.at.round(jiff::Unit::Second).unwrap_or(e.at);
    }
    let updates: Vec<UpdateId> = entries
        .iter()
        .map(|e| e.update.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let published: BTreeMap<UpdateId, jiff::Timestamp> = s
        .store
        .published_at(&updates)
        .await?
        .into_iter()
        .map(|(u, at)| (u, at.round(jiff::Unit::Second).unwrap_or(at)))
        .collect();
    let time_to_install = patchday_core::history::time_to_install(&entries, &published);
    Ok(Json(HistoryAnswer {
        entries,
        time_to_install,
    }))
}

/// Appends the host's changed states (check-in and state report call this after they
/// evaluated the host).
pub async fn record(
    tenant: &dyn patchday_store::TenantStore,
    host: &HostId,
    statuses: &[patchday_core::applicability::UpdateStatus],
    now: jiff::Timestamp,
    verdict: Option<&patchday_store::StoredVerdict>,
) -> ApiResult<()> {
    let states: Vec<patchday_types::api::StateReport> = statuses
        .iter()
        .filter(|st| st.state != patchday_types::UpdateState::NotApplicable)
        .map(|st| patchday_types::api::StateReport {
            update: st.update.clone(),
            state: st.state,
            message: st.message.clone(),
        })
        .collect();
    tenant
        .record_host_states(host, &states, now, verdict)
        .await?;
    Ok(())
}
