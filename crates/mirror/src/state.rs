//! What past runs saw: per source the InRelease they verified (for replay checks and
//! to skip an unchanged archive), and which update ids they imported. Where it is kept
//! is the caller's choice ([`Progress`]): a file in the work directory for `patchday
//! mirror run` ([`StateFile`]), the server's database for `--mirror-every` (issue 12,
//! point 1: a run on another replica or after a restart continues from it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::MirrorError;

/// The state file's content.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorState {
    /// Per source name.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceState>,
    /// Update ids already signed into the catalog.
    #[serde(default)]
    pub imported: BTreeSet<String>,
}

/// The last verified InRelease of one source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceState {
    /// SHA256 of the InRelease file.
    pub inrelease_sha256: String,
    /// Its Date: a later InRelease may not be older.
    pub date: Timestamp,
    /// Every selected update of it was imported (else the next run looks again).
    pub complete: bool,
    /// Digest of the selection that run used: a new selection looks again.
    #[serde(default)]
    pub selection: String,
}

impl MirrorState {
    /// The state file in a work directory.
    pub fn path(work_dir: &Path) -> PathBuf {
        work_dir.join("state.json")
    }

    /// Reads the state (empty when there is none yet).
    pub fn load(work_dir: &Path) -> Result<Self, MirrorError> {
        let path = Self::path(work_dir);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| MirrorError::Config {
                path,
                detail: format!("unreadable mirror state ({e}); move it away to start afresh (replay protection starts over)"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(MirrorError::io(path, e)),
        }
    }

    /// Writes the state atomically (temp file, fsync, rename).
    pub fn save(&self, work_dir: &Path) -> Result<(), MirrorError> {
        use std::io::Write;
        let path = Self::path(work_dir);
        let tmp = work_dir.join("state.json.tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| MirrorError::Config {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| MirrorError::io(&tmp, e))?;
        f.write_all(&bytes).map_err(|e| MirrorError::io(&tmp, e))?;
        f.sync_all().map_err(|e| MirrorError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| MirrorError::io(&path, e))
    }

    /// Makes the next run look at every source again and ask only the catalog which
    /// updates it holds (keeping each source's last Date, so replay protection stays):
    /// for a working catalog that was replaced by another copy (issue 9, point 1).
    pub fn forget_imports(work_dir: &Path) -> Result<(), MirrorError> {
        let s = Self::load(work_dir)?;
        if Self::path(work_dir).exists() {
            s.forgetting_imports().save(work_dir)?;
        }
        Ok(())
    }

    /// This state with the imports forgotten, as [`MirrorState::forget_imports`] keeps it.
    pub fn forgetting_imports(mut self) -> Self {
        self.imported.clear();
        for src in self.sources.values_mut() {
            src.complete = false;
        }
        self
    }
}

/// Where a run reads and keeps its [`MirrorState`] (issue 12, point 1).
#[async_trait]
pub trait Progress: Send + Sync + std::fmt::Debug {
    /// The state past runs left (empty before the first).
    async fn load(&self) -> Result<MirrorState, MirrorError>;
    /// Keeps the state (after each source's InRelease and each update signed).
    async fn save(&self, state: &MirrorState) -> Result<(), MirrorError>;
}

/// The state file `state.json` in a work directory.
#[derive(Clone, Debug)]
pub struct StateFile(pub PathBuf);

#[async_trait]
impl Progress for StateFile {
    async fn load(&self) -> Result<MirrorState, MirrorError> {
        MirrorState::load(&self.0)
    }
    async fn save(&self, state: &MirrorState) -> Result<(), MirrorError> {
        state.save(&self.0)
    }
}
