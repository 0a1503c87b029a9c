//! Issue 14, point 5: the folder scan's quarantine. A hit is copied from the descriptor
//! that was scanned (so the quarantine holds exactly the bytes clamd judged, whatever
//! happened to the path meanwhile) into a root-only directory (0700, files 0600: never
//! executable), and the original is removed only if its path still names the inode that
//! was scanned. A record beside it keeps owner, original path, mode, size, digest and
//! signature; `patchday-agent quarantine release ID` puts the file back and remembers its
//! path and digest, so the scan leaves that released file alone (not other copies of the
//! same bytes elsewhere).

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What the quarantine keeps about one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Its id (`20261202T041100Z-0a1b2c3d`).
    pub id: String,
    /// The baseline whose scan took it.
    pub baseline: String,
    /// Where it was, on the host (below the agent's root).
    pub original_path: String,
    /// Owner uid and gid, and permission bits, as found.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Permission bits.
    pub mode: u32,
    /// Bytes.
    pub size: u64,
    /// sha256 of the bytes kept (hex).
    pub sha256: String,
    /// The signature clamd named; `None` while the file is only held unscanned.
    #[serde(default)]
    pub signature: Option<String>,
    /// When it was taken (RFC 3339).
    pub taken_at: String,
    /// Held because clamd could not scan it (`when_clamd_down = "quarantine"`); put back
    /// by the scan itself once clean.
    #[serde(default)]
    pub held_unscanned: bool,
    /// Whether the original path was removed (false: it had changed before removal; the
    /// scanned inode's permissions were set to 0 instead).
    pub original_removed: bool,
}

/// Most bytes a kept record may have (its JSON).
const MAX_RECORD: u64 = 64 * 1024;
/// Most releases remembered.
const MAX_RELEASED: usize = 10_000;

/// Creates the quarantine directory (0700, owned by the agent: root) if needed, and
/// refuses one that is a link or open to others.
pub fn prepare(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the quarantine directory {}", dir.display()))?;
    let m = std::fs::symlink_metadata(dir)?;
    if !m.is_dir() {
        anyhow::bail!(
            "the quarantine {} is not a directory (a link?); remove it and let the agent create it",
            dir.display()
        );
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} root-only", dir.display()))?;
    Ok(())
}

/// A quarantine id: the time (for sorting) and randomness (for uniqueness).
pub fn new_id(now: jiff::Timestamp) -> String {
    let stamp = now.strftime("%Y%m%dT%H%M%SZ").to_string();
    format!("{stamp}-{:08x}", rand::random::<u32>())
}

/// An id as the quarantine writes them, checked before it names a file.
pub fn check_id(id: &str) -> anyhow::Result<()> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        anyhow::bail!(
            "{id:?} is not a quarantine id (letters, digits and '-'); `patchday-agent quarantine list` shows them"
        );
    }
    Ok(())
}

fn bin_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.quarantined"))
}

fn record_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

fn released_path(dir: &Path) -> PathBuf {
    dir.join("released.json")
}

/// sha256 of what `file` holds from its start (hex).
pub fn digest(file: &mut std::fs::File) -> anyhow::Result<String> {
    use sha2::Digest;
    file.rewind()?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// What is known of the file to take.
pub struct Taken<'a> {
    /// The path it was found at (on the machine).
    pub path: &'a Path,
    /// The same path as the host sees it (below the agent's root).
    pub host_path: String,
    /// The descriptor that was scanned.
    pub file: &'a mut std::fs::File,
    /// Its `fstat`.
    pub meta: &'a std::fs::Metadata,
    /// Its digest.
    pub sha256: String,
    /// What clamd found (`None`: held unscanned).
    pub signature: Option<String>,
    /// The baseline.
    pub baseline: &'a str,
}

/// Moves a file into the quarantine `dir`: copies the scanned descriptor's bytes, makes
/// the scanned inode unreadable (mode 0, so a hard link or a renamed copy elsewhere is no
/// use to its owner either), removes the path only if it still names that inode, and
/// writes the record.
pub fn take(dir: &Path, t: Taken<'_>, now: jiff::Timestamp) -> anyhow::Result<Record> {
    prepare(dir)?;
    let id = new_id(now);
    let bin = bin_path(dir, &id);
    {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&bin)
            .with_context(|| format!("creating {} (disk full?)", bin.display()))?;
        t.file.rewind()?;
        std::io::copy(t.file, &mut out)
            .with_context(|| format!("copying into {} (disk full?)", bin.display()))?;
        out.sync_all()?;
    }
    // The inode itself is neutralised before its name goes: fchmod on the descriptor.
    let _ = t
        .file
        .set_permissions(std::fs::Permissions::from_mode(0o000));
    let same = std::fs::symlink_metadata(t.path)
        .is_ok_and(|now| now.is_file() && now.dev() == t.meta.dev() && now.ino() == t.meta.ino());
    let original_removed = same && std::fs::remove_file(t.path).is_ok();
    if !original_removed {
        tracing::warn!(path = ?t.host_path, "the file changed at its path before it could be removed; the scanned copy is in the quarantine and the scanned inode was made unreadable");
    }
    let held_unscanned = t.signature.is_none();
    let record = Record {
        id: id.clone(),
        baseline: t.baseline.to_owned(),
        original_path: t.host_path,
        uid: t.meta.uid(),
        gid: t.meta.gid(),
        mode: t.meta.mode() & 0o7777,
        size: t.meta.len(),
        sha256: t.sha256,
        signature: t.signature,
        taken_at: now.to_string(),
        held_unscanned,
        original_removed,
    };
    save(dir, &record)?;
    Ok(record)
}

/// Writes (or rewrites) a record.
pub fn save(dir: &Path, r: &Record) -> anyhow::Result<()> {
    crate::state::write_atomic(
        &record_path(dir, &r.id),
        &serde_json::to_vec_pretty(r)?,
        0o600,
    )
}

/// One record.
pub fn record(dir: &Path, id: &str) -> anyhow::Result<Record> {
    check_id(id)?;
    let p = record_path(dir, id);
    let f = std::fs::File::open(&p).with_context(|| {
        format!(
            "no quarantined file {id} in {} (`patchday-agent quarantine list` shows them)",
            dir.display()
        )
    })?;
    let mut bytes = Vec::new();
    f.take(MAX_RECORD).read_to_end(&mut bytes)?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is corrupt", p.display()))
}

/// Every record, oldest first.
pub fn list(dir: &Path) -> anyhow::Result<Vec<Record>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".json") else {
            continue;
        };
        if check_id(id).is_ok() {
            if let Ok(r) = record(dir, id) {
                out.push(r);
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// A file an admin released: the scan leaves these bytes at this path alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    /// Where it was put back, on the host.
    pub path: String,
    /// Its sha256.
    pub sha256: String,
}

/// The files released by an admin.
pub fn released(dir: &Path) -> Vec<Released> {
    std::fs::read(released_path(dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Puts a quarantined file back at `to` (default: where it was) with its owner and
/// permission bits (setuid, setgid and sticky dropped); refuses to overwrite anything.
/// `remember` adds its path and digest to the released list (an admin's release; the scan's own
/// put-back of a held file that scanned clean does not need it). Returns the record and
/// the path on the machine.
pub fn release(
    dir: &Path,
    root: &Path,
    id: &str,
    to: Option<&Path>,
    remember: bool,
) -> anyhow::Result<(Record, PathBuf)> {
    let r = record(dir, id)?;
    let target = match to {
        Some(p) => p.to_path_buf(),
        None => root.join(r.original_path.trim_start_matches('/')),
    };
    let bin = bin_path(dir, id);
    let mut src = std::fs::File::open(&bin)
        .with_context(|| format!("the quarantined bytes {} are missing", bin.display()))?;
    if remember {
        let mut list = released(dir);
        let entry = Released {
            path: match target.strip_prefix(root) {
                Ok(rel) => format!("/{}", rel.display()),
                Err(_) => target.display().to_string(),
            },
            sha256: r.sha256.clone(),
        };
        if !list.contains(&entry) {
            list.push(entry);
            let start = list.len().saturating_sub(MAX_RELEASED);
            crate::state::write_atomic(
                &released_path(dir),
                &serde_json::to_vec(&list[start..])?,
                0o600,
            )?;
        }
    }
    {
        // create_new: an existing file or a link planted at the path is never followed
        // or overwritten.
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&target)
            .with_context(|| {
                format!(
                    "cannot put {id} back at {}: something is there now (or its folder is gone); give another place with --to",
                    target.display()
                )
            })?;
        std::io::copy(&mut src, &mut out)?;
        out.flush()?;
        std::os::unix::fs::fchown(&out, Some(r.uid), Some(r.gid))
            .with_context(|| format!("giving {} back to uid {}", target.display(), r.uid))?;
        out.set_permissions(std::fs::Permissions::from_mode(r.mode & 0o777))?;
        out.sync_all()?;
    }
    std::fs::remove_file(&bin)?;
    std::fs::remove_file(record_path(dir, id))?;
    Ok((r, target))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_taken_file_is_private_recorded_and_released_with_its_owner_and_mode() {
        let d = tempfile::tempdir().unwrap();
        let folder = d.path().join("home/alice/Downloads");
        std::fs::create_dir_all(&folder).unwrap();
        let q = d.path().join("var/lib/patchday/quarantine");
        let path = folder.join("invoice.pdf.exe");
        std::fs::write(&path, b"not really a virus").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut file = std::fs::File::open(&path).unwrap();
        let meta = file.metadata().unwrap();
        let sha256 = digest(&mut file).unwrap();
        let now: jiff::Timestamp = "2026-12-02T10:00:00Z".parse().unwrap();
        let r = take(
            &q,
            Taken {
                path: &path,
                host_path: "/home/alice/Downloads/invoice.pdf.exe".into(),
                file: &mut file,
                meta: &meta,
                sha256: sha256.clone(),
                signature: Some("Test.Sig".into()),
                baseline: "laptops",
            },
            now,
        )
        .unwrap();
        assert!(!path.exists(), "the original is gone");
        assert!(r.original_removed && !r.held_unscanned);
        assert_eq!(r.mode, 0o755);
        let dir_mode = std::fs::metadata(&q).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        let kept = bin_path(&q, &r.id);
        assert_eq!(
            std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read(&kept).unwrap(), b"not really a virus");
        assert_eq!(list(&q).unwrap(), vec![r.clone()]);
        assert!(check_id("../../etc/passwd").is_err());
        assert!(record(&q, "../x").is_err());

        // A file planted at the path meanwhile is not overwritten.
        std::fs::write(&path, b"new").unwrap();
        assert!(release(&q, d.path(), &r.id, None, true).is_err());
        std::fs::remove_file(&path).unwrap();
        let (back, at) = release(&q, d.path(), &r.id, None, true).unwrap();
        assert_eq!(at, path);
        assert_eq!(back.sha256, sha256);
        assert_eq!(std::fs::read(&path).unwrap(), b"not really a virus");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert_eq!(
            released(&q),
            vec![Released {
                path: "/home/alice/Downloads/invoice.pdf.exe".into(),
                sha256
            }]
        );
        assert!(list(&q).unwrap().is_empty());
    }

    #[test]
    fn a_file_replaced_at_its_path_is_not_removed_but_its_scanned_copy_is_kept() {
        let d = tempfile::tempdir().unwrap();
        let folder = d.path().join("dl");
        std::fs::create_dir_all(&folder).unwrap();
        let path = folder.join("x.bin");
        std::fs::write(&path, b"scanned bytes").unwrap();
        let mut file = std::fs::File::open(&path).unwrap();
        let meta = file.metadata().unwrap();
        // Replaced after the scan: another inode at the same name.
        std::fs::rename(&path, folder.join("moved.bin")).unwrap();
        std::fs::write(&path, b"someone else's file").unwrap();
        let sha256 = digest(&mut file).unwrap();
        let r = take(
            &d.path().join("q"),
            Taken {
                path: &path,
                host_path: "/dl/x.bin".into(),
                file: &mut file,
                meta: &meta,
                sha256,
                signature: Some("Test.Sig".into()),
                baseline: "b",
            },
            "2026-12-02T10:00:00Z".parse().unwrap(),
        )
        .unwrap();
        assert!(!r.original_removed);
        assert_eq!(std::fs::read(&path).unwrap(), b"someone else's file");
        assert_eq!(
            std::fs::read(bin_path(&d.path().join("q"), &r.id)).unwrap(),
            b"scanned bytes"
        );
        let moved = std::fs::metadata(folder.join("moved.bin")).unwrap();
        assert_eq!(
            moved.permissions().mode() & 0o777,
            0,
            "the scanned inode is unreadable"
        );
    }
}
