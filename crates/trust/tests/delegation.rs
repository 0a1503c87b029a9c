//! Issue 9, points 2 and 3: delegated roles. What a stolen mirror key can and cannot do,
//! and tenant roles that other tenants' clients never read. Real keys, real signatures.

// Test helpers outside #[test] fns fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use jiff::{SignedDuration, Timestamp};
use patchday_trust::transport::{ByteStream, FetchError, FileTransport, Transport};
use patchday_trust::{
    add_targets, add_targets_as, delegate_role, delegated_roles, generate_keys, init_catalog,
    load_remote, refresh_targets, verify_repository_at, Expiries, KeyPaths, LoadTime, NewTarget,
    TrustError, VerifiedCatalog,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use tough::editor::signed::SignedRole;
use tough::key_source::KeySource;
use tough::schema::{
    DelegatedTargets, Hashes, KeyHolder, Metafile, Root, Signed, Snapshot, Target, Targets,
};
use tough::sign::Sign;
use tough::TargetName;

/// tough judges expiry by the system clock, so signing must use it too.
#[allow(clippy::disallowed_methods)]
fn now() -> Timestamp {
    Timestamp::now()
}

const MIRROR_PATHS: [&str; 2] = ["mirror~*", "update-mirror-*"];

/// A publisher with the offline keys, a catalog, and a mirror key (held elsewhere).
struct Publisher {
    tmp: tempfile::TempDir,
    keys: KeyPaths,
    repo: PathBuf,
    mirror_key: PathBuf,
}

impl Publisher {
    async fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let keys = generate_keys(&tmp.path().join("keys")).unwrap();
        let mirror_key = generate_keys(&tmp.path().join("mirror-keys"))
            .unwrap()
            .targets;
        let repo = tmp.path().join("catalog");
        init_catalog(&keys, &repo, now(), &Expiries::default())
            .await
            .unwrap();
        Publisher {
            tmp,
            keys,
            repo,
            mirror_key,
        }
    }

    async fn delegate_mirror(&self, key: &Path) {
        let paths: Vec<String> = MIRROR_PATHS.iter().map(|s| s.to_string()).collect();
        delegate_role(
            &self.keys,
            &self.repo,
            "mirror",
            &paths,
            &[key.to_path_buf()],
            1,
            now(),
            &Expiries::default(),
        )
        .await
        .unwrap();
    }

    fn target(&self, name: &str) -> NewTarget {
        let p = self.tmp.path().join("incoming").join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("bytes of {name}")).unwrap();
        NewTarget {
            name: name.to_owned(),
            path: p,
            custom: json!({"type": "payload", "kind": "deb", "package": "libfoo"}),
        }
    }

    async fn add_as_mirror(&self, key: &Path, names: &[&str]) -> Result<(), TrustError> {
        add_targets_as(
            &self.keys,
            &self.repo,
            "mirror",
            &[key.to_path_buf()],
            names.iter().map(|n| self.target(n)).collect(),
            now(),
            &Expiries::default(),
        )
        .await
        .map(|_| ())
    }

    fn meta(&self) -> PathBuf {
        self.repo.join("metadata")
    }

    async fn verify(&self) -> Result<VerifiedCatalog, TrustError> {
        let ds = tempfile::tempdir().unwrap();
        verify_repository_at(
            &self.meta().join("1.root.json"),
            ds.path(),
            &self.meta(),
            &self.repo.join("targets"),
            now(),
        )
        .await
    }
}

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

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The attacker of these tests: the mirror key `key` and the online snapshot and timestamp
/// keys (all three live on the online mirror host), not the offline targets key. Signs a
/// mirror role that lists `name` (a file it writes into the catalog) and a snapshot and
/// timestamp that match.
async fn forge_mirror_role(p: &Publisher, key: &Path, name: &str) {
    forge_role(p, key, "mirror", name).await
}

/// Like [`forge_mirror_role`] for any role under the mirror: `mirror` itself, or one of its
/// hash bins (`mirror.bin-xx`, issue 9 point 6), which the mirror's key signs. The snapshot
/// keeps its other entries.
async fn forge_role(p: &Publisher, key: &Path, forged: &str, name: &str) {
    let meta = p.meta();
    let root: Signed<Root> =
        serde_json::from_slice(&std::fs::read(meta.join("root.json")).unwrap()).unwrap();
    let ts = read_json(&meta.join("timestamp.json"));
    let snap_v = ts["signed"]["meta"]["snapshot.json"]["version"]
        .as_u64()
        .unwrap();
    let snap = read_json(&meta.join(format!("{snap_v}.snapshot.json")));
    let targets_v = snap["signed"]["meta"]["targets.json"]["version"]
        .as_u64()
        .unwrap();
    let mirror_v = snap["signed"]["meta"][format!("{forged}.json")]["version"]
        .as_u64()
        .unwrap_or(0);
    let top: Signed<Targets> = serde_json::from_slice(
        &std::fs::read(meta.join(format!("{targets_v}.targets.json"))).unwrap(),
    )
    .unwrap();
    let delegations = if forged == "mirror" {
        top.signed.delegations.clone().unwrap()
    } else {
        let v = snap["signed"]["meta"]["mirror.json"]["version"]
            .as_u64()
            .unwrap();
        let mirror: Signed<Targets> =
            serde_json::from_slice(&std::fs::read(meta.join(format!("{v}.mirror.json"))).unwrap())
                .unwrap();
        mirror.signed.delegations.clone().unwrap()
    };

    // The payload the attacker wants every host to install.
    let content = b"evil libc";
    let sha = Sha256::digest(content);
    std::fs::write(
        p.repo
            .join("targets")
            .join(format!("{}.{name}", hex::encode(sha))),
        content,
    )
    .unwrap();
    let expires = now() + SignedDuration::from_hours(24);
    let mut role = Targets::new(
        "1.0.0".into(),
        NonZeroU64::new(mirror_v + 1).unwrap(),
        expires,
    );
    role.add_target(
        TargetName::new(name).unwrap(),
        Target {
            length: content.len() as u64,
            hashes: Hashes {
                sha256: sha.to_vec().into(),
                _extra: HashMap::new(),
            },
            custom: HashMap::new(),
            _extra: HashMap::new(),
        },
    );
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let keys: Vec<Box<dyn KeySource>> = vec![Box::new(StolenKey(key.to_path_buf()))];
    // Signed by whatever key is stolen, whether or not the delegation names it.
    let holder = KeyHolder::Delegations(delegations.clone());
    let signed = match SignedRole::new(
        DelegatedTargets {
            name: forged.into(),
            targets: role.clone(),
        },
        &holder,
        &keys,
        &rng,
    )
    .await
    {
        Ok(s) => s.buffer().clone(),
        Err(_) => {
            // A rotated-out key: sign by hand under the old key id.
            let signer = keys[0].as_sign().await.unwrap();
            let keyid = signer.tuf_key().key_id().unwrap();
            let mut canonical = Vec::new();
            let mut ser = serde_json::Serializer::with_formatter(
                &mut canonical,
                olpc_cjson::CanonicalFormatter::new(),
            );
            serde::Serialize::serialize(&role, &mut ser).unwrap();
            let sig = signer.sign(&canonical, &rng).await.unwrap();
            let doc = json!({
                "signatures": [{"keyid": hex::encode(&*keyid), "sig": hex::encode(sig)}],
                "signed": serde_json::to_value(&role).unwrap(),
            });
            serde_json::to_vec(&doc).unwrap()
        }
    };
    std::fs::write(
        meta.join(format!("{}.{forged}.json", mirror_v + 1)),
        &signed,
    )
    .unwrap();

    let holder = KeyHolder::Root(root.signed.clone());
    let mut snapshot = Snapshot::new(
        "1.0.0".into(),
        NonZeroU64::new(snap_v + 1).unwrap(),
        expires,
    );
    let old: Signed<Snapshot> = serde_json::from_slice(
        &std::fs::read(meta.join(format!("{snap_v}.snapshot.json"))).unwrap(),
    )
    .unwrap();
    snapshot.meta = old.signed.meta;
    snapshot
        .meta
        .insert(format!("{forged}.json"), metafile(mirror_v + 1, &signed));
    let keys: Vec<Box<dyn KeySource>> = vec![Box::new(StolenKey(p.keys.snapshot.clone()))];
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
    let keys: Vec<Box<dyn KeySource>> = vec![Box::new(StolenKey(p.keys.timestamp.clone()))];
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
async fn mirror_signed_targets_under_its_paths_verify_for_server_and_agent() {
    let p = Publisher::new().await;
    p.delegate_mirror(&p.mirror_key).await;
    p.add_as_mirror(
        &p.mirror_key,
        &["update-mirror-DSA-1.json", "mirror~libfoo_1.0_amd64.deb"],
    )
    .await
    .unwrap();
    // The offline role keeps publishing beside it.
    add_targets(
        &p.keys,
        &p.repo,
        vec![p.target("libbar_2.0_amd64.deb")],
        now(),
        &Expiries::default(),
    )
    .await
    .unwrap();

    let catalog = p.verify().await.unwrap();
    for name in [
        "update-mirror-DSA-1.json",
        "mirror~libfoo_1.0_amd64.deb",
        "libbar_2.0_amd64.deb",
    ] {
        assert!(catalog.targets.contains_key(name), "{name}: {catalog:?}");
    }
    // The agent's path: over a transport, from a pinned root.
    let ds = tempfile::tempdir().unwrap();
    let remote = load_remote(
        FileTransport,
        url::Url::from_directory_path(p.meta()).unwrap(),
        &p.meta().join("1.root.json"),
        ds.path(),
        LoadTime::at(now()),
    )
    .await
    .unwrap();
    assert_eq!(remote.targets, catalog.targets);
    let roles = delegated_roles(&p.repo).await.unwrap();
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0].targets.len(), 2);
}

#[tokio::test]
async fn stolen_mirror_key_cannot_publish_outside_its_paths() {
    let p = Publisher::new().await;
    p.delegate_mirror(&p.mirror_key).await;
    let err = p
        .add_as_mirror(&p.mirror_key, &["libc6_9.9_amd64.deb"])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TrustError::OutsideDelegation { role, name, .. } if role == "mirror" && name == "libc6_9.9_amd64.deb"),
        "{err}"
    );
}

#[tokio::test]
async fn stolen_mirror_key_signed_target_outside_mirror_paths_is_refused_by_verification() {
    let p = Publisher::new().await;
    p.delegate_mirror(&p.mirror_key).await;
    p.add_as_mirror(&p.mirror_key, &["mirror~libfoo_1.0_amd64.deb"])
        .await
        .unwrap();
    // A real libc6 name, which the offline role (not the mirror) is trusted for.
    forge_mirror_role(&p, &p.mirror_key, "libc6_9.9_amd64.deb").await;

    let err = p.verify().await.unwrap_err();
    assert!(
        matches!(&err, TrustError::OutsideDelegation { role, name, .. } if role == "mirror" && name == "libc6_9.9_amd64.deb"),
        "server intake: {err}"
    );
    let ds = tempfile::tempdir().unwrap();
    let err = load_remote(
        FileTransport,
        url::Url::from_directory_path(p.meta()).unwrap(),
        &p.meta().join("1.root.json"),
        ds.path(),
        LoadTime::at(now()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, TrustError::OutsideDelegation { role, .. } if role == "mirror"),
        "agent: {err}"
    );
}

#[tokio::test]
async fn stolen_mirror_key_signed_bin_listing_a_name_outside_mirror_paths_is_refused() {
    // Issue 9, point 6: the mirror's targets live in its hash bins, signed by its key; a
    // bin is trusted only for names under every delegation on the way to it.
    let p = Publisher::new().await;
    p.delegate_mirror(&p.mirror_key).await;
    p.add_as_mirror(&p.mirror_key, &["mirror~libfoo_1.0_amd64.deb"])
        .await
        .unwrap();
    let prefix = |n: &str| hex::encode(Sha256::digest(n.as_bytes()))[..2].to_owned();
    let bin = format!("mirror.bin-{}", prefix("mirror~libfoo_1.0_amd64.deb"));
    // A real libc6 name that falls into the same bin, so only the mirror's paths stop it.
    let name = (0..)
        .map(|n| format!("libc6_9.{n}_amd64.deb"))
        .find(|n| format!("mirror.bin-{}", prefix(n)) == bin)
        .unwrap();
    forge_role(&p, &p.mirror_key, &bin, &name).await;
    let err = p.verify().await.unwrap_err();
    assert!(
        matches!(&err, TrustError::OutsideDelegation { role, name: n, .. } if *role == bin && *n == name),
        "{err}"
    );
}

#[tokio::test]
async fn stolen_mirror_key_cannot_sign_the_offline_targets_role() {
    let p = Publisher::new().await;
    p.delegate_mirror(&p.mirror_key).await;
    // The mirror key in place of the offline targets key.
    let mut as_offline = p.keys.clone();
    as_offline.targets = p.mirror_key.clone();
    let err = add_targets(
        &as_offline,
        &p.repo,
        vec![p.target("libc6_9.9_amd64.deb")],
        now(),
        &Expiries::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, TrustError::Signing { role, .. } if role == "targets"),
        "{err}"
    );
    // Nor may it re-delegate: delegations are signed by the offline key.
    let err = delegate_role(
        &as_offline,
        &p.repo,
        "mirror",
        &["*".to_string()],
        std::slice::from_ref(&p.mirror_key),
        1,
        now(),
        &Expiries::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, TrustError::Signing { role, .. } if role == "targets"),
        "{err}"
    );
    p.verify().await.unwrap();
}

#[tokio::test]
async fn mirror_role_rotated_by_the_offline_key_drops_the_old_key() {
    let p = Publisher::new().await;
    p.delegate_mirror(&p.mirror_key).await;
    p.add_as_mirror(&p.mirror_key, &["mirror~libfoo_1.0_amd64.deb"])
        .await
        .unwrap();
    let old = p.mirror_key.clone();
    let new = generate_keys(&p.tmp.path().join("mirror-keys-2"))
        .unwrap()
        .targets;
    p.delegate_mirror(&new).await;

    let roles = delegated_roles(&p.repo).await.unwrap();
    assert_eq!(
        roles[0].keyids,
        vec![patchday_trust::public_key_id(&new).unwrap()]
    );
    // What the mirror listed stays valid, re-signed by the new key.
    let catalog = p.verify().await.unwrap();
    assert!(catalog.targets.contains_key("mirror~libfoo_1.0_amd64.deb"));
    p.add_as_mirror(&new, &["mirror~libfoo_1.1_amd64.deb"])
        .await
        .unwrap();

    // The old key no longer signs for the mirror: refused at publishing...
    let err = p
        .add_as_mirror(&old, &["mirror~libfoo_1.2_amd64.deb"])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TrustError::Signing { role, .. } if role == "mirror"),
        "{err}"
    );
    // ...and a role it signs anyway is refused by verification.
    forge_mirror_role(&p, &old, "mirror~libfoo_1.3_amd64.deb").await;
    let err = p.verify().await.unwrap_err();
    assert!(
        matches!(&err, TrustError::BadSignature { role, .. } if role == "mirror"),
        "{err}"
    );
}

/// An agent's view through the server: another tenant's role metadata is 404.
#[derive(Debug)]
struct HidesRole(&'static str);

impl Transport for HidesRole {
    fn fetch(&self, url: url::Url) -> BoxFuture<'_, Result<ByteStream, FetchError>> {
        let hidden = url.path().ends_with(&format!(".{}.json", self.0));
        Box::pin(async move {
            if hidden {
                return Err(FetchError::NotFound);
            }
            FileTransport.fetch(url).await
        })
    }
}

#[tokio::test]
async fn another_tenants_private_role_is_skipped_not_fatal_for_the_agent() {
    let p = Publisher::new().await;
    for tenant in ["acme", "globex"] {
        let role = format!("tenant-{tenant}");
        delegate_role(
            &p.keys,
            &p.repo,
            &role,
            &[format!("{role}~*")],
            std::slice::from_ref(&p.keys.targets),
            1,
            now(),
            &Expiries::default(),
        )
        .await
        .unwrap();
        add_targets_as(
            &p.keys,
            &p.repo,
            &role,
            std::slice::from_ref(&p.keys.targets),
            vec![p.target(&format!("{role}~tool_1.0_amd64.deb"))],
            now(),
            &Expiries::default(),
        )
        .await
        .unwrap();
    }
    let ds = tempfile::tempdir().unwrap();
    let catalog = load_remote(
        HidesRole("tenant-globex"),
        url::Url::from_directory_path(p.meta()).unwrap(),
        &p.meta().join("1.root.json"),
        ds.path(),
        LoadTime::at(now()),
    )
    .await
    .unwrap();
    assert!(catalog
        .targets
        .contains_key("tenant-acme~tool_1.0_amd64.deb"));
    assert!(!catalog
        .targets
        .contains_key("tenant-globex~tool_1.0_amd64.deb"));
    // The server's intake sees both.
    let all = p.verify().await.unwrap();
    assert!(all.targets.contains_key("tenant-globex~tool_1.0_amd64.deb"));
}

/// Issue 9, point 6: bins expire like any role; a refresh re-signs those due (the offline
/// role's with `catalog refresh`, the mirror's with its own key), and a delegated role
/// with nothing due leaves the catalog as it is.
#[tokio::test]
async fn refresh_re_signs_the_bins_that_are_due_and_only_those() {
    let p = Publisher::new().await;
    p.delegate_mirror(&p.mirror_key).await;
    p.add_as_mirror(&p.mirror_key, &["mirror~libfoo_1.0_amd64.deb"])
        .await
        .unwrap();
    add_targets(
        &p.keys,
        &p.repo,
        vec![p.target("libbar_1.0_amd64.deb")],
        now(),
        &Expiries::default(),
    )
    .await
    .unwrap();
    let bin = format!(
        "targets.bin-{}",
        &hex::encode(Sha256::digest(b"libbar_1.0_amd64.deb"))[..2]
    );
    let mirror_bin = format!(
        "mirror.bin-{}",
        &hex::encode(Sha256::digest(b"mirror~libfoo_1.0_amd64.deb"))[..2]
    );
    let snapshot_version = |p: &Publisher| {
        read_json(&p.meta().join("timestamp.json"))["signed"]["meta"]["snapshot.json"]["version"]
            .as_u64()
            .unwrap()
    };
    // Nothing of the mirror's expires within a day: nothing is written.
    let before = snapshot_version(&p);
    let day = SignedDuration::from_hours(24);
    let none = refresh_targets(
        &p.keys,
        &p.repo,
        Some(("mirror", std::slice::from_ref(&p.mirror_key))),
        now(),
        &Expiries::default(),
        day,
    )
    .await
    .unwrap();
    assert!(none.is_empty(), "{none:?}");
    assert_eq!(snapshot_version(&p), before);
    // Everything expires within a year: the mirror and its bin, signed by its key.
    let year = SignedDuration::from_hours(24 * 366);
    let mirror = refresh_targets(
        &p.keys,
        &p.repo,
        Some(("mirror", std::slice::from_ref(&p.mirror_key))),
        now(),
        &Expiries::default(),
        year,
    )
    .await
    .unwrap();
    assert_eq!(mirror, ["mirror".to_string(), mirror_bin]);
    // The offline role: targets always, its bin when due.
    let top = refresh_targets(&p.keys, &p.repo, None, now(), &Expiries::default(), day)
        .await
        .unwrap();
    assert_eq!(top, ["targets"]);
    let top = refresh_targets(&p.keys, &p.repo, None, now(), &Expiries::default(), year)
        .await
        .unwrap();
    assert_eq!(top, ["targets".to_string(), bin]);
    let catalog = p.verify().await.unwrap();
    assert_eq!(catalog.targets.len(), 2);
}
