//! Issue 14, point 5: the folder scan a baseline asks of the agent. Download and
//! instant-messenger transfer folders, named by glob (`/home/*/Downloads`), are watched
//! for finished files; each is scanned by clamd and a hit is moved into a root-only
//! quarantine. This module owns the `[scan]` table (read strictly, checked) and the
//! expansion of its folder globs on a host; the agent owns the watching and the moving.

use crate::{BaselineError, Result};
use patchday_types::glob::{self, Case};
use serde::{Deserialize, Serialize};
use std::path::{Component, Path, PathBuf};

/// The `[scan]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scan {
    /// Folders to watch (absolute; `*`, `?` and `[...]` within a path segment:
    /// `/home/*/Downloads`). Only files directly in a folder are scanned.
    pub folders: Vec<String>,
    /// clamd's socket: `unix:/run/clamav/clamd.ctl` or `tcp:127.0.0.1:3310`.
    #[serde(default = "default_clamd")]
    pub clamd: String,
    /// Root-only directory hits are moved to (absolute, outside every watched folder).
    #[serde(default = "default_quarantine")]
    pub quarantine: String,
    /// Files larger than this many MiB are not scanned; they are reported as unscanned.
    /// Keep it at or below clamd's `StreamMaxLength`.
    #[serde(default = "default_max_file_mib")]
    pub max_file_mib: u64,
    /// What happens to a file clamd could not scan (down, hung, refusing) after
    /// `unscanned_after_seconds` of retries: `report` leaves it where it is and reports it
    /// as unscanned; `quarantine` also moves it into the quarantine until a later scan
    /// finds it clean (then it is put back). Either way it is retried until scanned.
    #[serde(default)]
    pub when_clamd_down: WhenClamdDown,
    /// How long a file may wait for clamd before it is reported unscanned.
    #[serde(default = "default_unscanned_after")]
    pub unscanned_after_seconds: u64,
    /// Seconds one scan may take (connect, send, answer).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// At most this many scans per second (a folder receiving thousands of files must not
    /// make the agent flood clamd).
    #[serde(default = "default_rate")]
    pub max_scans_per_second: u32,
    /// Name endings of downloads still being written; such files are skipped until they
    /// are renamed to their final name. Default: `.crdownload`, `.part`, `.partial`,
    /// `.download`, `.opdownload`, `.tmp`.
    #[serde(default = "default_partial")]
    pub partial_suffixes: Vec<String>,
}

/// What a file clamd could not scan becomes after the retry bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WhenClamdDown {
    /// Left in place, reported as unscanned, retried.
    #[default]
    Report,
    /// Moved into the quarantine, reported as unscanned, retried there; put back when clean.
    Quarantine,
}

fn default_clamd() -> String {
    "unix:/run/clamav/clamd.ctl".into()
}
fn default_quarantine() -> String {
    "/var/lib/patchday/quarantine".into()
}
fn default_max_file_mib() -> u64 {
    100
}
fn default_unscanned_after() -> u64 {
    300
}
fn default_timeout() -> u64 {
    60
}
fn default_rate() -> u32 {
    20
}
fn default_partial() -> Vec<String> {
    [
        ".crdownload",
        ".part",
        ".partial",
        ".download",
        ".opdownload",
        ".tmp",
    ]
    .map(String::from)
    .to_vec()
}

/// Most folder globs in one policy.
const MAX_FOLDERS: usize = 64;

impl Scan {
    /// Checks globs, addresses, paths and bounds.
    pub fn check(&self) -> Result<()> {
        let err = |m: String| Err(BaselineError::Policy(m));
        if self.folders.is_empty() || self.folders.len() > MAX_FOLDERS {
            return err(format!(
                "scan.folders must list 1 to {MAX_FOLDERS} folders, e.g. [\"/home/*/Downloads\"]"
            ));
        }
        for f in &self.folders {
            check_folder(f)?;
        }
        self.clamd
            .parse::<patchday_clamd::ClamdAddress>()
            .map_err(|e| BaselineError::Policy(format!("scan.clamd: {e}")))?;
        let q = &self.quarantine;
        let q_segments = segments(q).ok_or_else(|| {
            BaselineError::Policy(format!(
                "scan.quarantine {q:?} must be an absolute path without '.', '..' or wildcards, e.g. /var/lib/patchday/quarantine"
            ))
        })?;
        if q_segments.is_empty() || q_segments.iter().any(|s| has_wildcard(s)) {
            return err(format!(
                "scan.quarantine {q:?} must be an absolute path without wildcards, e.g. /var/lib/patchday/quarantine"
            ));
        }
        for f in &self.folders {
            if overlaps(f, q) {
                return err(format!(
                    "scan.quarantine {q:?} lies in or above the watched folder {f:?}: the quarantine must be outside every watched folder"
                ));
            }
        }
        if !(1..=4096).contains(&self.max_file_mib) {
            return err(format!(
                "scan.max_file_mib = {} must be between 1 and 4096 (and at most clamd's StreamMaxLength)",
                self.max_file_mib
            ));
        }
        if !(5..=86_400).contains(&self.unscanned_after_seconds) {
            return err(format!(
                "scan.unscanned_after_seconds = {} must be between 5 and 86400",
                self.unscanned_after_seconds
            ));
        }
        if !(1..=3600).contains(&self.timeout_seconds) {
            return err(format!(
                "scan.timeout_seconds = {} must be between 1 and 3600",
                self.timeout_seconds
            ));
        }
        if !(1..=1000).contains(&self.max_scans_per_second) {
            return err(format!(
                "scan.max_scans_per_second = {} must be between 1 and 1000",
                self.max_scans_per_second
            ));
        }
        for s in &self.partial_suffixes {
            if s.is_empty() || s.len() > 32 || s.contains('/') {
                return err(format!(
                    "scan.partial_suffixes: {s:?} must be 1 to 32 characters without '/', e.g. \".crdownload\""
                ));
            }
        }
        Ok(())
    }

    /// The most bytes a file may have to be scanned.
    pub fn max_file_bytes(&self) -> u64 {
        self.max_file_mib.saturating_mul(1024 * 1024)
    }

    /// Whether `name` is a download still being written (skipped until renamed).
    pub fn is_partial(&self, name: &str) -> bool {
        self.partial_suffixes
            .iter()
            .any(|s| name.ends_with(s.as_str()))
    }
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The segments of an absolute path; `None` when it is not absolute or has `.`, `..`,
/// empty segments or control characters.
fn segments(path: &str) -> Option<Vec<&str>> {
    let rest = path.strip_prefix('/')?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let bad = |s: &&str| s.is_empty() || *s == "." || *s == ".." || s.chars().any(char::is_control);
    if segs.iter().any(bad) {
        return None;
    }
    Some(segs)
}

fn check_folder(f: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(BaselineError::Policy(format!(
            "scan.folders: {f:?} {why}; write an absolute folder with wildcards inside segments, e.g. \"/home/*/Downloads\""
        )))
    };
    let Some(segs) = segments(f) else {
        return bad("is not an absolute path without '.', '..' and empty segments");
    };
    if segs.is_empty() {
        return bad("is the root directory");
    }
    if segs.iter().any(|s| s.contains("**")) {
        return bad("uses '**' (folders are not watched recursively)");
    }
    if segs.first().is_some_and(|s| has_wildcard(s)) {
        return bad("starts with a wildcard");
    }
    Ok(())
}

/// Whether folder glob `folder` could name `path` or a directory below or above it.
fn overlaps(folder: &str, path: &str) -> bool {
    let (Some(f), Some(p)) = (segments(folder), segments(path)) else {
        return true;
    };
    f.iter()
        .zip(p.iter())
        .all(|(fs, ps)| glob::matches(fs, ps, Case::Sensitive))
}

/// A folder a glob named on this host.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Folder {
    /// The path on the machine (below the agent's root).
    pub path: PathBuf,
    /// The glob it matched.
    pub glob: String,
}

/// The folders `globs` name below `root` now (a new user's `Downloads` appears at the
/// next expansion). Symbolic links are followed only in the segments before the first
/// wildcard (the operator's own paths, like a `/home` that is a link); from the first
/// wildcard on, every segment must be a real directory, so a user cannot point a watched
/// folder at `/etc` with a link. At most `limit` folders are returned.
pub fn expand(root: &Path, globs: &[String], limit: usize) -> Vec<Folder> {
    let mut out = Vec::new();
    for g in globs {
        let Some(segs) = segments(g) else { continue };
        let mut current = vec![root.to_path_buf()];
        let mut wild = false;
        for seg in segs {
            wild |= has_wildcard(seg);
            let mut next = Vec::new();
            for dir in &current {
                if has_wildcard(seg) {
                    let Ok(entries) = std::fs::read_dir(dir) else {
                        continue;
                    };
                    let mut names: Vec<_> = entries
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| glob::matches(seg, n, Case::Sensitive))
                        .collect();
                    names.sort();
                    next.extend(names.into_iter().map(|n| dir.join(n)));
                } else {
                    next.push(dir.join(seg));
                }
            }
            next.retain(|p| is_dir(p, wild));
            next.truncate(limit);
            current = next;
        }
        for path in current {
            if out.len() >= limit {
                return out;
            }
            if !out.iter().any(|f: &Folder| f.path == path) {
                out.push(Folder {
                    path,
                    glob: g.clone(),
                });
            }
        }
    }
    out
}

fn is_dir(p: &Path, no_links: bool) -> bool {
    let m = if no_links {
        std::fs::symlink_metadata(p)
    } else {
        std::fs::metadata(p)
    };
    m.is_ok_and(|m| m.is_dir())
        && !p
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
}

/// A commented example, for `patchday baseline new --kind scan`.
pub fn example(name: &str) -> String {
    format!(
        r#"# Patchday baseline policy. Unknown keys are refused, so a typo cannot weaken it.
[baseline]
name = "{name}"
version = "1"
description = "Scan downloads and messenger transfers on {name}"

[scan]
# Folders whose new files are scanned (wildcards within a segment; not recursive).
# Files in them when the agent starts are scanned once too.
folders = [
  "/home/*/Downloads",
  "/home/*/Downloads/Telegram Desktop",
  "/home/*/.config/Signal/attachments.noindex",
  "/home/*/.local/share/TelegramDesktop/tdata/user_data",
]
# clamd's socket (Debian's clamav-daemon: unix:/run/clamav/clamd.ctl).
clamd = "unix:/run/clamav/clamd.ctl"
# Hits are moved here (root only, files 0600), with a record of owner, path, digest and
# signature; `patchday-agent quarantine release ID` puts one back.
quarantine = "/var/lib/patchday/quarantine"
# Larger files are reported unscanned (keep it at or below clamd's StreamMaxLength).
max_file_mib = 100
# clamd down or hung: a file is never passed as clean. It is retried; after this long it is
# reported as unscanned ("report"), or also held in the quarantine until clean ("quarantine").
when_clamd_down = "report"
unscanned_after_seconds = 300
timeout_seconds = 60
max_scans_per_second = 20
# Downloads in progress are skipped until renamed to their final name.
partial_suffixes = [".crdownload", ".part", ".partial", ".download", ".opdownload", ".tmp"]
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Policy;

    #[test]
    fn the_example_parses_with_its_defaults() {
        let p = Policy::parse(&example("laptops")).unwrap();
        let s = p.scan.unwrap();
        assert_eq!(s.folders[0], "/home/*/Downloads");
        assert_eq!(s.when_clamd_down, WhenClamdDown::Report);
        assert_eq!(s.max_file_bytes(), 100 * 1024 * 1024);
        assert!(s.is_partial("setup.exe.crdownload"));
        assert!(s.is_partial("film.mkv.part"));
        assert!(!s.is_partial("report.pdf"));
        let minimal = "[baseline]\nname = \"x\"\nversion = \"1\"\n[scan]\nfolders = [\"/home/*/Downloads\"]\n";
        let s = Policy::parse(minimal).unwrap().scan.unwrap();
        assert_eq!(s.clamd, "unix:/run/clamav/clamd.ctl");
        assert_eq!(s.quarantine, "/var/lib/patchday/quarantine");
        assert_eq!(s.unscanned_after_seconds, 300);
    }

    #[test]
    fn bad_scan_policies_are_refused_and_say_why() {
        let cases = [
            (
                "\"/home/*/Downloads\",",
                "\"home/*/Downloads\",",
                "absolute",
            ),
            ("\"/home/*/Downloads\",", "\"/home/../etc\",", "'..'"),
            ("\"/home/*/Downloads\",", "\"/\",", "root directory"),
            ("\"/home/*/Downloads\",", "\"/home/**/x\",", "recursively"),
            (
                "\"/home/*/Downloads\",",
                "\"/*/Downloads\",",
                "starts with a wildcard",
            ),
            ("unix:/run/clamav/clamd.ctl\"", "clamd\"", "unix:"),
            (
                "quarantine = \"/var/lib/patchday/quarantine\"",
                "quarantine = \"/home/alice/Downloads/q\"",
                "outside every watched folder",
            ),
            (
                "quarantine = \"/var/lib/patchday/quarantine\"",
                "quarantine = \"/home\"",
                "outside every watched folder",
            ),
            (
                "quarantine = \"/var/lib/patchday/quarantine\"",
                "quarantine = \"q\"",
                "absolute path",
            ),
            (
                "max_file_mib = 100",
                "max_file_mib = 0",
                "between 1 and 4096",
            ),
            (
                "when_clamd_down = \"report\"",
                "when_clamd_down = \"pass\"",
                "pass",
            ),
            (
                "unscanned_after_seconds = 300",
                "unscanned_after_secs = 300",
                "unscanned_after_secs",
            ),
            ("\".tmp\"]", "\"a/b\"]", "without '/'"),
        ];
        for (from, to, want) in cases {
            let text = example("laptops").replacen(from, to, 1);
            assert_ne!(text, example("laptops"), "{from} not in the example");
            let e = Policy::parse(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{from} -> {to}: {e}");
        }
    }

    #[test]
    fn globs_expand_to_real_folders_and_links_past_a_wildcard_are_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for d in [
            "home/alice/Downloads",
            "home/bob/Downloads",
            "home/carol",
            "etc",
        ] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        // Mallory's Downloads is a link to /etc: never watched.
        std::fs::create_dir_all(r.join("home/mallory")).unwrap();
        std::os::unix::fs::symlink(r.join("etc"), r.join("home/mallory/Downloads")).unwrap();
        // A file named like a folder is not a folder.
        std::fs::create_dir_all(r.join("home/dave")).unwrap();
        std::fs::write(r.join("home/dave/Downloads"), b"").unwrap();
        let globs = vec!["/home/*/Downloads".to_string(), "/srv/none".to_string()];
        let found: Vec<PathBuf> = expand(r, &globs, 100).into_iter().map(|f| f.path).collect();
        assert_eq!(
            found,
            vec![r.join("home/alice/Downloads"), r.join("home/bob/Downloads")]
        );
        assert_eq!(expand(r, &globs, 1).len(), 1, "the limit holds");
        // Before the first wildcard, the operator's own link is followed.
        std::fs::create_dir_all(r.join("data/users/erin/Downloads")).unwrap();
        std::os::unix::fs::symlink(r.join("data/users"), r.join("users")).unwrap();
        let found = expand(r, &["/users/*/Downloads".to_string()], 100);
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn overlap_is_judged_per_segment() {
        assert!(overlaps("/home/*/Downloads", "/home/alice/Downloads/q"));
        assert!(overlaps("/home/*/Downloads", "/home"));
        assert!(!overlaps(
            "/home/*/Downloads",
            "/var/lib/patchday/quarantine"
        ));
        assert!(!overlaps("/home/*/Downloads", "/home/alice/quarantine"));
    }
}
