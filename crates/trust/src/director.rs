//! Signed assignments: Uptane's director role, in TUF targets form.
//!
//! The server signs, with its own online key, per-host targets metadata naming exactly
//! the update documents and payloads that host must install (length, sha256 and custom
//! fields: update, tenant, host, architecture). The agent pins the director's public
//! key at enrolment and accepts an assignment only when the signature, the host, the
//! expiry and the version hold; it then requires every assigned target to agree with
//! the catalog the offline keys signed. So a stolen director key can choose among
//! published payloads, never make a new one installable.
//!
//! Director metadata has no delegations; any `delegations` field is refused.

use crate::client::canonical_json;
use crate::TrustError;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The director's public key as agents pin it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectorPublicKey {
    /// sha256 of the public key bytes, hex.
    pub keyid: String,
    /// ed25519 public key, hex.
    pub public: String,
}

/// Custom fields of one assigned target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignedCustom {
    /// The update this target belongs to.
    pub update: String,
    /// The host's tenant.
    pub tenant: String,
    /// The host it is assigned to.
    pub host: String,
    /// The host's architecture.
    pub architecture: String,
    /// The host's groups when the assignment was signed (for the record).
    #[serde(default)]
    pub groups: Vec<String>,
    /// The payload's release counter, as the catalog signed it (0 for documents).
    #[serde(default)]
    pub release_counter: u64,
}

/// One assigned target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignedTarget {
    /// Length in bytes.
    pub length: u64,
    /// Hashes; `sha256` is required.
    pub hashes: BTreeMap<String, String>,
    /// Assignment fields.
    pub custom: AssignedCustom,
}

/// The signed part of director metadata (TUF targets shape, no delegations).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectorTargets {
    /// Always `targets`.
    #[serde(rename = "_type")]
    pub kind: String,
    /// TUF spec version.
    pub spec_version: String,
    /// Monotonic version (the signing time in seconds).
    pub version: u64,
    /// Expiry, whole seconds.
    pub expires: String,
    /// The host this answer is for (finding 6): every answer names its host, also one
    /// with no targets, so another host's "nothing to do" cannot be replayed here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Assigned targets by name.
    pub targets: BTreeMap<String, AssignedTarget>,
    /// Issue 9, point 4: assigned updates whose payloads go into one dpkg run together
    /// (an update → the updates publishing the dependencies it needs on this host).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub install_with: BTreeMap<String, BTreeSet<String>>,
    /// Issue 9, point 4: an operator asked for the recovery `patchday-agent repair` runs
    /// (`patchday host repair`). Only this signed field counts; the agent ignores any
    /// instruction anywhere else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair: Option<RepairInstruction>,
    /// Issue 10, point 5: when each assigned update may be installed and the host
    /// rebooted (update → its group's windows, deadline, reboot policy). Signed, so an
    /// agent whose server is unreachable still obeys it; an update without an entry has
    /// no window (install at once) and the reboot policy `never`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub schedule: BTreeMap<String, InstallSchedule>,
    /// Issue 10, point 3: updates an operator declined with removal (update id → why),
    /// for this host to take back. Only this signed field counts, and the agent acts only
    /// on what it installed itself for that update (`crate::removal::decide`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub remove: BTreeMap<String, RemoveInstruction>,
}

/// Issue 10, point 3: an operator's decline with removal, as the agent receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveInstruction {
    /// The operator's reason (for the record and the agent's log).
    pub reason: String,
    /// Who declined it (the token name).
    pub by: String,
    /// When it was declined (whole seconds).
    pub requested: String,
}

/// Issue 10, point 5: the signed install and reboot policy of one assigned update.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallSchedule {
    /// Weekly maintenance windows (`Sat 02:00-05:00 Europe/Berlin`); empty: any time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<String>,
    /// After this instant (whole seconds) the update is installed whatever the windows say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// `in-window`, `now` or `never`.
    pub reboot: String,
    /// Issue 10, point 2: the ring's grace period (seconds after the deadline a pending
    /// reboot may still wait for a window before it is forced); absent outside rings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_seconds: Option<i64>,
}

/// A server-side repair assignment (issue 9, point 4): run the recovery an admin would.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairInstruction {
    /// Let `apt-get -f install` install or remove packages (`--allow-apt`).
    pub allow_apt: bool,
    /// When the operator asked (whole seconds), for the record.
    pub requested: String,
}

impl DirectorTargets {
    /// When the server signed this answer (its version is the signing time in seconds):
    /// a time the server vouches for, which the agent compares its own clock with.
    pub fn signed_at(&self) -> Option<Timestamp> {
        i64::try_from(self.version)
            .ok()
            .and_then(|s| Timestamp::from_second(s).ok())
    }
}

/// The director's online signing key.
pub struct DirectorKey {
    pair: Ed25519KeyPair,
    public: DirectorPublicKey,
}

impl std::fmt::Debug for DirectorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectorKey")
            .field("public", &self.public)
            .finish()
    }
}

fn refused(check: &'static str, detail: impl Into<String>) -> TrustError {
    TrustError::AssignmentRejected {
        check,
        detail: detail.into(),
    }
}

fn cert_refused(check: &'static str, detail: impl Into<String>) -> TrustError {
    TrustError::CertificateRejected {
        check,
        detail: detail.into(),
    }
}

impl DirectorKey {
    /// Loads the key (PKCS#8, mode 0600), creating it on first use.
    pub fn load_or_create(path: &Path) -> Result<DirectorKey, TrustError> {
        let der = match std::fs::read(path) {
            Ok(b) => {
                let mode = std::fs::metadata(path)
                    .map_err(TrustError::io("inspect director key", path))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(TrustError::BadKey {
                        path: path.to_path_buf(),
                        detail: format!(
                            "mode {:o} lets others read it; chmod 600 it",
                            mode & 0o777
                        ),
                    });
                }
                b
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|e| {
                    TrustError::BadKey {
                        path: path.to_path_buf(),
                        detail: format!("cannot generate: {e}"),
                    }
                })?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(TrustError::io("create director key directory", dir))?;
                }
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(TrustError::io("write director key", path))?;
                f.write_all(doc.as_ref())
                    .map_err(TrustError::io("write director key", path))?;
                f.sync_all()
                    .map_err(TrustError::io("write director key", path))?;
                doc.as_ref().to_vec()
            }
            Err(e) => return Err(TrustError::io("read director key", path)(e)),
        };
        let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|e| TrustError::BadKey {
            path: path.to_path_buf(),
            detail: format!("not an ed25519 PKCS#8 key: {e}"),
        })?;
        let pk = pair.public_key().as_ref().to_vec();
        let public = DirectorPublicKey {
            keyid: hex::encode(Sha256::digest(&pk)),
            public: hex::encode(pk),
        };
        Ok(DirectorKey { pair, public })
    }

    /// The public half, for agents to pin.
    pub fn public(&self) -> &DirectorPublicKey {
        &self.public
    }

    /// Signs director metadata; returns the document (`{"signed":…,"signatures":[…]}`).
    pub fn sign(&self, signed: &impl Serialize) -> Result<Vec<u8>, TrustError> {
        let value = serde_json::to_value(signed).map_err(|e| refused("encoding", e.to_string()))?;
        let msg = canonical_json(&value).map_err(|e| refused("encoding", e))?;
        let sig = self.pair.sign(&msg);
        let doc = serde_json::json!({
            "signed": value,
            "signatures": [{"keyid": self.public.keyid, "sig": hex::encode(sig.as_ref())}],
        });
        serde_json::to_vec(&doc).map_err(|e| refused("encoding", e.to_string()))
    }
}

/// Checks that a key's id is the sha256 of its 32-byte ed25519 public key, so a pinned key
/// id (`patchday-agent --director-key KEYID`) names exactly one key.
pub fn check_key_id(key: &DirectorPublicKey) -> Result<(), TrustError> {
    let pk = hex::decode(&key.public).map_err(|e| refused("pinned key", e.to_string()))?;
    if pk.len() != 32 || hex::encode(Sha256::digest(&pk)) != key.keyid.to_ascii_lowercase() {
        return Err(refused(
            "pinned key",
            "the key id is not the sha256 of the ed25519 public key",
        ));
    }
    Ok(())
}

/// Expiry `now + seconds`, in the spec's whole-second form.
pub fn expires_in(now: Timestamp, seconds: i64) -> Result<String, TrustError> {
    let t = Timestamp::from_second(now.as_second().saturating_add(seconds))
        .map_err(|e| refused("expiry", e.to_string()))?;
    Ok(t.to_string())
}

/// Verifies director metadata for `host` against the pinned key.
///
/// Checks, in order: size, signature by the pinned key, `_type`, no delegations, the
/// version is not below `last_version` (rollback), not expired at `now`, the answer
/// names `host`, and every target is assigned to `host` with a sha256.
pub fn verify(
    bytes: &[u8],
    key: &DirectorPublicKey,
    host: &str,
    now: Timestamp,
    last_version: u64,
) -> Result<DirectorTargets, TrustError> {
    if bytes.len() > 4 << 20 {
        return Err(refused(
            "size",
            "director metadata is larger than 4 MiB (endless data?)",
        ));
    }
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| refused("format", e.to_string()))?;
    let signed = doc
        .get("signed")
        .ok_or_else(|| refused("format", "no `signed` object"))?;
    let msg = canonical_json(signed).map_err(|e| refused("format", e))?;
    let pk = hex::decode(&key.public).map_err(|e| refused("pinned key", e.to_string()))?;
    let good = doc
        .get("signatures")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|s| s.get("keyid").and_then(Value::as_str) == Some(key.keyid.as_str()))
        .filter_map(|s| {
            s.get("sig")
                .and_then(Value::as_str)
                .and_then(|h| hex::decode(h).ok())
        })
        .any(|sig| {
            UnparsedPublicKey::new(&ED25519, &pk)
                .verify(&msg, &sig)
                .is_ok()
        });
    if !good {
        return Err(refused(
            "signature",
            "not signed by the director key pinned at enrolment (forged or altered assignment)",
        ));
    }
    if signed.get("delegations").is_some() {
        return Err(refused(
            "delegations",
            "director metadata must not delegate",
        ));
    }
    let t: DirectorTargets =
        serde_json::from_value(signed.clone()).map_err(|e| refused("format", e.to_string()))?;
    if t.kind != "targets" {
        return Err(refused(
            "format",
            format!("_type is {:?}, not targets", t.kind),
        ));
    }
    if t.version < last_version {
        return Err(refused(
            "rollback",
            format!(
                "version {} is older than the trusted version {last_version}",
                t.version
            ),
        ));
    }
    let expires: Timestamp = t
        .expires
        .parse()
        .map_err(|e| refused("expiry", format!("{e}")))?;
    if expires <= now {
        return Err(refused(
            "expiry",
            format!("expired at {expires} (freeze attack, or a stopped server)"),
        ));
    }
    match t.host.as_deref() {
        Some(h) if h == host => {}
        Some(other) => {
            return Err(refused(
                "host",
                format!("the answer is for {other}, not to this host"),
            ))
        }
        None => {
            return Err(refused(
                "host",
                "the answer names no host (an answer for another host, or from an older server)",
            ))
        }
    }
    // Issue 9, point 4: a run groups assigned updates only.
    for (update, with) in &t.install_with {
        for u in std::iter::once(update).chain(with) {
            if !t.targets.values().any(|x| &x.custom.update == u) {
                return Err(refused(
                    "format",
                    format!("install_with names {u}, which the answer does not assign"),
                ));
            }
        }
    }
    for (name, target) in &t.targets {
        if target.custom.host != host {
            return Err(refused(
                "host",
                format!(
                    "{name} is assigned to {}, not to this host",
                    target.custom.host
                ),
            ));
        }
        if !target.hashes.contains_key("sha256") {
            return Err(refused("format", format!("{name} has no sha256")));
        }
    }
    Ok(t)
}

/// `_type` of a director key certificate: distinct from every TUF role, so a root
/// signature on one can never be taken for a root, nor the reverse.
pub const CERTIFICATE_TYPE: &str = "patchday-director-key";

/// The director key certificate: which key signs assignments, vouched for by a threshold
/// of the catalog's (offline) root keys. Rotating the director key means the server
/// makes a new key and the root key holders sign a certificate for it with a higher
/// version; agents switch to it when they see it. So a stolen director key is retired
/// by the offline keys, and the server alone can never certify a key of its choosing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCertificate {
    /// Always [`CERTIFICATE_TYPE`].
    #[serde(rename = "_type")]
    pub kind: String,
    /// TUF spec version of the signing format.
    pub spec_version: String,
    /// Grows by one per rotation.
    pub version: u64,
    /// Agents do not adopt it after this (whole seconds).
    pub expires: String,
    /// The director key.
    pub key: DirectorPublicKey,
}

impl KeyCertificate {
    /// A certificate for `key` with `version`, valid for `days` from `now`.
    pub fn new(
        key: DirectorPublicKey,
        version: u64,
        now: Timestamp,
        days: i64,
    ) -> Result<Self, TrustError> {
        Ok(KeyCertificate {
            kind: CERTIFICATE_TYPE.into(),
            spec_version: "1.0.0".into(),
            version,
            expires: expires_in(now, days.saturating_mul(86_400))?,
            key,
        })
    }
}

/// Signs a certificate with each of `root_keys` (key files of the catalog's root role).
pub async fn certify(
    cert: &KeyCertificate,
    root_keys: &[std::path::PathBuf],
) -> Result<Vec<u8>, TrustError> {
    let value = serde_json::to_value(cert).map_err(|e| cert_refused("format", e.to_string()))?;
    let doc = serde_json::json!({"signed": value, "signatures": []});
    let bytes = serde_json::to_vec(&doc).map_err(|e| cert_refused("format", e.to_string()))?;
    add_signatures(&bytes, root_keys).await
}

/// Adds the signatures of `root_keys` to a signed certificate (replacing any earlier
/// signature by the same key), so root key holders in different places can each sign
/// the same file in turn.
pub async fn add_signatures(
    certificate: &[u8],
    root_keys: &[std::path::PathBuf],
) -> Result<Vec<u8>, TrustError> {
    let mut doc: Value = serde_json::from_slice(certificate)
        .map_err(|e| cert_refused("format", format!("not a director key certificate: {e}")))?;
    let cert: KeyCertificate = serde_json::from_value(doc["signed"].clone())
        .map_err(|e| cert_refused("format", format!("not a director key certificate: {e}")))?;
    if cert.kind != CERTIFICATE_TYPE {
        return Err(cert_refused(
            "format",
            format!("_type is {:?}, not {CERTIFICATE_TYPE}", cert.kind),
        ));
    }
    let msg = canonical_json(&doc["signed"]).map_err(|e| cert_refused("format", e))?;
    let rng = SystemRandom::new();
    let mut signatures: Vec<Value> = doc["signatures"].as_array().cloned().unwrap_or_default();
    for path in root_keys {
        let signer = crate::keys::load_signer(path)?;
        let keyid = crate::keys::public_key_id(path)?;
        let sig = signer
            .sign(&msg, &rng)
            .await
            .map_err(|e| TrustError::Signing {
                role: CERTIFICATE_TYPE.into(),
                detail: e.to_string(),
            })?;
        signatures.retain(|s| s["keyid"].as_str() != Some(keyid.as_str()));
        signatures.push(serde_json::json!({"keyid": keyid, "sig": hex::encode(sig)}));
    }
    doc["signatures"] = Value::Array(signatures);
    serde_json::to_vec(&doc).map_err(|e| cert_refused("format", e.to_string()))
}

/// Verifies a director key certificate against a trusted catalog root: a threshold of its
/// root keys signed it, it is a certificate, it has not expired at `now`, and its version
/// is above `last_version` (an older or replayed certificate cannot bring back a
/// retired key).
pub fn verify_certificate(
    bytes: &[u8],
    trusted_root: &[u8],
    now: Timestamp,
    last_version: u64,
) -> Result<KeyCertificate, TrustError> {
    if bytes.len() > 64 << 10 {
        return Err(cert_refused(
            "size",
            "director key certificate is larger than 64 KiB",
        ));
    }
    let signed = crate::client::verify_by_root_keys(trusted_root, CERTIFICATE_TYPE, bytes)
        .map_err(|e| {
            cert_refused(
                "signature",
                format!("not signed by a threshold of the catalog's root keys: {e}"),
            )
        })?;
    let cert: KeyCertificate =
        serde_json::from_value(signed).map_err(|e| cert_refused("format", e.to_string()))?;
    if cert.kind != CERTIFICATE_TYPE {
        return Err(cert_refused(
            "format",
            format!("_type is {:?}, not {CERTIFICATE_TYPE}", cert.kind),
        ));
    }
    if cert.version <= last_version {
        return Err(cert_refused(
            "rollback",
            format!(
                "director key certificate version {} is not newer than the trusted version {last_version}",
                cert.version
            ),
        ));
    }
    let expires: Timestamp = cert
        .expires
        .parse()
        .map_err(|e| cert_refused("expiry", format!("{e}")))?;
    if expires <= now {
        return Err(cert_refused(
            "expiry",
            format!("director key certificate expired at {expires}"),
        ));
    }
    let pk = hex::decode(&cert.key.public).map_err(|e| cert_refused("format", e.to_string()))?;
    if pk.len() != 32 || hex::encode(Sha256::digest(&pk)) != cert.key.keyid {
        return Err(cert_refused(
            "format",
            "the key id is not the sha256 of the ed25519 public key",
        ));
    }
    Ok(cert)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(version: u64, expires: &str, host: &str) -> DirectorTargets {
        let mut targets = BTreeMap::new();
        targets.insert(
            "libfoo_1.0-2_amd64.deb".to_string(),
            AssignedTarget {
                length: 10,
                hashes: [("sha256".to_string(), "ab".repeat(32))]
                    .into_iter()
                    .collect(),
                custom: AssignedCustom {
                    update: "PD-1".into(),
                    tenant: "acme".into(),
                    host: host.into(),
                    architecture: "amd64".into(),
                    groups: vec!["web".into()],
                    release_counter: 3,
                },
            },
        );
        DirectorTargets {
            kind: "targets".into(),
            spec_version: "1.0.0".into(),
            version,
            expires: expires.into(),
            host: Some(host.into()),
            targets,
            install_with: BTreeMap::new(),
            repair: None,
            schedule: Default::default(),
            remove: Default::default(),
        }
    }

    fn now() -> Timestamp {
        "2026-11-26T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn director_attacks_are_refused_by_name() {
        let d = tempfile::tempdir().unwrap();
        let key = DirectorKey::load_or_create(&d.path().join("k")).unwrap();
        let again = DirectorKey::load_or_create(&d.path().join("k")).unwrap();
        assert_eq!(key.public(), again.public(), "the key persists");
        let pk = key.public().clone();
        let ok = key.sign(&sample(5, "2026-11-26T13:00:00Z", "h1")).unwrap();
        assert_eq!(verify(&ok, &pk, "h1", now(), 5).unwrap().version, 5);

        let check =
            |bytes: &[u8], last: u64, host: &str| match verify(bytes, &pk, host, now(), last) {
                Err(TrustError::AssignmentRejected { check, .. }) => check,
                other => panic!("{other:?}"),
            };
        // Altered after signing.
        let tampered = String::from_utf8(ok.clone())
            .unwrap()
            .replace("PD-1", "PD-9");
        assert_eq!(check(tampered.as_bytes(), 0, "h1"), "signature");
        // Signed by another key (a forged director).
        let other = DirectorKey::load_or_create(&d.path().join("other")).unwrap();
        assert_eq!(
            check(
                &other
                    .sign(&sample(5, "2026-11-26T13:00:00Z", "h1"))
                    .unwrap(),
                0,
                "h1"
            ),
            "signature"
        );
        // Older version than trusted.
        assert_eq!(check(&ok, 6, "h1"), "rollback");
        // Expired.
        assert_eq!(
            check(
                &key.sign(&sample(7, "2026-11-26T11:59:59Z", "h1")).unwrap(),
                0,
                "h1"
            ),
            "expiry"
        );
        // Another host's assignment.
        assert_eq!(check(&ok, 0, "h2"), "host");
        // Delegations.
        let mut v: Value =
            serde_json::from_slice(&key.sign(&sample(8, "2026-11-26T13:00:00Z", "h1")).unwrap())
                .unwrap();
        v["signed"]["delegations"] = serde_json::json!({"keys": {}, "roles": []});
        let msg = canonical_json(&v["signed"]).unwrap();
        v["signatures"][0]["sig"] = Value::String(hex::encode(key.pair.sign(&msg).as_ref()));
        assert_eq!(
            check(&serde_json::to_vec(&v).unwrap(), 0, "h1"),
            "delegations"
        );
        // A readable key file is refused.
        std::fs::set_permissions(d.path().join("k"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        assert!(matches!(
            DirectorKey::load_or_create(&d.path().join("k")),
            Err(TrustError::BadKey { .. })
        ));
        // Expiry strings are whole seconds.
        assert_eq!(expires_in(now(), 3600).unwrap(), "2026-11-26T13:00:00Z");
    }

    #[test]
    fn a_repair_instruction_outside_the_signed_metadata_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        let key = DirectorKey::load_or_create(&d.path().join("k")).unwrap();
        let pk = key.public().clone();
        let ok = key.sign(&sample(5, "2026-11-26T13:00:00Z", "h1")).unwrap();
        let instruction =
            serde_json::json!({"allow_apt": true, "requested": "2026-11-26T12:00:00Z"});
        // Beside the signed object (a man in the middle, or an unsigned server field): the
        // answer verifies, and carries no repair.
        let mut v: Value = serde_json::from_slice(&ok).unwrap();
        v["repair"] = instruction.clone();
        v["signatures"][0]["repair"] = instruction.clone();
        let t = verify(&serde_json::to_vec(&v).unwrap(), &pk, "h1", now(), 0).unwrap();
        assert_eq!(t.repair, None);
        // Put into the signed object without the key: the signature no longer holds.
        let mut v: Value = serde_json::from_slice(&ok).unwrap();
        v["signed"]["repair"] = instruction;
        assert!(matches!(
            verify(&serde_json::to_vec(&v).unwrap(), &pk, "h1", now(), 0),
            Err(TrustError::AssignmentRejected {
                check: "signature",
                ..
            })
        ));
        // Signed by the director: it counts.
        let mut signed = sample(6, "2026-11-26T13:00:00Z", "h1");
        signed.repair = Some(RepairInstruction {
            allow_apt: false,
            requested: "2026-11-26T12:00:00Z".into(),
        });
        let t = verify(&key.sign(&signed).unwrap(), &pk, "h1", now(), 0).unwrap();
        assert_eq!(t.repair.map(|r| r.allow_apt), Some(false));
    }

    // Issue 10, point 5.
    #[test]
    fn a_window_or_deadline_moved_in_transit_breaks_the_signature_and_an_unsigned_one_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        let key = DirectorKey::load_or_create(&d.path().join("k")).unwrap();
        let pk = key.public().clone();
        let mut t = sample(5, "2026-11-26T13:00:00Z", "h1");
        t.schedule.insert(
            "PD-1".into(),
            InstallSchedule {
                windows: vec!["Sat 02:00-05:00 Europe/Berlin".into()],
                deadline: Some("2026-12-10T18:00:00Z".into()),
                reboot: "in-window".into(),
                grace_seconds: Some(86_400),
            },
        );
        let ok = key.sign(&t).unwrap();
        assert_eq!(
            verify(&ok, &pk, "h1", now(), 0).unwrap().schedule,
            t.schedule
        );
        // Someone in the middle opens the window now, or pulls the deadline in.
        for (from, to) in [
            ("Sat 02:00-05:00", "Thu 00:00-23:59"),
            ("2026-12-10T18:00:00Z", "2026-11-26T12:00:00Z"),
            ("in-window", "now"),
        ] {
            let tampered = String::from_utf8(ok.clone()).unwrap().replace(from, to);
            assert!(
                matches!(
                    verify(tampered.as_bytes(), &pk, "h1", now(), 0),
                    Err(TrustError::AssignmentRejected {
                        check: "signature",
                        ..
                    })
                ),
                "{from} -> {to}"
            );
        }
        // A schedule beside the signed object counts for nothing.
        let plain = key.sign(&sample(6, "2026-11-26T13:00:00Z", "h1")).unwrap();
        let mut v: Value = serde_json::from_slice(&plain).unwrap();
        v["schedule"] = serde_json::json!({"PD-1": {"windows": [], "reboot": "now"}});
        let t = verify(&serde_json::to_vec(&v).unwrap(), &pk, "h1", now(), 0).unwrap();
        assert!(t.schedule.is_empty());
    }

    #[test]
    fn install_with_names_only_assigned_updates() {
        let d = tempfile::tempdir().unwrap();
        let key = DirectorKey::load_or_create(&d.path().join("k")).unwrap();
        let mut t = sample(5, "2026-11-26T13:00:00Z", "h1");
        t.install_with
            .insert("PD-1".into(), BTreeSet::from(["PD-2".to_string()]));
        let err = verify(&key.sign(&t).unwrap(), key.public(), "h1", now(), 0).unwrap_err();
        assert!(err.to_string().contains("install_with names PD-2"), "{err}");
    }

    #[tokio::test]
    async fn director_key_certificates_need_a_root_threshold_and_never_go_back() {
        let d = tempfile::tempdir().unwrap();
        let keys = crate::generate_keyset(&d.path().join("keys"), 3, 2).unwrap();
        let repo = d.path().join("repo");
        crate::init_catalog(&keys, &repo, now(), &crate::Expiries::default())
            .await
            .unwrap();
        let root = std::fs::read(repo.join("metadata/1.root.json")).unwrap();
        let director = DirectorKey::load_or_create(&d.path().join("director")).unwrap();
        let cert = KeyCertificate::new(director.public().clone(), 2, now(), 365).unwrap();
        let check = |bytes: &[u8], last: u64| match verify_certificate(bytes, &root, now(), last) {
            Err(TrustError::CertificateRejected { check, .. }) => check,
            other => panic!("{other:?}"),
        };

        let two = certify(&cert, &keys.root[..2]).await.unwrap();
        assert_eq!(verify_certificate(&two, &root, now(), 1).unwrap(), cert);
        // One root key of three, threshold two.
        let one = certify(&cert, &keys.root[..1]).await.unwrap();
        assert_eq!(check(&one, 1), "signature");
        // Signed by the targets key (or any key that is not a root key).
        let targets = certify(&cert, std::slice::from_ref(&keys.targets))
            .await
            .unwrap();
        assert_eq!(check(&targets, 1), "signature");
        // Altered after signing.
        let other = DirectorKey::load_or_create(&d.path().join("other")).unwrap();
        let swapped = String::from_utf8(two.clone())
            .unwrap()
            .replace(&director.public().public, &other.public().public);
        assert_eq!(check(swapped.as_bytes(), 1), "signature");
        // Replayed: not newer than what the agent holds.
        assert_eq!(check(&two, 2), "rollback");
        // Expired.
        let old = KeyCertificate::new(director.public().clone(), 3, now(), -1).unwrap();
        assert_eq!(
            check(&certify(&old, &keys.root).await.unwrap(), 2),
            "expiry"
        );
        // Two holders, each with one root key, signing the same file in turn.
        let first = certify(&cert, &keys.root[..1]).await.unwrap();
        let again = add_signatures(&first, &keys.root[..1]).await.unwrap();
        assert_eq!(
            check(&again, 1),
            "signature",
            "the same key twice is one signature"
        );
        let both = add_signatures(&again, &keys.root[1..2]).await.unwrap();
        assert_eq!(verify_certificate(&both, &root, now(), 1).unwrap(), cert);
        // A real root cannot pass as a certificate.
        assert_eq!(check(&root, 0), "format");
    }
}
