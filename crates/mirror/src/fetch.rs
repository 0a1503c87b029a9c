//! The network seam: the sync asks for bytes of a URL; tests and the CLI choose how.

use std::io::Write;
use std::path::Path;

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

/// What a download wrote to its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Downloaded {
    /// Bytes received.
    pub bytes: u64,
    /// The server honoured the range: the bytes were appended.
    pub ranged: bool,
}

/// Fetches files of an archive.
#[async_trait]
pub trait Fetch: Send + Sync {
    /// The bytes of `url` from byte `from` on (the whole file when `from` is 0). A
    /// non-success status is an error. For small files (InRelease, indexes).
    async fn get(&self, url: &Url, from: u64) -> Result<Fetched, MirrorError>;

    /// Writes `url` from byte `from` on into the file `to`: appended when the server
    /// honoured the range, else the file is replaced by the whole body. Packages can be
    /// gigabytes (kernel debug symbols): implementations should stream.
    async fn download(&self, url: &Url, from: u64, to: &Path) -> Result<Downloaded, MirrorError> {
        let got = self.get(url, from).await?;
        let append = got.ranged && from > 0;
        let mut f = open_for(to, append)?;
        f.write_all(&got.bytes)
            .map_err(|e| MirrorError::io(to, e))?;
        f.sync_all().map_err(|e| MirrorError::io(to, e))?;
        Ok(Downloaded {
            bytes: got.bytes.len() as u64,
            ranged: got.ranged,
        })
    }
}

fn open_for(to: &Path, append: bool) -> Result<std::fs::File, MirrorError> {
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(to)
        .map_err(|e| MirrorError::io(to, e))
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

    async fn download(&self, url: &Url, from: u64, to: &Path) -> Result<Downloaded, MirrorError> {
        let err = |detail: String| MirrorError::Fetch {
            url: url.to_string(),
            detail,
        };
        let mut req = self.client.get(url.clone());
        if from > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={from}-"));
        }
        let mut resp = req.send().await.map_err(|e| err(e.to_string()))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(err(format!("HTTP {status}")));
        }
        let ranged = status == reqwest::StatusCode::PARTIAL_CONTENT;
        let mut f = open_for(to, ranged && from > 0)?;
        let mut bytes = 0u64;
        // Each chunk is on disk before the next is read: an interrupted run resumes.
        while let Some(chunk) = resp.chunk().await.map_err(|e| err(e.to_string()))? {
            f.write_all(&chunk).map_err(|e| MirrorError::io(to, e))?;
            bytes += chunk.len() as u64;
        }
        f.sync_all().map_err(|e| MirrorError::io(to, e))?;
        Ok(Downloaded { bytes, ranged })
    }
}
