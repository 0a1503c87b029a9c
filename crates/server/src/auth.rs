//! Who is calling: operators (API tokens with a role) and hosts (their enrolment
//! credential). Secrets are compared by hash only and never logged.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use patchday_store::hash_secret;
use patchday_types::api::{ErrorCode, Role};
use patchday_types::{HostId, TenantId};
use rand::RngCore;

/// A new random secret with a readable prefix (`pd_…` operator token, `pde_…`
/// enrolment token, `pdh_…` host credential): 256 bits from the OS generator.
pub fn new_secret(prefix: &str) -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("{prefix}_{}", hex::encode(b))
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let h = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("no credential: send `Authorization: Bearer <token>` (set PATCHDAY_TOKEN for the CLI)"))?;
    let s = h
        .to_str()
        .map_err(|_| unauthorized("malformed Authorization header"))?;
    s.strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthorized("malformed Authorization header: expected `Bearer <token>`"))
}

fn unauthorized(m: &str) -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, m)
}

/// An authenticated operator.
#[derive(Clone, Debug)]
pub struct Operator {
    /// Token label (recorded on approvals).
    pub name: String,
    /// Role.
    pub role: Role,
    /// Bound tenant for tenant roles.
    pub tenant: Option<TenantId>,
}

impl Operator {
    /// Refuses (404, so as not to reveal other tenants) a tenant outside the token's scope.
    pub fn see(&self, tenant: &TenantId) -> Result<(), ApiError> {
        match (self.role, &self.tenant) {
            (Role::ProviderAdmin, _) => Ok(()),
            (_, Some(t)) if t == tenant => Ok(()),
            _ => Err(ApiError::not_found(format!("tenant {tenant} not found"))),
        }
    }
    /// Like [`Operator::see`], and refuses read-only tokens (403).
    pub fn change(&self, tenant: &TenantId) -> Result<(), ApiError> {
        self.see(tenant)?;
        if self.role == Role::ReadOnly {
            return Err(ApiError::forbidden(
                "this token is read-only; use a tenant-admin or provider-admin token",
            ));
        }
        Ok(())
    }
    /// Refuses anything but a provider admin (403).
    pub fn provider(&self) -> Result<(), ApiError> {
        if self.role != Role::ProviderAdmin {
            return Err(ApiError::forbidden(
                "only a provider-admin token may do this",
            ));
        }
        Ok(())
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let secret = bearer(parts)?;
        match state.store.token_by_hash(&hash_secret(secret)).await? {
            Some(t) => Ok(Operator {
                name: t.name,
                role: t.role,
                tenant: t.tenant,
            }),
            None => Err(unauthorized("unknown or revoked token")),
        }
    }
}

/// An authenticated host.
#[derive(Clone, Debug)]
pub struct HostAuth {
    /// The host's tenant.
    pub tenant: TenantId,
    /// The host.
    pub host: HostId,
}

impl FromRequestParts<AppState> for HostAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let secret = bearer(parts)?;
        match state.store.host_by_credential(&hash_secret(secret)).await? {
            Some((tenant, host)) => Ok(HostAuth { tenant, host }),
            None => Err(unauthorized(
                "unknown host credential: re-enrol the agent with a fresh enrolment token",
            )),
        }
    }
}

/// Either kind of caller, for what both may read (TUF metadata and payloads).
pub struct AnyCaller;

impl FromRequestParts<AppState> for AnyCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let secret = bearer(parts)?;
        let h = hash_secret(secret);
        if state.store.host_by_credential(&h).await?.is_some()
            || state.store.token_by_hash(&h).await?.is_some()
        {
            Ok(AnyCaller)
        } else {
            Err(unauthorized("unknown credential"))
        }
    }
}

// issue 8, finding 8: host-signed bodies (Uptane's version manifests).

/// A host body the host itself signed: the credential authenticates the caller, and
/// the signature (under the key the host registered at enrolment) over the path,
/// tenant, host, a sequence number and the body proves the host wrote this body now.
/// Refused unless the signature verifies and the sequence number is above the last
/// accepted one, which it then becomes.
#[derive(Debug)]
pub struct SignedHost<T> {
    /// The authenticated host.
    pub who: HostAuth,
    /// The accepted sequence number.
    pub sequence: u64,
    /// The decoded body.
    pub body: T,
}

fn signature_rejected(m: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::SignatureRejected, m)
}

impl<T: serde::de::DeserializeOwned + Send> axum::extract::FromRequest<AppState> for SignedHost<T> {
    type Rejection = axum::response::Response;

    async fn from_request(
        req: axum::extract::Request,
        state: &AppState,
    ) -> Result<Self, axum::response::Response> {
        use axum::response::IntoResponse;
        use patchday_trust::host_signature::{
            verify_request, LAST_SEQUENCE_HEADER, SEQUENCE_HEADER, SIGNATURE_HEADER,
        };
        let (mut parts, body) = req.into_parts();
        let who = HostAuth::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (sequence, signature) = match (header(SEQUENCE_HEADER), header(SIGNATURE_HEADER)) {
            (Some(q), Some(s)) => (q, s),
            _ => {
                return Err(signature_rejected(format!(
                    "unsigned body from host {}: every check-in, report and facts upload must be signed with the host's own key (a host credential alone cannot change what the server believes about a host); upgrade the agent, or re-enrol it",
                    who.host
                ))
                .into_response())
            }
        };
        let sequence: u64 = sequence.trim().parse().map_err(|_| {
            signature_rejected(format!("malformed {SEQUENCE_HEADER} header")).into_response()
        })?;
        let path = parts.uri.path().to_string();
        let bytes =
            axum::body::Bytes::from_request(axum::extract::Request::from_parts(parts, body), state)
                .await
                .map_err(IntoResponse::into_response)?;
        let tenant = state
            .store
            .tenant(&who.tenant)
            .await
            .map_err(|e| ApiError::from(e).into_response())?;
        let signing = tenant
            .host_signing(&who.host)
            .await
            .map_err(|e| ApiError::from(e).into_response())?;
        let Some(public) = signing.public_key else {
            return Err(signature_rejected(format!(
                "host {} has no signing key: it was enrolled before hosts signed their check-ins; enrol it again (remove identity.json from the agent's state directory and run it with an enrolment token)",
                who.host
            ))
            .into_response());
        };
        if let Err(e) = verify_request(
            &public,
            &signature,
            &path,
            who.tenant.as_str(),
            who.host.as_str(),
            sequence,
            &bytes,
        ) {
            tracing::warn!(tenant = %who.tenant, host = %who.host, path = %path, "host body refused: {e}");
            return Err(signature_rejected(format!("body refused: {e}")).into_response());
        }
        let decoded: T = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request(format!("malformed JSON body: {e}")).into_response()
        })?;
        match tenant
            .advance_sequence(&who.host, sequence, state.clock.now())
            .await
            .map_err(|e| ApiError::from(e).into_response())?
        {
            patchday_store::SequenceCheck::Accepted => Ok(SignedHost {
                who,
                sequence,
                body: decoded,
            }),
            patchday_store::SequenceCheck::Replayed { last } => {
                tracing::warn!(tenant = %who.tenant, host = %who.host, sequence, last, "replayed host body refused");
                let mut resp = ApiError::new(
                    ErrorCode::SequenceReplayed,
                    format!(
                        "replayed body refused: sequence number {sequence} is not above {last}, the last one host {} signed and the server accepted",
                        who.host
                    ),
                )
                .into_response();
                resp.headers_mut()
                    .insert(LAST_SEQUENCE_HEADER, axum::http::HeaderValue::from(last));
                Err(resp)
            }
        }
    }
}
