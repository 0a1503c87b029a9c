//! A catalog directory packed as the server's intake takes it.

use std::path::Path;

/// Packs a catalog's `metadata/` and `targets/` into a tar file for pushing.
pub fn pack(repo: &Path) -> anyhow::Result<tempfile::NamedTempFile> {
    pack_except(repo, &std::collections::BTreeSet::new())
}

/// Like [`pack`], leaving out the target files whose sha256 is in `present`.
pub fn pack_except(
    repo: &Path,
    present: &std::collections::BTreeSet<String>,
) -> anyhow::Result<tempfile::NamedTempFile> {
    let out = tempfile::NamedTempFile::new()?;
    let mut b = tar::Builder::new(out.reopen()?);
    for sub in ["metadata", "targets"] {
        let dir = repo.join(sub);
        if !dir.is_dir() {
            anyhow::bail!(
                "{} is not a catalog (no {sub}/): run `patchday catalog init` first",
                repo.display()
            );
        }
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let held = sub == "targets"
                && name
                    .split_once('.')
                    .is_some_and(|(sha, _)| present.contains(sha));
            if e.file_type()?.is_file() && !held {
                b.append_path_with_name(e.path(), Path::new(sub).join(e.file_name()))?;
            }
        }
    }
    b.finish()?;
    Ok(out)
}
