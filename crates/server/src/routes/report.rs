//! `GET /v1/report`: the compliance of every host in scope, built from the fleet views'
//! stored evaluations ([`crate::fleet_view`]) page by page and streamed (issue 12, point
//! 7): the server's memory is bounded by a page of hosts whatever the fleet's size, and
//! the first bytes leave before the last host is read.

use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::fleet_view::{Evaluated, FleetReader, PAGE};
use crate::routes::admin::{host_signed, seconds};
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use patchday_core::applicability::CatalogIndex;
use patchday_core::compliance::{host_compliance, HostFacts};
use patchday_types::api::{ComplianceRow, HostSigned, HostSummaryRow};
use patchday_types::{TenantId, UpdateState};
use serde::Deserialize;
use std::io::{Read, Seek, Write};
use std::sync::Arc;

/// Bytes gathered before they are sent as one chunk of the body.
const CHUNK: usize = 64 * 1024;
/// Chunks waiting for a slow client before the report waits for it.
const CHUNKS_AHEAD: usize = 4;

/// Query of `GET /v1/report`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    pub(crate) tenant: Option<TenantId>,
}

/// `GET /v1/report`: compliance of every host in scope, streamed.
#[utoipa::path(
    get,
    path = "/v1/report",
    tag = "operator",
    params(ReportQuery),
    responses((status = 200, description = "Compliance of every host in scope (streamed; a body cut short means the server failed while writing it, and it does not parse)", body = patchday_types::api::ComplianceReport))
)]
pub async fn report(
    State(s): State<AppState>,
    op: Operator,
    Query(q): Query<ReportQuery>,
) -> ApiResult<Response> {
    let tenants = in_scope(&s, &op, q.tenant).await?;
    let (version, catalog) = s.catalog_index.versioned(s.store.as_ref()).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNKS_AHEAD);
    tokio::spawn(async move {
        let mut out = Out {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        match write_report(&s, &tenants, &version, &catalog, &mut out).await {
            Ok(()) => {}
            Err(Stop::Gone) => tracing::debug!("report: the client left before its end"),
            Err(Stop::Failed(e)) => {
                // The status went out with the first bytes: cutting the body is how the
                // client learns (it does not parse), and the log says why.
                tracing::warn!(error = %e.message, "report cut short");
                let _ = out.tx.send(Err(std::io::Error::other(e.message))).await;
            }
        }
    });
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// One host's rows and summary, evaluated now (the console's host page: one host, not
/// the tenant's whole report).
pub(crate) async fn host_report(
    s: &AppState,
    op: &Operator,
    t: &TenantId,
    h: &patchday_types::HostId,
) -> ApiResult<(Vec<ComplianceRow>, HostSummaryRow)> {
    op.see(t)?;
    let tenant = s.store.tenant(t).await?;
    let (e, catalog) = crate::access::evaluate_host(s, tenant.as_ref(), h).await?;
    Ok(host_rows(
        t,
        e,
        &catalog,
        s.config.stale_after(),
        s.clock.now(),
    ))
}

/// The tenants an operator's report covers.
async fn in_scope(s: &AppState, op: &Operator, only: Option<TenantId>) -> ApiResult<Vec<TenantId>> {
    Ok(match only {
        Some(t) => {
            op.see(&t)?;
            vec![t]
        }
        None => s
            .store
            .list_tenants()
            .await?
            .into_iter()
            .map(|t| t.id)
            .filter(|t| op.see(t).is_ok())
            .collect(),
    })
}

/// Why writing a report stopped early.
enum Stop {
    /// The client closed the connection.
    Gone,
    /// The server could not go on.
    Failed(ApiError),
}

impl From<ApiError> for Stop {
    fn from(e: ApiError) -> Self {
        Self::Failed(e)
    }
}

impl From<patchday_store::StoreError> for Stop {
    fn from(e: patchday_store::StoreError) -> Self {
        Self::Failed(e.into())
    }
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        Self::Failed(ApiError::internal(format!("the report's spool file: {e}")))
    }
}

impl From<serde_json::Error> for Stop {
    fn from(e: serde_json::Error) -> Self {
        Self::Failed(ApiError::internal(e))
    }
}

/// The body being written: bytes gathered into chunks.
struct Out {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl Out {
    async fn flush(&mut self) -> Result<(), Stop> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.send(Ok(chunk)).await.map_err(|_| Stop::Gone)
    }

    async fn maybe_flush(&mut self) -> Result<(), Stop> {
        if self.buf.len() >= CHUNK {
            self.flush().await?;
        }
        Ok(())
    }
}

/// Writes `{"generated_at":…,"rows":[…],"hosts":[…]}` in one pass over the fleet: rows
/// go out as their page is evaluated, host summaries wait in an unnamed temporary file
/// (deleted by the system when closed, whatever happens) until the rows are done.
async fn write_report(
    s: &AppState,
    tenants: &[TenantId],
    version: &str,
    catalog: &Arc<CatalogIndex>,
    out: &mut Out,
) -> Result<(), Stop> {
    let now = s.clock.now();
    let stale_after = s.config.stale_after();
    let mut spool = std::io::BufWriter::new(tempfile::tempfile()?);
    let (mut any_row, mut any_host) = (false, false);
    out.buf.extend_from_slice(b"{\"generated_at\":");
    serde_json::to_writer(&mut out.buf, &Some(seconds(now)))?;
    out.buf.extend_from_slice(b",\"rows\":[");
    for t in tenants {
        let tenant = s.store.tenant(t).await?;
        let fleet = FleetReader::open(tenant.as_ref(), version, catalog, &s.metrics).await?;
        let mut after = None;
        loop {
            let page = fleet.page(after.as_ref(), PAGE).await?;
            let full = page.len() == PAGE as usize;
            after = page.last().map(|e| e.host.id.clone());
            for e in page {
                let (rows, host) = host_rows(t, e, catalog, stale_after, now);
                for r in rows {
                    if std::mem::replace(&mut any_row, true) {
                        out.buf.push(b',');
                    }
                    serde_json::to_writer(&mut out.buf, &r)?;
                }
                if std::mem::replace(&mut any_host, true) {
                    spool.write_all(b",")?;
                }
                serde_json::to_writer(&mut spool, &host)?;
                out.maybe_flush().await?;
            }
            if !full {
                break;
            }
        }
    }
    out.buf.extend_from_slice(b"],\"hosts\":[");
    let mut file = spool.into_inner().map_err(|e| e.into_error())?;
    file.rewind()?;
    loop {
        let at = out.buf.len();
        out.buf.resize(at + CHUNK, 0);
        let n = file.read(&mut out.buf[at..])?;
        out.buf.truncate(at + n);
        if n == 0 {
            break;
        }
        out.maybe_flush().await?;
    }
    out.buf.extend_from_slice(b"]}");
    out.flush().await
}

/// One evaluated host's rows and summary.
pub(crate) fn host_rows(
    t: &TenantId,
    e: Evaluated,
    catalog: &CatalogIndex,
    stale_after: jiff::SignedDuration,
    now: jiff::Timestamp,
) -> (Vec<ComplianceRow>, HostSummaryRow) {
    let HostVerdict { signed, verdict } = host_verdict(&e, stale_after, now);
    let mut rows = Vec::with_capacity(e.statuses.len());
    for mut st in e.statuses {
        // finding 13: why an approved update is not moving on this host.
        if let (UpdateState::Approved, None, Some(err)) =
            (st.state, &st.message, &signed.agent_error)
        {
            st.message = Some(format!("agent-error: {err}"));
        }
        if let (UpdateState::Declined, Some(r)) = (st.state, &st.message) {
            st.message = Some(format!("declined: {r}"));
        }
        let Some(u) = catalog.get(st.update.as_str()) else {
            continue;
        };
        rows.push(ComplianceRow {
            tenant: t.clone(),
            host: e.host.id.clone(),
            hostname: e.host.hostname.clone(),
            groups: e.host.groups.clone(),
            update: st.update,
            severity: u.severity,
            state: st.state,
            message: st.message,
        });
    }
    let host = HostSummaryRow {
        tenant: t.clone(),
        host: e.host.id,
        hostname: e.host.hostname,
        groups: e.host.groups,
        last_seen: e.host.last_seen.map(seconds),
        signed: HostSigned {
            at: signed.at.map(seconds),
            agent_error_at: signed.agent_error_at.map(seconds),
            ..signed
        },
        dpkg_broken: e.dpkg_broken, // issue 9, point 4
        compliance: verdict.state,
        compliance_reason: verdict.reason,
    };
    (rows, host)
}

/// Where one host stands, with what the host itself signed.
pub(crate) struct HostVerdict {
    /// What the host itself signed, and its agent's last error.
    pub signed: HostSigned,
    /// The host's state as a whole (issue 9, point 7).
    pub verdict: patchday_core::compliance::Verdict,
}

/// One evaluated host's state as a whole at `now`, for the report and the compliance
/// metrics (issue 11, point 4): the time-dependent parts (stale, overdue) and the
/// agent's last error are decided here, never stored.
pub(crate) fn host_verdict(
    e: &crate::fleet_view::Evaluated,
    stale_after: jiff::SignedDuration,
    now: jiff::Timestamp,
) -> HostVerdict {
    let signed = host_signed(&e.signing);
    let verdict = host_compliance(
        &e.statuses,
        &HostFacts {
            last_seen: e.host.last_seen,
            agent_error: signed.agent_error.as_deref(),
            dpkg_broken: e.dpkg_broken.as_deref(),
        },
        stale_after,
        now,
    );
    HostVerdict { signed, verdict }
}
