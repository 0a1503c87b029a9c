//! API errors: a status, a machine-readable code and a message that says what to do.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use patchday_store::StoreError;
use patchday_types::api::{ErrorBody, ErrorCode};

/// An error a handler returns.
#[derive(Debug)]
pub struct ApiError {
    /// Class.
    pub code: ErrorCode,
    /// Message for people.
    pub message: String,
    /// Seconds for a `Retry-After` header (429, 503, 507).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// Builds an error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    /// Takes the server's own paths out of the message (issue 8, finding 9): paths
    /// under `data` lose that prefix, and a push's staging directory disappears, so
    /// `/srv/pd/catalog/staging-1a2b/metadata/2.root.json` reads `metadata/2.root.json`.
    pub fn hide_paths(mut self, data: &std::path::Path) -> Self {
        let mut prefixes = vec![data.to_string_lossy().into_owned()];
        if let Ok(c) = std::fs::canonicalize(data) {
            prefixes.push(c.to_string_lossy().into_owned());
        }
        for prefix in prefixes.iter().filter(|p| !p.is_empty()) {
            let mut out = String::with_capacity(self.message.len());
            let mut rest = self.message.as_str();
            while let Some(i) = rest.find(prefix.as_str()) {
                out.push_str(&rest[..i]);
                let mut after = rest[i + prefix.len()..].trim_start_matches('/');
                for area in ["catalog/incoming/staging-", "catalog/staging-"] {
                    if let Some(tail) = after.strip_prefix(area) {
                        after = tail.split_once('/').map_or("", |(_, t)| t);
                    }
                }
                rest = after;
            }
            out.push_str(rest);
            self.message = out;
        }
        self
    }
    /// Adds a `Retry-After` header.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
    /// 400.
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, m)
    }
    /// 403.
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, m)
    }
    /// 404.
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, m)
    }
    /// 409.
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, m)
    }
    /// 500; the detail goes to the log, not to the client.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(
            ErrorCode::Internal,
            "internal server error; the server log has the details",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            StoreError::Conflict(what) => ApiError::conflict(format!("{what} already exists")),
            // Finding 3/4 (issue 8): the store's message says which rule and what to do.
            StoreError::Refused(why) => ApiError::conflict(why),
            // Issue 8, finding 11: nothing was stored, and the client is told so.
            StoreError::StorageFull(why) => {
                tracing::error!(error = %why, "a write could not be committed");
                ApiError::new(
                    ErrorCode::InsufficientStorage,
                    "the server cannot store anything now (its disk is full); nothing was changed: retry later",
                )
                .retry_after(60)
            }
            // Issue 12, point 2: a conflict between replicas or a lost connection; the
            // same request may pass in a moment.
            StoreError::Unavailable(why) => {
                tracing::warn!(error = %why, "a storage call failed and may pass when retried");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "the database is busy or was briefly unreachable; nothing needs fixing: retry in a moment",
                )
                .retry_after(1)
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<patchday_content::ContentError> for ApiError {
    fn from(e: patchday_content::ContentError) -> Self {
        use patchday_content::ContentError as C;
        match e {
            // Issue 8, finding 14: a damaged blob is never served; the operator repairs it.
            C::Damaged { expected, actual } => {
                tracing::error!(
                    sha256 = %expected,
                    actual = %actual,
                    "stored payload is damaged (sha256 mismatch): quarantined; push the catalog again to repair it"
                );
                ApiError::new(
                    ErrorCode::Unavailable,
                    format!("payload {expected} failed its sha256 check on the server and was set aside; the operator must push the catalog again"),
                )
            }
            C::NotFound(key) => {
                tracing::error!(sha256 = %key, "payload in the catalog is missing from the content store (quarantined?): push the catalog again");
                ApiError::new(
                    ErrorCode::Unavailable,
                    format!("payload {key} is not available on the server now (damaged and set aside?); the operator must push the catalog again"),
                )
            }
            // Issue 12, point 3: an object store that does not answer now is a wait, not
            // a server fault; a fatal one (credentials, bucket) stays a 500 with its log.
            e @ C::S3 { .. } if e.is_retryable() => {
                tracing::warn!(error = %e, "the content store failed a request that may succeed later");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "the payload store does not answer now; try again later".to_string(),
                )
                .retry_after(30)
            }
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.code {
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::CatalogRejected => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            // issue 8, finding 8: host-signed requests.
            ErrorCode::SignatureRejected => StatusCode::UNAUTHORIZED,
            ErrorCode::SequenceReplayed => StatusCode::CONFLICT,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Gone => StatusCode::GONE,
            ErrorCode::NotCompliant => StatusCode::FORBIDDEN,
        };
        let mut resp = (
            status,
            Json(ErrorBody {
                error: self.code,
                message: self.message,
            }),
        )
            .into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, s.into());
        }
        resp
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_do_not_carry_the_servers_paths() {
        let e = ApiError::new(
            ErrorCode::CatalogRejected,
            "payload x: /srv/pd/catalog/staging-1a2b/targets/abc.x is missing; see /srv/pd/catalog/datastore",
        )
        .hide_paths(std::path::Path::new("/srv/pd"));
        assert_eq!(
            e.message,
            "payload x: targets/abc.x is missing; see catalog/datastore"
        );
    }

    // Issue 12, point 2: a retryable storage failure is a 503 with Retry-After, a fatal
    // one stays a 500 without it.
    #[test]
    fn retryable_storage_failures_answer_503_with_retry_after() {
        let busy =
            ApiError::from(StoreError::Unavailable("deadlock detected".into())).into_response();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            busy.headers().get(axum::http::header::RETRY_AFTER).unwrap(),
            "1"
        );
        let fatal = ApiError::from(StoreError::Backend("syntax error".into())).into_response();
        assert_eq!(fatal.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(fatal
            .headers()
            .get(axum::http::header::RETRY_AFTER)
            .is_none());
    }
}
