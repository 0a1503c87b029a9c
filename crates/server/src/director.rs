//! The director's online key and its certificate, and their rotation.
//!
//! `DATA/director/ed25519.pk8` is the key that signs per-host assignments (the only
//! private key the server keeps; every replica holds the same file). Its certificate,
//! signed by a threshold of the catalog's offline root keys, version `n`, is in the store
//! (issue 12, point 1): one row every replica reads, so a certificate installed through
//! one replica is served by all of them at their next look (at most [`RECHECK`] later).
//! Rotation takes two steps so the server never certifies a key by itself: `begin` makes
//! `next.pk8` and hands out its public half; the root key holders sign a certificate for
//! it (`patchday keys rotate --role director`); `install` checks that certificate against
//! the newest catalog root the server trusts, stores it with its operator log entry, then
//! switches keys. Agents switch when they see the new certificate at their next check-in.
//!
//! Replicas and rotation: a replica that reads a certificate for a key it does not hold
//! looks for that key in its own `next.pk8` and `ed25519.pk8` (an operator copies the new
//! key file there, no restart needed) and, until it finds it, signs nothing: check-ins
//! and enrolments through it answer 503 saying which file to copy, and `/v1/ready` fails
//! so a load balancer sends agents elsewhere. Signing on with the old key would make every
//! agent that already switched refuse the answer as forged.
//!
//! Servers before this kept the certificate as `DATA/director/certificate.json`: the first
//! start moves it into the store (and says so) and renames the file
//! `certificate.json.moved-to-database`, so it is never lost.

use crate::error::ApiError;
use patchday_store::{DirectorCertificate, Store, StoreError};
use patchday_trust::director::{
    verify_certificate, DirectorKey, DirectorPublicKey, KeyCertificate,
};
use patchday_types::api::{ErrorCode, LogEntry};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How long a replica serves the certificate it read before it reads the store again: a
/// certificate installed through another replica reaches this one's agents at most this
/// much later (one small query a second instead of one per check-in).
pub const RECHECK: Duration = Duration::from_secs(1);

/// The current key and certificate, swapped as a whole on rotation.
#[derive(Debug)]
pub struct Current {
    key: Arc<DirectorKey>,
    certificate: Option<(KeyCertificate, String)>,
    /// Set when the stored certificate certifies a key this replica does not hold: why it
    /// signs nothing, and what to do.
    refusal: Option<String>,
}

impl Current {
    /// The key that signs assignments now, or 503 saying which key file this replica
    /// lacks.
    pub fn key(&self) -> Result<Arc<DirectorKey>, ApiError> {
        match &self.refusal {
            None => Ok(self.key.clone()),
            Some(why) => Err(ApiError::new(ErrorCode::Unavailable, why.clone()).retry_after(60)),
        }
    }

    /// Why this replica signs nothing now, if it does not.
    pub fn refusal(&self) -> Option<&str> {
        self.refusal.as_deref()
    }

    /// The public half of the key this replica holds.
    pub fn public(&self) -> &DirectorPublicKey {
        self.key.public()
    }

    /// The current certificate as agents receive it (JSON text), if one was installed.
    pub fn certificate(&self) -> Option<String> {
        self.certificate.as_ref().map(|(_, t)| t.clone())
    }

    /// Version of the current certificate (0 before the first).
    pub fn certificate_version(&self) -> u64 {
        self.certificate.as_ref().map_or(0, |(c, _)| c.version)
    }
}

/// The director key slot of a running server.
#[derive(Debug)]
pub struct Director {
    dir: PathBuf,
    current: RwLock<Arc<Current>>,
    /// When the store was last read.
    read_at: Mutex<Option<Instant>>,
    /// Serialises rotations and key switches.
    rotating: tokio::sync::Mutex<()>,
}

fn key_path(dir: &Path) -> PathBuf {
    dir.join("ed25519.pk8")
}

fn next_path(dir: &Path) -> PathBuf {
    dir.join("next.pk8")
}

/// Where servers before issue 12, point 1 kept the certificate.
fn old_certificate_path(dir: &Path) -> PathBuf {
    dir.join("certificate.json")
}

/// Where the old file goes once the store holds it.
fn moved_certificate_path(dir: &Path) -> PathBuf {
    dir.join("certificate.json.moved-to-database")
}

/// Parses a stored certificate (the server verified it before storing it).
fn parse(bytes: &[u8]) -> Result<(KeyCertificate, String), String> {
    let text = String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let cert: KeyCertificate =
        serde_json::from_value(v["signed"].clone()).map_err(|e| e.to_string())?;
    Ok((cert, text))
}

fn store_failed(store_err: StoreError) -> anyhow::Error {
    anyhow::anyhow!("reading the director certificate from the store: {store_err}")
}

/// Moves a certificate kept as a file by an older server into the store, once; the
/// file is renamed, not deleted.
async fn move_old_file(dir: &Path, store: &dyn Store, now: jiff::Timestamp) -> anyhow::Result<()> {
    let path = old_certificate_path(dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => anyhow::bail!("reading {}: {e}", path.display()),
    };
    let (cert, _) = parse(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "{} is corrupt ({e}): restore it from a backup, or move it away and install the certificate again (`patchday keys rotate --role director`)",
            path.display()
        )
    })?;
    let log = LogEntry {
        seq: 0,
        at: now,
        tenant: None,
        actor: "server".into(),
        actor_id: String::new(),
        source: "start".into(),
        action: "director.certificate.moved".into(),
        object: "director key".into(),
        detail: serde_json::json!({
            "keyid": cert.key.keyid,
            "certificate_version": cert.version,
            "from": "director/certificate.json",
        }),
    };
    let record = DirectorCertificate {
        version: cert.version,
        keyid: cert.key.keyid.clone(),
        bytes,
    };
    match store.put_director_certificate(&record, &log).await {
        Ok(true) => tracing::warn!(
            version = cert.version,
            "moved director/certificate.json into the database (issue 12); the file is kept as certificate.json.moved-to-database and no longer read"
        ),
        Ok(false) => tracing::info!(
            version = cert.version,
            "director/certificate.json is in the database already; the file is kept as certificate.json.moved-to-database and no longer read"
        ),
        Err(StoreError::Conflict(why)) => tracing::warn!(
            version = cert.version,
            why = %why,
            "the database holds a newer director certificate than director/certificate.json; the database's is used, the file is kept as certificate.json.moved-to-database"
        ),
        Err(e) => anyhow::bail!(
            "moving {} into the database failed ({e}); nothing changed, the file stays: start again once the database can be written",
            path.display()
        ),
    }
    std::fs::rename(&path, moved_certificate_path(dir))
        .map_err(|e| anyhow::anyhow!("renaming {}: {e}", path.display()))
}

/// The key this replica holds for `cert`: the current one, or the one in `next.pk8` or
/// (copied there by an operator) `ed25519.pk8`, switching files when it is `next.pk8`.
/// `None` when it holds none.
fn key_for(
    dir: &Path,
    held: &Arc<DirectorKey>,
    cert: &KeyCertificate,
) -> anyhow::Result<Option<Arc<DirectorKey>>> {
    if held.public() == &cert.key {
        return Ok(Some(held.clone()));
    }
    let next = next_path(dir);
    if next.exists() {
        let pending = DirectorKey::load_or_create(&next)?;
        if pending.public() == &cert.key {
            std::fs::rename(&next, key_path(dir))?;
            tracing::warn!(
                keyid = %cert.key.keyid,
                version = cert.version,
                "switched to the director key in next.pk8, which the stored certificate certifies"
            );
            return Ok(Some(Arc::new(pending)));
        }
    }
    // Never make a key here: a missing file is not the certified key.
    if !key_path(dir).exists() {
        return Ok(None);
    }
    let on_disk = DirectorKey::load_or_create(&key_path(dir))?;
    if on_disk.public() == &cert.key {
        tracing::warn!(
            keyid = %cert.key.keyid,
            version = cert.version,
            "switched to the director key copied into ed25519.pk8"
        );
        return Ok(Some(Arc::new(on_disk)));
    }
    Ok(None)
}

/// What a replica says while it lacks the certified key.
fn refusal(cert: &KeyCertificate, held: &DirectorPublicKey) -> String {
    format!(
        "this server does not hold director key {} that the current certificate (v{}) certifies; it holds {}: copy DATA/director/ed25519.pk8 from a server that serves v{} into this server's DATA/director/ (mode 0600; every replica needs the same key file). It signs again at its next look, no restart needed; until then it signs nothing, since agents refuse the old key",
        cert.key.keyid, cert.version, held.keyid, cert.version
    )
}

/// The slot for `certificate` given the key held now.
fn resolve(
    dir: &Path,
    held: &Arc<DirectorKey>,
    certificate: Option<(KeyCertificate, String)>,
) -> anyhow::Result<Current> {
    let Some((cert, text)) = certificate else {
        return Ok(Current {
            key: held.clone(),
            certificate: None,
            refusal: None,
        });
    };
    Ok(match key_for(dir, held, &cert)? {
        Some(key) => Current {
            key,
            certificate: Some((cert, text)),
            refusal: None,
        },
        None => Current {
            key: held.clone(),
            refusal: Some(refusal(&cert, held.public())),
            certificate: Some((cert, text)),
        },
    })
}

fn read_stored(
    stored: Option<DirectorCertificate>,
) -> anyhow::Result<Option<(KeyCertificate, String)>> {
    stored
        .map(|c| {
            parse(&c.bytes).map_err(|e| {
                anyhow::anyhow!(
                    "the stored director certificate v{} is corrupt ({e}): install a new one (`patchday keys rotate --role director`)",
                    c.version
                )
            })
        })
        .transpose()
}

impl Director {
    /// Loads (creating on first start) the key in `dir` and the certificate from the
    /// store, moving an older server's certificate file into the store first, and
    /// finishing a rotation that a crash interrupted between storing the certificate
    /// and switching the key file.
    pub async fn open(
        dir: &Path,
        store: &dyn Store,
        now: jiff::Timestamp,
    ) -> anyhow::Result<Director> {
        move_old_file(dir, store, now).await?;
        let certificate = read_stored(store.director_certificate().await.map_err(store_failed)?)?;
        let held = Arc::new(DirectorKey::load_or_create(&key_path(dir))?);
        let current = resolve(dir, &held, certificate)?;
        if let Some(why) = &current.refusal {
            anyhow::bail!("{why}");
        }
        if let Some((cert, _)) = &current.certificate {
            tracing::info!(
                version = cert.version,
                expires = %cert.expires,
                "director key certificate loaded; agents adopt a newer key only while its certificate has not expired, so rotate before then"
            );
        }
        Ok(Director {
            dir: dir.to_path_buf(),
            current: RwLock::new(Arc::new(current)),
            read_at: Mutex::new(Some(Instant::now())),
            rotating: tokio::sync::Mutex::new(()),
        })
    }

    fn cached(&self) -> Arc<Current> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, fresh: Arc<Current>) {
        match self.current.write() {
            Ok(mut c) => *c = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        *self.read_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// The key and certificate as the store has them now (read again when the last
    /// read is older than [`RECHECK`]; one request reads, the others meanwhile use
    /// what was read before).
    pub async fn current(&self, store: &dyn Store) -> Result<Arc<Current>, ApiError> {
        {
            let mut at = self.read_at.lock().unwrap_or_else(|e| e.into_inner());
            if at.is_some_and(|at| at.elapsed() < RECHECK) {
                return Ok(self.cached());
            }
            *at = Some(Instant::now());
        }
        self.reread(store).await
    }

    /// Reads the store's certificate and switches to it when it moved.
    async fn reread(&self, store: &dyn Store) -> Result<Arc<Current>, ApiError> {
        let stored = store.director_certificate().await?;
        let unchanged = |cur: &Current| {
            cur.refusal.is_none()
                && match (&stored, &cur.certificate) {
                    (None, None) => true,
                    (Some(s), Some((c, _))) => s.version == c.version && s.keyid == c.key.keyid,
                    _ => false,
                }
        };
        let cur = self.cached();
        if unchanged(&cur) {
            return Ok(cur);
        }
        let _g = self.rotating.lock().await;
        // An install through this replica may have finished while this read waited: what
        // it set is newer than what was read before it.
        let cur = self.cached();
        let read_version = stored.as_ref().map_or(0, |c| c.version);
        if unchanged(&cur) || cur.certificate_version() > read_version {
            return Ok(cur);
        }
        let certificate = read_stored(stored).map_err(ApiError::internal)?;
        let fresh =
            Arc::new(resolve(&self.dir, &cur.key, certificate).map_err(ApiError::internal)?);
        match (&fresh.refusal, &fresh.certificate) {
            (Some(why), _) => tracing::error!(error = %why, "the director signs nothing"),
            (None, Some((c, _))) if c.version != cur.certificate_version() => tracing::info!(
                version = c.version,
                keyid = %c.key.keyid,
                "director certificate installed through another server taken up"
            ),
            _ => {}
        }
        self.set(fresh.clone());
        Ok(fresh)
    }

    /// Step one: the key to certify next (made once, then the same until installed).
    pub async fn begin(&self) -> Result<DirectorPublicKey, ApiError> {
        let _g = self.rotating.lock().await;
        let next =
            DirectorKey::load_or_create(&next_path(&self.dir)).map_err(ApiError::internal)?;
        Ok(next.public().clone())
    }

    /// Step two: checks `bytes` against `trusted_root`, stores the certificate with the
    /// log entry `log` makes of it (one transaction), and switches to the key it
    /// certifies (the pending key, or the current one to re-certify it).
    pub async fn install(
        &self,
        store: &dyn Store,
        bytes: &[u8],
        trusted_root: &[u8],
        now: jiff::Timestamp,
        log: impl FnOnce(&KeyCertificate) -> LogEntry,
    ) -> Result<KeyCertificate, ApiError> {
        // The version to beat is the store's, not what this replica read a second ago.
        let cur = self.reread(store).await?;
        let _g = self.rotating.lock().await;
        let cert = verify_certificate(bytes, trusted_root, now, cur.certificate_version())
            .map_err(|e| {
                ApiError::new(
                    patchday_types::api::ErrorCode::CatalogRejected,
                    format!("{e}; nothing changed"),
                )
            })?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|e| ApiError::bad_request(format!("certificate is not UTF-8: {e}")))?;
        let next = next_path(&self.dir);
        let key = if &cert.key == cur.key.public() {
            cur.key.clone()
        } else if next.exists() {
            let pending = DirectorKey::load_or_create(&next).map_err(ApiError::internal)?;
            if pending.public() != &cert.key {
                return Err(ApiError::conflict(format!(
                    "the certificate is for key {}, but the key waiting to be certified is {}: sign a certificate for the key `patchday keys rotate --role director` printed",
                    cert.key.keyid,
                    pending.public().keyid
                )));
            }
            Arc::new(pending)
        } else {
            return Err(ApiError::conflict(format!(
                "the certificate is for key {}, which this server does not hold: start a rotation first (`patchday keys rotate --role director`), or install it through the server where the rotation started",
                cert.key.keyid
            )));
        };
        // Certificate first (with its log entry), then the key file: `open` and `current`
        // finish the switch after a crash between the two.
        let record = DirectorCertificate {
            version: cert.version,
            keyid: cert.key.keyid.clone(),
            bytes: bytes.to_vec(),
        };
        let entry = log(&cert);
        match store.put_director_certificate(&record, &entry).await {
            Ok(_) => {}
            Err(StoreError::Conflict(why)) => {
                return Err(ApiError::conflict(format!("{why}; nothing changed")))
            }
            Err(e) => return Err(e.into()),
        }
        if !Arc::ptr_eq(&key, &cur.key) {
            std::fs::rename(&next, key_path(&self.dir)).map_err(ApiError::internal)?;
        }
        self.set(Arc::new(Current {
            key,
            certificate: Some((cert.clone(), text)),
            refusal: None,
        }));
        tracing::info!(
            keyid = %cert.key.keyid,
            version = cert.version,
            "director key certificate installed"
        );
        Ok(cert)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use patchday_store::LogScope;

    fn now() -> jiff::Timestamp {
        "2026-11-26T12:00:00Z".parse().unwrap()
    }

    fn log(cert: &KeyCertificate) -> LogEntry {
        LogEntry {
            seq: 0,
            at: now(),
            tenant: None,
            actor: "test".into(),
            actor_id: "t".into(),
            source: "test".into(),
            action: "director.certificate".into(),
            object: "director key".into(),
            detail: serde_json::json!({ "certificate_version": cert.version }),
        }
    }

    struct World {
        d: tempfile::TempDir,
        keys: patchday_trust::KeyPaths,
        root: Vec<u8>,
        store: patchday_store_sqlite::SqliteStore,
    }

    async fn world() -> World {
        let d = tempfile::tempdir().unwrap();
        let keys = patchday_trust::generate_keyset(&d.path().join("keys"), 3, 2).unwrap();
        let repo = d.path().join("repo");
        patchday_trust::init_catalog(&keys, &repo, now(), &patchday_trust::Expiries::default())
            .await
            .unwrap();
        let root = std::fs::read(repo.join("metadata/1.root.json")).unwrap();
        let store = patchday_store_sqlite::SqliteStore::open(&d.path().join("patchday.db"))
            .await
            .unwrap();
        World {
            d,
            keys,
            root,
            store,
        }
    }

    async fn certificate(w: &World, key: &DirectorPublicKey, version: u64) -> Vec<u8> {
        let cert = KeyCertificate::new(key.clone(), version, now(), 30).unwrap();
        patchday_trust::director::certify(&cert, &w.keys.root)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn rotation_survives_restarts_and_a_crash_between_its_two_writes() {
        let w = world().await;
        let (store, root) = (&w.store, &w.root);
        let dir = w.d.path().join("director");
        let director = Director::open(&dir, store, now()).await.unwrap();
        let first = director.current(store).await.unwrap().public().clone();
        assert_eq!(
            director.current(store).await.unwrap().certificate_version(),
            0
        );

        // A certificate for a key the server does not hold is refused, nothing changes.
        let stranger = DirectorKey::load_or_create(&w.d.path().join("stranger")).unwrap();
        let signed = certificate(&w, stranger.public(), 1).await;
        assert!(director
            .install(store, &signed, root, now(), log)
            .await
            .is_err());
        assert_eq!(store.director_certificate().await.unwrap(), None);

        // The proper rotation switches keys, stores the certificate with its log entry,
        // and a restart keeps both.
        let next = director.begin().await.unwrap();
        assert_eq!(director.begin().await.unwrap(), next, "same pending key");
        let signed = certificate(&w, &next, 1).await;
        director
            .install(store, &signed, root, now(), log)
            .await
            .unwrap();
        let cur = director.current(store).await.unwrap();
        assert_eq!(cur.key().unwrap().public(), &next);
        assert_eq!(cur.certificate().unwrap().as_bytes(), signed.as_slice());
        assert_eq!(
            store.director_certificate().await.unwrap().unwrap().version,
            1
        );
        let logged = store
            .list_log(&LogScope::Everything, None, 10)
            .await
            .unwrap();
        assert_eq!(logged.len(), 1, "{logged:?}");
        drop(director);
        let director = Director::open(&dir, store, now()).await.unwrap();
        let cur = director.current(store).await.unwrap();
        assert_eq!(cur.key().unwrap().public(), &next);
        assert_eq!(cur.certificate_version(), 1);
        assert_ne!(&first, &next);

        // A crash after the certificate was stored but before the key file moved: the
        // next start finishes the switch.
        let third = director.begin().await.unwrap();
        let signed = certificate(&w, &third, 2).await;
        let record = DirectorCertificate {
            version: 2,
            keyid: third.keyid.clone(),
            bytes: signed,
        };
        let cert = KeyCertificate::new(third.clone(), 2, now(), 30).unwrap();
        store
            .put_director_certificate(&record, &log(&cert))
            .await
            .unwrap();
        drop(director);
        let director = Director::open(&dir, store, now()).await.unwrap();
        let cur = director.current(store).await.unwrap();
        assert_eq!(cur.key().unwrap().public(), &third);
        assert_eq!(cur.certificate_version(), 2);
        assert!(!next_path(&dir).exists());
    }

    /// Issue 12, point 1: another replica takes up a certificate installed through one,
    /// signs nothing while it lacks the certified key, and signs again once the key file
    /// is copied to it.
    #[tokio::test]
    async fn a_replica_without_the_certified_key_signs_nothing_until_the_key_is_copied() {
        let w = world().await;
        let store = &w.store;
        let (dir_a, dir_b) = (w.d.path().join("a"), w.d.path().join("b"));
        let a = Director::open(&dir_a, store, now()).await.unwrap();
        std::fs::create_dir_all(&dir_b).unwrap();
        std::fs::copy(key_path(&dir_a), key_path(&dir_b)).unwrap();
        let b = Director::open(&dir_b, store, now()).await.unwrap();
        let old = b
            .current(store)
            .await
            .unwrap()
            .key()
            .unwrap()
            .public()
            .clone();

        let next = a.begin().await.unwrap();
        let signed = certificate(&w, &next, 1).await;
        a.install(store, &signed, &w.root, now(), log)
            .await
            .unwrap();
        std::thread::sleep(RECHECK);
        let cur = b.current(store).await.unwrap();
        assert_eq!(cur.certificate_version(), 1, "B serves what A installed");
        let why = cur.key().unwrap_err();
        assert_eq!(why.code, ErrorCode::Unavailable);
        assert!(
            why.message.contains(&next.keyid)
                && why.message.contains("copy DATA/director/ed25519.pk8"),
            "{}",
            why.message
        );
        assert_eq!(cur.public(), &old);
        // A restart without the key is refused with the same words.
        let e = Director::open(&dir_b, store, now()).await.unwrap_err();
        assert!(
            format!("{e}").contains("copy DATA/director/ed25519.pk8"),
            "{e}"
        );

        // The operator copies A's key to B: B signs with it at its next look.
        std::fs::copy(key_path(&dir_a), key_path(&dir_b)).unwrap();
        std::thread::sleep(RECHECK);
        let cur = b.current(store).await.unwrap();
        assert_eq!(cur.key().unwrap().public(), &next);
    }

    /// Issue 12, point 1: a data directory of a server before the certificate moved into
    /// the store: the file goes into the store once, and is kept under another name.
    #[tokio::test]
    async fn a_certificate_file_is_moved_into_the_store_once_and_kept() {
        let w = world().await;
        let store = &w.store;
        let dir = w.d.path().join("director");
        let key = DirectorKey::load_or_create(&key_path(&dir)).unwrap();
        let signed = certificate(&w, key.public(), 3).await;
        std::fs::write(old_certificate_path(&dir), &signed).unwrap();

        let director = Director::open(&dir, store, now()).await.unwrap();
        let cur = director.current(store).await.unwrap();
        assert_eq!(cur.certificate_version(), 3);
        assert_eq!(cur.key().unwrap().public(), key.public());
        let stored = store.director_certificate().await.unwrap().unwrap();
        assert_eq!((stored.version, stored.bytes), (3, signed.clone()));
        assert!(!old_certificate_path(&dir).exists());
        assert_eq!(std::fs::read(moved_certificate_path(&dir)).unwrap(), signed);
        let logged = store
            .list_log(&LogScope::Everything, None, 10)
            .await
            .unwrap();
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0].action, "director.certificate.moved");
        drop(director);
        // Another start: nothing to move, nothing logged again.
        Director::open(&dir, store, now()).await.unwrap();
        assert_eq!(
            store
                .list_log(&LogScope::Everything, None, 10)
                .await
                .unwrap()
                .len(),
            1
        );
    }
}
