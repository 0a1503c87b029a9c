//! TUF metadata and target files for agents (and any TUF client), with HTTP Range
//! on targets so interrupted downloads resume.

use crate::auth::AnyCaller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// `GET /v1/tuf/metadata/{name}`.
pub async fn metadata(
    State(s): State<AppState>,
    _c: AnyCaller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    match s.store.catalog_metadata(&name).await? {
        Some(bytes) => Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response()),
        None => Err(ApiError::not_found(format!("metadata {name}"))),
    }
}

/// Parses `bytes=N-` or `bytes=N-M` (one range).
fn range_start(headers: &HeaderMap, len: u64) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(v) = headers.get(header::RANGE) else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .map_err(|_| ApiError::bad_request("malformed Range header"))?;
    let spec = v
        .strip_prefix("bytes=")
        .ok_or_else(|| ApiError::bad_request("only byte ranges are supported"))?;
    let (a, b) = spec
        .split_once('-')
        .ok_or_else(|| ApiError::bad_request("malformed Range header"))?;
    let start: u64 = a
        .trim()
        .parse()
        .map_err(|_| ApiError::bad_request("unsupported Range: use bytes=START-"))?;
    let end = if b.trim().is_empty() {
        len.saturating_sub(1)
    } else {
        b.trim()
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request("malformed Range end"))?
            .min(len.saturating_sub(1))
    };
    Ok(Some((start, end)))
}

/// `GET /v1/tuf/targets/{sha256}.{name}` (consistent-snapshot names).
pub async fn target(
    State(s): State<AppState>,
    _c: AnyCaller,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (sha, name) = file
        .split_once('.')
        .ok_or_else(|| ApiError::not_found(format!("target {file}")))?;
    let t = s
        .store
        .catalog_target(name)
        .await?
        .filter(|t| t.sha256 == sha)
        .ok_or_else(|| {
            ApiError::not_found(format!("target {file} is not in the current catalog"))
        })?;
    let len = t.length;
    let range = range_start(&headers, len)?;
    let (start, end) = range.unwrap_or((0, len.saturating_sub(1)));
    if range.is_some() && (start >= len || start > end) {
        return Ok((
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{len}"))],
        )
            .into_response());
    }
    let blob = s.content.open(&t.sha256, start).await?;
    let count = if len == 0 { 0 } else { end - start + 1 };
    let reader = tokio::io::AsyncReadExt::take(blob.reader, count);
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(reader));
    let mut resp = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, count);
    if range.is_some() {
        resp = resp
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}"));
    }
    resp.body(body).map_err(ApiError::internal)
}
