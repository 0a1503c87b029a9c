//! Resumable, verified payload downloads.
//!
//! Bytes go to `<sha256>.part`; an interrupted transfer continues with an HTTP
//! Range request from the bytes already on disk. Nothing is used before its length
//! and sha256 match the signed catalog, and a payload that grows past its signed
//! length is cut off at once (endless-data defence).

use crate::client::Client;
use anyhow::Context;
use futures::StreamExt;
use patchday_trust::{TargetDigest, TargetInfo};
use reqwest::StatusCode;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Downloads one target into `dir`, resuming a partial file, and returns the
/// verified file's path.
///
/// The bytes are hashed as they are written (a payload is read once, not written and
/// read back); a resumed partial file is hashed once before its rest arrives.
pub async fn fetch_target(
    client: &Client,
    dir: &Path,
    name: &str,
    info: &TargetInfo,
    deadline: Duration,
) -> anyhow::Result<PathBuf> {
    let done = dir.join(format!("{}.payload", info.sha256));
    if done.exists() {
        if patchday_trust::check_target_file(name, info, &done).is_ok() {
            return Ok(done);
        }
        std::fs::remove_file(&done)?;
    }
    let part = dir.join(format!("{}.part", info.sha256));
    let mut have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    if have > info.length {
        std::fs::remove_file(&part)?;
        have = 0;
    }
    let mut digest = if have > 0 {
        TargetDigest::of_file(name, &part)?
    } else {
        TargetDigest::new()
    };
    if have < info.length {
        within(
            deadline,
            name,
            "the partial file is kept and the next run resumes it",
            transfer(client, name, info, Sink::Part(&part), have, &mut digest),
        )
        .await?;
    }
    if let Err(e) = digest.check(name, info) {
        // Corrupt bytes are worthless; start over next time.
        let _ = std::fs::remove_file(&part);
        return Err(anyhow::anyhow!(
            "{e}; the download was discarded and will be fetched again"
        ));
    }
    std::fs::rename(&part, &done)?;
    Ok(done)
}

/// Downloads one target and checks its signed length and sha256 as [`fetch_target`]
/// does (the same request, redirect, endless-data cut-off and digest), dropping the
/// bytes once hashed instead of keeping them.
///
/// For the fleet simulator (`bench/fleet`), whose ten thousand hosts share one
/// machine's disk and whose installs are simulated: it measures the server with the
/// agent's own transfer and checks, not the simulator's page cache.
pub async fn fetch_and_discard(
    client: &Client,
    name: &str,
    info: &TargetInfo,
    deadline: Duration,
) -> anyhow::Result<()> {
    let mut digest = TargetDigest::new();
    within(
        deadline,
        name,
        "nothing was kept",
        transfer(client, name, info, Sink::Discard, 0, &mut digest),
    )
    .await?;
    digest.check(name, info)?;
    Ok(())
}

/// Runs `fetch`; when it is still going after `after`, `say` (the "downloading" report,
/// issue 10, point 8) runs beside it, and both are awaited, so the report is never sent
/// after whatever follows the download. The download keeps being read while the report
/// is held: a busy server queues it or answers 503 with `Retry-After`, and a download
/// paused that long is cut by the server as a client that stopped reading (the likely
/// cause of the 3-4 payloads per 10,000-host fleet run cut mid-body).
pub async fn saying_when_slow<T>(
    after: Duration,
    fetch: impl std::future::Future<Output = T>,
    say: impl std::future::Future<Output = ()>,
) -> T {
    tokio::pin!(fetch);
    match tokio::time::timeout(after, &mut fetch).await {
        Ok(done) => done,
        Err(_) => tokio::join!(fetch, say).0,
    }
}

/// `transfer`, cut off after `deadline`; `then` says what became of the bytes so far.
async fn within(
    deadline: Duration,
    name: &str,
    then: &str,
    transfer: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    tokio::time::timeout(deadline, transfer)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "payload {name}: download did not finish within {}s (slow or stalled server); {then}",
                deadline.as_secs()
            )
        })?
}

/// Where a transfer's bytes go once hashed.
enum Sink<'a> {
    /// Appended to this partial file.
    Part(&'a Path),
    /// Nowhere ([`fetch_and_discard`]).
    Discard,
}

/// Fetches the target's bytes from `have` on, into `sink` and `digest` (which holds the
/// first `have` bytes' digest, and starts again when the server sends the whole file).
async fn transfer(
    client: &Client,
    name: &str,
    info: &TargetInfo,
    sink: Sink<'_>,
    have: u64,
    digest: &mut TargetDigest,
) -> anyhow::Result<()> {
    let url = client.url(&format!("v1/tuf/targets/{}", info.stored_name(name)))?;
    let mut req = client.request(reqwest::Method::GET, url.clone());
    if have > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let mut resp = req
        .send()
        .await
        .with_context(|| format!("payload {name}: cannot reach {url}"))?;
    // Issue 12, point 3: the server may send the download to its object store (a
    // presigned URL). Followed once, without the host credential, with the same Range;
    // the bytes are checked against the signed length and sha256 as any others.
    if resp.status().is_redirection() {
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok());
        let to = redirect_target(&url, location)
            .with_context(|| format!("payload {name}: the server's redirect"))?;
        let mut req = client.redirected_get(to.clone());
        if have > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        resp = req.send().await.with_context(|| {
            format!(
                "payload {name}: cannot reach the object store at {} where the server sent the download",
                to.origin().ascii_serialization()
            )
        })?;
    }
    // The partial file and its path; `None` when the bytes are dropped once hashed.
    let mut out = match (resp.status(), sink) {
        (StatusCode::PARTIAL_CONTENT, Sink::Part(part)) if have > 0 => {
            Some((std::fs::OpenOptions::new().append(true).open(part)?, part))
        }
        (StatusCode::OK, sink) => {
            // The whole file: what was hashed before does not count.
            *digest = TargetDigest::new();
            match sink {
                Sink::Part(part) => Some((std::fs::File::create(part)?, part)),
                Sink::Discard => None,
            }
        }
        (s, _) => anyhow::bail!("payload {name}: server answered {s}"),
    };
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| {
            format!(
                "payload {name}: connection dropped after {} of {} bytes; the next run resumes",
                digest.length(),
                info.length
            )
        })?;
        if digest.length() + chunk.len() as u64 > info.length {
            // A source that sends too much cannot be trusted for what it sent before
            // either: resuming from those bytes would only fail the hash later.
            if let Some((f, part)) = out {
                drop(f);
                let _ = std::fs::remove_file(part);
            }
            anyhow::bail!(
                "payload {name}: server sent more than the signed length of {} bytes (endless-data attack?); the partial file was discarded",
                info.length
            );
        }
        digest.update(&chunk);
        if let Some((f, part)) = out.as_mut() {
            f.write_all(&chunk).with_context(|| {
                format!("payload {name}: writing {} (disk full?)", part.display())
            })?;
        }
    }
    if let Some((f, _)) = out {
        f.sync_all()?;
    }
    Ok(())
}

/// Where a payload redirect points: an absolute http(s) URL (relative ones resolved
/// against the request), never from HTTPS down to plain HTTP.
fn redirect_target(from: &url::Url, location: Option<&str>) -> anyhow::Result<url::Url> {
    let location = location.context("a redirect without a Location")?;
    let to = from
        .join(location)
        .context("a redirect to an unreadable Location")?;
    anyhow::ensure!(
        matches!(to.scheme(), "http" | "https"),
        "a redirect to a {} URL is not followed (only http and https)",
        to.scheme()
    );
    anyhow::ensure!(
        !(from.scheme() == "https" && to.scheme() == "http"),
        "a redirect from HTTPS to plain HTTP is not followed: serve the object store over HTTPS or turn --content-redirect off"
    );
    Ok(to)
}

/// Removes from `dir` every download the current signed assignment does not need
/// (finding 15): payloads of finished updates, partial files of updates no longer
/// assigned, and anything else left by a killed run. Downloads named after a sha256 in
/// `keep` stay, so an interrupted transfer still resumes. Returns the bytes freed.
pub fn prune(dir: &Path, keep: &std::collections::BTreeSet<String>) -> anyhow::Result<u64> {
    let mut freed = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let sha = name.split('.').next().unwrap_or_default();
        let wanted = (name.ends_with(".part") || name.ends_with(".payload")) && keep.contains(sha);
        if wanted {
            continue;
        }
        let meta = entry.metadata()?;
        let path = entry.path();
        let removed = if meta.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            Ok(()) => freed += meta.len(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not remove a stale download")
            }
        }
    }
    Ok(freed)
}

#[cfg(test)]
mod tests {
    use super::{redirect_target, saying_when_slow};
    use std::time::Duration;

    /// A sender that gives up on a reader that stops reading for `stall` (the server's
    /// write-stall cut), sending `chunks` chunks `pace` apart; the reader's count of
    /// chunks, or the cut.
    async fn paced_download(
        chunks: usize,
        pace: Duration,
        stall: Duration,
    ) -> Result<usize, &'static str> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u8>(1);
        let sender = tokio::spawn(async move {
            for _ in 0..chunks {
                tokio::time::sleep(pace).await;
                if tx.send_timeout(0, stall).await.is_err() {
                    return false; // the connection cut mid-body
                }
            }
            true
        });
        let mut got = 0;
        while rx.recv().await.is_some() {
            got += 1;
        }
        match sender.await {
            Ok(true) => Ok(got),
            _ => Err("cut by the server: the reader stopped reading"),
        }
    }

    /// Issue 10: a "downloading" report held by a busy server (1.5 s here) no longer
    /// pauses the download it is about (which the server cuts after 300 ms unread); the
    /// report is still sent, once the download has run past `after`, and awaited.
    #[tokio::test]
    async fn a_held_downloading_report_does_not_pause_the_download() {
        let said = std::sync::atomic::AtomicBool::new(false);
        let say = async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            said.store(true, std::sync::atomic::Ordering::SeqCst);
        };
        let got = saying_when_slow(
            Duration::from_millis(200),
            paced_download(30, Duration::from_millis(20), Duration::from_millis(300)),
            say,
        )
        .await;
        assert_eq!(
            got,
            Ok(30),
            "the download was paused while the report was held"
        );
        assert!(
            said.load(std::sync::atomic::Ordering::SeqCst),
            "the report was not awaited"
        );

        // A download done before `after` sends no report.
        let quick = saying_when_slow(
            Duration::from_secs(5),
            paced_download(3, Duration::from_millis(1), Duration::from_millis(300)),
            async { panic!("a quick download was reported as downloading") },
        )
        .await;
        assert_eq!(quick, Ok(3));
    }

    /// Issue 12, point 3: where a payload redirect may send the agent.
    #[test]
    fn a_redirect_goes_to_http_or_https_never_down_from_https_and_never_elsewhere() {
        let https: url::Url = "https://patchday.example/v1/tuf/targets/ab.x"
            .parse()
            .unwrap();
        let http: url::Url = "http://127.0.0.1:8470/v1/tuf/targets/ab.x".parse().unwrap();
        let to = |from: &url::Url, l: &str| redirect_target(from, Some(l));
        assert_eq!(
            to(&https, "https://s3.example/b/ab?X-Amz-Signature=1")
                .unwrap()
                .as_str(),
            "https://s3.example/b/ab?X-Amz-Signature=1"
        );
        assert_eq!(
            to(&http, "http://127.0.0.1:3900/b/ab").unwrap().as_str(),
            "http://127.0.0.1:3900/b/ab"
        );
        assert_eq!(
            to(&https, "/elsewhere").unwrap().as_str(),
            "https://patchday.example/elsewhere",
            "relative to the request"
        );
        let e = to(&https, "http://s3.example/b/ab")
            .unwrap_err()
            .to_string();
        assert!(e.contains("HTTPS to plain HTTP"), "{e}");
        for bad in ["file:///etc/shadow", "ftp://s3.example/x", "data:,x"] {
            assert!(to(&http, bad).is_err(), "{bad}");
        }
        assert!(redirect_target(&http, None).is_err(), "no Location");
    }
}
