//! The quarantine directory: each held message as `ID.eml` beside its verdict record
//! `ID.json`; `release` re-injects one through Postfix's `sendmail` and moves both files
//! to `released/`.

use crate::record::VerdictRecord;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Quarantine errors, each with what to do.
#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    /// Reading or writing the directory failed.
    #[error("quarantine directory {path}: {source}")]
    Io {
        /// Which file or directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// An ID that is not one of ours (only letters, digits and `-`).
    #[error(
        "{0:?} is not a quarantine ID: list them with `patchday milter list --quarantine DIR`"
    )]
    BadId(String),
    /// No such message.
    #[error("no quarantined message {id} in {dir}: list them with `patchday milter list --quarantine DIR`")]
    Missing {
        /// The ID.
        id: String,
        /// The directory.
        dir: String,
    },
    /// The record beside the message cannot be read.
    #[error("the record {path} is damaged: {message}")]
    Record {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// sendmail failed or is missing.
    #[error("re-injecting with {sendmail} failed: {message}. By hand: {by_hand}")]
    Sendmail {
        /// The program.
        sendmail: String,
        /// What happened.
        message: String,
        /// The equivalent command line.
        by_hand: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> QuarantineError + '_ {
    move |source| QuarantineError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A quarantine ID from the time (for sorting) and randomness (for uniqueness).
pub fn new_id(now: jiff::Timestamp) -> String {
    let stamp = now.strftime("%Y%m%dT%H%M%SZ").to_string();
    format!("{stamp}-{:08x}", rand::random::<u32>())
}

fn check_id(id: &str) -> Result<(), QuarantineError> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(QuarantineError::BadId(id.into()));
    }
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), QuarantineError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Keeps a message: the message first, its record last (a listing reads records).
pub fn store(
    dir: &Path,
    id: &str,
    raw: &[u8],
    record: &VerdictRecord,
) -> Result<(), QuarantineError> {
    use std::os::unix::fs::DirBuilderExt;
    check_id(id)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    write_private(&dir.join(format!("{id}.eml")), raw)?;
    let json = serde_json::to_vec_pretty(record).map_err(|e| QuarantineError::Record {
        path: dir.join(format!("{id}.json")).display().to_string(),
        message: e.to_string(),
    })?;
    write_private(&dir.join(format!("{id}.json")), &json)
}

/// The records of every held message, oldest first.
pub fn list(dir: &Path) -> Result<Vec<VerdictRecord>, QuarantineError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(dir)(e)),
    };
    for entry in entries {
        let path = entry.map_err(io(dir))?.path();
        if path.extension().is_some_and(|e| e == "json") {
            out.push(read_record(&path)?);
        }
    }
    out.sort_by(|a, b| a.quarantine_id.cmp(&b.quarantine_id));
    Ok(out)
}

fn read_record(path: &Path) -> Result<VerdictRecord, QuarantineError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&bytes).map_err(|e| QuarantineError::Record {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// How to re-inject: Postfix's `sendmail`, optionally with `-C CONFIG_DIR`.
#[derive(Clone, Debug)]
pub struct Reinject {
    /// The sendmail program (`/usr/sbin/sendmail`).
    pub sendmail: PathBuf,
    /// Postfix's configuration directory, when not the default.
    pub postfix_config: Option<PathBuf>,
}

impl Reinject {
    fn args(&self, record: &VerdictRecord) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(c) = &self.postfix_config {
            args.push("-C".into());
            args.push(c.display().to_string());
        }
        args.push("-i".into());
        args.push("-f".into());
        args.push(record.sender.clone());
        args.push("--".into());
        args.extend(record.recipients.iter().cloned());
        args
    }

    /// The command line a person would type (for errors and `--print`).
    pub fn by_hand(&self, record: &VerdictRecord, eml: &Path) -> String {
        let words: Vec<String> = std::iter::once(self.sendmail.display().to_string())
            .chain(self.args(record))
            .map(|w| patchday_text::shell_word(&w).into_owned())
            .collect();
        format!(
            "{} < {}",
            words.join(" "),
            patchday_text::shell_word(&eml.display().to_string())
        )
    }
}

/// Re-injects a held message to its original recipients and moves it to `released/`.
/// Postfix's `sendmail` enters through `pickup`, which `smtpd_milters` do not see, so the
/// released message is not quarantined again.
pub fn release(dir: &Path, id: &str, how: &Reinject) -> Result<VerdictRecord, QuarantineError> {
    check_id(id)?;
    let eml = dir.join(format!("{id}.eml"));
    let json = dir.join(format!("{id}.json"));
    if !json.exists() || !eml.exists() {
        return Err(QuarantineError::Missing {
            id: id.into(),
            dir: dir.display().to_string(),
        });
    }
    let record = read_record(&json)?;
    let raw = std::fs::read(&eml).map_err(io(&eml))?;
    let failed = |message: String| QuarantineError::Sendmail {
        sendmail: how.sendmail.display().to_string(),
        message,
        by_hand: how.by_hand(&record, &eml),
    };
    let mut child = Command::new(&how.sendmail)
        .args(how.args(&record))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&raw).map_err(|e| failed(e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        return Err(failed(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let released = dir.join("released");
    std::fs::create_dir_all(&released).map_err(io(&released))?;
    for p in [&eml, &json] {
        if let Some(name) = p.file_name() {
            std::fs::rename(p, released.join(name)).map_err(io(p))?;
        }
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_leave_the_directory() {
        assert!(check_id("20261202T041100Z-0a1b2c3d").is_ok());
        assert!(matches!(
            check_id("../../etc/passwd"),
            Err(QuarantineError::BadId(_))
        ));
        assert!(matches!(check_id(""), Err(QuarantineError::BadId(_))));
    }
}
