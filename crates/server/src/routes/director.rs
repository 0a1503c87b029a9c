//! Director key rotation: the server makes the next key, the catalog's root key holders
//! certify it offline, the server checks the certificate and switches.

use crate::auth::Operator;
use crate::error::ApiResult;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use patchday_trust::director::DirectorPublicKey;
use patchday_types::api::{DirectorKeyInfo, DirectorStatus};

fn info(k: &DirectorPublicKey) -> DirectorKeyInfo {
    DirectorKeyInfo {
        keyid: k.keyid.clone(),
        public: k.public.clone(),
    }
}

fn status(cur: &crate::director::Current, next: Option<&DirectorPublicKey>) -> DirectorStatus {
    DirectorStatus {
        key: info(cur.public()),
        certificate_version: cur.certificate_version(),
        next: next.map(info),
    }
}

/// `GET /v1/director`.
#[utoipa::path(
    get,
    path = "/v1/director",
    tag = "operator",
    responses((status = 200, description = "The director key and its certificate", body = patchday_types::api::DirectorStatus))
)]
pub async fn get(State(s): State<AppState>, op: Operator) -> ApiResult<Json<DirectorStatus>> {
    op.provider()?;
    let cur = s.director.current(s.store.as_ref()).await?;
    Ok(Json(status(&cur, None)))
}

/// `POST /v1/director/rotation`: makes (or shows again) the key to certify next.
#[utoipa::path(
    post,
    path = "/v1/director/rotation",
    tag = "operator",
    responses((status = 200, description = "The key to certify next", body = patchday_types::api::DirectorStatus))
)]
pub async fn rotation(State(s): State<AppState>, op: Operator) -> ApiResult<Json<DirectorStatus>> {
    op.provider()?;
    let next = s.director.begin().await?;
    // Finding 10 (issue 8): key rotations are in the operator log.
    let detail = serde_json::json!({ "next_keyid": next.keyid });
    crate::routes::log::record_provider(&s, &op, "director.rotation", "director key", detail)
        .await?;
    let cur = s.director.current(s.store.as_ref()).await?;
    Ok(Json(status(&cur, Some(&next))))
}

/// `PUT /v1/director/certificate`: installs a root-signed certificate.
#[utoipa::path(
    put,
    path = "/v1/director/certificate",
    tag = "operator",
    request_body(content = Object, content_type = "application/json", description = "A director certificate signed by a threshold of the catalog's root keys (`patchday keys rotate --role director`)"),
    responses((status = 200, description = "The director now in use", body = patchday_types::api::DirectorStatus))
)]
pub async fn certificate(
    State(s): State<AppState>,
    op: Operator,
    body: Bytes,
) -> ApiResult<Json<DirectorStatus>> {
    op.provider()?;
    let root = crate::catalog::newest_trusted_root(s.store.as_ref()).await?;
    // Finding 10 (issue 8): key rotations are in the operator log; issue 12, point 1: the
    // entry and the certificate commit together, in the store every replica reads.
    let at = s.clock.now();
    s.director
        .install(s.store.as_ref(), &body, &root, at, |cert| {
            let detail = serde_json::json!({
                "keyid": cert.key.keyid,
                "certificate_version": cert.version,
            });
            op.log_entry(
                at,
                None,
                "director.certificate",
                "director key".into(),
                detail,
            )
        })
        .await?;
    s.push.everyone(); // issue 10, point 6 (push): agents fetch the new certificate now
    let cur = s.director.current(s.store.as_ref()).await?;
    Ok(Json(status(&cur, None)))
}
