//! Content-addressed blobs: payload bytes keyed by their SHA-256.
//!
//! Owns: putting bytes in (verifying their digest), reading them back from an
//! offset (for HTTP Range). Must not touch: the database, trust decisions (callers
//! verify signatures before they put anything here).
//!
//! [`LocalDisk`] is the default backend; [`s3::S3Store`] keeps payloads in an
//! S3-compatible bucket through `object_store` (issue 12, point 3). Both pass the same
//! [`conformance`] suite.

pub mod conformance;
pub mod file_backed;
pub mod s3;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// A content store failure.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// The key is not a 64-character lowercase hex SHA-256.
    #[error("invalid content key {0:?}: expected a lowercase hex sha256")]
    BadKey(String),
    /// No blob with that digest.
    #[error("no content with sha256 {0}")]
    NotFound(String),
    /// The bytes do not hash to the expected digest.
    #[error(
        "content hashes to {actual}, expected {expected}: the source file changed or is corrupt"
    )]
    DigestMismatch {
        /// Expected digest.
        expected: String,
        /// Actual digest.
        actual: String,
    },
    /// The requested offset is past the end.
    #[error("offset {offset} is past the end of a {len}-byte blob")]
    BadRange {
        /// Requested offset.
        offset: u64,
        /// Blob length.
        len: u64,
    },
    /// A stored blob no longer hashes to its key; it was quarantined.
    #[error("stored content {expected} is damaged (it hashes to {actual}) and was quarantined: push the catalog again to repair it")]
    Damaged {
        /// Its key.
        expected: String,
        /// What the bytes hash to now.
        actual: String,
    },
    /// Issue 12, point 3: `--content` names no usable store.
    #[error("content store location {0}")]
    BadLocation(String),
    /// Issue 12, point 3: the object store answered with a failure, or not at all.
    #[error("object store {location}: cannot {op}: {}. ({detail})", kind.what_to_do())]
    S3 {
        /// `s3://bucket/prefix`.
        location: String,
        /// What was being done (`read`, `write`, `list`, ...).
        op: &'static str,
        /// What kind of failure.
        kind: S3Failure,
        /// The store's own words.
        detail: String,
    },
    /// The disk failed (full, permissions, ...).
    #[error("content store I/O at {path}: {source} (check free space and permissions)")]
    Io {
        /// Path involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Issue 12, point 3: the kinds of object store failure, each with what to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S3Failure {
    /// No answer: connection refused, name not resolved, timed out.
    Unreachable,
    /// The access key is unknown or its secret is wrong.
    Credentials,
    /// The key is valid but may not do this on the bucket.
    Denied,
    /// The bucket does not exist.
    BucketMissing,
    /// The object changed under a conditional request (handled inside the store).
    Changed,
    /// Anything else the store answered.
    Other,
}

impl S3Failure {
    /// Whether trying again later may succeed without an operator's change.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            S3Failure::Unreachable | S3Failure::Changed | S3Failure::Other
        )
    }

    fn what_to_do(self) -> &'static str {
        match self {
            S3Failure::Unreachable => "the endpoint does not answer (retryable): check --content-endpoint, the network and that the object store runs",
            S3Failure::Credentials => "the credentials were refused (fatal): check --content-access-key-id and the secret (--content-secret-file or AWS_SECRET_ACCESS_KEY)",
            S3Failure::Denied => "the key may not do this (fatal): grant it read, write and list on the bucket",
            S3Failure::BucketMissing => "the bucket does not exist (fatal): create it, or fix the bucket in --content s3://BUCKET/PREFIX",
            S3Failure::Changed => "the object changed while it was read (retryable)",
            S3Failure::Other => "the store refused the request (retryable if the store is busy)",
        }
    }
}

impl ContentError {
    /// Issue 12, point 3: whether the same call may succeed later without an operator's
    /// change (an unreachable or busy store), as against a fatal one (bad credentials, a
    /// missing bucket, a damaged blob).
    pub fn is_retryable(&self) -> bool {
        match self {
            ContentError::S3 { kind, .. } => kind.is_retryable(),
            ContentError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut
            ),
            _ => false,
        }
    }
}

/// A blob opened for reading from some offset.
pub struct BlobReader {
    /// Total length of the blob.
    pub len: u64,
    /// The bytes from the requested offset to the end.
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
    /// The whole blob, when it is held in memory (verified when it was read): a server
    /// sends a slice of it without copying or reading the disk (issue 10, point 8).
    pub whole: Option<bytes::Bytes>,
}

/// Content-addressed storage.
#[async_trait]
pub trait ContentStore: Send + Sync {
    /// Copies a file in, checking that it hashes to `sha256`. Idempotent.
    async fn put_file(&self, path: &Path, sha256: &str) -> Result<(), ContentError>;
    /// Length of a blob, or `None` when absent.
    async fn len(&self, sha256: &str) -> Result<Option<u64>, ContentError>;
    /// Opens a blob from `offset`.
    async fn open(&self, sha256: &str, offset: u64) -> Result<BlobReader, ContentError>;

    // Issue 8, finding 14: damaged blobs are found and set aside.
    /// Hashes a stored blob: `Ok(true)` when it matches its key, `Ok(false)` when damaged.
    async fn verify(&self, sha256: &str) -> Result<bool, ContentError>;
    /// Moves a damaged blob out of the way (kept for inspection, never served again);
    /// the next `put_file` with good bytes stores it anew.
    async fn quarantine(&self, sha256: &str) -> Result<(), ContentError>;
    /// Every stored key.
    async fn keys(&self) -> Result<Vec<String>, ContentError>;
    /// Like [`ContentStore::open`], after checking the blob against its key (hashed
    /// once, and again whenever the file changes): a damaged blob is quarantined and
    /// [`ContentError::Damaged`] returned, so its bytes are never served.
    async fn open_verified(&self, sha256: &str, offset: u64) -> Result<BlobReader, ContentError>;

    // Issue 10, point 7 (cleanup): payloads no host can need are removed.
    /// Removes a blob; returns the bytes it freed (`None` when it was not there).
    async fn remove(&self, sha256: &str) -> Result<Option<u64>, ContentError>;
    /// How many blobs the store holds and their bytes (quarantined ones left out).
    async fn usage(&self) -> Result<Usage, ContentError>;

    // Issue 12, point 3.
    /// Whether the store can be used now: reachable on every call, and written, read
    /// back and cleaned up (a probe object that is never listed as a blob) on the first
    /// call and then at most every [`WRITE_PROBE_EVERY`] for an object store, where a
    /// load balancer's readiness check each second would otherwise mean steady writes.
    async fn ready(&self) -> Result<(), ContentError>;
    /// Whether the blob is held and not known to be damaged, as cheaply as the store can
    /// tell (a push asks this for every payload of a catalog). By default the blob is
    /// checked against its key as [`ContentStore::open_verified`] does (cached until the
    /// file changes; a damaged blob is quarantined and is not held).
    async fn holds(&self, sha256: &str) -> Result<bool, ContentError> {
        match self.open_verified(sha256, 0).await {
            Ok(_) => Ok(true),
            Err(ContentError::NotFound(_) | ContentError::Damaged { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
    /// A URL that lets its holder GET the blob for `lifetime`, without other credentials,
    /// when the store can make one (an object store); `None` otherwise.
    async fn presigned_url(
        &self,
        sha256: &str,
        lifetime: std::time::Duration,
    ) -> Result<Option<url::Url>, ContentError> {
        check_key(sha256)?;
        let _ = lifetime;
        Ok(None)
    }
    /// Where the blobs are, for logs and status (no credentials).
    fn describe(&self) -> String;
}

/// How often an object store's readiness check writes its probe object; in between it
/// only reads (issue 12: `/v1/ready` behind a load balancer that asks every second).
pub const WRITE_PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// What a content store holds (issue 10, point 7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Blobs.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
}

fn check_key(k: &str) -> Result<(), ContentError> {
    if k.len() == 64
        && k.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(ContentError::BadKey(k.to_string()))
    }
}

/// Blobs as files under a directory: `ROOT/ab/abcdef...`.
pub struct LocalDisk {
    root: PathBuf,
    /// Blobs hashed and found good, with the file identity they had then.
    verified: std::sync::Mutex<std::collections::HashMap<String, FileStamp>>,
    /// Issue 10, point 8: small blobs held in memory after their verification, so that
    /// 10,000 hosts fetching the same payload cost one read and one hash, not 10,000.
    memory: std::sync::Mutex<MemoryCache>,
    /// One verification at a time: hosts asking for a blob nobody verified yet wait for
    /// the first one's hash instead of each hashing it (a thundering herd).
    verifying: tokio::sync::Mutex<()>,
}

/// Largest blob [`LocalDisk`] holds in memory.
pub const MEMORY_BLOB_MAX: u64 = 8 << 20;
/// Most bytes [`LocalDisk`] holds in memory; the least recently served blob goes first.
pub const MEMORY_TOTAL_MAX: u64 = 64 << 20;

/// Verified blobs in memory, each with the file identity it had when it was read.
#[derive(Default)]
struct MemoryCache {
    blobs: std::collections::HashMap<String, (FileStamp, bytes::Bytes, u64)>,
    total: u64,
    clock: u64,
}

impl MemoryCache {
    /// The blob, when it is held and its file has not changed since.
    fn get(&mut self, key: &str, stamp: FileStamp) -> Option<bytes::Bytes> {
        self.clock += 1;
        let clock = self.clock;
        match self.blobs.get_mut(key) {
            Some((s, b, used)) if *s == stamp => {
                *used = clock;
                Some(b.clone())
            }
            _ => None,
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some((_, b, _)) = self.blobs.remove(key) {
            self.total -= b.len() as u64;
        }
    }

    fn insert(&mut self, key: &str, stamp: FileStamp, bytes: bytes::Bytes) {
        self.remove(key);
        let len = bytes.len() as u64;
        while self.total + len > MEMORY_TOTAL_MAX {
            let Some(oldest) = self
                .blobs
                .iter()
                .min_by_key(|(_, (_, _, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.remove(&oldest);
        }
        self.clock += 1;
        self.total += len;
        self.blobs
            .insert(key.to_string(), (stamp, bytes, self.clock));
    }
}

/// A reader over an in-memory blob from `offset`.
fn memory_reader(bytes: bytes::Bytes, offset: u64) -> Result<BlobReader, ContentError> {
    let len = bytes.len() as u64;
    if offset > len {
        return Err(ContentError::BadRange { offset, len });
    }
    let mut cursor = std::io::Cursor::new(bytes.clone());
    cursor.set_position(offset);
    Ok(BlobReader {
        len,
        reader: Box::new(cursor),
        whole: Some(bytes),
    })
}

/// What changes whenever a file's bytes change (ctime cannot be set back by hand).
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    ctime: i64,
    ctime_nsec: i64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileStamp {
    fn of(m: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            ctime: m.ctime(),
            ctime_nsec: m.ctime_nsec(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        }
    }
}

impl LocalDisk {
    /// Uses (and creates) `root`.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, ContentError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|source| ContentError::Io {
            path: root.clone(),
            source,
        })?;
        Ok(Self {
            root,
            verified: Default::default(),
            memory: Default::default(),
            verifying: tokio::sync::Mutex::new(()),
        })
    }

    fn verified_stamp(&self, key: &str) -> Option<FileStamp> {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied()
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, MemoryCache> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_verified(&self, key: &str, stamp: Option<FileStamp>) {
        if stamp.is_none() {
            self.memory().remove(key);
        }
        let mut m = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        match stamp {
            Some(s) => m.insert(key.to_string(), s),
            None => m.remove(key),
        };
    }

    /// Hashes the blob; `Some(actual)` when it does not match its key.
    async fn mismatch(&self, sha256: &str) -> Result<Option<String>, ContentError> {
        let mut blob = self.open(sha256, 0).await?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = blob
                .reader
                .read(&mut buf)
                .await
                .map_err(io(&self.path(sha256)))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let actual = hex::encode(hasher.finalize());
        Ok((actual != sha256).then_some(actual))
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(&key[..2]).join(key)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ContentError + '_ {
    move |source| ContentError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[async_trait]
impl ContentStore for LocalDisk {
    async fn put_file(&self, src: &Path, sha256: &str) -> Result<(), ContentError> {
        check_key(sha256)?;
        let dest = self.path(sha256);
        if tokio::fs::try_exists(&dest).await.map_err(io(&dest))? {
            // A push repairs what it carries: a damaged copy is set aside and replaced.
            if self.verify(sha256).await? {
                return Ok(());
            }
            self.quarantine(sha256).await?;
        }
        let dir = self.root.join(&sha256[..2]);
        tokio::fs::create_dir_all(&dir).await.map_err(io(&dir))?;
        // Copy to a temporary name while hashing, then rename: a crash or a full
        // disk never leaves a blob under its final name with the wrong bytes.
        // A name of its own per put: two puts of one blob at once (two pushes, two
        // replicas in one process) must not write into each other's file.
        let tmp = dir.join(format!(
            ".{sha256}.tmp-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let mut input = tokio::fs::File::open(src).await.map_err(io(src))?;
        let mut out = tokio::fs::File::create(&tmp).await.map_err(io(&tmp))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let result: Result<(), ContentError> = async {
            loop {
                let n = input.read(&mut buf).await.map_err(io(src))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).await.map_err(io(&tmp))?;
            }
            out.sync_all().await.map_err(io(&tmp))?;
            let actual = hex::encode(hasher.finalize());
            if actual != sha256 {
                return Err(ContentError::DigestMismatch {
                    expected: sha256.to_string(),
                    actual,
                });
            }
            tokio::fs::rename(&tmp, &dest).await.map_err(io(&dest))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    async fn len(&self, sha256: &str) -> Result<Option<u64>, ContentError> {
        check_key(sha256)?;
        let p = self.path(sha256);
        match tokio::fs::metadata(&p).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ContentError::Io { path: p, source }),
        }
    }

    async fn open(&self, sha256: &str, offset: u64) -> Result<BlobReader, ContentError> {
        check_key(sha256)?;
        let p = self.path(sha256);
        let mut f = match tokio::fs::File::open(&p).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ContentError::NotFound(sha256.to_string()))
            }
            Err(source) => return Err(ContentError::Io { path: p, source }),
        };
        let len = f.metadata().await.map_err(io(&p))?.len();
        if offset > len {
            return Err(ContentError::BadRange { offset, len });
        }
        f.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(io(&p))?;
        Ok(BlobReader {
            len,
            reader: Box::new(f),
            whole: None,
        })
    }

    async fn verify(&self, sha256: &str) -> Result<bool, ContentError> {
        Ok(self.mismatch(sha256).await?.is_none())
    }

    async fn open_verified(&self, sha256: &str, offset: u64) -> Result<BlobReader, ContentError> {
        check_key(sha256)?;
        let p = self.path(sha256);
        let stat = || async {
            match tokio::fs::metadata(&p).await {
                Ok(m) => Ok(FileStamp::of(&m)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(ContentError::NotFound(sha256.to_string()))
                }
                Err(source) => Err(ContentError::Io {
                    path: p.clone(),
                    source,
                }),
            }
        };
        let stamp = stat().await?;
        if let Some(bytes) = self.memory().get(sha256, stamp) {
            return memory_reader(bytes, offset);
        }
        // Not verified as it is now: one caller hashes, the others wait for its verdict.
        let _one = self.verifying.lock().await;
        let stamp = stat().await?;
        if let Some(bytes) = self.memory().get(sha256, stamp) {
            return memory_reader(bytes, offset);
        }
        if stamp.len <= MEMORY_BLOB_MAX {
            // Read once through one descriptor, hash what was read, serve exactly those
            // bytes from memory; the descriptor stays with them (`file_backed`), so a
            // plain TCP connection can send the same region of the same file.
            let path = p.clone();
            let (file, data, opened, actual) = tokio::task::spawn_blocking(move || {
                use std::io::Read;
                let mut file = std::fs::File::open(&path)?;
                let opened = FileStamp::of(&file.metadata()?);
                let mut data = Vec::with_capacity(usize::try_from(opened.len).unwrap_or(0));
                file.read_to_end(&mut data)?;
                let actual = hex::encode(Sha256::digest(&data));
                Ok::<_, std::io::Error>((file, data, opened, actual))
            })
            .await
            .map_err(|e| ContentError::Io {
                path: p.clone(),
                source: std::io::Error::other(e.to_string()),
            })?
            .map_err(io(&p))?;
            if actual != sha256 {
                self.set_verified(sha256, None);
                self.quarantine(sha256).await?;
                return Err(ContentError::Damaged {
                    expected: sha256.to_string(),
                    actual,
                });
            }
            // The file changed while it was read: serve the bytes that hashed right,
            // keep nothing (the next request looks again).
            let whole = data.len() as u64 == opened.len
                && file.metadata().map(|m| FileStamp::of(&m)).ok() == Some(opened);
            let bytes = if whole {
                file_backed::bytes(data, file)
            } else {
                bytes::Bytes::from(data)
            };
            if whole && opened == stamp && stat().await? == stamp {
                self.memory().insert(sha256, stamp, bytes.clone());
                self.set_verified(sha256, Some(stamp));
            }
            return memory_reader(bytes, offset);
        }
        if self.verified_stamp(sha256) != Some(stamp) {
            if let Some(actual) = self.mismatch(sha256).await? {
                self.set_verified(sha256, None);
                self.quarantine(sha256).await?;
                return Err(ContentError::Damaged {
                    expected: sha256.to_string(),
                    actual,
                });
            }
            self.set_verified(sha256, Some(stamp));
        }
        self.open(sha256, offset).await
    }
    async fn quarantine(&self, sha256: &str) -> Result<(), ContentError> {
        check_key(sha256)?;
        let dir = self.root.join(QUARANTINE);
        tokio::fs::create_dir_all(&dir).await.map_err(io(&dir))?;
        let mut n = 0u32;
        let dest = loop {
            let d = dir.join(format!("{sha256}.{n}"));
            if !tokio::fs::try_exists(&d).await.map_err(io(&d))? {
                break d;
            }
            n += 1;
        };
        let src = self.path(sha256);
        self.set_verified(sha256, None);
        match tokio::fs::rename(&src, &dest).await {
            Ok(()) => Ok(()),
            // Already set aside by a concurrent reader.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(ContentError::Io { path: src, source }),
        }
    }

    async fn keys(&self) -> Result<Vec<String>, ContentError> {
        let mut keys = Vec::new();
        let mut dirs = tokio::fs::read_dir(&self.root)
            .await
            .map_err(io(&self.root))?;
        while let Some(d) = dirs.next_entry().await.map_err(io(&self.root))? {
            let name = d.file_name().to_string_lossy().into_owned();
            if name.len() != 2 || !d.file_type().await.map_err(io(&d.path()))?.is_dir() {
                continue;
            }
            let mut files = tokio::fs::read_dir(d.path()).await.map_err(io(&d.path()))?;
            while let Some(f) = files.next_entry().await.map_err(io(&d.path()))? {
                let k = f.file_name().to_string_lossy().into_owned();
                if check_key(&k).is_ok() && k.starts_with(&name) {
                    keys.push(k);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn remove(&self, sha256: &str) -> Result<Option<u64>, ContentError> {
        check_key(sha256)?;
        let p = self.path(sha256);
        let len = match tokio::fs::metadata(&p).await {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ContentError::Io { path: p, source }),
        };
        self.set_verified(sha256, None);
        match tokio::fs::remove_file(&p).await {
            Ok(()) => Ok(Some(len)),
            // Removed by a concurrent caller.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ContentError::Io { path: p, source }),
        }
    }

    async fn usage(&self) -> Result<Usage, ContentError> {
        let mut u = Usage::default();
        for k in self.keys().await? {
            if let Some(len) = self.len(&k).await? {
                u.blobs += 1;
                u.bytes += len;
            }
        }
        Ok(u)
    }

    /// Lists the directory and writes, reads and removes a probe file in it (a name the
    /// store never lists as a blob).
    async fn ready(&self) -> Result<(), ContentError> {
        let dir = &self.root;
        let mut entries = tokio::fs::read_dir(dir).await.map_err(io(dir))?;
        entries.next_entry().await.map_err(io(dir))?;
        let probe = dir.join(format!(".ready-probe-{:016x}", rand::random::<u64>()));
        let text = b"patchday readiness probe\n";
        tokio::fs::write(&probe, text).await.map_err(io(&probe))?;
        let back = tokio::fs::read(&probe).await;
        let _ = tokio::fs::remove_file(&probe).await;
        match back {
            Ok(b) if b == text => Ok(()),
            Ok(_) => Err(ContentError::Io {
                path: probe,
                source: std::io::Error::other("returned other bytes than were written"),
            }),
            Err(source) => Err(ContentError::Io {
                path: probe,
                source,
            }),
        }
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

/// Where damaged blobs go, under the store's root.
pub const QUARANTINE: &str = "quarantine";

#[cfg(test)]
mod tests {
    use super::*;

    /// A store in `dir` holding "hello world": the store, its source file and key.
    async fn hello(dir: &tempfile::TempDir) -> (LocalDisk, PathBuf, String) {
        let store = LocalDisk::new(dir.path().join("blobs")).unwrap();
        let src = dir.path().join("x");
        std::fs::write(&src, b"hello world").unwrap();
        let key = hex::encode(Sha256::digest(b"hello world"));
        store.put_file(&src, &key).await.unwrap();
        (store, src, key)
    }

    #[tokio::test]
    async fn put_open_range_and_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let (store, src, key) = hello(&dir).await;
        store.put_file(&src, &key).await.unwrap();
        assert_eq!(store.len(&key).await.unwrap(), Some(11));
        let mut b = store.open(&key, 6).await.unwrap();
        let mut s = String::new();
        b.reader.read_to_string(&mut s).await.unwrap();
        assert_eq!((b.len, s.as_str()), (11, "world"));
        assert!(matches!(
            store.open(&key, 12).await,
            Err(ContentError::BadRange { .. })
        ));

        let wrong = hex::encode(Sha256::digest(b"other"));
        let e = store.put_file(&src, &wrong).await.unwrap_err();
        assert!(matches!(e, ContentError::DigestMismatch { .. }));
        assert_eq!(
            store.len(&wrong).await.unwrap(),
            None,
            "a mismatched blob is not kept"
        );
        assert!(matches!(
            store.len("../etc").await,
            Err(ContentError::BadKey(_))
        ));

        // Issue 10, point 7: removal frees the blob's bytes, once.
        assert_eq!(
            store.usage().await.unwrap(),
            Usage {
                blobs: 1,
                bytes: 11
            }
        );
        assert_eq!(store.remove(&key).await.unwrap(), Some(11));
        assert_eq!(store.remove(&key).await.unwrap(), None);
        assert_eq!(store.len(&key).await.unwrap(), None);
        assert_eq!(store.usage().await.unwrap(), Usage::default());
        assert!(matches!(
            store.remove("../etc").await,
            Err(ContentError::BadKey(_))
        ));
    }

    #[tokio::test]
    async fn a_damaged_blob_is_found_set_aside_and_repaired_by_the_next_put() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDisk::new(dir.path().join("blobs")).unwrap();
        let src = dir.path().join("x");
        std::fs::write(&src, b"hello world").unwrap();
        let key = hex::encode(Sha256::digest(b"hello world"));
        store.put_file(&src, &key).await.unwrap();
        assert_eq!(store.keys().await.unwrap(), vec![key.clone()]);
        assert!(store.verify(&key).await.unwrap());
        let blob = dir.path().join("blobs").join(&key[..2]).join(&key);
        std::fs::write(&blob, b"hello worle").unwrap();
        assert!(
            !store.verify(&key).await.unwrap(),
            "a flipped byte is found"
        );
        // Putting the good bytes again repairs it; the damaged copy is kept aside.
        store.put_file(&src, &key).await.unwrap();
        assert_eq!(std::fs::read(&blob).unwrap(), b"hello world");
        let aside = dir
            .path()
            .join("blobs")
            .join(QUARANTINE)
            .join(format!("{key}.0"));
        assert_eq!(std::fs::read(aside).unwrap(), b"hello worle");
        store.quarantine(&key).await.unwrap();
        assert_eq!(store.usage().await.unwrap(), Usage::default());
        assert!(matches!(
            store.open(&key, 0).await,
            Err(ContentError::NotFound(_))
        ));
    }

    /// Issue 10, point 8: a blob served from memory is still never served once its file
    /// changed: the next request hashes the file again and quarantines it.
    #[tokio::test]
    async fn a_blob_held_in_memory_is_hashed_again_when_its_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _, key) = hello(&dir).await;
        let b = store.open_verified(&key, 6).await.unwrap();
        assert_eq!(b.whole.as_deref(), Some(&b"hello world"[..]));
        let mut s = String::new();
        { b }.reader.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "world");
        assert_eq!(store.memory().blobs.len(), 1, "held after one verification");
        let blob = dir.path().join("blobs").join(&key[..2]).join(&key);
        std::fs::write(&blob, b"hello worle").unwrap();
        assert!(matches!(
            store.open_verified(&key, 0).await,
            Err(ContentError::Damaged { .. })
        ));
        assert!(!blob.exists(), "quarantined");
        assert_eq!(store.memory().blobs.len(), 0, "and dropped from memory");
        assert!(matches!(
            store.open_verified(&key, 0).await,
            Err(ContentError::NotFound(_))
        ));
    }

    #[test]
    fn memory_keeps_the_recently_served_blobs_within_its_bound() {
        let mut m = MemoryCache::default();
        let stamp = FileStamp {
            dev: 0,
            ino: 0,
            len: 0,
            ctime: 0,
            ctime_nsec: 0,
            mtime: 0,
            mtime_nsec: 0,
        };
        let blob = || bytes::Bytes::from(vec![0u8; (MEMORY_BLOB_MAX) as usize]);
        let n = (MEMORY_TOTAL_MAX / MEMORY_BLOB_MAX) as usize;
        for i in 0..n {
            m.insert(&format!("k{i}"), stamp, blob());
        }
        assert!(
            m.get("k0", stamp).is_some(),
            "k0 used last: k1 is the oldest"
        );
        m.insert("new", stamp, blob());
        assert!(m.total <= MEMORY_TOTAL_MAX);
        assert!(m.get("k1", stamp).is_none() && m.get("k0", stamp).is_some());
        assert_eq!(m.blobs.len(), n);
    }
}
