//! Issue 14, points 1-3: which hosts may hold compliance access tokens, decided from
//! the report's own verdict (`routes::host_verdict`, `core::compliance::access`), for one
//! host (a token request) or every host of a tenant (the list the gates follow).

use crate::error::ApiError;
use crate::fleet_view::Evaluated;
use crate::state::AppState;
use patchday_core::applicability::CatalogIndex;
use patchday_store::TenantStore;
use patchday_types::api::{AccessList, HostAccess, HostCompliance, JwkSet};
use patchday_types::{HostId, UpdateId, UpdateState};
use sha2::{Digest, Sha256};

/// One host's access decision.
pub struct Decided {
    /// The host's compliance as the report shows it.
    pub compliance: HostCompliance,
    /// `Err(why)` when it may not hold a token.
    pub decision: Result<(), String>,
}

/// The decision for an evaluated host at `now`.
pub fn decide(
    s: &AppState,
    e: &Evaluated,
    catalog: &CatalogIndex,
    now: jiff::Timestamp,
) -> Decided {
    let v = crate::routes::host_verdict(e, s.config.stale_after(), now);
    let exploited = |u: &UpdateId| {
        catalog
            .get(u.as_str())
            .is_some_and(|doc| crate::rollout::known_exploited(s, doc))
    };
    let mut decision = patchday_core::compliance::access(&v.verdict, &e.statuses, &exploited);
    if decision.is_ok() && e.signing.public_key.is_none() {
        // Tokens are bound to the host key; a host without one cannot prove anything.
        decision = Err(
            "the host has no signing key (enrolled before signed check-ins): enrol it again".into(),
        );
    }
    Decided {
        compliance: v.verdict.state,
        decision,
    }
}

/// One host, evaluated now (a token request): its statuses from its stored inventory.
pub async fn evaluate_host(
    s: &AppState,
    tenant: &dyn TenantStore,
    host: &HostId,
) -> Result<(Evaluated, std::sync::Arc<CatalogIndex>), ApiError> {
    let record = tenant.host(host).await?;
    let signing = tenant.host_signing(host).await?;
    let catalog = s.catalog_index.index(s.store.as_ref()).await?;
    let approvals = tenant.list_approvals().await?;
    let inventory = tenant.inventory(host).await?;
    let statuses =
        crate::compliance::host_statuses(tenant, &record, &approvals, &catalog, inventory.as_ref())
            .await?
            .into_iter()
            .filter(|st| st.state != UpdateState::NotApplicable)
            .collect();
    Ok((
        Evaluated {
            host: record,
            signing,
            statuses,
            dpkg_broken: inventory.and_then(|i| i.dpkg_broken),
        },
        catalog,
    ))
}

/// The keys gates verify tokens with.
pub fn key_set(s: &AppState) -> JwkSet {
    JwkSet {
        keys: vec![s.access_key.public().clone()],
    }
}

/// Every host of `tenant` with its access, at `now` (the fleet view's stored
/// evaluations reused).
pub async fn tenant_list(
    s: &AppState,
    tenant: &dyn TenantStore,
    now: jiff::Timestamp,
) -> Result<AccessList, ApiError> {
    let (version, catalog) = s.catalog_index.versioned(s.store.as_ref()).await?;
    let mut hosts = Vec::new();
    let fleet =
        crate::fleet_view::FleetReader::open(tenant, &version, &catalog, &s.metrics).await?;
    for e in fleet.all().await? {
        let d = decide(s, &e, &catalog, now);
        hosts.push(HostAccess {
            host: e.host.id.clone(),
            hostname: e.host.hostname.clone(),
            allowed: d.decision.is_ok(),
            compliance: d.compliance,
            reason: d.decision.err(),
        });
    }
    hosts.sort_by(|a, b| a.host.cmp(&b.host));
    let keys = key_set(s);
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(&hosts).map_err(ApiError::internal)?);
    h.update(serde_json::to_vec(&keys).map_err(ApiError::internal)?);
    h.update(s.config.access_token_lifetime.as_secs().to_be_bytes());
    Ok(AccessList {
        tenant: tenant.id().clone(),
        generated_at: now.round(jiff::Unit::Second).unwrap_or(now),
        etag: hex::encode(&h.finalize()[..16]),
        token_lifetime_seconds: u64::try_from(s.config.access_token_lifetime.as_secs())
            .unwrap_or(0),
        keys,
        hosts,
    })
}
