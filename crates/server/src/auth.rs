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
        login_allowed(parts, state)?;
        match state.store.token_by_hash(&hash_secret(secret)).await? {
            Some(t) => Ok(Operator {
                name: t.name,
                role: t.role,
                tenant: t.tenant,
            }),
            None => Err(login_failed(parts, state, "unknown or revoked token")),
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
        login_allowed(parts, state)?;
        match state.store.host_by_credential(&hash_secret(secret)).await? {
            Some((tenant, host)) => Ok(HostAuth { tenant, host }),
            None => Err(login_failed(
                parts,
                state,
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
        login_allowed(parts, state)?;
        let h = hash_secret(secret);
        if state.store.host_by_credential(&h).await?.is_some()
            || state.store.token_by_hash(&h).await?.is_some()
        {
            Ok(AnyCaller)
        } else {
            Err(login_failed(parts, state, "unknown credential"))
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
