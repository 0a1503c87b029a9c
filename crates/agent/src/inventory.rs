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
    let architecture = dpkg_architecture(root);
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
        packages: parse_status(&status),
        unfinished: parse_unfinished(&status),
        bundles: crate::install::bundle::registry(root)?
            .into_iter()
            .map(|(name, e)| InstalledBundle {
                name,
                version: e.version,
            })
            .collect(),
        // Filled by the run, which knows how to call dpkg (issue 9, point 4).
        dpkg_broken: None,
    })
}

/// dpkg's native architecture: from `dpkg --print-architecture` on the live host,
/// else the architecture of the `dpkg` package itself in the status file.
fn dpkg_architecture(root: &Path) -> String {
    if root == Path::new("/") {
        if let Ok(out) = std::process::Command::new("dpkg")
            .arg("--print-architecture")
            .output()
        {
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).trim().to_string();
            }
        }
    }
    let status = std::fs::read_to_string(status_path(root)).unwrap_or_default();
    parse_status(&status)
        .into_iter()
        .find(|p| p.name == "dpkg")
        .map(|p| p.architecture)
        .or_else(|| {
            std::process::Command::new("dpkg")
                .arg("--print-architecture")
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        })
        .unwrap_or_default()
}
