//! Issue 11, point 4: `GET /metrics` in Prometheus text format (`prometheus-client`).
//!
//! Counted as it happens: requests by route and status, check-ins and their latency,
//! payload downloads and bytes, install outcomes agents report. Read at scrape time:
//! push connections held, compliance per tenant and state, seconds until the earliest
//! catalog role expires, scheduled mirror runs.
//!
//! Access: `--metrics-token-file`. A scraper sends the file's secret as a bearer token
//! (Prometheus reads it with `authorization: credentials_file:`). It is a secret of its
//! own: an operator token in a scraper's configuration could change the fleet, and a
//! second listener would be one more port to bind, firewall and put behind TLS. Without
//! the flag `/metrics` answers 404.

use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The path of the check-in route, whose requests are also counted as check-ins.
const CHECKIN: &str = "/v1/agent/checkin";
/// The path of the payload route, whose answers are counted as downloads.
const TARGETS: &str = "/v1/tuf/targets/{name}";
/// How long a scrape's compliance counts are reused (they evaluate every host).
const COMPLIANCE_TTL: Duration = Duration::from_secs(30);

/// Labels of a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The route's path template (`/v1/tenants/{tenant}/hosts`), never the raw path.
    route: String,
    method: String,
    status: u16,
}

/// Labels of an install outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

/// Labels of a compliance count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComplianceLabels {
    tenant: String,
    state: String,
}

/// Labels of a mirror run count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

/// Labels of the fleet views' host count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EvaluationLabels {
    evaluation: &'static str,
}

/// Hosts per (tenant, compliance state).
type ComplianceCounts = BTreeMap<(String, String), u64>;

/// What the server counts as it runs.
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    checkins: Counter,
    checkin_seconds: Histogram,
    downloads: Counter,
    download_bytes: Counter,
    install_outcomes: Family<StateLabels, Counter>,
    fleet_view_hosts: Family<EvaluationLabels, Counter>,
    /// The last compliance counts and when they were made.
    compliance: Mutex<Option<(Instant, ComplianceCounts)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            checkins: Counter::default(),
            // 1 ms .. ~33 s.
            checkin_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            downloads: Counter::default(),
            download_bytes: Counter::default(),
            install_outcomes: Family::default(),
            fleet_view_hosts: Family::default(),
            compliance: Mutex::new(None),
        }
    }
}

impl Metrics {
    /// Counts the hosts a fleet view read (issue 11): `kept` whose kept evaluation held,
    /// `again` evaluated again.
    pub fn fleet_view(&self, kept: usize, again: usize) {
        for (evaluation, n) in [("kept", kept), ("again", again)] {
            self.fleet_view_hosts
                .get_or_create(&EvaluationLabels { evaluation })
                .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
        }
    }

    /// Counts the states an agent reported (`/v1/agent/report`).
    pub fn reported(&self, states: &[patchday_types::api::StateReport]) {
        for st in states {
            self.install_outcomes
                .get_or_create(&StateLabels {
                    state: st.state.to_string(),
                })
                .inc();
        }
    }
}

/// Middleware: counts every request by route template, method and status; check-ins
/// with their latency; payload answers with their bytes.
pub async fn track(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let method = req.method().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    let m = &s.metrics;
    let status = resp.status();
    let route = route.unwrap_or_else(|| "unmatched".into());
    if route == CHECKIN {
        m.checkin_seconds.observe(started.elapsed().as_secs_f64());
        if status.is_success() {
            m.checkins.inc();
        }
    }
    if route == TARGETS && (status == StatusCode::OK || status == StatusCode::PARTIAL_CONTENT) {
        m.downloads.inc();
        let bytes = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        m.download_bytes.inc_by(bytes);
    }
    m.requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: status.as_u16(),
        })
        .inc();
    resp
}

/// The `/metrics` route.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

/// `GET /metrics`: the Prometheus text exposition.
async fn scrape(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = &s.config.metrics_token else {
        return (
            StatusCode::NOT_FOUND,
            "metrics are off: start the server with --metrics-token-file FILE and scrape with that secret as a bearer token\n",
        )
            .into_response();
    };
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !same_secret(sent.trim().as_bytes(), token.expose().as_bytes()) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "send the secret of --metrics-token-file as `Authorization: Bearer <secret>`\n",
        )
            .into_response();
    }
    match render(&s).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics could not be rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("metrics could not be rendered: {e}\n"),
            )
                .into_response()
        }
    }
}

/// Compares two secrets in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    // Hashing first makes the comparison length-independent too.
    let (x, y) = (Sha256::digest(a), Sha256::digest(b));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

async fn render(s: &AppState) -> anyhow::Result<String> {
    let m = &s.metrics;
    let mut reg = Registry::with_prefix("patchday");
    reg.register(
        "http_requests",
        "HTTP requests answered, by route template, method and status",
        m.requests.clone(),
    );
    reg.register(
        "checkins",
        "Agent check-ins answered successfully",
        m.checkins.clone(),
    );
    reg.register(
        "checkin_duration_seconds",
        "Time to answer a check-in (every check-in, answered or refused)",
        m.checkin_seconds.clone(),
    );
    reg.register(
        "downloads",
        "Payload answers (200 or 206) from /v1/tuf/targets",
        m.downloads.clone(),
    );
    reg.register(
        "download_bytes",
        "Payload bytes answered from /v1/tuf/targets (Content-Length of each answer)",
        m.download_bytes.clone(),
    );
    reg.register(
        "install_outcomes",
        "Per-update states agents reported after a run, by state",
        m.install_outcomes.clone(),
    );
    reg.register(
        "fleet_view_hosts",
        "Hosts read by the fleet views (report, console, compliance, notifications), by whether the evaluation kept at their last check-in or report still held (kept) or they were evaluated again (again)",
        m.fleet_view_hosts.clone(),
    );
    let held: Gauge = Gauge::default();
    held.set(i64::try_from(s.push.waiting()).unwrap_or(i64::MAX));
    reg.register(
        "push_connections_held",
        "Agents holding a /v1/agent/wait long poll now",
        held,
    );
    let compliance: Family<ComplianceLabels, Gauge> = Family::default();
    for ((tenant, state), n) in compliance_counts(s).await? {
        compliance
            .get_or_create(&ComplianceLabels { tenant, state })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    reg.register(
        "hosts_compliance",
        "Hosts per tenant and compliance state (as `patchday report` decides it; recomputed at most every 30 s)",
        compliance,
    );
    let (roles, _) = crate::catalog_expiry::roles(s).await.map_err(api_error)?;
    let now = s.clock.now();
    if let Some(earliest) = roles.iter().map(|r| r.expires).min() {
        let left: Gauge<f64, AtomicU64> = Gauge::default();
        left.set(earliest.duration_since(now).as_secs_f64());
        reg.register(
            "catalog_expiry_seconds",
            "Seconds until the earliest catalog role expires (negative: expired)",
            left,
        );
    }
    if s.config.mirror.is_some() {
        let (ok, failed) = s.mirror_runs.counts();
        let runs: Family<OutcomeLabels, Counter> = Family::default();
        runs.get_or_create(&OutcomeLabels {
            outcome: "ok".into(),
        })
        .inc_by(ok);
        runs.get_or_create(&OutcomeLabels {
            outcome: "failed".into(),
        })
        .inc_by(failed);
        reg.register(
            "mirror_runs",
            "Scheduled archive sync runs since the server started, by outcome",
            runs,
        );
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg)?;
    Ok(text)
}

fn api_error(e: crate::error::ApiError) -> anyhow::Error {
    anyhow::anyhow!("{}", e.message)
}

/// Hosts per (tenant, compliance state), reused for [`COMPLIANCE_TTL`].
async fn compliance_counts(s: &AppState) -> anyhow::Result<ComplianceCounts> {
    let fresh = {
        let g = s
            .metrics
            .compliance
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        g.as_ref()
            .filter(|(at, _)| at.elapsed() < COMPLIANCE_TTL)
            .map(|(_, c)| c.clone())
    };
    if let Some(c) = fresh {
        return Ok(c);
    }
    let (version, catalog) = s
        .catalog_index
        .versioned(s.store.as_ref())
        .await
        .map_err(api_error)?;
    let now = s.clock.now();
    let stale_after = s.config.stale_after();
    let mut counts = BTreeMap::new();
    for t in s.store.list_tenants().await? {
        let tenant = s.store.tenant(&t.id).await?;
        let fleet =
            crate::fleet_view::FleetReader::open(tenant.as_ref(), &version, &catalog, &s.metrics)
                .await
                .map_err(api_error)?
                .all()
                .await
                .map_err(api_error)?;
        for e in &fleet {
            let v = crate::routes::host_verdict(e, stale_after, now);
            *counts
                .entry((t.id.to_string(), v.verdict.state.as_str().to_string()))
                .or_insert(0) += 1;
        }
    }
    *s.metrics
        .compliance
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), counts.clone()));
    Ok(counts)
}
