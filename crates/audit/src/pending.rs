//! The CVEs that pending security updates fix, read from the `changelog.Debian.gz` of
//! the fixed `.deb` files found in a directory (`apt-get download`, or apt's cache
//! `/var/cache/apt/archives`). Reads files only: it downloads nothing.

use crate::advisory::VersionScheme;
use crate::model::{Facts, Finding, FindingKind, Outcome};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn compare_deb(a: &str, b: &str) -> Ordering {
    VersionScheme::Debian.compare(a, b)
}

/// What the enrichment did, so the caller can say it (the library prints nothing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PendingCves {
    /// `.deb` files read.
    pub debs_read: usize,
    /// Missing-update findings that received at least one CVE id from a changelog.
    pub enriched: usize,
    /// Missing-update findings with no newer `.deb` of theirs in the directory.
    pub without_deb: usize,
    /// Files that could not be read, with the reason.
    pub errors: Vec<(PathBuf, String)>,
}

/// Package name and version from a `.deb` file name (`name_version_arch.deb`, the epoch's
/// colon written `%3a` as apt and `apt-get download` write it).
pub fn deb_file_name_parts(file_name: &str) -> Option<(String, String)> {
    let stem = file_name.strip_suffix(".deb")?;
    let mut parts = stem.splitn(3, '_');
    let (name, version, arch) = (parts.next()?, parts.next()?, parts.next()?);
    if name.is_empty() || version.is_empty() || arch.is_empty() {
        return None;
    }
    let version = version.replace("%3a", ":").replace("%3A", ":");
    Some((name.to_string(), version))
}

/// One `.deb` read from the directory.
struct ReadDeb {
    package: String,
    version: String,
    source: String,
    source_version: String,
    changelog: Option<String>,
}

/// For each failing missing-update finding whose package has a newer `.deb` in
/// `debs_dir`, adds to `Finding.ids` the CVEs its changelog names in entries newer
/// than the installed source version. A package without a newer `.deb` of its own, or
/// whose doc directory is a symlink (no changelog of its own), uses the changelog of the
/// newest `.deb` of the same source in the directory. Only `.deb` files named after a
/// finding's package (or not named `name_version_arch.deb`) are opened.
pub fn pending_update_cves(
    findings: &mut [Finding],
    facts: &Facts,
    debs_dir: &Path,
) -> PendingCves {
    let mut summary = PendingCves::default();
    // Installed version per package name (the lowest when several architectures differ).
    let mut installed: BTreeMap<&str, (&str, &str, &str)> = BTreeMap::new();
    for p in &facts.packages {
        let source_version = if p.source_version.is_empty() {
            p.version.as_str()
        } else {
            p.source_version.as_str()
        };
        let entry = installed.entry(p.name.as_str()).or_insert((
            p.version.as_str(),
            p.source.as_str(),
            source_version,
        ));
        if compare_deb(&p.version, entry.0) == Ordering::Less {
            *entry = (p.version.as_str(), p.source.as_str(), source_version);
        }
    }
    let wanted: BTreeSet<&str> = findings
        .iter()
        .filter(|f| f.kind == FindingKind::MissingUpdate && f.outcome == Outcome::Fail)
        .map(|f| f.subject.as_str())
        .collect();
    if wanted.is_empty() {
        return summary;
    }
    let entries = match std::fs::read_dir(debs_dir) {
        Ok(e) => e,
        Err(e) => {
            summary.errors.push((debs_dir.to_path_buf(), e.to_string()));
            return summary;
        }
    };
    // Package name -> the debs of it in the directory.
    let mut debs: BTreeMap<String, Vec<ReadDeb>> = BTreeMap::new();
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let Some(file_name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        if !file_name.ends_with(".deb") || !path.is_file() {
            continue;
        }
        // Skip the packages nobody asked about without opening them; a name that is
        // not `name_version_arch.deb` is opened to learn what it is.
        if let Some((name, _)) = deb_file_name_parts(&file_name) {
            if !wanted.contains(name.as_str()) {
                continue;
            }
        }
        match patchday_pkg::deb::read_deb(&path) {
            Ok(deb) => {
                summary.debs_read += 1;
                debs.entry(deb.info.package.clone())
                    .or_default()
                    .push(ReadDeb {
                        package: deb.info.package.clone(),
                        version: deb.info.version,
                        source: deb.info.source,
                        source_version: deb.info.source_version,
                        changelog: deb.changelog,
                    });
            }
            Err(e) => summary.errors.push((path.clone(), e.to_string())),
        }
    }

    for f in findings
        .iter_mut()
        .filter(|f| f.kind == FindingKind::MissingUpdate && f.outcome == Outcome::Fail)
    {
        let Some(&(version, source, source_version)) = installed.get(f.subject.as_str()) else {
            continue;
        };
        // The newest .deb of this package newer than what is installed; else, since a
        // changelog belongs to the source, the newest .deb of the same source above the
        // installed source version.
        let own = debs.get(&f.subject).and_then(|list| {
            list.iter()
                .filter(|d| compare_deb(&d.version, version) == Ordering::Greater)
                .max_by(|a, b| compare_deb(&a.version, &b.version))
        });
        let same_source = || {
            debs.values()
                .flatten()
                .filter(|d| {
                    d.source == source
                        && d.changelog.is_some()
                        && compare_deb(&d.source_version, source_version) == Ordering::Greater
                })
                .max_by(|a, b| compare_deb(&a.source_version, &b.source_version))
        };
        let chosen = match own {
            Some(d) if d.changelog.is_some() => Some(d),
            _ => same_source(),
        };
        let Some((deb, text)) = chosen.and_then(|d| d.changelog.as_deref().map(|t| (d, t))) else {
            if own.is_none() {
                summary.without_deb += 1;
            }
            continue;
        };
        let cves = patchday_pkg::changelog::cves_since(text, Some(source_version));
        if cves.is_empty() {
            continue;
        }
        summary.enriched += 1;
        f.reason.push_str(&format!(
            "; the changelog of {} {} names {} CVE(s) fixed since {source_version}",
            deb.package,
            deb.version,
            cves.len()
        ));
        let mut ids: BTreeSet<String> = f.ids.drain(..).collect();
        ids.extend(cves);
        f.ids = ids.into_iter().collect();
    }
    summary
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::Fix;
    use patchday_types::InstalledPackage;
    use std::io::Write as _;
    use std::process::Command;

    fn missing(name: &str) -> Finding {
        Finding {
            check: "missing-security-update".into(),
            kind: FindingKind::MissingUpdate,
            outcome: Outcome::Fail,
            subject: name.into(),
            reason: format!("installed {name} is lower than the security version"),
            remediation: String::new(),
            ids: vec!["DSA-9999-1".into()],
            severity: None,
            known_exploited: false,
            fix: Some(Fix {
                source: "demo".into(),
                version: "1.0-1+deb12u2".into(),
            }),
        }
    }

    /// Builds `name_version_all.deb` in `out` with `dpkg-deb --build --root-owner-group`;
    /// with a changelog of its own, or with its doc directory a symlink to `demo`'s.
    pub(crate) fn build_deb(
        work: &Path,
        out: &Path,
        name: &str,
        version: &str,
        changelog: Option<&str>,
    ) {
        let root = work.join(format!("{name}-{version}"));
        std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
        std::fs::write(
            root.join("DEBIAN/control"),
            format!(
                "Package: {name}\nVersion: {version}\nArchitecture: all\nSource: demo\n\
                 Maintainer: Test <t@example.org>\nDescription: test package\n"
            ),
        )
        .unwrap();
        let doc = root.join("usr/share/doc");
        std::fs::create_dir_all(&doc).unwrap();
        match changelog {
            Some(text) => {
                std::fs::create_dir_all(doc.join(name)).unwrap();
                let file =
                    std::fs::File::create(doc.join(name).join("changelog.Debian.gz")).unwrap();
                let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
                gz.write_all(text.as_bytes()).unwrap();
                gz.finish().unwrap();
            }
            None => std::os::unix::fs::symlink("demo", doc.join(name)).unwrap(),
        }
        let file = out.join(format!("{name}_{}_all.deb", version.replace(':', "%3a")));
        let status = Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group", "-Zgzip"])
            .arg(&root)
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// dpkg-deb builds the test packages; without it (not a Debian host) the tests skip,
    /// or fail when `CI` is set.
    pub(crate) fn have_dpkg_deb() -> bool {
        patchday_lab::require(patchday_lab::Requirement::DPKG_DEB)
    }

    pub(crate) const CHANGELOG: &str = "\
demo (1.0-1+deb12u2) bookworm-security; urgency=high

  * Fix CVE-2099-0003 and CVE-2099-0002.

 -- Test <t@example.org>  Mon, 02 Nov 2026 10:00:00 +0000

demo (1.0-1+deb12u1) bookworm; urgency=medium

  * Fix CVE-2099-0001.

 -- Test <t@example.org>  Mon, 01 Jun 2026 10:00:00 +0000

demo (1.0-1) unstable; urgency=medium

  * Initial release; CVE-2098-0001 was fixed upstream long ago.

 -- Test <t@example.org>  Mon, 01 Jan 2026 10:00:00 +0000
";

    #[test]
    fn cves_from_the_changelog_of_the_fixed_deb() {
        if !have_dpkg_deb() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let debs = dir.path().join("debs");
        std::fs::create_dir_all(&debs).unwrap();
        build_deb(dir.path(), &debs, "demo", "1.0-1+deb12u2", Some(CHANGELOG));
        // libdemo's doc directory is a symlink to demo's: it borrows demo's changelog.
        build_deb(dir.path(), &debs, "libdemo", "1.0-1+deb12u2", None);
        // An older build than installed is not the pending update.
        build_deb(dir.path(), &debs, "demo-old", "0.9-1", Some(CHANGELOG));
        std::fs::write(debs.join("broken_1.0_all.deb"), b"not an ar archive").unwrap();

        let pkg = |name: &str, version: &str| InstalledPackage {
            name: name.into(),
            version: version.into(),
            architecture: "all".into(),
            source: "demo".into(),
            source_version: version.into(),
        };
        let facts = Facts {
            packages: vec![
                pkg("demo", "1.0-1+deb12u1"),
                pkg("libdemo", "1.0-1"),
                InstalledPackage {
                    source: "other".into(),
                    ..pkg("demo-old", "1.0-1")
                },
                InstalledPackage {
                    source: "absent".into(),
                    ..pkg("absent", "1.0-1")
                },
                pkg("libdemo2", "1.0-1+deb12u1"),
            ],
            ..Facts::default()
        };
        let mut findings = vec![
            missing("demo"),
            missing("libdemo"),
            missing("demo-old"),
            missing("absent"),
            missing("broken"),
            missing("libdemo2"),
        ];
        let summary = pending_update_cves(&mut findings, &facts, &debs);
        assert_eq!(summary.debs_read, 3, "{summary:?}");
        assert_eq!(summary.enriched, 3);
        // absent and demo-old (its .deb is older); broken is not installed.
        assert_eq!(summary.without_deb, 2);
        assert_eq!(summary.errors.len(), 1);
        assert!(summary.errors[0].0.ends_with("broken_1.0_all.deb"));

        // Installed deb12u1: only the entry above it counts, merged with existing ids.
        assert_eq!(
            findings[0].ids,
            vec!["CVE-2099-0002", "CVE-2099-0003", "DSA-9999-1"]
        );
        assert!(
            findings[0].reason.contains("names 2 CVE(s)"),
            "{}",
            findings[0].reason
        );
        // Installed 1.0-1: both later entries, from demo's changelog.
        assert_eq!(
            findings[1].ids,
            vec![
                "CVE-2099-0001",
                "CVE-2099-0002",
                "CVE-2099-0003",
                "DSA-9999-1"
            ]
        );
        assert_eq!(findings[2].ids, vec!["DSA-9999-1"]);
        assert_eq!(findings[3].ids, vec!["DSA-9999-1"]);
        // No .deb of its own: demo's, the same source, names what it fixes.
        assert_eq!(
            findings[5].ids,
            vec!["CVE-2099-0002", "CVE-2099-0003", "DSA-9999-1"]
        );
        assert!(findings[5]
            .reason
            .contains("changelog of demo 1.0-1+deb12u2"));
    }

    #[test]
    fn file_names() {
        assert_eq!(
            deb_file_name_parts("openssh-client_1%3a9.2p1-2+deb12u9_amd64.deb"),
            Some(("openssh-client".into(), "1:9.2p1-2+deb12u9".into()))
        );
        assert_eq!(deb_file_name_parts("demo.deb"), None);
        assert_eq!(deb_file_name_parts("a_1_all.udeb"), None);
    }

    #[test]
    fn a_missing_directory_is_reported_not_fatal() {
        let mut findings = vec![missing("demo")];
        let s = pending_update_cves(
            &mut findings,
            &Facts::default(),
            Path::new("/nonexistent/x"),
        );
        assert_eq!(s.errors.len(), 1);
        assert_eq!(findings[0].ids, vec!["DSA-9999-1"]);
    }
}
