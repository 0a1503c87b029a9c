//! The dpkg status database (`/var/lib/dpkg/status`): which packages are installed.

use crate::control;
use patchday_types::inventory::InstalledPackage;

/// True for the `Status:` values that mean "unpacked and configured".
fn is_installed(status: &str) -> bool {
    let words: Vec<&str> = status.split_whitespace().collect();
    matches!(words.as_slice(), ["install" | "hold", "ok", "installed"])
}

/// Installed packages from a dpkg status file, in file order.
///
/// Only entries whose `Status` is `install ok installed` or `hold ok installed` count;
/// removed, half-configured and config-files-only entries are skipped, as are entries
/// without a name, version or architecture. Malformed lines are ignored.
pub fn parse_status(text: &str) -> Vec<InstalledPackage> {
    parse_where(text, is_installed)
}

/// True for the `Status:` values of an install that stopped half-way (a failed or
/// killed maintainer script, an interrupted unpack).
fn is_unfinished(status: &str) -> bool {
    matches!(
        status.split_whitespace().nth(2),
        Some(
            "unpacked"
                | "half-configured"
                | "half-installed"
                | "triggers-awaited"
                | "triggers-pending"
        )
    )
}

/// Packages that dpkg lists as present but not fully installed (unpacked,
/// half-configured, half-installed, awaiting triggers): they need fixing, whatever
/// their version says.
pub fn parse_unfinished(text: &str) -> Vec<InstalledPackage> {
    parse_where(text, is_unfinished)
}

fn parse_where(text: &str, keep: fn(&str) -> bool) -> Vec<InstalledPackage> {
    let Ok(paragraphs) = control::parse(text, false) else {
        return Vec::new();
    };
    paragraphs
        .iter()
        .filter(|p| p.get("Status").is_some_and(keep))
        .filter_map(|p| {
            let name = p.get("Package").filter(|s| !s.is_empty())?;
            let version = p.get("Version").filter(|s| !s.is_empty())?;
            let architecture = p.get("Architecture").filter(|s| !s.is_empty())?;
            let (source, source_version) = control::source_of(p.get("Source"), name, version)
                .unwrap_or_else(|| (name.to_string(), version.to_string()));
            Some(InstalledPackage {
                name: name.to_string(),
                version: version.to_string(),
                architecture: architecture.to_string(),
                source,
                source_version,
            })
        })
        .collect()
}

/// The installed version of `name` for architecture `arch` (an `all` package matches any
/// architecture, and `arch == "all"` matches any installed instance).
pub fn installed_version(text: &str, name: &str, arch: &str) -> Option<String> {
    parse_status(text)
        .into_iter()
        .find(|p| {
            p.name == name && (arch == "all" || p.architecture == "all" || p.architecture == arch)
        })
        .map(|p| p.version)
}

/// Issue 10, point 3: whether dpkg marks the installed package `name` `Essential: yes`
/// (dpkg refuses to remove it without a force option the agent never uses).
pub fn is_essential(text: &str, name: &str) -> bool {
    crate::control::parse(text, false)
        .unwrap_or_default()
        .iter()
        .any(|p| {
            p.get("Package") == Some(name)
                && p.get("Essential")
                    .is_some_and(|e| e.trim().eq_ignore_ascii_case("yes"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
Package: libssl3
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Source: openssl (3.0.15-1~deb12u1)
Version: 3.0.15-1~deb12u1+b1
Description: Secure Sockets Layer toolkit - shared libraries
 This package is part of the OpenSSL project's implementation.

Package: libssl3
Status: install ok installed
Architecture: i386
Source: openssl
Version: 3.0.11-1~deb12u2

Package: bash
Essential: yes
Status: hold ok installed
Architecture: amd64
Version: 5.2.15-2+b7
Conffiles:
 /etc/bash.bashrc 89269e1298235f1b12b4c16e4065ad0d
 /etc/skel/.bashrc 0cd0dc6d6e1a6fdc64e1e5f8a5b1e0a1

Package: removed-pkg
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1

Package: half
Status: install ok half-configured
Architecture: amd64
Version: 2.0-1

Package: tzdata
Status: install ok installed
Architecture: all
Version: 2024a-0+deb12u1
this line is garbage
";

    #[test]
    fn installed_only() {
        let pkgs = parse_status(STATUS);
        let names: Vec<&str> = pkgs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["libssl3", "libssl3", "bash", "tzdata"]);
        assert_eq!(pkgs[0].source, "openssl");
        assert_eq!(pkgs[0].source_version, "3.0.15-1~deb12u1");
        assert_eq!(pkgs[0].version, "3.0.15-1~deb12u1+b1");
        assert_eq!(pkgs[1].source_version, "3.0.11-1~deb12u2");
        assert_eq!(pkgs[2].source, "bash");
        assert_eq!(pkgs[2].source_version, "5.2.15-2+b7");
        assert_eq!(pkgs[3].architecture, "all");
    }

    #[test]
    fn unfinished_installs_are_listed_apart() {
        let text = "Package: a\nStatus: install ok half-configured\nVersion: 2\nArchitecture: all\n\nPackage: b\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n\nPackage: c\nStatus: deinstall ok config-files\nVersion: 1\nArchitecture: all\n";
        let names: Vec<String> = parse_unfinished(text).into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["a"]);
        assert_eq!(parse_status(text).len(), 1);
    }

    #[test]
    fn lookup_by_arch() {
        assert_eq!(
            installed_version(STATUS, "libssl3", "i386").as_deref(),
            Some("3.0.11-1~deb12u2")
        );
        assert_eq!(
            installed_version(STATUS, "libssl3", "amd64").as_deref(),
            Some("3.0.15-1~deb12u1+b1")
        );
        assert_eq!(installed_version(STATUS, "libssl3", "arm64"), None);
        assert_eq!(
            installed_version(STATUS, "tzdata", "arm64").as_deref(),
            Some("2024a-0+deb12u1")
        );
        assert_eq!(installed_version(STATUS, "removed-pkg", "amd64"), None);
        assert_eq!(installed_version(STATUS, "half", "amd64"), None);
    }

    #[test]
    fn empty_and_garbage() {
        assert!(parse_status("").is_empty());
        assert!(parse_status("\u{0}\u{1}binary junk\n\n\n:::\n").is_empty());
    }

    #[test]
    fn this_machine() {
        // The real status file, when there is one: every entry must carry a version dpkg accepts.
        let Ok(text) = std::fs::read_to_string("/var/lib/dpkg/status") else {
            return;
        };
        let pkgs = parse_status(&text);
        assert!(!pkgs.is_empty());
        for p in &pkgs {
            assert!(
                crate::version::compare_deb(&p.version, &p.source_version).is_ok(),
                "{p:?}"
            );
        }
    }
}
