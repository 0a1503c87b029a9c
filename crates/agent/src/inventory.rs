//! Collects the host's inventory from its filesystem (`root` is `/` on a real host,
//! or an image / `dpkg --root` tree).

use anyhow::Context;
use patchday_pkg::osrelease::parse_os_release;
use patchday_pkg::status::{parse_status, parse_unfinished};
use patchday_types::{InstalledBundle, Inventory};
use std::path::Path;

/// dpkg's status file under `root`.
pub fn status_path(root: &Path) -> std::path::PathBuf {
    root.join("var/lib/dpkg/status")
}

/// Whether the host asks for a reboot (Debian's `/run/reboot-required` convention).
pub fn reboot_required(root: &Path) -> bool {
    root.join("run/reboot-required").exists() || root.join("var/run/reboot-required").exists()
}

/// Collects the inventory.
pub fn collect(root: &Path) -> anyhow::Result<Inventory> {
    let status = std::fs::read_to_string(status_path(root)).with_context(|| {
        format!(
            "cannot read {}: is this a Debian system (or the right --root)?",
            status_path(root).display()
        )
    })?;
    let os_text = std::fs::read_to_string(root.join("etc/os-release"))
        .or_else(|_| std::fs::read_to_string(root.join("usr/lib/os-release")))
        .unwrap_or_default();
    let packages = parse_status(&status);
    let architecture = dpkg_architecture(root, &packages);
    let hostname = std::fs::read_to_string(root.join("etc/hostname"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel_running = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    Ok(Inventory {
        hostname,
        os: parse_os_release(&os_text),
        architecture,
        kernel_running,
        reboot_required: reboot_required(root),
        packages,
        unfinished: parse_unfinished(&status),
        bundles: crate::install::bundle::registry(root)?
            .into_iter()
            .map(|(name, e)| InstalledBundle {
                name,
                version: e.version,
            })
            .collect(),
        // Issue 13, point 1: the baselines the agent applied and keeps applied.
        baselines: crate::install::baseline::registry(root)?
            .into_iter()
            .map(|(name, e)| patchday_types::AppliedBaseline {
                name,
                version: e.version,
            })
            .collect(),
        // Filled by the run, which knows how to call dpkg (issue 9, point 4).
        dpkg_broken: None,
    })
}

/// dpkg's native architecture: from `dpkg --print-architecture` on the live host (asked
/// once per process: it changes only when dpkg itself is replaced, and an agent collects
/// its inventory several times a run), else the architecture of the `dpkg` package in
/// the status file already parsed.
fn dpkg_architecture(root: &Path, packages: &[patchday_types::InstalledPackage]) -> String {
    static LIVE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let ask = || {
        std::process::Command::new("dpkg")
            .arg("--print-architecture")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    if root == Path::new("/") {
        if let Some(a) = LIVE.get_or_init(ask) {
            return a.clone();
        }
    }
    packages
        .iter()
        .find(|p| p.name == "dpkg")
        .map(|p| p.architecture.clone())
        .or_else(ask)
        .unwrap_or_default()
}

/// Issue 10, point 2: the labels this host reports, which group rules match: those of
/// `/etc/patchday/labels` under the managed root (one `key=value` a line, `#` comments),
/// with `--label` winning for the same key. A bad file fails the run, saying what to fix.
pub fn labels(
    cfg: &crate::run::AgentConfig,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let path = cfg.root.join("etc/patchday/labels");
    let mut labels = match std::fs::read_to_string(&path) {
        Ok(text) => patchday_core::membership::parse_labels_file(&text)
            .with_context(|| format!("{} is invalid: fix or remove it", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    labels.extend(cfg.labels.clone());
    patchday_core::membership::check_labels(&labels)
        .context("the labels from --label and /etc/patchday/labels together are refused")?;
    Ok(labels)
}
