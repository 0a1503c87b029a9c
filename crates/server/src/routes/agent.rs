//! What agents call: enrol, check in (inventory in, assignments out), report states.

use crate::admission::Admitted;
use crate::auth::{new_secret, HostAuth, SignedHost};
use crate::compliance::host_statuses;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use patchday_store::hash_secret;
use patchday_types::api::{
    AgentStatusRequest, AssignmentEntry, CheckinRequest, CheckinResponse, EnrollRequest,
    EnrollResponse, ErrorCode, ReportRequest,
};
use patchday_types::{HostId, UpdateDocument};

/// `POST /v1/agent/enroll`.
#[utoipa::path(
    post,
    path = "/v1/agent/enroll",
    tag = "enrolment",
    request_body = patchday_types::api::EnrollRequest,
    responses((status = 200, description = "The host credential and the pinned keys", body = patchday_types::api::EnrollResponse))
)]
pub async fn enroll(
    State(s): State<AppState>,
    src: crate::auth::Source,
    Json(req): Json<EnrollRequest>,
) -> ApiResult<Json<EnrollResponse>> {
    src.allowed(&s)?; // issue 8, finding 9: failed enrolments count as failed logins
                      // finding 8: the host's own signing key, registered once, here (checked first, so
                      // an old agent is told to upgrade and uses up no enrolment token).
    let public_key = host_public_key(&req)?;
    crate::limits::hostname(&req.hostname)?; // finding 4
    let (tenant_id, group) = redeem(&s, &src, &req.token).await?; // finding 3
    let tenant = s.store.tenant(&tenant_id).await?;
    let credential = new_secret("pdh");
    let mut suffix = [0u8; 4];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut suffix);
    let base: String = req
        .hostname
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    let base = if base.is_empty() {
        "host".to_string()
    } else {
        base.to_lowercase()
    };
    let id = HostId::new(format!("{base}-{}", hex::encode(suffix)))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    tenant
        .create_host(&id, &req.hostname, &hash_secret(&credential), s.clock.now())
        .await?;
    tenant.set_host_public_key(&id, &public_key).await?;
    if let Some(g) = &group {
        tenant.set_host_groups(&id, std::slice::from_ref(g)).await?;
    }
    tracing::info!(tenant = %tenant_id, host = %id, "host enrolled");
    let root = s
        .store
        .pinned_root()
        .await?
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    // Issue 12, point 1: the key the stored certificate certifies (503 on a replica that
    // lacks it: an agent pinning the wrong key here would refuse every answer).
    let key = s.director.current(s.store.as_ref()).await?.key()?;
    let pk = key.public();
    Ok(Json(EnrollResponse {
        host: id,
        tenant: tenant_id,
        credential,
        catalog_root: root,
        director_key: Some(patchday_types::api::DirectorKeyInfo {
            keyid: pk.keyid.clone(),
            public: pk.public.clone(),
        }),
    }))
}

/// `POST /v1/agent/checkin`.
#[utoipa::path(
    post,
    path = "/v1/agent/checkin",
    tag = "agent",
    request_body = patchday_types::api::CheckinRequest,
    responses((status = 200, description = "Signed assignments", body = patchday_types::api::CheckinResponse))
)]
pub async fn checkin(
    State(s): State<AppState>,
    _place: Admitted, // issue 10: before the body, its signature and the database
    SignedHost {
        who,
        body: req,
        sequence,
    }: SignedHost<CheckinRequest>,
) -> ApiResult<Json<CheckinResponse>> {
    tracing::debug!(tenant = %who.tenant, host = %who.host, sequence, "signed check-in");
    crate::limits::inventory(&req.inventory)?; // finding 4
    crate::limits::baseline_reports(&req.baselines)?; // issue 13, point 1
    crate::routes::group_rules::check_checkin_labels(req.labels.as_ref())?; // issue 10, point 2
                                                                            // Issue 12, point 1: the key and certificate every replica reads from the store; a
                                                                            // replica lacking the certified key answers 503 before it changes anything.
    let signer = s.director.current(s.store.as_ref()).await?;
    let key = signer.key()?;
    // Issue 9, point 6: the catalog parsed and indexed once per version, not per check-in,
    // and only the decisions about updates that name the host's packages.
    let (version, catalog) = s.catalog_index.versioned(s.store.as_ref()).await?;
    // Issue 10, point 8: the run's last outcomes, bounded as a report is (finding 4). One
    // about an update the catalog no longer has (removed since the run began) is left
    // out, not a reason to refuse the inventory that comes with it.
    crate::limits::states(&req.states, |_| true)?;
    let (outcomes, gone): (Vec<_>, Vec<_>) = req
        .states
        .iter()
        .cloned()
        .partition(|r| catalog.get(r.update.as_str()).is_some());
    for r in &gone {
        tracing::warn!(tenant = %who.tenant, host = %who.host, update = %r.update, "check-in: state for an update the catalog no longer has left out");
    }
    let tenant = s.store.tenant(&who.tenant).await?;
    tenant
        .save_inventory(&who.host, &req.inventory, s.clock.now())
        .await?;
    // Recorded as a report records them, before the marks and the states this evaluation
    // reads.
    if !outcomes.is_empty() {
        tenant
            .put_states(&who.host, &outcomes, s.clock.now())
            .await?;
        s.metrics.reported(&outcomes); // issue 11, point 4
    }
    // Issue 13, point 1: what the agent found and did per baseline at this run.
    tenant
        .save_baseline_reports(&who.host, &req.baselines, s.clock.now())
        .await?;
    // Issue 10, point 2: the group rules on this host's facts, before its assignments.
    crate::routes::group_rules::at_checkin(
        tenant.as_ref(),
        &who.host,
        &req.inventory,
        req.labels.as_ref(),
        s.clock.now(),
    )
    .await?;
    // Issue 11: the marks this evaluation is kept under, read before what it reads.
    let marks = tenant.host_marks(&who.host).await?;
    let host = tenant.host(&who.host).await?;
    let approvals = tenant
        .list_approvals_for(&relevant_ids(&catalog, &req.inventory))
        .await?;
    // The inventory just received is the host's truth; no need to read it back.
    let statuses = host_statuses(
        tenant.as_ref(),
        &host,
        &approvals,
        &catalog,
        Some(&req.inventory),
    )
    .await?;
    let verdict = crate::fleet_view::kept(
        &version,
        &marks,
        &host,
        &statuses,
        req.inventory.dpkg_broken.clone(),
    )?;
    // Issue 10, point 1: what changed for this host, into the state history (with the
    // evaluation the fleet views reuse, issue 11).
    crate::routes::history::record(
        tenant.as_ref(),
        &who.host,
        &statuses,
        s.clock.now(),
        verdict.as_ref(),
    )
    .await?;
    // ---- issue 10, point 3 (rings): a halted rollout or an unopened wave holds it ----
    let held = crate::rollout::held(&s, tenant.as_ref(), &who.host, &statuses).await?;
    // ---- end issue 10, point 3 (rings) ----
    // Issue 10, point 3: updates declined with removal that this host has installed.
    let remove = crate::take_back::instructions(&approvals, &host, &statuses);
    let mut assignments: Vec<AssignmentEntry> = statuses
        .into_iter()
        .filter(|st| st.is_assigned() && !st.missing.is_empty())
        .filter(|st| !held.contains(&st.update)) // issue 10, point 3 (rings)
        .map(|st| AssignmentEntry {
            update: st.update,
            targets: st.missing,
            deadline: st.deadline,
        })
        .collect();
    // ---- issue 9, point 4 (closure): dependency payloads and the repair assignment ----
    let mut extras = crate::closure::answer_extras(
        &s,
        tenant.as_ref(),
        who.tenant.as_str(),
        &who.host,
        &req.inventory,
        catalog.as_ref(),
        &mut assignments,
    )
    .await?;
    // ---- end issue 9, point 4 (closure) ----
    extras.remove = remove;
    // Finding 6: every answer is signed, "nothing to do" too, so a man in the middle can
    // neither withhold updates nor drop single assignments unnoticed.
    let director = Some(
        sign_assignments(
            &s,
            &key,
            &who,
            &host,
            &req.inventory.architecture,
            &assignments,
            extras,
        )
        .await?,
    );
    s.push.access_changed(); // issue 14: the gates look at this host's compliance again
    Ok(Json(CheckinResponse {
        assignments,
        poll_seconds: s.config.poll_seconds,
        director,
        director_certificate: signer.certificate(),
        facts_sha256: host.facts_sha256.clone(),
    }))
}

/// How long a signed check-in answer stays valid: short, so a withheld answer shows soon.
const DIRECTOR_LIFETIME_SECONDS: i64 = 3600;

/// Per-host director metadata naming every target of these assignments (none: a signed
/// "nothing to do" that names the host).
async fn sign_assignments(
    s: &AppState,
    key: &patchday_trust::director::DirectorKey,
    who: &HostAuth,
    host: &patchday_store::HostRecord,
    architecture: &str,
    assignments: &[AssignmentEntry],
    extras: crate::closure::AnswerExtras,
) -> ApiResult<String> {
    use patchday_trust::director::{expires_in, AssignedCustom, AssignedTarget, DirectorTargets};
    let now = s.clock.now();
    let names: Vec<String> = assignments
        .iter()
        .flat_map(|a| {
            std::iter::once(UpdateDocument::target_name(&a.update)).chain(a.targets.iter().cloned())
        })
        .collect();
    let listed = crate::catalog::targets_by_name(s.store.as_ref(), &names).await?;
    let mut targets = std::collections::BTreeMap::new();
    for a in assignments {
        let names = std::iter::once(UpdateDocument::target_name(&a.update))
            .chain(a.targets.iter().cloned());
        for name in names {
            let t = listed.get(&name).cloned().ok_or_else(|| {
                ApiError::internal(format!("assigned target {name} is not in the catalog"))
            })?;
            targets.insert(
                name,
                AssignedTarget {
                    length: t.length,
                    hashes: [("sha256".to_string(), t.sha256)].into_iter().collect(),
                    custom: AssignedCustom {
                        update: a.update.to_string(),
                        tenant: who.tenant.to_string(),
                        host: who.host.to_string(),
                        architecture: architecture.to_string(),
                        groups: host.groups.iter().map(ToString::to_string).collect(),
                        release_counter: t.release_counter,
                    },
                },
            );
        }
    }
    let signed = DirectorTargets {
        kind: "targets".into(),
        spec_version: "1.0.0".into(),
        version: u64::try_from(now.as_second()).unwrap_or(0),
        expires: expires_in(now, DIRECTOR_LIFETIME_SECONDS).map_err(ApiError::internal)?,
        host: Some(who.host.to_string()),
        targets,
        install_with: extras.install_with,
        repair: extras.repair,
        remove: extras.remove,
        // Issue 10, point 5: windows, deadline and reboot policy, signed.
        schedule: crate::routes::windows::schedule(
            s.store.tenant(&who.tenant).await?.as_ref(),
            host,
            assignments,
        )
        .await?,
    };
    let bytes = key.sign(&signed).map_err(ApiError::internal)?;
    String::from_utf8(bytes).map_err(ApiError::internal)
}

/// `POST /v1/agent/report`.
#[utoipa::path(
    post,
    path = "/v1/agent/report",
    tag = "agent",
    request_body = patchday_types::api::ReportRequest,
    responses((status = 200, description = "Done (the body is `null`)"))
)]
pub async fn report(
    State(s): State<AppState>,
    _place: Admitted, // issue 10: before the body, its signature and the database
    SignedHost { who, body: req, .. }: SignedHost<ReportRequest>,
) -> ApiResult<Json<()>> {
    // Finding 4: bounded, and only for updates the catalog has.
    let (version, catalog) = s.catalog_index.versioned(s.store.as_ref()).await?;
    crate::limits::states(&req.states, |u| catalog.get(u).is_some())?;
    let tenant = s.store.tenant(&who.tenant).await?;
    s.metrics.reported(&req.states); // issue 11, point 4
                                     // Only the updates this report is about, and not the ones it says are installed: the
                                     // stored inventory predates the install, so dpkg's word comes with the check-in that
                                     // follows (recording it now would write a "failed" that never happened).
    let in_progress: std::collections::BTreeSet<&str> = req
        .states
        .iter()
        .filter(|r| {
            !matches!(
                r.state,
                patchday_types::UpdateState::Installed
                    | patchday_types::UpdateState::InstalledPendingReboot
                    // Issue 10, point 3: dpkg's word on a removal comes with the check-in.
                    | patchday_types::UpdateState::Removed
            )
        })
        .map(|r| r.update.as_str())
        .collect();
    if in_progress.is_empty() {
        tenant
            .put_states(&who.host, &req.states, s.clock.now())
            .await?;
        // Issue 10, point 8: nothing for the history until the check-in that follows (a
        // rollout's "installed" reports skip the evaluation; the stored states moved the
        // host's marks, so no kept evaluation outlives them).
        s.push.access_changed(); // issue 14: the gates look at this host's compliance again
        return Ok(Json(()));
    }
    // Issue 10, point 8: work under way (downloading, installing...) on the host's kept
    // evaluation, in one transaction, when that evaluation is current; else below.
    if in_progress.len() == req.states.len() {
        let host = tenant.host(&who.host).await?;
        let carry = crate::fleet_view::carry_report(&version, &host, &req.states);
        if tenant
            .report_on_kept(&who.host, &req.states, s.clock.now(), &carry)
            .await?
            .is_some()
        {
            s.push.access_changed(); // issue 14
            return Ok(Json(()));
        }
    }
    tenant
        .put_states(&who.host, &req.states, s.clock.now())
        .await?;
    // Issue 10, point 1: the report changes the host's states (downloading, failed...);
    // evaluated with the stored inventory, into the state history.
    // Issue 11: the marks this evaluation is kept under, read before what it reads.
    let marks = tenant.host_marks(&who.host).await?;
    let host = tenant.host(&who.host).await?;
    let inventory = tenant.inventory(&who.host).await?;
    let ids = inventory
        .as_ref()
        .map(|i| relevant_ids(&catalog, i))
        .unwrap_or_default();
    let approvals = tenant.list_approvals_for(&ids).await?;
    let statuses = host_statuses(
        tenant.as_ref(),
        &host,
        &approvals,
        &catalog,
        inventory.as_ref(),
    )
    .await?;
    let verdict = crate::fleet_view::kept(
        &version,
        &marks,
        &host,
        &statuses,
        inventory.as_ref().and_then(|i| i.dpkg_broken.clone()),
    )?;
    let statuses: Vec<_> = statuses
        .into_iter()
        .filter(|st| in_progress.contains(st.update.as_str()))
        .collect();
    crate::routes::history::record(
        tenant.as_ref(),
        &who.host,
        &statuses,
        s.clock.now(),
        verdict.as_ref(),
    )
    .await?;
    s.push.access_changed(); // issue 14: the gates look at this host's compliance again
    Ok(Json(()))
}

// issue 8, findings 8 and 13: host keys at enrolment, agent errors.

/// The enrolling agent's public key, required: without it nothing the host sends
/// later could be told apart from what a thief of its credential sends.
fn host_public_key(req: &EnrollRequest) -> ApiResult<String> {
    let key = req.public_key.as_deref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::SignatureRejected,
            "this agent sent no signing key: this server accepts only check-ins a host signs with its own key; upgrade patchday-agent and enrol again",
        )
    })?;
    patchday_trust::host_signature::check_public_key(key)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(key.to_ascii_lowercase())
}

/// Longest agent error kept (the rest is cut, on a character boundary).
const MAX_AGENT_ERROR: usize = 4096;

/// `POST /v1/agent/status`: the agent's last run failed (`error`) or succeeded (`null`).
#[utoipa::path(
    post,
    path = "/v1/agent/status",
    tag = "agent",
    request_body = patchday_types::api::AgentStatusRequest,
    responses((status = 200, description = "Done (the body is `null`)"))
)]
pub async fn status(
    State(s): State<AppState>,
    _place: Admitted, // issue 10: before the body, its signature and the database
    SignedHost { who, body, .. }: SignedHost<AgentStatusRequest>,
) -> ApiResult<Json<()>> {
    let error = body.error.map(|mut e| {
        if e.len() > MAX_AGENT_ERROR {
            let mut end = MAX_AGENT_ERROR;
            while !e.is_char_boundary(end) {
                end -= 1;
            }
            e.truncate(end);
        }
        e
    });
    if let Some(e) = &error {
        // Debug formatting: the agent's text reaches the log with controls escaped.
        tracing::warn!(tenant = %who.tenant, host = %who.host, error = ?e, "agent reports a failed run");
    }
    s.store
        .tenant(&who.tenant)
        .await?
        .set_agent_error(&who.host, error.as_deref(), s.clock.now())
        .await?;
    s.push.access_changed(); // issue 14: an agent error can change compliance
    Ok(Json(()))
}

// ---- Finding 3 (issue 8): enrolment tokens expire, run out and are revoked ----

/// Takes one use of an enrolment token: its tenant and group, or a 401 that says why not
/// and what to do.
async fn redeem(
    s: &AppState,
    src: &crate::auth::Source,
    token: &str,
) -> ApiResult<(patchday_types::TenantId, Option<patchday_types::GroupId>)> {
    use patchday_store::EnrollGrant;
    let ask = "ask the tenant admin for a new one (`patchday enroll-token create --tenant T`)";
    // Known tokens that no longer work (expired, revoked, used up) are plain 401s: a
    // batch enrolment running past its token's uses is not guessing.
    let refuse = |m: String| Err(ApiError::new(ErrorCode::Unauthorized, m));
    match s.store.redeem_enroll_token(&hash_secret(token), s.clock.now()).await? {
        EnrollGrant::Granted { tenant, group } => Ok((tenant, group)),
        // Finding 9: an unknown token is a guess, counted as a failed login from its address.
        EnrollGrant::Unknown => Err(src.failed(
            s,
            "/v1/agent/enroll",
            &format!("unknown enrolment token: {ask}"),
        )),
        EnrollGrant::Expired { at } => refuse(format!("enrolment token expired at {at}: {ask}")),
        EnrollGrant::Revoked { at } => {
            refuse(format!("enrolment token was revoked at {at}: {ask}"))
        }
        EnrollGrant::UsedUp { max_uses } => refuse(format!(
            "enrolment token is used up (it allowed {max_uses} enrolment(s)): {ask}, with --uses N for several hosts"
        )),
        EnrollGrant::GroupRemoved { group } => refuse(format!(
            "the group {group} this enrolment token enrols into was removed: {ask}"
        )),
        // Finding 4: the same refusal as the host insert's own quota check.
        EnrollGrant::QuotaFull { tenant, max_hosts } => Err(ApiError::conflict(format!(
            "tenant {tenant} has reached its quota of {max_hosts} host(s): remove hosts \
             (`patchday host remove`) or raise it (`patchday tenant set {tenant} --max-hosts N`)"
        ))),
    }
}

/// Ids of the updates that may apply to a host with this inventory (issue 9, point 6).
fn relevant_ids(
    catalog: &patchday_core::applicability::CatalogIndex,
    inventory: &patchday_types::Inventory,
) -> Vec<patchday_types::UpdateId> {
    catalog
        .relevant(inventory)
        .into_iter()
        .map(|u| u.id.clone())
        .collect()
}
