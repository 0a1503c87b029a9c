//! Host-signed requests (issue 8, finding 8): Uptane's version manifests for Patchday.
//!
//! Each agent makes its own ed25519 key at enrolment and keeps it (PKCS#8, mode 0600)
//! in its state directory; the server stores only the public half. Every check-in,
//! state report and facts upload carries, in two headers, a sequence number and a
//! signature over the API path, tenant, host, that sequence number and the sha256 of
//! the exact body bytes. The server accepts a body only when the signature verifies
//! under the host's key and the sequence number is above the last one it accepted, so
//! a thief of the host's bearer credential alone can neither forge nor replay what the
//! host says about itself.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Header carrying the request's sequence number (decimal).
pub const SEQUENCE_HEADER: &str = "patchday-sequence";
/// Header carrying the ed25519 signature (hex) of [`request_message`].
pub const SIGNATURE_HEADER: &str = "patchday-signature";
/// Header on a replay refusal: the last sequence number the server accepted.
pub const LAST_SEQUENCE_HEADER: &str = "patchday-last-sequence";

/// Why a host key could not be made or used, or a signed request was refused.
#[derive(Debug, thiserror::Error)]
pub enum HostSignatureError {
    /// The key file is missing, unreadable, readable by others, or not an ed25519 key.
    #[error("host signing key {path}: {detail}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The public key on file is not a hex ed25519 key.
    #[error("the host's public key is malformed ({0}); re-enrol the host")]
    BadPublicKey(String),
    /// The signature is not hex, or does not verify for this body.
    #[error("signature does not verify under the host's key: the body was altered after signing, or signed by another key")]
    BadSignature,
}

/// A host's private signing key. Never printed.
pub struct HostKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKey")
            .field("public", &self.public_hex())
            .finish()
    }
}

fn key_err(path: &Path, detail: impl Into<String>) -> HostSignatureError {
    HostSignatureError::Key {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

impl HostKey {
    /// Makes a new key and writes it to `path` with mode 0600, replacing any old one.
    pub fn generate(path: &Path) -> Result<HostKey, HostSignatureError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|e| key_err(path, format!("cannot generate: {e}")))?;
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(doc.as_ref())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| key_err(path, format!("cannot write (disk full?): {e}")))?;
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
            .map_err(|e| key_err(path, format!("not an ed25519 PKCS#8 key: {e}")))?;
        Ok(HostKey { pair })
    }

    /// A new key that lives in memory only (benchmarks, tests, an attacker's key).
    pub fn ephemeral() -> Result<HostKey, HostSignatureError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|e| key_err(Path::new("(memory)"), format!("cannot generate: {e}")))?;
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
            .map_err(|e| key_err(Path::new("(memory)"), format!("not an ed25519 key: {e}")))?;
        Ok(HostKey { pair })
    }

    /// Loads the key, refusing a file that others may read.
    pub fn load(path: &Path) -> Result<HostKey, HostSignatureError> {
        let der = std::fs::read(path).map_err(|e| key_err(path, format!("cannot read: {e}")))?;
        let mode = std::fs::metadata(path)
            .map_err(|e| key_err(path, format!("cannot inspect: {e}")))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(key_err(
                path,
                format!("mode {:o} lets others read it; chmod 600 it", mode & 0o777),
            ));
        }
        let pair = Ed25519KeyPair::from_pkcs8(&der)
            .map_err(|e| key_err(path, format!("not an ed25519 PKCS#8 key: {e}")))?;
        Ok(HostKey { pair })
    }

    /// The public key, hex (sent at enrolment).
    pub fn public_hex(&self) -> String {
        hex::encode(self.pair.public_key().as_ref())
    }

    /// Issue 14, point 1: signs `message` as it is (the access proof of
    /// [`crate::access`], which has its own context string); the signature's raw bytes.
    pub(crate) fn sign_bytes(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }

    /// The raw 32-byte public key.
    pub(crate) fn public_bytes(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// Signs one request; returns the signature, hex.
    pub fn sign_request(
        &self,
        path: &str,
        tenant: &str,
        host: &str,
        sequence: u64,
        body: &[u8],
    ) -> String {
        let msg = request_message(path, tenant, host, sequence, body);
        hex::encode(self.pair.sign(&msg).as_ref())
    }
}

/// The bytes a host signs: a fixed context string, the API path (without leading `/`,
/// so a reverse proxy's prefix does not matter), tenant, host, sequence number and the
/// sha256 of the body, one per line.
pub fn request_message(
    path: &str,
    tenant: &str,
    host: &str,
    sequence: u64,
    body: &[u8],
) -> Vec<u8> {
    format!(
        "patchday-host-request/1\n{}\n{tenant}\n{host}\n{sequence}\n{}",
        path.trim_start_matches('/'),
        hex::encode(Sha256::digest(body))
    )
    .into_bytes()
}

/// Checks that a public key is a hex ed25519 key (32 bytes).
pub fn check_public_key(public_hex: &str) -> Result<(), HostSignatureError> {
    match hex::decode(public_hex) {
        Ok(b) if b.len() == 32 => Ok(()),
        Ok(b) => Err(HostSignatureError::BadPublicKey(format!(
            "{} bytes, expected 32",
            b.len()
        ))),
        Err(e) => Err(HostSignatureError::BadPublicKey(e.to_string())),
    }
}

/// Verifies a request's signature under the host's public key.
pub fn verify_request(
    public_hex: &str,
    signature_hex: &str,
    path: &str,
    tenant: &str,
    host: &str,
    sequence: u64,
    body: &[u8],
) -> Result<(), HostSignatureError> {
    check_public_key(public_hex)?;
    let pk =
        hex::decode(public_hex).map_err(|e| HostSignatureError::BadPublicKey(e.to_string()))?;
    let sig = hex::decode(signature_hex).map_err(|_| HostSignatureError::BadSignature)?;
    let msg = request_message(path, tenant, host, sequence, body);
    UnparsedPublicKey::new(&ED25519, &pk)
        .verify(&msg, &sig)
        .map_err(|_| HostSignatureError::BadSignature)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_signature_binds_path_tenant_host_sequence_and_body() {
        let d = tempfile::tempdir().unwrap();
        let k = HostKey::generate(&d.path().join("host-key.pk8")).unwrap();
        let mode = std::fs::metadata(d.path().join("host-key.pk8"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let pk = k.public_hex();
        let sig = k.sign_request("v1/agent/checkin", "acme", "web-1", 7, b"{}");
        verify_request(&pk, &sig, "/v1/agent/checkin", "acme", "web-1", 7, b"{}").unwrap();
        for (path, tenant, host, seq, body) in [
            ("v1/agent/report", "acme", "web-1", 7, &b"{}"[..]),
            ("v1/agent/checkin", "globex", "web-1", 7, b"{}"),
            ("v1/agent/checkin", "acme", "web-2", 7, b"{}"),
            ("v1/agent/checkin", "acme", "web-1", 8, b"{}"),
            ("v1/agent/checkin", "acme", "web-1", 7, b"{ }"),
        ] {
            assert!(matches!(
                verify_request(&pk, &sig, path, tenant, host, seq, body),
                Err(HostSignatureError::BadSignature)
            ));
        }
        let other = HostKey::generate(&d.path().join("other.pk8")).unwrap();
        assert!(matches!(
            verify_request(
                &other.public_hex(),
                &sig,
                "v1/agent/checkin",
                "acme",
                "web-1",
                7,
                b"{}"
            ),
            Err(HostSignatureError::BadSignature)
        ));
        let again = HostKey::load(&d.path().join("host-key.pk8")).unwrap();
        assert_eq!(again.public_hex(), pk);
        std::fs::set_permissions(
            d.path().join("host-key.pk8"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let e = HostKey::load(&d.path().join("host-key.pk8")).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        assert!(!format!("{k:?}").contains("pair"));
    }
}
