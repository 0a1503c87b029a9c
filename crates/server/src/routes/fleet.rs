//! Read-only views across the fleet (issue 9, point 1: archive sync).
//!
//! `GET /v1/fleet/source-packages`: the source packages installed on at least one
//! enrolled host, with every installed source version, over the tenants the token may
//! see (a provider token sees all, a tenant token its own tenant). The mirror imports
//! newer versions of exactly these.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::auth::Operator;
use crate::error::ApiResult;
use crate::state::AppState;

/// Installed source packages across the visible fleet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FleetSourcePackages {
    /// Hosts whose inventory was read.
    pub hosts: u64,
    /// Source name → installed source versions.
    pub sources: BTreeMap<String, BTreeSet<String>>,
    /// Issue 9, point 4 (closure): binary name → installed versions, against which the
    /// mirror judges new dependencies.
    #[serde(default)]
    pub binaries: BTreeMap<String, BTreeSet<String>>,
}

/// `GET /v1/fleet/source-packages`.
#[utoipa::path(
    get,
    path = "/v1/fleet/source-packages",
    tag = "operator",
    responses((status = 200, description = "Installed source and binary packages across the visible fleet", body = FleetSourcePackages))
)]
pub async fn source_packages(
    State(s): State<AppState>,
    op: Operator,
) -> ApiResult<Json<FleetSourcePackages>> {
    let (hosts, sources, binaries) =
        crate::mirror_schedule::installed_sources(&s, |t| op.see(t).is_ok()).await?;
    Ok(Json(FleetSourcePackages {
        hosts,
        sources,
        binaries,
    }))
}
