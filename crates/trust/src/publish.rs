//! Publisher side: create a catalog, add targets, refresh timestamps, rotate the root.
//!
//! Layout of a catalog directory (`repo_dir`):
//! `metadata/` holds `N.root.json` for every root version, `root.json` (copy of the newest),
//! `N.targets.json`, `N.snapshot.json` and `timestamp.json` (consistent snapshots);
//! `targets/` holds each target as `<sha256>.<name>`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};
use tough::editor::signed::SignedRole;
use tough::key_source::KeySource;
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::key::Key;
use tough::schema::{
    DelegatedRole, DelegatedTargets, Delegations, Hashes, KeyHolder, Metafile, PathPattern,
    PathSet, RoleKeys, RoleType, Root, Signed, Snapshot, Target, Targets,
    Timestamp as TimestampRole,
};
use tough::TargetName;
use url::Url;

use crate::client::path_matches;
use crate::keys::{load_signer, KeyPaths, PemKeySource, Role};
use crate::names::check_target_name;
use crate::TrustError;

const SPEC_VERSION: &str = "1.0.0";

/// How long each role's signature stays valid after signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiries {
    /// root.json lifetime (default 365 days).
    pub root: SignedDuration,
    /// targets.json lifetime (default 90 days).
    pub targets: SignedDuration,
    /// snapshot.json lifetime (default 35 days: a monthly release with slack, while the
    /// timestamp, refreshed daily, carries freshness).
    pub snapshot: SignedDuration,
    /// timestamp.json lifetime (default 1 day).
    pub timestamp: SignedDuration,
}

impl Default for Expiries {
    fn default() -> Self {
        Expiries {
            root: days(365),
            targets: days(90),
            snapshot: days(35),
            timestamp: days(1),
        }
    }
}

fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * n)
}

/// `now + d`, in whole seconds: the TUF specification writes `expires` as
/// `YYYY-MM-DDTHH:MM:SSZ`, and other clients (python-tuf) refuse fractions.
fn expiry(now: Timestamp, d: SignedDuration, role: &str) -> Result<Timestamp, TrustError> {
    let out_of_range = |e: jiff::Error| TrustError::ExpiryOutOfRange {
        detail: format!("{role}: {now} + {d:#}: {e}"),
    };
    let t = now.checked_add(d).map_err(out_of_range)?;
    Timestamp::from_second(t.as_second()).map_err(out_of_range)
}

/// A file to publish as a target, with the signed custom JSON object that describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTarget {
    /// Flat target name, e.g. `update-PD-2026-0001.json` or `foo_1.2.tar.zst`.
    pub name: String,
    /// Where the file is now; it is copied into the catalog.
    pub path: PathBuf,
    /// Signed custom metadata; must be a JSON object, e.g. `{"type":"payload","kind":"deb"}`.
    pub custom: serde_json::Value,
}

/// The role versions of a catalog after a signing step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogVersion {
    /// root.json version.
    pub root: u64,
    /// targets.json version.
    pub targets: u64,
    /// snapshot.json version.
    pub snapshot: u64,
    /// timestamp.json version.
    pub timestamp: u64,
}

fn metadata_dir(repo_dir: &Path) -> PathBuf {
    repo_dir.join("metadata")
}

fn targets_dir(repo_dir: &Path) -> PathBuf {
    repo_dir.join("targets")
}

/// The consistent-snapshot file name of a target: `<sha256 hex>.<name>`.
pub fn stored_target_name(name: &str, sha256_hex: &str) -> String {
    format!("{sha256_hex}.{name}")
}

/// The signed `custom` object of every target the catalog at `repo_dir` lists now, its
/// delegated roles' included (its signatures are checked first), e.g. to number a new
/// payload after the ones before it.
pub async fn catalog_targets(
    repo_dir: &Path,
) -> Result<std::collections::BTreeMap<String, serde_json::Value>, TrustError> {
    let current = Current::load(repo_dir).await?;
    // Issue 9: the delegated roles' targets too (a mirror's payloads count for release
    // counters); where two roles list a name, the first in search order wins.
    let mut out = std::collections::BTreeMap::new();
    for (_, name, t) in current.all_targets()? {
        let custom: serde_json::Map<String, serde_json::Value> = t.custom.into_iter().collect();
        out.entry(name).or_insert(serde_json::Value::Object(custom));
    }
    Ok(out)
}

/// Creates a new catalog in `repo_dir`: root v1 naming every key of `keys` (all root keys, with
/// `keys.root_threshold`), signed by every root key, and empty targets.
///
/// `now` is the signing time: every expiry is `now` + the matching [`Expiries`] field.
pub async fn init_catalog(
    keys: &KeyPaths,
    repo_dir: &Path,
    now: Timestamp,
    exp: &Expiries,
) -> Result<(), TrustError> {
    let meta = metadata_dir(repo_dir);
    if meta.join("root.json").exists() || meta.join("1.root.json").exists() {
        return Err(TrustError::CatalogExists { path: meta });
    }
    create_dir(&meta)?;
    create_dir(&targets_dir(repo_dir))?;

    let root = root_for_keys(keys, NonZeroU64::MIN, expiry(now, exp.root, "root")?)?;
    let signed_root = sign_role(root.clone(), &root, &root_sources(keys)).await?;
    check_root_signatures(&signed_root, &root, "new")?;

    let targets = Targets::new(
        SPEC_VERSION.to_owned(),
        NonZeroU64::MIN,
        expiry(now, exp.targets, "targets")?,
    );
    let roles = SignedRoles::sign(
        &root,
        TargetsToWrite::Sign(targets),
        NonZeroU64::MIN,
        NonZeroU64::MIN,
        keys,
        now,
        exp,
        Delegated::default(),
    )
    .await?;
    roles.write(&meta, Some(signed_root.buffer()), 1)?;
    Ok(())
}

/// Adds or replaces targets, copies their files in, and re-signs targets, snapshot and timestamp.
///
/// Needs the targets, snapshot and timestamp keys (not the root key). Target names must be flat
/// ([`crate::check_target_name`]); when a name appears twice in `new`, the last one wins.
pub async fn add_targets(
    keys: &KeyPaths,
    repo_dir: &Path,
    new: Vec<NewTarget>,
    now: Timestamp,
    exp: &Expiries,
) -> Result<CatalogVersion, TrustError> {
    check_new_targets(&new)?;
    let current = Current::load(repo_dir).await?;
    let tdir = targets_dir(repo_dir);
    create_dir(&tdir)?;

    let mut targets = current.targets.signed.clone();
    let mut delegated = Delegated::keep(&current.delegated_meta);
    let bins = BinSigner {
        parent: "targets",
        keys: std::slice::from_ref(&keys.targets),
        threshold: NonZeroU64::MIN,
    };
    let to_write = if current.targets.signed.targets.is_empty() {
        // Issue 9, point 6: targets go into hash bins, one re-signed per new target's bin;
        // top-level targets is re-signed only when a bin is new (at most 256 times).
        let (changed, signed) = bins
            .place(&current, &mut targets, new, &tdir, now, exp)
            .await?;
        delegated.new.extend(signed);
        if changed || new_is_refresh(&delegated) {
            targets.version = current.targets.signed.version.saturating_add(1);
            targets.expires = expiry(now, exp.targets, "targets")?;
            TargetsToWrite::Sign(targets)
        } else {
            current.targets_kept()?
        }
    } else {
        // A catalog from before bins lists its targets in top-level targets: it goes on so.
        targets.version = current.targets.signed.version.saturating_add(1);
        targets.expires = expiry(now, exp.targets, "targets")?;
        add_new_targets(&mut targets, new, &tdir)?;
        TargetsToWrite::Sign(targets)
    };

    current.publish(to_write, keys, now, exp, delegated).await
}

/// Adding nothing (no bin signed) is how `catalog refresh` re-signs top-level targets.
fn new_is_refresh(delegated: &Delegated) -> bool {
    delegated.new.is_empty()
}

/// Checks every name and custom object before the catalog is touched.
fn check_new_targets(new: &[NewTarget]) -> Result<(), TrustError> {
    for t in new {
        check_target_name(&t.name)?;
        if !t.custom.is_object() {
            return Err(TrustError::CustomNotObject {
                name: t.name.clone(),
            });
        }
    }
    Ok(())
}

/// Copies each new target's file into `tdir` and lists it in `targets`.
fn add_new_targets(
    targets: &mut Targets,
    new: Vec<NewTarget>,
    tdir: &Path,
) -> Result<(), TrustError> {
    for t in new {
        let (length, sha256) = copy_into_catalog(&t.path, tdir, &t.name)?;
        let custom = match t.custom {
            serde_json::Value::Object(map) => map.into_iter().collect::<HashMap<_, _>>(),
            _ => return Err(TrustError::CustomNotObject { name: t.name }),
        };
        let target = Target {
            length,
            hashes: Hashes {
                sha256: sha256.to_vec().into(),
                _extra: HashMap::new(),
            },
            custom,
            _extra: HashMap::new(),
        };
        let name = TargetName::new(t.name.clone()).map_err(|_| TrustError::UnsafeTargetName {
            name: t.name.clone(),
            reason: "tough refused it as a target path",
        })?;
        targets.add_target(name, target);
    }
    Ok(())
}

/// Re-signs snapshot and timestamp with fresh expiries (and new versions); targets stay as they are.
///
/// Needs only the snapshot and timestamp keys of `keys`: this is what an online server can do
/// every day without the offline keys.
pub async fn resign_timestamp(
    keys: &KeyPaths,
    repo_dir: &Path,
    now: Timestamp,
    exp: &Expiries,
) -> Result<CatalogVersion, TrustError> {
    let current = Current::load(repo_dir).await?;
    current
        .publish(
            current.targets_kept()?,
            keys,
            now,
            exp,
            Delegated::keep(&current.delegated_meta),
        )
        .await
}

/// A timestamp signed online (by a server that holds only the timestamp key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineTimestamp {
    /// The signed `timestamp.json`.
    pub bytes: Vec<u8>,
    /// Its version.
    pub version: u64,
    /// When it expires.
    pub expires: Timestamp,
}

/// Signs a timestamp over `snapshot` (the bytes of `<snapshot_version>.snapshot.json`) with
/// the timestamp key at `key`, which `root` (a trusted root, JSON) must name for the
/// timestamp role. For a server that keeps an idle catalog fresh, and that signs the
/// timestamp of every catalog pushed to it, without any offline key.
pub async fn sign_online_timestamp(
    root: &[u8],
    snapshot: &[u8],
    snapshot_version: u64,
    key: &Path,
    version: u64,
    now: Timestamp,
    lifetime: SignedDuration,
) -> Result<OnlineTimestamp, TrustError> {
    let bad = |detail: String| TrustError::Signing {
        role: "timestamp".into(),
        detail,
    };
    let root: Signed<Root> = serde_json::from_slice(root)
        .map_err(|e| bad(format!("the trusted root is unreadable: {e}")))?;
    let version = NonZeroU64::new(version).ok_or_else(|| bad("version 0".into()))?;
    let snapshot_version =
        NonZeroU64::new(snapshot_version).ok_or_else(|| bad("snapshot version 0".into()))?;
    let expires = expiry(now, lifetime, "timestamp")?;
    let mut timestamp = TimestampRole::new(SPEC_VERSION.to_owned(), version, expires);
    timestamp.meta.insert(
        "snapshot.json".to_owned(),
        metafile(snapshot_version, snapshot),
    );
    let signed = sign_role(timestamp, &root.signed, &[PemKeySource::boxed(key)]).await?;
    Ok(OnlineTimestamp {
        bytes: signed.buffer().clone(),
        version: version.get(),
        expires,
    })
}

/// Publishes root N+1 naming every key of `new_keys` (all four roles change), signed by a
/// threshold of the old root keys and of the new ones, and re-signs targets, snapshot and
/// timestamp with the new keys.
///
/// Clients that pinned any earlier root follow the chain `N.root.json` → `N+1.root.json`.
/// To change one role's keys only, see [`rotate_role`].
pub async fn rotate_root(
    old_keys: &KeyPaths,
    new_keys: &KeyPaths,
    repo_dir: &Path,
    now: Timestamp,
    exp: &Expiries,
) -> Result<CatalogVersion, TrustError> {
    let current = Current::load(repo_dir).await?;
    let old_root = &current.root.signed;
    let version = old_root.version.saturating_add(1);
    let new_root = root_for_keys(new_keys, version, expiry(now, exp.root, "root")?)?;
    let signed_root = cross_sign_root(&new_root, old_root, old_keys, new_keys).await?;

    let mut targets = current.targets.signed.clone();
    targets.version = targets.version.saturating_add(1);
    targets.expires = expiry(now, exp.targets, "targets")?;
    let meta = metadata_dir(repo_dir);
    let roles = SignedRoles::sign(
        &new_root,
        TargetsToWrite::Sign(targets),
        current.snapshot_version.saturating_add(1),
        current.timestamp_version.saturating_add(1),
        new_keys,
        now,
        exp,
        Delegated::keep(&current.delegated_meta),
    )
    .await?;
    roles.write(&meta, Some(signed_root.buffer()), version.get())
}

/// Replaces the keys of one role: publishes root N+1 in which `role` is held by `new`'s keys (for
/// root: all of `new.root`, with `new.root_threshold`) and every other role keeps its keys,
/// signed by a threshold of the old root keys and of the new root's own, then re-signs what the
/// new key must now sign.
///
/// - `Root`: only the new root is written (the other metadata stays valid).
/// - `Targets`: targets (new version, new key), snapshot and timestamp are re-signed.
/// - `Snapshot`, `Timestamp`: snapshot and timestamp are re-signed; targets stays as it is.
///
/// `old` must hold the catalog's current keys (its root keys at least up to the threshold, and
/// the online keys unless `role` is root); of `new` only `role`'s keys are used. Afterwards the
/// catalog's keys are `old` with `role`'s keys from `new` ([`KeyPaths::with_role_from`]).
pub async fn rotate_role(
    old: &KeyPaths,
    new: &KeyPaths,
    repo_dir: &Path,
    role: Role,
    now: Timestamp,
    exp: &Expiries,
) -> Result<CatalogVersion, TrustError> {
    let current = Current::load(repo_dir).await?;
    let old_root = &current.root.signed;
    let merged = old.with_role_from(new, role);
    let version = old_root.version.saturating_add(1);

    let mut new_root = old_root.clone();
    new_root.version = version;
    new_root.expires = expiry(now, exp.root, "root")?;
    let role_type = match role {
        Role::Root => RoleType::Root,
        Role::Targets => RoleType::Targets,
        Role::Snapshot => RoleType::Snapshot,
        Role::Timestamp => RoleType::Timestamp,
    };
    let (threshold, paths) = match role {
        Role::Root => {
            merged.check_threshold()?;
            (u64::from(merged.root_threshold), merged.root.clone())
        }
        _ => (1, merged.role(role).into_iter().cloned().collect()),
    };
    let role_keys = role_keys(&mut new_root, &paths, threshold)?;
    new_root.roles.insert(role_type, role_keys);
    // Drop keys that no role names any more (the rotated-out ones).
    let used: Vec<_> = new_root
        .roles
        .values()
        .flat_map(|r| r.keyids.iter().cloned())
        .collect();
    new_root.keys.retain(|id, _| used.contains(id));

    let signed_root = cross_sign_root(&new_root, old_root, old, &merged).await?;
    let meta = metadata_dir(repo_dir);
    if role == Role::Root {
        write_atomic(&meta, &format!("{version}.root.json"), signed_root.buffer())?;
        write_atomic(&meta, "root.json", signed_root.buffer())?;
        return Ok(CatalogVersion {
            root: version.get(),
            targets: current.targets.signed.version.get(),
            snapshot: current.snapshot_version.get(),
            timestamp: current.timestamp_version.get(),
        });
    }
    let targets = if role == Role::Targets {
        let mut targets = current.targets.signed.clone();
        targets.version = targets.version.saturating_add(1);
        targets.expires = expiry(now, exp.targets, "targets")?;
        TargetsToWrite::Sign(targets)
    } else {
        current.targets_kept()?
    };
    let roles = SignedRoles::sign(
        &new_root,
        targets,
        current.snapshot_version.saturating_add(1),
        current.timestamp_version.saturating_add(1),
        &merged,
        now,
        exp,
        Delegated::keep(&current.delegated_meta),
    )
    .await?;
    roles.write(&meta, Some(signed_root.buffer()), version.get())
}

/// Signs `new_root` with `old_keys`' root keys (as `old_root` names them) and `new_keys`' root
/// keys (as `new_root` names them), and checks that both thresholds are met (TUF 5.3.4: root N+1
/// must carry a threshold of signatures from root N and from itself).
async fn cross_sign_root(
    new_root: &Root,
    old_root: &Root,
    old_keys: &KeyPaths,
    new_keys: &KeyPaths,
) -> Result<SignedRole<Root>, TrustError> {
    let by_new = sign_role(new_root.clone(), new_root, &root_sources(new_keys)).await?;
    let by_old = sign_role(new_root.clone(), old_root, &root_sources(old_keys)).await?;
    let signed = by_new
        .add_old_signatures(by_old.signed().signatures.clone())
        .map_err(|e| TrustError::Signing {
            role: "root".into(),
            detail: e.to_string(),
        })?;
    check_root_signatures(&signed, old_root, "old")?;
    check_root_signatures(&signed, new_root, "new")?;
    Ok(signed)
}

/// Refuses a signed root with fewer signatures by `by`'s root keys than `by`'s root threshold.
///
/// The signatures were just made by us, so counting distinct listed key ids is enough.
fn check_root_signatures(
    signed: &SignedRole<Root>,
    by: &Root,
    which: &'static str,
) -> Result<(), TrustError> {
    let Some(role) = by.roles.get(&RoleType::Root) else {
        return Err(TrustError::Signing {
            role: "root".into(),
            detail: "the root lists no root role".into(),
        });
    };
    let mut ids: Vec<_> = signed
        .signed()
        .signatures
        .iter()
        .filter(|s| role.keyids.contains(&s.keyid))
        .map(|s| s.keyid.clone())
        .collect();
    ids.sort();
    ids.dedup();
    if (ids.len() as u64) < role.threshold.get() {
        return Err(TrustError::BelowThreshold {
            version: signed.signed().signed.version.get(),
            which,
            signatures: ids.len(),
            threshold: role.threshold.get(),
        });
    }
    Ok(())
}

/// Every root key of `keys`, as signing sources.
fn root_sources(keys: &KeyPaths) -> Vec<Box<dyn KeySource>> {
    keys.root.iter().map(|p| PemKeySource::boxed(p)).collect()
}

/// The catalog as it is on disk, loaded and checked with its own newest root.
struct Current {
    /// The catalog's `metadata/` directory.
    meta: PathBuf,
    root: Signed<Root>,
    targets: Signed<Targets>,
    snapshot_version: NonZeroU64,
    timestamp_version: NonZeroU64,
    /// Snapshot entries of delegated roles (issue 9), carried into every new snapshot.
    delegated_meta: HashMap<String, Metafile>,
}

impl Current {
    /// Signs the next snapshot and timestamp over `targets` and the delegated roles under
    /// the current root, and writes them (timestamp last): every change that keeps the
    /// root goes through here.
    async fn publish(
        &self,
        targets: TargetsToWrite,
        keys: &KeyPaths,
        now: Timestamp,
        exp: &Expiries,
        delegated: Delegated,
    ) -> Result<CatalogVersion, TrustError> {
        let roles = SignedRoles::sign(
            &self.root.signed,
            targets,
            self.snapshot_version.saturating_add(1),
            self.timestamp_version.saturating_add(1),
            keys,
            now,
            exp,
            delegated,
        )
        .await?;
        roles.write(&self.meta, None, self.root.signed.version.get())
    }

    /// Reads and checks the current root, timestamp, snapshot and top-level targets, and
    /// nothing else: delegated roles are read when needed ([`Current::role`]), so signing
    /// one more update costs the same in a catalog of ten updates as in one of ten thousand
    /// (issue 9, point 6).
    ///
    /// Signatures are checked (the publisher's own files could have been altered), and each
    /// file against the version, length and hash its parent lists, but not expiry:
    /// refreshing an expired timestamp is exactly what the publisher is here to do.
    async fn load(repo_dir: &Path) -> Result<Self, TrustError> {
        let meta = metadata_dir(repo_dir);
        if !meta.join("root.json").exists() {
            return Err(TrustError::NoCatalog {
                path: repo_dir.to_path_buf(),
            });
        }
        let (root, _) = read_role::<Root>(&meta, "root.json")?;
        root.signed
            .verify_role(&root)
            .map_err(|e| bad_signature("root", &e))?;
        let (timestamp, _) = read_role::<TimestampRole>(&meta, "timestamp.json")?;
        root.signed
            .verify_role(&timestamp)
            .map_err(|e| bad_signature("timestamp", &e))?;
        let snapshot: Signed<Snapshot> = read_listed(
            &meta,
            &root.signed,
            "timestamp",
            &timestamp.signed.meta,
            "snapshot",
        )?;
        let targets: Signed<Targets> = read_listed(
            &meta,
            &root.signed,
            "snapshot",
            &snapshot.signed.meta,
            "targets",
        )?;
        let mut delegated_meta = snapshot.signed.meta.clone();
        delegated_meta.remove("targets.json");
        Ok(Current {
            meta,
            root,
            targets,
            snapshot_version: snapshot.signed.version,
            timestamp_version: timestamp.signed.version,
            delegated_meta,
        })
    }

    /// The current metadata of delegated role `name`, checked against what the snapshot
    /// lists and against the keys `by` (its delegator's delegations) names; `None` when
    /// the snapshot does not list it yet.
    fn role(&self, name: &str, by: &Delegations) -> Result<Option<Signed<Targets>>, TrustError> {
        let Some(listed) = self.delegated_meta.get(&format!("{name}.json")) else {
            return Ok(None);
        };
        let (role, bytes) =
            read_role::<Targets>(&self.meta, &format!("{}.{name}.json", listed.version))?;
        check_listed(name, "snapshot", listed, &bytes)?;
        by.verify_role(&role, name)
            .map_err(|e| bad_signature(name, &e))?;
        Ok(Some(role))
    }

    /// Every target the catalog lists, top-level targets' own first, then each delegated
    /// role's in preorder, as (role, name, target). Reads every role: for enumerations
    /// (`catalog status`, a mirror run's start), not for signing one update.
    fn all_targets(&self) -> Result<Vec<(String, String, Target)>, TrustError> {
        let mut out: Vec<(String, String, Target)> = self
            .targets
            .signed
            .targets
            .iter()
            .map(|(n, t)| ("targets".to_owned(), n.raw().to_owned(), t.clone()))
            .collect();
        if let Some(d) = &self.targets.signed.delegations {
            self.walk(d, 0, &mut out)?;
        }
        Ok(out)
    }

    fn walk(
        &self,
        delegations: &Delegations,
        depth: usize,
        out: &mut Vec<(String, String, Target)>,
    ) -> Result<(), TrustError> {
        if depth > MAX_DELEGATION_DEPTH {
            return Ok(());
        }
        for r in &delegations.roles {
            let Some(role) = self.role(&r.name, delegations)? else {
                continue;
            };
            out.extend(
                role.signed
                    .targets
                    .iter()
                    .map(|(n, t)| (r.name.clone(), n.raw().to_owned(), t.clone())),
            );
            if let Some(d) = &role.signed.delegations {
                self.walk(d, depth + 1, out)?;
            }
        }
        Ok(())
    }

    /// The bytes of the current top-level targets file, to publish it unchanged.
    fn targets_kept(&self) -> Result<TargetsToWrite, TrustError> {
        let version = self.targets.signed.version;
        let file = self.meta.join(format!("{version}.targets.json"));
        let bytes = std::fs::read(&file).map_err(TrustError::io("read", &file))?;
        Ok(TargetsToWrite::Keep { version, bytes })
    }
}

/// How deep delegations are followed when every target is listed (Patchday signs two levels:
/// a role and its bins).
const MAX_DELEGATION_DEPTH: usize = 8;

/// Reads one metadata file of the publisher's catalog: the parsed role and its bytes.
fn read_role<T: serde::de::DeserializeOwned>(
    meta: &Path,
    file: &str,
) -> Result<(Signed<T>, Vec<u8>), TrustError> {
    let path = meta.join(file);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(TrustError::MetadataMissing {
                file: path.display().to_string(),
            })
        }
        Err(e) => return Err(TrustError::io("read", &path)(e)),
    };
    let role = serde_json::from_slice(&bytes).map_err(|e| TrustError::MalformedMetadata {
        role: file.to_owned(),
        detail: e.to_string(),
    })?;
    Ok((role, bytes))
}

/// The current version of top-level `role` as `listed_by`'s `meta` lists it, checked
/// against that entry and signed by the keys `root` names for it.
fn read_listed<T>(
    meta: &Path,
    root: &Root,
    listed_by: &str,
    entries: &HashMap<String, Metafile>,
    role: &str,
) -> Result<Signed<T>, TrustError>
where
    T: tough::schema::Role + serde::Serialize + serde::de::DeserializeOwned,
{
    let file = format!("{role}.json");
    let listed = entries
        .get(&file)
        .ok_or_else(|| missing_entry(listed_by, &file))?;
    let (signed, bytes) = read_role::<T>(meta, &format!("{}.{file}", listed.version))?;
    check_listed(role, listed_by, listed, &bytes)?;
    root.verify_role(&signed)
        .map_err(|e| bad_signature(role, &e))?;
    Ok(signed)
}

fn bad_signature(role: &str, e: &tough::schema::Error) -> TrustError {
    TrustError::BadSignature {
        role: role.to_owned(),
        detail: e.to_string(),
    }
}

fn missing_entry(role: &str, entry: &str) -> TrustError {
    TrustError::MalformedMetadata {
        role: role.to_owned(),
        detail: format!("it does not list {entry}"),
    }
}

/// Checks a metadata file against the length and sha256 its parent lists (when listed).
fn check_listed(role: &str, listed_by: &str, m: &Metafile, bytes: &[u8]) -> Result<(), TrustError> {
    let mismatch = |detail: String| TrustError::MetadataMismatch {
        role: role.to_owned(),
        listed_by: listed_by.to_owned(),
        detail,
    };
    if let Some(len) = m.length {
        if len != bytes.len() as u64 {
            return Err(mismatch(format!(
                "length {} listed, {} found",
                len,
                bytes.len()
            )));
        }
    }
    if let Some(h) = &m.hashes {
        if h.sha256.as_ref() != Sha256::digest(bytes).as_slice() {
            return Err(mismatch("sha256 differs".into()));
        }
    }
    Ok(())
}

/// `file://` URL of a directory (tough's `FilesystemTransport` reads these).
pub(crate) fn dir_url(dir: &Path) -> Result<Url, TrustError> {
    let abs = std::fs::canonicalize(dir).map_err(TrustError::io("open directory", dir))?;
    Url::from_directory_path(&abs).map_err(|()| TrustError::Io {
        action: "make a file URL of",
        path: abs,
        cause: std::io::Error::other("not an absolute path"),
    })
}

fn create_dir(dir: &Path) -> Result<(), TrustError> {
    std::fs::create_dir_all(dir).map_err(TrustError::io("create directory", dir))
}

/// A root that names every root key with `keys.root_threshold`, one key (threshold 1) for each
/// other role, consistent snapshots on.
fn root_for_keys(
    keys: &KeyPaths,
    version: NonZeroU64,
    expires: Timestamp,
) -> Result<Root, TrustError> {
    keys.check_threshold()?;
    let mut root = Root {
        spec_version: SPEC_VERSION.to_owned(),
        consistent_snapshot: true,
        version,
        expires,
        keys: HashMap::new(),
        roles: HashMap::new(),
        _extra: HashMap::new(),
    };
    let roles = [
        (
            RoleType::Root,
            keys.root.clone(),
            u64::from(keys.root_threshold),
        ),
        (RoleType::Targets, vec![keys.targets.clone()], 1),
        (RoleType::Snapshot, vec![keys.snapshot.clone()], 1),
        (RoleType::Timestamp, vec![keys.timestamp.clone()], 1),
    ];
    for (role, paths, threshold) in roles {
        let role_keys = role_keys(&mut root, &paths, threshold)?;
        root.roles.insert(role, role_keys);
    }
    Ok(root)
}

/// Adds the public halves of the key files `paths` to `keys` (the root's or a delegation's
/// key map) and returns their ids in order; the same key twice is refused (it would count
/// twice towards nothing).
fn add_public_keys(
    paths: &[PathBuf],
    keys: &mut HashMap<Decoded<Hex>, Key>,
) -> Result<Vec<Decoded<Hex>>, TrustError> {
    let mut keyids = Vec::new();
    for path in paths {
        let key = load_signer(path)?.tuf_key();
        let id = key.key_id().map_err(|e| TrustError::BadKey {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        if keyids.contains(&id) {
            return Err(TrustError::BadKey {
                path: path.clone(),
                detail: "the same key is listed twice for one role".into(),
            });
        }
        keys.insert(id.clone(), key);
        keyids.push(id);
    }
    Ok(keyids)
}

/// Adds the public halves of `paths` to `root.keys` and returns the role entry naming them.
///
/// Refuses the same key twice (it would count twice towards nothing) and an unmeetable threshold.
fn role_keys(root: &mut Root, paths: &[PathBuf], threshold: u64) -> Result<RoleKeys, TrustError> {
    let threshold_error = || TrustError::BadThreshold {
        role: "root".into(),
        threshold,
        keys: paths.len(),
    };
    let threshold_nz = NonZeroU64::new(threshold).ok_or_else(threshold_error)?;
    if threshold > paths.len() as u64 {
        return Err(threshold_error());
    }
    let keyids = add_public_keys(paths, &mut root.keys)?;
    Ok(RoleKeys {
        keyids,
        threshold: threshold_nz,
        _extra: HashMap::new(),
    })
}

/// Signs one role with the keys that `signer_root` names for it.
async fn sign_role<T>(
    role: T,
    signer_root: &Root,
    keys: &[Box<dyn KeySource>],
) -> Result<SignedRole<T>, TrustError>
where
    T: tough::schema::Role + serde::Serialize,
{
    let name = T::TYPE.to_string();
    SignedRole::new(
        role,
        &KeyHolder::Root(signer_root.clone()),
        keys,
        &SystemRandom::new(),
    )
    .await
    .map_err(|e| TrustError::Signing {
        role: name,
        detail: e.to_string(),
    })
}

/// Delegated roles for the next snapshot (issue 9): the entries kept as they are, and the
/// roles signed anew (name, version, bytes), which replace their entries.
#[derive(Default)]
struct Delegated {
    meta: HashMap<String, Metafile>,
    new: Vec<(String, NonZeroU64, Vec<u8>)>,
}

impl Delegated {
    fn keep(meta: &HashMap<String, Metafile>) -> Self {
        Delegated {
            meta: meta.clone(),
            new: Vec::new(),
        }
    }
}

/// Targets metadata to publish: freshly signed, or the current file kept as it is.
enum TargetsToWrite {
    Sign(Targets),
    Keep { version: NonZeroU64, bytes: Vec<u8> },
}

/// The signed bytes of targets, snapshot and timestamp, ready to be written in order.
struct SignedRoles {
    /// Newly signed delegated roles (issue 9): name, version, bytes.
    delegated: Vec<(String, NonZeroU64, Vec<u8>)>,
    targets_version: NonZeroU64,
    targets: Option<Vec<u8>>,
    snapshot_version: NonZeroU64,
    snapshot: Vec<u8>,
    timestamp_version: NonZeroU64,
    timestamp: Vec<u8>,
    /// The versioned metadata files the new snapshot lists, and itself (issue 9, point 6:
    /// every other version is removed once the new timestamp is written).
    current_files: std::collections::BTreeSet<String>,
}

impl SignedRoles {
    #[allow(clippy::too_many_arguments)]
    async fn sign(
        root: &Root,
        targets: TargetsToWrite,
        snapshot_version: NonZeroU64,
        timestamp_version: NonZeroU64,
        keys: &KeyPaths,
        now: Timestamp,
        exp: &Expiries,
        delegated: Delegated,
    ) -> Result<Self, TrustError> {
        let (targets_version, targets_bytes, fresh) = match targets {
            TargetsToWrite::Sign(t) => {
                let version = t.version;
                let signed = sign_role(t, root, &[PemKeySource::boxed(&keys.targets)]).await?;
                (version, signed.buffer().clone(), true)
            }
            TargetsToWrite::Keep { version, bytes } => (version, bytes, false),
        };
        let mut snapshot = Snapshot::new(
            SPEC_VERSION.to_owned(),
            snapshot_version,
            expiry(now, exp.snapshot, "snapshot")?,
        );
        snapshot.meta.insert(
            "targets.json".to_owned(),
            metafile(targets_version, &targets_bytes),
        );
        let Delegated { mut meta, new } = delegated;
        for (name, version, bytes) in &new {
            meta.insert(format!("{name}.json"), metafile(*version, bytes));
        }
        for (file, entry) in meta {
            snapshot.meta.entry(file).or_insert(entry);
        }
        let mut current_files: std::collections::BTreeSet<String> = snapshot
            .meta
            .iter()
            .map(|(file, m)| format!("{}.{file}", m.version))
            .collect();
        current_files.insert(format!("{snapshot_version}.snapshot.json"));
        let snapshot = sign_role(snapshot, root, &[PemKeySource::boxed(&keys.snapshot)]).await?;

        let mut timestamp = TimestampRole::new(
            SPEC_VERSION.to_owned(),
            timestamp_version,
            expiry(now, exp.timestamp, "timestamp")?,
        );
        timestamp.meta.insert(
            "snapshot.json".to_owned(),
            metafile(snapshot_version, snapshot.buffer()),
        );
        let timestamp = sign_role(timestamp, root, &[PemKeySource::boxed(&keys.timestamp)]).await?;
        Ok(SignedRoles {
            delegated: new,
            targets_version,
            targets: fresh.then_some(targets_bytes),
            snapshot_version,
            snapshot: snapshot.buffer().clone(),
            timestamp_version,
            timestamp: timestamp.buffer().clone(),
            current_files,
        })
    }

    /// Writes root (if new), targets, snapshot, then timestamp last: a reader sees either the old
    /// or the new catalog, since every file lands by rename and timestamp.json switches them.
    fn write(
        self,
        meta: &Path,
        new_root: Option<&Vec<u8>>,
        root_version: u64,
    ) -> Result<CatalogVersion, TrustError> {
        if let Some(root) = new_root {
            write_atomic(meta, &format!("{root_version}.root.json"), root)?;
            write_atomic(meta, "root.json", root)?;
        }
        for (name, version, bytes) in &self.delegated {
            write_atomic(meta, &format!("{version}.{name}.json"), bytes)?;
        }
        if let Some(targets) = &self.targets {
            write_atomic(
                meta,
                &format!("{}.targets.json", self.targets_version),
                targets,
            )?;
        }
        write_atomic(
            meta,
            &format!("{}.snapshot.json", self.snapshot_version),
            &self.snapshot,
        )?;
        write_atomic(meta, "timestamp.json", &self.timestamp)?;
        prune_old_versions(meta, &self.current_files)?;
        Ok(CatalogVersion {
            root: root_version,
            targets: self.targets_version.get(),
            snapshot: self.snapshot_version.get(),
            timestamp: self.timestamp_version.get(),
        })
    }
}

/// Removes every versioned metadata file (`N.<role>.json`) of a role other than root that
/// the current snapshot does not list (issue 9, point 6): a catalog, its pushes and the
/// server keep the current versions only, not every version ever signed. Root versions
/// stay: clients walk the root chain one version at a time.
fn prune_old_versions(
    meta: &Path,
    current: &std::collections::BTreeSet<String>,
) -> Result<(), TrustError> {
    for e in std::fs::read_dir(meta).map_err(TrustError::io("list", meta))? {
        let e = e.map_err(TrustError::io("list", meta))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let versioned = name.split_once('.').is_some_and(|(v, rest)| {
            !v.is_empty()
                && v.bytes().all(|b| b.is_ascii_digit())
                && rest.ends_with(".json")
                && rest != "root.json"
        });
        if versioned && !current.contains(&name) {
            std::fs::remove_file(e.path()).map_err(TrustError::io("remove", e.path()))?;
        }
    }
    Ok(())
}

fn metafile(version: NonZeroU64, bytes: &[u8]) -> Metafile {
    Metafile {
        length: Some(bytes.len() as u64),
        hashes: Some(Hashes {
            sha256: Sha256::digest(bytes).to_vec().into(),
            _extra: HashMap::new(),
        }),
        version,
        _extra: HashMap::new(),
    }
}

/// Writes `dir/name` via a temporary file, fsync and rename.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), TrustError> {
    let path = dir.join(name);
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(TrustError::io("create a file in", dir))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(TrustError::io("write", &path))?;
    set_readable(tmp.path())?;
    tmp.persist(&path)
        .map_err(|e| TrustError::io("write", &path)(e.error))?;
    Ok(())
}

// NamedTempFile creates 0600 files; catalog files are public by nature (they are served).
fn set_readable(path: &Path) -> Result<(), TrustError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .map_err(TrustError::io("set permissions of", path))
}

/// Copies `src` into `tdir` as `<sha256>.<name>`, hashing what it copies (so the signed hash is
/// that of the copy even if `src` changes meanwhile). Returns length and sha256.
fn copy_into_catalog(src: &Path, tdir: &Path, name: &str) -> Result<(u64, [u8; 32]), TrustError> {
    let mut input = std::fs::File::open(src).map_err(TrustError::io("open target file", src))?;
    let mut tmp =
        tempfile::NamedTempFile::new_in(tdir).map_err(TrustError::io("create a file in", tdir))?;
    let mut hasher = Sha256::new();
    let mut length = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = input
            .read(&mut buf)
            .map_err(TrustError::io("read target file", src))?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        hasher.update(chunk);
        tmp.write_all(chunk)
            .map_err(TrustError::io("write target copy in", tdir))?;
        length += n as u64;
    }
    tmp.as_file()
        .sync_all()
        .map_err(TrustError::io("write target copy in", tdir))?;
    let sha256: [u8; 32] = hasher.finalize().into();
    let dest = tdir.join(stored_target_name(name, &hex::encode(sha256)));
    set_readable(tmp.path())?;
    // Same name means same content (the name carries the hash): replacing is harmless.
    tmp.persist(&dest)
        .map_err(|e| TrustError::io("write", &dest)(e.error))?;
    Ok((length, sha256))
}

// ---- Issue 9, point 6: hash bins ----
//
// A role that signs many targets (top-level targets for the publisher's own updates, the
// mirror role for an archive's history) does not list them itself: it delegates to up to
// 256 bin roles `<role>.bin-<xx>` by the first two hex digits of the sha256 of the target
// name (TUF `path_hash_prefixes`, as PEP 458 does), signed with the role's own keys. Adding a
// target re-signs one bin, snapshot and timestamp; the role itself is re-signed only when
// a bin is created. Bins are created when first needed, so a small catalog stays small.
// The classic form is used rather than TAP 15's succinct delegations because tough, which
// signs here, has no schema for `succinct_roles` (and a role with bins must still be able
// to name other roles).

/// Hex digits of the name's sha256 that choose its bin: 2, so at most 256 bins per role.
const BIN_PREFIX_DIGITS: usize = 2;

/// The bin prefix of a target name.
fn bin_prefix(name: &str) -> String {
    let digest = hex::encode(Sha256::digest(name.as_bytes()));
    digest
        .get(..BIN_PREFIX_DIGITS)
        .unwrap_or_default()
        .to_owned()
}

/// The name of `parent`'s bin for `prefix`: `<parent>.bin-<prefix>`.
fn bin_role_name(parent: &str, prefix: &str) -> String {
    format!("{parent}.bin-{prefix}")
}

/// Whether a delegation entry is one of Patchday's hash bins.
fn is_bin(r: &DelegatedRole) -> bool {
    matches!(r.paths, PathSet::PathHashPrefixes(_))
}

/// Who signs the bins of one role.
struct BinSigner<'a> {
    /// The role whose bins these are (`targets`, `mirror`, ...).
    parent: &'a str,
    /// Its keys (the bins are signed by the same keys as the role).
    keys: &'a [PathBuf],
    /// Its threshold.
    threshold: NonZeroU64,
}

impl BinSigner<'_> {
    fn bin_name(&self, prefix: &str) -> String {
        bin_role_name(self.parent, prefix)
    }

    /// Puts `new` into the bins of `parent` (the role's content, delegations included) and
    /// signs the bins that changed. Returns whether `parent` itself changed (a bin was
    /// created, or the role's keys changed so every bin was re-signed) and the signed bins.
    async fn place(
        &self,
        current: &Current,
        parent: &mut Targets,
        new: Vec<NewTarget>,
        tdir: &Path,
        now: Timestamp,
        exp: &Expiries,
    ) -> Result<(bool, Vec<(String, NonZeroU64, Vec<u8>)>), TrustError> {
        let old = parent.delegations.clone().unwrap_or_default();
        let mut delegations = old.clone();
        let keyids = add_public_keys(self.keys, &mut delegations.keys)?;
        let mut changed = false;
        // Keys changed (a rotation): every bin names the new keys and is re-signed by them.
        let mut resign_all = false;
        for r in delegations.roles.iter_mut().filter(|r| is_bin(r)) {
            if r.keyids != keyids || r.threshold != self.threshold {
                r.keyids = keyids.clone();
                r.threshold = self.threshold;
                resign_all = true;
            }
        }
        let used: Vec<_> = delegations
            .roles
            .iter()
            .flat_map(|r| r.keyids.iter().cloned())
            .collect();
        delegations
            .keys
            .retain(|id, _| used.contains(id) || keyids.contains(id));
        changed |= resign_all;

        let mut groups: std::collections::BTreeMap<String, Vec<NewTarget>> =
            std::collections::BTreeMap::new();
        for t in new {
            groups.entry(bin_prefix(&t.name)).or_default().push(t);
        }
        if resign_all {
            for r in old.roles.iter().filter(|r| is_bin(r)) {
                if let PathSet::PathHashPrefixes(p) = &r.paths {
                    for prefix in p {
                        groups.entry(prefix.value().to_owned()).or_default();
                    }
                }
            }
        }
        let mut signed = Vec::new();
        for (prefix, targets) in groups {
            let name = self.bin_name(&prefix);
            let content = match old.roles.iter().any(|r| r.name == name) {
                true => current.role(&name, &old)?.map(|r| r.signed),
                false => None,
            };
            if !delegations.roles.iter().any(|r| r.name == name) {
                let prefix = tough::schema::PathHashPrefix::new(prefix.clone()).map_err(|e| {
                    TrustError::BadDelegation {
                        role: name.clone(),
                        reason: e.to_string(),
                    }
                })?;
                delegations.roles.push(DelegatedRole {
                    name: name.clone(),
                    keyids: keyids.clone(),
                    threshold: self.threshold,
                    paths: PathSet::PathHashPrefixes(vec![prefix]),
                    terminating: false,
                    targets: None,
                });
                changed = true;
            }
            let mut content = content
                .unwrap_or_else(|| Targets::new(SPEC_VERSION.to_owned(), NonZeroU64::MIN, now));
            content.version = next_role_version(current, &name, &content);
            content.expires = expiry(now, exp.targets, &name)?;
            add_new_targets(&mut content, targets, tdir)?;
            signed.push(sign_delegated(&name, content, &delegations, self.keys).await?);
        }
        if changed {
            parent.delegations = Some(delegations);
        }
        Ok((changed, signed))
    }
}

/// Re-signs a targets role and those of its hash bins that expire within `within` of
/// `now` (issue 9, points 5 and 6), adding nothing, then snapshot and timestamp.
///
/// `role` is `None` for top-level targets (signed with `keys.targets`, re-signed whatever
/// its expiry) or a delegated role with its own keys (a mirror's: re-signed only when due
/// itself). Bins are re-signed only when due: a catalog of thousands of updates is
/// refreshed by re-signing what expires, not everything. Returns the roles re-signed; for
/// a delegated role with nothing due, nothing is written.
pub async fn refresh_targets(
    keys: &KeyPaths,
    repo_dir: &Path,
    role: Option<(&str, &[PathBuf])>,
    now: Timestamp,
    exp: &Expiries,
    within: SignedDuration,
) -> Result<Vec<String>, TrustError> {
    let current = Current::load(repo_dir).await?;
    let due = |t: &Targets| t.expires.duration_since(now) <= within;
    let mut delegated = Delegated::keep(&current.delegated_meta);
    let mut resigned = Vec::new();
    let RoleToSign {
        name,
        keys: signer_keys,
        content,
        by,
    } = role_to_sign(&current, keys, role)?;
    if let Some(d) = &content.delegations {
        for r in d.roles.iter().filter(|r| is_bin(r)) {
            let Some(bin) = current.role(&r.name, d)? else {
                continue;
            };
            if due(&bin.signed) {
                let mut t = bin.signed;
                t.version = next_role_version(&current, &r.name, &t);
                t.expires = expiry(now, exp.targets, &r.name)?;
                delegated
                    .new
                    .push(sign_delegated(&r.name, t, d, &signer_keys).await?);
                resigned.push(r.name.clone());
            }
        }
    }
    let to_write = match by {
        None => {
            let mut t = content;
            t.version = t.version.saturating_add(1);
            t.expires = expiry(now, exp.targets, "targets")?;
            resigned.insert(0, "targets".to_owned());
            TargetsToWrite::Sign(t)
        }
        Some(top) => {
            if due(&content) {
                let mut t = content;
                t.version = next_role_version(&current, name, &t);
                t.expires = expiry(now, exp.targets, name)?;
                delegated
                    .new
                    .push(sign_delegated(name, t, top, &signer_keys).await?);
                resigned.insert(0, name.to_owned());
            }
            current.targets_kept()?
        }
    };
    if resigned.is_empty() {
        // A delegated role with nothing due: the catalog stays as it is.
        return Ok(resigned);
    }
    current.publish(to_write, keys, now, exp, delegated).await?;
    Ok(resigned)
}

// ---- Issue 9, points 2 and 3: delegated roles (an online mirror; each tenant's private updates) ----

/// A role that the catalog's top-level targets role delegates to, as signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    /// Role name, e.g. `mirror` or `tenant-acme`.
    pub role: String,
    /// Path patterns it may sign under (shell-style, `*` never crosses `/`).
    pub paths: Vec<String>,
    /// Key ids (hex) whose signatures count for it.
    pub keyids: Vec<String>,
    /// How many of them must sign.
    pub threshold: u64,
    /// Version of its metadata now (0 when the catalog does not hold it yet).
    pub version: u64,
    /// The targets it lists now.
    pub targets: Vec<String>,
}

/// The roles the catalog at `repo_dir` delegates to from its top-level targets role.
pub async fn delegated_roles(repo_dir: &Path) -> Result<Vec<Delegation>, TrustError> {
    let current = Current::load(repo_dir).await?;
    let Some(delegations) = &current.targets.signed.delegations else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    // The top-level role's own hash bins are not roles anyone delegated to by name.
    for r in delegations.roles.iter().filter(|r| !is_bin(r)) {
        let role = current.role(&r.name, delegations)?;
        let mut targets = Vec::new();
        if let Some(role) = &role {
            targets.extend(role.signed.targets.keys().map(|n| n.raw().to_owned()));
            if let Some(d) = &role.signed.delegations {
                let mut below = Vec::new();
                current.walk(d, 1, &mut below)?;
                targets.extend(below.into_iter().map(|(_, n, _)| n));
            }
        }
        targets.sort();
        out.push(Delegation {
            role: r.name.clone(),
            paths: pattern_strings(&r.paths),
            keyids: r.keyids.iter().map(|k| hex::encode(k.as_ref())).collect(),
            threshold: r.threshold.get(),
            version: role.map_or(0, |t| t.signed.version.get()),
            targets,
        });
    }
    Ok(out)
}

/// Delegates `paths` to `role`, held by `role_keys` with `threshold`: the top-level targets
/// role (offline key in `keys.targets`) signs the delegation, the role's metadata is signed by
/// `role_keys`, and snapshot and timestamp are re-signed.
///
/// Run again on an existing role to change its paths or replace its keys (a stolen mirror
/// key): the old keys then count for nothing, and what the role listed is re-signed by the new
/// keys (it must still lie under the new paths). Role names are flat (letters, digits,
/// `.`, `_`, `-`); Patchday's target names are flat, so patterns such as `mirror~*` or
/// `update-mirror-*` are what match.
#[allow(clippy::too_many_arguments)]
pub async fn delegate_role(
    keys: &KeyPaths,
    repo_dir: &Path,
    role: &str,
    paths: &[String],
    role_keys: &[PathBuf],
    threshold: u64,
    now: Timestamp,
    exp: &Expiries,
) -> Result<CatalogVersion, TrustError> {
    check_role_name(role)?;
    let bad = |reason: String| TrustError::BadDelegation {
        role: role.to_owned(),
        reason,
    };
    if paths.is_empty() || paths.iter().any(|p| p.is_empty()) {
        return Err(bad("give at least one non-empty path pattern".into()));
    }
    let patterns = paths
        .iter()
        .map(|p| PathPattern::new(p.clone()).map_err(|e| bad(format!("pattern {p:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let threshold_nz = NonZeroU64::new(threshold)
        .filter(|_| threshold <= role_keys.len() as u64)
        .ok_or_else(|| TrustError::BadThreshold {
            role: role.to_owned(),
            threshold,
            keys: role_keys.len(),
        })?;

    let current = Current::load(repo_dir).await?;
    let mut top = current.targets.signed.clone();
    top.version = top.version.saturating_add(1);
    top.expires = expiry(now, exp.targets, "targets")?;
    let before = top.delegations.take().unwrap_or_default();
    let mut delegations = before.clone();
    let old = delegations
        .roles
        .iter()
        .position(|r| r.name == role)
        .map(|i| delegations.roles.remove(i));

    let keyids = add_public_keys(role_keys, &mut delegations.keys)?;

    let mut content = match old {
        Some(_) => current.role(role, &before)?.map(|t| t.signed),
        None => None,
    }
    .unwrap_or_else(|| Targets::new(SPEC_VERSION.to_owned(), NonZeroU64::MIN, now));
    content.version = next_role_version(&current, role, &content);
    content.expires = expiry(now, exp.targets, role)?;
    // What the role lists, its bins' targets included, must lie under the new paths.
    let mut listed: Vec<String> = content.targets.keys().map(|n| n.raw().to_owned()).collect();
    if let Some(d) = &content.delegations {
        let mut below = Vec::new();
        current.walk(d, 1, &mut below)?;
        listed.extend(below.into_iter().map(|(_, n, _)| n));
    }
    if let Some(name) = listed
        .iter()
        .find(|name| !paths.iter().any(|p| path_matches(p, name)))
    {
        return Err(TrustError::OutsideDelegation {
            role: role.to_owned(),
            name: name.clone(),
            paths: paths.join(", "),
        });
    }
    // Named roles come before the top-level role's hash bins, so a name under a named role's
    // paths is looked up there first.
    let at = delegations
        .roles
        .iter()
        .position(is_bin)
        .unwrap_or(delegations.roles.len());
    delegations.roles.insert(
        at,
        DelegatedRole {
            name: role.to_owned(),
            keyids,
            threshold: threshold_nz,
            paths: PathSet::Paths(patterns),
            terminating: false,
            targets: None,
        },
    );
    // Keys no role names any more (a replaced mirror key) are dropped.
    let used: Vec<_> = delegations
        .roles
        .iter()
        .flat_map(|r| r.keyids.iter().cloned())
        .collect();
    delegations.keys.retain(|id, _| used.contains(id));

    // The role's own bins follow its keys (re-signed by the new ones when they changed).
    let bins = BinSigner {
        parent: role,
        keys: role_keys,
        threshold: threshold_nz,
    };
    let tdir = targets_dir(repo_dir);
    create_dir(&tdir)?;
    let (_, resigned_bins) = bins
        .place(&current, &mut content, Vec::new(), &tdir, now, exp)
        .await?;
    let signed = sign_delegated(role, content, &delegations, role_keys).await?;
    top.delegations = Some(delegations);
    let mut delegated = Delegated::keep(&current.delegated_meta);
    delegated.new.push(signed);
    delegated.new.extend(resigned_bins);
    current
        .publish(TargetsToWrite::Sign(top), keys, now, exp, delegated)
        .await
}

/// Adds or replaces targets of the delegated `role`, signed with `role_keys` (a mirror's own
/// key, never the offline targets key), and re-signs snapshot and timestamp with `keys`'
/// online keys. The top-level targets role is not touched.
///
/// Refuses, before signing anything, a name outside the role's delegated paths
/// ([`TrustError::OutsideDelegation`]) and a role the catalog does not delegate to.
pub async fn add_targets_as(
    keys: &KeyPaths,
    repo_dir: &Path,
    role: &str,
    role_keys: &[PathBuf],
    new: Vec<NewTarget>,
    now: Timestamp,
    exp: &Expiries,
) -> Result<CatalogVersion, TrustError> {
    check_new_targets(&new)?;
    let current = Current::load(repo_dir).await?;
    let unknown = || TrustError::UnknownRole {
        role: role.to_owned(),
    };
    let delegations = current
        .targets
        .signed
        .delegations
        .as_ref()
        .ok_or_else(unknown)?;
    let entry = delegations
        .roles
        .iter()
        .find(|r| r.name == role)
        .ok_or_else(unknown)?;
    let paths = pattern_strings(&entry.paths);
    for t in &new {
        if !paths.iter().any(|p| path_matches(p, &t.name)) {
            return Err(TrustError::OutsideDelegation {
                role: role.to_owned(),
                name: t.name.clone(),
                paths: paths.join(", "),
            });
        }
    }
    let tdir = targets_dir(repo_dir);
    create_dir(&tdir)?;
    let mut content = current
        .role(role, delegations)?
        .map(|t| t.signed)
        .unwrap_or_else(|| Targets::new(SPEC_VERSION.to_owned(), NonZeroU64::MIN, now));
    let mut delegated = Delegated::keep(&current.delegated_meta);
    let resign_role = if content.targets.is_empty() {
        // Issue 9, point 6: into the role's hash bins, signed by the role's keys.
        let bins = BinSigner {
            parent: role,
            keys: role_keys,
            threshold: entry.threshold,
        };
        let (changed, signed) = bins
            .place(&current, &mut content, new, &tdir, now, exp)
            .await?;
        delegated.new.extend(signed);
        changed
    } else {
        // A role signed before bins lists its targets itself: it goes on so.
        add_new_targets(&mut content, new, &tdir)?;
        true
    };
    if resign_role {
        content.version = next_role_version(&current, role, &content);
        content.expires = expiry(now, exp.targets, role)?;
        delegated
            .new
            .push(sign_delegated(role, content, delegations, role_keys).await?);
    }

    current
        .publish(current.targets_kept()?, keys, now, exp, delegated)
        .await
}

/// A target the catalog lists, with the role that signs it and its hash.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedTarget {
    /// The role whose metadata lists it (`targets`, `mirror.bin-3f`, ...).
    pub role: String,
    /// Its length, sha256 and custom object (its file is `targets/<sha256>.<name>`).
    pub info: crate::TargetInfo,
}

/// Every target the catalog at `repo_dir` lists, by name, with its role and hash (where
/// two roles list a name, the first in search order wins). Reads every role: for
/// enumerations such as a prune (issue 10, point 7), not for signing one update.
pub async fn catalog_listing(
    repo_dir: &Path,
) -> Result<std::collections::BTreeMap<String, ListedTarget>, TrustError> {
    let current = Current::load(repo_dir).await?;
    let mut out = std::collections::BTreeMap::new();
    for (role, name, t) in current.all_targets()? {
        out.entry(name).or_insert_with(|| ListedTarget {
            role,
            info: crate::TargetInfo {
                length: t.length,
                sha256: hex::encode(t.hashes.sha256.as_ref()),
                custom: serde_json::Value::Object(t.custom.into_iter().collect()),
            },
        });
    }
    Ok(out)
}

/// What [`remove_targets`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removal {
    /// The names taken out of the catalog (those asked for that the role listed).
    pub removed: Vec<String>,
    /// The roles re-signed: the bins the names were in (and the role itself when it
    /// lists targets directly, a catalog from before bins).
    pub resigned: Vec<String>,
    /// Target files deleted from `targets/`.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// The catalog's versions after; `None` when no name was listed (nothing written).
    pub version: Option<CatalogVersion>,
}

/// Takes `names` out of a targets role (issue 10, point 7: pruning superseded updates):
/// out of the hash bins they hash to, each re-signed once, then snapshot and timestamp;
/// then deletes their files from `targets/` (a name another role still lists keeps its
/// file). An emptied bin stays, empty, so the role itself is not re-signed.
///
/// `role` is `None` for top-level targets (its bins signed with `keys.targets`) or a
/// delegated role with its own keys (a mirror's: the offline key is not needed). Names the
/// role does not list are ignored; when none is listed, nothing is written.
pub async fn remove_targets(
    keys: &KeyPaths,
    repo_dir: &Path,
    role: Option<(&str, &[PathBuf])>,
    names: &std::collections::BTreeSet<String>,
    now: Timestamp,
    exp: &Expiries,
) -> Result<Removal, TrustError> {
    let current = Current::load(repo_dir).await?;
    let RoleToSign {
        name,
        keys: signer_keys,
        mut content,
        by,
    } = role_to_sign(&current, keys, role)?;
    let mut out = Removal::default();
    let mut taken: Vec<(String, Target)> = Vec::new();
    let mut delegated = Delegated::keep(&current.delegated_meta);
    // A role signed before bins lists its targets itself.
    for n in names {
        taken.extend(take_target(&mut content, n));
    }
    let resign_role = !taken.is_empty();
    if let Some(d) = content.delegations.clone() {
        let mut by_bin: std::collections::BTreeMap<String, Vec<&String>> = Default::default();
        for n in names {
            by_bin
                .entry(bin_role_name(name, &bin_prefix(n)))
                .or_default()
                .push(n);
        }
        for (bin, in_bin) in by_bin {
            if !d.roles.iter().any(|r| r.name == bin && is_bin(r)) {
                continue;
            }
            let Some(signed) = current.role(&bin, &d)? else {
                continue;
            };
            let mut t = signed.signed;
            let before = taken.len();
            for n in in_bin {
                taken.extend(take_target(&mut t, n));
            }
            if taken.len() > before {
                t.version = next_role_version(&current, &bin, &t);
                t.expires = expiry(now, exp.targets, &bin)?;
                delegated
                    .new
                    .push(sign_delegated(&bin, t, &d, &signer_keys).await?);
                out.resigned.push(bin);
            }
        }
    }
    if taken.is_empty() {
        return Ok(out);
    }
    let to_write = match by {
        None if resign_role => {
            content.version = content.version.saturating_add(1);
            content.expires = expiry(now, exp.targets, "targets")?;
            out.resigned.insert(0, "targets".to_owned());
            TargetsToWrite::Sign(content)
        }
        None => current.targets_kept()?,
        Some(top) => {
            if resign_role {
                content.version = next_role_version(&current, name, &content);
                content.expires = expiry(now, exp.targets, name)?;
                delegated
                    .new
                    .push(sign_delegated(name, content, top, &signer_keys).await?);
                out.resigned.insert(0, name.to_owned());
            }
            current.targets_kept()?
        }
    };
    out.version = Some(current.publish(to_write, keys, now, exp, delegated).await?);
    // The files go once the catalog no longer lists them.
    let still = catalog_listing(repo_dir).await?;
    let tdir = targets_dir(repo_dir);
    for (n, t) in taken {
        let sha = hex::encode(t.hashes.sha256.as_ref());
        out.removed.push(n.clone());
        if still.get(&n).is_some_and(|l| l.info.sha256 == sha) {
            continue;
        }
        let file = tdir.join(stored_target_name(&n, &sha));
        match std::fs::remove_file(&file) {
            Ok(()) => {
                out.files += 1;
                out.bytes += t.length;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(TrustError::io("remove", &file)(e)),
        }
    }
    Ok(out)
}

/// Takes `name` out of `t`, if listed.
fn take_target(t: &mut Targets, name: &str) -> Option<(String, Target)> {
    let key = t.targets.keys().find(|k| k.raw() == name)?.clone();
    t.targets.remove(&key).map(|x| (name.to_owned(), x))
}

/// A targets role to re-sign: top-level targets or a delegated role, its keys, its
/// content, and the delegations that name it (`None` for top-level targets).
struct RoleToSign<'a> {
    name: &'a str,
    keys: Vec<PathBuf>,
    content: Targets,
    by: Option<&'a Delegations>,
}

fn role_to_sign<'a>(
    current: &'a Current,
    keys: &KeyPaths,
    role: Option<(&'a str, &[PathBuf])>,
) -> Result<RoleToSign<'a>, TrustError> {
    match role {
        None => Ok(RoleToSign {
            name: "targets",
            keys: vec![keys.targets.clone()],
            content: current.targets.signed.clone(),
            by: None,
        }),
        Some((name, role_keys)) => {
            let unknown = || TrustError::UnknownRole {
                role: name.to_owned(),
            };
            let top = current
                .targets
                .signed
                .delegations
                .as_ref()
                .ok_or_else(unknown)?;
            let content = current.role(name, top)?.ok_or_else(unknown)?;
            Ok(RoleToSign {
                name,
                keys: role_keys.to_vec(),
                content: content.signed,
                by: Some(top),
            })
        }
    }
}

/// One more than both the role's own version and what the snapshot lists for it.
fn next_role_version(current: &Current, role: &str, content: &Targets) -> NonZeroU64 {
    let listed = current
        .delegated_meta
        .get(&format!("{role}.json"))
        .map_or(0, |m| m.version.get());
    let own = if current.delegated_meta.contains_key(&format!("{role}.json")) {
        content.version.get()
    } else {
        0
    };
    NonZeroU64::new(listed.max(own).saturating_add(1)).unwrap_or(NonZeroU64::MIN)
}

fn pattern_strings(paths: &PathSet) -> Vec<String> {
    match paths {
        PathSet::Paths(p) => p.iter().map(|p| p.value().to_owned()).collect(),
        // Patchday never signs hash-prefix delegations; they match no name here.
        PathSet::PathHashPrefixes(_) => Vec::new(),
    }
}

/// Flat role names: they become file names (`N.<role>.json`) and URL segments unquoted.
fn check_role_name(role: &str) -> Result<(), TrustError> {
    let bad = |reason: &str| {
        Err(TrustError::BadDelegation {
            role: role.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if role.is_empty() || role.len() > 64 {
        return bad("a role name has 1 to 64 characters");
    }
    if matches!(role, "root" | "targets" | "snapshot" | "timestamp") {
        return bad("that is a top-level role");
    }
    if !role.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !role
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return bad("use ASCII letters, digits, '.', '_' and '-', starting with a letter or digit");
    }
    Ok(())
}

/// Signs a delegated role's metadata with `role_keys` as `delegations` names them.
async fn sign_delegated(
    role: &str,
    content: Targets,
    delegations: &Delegations,
    role_keys: &[PathBuf],
) -> Result<(String, NonZeroU64, Vec<u8>), TrustError> {
    let version = content.version;
    let sources: Vec<Box<dyn KeySource>> =
        role_keys.iter().map(|p| PemKeySource::boxed(p)).collect();
    let signed = SignedRole::new(
        DelegatedTargets {
            name: role.to_owned(),
            targets: content,
        },
        &KeyHolder::Delegations(delegations.clone()),
        &sources,
        &SystemRandom::new(),
    )
    .await
    .map_err(|e| TrustError::Signing {
        role: role.to_owned(),
        detail: format!("{e} (is this the key the delegation names?)"),
    })?;
    Ok((role.to_owned(), version, signed.buffer().clone()))
}

#[cfg(test)]
mod expiry_tests {
    use super::*;

    #[test]
    fn expiry_is_whole_seconds_as_the_spec_writes_it() {
        let now: Timestamp = "2026-11-26T12:30:38.494802808Z".parse().unwrap();
        let t = expiry(now, SignedDuration::from_hours(24), "timestamp").unwrap();
        assert_eq!(t.to_string(), "2026-11-27T12:30:38Z");
    }
}
