//! Whether the server can store anything (issue 8, finding 11). A write that could not
//! be committed is answered 507 (the store reports a full disk as its own error), the
//! server remembers it, and `/v1/health` answers 503 "storage: cannot write: …" until
//! a write commits again (its own probe write, or any request's) and the data
//! directory has [`MIN_FREE`] bytes free; below that it says so before writes fail.

use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Mutex;

/// Free space below which the data directory counts as full.
pub const MIN_FREE: u64 = 1 << 20;

fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    rustix::fs::statvfs(dir)
        .ok()
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
}

/// The last known write health.
#[derive(Default)]
pub struct StorageHealth {
    failing: Mutex<Option<String>>,
    /// Issue 11, point 4: the database file the server opened (device, inode).
    database: Option<(u64, u64)>,
}

impl StorageHealth {
    /// Remembers which file `database` is, for `/v1/ready`.
    pub fn opened(database: &std::path::Path) -> Self {
        Self {
            failing: Mutex::default(),
            database: file_identity(database),
        }
    }
    fn set(&self, v: Option<String>) {
        *self.failing.lock().unwrap_or_else(|e| e.into_inner()) = v;
    }
    fn get(&self) -> Option<String> {
        self.failing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Middleware: a 507 marks storage as failing; a committed change marks it healthy.
pub async fn track(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let resp = next.run(req).await;
    if resp.status() == StatusCode::INSUFFICIENT_STORAGE {
        s.storage.set(Some("disk full".into()));
    } else if writes && resp.status().is_success() {
        s.storage.set(None);
    }
    resp
}

/// `GET /v1/health`: "ok", or 503 with what is wrong.
#[utoipa::path(
    get,
    path = "/v1/health",
    tag = "public",
    responses(
        (status = 200, description = "Alive: `ok`, then a `warning:` line per catalog role close to expiry and the scheduled mirror's last run", body = String, content_type = "text/plain"),
        (status = 503, description = "Alive but unhealthy: the disk is full, storage cannot write, or a catalog role expired", body = String, content_type = "text/plain")
    )
)]
pub async fn health(State(s): State<AppState>) -> Response {
    let free = free_bytes(&s.config.data_dir);
    if free.is_some_and(|f| f < MIN_FREE) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "storage: cannot write: disk full ({} KiB free in the data directory)",
                free.unwrap_or(0) >> 10
            ),
        )
            .into_response();
    }
    if s.storage.get().is_some() {
        // Find out whether space came back, without waiting for someone's write.
        match s.store.probe_write(s.clock.now()).await {
            Ok(()) => {
                tracing::info!("storage can write again");
                s.storage.set(None);
            }
            Err(e) => {
                tracing::warn!(error = %e, "storage still cannot write");
            }
        }
    }
    // Issue 9, point 5: an expired catalog is unhealthy (agents install nothing); a role
    // close to expiry is a warning line under "ok".
    let warnings = match crate::catalog_expiry::roles(&s).await {
        Ok((roles, warnings)) => {
            if let Some(w) = roles
                .iter()
                .filter(|r| r.state == patchday_types::api::ExpiryState::Expired)
                .find_map(|r| patchday_core::catalog_expiry::warning(r, s.clock.now()))
            {
                return (StatusCode::SERVICE_UNAVAILABLE, w).into_response();
            }
            warnings
        }
        Err(_) => Vec::new(),
    };
    match s.storage.get() {
        None => std::iter::once("ok".to_string())
            .chain(warnings.iter().map(|w| format!("warning: {w}")))
            // Issue 9, point 1: the scheduled mirror's last run.
            .chain(crate::mirror_schedule::health_lines(&s))
            .collect::<Vec<_>>()
            .join("\n")
            .into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("storage: cannot write: {why}"),
        )
            .into_response(),
    }
}

// Issue 11, point 4: readiness.

/// How long the database may take to answer the readiness query.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

fn file_identity(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// `GET /v1/ready`: whether this server can serve now: the database answers a query
/// (and is still the file it opened), the content store answers (and, at most every
/// `WRITE_PROBE_EVERY` on an object store, can be listed, written and read), and the
/// server holds the director key the stored certificate certifies. 503 names each part
/// that failed, one line each.
#[utoipa::path(
    get,
    path = "/v1/ready",
    tag = "public",
    responses(
        (status = 200, description = "Ready: `ready`", body = String, content_type = "text/plain"),
        (status = 503, description = "Not ready: one line per failed part, `database: …`, `content store: …` or `director: …`", body = String, content_type = "text/plain")
    )
)]
pub async fn ready(State(s): State<AppState>) -> Response {
    let mut failed = Vec::new();
    if let Err(why) = database_ready(&s).await {
        failed.push(format!("database: {why}"));
    }
    if let Err(why) = s.content.ready().await {
        failed.push(format!("content store: cannot be used: {why}"));
    }
    // Issue 12, point 1: a replica that lacks the key the stored certificate certifies
    // signs nothing; the load balancer should send agents elsewhere.
    if let Ok(cur) = s.director.current(s.store.as_ref()).await {
        if let Some(why) = cur.refusal() {
            failed.push(format!("director: {why}"));
        }
    }
    if failed.is_empty() {
        "ready".into_response()
    } else {
        tracing::warn!(failed = %failed.join("; "), "not ready");
        (StatusCode::SERVICE_UNAVAILABLE, failed.join("\n")).into_response()
    }
}

async fn database_ready(s: &AppState) -> Result<(), String> {
    let file = s.config.data_dir.join("patchday.db");
    if s.storage.database.is_some() && file_identity(&file) != s.storage.database {
        return Err(format!(
            "{} is gone or was replaced while the server runs (what it writes now would be lost): put the file back, or restart the server on the new one",
            file.display()
        ));
    }
    match tokio::time::timeout(READY_TIMEOUT, s.store.has_provider_admin()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("a query failed: {e}")),
        Err(_) => Err(format!(
            "no answer to a query within {} s (locked or stuck?)",
            READY_TIMEOUT.as_secs()
        )),
    }
}
