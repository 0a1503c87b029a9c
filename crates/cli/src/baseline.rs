//! Issue 13, point 1: `patchday baseline new|check|diff` and `catalog add-baseline`: an
//! operator writes a TOML policy, sees what changes against the version the catalog
//! publishes, and signs it into the catalog as an update whose one payload is the policy
//! (so it goes through approvals, rings, windows and halts like every update).

use anyhow::Context;
use patchday_baseline::Policy;
use patchday_types::{PayloadKind, PayloadRef, TargetCustom};
use std::path::{Path, PathBuf};

/// Reads and checks a policy file.
pub fn read(path: &Path) -> anyhow::Result<(Policy, String)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the baseline policy {}", path.display()))?;
    let p = Policy::parse(&text).with_context(|| format!("in {}", path.display()))?;
    Ok((p, text))
}

/// Describes a policy file as a payload.
pub fn describe(path: &Path) -> anyhow::Result<PayloadRef> {
    let (p, _) = read(path)?;
    Ok(PayloadRef {
        target: p.target_name(),
        kind: PayloadKind::Baseline,
        package: p.baseline.name.clone(),
        version: p.baseline.version.clone(),
        architecture: "all".into(),
        source: p.baseline.name,
        source_version: p.baseline.version,
    })
}

/// The newest version of baseline `name` the catalog in `repo` signed (highest release
/// counter): (version, its policy file).
pub async fn published(repo: &Path, name: &str) -> anyhow::Result<Option<(String, PathBuf)>> {
    let targets = patchday_trust::catalog_targets(repo)
        .await
        .with_context(|| format!("reading the catalog in {}", repo.display()))?;
    let newest = targets
        .into_iter()
        .filter_map(|(target, custom)| match serde_json::from_value(custom) {
            Ok(TargetCustom::Payload {
                kind: PayloadKind::Baseline,
                package,
                version,
                release_counter,
                ..
            }) if package == name => Some((release_counter, target, version)),
            _ => None,
        })
        .max();
    let Some((_, target, version)) = newest else {
        return Ok(None);
    };
    // Files are kept as `targets/<sha256>.<name>`.
    let suffix = format!(".{target}");
    let dir = repo.join("targets");
    for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        if e.file_name().to_string_lossy().ends_with(&suffix) {
            return Ok(Some((version, e.path())));
        }
    }
    anyhow::bail!(
        "the catalog signs {target} but {} does not hold its file; is this the publisher's copy of the catalog?",
        dir.display()
    )
}

/// The diff of `new` against `old` as text, with a header; says so when nothing changes.
pub fn diff_text(old_label: &str, old: &str, new_label: &str, new: &str) -> String {
    let d = patchday_baseline::diff::lines(old, new);
    if !patchday_baseline::diff::changes(&d) {
        return format!("no change between {old_label} and {new_label}\n");
    }
    let mut out = format!("--- {old_label}\n+++ {new_label}\n");
    for l in d {
        out.push_str(&patchday_text::terminal(&l));
        out.push('\n');
    }
    out
}
