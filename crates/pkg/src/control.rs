//! deb822 paragraphs ("Field: value" lines, continuation lines start with a blank), as
//! used by `DEBIAN/control` and `/var/lib/dpkg/status`.

/// One paragraph: fields in file order, continuation lines joined with `\n`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Paragraph {
    fields: Vec<(String, String)>,
}

impl Paragraph {
    /// The value of a field; field names compare case-insensitively, as dpkg does.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Keeps only the fields whose name `keep` accepts (issue 9, point 4).
    pub(crate) fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.fields.retain(|(k, _)| keep(k));
    }
}

/// A line that is neither a field, a continuation nor a comment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadLine {
    pub(crate) number: usize,
    pub(crate) detail: &'static str,
}

fn is_field_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && !name.starts_with('#')
        && name.bytes().all(|c| c.is_ascii_graphic() && c != b':')
}

/// Parses paragraphs; `strict` stops at the first malformed line, otherwise such lines
/// are skipped (a damaged status file should still yield its good entries).
pub(crate) fn parse(text: &str, strict: bool) -> Result<Vec<Paragraph>, BadLine> {
    let mut out = Vec::new();
    let mut cur = Paragraph::default();
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        if line.trim().is_empty() {
            if !cur.fields.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            match cur.fields.last_mut() {
                Some((_, value)) => {
                    value.push('\n');
                    value.push_str(line.trim_start());
                }
                None if strict => {
                    return Err(BadLine {
                        number,
                        detail: "continuation line before any field",
                    })
                }
                None => {}
            }
            continue;
        }
        match line.split_once(':') {
            Some((name, value)) if is_field_name(name) => {
                cur.fields
                    .push((name.to_string(), value.trim().to_string()));
            }
            _ if strict => {
                return Err(BadLine {
                    number,
                    detail: "not a \"Field: value\" line",
                })
            }
            _ => {}
        }
    }
    if !cur.fields.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Splits a `Source:` value, `name` or `name (version)`, into name and optional version.
/// Returns `None` when the value is not of that shape.
pub(crate) fn split_source(value: &str) -> Option<(&str, Option<&str>)> {
    let value = value.trim();
    match value.split_once('(') {
        None => {
            (!value.is_empty() && !value.contains(char::is_whitespace)).then_some((value, None))
        }
        Some((name, rest)) => {
            let name = name.trim();
            let version = rest.strip_suffix(')')?.trim();
            if name.is_empty() || name.contains(char::is_whitespace) || version.is_empty() {
                return None;
            }
            Some((name, Some(version)))
        }
    }
}

/// Source name and version of a binary package: from `Source: name (version)`, or
/// `Source: name` (same version as the binary), or the binary itself when absent.
///
/// A binNMU (`1.2-3+b1`) always carries `Source: name (1.2-3)`, so its source version is
/// right without guessing from the suffix.
pub(crate) fn source_of(
    source_field: Option<&str>,
    package: &str,
    version: &str,
) -> Option<(String, String)> {
    match source_field.map(str::trim).filter(|s| !s.is_empty()) {
        None => Some((package.to_string(), version.to_string())),
        Some(v) => {
            let (name, ver) = split_source(v)?;
            Some((name.to_string(), ver.unwrap_or(version).to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_and_continuations() {
        let text =
            "Package: a\nDescription: short\n long line\n .\n more\n\n\n# comment\npackage: b\n";
        let ps = parse(text, true).unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].get("description"), Some("short\nlong line\n.\nmore"));
        assert_eq!(ps[1].get("Package"), Some("b"));
    }

    #[test]
    fn strict_rejects_garbage() {
        let e = parse("Package: a\nthis is not a field\n", true).unwrap_err();
        assert_eq!(e.number, 2);
        assert!(parse(" leading continuation\n", true).is_err());
        let ps = parse("Package: a\ngarbage\nVersion: 1\n", false).unwrap();
        assert_eq!(ps[0].get("Version"), Some("1"));
    }

    #[test]
    fn source_field() {
        assert_eq!(split_source("glibc"), Some(("glibc", None)));
        assert_eq!(
            split_source("glibc (2.36-9)"),
            Some(("glibc", Some("2.36-9")))
        );
        assert_eq!(
            split_source("  glibc   ( 2.36-9 ) "),
            Some(("glibc", Some("2.36-9")))
        );
        assert_eq!(split_source("glibc (2.36-9"), None);
        assert_eq!(split_source("two words"), None);
        assert_eq!(
            source_of(
                Some("openssl (3.0.11-1~deb12u2)"),
                "libssl3",
                "3.0.11-1~deb12u2+b1"
            ),
            Some(("openssl".into(), "3.0.11-1~deb12u2".into()))
        );
        assert_eq!(
            source_of(None, "bash", "5.2.15-2+b2"),
            Some(("bash".into(), "5.2.15-2+b2".into()))
        );
        assert_eq!(
            source_of(Some("zlib"), "zlib1g", "1:1.2.13"),
            Some(("zlib".into(), "1:1.2.13".into()))
        );
    }
}
