//! The network seam: the sync asks for bytes of a URL; tests and the CLI choose how.

use async_trait::async_trait;
use url::Url;

use crate::MirrorError;

/// What a fetch returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The body.
    pub bytes: Vec<u8>,
    /// True when the server honoured a range request: `bytes` start at the asked offset.
    /// False: `bytes` are the whole file.
    pub ranged: bool,
}

/// Fetches files of an archive.
#[async_trait]
pub trait Fetch: Send + Sync {
    /// The bytes of `url` from byte `from` on (the whole file when `from` is 0). A
    /// non-success status is an error.
    async fn get(&self, url: &Url, from: u64) -> Result<Fetched, MirrorError>;
}

/// Plain HTTP(S) with reqwest (rustls). Archives are untrusted transport: every byte is
/// checked against signed hashes, so no TLS is needed for integrity.
#[derive(Clone, Debug)]
pub struct HttpFetch {
    client: reqwest::Client,
}

impl HttpFetch {
    /// A client with a user agent and sane timeouts.
    pub fn new() -> Result<Self, MirrorError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("patchday-mirror/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(20))
            .read_timeout(std::time::Duration::from_secs(120))
            .build()
            .map_err(|e| MirrorError::Fetch {
                url: String::new(),
                detail: e.to_string(),
            })?;
        Ok(HttpFetch { client })
    }
}

#[async_trait]
impl Fetch for HttpFetch {
    async fn get(&self, url: &Url, from: u64) -> Result<Fetched, MirrorError> {
        let err = |detail: String| MirrorError::Fetch {
            url: url.to_string(),
            detail,
        };
        let mut req = self.client.get(url.clone());
        if from > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={from}-"));
        }
        let resp = req.send().await.map_err(|e| err(e.to_string()))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(err(format!("HTTP {status}")));
        }
        let ranged = status == reqwest::StatusCode::PARTIAL_CONTENT;
        let bytes = resp.bytes().await.map_err(|e| err(e.to_string()))?;
        Ok(Fetched {
            bytes: bytes.to_vec(),
            ranged,
        })
    }
}
