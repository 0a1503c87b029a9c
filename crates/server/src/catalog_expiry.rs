//! Catalog upkeep (issue 9, point 5): every role's expiry in `GET /v1/catalog` and
//! `/v1/health`, and a log line when a role comes within the warning time (and one
//! listing every role whenever the served catalog changes).

use crate::error::ApiError;
use crate::state::AppState;
use patchday_core::catalog_expiry::{judge, warning};
use patchday_types::api::{ExpiryState, RoleExpiry};
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

/// Every role of the served catalog, judged at the server's `now`, with the warnings.
pub async fn roles(state: &AppState) -> Result<(Vec<RoleExpiry>, Vec<String>), ApiError> {
    let root = crate::catalog::newest_trusted_root(state.store.as_ref())
        .await
        .ok();
    // `role_expiries` walks timestamp → snapshot → targets roles with a plain lookup;
    // fill a cache from the store round by round (one round per level).
    let mut cache: HashMap<String, Option<Vec<u8>>> = HashMap::new();
    let mut found = Vec::new();
    for _ in 0..4 {
        let missing = RefCell::new(Vec::new());
        found =
            patchday_trust::expiry::role_expiries(root.as_deref(), |name| match cache.get(name) {
                Some(b) => b.clone(),
                None => {
                    missing.borrow_mut().push(name.to_string());
                    None
                }
            });
        let missing = missing.into_inner();
        if missing.is_empty() {
            break;
        }
        for name in missing {
            let bytes = state.store.catalog_metadata(&name).await?;
            cache.insert(name, bytes);
        }
    }
    let now = state.clock.now();
    let warn = state.config.expiry_warning;
    let roles: Vec<RoleExpiry> = found
        .iter()
        .map(|r| judge(&r.role, r.version, r.expires, &warn, now))
        .collect();
    let warnings = roles.iter().filter_map(|r| warning(r, now)).collect();
    Ok((roles, warnings))
}

/// Logs every role's expiry when the catalog changes, and warns (once per role
/// version and state) when one expires soon or expired. Runs forever.
pub async fn watch(state: AppState, every: std::time::Duration) {
    let mut seen: Option<Vec<(String, u64)>> = None;
    let mut warned: BTreeSet<(String, u64, String)> = BTreeSet::new();
    loop {
        match roles(&state).await {
            Ok((roles, _)) => {
                let versions: Vec<(String, u64)> =
                    roles.iter().map(|r| (r.role.clone(), r.version)).collect();
                if !roles.is_empty() && seen.as_ref() != Some(&versions) {
                    let list: Vec<String> = roles
                        .iter()
                        .map(|r| format!("{} v{} until {}", r.role, r.version, r.expires))
                        .collect();
                    tracing::info!(roles = %list.join(", "), "catalog expiries");
                    seen = Some(versions);
                }
                let now = state.clock.now();
                for r in &roles {
                    if r.state == ExpiryState::Ok {
                        continue;
                    }
                    let key = (r.role.clone(), r.version, r.state.to_string());
                    if warned.insert(key) {
                        if let Some(w) = warning(r, now) {
                            tracing::warn!(role = %r.role, expires = %r.expires, "{w}");
                            // Issue 11, point 5: and the notification targets.
                            crate::notify::enqueue(
                                &state,
                                crate::notify::event(
                                    patchday_types::notify::NotifyEvent::CatalogExpiring,
                                    format!("{}:{}:{}", r.role, r.version, r.state),
                                    None,
                                    w.clone(),
                                    serde_json::json!({ "role": r.role, "version": r.version, "expires": r.expires, "state": r.state }),
                                    now,
                                ),
                            )
                            .await;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e.message, "cannot read the catalog's expiries"),
        }
        tokio::time::sleep(every).await;
    }
}
