//! A small client for ClamAV's `clamd`: `zINSTREAM` over its Unix or TCP socket, used by
//! the milter (whole messages) and the agent's folder scanner (files, streamed from the
//! opened descriptor).
//!
//! Written here rather than taken from a crate: the protocol is four steps (command,
//! length-prefixed chunks, a zero chunk, one reply line), and both callers need one
//! deadline over the whole exchange (connect, send, answer) on tokio, so that a hung
//! clamd becomes a tempfail or a retry, never a hang or a "clean"; that is less code than
//! checking a crate for both.
//!
//! Owns: the wire protocol and the reading of clamd's answer. Must not touch: what a
//! caller does with a verdict (reject, quarantine, retry).

use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Where clamd listens: `unix:/run/clamav/clamd.ctl` or `tcp:127.0.0.1:3310`
/// (a bare path means a Unix socket).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClamdAddress {
    /// clamd's `LocalSocket`.
    Unix(PathBuf),
    /// clamd's `TCPSocket` (host:port).
    Tcp(String),
}

impl std::str::FromStr for ClamdAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("tcp:") {
            if rest.rsplit_once(':').is_none() {
                return Err(format!(
                    "{s:?}: a TCP address is tcp:HOST:PORT, e.g. tcp:127.0.0.1:3310"
                ));
            }
            Ok(ClamdAddress::Tcp(rest.into()))
        } else if let Some(rest) = s.strip_prefix("unix:") {
            Ok(ClamdAddress::Unix(rest.into()))
        } else if s.starts_with('/') {
            Ok(ClamdAddress::Unix(s.into()))
        } else {
            Err(format!(
                "{s:?}: give clamd's socket as unix:/run/clamav/clamd.ctl or tcp:127.0.0.1:3310"
            ))
        }
    }
}

impl std::fmt::Display for ClamdAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClamdAddress::Unix(p) => write!(f, "unix:{}", p.display()),
            ClamdAddress::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// What clamd said about the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanResult {
    /// Nothing found.
    Clean,
    /// A signature matched; its name.
    Found(String),
}

/// clamd could not give an answer: what was sent must be treated as unscanned (a
/// message tempfailed, a file retried), never as clean.
#[derive(Debug, thiserror::Error)]
pub enum ClamdError {
    /// Connecting, writing or reading failed.
    #[error("clamd at {address} is not answering: {source} (is clamd running? check its socket)")]
    Io {
        /// Where.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// No answer within the deadline.
    #[error("clamd at {address} did not answer within {seconds} s")]
    Timeout {
        /// Where.
        address: String,
        /// The deadline.
        seconds: u64,
    },
    /// An answer that is neither OK nor FOUND (e.g. its StreamMaxLength was exceeded).
    #[error("clamd at {address} answered {answer:?} (raise StreamMaxLength in clamd.conf if the stream was too long)")]
    Refused {
        /// Where.
        address: String,
        /// What it said.
        answer: String,
    },
}

/// A clamd to scan with, and the deadline of one scan.
#[derive(Clone, Debug)]
pub struct Clamd {
    /// Its socket.
    pub address: ClamdAddress,
    /// The deadline over connect, send and answer.
    pub timeout: Duration,
}

const CHUNK: usize = 64 * 1024;
const MAX_ANSWER: usize = 4096;

impl Clamd {
    /// Scans `bytes` (a whole message: clamd decodes MIME and archives itself).
    pub async fn scan(&self, bytes: &[u8]) -> Result<ScanResult, ClamdError> {
        let address = self.address.to_string();
        match tokio::time::timeout(self.timeout, self.exchange(bytes)).await {
            Ok(Ok(answer)) => parse_answer(&answer).ok_or(ClamdError::Refused { address, answer }),
            Ok(Err(source)) => Err(ClamdError::Io { address, source }),
            Err(_) => Err(ClamdError::Timeout {
                address,
                seconds: self.timeout.as_secs(),
            }),
        }
    }

    /// Whether clamd answers `PING` (for startup checks).
    pub async fn ping(&self) -> Result<(), ClamdError> {
        let address = self.address.to_string();
        let run = async {
            match &self.address {
                ClamdAddress::Unix(p) => {
                    let mut s = tokio::net::UnixStream::connect(p).await?;
                    ping_on(&mut s).await
                }
                ClamdAddress::Tcp(a) => {
                    let mut s = tokio::net::TcpStream::connect(a).await?;
                    ping_on(&mut s).await
                }
            }
        };
        match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok(answer)) if answer == "PONG" => Ok(()),
            Ok(Ok(answer)) => Err(ClamdError::Refused { address, answer }),
            Ok(Err(source)) => Err(ClamdError::Io { address, source }),
            Err(_) => Err(ClamdError::Timeout {
                address,
                seconds: self.timeout.as_secs(),
            }),
        }
    }

    /// Scans what `source` yields until its end (a file opened once, so the bytes scanned
    /// are the bytes of that descriptor even if its path is replaced meanwhile). The
    /// caller bounds the length (e.g. with `take`); clamd refuses what exceeds its own
    /// `StreamMaxLength` ([`ClamdError::Refused`]).
    pub async fn scan_reader<R: AsyncRead + Unpin>(
        &self,
        source: &mut R,
    ) -> Result<ScanResult, ClamdError> {
        let address = self.address.to_string();
        let run = async {
            match &self.address {
                ClamdAddress::Unix(p) => {
                    let mut s = tokio::net::UnixStream::connect(p).await?;
                    instream_from(&mut s, source).await
                }
                ClamdAddress::Tcp(a) => {
                    let mut s = tokio::net::TcpStream::connect(a).await?;
                    instream_from(&mut s, source).await
                }
            }
        };
        match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok(answer)) => parse_answer(&answer).ok_or(ClamdError::Refused { address, answer }),
            Ok(Err(source)) => Err(ClamdError::Io { address, source }),
            Err(_) => Err(ClamdError::Timeout {
                address,
                seconds: self.timeout.as_secs(),
            }),
        }
    }

    async fn exchange(&self, bytes: &[u8]) -> std::io::Result<String> {
        match &self.address {
            ClamdAddress::Unix(p) => {
                let mut s = tokio::net::UnixStream::connect(p).await?;
                instream_on(&mut s, bytes).await
            }
            ClamdAddress::Tcp(a) => {
                let mut s = tokio::net::TcpStream::connect(a).await?;
                instream_on(&mut s, bytes).await
            }
        }
    }
}

/// `zINSTREAM` with the chunks read from `source` one at a time (memory: one chunk).
async fn instream_from<S: AsyncRead + AsyncWrite + Unpin, R: AsyncRead + Unpin>(
    s: &mut S,
    source: &mut R,
) -> std::io::Result<String> {
    s.write_all(b"zINSTREAM\0").await?;
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = source.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        let len = u32::try_from(n).unwrap_or(u32::MAX);
        s.write_all(&len.to_be_bytes()).await?;
        s.write_all(&chunk[..n]).await?;
    }
    s.write_all(&0u32.to_be_bytes()).await?;
    s.flush().await?;
    read_answer(s).await
}

async fn ping_on<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> std::io::Result<String> {
    s.write_all(b"zPING\0").await?;
    read_answer(s).await
}

async fn instream_on<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    bytes: &[u8],
) -> std::io::Result<String> {
    s.write_all(b"zINSTREAM\0").await?;
    for chunk in bytes.chunks(CHUNK) {
        let len = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
        s.write_all(&len.to_be_bytes()).await?;
        s.write_all(chunk).await?;
    }
    s.write_all(&0u32.to_be_bytes()).await?;
    s.flush().await?;
    read_answer(s).await
}

/// Reads one NUL-terminated answer (bounded).
async fn read_answer<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<String> {
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if answer.contains(&0) || answer.len() > MAX_ANSWER {
            break;
        }
    }
    if answer.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "clamd closed the connection without an answer",
        ));
    }
    let end = answer.iter().position(|&b| b == 0).unwrap_or(answer.len());
    Ok(String::from_utf8_lossy(&answer[..end]).trim().to_string())
}

/// `stream: OK` → clean, `stream: NAME FOUND` → found, anything else → `None`.
fn parse_answer(answer: &str) -> Option<ScanResult> {
    let rest = answer.strip_prefix("stream: ")?;
    if rest == "OK" {
        return Some(ScanResult::Clean);
    }
    rest.strip_suffix(" FOUND")
        .map(|name| ScanResult::Found(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_strictly() {
        assert_eq!(parse_answer("stream: OK"), Some(ScanResult::Clean));
        assert_eq!(
            parse_answer("stream: Patchday.Test.EICAR.UNOFFICIAL FOUND"),
            Some(ScanResult::Found("Patchday.Test.EICAR.UNOFFICIAL".into()))
        );
        assert_eq!(parse_answer("INSTREAM size limit exceeded. ERROR"), None);
        assert_eq!(parse_answer(""), None);
    }

    #[test]
    fn addresses_parse_or_say_how() {
        assert_eq!(
            "unix:/run/clamav/clamd.ctl".parse::<ClamdAddress>(),
            Ok(ClamdAddress::Unix("/run/clamav/clamd.ctl".into()))
        );
        assert_eq!(
            "tcp:127.0.0.1:3310".parse::<ClamdAddress>(),
            Ok(ClamdAddress::Tcp("127.0.0.1:3310".into()))
        );
        assert!("clamd"
            .parse::<ClamdAddress>()
            .unwrap_err()
            .contains("unix:"));
    }

    #[tokio::test]
    async fn a_missing_clamd_is_an_error_not_a_clean_answer() {
        let dir = tempfile::tempdir().unwrap();
        let clamd = Clamd {
            address: ClamdAddress::Unix(dir.path().join("nothing.sock")),
            timeout: Duration::from_secs(5),
        };
        let e = clamd.scan(b"hello").await.unwrap_err();
        assert!(matches!(e, ClamdError::Io { .. }), "{e}");
        let e = clamd.scan_reader(&mut &b"hello"[..]).await.unwrap_err();
        assert!(matches!(e, ClamdError::Io { .. }), "{e}");
    }
}
