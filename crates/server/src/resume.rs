//! A catalog push cut off mid-way is resumed, not started again (issue 12, point 4).
//!
//! `patchday catalog push` sends the metadata and only the target files the server lacks
//! (`/v1/catalog/missing`), in one tar. When the connection drops, the complete target
//! files the tar carried so far are kept in `DATA/catalog/resume/<sha256>` (each hashed
//! and kept only when its bytes match the digest its name starts with), the `missing`
//! answer counts them as held, and the next push's intake takes them into the content
//! store like uploaded ones (checked against the signed catalog there). Kept files no
//! push used go after a day.

use crate::state::AppState;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// How long a salvaged file waits for the push that uses it.
const KEEP: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// Where salvaged target files wait.
pub fn dir(data: &Path) -> PathBuf {
    data.join("catalog").join("resume")
}

fn is_digest(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether a salvaged file with this digest waits.
fn has(data: &Path, sha256: &str) -> bool {
    is_digest(sha256) && dir(data).join(sha256).is_file()
}

/// The digests of every salvaged file that waits (one directory read, not one per target).
pub fn held(data: &Path) -> std::collections::HashSet<String> {
    std::fs::read_dir(dir(data))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| is_digest(n))
                .collect()
        })
        .unwrap_or_default()
}

/// Keeps every complete `targets/<sha256>.<name>` file of a cut-off upload whose bytes
/// match its digest; returns how many. Stops at the first damaged or missing entry.
pub fn salvage(tar: &Path, data: &Path) -> usize {
    let out = dir(data);
    if std::fs::create_dir_all(&out).is_err() {
        return 0;
    }
    let Ok(file) = std::fs::File::open(tar) else {
        return 0;
    };
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let Ok(entries) = archive.entries() else {
        return 0;
    };
    let mut kept = 0;
    for entry in entries {
        let Ok(mut entry) = entry else { break };
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let Some(digest) = entry.path().ok().and_then(|p| {
            let mut parts = p.components();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(top), Some(name), None) if top.as_os_str() == "targets" => name
                    .as_os_str()
                    .to_str()
                    .and_then(|n| n.split_once('.'))
                    .map(|(d, _)| d.to_string()),
                _ => None,
            }
        }) else {
            continue;
        };
        if !is_digest(&digest) || out.join(&digest).is_file() {
            continue;
        }
        let partial = out.join(format!(".{digest}.partial"));
        match copy_hashed(&mut entry, &partial) {
            Ok(actual) if actual == digest => {
                if std::fs::rename(&partial, out.join(&digest)).is_ok() {
                    kept += 1;
                }
            }
            Ok(_) => {
                let _ = std::fs::remove_file(&partial);
            }
            // The upload ends inside this file: nothing more to keep.
            Err(_) => {
                let _ = std::fs::remove_file(&partial);
                break;
            }
        }
    }
    kept
}

fn copy_hashed(from: &mut impl Read, to: &Path) -> std::io::Result<String> {
    let mut out = std::fs::File::create(to)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
    }
    out.sync_all()?;
    Ok(hex::encode(hasher.finalize()))
}

/// Moves a salvaged file into the content store (which checks its digest again);
/// true when there was one.
pub async fn take(state: &AppState, sha256: &str) -> Result<bool, crate::error::ApiError> {
    if !has(&state.config.data_dir, sha256) {
        return Ok(false);
    }
    let path = dir(&state.config.data_dir).join(sha256);
    state.content.put_file(&path, sha256).await?;
    let _ = std::fs::remove_file(&path);
    Ok(true)
}

/// Removes salvaged files older than a day (the cleanup's pass).
pub fn expire(data: &Path, now: jiff::Timestamp) {
    let Ok(entries) = std::fs::read_dir(dir(data)) else {
        return;
    };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| jiff::Timestamp::try_from(t).ok())
            .is_none_or(|t| now.duration_since(t) > KEEP);
        if old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Salvages a cut-off upload when dropped before [`Guard::done`]: the push handler holds
/// one while the body arrives, and a client that goes away drops the handler mid-way.
pub struct Guard {
    armed: Option<(AppState, crate::catalog::TempDir, PathBuf)>,
}

impl Guard {
    /// Watches the upload at `tar` inside `dir`.
    pub fn new(state: &AppState, dir: crate::catalog::TempDir, tar: PathBuf) -> Self {
        Self {
            armed: Some((state.clone(), dir, tar)),
        }
    }
    /// The upload arrived whole: nothing to salvage. Hands back its directory.
    pub fn done(mut self) -> Option<crate::catalog::TempDir> {
        self.armed.take().map(|(_, dir, _)| dir)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some((state, dir, tar)) = self.armed.take() {
            let data = state.config.data_dir.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn_blocking(move || {
                    let kept = salvage(&tar, &data);
                    if kept > 0 {
                        tracing::info!(kept, "a catalog push was cut off: its complete files are kept for the next push");
                    }
                    drop(dir);
                });
            }
        }
    }
}
