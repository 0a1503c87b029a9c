//! The console's pages. Each reads through the `/v1` handlers themselves (called with
//! the session's operator), so scoping, errors and numbers are the API's.

use super::session::{self, Session, LOGIN_COOKIE, SESSION_COOKIE};
use super::views::{self, HostLine, Tally, TenantOverview};
use super::{cache, render, PageError};
use crate::auth::new_secret;
use crate::error::ApiError;
use crate::fleet_view::{Counted, FleetReader};
use crate::routes::{admin, audit, catalog as catalog_routes, history, log as log_routes, rings};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::{Form, Json};
use patchday_core::applicability::CatalogIndex;
use patchday_core::compliance::Verdict;
use patchday_types::api::{
    ApprovalRequest, Decision, LogEntry, RingPreview, RolloutStatus, TenantUpdate,
};
use patchday_types::{HostId, TenantId, UpdateId, UpdateState};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

type PageResult = Result<Html<String>, PageError>;

/// What every signed-in page shows around its content.
pub struct Chrome {
    /// Token name and role.
    pub who: String,
    /// For the logout form.
    pub csrf: String,
    /// Tenants this operator may see.
    pub tenants: Vec<String>,
}

async fn chrome(s: &AppState, session: &Session) -> Result<Chrome, PageError> {
    let tenants = admin::list_tenants(State(s.clone()), session.op.clone())
        .await?
        .0
        .into_iter()
        .map(|t| t.id.to_string())
        .collect();
    Ok(Chrome {
        who: format!("{} ({})", session.op.name, role_name(session.op.role)),
        csrf: session.csrf.clone(),
        tenants,
    })
}

fn role_name(r: patchday_types::api::Role) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn when(t: Option<jiff::Timestamp>) -> String {
    t.map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string())
        .unwrap_or_else(|| "never".into())
}

/// Every host of tenant `t` as the counting pages read it (its kept summary, issue 11:
/// no report rows built, no whole evaluation read), with where it stands now, in host
/// id order; `each` gets the catalog too (for severities).
async fn each_counted(
    s: &AppState,
    session: &Session,
    t: &TenantId,
    mut each: impl FnMut(Counted, Verdict, &CatalogIndex),
) -> Result<(), PageError> {
    session.op.see(t)?;
    let (version, catalog) = s.catalog_index.versioned(s.store.as_ref()).await?;
    let now = s.clock.now();
    let stale_after = s.config.stale_after();
    let tenant = s.store.tenant(t).await.map_err(ApiError::from)?;
    let fleet = FleetReader::open(tenant.as_ref(), &version, &catalog, &s.metrics).await?;
    fleet
        .each_summary(|c| {
            let v = c.verdict(stale_after, now);
            each(c, v, &catalog);
            Ok(())
        })
        .await?;
    Ok(())
}

/// One tenant's overview, counted from the kept summaries.
async fn tenant_overview(
    s: &AppState,
    session: &Session,
    t: &TenantId,
) -> Result<TenantOverview, PageError> {
    let mut tally = Tally::new(t.as_str());
    each_counted(s, session, t, |c, v, catalog| {
        tally.add_counted(&c, &v, catalog)
    })
    .await?;
    Ok(tally.finish())
}

// ---- login and logout ----

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    error: &'a str,
}

/// `GET /console/login`: the form, with a fresh double-submit token.
pub async fn login_form() -> Response {
    login_page("", StatusCode::OK)
}

fn login_page(error: &str, status: StatusCode) -> Response {
    let csrf = new_secret("login");
    match render(&LoginPage { csrf: &csrf, error }) {
        Ok(html) => {
            let mut resp = (status, html).into_response();
            resp.headers_mut()
                .append(SET_COOKIE, session::set_cookie(LOGIN_COOKIE, &csrf, 3600));
            resp
        }
        Err(e) => e.into_response(),
    }
}

/// The login form.
#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    token: String,
}

/// `POST /console/login`.
pub async fn login(
    State(s): State<AppState>,
    parts: axum::http::request::Parts,
    Form(form): Form<LoginForm>,
) -> Response {
    match session::open(&s, &parts, &form.csrf, &form.token).await {
        Ok((op, cookie)) => {
            let entry = op.log_entry(
                s.clock.now(),
                op.tenant.as_ref(),
                "console.login",
                format!("token {}", op.token_id),
                serde_json::json!({}),
            );
            if let Err(e) = log_routes::record(&s, &entry).await {
                return PageError(e).into_response();
            }
            let mut resp = StatusCode::SEE_OTHER.into_response();
            resp.headers_mut()
                .insert(LOCATION, HeaderValue::from_static("/"));
            resp.headers_mut().append(SET_COOKIE, cookie);
            resp.headers_mut()
                .append(SET_COOKIE, session::set_cookie(LOGIN_COOKIE, "", 0));
            resp
        }
        Err(e) => {
            let status = e_status(&e);
            login_page(&e.message, status)
        }
    }
}

fn e_status(e: &ApiError) -> StatusCode {
    ApiError::new(e.code, String::new())
        .into_response()
        .status()
}

/// The logout form.
#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /console/logout`.
pub async fn logout(
    State(s): State<AppState>,
    session: Session,
    Form(f): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.check_csrf(&f.csrf)?;
    s.store
        .end_console_session(&session.id_hash)
        .await
        .map_err(ApiError::from)?;
    let mut resp = StatusCode::SEE_OTHER.into_response();
    resp.headers_mut()
        .insert(LOCATION, HeaderValue::from_static("/console/login"));
    resp.headers_mut()
        .append(SET_COOKIE, session::set_cookie(SESSION_COOKIE, "", 0));
    Ok(resp)
}

// ---- overview ----

#[derive(Template)]
#[template(path = "console/overview.html")]
struct OverviewPage {
    chrome: Chrome,
    tenants: Vec<TenantOverview>,
    /// When the oldest summary shown was made.
    as_of: String,
    fresh_for: i64,
}

/// `GET /`: every tenant in scope at a glance (summaries at most
/// [`cache::FRESH_FOR`] old).
pub async fn overview(State(s): State<AppState>, session: Session) -> PageResult {
    let chrome = chrome(&s, &session).await?;
    let now = s.clock.now();
    let mut tenants = Vec::new();
    let mut oldest = now;
    for id in &chrome.tenants {
        let t: TenantId = id
            .parse()
            .map_err(|e| ApiError::internal(format!("tenant id {id}: {e}")))?;
        let (at, o) = match s.console_overview.fresh(&t, now) {
            Some(hit) => hit,
            None => {
                let o = tenant_overview(&s, &session, &t).await?;
                s.console_overview.put(t, now, o.clone());
                (now, o)
            }
        };
        oldest = oldest.min(at);
        tenants.push(o);
    }
    render(&OverviewPage {
        chrome,
        tenants,
        as_of: when(Some(oldest)),
        fresh_for: cache::FRESH_FOR.as_secs(),
    })
}

// ---- one tenant ----

/// A host as the tenant page lists it.
struct HostRow {
    line: HostLine,
    groups: String,
    last_seen: String,
}

#[derive(Template)]
#[template(path = "console/tenant.html")]
struct TenantPage {
    chrome: Chrome,
    t: TenantOverview,
    hosts: Vec<HostRow>,
}

/// `GET /console/tenants/{t}`.
pub async fn tenant(
    State(s): State<AppState>,
    session: Session,
    Path(t): Path<TenantId>,
) -> PageResult {
    session.op.see(&t)?;
    let chrome = chrome(&s, &session).await?;
    let mut tally = Tally::new(t.as_str());
    let mut hosts = Vec::new();
    each_counted(&s, &session, &t, |c, v, catalog| {
        tally.add_counted(&c, &v, catalog);
        hosts.push(HostRow {
            line: HostLine::counted(&c, &v),
            groups: c
                .host
                .groups
                .iter()
                .map(|g| g.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            last_seen: when(c.host.last_seen.map(admin::seconds)),
        });
    })
    .await?;
    let overview = tally.finish();
    render(&TenantPage {
        chrome,
        t: overview,
        hosts,
    })
}

// ---- one host ----

struct StateRow {
    update: String,
    severity: String,
    state: String,
    message: String,
}

struct HistoryRow {
    at: String,
    update: String,
    from: String,
    to: String,
    message: String,
}

struct PackageRow {
    name: String,
    version: String,
    architecture: String,
}

struct FindingRow {
    section: String,
    title: String,
    severity: String,
    ids: String,
    remediation: String,
}

#[derive(Template)]
#[template(path = "console/host.html")]
struct HostPage {
    chrome: Chrome,
    tenant: String,
    line: HostLine,
    groups: String,
    last_seen: String,
    os: String,
    kernel: String,
    reboot_required: bool,
    states: Vec<StateRow>,
    history: Vec<HistoryRow>,
    packages: Vec<PackageRow>,
    findings: Vec<FindingRow>,
    audit_note: String,
}

/// `GET /console/tenants/{t}/hosts/{h}`: inventory, states, history, audit findings.
pub async fn host(
    State(s): State<AppState>,
    session: Session,
    Path((t, h)): Path<(TenantId, HostId)>,
) -> PageResult {
    session.op.see(&t)?;
    let chrome = chrome(&s, &session).await?;
    let (rows, summary) = crate::routes::report::host_report(&s, &session.op, &t, &h).await?;
    let summary = &summary;
    let states = rows
        .iter()
        .map(|r| StateRow {
            update: r.update.to_string(),
            severity: r.severity.as_str().into(),
            state: r.state.as_str().into(),
            message: r.message.clone().unwrap_or_default(),
        })
        .collect();
    let answer = history::list(
        State(s.clone()),
        session.op.clone(),
        Path(t.clone()),
        Query(history::HistoryQuery {
            host: Some(h.clone()),
            update: None,
            limit: Some(500),
        }),
    )
    .await?
    .0;
    let history = answer
        .entries
        .iter()
        .rev()
        .map(|e| HistoryRow {
            at: e.at.to_string(),
            update: e.update.to_string(),
            from: e
                .previous
                .map(|p| p.as_str().to_string())
                .unwrap_or_default(),
            to: e.state.as_str().into(),
            message: e.message.clone().unwrap_or_default(),
        })
        .collect();
    let inventory = s
        .store
        .tenant(&t)
        .await
        .map_err(ApiError::from)?
        .inventory(&h)
        .await
        .map_err(ApiError::from)?;
    let (os, kernel, reboot_required, packages) = match inventory {
        Some(i) => (
            i.os.pretty_name.clone(),
            i.kernel_running.clone(),
            i.reboot_required,
            i.packages
                .iter()
                .map(|p| PackageRow {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    architecture: p.architecture.clone(),
                })
                .collect(),
        ),
        None => (String::new(), String::new(), false, Vec::new()),
    };
    let (findings, audit_note) = host_findings(&s, &session, &t, &h).await?;
    render(&HostPage {
        chrome,
        tenant: t.to_string(),
        line: HostLine::from(summary),
        groups: summary
            .groups
            .iter()
            .map(|g| g.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        last_seen: when(summary.last_seen),
        os,
        kernel,
        reboot_required,
        states,
        history,
        packages,
        findings,
        audit_note,
    })
}

/// The host's audit plan as rows, or why there is none.
async fn host_findings(
    s: &AppState,
    session: &Session,
    t: &TenantId,
    h: &HostId,
) -> Result<(Vec<FindingRow>, String), PageError> {
    let answer = audit::host(
        State(s.clone()),
        session.op.clone(),
        Path((t.clone(), h.clone())),
        Query(audit::FormatQuery {
            format: Some("json".into()),
        }),
    )
    .await;
    let resp = match answer {
        Ok(r) => r,
        Err(e) if e.code == patchday_types::api::ErrorCode::NotFound => {
            return Ok((Vec::new(), e.message))
        }
        Err(e) => return Err(e.into()),
    };
    let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .map_err(ApiError::internal)?;
    let plan: patchday_audit::plan::Plan =
        serde_json::from_slice(&bytes).map_err(ApiError::internal)?;
    let rows: Vec<FindingRow> = plan
        .actions
        .iter()
        .map(|a| FindingRow {
            section: a.section.title().to_string(),
            title: a.title.clone(),
            severity: a.severity.clone().unwrap_or_default(),
            ids: a.ids.join(" "),
            remediation: a.remediation.clone(),
        })
        .collect();
    let note = format!(
        "{} failing, {} passed, {} not applicable (plan made {})",
        plan.summary.failed,
        plan.summary.passed,
        plan.summary.not_applicable,
        plan.generated_at
            .round(jiff::Unit::Second)
            .unwrap_or(plan.generated_at)
    );
    Ok((rows, note))
}

// ---- updates and decisions ----

struct UpdateRow {
    id: String,
    title: String,
    severity: String,
    cves: String,
    approvable: bool,
    wait: String,
    /// Decisions already made, one line each.
    decisions: Vec<String>,
    /// Hosts an approval would touch, per group (from the report: hosts the update is
    /// open on).
    touches: Vec<(String, Vec<String>)>,
    /// The rings' preview, when the tenant has rings.
    rings: Vec<RingPreview>,
}

#[derive(Template)]
#[template(path = "console/updates.html")]
struct UpdatesPage {
    chrome: Chrome,
    tenant: String,
    groups: Vec<String>,
    updates: Vec<UpdateRow>,
    may_change: bool,
}

/// `GET /console/tenants/{t}/updates`: the catalog as this tenant's calendar sees it,
/// what each approval would touch, and the approve/decline forms.
pub async fn updates(
    State(s): State<AppState>,
    session: Session,
    Path(t): Path<TenantId>,
) -> PageResult {
    session.op.see(&t)?;
    let chrome = chrome(&s, &session).await?;
    let op = session.op.clone();
    let list: Vec<TenantUpdate> =
        admin::tenant_updates(State(s.clone()), op.clone(), Path(t.clone()))
            .await?
            .0;
    let approvals = admin::list_approvals(State(s.clone()), op.clone(), Path(t.clone()))
        .await?
        .0;
    let groups: Vec<String> = admin::list_groups(State(s.clone()), op.clone(), Path(t.clone()))
        .await?
        .0
        .into_iter()
        .map(|g| g.id.to_string())
        .collect();
    // What each approval would touch: the hosts each update is open on, per group (in
    // host id order, as the report lists them), counted from the kept summaries.
    let mut open_on: HashMap<UpdateId, BTreeMap<String, Vec<String>>> = HashMap::new();
    each_counted(&s, &session, &t, |c, _, _| {
        for st in c.statuses.iter().filter(|st| views::is_open(st.state)) {
            let by_group = open_on.entry(st.update.clone()).or_default();
            for g in &c.host.groups {
                by_group
                    .entry(g.to_string())
                    .or_default()
                    .push(c.host.hostname.clone());
            }
        }
    })
    .await?;
    let has_rings = !rings::list(State(s.clone()), op.clone(), Path(t.clone()))
        .await?
        .0
        .is_empty();
    let mut rows = Vec::new();
    for u in list {
        let id = u.update.id.clone();
        let touches = open_on.remove(&id).unwrap_or_default();
        let ring_preview = if has_rings {
            rings::preview(
                State(s.clone()),
                op.clone(),
                Path(t.clone()),
                Query(rings::PreviewQuery { update: id.clone() }),
            )
            .await?
            .0
        } else {
            Vec::new()
        };
        rows.push(UpdateRow {
            id: id.to_string(),
            title: u.update.title.clone(),
            severity: u.update.severity.as_str().into(),
            cves: u.update.cves.join(" "),
            approvable: u.approvable,
            wait: u.wait.clone().unwrap_or_default(),
            decisions: approvals
                .iter()
                .filter(|a| a.update == id)
                .map(|a| {
                    format!(
                        "{} for {} by {} at {}{}",
                        match a.decision {
                            Decision::Approve => "approved",
                            Decision::Decline => "declined",
                        },
                        a.group,
                        a.decided_by,
                        a.decided_at
                            .round(jiff::Unit::Second)
                            .unwrap_or(a.decided_at),
                        a.reason
                            .as_deref()
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default()
                    )
                })
                .collect(),
            touches: touches.into_iter().collect(),
            rings: ring_preview,
        });
    }
    render(&UpdatesPage {
        chrome,
        tenant: t.to_string(),
        groups,
        updates: rows,
        may_change: session.op.role != patchday_types::api::Role::ReadOnly,
    })
}

/// The approve/decline form.
#[derive(Deserialize)]
pub struct DecisionForm {
    #[serde(default)]
    csrf: String,
    update: UpdateId,
    group: patchday_types::GroupId,
    decision: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    emergency: Option<String>,
}

/// `POST /console/tenants/{t}/approvals`: approves or declines through the API's own
/// handler, then shows the rollout.
pub async fn decide(
    State(s): State<AppState>,
    session: Session,
    Path(t): Path<TenantId>,
    Form(f): Form<DecisionForm>,
) -> Result<Response, PageError> {
    session.check_csrf(&f.csrf)?;
    let decision = match f.decision.as_str() {
        "approve" => Decision::Approve,
        "decline" => Decision::Decline,
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown decision {other:?}: approve or decline"
            ))
            .into())
        }
    };
    let reason = Some(f.reason.trim().to_string()).filter(|r| !r.is_empty());
    let req = ApprovalRequest {
        update: f.update.clone(),
        group: f.group,
        decision,
        deadline: None,
        reason,
        emergency: f.emergency.is_some(),
        remove: false,
    };
    let _approved = admin::approve(
        State(s.clone()),
        session.op.clone(),
        Path(t.clone()),
        Json(req),
    )
    .await?;
    s.console_overview.forget(&t);
    see_other(&format!("/console/tenants/{t}/rollouts/{}", f.update))
}

// ---- rollout progress ----

/// The rollout of one update in one tenant: what the page shows and the script polls.
#[derive(Serialize)]
pub struct Progress {
    update: String,
    /// Hosts per state.
    counts: BTreeMap<String, usize>,
    /// Every host the update is not "not applicable" on.
    hosts: Vec<ProgressHost>,
    /// Rings, when the tenant has them.
    rings: Vec<ProgressRing>,
    /// A halt, in words.
    halt: String,
}

#[derive(Serialize)]
struct ProgressHost {
    id: String,
    hostname: String,
    state: String,
    message: String,
}

#[derive(Serialize)]
struct ProgressRing {
    group: String,
    applicable: u32,
    installed: u32,
    failed: u32,
    verdict: String,
}

async fn progress_of(
    s: &AppState,
    session: &Session,
    t: &TenantId,
    u: &UpdateId,
) -> Result<Progress, PageError> {
    session.op.see(t)?;
    let status: RolloutStatus =
        rings::status(State(s.clone()), session.op.clone(), Path(u.clone()))
            .await?
            .0;
    // The fleet's kept evaluations, this update's statuses only (not the whole report).
    let (version, catalog) = s.catalog_index.versioned(s.store.as_ref()).await?;
    let tenant = s.store.tenant(t).await.map_err(ApiError::from)?;
    let fleet =
        crate::fleet_view::FleetReader::open(tenant.as_ref(), &version, &catalog, &s.metrics)
            .await?;
    let mut hosts: Vec<ProgressHost> = Vec::new();
    let mut after = None;
    loop {
        let page = fleet.page(after.as_ref(), crate::fleet_view::PAGE).await?;
        let full = page.len() == crate::fleet_view::PAGE as usize;
        after = page.last().map(|e| e.host.id.clone());
        for e in page {
            if let Some(st) = e
                .statuses
                .iter()
                .find(|st| &st.update == u && st.state != UpdateState::NotApplicable)
            {
                hosts.push(ProgressHost {
                    id: e.host.id.to_string(),
                    hostname: e.host.hostname.clone(),
                    state: st.state.as_str().into(),
                    message: st.message.clone().unwrap_or_default(),
                });
            }
        }
        if !full {
            break;
        }
    }
    let mut counts = BTreeMap::new();
    for h in &hosts {
        *counts.entry(h.state.clone()).or_insert(0) += 1;
    }
    Ok(Progress {
        update: u.to_string(),
        counts,
        hosts,
        rings: status
            .rings
            .iter()
            .filter(|r| &r.tenant == t)
            .map(|r| ProgressRing {
                group: r.group.to_string(),
                applicable: r.applicable,
                installed: r.installed,
                failed: r.failed,
                verdict: r.verdict.clone(),
            })
            .collect(),
        halt: status
            .halt
            .filter(|h| h.active())
            .map(|h| format!("halted by {} at {}: {}", h.by, h.at, h.reason))
            .unwrap_or_default(),
    })
}

#[derive(Template)]
#[template(path = "console/rollout.html")]
struct RolloutPage {
    chrome: Chrome,
    tenant: String,
    p: Progress,
    /// Provider admins halt and resume rollouts (for every tenant).
    may_halt: bool,
}

/// `GET /console/tenants/{t}/rollouts/{u}`.
pub async fn rollout(
    State(s): State<AppState>,
    session: Session,
    Path((t, u)): Path<(TenantId, UpdateId)>,
) -> PageResult {
    let p = progress_of(&s, &session, &t, &u).await?;
    let chrome = chrome(&s, &session).await?;
    render(&RolloutPage {
        chrome,
        tenant: t.to_string(),
        p,
        may_halt: session.op.provider().is_ok(),
    })
}

/// The halt and resume forms.
#[derive(Deserialize)]
pub struct HaltForm {
    #[serde(default)]
    csrf: String,
    /// The tenant whose rollout page sent it (where to go back).
    tenant: TenantId,
    #[serde(default)]
    reason: String,
}

/// `POST /console/rollouts/{u}/halt`: halts the update everywhere through the API's
/// own handler (provider admins; a reason is required), then shows the rollout again.
pub async fn halt(
    State(s): State<AppState>,
    session: Session,
    Path(u): Path<UpdateId>,
    Form(f): Form<HaltForm>,
) -> Result<Response, PageError> {
    session.check_csrf(&f.csrf)?;
    session.op.see(&f.tenant)?;
    let _halt = rings::halt(
        State(s.clone()),
        session.op.clone(),
        Path(u.clone()),
        Json(patchday_types::api::HaltRequest { reason: f.reason }),
    )
    .await?;
    s.console_overview.forget(&f.tenant);
    see_other(&format!("/console/tenants/{}/rollouts/{u}", f.tenant))
}

/// `POST /console/rollouts/{u}/resume` (provider admins).
pub async fn resume(
    State(s): State<AppState>,
    session: Session,
    Path(u): Path<UpdateId>,
    Form(f): Form<HaltForm>,
) -> Result<Response, PageError> {
    session.check_csrf(&f.csrf)?;
    session.op.see(&f.tenant)?;
    let _resumed = rings::resume(State(s.clone()), session.op.clone(), Path(u.clone())).await?;
    s.console_overview.forget(&f.tenant);
    see_other(&format!("/console/tenants/{}/rollouts/{u}", f.tenant))
}

fn see_other(to: &str) -> Result<Response, PageError> {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    resp.headers_mut().insert(
        LOCATION,
        HeaderValue::from_str(to).map_err(ApiError::internal)?,
    );
    Ok(resp)
}

// ---- rings ----

#[derive(Template)]
#[template(path = "console/rings.html")]
struct RingsPage {
    chrome: Chrome,
    tenant: String,
    rings: Vec<RingRow>,
    /// The form, filled with the rings in force.
    form: RingsFormView,
    groups: Vec<String>,
    may_change: bool,
}

struct RingRow {
    group: String,
    deferral: String,
    deadline: String,
    grace: String,
    soak: String,
    success: String,
    failure: String,
    rule: String,
}

struct RingsFormView {
    rings: String,
    auto: bool,
    severities: Vec<(String, bool)>,
    soak: String,
    success: String,
    failure: String,
    failure_count: String,
}

/// `GET /console/tenants/{t}/rings`: the rings in force and the form that replaces them
/// (the same words as `patchday ring set`).
pub async fn rings_page(
    State(s): State<AppState>,
    session: Session,
    Path(t): Path<TenantId>,
) -> PageResult {
    let rings = rings::list(State(s.clone()), session.op.clone(), Path(t.clone()))
        .await?
        .0;
    let groups = admin::list_groups(State(s.clone()), session.op.clone(), Path(t.clone()))
        .await?
        .0
        .into_iter()
        .map(|g| g.id.to_string())
        .collect();
    use patchday_core::rollout::{duration_text, ring_spec};
    let first = rings.first();
    let rule = first.and_then(|r| r.rule.clone());
    let percent = |p: u32| format!("{}", f64::from(p) / 10.0);
    let form = RingsFormView {
        rings: rings.iter().map(ring_spec).collect::<Vec<_>>().join(" "),
        auto: rule.is_some(),
        severities: patchday_core::compliance::SEVERITIES
            .iter()
            .map(|sev| {
                (
                    sev.as_str().to_string(),
                    rule.as_ref().is_some_and(|r| r.severities.contains(sev)),
                )
            })
            .collect(),
        soak: duration_text(
            first.map_or(patchday_core::rollout::DEFAULT_SOAK_SECONDS, |r| {
                r.soak_seconds
            }),
        ),
        success: percent(
            first.map_or(patchday_core::rollout::DEFAULT_SUCCESS_PERMILLE, |r| {
                r.success_permille
            }),
        ),
        failure: percent(
            first.map_or(patchday_core::rollout::DEFAULT_FAILURE_PERMILLE, |r| {
                r.failure_permille
            }),
        ),
        failure_count: first
            .and_then(|r| r.failure_count)
            .map(|n| n.to_string())
            .unwrap_or_default(),
    };
    let rows = rings
        .iter()
        .map(|r| RingRow {
            group: r.group.to_string(),
            deferral: duration_text(r.deferral_seconds),
            deadline: r.deadline_seconds.map(duration_text).unwrap_or_default(),
            grace: duration_text(r.grace_seconds),
            soak: duration_text(r.soak_seconds),
            success: format!("{}%", percent(r.success_permille)),
            failure: format!(
                "{}%{}",
                percent(r.failure_permille),
                r.failure_count
                    .map(|n| format!(" or {n} hosts"))
                    .unwrap_or_default()
            ),
            rule: match &r.rule {
                None => "by hand".into(),
                Some(rule) if rule.severities.is_empty() => "automatic: every update".into(),
                Some(rule) => format!(
                    "automatic: {}",
                    rule.severities
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        })
        .collect();
    let chrome = chrome(&s, &session).await?;
    render(&RingsPage {
        chrome,
        tenant: t.to_string(),
        rings: rows,
        form,
        groups,
        may_change: session.op.change(&t).is_ok(),
    })
}

/// The rings form (one checkbox per severity: `severity-critical`, ...).
#[derive(Deserialize)]
pub struct RingsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    rings: String,
    #[serde(default)]
    auto: Option<String>,
    #[serde(default, rename = "severity-critical")]
    critical: Option<String>,
    #[serde(default, rename = "severity-important")]
    important: Option<String>,
    #[serde(default, rename = "severity-moderate")]
    moderate: Option<String>,
    #[serde(default, rename = "severity-low")]
    low: Option<String>,
    #[serde(default)]
    soak: String,
    #[serde(default)]
    success: String,
    #[serde(default)]
    failure: String,
    #[serde(default)]
    failure_count: String,
}

/// `POST /console/tenants/{t}/rings`: replaces the tenant's rings through the API's own
/// handler (checked and logged there), then shows them.
pub async fn set_rings(
    State(s): State<AppState>,
    session: Session,
    Path(t): Path<TenantId>,
    Form(f): Form<RingsForm>,
) -> Result<Response, PageError> {
    session.check_csrf(&f.csrf)?;
    let number = |what: &str, v: &str| -> Result<f64, ApiError> {
        v.trim()
            .parse::<f64>()
            .map_err(|_| ApiError::bad_request(format!("{what}: {v:?} is not a number")))
    };
    let failure_count = match f.failure_count.trim() {
        "" => None,
        n => Some(n.parse::<u32>().map_err(|_| {
            ApiError::bad_request(format!(
                "failure count: {n:?} is not a whole number (leave it empty for none)"
            ))
        })?),
    };
    let spec = patchday_core::rollout::RingsSpec {
        rings: f.rings.split_whitespace().map(String::from).collect(),
        auto: f.auto.is_some(),
        severities: [
            (f.critical, patchday_types::Severity::Critical),
            (f.important, patchday_types::Severity::Important),
            (f.moderate, patchday_types::Severity::Moderate),
            (f.low, patchday_types::Severity::Low),
        ]
        .into_iter()
        .filter_map(|(on, sev)| on.map(|_| sev))
        .collect(),
        soak: f.soak,
        success_percent: number("success", &f.success)?,
        failure_percent: number("failure", &f.failure)?,
        failure_count,
        ..Default::default()
    };
    let rings = spec.build().map_err(ApiError::bad_request)?;
    let _rings = rings::set(
        State(s.clone()),
        session.op.clone(),
        Path(t.clone()),
        Json(patchday_types::api::RingsRequest { rings }),
    )
    .await?;
    s.console_overview.forget(&t);
    see_other(&format!("/console/tenants/{t}/rings"))
}

/// `GET /console/tenants/{t}/rollouts/{u}/progress.json`: what the page's script polls.
pub async fn progress(
    State(s): State<AppState>,
    session: Session,
    Path((t, u)): Path<(TenantId, UpdateId)>,
) -> Result<Json<Progress>, ApiError> {
    progress_of(&s, &session, &t, &u)
        .await
        .map(Json)
        .map_err(|e| e.0)
}

// ---- catalog, audit, log ----

struct RoleRow {
    role: String,
    version: u64,
    expires: String,
    state: String,
}

#[derive(Template)]
#[template(path = "console/catalog.html")]
struct CatalogPage {
    chrome: Chrome,
    versions: Vec<(String, u64)>,
    updates: u64,
    payloads: u64,
    roles: Vec<RoleRow>,
    warnings: Vec<String>,
}

/// `GET /console/catalog`: versions, every role's expiry and the warnings.
pub async fn catalog(State(s): State<AppState>, session: Session) -> PageResult {
    let chrome = chrome(&s, &session).await?;
    let c = catalog_routes::status(State(s.clone()), session.op.clone())
        .await?
        .0;
    render(&CatalogPage {
        chrome,
        versions: vec![
            ("root".into(), c.root_version),
            ("targets".into(), c.targets_version),
            ("snapshot".into(), c.snapshot_version),
            ("timestamp".into(), c.timestamp_version),
        ],
        updates: c.updates,
        payloads: c.payloads,
        roles: c
            .roles
            .iter()
            .map(|r| RoleRow {
                role: r.role.clone(),
                version: r.version,
                expires: r.expires.to_string(),
                state: r.state.to_string(),
            })
            .collect(),
        warnings: c.warnings,
    })
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    chrome: Chrome,
    tenant: String,
    hosts: usize,
    releases: Vec<(String, usize)>,
    actions: Vec<patchday_audit::fleet::FleetActionLine>,
}

/// `GET /console/tenants/{t}/audit`: the fleet audit plan, naming its hosts.
pub async fn audit(
    State(s): State<AppState>,
    session: Session,
    Path(t): Path<TenantId>,
) -> PageResult {
    session.op.see(&t)?;
    let chrome = chrome(&s, &session).await?;
    let report = audit::fleet(State(s.clone()), session.op.clone(), Path(t.clone()))
        .await?
        .0;
    let mine = report.tenant(t.as_str());
    render(&AuditPage {
        chrome,
        tenant: t.to_string(),
        hosts: mine.map_or(0, |r| r.hosts),
        releases: mine
            .map(|r| r.releases.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default(),
        actions: report.lines(t.as_str()),
    })
}

/// Entries the log page shows (newest first).
const LOG_PAGE: usize = 200;

#[derive(Template)]
#[template(path = "console/log.html")]
struct LogPage {
    chrome: Chrome,
    entries: Vec<LogEntry>,
}

/// `GET /console/log`: the newest operator log entries in this operator's scope.
pub async fn log(State(s): State<AppState>, session: Session) -> PageResult {
    let chrome = chrome(&s, &session).await?;
    let mut entries = log_routes::list(
        State(s.clone()),
        session.op.clone(),
        Query(log_routes::LogQuery {
            tenant: None,
            since: None,
            limit: None,
        }),
    )
    .await?
    .0;
    entries.reverse();
    entries.truncate(LOG_PAGE);
    render(&LogPage { chrome, entries })
}
