//! The director's online key and its certificate, and their rotation.
//!
//! `DATA/director/ed25519.pk8` is the key that signs per-host assignments (the only
//! private key the server keeps). `certificate.json`, when present, is that key's
//! certificate: signed by a threshold of the catalog's offline root keys, version `n`.
//! Rotation takes two steps so the server never certifies a key by itself:
//! `begin` makes `next.pk8` and hands out its public half; the root key holders sign a
//! certificate for it (`patchday keys rotate --role director`); `install` checks that
//! certificate against the newest catalog root the server trusts, then switches keys.
//! Agents switch when they see the new certificate at their next check-in.

use crate::error::ApiError;
use patchday_trust::director::{
    verify_certificate, DirectorKey, DirectorPublicKey, KeyCertificate,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The current key and certificate, swapped as a whole on rotation.
#[derive(Debug)]
struct Current {
    key: Arc<DirectorKey>,
    certificate: Option<(KeyCertificate, String)>,
}

/// The director key slot of a running server.
#[derive(Debug)]
pub struct Director {
    dir: PathBuf,
    current: RwLock<Arc<Current>>,
    /// Serialises rotations.
    rotating: tokio::sync::Mutex<()>,
}

fn key_path(dir: &Path) -> PathBuf {
    dir.join("ed25519.pk8")
}

fn next_path(dir: &Path) -> PathBuf {
    dir.join("next.pk8")
}

fn certificate_path(dir: &Path) -> PathBuf {
    dir.join("certificate.json")
}

/// Reads a stored certificate without verifying it (the server wrote it after verifying).
fn read_certificate(dir: &Path) -> anyhow::Result<Option<(KeyCertificate, String)>> {
    let path = certificate_path(dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{} is corrupt: {e}", path.display()))?;
            let cert: KeyCertificate = serde_json::from_value(v["signed"].clone())
                .map_err(|e| anyhow::anyhow!("{} is corrupt: {e}", path.display()))?;
            Ok(Some((cert, text)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    }
}

impl Director {
    /// Loads (creating on first start) the key in `dir`, finishing a rotation that a
    /// crash interrupted between writing the certificate and switching the key.
    pub fn open(dir: &Path) -> anyhow::Result<Director> {
        let certificate = read_certificate(dir)?;
        if let Some((cert, _)) = &certificate {
            let next = next_path(dir);
            if next.exists() && DirectorKey::load_or_create(&next)?.public() == &cert.key {
                std::fs::rename(&next, key_path(dir))?;
                tracing::warn!("finished a director key rotation interrupted by a stop");
            }
        }
        let key = DirectorKey::load_or_create(&key_path(dir))?;
        if let Some((cert, _)) = &certificate {
            if key.public() != &cert.key {
                anyhow::bail!(
                    "{} certifies key {} but {} holds key {}: restore the key that goes with the certificate, or rotate again",
                    certificate_path(dir).display(),
                    cert.key.keyid,
                    key_path(dir).display(),
                    key.public().keyid
                );
            }
        }
        if let Some((cert, _)) = &certificate {
            tracing::info!(
                version = cert.version,
                expires = %cert.expires,
                "director key certificate loaded; agents adopt a newer key only while its certificate has not expired, so rotate before then"
            );
        }
        Ok(Director {
            dir: dir.to_path_buf(),
            current: RwLock::new(Arc::new(Current {
                key: Arc::new(key),
                certificate,
            })),
            rotating: tokio::sync::Mutex::new(()),
        })
    }

    fn now(&self) -> Arc<Current> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The key that signs assignments now.
    pub fn key(&self) -> Arc<DirectorKey> {
        self.now().key.clone()
    }

    /// The current certificate as agents receive it (JSON text), if one was installed.
    pub fn certificate(&self) -> Option<String> {
        self.now().certificate.as_ref().map(|(_, t)| t.clone())
    }

    /// Version of the current certificate (0 before the first).
    pub fn certificate_version(&self) -> u64 {
        self.now()
            .certificate
            .as_ref()
            .map_or(0, |(c, _)| c.version)
    }

    /// Step one: the key to certify next (made once, then the same until installed).
    pub async fn begin(&self) -> Result<DirectorPublicKey, ApiError> {
        let _g = self.rotating.lock().await;
        let next =
            DirectorKey::load_or_create(&next_path(&self.dir)).map_err(ApiError::internal)?;
        Ok(next.public().clone())
    }

    /// Step two: checks `bytes` against `trusted_root` and switches to the key it
    /// certifies (the pending key, or the current one to re-certify it).
    pub async fn install(
        &self,
        bytes: &[u8],
        trusted_root: &[u8],
        now: jiff::Timestamp,
    ) -> Result<KeyCertificate, ApiError> {
        let _g = self.rotating.lock().await;
        let cur = self.now();
        let cert = verify_certificate(bytes, trusted_root, now, self.certificate_version())
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
                "the certificate is for key {}, which this server does not hold: start a rotation first",
                cert.key.keyid
            )));
        };
        // Certificate first, then the key: `open` finishes the switch after a crash.
        patchday_trust::client::write_atomically(&certificate_path(&self.dir), bytes)
            .map_err(ApiError::internal)?;
        if !Arc::ptr_eq(&key, &cur.key) {
            std::fs::rename(&next, key_path(&self.dir)).map_err(ApiError::internal)?;
        }
        let fresh = Arc::new(Current {
            key,
            certificate: Some((cert.clone(), text)),
        });
        match self.current.write() {
            Ok(mut c) => *c = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
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

    fn now() -> jiff::Timestamp {
        "2026-11-26T12:00:00Z".parse().unwrap()
    }

    #[tokio::test]
    async fn rotation_survives_restarts_and_a_crash_between_its_two_writes() {
        let d = tempfile::tempdir().unwrap();
        let keys = patchday_trust::generate_keyset(&d.path().join("keys"), 3, 2).unwrap();
        let repo = d.path().join("repo");
        patchday_trust::init_catalog(&keys, &repo, now(), &patchday_trust::Expiries::default())
            .await
            .unwrap();
        let root = std::fs::read(repo.join("metadata/1.root.json")).unwrap();
        let dir = d.path().join("director");
        let director = Director::open(&dir).unwrap();
        let first = director.key().public().clone();
        assert_eq!(director.certificate_version(), 0);

        // A certificate for a key the server does not hold is refused, nothing changes.
        let stranger = DirectorKey::load_or_create(&d.path().join("stranger")).unwrap();
        let cert = KeyCertificate::new(stranger.public().clone(), 1, now(), 30).unwrap();
        let signed = patchday_trust::director::certify(&cert, &keys.root)
            .await
            .unwrap();
        assert!(director.install(&signed, &root, now()).await.is_err());
        assert_eq!(director.key().public(), &first);

        // The proper rotation switches keys, and a restart keeps the new one.
        let next = director.begin().await.unwrap();
        assert_eq!(director.begin().await.unwrap(), next, "same pending key");
        let cert = KeyCertificate::new(next.clone(), 1, now(), 30).unwrap();
        let signed = patchday_trust::director::certify(&cert, &keys.root)
            .await
            .unwrap();
        director.install(&signed, &root, now()).await.unwrap();
        assert_eq!(director.key().public(), &next);
        assert!(director.certificate().is_some());
        drop(director);
        let director = Director::open(&dir).unwrap();
        assert_eq!(director.key().public(), &next);
        assert_eq!(director.certificate_version(), 1);

        // A crash after the certificate was written but before the key moved: the next
        // start finishes the switch.
        let third = director.begin().await.unwrap();
        let cert = KeyCertificate::new(third.clone(), 2, now(), 30).unwrap();
        let signed = patchday_trust::director::certify(&cert, &keys.root)
            .await
            .unwrap();
        std::fs::write(certificate_path(&dir), &signed).unwrap();
        drop(director);
        let director = Director::open(&dir).unwrap();
        assert_eq!(director.key().public(), &third);
        assert_eq!(director.certificate_version(), 2);
    }
}
