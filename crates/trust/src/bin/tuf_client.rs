//! `patchday-tuf-client`: the client CLI that the public TUF conformance suite drives.
//!
//! ```text
//! patchday-tuf-client --metadata-dir D init ROOT
//! patchday-tuf-client --metadata-dir D --metadata-url U refresh
//! patchday-tuf-client --metadata-dir D --metadata-url U --target-name N [--target-name N2 ...]
//!                     --target-base-url T --target-dir DIR download
//! ```
//!
//! Exit 0 on success, 1 on any failure (the reason goes to stderr). It runs the same
//! [`Updater`] as the agent. The suite's repository is plain HTTP on 127.0.0.1, so this binary
//! carries a minimal HTTP/1.0 GET of its own instead of pulling an HTTP stack into the crate.
//! The clock is read once, here, from the system (the suite moves it with `faketime`).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;
use patchday_trust::client::{check_target_bytes, quote_role, Updater};
use patchday_trust::transport::{ByteStream, FetchError, Transport};
use patchday_trust::TrustError;
use url::Url;

/// The most a response may carry (the client caps each file lower still).
const MAX_RESPONSE: u64 = 65 * 1024 * 1024;

#[derive(Debug, Default)]
struct Args {
    metadata_dir: Option<PathBuf>,
    metadata_url: Option<String>,
    target_names: Vec<String>,
    target_base_url: Option<String>,
    target_dir: Option<PathBuf>,
    command: Vec<String>,
}

fn parse_args(raw: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args::default();
    let mut raw = raw.peekable();
    while let Some(arg) = raw.next() {
        let mut value = || raw.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--metadata-dir" => args.metadata_dir = Some(PathBuf::from(value()?)),
            "--metadata-url" => args.metadata_url = Some(value()?),
            "--target-name" => args.target_names.push(value()?),
            "--target-base-url" => args.target_base_url = Some(value()?),
            "--target-dir" => args.target_dir = Some(PathBuf::from(value()?)),
            "-v" | "--verbose" => {}
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ => args.command.push(arg),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let result = parse_args(std::env::args().skip(1)).and_then(|args| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))?
            .block_on(run(args, now()))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("patchday-tuf-client: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The binary's edge reads the system clock (libfaketime intercepts it in the suite).
#[allow(clippy::disallowed_methods)]
fn now() -> Timestamp {
    Timestamp::now()
}

async fn run(args: Args, now: Timestamp) -> Result<(), String> {
    let metadata_dir = args
        .metadata_dir
        .clone()
        .ok_or("--metadata-dir is required")?;
    match args.command.first().map(String::as_str) {
        Some("init") => {
            let root = args
                .command
                .get(1)
                .ok_or("init needs the trusted root file")?;
            init(&metadata_dir, Path::new(root))
        }
        Some("refresh") => {
            let mut updater = updater(&args, &metadata_dir, now)?;
            updater.refresh().await.map_err(say)
        }
        Some("download") => download(&args, &metadata_dir, now).await,
        Some(other) => Err(format!("unknown command {other}")),
        None => Err("no command: init, refresh or download".into()),
    }
}

/// Trusts the given root as it is; the first refresh checks it (no request is made here).
fn init(metadata_dir: &Path, root: &Path) -> Result<(), String> {
    std::fs::create_dir_all(metadata_dir).map_err(|e| e.to_string())?;
    let bytes = std::fs::read(root).map_err(|e| format!("cannot read {}: {e}", root.display()))?;
    write_file(&metadata_dir.join("root.json"), &bytes)
}

fn updater(args: &Args, metadata_dir: &Path, now: Timestamp) -> Result<Updater, String> {
    let url = args
        .metadata_url
        .as_deref()
        .ok_or("--metadata-url is required")?;
    let url = Url::parse(url).map_err(|e| format!("bad --metadata-url: {e}"))?;
    Updater::new(Box::new(PlainHttp), url, metadata_dir, now).map_err(say)
}

/// Refreshes, then for each name in order: find it, reuse a verified copy or fetch and check it.
async fn download(args: &Args, metadata_dir: &Path, now: Timestamp) -> Result<(), String> {
    let target_dir = args
        .target_dir
        .as_deref()
        .ok_or("--target-dir is required")?;
    let base = args
        .target_base_url
        .as_deref()
        .ok_or("--target-base-url is required")?;
    let base = Url::parse(base).map_err(|e| format!("bad --target-base-url: {e}"))?;
    if args.target_names.is_empty() {
        return Err("--target-name is required".into());
    }
    let mut updater = updater(args, metadata_dir, now)?;
    updater.refresh().await.map_err(say)?;
    for name in &args.target_names {
        let file = updater
            .target_info(name)
            .await
            .map_err(say)?
            .ok_or_else(|| format!("target {name:?} is not in the repository"))?;
        // One file per target path, whatever its content: a changed target replaces the old.
        let local = target_dir.join(quote_role(name));
        if let Ok(bytes) = std::fs::read(&local) {
            if check_target_bytes(name, &file, &bytes).is_ok() {
                continue;
            }
        }
        let url = updater.target_url(&base, name, &file).map_err(say)?;
        let bytes = updater.fetch_target(name, &url, &file).await.map_err(say)?;
        check_target_bytes(name, &file, &bytes).map_err(say)?;
        write_file(&local, &bytes)?;
    }
    Ok(())
}

fn say(e: TrustError) -> String {
    e.to_string()
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".partial-")
        .tempfile_in(dir)
        .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    tmp.write_all(bytes).map_err(|e| e.to_string())?;
    tmp.persist(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

/// HTTP/1.0 GET over a plain TCP connection: enough for the suite's local simulator.
#[derive(Debug, Clone, Copy)]
struct PlainHttp;

impl Transport for PlainHttp {
    fn fetch(&self, url: Url) -> BoxFuture<'_, Result<ByteStream, FetchError>> {
        Box::pin(async move {
            let body = get(&url)?;
            let chunk: Result<Vec<u8>, FetchError> = Ok(body);
            let stream: ByteStream = Box::pin(futures::stream::iter([chunk]));
            Ok(stream)
        })
    }
}

fn get(url: &Url) -> Result<Vec<u8>, FetchError> {
    let other = FetchError::Other;
    if url.scheme() != "http" {
        return Err(other(format!("only http:// is supported, not {url}")));
    }
    let host = url.host_str().ok_or_else(|| other("no host".into()))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let mut stream = TcpStream::connect((host, port)).map_err(|e| other(e.to_string()))?;
    let timeout = Some(Duration::from_secs(30));
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout))
        .map_err(|e| other(e.to_string()))?;
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    write!(
        stream,
        "GET {target} HTTP/1.0\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| other(e.to_string()))?;
    let mut response = Vec::new();
    stream
        .take(MAX_RESPONSE)
        .read_to_end(&mut response)
        .map_err(|e| other(e.to_string()))?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| other("no end of headers".into()))?;
    let head = String::from_utf8_lossy(response.get(..split).unwrap_or_default());
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| other("no status line".into()))?;
    match status {
        200 => Ok(response.get(split + 4..).unwrap_or_default().to_vec()),
        // 5.3.2: a missing next root ends the chain; 403 is how some stores say "missing".
        403 | 404 => Err(FetchError::NotFound),
        _ => Err(other(format!("HTTP {status}"))),
    }
}
