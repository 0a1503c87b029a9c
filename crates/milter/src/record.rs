//! One verdict as it is logged (JSON lines), kept beside a quarantined message and
//! reported to the server.

use crate::inspect::FileSeen;
use crate::verdict::VerdictKind;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A verdict on one message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictRecord {
    /// When it was decided.
    pub time: jiff::Timestamp,
    /// Postfix's queue ID, when Postfix sent it.
    pub queue_id: Option<String>,
    /// The tenants whose policy applied.
    pub tenants: Vec<String>,
    /// The envelope sender.
    pub sender: String,
    /// The envelope recipients.
    pub recipients: Vec<String>,
    /// accept, quarantine, tempfail or reject.
    pub verdict: VerdictKind,
    /// Why (empty for a clean accept).
    pub reasons: Vec<String>,
    /// Files seen in the message.
    pub files: Vec<FileSummary>,
    /// The message size in bytes.
    pub size: u64,
    /// The quarantine ID, for `patchday milter release`.
    pub quarantine_id: Option<String>,
}

/// A file as the log shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSummary {
    /// Attachment name or archive path.
    pub path: String,
    /// Its kind by content.
    pub kind: Option<String>,
    /// Bytes.
    pub size: u64,
}

impl From<&FileSeen> for FileSummary {
    fn from(f: &FileSeen) -> Self {
        FileSummary {
            path: f.path.clone(),
            kind: f.kind.map(|k| k.name().to_string()),
            size: f.size,
        }
    }
}

/// Where verdicts are written: a file (appended) or standard output.
pub struct VerdictLog {
    file: Option<Mutex<std::fs::File>>,
    path: Option<PathBuf>,
}

impl VerdictLog {
    /// Appends to `path`, or writes to standard output when `None`.
    pub fn open(path: Option<&Path>) -> std::io::Result<VerdictLog> {
        let file = match path {
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            )),
            None => None,
        };
        Ok(VerdictLog {
            file,
            path: path.map(Path::to_path_buf),
        })
    }

    /// Writes one line. A failure is reported through tracing; the verdict stands.
    pub fn write(&self, record: &VerdictRecord) {
        let mut line = match serde_json::to_vec(record) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("cannot encode a verdict record: {e}");
                return;
            }
        };
        line.push(b'\n');
        let result = match &self.file {
            Some(f) => match f.lock() {
                Ok(mut f) => f.write_all(&line),
                Err(_) => Err(std::io::Error::other("log lock poisoned")),
            },
            None => std::io::stdout().lock().write_all(&line),
        };
        if let Err(e) = result {
            let target = self
                .path
                .as_ref()
                .map_or("standard output".to_string(), |p| p.display().to_string());
            tracing::error!("cannot write the verdict log {target}: {e}");
        }
    }
}
