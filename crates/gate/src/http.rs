//! The web gate (issue 14, point 2): answers nginx `auth_request` subrequests and Envoy
//! `ext_authz` HTTP checks.
//!
//! Every request, on any path, is a check of the request it describes: nginx sends the
//! original method, URI and host in `X-Original-Method`, `X-Original-URI` and
//! `X-Original-Host` (see the README's snippet); Envoy forwards the original method, path
//! and headers as they are. Allowed: 200 with `Patchday-Host`, `Patchday-Hostname` and
//! `Patchday-Tenant` (nginx can pass them on with `auth_request_set`). Refused: 401 for a
//! missing, malformed, forged or expired token or a failed proof of possession (with
//! `WWW-Authenticate: Bearer error="invalid_token"`), 403 for a valid token of a host
//! that is not compliant now, of another tenant, or when the gate has no current word
//! from the server; the reason in `Patchday-Reason` and in a small HTML page, which nginx
//! shows through `error_page` when it proxies the denied request to the gate again.
//!
//! A proof is admitted once: the gate remembers every admitted proof (its host key and
//! nonce) until its window is over, and refuses the same headers again (401
//! `proof-replayed`). Only admissions consume a proof, so nginx asking again for the
//! reason page of a refused request gets the same reason.

use crate::follow::{Current, View};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use patchday_trust::access::{authorize, ProofTarget, Refusal, ReplayCache, PROOF_HEADER};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The reason header on every refusal.
pub const REASON_HEADER: &str = "patchday-reason";
/// The refusal's short name (`expired`, `not-compliant`, ...).
pub const REFUSAL_HEADER: &str = "patchday-refusal";

/// The web gate's settings and its view of the server's list.
pub struct HttpGate {
    /// The tenant whose hosts may pass.
    pub tenant: String,
    /// How far a proof's time may be from the gate's.
    pub proof_window: SignedDuration,
    /// How old the server's last word may be before every request is refused.
    pub max_age: Duration,
    /// The gate's clock (the binary's one clock read).
    pub now: fn() -> Timestamp,
    /// The server's list, kept current by [`crate::follow::follow`].
    pub view: View,
    /// The proofs admitted within their window (each admitted once).
    pub replay: Mutex<ReplayCache>,
}

/// The request a check is about.
#[derive(Clone, Debug, Default)]
pub struct Checked {
    /// Its method.
    pub method: String,
    /// Its `Host`.
    pub authority: String,
    /// Its path and query.
    pub path_and_query: String,
    /// Its `Authorization` header.
    pub authorization: Option<String>,
    /// Its `Patchday-Proof` header.
    pub proof: Option<String>,
}

/// The gate's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// 200, 401 or 403.
    pub status: u16,
    /// Short name of the refusal (`allowed` when allowed).
    pub code: &'static str,
    /// Why (refusals), or who passed.
    pub reason: String,
    /// The host that passed: (id, hostname, tenant).
    pub host: Option<(String, String, String)>,
}

fn refused(status: u16, code: &'static str, reason: String) -> Outcome {
    Outcome {
        status,
        code,
        reason,
        host: None,
    }
}

/// The whole decision for one request: the token and its proof offline, then the host
/// against the server's list (`current`, last confirmed `age` ago), then, for a request
/// that would be admitted, that its proof was not admitted before (`replay`).
#[allow(clippy::too_many_arguments)] // each is one input of the decision; time and state are parameters
pub fn decide(
    tenant: &str,
    window: SignedDuration,
    max_age: Duration,
    current: Option<&Current>,
    age: Option<Duration>,
    req: &Checked,
    now: Timestamp,
    replay: &mut ReplayCache,
) -> Outcome {
    let Some(current) = current else {
        return refused(
            403,
            "gate-not-ready",
            "the gate has not heard from the Patchday server yet, so it cannot check compliance; try again in a moment".into(),
        );
    };
    let target = ProofTarget {
        method: &req.method,
        authority: &req.authority,
        path_and_query: &req.path_and_query,
    };
    let (claims, proof) = match authorize(
        req.authorization.as_deref(),
        req.proof.as_deref(),
        &target,
        &current.list.keys,
        tenant,
        now,
        window,
    ) {
        Ok(c) => c,
        Err(r @ Refusal::WrongTenant { .. }) => return refused(403, r.code(), r.to_string()),
        Err(r) => return refused(401, r.code(), r.to_string()),
    };
    if let Some(age) = age.filter(|a| *a > max_age) {
        return refused(
            403,
            "server-silent",
            format!(
                "the gate has had no word from the Patchday server for {} s (more than {} s), so it cannot tell whether host {} is still compliant",
                age.as_secs(),
                max_age.as_secs(),
                claims.hostname
            ),
        );
    }
    match current
        .list
        .hosts
        .iter()
        .find(|h| h.host.as_str() == claims.sub)
    {
        Some(h) if h.allowed => match replay.admit(&proof, now, window) {
            Ok(()) => Outcome {
                status: 200,
                code: "allowed",
                reason: format!("host {} ({}) is compliant", h.hostname, h.host),
                host: Some((claims.sub, h.hostname.clone(), claims.tenant)),
            },
            Err(r) => refused(401, r.code(), r.to_string()),
        },
        Some(h) => refused(
            403,
            "not-compliant",
            format!(
                "host {} ({}) is not compliant: {}",
                h.hostname,
                h.host,
                h.reason.as_deref().unwrap_or("no reason given")
            ),
        ),
        None => refused(
            403,
            "unknown-host",
            format!(
                "host {} is not in tenant {tenant}'s list on the server (removed?)",
                claims.sub
            ),
        ),
    }
}

/// The axum router: every path and method is a check.
pub fn router(gate: Arc<HttpGate>) -> axum::Router {
    axum::Router::new().fallback(check).with_state(gate)
}

/// Serves the gate on `listener` until it fails.
pub async fn serve(listener: tokio::net::TcpListener, gate: Arc<HttpGate>) -> std::io::Result<()> {
    axum::serve(listener, router(gate)).await
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The request described by a check: the `X-Original-*` headers nginx sets, else the
/// check request itself (Envoy).
pub fn checked(method: &Method, uri: &Uri, headers: &HeaderMap) -> Checked {
    Checked {
        method: header(headers, "x-original-method").unwrap_or_else(|| method.to_string()),
        authority: header(headers, "x-original-host")
            .or_else(|| header(headers, "host"))
            .unwrap_or_default(),
        path_and_query: header(headers, "x-original-uri").unwrap_or_else(|| {
            uri.path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "/".into())
        }),
        authorization: header(headers, "authorization"),
        proof: header(headers, PROOF_HEADER),
    }
}

async fn check(
    State(g): State<Arc<HttpGate>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let req = checked(&method, &uri, &headers);
    let current = g.view.borrow().clone();
    let age = current.as_ref().map(|c| c.received.elapsed());
    let out = {
        let mut replay = g.replay.lock().unwrap_or_else(|e| e.into_inner());
        decide(
            &g.tenant,
            g.proof_window,
            g.max_age,
            current.as_ref(),
            age,
            &req,
            (g.now)(),
            &mut replay,
        )
    };
    if out.status == 200 {
        tracing::debug!(method = %req.method, uri = %req.path_and_query, reason = %out.reason, "allowed");
    } else {
        tracing::info!(method = %req.method, uri = %req.path_and_query, status = out.status, refusal = out.code, reason = %out.reason, "refused");
    }
    respond(&out)
}

/// A header value from text: printable ASCII kept, anything else `?` (hostnames and
/// reasons come from hosts).
fn header_value(s: &str) -> HeaderValue {
    let clean: String = s
        .chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect();
    HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static("?"))
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn respond(out: &Outcome) -> Response {
    let status = StatusCode::from_u16(out.status).unwrap_or(StatusCode::FORBIDDEN);
    let title = if out.status == 200 {
        "Access allowed"
    } else {
        "Access refused by Patchday"
    };
    let page = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n<body><h1>{title}</h1>\n<p id=\"reason\">{}</p>\n<p>Code: <code>{}</code></p></body></html>\n",
        html_escape(&out.reason),
        out.code
    );
    let mut resp = (status, [("content-type", "text/html; charset=utf-8")], page).into_response();
    let h = resp.headers_mut();
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    h.insert(REFUSAL_HEADER, header_value(out.code));
    if let Some((id, hostname, tenant)) = &out.host {
        h.insert("patchday-host", header_value(id));
        h.insert("patchday-hostname", header_value(hostname));
        h.insert("patchday-tenant", header_value(tenant));
    } else {
        h.insert(REASON_HEADER, header_value(&out.reason));
        if out.status == 401 {
            h.insert(
                "www-authenticate",
                header_value(&format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\"",
                    out.reason.replace('"', "'")
                )),
            );
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn without_a_word_from_the_server_every_request_is_refused() {
        let out = decide(
            "acme",
            SignedDuration::from_secs(60),
            Duration::from_secs(90),
            None,
            None,
            &Checked::default(),
            Timestamp::UNIX_EPOCH,
            &mut ReplayCache::new(10),
        );
        assert_eq!((out.status, out.code), (403, "gate-not-ready"));
    }

    #[test]
    fn a_lapsed_host_and_a_silent_server_are_refused_with_a_valid_token() {
        use patchday_trust::access::{claims_for, sign_proof, AccessKey};
        use patchday_trust::host_signature::HostKey;
        use patchday_types::api::{AccessList, HostAccess, HostCompliance, JwkSet};
        let d = tempfile::tempdir().unwrap();
        let server = AccessKey::load_or_create(&d.path().join("k.pk8")).unwrap();
        let host = HostKey::ephemeral().unwrap();
        let now = Timestamp::from_second(1_796_000_000).unwrap();
        let c = claims_for(
            "web-1-ab",
            "web-1",
            "acme",
            &host.public_hex(),
            "up-to-date",
            now,
            SignedDuration::from_secs(600),
            "j".into(),
        )
        .unwrap();
        let token = server.issue(&c).unwrap();
        let target = ProofTarget {
            method: "GET",
            authority: "app",
            path_and_query: "/",
        };
        let req = Checked {
            method: "GET".into(),
            authority: "app".into(),
            path_and_query: "/".into(),
            authorization: Some(format!("Bearer {token}")),
            proof: Some(sign_proof(&host, &target, &token, now)),
        };
        let list = |allowed: bool| Current {
            list: AccessList {
                tenant: patchday_types::TenantId::new("acme").unwrap(),
                generated_at: now,
                etag: "e".into(),
                token_lifetime_seconds: 600,
                keys: JwkSet {
                    keys: vec![server.public().clone()],
                },
                hosts: vec![HostAccess {
                    host: patchday_types::HostId::new("web-1-ab").unwrap(),
                    hostname: "web-1".into(),
                    allowed,
                    compliance: HostCompliance::Overdue,
                    reason: (!allowed).then(|| "overdue: past its deadline: PD-1".into()),
                }],
            },
            received: tokio::time::Instant::now(),
        };
        let w = SignedDuration::from_secs(60);
        let max = Duration::from_secs(90);
        let fresh = Some(Duration::from_secs(1));
        let mut replay = ReplayCache::new(10);
        // Refused requests do not consume their proof (nginx asks again for the reason
        // page, and must get the same reason).
        let lapsed = decide(
            "acme",
            w,
            max,
            Some(&list(false)),
            fresh,
            &req,
            now,
            &mut replay,
        );
        assert_eq!((lapsed.status, lapsed.code), (403, "not-compliant"));
        let lapsed = decide(
            "acme",
            w,
            max,
            Some(&list(false)),
            fresh,
            &req,
            now,
            &mut replay,
        );
        assert_eq!((lapsed.status, lapsed.code), (403, "not-compliant"));
        let ok = decide(
            "acme",
            w,
            max,
            Some(&list(true)),
            fresh,
            &req,
            now,
            &mut replay,
        );
        assert_eq!((ok.status, ok.code), (200, "allowed"), "{ok:?}");
        // The same headers again: a replay.
        let again = decide(
            "acme",
            w,
            max,
            Some(&list(true)),
            fresh,
            &req,
            now,
            &mut replay,
        );
        assert_eq!(
            (again.status, again.code),
            (401, "proof-replayed"),
            "{again:?}"
        );
        assert_eq!(
            lapsed.reason,
            "host web-1 (web-1-ab) is not compliant: overdue: past its deadline: PD-1"
        );
        let silent = decide(
            "acme",
            w,
            max,
            Some(&list(true)),
            Some(Duration::from_secs(91)),
            &req,
            now,
            &mut replay,
        );
        assert_eq!(
            (silent.status, silent.code),
            (403, "server-silent"),
            "{silent:?}"
        );
    }

    #[test]
    fn reasons_reach_headers_and_pages_escaped() {
        let out = refused(403, "not-compliant", "<script>\u{1b}[31m \"x\"".into());
        let resp = respond(&out);
        assert_eq!(resp.headers()[REASON_HEADER], "<script>?[31m \"x\"");
        assert_eq!(resp.status(), 403);
    }
}
