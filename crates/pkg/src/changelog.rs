//! Debian changelogs (`debian/changelog`, `changelog.Debian.gz`) and the CVEs they name.

use crate::version::compare_deb;
use regex::Regex;
use std::cmp::Ordering;
use std::sync::OnceLock;

/// One entry of a Debian changelog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangelogEntry {
    /// Source package name from the header line.
    pub package: String,
    /// Version from the header line, as written.
    pub version: String,
    /// Distribution(s) from the header line, for example `bookworm-security`.
    pub distribution: String,
    /// Urgency from the header line (`low` when absent).
    pub urgency: String,
    /// The body: change lines and the trailer line, without the header.
    pub text: String,
}

// The patterns are constants, so compiling them cannot fail; holding an `Option` keeps
// the crate free of `expect` and makes a failure degrade to "no match".
fn header_re() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?i)^(\w[-+0-9a-z.]*) \(([^() \t]+)\)((?:\s+[-+0-9a-z.]+)+)\s*;(.*)$").ok()
    })
    .as_ref()
}

fn cve_re() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(?i)\bCVE-(\d{4})-(\d{4,})\b").ok())
        .as_ref()
}

/// Parses changelog text into entries, newest first as written. Tolerant: lines before
/// the first header are ignored, and anything between headers belongs to the entry above.
pub fn parse(text: &str) -> Vec<ChangelogEntry> {
    let Some(re) = header_re() else {
        return Vec::new();
    };
    let mut entries: Vec<ChangelogEntry> = Vec::new();
    for line in text.lines() {
        if let Some(c) = re.captures(line) {
            let meta = c.get(4).map_or("", |m| m.as_str());
            let urgency = meta
                .split(',')
                .filter_map(|kv| kv.trim().split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("urgency"))
                .map_or_else(|| "low".to_string(), |(_, v)| v.trim().to_lowercase());
            entries.push(ChangelogEntry {
                package: c.get(1).map_or("", |m| m.as_str()).to_string(),
                version: c.get(2).map_or("", |m| m.as_str()).to_string(),
                distribution: c
                    .get(3)
                    .map_or("", |m| m.as_str())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
                urgency,
                text: String::new(),
            });
        } else if let Some(e) = entries.last_mut() {
            e.text.push_str(line);
            e.text.push('\n');
        }
    }
    for e in &mut entries {
        let trimmed = e.text.trim_matches('\n').to_string();
        e.text = trimmed;
    }
    entries
}

/// Sorted (by year, then number), unique CVE ids named in `text`, upper-cased.
fn cve_ids(texts: &[&str]) -> Vec<String> {
    let mut ids: Vec<(u32, u64, String)> = Vec::new();
    let Some(re) = cve_re() else {
        return Vec::new();
    };
    for text in texts {
        for c in re.captures_iter(text) {
            let (Some(year), Some(num)) = (c.get(1), c.get(2)) else {
                continue;
            };
            let id = format!("CVE-{}-{}", year.as_str(), num.as_str());
            // Numbers longer than u64 are nonsense but still sort after the rest.
            let key = num.as_str().parse().unwrap_or(u64::MAX);
            ids.push((year.as_str().parse().unwrap_or(u32::MAX), key, id));
        }
    }
    ids.sort();
    ids.dedup();
    ids.into_iter().map(|(_, _, id)| id).collect()
}

/// CVE ids mentioned in entries strictly newer than `since_version` (in all entries when
/// `None`), sorted by year then number, without duplicates.
///
/// Entries whose version dpkg could not parse are skipped when a `since_version` is
/// given, because we cannot tell whether they are newer.
pub fn cves_since(text: &str, since_version: Option<&str>) -> Vec<String> {
    let entries = parse(text);
    let texts: Vec<&str> = entries
        .iter()
        .filter(|e| match since_version {
            None => true,
            Some(since) => matches!(compare_deb(&e.version, since), Ok(Ordering::Greater)),
        })
        .map(|e| e.text.as_str())
        .collect();
    cve_ids(&texts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
openssl (3.0.15-1~deb12u1) bookworm-security; urgency=medium

  * New upstream version.
    - Fixes CVE-2024-5535 and CVE-2024-9143.
    - cve-2024-6119 (lower case in the original).

 -- Sebastian Andrzej Siewior <sebastian@breakpoint.cc>  Sun, 27 Oct 2024 12:38:27 +0100

openssl (3.0.14-1~deb12u2) bookworm; urgency=HIGH, binary-only=yes

  * CVE-2024-4741 (use after free), CVE-2024-2511.
  * Mentioned again: CVE-2024-5535.

 -- Sebastian Andrzej Siewior <sebastian@breakpoint.cc>  Mon, 03 Jun 2024 21:50:42 +0200

openssl (3.0.11-1~deb12u2) bookworm unstable; urgency=low
  * Fix CVE-2023-5678 and CVE-2023-12345.
 -- Someone <x@example.org>  Mon, 03 Jun 2023 21:50:42 +0200

Local variables:
mode: debian-changelog
End:
";

    #[test]
    fn entries() {
        let e = parse(LOG);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].package, "openssl");
        assert_eq!(e[0].version, "3.0.15-1~deb12u1");
        assert_eq!(e[0].distribution, "bookworm-security");
        assert_eq!(e[0].urgency, "medium");
        assert!(e[0].text.starts_with("  * New upstream version."));
        assert!(e[0].text.ends_with("+0100"));
        assert_eq!(e[1].urgency, "high");
        assert_eq!(e[2].distribution, "bookworm unstable");
    }

    #[test]
    fn cves() {
        assert_eq!(
            cves_since(LOG, None),
            [
                "CVE-2023-5678",
                "CVE-2023-12345",
                "CVE-2024-2511",
                "CVE-2024-4741",
                "CVE-2024-5535",
                "CVE-2024-6119",
                "CVE-2024-9143"
            ]
        );
        assert_eq!(
            cves_since(LOG, Some("3.0.14-1~deb12u2")),
            ["CVE-2024-5535", "CVE-2024-6119", "CVE-2024-9143"]
        );
        assert_eq!(
            cves_since(LOG, Some("3.0.15-1~deb12u1")),
            Vec::<String>::new()
        );
        assert_eq!(cves_since(LOG, Some("3.0.11-1~deb12u2")).len(), 5);
        assert_eq!(cves_since(LOG, Some("1:0")), Vec::<String>::new());
    }

    #[test]
    fn tolerant() {
        assert!(parse("").is_empty());
        assert!(parse("no header here\nCVE-2020-1234\n").is_empty());
        assert!(cves_since("garbage CVE-2020-1234", None).is_empty());
        // Not CVE ids: too few digits, glued to other words.
        let log =
            "p (1) u; urgency=low\n  * CVE-2020-123 XCVE-2020-1234 CVE-2020-12345a CVE-2021-0001\n";
        assert_eq!(cves_since(log, None), ["CVE-2021-0001"]);
        let e = parse("\u{0}\u{ff}junk\np (1.0) ;\np (1.0) UNRELEASED; urgency=critical\n");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].urgency, "critical");
        assert_eq!(e[0].distribution, "UNRELEASED");
    }
}
