//! Every attack in the catalog's trust model, with real keys, real signatures and real files.

// Test helpers outside #[test] fns fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use patchday_trust::transport::{ByteStream, FetchError, FileTransport, Transport};
use patchday_trust::{
    add_targets, check_payload, generate_keys, generate_keyset, init_catalog, load_remote,
    read_verified_target, resign_timestamp, rotate_role, rotate_root, verify_repository_at,
    Expiries, KeyPaths, LoadTime, NewTarget, Role, TrustError, VerifiedCatalog,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use tough::editor::signed::SignedRole;
use tough::key_source::KeySource;
use tough::schema::{Hashes, KeyHolder, Metafile, Root, Signed, Snapshot};
use tough::sign::Sign;

/// tough judges expiry by the system clock, so signing must use it too.
#[allow(clippy::disallowed_methods)]
fn now() -> Timestamp {
    Timestamp::now()
}

/// A publisher's machine: keys, a catalog, and the files it publishes.
struct Publisher {
    tmp: tempfile::TempDir,
    keys: KeyPaths,
    repo: PathBuf,
}

impl Publisher {
    async fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let keys = generate_keys(&tmp.path().join("keys")).unwrap();
        let repo = tmp.path().join("catalog");
        init_catalog(&keys, &repo, now(), &Expiries::default())
            .await
            .unwrap();
        Publisher { tmp, keys, repo }
    }

    /// A publisher whose root has `n` keys with `threshold`.
    async fn with_keyset(n: usize, threshold: u32) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let keys = generate_keyset(&tmp.path().join("keys"), n, threshold).unwrap();
        let repo = tmp.path().join("catalog");
        init_catalog(&keys, &repo, now(), &Expiries::default())
            .await
            .unwrap();
        Publisher { tmp, keys, repo }
    }

    fn file(&self, name: &str, content: &[u8]) -> PathBuf {
        let p = self.tmp.path().join("incoming").join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p
    }

    /// Publishes update `id`: its document and one payload.
    async fn publish(&self, id: &str, payload: &str) {
        let doc = format!(r#"{{"id":"{id}","payloads":["{payload}"]}}"#);
        let new = vec![
            NewTarget {
                name: format!("update-{id}.json"),
                path: self.file(&format!("update-{id}.json"), doc.as_bytes()),
                custom: json!({"type": "update", "id": id}),
            },
            NewTarget {
                name: payload.to_owned(),
                path: self.file(payload, format!("bytes of {payload}").as_bytes()),
                custom: json!({"type": "payload", "kind": "deb", "package": "libfoo"}),
            },
        ];
        add_targets(&self.keys, &self.repo, new, now(), &Expiries::default())
            .await
            .unwrap();
    }

    fn meta(&self) -> PathBuf {
        self.repo.join("metadata")
    }

    fn targets(&self) -> PathBuf {
        self.repo.join("targets")
    }

    fn pinned_root(&self) -> PathBuf {
        self.meta().join("1.root.json")
    }

    /// A copy of the catalog as it is now (what an attacker could replay later).
    fn snapshot_copy(&self, label: &str) -> PathBuf {
        let dest = self.tmp.path().join(label);
        for sub in ["metadata", "targets"] {
            std::fs::create_dir_all(dest.join(sub)).unwrap();
            for entry in std::fs::read_dir(self.repo.join(sub)).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), dest.join(sub).join(entry.file_name())).unwrap();
            }
        }
        dest
    }
}

/// The server (or agent) side: a pinned root and a datastore.
struct Verifier {
    tmp: tempfile::TempDir,
    pinned: PathBuf,
}

impl Verifier {
    fn pinning(root: &Path) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let pinned = tmp.path().join("pinned-root.json");
        std::fs::copy(root, &pinned).unwrap();
        Verifier { tmp, pinned }
    }

    fn datastore(&self) -> PathBuf {
        self.tmp.path().join("datastore")
    }

    async fn verify(&self, repo: &Path) -> Result<VerifiedCatalog, TrustError> {
        verify_repository_at(
            &self.pinned,
            &self.datastore(),
            &repo.join("metadata"),
            &repo.join("targets"),
            now(),
        )
        .await
    }
}

fn target_file(repo: &Path, catalog: &VerifiedCatalog, name: &str) -> PathBuf {
    catalog.target_path(&repo.join("targets"), name).unwrap()
}

#[tokio::test]
async fn init_add_verify_round_trip_preserves_custom_fields() {
    let publisher = Publisher::new().await;
    let verifier = Verifier::pinning(&publisher.pinned_root());

    let empty = verifier.verify(&publisher.repo).await.unwrap();
    assert_eq!(
        (
            empty.root_version,
            empty.targets_version,
            empty.snapshot_version,
            empty.timestamp_version
        ),
        (1, 1, 1, 1)
    );
    assert!(empty.targets.is_empty());

    publisher
        .publish("PD-1", "libfoo_1.2-1+deb12u1_amd64.deb")
        .await;
    let catalog = verifier.verify(&publisher.repo).await.unwrap();
    assert_eq!(
        (
            catalog.targets_version,
            catalog.snapshot_version,
            catalog.timestamp_version
        ),
        (2, 2, 2)
    );
    let payload = catalog.target("libfoo_1.2-1+deb12u1_amd64.deb").unwrap();
    assert_eq!(
        payload.custom,
        json!({"type": "payload", "kind": "deb", "package": "libfoo"})
    );
    let content = b"bytes of libfoo_1.2-1+deb12u1_amd64.deb";
    assert_eq!(payload.length, content.len() as u64);
    assert_eq!(payload.sha256, hex::encode(Sha256::digest(content)));
    assert!(catalog.timestamp_expires > now());
    assert!(catalog.timestamp_expires <= now() + SignedDuration::from_hours(24));

    let doc = read_verified_target(&catalog, &publisher.targets(), "update-PD-1.json")
        .await
        .unwrap();
    assert_eq!(
        doc,
        br#"{"id":"PD-1","payloads":["libfoo_1.2-1+deb12u1_amd64.deb"]}"#
    );
    check_payload(
        payload,
        &target_file(&publisher.repo, &catalog, "libfoo_1.2-1+deb12u1_amd64.deb"),
    )
    .unwrap();

    // A second update keeps the first and raises every version; the same datastore accepts it.
    publisher.publish("PD-2", "libfoo_1.3-1_amd64.deb").await;
    let newer = verifier.verify(&publisher.repo).await.unwrap();
    assert_eq!(newer.targets.len(), 4);
    assert_eq!(newer.targets_version, 3);
    assert_eq!(
        newer.target("update-PD-1.json").unwrap().custom,
        json!({"type": "update", "id": "PD-1"})
    );

    // Refreshing the timestamp (online keys only) keeps targets and raises snapshot/timestamp.
    let v = resign_timestamp(
        &publisher.keys,
        &publisher.repo,
        now(),
        &Expiries::default(),
    )
    .await
    .unwrap();
    assert_eq!((v.root, v.targets, v.snapshot, v.timestamp), (1, 3, 4, 4));
    let refreshed = verifier.verify(&publisher.repo).await.unwrap();
    assert_eq!(refreshed.targets, newer.targets);
    assert_eq!(refreshed.timestamp_version, 4);
}

#[tokio::test]
async fn tampered_update_document_is_rejected() {
    let publisher = Publisher::new().await;
    publisher.publish("PD-1", "foo_1.2.tar.zst").await;
    let verifier = Verifier::pinning(&publisher.pinned_root());
    let catalog = verifier.verify(&publisher.repo).await.unwrap();
    let doc = target_file(&publisher.repo, &catalog, "update-PD-1.json");

    // Same length, one byte changed: the hash check catches it.
    let mut bytes = std::fs::read(&doc).unwrap();
    bytes[7] ^= 0x01;
    std::fs::write(&doc, &bytes).unwrap();
    let err = verifier.verify(&publisher.repo).await.unwrap_err();
    assert!(
        matches!(&err, TrustError::HashMismatch { name, .. } if name == "update-PD-1.json"),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains("sha256 mismatch (tampered or corrupted)"));

    // A longer document is caught by its length before any hashing.
    bytes.extend_from_slice(b" \"approved\": true");
    std::fs::write(&doc, &bytes).unwrap();
    let err = verifier.verify(&publisher.repo).await.unwrap_err();
    assert!(matches!(err, TrustError::LengthMismatch { .. }), "{err}");

    // And a missing one is named as missing.
    std::fs::remove_file(&doc).unwrap();
    let err = verifier.verify(&publisher.repo).await.unwrap_err();
    assert!(matches!(err, TrustError::TargetFileMissing { .. }), "{err}");
}

/// Reads a PEM key file for tough (what an attacker holding that key file would do).
#[derive(Debug)]
struct StolenKey(PathBuf);

#[tough::async_trait]
impl KeySource for StolenKey {
    async fn as_sign(
        &self,
    ) -> Result<Box<dyn Sign>, Box<dyn std::error::Error + Send + Sync + 'static>> {
        let pem = pem::parse(std::fs::read(&self.0)?)?;
        Ok(Box::new(tough::sign::parse_keypair(pem.contents())?))
    }

    async fn write(
        &self,
        _: &str,
        _: &str,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        Ok(())
    }
}

fn metafile(version: u64, bytes: &[u8]) -> Metafile {
    Metafile {
        length: Some(bytes.len() as u64),
        hashes: Some(Hashes {
            sha256: Sha256::digest(bytes).to_vec().into(),
            _extra: HashMap::new(),
        }),
        version: NonZeroU64::new(version).unwrap(),
        _extra: HashMap::new(),
    }
}

/// An attacker with the online snapshot and timestamp keys (not the offline targets key)
/// swaps in `targets_bytes` and re-signs snapshot and timestamp so that they match it.
async fn resign_with_online_keys(publisher: &Publisher, targets_bytes: Vec<u8>) {
    resign_role_with_online_keys(publisher, "targets", targets_bytes).await
}

/// The bin role (issue 9, point 6) that lists `target` in a catalog the publisher made.
fn bin_of(target: &str) -> String {
    format!(
        "targets.bin-{}",
        &hex::encode(Sha256::digest(target.as_bytes()))[..2]
    )
}

/// The current metadata file of `role` in the publisher's catalog.
fn role_file(publisher: &Publisher, role: &str) -> PathBuf {
    let meta = publisher.meta();
    let ts: serde_json::Value =
        serde_json::from_slice(&std::fs::read(meta.join("timestamp.json")).unwrap()).unwrap();
    let snap_v = ts["signed"]["meta"]["snapshot.json"]["version"]
        .as_u64()
        .unwrap();
    let snap: serde_json::Value = serde_json::from_slice(
        &std::fs::read(meta.join(format!("{snap_v}.snapshot.json"))).unwrap(),
    )
    .unwrap();
    let v = snap["signed"]["meta"][format!("{role}.json")]["version"]
        .as_u64()
        .unwrap();
    meta.join(format!("{v}.{role}.json"))
}

/// Like [`resign_with_online_keys`] for any targets role (a bin): the snapshot keeps every
/// other entry.
async fn resign_role_with_online_keys(publisher: &Publisher, role: &str, role_bytes: Vec<u8>) {
    let meta = publisher.meta();
    let root: Signed<Root> =
        serde_json::from_slice(&std::fs::read(meta.join("root.json")).unwrap()).unwrap();
    let ts: serde_json::Value =
        serde_json::from_slice(&std::fs::read(meta.join("timestamp.json")).unwrap()).unwrap();
    let snap_v = ts["signed"]["meta"]["snapshot.json"]["version"]
        .as_u64()
        .unwrap();
    let old_snapshot: Signed<Snapshot> = serde_json::from_slice(
        &std::fs::read(meta.join(format!("{snap_v}.snapshot.json"))).unwrap(),
    )
    .unwrap();
    let entry = format!("{role}.json");
    let role_v = old_snapshot.signed.meta[&entry].version.get();
    std::fs::write(meta.join(format!("{role_v}.{role}.json")), &role_bytes).unwrap();

    let holder = KeyHolder::Root(root.signed.clone());
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let expires = now() + SignedDuration::from_hours(24);
    let mut snapshot = Snapshot::new(
        "1.0.0".into(),
        NonZeroU64::new(snap_v + 1).unwrap(),
        expires,
    );
    snapshot.meta = old_snapshot.signed.meta.clone();
    snapshot.meta.insert(entry, metafile(role_v, &role_bytes));
    let keys: Vec<Box<dyn KeySource>> = vec![Box::new(StolenKey(publisher.keys.snapshot.clone()))];
    let snapshot = SignedRole::new(snapshot, &holder, &keys, &rng)
        .await
        .unwrap();
    let mut timestamp = tough::schema::Timestamp::new(
        "1.0.0".into(),
        NonZeroU64::new(ts["signed"]["version"].as_u64().unwrap() + 1).unwrap(),
        expires,
    );
    timestamp.meta.insert(
        "snapshot.json".into(),
        metafile(snap_v + 1, snapshot.buffer()),
    );
    let keys: Vec<Box<dyn KeySource>> = vec![Box::new(StolenKey(publisher.keys.timestamp.clone()))];
    let timestamp = SignedRole::new(timestamp, &holder, &keys, &rng)
        .await
        .unwrap();
    std::fs::write(
        meta.join(format!("{}.snapshot.json", snap_v + 1)),
        snapshot.buffer(),
    )
    .unwrap();
    std::fs::write(meta.join("timestamp.json"), timestamp.buffer()).unwrap();
}

#[tokio::test]
async fn tampered_targets_metadata_signature_is_rejected() {
    let publisher = Publisher::new().await;
    publisher.publish("PD-1", "foo_1.2.tar.zst").await;
    let verifier = Verifier::pinning(&publisher.pinned_root());
    verifier.verify(&publisher.repo).await.unwrap();

    // Point the payload at the attacker's bytes: edit the bin that lists it (issue 9,
    // point 6: targets live in hash bins), keep its old signature.
    let evil = publisher.file("evil", b"malware");
    let bin = bin_of("foo_1.2.tar.zst");
    let targets_file = role_file(&publisher, &bin);
    let mut targets: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&targets_file).unwrap()).unwrap();
    let entry = &mut targets["signed"]["targets"]["foo_1.2.tar.zst"];
    entry["length"] = json!(7);
    entry["hashes"]["sha256"] = json!(hex::encode(Sha256::digest(b"malware")));
    let tampered = serde_json::to_vec_pretty(&targets).unwrap();
    std::fs::copy(
        &evil,
        publisher.targets().join(format!(
            "{}.foo_1.2.tar.zst",
            hex::encode(Sha256::digest(b"malware"))
        )),
    )
    .unwrap();

    // Alone, the edit no longer matches the hash that snapshot lists.
    std::fs::write(&targets_file, &tampered).unwrap();
    let err = verifier.verify(&publisher.repo).await.unwrap_err();
    assert!(
        matches!(&err, TrustError::MetadataMismatch { role, .. } if *role == bin),
        "{err}"
    );

    // With the online keys stolen too, snapshot agrees, but the targets signature does not.
    resign_role_with_online_keys(&publisher, &bin, tampered).await;
    let err = verifier.verify(&publisher.repo).await.unwrap_err();
    assert!(
        matches!(&err, TrustError::BadSignature { role, .. } if *role == bin),
        "{err}"
    );
}

#[tokio::test]
async fn rollback_to_older_catalog_is_rejected() {
    let publisher = Publisher::new().await;
    publisher.publish("PD-1", "libfoo_1.2-1_amd64.deb").await;
    let old = publisher.snapshot_copy("old-catalog");
    publisher.publish("PD-2", "libfoo_1.2-2_amd64.deb").await;

    let verifier = Verifier::pinning(&publisher.pinned_root());
    let current = verifier.verify(&publisher.repo).await.unwrap();
    assert_eq!(current.timestamp_version, 3);

    let err = verifier.verify(&old).await.unwrap_err();
    assert!(
        matches!(
            &err,
            TrustError::Rollback { role, offered: 2, trusted: 3 } if role == "timestamp"
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "catalog rejected: timestamp version 2 is older than trusted version 3 (rollback?)"
    );
    // A fresh verifier (no history) would accept the old catalog: the datastore is the defence.
    Verifier::pinning(&publisher.pinned_root())
        .verify(&old)
        .await
        .unwrap();
}

#[tokio::test]
async fn expired_timestamp_is_rejected() {
    let publisher = Publisher::new().await;
    publisher.publish("PD-1", "foo_1.2.tar.zst").await;
    // Signed a month ago with a one-day timestamp: a replay of stale but genuine metadata.
    let month_ago = now() - SignedDuration::from_hours(24 * 30);
    resign_timestamp(
        &publisher.keys,
        &publisher.repo,
        month_ago,
        &Expiries::default(),
    )
    .await
    .unwrap();
    let verifier = Verifier::pinning(&publisher.pinned_root());
    let err = verifier.verify(&publisher.repo).await.unwrap_err();
    // Expiries are written in whole seconds, as the TUF specification has them.
    let expected =
        jiff::Timestamp::from_second((month_ago + SignedDuration::from_hours(24)).as_second())
            .unwrap();
    assert!(
        matches!(&err, TrustError::Expired { role, expires: Some(at) } if role == "timestamp" && *at == expected),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains("(freeze attack, or the publisher must re-sign)"));

    // The publisher re-signs with the current time and the catalog is good again.
    resign_timestamp(
        &publisher.keys,
        &publisher.repo,
        now(),
        &Expiries::default(),
    )
    .await
    .unwrap();
    verifier.verify(&publisher.repo).await.unwrap();
}

#[tokio::test]
async fn mix_and_match_snapshot_is_rejected() {
    let publisher = Publisher::new().await;
    publisher.publish("PD-1", "foo_1.2.tar.zst").await;
    let meta = publisher.meta();
    // Only current versions stay in a catalog (issue 9, point 6): the attacker kept copies.
    let old_targets = std::fs::read(role_file(&publisher, "targets")).unwrap();
    let old_snapshot = std::fs::read(meta.join("2.snapshot.json")).unwrap();
    // Adding nothing re-signs targets, snapshot and timestamp.
    add_targets(
        &publisher.keys,
        &publisher.repo,
        vec![],
        now(),
        &Expiries::default(),
    )
    .await
    .unwrap();
    assert!(
        !meta.join("2.snapshot.json").exists(),
        "old versions are pruned"
    );
    let verifier = Verifier::pinning(&publisher.pinned_root());

    // The older targets.json served under the current version's name.
    let current = role_file(&publisher, "targets");
    let genuine = std::fs::read(&current).unwrap();
    std::fs::write(&current, &old_targets).unwrap();
    let err = verifier.verify(&publisher.repo).await.unwrap_err();
    assert!(
        matches!(&err, TrustError::MetadataMismatch { role, listed_by, .. } if role == "targets" && listed_by == "snapshot"),
        "{err}"
    );
    std::fs::write(&current, genuine).unwrap();

    // The older snapshot.json served under the current version's name.
    std::fs::write(meta.join("3.snapshot.json"), old_snapshot).unwrap();
    let err = verifier.verify(&publisher.repo).await.unwrap_err();
    assert!(
        matches!(&err, TrustError::MetadataMismatch { role, listed_by, .. } if role == "snapshot" && listed_by == "timestamp"),
        "{err}"
    );
}

#[tokio::test]
async fn length_mismatch() {
    let publisher = Publisher::new().await;
    publisher.publish("PD-1", "libfoo_1.2_amd64.deb").await;
    let catalog = Verifier::pinning(&publisher.pinned_root())
        .verify(&publisher.repo)
        .await
        .unwrap();
    let info = catalog.target("libfoo_1.2_amd64.deb").unwrap();
    let download = publisher.file("libfoo_1.2_amd64.deb", b"bytes of libfoo_1.2_amd64");
    let err = check_payload(info, &download).unwrap_err();
    assert!(
        matches!(err, TrustError::LengthMismatch { expected, actual, .. } if expected == info.length && actual == info.length - 4),
        "{err}"
    );
}

#[tokio::test]
async fn hash_mismatch() {
    let publisher = Publisher::new().await;
    publisher.publish("PD-1", "libfoo_1.2_amd64.deb").await;
    let catalog = Verifier::pinning(&publisher.pinned_root())
        .verify(&publisher.repo)
        .await
        .unwrap();
    let info = catalog.target("libfoo_1.2_amd64.deb").unwrap();
    let download = publisher.file("libfoo_1.2_amd64.deb", b"bytes of libfoo_1.2_amd64.DEB");
    let err = check_payload(info, &download).unwrap_err();
    assert!(matches!(err, TrustError::HashMismatch { .. }), "{err}");
    assert!(err
        .to_string()
        .starts_with("payload libfoo_1.2_amd64.deb: sha256 mismatch (tampered or corrupted)"));
    let good = publisher.file("good.deb", b"bytes of libfoo_1.2_amd64.deb");
    check_payload(info, &good).unwrap();
}

#[tokio::test]
async fn catalog_signed_by_other_root_is_rejected() {
    let ours = Publisher::new().await;
    let theirs = Publisher::new().await;
    theirs.publish("PD-666", "libfoo_9.9_amd64.deb").await;
    let verifier = Verifier::pinning(&ours.pinned_root());

    let err = verifier.verify(&theirs.repo).await.unwrap_err();
    assert!(
        matches!(err, TrustError::ForeignRoot { version: 1 }),
        "{err}"
    );

    // Without their root files to give them away, the signature check still refuses them.
    for f in ["1.root.json", "root.json"] {
        std::fs::remove_file(theirs.meta().join(f)).unwrap();
    }
    let err = verifier.verify(&theirs.repo).await.unwrap_err();
    assert!(
        matches!(&err, TrustError::BadSignature { role, .. } if role == "timestamp"),
        "{err}"
    );
}

#[tokio::test]
async fn root_rotation_is_followed() {
    let publisher = Publisher::new().await;
    publisher.publish("PD-1", "foo_1.2.tar.zst").await;
    let before_rotation = publisher.snapshot_copy("before-rotation");
    let verifier = Verifier::pinning(&publisher.pinned_root());
    verifier.verify(&publisher.repo).await.unwrap();

    let new_keys = generate_keys(&publisher.tmp.path().join("keys-2")).unwrap();
    let v = rotate_root(
        &publisher.keys,
        &new_keys,
        &publisher.repo,
        now(),
        &Expiries::default(),
    )
    .await
    .unwrap();
    assert_eq!(v.root, 2);
    let doc = publisher.file("update-PD-2.json", b"{}");
    add_targets(
        &new_keys,
        &publisher.repo,
        vec![NewTarget {
            name: "update-PD-2.json".into(),
            path: doc,
            custom: json!({"type": "update"}),
        }],
        now(),
        &Expiries::default(),
    )
    .await
    .unwrap();

    // Old keys no longer sign for the catalog.
    let err = add_targets(
        &publisher.keys,
        &publisher.repo,
        vec![],
        now(),
        &Expiries::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TrustError::Signing { .. }), "{err}");

    // Both the verifier with history and a fresh one pinned to root v1 follow the chain.
    let catalog = verifier.verify(&publisher.repo).await.unwrap();
    assert_eq!(catalog.root_version, 2);
    assert!(catalog.targets.contains_key("update-PD-2.json"));
    let fresh = Verifier::pinning(&publisher.pinned_root());
    assert_eq!(fresh.verify(&publisher.repo).await.unwrap().root_version, 2);

    // Having trusted root 2, a catalog without 2.root.json cannot bring back the old keys.
    let err = verifier.verify(&before_rotation).await.unwrap_err();
    assert!(
        matches!(&err, TrustError::BadSignature { role, .. } if role == "timestamp"),
        "{err}"
    );
}

#[tokio::test]
async fn unsafe_target_names_and_bad_custom_are_refused_before_signing() {
    let publisher = Publisher::new().await;
    let file = publisher.file("x", b"x");
    for name in ["../../etc/cron.d/evil", "debs/foo.deb", ".hidden", ""] {
        let err = add_targets(
            &publisher.keys,
            &publisher.repo,
            vec![NewTarget {
                name: name.into(),
                path: file.clone(),
                custom: json!({}),
            }],
            now(),
            &Expiries::default(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, TrustError::UnsafeTargetName { .. }),
            "{name}: {err}"
        );
    }
    let err = add_targets(
        &publisher.keys,
        &publisher.repo,
        vec![NewTarget {
            name: "foo.deb".into(),
            path: file,
            custom: json!("payload"),
        }],
        now(),
        &Expiries::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TrustError::CustomNotObject { .. }), "{err}");
    // Nothing was signed: still version 1.
    let catalog = Verifier::pinning(&publisher.pinned_root())
        .verify(&publisher.repo)
        .await
        .unwrap();
    assert_eq!(catalog.targets_version, 1);

    let err = init_catalog(
        &publisher.keys,
        &publisher.repo,
        now(),
        &Expiries::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TrustError::CatalogExists { .. }), "{err}");
}

/// A transport that answers timestamp.json with endless bytes and passes the rest to disk.
#[derive(Debug, Clone)]
struct EndlessTimestamp;

impl Transport for EndlessTimestamp {
    fn fetch(
        &self,
        url: url::Url,
    ) -> futures::future::BoxFuture<'_, Result<ByteStream, FetchError>> {
        if url.path().ends_with("/timestamp.json") {
            use futures::StreamExt;
            let chunk = vec![b' '; 64 * 1024];
            let stream: ByteStream = Box::pin(futures::stream::repeat(chunk).map(Ok).take(1 << 20));
            return Box::pin(async move { Ok(stream) });
        }
        FileTransport.fetch(url)
    }
}

#[tokio::test]
async fn remote_catalog_loads_and_endless_metadata_is_cut_off() {
    let publisher = Publisher::new().await;
    publisher.publish("PD-1", "foo_1.2.tar.zst").await;
    let verifier = Verifier::pinning(&publisher.pinned_root());
    let meta_url = url::Url::from_directory_path(publisher.meta()).unwrap();

    let catalog = load_remote(
        FileTransport,
        meta_url.clone(),
        &verifier.pinned,
        &verifier.datastore(),
        LoadTime::at(now()),
    )
    .await
    .unwrap();
    assert!(catalog.targets.contains_key("foo_1.2.tar.zst"));

    let err = load_remote(
        EndlessTimestamp,
        meta_url,
        &verifier.pinned,
        &verifier.datastore(),
        LoadTime::at(now()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TrustError::MetadataTooLarge { .. }), "{err}");
}

#[tokio::test]
async fn clock_set_back_cannot_revive_expired_metadata() {
    let publisher = Publisher::new().await;
    let verifier = Verifier::pinning(&publisher.pinned_root());
    let (datastore, meta, targets) = (verifier.datastore(), publisher.meta(), publisher.targets());
    let verify_at =
        |at: Timestamp| verify_repository_at(&verifier.pinned, &datastore, &meta, &targets, at);
    // Two days on, the one-day timestamp has expired.
    let later = now() + SignedDuration::from_hours(48);
    let err = verify_at(later).await.unwrap_err();
    assert!(
        matches!(&err, TrustError::Expired { role, .. } if role == "timestamp"),
        "{err}"
    );
    // Setting the clock back to when it was valid is refused: this datastore saw `later`.
    let err = verify_at(now()).await.unwrap_err();
    assert!(
        matches!(err, TrustError::ClockSteppedBackward { latest, .. } if latest == later),
        "{err}"
    );
}

/// Finding 12: an agent whose clock ran ahead once must not be locked out after the clock is
/// corrected. The datastore remembers at most the time the director answer vouched for.
#[tokio::test]
async fn a_clock_that_ran_ahead_does_not_lock_the_agent_out_once_corrected() {
    let publisher = Publisher::new().await;
    let verifier = Verifier::pinning(&publisher.pinned_root());
    let meta_url = url::Url::from_directory_path(publisher.meta()).unwrap();
    let datastore = verifier.datastore();
    let load = |time: LoadTime| {
        load_remote(
            FileTransport,
            meta_url.clone(),
            &verifier.pinned,
            &datastore,
            time,
        )
    };
    let server_time = now();
    // 50 minutes ahead: the catalog and the director answer are still valid, and the run
    // succeeds; what it remembers is the server's signed time, not its own clock.
    let ahead = server_time + SignedDuration::from_mins(50);
    load(LoadTime {
        now: ahead,
        vouched: Some(server_time),
    })
    .await
    .unwrap();
    // The clock is corrected: the next run works.
    load(LoadTime {
        now: server_time + SignedDuration::from_secs(1),
        vouched: Some(server_time),
    })
    .await
    .unwrap();

    // A datastore in which an older agent remembered a time two days ahead recovers as soon
    // as a signed answer vouches for an earlier time.
    std::fs::write(
        datastore.join("latest_known_time.json"),
        serde_json::to_vec(&(server_time + SignedDuration::from_hours(48))).unwrap(),
    )
    .unwrap();
    load(LoadTime {
        now: server_time + SignedDuration::from_secs(2),
        vouched: Some(server_time + SignedDuration::from_secs(1)),
    })
    .await
    .unwrap();

    // The answer is signed after the agent read its clock: a clock a second behind the
    // vouched time (with the datastore again two days ahead) is not a clock set back.
    std::fs::write(
        datastore.join("latest_known_time.json"),
        serde_json::to_vec(&(server_time + SignedDuration::from_hours(48))).unwrap(),
    )
    .unwrap();
    load(LoadTime {
        now: server_time + SignedDuration::from_secs(2),
        vouched: Some(server_time + SignedDuration::from_secs(3)),
    })
    .await
    .unwrap();

    // A clock set back below what the signed answer vouched for (beyond five minutes of
    // skew) is still refused.
    let err = load(LoadTime {
        now: server_time - SignedDuration::from_hours(1),
        vouched: Some(server_time + SignedDuration::from_secs(3)),
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err, TrustError::ClockSteppedBackward { latest, .. } if latest == server_time + SignedDuration::from_secs(3) - SignedDuration::from_mins(5)),
        "{err}"
    );
    // Without a vouched time (the server's catalog intake) the clock alone counts, as before.
    let err = load(LoadTime::at(server_time)).await.unwrap_err();
    assert!(
        matches!(err, TrustError::ClockSteppedBackward { .. }),
        "{err}"
    );
}

fn read_root(path: &Path) -> Signed<Root> {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn stolen(paths: &[PathBuf]) -> Vec<Box<dyn KeySource>> {
    paths
        .iter()
        .map(|p| Box::new(StolenKey(p.clone())) as Box<dyn KeySource>)
        .collect()
}

#[tokio::test]
async fn root_threshold_two_of_three_is_accepted() {
    let publisher = Publisher::with_keyset(3, 2).await;
    let root = read_root(&publisher.pinned_root());
    let role = &root.signed.roles[&tough::schema::RoleType::Root];
    assert_eq!((role.keyids.len(), role.threshold.get()), (3, 2));
    assert_eq!(root.signatures.len(), 3);
    publisher.publish("PD-1", "foo_1.2.tar.zst").await;
    let verifier = Verifier::pinning(&publisher.pinned_root());
    assert_eq!(
        verifier.verify(&publisher.repo).await.unwrap().root_version,
        1
    );

    // Two of the three root key holders rotate the root keys: enough.
    let mut two = publisher.keys.clone();
    two.root.truncate(2);
    let new = generate_keyset(&publisher.tmp.path().join("keys-2"), 3, 2).unwrap();
    let v = rotate_role(
        &two,
        &new,
        &publisher.repo,
        Role::Root,
        now(),
        &Expiries::default(),
    )
    .await
    .unwrap();
    assert_eq!((v.root, v.targets), (2, 2));
    let rotated = read_root(&publisher.meta().join("2.root.json"));
    // Two old signatures and three new ones.
    assert_eq!(rotated.signatures.len(), 5);
    let catalog = verifier.verify(&publisher.repo).await.unwrap();
    assert_eq!(catalog.root_version, 2);
    assert!(catalog.targets.contains_key("foo_1.2.tar.zst"));
    // The online keys did not change: they still sign.
    publisher.publish("PD-2", "foo_1.3.tar.zst").await;
    verifier.verify(&publisher.repo).await.unwrap();
}

#[tokio::test]
async fn root_rotation_signed_below_threshold_is_rejected() {
    let publisher = Publisher::with_keyset(3, 2).await;
    publisher.publish("PD-1", "foo_1.2.tar.zst").await;
    let verifier = Verifier::pinning(&publisher.pinned_root());
    verifier.verify(&publisher.repo).await.unwrap();
    let attacker = generate_keyset(&publisher.tmp.path().join("attacker"), 3, 2).unwrap();

    // Our own publisher refuses to write such a root.
    let mut one = publisher.keys.clone();
    one.root.truncate(1);
    one.root_threshold = 1;
    let err = rotate_role(
        &one,
        &attacker,
        &publisher.repo,
        Role::Root,
        now(),
        &Expiries::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            TrustError::BelowThreshold {
                which: "old",
                signatures: 1,
                threshold: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(!publisher.meta().join("2.root.json").exists());

    // An attacker who stole one of the three root keys forges root 2 naming their own keys,
    // signed by the stolen key and by all of their own.
    let old = read_root(&publisher.pinned_root()).signed;
    let mut forged = old.clone();
    forged.version = NonZeroU64::new(2).unwrap();
    let mut ids = Vec::new();
    for path in &attacker.root {
        let pem = pem::parse(std::fs::read(path).unwrap()).unwrap();
        let key = tough::sign::parse_keypair(pem.contents())
            .unwrap()
            .tuf_key();
        let id = key.key_id().unwrap();
        forged.keys.insert(id.clone(), key);
        ids.push(id);
    }
    let root_role = forged
        .roles
        .get_mut(&tough::schema::RoleType::Root)
        .unwrap();
    root_role.keyids = ids;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let by_new = SignedRole::new(
        forged.clone(),
        &KeyHolder::Root(forged.clone()),
        &stolen(&attacker.root),
        &rng,
    )
    .await
    .unwrap();
    let by_old = SignedRole::new(
        forged.clone(),
        &KeyHolder::Root(old),
        &stolen(&publisher.keys.root[..1]),
        &rng,
    )
    .await
    .unwrap();
    let signed = by_new
        .add_old_signatures(by_old.signed().signatures.clone())
        .unwrap();
    assert_eq!(signed.signed().signatures.len(), 4);
    std::fs::write(publisher.meta().join("2.root.json"), signed.buffer()).unwrap();
    std::fs::write(publisher.meta().join("root.json"), signed.buffer()).unwrap();

    for v in [&verifier, &Verifier::pinning(&publisher.pinned_root())] {
        let err = v.verify(&publisher.repo).await.unwrap_err();
        assert!(
            matches!(&err, TrustError::BadSignature { role, .. } if role == "root"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn client_two_rotations_behind_walks_the_chain() {
    let publisher = Publisher::with_keyset(3, 2).await;
    publisher.publish("PD-1", "foo_1.2.tar.zst").await;
    let verifier = Verifier::pinning(&publisher.pinned_root());
    assert_eq!(
        verifier.verify(&publisher.repo).await.unwrap().root_version,
        1
    );

    // Rotation 1: new root keys only. Rotation 2: every key.
    let keys2 = generate_keyset(&publisher.tmp.path().join("keys-2"), 3, 2).unwrap();
    rotate_role(
        &publisher.keys,
        &keys2,
        &publisher.repo,
        Role::Root,
        now(),
        &Expiries::default(),
    )
    .await
    .unwrap();
    let current = publisher.keys.with_role_from(&keys2, Role::Root);
    let keys3 = generate_keyset(&publisher.tmp.path().join("keys-3"), 5, 3).unwrap();
    let v = rotate_root(
        &current,
        &keys3,
        &publisher.repo,
        now(),
        &Expiries::default(),
    )
    .await
    .unwrap();
    assert_eq!(v.root, 3);
    let doc = publisher.file("update-PD-2.json", b"{}");
    add_targets(
        &keys3,
        &publisher.repo,
        vec![NewTarget {
            name: "update-PD-2.json".into(),
            path: doc,
            custom: json!({"type": "update"}),
        }],
        now(),
        &Expiries::default(),
    )
    .await
    .unwrap();

    // The datastore still trusts root 1: the client walks 1 → 2 → 3.
    let catalog = verifier.verify(&publisher.repo).await.unwrap();
    assert_eq!(catalog.root_version, 3);
    assert!(catalog.targets.contains_key("update-PD-2.json"));
    assert!(catalog.targets.contains_key("foo_1.2.tar.zst"));
}

#[tokio::test]
async fn rotated_targets_key_old_key_no_longer_accepted() {
    let publisher = Publisher::new().await;
    publisher.publish("PD-1", "foo_1.2.tar.zst").await;
    let verifier = Verifier::pinning(&publisher.pinned_root());
    verifier.verify(&publisher.repo).await.unwrap();
    let old_root = read_root(&publisher.pinned_root()).signed;
    let old_targets_bytes = std::fs::read(role_file(&publisher, "targets")).unwrap();

    let new = generate_keys(&publisher.tmp.path().join("keys-2")).unwrap();
    let v = rotate_role(
        &publisher.keys,
        &new,
        &publisher.repo,
        Role::Targets,
        now(),
        &Expiries::default(),
    )
    .await
    .unwrap();
    assert_eq!((v.root, v.targets), (2, 3));
    let catalog = verifier.verify(&publisher.repo).await.unwrap();
    assert_eq!((catalog.root_version, catalog.targets_version), (2, 3));
    assert!(catalog.targets.contains_key("foo_1.2.tar.zst"));

    // The publisher's old key set no longer signs targets; the rotated one does.
    let err = add_targets(
        &publisher.keys,
        &publisher.repo,
        vec![],
        now(),
        &Expiries::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TrustError::Signing { .. }), "{err}");
    let current = publisher.keys.with_role_from(&new, Role::Targets);
    add_targets(
        &current,
        &publisher.repo,
        vec![],
        now(),
        &Expiries::default(),
    )
    .await
    .unwrap();
    let targets_version = verifier
        .verify(&publisher.repo)
        .await
        .unwrap()
        .targets_version;

    // An attacker with the retired targets key (and the online keys) signs new targets
    // metadata that lists their payload: refused.
    let mut targets: Signed<tough::schema::Targets> =
        serde_json::from_slice(&old_targets_bytes).unwrap();
    // Same version as the genuine file it replaces, so only the signature can catch it.
    targets.signed.version = NonZeroU64::new(targets_version).unwrap();
    targets.signed.expires = now() + SignedDuration::from_hours(24);
    targets.signed.add_target(
        tough::TargetName::new("evil.deb").unwrap(),
        tough::schema::Target {
            length: 7,
            hashes: Hashes {
                sha256: Sha256::digest(b"malware").to_vec().into(),
                _extra: HashMap::new(),
            },
            custom: HashMap::new(),
            _extra: HashMap::new(),
        },
    );
    let signed = SignedRole::new(
        targets.signed,
        &KeyHolder::Root(old_root),
        &stolen(std::slice::from_ref(&publisher.keys.targets)),
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .await
    .unwrap();
    resign_with_online_keys(&publisher, signed.buffer().clone()).await;
    let err = verifier.verify(&publisher.repo).await.unwrap_err();
    assert!(
        matches!(&err, TrustError::BadSignature { role, .. } if role == "targets"),
        "{err}"
    );
}

/// Issue 9, point 6: one more update re-signs the bins its targets fall in, snapshot and
/// timestamp, not top-level targets nor the other bins, and the catalog keeps only the
/// current version of each role.
#[tokio::test]
async fn one_more_update_re_signs_its_bins_only_and_old_versions_are_pruned() {
    let publisher = Publisher::new().await;
    publisher.publish("PD-1", "foo_1.2.tar.zst").await;
    for n in 0..20 {
        publisher
            .publish(&format!("PD-FILL-{n}"), &format!("fill_{n}.deb"))
            .await;
    }
    let versions = |p: &Publisher| -> std::collections::BTreeMap<String, u64> {
        let snap = role_file(p, "targets")
            .parent()
            .unwrap()
            .join("timestamp.json");
        let ts: serde_json::Value = serde_json::from_slice(&std::fs::read(snap).unwrap()).unwrap();
        let v = ts["signed"]["meta"]["snapshot.json"]["version"]
            .as_u64()
            .unwrap();
        let s: serde_json::Value = serde_json::from_slice(
            &std::fs::read(p.meta().join(format!("{v}.snapshot.json"))).unwrap(),
        )
        .unwrap();
        s["signed"]["meta"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, m)| (k.clone(), m["version"].as_u64().unwrap()))
            .collect()
    };
    let prefix = |n: &str| hex::encode(Sha256::digest(n.as_bytes()))[..2].to_owned();
    // A new update whose two targets fall into bins that already exist.
    let (id, payload) = (0..)
        .map(|n| (format!("PD-N{n}"), format!("new_{n}.deb")))
        .find(|(id, pl)| {
            let before = versions(&publisher);
            before.contains_key(&format!(
                "targets.bin-{}.json",
                prefix(&format!("update-{id}.json"))
            )) && before.contains_key(&format!("targets.bin-{}.json", prefix(pl)))
        })
        .unwrap();
    let before = versions(&publisher);
    publisher.publish(&id, &payload).await;
    let after = versions(&publisher);
    let changed: std::collections::BTreeSet<&String> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .collect();
    let expected: std::collections::BTreeSet<String> = [
        format!("targets.bin-{}.json", prefix(&format!("update-{id}.json"))),
        format!("targets.bin-{}.json", prefix(&payload)),
    ]
    .into();
    assert_eq!(changed, expected.iter().collect());
    // Only current versions are left: root versions, root.json, timestamp.json, the
    // snapshot and one file per role the snapshot lists.
    let files: Vec<String> = std::fs::read_dir(publisher.meta())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1 + 2 + 1 + after.len(), "{files:?} {after:?}");
    let catalog = Verifier::pinning(&publisher.pinned_root())
        .verify(&publisher.repo)
        .await
        .unwrap();
    assert_eq!(catalog.targets.len(), 2 * 22);
    assert!(catalog.targets.contains_key(&payload));
}
