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

fn status(s: &AppState, next: Option<&DirectorPublicKey>) -> DirectorStatus {
    DirectorStatus {
        key: info(s.director.key().public()),
        certificate_version: s.director.certificate_version(),
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
    Ok(Json(status(&s, None)))
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
    Ok(Json(status(&s, Some(&next))))
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
    s.director.install(&body, &root, s.clock.now()).await?;
    s.push.everyone(); // issue 10, point 6 (push): agents fetch the new certificate now
    let now_status = status(&s, None);
    // Finding 10 (issue 8): key rotations are in the operator log.
    let detail = serde_json::json!({
        "keyid": now_status.key.keyid,
        "certificate_version": now_status.certificate_version,
    });
    crate::routes::log::record_provider(&s, &op, "director.certificate", "director key", detail)
        .await?;
    Ok(Json(now_status))
}
