//! Catalog intake: an uploaded TUF repository is unpacked into a staging directory,
//! verified against the pinned root (with a copy of the trusted datastore, so a
//! refused push changes nothing), cross-checked (every update document's payloads
//! exist and their signed descriptions agree), and only then stored.

use crate::error::ApiError;
use crate::state::AppState;
use anyhow::Context;
use patchday_store::{CatalogRecord, CatalogTarget};
use patchday_types::api::{CatalogStatus, ErrorCode};
use patchday_types::{TargetCustom, UpdateDocument};
use std::path::{Path, PathBuf};

fn catalog_dir(data: &Path) -> PathBuf {
    data.join("catalog")
}

/// Path where servers before issue 12 kept the pinned root (adopted into the store).
fn legacy_pinned_root(data: &Path) -> PathBuf {
    catalog_dir(data).join("root.json")
}

/// Pins the catalog root given at start in the store (issue 12, point 1: the store holds
/// the server's trust, so every replica and every restore has it); refuses a different
/// root later. A root pinned by an older server as a file is adopted first.
pub async fn pin_root(
    store: &dyn patchday_store::Store,
    data: &Path,
    root: Option<&Path>,
) -> anyhow::Result<()> {
    let dir = catalog_dir(data);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let legacy = legacy_pinned_root(data);
    if store.pinned_root().await?.is_none() {
        if let Ok(old) = std::fs::read(&legacy) {
            store.pin_root(&old).await?;
            tracing::info!(path = %legacy.display(), "pinned catalog root moved into the database");
        }
    }
    let _ = std::fs::remove_file(&legacy);
    let Some(root) = root else { return Ok(()) };
    let new =
        std::fs::read(root).with_context(|| format!("reading catalog root {}", root.display()))?;
    serde_json::from_slice::<serde_json::Value>(&new).with_context(|| {
        format!(
            "{} is not JSON: pass the catalog's metadata/1.root.json",
            root.display()
        )
    })?;
    store.pin_root(&new).await.map_err(|e| match e {
        patchday_store::StoreError::Refused(m) => anyhow::anyhow!("{m}"),
        e => e.into(),
    })
}

/// The pinned root, or the 409 that says how to pin one.
pub async fn pinned_root(store: &dyn patchday_store::Store) -> Result<Vec<u8>, ApiError> {
    store.pinned_root().await?.ok_or_else(|| {
        ApiError::conflict(
            "this server has no pinned catalog root: restart it once with --catalog-root PATH/TO/1.root.json",
        )
    })
}

/// The newest catalog root this server trusts: the one its last accepted push ended
/// on, or the pinned one before any push.
pub async fn newest_trusted_root(store: &dyn patchday_store::Store) -> Result<Vec<u8>, ApiError> {
    let trusted = store.trusted_metadata().await?;
    match trusted.into_iter().find(|(name, _)| name == "root.json") {
        Some((_, bytes)) => Ok(bytes),
        None => pinned_root(store).await,
    }
}

fn rejected(m: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::CatalogRejected, m)
}

/// Unpacks a tar of `metadata/` and `targets/` into `dest`, refusing anything else
/// (links, devices, absolute or `..` paths, other top-level folders).
fn unpack(tar_path: &Path, dest: &Path) -> Result<(), ApiError> {
    let f = std::fs::File::open(tar_path).map_err(ApiError::internal)?;
    let mut ar = tar::Archive::new(f);
    let entries = ar
        .entries()
        .map_err(|e| rejected(format!("upload is not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| {
            rejected(format!(
                "upload is not a valid tar archive (truncated?): {e}"
            ))
        })?;
        let path = entry
            .path()
            .map_err(|e| rejected(format!("bad path in upload: {e}")))?
            .into_owned();
        let kind = entry.header().entry_type();
        let mut comps = path.components();
        let top = comps.next();
        let ok_top = matches!(top, Some(std::path::Component::Normal(t)) if t == "metadata" || t == "targets");
        let rest: Vec<_> = comps.collect();
        if !ok_top
            || rest
                .iter()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(rejected(format!(
                "upload contains {:?}: only metadata/ and targets/ files are accepted",
                path
            )));
        }
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() || rest.len() != 1 {
            return Err(rejected(format!("upload contains {:?}: only plain files directly in metadata/ and targets/ are accepted", path)));
        }
        let out = dest.join(&path);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(ApiError::internal)?;
        }
        entry
            .unpack(&out)
            .map_err(|e| rejected(format!("cannot unpack {:?}: {e}", path)))?;
    }
    Ok(())
}

/// A stored trusted-state file name as a plain file name (never a path).
fn safe_name(name: &str) -> Result<&str, ApiError> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(ApiError::internal(format!(
            "the stored trusted catalog state names a file {name:?}"
        )));
    }
    Ok(name)
}

/// Verifies and stores an uploaded catalog (a tar file on disk).
pub async fn intake(state: &AppState, tar_path: &Path) -> Result<CatalogStatus, ApiError> {
    intake_with(state, tar_path, None).await
}

/// What a scheduled mirror run commits with the catalog it made (issue 12, point 1).
#[derive(Clone, Debug)]
pub struct MirrorCommit {
    /// The mirror's progress after the run (the server's encoding).
    pub progress: Vec<u8>,
    /// The snapshot version of the served catalog the run built its working catalog
    /// from: the catalog is stored only while that is still the stored one.
    pub based_on_snapshot: u64,
}

/// [`intake`], storing the scheduled mirror's progress (after the run that made this
/// catalog) in the same transaction as the catalog rows, and only onto the catalog the
/// run started from (issue 12, point 1).
async fn intake_with(
    state: &AppState,
    tar_path: &Path,
    mirror: Option<MirrorCommit>,
) -> Result<CatalogStatus, ApiError> {
    let _guard = state.catalog_lock.lock().await;
    let data = &state.config.data_dir;
    let pinned = pinned_root(state.store.as_ref()).await?;
    let staging = tempdir_in(&catalog_dir(data))?;
    let stage = staging.path().to_path_buf();
    let tar = tar_path.to_path_buf();
    let stage2 = stage.clone();
    tokio::task::spawn_blocking(move || unpack(&tar, &stage2))
        .await
        .map_err(ApiError::internal)??;

    // Issue 12, point 1: the trusted client state comes from the store; the push is
    // verified in a copy of it, and what the copy ends on is stored with the catalog in
    // one transaction (no file beside the database to disagree with it).
    let trusted = state.store.trusted_metadata().await?;
    let root = stage.join("pinned-root.json");
    std::fs::write(&root, &pinned).map_err(ApiError::internal)?;
    let trial_ds = stage.join("datastore");
    std::fs::create_dir_all(&trial_ds).map_err(ApiError::internal)?;
    for (name, bytes) in &trusted {
        std::fs::write(trial_ds.join(safe_name(name)?), bytes).map_err(ApiError::internal)?;
    }
    let meta = stage.join("metadata");
    let targets = stage.join("targets");
    if let Some(online) = &state.config.online_timestamp {
        let trusted_timestamp = trusted
            .iter()
            .find(|(n, _)| n == "timestamp.json")
            .map(|(_, b)| b.clone());
        // Sign under the root the push ends on (it may rotate the timestamp key); it is
        // only used to pick the key id here, and verified with everything else below.
        let signing_root = match std::fs::read(meta.join("root.json")) {
            Ok(r) => r,
            Err(_) => newest_trusted_root(state.store.as_ref()).await?,
        };
        crate::freshness::sign_pushed(
            online,
            &signing_root,
            &meta,
            trusted_timestamp.as_deref(),
            state.clock.now(),
        )
        .await?;
    }
    // Issue 9, point 6: the metadata whole, then only the target files the upload carries
    // (each checked against its signed length and sha256 below); the rest must already be
    // in the content store.
    let verified = patchday_trust::verify_metadata_at(&root, &trial_ds, &meta, state.clock.now())
        .await
        .map_err(|e| rejected(e.to_string()))?;

    let evicted = crate::cleanup::evicted_digests(state.store.as_ref()).await?;
    let resumable = crate::resume::held(data);
    // Cross-check update documents against the payload targets they name.
    let mut updates = Vec::new();
    let mut record_targets = Vec::new();
    let mut payloads = 0u64;
    for (name, info) in &verified.targets {
        let custom: TargetCustom = serde_json::from_value(info.custom.clone()).map_err(|e| {
            rejected(format!(
                "target {name}: signed custom data is not a Patchday description ({e})"
            ))
        })?;
        let path = verified
            .target_path(&targets, name)
            .map_err(|e| rejected(e.to_string()))?;
        let custom_counter = custom.release_counter();
        // Issue 9, point 6: a push carries only the files the server lacks
        // (`/v1/catalog/missing`); the others must be in the content store already.
        let uploaded = path.exists();
        // Issue 10, point 7: a payload the cleanup evicted stays out; it is neither
        // asked for nor missed (an update document is never evicted).
        let evicted =
            matches!(custom, TargetCustom::Payload { .. }) && evicted.contains(&info.sha256);
        // Issue 12, point 4: a file kept from a cut-off push goes into the content store
        // (its digest checked again there, its length just below).
        if !uploaded && !evicted && resumable.contains(&info.sha256) {
            crate::resume::take(state, &info.sha256).await?;
        }
        if uploaded {
            patchday_trust::check_target_file(name, info, &path)
                .map_err(|e| rejected(e.to_string()))?;
        } else if !evicted && state.content.len(&info.sha256).await? != Some(info.length) {
            return Err(rejected(format!(
                "target {name} is neither in the upload nor on the server: push again (`patchday catalog push` asks the server what it lacks)"
            )));
        }
        match custom {
            TargetCustom::Update { id } => {
                let bytes = if uploaded {
                    patchday_trust::read_verified_target(&verified, &targets, name)
                        .await
                        .map_err(|e| rejected(e.to_string()))?
                } else {
                    stored_bytes(state, name, &info.sha256, info.length).await?
                };
                let doc: UpdateDocument = serde_json::from_slice(&bytes)
                    .map_err(|e| rejected(format!("update document {name} is not valid: {e}")))?;
                if doc.id != id || name != &UpdateDocument::target_name(&doc.id) {
                    return Err(rejected(format!(
                        "update document {name} carries id {} but is signed as {id}",
                        doc.id
                    )));
                }
                if doc.payloads.is_empty() {
                    return Err(rejected(format!("update {id} names no payload")));
                }
                for p in &doc.payloads {
                    let t = verified.targets.get(&p.target).ok_or_else(|| {
                        rejected(format!(
                            "update {id} names payload {} which the catalog does not list",
                            p.target
                        ))
                    })?;
                    let signed: TargetCustom = serde_json::from_value(t.custom.clone())
                        .map_err(|e| rejected(format!("payload {}: {e}", p.target)))?;
                    if !signed.describes(p) {
                        return Err(rejected(format!(
                            "update {id}: payload {} is signed as {:?} but the update document says otherwise",
                            p.target, signed
                        )));
                    }
                }
                updates.push(doc);
            }
            TargetCustom::Payload { .. } => payloads += 1,
        }
        if uploaded && !evicted {
            state.content.put_file(&path, &info.sha256).await?;
        }
        record_targets.push(CatalogTarget {
            name: name.clone(),
            length: info.length,
            sha256: info.sha256.clone(),
            release_counter: custom_counter,
        });
    }
    let mut metadata = Vec::new();
    for e in std::fs::read_dir(&meta).map_err(ApiError::internal)? {
        let e = e.map_err(ApiError::internal)?;
        let bytes = std::fs::read(e.path()).map_err(ApiError::internal)?;
        metadata.push((e.file_name().to_string_lossy().into_owned(), bytes));
    }
    let status = CatalogStatus {
        root_version: verified.root_version,
        targets_version: verified.targets_version,
        snapshot_version: verified.snapshot_version,
        timestamp_version: verified.timestamp_version,
        updates: updates.len() as u64,
        payloads,
        ..Default::default()
    };
    let mut trusted_after = Vec::new();
    for e in std::fs::read_dir(&trial_ds).map_err(ApiError::internal)? {
        let e = e.map_err(ApiError::internal)?;
        let bytes = std::fs::read(e.path()).map_err(ApiError::internal)?;
        trusted_after.push((e.file_name().to_string_lossy().into_owned(), bytes));
    }
    let updates_ids: Vec<patchday_types::UpdateId> = updates.iter().map(|u| u.id.clone()).collect();
    state
        .store
        .replace_catalog(&CatalogRecord {
            status: status.clone(),
            updates,
            targets: record_targets,
            metadata,
            trusted: trusted_after,
            mirror_progress: mirror.as_ref().map(|m| m.progress.clone()),
            based_on_snapshot: mirror.as_ref().map(|m| m.based_on_snapshot),
        })
        .await?;
    // Issue 8, finding 15: a server killed here has committed the catalog and its trust
    // together; the staging directory is removed at the next start.
    failpoint("catalog-after-commit");
    // Issue 10, point 1: when each update was first published, for time-to-install. The
    // catalog is in by now; a failure here costs only that figure, so it is logged.
    if let Err(e) = state
        .store
        .note_published(&updates_ids, state.clock.now())
        .await
    {
        tracing::warn!(error = %e, "could not record the publication time of new updates");
    }
    tracing::info!(
        targets = status.targets_version,
        updates = status.updates,
        "catalog accepted"
    );
    // Issue 10, point 6 (push): new updates, supersedence, payloads: every agent checks in.
    state.push.everyone();
    Ok(status)
}

/// The listed targets among `names`, by name.
pub async fn targets_by_name(
    store: &dyn patchday_store::Store,
    names: &[String],
) -> patchday_store::Result<std::collections::HashMap<String, CatalogTarget>> {
    Ok(store
        .catalog_targets(names)
        .await?
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect())
}

/// A small target (an update document) the server already holds, read back and checked
/// against its signed length and sha256.
pub(crate) async fn stored_bytes(
    state: &AppState,
    name: &str,
    sha256: &str,
    length: u64,
) -> Result<Vec<u8>, ApiError> {
    use tokio::io::AsyncReadExt;
    const MAX_DOCUMENT: u64 = 4 << 20;
    if length > MAX_DOCUMENT {
        return Err(rejected(format!(
            "update document {name} is {length} bytes, more than {MAX_DOCUMENT}"
        )));
    }
    let mut reader = state.content.open_verified(sha256, 0).await?;
    let mut bytes = Vec::new();
    reader
        .reader
        .read_to_end(&mut bytes)
        .await
        .map_err(ApiError::internal)?;
    if bytes.len() as u64 != length {
        return Err(rejected(format!(
            "the server's copy of {name} has {} bytes, the catalog signs {length}: push it again",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// A temporary directory under `parent`, removed on drop.
pub fn tempdir_in(parent: &Path) -> Result<TempDir, ApiError> {
    std::fs::create_dir_all(parent).map_err(ApiError::internal)?;
    let mut b = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    let p = parent.join(format!("staging-{}", hex::encode(b)));
    std::fs::create_dir(&p).map_err(ApiError::internal)?;
    Ok(TempDir(p))
}

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// Issue 8, finding 15: the trusted catalog state and the database commit.
//
// `catalog/datastore` is a symlink to `catalog/states/<name>`. A push verifies in a
// staging copy, moves the new state to `states/<name>` (fsynced), commits the database,
// then points the symlink at it with one atomic rename. A server killed anywhere in
// between finds at start (`recover`) the state the database committed: the state whose
// timestamp version is the newest not above the database's; uncommitted states and
// staging directories are removed.

fn states_dir(data: &Path) -> PathBuf {
    catalog_dir(data).join("states")
}

/// Exits the process at a named point when `PATCHDAY_FAILPOINT` names it (crash tests).
pub fn failpoint(name: &str) {
    if std::env::var("PATCHDAY_FAILPOINT").is_ok_and(|v| v == name) {
        tracing::error!(failpoint = name, "failpoint reached: exiting");
        std::process::exit(1);
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Moves a verified trial datastore to `states/<random>`, durably; returns its path.
fn prepare_state(data: &Path, trial: &Path) -> std::io::Result<PathBuf> {
    let states = states_dir(data);
    std::fs::create_dir_all(&states)?;
    let mut b = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    let dest = states.join(hex::encode(b));
    for e in std::fs::read_dir(trial)? {
        std::fs::File::open(e?.path())?.sync_all()?;
    }
    std::fs::rename(trial, &dest)?;
    sync_dir(&dest)?;
    sync_dir(&states)?;
    Ok(dest)
}

/// Points `catalog/datastore` at `state` (atomic rename of a symlink) and removes the
/// states it no longer needs.
fn commit_state(data: &Path, state: &Path) -> std::io::Result<()> {
    let dir = catalog_dir(data);
    let link = dir.join("datastore");
    let next = dir.join("datastore.next");
    let _ = std::fs::remove_file(&next);
    let name = state
        .file_name()
        .ok_or_else(|| std::io::Error::other("state directory has no name"))?;
    std::os::unix::fs::symlink(Path::new("states").join(name), &next)?;
    std::fs::rename(&next, &link)?;
    sync_dir(&dir)?;
    for e in std::fs::read_dir(states_dir(data))? {
        let e = e?;
        if e.file_name() != name {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    Ok(())
}

/// Timestamp version of a datastore directory (0 when it has none).
fn datastore_timestamp(dir: &Path) -> u64 {
    std::fs::read(dir.join("timestamp.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["signed"]["version"].as_u64())
        .unwrap_or(0)
}

/// At start: removes staging directories a killed push left behind, and moves a trusted
/// state that a server before issue 12 kept in files into the store (once; the files go).
pub async fn recover(data: &Path, store: &dyn patchday_store::Store) -> anyhow::Result<()> {
    settle_legacy(data, store).await?;
    let dir = catalog_dir(data);
    let link = dir.join("datastore");
    if let Ok(entries) = std::fs::read_dir(&link) {
        let mut files = Vec::new();
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_file()) {
                let bytes = std::fs::read(e.path())
                    .with_context(|| format!("reading {}", e.path().display()))?;
                files.push((e.file_name().to_string_lossy().into_owned(), bytes));
            }
        }
        if !files.is_empty() && store.adopt_trusted_metadata(&files).await? {
            tracing::info!("the trusted catalog state moved from files into the database");
        }
    }
    if std::fs::symlink_metadata(&link).is_ok_and(|m| m.is_dir()) {
        std::fs::remove_dir_all(&link)?;
    } else if std::fs::symlink_metadata(&link).is_ok() {
        std::fs::remove_file(&link)?;
    }
    let _ = std::fs::remove_dir_all(states_dir(data));
    Ok(())
}

/// The file layout of issue 8, finding 15 (before issue 12): makes the trusted datastore
/// the one the database committed, so that the right one is adopted.
async fn settle_legacy(data: &Path, store: &dyn patchday_store::Store) -> anyhow::Result<()> {
    let dir = catalog_dir(data);
    for parent in [dir.clone(), dir.join("incoming")] {
        let Ok(entries) = std::fs::read_dir(&parent) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("staging-") {
                tracing::info!(path = %e.path().display(), "removing a staging directory left by an interrupted push");
                std::fs::remove_dir_all(e.path())
                    .with_context(|| format!("removing {}", e.path().display()))?;
            }
        }
    }
    let link = dir.join("datastore");
    let _ = std::fs::remove_file(dir.join("datastore.next"));
    let _ = std::fs::remove_dir_all(dir.join("datastore.old"));
    // A datastore from before this protocol: adopt it as a state.
    if std::fs::symlink_metadata(&link).is_ok_and(|m| m.is_dir()) {
        let adopted = prepare_state(data, &link)?;
        commit_state(data, &adopted)?;
    }
    let committed = match store.catalog_metadata("timestamp.json").await? {
        Some(b) => serde_json::from_slice::<serde_json::Value>(&b)
            .ok()
            .and_then(|v| v["signed"]["version"].as_u64())
            .unwrap_or(0),
        None => 0,
    };
    let mut best: Option<(u64, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir(states_dir(data)) {
        for e in entries.flatten() {
            let v = datastore_timestamp(&e.path());
            if v <= committed && best.as_ref().is_none_or(|(b, _)| v > *b) {
                best = Some((v, e.path()));
            }
        }
    }
    let Some((version, state)) = best else {
        if let Ok(entries) = std::fs::read_dir(states_dir(data)) {
            for e in entries.flatten() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        return Ok(());
    };
    let current = std::fs::canonicalize(&link).ok();
    if current.as_deref() != std::fs::canonicalize(&state).ok().as_deref() {
        tracing::warn!(
            timestamp = version,
            "the trusted catalog state was behind the database (a push was interrupted): recovered"
        );
    }
    commit_state(data, &state)?;
    // A timestamp the server re-signed may be in the database but not yet here.
    if version < committed {
        if let Some(b) = store.catalog_metadata("timestamp.json").await? {
            patchday_trust::client::write_atomically(&link.join("timestamp.json"), &b)?;
        }
    }
    Ok(())
}

// Issue 9, point 1: the scheduled mirror's catalog goes through the same intake as a push.

/// Packs the catalog directory `repo_dir` (leaving out the target files whose sha256 is
/// in `held`: the server has them) and takes it in with [`intake`].
/// Issue 12, point 1: `mirror`'s progress is stored with the catalog in one transaction.
pub async fn intake_repo(
    state: &AppState,
    repo_dir: &Path,
    held: &std::collections::BTreeSet<String>,
    mirror: Option<MirrorCommit>,
) -> Result<CatalogStatus, ApiError> {
    let repo = repo_dir.to_path_buf();
    let held = held.clone();
    let packed =
        tokio::task::spawn_blocking(move || patchday_publish::pack::pack_except(&repo, &held))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| ApiError::internal(format!("{e:#}")))?;
    intake_with(state, packed.path(), mirror).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use patchday_store::Store;

    /// Issue 12, point 1: a data directory of a server before the trust moved into the
    /// store (pinned root and trusted state as files, the state behind the `datastore`
    /// symlink of finding 15) is adopted at the first start, and the files go.
    #[tokio::test]
    async fn a_file_kept_trust_is_adopted_into_the_store_once() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path();
        let store = patchday_store_sqlite::SqliteStore::open(&data.join("patchday.db"))
            .await
            .unwrap();
        let dir = catalog_dir(data);
        std::fs::create_dir_all(dir.join("states/s1")).unwrap();
        std::fs::write(dir.join("root.json"), b"{\"pinned\":1}").unwrap();
        std::fs::write(dir.join("states/s1/root.json"), b"{\"root\":2}").unwrap();
        std::fs::write(
            dir.join("states/s1/timestamp.json"),
            br#"{"signed":{"version":0}}"#,
        )
        .unwrap();
        std::os::unix::fs::symlink("states/s1", dir.join("datastore")).unwrap();

        pin_root(&store, data, None).await.unwrap();
        recover(data, &store).await.unwrap();
        assert_eq!(
            store.pinned_root().await.unwrap(),
            Some(b"{\"pinned\":1}".to_vec())
        );
        let trusted = store.trusted_metadata().await.unwrap();
        assert_eq!(trusted.len(), 2, "{trusted:?}");
        assert_eq!(
            newest_trusted_root(&store).await.unwrap(),
            b"{\"root\":2}".to_vec()
        );
        for gone in ["root.json", "datastore", "states"] {
            assert!(
                std::fs::symlink_metadata(dir.join(gone)).is_err(),
                "{gone} is still there"
            );
        }
        // A different root later is refused.
        let other = data.join("other-root.json");
        std::fs::write(&other, b"{\"other\":1}").unwrap();
        let e = pin_root(&store, data, Some(&other)).await.unwrap_err();
        assert!(e.to_string().contains("different catalog root"), "{e}");
    }
}
