//! Where the TUF client reads metadata from: a trait of this crate's own, so callers (the
//! agent's HTTP client, the conformance binary, tests) implement it without depending on
//! `tough`. The library itself does no HTTP.

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use url::Url;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The file does not exist (HTTP 404 or 403): a missing next root ends the chain.
    #[error("not found")]
    NotFound,
    /// Anything else (connection, status, I/O), with the reason.
    #[error("{0}")]
    Other(String),
}

/// The bytes of one file, in chunks; the client stops reading at its size cap.
pub type ByteStream = BoxStream<'static, Result<Vec<u8>, FetchError>>;

/// Fetches files by URL.
pub trait Transport: std::fmt::Debug + Send + Sync {
    /// Starts fetching `url`.
    fn fetch(&self, url: Url) -> BoxFuture<'_, Result<ByteStream, FetchError>>;
}

/// `file://` URLs on the local disk.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileTransport;

impl Transport for FileTransport {
    fn fetch(&self, url: Url) -> BoxFuture<'_, Result<ByteStream, FetchError>> {
        Box::pin(async move {
            use tough::Transport as _;
            let mapped = |e: tough::TransportError| match e.kind() {
                tough::TransportErrorKind::FileNotFound => FetchError::NotFound,
                _ => FetchError::Other(crate::client::error_chain(&e)),
            };
            let stream = tough::FilesystemTransport
                .fetch(url)
                .await
                .map_err(mapped)?;
            Ok(stream
                .map(move |chunk| chunk.map(|b| b.to_vec()).map_err(mapped))
                .boxed())
        })
    }
}
