//! What the agent keeps in its state directory: its identity (credential, 0600),
//! the pinned catalog root, TUF's trusted metadata, partial downloads and the
//! install journal.

use anyhow::Context;
use patchday_types::{HostId, TenantId, UpdateId};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The agent's enrolled identity.
#[derive(Clone, Serialize, Deserialize)]
pub struct Identity {
    /// Server base URL.
    pub server: String,
    /// Tenant.
    pub tenant: TenantId,
    /// Host id.
    pub host: HostId,
    /// The host credential (secret).
    pub credential: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("server", &self.server)
            .field("tenant", &self.tenant)
            .field("host", &self.host)
            .field("credential", &"<redacted>")
            .finish()
    }
}

/// Installed release counters by `kind:package` (the decision lives in `patchday_trust`).
pub use patchday_trust::decision::ReleaseCounters;

/// Paths inside the state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Opens (creating with mode 0700) a state directory.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root.join("downloads"))
            .with_context(|| format!("cannot create state directory {}", root.display()))?;
        std::fs::create_dir_all(root.join("tuf"))?;
        set_mode(root, 0o700)?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }
    /// `identity.json`.
    pub fn identity_path(&self) -> PathBuf {
        self.root.join("identity.json")
    }
    /// The pinned catalog root.
    pub fn trusted_root(&self) -> PathBuf {
        self.root.join("trusted-root.json")
    }
    /// TUF datastore.
    pub fn tuf(&self) -> PathBuf {
        self.root.join("tuf")
    }
    /// Download directory.
    pub fn downloads(&self) -> PathBuf {
        self.root.join("downloads")
    }
    /// The server CA pinned at enrolment (PEM), if any.
    pub fn ca(&self) -> Option<Vec<u8>> {
        std::fs::read(self.root.join("ca.pem")).ok()
    }

    /// Pins the server CA.
    pub fn save_ca(&self, pem: &[u8]) -> anyhow::Result<()> {
        write_atomic(&self.root.join("ca.pem"), pem, 0o644)
    }

    /// Install journal.
    pub fn journal(&self) -> PathBuf {
        self.root.join("journal.json")
    }

    /// Loads the identity, if enrolled.
    pub fn identity(&self) -> anyhow::Result<Option<Identity>> {
        match std::fs::read(self.identity_path()) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| {
                format!(
                    "{} is corrupt: remove it and enrol again",
                    self.identity_path().display()
                )
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).context("reading the agent identity"),
        }
    }

    /// Saves the identity with mode 0600.
    pub fn save_identity(&self, id: &Identity) -> anyhow::Result<()> {
        write_atomic(
            &self.identity_path(),
            &serde_json::to_vec_pretty(id)?,
            0o600,
        )
    }

    /// The director key pinned at enrolment, if the server had one.
    pub fn director_key(
        &self,
    ) -> anyhow::Result<Option<patchday_trust::director::DirectorPublicKey>> {
        match std::fs::read(self.root.join("director-key.json")) {
            Ok(b) => Ok(Some(
                serde_json::from_slice(&b).context("director-key.json is corrupt; re-enrol")?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Pins the director key.
    pub fn save_director_key(
        &self,
        k: &patchday_trust::director::DirectorPublicKey,
    ) -> anyhow::Result<()> {
        write_atomic(
            &self.root.join("director-key.json"),
            &serde_json::to_vec(k)?,
            0o644,
        )
    }

    /// The newest director metadata version accepted (0 when none).
    pub fn director_version(&self) -> u64 {
        std::fs::read_to_string(self.root.join("director-version"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// A file in the state directory (issue 10, point 5: kept answer, staged updates).
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Records an accepted director version.
    pub fn set_director_version(&self, v: u64) -> anyhow::Result<()> {
        write_atomic(
            &self.root.join("director-version"),
            v.to_string().as_bytes(),
            0o644,
        )
    }

    /// When the server signed the last valid director answer (or, before the first, when
    /// this agent enrolled): the start of `--max-silence` (finding 6).
    pub fn last_director_answer(&self) -> Option<jiff::Timestamp> {
        std::fs::read_to_string(self.root.join("director-time"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Records the signing time of a valid director answer.
    pub fn set_last_director_answer(&self, t: jiff::Timestamp) -> anyhow::Result<()> {
        write_atomic(
            &self.root.join("director-time"),
            t.to_string().as_bytes(),
            0o644,
        )
    }

    /// Version of the last director key certificate adopted (0 when none).
    pub fn director_certificate_version(&self) -> u64 {
        std::fs::read_to_string(self.root.join("director-certificate-version"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Pins a certified director key and the certificate's version, key first: a crash
    /// in between leaves the new key pinned and the certificate adopted again next run.
    pub fn adopt_director_key(
        &self,
        k: &patchday_trust::director::DirectorPublicKey,
        certificate_version: u64,
    ) -> anyhow::Result<()> {
        self.save_director_key(k)?;
        write_atomic(
            &self.root.join("director-certificate-version"),
            certificate_version.to_string().as_bytes(),
            0o644,
        )
    }

    /// The highest release counter installed per payload (`kind:package`): Uptane's
    /// guard that no package goes back to an earlier release, whatever its version says.
    pub fn release_counters(&self) -> anyhow::Result<ReleaseCounters> {
        match std::fs::read(self.root.join("release-counters.json")) {
            Ok(b) => serde_json::from_slice(&b).context(
                "release-counters.json is corrupt: restore it from a backup (removing it drops the protection against older releases)",
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ReleaseCounters::default()),
            Err(e) => Err(e).context("reading release-counters.json"),
        }
    }

    /// Saves the release counters.
    pub fn save_release_counters(&self, c: &ReleaseCounters) -> anyhow::Result<()> {
        write_atomic(
            &self.root.join("release-counters.json"),
            &serde_json::to_vec_pretty(c)?,
            0o644,
        )
    }

    /// The update whose install was under way when the agent last stopped.
    pub fn journal_entry(&self) -> Option<UpdateId> {
        let b = std::fs::read(self.journal()).ok()?;
        serde_json::from_slice(&b).ok()
    }

    /// Records (Some) or clears (None) the update being installed.
    pub fn set_journal(&self, u: Option<&UpdateId>) -> anyhow::Result<()> {
        match u {
            Some(u) => write_atomic(&self.journal(), &serde_json::to_vec(u)?, 0o600),
            None => match std::fs::remove_file(self.journal()) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e.into()),
            },
        }
    }
}

// issue 8, findings 8 and 13: the host's own signing key, its sequence numbers, and
// whether a run error is reported and not yet cleared.
impl StateDir {
    /// The host's private signing key (PKCS#8, 0600); it never leaves the host.
    pub fn host_key_path(&self) -> PathBuf {
        self.root.join("host-key.pk8")
    }

    /// The last sequence number this host signed.
    pub fn sequence_path(&self) -> PathBuf {
        self.root.join("sequence")
    }

    /// Marker: the server was told of a failed run and not yet of a good one.
    pub fn agent_error_reported_path(&self) -> PathBuf {
        self.root.join("agent-error-reported")
    }

    /// Loads the host key, with an error that says what to do when it is missing.
    pub fn host_key(&self) -> anyhow::Result<patchday_trust::host_signature::HostKey> {
        let p = self.host_key_path();
        if !p.exists() {
            anyhow::bail!(
                "this agent has no signing key ({}): it was enrolled before hosts signed their check-ins, or the file was lost; enrol it again: remove {} and run the agent with --enroll-token",
                p.display(),
                self.identity_path().display()
            );
        }
        Ok(patchday_trust::host_signature::HostKey::load(&p)?)
    }
}

/// Writes a file by temp-file + fsync + rename, so a crash leaves old or new, never half.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("writing {} (disk full?)", tmp.display()))?;
        set_mode(&tmp, mode)?;
        f.write_all(bytes)
            .with_context(|| format!("writing {} (disk full?)", tmp.display()))?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

fn set_mode(p: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting permissions of {}", p.display()))
}

// ---- issue 10, point 3: what this agent installed, so it can take it back ----

/// Per update, the payloads this agent installed for it and what the host had before.
pub type InstalledRecords =
    std::collections::BTreeMap<UpdateId, Vec<patchday_trust::removal::InstalledPayload>>;

/// A removal under way: the packages `dpkg --remove` must finish if the agent stops.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RemovalJournal {
    /// The update being taken back.
    pub update: Option<UpdateId>,
    /// Packages (`name:arch`) to remove.
    pub remove: Vec<String>,
}

impl StateDir {
    fn installed_path(&self) -> PathBuf {
        self.root.join("installed-updates.json")
    }

    fn removal_journal_path(&self) -> PathBuf {
        self.root.join("removal-journal.json")
    }

    /// What this agent installed, per update (issue 10, point 3). Only the agent writes
    /// it, after a verified install: a removal the server asks for acts on it alone.
    pub fn installed_records(&self) -> anyhow::Result<InstalledRecords> {
        match std::fs::read(self.installed_path()) {
            Ok(b) => serde_json::from_slice(&b).context(
                "installed-updates.json is corrupt: remove it (the agent then refuses to take back updates installed before)",
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
            Err(e) => Err(e).context("reading installed-updates.json"),
        }
    }

    /// Saves what this agent installed.
    pub fn save_installed_records(&self, r: &InstalledRecords) -> anyhow::Result<()> {
        write_atomic(
            &self.installed_path(),
            &serde_json::to_vec_pretty(r)?,
            0o600,
        )
    }

    /// The removal a stopped run left unfinished.
    pub fn removal_journal(&self) -> Option<RemovalJournal> {
        let b = std::fs::read(self.removal_journal_path()).ok()?;
        serde_json::from_slice(&b).ok()
    }

    /// Records (Some) or clears (None) the removal under way.
    pub fn set_removal_journal(&self, j: Option<&RemovalJournal>) -> anyhow::Result<()> {
        match j {
            Some(j) => write_atomic(&self.removal_journal_path(), &serde_json::to_vec(j)?, 0o600),
            None => match std::fs::remove_file(self.removal_journal_path()) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e.into()),
            },
        }
    }
}
