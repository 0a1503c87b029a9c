//! Issue 12, point 3: payloads in an S3-compatible object store (Amazon S3, Garage,
//! MinIO, Ceph RGW, ...) through `object_store`, chosen by `--content s3://BUCKET/PREFIX`.
//!
//! Layout, as on disk: `PREFIX/ab/abcdef…` for a blob, `PREFIX/quarantine/KEY.N` for a
//! damaged one set aside, `PREFIX/.ready-probe-N` for the readiness probe (never listed
//! as a blob).
//!
//! Verification without reading the whole object on every request: a blob is hashed
//! before it is written (a put whose bytes do not hash to the key never becomes
//! visible: a small one is put from the bytes that were hashed, a big one goes up in
//! parts and its upload is aborted instead of completed), and this process remembers
//! the ETag of each object it wrote or hashed. Every read then asks for exactly that
//! ETag (`If-Match`): an object replaced or damaged behind the server's back has another
//! ETag, the read fails its precondition, and the object is hashed again before any
//! byte of it is served (and quarantined when it does not match). A replica that did not
//! write a blob hashes it once, on its first read. `patchday server scrub` re-hashes
//! every object on a schedule of the operator's choosing, for damage the store itself
//! would hide under an unchanged ETag.

use crate::{check_key, BlobReader, ContentError, ContentStore, S3Failure, Usage, QUARANTINE};
use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Blobs larger than this go up as a multipart upload, in parts of this size (S3's
/// smallest part is 5 MiB).
pub const MULTIPART_PART: usize = 8 << 20;
/// Parts uploaded at once.
const PARTS_IN_FLIGHT: usize = 4;

/// Where payloads live: `s3://BUCKET/PREFIX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// The prefix inside it, without leading or trailing `/` (may be empty).
    pub prefix: String,
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

impl std::str::FromStr for S3Location {
    type Err = ContentError;

    /// Reads `s3://BUCKET` or `s3://BUCKET/PREFIX`.
    fn from_str(s: &str) -> Result<Self, ContentError> {
        let bad = |why: &str| ContentError::BadLocation(format!("{s:?}: {why}"));
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| bad("expected s3://BUCKET/PREFIX"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(bad(
                "a bucket name is 3 to 63 lowercase letters, digits, '-' or '.'",
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix
            .split('/')
            .any(|p| p == "." || p == ".." || (p.is_empty() && !prefix.is_empty()))
        {
            return Err(bad("the prefix has an empty, '.' or '..' segment"));
        }
        Ok(S3Location {
            bucket: bucket.into(),
            prefix: prefix.into(),
        })
    }
}

/// How to reach the object store. What is not given here comes from the usual AWS
/// environment variables (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, ...).
#[derive(Clone)]
pub struct S3Config {
    /// Bucket and prefix.
    pub location: S3Location,
    /// `https://s3.example.net` or `http://127.0.0.1:3900` (plain HTTP only when given
    /// so); `None`: the environment's, or Amazon's for the region.
    pub endpoint: Option<String>,
    /// The region the store signs for (Garage: its `s3_region`).
    pub region: Option<String>,
    /// The access key id.
    pub access_key_id: Option<String>,
    /// The secret access key (never in a log: `Debug` leaves it out).
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("location", &self.location)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl S3Config {
    /// A configuration for `location` with everything else from the environment.
    pub fn new(location: S3Location) -> Self {
        Self {
            location,
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
        }
    }

    /// An `object_store` client for the bucket (also for tests that need raw access).
    pub fn client(&self) -> Result<AmazonS3, ContentError> {
        // An unreachable endpoint is reported within seconds, not after object_store's
        // default three minutes of retries; transient failures are still retried.
        let retry = object_store::RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(20),
            ..Default::default()
        };
        let options = object_store::ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(300));
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&self.location.bucket)
            .with_retry(retry)
            .with_client_options(options);
        // After the client options, which would reset it: plain HTTP only when the
        // endpoint is written so.
        if let Some(e) = &self.endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        if let Some(r) = &self.region {
            b = b.with_region(r);
        }
        if let Some(k) = &self.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &self.secret_access_key {
            b = b.with_secret_access_key(s);
        }
        b.build()
            .map_err(|e| ContentError::BadLocation(format!("{}: {e}", self.location)))
    }
}

/// Payloads in an S3-compatible bucket.
pub struct S3Store {
    client: AmazonS3,
    location: S3Location,
    /// ETag and length of each object this process wrote or hashed and found good.
    verified: Mutex<HashMap<String, (String, u64)>>,
    /// One verification at a time (hosts asking at once for a blob nobody verified yet
    /// wait for the first one's hash).
    verifying: tokio::sync::Mutex<()>,
    /// When the readiness check last wrote, read back and removed its probe object
    /// successfully (issue 12: at most every [`crate::WRITE_PROBE_EVERY`]).
    write_probed: Mutex<Option<std::time::Instant>>,
}

impl S3Store {
    /// A store over `config` (nothing is contacted yet: see [`ContentStore::ready`]).
    pub fn new(config: &S3Config) -> Result<Self, ContentError> {
        Ok(Self {
            client: config.client()?,
            location: config.location.clone(),
            verified: Mutex::default(),
            verifying: tokio::sync::Mutex::new(()),
            write_probed: Mutex::default(),
        })
    }

    fn under(&self, rest: &str) -> ObjectPath {
        if self.location.prefix.is_empty() {
            ObjectPath::from(rest)
        } else {
            ObjectPath::from(format!("{}/{rest}", self.location.prefix))
        }
    }

    /// The object of blob `key`.
    fn path(&self, key: &str) -> ObjectPath {
        self.under(&format!("{}/{key}", &key[..2]))
    }

    fn root(&self) -> Option<ObjectPath> {
        (!self.location.prefix.is_empty()).then(|| ObjectPath::from(self.location.prefix.as_str()))
    }

    fn verified(&self, key: &str) -> Option<(String, u64)> {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    fn set_verified(&self, key: &str, v: Option<(String, u64)>) {
        let mut m = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        match v {
            Some(v) => m.insert(key.to_string(), v),
            None => m.remove(key),
        };
    }

    fn fail(&self, op: &'static str, key: &str, e: object_store::Error) -> ContentError {
        failure(&self.location, op, key, e)
    }

    /// Bytes from `offset` of the object as it is under `etag` (`None`: as it is now);
    /// `len` is the object's length.
    async fn read_from(
        &self,
        key: &str,
        offset: u64,
        etag: Option<String>,
        len: u64,
    ) -> Result<BlobReader, ContentError> {
        if offset > len {
            return Err(ContentError::BadRange { offset, len });
        }
        if offset == len {
            // S3 refuses an empty range: nothing to ask for.
            return Ok(BlobReader {
                len,
                reader: Box::new(tokio::io::empty()),
                whole: None,
            });
        }
        let options = GetOptions {
            if_match: etag,
            range: (offset > 0).then_some(GetRange::Offset(offset)),
            ..Default::default()
        };
        let got = self
            .client
            .get_opts(&self.path(key), options)
            .await
            .map_err(|e| self.fail("read", key, e))?;
        let len = got.meta.size;
        let stream = got.into_stream().map_err(std::io::Error::from);
        Ok(BlobReader {
            len,
            reader: Box::new(tokio_util::io::StreamReader::new(stream)),
            whole: None,
        })
    }

    /// Hashes the object as it is under `etag`: `Some(actual)` when it does not match.
    async fn mismatch_at(
        &self,
        key: &str,
        etag: Option<String>,
    ) -> Result<Option<String>, ContentError> {
        let options = GetOptions {
            if_match: etag,
            ..Default::default()
        };
        let got = self
            .client
            .get_opts(&self.path(key), options)
            .await
            .map_err(|e| self.fail("read", key, e))?;
        let mut stream = got.into_stream();
        let mut hasher = Sha256::new();
        while let Some(chunk) = stream.next().await {
            hasher.update(chunk.map_err(|e| self.fail("read", key, e))?);
        }
        let actual = hex::encode(hasher.finalize());
        Ok((actual != key).then_some(actual))
    }

    /// Uploads `src` as blob `key`, hashing what goes up; nothing becomes visible unless
    /// it hashed to `key`. Returns the new object's ETag and length.
    async fn upload(&self, src: &Path, key: &str) -> Result<(Option<String>, u64), ContentError> {
        let io = |source| ContentError::Io {
            path: src.to_path_buf(),
            source,
        };
        let mut input = tokio::fs::File::open(src).await.map_err(io)?;
        let size = input.metadata().await.map_err(io)?.len();
        if size <= MULTIPART_PART as u64 {
            // Put exactly the bytes that were hashed.
            let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            input.read_to_end(&mut bytes).await.map_err(io)?;
            check_digest(key, Sha256::digest(&bytes))?;
            let len = bytes.len() as u64;
            let put = self
                .client
                .put(&self.path(key), PutPayload::from(bytes))
                .await
                .map_err(|e| self.fail("write", key, e))?;
            return Ok((put.e_tag, len));
        }
        let upload = self
            .client
            .put_multipart(&self.path(key))
            .await
            .map_err(|e| self.fail("write", key, e))?;
        let mut parts = WriteMultipart::new_with_chunk_size(upload, MULTIPART_PART);
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0u64;
        let sent: Result<(), ContentError> = async {
            loop {
                let n = input.read(&mut buf).await.map_err(io)?;
                if n == 0 {
                    return Ok(());
                }
                hasher.update(&buf[..n]);
                len += n as u64;
                parts
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(|e| self.fail("write", key, e))?;
                parts.write(&buf[..n]);
            }
        }
        .await;
        let checked = sent.and_then(|()| check_digest(key, hasher.finalize()));
        if let Err(e) = checked {
            // Never completed: the object does not appear; the parts are dropped.
            if let Err(abort) = parts.abort().await {
                tracing::warn!(sha256 = %key, error = %abort, "aborting a refused multipart upload failed; the bucket's lifecycle rule for incomplete uploads removes its parts");
            }
            return Err(e);
        }
        let put = parts
            .finish()
            .await
            .map_err(|e| self.fail("write", key, e))?;
        Ok((put.e_tag, len))
    }
}

fn check_digest(key: &str, digest: impl AsRef<[u8]>) -> Result<(), ContentError> {
    let actual = hex::encode(digest);
    if actual == key {
        Ok(())
    } else {
        Err(ContentError::DigestMismatch {
            expected: key.to_string(),
            actual,
        })
    }
}

/// What went wrong with a request, in words an operator can act on. Listing errors
/// reach us as generic ones, so the store's own answer (S3 error codes, Garage's
/// messages) is read too.
fn failure(
    location: &S3Location,
    op: &'static str,
    key: &str,
    e: object_store::Error,
) -> ContentError {
    use object_store::Error as E;
    let text = e.to_string();
    let says = |words: &[&str]| words.iter().any(|w| text.contains(w));
    let kind = if says(&["NoSuchBucket", "Bucket not found"]) {
        S3Failure::BucketMissing
    } else if matches!(e, E::NotFound { .. }) {
        return ContentError::NotFound(key.to_string());
    } else if matches!(e, E::Precondition { .. } | E::NotModified { .. }) {
        S3Failure::Changed
    } else if matches!(e, E::Unauthenticated { .. })
        || says(&[
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "Invalid signature",
            "AuthorizationHeaderMalformed",
            "No such key",
            "401 Unauthorized",
        ])
    {
        S3Failure::Credentials
    } else if matches!(e, E::PermissionDenied { .. }) || says(&["403 Forbidden", "AccessDenied"]) {
        S3Failure::Denied
    } else if unreachable(&e) {
        S3Failure::Unreachable
    } else {
        S3Failure::Other
    };
    ContentError::S3 {
        location: location.to_string(),
        op,
        kind,
        detail: text,
    }
}

/// Whether the request never got an answer (connection refused, DNS, timeout).
fn unreachable(e: &object_store::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind as K;
            return matches!(
                h.kind(),
                K::Connect | K::Timeout | K::Request | K::Interrupted
            );
        }
        source = s.source();
    }
    false
}

#[async_trait]
impl ContentStore for S3Store {
    async fn put_file(&self, src: &Path, sha256: &str) -> Result<(), ContentError> {
        check_key(sha256)?;
        // Idempotent: a good object under the key is not written again; a damaged one is
        // set aside and replaced (a push repairs what it carries).
        match self.client.head(&self.path(sha256)).await {
            Ok(meta) => {
                let known = self.verified(sha256);
                let good = match (&known, &meta.e_tag) {
                    (Some((etag, _)), Some(now)) if etag == now => true,
                    _ => self
                        .mismatch_at(sha256, meta.e_tag.clone())
                        .await?
                        .is_none(),
                };
                if good {
                    if let Some(etag) = meta.e_tag {
                        self.set_verified(sha256, Some((etag, meta.size)));
                    }
                    return Ok(());
                }
                self.quarantine(sha256).await?;
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.fail("look up", sha256, e)),
        }
        let (etag, len) = self.upload(src, sha256).await?;
        self.set_verified(sha256, etag.map(|e| (e, len)));
        Ok(())
    }

    async fn len(&self, sha256: &str) -> Result<Option<u64>, ContentError> {
        check_key(sha256)?;
        match self.client.head(&self.path(sha256)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail("look up", sha256, e)),
        }
    }

    /// One HEAD, not a GET: an object this process wrote or hashed is held while its
    /// ETag is the one it remembers (another ETag: hashed again, and quarantined when
    /// damaged); one it never looked at is held as it stands. Its bytes are still checked
    /// before any is served ([`ContentStore::open_verified`]), which quarantines a damaged
    /// one, so the next push uploads it again.
    async fn holds(&self, sha256: &str) -> Result<bool, ContentError> {
        check_key(sha256)?;
        let meta = match self.client.head(&self.path(sha256)).await {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(self.fail("look up", sha256, e)),
        };
        match self.verified(sha256) {
            Some((etag, len))
                if meta.e_tag.as_deref() != Some(etag.as_str()) || meta.size != len =>
            {
                match self.open_verified(sha256, 0).await {
                    Ok(_) => Ok(true),
                    Err(ContentError::NotFound(_) | ContentError::Damaged { .. }) => Ok(false),
                    Err(e) => Err(e),
                }
            }
            _ => Ok(true),
        }
    }

    async fn open(&self, sha256: &str, offset: u64) -> Result<BlobReader, ContentError> {
        check_key(sha256)?;
        let meta = self
            .client
            .head(&self.path(sha256))
            .await
            .map_err(|e| self.fail("look up", sha256, e))?;
        self.read_from(sha256, offset, meta.e_tag, meta.size).await
    }

    async fn verify(&self, sha256: &str) -> Result<bool, ContentError> {
        check_key(sha256)?;
        let meta = self
            .client
            .head(&self.path(sha256))
            .await
            .map_err(|e| self.fail("look up", sha256, e))?;
        let bad = self.mismatch_at(sha256, meta.e_tag.clone()).await?;
        match (&bad, meta.e_tag) {
            (None, Some(etag)) => self.set_verified(sha256, Some((etag, meta.size))),
            _ => self.set_verified(sha256, None),
        }
        Ok(bad.is_none())
    }

    async fn open_verified(&self, sha256: &str, offset: u64) -> Result<BlobReader, ContentError> {
        check_key(sha256)?;
        if let Some((etag, len)) = self.verified(sha256) {
            match self.read_from(sha256, offset, Some(etag), len).await {
                // Replaced since it was hashed: hash it again below.
                Err(ContentError::S3 {
                    kind: S3Failure::Changed,
                    ..
                }) => self.set_verified(sha256, None),
                Err(ContentError::NotFound(k)) => {
                    self.set_verified(sha256, None);
                    return Err(ContentError::NotFound(k));
                }
                other => return other,
            }
        }
        let _one = self.verifying.lock().await;
        if let Some((etag, len)) = self.verified(sha256) {
            return self.read_from(sha256, offset, Some(etag), len).await;
        }
        let meta = self
            .client
            .head(&self.path(sha256))
            .await
            .map_err(|e| self.fail("look up", sha256, e))?;
        if let Some(actual) = self.mismatch_at(sha256, meta.e_tag.clone()).await? {
            self.quarantine(sha256).await?;
            return Err(ContentError::Damaged {
                expected: sha256.to_string(),
                actual,
            });
        }
        if let Some(etag) = &meta.e_tag {
            self.set_verified(sha256, Some((etag.clone(), meta.size)));
        }
        // Without an ETag (a store that sends none) the bytes are hashed on every read.
        self.read_from(sha256, offset, meta.e_tag, meta.size).await
    }

    async fn quarantine(&self, sha256: &str) -> Result<(), ContentError> {
        check_key(sha256)?;
        self.set_verified(sha256, None);
        let aside = self.under(QUARANTINE);
        let taken: Vec<_> = self
            .client
            .list(Some(&aside))
            .map_ok(|m| m.location.filename().unwrap_or_default().to_string())
            .try_collect()
            .await
            .map_err(|e| self.fail("list", sha256, e))?;
        let mut n = 0u32;
        while taken.contains(&format!("{sha256}.{n}")) {
            n += 1;
        }
        let dest = self.under(&format!("{QUARANTINE}/{sha256}.{n}"));
        match self.client.copy(&self.path(sha256), &dest).await {
            Ok(()) => {}
            // Already set aside by a concurrent reader.
            Err(object_store::Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(self.fail("set aside", sha256, e)),
        }
        match self.client.delete(&self.path(sha256)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.fail("set aside", sha256, e)),
        }
    }

    async fn keys(&self) -> Result<Vec<String>, ContentError> {
        Ok(self.blobs().await?.into_iter().map(|(k, _)| k).collect())
    }

    async fn remove(&self, sha256: &str) -> Result<Option<u64>, ContentError> {
        let Some(len) = self.len(sha256).await? else {
            return Ok(None);
        };
        self.set_verified(sha256, None);
        match self.client.delete(&self.path(sha256)).await {
            Ok(()) => Ok(Some(len)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail("remove", sha256, e)),
        }
    }

    async fn usage(&self) -> Result<Usage, ContentError> {
        let blobs = self.blobs().await?;
        Ok(Usage {
            blobs: blobs.len() as u64,
            bytes: blobs.iter().map(|(_, len)| len).sum(),
        })
    }

    async fn ready(&self) -> Result<(), ContentError> {
        // Every call reads only: a HEAD of the probe's name (absent between probes; a
        // 404 still proves the bucket answers and takes the key). A full page of a
        // listing, or a write, per call would cost a bucket behind a load balancer that
        // asks every second.
        let answered = matches!(
            self.client.head(&self.under(".ready-probe")).await,
            Ok(_) | Err(object_store::Error::NotFound { .. })
        );
        let due = self
            .write_probed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none_or(|at| at.elapsed() >= crate::WRITE_PROBE_EVERY);
        if answered && !due {
            return Ok(());
        }
        // Then, at most every WRITE_PROBE_EVERY, or when the HEAD failed (a HEAD's
        // answer has no body to say why; a listing's does): listed (the key may list the
        // bucket), written, read back, removed.
        let mut listing = self.client.list(self.root().as_ref());
        if let Some(Err(e)) = listing.next().await {
            return Err(self.fail("list", "", e));
        }
        drop(listing);
        let probe = self.under(&format!(".ready-probe-{}", rand_suffix()));
        let text = &b"patchday readiness probe\n"[..];
        self.client
            .put(&probe, PutPayload::from_static(text))
            .await
            .map_err(|e| self.fail("write", "", e))?;
        let back = self.client.get(&probe).await;
        let back = match back {
            Ok(got) => got.bytes().await,
            Err(e) => Err(e),
        };
        let _ = self.client.delete(&probe).await;
        match back {
            Ok(b) if b.as_ref() == text => {
                *self.write_probed.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(std::time::Instant::now());
                Ok(())
            }
            Ok(_) => Err(ContentError::S3 {
                location: self.location.to_string(),
                op: "read back",
                kind: S3Failure::Other,
                detail: "the probe object came back with other bytes than were written".into(),
            }),
            Err(e) => Err(self.fail("read", "", e)),
        }
    }

    async fn presigned_url(
        &self,
        sha256: &str,
        lifetime: Duration,
    ) -> Result<Option<url::Url>, ContentError> {
        check_key(sha256)?;
        let url = self
            .client
            .signed_url(
                object_store::signer::Method::GET,
                &self.path(sha256),
                lifetime,
            )
            .await
            .map_err(|e| self.fail("sign a URL for", sha256, e))?;
        Ok(Some(url))
    }

    fn describe(&self) -> String {
        self.location.to_string()
    }
}

impl S3Store {
    /// Every blob (not the quarantine, not the probe) with its length, in key order.
    async fn blobs(&self) -> Result<Vec<(String, u64)>, ContentError> {
        let root = self.root();
        let depth = root.as_ref().map_or(0, |r| r.parts().count());
        let mut out: Vec<(String, u64)> = self
            .client
            .list(root.as_ref())
            .try_filter_map(|m| async move {
                let parts: Vec<String> =
                    m.location.parts().map(|p| p.as_ref().to_string()).collect();
                let blob = match parts.get(depth..) {
                    Some([dir, name])
                        if check_key(name).is_ok() && name.starts_with(dir.as_str()) =>
                    {
                        Some((name.clone(), m.size))
                    }
                    _ => None,
                };
                Ok(blob)
            })
            .try_collect()
            .await
            .map_err(|e| self.fail("list", "", e))?;
        out.sort();
        Ok(out)
    }
}

/// A random suffix for probe names (several replicas probe at once).
fn rand_suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_read_and_bad_ones_refused_with_the_reason() {
        let l: S3Location = "s3://patchday-payloads/prod/eu".parse().unwrap();
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str()),
            ("patchday-payloads", "prod/eu")
        );
        let l: S3Location = "s3://payloads/".parse().unwrap();
        assert_eq!(l.prefix, "");
        for bad in [
            "/srv/content",
            "s3://",
            "s3://Upper/x",
            "s3://ab/x",
            "s3://bucket/a//b",
            "s3://bucket/../x",
        ] {
            let e = bad.parse::<S3Location>().unwrap_err();
            assert!(matches!(e, ContentError::BadLocation(_)), "{bad}: {e}");
        }
    }

    #[test]
    fn the_secret_never_shows_in_debug() {
        let mut c = S3Config::new("s3://payloads/x".parse().unwrap());
        c.secret_access_key = Some("very-secret-value".into());
        assert!(!format!("{c:?}").contains("very-secret-value"));
    }
}
