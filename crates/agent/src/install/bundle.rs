//! The bundle backend, for software without a package manager.
//!
//! A bundle is a `tar.zst` with `manifest.json` (`name`, `version`, `install_dir`)
//! and the files to place under `install_dir`, at the archive's top (`./` prefixes, as
//! `tar -C dir .` writes them, are fine). Phases:
//! 1. stage: unpack into `<install_dir>.patchday-new` (path-checked);
//! 2. apply: rename the live dir to `.patchday-old`, the staged dir into place;
//! 3. commit: record the new version in the registry (the commit point);
//! 4. clean: remove `.patchday-old`.
//!
//! [`recover`] finishes or undoes a run that died between any two steps: before the
//! commit point the old files come back, after it the old copy is removed.

use super::Outcome;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// `manifest.json` inside a bundle.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// Bundle name (the payload's package).
    pub name: String,
    /// Version (Debian ordering).
    pub version: String,
    /// Absolute directory it owns.
    pub install_dir: String,
}

/// One registry entry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    /// Installed version.
    pub version: String,
    /// Where.
    pub install_dir: String,
}

fn registry_path(root: &Path) -> PathBuf {
    root.join("var/lib/patchday/bundles.json")
}

/// Installed bundles by name.
pub fn registry(root: &Path) -> anyhow::Result<BTreeMap<String, Entry>> {
    super::read_registry(&registry_path(root), "restore it from backup or remove it")
}

fn save_registry(root: &Path, reg: &BTreeMap<String, Entry>) -> anyhow::Result<()> {
    let p = registry_path(root);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d)?;
    }
    crate::state::write_atomic(&p, &serde_json::to_vec_pretty(reg)?, 0o644)
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut s = dir.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn live_dir(root: &Path, install_dir: &str) -> anyhow::Result<PathBuf> {
    let rel = Path::new(install_dir);
    if !rel.is_absolute()
        || rel.components().any(|c| matches!(c, Component::ParentDir))
        || rel == Path::new("/")
    {
        anyhow::bail!(
            "bundle install_dir {install_dir:?} must be an absolute path without '..' and not '/'"
        );
    }
    Ok(root.join(rel.strip_prefix("/")?))
}

/// Reads the manifest of a bundle file.
pub fn read_manifest(bundle: &Path) -> anyhow::Result<Manifest> {
    let f = std::fs::File::open(bundle)?;
    let mut ar = tar::Archive::new(zstd::Decoder::new(f).context("bundle is not zstd-compressed")?);
    for e in ar.entries().context("bundle is not a tar archive")? {
        let mut e = e.context("bundle archive is corrupt")?;
        if entry_path(&e)? == Path::new("manifest.json") {
            let mut s = String::new();
            e.by_ref().take(1 << 20).read_to_string(&mut s)?;
            return serde_json::from_str(&s).context("bundle manifest.json is invalid");
        }
    }
    anyhow::bail!("bundle has no manifest.json")
}

/// An entry's path without `.` components: `tar -C dir .` writes `./manifest.json`,
/// `./bin/tool` (and `./` itself, which becomes the empty path).
fn entry_path<R: Read>(e: &tar::Entry<'_, R>) -> anyhow::Result<PathBuf> {
    Ok(e.path()?
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect())
}

/// Finishes or undoes interrupted bundle installs.
pub fn recover(root: &Path) -> anyhow::Result<()> {
    for (name, entry) in registry(root)? {
        let live = live_dir(root, &entry.install_dir)?;
        let old = sibling(&live, ".patchday-old");
        let new = sibling(&live, ".patchday-new");
        if new.exists() {
            std::fs::remove_dir_all(&new)?;
        }
        if old.exists() {
            let live_version = std::fs::read(live.join(".patchday-manifest.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
                .map(|m| m.version);
            if live_version.as_deref() == Some(entry.version.as_str()) {
                // Committed: the old copy is garbage.
                std::fs::remove_dir_all(&old)?;
            } else {
                tracing::warn!(bundle = %name, "restoring the previous version after an interrupted install");
                if live.exists() {
                    std::fs::remove_dir_all(&live)?;
                }
                std::fs::rename(&old, &live)?;
            }
        }
    }
    Ok(())
}

/// Installs a verified bundle file.
pub fn install(root: &Path, bundle: &Path, expect_name: &str, expect_version: &str) -> Outcome {
    match try_install(root, bundle, expect_name, expect_version) {
        Ok(()) => Outcome::Installed,
        Err(e) => Outcome::Failed(format!("{e:#}")),
    }
}

fn try_install(
    root: &Path,
    bundle: &Path,
    expect_name: &str,
    expect_version: &str,
) -> anyhow::Result<()> {
    recover(root)?;
    let m = read_manifest(bundle)?;
    if m.name != expect_name || m.version != expect_version {
        anyhow::bail!(
            "bundle manifest says {} {} but the signed catalog says {expect_name} {expect_version}",
            m.name,
            m.version
        );
    }
    let live = live_dir(root, &m.install_dir)?;
    let new = sibling(&live, ".patchday-new");
    let old = sibling(&live, ".patchday-old");
    if new.exists() {
        std::fs::remove_dir_all(&new)?;
    }
    std::fs::create_dir_all(&new).with_context(|| format!("creating {}", new.display()))?;
    // Stage.
    let staged = (|| -> anyhow::Result<()> {
        let f = std::fs::File::open(bundle)?;
        let mut ar = tar::Archive::new(zstd::Decoder::new(f)?);
        ar.set_preserve_permissions(true);
        for e in ar.entries()? {
            let mut e = e?;
            let path = entry_path(&e)?;
            // The manifest, and the `./` entry of `tar -C dir .` (the install dir itself).
            if path == Path::new("manifest.json") || path.as_os_str().is_empty() {
                continue;
            }
            if path
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
            {
                anyhow::bail!("bundle entry {path:?} escapes the install directory");
            }
            let kind = e.header().entry_type();
            if !(kind.is_file() || kind.is_dir()) {
                anyhow::bail!("bundle entry {path:?} is not a plain file or directory");
            }
            e.unpack_in(&new)
                .with_context(|| format!("unpacking {path:?} (disk full?)"))?;
        }
        crate::state::write_atomic(
            &new.join(".patchday-manifest.json"),
            &serde_json::to_vec(&m)?,
            0o644,
        )
    })();
    if let Err(e) = staged {
        let _ = std::fs::remove_dir_all(&new);
        return Err(e);
    }
    // Apply.
    let had_old = live.exists();
    if had_old {
        std::fs::rename(&live, &old).with_context(|| format!("moving {} aside", live.display()))?;
    }
    if let Err(e) = std::fs::rename(&new, &live) {
        if had_old {
            let _ = std::fs::rename(&old, &live);
        }
        let _ = std::fs::remove_dir_all(&new);
        return Err(e).context("swapping the new version in; the old version was restored");
    }
    // Commit.
    let mut reg = registry(root)?;
    reg.insert(
        m.name.clone(),
        Entry {
            version: m.version.clone(),
            install_dir: m.install_dir.clone(),
        },
    );
    if let Err(e) = save_registry(root, &reg) {
        let _ = std::fs::remove_dir_all(&live);
        if had_old {
            let _ = std::fs::rename(&old, &live);
        }
        return Err(e).context("recording the bundle; the old version was restored");
    }
    if had_old {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}
