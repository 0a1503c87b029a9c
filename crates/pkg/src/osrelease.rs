//! `/etc/os-release` (shell-style `KEY=value` lines, see os-release(5)).

use patchday_types::inventory::OsRelease;

/// Unquotes one os-release value: double or single quotes, and backslash escapes
/// inside double quotes or unquoted text.
fn unquote(raw: &str) -> String {
    let raw = raw.trim();
    if let Some(inner) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        return inner.to_string();
    }
    let inner = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(raw);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses os-release text; unknown keys, comments and malformed lines are ignored and
/// missing keys stay empty (except `ID`, which defaults to `linux` as os-release(5) says).
pub fn parse_os_release(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(value);
        match key.trim() {
            "ID" => os.id = value,
            "VERSION_ID" => os.version_id = value,
            "VERSION_CODENAME" => os.version_codename = value,
            "PRETTY_NAME" => os.pretty_name = value,
            _ => {}
        }
    }
    if os.id.is_empty() {
        os.id = "linux".to_string();
    }
    os
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian() {
        let text = r#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
"#;
        let os = parse_os_release(text);
        assert_eq!(os.id, "debian");
        assert_eq!(os.version_id, "12");
        assert_eq!(os.version_codename, "bookworm");
        assert_eq!(os.pretty_name, "Debian GNU/Linux 12 (bookworm)");
    }

    #[test]
    fn quotes_comments_and_junk() {
        let text = "# a comment\n  # indented comment\nID='ubuntu'\nVERSION_ID=\"24.04\"\nPRETTY_NAME=\"Say \\\"hi\\\" \\$HOME\"\nnot a pair\n=\nVERSION_CODENAME=noble # trailing is not a comment in os-release\n";
        let os = parse_os_release(text);
        assert_eq!(os.id, "ubuntu");
        assert_eq!(os.version_id, "24.04");
        assert_eq!(os.pretty_name, "Say \"hi\" $HOME");
        assert_eq!(
            os.version_codename,
            "noble # trailing is not a comment in os-release"
        );
    }

    #[test]
    fn defaults() {
        let os = parse_os_release("");
        assert_eq!(os.id, "linux");
        assert_eq!(os.version_id, "");
    }

    #[test]
    fn this_machine() {
        if let Ok(text) = std::fs::read_to_string("/etc/os-release") {
            assert!(!parse_os_release(&text).id.is_empty());
        }
    }
}
