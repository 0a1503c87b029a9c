//! What agents call: enrol, check in (inventory in, assignments out), report states.

use crate::auth::{new_secret, HostAuth};
use crate::compliance::host_statuses;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use patchday_store::hash_secret;
use patchday_types::api::{
    AssignmentEntry, CheckinRequest, CheckinResponse, EnrollRequest, EnrollResponse, ReportRequest,
};
use patchday_types::{HostId, UpdateDocument};

/// `POST /v1/agent/enroll`.
pub async fn enroll(
    State(s): State<AppState>,
    src: crate::auth::Source,
    Json(req): Json<EnrollRequest>,
) -> ApiResult<Json<EnrollResponse>> {
    src.allowed(&s)?; // issue 8, finding 9: failed enrolments count as failed logins
    let tenant_id = s
        .store
        .enroll_token_tenant(&hash_secret(&req.token))
        .await?
        .ok_or_else(|| {
            src.failed(
                &s,
                "/v1/agent/enroll",
                "unknown enrolment token: ask the tenant admin for one (`patchday enroll-token create --tenant T`)",
            )
        })?;
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
    tracing::info!(tenant = %tenant_id, host = %id, "host enrolled");
    let root = std::fs::read_to_string(crate::catalog::pinned_root(&s.config.data_dir)).ok();
    let key = s.director.key();
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
pub async fn checkin(
    State(s): State<AppState>,
    who: HostAuth,
    Json(req): Json<CheckinRequest>,
) -> ApiResult<Json<CheckinResponse>> {
    let tenant = s.store.tenant(&who.tenant).await?;
    tenant
        .save_inventory(&who.host, &req.inventory, s.clock.now())
        .await?;
    let host = tenant.host(&who.host).await?;
    let approvals = tenant.list_approvals().await?;
    let updates = s.store.catalog_updates().await?;
    // The inventory just received is the host's truth; no need to read it back.
    let statuses = host_statuses(
        tenant.as_ref(),
        &host,
        &approvals,
        &updates,
        Some(&req.inventory),
    )
    .await?;
    let assignments: Vec<AssignmentEntry> = statuses
        .into_iter()
        .filter(|st| st.is_assigned() && !st.missing.is_empty())
        .map(|st| AssignmentEntry {
            update: st.update,
            targets: st.missing,
            deadline: st.deadline,
        })
        .collect();
    let director = if assignments.is_empty() {
        None
    } else {
        Some(sign_assignments(&s, &who, &host, &req.inventory.architecture, &assignments).await?)
    };
    Ok(Json(CheckinResponse {
        assignments,
        poll_seconds: s.config.poll_seconds,
        director,
        director_certificate: s.director.certificate(),
    }))
}

/// Per-host director metadata naming every target of these assignments.
async fn sign_assignments(
    s: &AppState,
    who: &HostAuth,
    host: &patchday_store::HostRecord,
    architecture: &str,
    assignments: &[AssignmentEntry],
) -> ApiResult<String> {
    use patchday_trust::director::{expires_in, AssignedCustom, AssignedTarget, DirectorTargets};
    let now = s.clock.now();
    let names: Vec<String> = assignments
        .iter()
        .flat_map(|a| {
            std::iter::once(UpdateDocument::target_name(&a.update)).chain(a.targets.iter().cloned())
        })
        .collect();
    let listed: std::collections::HashMap<String, patchday_store::CatalogTarget> = s
        .store
        .catalog_targets(&names)
        .await?
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
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
        expires: expires_in(now, 3600).map_err(ApiError::internal)?,
        targets,
    };
    let bytes = s.director.key().sign(&signed).map_err(ApiError::internal)?;
    String::from_utf8(bytes).map_err(ApiError::internal)
}

/// `POST /v1/agent/report`.
pub async fn report(
    State(s): State<AppState>,
    who: HostAuth,
    Json(req): Json<ReportRequest>,
) -> ApiResult<Json<()>> {
    if req.states.len() > 10_000 {
        return Err(ApiError::bad_request("too many states in one report"));
    }
    let tenant = s.store.tenant(&who.tenant).await?;
    tenant
        .put_states(&who.host, &req.states, s.clock.now())
        .await?;
    Ok(Json(()))
}
