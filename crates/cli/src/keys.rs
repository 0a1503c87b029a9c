//! `patchday keys`: catalog keys with a root threshold, rotation of one role's keys, and a check
//! of key file permissions.
//!
//! Key directories hold `root-1.pem` … `root-N.pem` (or a single `root.pem`), `targets.pem`,
//! `snapshot.pem`, `timestamp.pem` and `keyset.json` (the root threshold). See
//! [`patchday_trust::KeyPaths`].

use std::path::{Path, PathBuf};

use crate::api::Conn;
use anyhow::Context;
use patchday_trust::director::{add_signatures, certify, DirectorPublicKey, KeyCertificate};
use patchday_trust::{
    check_key_dir, check_key_dir_mode, generate_keyset, rotate_role, Expiries, KeyPaths, Role,
    DEFAULT_ROOT_KEYS, DEFAULT_ROOT_THRESHOLD,
};

/// `patchday keys …`
#[derive(Debug, clap::Subcommand)]
pub enum KeysCmd {
    /// Generates a fresh key set: N root keys with a threshold, plus targets, snapshot and
    /// timestamp keys (directory 0700, files 0600; never overwrites a key).
    ///
    /// Example: patchday keys generate --keys ./keys --root-keys 3 --root-threshold 2
    Generate {
        /// Directory to write the keys into.
        #[arg(long)]
        keys: PathBuf,
        /// How many root keys.
        #[arg(long, default_value_t = DEFAULT_ROOT_KEYS)]
        root_keys: usize,
        /// How many root keys must sign a root.
        #[arg(long, default_value_t = DEFAULT_ROOT_THRESHOLD)]
        root_threshold: u32,
    },
    /// Replaces one role's keys in a catalog: publishes a new root signed by a threshold of the
    /// old and of the new root keys, and re-signs what the new key signs. For `director`,
    /// the server makes a new assignment-signing key and the root keys in --keys certify it;
    /// agents switch to it at their next check-in and refuse the old key from then on.
    ///
    /// Examples: patchday keys rotate --role targets --keys ./keys --new-keys ./keys-2 --repo ./catalog
    ///           patchday keys rotate --role director --keys ./keys --server URL --token T
    ///           patchday keys rotate --role director --keys ./my-root-key --certificate cert.json
    ///           (each root key holder in turn, passing cert.json on)
    Rotate {
        /// The role whose keys change: root, targets, snapshot, timestamp or director.
        #[arg(long)]
        role: RotateRole,
        /// The catalog's current keys.
        #[arg(long)]
        keys: PathBuf,
        /// The new keys (e.g. from `patchday keys generate`); only the role's keys are used.
        #[arg(long, required_if_eq_any = [("role", "root"), ("role", "targets"), ("role", "snapshot"), ("role", "timestamp")])]
        new_keys: Option<PathBuf>,
        /// Catalog directory.
        #[arg(long, required_if_eq_any = [("role", "root"), ("role", "targets"), ("role", "snapshot"), ("role", "timestamp")])]
        repo: Option<PathBuf>,
        /// For `director`: a certificate file that root key holders in different places
        /// sign in turn (created by the first; the server installs it at the threshold).
        #[arg(long)]
        certificate: Option<PathBuf>,
        /// The server (for `director`).
        #[command(flatten)]
        conn: Conn,
    },
    /// Checks a key directory: mode 0700, every key file mode 0600 and loadable, threshold sane.
    ///
    /// Example: patchday keys check --keys ./keys
    Check {
        /// Key directory.
        #[arg(long)]
        keys: PathBuf,
    },
}

/// A role whose keys `patchday keys rotate` replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RotateRole {
    /// The catalog's root keys.
    Root,
    /// The catalog's targets key.
    Targets,
    /// The catalog's snapshot key.
    Snapshot,
    /// The catalog's timestamp key.
    Timestamp,
    /// The server's online key that signs per-host assignments.
    Director,
}

impl RotateRole {
    fn catalog_role(self) -> Option<Role> {
        match self {
            RotateRole::Root => Some(Role::Root),
            RotateRole::Targets => Some(Role::Targets),
            RotateRole::Snapshot => Some(Role::Snapshot),
            RotateRole::Timestamp => Some(Role::Timestamp),
            RotateRole::Director => None,
        }
    }
}

/// How long a director key certificate may be adopted by agents.
const DIRECTOR_CERTIFICATE_DAYS: i64 = 365;

/// Rotates the server's director key: the server makes the next key, the root keys in
/// `keys` certify it (version one above the current certificate), the server installs it.
///
/// With `certificate`, root key holders in different places sign in turn: the first run
/// starts the rotation and writes the file, each later run adds its holder's signatures,
/// and every run offers the file to the server, which installs it once a threshold of
/// root keys has signed (exit code 2 until then).
async fn rotate_director(
    keys: &Path,
    certificate: Option<&Path>,
    conn: &Conn,
    now: jiff::Timestamp,
) -> anyhow::Result<i32> {
    check_key_dir_mode(keys)?;
    let root_keys = KeyPaths::in_dir(keys).root;
    if root_keys.is_empty() {
        anyhow::bail!(
            "{} holds no root key (root.pem or root-1.pem …)",
            keys.display()
        );
    }
    let api = conn.api()?;
    let signing = || {
        format!(
            "signing the director key certificate with the root keys in {}",
            keys.display()
        )
    };
    let signed = match certificate.filter(|p| p.exists()) {
        Some(file) => {
            let earlier =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            add_signatures(&earlier, &root_keys)
                .await
                .with_context(signing)?
        }
        None => {
            let started = api.director_rotation().await?;
            let next = started
                .next
                .context("the server did not name a key to certify")?;
            let cert = KeyCertificate::new(
                DirectorPublicKey {
                    keyid: next.keyid.clone(),
                    public: next.public.clone(),
                },
                started.certificate_version.saturating_add(1),
                now,
                DIRECTOR_CERTIFICATE_DAYS,
            )?;
            certify(&cert, &root_keys).await.with_context(signing)?
        }
    };
    if let Some(file) = certificate {
        patchday_trust::client::write_atomically(file, &signed)?;
    }
    let before = api.director().await?;
    match api.put_director_certificate(signed.clone()).await {
        Ok(done) => {
            println!(
                "director key rotated: key {} (was {}), certificate v{}; agents switch at their next check-in and refuse the old key from then on",
                short(&done.key.keyid),
                short(&before.key.keyid),
                done.certificate_version
            );
            Ok(0)
        }
        Err(e) if certificate.is_some() && format!("{e:#}").contains("rejected: signature") => {
            let n = serde_json::from_slice::<serde_json::Value>(&signed)
                .ok()
                .and_then(|v| v["signatures"].as_array().map(Vec::len))
                .unwrap_or(0);
            println!(
                "{n} root key signature(s) on {} so far, fewer than the root threshold: pass the file to the next root key holder, who runs this same command with their own --keys",
                certificate.map(|p| p.display().to_string()).unwrap_or_default()
            );
            Ok(2)
        }
        Err(e) => Err(e),
    }
}

fn short(keyid: &str) -> &str {
    keyid.get(..16).unwrap_or(keyid)
}

/// Runs a `patchday keys` command; `now` is the signing time. Returns the exit code.
pub async fn run(cmd: KeysCmd, now: jiff::Timestamp) -> anyhow::Result<i32> {
    match cmd {
        KeysCmd::Generate {
            keys,
            root_keys,
            root_threshold,
        } => {
            let paths = generate_keyset(&keys, root_keys, root_threshold)?;
            println!(
                "keys written to {}: {} root key(s) with threshold {}, targets, snapshot, timestamp",
                keys.display(),
                paths.root.len(),
                paths.root_threshold
            );
            println!(
                "keep the root and targets keys offline, the root keys with different people; \
                 only snapshot and timestamp belong on the server"
            );
            Ok(0)
        }
        KeysCmd::Rotate {
            role,
            keys,
            new_keys,
            repo,
            certificate,
            conn,
        } => {
            let Some(role) = role.catalog_role() else {
                return rotate_director(&keys, certificate.as_deref(), &conn, now).await;
            };
            let (Some(new_keys), Some(repo)) = (new_keys, repo) else {
                anyhow::bail!("rotating {role} keys needs --new-keys and --repo");
            };
            for dir in [&keys, &new_keys] {
                check_key_dir_mode(dir)?;
            }
            let old = KeyPaths::in_dir(&keys);
            let new = KeyPaths::in_dir(&new_keys);
            let v = rotate_role(&old, &new, &repo, role, now, &Expiries::default())
                .await
                .with_context(|| format!("rotating the {role} keys of {}", repo.display()))?;
            println!(
                "{role} keys rotated: root v{}, targets v{}, snapshot v{}, timestamp v{}",
                v.root, v.targets, v.snapshot, v.timestamp
            );
            println!("{}", after_rotation(role, &keys, &new_keys));
            Ok(0)
        }
        KeysCmd::Check { keys } => Ok(check(&keys)),
    }
}

/// What the operator must do with the key files once `role` has rotated.
fn after_rotation(role: Role, keys: &Path, new_keys: &Path) -> String {
    let new = KeyPaths::in_dir(new_keys);
    let files: Vec<String> = new
        .role(role)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    format!(
        "the catalog's {role} key(s) are now {}; move them into {} in place of the retired ones \
         (then destroy or archive the retired keys offline), and run `patchday keys check --keys {}`",
        files.join(", "),
        keys.display(),
        keys.display()
    )
}

/// Prints one line per key file and every problem; 0 when all is well, 1 otherwise.
fn check(dir: &Path) -> i32 {
    let (keys, reports, problems) = check_key_dir(dir);
    println!(
        "{}: {} root key(s), threshold {}",
        dir.display(),
        keys.root.len(),
        keys.root_threshold
    );
    let mut bad = problems.len();
    for r in &reports {
        match (&r.key_id, &r.problem) {
            (Some(id), None) => println!(
                "ok    {:<9} {}  key id {}",
                r.role.as_str(),
                r.path.display(),
                id.get(..16).unwrap_or(id)
            ),
            (_, problem) => {
                bad += 1;
                println!(
                    "FAIL  {:<9} {}  {}",
                    r.role.as_str(),
                    r.path.display(),
                    problem.as_deref().unwrap_or("unusable")
                );
            }
        }
    }
    for p in &problems {
        println!("FAIL  {p}");
    }
    if bad == 0 {
        println!("all key files are private (0600) in a private directory (0700)");
        0
    } else {
        println!("{bad} problem(s)");
        1
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[allow(clippy::disallowed_methods)]
    fn now() -> jiff::Timestamp {
        jiff::Timestamp::now()
    }

    #[tokio::test]
    async fn generate_check_rotate() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = tmp.path().join("keys");
        let gen = |dir: &Path| KeysCmd::Generate {
            keys: dir.to_path_buf(),
            root_keys: 3,
            root_threshold: 2,
        };
        assert_eq!(run(gen(&keys), now()).await.unwrap(), 0);
        assert_eq!(check(&keys), 0);
        let repo = tmp.path().join("catalog");
        patchday_trust::init_catalog(&KeyPaths::in_dir(&keys), &repo, now(), &Expiries::default())
            .await
            .unwrap();

        let new = tmp.path().join("keys-2");
        run(gen(&new), now()).await.unwrap();
        let rotate = |role| KeysCmd::Rotate {
            role,
            keys: keys.clone(),
            new_keys: Some(new.clone()),
            repo: Some(repo.clone()),
            certificate: None,
            conn: Conn::default(),
        };
        assert_eq!(run(rotate(RotateRole::Root), now()).await.unwrap(), 0);

        // A world-readable key file is refused, with the chmod to fix it.
        let targets = new.join("targets.pem");
        std::fs::set_permissions(&targets, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(check(&new), 1);
        let err = run(rotate(RotateRole::Targets), now()).await.unwrap_err();
        assert!(format!("{err:#}").contains("chmod 600"), "{err:#}");
    }
}
