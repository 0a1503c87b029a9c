//! Client side: the TUF workflow against a pinned root, and payload checks.
//!
//! Time: tough checks expiry against the system clock (`SystemTime::now`) when it loads a
//! catalog, and records the latest time it saw in the datastore (`latest_known_time.json`),
//! refusing to go on if the clock later runs backwards. That is the one place where this crate
//! reads the clock instead of taking `now` as a parameter; it is tough's, and cannot be injected.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use jiff::Timestamp;
use sha2::{Digest, Sha256};
use tough::schema::{Root, Signed};
use tough::{
    ExpirationEnforcement, FilesystemTransport, Limits, Repository, RepositoryLoader, Transport,
    TransportError, TransportErrorKind, TransportStream,
};
use url::Url;

use crate::error::from_client_error;
use crate::names::check_target_name;
use crate::publish::{dir_url, stored_target_name};
use crate::TrustError;

/// What the catalog's signed targets metadata says about one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo {
    /// Exact length in bytes.
    pub length: u64,
    /// sha256 of the content, lower-case hex.
    pub sha256: String,
    /// The signed custom JSON object given at publishing.
    pub custom: serde_json::Value,
}

impl TargetInfo {
    /// The file name of this target in a catalog's `targets/` directory: `<sha256>.<name>`.
    pub fn stored_name(&self, name: &str) -> String {
        stored_target_name(name, &self.sha256)
    }
}

/// A catalog that passed the full TUF workflow against a pinned root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCatalog {
    /// Version of the newest trusted root.
    pub root_version: u64,
    /// Version of targets.json.
    pub targets_version: u64,
    /// Version of snapshot.json.
    pub snapshot_version: u64,
    /// Version of timestamp.json.
    pub timestamp_version: u64,
    /// When timestamp.json expires; re-fetch or re-sign before then.
    pub timestamp_expires: Timestamp,
    /// Every target by name.
    pub targets: BTreeMap<String, TargetInfo>,
}

impl VerifiedCatalog {
    /// The signed facts about one target, or [`TrustError::UnknownTarget`].
    pub fn target(&self, name: &str) -> Result<&TargetInfo, TrustError> {
        self.targets
            .get(name)
            .ok_or_else(|| TrustError::UnknownTarget {
                name: name.to_owned(),
            })
    }

    /// Path of a listed target inside `targets_dir` (checked by [`verify_repository`]).
    pub fn target_path(&self, targets_dir: &Path, name: &str) -> Result<PathBuf, TrustError> {
        Ok(targets_dir.join(self.target(name)?.stored_name(name)))
    }
}

/// Hard cap on any single metadata file, whatever length the (online-signed) snapshot claims.
pub const MAX_METADATA_FILE: u64 = 64 * 1024 * 1024;

/// Size caps on metadata, against endless-data attacks.
///
/// root.json 512 KiB, timestamp.json 64 KiB, snapshot.json 4 MiB, targets.json 64 MiB, at most
/// 256 root rotations. tough trusts snapshot's listed length for targets.json over
/// `max_targets_size`, so every fetch is also cut at [`MAX_METADATA_FILE`] by our transport.
pub fn metadata_limits() -> Limits {
    Limits {
        max_root_size: 512 * 1024,
        max_targets_size: 64 * 1024 * 1024,
        max_timestamp_size: 64 * 1024,
        max_snapshot_size: 4 * 1024 * 1024,
        max_root_updates: 256,
    }
}

/// Verifies a catalog in local directories (e.g. one just unpacked from an upload).
///
/// Runs the TUF client workflow from `pinned_root`: follows root rotations (`N.root.json`),
/// checks signatures, versions, hashes, lengths and expiry (by the system clock, see the module
/// docs), and keeps trusted metadata in `datastore` (created if missing; one per pinned catalog)
/// so a later call refuses rollback. Then checks every listed target file in `targets_dir`
/// (`<sha256>.<name>`) for length and sha256.
pub async fn verify_repository(
    pinned_root: &Path,
    datastore: &Path,
    metadata_dir: &Path,
    targets_dir: &Path,
) -> Result<VerifiedCatalog, TrustError> {
    let pinned = read_pinned_root(pinned_root)?;
    refuse_foreign_root(&pinned.parsed, metadata_dir)?;
    let root = trusted_root(pinned, datastore)?;
    let meta_url = dir_url(metadata_dir)?;
    // tough never reads targets while loading; an empty catalog may come without the directory.
    let targets_url = dir_url(targets_dir).or_else(|_| dir_url(metadata_dir))?;
    let repo = RepositoryLoader::new(&root, meta_url, targets_url)
        .transport(CappedTransport::new(Box::new(FilesystemTransport)))
        .limits(metadata_limits())
        .datastore(datastore)
        .expiration_enforcement(ExpirationEnforcement::Safe)
        .load()
        .await
        .map_err(|e| from_client_error(e, &|role| claimed_expiry(metadata_dir, role)))?;
    let catalog = to_catalog(&repo)?;
    for (name, info) in &catalog.targets {
        check_file(name, info, &targets_dir.join(info.stored_name(name)))?;
    }
    Ok(catalog)
}

/// Loads and verifies catalog metadata over a caller-given transport (the agent's HTTP client).
///
/// The same workflow as [`verify_repository`] without the target files: the agent downloads
/// payloads itself and checks them with [`check_payload`]. Expiry is judged by the system clock.
pub async fn load_remote(
    transport: impl tough::Transport + 'static,
    metadata_base: Url,
    targets_base: Url,
    pinned_root: &Path,
    datastore: &Path,
) -> Result<VerifiedCatalog, TrustError> {
    let pinned = read_pinned_root(pinned_root)?;
    let root = trusted_root(pinned, datastore)?;
    let repo = RepositoryLoader::new(&root, metadata_base, targets_base)
        .transport(CappedTransport::new(Box::new(transport)))
        .limits(metadata_limits())
        .datastore(datastore)
        .expiration_enforcement(ExpirationEnforcement::Safe)
        .load()
        .await
        .map_err(|e| from_client_error(e, &|_| None))?;
    to_catalog(&repo)
}

/// Checks a downloaded file against its signed length, then its sha256, reading it once.
///
/// Messages name the file by its file name; use [`check_target_file`] to name the target.
pub fn check_payload(info: &TargetInfo, path: &Path) -> Result<(), TrustError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    check_file(&name, info, path)
}

/// Like [`check_payload`], naming the target `name` in errors.
pub fn check_target_file(name: &str, info: &TargetInfo, path: &Path) -> Result<(), TrustError> {
    check_file(name, info, path)
}

/// Reads a verified target's bytes from `targets_dir` and checks them again as they are read.
///
/// For small targets such as update documents; the bytes returned are exactly the signed ones.
pub async fn read_verified_target(
    catalog: &VerifiedCatalog,
    targets_dir: &Path,
    name: &str,
) -> Result<Vec<u8>, TrustError> {
    let info = catalog.target(name)?.clone();
    let path = targets_dir.join(info.stored_name(name));
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || read_checked(&name, &info, &path))
        .await
        .map_err(|e| TrustError::Io {
            action: "read (task failed)",
            path: targets_dir.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?
}

/// Checks bytes already in memory against their signed length and sha256.
pub fn check_bytes(name: &str, info: &TargetInfo, bytes: &[u8]) -> Result<(), TrustError> {
    check_digest(name, info, bytes.len() as u64, &Sha256::digest(bytes))
}

fn check_digest(
    name: &str,
    info: &TargetInfo,
    length: u64,
    sha256: &[u8],
) -> Result<(), TrustError> {
    if length != info.length {
        return Err(TrustError::LengthMismatch {
            name: name.to_owned(),
            expected: info.length,
            actual: length,
        });
    }
    let actual = hex::encode(sha256);
    if actual != info.sha256 {
        return Err(TrustError::HashMismatch {
            name: name.to_owned(),
            expected: info.sha256.clone(),
            actual,
        });
    }
    Ok(())
}

fn open_target(name: &str, path: &Path) -> Result<std::fs::File, TrustError> {
    std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TrustError::TargetFileMissing {
            name: name.to_owned(),
            path: path.to_path_buf(),
        },
        _ => TrustError::io("open", path)(e),
    })
}

/// Streams `path`: length first (cheap, from metadata), then sha256 over at most length+1 bytes.
fn check_file(name: &str, info: &TargetInfo, path: &Path) -> Result<(), TrustError> {
    let file = open_target(name, path)?;
    let on_disk = file.metadata().map_err(TrustError::io("stat", path))?.len();
    if on_disk != info.length {
        return Err(TrustError::LengthMismatch {
            name: name.to_owned(),
            expected: info.length,
            actual: on_disk,
        });
    }
    let mut hasher = Sha256::new();
    let mut read = 0u64;
    let mut limited = file.take(info.length.saturating_add(1));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = limited
            .read(&mut buf)
            .map_err(TrustError::io("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
        read += n as u64;
    }
    check_digest(name, info, read, &hasher.finalize())
}

fn read_checked(name: &str, info: &TargetInfo, path: &Path) -> Result<Vec<u8>, TrustError> {
    let file = open_target(name, path)?;
    let mut bytes = Vec::new();
    file.take(info.length.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(TrustError::io("read", path))?;
    check_bytes(name, info, &bytes)?;
    Ok(bytes)
}

/// Cuts every fetched file off at [`MAX_METADATA_FILE`] bytes.
#[derive(Debug, Clone)]
struct CappedTransport {
    inner: Box<dyn Transport>,
}

impl CappedTransport {
    fn new(inner: Box<dyn Transport>) -> Self {
        CappedTransport { inner }
    }
}

/// The cause put into a [`tough::TransportError`] when a file passes [`MAX_METADATA_FILE`].
#[derive(Debug, thiserror::Error)]
#[error("more than {max} bytes")]
pub(crate) struct OverCap {
    pub(crate) max: u64,
}

#[tough::async_trait]
impl Transport for CappedTransport {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        let stream = self.inner.fetch(url.clone()).await?;
        let mut seen = 0u64;
        Ok(Box::pin(stream.map(move |chunk| {
            let bytes = chunk?;
            seen = seen.saturating_add(bytes.len() as u64);
            if seen > MAX_METADATA_FILE {
                return Err(TransportError::new_with_cause(
                    TransportErrorKind::Other,
                    url.clone(),
                    OverCap {
                        max: MAX_METADATA_FILE,
                    },
                ));
            }
            Ok(bytes)
        })))
    }
}

/// The pinned root's bytes and parsed form.
struct PinnedRoot {
    bytes: Vec<u8>,
    parsed: Signed<Root>,
}

fn read_pinned_root(path: &Path) -> Result<PinnedRoot, TrustError> {
    let bad = |detail: String| TrustError::BadPinnedRoot {
        path: path.to_path_buf(),
        detail,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    if bytes.len() as u64 > metadata_limits().max_root_size {
        return Err(bad("it is larger than the root size limit".into()));
    }
    let parsed: Signed<Root> =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a TUF root: {e}")))?;
    parsed
        .signed
        .verify_role(&parsed)
        .map_err(|e| bad(format!("not signed by its own root keys: {e}")))?;
    Ok(PinnedRoot { bytes, parsed })
}

/// A catalog whose `N.root.json` (N = the pinned version) is not the pinned root was made under
/// another root: say so plainly instead of reporting a signature failure further down.
fn refuse_foreign_root(pinned: &Signed<Root>, metadata_dir: &Path) -> Result<(), TrustError> {
    let version = pinned.signed.version.get();
    let Ok(bytes) = std::fs::read(metadata_dir.join(format!("{version}.root.json"))) else {
        return Ok(());
    };
    match serde_json::from_slice::<Signed<Root>>(&bytes) {
        Ok(theirs) if theirs.signed != pinned.signed => Err(TrustError::ForeignRoot { version }),
        // Same root, or unreadable: tough never fetches this file, so leave it to the workflow.
        _ => Ok(()),
    }
}

/// Where to start the root chain: the datastore's root when it is newer than the pinned one.
///
/// tough always starts from the root it is given and only writes the newest root to the
/// datastore; starting from the pinned root every time would let a catalog that drops the later
/// `N.root.json` files fall back to old (maybe revoked) keys. So we start from what we trusted last.
fn trusted_root(pinned: PinnedRoot, datastore: &Path) -> Result<Vec<u8>, TrustError> {
    std::fs::create_dir_all(datastore).map_err(TrustError::io("create datastore", datastore))?;
    let stored = datastore.join("root.json");
    let Ok(bytes) = std::fs::read(&stored) else {
        return Ok(pinned.bytes);
    };
    match serde_json::from_slice::<Signed<Root>>(&bytes) {
        Ok(root)
            if root.signed.version > pinned.parsed.signed.version
                && root.signed.verify_role(&root).is_ok() =>
        {
            Ok(bytes)
        }
        _ => Ok(pinned.bytes),
    }
}

fn to_catalog(repo: &Repository) -> Result<VerifiedCatalog, TrustError> {
    let mut targets = BTreeMap::new();
    for (name, target) in repo.all_targets() {
        let name = name.raw().to_owned();
        check_target_name(&name)?;
        let custom = target
            .custom
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<serde_json::Map<_, _>>();
        targets.insert(
            name,
            TargetInfo {
                length: target.length,
                sha256: hex::encode(&*target.hashes.sha256),
                custom: serde_json::Value::Object(custom),
            },
        );
    }
    Ok(VerifiedCatalog {
        root_version: repo.root().signed.version.get(),
        targets_version: repo.targets().signed.version.get(),
        snapshot_version: repo.snapshot().signed.version.get(),
        timestamp_version: repo.timestamp().signed.version.get(),
        timestamp_expires: repo.timestamp().signed.expires,
        targets,
    })
}

/// The expiry a role's file claims (unverified, for the error message only).
fn claimed_expiry(metadata_dir: &Path, role: &str) -> Option<Timestamp> {
    let read = |file: String| -> Option<serde_json::Value> {
        let bytes = std::fs::read(metadata_dir.join(file)).ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let version_in = |doc: &serde_json::Value, file: &str| -> Option<u64> {
        doc.pointer(&format!("/signed/meta/{file}/version"))?
            .as_u64()
    };
    let doc = match role {
        "timestamp" => read("timestamp.json".into())?,
        "snapshot" => {
            let ts = read("timestamp.json".into())?;
            read(format!(
                "{}.snapshot.json",
                version_in(&ts, "snapshot.json")?
            ))?
        }
        "targets" => {
            let ts = read("timestamp.json".into())?;
            let snap = read(format!(
                "{}.snapshot.json",
                version_in(&ts, "snapshot.json")?
            ))?;
            read(format!(
                "{}.targets.json",
                version_in(&snap, "targets.json")?
            ))?
        }
        "root" => {
            let mut newest = None;
            for n in 1..=metadata_limits().max_root_updates {
                match read(format!("{n}.root.json")) {
                    Some(doc) => newest = Some(doc),
                    None => break,
                }
            }
            newest?
        }
        _ => return None,
    };
    doc.pointer("/signed/expires")?.as_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone)]
    struct Endless;

    #[tough::async_trait]
    impl Transport for Endless {
        async fn fetch(&self, _url: Url) -> Result<TransportStream, TransportError> {
            let chunk = tough::Bytes::from(vec![0u8; 1 << 16]);
            Ok(Box::pin(futures::stream::repeat(chunk).map(Ok)))
        }
    }

    #[tokio::test]
    async fn every_fetch_is_cut_at_the_metadata_cap() {
        let url = Url::parse("file:///catalog/metadata/9.targets.json").unwrap();
        let mut stream = CappedTransport::new(Box::new(Endless))
            .fetch(url)
            .await
            .unwrap();
        let mut total = 0u64;
        let err = loop {
            match stream.next().await.unwrap() {
                Ok(bytes) => total += bytes.len() as u64,
                Err(e) => break e,
            }
        };
        assert!(total <= MAX_METADATA_FILE);
        let cause = std::error::Error::source(&err).unwrap();
        assert!(cause.downcast_ref::<OverCap>().is_some());
    }

    #[test]
    fn bytes_are_checked_for_length_before_hash() {
        let info = TargetInfo {
            length: 3,
            sha256: hex::encode(Sha256::digest(b"abc")),
            custom: serde_json::json!({}),
        };
        check_bytes("x", &info, b"abc").unwrap();
        assert!(matches!(
            check_bytes("x", &info, b"abcd"),
            Err(TrustError::LengthMismatch { actual: 4, .. })
        ));
        assert!(matches!(
            check_bytes("x", &info, b"abd"),
            Err(TrustError::HashMismatch { .. })
        ));
    }
}
