//! The `/v1` routes.

mod admin;
mod agent;
mod audit;
mod catalog;
mod director;
// Issue 9, point 1 (archive sync): read-only fleet views for the mirror.
mod fleet;
mod tuf;

use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;

/// Largest JSON body (inventories of big hosts included).
const JSON_LIMIT: usize = 32 << 20;

/// Builds the router.
pub fn router(state: AppState) -> Router {
    let catalog_push = post(catalog::push).layer(DefaultBodyLimit::disable());
    Router::new()
        .route("/v1/health", get(|| async { "ok" }))
        .route(
            "/v1/tenants",
            get(admin::list_tenants).post(admin::create_tenant),
        )
        .route("/v1/tokens", post(admin::create_token))
        .route(
            "/v1/tenants/{tenant}/enroll-tokens",
            post(admin::create_enroll_token),
        )
        .route("/v1/tenants/{tenant}/patch-day", put(admin::set_patch_day))
        .route(
            "/v1/tenants/{tenant}/groups",
            get(admin::list_groups).post(admin::create_group),
        )
        .route("/v1/tenants/{tenant}/hosts", get(admin::list_hosts))
        .route(
            "/v1/tenants/{tenant}/hosts/{host}/groups",
            put(admin::set_host_groups),
        )
        .route("/v1/tenants/{tenant}/updates", get(admin::tenant_updates))
        .route(
            "/v1/tenants/{tenant}/approvals",
            get(admin::list_approvals).post(admin::approve),
        )
        .route("/v1/report", get(admin::report))
        .route("/v1/tenants/{tenant}/audit", get(audit::fleet))
        .route("/v1/tenants/{tenant}/hosts/{host}/audit", get(audit::host))
        .route("/v1/agent/facts", post(audit::facts))
        .route("/v1/catalog", get(catalog::status).post(catalog_push))
        .route("/v1/catalog/root.json", get(catalog::root))
        .route("/v1/director", get(director::get))
        .route("/v1/director/rotation", post(director::rotation))
        .route("/v1/director/certificate", put(director::certificate))
        .route("/v1/agent/enroll", post(agent::enroll))
        .route("/v1/agent/checkin", post(agent::checkin))
        .route("/v1/agent/report", post(agent::report))
        .route("/v1/tuf/metadata/{name}", get(tuf::metadata))
        .route("/v1/tuf/targets/{name}", get(tuf::target))
        // Issue 9, point 1 (archive sync).
        .route("/v1/fleet/source-packages", get(fleet::source_packages))
        .layer(DefaultBodyLimit::max(JSON_LIMIT))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
