//! Catalog key files: generating them, checking their permissions, and reading them for signing.
//!
//! Two layouts of a key directory are understood:
//! - single root key: `root.pem`, `targets.pem`, `snapshot.pem`, `timestamp.pem` (threshold 1,
//!   what [`generate_keys`] writes);
//! - several root keys: `root-1.pem` … `root-N.pem`, the other three as above, and
//!   `keyset.json` recording the root threshold (what [`generate_keyset`] writes; default
//!   3 keys, threshold 2).
//!
//! Every key file must be readable by its owner only: loaders refuse a file that grants any
//! permission to group or others, with a message saying to `chmod 600` it.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::Ed25519KeyPair;
use tough::key_source::KeySource;
use tough::sign::{parse_keypair, Sign};

use crate::TrustError;

/// Default number of root keys written by `patchday keys generate`.
pub const DEFAULT_ROOT_KEYS: usize = 3;
/// Default root threshold: signatures from this many root keys make a root valid.
pub const DEFAULT_ROOT_THRESHOLD: u32 = 2;
/// Most root keys one key set may hold.
pub const MAX_ROOT_KEYS: usize = 16;

const KEYSET_FILE: &str = "keyset.json";

/// Paths of the catalog signing keys (ed25519, PKCS#8 PEM) and the root threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPaths {
    /// Root keys: each signs root.json; keep them offline (ideally apart from each other).
    pub root: Vec<PathBuf>,
    /// How many of the root keys must sign a root (1 ≤ threshold ≤ `root.len()`).
    pub root_threshold: u32,
    /// Targets key: signs the list of updates and payloads; keep it offline.
    pub targets: PathBuf,
    /// Snapshot key: signs snapshot.json.
    pub snapshot: PathBuf,
    /// Timestamp key: signs timestamp.json (short-lived).
    pub timestamp: PathBuf,
}

/// Which catalog role a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// root.json: names every key and threshold.
    Root,
    /// targets.json: the updates and payloads.
    Targets,
    /// snapshot.json: the versions of targets metadata.
    Snapshot,
    /// timestamp.json: the current snapshot, short-lived.
    Timestamp,
}

impl Role {
    /// The role's name as TUF writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Targets => "targets",
            Role::Snapshot => "snapshot",
            Role::Timestamp => "timestamp",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "root" => Ok(Role::Root),
            "targets" => Ok(Role::Targets),
            "snapshot" => Ok(Role::Snapshot),
            "timestamp" => Ok(Role::Timestamp),
            other => Err(format!(
                "unknown role {other:?}: expected root, targets, snapshot or timestamp"
            )),
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct KeySetFile {
    root_keys: usize,
    root_threshold: u32,
}

impl KeyPaths {
    /// The key files in `dir`: `root.pem` if present (threshold 1), else every `root-N.pem`
    /// (N = 1, 2, … without gaps) with the threshold from `keyset.json`.
    ///
    /// Without a readable `keyset.json`, the threshold is the number of root keys found (all of
    /// them must sign): never weaker than intended. An empty directory gives the single-key
    /// layout, the names [`generate_keys`] writes.
    pub fn in_dir(dir: &Path) -> Self {
        let single = dir.join("root.pem");
        let numbered = numbered_root_keys(dir);
        let (root, root_threshold) = if single.exists() || numbered.is_empty() {
            (vec![single], 1)
        } else {
            let count = u32::try_from(numbered.len()).unwrap_or(u32::MAX);
            let threshold = std::fs::read(dir.join(KEYSET_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice::<KeySetFile>(&b).ok())
                .map(|k| k.root_threshold)
                .filter(|t| (1..=count).contains(t))
                .unwrap_or(count);
            (numbered, threshold)
        };
        KeyPaths {
            root,
            root_threshold,
            targets: dir.join("targets.pem"),
            snapshot: dir.join("snapshot.pem"),
            timestamp: dir.join("timestamp.pem"),
        }
    }

    /// Every key file: the root keys, then targets, snapshot and timestamp.
    pub fn all(&self) -> Vec<&PathBuf> {
        let mut all: Vec<&PathBuf> = self.root.iter().collect();
        all.extend([&self.targets, &self.snapshot, &self.timestamp]);
        all
    }

    /// The key files of one role.
    pub fn role(&self, role: Role) -> Vec<&PathBuf> {
        match role {
            Role::Root => self.root.iter().collect(),
            Role::Targets => vec![&self.targets],
            Role::Snapshot => vec![&self.snapshot],
            Role::Timestamp => vec![&self.timestamp],
        }
    }

    /// `self` with `role`'s keys (and, for root, the threshold) taken from `new`.
    pub fn with_role_from(&self, new: &KeyPaths, role: Role) -> KeyPaths {
        let mut out = self.clone();
        match role {
            Role::Root => {
                out.root = new.root.clone();
                out.root_threshold = new.root_threshold;
            }
            Role::Targets => out.targets = new.targets.clone(),
            Role::Snapshot => out.snapshot = new.snapshot.clone(),
            Role::Timestamp => out.timestamp = new.timestamp.clone(),
        }
        out
    }

    /// Refuses a threshold of 0 or above the number of root keys, and an empty root key list.
    pub fn check_threshold(&self) -> Result<(), TrustError> {
        let count = self.root.len();
        if count == 0 || self.root_threshold == 0 || self.root_threshold as usize > count {
            return Err(TrustError::BadThreshold {
                role: "root".into(),
                threshold: u64::from(self.root_threshold),
                keys: count,
            });
        }
        Ok(())
    }
}

/// `root-1.pem`, `root-2.pem`, … as long as they exist.
fn numbered_root_keys(dir: &Path) -> Vec<PathBuf> {
    (1..=MAX_ROOT_KEYS)
        .map(|n| dir.join(format!("root-{n}.pem")))
        .take_while(|p| p.symlink_metadata().is_ok())
        .collect()
}

/// Writes four fresh ed25519 keys into `dir` (mode 0700; files 0600); never overwrites a key.
///
/// One root key, threshold 1: see [`generate_keyset`] for several root keys.
pub fn generate_keys(dir: &Path) -> Result<KeyPaths, TrustError> {
    let paths = KeyPaths::in_dir(dir);
    // Refuse before writing anything, so a half-written key set never happens by our hand.
    refuse_existing(dir, &paths)?;
    create_key_dir(dir)?;
    for path in paths.all() {
        write_new_key(path)?;
    }
    Ok(paths)
}

/// Writes `root_keys` root keys (`root-1.pem` …) with `root_threshold`, plus the targets,
/// snapshot and timestamp keys, into `dir` (mode 0700; files 0600); never overwrites a key.
///
/// `root_keys` = 1 with threshold 1 writes the single-key layout (`root.pem`).
pub fn generate_keyset(
    dir: &Path,
    root_keys: usize,
    root_threshold: u32,
) -> Result<KeyPaths, TrustError> {
    if root_keys == 1 && root_threshold == 1 {
        return generate_keys(dir);
    }
    if root_keys == 0
        || root_keys > MAX_ROOT_KEYS
        || root_threshold == 0
        || root_threshold as usize > root_keys
    {
        return Err(TrustError::BadThreshold {
            role: "root".into(),
            threshold: u64::from(root_threshold),
            keys: root_keys,
        });
    }
    let paths = KeyPaths {
        root: (1..=root_keys)
            .map(|n| dir.join(format!("root-{n}.pem")))
            .collect(),
        root_threshold,
        targets: dir.join("targets.pem"),
        snapshot: dir.join("snapshot.pem"),
        timestamp: dir.join("timestamp.pem"),
    };
    refuse_existing(dir, &paths)?;
    create_key_dir(dir)?;
    for path in paths.all() {
        write_new_key(path)?;
    }
    let keyset = serde_json::to_vec_pretty(&KeySetFile {
        root_keys,
        root_threshold,
    })
    .map_err(|e| TrustError::io("encode", &dir.join(KEYSET_FILE))(std::io::Error::other(e)))?;
    write_new_file(&dir.join(KEYSET_FILE), &keyset)?;
    Ok(paths)
}

/// Refuses if any key of `paths`, any other root key name, or `keyset.json` exists in `dir`.
fn refuse_existing(dir: &Path, paths: &KeyPaths) -> Result<(), TrustError> {
    let mut names: Vec<PathBuf> = paths.all().into_iter().cloned().collect();
    names.push(dir.join("root.pem"));
    names.push(dir.join("root-1.pem"));
    names.push(dir.join(KEYSET_FILE));
    for path in names {
        if path.symlink_metadata().is_ok() {
            return Err(TrustError::KeyExists { path });
        }
    }
    Ok(())
}

fn create_key_dir(dir: &Path) -> Result<(), TrustError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(TrustError::io("create key directory", dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(TrustError::io("restrict key directory to mode 0700", dir))
}

fn write_new_key(path: &Path) -> Result<(), TrustError> {
    let der =
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| TrustError::BadKey {
            path: path.to_path_buf(),
            detail: "the system random source failed while generating it".into(),
        })?;
    let text = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()));
    write_new_file(path, text.as_bytes())
}

/// Creates `path` with mode 0600; refuses if it exists.
fn write_new_file(path: &Path, bytes: &[u8]) -> Result<(), TrustError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => TrustError::KeyExists {
                path: path.to_path_buf(),
            },
            _ => TrustError::io("create key", path)(e),
        })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(TrustError::io("write key", path))
}

/// Refuses a key file that grants any permission to group or others (it must be 0600 or 0400).
pub fn check_key_file_mode(path: &Path) -> Result<(), TrustError> {
    let meta = std::fs::metadata(path).map_err(|e| TrustError::BadKey {
        path: path.to_path_buf(),
        detail: format!("cannot read it: {e}"),
    })?;
    if !meta.is_file() {
        return Err(TrustError::BadKey {
            path: path.to_path_buf(),
            detail: "not a regular file".into(),
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TrustError::BadKey {
            path: path.to_path_buf(),
            detail: format!(
                "mode {mode:04o} lets group or others read or change it; run `chmod 600 {}`",
                path.display()
            ),
        });
    }
    Ok(())
}

/// Refuses a key directory that grants any permission to group or others (it must be 0700).
pub fn check_key_dir_mode(dir: &Path) -> Result<(), TrustError> {
    let meta = std::fs::metadata(dir).map_err(TrustError::io("inspect key directory", dir))?;
    let mode = meta.permissions().mode() & 0o777;
    if !meta.is_dir() || mode & 0o077 != 0 {
        return Err(TrustError::BadKey {
            path: dir.to_path_buf(),
            detail: format!(
                "key directory mode {mode:04o} lets group or others list or change it; run `chmod 700 {}`",
                dir.display()
            ),
        });
    }
    Ok(())
}

/// What `patchday keys check` reports about one key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFileReport {
    /// The role the file signs for.
    pub role: Role,
    /// The key file.
    pub path: PathBuf,
    /// The TUF key id of its public half, when the file is usable.
    pub key_id: Option<String>,
    /// Why the file is unusable (permissions, missing, not a key), if it is.
    pub problem: Option<String>,
}

/// Checks a key directory: its mode (0700), every key file's mode (0600) and content, and the
/// root threshold. Returns one report per key file and the directory-level problems.
pub fn check_key_dir(dir: &Path) -> (KeyPaths, Vec<KeyFileReport>, Vec<String>) {
    let keys = KeyPaths::in_dir(dir);
    let mut problems = Vec::new();
    if let Err(e) = check_key_dir_mode(dir) {
        problems.push(e.to_string());
    }
    if let Err(e) = keys.check_threshold() {
        problems.push(e.to_string());
    }
    let mut reports = Vec::new();
    for role in [Role::Root, Role::Targets, Role::Snapshot, Role::Timestamp] {
        for path in keys.role(role) {
            let (key_id, problem) = match public_key_id(path) {
                Ok(id) => (Some(id), None),
                Err(e) => (None, Some(e.to_string())),
            };
            reports.push(KeyFileReport {
                role,
                path: path.clone(),
                key_id,
                problem,
            });
        }
    }
    let mut ids: Vec<&String> = reports.iter().filter_map(|r| r.key_id.as_ref()).collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    if ids.len() != before {
        problems.push("the same key appears twice in this key set".into());
    }
    (keys, reports, problems)
}

/// The TUF key id of a key file's public half (loading it, so permissions are checked).
pub fn public_key_id(path: &Path) -> Result<String, TrustError> {
    load_signer(path)?
        .tuf_key()
        .key_id()
        .map(|id| hex::encode(id.as_ref()))
        .map_err(|e| TrustError::BadKey {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
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
///
/// Refuses a file that group or others may read ([`check_key_file_mode`]).
pub(crate) fn load_signer(path: &Path) -> Result<Box<dyn Sign>, TrustError> {
    check_key_file_mode(path)?;
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
        let before = std::fs::read(&paths.root[0]).unwrap();
        assert!(matches!(
            generate_keys(&dir),
            Err(TrustError::KeyExists { .. })
        ));
        assert_eq!(std::fs::read(&paths.root[0]).unwrap(), before);
    }

    #[test]
    fn keyset_has_numbered_root_keys_and_its_threshold() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let paths = generate_keyset(&dir, 3, 2).unwrap();
        assert_eq!(paths.root.len(), 3);
        assert_eq!(paths.root_threshold, 2);
        assert!(paths.root[2].ends_with("root-3.pem"));
        assert_eq!(KeyPaths::in_dir(&dir), paths);
        let (_, reports, problems) = check_key_dir(&dir);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(reports.len(), 6);
        assert!(reports
            .iter()
            .all(|r| r.problem.is_none() && r.key_id.is_some()));
        // Never over an existing set, whichever layout asked.
        assert!(matches!(
            generate_keys(&dir),
            Err(TrustError::KeyExists { .. })
        ));
        assert!(matches!(
            generate_keyset(&dir, 3, 2),
            Err(TrustError::KeyExists { .. })
        ));
        // Without keyset.json every root key must sign: never weaker than intended.
        std::fs::remove_file(dir.join("keyset.json")).unwrap();
        assert_eq!(KeyPaths::in_dir(&dir).root_threshold, 3);
    }

    #[test]
    fn impossible_thresholds_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for (n, t) in [(3, 0), (3, 4), (0, 0), (MAX_ROOT_KEYS + 1, 1)] {
            let err = generate_keyset(&tmp.path().join("k"), n, t).unwrap_err();
            assert!(matches!(err, TrustError::BadThreshold { .. }), "{err}");
        }
        assert!(!tmp.path().join("k").exists());
    }

    #[test]
    fn group_or_world_readable_keys_are_refused_with_chmod_advice() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let paths = generate_keys(&dir).unwrap();
        std::fs::set_permissions(&paths.targets, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_signer(&paths.targets).err().unwrap();
        assert!(matches!(err, TrustError::BadKey { .. }), "{err}");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (_, reports, problems) = check_key_dir(&dir);
        assert!(
            problems.iter().any(|p| p.contains("chmod 700")),
            "{problems:?}"
        );
        let bad: Vec<_> = reports.iter().filter(|r| r.problem.is_some()).collect();
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].role, Role::Targets);
        // 0400 is fine too.
        std::fs::set_permissions(&paths.targets, std::fs::Permissions::from_mode(0o400)).unwrap();
        load_signer(&paths.targets).unwrap();
    }

    #[test]
    fn garbage_key_is_reported_with_its_path() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("k.pem");
        std::fs::write(&p, "not a key").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = load_signer(&p).err().unwrap();
        assert!(matches!(err, TrustError::BadKey { .. }), "{err}");
        assert!(err.to_string().contains("k.pem"));
    }
}
