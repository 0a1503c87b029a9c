//! Genuine Debian security updates, found in apt's existing lists and fetched with `apt-get download`.

use std::cmp::Ordering;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::deb::compare_versions;
use crate::process;
use crate::LabError;

/// Small Debian 12 libraries that have had security updates; tried in this order.
pub const DEFAULT_REAL_UPDATE_CANDIDATES: &[&str] = &[
    "libexpat1",
    "liblzma5",
    "libjq1",
    "libbrotli1",
    "libpcre2-8-0",
    // Issue 8 (CI must prove the claims): the names above had no security update newer
    // than the point release in December 2026, so CI would have found none.
    "libnghttp2-14",
];

/// The longest we wait for one `apt-get download`.
pub const DOWNLOAD_LIMIT: Duration = Duration::from_secs(60);

/// A package with a version in the release's main suite and a newer one in its `-security` suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealUpdate {
    /// Binary package name.
    pub package: String,
    /// Version in the main suite (e.g. bookworm).
    pub old_version: String,
    /// Newer version in the security suite (e.g. bookworm-security).
    pub new_version: String,
    /// Architecture of the packages ("amd64", "all", ...).
    pub architecture: String,
}

/// One `apt-cache madison` line.
#[derive(Debug, PartialEq, Eq)]
struct MadisonLine {
    version: String,
    suite: String,
    architecture: String,
}

/// Parse `apt-cache madison` output: `pkg | version | URL suite/component arch Packages`.
fn parse_madison(text: &str) -> Vec<MadisonLine> {
    text.lines()
        .filter_map(|line| {
            let mut cols = line.split('|').map(str::trim);
            let (_pkg, version, origin) = (cols.next()?, cols.next()?, cols.next()?);
            let words: Vec<&str> = origin.split_whitespace().collect();
            if words.last() != Some(&"Packages") || words.len() < 4 {
                return None;
            }
            let suite = words[1].split('/').next()?.to_string();
            Some(MadisonLine {
                version: version.to_string(),
                suite,
                architecture: words[2].to_string(),
            })
        })
        .collect()
}

/// From madison lines, the main-suite version and the newest newer `-security` version.
fn pick_update(package: &str, lines: &[MadisonLine]) -> Result<Option<RealUpdate>, LabError> {
    let Some(new) = lines.iter().find(|l| l.suite.ends_with("-security")) else {
        return Ok(None);
    };
    let release = new.suite.trim_end_matches("-security");
    let Some(old) = lines
        .iter()
        .find(|l| l.suite == release && l.architecture == new.architecture)
    else {
        return Ok(None);
    };
    if compare_versions(&old.version, &new.version)? != Ordering::Less {
        return Ok(None);
    }
    Ok(Some(RealUpdate {
        package: package.to_string(),
        old_version: old.version.clone(),
        new_version: new.version.clone(),
        architecture: new.architecture.clone(),
    }))
}

/// The first candidate (or default candidate when `candidates` is empty) that has a security update over the main suite.
///
/// Reads apt's existing lists only (never runs `apt-get update`). `Ok(None)`: the lists exist but no candidate has
/// such a pair. `Err(AptListsMissing)`: there are no lists at all (`is_unavailable()` is true; tests skip).
pub fn find_real_update(candidates: &[&str]) -> Result<Option<RealUpdate>, LabError> {
    let candidates = if candidates.is_empty() {
        DEFAULT_REAL_UPDATE_CANDIDATES
    } else {
        candidates
    };
    let mut any_listed = false;
    for package in candidates {
        let out = process::output_within(
            Command::new("apt-cache").args(["madison", package]),
            Duration::from_secs(30),
            "apt-cache madison",
        )?;
        let lines = parse_madison(&String::from_utf8_lossy(&out.stdout));
        any_listed |= !lines.is_empty();
        if let Some(update) = pick_update(package, &lines)? {
            return Ok(Some(update));
        }
    }
    if !any_listed {
        let dir = apt_lists_dir();
        let has_lists = fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
            })
            .unwrap_or(false);
        if !has_lists {
            return Err(LabError::AptListsMissing { dir });
        }
    }
    Ok(None)
}

/// Where apt keeps its lists, as apt-config says (default /var/lib/apt/lists).
fn apt_lists_dir() -> PathBuf {
    let out =
        process::output(Command::new("apt-config").args(["shell", "D", "Dir::State::lists/d"]));
    out.ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let value = text
                .trim()
                .strip_prefix("D=")?
                .trim_matches('\'')
                .to_string();
            (!value.is_empty()).then(|| PathBuf::from(value))
        })
        .unwrap_or_else(|| PathBuf::from("/var/lib/apt/lists"))
}

/// Download the old and the new version into `dest` with one `apt-get download`; returns (old .deb, new .deb).
///
/// Files already in `dest` are reused. The download is limited to `DOWNLOAD_LIMIT`; an unreachable archive gives
/// `RegistryUnreachable` or `Timeout` (both `is_unavailable()`).
pub fn download_real_update(u: &RealUpdate, dest: &Path) -> Result<(PathBuf, PathBuf), LabError> {
    fs::create_dir_all(dest).map_err(|e| LabError::io("create directory", dest, e))?;
    // apt names the file with the epoch's ':' URL-escaped.
    let file = |version: &str| {
        dest.join(format!(
            "{}_{}_{}.deb",
            u.package,
            version.replace(':', "%3a"),
            u.architecture
        ))
    };
    let (old, new) = (file(&u.old_version), file(&u.new_version));
    let wanted: Vec<String> = [(&old, &u.old_version), (&new, &u.new_version)]
        .into_iter()
        .filter(|(path, _)| !path.is_file())
        .map(|(_, version)| format!("{}={version}", u.package))
        .collect();
    if wanted.is_empty() {
        return Ok((old, new));
    }
    let what = format!("apt-get download {}", wanted.join(" "));
    let mut cmd = Command::new("apt-get");
    cmd.current_dir(dest)
        .args([
            "-q",
            "-o",
            "Acquire::Retries=0",
            "-o",
            "Acquire::http::Timeout=20",
            "-o",
            "Acquire::https::Timeout=20",
        ])
        .arg("download")
        .args(&wanted);
    let out = process::output_within(&mut cmd, DOWNLOAD_LIMIT, &what)?;
    if !out.status.success() {
        let detail = process::tail(&out);
        let unreachable = [
            "Failed to fetch",
            "Could not resolve",
            "Temporary failure",
            "Unable to connect",
            "Connection",
        ]
        .iter()
        .any(|needle| detail.contains(needle));
        return Err(if unreachable {
            LabError::RegistryUnreachable {
                package: wanted.join(" "),
                detail,
            }
        } else {
            process::failed(format!("{what} in {}", dest.display()), &out)
        });
    }
    for path in [&old, &new] {
        if !path.is_file() {
            return Err(LabError::CommandFailed {
                what,
                status: "exit code 0".to_string(),
                detail: format!("expected {} but it is not there", path.display()),
            });
        }
    }
    Ok((old, new))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MADISON: &str = " libexpat1 | 2.5.0-1+deb12u5 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
 libexpat1 | 2.5.0-1+deb12u2 | http://deb.debian.org/debian bookworm/main amd64 Packages
 libexpat1 | 2.5.0-1 | http://deb.debian.org/debian bookworm/main Sources
";

    #[test]
    fn madison_lines_are_parsed() {
        let lines = parse_madison(MADISON);
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            MadisonLine {
                version: "2.5.0-1+deb12u5".into(),
                suite: "bookworm-security".into(),
                architecture: "amd64".into()
            }
        );
    }

    #[test]
    fn update_pairs_main_with_security() {
        let update = pick_update("libexpat1", &parse_madison(MADISON))
            .expect("dpkg")
            .expect("an update");
        assert_eq!(update.old_version, "2.5.0-1+deb12u2");
        assert_eq!(update.new_version, "2.5.0-1+deb12u5");
        assert_eq!(update.architecture, "amd64");
        let only_main: Vec<_> = parse_madison(MADISON).into_iter().skip(1).collect();
        assert_eq!(pick_update("libexpat1", &only_main).expect("dpkg"), None);
    }
}
