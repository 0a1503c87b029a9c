//! The `/v1` routes.

// Issue 14, points 1-3: compliance access tokens and the gates' list.
mod access;
pub(crate) mod admin;
mod agent;
pub(crate) mod audit;
pub(crate) mod catalog;
mod director;
pub mod log; // finding 10 (issue 8)
             // Issue 9, point 1 (archive sync): read-only fleet views for the mirror.
pub(crate) mod baselines; // issue 13, point 1
mod fleet;
pub(crate) mod group_rules; // issue 10, point 2: groups joined by rules on host facts
pub(crate) mod history; // issue 10, point 1
mod mail; // issue 14, point 4: the mail attachment filter's verdicts
mod notify; // issue 11, point 5
mod repair; // issue 9, point 4 (closure): server-side repair assignments
pub(crate) mod report; // issue 12, point 7: the compliance report, streamed
pub(crate) mod rings; // issue 10, points 2 and 3 (rings)
mod scan; // issue 14, point 5: the agents' folder scan findings
mod tuf;
pub(crate) mod windows; // issue 10, point 5: maintenance windows, reboot policy

use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::Router;
pub(crate) use report::host_verdict; // issue 11, point 4: compliance metrics
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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

/// Builds the router and the OpenAPI document of its `/v1` routes.
///
/// Issue 11, point 3: every `/v1` route is registered with `routes!`, which takes its
/// path and method from the handler's `#[utoipa::path]`, so the document cannot drift
/// from the router. Routes outside `/v1` (the dashboard, `/metrics`) are merged into the
/// plain router after the split and stay out of the document.
pub fn router(state: AppState) -> Router {
    let (api, mut doc) = api_router().split_for_parts();
    utoipa::Modify::modify(&crate::openapi::Frame, &mut doc);
    let document = crate::openapi::Document::new(&doc);
    api
        // Issue 11, point 4: Prometheus metrics, outside `/v1` and the API document.
        .merge(crate::metrics::router())
        // Issue 11, point 1: the operator console, outside `/v1` and the API document.
        .merge(crate::console::router())
        .layer(axum::Extension(document))
        .layer(DefaultBodyLimit::max(JSON_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::storage::track,
        ))
        // Issue 11, point 4: requests by route and status, check-in latency.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// The OpenAPI document of the `/v1` API, as the router builds it.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = api_router().split_for_parts().1;
    utoipa::Modify::modify(&crate::openapi::Frame, &mut doc);
    doc
}

/// The `/v1` routes with their descriptions.
fn api_router() -> OpenApiRouter<AppState> {
    use utoipa_axum::router::UtoipaMethodRouterExt;
    let catalog_push = routes!(catalog::push).layer(DefaultBodyLimit::disable());
    OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .routes(routes!(crate::storage::health))
        .routes(routes!(crate::storage::ready)) // issue 11, point 4
        .routes(routes!(crate::openapi::openapi_json)) // issue 11, point 3
        .routes(routes!(crate::openapi::docs))
        .routes(routes!(admin::list_tenants, admin::create_tenant))
        .routes(routes!(admin::create_token, admin::list_tokens))
        .routes(routes!(
            admin::create_enroll_token,
            admin::list_enroll_tokens
        ))
        .routes(routes!(admin::set_patch_day))
        .routes(routes!(admin::list_groups, admin::create_group))
        .routes(routes!(admin::list_hosts))
        .routes(routes!(admin::set_host_groups))
        // issue 9, point 4 (closure)
        .routes(routes!(repair::request))
        .routes(routes!(mail::report, mail::list)) // issue 14, point 4
        .routes(routes!(scan::list)) // issue 14, point 5
        .routes(routes!(admin::tenant_updates))
        .routes(routes!(history::list)) // issue 10, point 1
        .routes(routes!(baselines::list)) // issue 13, point 1
        // issue 10, point 5: maintenance windows and reboot policy per group
        .routes(routes!(windows::set_policy))
        .routes(routes!(windows::list_policies))
        .routes(routes!(admin::list_approvals, admin::approve))
        .routes(routes!(report::report)) // issue 12, point 7: streamed
        .routes(routes!(audit::fleet))
        .routes(routes!(audit::host))
        // Issue 12, point 7: facts may arrive zstd-compressed; the body limit applies to
        // the decompressed bytes (the extractor reads through the decompression).
        .routes(
            routes!(audit::facts).layer(
                tower_http::decompression::RequestDecompressionLayer::new()
                    .no_gzip()
                    .no_deflate()
                    .no_br(),
            ),
        )
        .routes(routes!(catalog::status))
        .routes(catalog_push)
        .routes(routes!(catalog::missing).layer(DefaultBodyLimit::max(MISSING_LIMIT)))
        .routes(routes!(catalog::root))
        .routes(routes!(director::get))
        .routes(routes!(director::rotation))
        .routes(routes!(director::certificate))
        .routes(routes!(agent::enroll).layer(DefaultBodyLimit::max(ENROLL_LIMIT)))
        .routes(routes!(agent::checkin))
        .routes(routes!(crate::push::wait)) // issue 10, point 6 (push)
        .routes(routes!(access::token)) // issue 14, point 1
        .routes(routes!(access::keys))
        .routes(routes!(access::list))
        .routes(routes!(agent::report).layer(DefaultBodyLimit::max(REPORT_LIMIT)))
        // issue 8, finding 13: the agent's run errors.
        .routes(routes!(agent::status).layer(DefaultBodyLimit::max(REPORT_LIMIT)))
        .routes(routes!(scan::report).layer(DefaultBodyLimit::max(REPORT_LIMIT))) // issue 14, point 5
        .routes(routes!(tuf::metadata))
        .routes(routes!(tuf::target))
        // Finding 3/4/10 (issue 8): listing and revoking secrets, removals, quotas, the log.
        .routes(routes!(admin::revoke_token))
        .routes(routes!(admin::remove_tenant))
        .routes(routes!(admin::set_limits))
        .routes(routes!(admin::revoke_enroll_token))
        .routes(routes!(admin::remove_host))
        .routes(routes!(admin::remove_group))
        .routes(routes!(log::list))
        .routes(routes!(log::tenant))
        // Issue 10, points 2 and 3 (rings).
        .routes(routes!(rings::list, rings::set))
        .routes(routes!(rings::preview))
        .routes(routes!(rings::status))
        .routes(routes!(rings::halt))
        .routes(routes!(rings::resume))
        // Issue 10, point 2: groups joined by rules on host facts.
        .routes(routes!(notify::list)) // issue 11, point 5
        .routes(routes!(group_rules::list))
        .routes(routes!(group_rules::add))
        .routes(routes!(group_rules::preview))
        .routes(routes!(group_rules::remove))
        // Issue 9, point 1 (archive sync).
        .routes(routes!(fleet::source_packages))
}
