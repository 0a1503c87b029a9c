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
//! The pinned root, the trusted catalog state, the director key's certificate and the
//! scheduled mirror's progress are in the database (issue 12, point 1), so the copy holds
//! them consistently with the catalog rows. The director key files are still files (the
//! one private key a server keeps): the backup fingerprints them before the database copy
//! and after the last file is written, and starts again (up to five times) when a
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
    /// Issue 12, point 3: where the payloads are when the backup does not hold them (an
    /// object store, `s3://BUCKET/PREFIX`, backed up by its own means).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payloads_elsewhere: Option<String>,
}

/// Where the server being backed up keeps its payloads.
#[derive(Clone, Debug)]
pub enum PayloadSource {
    /// A directory (`DATA/content`, or the one `--content DIR` names): copied into the
    /// backup as `content/`.
    Directory(PathBuf),
    /// An object store (`s3://BUCKET/PREFIX`): not copied; the manifest names it.
    Elsewhere(String),
}

/// Paths (relative to the data directory) that are never backed up: the live database
/// files (copied consistently instead), and work in progress of catalog intake and the
/// dependency scan, and the scheduled mirror's downloads.
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
        // Issue 12, point 1: the scheduled mirror's partial downloads (a cache; its kept
        // upstream evidence, `mirror/evidence`, is backed up for verify-upstream).
        || s.starts_with("mirror/downloads")
}

/// The parts a restore cannot do without, each with what goes wrong without it;
/// `payloads`: the payload directory, `None` when the payloads are in an object store.
fn required(data: &Path, payloads: Option<&Path>) -> Vec<String> {
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
    if let Some(dir) = payloads.filter(|d| !d.is_dir()) {
        missing.push(format!(
            "{} (the payloads: without them every download fails until the catalog is pushed again; a server started with --content DIR: pass the same --content)",
            dir.display()
        ));
    }
    missing
}

/// A digest of the files that change with a director key rotation (its certificate is
/// in the database copy).
fn fingerprint(data: &Path) -> anyhow::Result<String> {
    let mut h = Sha256::new();
    for f in ["director/ed25519.pk8", "director/next.pk8"] {
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
pub async fn backup(
    data: &Path,
    payloads: &PayloadSource,
    out: &Path,
    now: jiff::Timestamp,
) -> anyhow::Result<Manifest> {
    ensure!(
        !out.exists(),
        "{} exists: give a new file name (nothing was written)",
        out.display()
    );
    let payload_dir = match payloads {
        PayloadSource::Directory(d) => Some(d.as_path()),
        PayloadSource::Elsewhere(_) => None,
    };
    let missing = required(data, payload_dir);
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
        let manifest = write_tar(data, payloads, &db_copy, &partial, now)?;
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
    payloads: &PayloadSource,
    db_copy: &Path,
    out: &Path,
    now: jiff::Timestamp,
) -> anyhow::Result<Manifest> {
    // (path on disk, name in the tar): the data directory, then the payloads from where
    // the server keeps them (issue 12: `--content DIR` elsewhere is backed up too).
    let mut names = Vec::new();
    walk(data, data, &mut names)?;
    let default_dir = data.join("content");
    let payloads_in_data = matches!(payloads, PayloadSource::Directory(d) if *d == default_dir);
    let mut files: Vec<(PathBuf, PathBuf)> = names
        .into_iter()
        .filter(|rel| payloads_in_data || !rel.starts_with("content"))
        .map(|rel| (data.join(&rel), rel))
        .collect();
    if let PayloadSource::Directory(dir) = payloads {
        if !payloads_in_data {
            let mut names = Vec::new();
            walk(dir, dir, &mut names)?;
            files.extend(
                names
                    .into_iter()
                    .map(|rel| (dir.join(&rel), Path::new("content").join(rel))),
            );
        }
    }
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
        payloads_elsewhere: match payloads {
            PayloadSource::Elsewhere(at) => Some(at.clone()),
            PayloadSource::Directory(_) => None,
        },
    };
    tar.append_path_with_name(db_copy, DATABASE)
        .context("adding the database")?;
    for (path, rel) in &files {
        let path = path.as_path();
        match tar.append_path_with_name(path, rel) {
            Ok(()) => {}
            // A payload evicted while the backup ran: it is no longer needed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("adding {}", path.display())),
        }
        manifest.files += 1;
        manifest.bytes += std::fs::symlink_metadata(path)
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
    let payloads = staged.join("content");
    let missing = required(
        &staged,
        manifest
            .payloads_elsewhere
            .is_none()
            .then_some(payloads.as_path()),
    );
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
            "mirror/downloads/0123_libfoo1_1.2-1_amd64.deb.part",
        ] {
            assert!(transient(Path::new(t)), "{t}");
        }
        for t in [
            "mirror/evidence/abcdef",
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
        let missing = required(d.path(), Some(&d.path().join("content")));
        assert_eq!(missing.len(), 3, "{missing:?}");
        assert!(missing[1].contains("forged"), "{missing:?}");
        assert!(missing[2].contains("pushed again"), "{missing:?}");
        // Issue 12, point 3: payloads in an object store are not asked for.
        assert_eq!(required(d.path(), None).len(), 2);
    }

    /// A data directory with a database and a director key (what `required` asks for).
    async fn data_dir(d: &Path) {
        std::fs::create_dir_all(d).unwrap();
        patchday_store_sqlite::SqliteStore::open(&d.join(DATABASE))
            .await
            .unwrap();
        std::fs::create_dir_all(d.join("director")).unwrap();
        std::fs::write(d.join("director/ed25519.pk8"), b"key").unwrap();
    }

    fn names_in(tar_file: &Path) -> Vec<String> {
        let mut a = tar::Archive::new(std::fs::File::open(tar_file).unwrap());
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    /// Issue 12: a server started with `--content DIR` elsewhere has those payloads in
    /// its backup (not a stale DATA/content), and a restore puts them in DATA/content.
    #[tokio::test]
    async fn payloads_in_a_directory_elsewhere_are_backed_up_and_restored() {
        let t = tempfile::tempdir().unwrap();
        let data = t.path().join("data");
        data_dir(&data).await;
        std::fs::create_dir_all(data.join("content/00")).unwrap();
        std::fs::write(data.join("content/00/stale"), b"old").unwrap();
        let shared = t.path().join("shared");
        let key = "ab".repeat(32);
        std::fs::create_dir_all(shared.join("ab")).unwrap();
        std::fs::write(shared.join("ab").join(&key), b"payload").unwrap();
        let out = t.path().join("b.tar");
        let now = "2026-12-02T12:00:00Z".parse().unwrap();
        let m = backup(&data, &PayloadSource::Directory(shared.clone()), &out, now)
            .await
            .unwrap();
        assert_eq!((m.payloads, m.payloads_elsewhere.as_deref()), (1, None));
        let names = names_in(&out);
        assert!(names.contains(&format!("content/ab/{key}")), "{names:?}");
        assert!(!names.iter().any(|n| n.contains("stale")), "{names:?}");
        let restored = t.path().join("restored");
        restore(&out, &restored).await.unwrap();
        assert_eq!(
            std::fs::read(restored.join("content/ab").join(&key)).unwrap(),
            b"payload"
        );

        // A directory that is not there is refused by name, nothing written.
        let out2 = t.path().join("c.tar");
        let e = backup(
            &data,
            &PayloadSource::Directory(t.path().join("nowhere")),
            &out2,
            now,
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("nowhere"), "{e}");
        assert!(!out2.exists());
    }

    /// Issue 12, point 3: payloads in an object store are not copied; the manifest names
    /// the bucket, and a restore without content/ is accepted because of it.
    #[tokio::test]
    async fn payloads_in_an_object_store_are_named_not_copied() {
        let t = tempfile::tempdir().unwrap();
        let data = t.path().join("data");
        data_dir(&data).await;
        let out = t.path().join("b.tar");
        let now = "2026-12-02T12:00:00Z".parse().unwrap();
        let at = "s3://payloads/prod".to_string();
        let m = backup(&data, &PayloadSource::Elsewhere(at.clone()), &out, now)
            .await
            .unwrap();
        assert_eq!(m.payloads_elsewhere, Some(at.clone()));
        assert!(!names_in(&out).iter().any(|n| n.starts_with("content")));
        let r = restore(&out, &t.path().join("restored")).await.unwrap();
        assert_eq!(r.manifest.payloads_elsewhere, Some(at));
    }
}
