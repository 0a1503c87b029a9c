//! HTTP to the server: JSON calls with the host credential (answers read with a cap), and
//! the TUF client's transport so TUF metadata travels the same authenticated channel.

use anyhow::Context;
use futures::future::BoxFuture;
use futures::StreamExt;
use patchday_trust::transport::{ByteStream, FetchError, Transport};
use patchday_types::api::ErrorBody;
use reqwest::StatusCode;
use std::time::Duration;
use url::Url;

/// Longest a pooled connection stays idle before it is dropped: under the 15 s after
/// which the server closes it.
const POOL_IDLE: Duration = Duration::from_secs(10);

/// A client bound to a server and (optionally) a host credential.
#[derive(Clone)]
pub struct Client {
    /// Server base URL.
    pub base: Url,
    http: reqwest::Client,
    /// Issue 12, point 3: fetches a payload from where the server redirected it (a
    /// presigned object-store URL): no credential, no host signature, the public CAs
    /// (the object store is not the server), and no further redirect.
    redirected: reqwest::Client,
    credential: Option<String>,
    signer: Option<std::sync::Arc<Signer>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .finish()
    }
}

impl Client {
    /// Builds a client. `read_timeout` bounds a stalled transfer (slow-retrieval defence).
    pub fn new(
        base: &str,
        credential: Option<String>,
        read_timeout: Duration,
        ca_pem: Option<&[u8]>,
    ) -> anyhow::Result<Self> {
        let mut base = Url::parse(base).with_context(|| format!("invalid server URL {base:?}"))?;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = ca_pem {
            // Pin the CA the agent enrolled with: no other CA, public or private, is trusted.
            let cert = reqwest::Certificate::from_pem(pem)
                .context("the pinned CA is not a PEM certificate")?;
            builder = builder
                .tls_built_in_root_certs(false)
                .add_root_certificate(cert);
        }
        // Issue 12, point 3: no request that carries the host credential follows a
        // redirect; the payload download follows one itself, without the credential.
        // A pooled connection is reused only while the server surely keeps it: Patchday's
        // server closes a keep-alive connection idle for 15 s (its header-read timeout),
        // and a request sent on a connection the server is closing fails ("connection
        // closed before message completed"). The 10,000-host fleet benchmark, whose
        // agents start their runs up to ~20 s after their wait's answer, saw 1,273 such
        // failures, each a back-off; reqwest's default keeps idle connections 90 s.
        let http = builder
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(POOL_IDLE)
            .read_timeout(read_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("patchday-agent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let redirected = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(POOL_IDLE)
            .read_timeout(read_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("patchday-agent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            base,
            http,
            redirected,
            credential,
            signer: None,
        })
    }

    /// This client's connection pool and settings with another host credential and no
    /// signer: the fleet simulator (`bench/fleet`) gives each simulated host its own
    /// credential without building a TLS configuration and pool per host.
    pub fn with_credential(&self, credential: String) -> Self {
        Self {
            base: self.base.clone(),
            http: self.http.clone(),
            redirected: self.redirected.clone(),
            credential: Some(credential),
            signer: None,
        }
    }

    /// An absolute URL under the server base.
    pub fn url(&self, path: &str) -> anyhow::Result<Url> {
        self.base
            .join(path.trim_start_matches('/'))
            .with_context(|| format!("bad path {path}"))
    }

    /// Issue 12, point 3: a GET of `url` where the server redirected a payload download:
    /// never with the host credential or signature (a presigned URL needs neither, and
    /// the object store must not learn them).
    pub fn redirected_get(&self, url: Url) -> reqwest::RequestBuilder {
        self.redirected.get(url)
    }

    /// A request with the credential attached.
    pub fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        let r = self.http.request(method, url);
        match &self.credential {
            Some(c) => r.bearer_auth(c),
            None => r,
        }
    }

    /// POSTs JSON and decodes JSON, turning API errors into their message. With a
    /// signer, the exact body bytes are signed with the host key (finding 8).
    pub async fn post<B: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<R> {
        self.post_with(path, body, Encoding::Identity).await
    }

    /// Like [`Client::post`], with the body zstd-compressed on the wire
    /// (`Content-Encoding: zstd`); the signature covers the JSON before compression.
    /// For large bodies only (issue 12, point 7: audit facts).
    pub async fn post_compressed<B: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<R> {
        self.post_with(path, body, Encoding::Zstd).await
    }

    async fn post_with<B: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        encoding: Encoding,
    ) -> anyhow::Result<R> {
        // Issue 10: a server busy with many agents answers 503 with `Retry-After`
        // before doing any work; come back when it says, a few times, then give up
        // (the daemon's back-off takes over).
        let mut tries = 0;
        loop {
            let resp = self.post_encoded(path, body, encoding).await?;
            let retry = busy_retry_after(&resp);
            match retry {
                Some(after) if tries < BUSY_RETRIES => {
                    tries += 1;
                    tracing::info!(
                        seconds = after.as_secs(),
                        path,
                        "the server is busy: coming back when it asks"
                    );
                    tokio::time::sleep(after).await;
                }
                _ => return decode(resp).await,
            }
        }
    }

    /// Like [`Client::post`], but hands back the response undecoded, for callers that
    /// act on its status (issue 10, point 6: a wait answered 503 says when to come back).
    pub async fn post_response<B: serde::Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<reqwest::Response> {
        self.post_encoded(path, body, Encoding::Identity).await
    }

    async fn post_encoded<B: serde::Serialize>(
        &self,
        path: &str,
        body: &B,
        encoding: Encoding,
    ) -> anyhow::Result<reqwest::Response> {
        let url = self.url(path)?;
        let bytes = serde_json::to_vec(body).context("encoding the request")?;
        let wire = match encoding {
            Encoding::Identity => None,
            Encoding::Zstd => {
                Some(zstd::encode_all(bytes.as_slice(), 3).context("compressing the request")?)
            }
        };
        let mut resp = self.send_json(path, &url, &bytes, wire.as_deref()).await?;
        // A host restored from a snapshot or backup signs with numbers the server has
        // seen: move past the server's last one and sign this (new) body again, once.
        // Only the key holder can sign, so a lying answer can at most skip numbers.
        if let (Some(signer), StatusCode::CONFLICT) = (&self.signer, resp.status()) {
            let last = resp
                .headers()
                .get(patchday_trust::host_signature::LAST_SEQUENCE_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if let Some(last) = last {
                if signer.skip_past(last)? {
                    tracing::warn!(last, "the server has seen this host's sequence numbers up to {last} (state restored from a backup?); continuing above it");
                    resp = self.send_json(path, &url, &bytes, wire.as_deref()).await?;
                }
            }
        }
        Ok(resp)
    }

    /// Sends `bytes` (signed as they are), or `wire` in their place when the body goes
    /// compressed.
    async fn send_json(
        &self,
        path: &str,
        url: &Url,
        bytes: &[u8],
        wire: Option<&[u8]>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut req = self
            .request(reqwest::Method::POST, url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(signer) = &self.signer {
            let (sequence, signature) = signer.sign(path, bytes)?;
            req = req
                .header(patchday_trust::host_signature::SEQUENCE_HEADER, sequence)
                .header(patchday_trust::host_signature::SIGNATURE_HEADER, signature);
        }
        let body = match wire {
            Some(w) => {
                req = req.header(reqwest::header::CONTENT_ENCODING, "zstd");
                w.to_vec()
            }
            None => bytes.to_vec(),
        };
        req.body(body).send().await.with_context(|| {
            format!("cannot reach the server at {url}: is it running and reachable?")
        })
    }

    /// This client, signing every body with the host key (finding 8).
    pub fn signing(mut self, signer: Signer) -> Self {
        self.signer = Some(std::sync::Arc::new(signer));
        self
    }
}

/// How often a request answered 503 with `Retry-After` is sent again (issue 10).
const BUSY_RETRIES: u32 = 5;
/// Longest pause a busy server's `Retry-After` can ask for (a hostile one asking for a
/// year gets this).
const MAX_BUSY_PAUSE: Duration = Duration::from_secs(300);

/// A 503's `Retry-After` in seconds, capped at [`MAX_BUSY_PAUSE`]; `None` for any other
/// answer (a 503 without it is an error the caller sees).
fn busy_retry_after(resp: &reqwest::Response) -> Option<Duration> {
    if resp.status() != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let secs = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(Duration::from_secs(secs.max(1)).min(MAX_BUSY_PAUSE))
}

/// Largest JSON answer the agent reads (finding 1): a check-in answer carries director
/// metadata (at most 4 MiB, see `patchday_trust::director`) and a key certificate
/// (64 KiB), so 8 MiB leaves room; anything longer is an endless-data attack.
pub const MAX_ANSWER_BYTES: usize = 8 << 20;

/// Decodes a JSON response or the server's error body, reading at most
/// [`MAX_ANSWER_BYTES`].
pub async fn decode<R: serde::de::DeserializeOwned>(resp: reqwest::Response) -> anyhow::Result<R> {
    decode_capped(resp, MAX_ANSWER_BYTES).await
}

/// Decodes a JSON response or the server's error body, reading at most `cap` bytes
/// while streaming: a longer answer is cut off with an error, never buffered whole.
pub async fn decode_capped<R: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    cap: usize,
) -> anyhow::Result<R> {
    let status = resp.status();
    let url = resp.url().clone();
    let bytes = read_capped(resp, cap).await?;
    if status.is_success() {
        return serde_json::from_slice(&bytes)
            .with_context(|| format!("unexpected answer from {url}"));
    }
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(e) => anyhow::bail!("server refused ({status}): {}", e.message),
        Err(_) => anyhow::bail!("server answered {status} for {url}"),
    }
}

/// The answer is longer than the agent reads (finding 1).
#[derive(Debug, thiserror::Error)]
#[error("the answer from {url} is longer than {cap} bytes (endless data from a hostile server or a man in the middle?); it was cut off and nothing in it was used")]
pub struct AnswerTooLong {
    /// Where it came from.
    pub url: String,
    /// The cap.
    pub cap: usize,
}

/// Reads a body chunk by chunk, failing as soon as it passes `cap` bytes.
async fn read_capped(resp: reqwest::Response, cap: usize) -> anyhow::Result<Vec<u8>> {
    let url = resp.url().clone();
    let too_long = || AnswerTooLong {
        url: url.to_string(),
        cap,
    };
    if resp
        .content_length()
        .is_some_and(|n| n > u64::try_from(cap).unwrap_or(u64::MAX))
    {
        return Err(too_long().into());
    }
    let mut bytes = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("reading the answer from {url}"))?;
        if bytes.len().saturating_add(chunk.len()) > cap {
            return Err(too_long().into());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The TUF client's transport over the agent's authenticated HTTP client, so TUF metadata
/// travels the same channel (pinned CA, credential).
#[derive(Clone, Debug)]
pub struct HttpTransport(pub Client);

impl Transport for HttpTransport {
    fn fetch(&self, url: Url) -> BoxFuture<'_, Result<ByteStream, FetchError>> {
        Box::pin(async move {
            let resp = self
                .0
                .request(reqwest::Method::GET, url.clone())
                .send()
                .await
                .map_err(|e| FetchError::Other(format!("cannot reach {url}: {e}")))?;
            match resp.status() {
                StatusCode::OK => {}
                StatusCode::NOT_FOUND => return Err(FetchError::NotFound),
                s => return Err(FetchError::Other(format!("server answered {s} for {url}"))),
            }
            let stream: ByteStream = Box::pin(resp.bytes_stream().map(move |r| {
                r.map(|b| b.to_vec())
                    .map_err(|e| FetchError::Other(format!("reading {url}: {e}")))
            }));
            Ok(stream)
        })
    }
}

// issue 8, finding 8: every body the host sends is signed with its own key.

/// Signs request bodies with the host key and numbers them. Numbers are reserved on
/// disk in blocks of [`RESERVED_AHEAD`] before any of them is used, so they never
/// repeat, across runs and crashes: a new signer (the next run, or this one after a
/// crash) starts above the last stored block. Numbers left unused in a block are
/// harmless (the server only requires each to be above the last it accepted), and a
/// run of a few requests writes the file once instead of once per request (issue 10,
/// point 8: that write, a file created, synced and renamed, was 4% of the fleet
/// simulator's CPU).
pub struct Signer {
    key: patchday_trust::host_signature::HostKey,
    tenant: String,
    host: String,
    sequence_file: std::path::PathBuf,
    numbers: std::sync::Mutex<Option<Numbering>>,
}

/// Numbers reserved with one write of the sequence file.
pub const RESERVED_AHEAD: u64 = 64;

/// A signer's numbering: the next number to use and the highest one stored.
#[derive(Clone, Copy, Debug)]
struct Numbering {
    next: u64,
    reserved: u64,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer for `host` of `tenant`, numbering through `sequence_file`.
    pub fn new(
        key: patchday_trust::host_signature::HostKey,
        tenant: &str,
        host: &str,
        sequence_file: std::path::PathBuf,
    ) -> Self {
        Self {
            key,
            tenant: tenant.to_string(),
            host: host.to_string(),
            sequence_file,
            numbers: std::sync::Mutex::new(None),
        }
    }

    /// The highest number stored (reserved) so far; 0 before the first.
    fn stored(&self) -> anyhow::Result<u64> {
        match std::fs::read_to_string(&self.sequence_file) {
            Ok(s) => s.trim().parse().with_context(|| {
                format!(
                    "{} is corrupt: write a number above the host's last one (see `patchday host list`) into it",
                    self.sequence_file.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e).context("reading the sequence number"),
        }
    }

    /// The numbering, read from the file at first use.
    fn numbering(&self, held: &mut Option<Numbering>) -> anyhow::Result<Numbering> {
        if let Some(n) = *held {
            return Ok(n);
        }
        let stored = self.stored()?;
        let n = Numbering {
            next: stored
                .checked_add(1)
                .context("the sequence number is exhausted; enrol the host again")?,
            reserved: stored,
        };
        *held = Some(n);
        Ok(n)
    }

    /// Stores a new block when `n.next` is past the reserved numbers.
    fn reserve(&self, n: &mut Numbering) -> anyhow::Result<()> {
        if n.next <= n.reserved {
            return Ok(());
        }
        let upto = n.next.saturating_add(RESERVED_AHEAD - 1);
        crate::state::write_atomic(&self.sequence_file, upto.to_string().as_bytes(), 0o600)?;
        n.reserved = upto;
        Ok(())
    }

    /// The next sequence number (reserved on disk) and the signature of `body` sent to
    /// `path`.
    pub fn sign(&self, path: &str, body: &[u8]) -> anyhow::Result<(u64, String)> {
        let mut held = self.numbers.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = self.numbering(&mut held)?;
        self.reserve(&mut n)?;
        let number = n.next;
        n.next = number
            .checked_add(1)
            .context("the sequence number is exhausted; enrol the host again")?;
        *held = Some(n);
        drop(held);
        let path = path.trim_start_matches('/');
        Ok((
            number,
            self.key
                .sign_request(path, &self.tenant, &self.host, number, body),
        ))
    }

    /// Moves the numbering past `last` if it is behind; whether it moved. A jump is
    /// bounded, so an unauthenticated answer cannot push the numbers to their end.
    pub fn skip_past(&self, last: u64) -> anyhow::Result<bool> {
        const MAX_SKIP: u64 = 1 << 20;
        let mut held = self.numbers.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = self.numbering(&mut held)?;
        // After the refused attempt our last number is at most `last`; above it, the
        // refusal was not about our numbering.
        let ours = n.next - 1;
        if ours > last {
            return Ok(false);
        }
        if last - ours > MAX_SKIP {
            anyhow::bail!(
                "the server says this host already signed sequence number {last}, far above this agent's {ours}: if this state directory was restored from an old backup, write {last} into {}; otherwise someone else holds this host's key: enrol it again",
                self.sequence_file.display()
            );
        }
        n.next = last + 1;
        self.reserve(&mut n)?;
        *held = Some(n);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use patchday_trust::host_signature::{verify_request, HostKey};

    #[test]
    fn sequence_numbers_never_repeat_and_a_skip_is_bounded() {
        let d = tempfile::tempdir().unwrap();
        let key = HostKey::ephemeral().unwrap();
        let public = key.public_hex();
        let file = d.path().join("sequence");
        let signer = Signer::new(key, "acme", "web-1", file.clone());
        let (a, sig) = signer.sign("/v1/agent/checkin", b"{}").unwrap();
        assert_eq!(a, 1);
        verify_request(&public, &sig, "v1/agent/checkin", "acme", "web-1", 1, b"{}").unwrap();
        // A block is stored before its first number is used, and written once for it.
        let stored = || -> u64 {
            std::fs::read_to_string(&file)
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        assert_eq!(stored(), RESERVED_AHEAD);
        for want in 2..=RESERVED_AHEAD {
            assert_eq!(signer.sign("v1/agent/report", b"{}").unwrap().0, want);
        }
        assert_eq!(stored(), RESERVED_AHEAD, "one write for the whole block");
        assert_eq!(
            signer.sign("v1/agent/report", b"{}").unwrap().0,
            RESERVED_AHEAD + 1
        );
        assert_eq!(
            stored(),
            2 * RESERVED_AHEAD,
            "the next block, before its first use"
        );
        // A new signer (the next run, or after a crash mid-block) starts above every
        // number stored, so none repeats.
        let key2 = HostKey::ephemeral().unwrap();
        let next = Signer::new(key2, "acme", "web-1", file.clone());
        let first = 2 * RESERVED_AHEAD + 1;
        assert_eq!(next.sign("v1/agent/report", b"{}").unwrap().0, first);
        // The server saw up to 1000 (a restored backup, or another process on this state
        // directory): continue above it, with a block stored first.
        assert!(next.skip_past(1000).unwrap());
        assert_eq!(stored(), 1000 + RESERVED_AHEAD);
        assert_eq!(next.sign("v1/agent/report", b"{}").unwrap().0, 1001);
        assert!(!next.skip_past(5).unwrap(), "never backwards");
        // An unauthenticated answer cannot push the numbers towards their end.
        let e = next.skip_past(u64::MAX - 1).unwrap_err();
        assert!(
            format!("{e}").contains("far above this agent's 1001"),
            "{e}"
        );
        assert_eq!(stored(), 1000 + RESERVED_AHEAD);
        // A corrupt file is said so, with what to do.
        std::fs::write(&file, "garbage").unwrap();
        let third = Signer::new(HostKey::ephemeral().unwrap(), "acme", "web-1", file.clone());
        let e = third.sign("v1/agent/report", b"{}").unwrap_err();
        assert!(
            format!("{e:#}").contains("is corrupt: write a number above"),
            "{e:#}"
        );
    }
}

/// How a request body travels.
#[derive(Clone, Copy, Debug)]
enum Encoding {
    Identity,
    Zstd,
}
