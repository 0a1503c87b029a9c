//! Issue 11, point 1: the operator console, served by the server itself.
//!
//! Server-rendered pages (askama templates under `crates/server/templates/`, escaped
//! by default and checked at compile time), one CSS file and one small script served
//! from here (no CDN, no Node build). Every page reads through the same functions the
//! `/v1` API answers with, called with the signed-in operator, so a tenant token sees
//! in the console exactly what it sees in the API. Pages work without JavaScript; the
//! script only refreshes the rollout page from its JSON fragment.

pub(crate) mod cache;
mod pages;
pub(crate) mod session;
pub(crate) mod views;

use crate::error::ApiError;
use crate::state::AppState;
use askama::Template;
use axum::extract::Request;
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

/// The console's routes (merged into the server's router).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::overview))
        .route("/console/login", get(pages::login_form).post(pages::login))
        .route("/console/logout", post(pages::logout))
        .route("/console/static/console.css", get(css))
        .route("/console/static/console.js", get(js))
        .route("/console/catalog", get(pages::catalog))
        .route("/console/log", get(pages::log))
        .route("/console/tenants/{tenant}", get(pages::tenant))
        .route("/console/tenants/{tenant}/hosts/{host}", get(pages::host))
        .route("/console/tenants/{tenant}/updates", get(pages::updates))
        .route("/console/tenants/{tenant}/approvals", post(pages::decide))
        .route(
            "/console/tenants/{tenant}/rollouts/{update}",
            get(pages::rollout),
        )
        .route(
            "/console/tenants/{tenant}/rollouts/{update}/progress.json",
            get(pages::progress),
        )
        .route("/console/tenants/{tenant}/audit", get(pages::audit))
        .route("/console/rollouts/{update}/halt", post(pages::halt))
        .route("/console/rollouts/{update}/resume", post(pages::resume))
        .route(
            "/console/tenants/{tenant}/rings",
            get(pages::rings_page).post(pages::set_rings),
        )
        .layer(axum::middleware::from_fn(security_headers))
}

/// The content security policy: nothing inline, nothing from elsewhere, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to every console answer.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: HeaderName, v: &'static str| {
        h.insert(name, HeaderValue::from_static(v));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    resp
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("../../templates/static/console.css"),
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("../../templates/static/console.js"),
    )
        .into_response()
}

/// An error shown as a page (with the API's status and message).
pub struct PageError(pub ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e)
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    status: u16,
    message: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let message = self.0.message.clone();
        let status = self.0.into_response().status();
        let status = if status.is_success() {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            status
        };
        let page = ErrorPage {
            status: status.as_u16(),
            message: &message,
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => ApiError::internal(e).into_response(),
        }
    }
}

/// Renders a template, or the error page when rendering fails.
pub fn render(t: &impl Template) -> Result<Html<String>, PageError> {
    t.render()
        .map(Html)
        .map_err(|e| PageError(ApiError::internal(e)))
}
