//! `patchday server backup` and `patchday server restore` (issue 12, point 6).
//!
//! A backup is one tar file holding everything a server on SQLite needs to take over
//! from the one it was taken of, so that its agents go on without enrolling again: the
//! database (a consistent copy, taken while the server runs), the director key and its
//! certificate (without them every agent refuses each assignment as forged), the pinned
//! root and the trusted catalog state, the content store (without it every download
//! fails until the catalog is pushed again), the TLS files, and a manifest. A data
//! directory that lacks one of the parts a restore needs is refused, naming the part.
//!
//! The pinned root and the trusted catalog state are in the database (issue 12, point
//! 1), so the copy holds them consistently with the catalog rows. The director key and
//! its certificate are still files: the backup fingerprints them before the database
//! copy and after the last file is written, and starts again (up to five times) when a
//! rotation moved them.
//!
//! Restore unpacks into a directory that must not exist or be empty, checks the manifest
//! and the parts, opens the database (which applies newer migrations), and only then
//! moves the directory into place: a failed restore leaves nothing half done.

use anyhow::{bail, ensure, Context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The manifest's name inside the tar.
const MANIFEST: &str = "patchday-backup.json";
/// The database's name in a data directory and in the tar.
const DATABASE: &str = "patchday.db";
/// Backup format version; a restore refuses other versions.
const FORMAT: u32 = 1;
/// Attempts before giving up on a data directory whose catalog keeps changing.
const ATTEMPTS: usize = 5;

/// What a backup holds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// Backup format version.
    pub format: u32,
    /// When it was taken (RFC 3339).
    pub created_at: String,
    /// The `patchday` version that took it.
    pub server_version: String,
    /// Files in the tar besides the manifest and the database.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Payloads of the content store.
    pub payloads: u64,
}

/// Paths (relative to the data directory) that are never backed up: the live database
/// files (copied consistently instead), and work in progress of catalog intake and the
/// dependency scan.
fn transient(rel: &Path) -> bool {
    let s = rel.to_string_lossy();
    let first = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    s == DATABASE
        || s.starts_with("patchday.db-")
        // A restored server is another replica (issue 12, point 5: lease holder).
        || s == "replica-id"
        || first == "dependency-facts"
        || s.starts_with("catalog/incoming")
        || s.starts_with("catalog/staging-")
        || s.starts_with("catalog/datastore")
        || s.starts_with("catalog/states")
}

/// The parts a restore cannot do without, each with what goes wrong without it.
fn required(data: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    if !data.join(DATABASE).is_file() {
        missing.push(format!(
            "{DATABASE} (the SQLite database; a server on PostgreSQL keeps it there: back it up with pg_dump, this command backs up SQLite servers)"
        ));
    }
    if !data.join("director/ed25519.pk8").is_file() {
        missing.push(
            "director/ed25519.pk8 (the director key: without it every agent refuses all assignments as forged)".into(),
        );
    }
    if !data.join("content").is_dir() {
        missing.push(
            "content/ (the payloads: without them every download fails until the catalog is pushed again)".into(),
        );
    }
    missing
}

/// A digest of the files that change with a director key rotation.
fn fingerprint(data: &Path) -> anyhow::Result<String> {
    let mut h = Sha256::new();
    for f in [
        "director/ed25519.pk8",
        "director/next.pk8",
        "director/certificate.json",
    ] {
        h.update(f.as_bytes());
        match std::fs::read(data.join(f)) {
            Ok(b) => h.update(&b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => h.update(b"-"),
            Err(e) => return Err(e).with_context(|| format!("reading {}", data.join(f).display())),
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// Every file and symbolic link under `dir`, relative to `base`, in name order.
fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        let path = e.path();
        let rel = path.strip_prefix(base)?.to_path_buf();
        if transient(&rel) {
            continue;
        }
        let kind = e.file_type()?;
        if kind.is_dir() {
            walk(base, &path, out)?;
        } else if kind.is_file() || kind.is_symlink() {
            out.push(rel);
        }
    }
    Ok(())
}

/// Backs up the data directory `data` of a server on SQLite (running or not) into the
/// tar file `out`, which must not exist.
pub async fn backup(data: &Path, out: &Path, now: jiff::Timestamp) -> anyhow::Result<Manifest> {
    ensure!(
        !out.exists(),
        "{} exists: give a new file name (nothing was written)",
        out.display()
    );
    let missing = required(data);
    ensure!(
        missing.is_empty(),
        "{} cannot be restored from: it lacks {}. Nothing was written.",
        data.display(),
        missing.join("; ")
    );
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let store = patchday_store_sqlite::SqliteStore::open(&data.join(DATABASE))
        .await
        .with_context(|| format!("opening {}", data.join(DATABASE).display()))?;
    for attempt in 1..=ATTEMPTS {
        let before = fingerprint(data)?;
        let work = tempfile::Builder::new()
            .prefix(".patchday-backup-")
            .tempdir_in(parent)
            .with_context(|| format!("cannot write in {}", parent.display()))?;
        let db_copy = work.path().join(DATABASE);
        store
            .copy_into(&db_copy)
            .await
            .context("copying the database")?;
        let partial = work.path().join("backup.tar");
        let manifest = write_tar(data, &db_copy, &partial, now)?;
        if fingerprint(data)? == before {
            std::fs::rename(&partial, out)
                .with_context(|| format!("moving the backup to {}", out.display()))?;
            return Ok(manifest);
        }
        tracing::warn!(
            attempt,
            "the director key changed during the backup: taking it again"
        );
    }
    bail!(
        "the director key changed during each of {ATTEMPTS} attempts: back up when no key rotation is running (nothing was written)"
    )
}

fn write_tar(
    data: &Path,
    db_copy: &Path,
    out: &Path,
    now: jiff::Timestamp,
) -> anyhow::Result<Manifest> {
    let mut files = Vec::new();
    walk(data, data, &mut files)?;
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    tar.follow_symlinks(false);
    let mut manifest = Manifest {
        format: FORMAT,
        created_at: now.to_string(),
        server_version: env!("CARGO_PKG_VERSION").into(),
        files: 0,
        bytes: 0,
        payloads: 0,
    };
    tar.append_path_with_name(db_copy, DATABASE)
        .context("adding the database")?;
    for rel in &files {
        let path = data.join(rel);
        match tar.append_path_with_name(&path, rel) {
            Ok(()) => {}
            // A payload evicted while the backup ran: it is no longer needed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("adding {}", path.display())),
        }
        manifest.files += 1;
        manifest.bytes += std::fs::symlink_metadata(&path)
            .map(|m| m.len())
            .unwrap_or(0);
        if rel.starts_with("content") {
            manifest.payloads += 1;
        }
    }
    let body = serde_json::to_vec_pretty(&manifest)?;
    let mut header = tar::Header::new_gnu();
    header.set_size(body.len() as u64);
    header.set_mode(0o600);
    header.set_cksum();
    tar.append_data(&mut header, MANIFEST, body.as_slice())?;
    tar.into_inner()?
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    Ok(manifest)
}

/// What a restore put in place.
#[derive(Clone, Debug)]
pub struct Restored {
    /// The backup's manifest.
    pub manifest: Manifest,
    /// Tenants in the restored database.
    pub tenants: usize,
    /// Hosts in the restored database.
    pub hosts: usize,
}

/// Restores the backup `from` into the data directory `data`, which must not exist or be
/// empty.
pub async fn restore(from: &Path, data: &Path) -> anyhow::Result<Restored> {
    if data.exists() {
        let empty = std::fs::read_dir(data)
            .with_context(|| format!("reading {}", data.display()))?
            .next()
            .is_none();
        ensure!(
            empty,
            "{} is not empty: restore into a new directory (nothing was changed)",
            data.display()
        );
    }
    let parent = data
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let work = tempfile::Builder::new()
        .prefix(".patchday-restore-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot write in {}", parent.display()))?;
    let staged = work.path().join("data");
    std::fs::create_dir(&staged)?;
    let file = std::fs::File::open(from).with_context(|| format!("opening {}", from.display()))?;
    // `unpack` refuses entries that would land outside the directory (`..`, absolute).
    tar::Archive::new(std::io::BufReader::new(file))
        .unpack(&staged)
        .with_context(|| format!("{} is not a readable backup", from.display()))?;
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(staged.join(MANIFEST)).with_context(|| {
            format!(
                "{} has no {MANIFEST}: not a Patchday backup",
                from.display()
            )
        })?)
        .with_context(|| format!("{MANIFEST} in {} is damaged", from.display()))?;
    ensure!(
        manifest.format == FORMAT,
        "{} is a backup of format {}; this patchday reads format {FORMAT}",
        from.display(),
        manifest.format
    );
    std::fs::remove_file(staged.join(MANIFEST))?;
    let missing = required(&staged);
    ensure!(
        missing.is_empty(),
        "{} lacks {}: nothing was restored",
        from.display(),
        missing.join("; ")
    );
    let (tenants, hosts) = {
        use patchday_store::Store;
        let store = patchday_store_sqlite::SqliteStore::open(&staged.join(DATABASE))
            .await
            .context("the backup's database does not open")?;
        let tenants = store.list_tenants().await?;
        let mut hosts = 0;
        for t in &tenants {
            hosts += store.tenant(&t.id).await?.list_hosts().await?.len();
        }
        (tenants.len(), hosts)
    };
    if data.exists() {
        std::fs::remove_dir(data)?;
    }
    std::fs::rename(&staged, data)
        .with_context(|| format!("moving the restored data to {}", data.display()))?;
    Ok(Restored {
        manifest,
        tenants,
        hosts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_database_files_and_work_in_progress_are_not_backed_up() {
        for t in [
            "patchday.db",
            "patchday.db-wal",
            "patchday.db-shm",
            "dependency-facts/x",
            "catalog/incoming/u.tar",
            "catalog/staging-ab12/metadata/root.json",
            "catalog/datastore.next",
            "replica-id",
            "catalog/datastore",
            "catalog/states/ab/timestamp.json",
        ] {
            assert!(transient(Path::new(t)), "{t}");
        }
        for t in [
            "director/ed25519.pk8",
            "content/ab/abcdef",
            "tls/server.key",
        ] {
            assert!(!transient(Path::new(t)), "{t}");
        }
    }

    #[test]
    fn a_data_directory_without_the_director_key_or_content_is_refused_by_name() {
        let d = tempfile::tempdir().unwrap();
        let missing = required(d.path());
        assert_eq!(missing.len(), 3, "{missing:?}");
        assert!(missing[1].contains("forged"), "{missing:?}");
        assert!(missing[2].contains("pushed again"), "{missing:?}");
    }
}
