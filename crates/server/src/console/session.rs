//! Console login: an operator token turns into a server-side session (in the store, so
//! every replica knows it) named by a random id in an HttpOnly, SameSite=Strict cookie.
//! The session keeps the token's hash and checks the token again on every request, so
//! a revoked or expired token ends its sessions too. Every form carries the session's
//! CSRF token and every POST checks it; the login form, which has no session yet,
//! checks a double-submit cookie instead.

use crate::auth::{login_allowed, login_failed, new_secret, operator_by_token_hash, Operator};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use patchday_store::{hash_secret, ConsoleSession};

/// The session cookie.
pub const SESSION_COOKIE: &str = "patchday_session";
/// The login form's double-submit cookie.
pub const LOGIN_COOKIE: &str = "patchday_login";
/// How long a session lives (the token's own expiry and revocation end it sooner).
pub const SESSION_HOURS: i64 = 8;

/// The value of cookie `name` in the request, if sent.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Marks every cookie of an answer `Secure`: the HTTPS listener maps every response
/// through this, so a session cookie set over TLS is never sent back over plain HTTP.
pub async fn secure_cookies(mut resp: axum::response::Response) -> axum::response::Response {
    let cookies: Vec<HeaderValue> = resp
        .headers_mut()
        .get_all(axum::http::header::SET_COOKIE)
        .iter()
        .filter_map(|v| {
            let text = v.to_str().ok()?;
            if text
                .split(';')
                .any(|a| a.trim().eq_ignore_ascii_case("secure"))
            {
                return Some(v.clone());
            }
            HeaderValue::from_str(&format!("{text}; Secure")).ok()
        })
        .collect();
    if !cookies.is_empty() {
        resp.headers_mut().remove(axum::http::header::SET_COOKIE);
        for c in cookies {
            resp.headers_mut().append(axum::http::header::SET_COOKIE, c);
        }
    }
    resp
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, whole site; `max_age` 0 deletes it.
pub fn set_cookie(name: &str, value: &str, max_age: i64) -> HeaderValue {
    let v = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}");
    // Names are constants and values hex: always a valid header value.
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// Equality that takes as long for a near miss as for a wild guess.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A signed-in operator: the token's scope, exactly like the API's.
#[derive(Clone, Debug)]
pub struct Session {
    /// Who, with the role and tenant of the token used at login.
    pub op: Operator,
    /// The CSRF token forms of this session carry.
    pub csrf: String,
    /// Hash of the session id (logout ends it).
    pub id_hash: String,
}

impl Session {
    /// Refuses a form whose CSRF token is not this session's (403).
    pub fn check_csrf(&self, sent: &str) -> Result<(), ApiError> {
        if same_secret(sent, &self.csrf) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "this form is not from your console session (missing or wrong CSRF token): reload the page and submit it again",
            ))
        }
    }
}

/// Not signed in: pages send the browser to the login page, JSON fragments answer 401.
pub struct NotSignedIn {
    json: bool,
}

impl IntoResponse for NotSignedIn {
    fn into_response(self) -> Response {
        if self.json {
            return ApiError::new(
                patchday_types::api::ErrorCode::Unauthorized,
                "not signed in to the console: log in at /console/login",
            )
            .into_response();
        }
        let mut resp = StatusCode::SEE_OTHER.into_response();
        resp.headers_mut()
            .insert(LOCATION, HeaderValue::from_static("/console/login"));
        resp.headers_mut()
            .append(SET_COOKIE, set_cookie(SESSION_COOKIE, "", 0));
        resp
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = NotSignedIn;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, NotSignedIn> {
        let json = parts.uri.path().ends_with(".json");
        let refuse = || NotSignedIn { json };
        let Some(id) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(refuse());
        };
        let id_hash = hash_secret(id);
        let Ok(Some(s)) = state
            .store
            .console_session(&id_hash, state.clock.now())
            .await
        else {
            return Err(refuse());
        };
        match operator_by_token_hash(state, &s.token_hash, parts).await {
            Ok(op) => Ok(Session {
                op,
                csrf: s.csrf,
                id_hash,
            }),
            Err(e) => {
                tracing::info!(reason = %e.message, "console session ended: its token no longer works");
                let _ = state.store.end_console_session(&id_hash).await;
                Err(refuse())
            }
        }
    }
}

/// Checks a login: the double-submit token, the rate limit, then the operator token;
/// opens the session and returns the cookie to set.
pub async fn open(
    state: &AppState,
    parts: &Parts,
    form_csrf: &str,
    token: &str,
) -> Result<(Operator, HeaderValue), ApiError> {
    match cookie(&parts.headers, LOGIN_COOKIE) {
        Some(c) if same_secret(c, form_csrf) => {}
        _ => {
            return Err(ApiError::forbidden(
                "the login form is missing its CSRF token (or cookies are off): reload the login page and try again",
            ))
        }
    }
    login_allowed(parts, state)?;
    let token = token.trim();
    let hash = hash_secret(token);
    let op = match operator_by_token_hash(state, &hash, parts).await {
        Ok(op) => op,
        Err(e) if e.code == patchday_types::api::ErrorCode::Unauthorized => {
            return Err(login_failed(parts, state, &e.message))
        }
        Err(e) => return Err(e),
    };
    let id = new_secret("pds");
    let now = state.clock.now();
    let session = ConsoleSession {
        id_hash: hash_secret(&id),
        token_hash: hash,
        csrf: new_secret("csrf"),
        created_at: now,
        expires_at: now
            .checked_add(jiff::SignedDuration::from_hours(SESSION_HOURS))
            .map_err(ApiError::internal)?
            .round(jiff::Unit::Second)
            .map_err(ApiError::internal)?,
    };
    state.store.create_console_session(&session).await?;
    Ok((op, set_cookie(SESSION_COOKIE, &id, SESSION_HOURS * 3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_https_listener_marks_every_cookie_secure_once() {
        let mut resp = axum::response::Response::new(axum::body::Body::empty());
        resp.headers_mut().append(
            axum::http::header::SET_COOKIE,
            set_cookie(SESSION_COOKIE, "abc", 60),
        );
        resp.headers_mut().append(
            axum::http::header::SET_COOKIE,
            HeaderValue::from_static("other=1; Path=/; Secure"),
        );
        let resp = secure_cookies(resp).await;
        let all: Vec<&str> = resp
            .headers()
            .get_all(axum::http::header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(
            all[0].starts_with("patchday_session=abc;") && all[0].ends_with("; Secure"),
            "{all:?}"
        );
        assert_eq!(all[1], "other=1; Path=/; Secure");
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_static("patchday_session_x=1; patchday_session=abc; other=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, LOGIN_COOKIE), None);
    }

    #[test]
    fn session_cookies_are_http_only_and_strict() {
        let c = set_cookie(SESSION_COOKIE, "abc", 60);
        let c = c.to_str().unwrap();
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict"),
            "{c}"
        );
    }

    #[test]
    fn csrf_comparison_needs_the_whole_token() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("ab", "abc"));
        assert!(!same_secret("", "abc"));
    }
}
