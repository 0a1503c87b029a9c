//! Looking into a message: every attachment (and nested message) by content, archives
//! opened to a bounded depth with one byte and entry budget for the whole message.
//!
//! Nothing here trusts a size an archive declares: entries are read through `take` with
//! what is left of the budget, so a zip bomb costs at most `max_expanded_bytes` of
//! memory and ends as [`Problem::Bomb`].

use crate::content::{sniff, ContentKind};
use crate::policy::TenantPolicy;
use mail_parser::{Message, MessageParser, MimeHeaders, PartType};
use serde::Serialize;
use std::io::{Cursor, Read};

/// How far the inspection may go (from the tenant's policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Archive and nested-message levels opened below an attachment.
    pub max_depth: u32,
    /// Bytes unpacked from all archives of the message.
    pub max_expanded_bytes: u64,
    /// Entries in all archives of the message.
    pub max_entries: u64,
}

impl From<&TenantPolicy> for Limits {
    fn from(t: &TenantPolicy) -> Self {
        Limits {
            max_depth: t.max_depth,
            max_expanded_bytes: t.max_expanded_bytes,
            max_entries: t.max_entries,
        }
    }
}

/// One file found in the message (an attachment or an archive entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileSeen {
    /// Attachment name, archive entries after `/` (`docs.zip/run.sh`).
    pub path: String,
    /// What its bytes are, if one of the known kinds.
    pub kind: Option<ContentKind>,
    /// Bytes (unpacked).
    pub size: u64,
    /// An Office document with a VBA project.
    pub macros: bool,
    /// An archive entry that is encrypted (its content was not seen).
    pub encrypted: bool,
}

/// Why the inspection could not see everything: always refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "kebab-case")]
pub enum Problem {
    /// Unpacking would exceed the byte budget (a zip bomb or just too big).
    Bomb {
        /// The archive.
        path: String,
        /// The budget.
        limit: u64,
    },
    /// Archives nested deeper than the policy opens.
    TooDeep {
        /// The archive not opened.
        path: String,
        /// The depth limit.
        limit: u32,
    },
    /// More archive entries than the policy reads.
    TooManyEntries {
        /// The archive where the count ran out.
        path: String,
        /// The limit.
        limit: u64,
    },
    /// A damaged archive or message part.
    Unreadable {
        /// Which one.
        path: String,
        /// What the reader said.
        error: String,
    },
}

impl Problem {
    /// The sentence for an SMTP reply and the log.
    pub fn reason(&self) -> String {
        match self {
            Problem::Bomb { path, limit } => {
                format!("{path} unpacks to more than {limit} bytes (archive bomb)")
            }
            Problem::TooDeep { path, limit } => {
                format!("{path} nests archives deeper than {limit} levels")
            }
            Problem::TooManyEntries { path, limit } => {
                format!("{path} holds more than {limit} archive entries")
            }
            Problem::Unreadable { path, error } => format!("{path} cannot be read ({error})"),
        }
    }
}

/// Everything seen in one message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Inspection {
    /// Every file, in the order met.
    pub files: Vec<FileSeen>,
    /// What stopped the inspection from seeing everything.
    pub problems: Vec<Problem>,
}

struct Walk<'l> {
    limits: &'l Limits,
    expanded: u64,
    entries: u64,
    out: Inspection,
}

/// Inspects a whole RFC 5322 message.
pub fn inspect_message(raw: &[u8], limits: &Limits) -> Inspection {
    let mut walk = Walk {
        limits,
        expanded: 0,
        entries: 0,
        out: Inspection::default(),
    };
    match MessageParser::default().parse(raw) {
        Some(message) => walk.message(&message, "", 0),
        None => walk.out.problems.push(Problem::Unreadable {
            path: "message".into(),
            error: "not a MIME message".into(),
        }),
    }
    walk.out
}

/// Inspects one file as if it were an attachment named `name`.
pub fn inspect_file(name: &str, bytes: &[u8], limits: &Limits) -> Inspection {
    let mut walk = Walk {
        limits,
        expanded: 0,
        entries: 0,
        out: Inspection::default(),
    };
    walk.file(name.to_string(), bytes, 0);
    walk.out
}

impl Walk<'_> {
    fn message(&mut self, message: &Message<'_>, prefix: &str, depth: u32) {
        for (n, part) in message.attachments().enumerate() {
            let name = part
                .attachment_name()
                .map(|s| s.replace('/', "_"))
                .unwrap_or_else(|| format!("part-{}", n + 1));
            let path = format!("{prefix}{name}");
            match &part.body {
                PartType::Message(nested) => {
                    if depth + 1 > self.limits.max_depth {
                        self.out.problems.push(Problem::TooDeep {
                            path,
                            limit: self.limits.max_depth,
                        });
                    } else {
                        self.message(nested, &format!("{path}/"), depth + 1);
                    }
                }
                PartType::Multipart(_) => {}
                _ => self.file(path, part.contents(), depth),
            }
        }
    }

    fn file(&mut self, path: String, bytes: &[u8], depth: u32) {
        let kind = sniff(bytes);
        let index = self.out.files.len();
        self.out.files.push(FileSeen {
            path: path.clone(),
            kind,
            size: bytes.len() as u64,
            macros: false,
            encrypted: false,
        });
        if kind == Some(ContentKind::Ole) && ole_has_macros(bytes) {
            self.out.files[index].macros = true;
        }
        let archive = matches!(
            kind,
            Some(ContentKind::Zip | ContentKind::Gzip | ContentKind::Tar)
        );
        if !archive || !self.open_level(&path, depth) {
            return;
        }
        match kind {
            Some(ContentKind::Zip) => {
                let macros = self.zip(&path, bytes, depth + 1);
                self.out.files[index].macros |= macros;
            }
            Some(ContentKind::Gzip) => {
                let mut decoder = flate2::read::MultiGzDecoder::new(bytes);
                if let Some(inner) = self.read_bounded(&path, &mut decoder) {
                    let inner_path = format!("{path}/{}", path.trim_end_matches(".gz"));
                    self.file(inner_path, &inner, depth + 1);
                }
            }
            Some(ContentKind::Tar) => self.tar(&path, bytes, depth + 1),
            _ => {}
        }
    }

    /// Whether an archive at `depth` may be opened (its entries sit one level deeper).
    fn open_level(&mut self, path: &str, depth: u32) -> bool {
        if depth + 1 > self.limits.max_depth {
            self.out.problems.push(Problem::TooDeep {
                path: path.into(),
                limit: self.limits.max_depth,
            });
            return false;
        }
        true
    }

    fn count_entry(&mut self, path: &str) -> bool {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            self.out.problems.push(Problem::TooManyEntries {
                path: path.into(),
                limit: self.limits.max_entries,
            });
            return false;
        }
        true
    }

    /// Reads `reader` into memory within what is left of the byte budget.
    fn read_bounded(&mut self, path: &str, reader: &mut dyn Read) -> Option<Vec<u8>> {
        let left = self.limits.max_expanded_bytes.saturating_sub(self.expanded);
        let mut data = Vec::new();
        if let Err(e) = reader.take(left.saturating_add(1)).read_to_end(&mut data) {
            self.out.problems.push(Problem::Unreadable {
                path: path.into(),
                error: e.to_string(),
            });
            return None;
        }
        if data.len() as u64 > left {
            self.out.problems.push(Problem::Bomb {
                path: path.into(),
                limit: self.limits.max_expanded_bytes,
            });
            return None;
        }
        self.expanded += data.len() as u64;
        Some(data)
    }

    /// Walks a zip's entries; `true` when it is an OOXML document with a VBA project.
    fn zip(&mut self, path: &str, bytes: &[u8], depth: u32) -> bool {
        let mut archive = match zip::ZipArchive::new(Cursor::new(bytes)) {
            Ok(a) => a,
            Err(e) => {
                self.out.problems.push(Problem::Unreadable {
                    path: path.into(),
                    error: e.to_string(),
                });
                return false;
            }
        };
        let mut macros = false;
        for i in 0..archive.len() {
            if !self.count_entry(path) {
                return macros;
            }
            let (name, encrypted, is_dir, declared) = match archive.by_index_raw(i) {
                Ok(f) => (f.name().to_string(), f.encrypted(), f.is_dir(), f.size()),
                Err(e) => {
                    self.out.problems.push(Problem::Unreadable {
                        path: path.into(),
                        error: e.to_string(),
                    });
                    return macros;
                }
            };
            if is_dir {
                continue;
            }
            let entry_path = format!("{path}/{name}");
            if name
                .rsplit('/')
                .next()
                .is_some_and(|base| base.eq_ignore_ascii_case("vbaProject.bin"))
            {
                macros = true;
            }
            if encrypted {
                self.out.files.push(FileSeen {
                    path: entry_path,
                    kind: None,
                    size: declared,
                    macros: false,
                    encrypted: true,
                });
                continue;
            }
            // A declared size beyond the budget is a bomb without reading a byte.
            if declared > self.limits.max_expanded_bytes.saturating_sub(self.expanded) {
                self.out.problems.push(Problem::Bomb {
                    path: entry_path,
                    limit: self.limits.max_expanded_bytes,
                });
                return macros;
            }
            let data = match archive.by_index(i) {
                Ok(mut entry) => self.read_bounded(&entry_path, &mut entry),
                Err(e) => {
                    self.out.problems.push(Problem::Unreadable {
                        path: entry_path,
                        error: e.to_string(),
                    });
                    return macros;
                }
            };
            match data {
                Some(data) => self.file(entry_path, &data, depth),
                None => return macros,
            }
        }
        macros
    }

    fn tar(&mut self, path: &str, bytes: &[u8], depth: u32) {
        let mut archive = tar::Archive::new(Cursor::new(bytes));
        let entries = match archive.entries() {
            Ok(e) => e,
            Err(e) => {
                self.out.problems.push(Problem::Unreadable {
                    path: path.into(),
                    error: e.to_string(),
                });
                return;
            }
        };
        let mut found = Vec::new();
        for entry in entries {
            if !self.count_entry(path) {
                break;
            }
            let mut entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    self.out.problems.push(Problem::Unreadable {
                        path: path.into(),
                        error: e.to_string(),
                    });
                    break;
                }
            };
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = entry
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "(unreadable name)".into());
            let entry_path = format!("{path}/{name}");
            match self.read_bounded(&entry_path, &mut entry) {
                Some(data) => found.push((entry_path, data)),
                None => break,
            }
        }
        for (entry_path, data) in found {
            self.file(entry_path, &data, depth);
        }
    }
}

/// Whether an OLE compound file holds a VBA project (Word/Excel `Macros` or `_VBA_PROJECT_CUR`
/// storage, or a `VBA` storage with its `_VBA_PROJECT` stream).
fn ole_has_macros(bytes: &[u8]) -> bool {
    let Ok(file) = cfb::CompoundFile::open(Cursor::new(bytes)) else {
        // Not a readable compound file: the content checks and clamd still apply.
        return false;
    };
    file.walk().any(|entry| {
        let name = entry.name();
        name.eq_ignore_ascii_case("_VBA_PROJECT")
            || name.eq_ignore_ascii_case("_VBA_PROJECT_CUR")
            || (entry.is_storage() && name.eq_ignore_ascii_case("VBA"))
            || (entry.is_storage() && name.eq_ignore_ascii_case("Macros"))
    })
}
