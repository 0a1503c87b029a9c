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
    /// The token's listed id (finding 10: who, in the operator log).
    pub token_id: String,
    /// The address the request came from (finding 10: from where).
    pub source: String,
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
        login_allowed(parts, state)?;
        operator_by_token_hash(state, &hash_secret(secret), parts)
            .await
            .map_err(|e| counted_failure(parts, state, e))
    }
}

// ---- Finding 3 (issue 8): operator tokens expire and are revoked ----

/// The operator token behind `secret`, refused (401, saying which and what to do) when
/// it is unknown, revoked or expired.
async fn live_operator_token(
    state: &AppState,
    secret: &str,
) -> Result<patchday_types::api::TokenInfo, ApiError> {
    live_operator_token_by_hash(state, &hash_secret(secret)).await
}

/// Issue 11, point 1 (console): the operator whose token hashes to `hash` (a console
/// session keeps only the hash), refused like a bearer token when the token was revoked
/// or expired since the login.
pub(crate) async fn operator_by_token_hash(
    state: &AppState,
    hash: &str,
    parts: &Parts,
) -> Result<Operator, ApiError> {
    let t = live_operator_token_by_hash(state, hash).await?;
    Ok(Operator {
        name: t.name,
        role: t.role,
        tenant: t.tenant,
        token_id: t.id,
        source: source_address(parts),
    })
}

async fn live_operator_token_by_hash(
    state: &AppState,
    hash: &str,
) -> Result<patchday_types::api::TokenInfo, ApiError> {
    let Some(t) = state.store.token_info_by_hash(hash).await? else {
        return Err(unauthorized(
            "unknown token: check PATCHDAY_TOKEN (a provider admin makes tokens with `patchday token create`)",
        ));
    };
    if let Some(at) = t.revoked_at {
        return Err(unauthorized(&format!(
            "token {} ({}) was revoked at {at}: ask an admin for a new one (`patchday token create`)",
            t.id, t.name
        )));
    }
    if let Some(at) = t.expires_at.filter(|at| *at <= state.clock.now()) {
        return Err(unauthorized(&format!(
            "token {} ({}) expired at {at}: ask an admin for a new one (`patchday token create --expires ...`)",
            t.id, t.name
        )));
    }
    Ok(t)
}

/// The peer address of the connection (finding 10), or `unknown` when the server was
/// not started with connection info.
pub fn source_address(parts: &Parts) -> String {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The 401 for a host credential the server does not know: a removed host is told so,
/// and how to enrol again.
async fn host_refusal(state: &AppState, hash: &str) -> Result<ApiError, ApiError> {
    Ok(match state.store.removed_host_by_credential(hash).await? {
        Some(r) => unauthorized(&format!(
            "host {} was removed from tenant {} at {}: its credential no longer works. To enrol \
             this machine again, delete identity.json in the agent's state directory (default \
             /var/lib/patchday-agent) and run the agent with a new enrolment token \
             (PATCHDAY_ENROLL_TOKEN or --enroll-token-file)",
            r.host, r.tenant, r.removed_at
        )),
        None => unauthorized(
            "unknown host credential: this server does not know the host (was the server \
                 restored from a backup taken before the host enrolled?). To enrol it again, \
                 delete identity.json in the agent's state directory (default \
                 /var/lib/patchday-agent) and run the agent with a new enrolment token \
                 (PATCHDAY_ENROLL_TOKEN or --enroll-token-file)",
        ),
    })
}

use crate::host_credentials::KnownHost;

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
        Ok(host_caller(parts, state).await?.1.auth())
    }
}

impl KnownHost {
    fn auth(&self) -> HostAuth {
        HostAuth {
            tenant: self.tenant.clone(),
            host: self.host.clone(),
        }
    }
}

/// The host whose credential the request carries (its hash, and the host), or the
/// refusal that says why there is none.
async fn host_caller(parts: &Parts, state: &AppState) -> Result<(String, KnownHost), ApiError> {
    let secret = bearer(parts)?;
    login_allowed(parts, state)?;
    let hash = hash_secret(secret);
    match known_host(state, &hash).await? {
        Some(h) => Ok((hash, h)),
        None => {
            let refusal = host_refusal(state, &hash).await?;
            Err(counted_failure(parts, state, refusal))
        }
    }
}

/// The host a credential hash names: remembered for seconds
/// ([`crate::host_credentials`]), else read from the store.
async fn known_host(state: &AppState, hash: &str) -> Result<Option<KnownHost>, ApiError> {
    let known = &state.host_credentials;
    if let Some(h) = known.get(hash, std::time::Instant::now()) {
        return Ok(Some(h));
    }
    let began = known.begin();
    let Some((tenant, host)) = state.store.host_by_credential(hash).await? else {
        return Ok(None);
    };
    let h = KnownHost {
        tenant,
        host,
        public_key: None,
    };
    known.put(hash, h.clone(), began);
    Ok(Some(h))
}

/// Either kind of caller, for what both may read (TUF metadata and payloads), with the
/// tenant it reads for (issue 9, point 3: private roles are served to their tenant only).
pub struct AnyCaller {
    /// Whose private updates it may read.
    pub scope: ReadScope,
}

/// Issue 9, point 3: whose private updates a caller may read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadScope {
    /// A provider-admin token: every tenant's.
    All,
    /// A host credential or a token bound to this tenant: this tenant's only.
    Tenant(TenantId),
    /// A tenant-role token bound to no tenant: none.
    Public,
}

impl AnyCaller {
    /// Whether this caller may read what is private to `tenant`.
    pub fn reads_for(&self, tenant: &str) -> bool {
        match &self.scope {
            ReadScope::All => true,
            ReadScope::Tenant(t) => t.as_str() == tenant,
            ReadScope::Public => false,
        }
    }
}

impl FromRequestParts<AppState> for AnyCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let secret = bearer(parts)?;
        login_allowed(parts, state)?;
        let h = hash_secret(secret);
        if let Some(known) = known_host(state, &h).await? {
            return Ok(AnyCaller {
                scope: ReadScope::Tenant(known.tenant),
            });
        }
        // Finding 3: revoked and expired operator tokens read nothing either.
        let t = match live_operator_token(state, secret).await {
            Ok(t) => t,
            Err(e) => {
                // A removed host's credential is told so, as on the agent routes.
                let e = match state.store.removed_host_by_credential(&h).await? {
                    Some(_) => host_refusal(state, &h).await?,
                    None => e,
                };
                return Err(counted_failure(parts, state, e));
            }
        };
        let scope = match (t.role, t.tenant) {
            (Role::ProviderAdmin, _) => ReadScope::All,
            (_, Some(tenant)) => ReadScope::Tenant(tenant),
            (_, None) => ReadScope::Public,
        };
        Ok(AnyCaller { scope })
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
        let (parts, body) = req.into_parts();
        let (hash, known) = host_caller(&parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let who = known.auth();
        // A host gone since its credential was remembered (removed through another
        // replica): forgotten, and refused as a removed host is.
        let hash_ref = hash.as_str();
        let gone = |e: patchday_store::StoreError| async move {
            match e {
                patchday_store::StoreError::NotFound(_) => {
                    state.host_credentials.forget(hash_ref);
                    match host_refusal(state, hash_ref).await {
                        Ok(refusal) | Err(refusal) => refusal.into_response(),
                    }
                }
                e => ApiError::from(e).into_response(),
            }
        };
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
        // The key never changes once set: remembered with the credential.
        let public = match known.public_key {
            Some(k) => k,
            None => {
                let signing = match tenant.host_signing(&who.host).await {
                    Ok(s) => s,
                    Err(e) => return Err(gone(e).await),
                };
                let Some(k) = signing.public_key else {
                    return Err(signature_rejected(format!(
                        "host {} has no signing key: it was enrolled before hosts signed their check-ins; enrol it again (remove identity.json from the agent's state directory and run it with an enrolment token)",
                        who.host
                    ))
                    .into_response());
                };
                state.host_credentials.add_key(&hash, &k);
                k
            }
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
        let advanced = match tenant
            .advance_sequence(&who.host, sequence, state.clock.now())
            .await
        {
            Ok(a) => a,
            Err(e) => return Err(gone(e).await),
        };
        match advanced {
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

// Issue 8, finding 9: failed logins are logged with their source address and limited
// per address (see `ratelimit`).

/// The client's address, when the server was reached over a socket.
pub fn source(parts: &Parts) -> Option<std::net::IpAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

/// 429 when the caller's address has failed too often lately.
pub fn login_allowed(parts: &Parts, state: &AppState) -> Result<(), ApiError> {
    allowed(source(parts), state)
}

/// Logs and counts a failed login; returns the 401 to answer.
pub fn login_failed(parts: &Parts, state: &AppState, message: &str) -> ApiError {
    failed(source(parts), parts.uri.path(), state, message)
}

fn allowed(ip: Option<std::net::IpAddr>, state: &AppState) -> Result<(), ApiError> {
    let Some(ip) = ip else {
        return Ok(());
    };
    state
        .failed_logins
        .check(ip, state.clock.now())
        .map_err(|wait| {
            ApiError::new(
                ErrorCode::TooManyRequests,
                format!("too many failed logins from {ip}; try again in {wait} s"),
            )
            .retry_after(wait)
        })
}

fn failed(ip: Option<std::net::IpAddr>, path: &str, state: &AppState, message: &str) -> ApiError {
    match ip {
        Some(ip) => {
            let n = state.failed_logins.record(ip, state.clock.now());
            tracing::warn!(source = %ip, path, failures = n, "failed login");
        }
        None => tracing::warn!(path, "failed login"),
    }
    ApiError::new(ErrorCode::Unauthorized, message)
}

/// A refused credential (401) counts as a failed login from the caller's address (finding
/// 9) and keeps its message (finding 3: unknown, revoked, expired or removed); other
/// errors (a store failure) pass unchanged.
fn counted_failure(parts: &Parts, state: &AppState, e: ApiError) -> ApiError {
    if e.code == ErrorCode::Unauthorized {
        login_failed(parts, state, &e.message)
    } else {
        e
    }
}

/// The caller's address, for handlers that check a secret themselves (enrolment).
pub struct Source(pub Option<std::net::IpAddr>);

impl Source {
    /// See [`login_allowed`].
    pub fn allowed(&self, state: &AppState) -> Result<(), ApiError> {
        allowed(self.0, state)
    }
    /// See [`login_failed`].
    pub fn failed(&self, state: &AppState, path: &str, message: &str) -> ApiError {
        failed(self.0, path, state, message)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Source(source(parts)))
    }
}
