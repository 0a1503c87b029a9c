//! The timestamp refresher: with the catalog's timestamp key online (and only that key),
//! the server signs the timestamp of every catalog pushed to it and re-signs it before
//! it expires, so an idle catalog stays fresh for agents while a stopped server (or a
//! frozen mirror) still shows up as a freeze within one timestamp lifetime.
//!
//! Versions come from the server alone (the trusted one plus one), so a push signed
//! offline never collides with a timestamp the server made in between.

use crate::error::ApiError;
use crate::state::AppState;
use jiff::{SignedDuration, Timestamp};
use patchday_trust::OnlineTimestamp;
use std::path::{Path, PathBuf};

/// The online timestamp key and how it is used.
#[derive(Clone, Debug)]
pub struct OnlineTimestampKey {
    /// The key file (mode 0600), the one the catalog's root names for `timestamp`.
    pub key: PathBuf,
    /// Lifetime of each signed timestamp.
    pub lifetime: SignedDuration,
    /// How often the refresher looks.
    pub check_every: std::time::Duration,
}

impl OnlineTimestampKey {
    /// Defaults: a day's lifetime, a look every minute.
    pub fn new(key: PathBuf) -> Self {
        OnlineTimestampKey {
            key,
            lifetime: SignedDuration::from_hours(24),
            check_every: std::time::Duration::from_secs(60),
        }
    }
}

/// The snapshot version a timestamp names, and its own version and expiry, unverified
/// (the caller verifies, or made it).
fn read_timestamp(bytes: &[u8]) -> Option<(u64, u64, Timestamp)> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let signed = &v["signed"];
    Some((
        signed["meta"]["snapshot.json"]["version"].as_u64()?,
        signed["version"].as_u64()?,
        signed["expires"].as_str()?.parse().ok()?,
    ))
}

/// Signs a timestamp over `<snapshot_version>.snapshot.json` in `meta_dir`-like storage.
async fn sign(
    online: &OnlineTimestampKey,
    root: &[u8],
    snapshot: &[u8],
    snapshot_version: u64,
    version: u64,
    now: Timestamp,
) -> Result<OnlineTimestamp, ApiError> {
    patchday_trust::sign_online_timestamp(
        root,
        snapshot,
        snapshot_version,
        &online.key,
        version,
        now,
        online.lifetime,
    )
    .await
    .map_err(|e| {
        // The cause names the key's path: it goes to the log, not to the client
        // (issue 8, finding 9).
        tracing::error!(error = %e, "the timestamp key cannot sign");
        ApiError::new(
            patchday_types::api::ErrorCode::CatalogRejected,
            "the server's timestamp key cannot sign this catalog's timestamp (the server log says why); give `patchday server --timestamp-key` the timestamp key the catalog root names",
        )
    })
}

/// At intake: replaces the pushed `timestamp.json` in `staged_meta` with one the server
/// signs over the pushed snapshot, numbered after both the pushed and the trusted one.
pub async fn sign_pushed(
    online: &OnlineTimestampKey,
    root: &[u8],
    staged_meta: &Path,
    trusted_timestamp: Option<&[u8]>,
    now: Timestamp,
) -> Result<(), ApiError> {
    let rejected = |m: String| ApiError::new(patchday_types::api::ErrorCode::CatalogRejected, m);
    let pushed_path = staged_meta.join("timestamp.json");
    let pushed = std::fs::read(&pushed_path)
        .map_err(|_| rejected("the upload has no metadata/timestamp.json".into()))?;
    let (snapshot_version, pushed_version, _) = read_timestamp(&pushed)
        .ok_or_else(|| rejected("metadata/timestamp.json is not a TUF timestamp".into()))?;
    let trusted_version = trusted_timestamp
        .and_then(read_timestamp)
        .map_or(0, |(_, v, _)| v);
    let snapshot_path = staged_meta.join(format!("{snapshot_version}.snapshot.json"));
    let snapshot = std::fs::read(&snapshot_path).map_err(|_| {
        rejected(format!(
            "the upload has no metadata/{snapshot_version}.snapshot.json, which its timestamp names"
        ))
    })?;
    let version = pushed_version.max(trusted_version).saturating_add(1);
    let t = sign(online, root, &snapshot, snapshot_version, version, now).await?;
    patchday_trust::client::write_atomically(&pushed_path, &t.bytes).map_err(ApiError::internal)
}

/// Re-signs the served timestamp when less than half its lifetime is left. Returns the
/// new version when it did.
pub async fn refresh_if_due(
    state: &AppState,
    online: &OnlineTimestampKey,
) -> Result<Option<u64>, ApiError> {
    let _guard = state.catalog_lock.lock().await;
    let Some(current) = state.store.catalog_metadata("timestamp.json").await? else {
        return Ok(None); // no catalog yet
    };
    let (snapshot_version, version, expires) = read_timestamp(&current)
        .ok_or_else(|| ApiError::internal("the stored timestamp.json is unreadable"))?;
    let now = state.clock.now();
    let half = online.lifetime / 2;
    if expires.duration_since(now) > half {
        return Ok(None);
    }
    let snapshot = state
        .store
        .catalog_metadata(&format!("{snapshot_version}.snapshot.json"))
        .await?
        .ok_or_else(|| {
            ApiError::internal(format!("{snapshot_version}.snapshot.json is missing"))
        })?;
    let root = crate::catalog::newest_trusted_root(state.store.as_ref()).await?;
    let t = sign(
        online,
        &root,
        &snapshot,
        snapshot_version,
        version.saturating_add(1),
        now,
    )
    .await?;
    let mut status = state.store.catalog_status().await?;
    status.timestamp_version = t.version;
    state
        .store
        // The server's own client state moves on too (in the same transaction), so the
        // next push is judged against it.
        .refresh_catalog_metadata(
            &status,
            &[("timestamp.json".into(), t.bytes.clone())],
            &[("timestamp.json".into(), t.bytes.clone())],
        )
        .await?;
    tracing::info!(version = t.version, expires = %t.expires, "timestamp re-signed");
    Ok(Some(t.version))
}

/// Runs [`refresh_if_due`] forever, every `check_every`.
pub async fn run(state: AppState, online: OnlineTimestampKey) {
    loop {
        // Issue 12, point 5: one replica at a time.
        if !crate::lease::hold(&state, crate::lease::TIMESTAMP, online.check_every).await {
            tokio::time::sleep(online.check_every).await;
            continue;
        }
        if let Err(e) = refresh_if_due(&state, &online).await {
            tracing::error!(error = %e.message, "the timestamp refresher failed; agents will see the catalog expire unless it recovers");
        }
        tokio::time::sleep(online.check_every).await;
    }
}

/// Checks at start that the key can sign for the catalog: a key the trusted root does
/// not name is only a warning, since rotating the timestamp key means starting the
/// server with the new key before the catalog whose root names it is pushed.
pub async fn check(
    online: &OnlineTimestampKey,
    store: &dyn patchday_store::Store,
) -> anyhow::Result<()> {
    patchday_trust::check_key_file_mode(&online.key)?;
    let Ok(root) = crate::catalog::newest_trusted_root(store).await else {
        return Ok(()); // no catalog root pinned yet: nothing to check against
    };
    if let Err(e) = patchday_trust::sign_online_timestamp(
        &root,
        b"{}",
        1,
        &online.key,
        1,
        Timestamp::UNIX_EPOCH,
        online.lifetime,
    )
    .await
    {
        tracing::warn!(
            key = %online.key.display(),
            error = %e,
            "--timestamp-key is not the timestamp key the trusted catalog root names: timestamps cannot be refreshed, and pushes are refused, until a catalog whose root names this key is pushed (a timestamp key rotation); otherwise pass the right key"
        );
    }
    Ok(())
}
