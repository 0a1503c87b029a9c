//! Reading `.deb` files: the ar container, `control.tar.*` and the Debian changelog
//! inside `data.tar.*`.
//!
//! The ar container is read by hand rather than with the `ar` crate: a `.deb` uses only
//! the plain common format, and reading it ourselves lets every header be checked
//! against the real file length first, so a truncated download gives "truncated"
//! instead of an obscure decoder error, and no member is ever read into memory whole.

use crate::{control, version, PkgError};
use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::rc::Rc;

/// Largest decompressed `control.tar` we unpack (it also holds md5sums and scripts).
pub const MAX_CONTROL_TAR: u64 = 128 << 20;
/// Largest `control` file we parse.
pub const MAX_CONTROL: u64 = 16 << 20;
/// Largest changelog we return, compressed or decompressed.
pub const MAX_CHANGELOG: u64 = 16 << 20;

/// The fields of a binary package's `control` file that Patchday uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebInfo {
    /// Binary package name (`Package:`).
    pub package: String,
    /// Binary version (`Version:`).
    pub version: String,
    /// Architecture (`amd64`, `all`, ...).
    pub architecture: String,
    /// Source package name (the binary name when `Source:` is absent).
    pub source: String,
    /// Source version (from `Source: name (version)`, else the binary version).
    pub source_version: String,
    /// `Maintainer:`, empty when absent.
    pub maintainer: String,
    /// First line of `Description:` (the synopsis), empty when absent.
    pub description: String,
    /// `Installed-Size:` in KiB, when present.
    pub installed_size: Option<u64>,
    /// `Depends:` on one line, empty when absent.
    pub depends: String,
}

/// What `read_deb` learns from a `.deb` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebPackage {
    /// Parsed control fields.
    pub info: DebInfo,
    /// Text of `usr/share/doc/<package>/changelog.Debian.gz`; `None` when the package
    /// ships none or its doc directory is a symlink to another package's.
    pub changelog: Option<String>,
}

/// One ar member header, checked against the file length.
struct Member {
    name: String,
    data_offset: u64,
    size: u64,
}

/// Reads a `.deb` file's control fields and Debian changelog. Malformed input yields an
/// error that names the file and the problem; it never panics and never reads more
/// than the size limits above into memory.
pub fn read_deb(path: &Path) -> Result<DebPackage, PkgError> {
    read(path, true)
}

/// Issue 9, point 4 (closure): only a `.deb`'s control fields, with the checks of
/// [`read_deb`], without decompressing its data member (the server reads the `Depends`
/// of assigned payloads, which may be large).
pub fn read_deb_info(path: &Path) -> Result<DebInfo, PkgError> {
    read(path, false).map(|p| p.info)
}

fn read(path: &Path, with_changelog: bool) -> Result<DebPackage, PkgError> {
    let shown = path.display().to_string();
    let io_err = |source: io::Error| PkgError::Io {
        path: shown.clone(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    let mut reader = DebReader {
        path: shown.clone(),
        file: &mut file,
        len,
        offset: 0,
    };
    reader.check_magic()?;

    let first = reader
        .next_member()?
        .ok_or_else(|| PkgError::MissingMember {
            path: shown.clone(),
            detail: "the archive is empty, debian-binary is missing".to_string(),
        })?;
    if first.name != "debian-binary" {
        return Err(PkgError::MissingMember {
            path: shown,
            detail: format!("first member is {:?}, expected debian-binary", first.name),
        });
    }
    let format = reader.read_small(&first, 64)?;
    let format_line = String::from_utf8_lossy(&format)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if format_line != "2.0" {
        return Err(PkgError::UnsupportedFormat {
            path: shown,
            found: format_line,
        });
    }

    let mut info: Option<DebInfo> = None;
    loop {
        let Some(m) = reader.next_member()? else {
            let missing = if info.is_none() {
                "control.tar"
            } else {
                "data.tar"
            };
            return Err(PkgError::MissingMember {
                path: shown,
                detail: format!("no {missing} member"),
            });
        };
        if m.name.starts_with('_') {
            continue; // reserved for future use; dpkg skips these too
        }
        match (
            &info,
            m.name.strip_prefix("control.tar"),
            m.name.strip_prefix("data.tar"),
        ) {
            (None, Some(ext), _) => {
                let control = reader
                    .with_member(&m, ext, MAX_CONTROL_TAR, |tar| find_control(tar, &m.name))?;
                let parsed = parse_control(&shown, &control)?;
                if !with_changelog {
                    return Ok(DebPackage {
                        info: parsed,
                        changelog: None,
                    });
                }
                info = Some(parsed);
            }
            (Some(i), _, Some(ext)) => {
                let package = i.package.clone();
                let native = !i.version.contains('-');
                let changelog = reader.with_member(&m, ext, u64::MAX, |tar| {
                    find_changelog(tar, &m.name, &package, native)
                })?;
                let Some(info) = info else {
                    continue;
                };
                return Ok(DebPackage { info, changelog });
            }
            (None, _, _) => {
                return Err(PkgError::MissingMember {
                    path: shown,
                    detail: format!("member {:?} comes before control.tar", m.name),
                })
            }
            (Some(_), _, _) => {
                return Err(PkgError::MissingMember {
                    path: shown,
                    detail: format!("member {:?} comes where data.tar belongs", m.name),
                })
            }
        }
    }
}

struct DebReader<'f> {
    path: String,
    file: &'f mut File,
    len: u64,
    offset: u64,
}

/// Failure inside a member, before it is tied to a file name.
enum Inner {
    Corrupt(String),
    Control(String),
    TooLarge(String, u64),
}

impl DebReader<'_> {
    fn io(&self, source: io::Error) -> PkgError {
        PkgError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn check_magic(&mut self) -> Result<(), PkgError> {
        let mut magic = [0u8; 8];
        if self.len < 8 {
            return Err(PkgError::NotDebPackage {
                path: self.path.clone(),
            });
        }
        self.file.read_exact(&mut magic).map_err(|e| self.io(e))?;
        if &magic != b"!<arch>\n" {
            return Err(PkgError::NotDebPackage {
                path: self.path.clone(),
            });
        }
        self.offset = 8;
        Ok(())
    }

    /// The next member header, or `None` at the end of the archive.
    fn next_member(&mut self) -> Result<Option<Member>, PkgError> {
        if self.offset >= self.len {
            return Ok(None);
        }
        let at = self.offset;
        if self.len - at < 60 {
            return Err(PkgError::Truncated {
                path: self.path.clone(),
                what: format!(
                    "the file ends inside an ar member header at byte {at} ({} of 60 bytes present)",
                    self.len - at
                ),
            });
        }
        self.file
            .seek(SeekFrom::Start(at))
            .map_err(|e| self.io(e))?;
        let mut h = [0u8; 60];
        self.file.read_exact(&mut h).map_err(|e| self.io(e))?;
        let bad = |detail: String| PkgError::BadArchive {
            path: self.path.clone(),
            offset: at,
            detail,
        };
        if &h[58..60] != b"`\n" {
            return Err(bad("ar member header lacks its end marker".to_string()));
        }
        let name = String::from_utf8_lossy(&h[0..16]);
        let name = name.trim_end().trim_end_matches('/').to_string();
        let size_text = String::from_utf8_lossy(&h[48..58]);
        let size: u64 = size_text.trim().parse().map_err(|_| {
            bad(format!(
                "ar member {name:?} has size {:?}, not a number",
                size_text.trim()
            ))
        })?;
        let data_offset = at + 60;
        if size > self.len - data_offset {
            return Err(PkgError::Truncated {
                path: self.path.clone(),
                what: format!(
                    "member {name} announces {size} bytes but only {} remain",
                    self.len - data_offset
                ),
            });
        }
        // Members are padded to an even length; a missing final pad byte is harmless.
        self.offset = data_offset + size + (size & 1);
        Ok(Some(Member {
            name,
            data_offset,
            size,
        }))
    }

    fn read_small(&mut self, m: &Member, limit: u64) -> Result<Vec<u8>, PkgError> {
        self.file
            .seek(SeekFrom::Start(m.data_offset))
            .map_err(|e| self.io(e))?;
        let mut buf = Vec::new();
        (&mut *self.file)
            .take(m.size.min(limit))
            .read_to_end(&mut buf)
            .map_err(|e| self.io(e))?;
        Ok(buf)
    }

    /// Runs `f` over the member's decompressed tar stream, capped at `limit` bytes.
    fn with_member<T>(
        &mut self,
        m: &Member,
        ext: &str,
        limit: u64,
        f: impl FnOnce(&mut tar::Archive<Capped<Box<dyn Read + '_>>>) -> Result<T, Inner>,
    ) -> Result<T, PkgError> {
        self.file
            .seek(SeekFrom::Start(m.data_offset))
            .map_err(|e| self.io(e))?;
        let path = self.path.clone();
        let raw = BufReader::with_capacity(64 << 10, (&mut *self.file).take(m.size));
        let corrupt = |detail: String| PkgError::Corrupt {
            path: path.clone(),
            member: m.name.clone(),
            detail,
        };
        let decoded: Box<dyn Read + '_> = match ext {
            "" => Box::new(raw),
            ".gz" => Box::new(flate2::read::MultiGzDecoder::new(raw)),
            ".xz" => Box::new(xz2::read::XzDecoder::new_multi_decoder(raw)),
            ".lzma" => {
                let stream = xz2::stream::Stream::new_lzma_decoder(u64::MAX)
                    .map_err(|e| corrupt(e.to_string()))?;
                Box::new(xz2::read::XzDecoder::new_stream(raw, stream))
            }
            ".zst" => Box::new(
                zstd::stream::read::Decoder::with_buffer(raw)
                    .map_err(|e| corrupt(e.to_string()))?,
            ),
            ".bz2" => Box::new(bzip2::read::MultiBzDecoder::new(raw)),
            _ => {
                return Err(PkgError::UnsupportedCompression {
                    path,
                    member: m.name.clone(),
                })
            }
        };
        let hit = Rc::new(Cell::new(false));
        let capped = Capped {
            inner: decoded,
            left: limit,
            hit: Rc::clone(&hit),
        };
        let mut archive = tar::Archive::new(capped);
        match f(&mut archive) {
            Ok(v) => Ok(v),
            Err(_) if hit.get() => Err(PkgError::TooLarge {
                path,
                what: format!("member {}", m.name),
                limit,
            }),
            Err(Inner::TooLarge(what, limit)) => Err(PkgError::TooLarge { path, what, limit }),
            Err(Inner::Corrupt(detail)) => Err(corrupt(detail)),
            Err(Inner::Control(detail)) => Err(PkgError::BadControl { path, detail }),
        }
    }
}

/// A reader that fails once more than `left` bytes would be produced.
struct Capped<R> {
    inner: R,
    left: u64,
    hit: Rc<Cell<bool>>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => {
                    self.hit.set(true);
                    Err(io::Error::other("decompressed size limit exceeded"))
                }
            };
        }
        let want = usize::try_from(self.left).map_or(buf.len(), |l| l.min(buf.len()));
        let got = self.inner.read(&mut buf[..want])?;
        self.left -= got as u64;
        Ok(got)
    }
}

/// A tar path without `./` or `/` in front.
fn normalized(path: &[u8]) -> String {
    let s = String::from_utf8_lossy(path);
    let s = s.trim_start_matches("./").trim_start_matches('/');
    s.trim_end_matches('/').to_string()
}

fn tar_err(what: &str, e: io::Error) -> Inner {
    Inner::Corrupt(format!("{what}: {e}"))
}

/// Reads at most `limit` bytes of `r`; more is an error, not a silent cut.
fn read_capped(r: impl Read, limit: u64, what: &str) -> Result<Vec<u8>, Inner> {
    let mut buf = Vec::new();
    r.take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| tar_err(what, e))?;
    if buf.len() as u64 > limit {
        return Err(Inner::TooLarge(what.to_string(), limit));
    }
    Ok(buf)
}

fn find_control<R: Read>(tar: &mut tar::Archive<R>, member: &str) -> Result<String, Inner> {
    let entries = tar.entries().map_err(|e| tar_err(member, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| tar_err(member, e))?;
        if normalized(&entry.path_bytes()) != "control" {
            continue;
        }
        if !entry.header().entry_type().is_file() {
            return Err(Inner::Control("control is not a regular file".to_string()));
        }
        if entry.size() > MAX_CONTROL {
            return Err(Inner::TooLarge("the control file".to_string(), MAX_CONTROL));
        }
        let bytes = read_capped(entry, MAX_CONTROL, "the control file")?;
        return Ok(String::from_utf8_lossy(&bytes).into_owned());
    }
    Err(Inner::Control(format!("{member} contains no control file")))
}

fn find_changelog<R: Read>(
    tar: &mut tar::Archive<R>,
    member: &str,
    package: &str,
    native: bool,
) -> Result<Option<String>, Inner> {
    let dir = format!("usr/share/doc/{package}");
    let debian = format!("{dir}/changelog.Debian.gz");
    // Native packages (no Debian revision) name their Debian changelog changelog.gz.
    let plain = format!("{dir}/changelog.gz");
    let mut fallback: Option<Vec<u8>> = None;
    let entries = tar.entries().map_err(|e| tar_err(member, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| tar_err(member, e))?;
        let path = normalized(&entry.path_bytes());
        let kind = entry.header().entry_type();
        if path == dir && !kind.is_dir() {
            // The doc dir is a symlink to another package's (same source); its
            // changelog belongs to that package.
            return Ok(None);
        }
        let is_debian = path == debian;
        let is_native_log = native && path == plain;
        if !(is_debian || is_native_log) {
            continue;
        }
        if !kind.is_file() {
            if is_debian {
                return Ok(None);
            }
            continue;
        }
        if entry.size() > MAX_CHANGELOG {
            return Err(Inner::TooLarge(format!("compressed {path}"), MAX_CHANGELOG));
        }
        let compressed = read_capped(entry, MAX_CHANGELOG, &path)?;
        if is_debian {
            return gunzip_changelog(&compressed, &path).map(Some);
        }
        fallback = Some(compressed);
    }
    match fallback {
        Some(compressed) => gunzip_changelog(&compressed, &plain).map(Some),
        None => Ok(None),
    }
}

fn gunzip_changelog(compressed: &[u8], path: &str) -> Result<String, Inner> {
    let text = read_capped(
        flate2::read::MultiGzDecoder::new(compressed),
        MAX_CHANGELOG,
        path,
    )?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// Whether `name` is a package name as Debian policy 5.6.1 allows it: lower-case letters,
/// digits, `+`, `-` and `.`, at least two characters, starting with a letter or digit.
/// Stricter than what this crate reads from `.deb` files; names that pass are plain shell
/// words (issue 8, finding 5: agent facts in suggested commands).
pub fn is_policy_package_name(name: &str) -> bool {
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'))
}

fn is_package_name(name: &str) -> bool {
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '.' | '_'))
}

/// Checks and extracts the fields of a `control` file.
pub(crate) fn parse_control(path: &str, text: &str) -> Result<DebInfo, PkgError> {
    let bad = |detail: String| PkgError::BadControl {
        path: path.to_string(),
        detail,
    };
    let paragraphs =
        control::parse(text, true).map_err(|b| bad(format!("line {}: {}", b.number, b.detail)))?;
    let p = match paragraphs.as_slice() {
        [p] => p,
        [] => return Err(bad("it has no fields".to_string())),
        _ => return Err(bad("it has more than one paragraph".to_string())),
    };
    let required = |name: &str| {
        p.get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| bad(format!("required field {name} is missing or empty")))
    };
    let package = required("Package")?;
    if !is_package_name(package) {
        return Err(bad(format!(
            "Package {package:?} is not a valid package name"
        )));
    }
    let version = required("Version")?;
    if let Err(e) = version::compare_deb(version, version) {
        return Err(bad(format!("Version: {e}")));
    }
    let architecture = required("Architecture")?;
    if architecture.contains(char::is_whitespace) {
        return Err(bad(format!(
            "Architecture {architecture:?} is not one word"
        )));
    }
    let (source, source_version) = control::source_of(p.get("Source"), package, version)
        .ok_or_else(|| {
            bad(format!(
                "Source {:?} is neither \"name\" nor \"name (version)\"",
                p.get("Source").unwrap_or("")
            ))
        })?;
    if let Err(e) = version::compare_deb(&source_version, &source_version) {
        return Err(bad(format!("Source version: {e}")));
    }
    let installed_size = match p.get("Installed-Size") {
        None | Some("") => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| bad(format!("Installed-Size {v:?} is not a number of KiB")))?,
        ),
    };
    let one_line = |name: &str| {
        p.get(name)
            .unwrap_or("")
            .split('\n')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    };
    Ok(DebInfo {
        package: package.to_string(),
        version: version.to_string(),
        architecture: architecture.to_string(),
        source,
        source_version,
        maintainer: one_line("Maintainer"),
        description: p
            .get("Description")
            .and_then(|d| d.lines().next())
            .unwrap_or("")
            .trim()
            .to_string(),
        installed_size,
        depends: one_line("Depends"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_fields() {
        let text = "Package: libfoo1\nSource: foo (1.2-3)\nVersion: 1.2-3+b1\nArchitecture: amd64\nMaintainer: A <a@example.org>\nInstalled-Size: 120\nDepends: libc6 (>= 2.34),\n libbar1\nDescription: the foo library\n Long text.\n";
        let i = parse_control("x.deb", text).unwrap();
        assert_eq!(i.package, "libfoo1");
        assert_eq!(i.source, "foo");
        assert_eq!(i.source_version, "1.2-3");
        assert_eq!(i.version, "1.2-3+b1");
        assert_eq!(i.installed_size, Some(120));
        assert_eq!(i.depends, "libc6 (>= 2.34), libbar1");
        assert_eq!(i.description, "the foo library");
    }

    #[test]
    fn control_garbage() {
        let cases = [
            ("", "no fields"),
            ("Version: 1\nArchitecture: all\n", "Package is missing"),
            (
                "Package: a\nVersion: 1\nArchitecture: all\n",
                "not a valid package name",
            ),
            (
                "Package: ab\nVersion: 1 2\nArchitecture: all\n",
                "embedded spaces",
            ),
            ("Package: ab\nVersion: 1\n", "Architecture is missing"),
            (
                "Package: ab\nVersion: 1\nArchitecture: all\nInstalled-Size: lots\n",
                "Installed-Size",
            ),
            (
                "Package: ab\nVersion: 1\nArchitecture: all\nSource: x (1\n",
                "Source",
            ),
            (
                "Package: ab\nVersion: 1\nArchitecture: all\nSource: x (1:)\n",
                "Source version",
            ),
            ("Package: ab\n\u{1}\u{2}garbage\n", "line 2"),
            (
                "Package: ab\nVersion: 1\nArchitecture: all\n\nPackage: cd\n",
                "more than one",
            ),
        ];
        for (text, want) in cases {
            let e = parse_control("x.deb", text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(e.contains("x.deb"), "{e}");
        }
    }

    #[test]
    fn capped_reader() {
        let hit = Rc::new(Cell::new(false));
        let mut r = Capped {
            inner: &b"0123456789"[..],
            left: 4,
            hit: Rc::clone(&hit),
        };
        let mut out = Vec::new();
        assert!(r.read_to_end(&mut out).is_err());
        assert!(hit.get());
        let mut r = Capped {
            inner: &b"0123"[..],
            left: 4,
            hit: Rc::new(Cell::new(false)),
        };
        let mut out = Vec::new();
        assert_eq!(r.read_to_end(&mut out).unwrap(), 4);
    }
}
