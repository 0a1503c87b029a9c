//! Content-addressed blobs: payload bytes keyed by their SHA-256.
//!
//! Owns: putting bytes in (verifying their digest), reading them back from an
//! offset (for HTTP Range). Must not touch: the database, trust decisions (callers
//! verify signatures before they put anything here).
//!
//! [`LocalDisk`] is the default backend. The trait is small on purpose so that an
//! `object_store`-backed implementation (S3 and compatibles) fits it unchanged.

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
    /// The disk failed (full, permissions, ...).
    #[error("content store I/O at {path}: {source} (check free space and permissions)")]
    Io {
        /// Path involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// A blob opened for reading from some offset.
pub struct BlobReader {
    /// Total length of the blob.
    pub len: u64,
    /// The bytes from the requested offset to the end.
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
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
}

impl LocalDisk {
    /// Uses (and creates) `root`.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, ContentError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|source| ContentError::Io {
            path: root.clone(),
            source,
        })?;
        Ok(Self { root })
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
            return Ok(());
        }
        let dir = self.root.join(&sha256[..2]);
        tokio::fs::create_dir_all(&dir).await.map_err(io(&dir))?;
        // Copy to a temporary name while hashing, then rename: a crash or a full
        // disk never leaves a blob under its final name with the wrong bytes.
        let tmp = dir.join(format!(".{sha256}.tmp-{}", std::process::id()));
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_open_range_and_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDisk::new(dir.path().join("blobs")).unwrap();
        let src = dir.path().join("x");
        std::fs::write(&src, b"hello world").unwrap();
        let key = hex::encode(Sha256::digest(b"hello world"));
        store.put_file(&src, &key).await.unwrap();
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
    }
}
