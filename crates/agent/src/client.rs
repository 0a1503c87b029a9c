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

/// A client bound to a server and (optionally) a host credential.
#[derive(Clone)]
pub struct Client {
    /// Server base URL.
    pub base: Url,
    http: reqwest::Client,
    credential: Option<String>,
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
        let http = builder
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(read_timeout)
            .user_agent(concat!("patchday-agent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            base,
            http,
            credential,
        })
    }

    /// An absolute URL under the server base.
    pub fn url(&self, path: &str) -> anyhow::Result<Url> {
        self.base
            .join(path.trim_start_matches('/'))
            .with_context(|| format!("bad path {path}"))
    }

    /// A request with the credential attached.
    pub fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        let r = self.http.request(method, url);
        match &self.credential {
            Some(c) => r.bearer_auth(c),
            None => r,
        }
    }

    /// POSTs JSON and decodes JSON, turning API errors into their message.
    pub async fn post<B: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<R> {
        let url = self.url(path)?;
        let resp = self
            .request(reqwest::Method::POST, url.clone())
            .json(body)
            .send()
            .await
            .with_context(|| {
                format!("cannot reach the server at {url}: is it running and reachable?")
            })?;
        decode(resp).await
    }
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
