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
#[utoipa::path(
    get,
    path = "/v1/tuf/metadata/{name}",
    tag = "tuf",
    params(("name" = String, Path, description = "TUF metadata file name, e.g. `2.root.json`, `timestamp.json`")),
    responses((status = 200, description = "TUF metadata as signed by the catalog's keys", body = Object, content_type = "application/json"))
)]
pub async fn metadata(
    State(s): State<AppState>,
    c: AnyCaller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    if private_tenant_of_metadata(&name).is_some_and(|t| !c.reads_for(t)) {
        return Err(ApiError::not_found(format!("metadata {name}")));
    }
    match s.store.catalog_metadata(&name).await? {
        Some(bytes) => Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response()),
        None => Err(ApiError::not_found(format!("metadata {name}"))),
    }
}

/// What a `Range` header asks of a `len`-byte target.
#[derive(Debug, PartialEq, Eq)]
enum RangeAsk {
    /// The whole target (no header, or one this server may ignore: several ranges,
    /// another unit, or a malformed value — RFC 9110 §14.2 lets it answer 200).
    Whole,
    /// Bytes `start..=end`.
    Part(u64, u64),
    /// Nothing of the target is in the range (416).
    Unsatisfiable,
}

/// Parses `bytes=N-`, `bytes=N-M` and the suffix form `bytes=-N` (issue 8, finding 9).
fn range_ask(headers: &HeaderMap, len: u64) -> RangeAsk {
    let Some(spec) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeAsk::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix: the last N bytes.
        return match b.parse::<u64>() {
            Ok(0) => RangeAsk::Unsatisfiable,
            Ok(_) if len == 0 => RangeAsk::Unsatisfiable,
            Ok(n) => RangeAsk::Part(len.saturating_sub(n), len - 1),
            Err(_) => RangeAsk::Whole,
        };
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeAsk::Whole;
    };
    let end = if b.is_empty() {
        len.saturating_sub(1)
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e.min(len.saturating_sub(1)),
            _ => return RangeAsk::Whole,
        }
    };
    if start >= len {
        RangeAsk::Unsatisfiable
    } else {
        RangeAsk::Part(start, end)
    }
}

// ---- Issue 9, point 3: private updates are served to their tenant only ----

/// The tenant whose private role the metadata file `name` (`N.tenant-<t>.json` or
/// `tenant-<t>.json`, or one of that role's hash bins, `N.tenant-<t>.bin-<xx>.json`)
/// belongs to, if it is one. Tenant ids that end like a bin are refused at creation
/// ([`crate::limits::tenant_id`]), so the name is never ambiguous.
fn private_tenant_of_metadata(name: &str) -> Option<&str> {
    let stem = name.strip_suffix(".json")?;
    let role = match stem.split_once('.') {
        Some((v, role)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => role,
        _ => stem,
    };
    let role = crate::limits::strip_bin_suffix(role);
    role.strip_prefix("tenant-")
}

/// The tenant a target of a tenant role (`tenant-<t>~<name>`) is private to, if it is one.
/// `~` is in no tenant id, so `tenant-a~` never matches a target of tenant `a-b`.
fn private_tenant_of_target(name: &str) -> Option<&str> {
    name.split_once('~')?.0.strip_prefix("tenant-")
}

/// 404 (as for any object of another tenant) unless `c` may read target `name`: a tenant
/// role's payload is its tenant's; an update document whose signed tenant list leaves the
/// caller's tenant out is theirs.
async fn check_target_visible(s: &AppState, c: &AnyCaller, name: &str) -> ApiResult<()> {
    let hidden = || ApiError::not_found(format!("target {name} is not in the current catalog"));
    if let Some(t) = private_tenant_of_target(name) {
        return if c.reads_for(t) {
            Ok(())
        } else {
            Err(hidden())
        };
    }
    if c.scope == crate::auth::ReadScope::All
        || !(name.starts_with("update-") && name.ends_with(".json"))
    {
        return Ok(());
    }
    let catalog = s.catalog_index.index(s.store.as_ref()).await?;
    let private = catalog
        .by_target_name(name)
        .is_some_and(|d| !d.tenants.is_empty() && !d.tenants.iter().any(|t| c.reads_for(t)));
    if private {
        return Err(hidden());
    }
    Ok(())
}

/// `GET /v1/tuf/targets/{sha256}.{name}` (consistent-snapshot names).
#[utoipa::path(
    get,
    path = "/v1/tuf/targets/{name}",
    tag = "tuf",
    params(("name" = String, Path, description = "Consistent-snapshot target name: `SHA256.NAME`"), ("Range" = Option<String>, Header, description = "`bytes=N-`, `bytes=N-M` or `bytes=-N`")),
    responses((status = 200, description = "The whole payload", body = crate::openapi::Binary, content_type = "application/octet-stream"), (status = 206, description = "The requested range", body = crate::openapi::Binary, content_type = "application/octet-stream"), (status = 307, description = "Issue 12, point 3 (`--content-redirect`): fetch the payload from the presigned object-store URL in `Location`, without credentials"))
)]
pub async fn target(
    State(s): State<AppState>,
    c: AnyCaller,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (sha, name) = file
        .split_once('.')
        .ok_or_else(|| ApiError::not_found(format!("target {file}")))?;
    check_target_visible(&s, &c, name).await?;
    let t = s
        .store
        .catalog_target(name)
        .await?
        .filter(|t| t.sha256 == sha)
        .ok_or_else(|| {
            ApiError::not_found(format!("target {file} is not in the current catalog"))
        })?;
    let len = t.length;
    // Issue 12, point 3: with --content-redirect, the download goes to the object store
    // by a short-lived presigned URL (the agent checks the bytes against the signed
    // length and sha256 as it does the server's, and sends no credential there).
    if let Some(lifetime) = s.config.content_redirect {
        if let Some(e) = s.store.eviction(&t.sha256).await? {
            return Err(gone(&file, &e));
        }
        if let Some(url) = s.content.presigned_url(&t.sha256, lifetime).await? {
            return Response::builder()
                .status(StatusCode::TEMPORARY_REDIRECT)
                .header(header::LOCATION, url.as_str())
                .header(header::CACHE_CONTROL, "no-store")
                .body(Body::empty())
                .map_err(ApiError::internal);
        }
    }
    let (range, start, end) = match range_ask(&headers, len) {
        RangeAsk::Whole => (false, 0, len.saturating_sub(1)),
        RangeAsk::Part(a, b) => (true, a, b),
        RangeAsk::Unsatisfiable => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{len}"))],
            )
                .into_response())
        }
    };
    // Checked against its sha256 before any byte is sent (issue 8, finding 14).
    let blob = match s.content.open_verified(&t.sha256, start).await {
        Ok(b) => b,
        // Issue 10, point 7: evicted on purpose, said so.
        Err(patchday_content::ContentError::NotFound(_)) => {
            return Err(match s.store.eviction(&t.sha256).await? {
                Some(e) => gone(&file, &e),
                None => patchday_content::ContentError::NotFound(t.sha256.clone()).into(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    if blob.len != len {
        // Cannot happen for a blob whose hash matched; kept as a guard.
        return Err(ApiError::internal(format!(
            "payload {} is {} bytes on disk, the catalog says {len}",
            t.sha256, blob.len
        )));
    }
    let count = if len == 0 { 0 } else { end - start + 1 };
    // Issue 10, point 8: a blob held in memory goes out as a slice of it, without a copy;
    // one read from disk goes in 64 KiB chunks (one blocking read each, not one per 4 KiB).
    let body = match (&blob.whole, usize::try_from(start), usize::try_from(count)) {
        (Some(whole), Ok(from), Ok(n)) if from.saturating_add(n) <= whole.len() => {
            Body::from(whole.slice(from..from + n))
        }
        _ => {
            let reader = tokio::io::AsyncReadExt::take(blob.reader, count);
            Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
                reader,
                64 << 10,
            ))
        }
    };
    let mut resp = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, count);
    if range {
        resp = resp
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}"));
    }
    resp.body(body).map_err(ApiError::internal)
}

/// 410 for a payload the cleanup evicted (issue 10, point 7).
fn gone(file: &str, e: &patchday_store::PayloadEviction) -> ApiError {
    ApiError::new(
        patchday_types::api::ErrorCode::Gone,
        format!(
            "target {file} was removed from this server at {} because no host can need it any more ({}); install its successor instead",
            e.evicted_at, e.reason
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(v: &str, len: u64) -> RangeAsk {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, v.parse().unwrap());
        range_ask(&h, len)
    }

    #[test]
    fn private_names_belong_to_exactly_their_tenant() {
        assert_eq!(
            private_tenant_of_metadata("3.tenant-acme.json"),
            Some("acme")
        );
        assert_eq!(
            private_tenant_of_metadata("tenant-acme.x.json"),
            Some("acme.x")
        );
        assert_eq!(
            private_tenant_of_metadata("3.tenant-acme.x.json"),
            Some("acme.x")
        );
        assert_eq!(
            private_tenant_of_metadata("3.tenant-acme.bin-3f.json"),
            Some("acme")
        );
        assert_eq!(private_tenant_of_metadata("3.targets.bin-3f.json"), None);
        assert_eq!(private_tenant_of_metadata("3.targets.json"), None);
        assert_eq!(private_tenant_of_metadata("3.mirror.json"), None);
        assert_eq!(private_tenant_of_metadata("timestamp.json"), None);
        assert_eq!(
            private_tenant_of_target("tenant-acme-corp~tool_1.0_amd64.deb"),
            Some("acme-corp")
        );
        assert_eq!(
            private_tenant_of_target("mirror~libc6_2.36_amd64.deb"),
            None
        );
        assert_eq!(private_tenant_of_target("libc6_2.36_amd64.deb"), None);
    }

    #[test]
    fn suffix_ranges_are_served_and_multiple_or_odd_ranges_get_the_whole_target() {
        assert_eq!(ask("bytes=-4", 10), RangeAsk::Part(6, 9));
        assert_eq!(ask("bytes=-40", 10), RangeAsk::Part(0, 9));
        assert_eq!(ask("bytes=-0", 10), RangeAsk::Unsatisfiable);
        assert_eq!(ask("bytes=3-", 10), RangeAsk::Part(3, 9));
        assert_eq!(ask("bytes=3-5", 10), RangeAsk::Part(3, 5));
        assert_eq!(ask("bytes=3-50", 10), RangeAsk::Part(3, 9));
        assert_eq!(ask("bytes=10-", 10), RangeAsk::Unsatisfiable);
        assert_eq!(ask("bytes=0-1,4-5", 10), RangeAsk::Whole);
        assert_eq!(ask("items=0-1", 10), RangeAsk::Whole);
        assert_eq!(ask("bytes=5-3", 10), RangeAsk::Whole);
        assert_eq!(ask("bytes=x-", 10), RangeAsk::Whole);
    }
}
