//! Catalog push and status.

use crate::auth::Operator;
use crate::catalog::{intake, tempdir_in};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::Json;
use futures::StreamExt;
use patchday_types::api::{CatalogStatus, ErrorCode};
use tokio::io::AsyncWriteExt;

/// `GET /v1/catalog`.
#[utoipa::path(
    get,
    path = "/v1/catalog",
    tag = "operator",
    responses((status = 200, description = "Catalog versions, role expiry and content store", body = patchday_types::api::CatalogStatus))
)]
pub async fn status(State(s): State<AppState>, _op: Operator) -> ApiResult<Json<CatalogStatus>> {
    let mut status = s.store.catalog_status().await?;
    // Issue 9, point 5: every role's expiry, and what to do before one expires.
    (status.roles, status.warnings) = crate::catalog_expiry::roles(&s).await?;
    // Issue 10, point 7: the content store's size and what the cleanup freed.
    status.content = Some(crate::cleanup::content_status(&s).await?);
    Ok(Json(status))
}

/// `GET /v1/catalog/root.json`: the pinned root (public: it holds public keys only).
#[utoipa::path(
    get,
    path = "/v1/catalog/root.json",
    tag = "public",
    responses((status = 200, description = "The pinned TUF root (public keys only)", body = Object, content_type = "application/json"))
)]
pub async fn root(State(s): State<AppState>) -> ApiResult<Vec<u8>> {
    s.store
        .pinned_root()
        .await?
        .ok_or_else(|| ApiError::not_found("this server has no pinned catalog root yet"))
}

/// `POST /v1/catalog`: a tar of the catalog's `metadata/` and `targets/`.
#[utoipa::path(
    post,
    path = "/v1/catalog",
    tag = "operator",
    request_body(content = crate::openapi::Binary, content_type = "application/x-tar", description = "A tar of the catalog's `metadata/` and `targets/` (`patchday catalog push`)"),
    responses((status = 200, description = "The catalog now trusted", body = patchday_types::api::CatalogStatus))
)]
pub async fn push(
    State(s): State<AppState>,
    op: Operator,
    body: Body,
) -> ApiResult<Json<CatalogStatus>> {
    op.provider()?;
    let dir = tempdir_in(&s.config.data_dir.join("catalog").join("incoming"))?;
    let path = dir.path().join("upload.tar");
    let mut f = tokio::fs::File::create(&path)
        .await
        .map_err(ApiError::internal)?;
    // Issue 12, point 4: an upload cut off before its end keeps its complete files.
    let guard = crate::resume::Guard::new(&s, dir, path.clone());
    let mut stream = body.into_data_stream();
    let mut total: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request(format!("upload interrupted: {e}; push again")))?;
        total += chunk.len() as u64;
        if total > s.config.max_catalog_bytes {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "catalog upload exceeds {} bytes; raise --max-catalog-bytes on the server",
                    s.config.max_catalog_bytes
                ),
            ));
        }
        f.write_all(&chunk)
            .await
            .map_err(|e| {
                if e.raw_os_error() == Some(28) {
                    // Issue 8, finding 11: said plainly, and health reports it.
                    ApiError::new(
                        ErrorCode::InsufficientStorage,
                        "the server's disk is full: the upload was not stored; free space and push again",
                    )
                } else {
                    ApiError::internal(format!("writing upload: {e} (disk full?)"))
                }
            })?;
    }
    f.flush().await.map_err(ApiError::internal)?;
    drop(f);
    let _dir = guard.done();
    let status = intake(&s, &path)
        .await
        .map_err(|e| e.hide_paths(&s.config.data_dir))?;
    // Finding 10 (issue 8): a provider-wide entry in the operator log.
    crate::routes::log::record_provider(
        &s,
        &op,
        "catalog.push",
        "catalog",
        serde_json::json!(status),
    )
    .await?;
    Ok(Json(status))
}

/// `POST /v1/catalog/missing` (issue 9, point 6): the sha256 digests among the given ones
/// whose bytes the server does not hold, so that a push uploads only new payloads, not the
/// catalog's whole history.
#[utoipa::path(
    post,
    path = "/v1/catalog/missing",
    tag = "operator",
    request_body = patchday_types::api::TargetHashes,
    responses((status = 200, description = "The hashes this server lacks", body = patchday_types::api::TargetHashes))
)]
pub async fn missing(
    State(s): State<AppState>,
    op: Operator,
    Json(req): Json<patchday_types::api::TargetHashes>,
) -> ApiResult<Json<patchday_types::api::TargetHashes>> {
    op.provider()?;
    // Issue 10, point 7: evicted payloads are not asked for again.
    let evicted = crate::cleanup::evicted_digests(s.store.as_ref()).await?;
    let resumable = crate::resume::held(&s.config.data_dir);
    let mut missing = Vec::new();
    for h in req.sha256 {
        if h.len() != 64
            || !h
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(ApiError::bad_request(format!(
                "{h:?} is not a lower-case hex sha256 digest"
            )));
        }
        if evicted.contains(&h) {
            continue;
        }
        // Issue 12, point 4: kept from a push that was cut off.
        if resumable.contains(&h) {
            continue;
        }
        // Held means not known to be damaged: a damaged copy is quarantined and asked for
        // again, so a push repairs it. Issue 12: on S3 this is one HEAD per payload, not a
        // GET (`ContentStore::holds`).
        if !s.content.holds(&h).await? {
            missing.push(h);
        }
    }
    Ok(Json(patchday_types::api::TargetHashes { sha256: missing }))
}
