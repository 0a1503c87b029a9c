//! A small TUF client that follows the specification's client workflow (section 5) step by step.
//!
//! Why our own and not tough's `Repository`: tough 0.24 failed 22 of the 113 tests of the public
//! TUF conformance suite (delegated targets are never searched, hash-prefixed target names break on
//! nested paths, sha512-only targets do not parse, it re-downloads what it already trusts, and its
//! clock cannot be injected). Wrapping it could not fix the search order or the schema, and the
//! workflow itself is short, so this module is the workflow, written in the specification's order:
//! 5.3 root ([`Updater::refresh`] → `load_root`), 5.4 timestamp, 5.5 snapshot, 5.6 targets and
//! delegations (preorder depth-first search in [`Updater::target_info`]), 5.7 target URLs with
//! hash prefixes ([`Updater::target_url`]) and checks ([`check_target_bytes`]).
//!
//! Why our own serde types and not `tough::schema`: signatures are checked over the canonical form
//! of the `signed` object exactly as received (a `serde_json::Value`), never over a re-serialised
//! struct, and the types stay lenient where the specification is (any hash algorithm may be listed,
//! unknown fields are kept in the signed bytes). From tough we keep the public-key parsing
//! (`tough::schema::key::Key`: ed25519, ecdsa-sha2-nistp256 and rsassa-pss-sha256 keys, in hex or
//! PEM); the transport is this crate's own [`Transport`]; signatures are checked with aws-lc-rs and canonical JSON is
//! olpc-cjson, both as in tough.
//!
//! Trusted metadata lives in one directory, one file per role (`root.json`, `timestamp.json`,
//! `snapshot.json`, `targets.json`, `<percent-encoded role>.json`), stored byte for byte as
//! received. Time is a parameter: expiry is judged against the `now` given to [`Updater::new`].

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::transport::{FetchError, Transport};
use futures::StreamExt;
use jiff::Timestamp;
use serde::{Deserialize, Serialize as _};
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};
use tough::schema::key::{EcdsaScheme, Ed25519Scheme, Key, RsaScheme};
use url::Url;

use crate::verify::{metadata_limits, MAX_METADATA_FILE};
use crate::TrustError;

/// At most this many new root versions are taken in one refresh (endless-data defence).
pub const MAX_ROOT_ROTATIONS: u64 = 256;

/// At most this many targets roles are visited in one target search.
pub const MAX_DELEGATIONS: usize = 32;

/// At most this many delegated roles are read when every target is listed (the server's
/// intake, [`Updater::delegated_targets`]): a role with hash bins has up to 256 of them
/// (issue 9, point 6), and a catalog a few such roles; a hostile repository still cannot
/// make the walk endless, and each role's size is capped on its own.
pub const MAX_LISTED_ROLES: usize = 4096;

const TOP_LEVEL_ROLES: [&str; 4] = ["root", "timestamp", "snapshot", "targets"];

/// What a targets role says about one target file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TargetFile {
    /// Exact length in bytes.
    pub length: u64,
    /// Digests by algorithm name (`sha256`, `sha512`), hex.
    pub hashes: BTreeMap<String, String>,
    /// The signed custom JSON, if any.
    #[serde(default)]
    pub custom: Option<Value>,
}

/// A metadata file as received: the signed object and its signatures.
#[derive(Debug, Clone, Deserialize)]
struct Envelope {
    signed: Value,
    signatures: Vec<Signature>,
}

#[derive(Debug, Clone, Deserialize)]
struct Signature {
    keyid: String,
    sig: String,
}

/// The fields every role has.
#[derive(Debug, Clone, Deserialize)]
struct Head {
    #[serde(rename = "_type")]
    kind: String,
    spec_version: String,
    version: u64,
    expires: Timestamp,
}

#[derive(Debug, Clone, Deserialize)]
struct RoleKeys {
    keyids: Vec<String>,
    threshold: u64,
}

#[derive(Debug, Clone, Deserialize)]
struct RootBody {
    consistent_snapshot: bool,
    keys: BTreeMap<String, Value>,
    roles: BTreeMap<String, RoleKeys>,
}

#[derive(Debug, Clone, Deserialize)]
struct MetaFile {
    version: u64,
    #[serde(default)]
    length: Option<u64>,
    #[serde(default)]
    hashes: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize)]
struct MetaBody {
    meta: BTreeMap<String, MetaFile>,
}

#[derive(Debug, Clone, Deserialize)]
struct TargetsBody {
    targets: BTreeMap<String, TargetFile>,
    #[serde(default)]
    delegations: Option<Delegations>,
}

#[derive(Debug, Clone, Deserialize)]
struct Delegations {
    keys: BTreeMap<String, Value>,
    #[serde(default)]
    roles: Option<Vec<DelegatedRole>>,
    #[serde(default)]
    succinct_roles: Option<SuccinctRoles>,
}

#[derive(Debug, Clone, Deserialize)]
struct DelegatedRole {
    name: String,
    keyids: Vec<String>,
    threshold: u64,
    terminating: bool,
    #[serde(default)]
    paths: Option<Vec<String>>,
    #[serde(default)]
    path_hash_prefixes: Option<Vec<String>>,
}

/// TAP 15 hash-bin delegation: `2^bit_length` roles named `<prefix>-<bin in hex>`.
#[derive(Debug, Clone, Deserialize)]
struct SuccinctRoles {
    keyids: Vec<String>,
    threshold: u64,
    bit_length: u32,
    name_prefix: String,
}

/// Metadata that passed its checks, with the envelope kept to re-check signatures.
#[derive(Debug, Clone)]
struct Verified<T> {
    head: Head,
    body: T,
    envelope: Envelope,
}

/// Keys and threshold that a delegator gives a role (owned: checked after borrowing ends).
struct Authority {
    keys: BTreeMap<String, Value>,
    keyids: Vec<String>,
    threshold: u64,
}

/// Whether an update replaced the trusted timestamp or kept the equal version already held.
#[derive(Debug, PartialEq, Eq)]
enum Update {
    New,
    Same,
}

enum Fetched {
    NotFound,
    TooLong,
    Bytes(Vec<u8>),
}

/// The TUF client: trusted metadata in a directory, a repository behind a [`Transport`].
#[derive(Debug)]
pub struct Updater {
    transport: Box<dyn Transport>,
    metadata_base: Url,
    store: PathBuf,
    now: Timestamp,
    reuse_local: bool,
    root: Verified<RootBody>,
    timestamp: Option<Verified<MetaBody>>,
    snapshot: Option<Verified<MetaBody>>,
    targets: BTreeMap<String, Verified<TargetsBody>>,
}

impl Updater {
    /// Starts from the trusted `root.json` in `store`, which must be signed by its own keys.
    ///
    /// `now` is the time every expiry is judged against. Nothing is fetched yet.
    pub fn new(
        transport: Box<dyn Transport>,
        metadata_base: Url,
        store: &Path,
        now: Timestamp,
    ) -> Result<Self, TrustError> {
        let path = store.join("root.json");
        let bytes = std::fs::read(&path).map_err(|_| TrustError::MetadataMissing {
            file: path.display().to_string(),
        })?;
        let root = parse_self_signed_root(&bytes)?;
        let mut metadata_base = metadata_base;
        if !metadata_base.path().ends_with('/') {
            let path = format!("{}/", metadata_base.path());
            metadata_base.set_path(&path);
        }
        Ok(Updater {
            transport,
            metadata_base,
            store: store.to_path_buf(),
            now,
            reuse_local: true,
            root,
            timestamp: None,
            snapshot: None,
            targets: BTreeMap::new(),
        })
    }

    /// Whether snapshot and targets metadata already trusted locally may stand in for the
    /// repository's copies when they are still what timestamp and snapshot list (default: yes).
    ///
    /// Off when the point is to check the repository's own files, e.g. an uploaded catalog; the
    /// local copies still serve as the reference for rollback checks.
    pub fn reuse_local(mut self, reuse: bool) -> Self {
        self.reuse_local = reuse;
        self
    }

    /// The whole top-level update: root chain, timestamp, snapshot, top-level targets (5.3–5.6).
    pub async fn refresh(&mut self) -> Result<(), TrustError> {
        self.load_root().await?;
        self.load_timestamp().await?;
        self.load_snapshot().await?;
        self.load_targets("targets", "root").await
    }

    /// Version of the trusted root.
    pub fn root_version(&self) -> u64 {
        self.root.head.version
    }

    /// Versions of trusted timestamp, snapshot and targets, and when timestamp expires.
    pub fn top_level_versions(&self) -> Option<(u64, u64, u64, Timestamp)> {
        let ts = self.timestamp.as_ref()?;
        let snap = self.snapshot.as_ref()?;
        let targets = self.targets.get("targets")?;
        Some((
            ts.head.version,
            snap.head.version,
            targets.head.version,
            ts.head.expires,
        ))
    }

    /// The targets the top-level targets role lists itself (delegations not followed).
    pub fn top_level_targets(&self) -> Option<&BTreeMap<String, TargetFile>> {
        self.targets.get("targets").map(|t| &t.body.targets)
    }

    /// Finds what the repository says about `path`: preorder depth-first search through the
    /// delegations, from top-level targets (5.6.7). `None` if no authorised role lists it.
    ///
    /// Call [`Updater::refresh`] first.
    pub async fn target_info(&mut self, path: &str) -> Result<Option<TargetFile>, TrustError> {
        let mut to_visit = vec![("targets".to_owned(), "root".to_owned())];
        let mut visited = BTreeSet::new();
        while visited.len() < MAX_DELEGATIONS {
            let Some((role, parent)) = to_visit.pop() else {
                break;
            };
            if visited.contains(&role) {
                continue;
            }
            self.load_targets(&role, &parent).await?;
            let Some(targets) = self.targets.get(&role) else {
                break;
            };
            if let Some(file) = targets.body.targets.get(path) {
                return Ok(Some(file.clone()));
            }
            visited.insert(role.clone());
            if let Some(delegations) = &targets.body.delegations {
                let mut children = Vec::new();
                for (child, terminating) in delegations.roles_for(path) {
                    children.push((child, role.clone()));
                    if terminating {
                        // A terminating match: nothing else, not even siblings, is consulted.
                        to_visit.clear();
                        break;
                    }
                }
                children.reverse();
                to_visit.extend(children);
            }
        }
        Ok(None)
    }

    /// Issue 9, points 2 and 3: every target that a delegated role lists, as
    /// `(role, name, file)` in preorder (top-level's children first, in listed order).
    ///
    /// Each target must lie in the paths of every delegation on the way to its role, or the
    /// whole load is refused with [`TrustError::OutsideDelegation`]: a delegated key (a mirror's)
    /// signs under its own paths only. A role whose metadata the repository does not serve to
    /// this client (another tenant's private role: 404) is skipped, as the specification's
    /// search does (5.6.7: its targets cannot be found); a role that is served must verify.
    /// Call [`Updater::refresh`] first.
    pub async fn delegated_targets(
        &mut self,
    ) -> Result<Vec<(String, String, TargetFile)>, TrustError> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut to_visit = self.children_of("targets", &[]);
        while let Some((role, parent, chain)) = to_visit.pop() {
            if seen.len() >= MAX_LISTED_ROLES {
                // Listing fewer targets than the catalog has would be a silent lie.
                return Err(TrustError::MalformedMetadata {
                    role: role.clone(),
                    detail: format!("the catalog delegates to more than {MAX_LISTED_ROLES} roles"),
                });
            }
            if !seen.insert(role.clone()) {
                continue;
            }
            match self.load_targets(&role, &parent).await {
                Ok(()) => {}
                Err(TrustError::MetadataMissing { .. }) => continue,
                Err(e) => return Err(e),
            }
            let Some(targets) = self.targets.get(&role) else {
                continue;
            };
            for (name, file) in &targets.body.targets {
                if let Some(outside) = chain.iter().find(|d| !d.trusts(name)) {
                    return Err(TrustError::OutsideDelegation {
                        role: role.clone(),
                        name: name.clone(),
                        paths: outside.paths.clone().unwrap_or_default().join(", "),
                    });
                }
                out.push((role.clone(), name.clone(), file.clone()));
            }
            to_visit.extend(self.children_of(&role, &chain));
        }
        Ok(out)
    }

    /// The roles `role` delegates to (listed roles only), reversed for a preorder stack, each
    /// with the chain of delegation entries that leads to it.
    fn children_of(
        &self,
        role: &str,
        chain: &[DelegatedRole],
    ) -> Vec<(String, String, Vec<DelegatedRole>)> {
        let Some(roles) = self
            .targets
            .get(role)
            .and_then(|t| t.body.delegations.as_ref())
            .and_then(|d| d.roles.as_ref())
        else {
            return Vec::new();
        };
        roles
            .iter()
            .rev()
            .map(|d| {
                let mut c = chain.to_vec();
                c.push(d.clone());
                (d.name.clone(), role.to_owned(), c)
            })
            .collect()
    }

    /// Where a target file is fetched from: with consistent snapshots the file name gets the
    /// prefix `<hash>.` in its own directory (5.7.3).
    pub fn target_url(
        &self,
        targets_base: &Url,
        path: &str,
        file: &TargetFile,
    ) -> Result<Url, TrustError> {
        let (dir, name) = match path.rsplit_once('/') {
            Some((dir, name)) => (format!("{dir}/"), name),
            None => (String::new(), path),
        };
        let name = match file.hashes.values().next() {
            Some(hash) if self.root.body.consistent_snapshot => format!("{hash}.{name}"),
            _ => name.to_owned(),
        };
        let relative = format!("{dir}{name}")
            .split('/')
            .map(quote_path_segment)
            .collect::<Vec<_>>()
            .join("/");
        let mut base = targets_base.as_str().to_owned();
        if !base.ends_with('/') {
            base.push('/');
        }
        Url::parse(&format!("{base}{relative}")).map_err(|e| TrustError::MalformedMetadata {
            role: "targets".into(),
            detail: format!("target path {path:?} makes no URL: {e}"),
        })
    }

    /// Fetches a target file through this updater's transport, reading at most its signed length
    /// (anything longer is refused unread). Check the bytes with [`check_target_bytes`].
    pub async fn fetch_target(
        &self,
        name: &str,
        url: &Url,
        file: &TargetFile,
    ) -> Result<Vec<u8>, TrustError> {
        match fetch(self.transport.as_ref(), url, file.length).await? {
            Fetched::Bytes(bytes) => Ok(bytes),
            Fetched::TooLong => Err(TrustError::LengthMismatch {
                name: name.to_owned(),
                expected: file.length,
                actual: file.length.saturating_add(1),
            }),
            Fetched::NotFound => Err(TrustError::FetchFailed {
                file: url.to_string(),
                detail: "not found".into(),
            }),
        }
    }

    // 5.3: the root chain.
    async fn load_root(&mut self) -> Result<(), TrustError> {
        let caps = metadata_limits();
        let first = self.root.head.version.saturating_add(1);
        let mut next = first;
        loop {
            if next - first >= MAX_ROOT_ROTATIONS {
                return Err(TrustError::TooManyRootUpdates {
                    max: MAX_ROOT_ROTATIONS,
                });
            }
            let file = format!("{next}.root.json");
            let bytes = match self.fetch_metadata(&file, caps.max_root_size).await? {
                Fetched::NotFound => break,
                Fetched::TooLong => return Err(self.too_large(&file, caps.max_root_size)),
                Fetched::Bytes(bytes) => bytes,
            };
            self.update_root(&bytes)?;
            self.persist("root", &bytes)?;
            next += 1;
        }
        // 5.3.10: a freeze check on the final root only, after the newer roots were kept.
        if self.root.head.expires <= self.now {
            return Err(expired("root", &self.root.head));
        }
        Ok(())
    }

    fn update_root(&mut self, bytes: &[u8]) -> Result<(), TrustError> {
        let envelope = parse_envelope("root", bytes)?;
        let head = parse_head("root", "root", &envelope)?;
        // Signed by a threshold of the trusted root's keys, then of its own (5.3.4, 5.3.5).
        self.root.verify_role("root", &envelope)?;
        let body: RootBody = parse_body("root", &envelope)?;
        let expected = self.root.head.version + 1;
        if head.version != expected {
            return Err(TrustError::MetadataMismatch {
                role: "root".into(),
                listed_by: "the root chain".into(),
                detail: format!("{expected}.root.json holds version {}", head.version),
            });
        }
        let new = Verified {
            head,
            body,
            envelope,
        };
        check_root_roles(&new.body)?;
        new.verify_role("root", &new.envelope)?;
        self.root = new;
        Ok(())
    }

    // 5.4: timestamp.
    async fn load_timestamp(&mut self) -> Result<(), TrustError> {
        // The local timestamp is the rollback reference even when expired; if it no longer
        // verifies (keys rotated), there is no reference: fast-forward recovery.
        if let Some(bytes) = self.read_local("timestamp") {
            let _ = self.update_timestamp(&bytes);
        }
        let max = metadata_limits().max_timestamp_size;
        let bytes = match self.fetch_metadata("timestamp.json", max).await? {
            Fetched::NotFound => return Err(self.missing("timestamp.json")),
            Fetched::TooLong => return Err(self.too_large("timestamp.json", max)),
            Fetched::Bytes(bytes) => bytes,
        };
        if self.update_timestamp(&bytes)? == Update::New {
            self.persist("timestamp", &bytes)?;
        }
        Ok(())
    }

    fn update_timestamp(&mut self, bytes: &[u8]) -> Result<Update, TrustError> {
        let envelope = parse_envelope("timestamp", bytes)?;
        let head = parse_head("timestamp", "timestamp", &envelope)?;
        self.root.verify_role("timestamp", &envelope)?;
        let body: MetaBody = parse_body("timestamp", &envelope)?;
        let snapshot = snapshot_meta(&body, head.version)?;
        if let Some(old) = &self.timestamp {
            if head.version < old.head.version {
                return Err(rollback("timestamp", head.version, old.head.version));
            }
            if head.version == old.head.version && self.reuse_local {
                return Ok(Update::Same);
            }
            let old_snapshot = snapshot_meta(&old.body, old.head.version)?;
            if snapshot.version < old_snapshot.version {
                return Err(rollback("snapshot", snapshot.version, old_snapshot.version));
            }
        }
        let new = Verified {
            head,
            body,
            envelope,
        };
        let fresh = new.head.expires > self.now;
        let err = expired("timestamp", &new.head);
        self.timestamp = Some(new);
        if !fresh {
            return Err(err);
        }
        Ok(Update::New)
    }

    // 5.5: snapshot.
    async fn load_snapshot(&mut self) -> Result<(), TrustError> {
        if let Some(bytes) = self.read_local("snapshot") {
            if self.update_snapshot(&bytes, true).is_ok() && self.reuse_local {
                return Ok(());
            }
        }
        let meta = self.timestamp_snapshot_meta()?.clone();
        let file = if self.root.body.consistent_snapshot {
            format!("{}.snapshot.json", meta.version)
        } else {
            "snapshot.json".to_owned()
        };
        let (max, listed) = cap(meta.length, metadata_limits().max_snapshot_size);
        let bytes = match self.fetch_metadata(&file, max).await? {
            Fetched::NotFound => return Err(self.missing(&file)),
            Fetched::TooLong if listed => {
                return Err(longer_than_listed("snapshot", "timestamp", max))
            }
            Fetched::TooLong => return Err(self.too_large(&file, max)),
            Fetched::Bytes(bytes) => bytes,
        };
        self.update_snapshot(&bytes, false)?;
        self.persist("snapshot", &bytes)
    }

    /// `local`: bytes from the trusted store, already checked against a timestamp once.
    fn update_snapshot(&mut self, bytes: &[u8], local: bool) -> Result<(), TrustError> {
        let meta = self.timestamp_snapshot_meta()?.clone();
        if !local {
            check_metafile("snapshot", "timestamp", &meta, bytes)?;
        }
        let envelope = parse_envelope("snapshot", bytes)?;
        let head = parse_head("snapshot", "snapshot", &envelope)?;
        self.root.verify_role("snapshot", &envelope)?;
        let body: MetaBody = parse_body("snapshot", &envelope)?;
        if let Some(old) = &self.snapshot {
            // 5.5.5: no targets role may disappear or go back in version.
            for (file, old_meta) in &old.body.meta {
                let role = file.strip_suffix(".json").unwrap_or(file);
                match body.meta.get(file) {
                    None => {
                        return Err(TrustError::MetadataMismatch {
                            role: role.to_owned(),
                            listed_by: "snapshot".into(),
                            detail: format!("snapshot version {} no longer lists it", head.version),
                        })
                    }
                    Some(new_meta) if new_meta.version < old_meta.version => {
                        return Err(rollback(role, new_meta.version, old_meta.version))
                    }
                    Some(_) => {}
                }
            }
        }
        let new = Verified {
            head,
            body,
            envelope,
        };
        let fresh = new.head.expires > self.now;
        let err = expired("snapshot", &new.head);
        let version = new.head.version;
        // Trusted from here on as the reference for rollback checks, even if not final.
        self.snapshot = Some(new);
        if !fresh {
            return Err(err);
        }
        if version != meta.version {
            return Err(version_mismatch(
                "snapshot",
                "timestamp",
                version,
                meta.version,
            ));
        }
        Ok(())
    }

    // 5.6: targets and delegated targets.
    async fn load_targets(&mut self, role: &str, parent: &str) -> Result<(), TrustError> {
        if let Some(cached) = self.targets.get(role) {
            // Loaded on an earlier search path: it must be signed for this delegator too.
            if parent != "root" {
                let authority = self.authority(role, parent)?;
                authority.verify(role, &cached.envelope)?;
            }
            return Ok(());
        }
        if self.reuse_local {
            if let Some(bytes) = self.read_local(role) {
                if self.update_targets(&bytes, role, parent).is_ok() {
                    return Ok(());
                }
            }
        }
        let meta = self.snapshot_meta_for(role)?.clone();
        let quoted = quote_role(role);
        let file = if self.root.body.consistent_snapshot {
            format!("{}.{quoted}.json", meta.version)
        } else {
            format!("{quoted}.json")
        };
        let (max, listed) = cap(meta.length, metadata_limits().max_targets_size);
        let bytes = match self.fetch_metadata(&file, max).await? {
            Fetched::NotFound => return Err(self.missing(&file)),
            Fetched::TooLong if listed => return Err(longer_than_listed(role, "snapshot", max)),
            Fetched::TooLong => return Err(self.too_large(&file, max)),
            Fetched::Bytes(bytes) => bytes,
        };
        self.update_targets(&bytes, role, parent)?;
        self.persist(role, &bytes)
    }

    fn update_targets(&mut self, bytes: &[u8], role: &str, parent: &str) -> Result<(), TrustError> {
        let snapshot = self
            .snapshot
            .as_ref()
            .ok_or_else(|| not_loaded("snapshot"))?;
        if snapshot.head.expires <= self.now {
            return Err(expired("snapshot", &snapshot.head));
        }
        let meta = self.snapshot_meta_for(role)?.clone();
        check_metafile(role, "snapshot", &meta, bytes)?;
        let envelope = parse_envelope(role, bytes)?;
        let head = parse_head(role, "targets", &envelope)?;
        self.authority(role, parent)?.verify(role, &envelope)?;
        let body: TargetsBody = parse_body(role, &envelope)?;
        if let Some(delegations) = &body.delegations {
            delegations.check(role)?;
        }
        if head.version != meta.version {
            return Err(version_mismatch(
                role,
                "snapshot",
                head.version,
                meta.version,
            ));
        }
        if head.expires <= self.now {
            return Err(expired(role, &head));
        }
        self.targets.insert(
            role.to_owned(),
            Verified {
                head,
                body,
                envelope,
            },
        );
        Ok(())
    }

    /// The keys and threshold `parent` gives `role`.
    fn authority(&self, role: &str, parent: &str) -> Result<Authority, TrustError> {
        if parent == "root" {
            return self.root.authority(role);
        }
        let not_delegated = || TrustError::BadSignature {
            role: role.to_owned(),
            detail: format!("{parent} does not delegate to it"),
        };
        let delegations = self
            .targets
            .get(parent)
            .and_then(|t| t.body.delegations.as_ref())
            .ok_or_else(not_delegated)?;
        if let Some(roles) = &delegations.roles {
            let found = roles
                .iter()
                .find(|r| r.name == role)
                .ok_or_else(not_delegated)?;
            return Ok(Authority {
                keys: delegations.keys.clone(),
                keyids: found.keyids.clone(),
                threshold: found.threshold,
            });
        }
        match &delegations.succinct_roles {
            Some(s) if s.is_bin(role) => Ok(Authority {
                keys: delegations.keys.clone(),
                keyids: s.keyids.clone(),
                threshold: s.threshold,
            }),
            _ => Err(not_delegated()),
        }
    }

    fn timestamp_snapshot_meta(&self) -> Result<&MetaFile, TrustError> {
        let ts = self
            .timestamp
            .as_ref()
            .ok_or_else(|| not_loaded("timestamp"))?;
        if ts.head.expires <= self.now {
            return Err(expired("timestamp", &ts.head));
        }
        snapshot_meta(&ts.body, ts.head.version)
    }

    fn snapshot_meta_for(&self, role: &str) -> Result<&MetaFile, TrustError> {
        let snapshot = self
            .snapshot
            .as_ref()
            .ok_or_else(|| not_loaded("snapshot"))?;
        snapshot
            .body
            .meta
            .get(&format!("{role}.json"))
            .ok_or_else(|| TrustError::MetadataMismatch {
                role: role.to_owned(),
                listed_by: "snapshot".into(),
                detail: format!(
                    "snapshot version {} does not list it",
                    snapshot.head.version
                ),
            })
    }

    async fn fetch_metadata(&self, file: &str, max: u64) -> Result<Fetched, TrustError> {
        let url = self
            .metadata_base
            .join(file)
            .map_err(|e| TrustError::FetchFailed {
                file: file.to_owned(),
                detail: e.to_string(),
            })?;
        fetch(self.transport.as_ref(), &url, max).await
    }

    fn url_of(&self, file: &str) -> String {
        self.metadata_base
            .join(file)
            .map(|u| u.to_string())
            .unwrap_or_else(|_| file.to_owned())
    }

    fn missing(&self, file: &str) -> TrustError {
        TrustError::MetadataMissing {
            file: self.url_of(file),
        }
    }

    fn too_large(&self, file: &str, max: u64) -> TrustError {
        TrustError::MetadataTooLarge {
            file: self.url_of(file),
            max,
        }
    }

    fn local_path(&self, role: &str) -> PathBuf {
        self.store.join(format!("{}.json", quote_role(role)))
    }

    fn read_local(&self, role: &str) -> Option<Vec<u8>> {
        std::fs::read(self.local_path(role)).ok()
    }

    /// Stores metadata bytes exactly as received, by write-to-temp + rename.
    fn persist(&self, role: &str, bytes: &[u8]) -> Result<(), TrustError> {
        write_atomically(&self.local_path(role), bytes)
    }
}

impl Verified<RootBody> {
    fn authority(&self, role: &str) -> Result<Authority, TrustError> {
        let keys = self
            .body
            .roles
            .get(role)
            .ok_or_else(|| TrustError::MalformedMetadata {
                role: "root".into(),
                detail: format!("it names no keys for {role}"),
            })?;
        Ok(Authority {
            keys: self.body.keys.clone(),
            keyids: keys.keyids.clone(),
            threshold: keys.threshold,
        })
    }

    fn verify_role(&self, role: &str, envelope: &Envelope) -> Result<(), TrustError> {
        self.authority(role)?.verify(role, envelope)
    }
}

impl Authority {
    /// A threshold of distinct listed keys must have signed the canonical `signed` object.
    fn verify(&self, role: &str, envelope: &Envelope) -> Result<(), TrustError> {
        let bad = |detail: String| TrustError::BadSignature {
            role: role.to_owned(),
            detail,
        };
        let mut claimed = BTreeSet::new();
        for s in &envelope.signatures {
            if !claimed.insert(s.keyid.as_str()) {
                return Err(bad(format!("two signatures claim key {}", s.keyid)));
            }
        }
        let message =
            canonical_json(&envelope.signed).map_err(|detail| TrustError::MalformedMetadata {
                role: role.to_owned(),
                detail: format!("no canonical form: {detail}"),
            })?;
        let mut valid = BTreeSet::new();
        for keyid in &self.keyids {
            let Some(key) = self.keys.get(keyid) else {
                continue;
            };
            let Some(sig) = envelope.signatures.iter().find(|s| &s.keyid == keyid) else {
                continue;
            };
            if signature_is_valid(key, &message, &sig.sig) {
                valid.insert(keyid.as_str());
            }
        }
        if (valid.len() as u64) < self.threshold || self.threshold == 0 {
            return Err(bad(format!(
                "{} valid signature(s), {} required",
                valid.len(),
                self.threshold
            )));
        }
        Ok(())
    }
}

impl Delegations {
    fn check(&self, role: &str) -> Result<(), TrustError> {
        let bad = |detail: String| TrustError::MalformedMetadata {
            role: role.to_owned(),
            detail,
        };
        match (&self.roles, &self.succinct_roles) {
            (Some(roles), None) => {
                for r in roles {
                    if TOP_LEVEL_ROLES.contains(&r.name.as_str()) {
                        return Err(bad(format!(
                            "it delegates to the top-level name {}",
                            r.name
                        )));
                    }
                    if r.paths.is_some() && r.path_hash_prefixes.is_some() {
                        return Err(bad(format!(
                            "delegation {} has both paths and path_hash_prefixes",
                            r.name
                        )));
                    }
                }
                Ok(())
            }
            (None, Some(s)) if (1..=32).contains(&s.bit_length) => Ok(()),
            (None, Some(_)) => Err(bad("succinct_roles bit_length must be 1 to 32".into())),
            _ => Err(bad(
                "delegations need exactly one of roles and succinct_roles".into(),
            )),
        }
    }

    /// Roles trusted for `path`, in order, each with its terminating flag.
    fn roles_for(&self, path: &str) -> Vec<(String, bool)> {
        if let Some(s) = &self.succinct_roles {
            return vec![(s.bin_for(path), true)];
        }
        self.roles
            .iter()
            .flatten()
            .filter(|r| r.trusts(path))
            .map(|r| (r.name.clone(), r.terminating))
            .collect()
    }
}

impl DelegatedRole {
    fn trusts(&self, path: &str) -> bool {
        if let Some(patterns) = &self.paths {
            return patterns.iter().any(|p| path_matches(p, path));
        }
        if let Some(prefixes) = &self.path_hash_prefixes {
            let digest = hex::encode(Sha256::digest(path.as_bytes()));
            return prefixes.iter().any(|p| digest.starts_with(p.as_str()));
        }
        false
    }
}

impl SuccinctRoles {
    fn bin_for(&self, path: &str) -> String {
        let digest = Sha256::digest(path.as_bytes());
        let mut first = [0u8; 4];
        first.copy_from_slice(digest.get(..4).unwrap_or(&[0; 4]));
        let bin = u32::from_be_bytes(first) >> (32 - self.bit_length);
        let width = self.bit_length.div_ceil(4) as usize;
        format!("{}-{bin:0width$x}", self.name_prefix)
    }

    fn is_bin(&self, role: &str) -> bool {
        let width = self.bit_length.div_ceil(4) as usize;
        role.strip_prefix(&format!("{}-", self.name_prefix))
            .filter(|hex| hex.len() == width)
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .is_some_and(|bin| bin < (1u64 << self.bit_length))
    }
}

/// A delegation path pattern: shell-style per `/`-separated segment (`*` never crosses `/`).
pub(crate) fn path_matches(pattern: &str, path: &str) -> bool {
    use patchday_types::glob::{matches, Case};
    pattern.split('/').count() == path.split('/').count()
        && pattern
            .split('/')
            .zip(path.split('/'))
            .all(|(p, s)| matches(p, s, Case::Sensitive))
}

/// A root that verifies with its own keys: how a pinned or stored root is accepted.
fn parse_self_signed_root(bytes: &[u8]) -> Result<Verified<RootBody>, TrustError> {
    let envelope = parse_envelope("root", bytes)?;
    let head = parse_head("root", "root", &envelope)?;
    let body: RootBody = parse_body("root", &envelope)?;
    check_root_roles(&body)?;
    let root = Verified {
        head,
        body,
        envelope,
    };
    root.verify_role("root", &root.envelope)?;
    Ok(root)
}

/// Version and signed object of a root that verifies with its own keys.
pub(crate) fn self_signed_root(bytes: &[u8]) -> Result<(u64, Value), TrustError> {
    let root = parse_self_signed_root(bytes)?;
    Ok((root.head.version, root.envelope.signed))
}

/// The `signed` object of `doc` once a threshold of the root keys that `trusted_root`
/// names have signed it; `trusted_root` is a root the caller already trusts (the newest
/// one a client holds). For documents other than TUF roles that the root keys vouch for.
pub fn verify_by_root_keys(
    trusted_root: &[u8],
    what: &str,
    doc: &[u8],
) -> Result<Value, TrustError> {
    let root = parse_self_signed_root(trusted_root)?;
    let envelope = parse_envelope(what, doc)?;
    root.authority("root")?.verify(what, &envelope)?;
    Ok(envelope.signed)
}

/// The `signed` object of a metadata file, unverified (to compare two files).
pub(crate) fn signed_part(bytes: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Envelope>(bytes)
        .ok()
        .map(|e| e.signed)
}

fn check_root_roles(body: &RootBody) -> Result<(), TrustError> {
    for role in TOP_LEVEL_ROLES {
        if !body.roles.contains_key(role) {
            return Err(TrustError::MalformedMetadata {
                role: "root".into(),
                detail: format!("it names no keys for {role}"),
            });
        }
    }
    Ok(())
}

fn parse_envelope(role: &str, bytes: &[u8]) -> Result<Envelope, TrustError> {
    serde_json::from_slice(bytes).map_err(|e| malformed(role, e))
}

fn parse_head(role: &str, kind: &str, envelope: &Envelope) -> Result<Head, TrustError> {
    let head = Head::deserialize(&envelope.signed).map_err(|e| malformed(role, e))?;
    if head.kind != kind {
        return Err(malformed(
            role,
            format!("its _type is {:?}, not {kind:?}", head.kind),
        ));
    }
    if head.spec_version.split('.').next() != Some("1") {
        return Err(malformed(
            role,
            format!("spec_version {} is not 1.x", head.spec_version),
        ));
    }
    if head.version == 0 {
        return Err(malformed(role, "version 0"));
    }
    Ok(head)
}

fn parse_body<T: for<'de> Deserialize<'de>>(
    role: &str,
    envelope: &Envelope,
) -> Result<T, TrustError> {
    T::deserialize(&envelope.signed).map_err(|e| malformed(role, e))
}

fn snapshot_meta(body: &MetaBody, version: u64) -> Result<&MetaFile, TrustError> {
    match (body.meta.len(), body.meta.get("snapshot.json")) {
        (1, Some(meta)) => Ok(meta),
        _ => Err(TrustError::MalformedMetadata {
            role: "timestamp".into(),
            detail: format!("version {version} must list exactly snapshot.json"),
        }),
    }
}

/// Length and every listed hash of a metadata file against what its parent lists.
fn check_metafile(
    role: &str,
    listed_by: &str,
    meta: &MetaFile,
    bytes: &[u8],
) -> Result<(), TrustError> {
    let mismatch = |detail: String| TrustError::MetadataMismatch {
        role: role.to_owned(),
        listed_by: listed_by.to_owned(),
        detail,
    };
    if let Some(length) = meta.length {
        if bytes.len() as u64 != length {
            return Err(mismatch(format!(
                "file is {} bytes, {listed_by} lists {length}",
                bytes.len()
            )));
        }
    }
    for (algorithm, expected) in meta.hashes.iter().flatten() {
        match digest(algorithm, bytes) {
            None => return Err(mismatch(format!("unsupported hash algorithm {algorithm}"))),
            Some(actual) if !actual.eq_ignore_ascii_case(expected) => {
                return Err(mismatch(format!("{algorithm} differs")))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Checks a target file's bytes: length first, then every hash listed (at least one, all known).
pub fn check_target_bytes(name: &str, file: &TargetFile, bytes: &[u8]) -> Result<(), TrustError> {
    if bytes.len() as u64 != file.length {
        return Err(TrustError::LengthMismatch {
            name: name.to_owned(),
            expected: file.length,
            actual: bytes.len() as u64,
        });
    }
    if file.hashes.is_empty() {
        return Err(TrustError::UnsupportedHash {
            name: name.to_owned(),
            algorithm: "(none listed)".into(),
        });
    }
    for (algorithm, expected) in &file.hashes {
        let actual = digest(algorithm, bytes).ok_or_else(|| TrustError::UnsupportedHash {
            name: name.to_owned(),
            algorithm: algorithm.clone(),
        })?;
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(TrustError::DigestMismatch {
                name: name.to_owned(),
                algorithm: algorithm.clone(),
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok(())
}

fn digest(algorithm: &str, bytes: &[u8]) -> Option<String> {
    match algorithm {
        "sha256" => Some(hex::encode(Sha256::digest(bytes))),
        "sha512" => Some(hex::encode(Sha512::digest(bytes))),
        _ => None,
    }
}

pub(crate) fn canonical_json(value: &Value) -> Result<Vec<u8>, String> {
    let mut buf = Vec::with_capacity(1024);
    if write_plain_canonical(value, &mut buf) {
        return Ok(buf);
    }
    buf.clear();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut buf, olpc_cjson::CanonicalFormatter::new());
    value.serialize(&mut ser).map_err(|e| e.to_string())?;
    Ok(buf)
}

/// The canonical form of a value whose strings are printable ASCII, written directly.
///
/// `olpc_cjson` stays the reference (and does everything else: non-ASCII, control
/// characters, refusing floats), but it routes every character through a boxed writer:
/// about 20 µs per target of a director document, more than the signature itself. For
/// plain ASCII the canonical form is simple: no whitespace, keys in byte order, only `"`
/// and `\` escaped, integers as they are. Returns false, leaving `out` partly written,
/// when the value needs the reference; `canonical_forms_agree` compares the two.
fn write_plain_canonical(v: &Value, out: &mut Vec<u8>) -> bool {
    fn plain(s: &str) -> bool {
        s.bytes().all(|b| (0x20..0x7f).contains(&b))
    }
    fn string(s: &str, out: &mut Vec<u8>) {
        out.push(b'"');
        for b in s.bytes() {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    }
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => out.extend_from_slice(u.to_string().as_bytes()),
            (None, Some(i)) => out.extend_from_slice(i.to_string().as_bytes()),
            _ => return false,
        },
        Value::String(s) => {
            if !plain(s) {
                return false;
            }
            string(s, out);
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if !write_plain_canonical(item, out) {
                    return false;
                }
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // olpc_cjson orders keys by their quoted, escaped bytes: a key holding a byte
            // below `#` (space, `!`, `"`) or a `\\` could sort otherwise than by its bytes.
            if !map
                .keys()
                .all(|k| plain(k) && !k.contains([' ', '!', '"', '\\']))
            {
                return false;
            }
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(k, out);
                out.push(b':');
                if !map.get(k).is_some_and(|v| write_plain_canonical(v, out)) {
                    return false;
                }
            }
            out.push(b'}');
        }
    }
    true
}

/// One signature by one key; a key tough cannot parse, or a bad hex string, just does not count.
fn signature_is_valid(key: &Value, message: &[u8], sig_hex: &str) -> bool {
    use aws_lc_rs::signature::{self as sig, VerificationAlgorithm};
    let (Ok(signature), Ok(key)) = (hex::decode(sig_hex), Key::deserialize(key)) else {
        return false;
    };
    let (algorithm, name, public): (&dyn VerificationAlgorithm, &str, &[u8]) = match &key {
        Key::Ecdsa {
            scheme: EcdsaScheme::EcdsaSha2Nistp256,
            keyval,
            ..
        }
        | Key::EcdsaOld {
            scheme: EcdsaScheme::EcdsaSha2Nistp256,
            keyval,
            ..
        } => (
            &sig::ECDSA_P256_SHA256_ASN1,
            "ecdsa-sha2-nistp256",
            &keyval.public,
        ),
        Key::Ed25519 {
            scheme: Ed25519Scheme::Ed25519,
            keyval,
            ..
        } => (&sig::ED25519, "ed25519", &keyval.public),
        Key::Rsa {
            scheme: RsaScheme::RsassaPssSha256,
            keyval,
            ..
        } => (
            &sig::RSA_PSS_2048_8192_SHA256,
            "rsassa-pss-sha256",
            &keyval.public,
        ),
    };
    crate::verified_signatures::valid(name, public, &signature, message, || {
        algorithm.verify_sig(public, message, &signature).is_ok()
    })
}

/// Listed length (when the parent lists one, never above the hard cap) or the role's cap.
fn cap(listed: Option<u64>, default: u64) -> (u64, bool) {
    match listed {
        Some(length) => (length.min(MAX_METADATA_FILE), true),
        None => (default.min(MAX_METADATA_FILE), false),
    }
}

/// Reads at most `max` bytes of `url`; more is [`Fetched::TooLong`] and is not read.
async fn fetch(transport: &dyn Transport, url: &Url, max: u64) -> Result<Fetched, TrustError> {
    let failed = |detail: String| TrustError::FetchFailed {
        file: url.to_string(),
        detail,
    };
    let mut stream = match transport.fetch(url.clone()).await {
        Ok(stream) => stream,
        Err(FetchError::NotFound) => return Ok(Fetched::NotFound),
        Err(e) => return Err(failed(e.to_string())),
    };
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(FetchError::NotFound) => return Ok(Fetched::NotFound),
            Err(e) => return Err(failed(e.to_string())),
        };
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > max {
            return Ok(Fetched::TooLong);
        }
    }
    Ok(Fetched::Bytes(bytes))
}

/// An error with its causes, `: `-separated.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// Writes `bytes` to `path` through a temporary file in the same directory, fsync and a
/// rename: a crash leaves the old file or the new one, never a mix.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TrustError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".partial-")
        .tempfile_in(dir)
        .map_err(TrustError::io("create a file in", dir))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(TrustError::io("write", tmp.path().to_path_buf()))?;
    tmp.persist(path)
        .map_err(|e| TrustError::io("replace", path)(e.error))?;
    Ok(())
}

/// Percent-encodes a role name for URLs and file names: all but `A-Za-z0-9_.-~`, as python's
/// `urllib.parse.quote(name, "")` does, so `../x` or `?` stay one harmless path segment.
pub fn quote_role(name: &str) -> String {
    quote(name, |_| false)
}

/// Percent-encodes one URL path segment, keeping RFC 3986 `pchar`s other than `%`.
fn quote_path_segment(segment: &str) -> String {
    quote(segment, |b| b"!$&'()*+,;=:@".contains(&b))
}

fn quote(s: &str, also_safe: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"_.-~".contains(&b) || also_safe(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn malformed(role: &str, detail: impl ToString) -> TrustError {
    TrustError::MalformedMetadata {
        role: role.to_owned(),
        detail: detail.to_string(),
    }
}

fn not_loaded(role: &str) -> TrustError {
    TrustError::MalformedMetadata {
        role: role.to_owned(),
        detail: "not loaded yet: refresh first".into(),
    }
}

fn expired(role: &str, head: &Head) -> TrustError {
    TrustError::Expired {
        role: role.to_owned(),
        expires: Some(head.expires),
    }
}

fn rollback(role: &str, offered: u64, trusted: u64) -> TrustError {
    TrustError::Rollback {
        role: role.to_owned(),
        offered,
        trusted,
    }
}

fn version_mismatch(role: &str, listed_by: &str, found: u64, listed: u64) -> TrustError {
    TrustError::MetadataMismatch {
        role: role.to_owned(),
        listed_by: listed_by.to_owned(),
        detail: format!("file has version {found}, expected {listed}"),
    }
}

fn longer_than_listed(role: &str, listed_by: &str, max: u64) -> TrustError {
    TrustError::MetadataMismatch {
        role: role.to_owned(),
        listed_by: listed_by.to_owned(),
        detail: format!("file is longer than the listed {max} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delegation_patterns_match_like_fnmatch_per_segment() {
        assert!(path_matches("*", "README.md"));
        assert!(!path_matches("*", "releases/README.md"));
        assert!(path_matches("releases/*/*", "releases/x/x_v1"));
        assert!(path_matches("foo-?.tgz", "foo-1.tgz"));
        assert!(!path_matches("foo-?.tgz", "foo-alpha.tgz"));
        assert!(!path_matches("*.md", "README.MD"));
        assert!(path_matches("v[0-9].[!a]", "v3.b"));
        assert!(!path_matches("v[0-9].[!a]", "v3.a"));
        assert!(path_matches("a[b", "a[b"));
    }

    #[test]
    fn role_names_are_quoted_into_one_segment() {
        assert_eq!(quote_role("../delegatedrole"), "..%2Fdelegatedrole");
        assert_eq!(quote_role("?"), "%3F");
        assert_eq!(quote_role("a-b_c.d~"), "a-b_c.d~");
        assert_eq!(quote_path_segment("a b?#"), "a%20b%3F%23");
    }

    #[test]
    fn succinct_bins_are_named_by_hash_prefix() {
        let s = SuccinctRoles {
            keyids: vec![],
            threshold: 1,
            bit_length: 8,
            name_prefix: "bin".into(),
        };
        let digest = hex::encode(Sha256::digest(b"foo"));
        assert_eq!(s.bin_for("foo"), format!("bin-{}", &digest[..2]));
        assert!(s.is_bin("bin-ff"));
        assert!(!s.is_bin("bin-100"));
        assert!(!s.is_bin("other-00"));
    }

    #[test]
    fn target_bytes_need_a_known_hash() {
        let bytes = b"target file contents";
        let mut file = TargetFile {
            length: bytes.len() as u64,
            hashes: BTreeMap::from([("sha512".into(), hex::encode(Sha512::digest(bytes)))]),
            custom: None,
        };
        check_target_bytes("t", &file, bytes).unwrap();
        file.hashes
            .insert("sha256".into(), hex::encode(Sha256::digest(b"other")));
        assert!(matches!(
            check_target_bytes("t", &file, bytes),
            Err(TrustError::DigestMismatch { .. })
        ));
        file.hashes.clear();
        file.hashes.insert("unknown-hash".into(), "00".into());
        assert!(matches!(
            check_target_bytes("t", &file, bytes),
            Err(TrustError::UnsupportedHash { .. })
        ));
    }

    /// The reference canonical form, straight from olpc_cjson.
    fn reference(v: &Value) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut ser =
            serde_json::Serializer::with_formatter(&mut buf, olpc_cjson::CanonicalFormatter::new());
        v.serialize(&mut ser).unwrap();
        buf
    }

    #[test]
    fn canonical_forms_agree() {
        // A small xorshift generator: the same 20,000 values on every run.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let alphabet: Vec<char> = "ab_-.:/Z09 \"\\{}[],\u{e9}\u{1f512}\n\t~".chars().collect();
        fn value(next: &mut dyn FnMut(u64) -> u64, alphabet: &[char], depth: u32) -> Value {
            let text = |next: &mut dyn FnMut(u64) -> u64| -> String {
                let len = next(8);
                (0..len)
                    .map(|_| alphabet[next(alphabet.len() as u64) as usize])
                    .collect()
            };
            match next(if depth == 0 { 5 } else { 7 }) {
                0 => Value::Null,
                1 => Value::Bool(next(2) == 1),
                2 => Value::from(next(u64::MAX)),
                3 => Value::from(-(next(1 << 40) as i64)),
                4 => Value::String(text(next)),
                5 => Value::Array(
                    (0..next(4))
                        .map(|_| value(next, alphabet, depth - 1))
                        .collect(),
                ),
                _ => Value::Object(
                    (0..next(5))
                        .map(|_| (text(next), value(next, alphabet, depth - 1)))
                        .collect(),
                ),
            }
        }
        let mut plain = 0;
        for _ in 0..20_000 {
            let v = value(&mut next, &alphabet, 3);
            assert_eq!(canonical_json(&v).unwrap(), reference(&v), "{v}");
            plain += usize::from(write_plain_canonical(&v, &mut Vec::new()));
        }
        assert!(plain > 2_000, "the direct path was taken {plain} times");
        // Real metadata goes the direct way and gives the same bytes.
        let doc = serde_json::json!({
            "_type": "targets", "spec_version": "1.0.0", "version": 1_764_158_400u64,
            "expires": "2026-11-26T13:00:00Z",
            "targets": {"libfoo_1.0-2_amd64.deb": {"length": 10, "hashes": {"sha256": "ab"},
                "custom": {"update": "PD-1", "groups": ["web", "db"], "release_counter": 3}}},
        });
        assert!(write_plain_canonical(&doc, &mut Vec::new()));
        assert_eq!(canonical_json(&doc).unwrap(), reference(&doc));
        // Floats are the reference's to refuse.
        assert!(canonical_json(&serde_json::json!({"x": 1.5})).is_err());
    }
}
