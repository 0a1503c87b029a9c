//! Synthetic Debian packages built with `dpkg-deb --build`.

use std::cmp::Ordering;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::process;
use crate::LabError;

/// The maintainer written into every synthetic package and changelog trailer.
pub const LAB_MAINTAINER: &str = "Patchday Lab <lab@patchday.invalid>";

/// The changelog date used unless the spec says otherwise (time is a parameter, never read from the clock).
pub const DEFAULT_CHANGELOG_DATE: &str = "Thu, 01 Jan 2026 00:00:00 +0000";

/// One entry of a package's Debian changelog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogItem {
    /// The version this entry describes.
    pub version: String,
    /// The change text; each line becomes one `  * ` bullet. May name CVE ids.
    pub text: String,
}

/// What a synthetic package contains; make one with `DebSpec::new` and the builder methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebSpec {
    /// Package name.
    pub name: String,
    /// Package version (may carry an epoch).
    pub version: String,
    /// Architecture; "all" by default.
    pub architecture: String,
    /// Source package name and version, when they differ from the binary's.
    pub source: Option<(String, String)>,
    /// The Depends field, verbatim.
    pub depends: Option<String>,
    /// Files: absolute path in the package, contents, permission bits.
    pub files: Vec<(String, Vec<u8>, u32)>,
    /// Changelog entries, in any order; written newest first.
    pub changelog: Vec<ChangelogItem>,
    /// Extra postinst shell code, run under `#!/bin/sh` and `set -e` for every postinst call.
    pub postinst: Option<String>,
    /// Postinst asks for a reboot like Debian's update-notifier hook (/run/reboot-required and .pkgs).
    pub reboot_required: bool,
    /// Postinst fails on `configure`, leaving the package half-configured.
    pub fail_postinst: bool,
    /// The date on every changelog trailer line (RFC 2822).
    pub changelog_date: String,
}

impl DebSpec {
    /// A package with no files, architecture "all" and a one-entry changelog for `version`.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> DebSpec {
        DebSpec {
            name: name.into(),
            version: version.into(),
            architecture: "all".to_string(),
            source: None,
            depends: None,
            files: Vec::new(),
            changelog: Vec::new(),
            postinst: None,
            reboot_required: false,
            fail_postinst: false,
            changelog_date: DEFAULT_CHANGELOG_DATE.to_string(),
        }
    }

    /// Set the architecture.
    pub fn architecture(mut self, arch: impl Into<String>) -> Self {
        self.architecture = arch.into();
        self
    }

    /// Set the source package name and version.
    pub fn source(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.source = Some((name.into(), version.into()));
        self
    }

    /// Set the Depends field.
    pub fn depends(mut self, depends: impl Into<String>) -> Self {
        self.depends = Some(depends.into());
        self
    }

    /// Add a file at an absolute path with the given permission bits.
    pub fn file(
        mut self,
        path: impl Into<String>,
        contents: impl Into<Vec<u8>>,
        mode: u32,
    ) -> Self {
        self.files.push((path.into(), contents.into(), mode));
        self
    }

    /// Add a changelog entry.
    pub fn changelog(mut self, version: impl Into<String>, text: impl Into<String>) -> Self {
        self.changelog.push(ChangelogItem {
            version: version.into(),
            text: text.into(),
        });
        self
    }

    /// Add postinst shell code.
    pub fn postinst(mut self, script: impl Into<String>) -> Self {
        self.postinst = Some(script.into());
        self
    }

    /// Make the postinst ask for a reboot.
    pub fn reboot_required(mut self, yes: bool) -> Self {
        self.reboot_required = yes;
        self
    }

    /// Make the postinst fail.
    pub fn fail_postinst(mut self, yes: bool) -> Self {
        self.fail_postinst = yes;
        self
    }

    /// Set the changelog trailer date.
    pub fn changelog_date(mut self, date: impl Into<String>) -> Self {
        self.changelog_date = date.into();
        self
    }

    /// The file name dpkg conventions give this package: `name_version-without-epoch_arch.deb`.
    pub fn file_name(&self) -> String {
        let version = self
            .version
            .split_once(':')
            .map_or(self.version.as_str(), |(_, v)| v);
        format!("{}_{}_{}.deb", self.name, version, self.architecture)
    }

    fn invalid(&self, reason: impl Into<String>) -> LabError {
        LabError::InvalidSpec {
            name: self.name.clone(),
            reason: reason.into(),
        }
    }

    fn source_name(&self) -> &str {
        self.source
            .as_ref()
            .map_or(self.name.as_str(), |(name, _)| name.as_str())
    }

    /// The DEBIAN/control text.
    fn control(&self, installed_kib: u64) -> String {
        let mut c = format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\n",
            self.name, self.version, self.architecture
        );
        match &self.source {
            Some((name, version)) if *version != self.version => {
                c.push_str(&format!("Source: {name} ({version})\n"))
            }
            Some((name, _)) if *name != self.name => c.push_str(&format!("Source: {name}\n")),
            _ => {}
        }
        c.push_str(&format!(
            "Maintainer: {LAB_MAINTAINER}\nInstalled-Size: {installed_kib}\n"
        ));
        if let Some(depends) = &self.depends {
            c.push_str(&format!("Depends: {depends}\n"));
        }
        c.push_str("Section: misc\nPriority: optional\n");
        c.push_str(&format!(
            "Description: Patchday lab package {}\n Synthetic package built by patchday-lab for tests and demos.\n",
            self.name
        ));
        c
    }

    /// The postinst script, if the spec asks for one.
    fn postinst_script(&self) -> Option<String> {
        if self.postinst.is_none() && !self.reboot_required && !self.fail_postinst {
            return None;
        }
        let mut s = String::from("#!/bin/sh\nset -e\n");
        if let Some(body) = &self.postinst {
            s.push_str(body);
            if !body.ends_with('\n') {
                s.push('\n');
            }
        }
        if self.reboot_required {
            // As Debian's /usr/share/update-notifier/notify-reboot-required; $DPKG_ROOT keeps a sandbox honest.
            s.push_str(&format!(
                r#"if [ "$1" = configure ]; then
    mkdir -p "$DPKG_ROOT/run"
    echo "*** System restart required ***" > "$DPKG_ROOT/run/reboot-required"
    if ! grep -qs '^{name}$' "$DPKG_ROOT/run/reboot-required.pkgs"; then
        echo "{name}" >> "$DPKG_ROOT/run/reboot-required.pkgs"
    fi
fi
"#,
                name = self.name
            ));
        }
        if self.fail_postinst {
            s.push_str(&format!(
                "if [ \"$1\" = configure ]; then\n    echo \"{} postinst: failing on purpose (patchday-lab fail_postinst)\" >&2\n    exit 1\nfi\n",
                self.name
            ));
        }
        s.push_str("exit 0\n");
        Some(s)
    }

    /// The Debian changelog, newest entry first; a spec without entries gets one for its own version.
    fn changelog_text(&self) -> Result<String, LabError> {
        let mut items = self.changelog.clone();
        if items.is_empty() {
            items.push(ChangelogItem {
                version: self.version.clone(),
                text: "Built by patchday-lab.".to_string(),
            });
        }
        sort_newest_first(&mut items)?;
        let mut out = String::new();
        for item in &items {
            let security = item.text.contains("CVE-");
            let (dist, urgency) = if security {
                ("unstable-security", "high")
            } else {
                ("unstable", "medium")
            };
            out.push_str(&format!(
                "{} ({}) {dist}; urgency={urgency}\n\n",
                self.source_name(),
                item.version
            ));
            let mut any = false;
            for line in item
                .text
                .lines()
                .map(str::trim_end)
                .filter(|l| !l.trim().is_empty())
            {
                out.push_str(&format!("  * {}\n", line.trim_start()));
                any = true;
            }
            if !any {
                out.push_str("  * No change text.\n");
            }
            out.push_str(&format!(
                "\n -- {LAB_MAINTAINER}  {}\n\n",
                self.changelog_date
            ));
        }
        // Debian changelogs end with a single newline after the last trailer.
        out.pop();
        Ok(out)
    }
}

/// Order changelog items by Debian version, newest first, asking dpkg to compare.
fn sort_newest_first(items: &mut [ChangelogItem]) -> Result<(), LabError> {
    // Insertion sort: few items, and the comparison is fallible.
    for i in 1..items.len() {
        let mut j = i;
        while j > 0 && compare_versions(&items[j - 1].version, &items[j].version)? == Ordering::Less
        {
            items.swap(j - 1, j);
            j -= 1;
        }
    }
    Ok(())
}

/// Compare two Debian versions with `dpkg --compare-versions`.
pub(crate) fn compare_versions(a: &str, b: &str) -> Result<Ordering, LabError> {
    if a == b {
        return Ok(Ordering::Equal);
    }
    let out = process::output(Command::new("dpkg").args(["--compare-versions", a, "lt", b]))?;
    match out.status.code() {
        Some(0) => Ok(Ordering::Less),
        Some(1) => {
            let eq =
                process::output(Command::new("dpkg").args(["--compare-versions", a, "eq", b]))?;
            Ok(if eq.status.success() {
                Ordering::Equal
            } else {
                Ordering::Greater
            })
        }
        _ => Err(process::failed(
            format!("dpkg --compare-versions {a} lt {b}"),
            &out,
        )),
    }
}

/// Build the package into `out_dir` with `dpkg-deb --build --root-owner-group`; returns the .deb path.
pub fn build_deb(spec: &DebSpec, out_dir: &Path) -> Result<PathBuf, LabError> {
    if spec.name.is_empty() || spec.version.is_empty() || spec.architecture.is_empty() {
        return Err(spec.invalid("name, version and architecture must not be empty"));
    }
    fs::create_dir_all(out_dir).map_err(|e| LabError::io("create directory", out_dir, e))?;
    let stage = tempfile::Builder::new()
        .prefix(".patchday-lab-deb-")
        .tempdir_in(out_dir)
        .map_err(|e| LabError::io("create staging directory in", out_dir, e))?;
    let root = stage.path();
    fs::set_permissions(root, fs::Permissions::from_mode(0o755))
        .map_err(|e| LabError::io("set permissions of", root, e))?;

    let mut installed_kib: u64 = 0;
    let doc = format!("/usr/share/doc/{}/changelog.Debian.gz", spec.name);
    let changelog = gzip(spec.changelog_text()?.as_bytes())
        .map_err(|e| LabError::io("compress changelog for", &doc, e))?;
    let mut files: Vec<(&str, &[u8], u32)> = spec
        .files
        .iter()
        .map(|(p, c, m)| (p.as_str(), c.as_slice(), *m))
        .collect();
    if spec.files.iter().any(|(p, _, _)| *p == doc) {
        return Err(spec.invalid(format!(
            "{doc} is written by build_deb from the changelog items; do not add it as a file"
        )));
    }
    files.push((&doc, &changelog, 0o644));
    for (path, contents, mode) in files {
        let rel = Path::new(path)
            .strip_prefix("/")
            .map_err(|_| spec.invalid(format!("file path {path:?} must be absolute")))?;
        if !rel.components().all(|c| matches!(c, Component::Normal(_)))
            || rel.as_os_str().is_empty()
        {
            return Err(spec.invalid(format!("file path {path:?} must name a file without `..`")));
        }
        if rel.starts_with("DEBIAN") {
            return Err(spec.invalid(format!("file path {path:?} is reserved for control files")));
        }
        let real = root.join(rel);
        if let Some(parent) = real.parent() {
            make_dirs(root, parent)?;
        }
        fs::write(&real, contents).map_err(|e| LabError::io("write", &real, e))?;
        fs::set_permissions(&real, fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| LabError::io("set permissions of", &real, e))?;
        // Like dpkg-gencontrol: each file rounded up to whole KiB.
        installed_kib += (contents.len() as u64).div_ceil(1024);
    }

    let debian = root.join("DEBIAN");
    make_dirs(root, &debian)?;
    let control = debian.join("control");
    fs::write(&control, spec.control(installed_kib))
        .map_err(|e| LabError::io("write", &control, e))?;
    if let Some(script) = spec.postinst_script() {
        let postinst = debian.join("postinst");
        fs::write(&postinst, script).map_err(|e| LabError::io("write", &postinst, e))?;
        fs::set_permissions(&postinst, fs::Permissions::from_mode(0o755))
            .map_err(|e| LabError::io("set permissions of", &postinst, e))?;
    }

    let deb = out_dir.join(spec.file_name());
    process::checked(
        Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group"])
            .arg(root)
            .arg(&deb),
        || format!("dpkg-deb --build for {} {}", spec.name, spec.version),
    )?;
    Ok(deb)
}

/// Create directories down to `dir` with mode 0755 (independent of the umask).
fn make_dirs(root: &Path, dir: &Path) -> Result<(), LabError> {
    fs::create_dir_all(dir).map_err(|e| LabError::io("create directory", dir, e))?;
    let mut p = dir;
    while p != root {
        fs::set_permissions(p, fs::Permissions::from_mode(0o755))
            .map_err(|e| LabError::io("set permissions of", p, e))?;
        match p.parent() {
            Some(parent) => p = parent,
            None => break,
        }
    }
    Ok(())
}

/// gzip like `gzip -9n`: no name, no timestamp, so builds are reproducible.
fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::best());
    enc.write_all(data)?;
    enc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changelog_is_newest_first_with_trailers() {
        let spec = DebSpec::new("libdemo1", "1.2-3")
            .source("demo", "1.2-3")
            .changelog("1.2-1", "Initial release.")
            .changelog("1.2-3", "Fix CVE-2026-0001.\nFix CVE-2026-0002.")
            .changelog("1.2-2", "Bug fix.");
        let text = spec.changelog_text().expect("changelog");
        let expected = "\
demo (1.2-3) unstable-security; urgency=high

  * Fix CVE-2026-0001.
  * Fix CVE-2026-0002.

 -- Patchday Lab <lab@patchday.invalid>  Thu, 01 Jan 2026 00:00:00 +0000

demo (1.2-2) unstable; urgency=medium

  * Bug fix.

 -- Patchday Lab <lab@patchday.invalid>  Thu, 01 Jan 2026 00:00:00 +0000

demo (1.2-1) unstable; urgency=medium

  * Initial release.

 -- Patchday Lab <lab@patchday.invalid>  Thu, 01 Jan 2026 00:00:00 +0000
";
        assert_eq!(text, expected);
    }

    #[test]
    fn control_names_source_only_when_different() {
        let plain = DebSpec::new("a", "1").control(1);
        assert!(!plain.contains("Source:"));
        let other = DebSpec::new("liba1", "1+b1").source("a", "1").control(1);
        assert!(other.contains("Source: a (1)\n"), "{other}");
    }

    #[test]
    fn file_name_drops_epoch() {
        assert_eq!(
            DebSpec::new("a", "2:1.0-1")
                .architecture("amd64")
                .file_name(),
            "a_1.0-1_amd64.deb"
        );
    }
}
