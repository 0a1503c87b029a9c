//! Client side: the TUF workflow against a pinned root, and payload checks.
//!
//! Both entry points run [`crate::client::Updater`], the crate's own TUF client (the one the
//! conformance suite drives). Time: [`verify_repository_at`] and [`load_remote`] take `now`;
//! [`verify_repository`] (the server's catalog intake) reads the system clock in one place
//! (`system_now`). Every run records the latest time it trusts in the datastore
//! (`latest_known_time.json`) and refuses a time before it; see [`LoadTime`].

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use sha2::{Digest, Sha256};
use tough::Limits;
use url::Url;

use crate::client::{self, Updater};
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
/// 256 root rotations. Where a parent lists a file's length, that length is the cap, and no
/// fetch is ever read past [`MAX_METADATA_FILE`] bytes.
pub(crate) fn metadata_limits() -> Limits {
    Limits {
        max_root_size: 512 * 1024,
        max_targets_size: 64 * 1024 * 1024,
        max_timestamp_size: 64 * 1024,
        max_snapshot_size: 4 * 1024 * 1024,
        max_root_updates: client::MAX_ROOT_ROTATIONS,
    }
}

/// Verifies a catalog in local directories (e.g. one just unpacked from an upload).
///
/// Runs the TUF client workflow from `pinned_root`: follows root rotations (`N.root.json`),
/// checks signatures, versions, hashes, lengths and expiry (at `now`: the caller reads its clock; this library never does), and keeps
/// trusted metadata in `datastore` (created if missing; one per pinned catalog) so a later call
/// refuses rollback. The catalog's own snapshot and targets files are always read and checked,
/// never taken from the datastore. Then checks every listed target file in `targets_dir`
/// (`<sha256>.<name>`) for length and sha256.
pub async fn verify_repository_at(
    pinned_root: &Path,
    datastore: &Path,
    metadata_dir: &Path,
    targets_dir: &Path,
    now: Timestamp,
) -> Result<VerifiedCatalog, TrustError> {
    let catalog = verify_metadata_at(pinned_root, datastore, metadata_dir, now).await?;
    for (name, info) in &catalog.targets {
        check_file(name, info, &targets_dir.join(info.stored_name(name)))?;
    }
    Ok(catalog)
}

/// Like [`verify_repository_at`] for the metadata alone: the target files are the caller's
/// to check ([`check_target_file`]), e.g. only those an incremental upload carries while
/// the rest are already stored (issue 9, point 6).
pub async fn verify_metadata_at(
    pinned_root: &Path,
    datastore: &Path,
    metadata_dir: &Path,
    now: Timestamp,
) -> Result<VerifiedCatalog, TrustError> {
    let pinned = read_pinned_root(pinned_root)?;
    refuse_foreign_root(&pinned, metadata_dir)?;
    let meta_url = dir_url(metadata_dir)?;
    let transport = Box::new(crate::transport::FileTransport);
    run_client(
        transport,
        meta_url,
        &pinned,
        datastore,
        LoadTime::at(now),
        false,
    )
    .await
}

/// The times a remote catalog load judges expiry at and remembers (finding 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadTime {
    /// This host's clock: expiry is judged at it.
    pub now: Timestamp,
    /// A time signed data vouches for, such as the signing time of the director answer that
    /// came with this run. The datastore then remembers at most this time, so a clock that ran
    /// ahead once is not remembered (and does not lock the agent out once corrected), and a
    /// remembered time beyond it (written by a clock that ran ahead) is forgotten. A clock set
    /// back below what signed data vouched for is still refused.
    pub vouched: Option<Timestamp>,
}

impl LoadTime {
    /// Judged and remembered at `now` alone (no signed time to compare with).
    pub fn at(now: Timestamp) -> Self {
        LoadTime { now, vouched: None }
    }
}

/// Loads and verifies catalog metadata over a caller-given transport (the agent's HTTP client).
///
/// The same workflow as [`verify_repository`] without the target files: the agent downloads
/// payloads itself and checks them with [`check_payload`]. Metadata already trusted in
/// `datastore` that timestamp and snapshot still list is not fetched again. Expiry is judged at
/// `time.now`; see [`LoadTime`] for what the datastore remembers.
pub async fn load_remote(
    transport: impl crate::transport::Transport + 'static,
    metadata_base: Url,
    pinned_root: &Path,
    datastore: &Path,
    time: LoadTime,
) -> Result<VerifiedCatalog, TrustError> {
    let pinned = read_pinned_root(pinned_root)?;
    run_client(
        Box::new(transport),
        metadata_base,
        &pinned,
        datastore,
        time,
        true,
    )
    .await
}

async fn run_client(
    transport: Box<dyn crate::transport::Transport>,
    metadata_base: Url,
    pinned: &PinnedRoot,
    datastore: &Path,
    time: LoadTime,
    reuse_local: bool,
) -> Result<VerifiedCatalog, TrustError> {
    std::fs::create_dir_all(datastore).map_err(TrustError::io("create datastore", datastore))?;
    seed_trusted_root(pinned, datastore)?;
    record_time(datastore, time)?;
    let mut updater =
        Updater::new(transport, metadata_base, datastore, time.now)?.reuse_local(reuse_local);
    updater.refresh().await?;
    let delegated = updater.delegated_targets().await?;
    to_catalog(&updater, delegated)
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
            cause: std::io::Error::other(e.to_string()),
        })?
}

/// A target's length and sha256, checked as its bytes arrive (issue 10): a download is
/// hashed while it is written, so a payload is read once, not written and read back.
#[derive(Clone)]
pub struct TargetDigest {
    hasher: Sha256,
    length: u64,
}

impl Default for TargetDigest {
    fn default() -> Self {
        Self::new()
    }
}

impl TargetDigest {
    /// Nothing seen yet.
    pub fn new() -> Self {
        Self {
            hasher: Sha256::new(),
            length: 0,
        }
    }

    /// The bytes already in `path` (a partial download being resumed), read once.
    pub fn of_file(name: &str, path: &Path) -> Result<Self, TrustError> {
        Self::of_reader(open_target(name, path)?, path)
    }

    /// Every byte `r` gives (read from `path`, which errors name).
    fn of_reader(mut r: impl Read, path: &Path) -> Result<Self, TrustError> {
        let mut digest = Self::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = r.read(&mut buf).map_err(TrustError::io("read", path))?;
            if n == 0 {
                break;
            }
            digest.update(buf.get(..n).unwrap_or_default());
        }
        Ok(digest)
    }

    /// The next bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.length += bytes.len() as u64;
    }

    /// Bytes seen so far.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// All bytes seen: do they have the signed length and sha256 of `info`?
    pub fn check(self, name: &str, info: &TargetInfo) -> Result<(), TrustError> {
        check_digest(name, info, self.length, &self.hasher.finalize())
    }
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
    TargetDigest::of_reader(file.take(info.length.saturating_add(1)), path)?.check(name, info)
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

/// The pinned root's bytes, version and signed object.
struct PinnedRoot {
    bytes: Vec<u8>,
    version: u64,
    signed: serde_json::Value,
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
    let (version, signed) = client::self_signed_root(&bytes)
        .map_err(|e| bad(format!("not a TUF root signed by its own keys: {e}")))?;
    Ok(PinnedRoot {
        bytes,
        version,
        signed,
    })
}

/// A catalog whose `N.root.json` (N = the pinned version) is not the pinned root was made under
/// another root: say so plainly instead of reporting a signature failure further down.
fn refuse_foreign_root(pinned: &PinnedRoot, metadata_dir: &Path) -> Result<(), TrustError> {
    let version = pinned.version;
    let Ok(bytes) = std::fs::read(metadata_dir.join(format!("{version}.root.json"))) else {
        return Ok(());
    };
    match client::signed_part(&bytes) {
        Some(theirs) if theirs != pinned.signed => Err(TrustError::ForeignRoot { version }),
        // Same root, or unreadable: the client never fetches this file, so leave it be.
        _ => Ok(()),
    }
}

/// Where the root chain starts: the datastore's root when it is newer than the pinned one and
/// still signed by its own keys, else the pinned root (written into the datastore).
///
/// Starting from the pinned root every time would let a catalog that drops the later
/// `N.root.json` files fall back to old (maybe revoked) keys.
fn seed_trusted_root(pinned: &PinnedRoot, datastore: &Path) -> Result<(), TrustError> {
    let stored = datastore.join("root.json");
    let bytes = std::fs::read(&stored).ok();
    // The pinned root already stored as it is (every run after the first until a
    // rotation): nothing to write, so a run does not rewrite and sync the file each time.
    if bytes.as_deref() == Some(pinned.bytes.as_slice()) {
        return Ok(());
    }
    let newer = bytes
        .and_then(|bytes| client::self_signed_root(&bytes).ok())
        .is_some_and(|(version, _)| version > pinned.version);
    if newer {
        return Ok(());
    }
    client::write_atomically(&stored, &pinned.bytes)
}

/// How far the agent's clock may lag behind the time a signed answer vouches for (the
/// answer is signed after the agent read its clock, on another machine's clock).
const VOUCHED_SKEW: jiff::SignedDuration = jiff::SignedDuration::from_secs(300);

/// Refuses a `now` earlier than the latest time this datastore trusts, then remembers it.
///
/// Expiry is only as good as the clock: a clock set back would revive expired metadata. What
/// is remembered is `now`, or, when signed data vouches for a time, at most that time: a clock
/// that ran ahead is then never remembered, and a time remembered beyond the vouched one (by
/// a clock that ran ahead before) is dropped instead of locking the agent out (finding 12).
fn record_time(datastore: &Path, time: LoadTime) -> Result<(), TrustError> {
    let file = datastore.join("latest_known_time.json");
    let remembered = std::fs::read(&file)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Timestamp>(&bytes).ok());
    // The server signs its answer after the agent read its clock, and two machines' clocks
    // differ a little: a clock up to VOUCHED_SKEW behind the vouched time is not "set back".
    let floor = match (remembered, time.vouched) {
        (Some(latest), Some(vouched)) => Some(latest.min(vouched - VOUCHED_SKEW)),
        (latest, _) => latest,
    };
    if let Some(latest) = floor {
        if time.now < latest {
            return Err(TrustError::ClockSteppedBackward {
                now: time.now,
                latest,
            });
        }
    }
    let mut record = time.vouched.map_or(time.now, |v| v.min(time.now));
    if let Some(latest) = floor {
        record = record.max(latest);
    }
    let bytes = serde_json::to_vec(&record).map_err(|e| TrustError::Io {
        action: "serialise the time for",
        path: file.clone(),
        cause: std::io::Error::other(e),
    })?;
    client::write_atomically(&file, &bytes)
}

/// The top-level targets and those of delegated roles (issue 9: `mirror`, `tenant-<slug>`) as
/// Patchday's catalog model: flat names, sha256, custom object. Where two roles list one
/// name, the first in search order (top-level first) wins, as in [`Updater::target_info`].
fn to_catalog(
    updater: &Updater,
    delegated: Vec<(String, String, client::TargetFile)>,
) -> Result<VerifiedCatalog, TrustError> {
    let not_loaded = || TrustError::MalformedMetadata {
        role: "targets".into(),
        detail: "the refresh did not load it".into(),
    };
    let (timestamp_version, snapshot_version, targets_version, timestamp_expires) =
        updater.top_level_versions().ok_or_else(not_loaded)?;
    let mut targets = BTreeMap::new();
    let top = updater.top_level_targets().ok_or_else(not_loaded)?;
    let all = top.iter().chain(delegated.iter().map(|(_, n, t)| (n, t)));
    for (name, target) in all {
        if targets.contains_key(name) {
            continue;
        }
        check_target_name(name)?;
        let sha256 = target
            .hashes
            .get("sha256")
            .ok_or_else(|| TrustError::UnsupportedHash {
                name: name.clone(),
                algorithm: "(no sha256 listed)".into(),
            })?
            .to_ascii_lowercase();
        let custom = match &target.custom {
            Some(serde_json::Value::Object(map)) => serde_json::Value::Object(map.clone()),
            None => serde_json::Value::Object(serde_json::Map::new()),
            Some(_) => return Err(TrustError::CustomNotObject { name: name.clone() }),
        };
        targets.insert(
            name.clone(),
            TargetInfo {
                length: target.length,
                sha256,
                custom,
            },
        );
    }
    Ok(VerifiedCatalog {
        root_version: updater.root_version(),
        targets_version,
        snapshot_version,
        timestamp_version,
        timestamp_expires,
        targets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_pinned_root_is_written_once_and_replaces_a_damaged_copy() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let pinned = PinnedRoot {
            bytes: b"{\"pinned\": 1}".to_vec(),
            version: 1,
            signed: serde_json::Value::Null,
        };
        let stored = dir.path().join("root.json");
        seed_trusted_root(&pinned, dir.path()).unwrap();
        assert_eq!(std::fs::read(&stored).unwrap(), pinned.bytes);
        let first = std::fs::metadata(&stored).unwrap().ino();
        // A later run finds it as pinned: the file is left as it is (same inode, no
        // replacement written and synced).
        seed_trusted_root(&pinned, dir.path()).unwrap();
        assert_eq!(std::fs::metadata(&stored).unwrap().ino(), first);
        // A damaged copy (not a self-signed root of a newer version) is replaced.
        std::fs::write(&stored, b"{\"damaged\"").unwrap();
        seed_trusted_root(&pinned, dir.path()).unwrap();
        assert_eq!(std::fs::read(&stored).unwrap(), pinned.bytes);
    }
}
