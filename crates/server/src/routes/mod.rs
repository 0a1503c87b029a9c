//! The `/v1` routes.

pub(crate) mod admin;
mod agent;
pub(crate) mod audit;
pub(crate) mod catalog;
mod director;
pub mod log; // finding 10 (issue 8)
             // Issue 9, point 1 (archive sync): read-only fleet views for the mirror.
mod fleet;
pub(crate) mod group_rules; // issue 10, point 2: groups joined by rules on host facts
pub(crate) mod history; // issue 10, point 1
mod repair; // issue 9, point 4 (closure): server-side repair assignments
pub(crate) mod rings; // issue 10, points 2 and 3 (rings)
mod tuf;
pub(crate) mod windows; // issue 10, point 5: maintenance windows, reboot policy

use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::Router;

/// Largest JSON body (inventories of big hosts included).
const JSON_LIMIT: usize = 32 << 20;

// Issue 8, finding 2: per-route body caps. Enrolment is unauthenticated, so its body
// (a token and a hostname) is held to a few KiB; state reports to what 10,000 states
// need. Catalog pushes stream to disk up to --max-catalog-bytes, provider admins only.
/// Largest enrolment request.
const ENROLL_LIMIT: usize = 4 << 10;
/// Largest state report.
const REPORT_LIMIT: usize = 4 << 20;

/// Largest list of target hashes a publisher asks about before a push (a million targets).
const MISSING_LIMIT: usize = 80 << 20;

/// Builds the router.
pub fn router(state: AppState) -> Router {
    let catalog_push = post(catalog::push).layer(DefaultBodyLimit::disable());
    Router::new()
        .route("/v1/health", get(crate::storage::health))
        .route(
            "/v1/tenants",
            get(admin::list_tenants).post(admin::create_tenant),
        )
        .route(
            "/v1/tokens",
            post(admin::create_token).get(admin::list_tokens),
        )
        .route(
            "/v1/tenants/{tenant}/enroll-tokens",
            post(admin::create_enroll_token).get(admin::list_enroll_tokens),
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
        // issue 9, point 4 (closure)
        .route(
            "/v1/tenants/{tenant}/hosts/{host}/repair",
            post(repair::request),
        )
        .route("/v1/tenants/{tenant}/updates", get(admin::tenant_updates))
        .route("/v1/tenants/{tenant}/history", get(history::list)) // issue 10, point 1
        // issue 10, point 5: maintenance windows and reboot policy per group
        .route(
            "/v1/tenants/{tenant}/groups/{group}/policy",
            put(windows::set_policy),
        )
        .route(
            "/v1/tenants/{tenant}/groups/policies",
            get(windows::list_policies),
        )
        .route(
            "/v1/tenants/{tenant}/approvals",
            get(admin::list_approvals).post(admin::approve),
        )
        .route("/v1/report", get(admin::report))
        .route("/v1/tenants/{tenant}/audit", get(audit::fleet))
        .route("/v1/tenants/{tenant}/hosts/{host}/audit", get(audit::host))
        .route("/v1/agent/facts", post(audit::facts))
        .route("/v1/catalog", get(catalog::status).post(catalog_push))
        .route(
            "/v1/catalog/missing",
            post(catalog::missing).layer(DefaultBodyLimit::max(MISSING_LIMIT)),
        )
        .route("/v1/catalog/root.json", get(catalog::root))
        .route("/v1/director", get(director::get))
        .route("/v1/director/rotation", post(director::rotation))
        .route("/v1/director/certificate", put(director::certificate))
        .route(
            "/v1/agent/enroll",
            post(agent::enroll).layer(DefaultBodyLimit::max(ENROLL_LIMIT)),
        )
        .route("/v1/agent/checkin", post(agent::checkin))
        .route("/v1/agent/wait", post(crate::push::wait)) // issue 10, point 6 (push)
        .route(
            "/v1/agent/report",
            post(agent::report).layer(DefaultBodyLimit::max(REPORT_LIMIT)),
        )
        // issue 8, finding 13: the agent's run errors.
        .route(
            "/v1/agent/status",
            post(agent::status).layer(DefaultBodyLimit::max(REPORT_LIMIT)),
        )
        .route("/v1/tuf/metadata/{name}", get(tuf::metadata))
        .route("/v1/tuf/targets/{name}", get(tuf::target))
        // Finding 3/4/10 (issue 8): listing and revoking secrets, removals, quotas, the log.
        .route("/v1/tokens/{id}", delete(admin::revoke_token))
        .route("/v1/tenants/{tenant}", delete(admin::remove_tenant))
        .route("/v1/tenants/{tenant}/limits", put(admin::set_limits))
        .route(
            "/v1/tenants/{tenant}/enroll-tokens/{id}",
            delete(admin::revoke_enroll_token),
        )
        .route(
            "/v1/tenants/{tenant}/hosts/{host}",
            delete(admin::remove_host),
        )
        .route(
            "/v1/tenants/{tenant}/groups/{group}",
            delete(admin::remove_group),
        )
        .route("/v1/log", get(log::list))
        .route("/v1/tenants/{tenant}/log", get(log::tenant))
        // Issue 10, points 2 and 3 (rings).
        .route(
            "/v1/tenants/{tenant}/rings",
            get(rings::list).put(rings::set),
        )
        .route("/v1/tenants/{tenant}/rings/preview", get(rings::preview))
        .route("/v1/rollouts/{update}", get(rings::status))
        .route("/v1/rollouts/{update}/halt", post(rings::halt))
        .route("/v1/rollouts/{update}/resume", post(rings::resume))
        // Issue 10, point 2: groups joined by rules on host facts.
        .route("/v1/tenants/{tenant}/groups/rules", get(group_rules::list))
        .route(
            "/v1/tenants/{tenant}/groups/{group}/rules",
            post(group_rules::add),
        )
        .route(
            "/v1/tenants/{tenant}/groups/{group}/rules/preview",
            post(group_rules::preview),
        )
        .route(
            "/v1/tenants/{tenant}/groups/{group}/rules/{id}",
            delete(group_rules::remove),
        )
        // Issue 9, point 1 (archive sync).
        .route("/v1/fleet/source-packages", get(fleet::source_packages))
        .merge(crate::console::router()) // issue 11, point 1: the operator console
        .layer(DefaultBodyLimit::max(JSON_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::storage::track,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
