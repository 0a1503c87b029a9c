//! Catalog key files: generating them and reading them for signing.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::Ed25519KeyPair;
use tough::key_source::KeySource;
use tough::sign::{parse_keypair, Sign};

use crate::TrustError;

/// Paths of the four catalog signing keys (ed25519, PKCS#8 PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPaths {
    /// Root key: signs root.json; keep it offline.
    pub root: PathBuf,
    /// Targets key: signs the list of updates and payloads; keep it offline.
    pub targets: PathBuf,
    /// Snapshot key: signs snapshot.json.
    pub snapshot: PathBuf,
    /// Timestamp key: signs timestamp.json (short-lived).
    pub timestamp: PathBuf,
}

impl KeyPaths {
    /// The conventional names `root.pem`, `targets.pem`, `snapshot.pem`, `timestamp.pem` in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        KeyPaths {
            root: dir.join("root.pem"),
            targets: dir.join("targets.pem"),
            snapshot: dir.join("snapshot.pem"),
            timestamp: dir.join("timestamp.pem"),
        }
    }

    fn all(&self) -> [&PathBuf; 4] {
        [&self.root, &self.targets, &self.snapshot, &self.timestamp]
    }
}

/// Writes four fresh ed25519 keys into `dir` (mode 0700; files 0600); never overwrites a key.
pub fn generate_keys(dir: &Path) -> Result<KeyPaths, TrustError> {
    let paths = KeyPaths::in_dir(dir);
    // Refuse before writing anything, so a half-written key set never happens by our hand.
    for path in paths.all() {
        if path.symlink_metadata().is_ok() {
            return Err(TrustError::KeyExists { path: path.clone() });
        }
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(TrustError::io("create key directory", dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(TrustError::io("restrict key directory to mode 0700", dir))?;

    let rng = SystemRandom::new();
    for path in paths.all() {
        let der = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| TrustError::BadKey {
            path: path.clone(),
            detail: "the system random source failed while generating it".into(),
        })?;
        let text = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => TrustError::KeyExists { path: path.clone() },
                _ => TrustError::io("create key", path)(e),
            })?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(TrustError::io("write key", path))?;
    }
    Ok(paths)
}

/// A key file in PEM (PKCS#8 `PRIVATE KEY`) or raw DER form, as tough's signing source.
///
/// tough's own `LocalKeySource` accepts ed25519 only as raw DER; this one also unwraps PEM.
#[derive(Debug)]
pub(crate) struct PemKeySource {
    path: PathBuf,
}

impl PemKeySource {
    pub(crate) fn boxed(path: &Path) -> Box<dyn KeySource> {
        Box::new(PemKeySource {
            path: path.to_path_buf(),
        })
    }
}

/// Reads and parses a key file, for signing or to learn its public key.
pub(crate) fn load_signer(path: &Path) -> Result<Box<dyn Sign>, TrustError> {
    let data = std::fs::read(path).map_err(|e| TrustError::BadKey {
        path: path.to_path_buf(),
        detail: format!("cannot read it: {e}"),
    })?;
    let der = match pem::parse(&data) {
        Ok(block) => block.into_contents(),
        Err(_) => data,
    };
    let signer = parse_keypair(&der).map_err(|e| TrustError::BadKey {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    Ok(Box::new(signer))
}

#[tough::async_trait]
impl KeySource for PemKeySource {
    async fn as_sign(
        &self,
    ) -> Result<Box<dyn Sign>, Box<dyn std::error::Error + Send + Sync + 'static>> {
        Ok(load_signer(&self.path)?)
    }

    async fn write(
        &self,
        _value: &str,
        _key_id_hex: &str,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        // Keys are written once by `generate_keys`; tough never needs to write them back.
        Err("patchday key files are read-only to the signer".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_private_and_never_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let paths = generate_keys(&dir).unwrap();
        assert_eq!(paths, KeyPaths::in_dir(&dir));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for p in paths.all() {
            assert_eq!(mode(p), 0o600);
            let text = std::fs::read_to_string(p).unwrap();
            assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"));
            load_signer(p).unwrap();
        }
        let before = std::fs::read(&paths.root).unwrap();
        assert!(matches!(
            generate_keys(&dir),
            Err(TrustError::KeyExists { .. })
        ));
        assert_eq!(std::fs::read(&paths.root).unwrap(), before);
    }

    #[test]
    fn garbage_key_is_reported_with_its_path() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("k.pem");
        std::fs::write(&p, "not a key").unwrap();
        let err = load_signer(&p).err().unwrap();
        assert!(matches!(err, TrustError::BadKey { .. }), "{err}");
        assert!(err.to_string().contains("k.pem"));
    }
}
