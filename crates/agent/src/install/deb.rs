//! The dpkg backend: `dpkg -i`, then dpkg's own view of what is installed.

use super::Outcome;
use patchday_types::PayloadRef;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How to run dpkg for this host.
#[derive(Clone, Debug)]
pub struct Dpkg {
    /// Root of the managed system (`/` on a real host).
    pub root: PathBuf,
    /// Extra dpkg arguments (for `dpkg --root` sandboxes).
    pub extra_args: Vec<String>,
}

impl Dpkg {
    fn command(&self) -> Command {
        let mut c = Command::new("dpkg");
        if self.root != Path::new("/") {
            c.arg(format!("--root={}", self.root.display()));
        }
        c.args(&self.extra_args);
        // dpkg needs the sbin directories (ldconfig, start-stop-daemon); a systemd
        // unit or cron may not have them on PATH.
        let path = std::env::var("PATH").unwrap_or_default();
        c.env(
            "PATH",
            format!("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:{path}"),
        );
        c.env("DEBIAN_FRONTEND", "noninteractive");
        c
    }

    /// Finishes what an interrupted dpkg left half-done (`dpkg --configure -a`).
    pub fn recover(&self) -> Result<(), String> {
        let status =
            std::fs::read_to_string(crate::inventory::status_path(&self.root)).unwrap_or_default();
        let pending = status.lines().any(|l| {
            l.starts_with("Status: ")
                && (l.ends_with(" unpacked")
                    || l.ends_with(" half-configured")
                    || l.ends_with(" half-installed")
                    || l.ends_with(" triggers-awaited")
                    || l.ends_with(" triggers-pending"))
        });
        if !pending {
            return Ok(());
        }
        tracing::warn!("dpkg was interrupted earlier; running dpkg --configure -a");
        let out = self
            .command()
            .args(["--configure", "-a"])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(message(&out))
        }
    }

    /// Installs the files and verifies every payload's version with dpkg's database.
    pub fn install(&self, items: &[(PayloadRef, PathBuf)]) -> Outcome {
        if let Err(e) = self.recover() {
            return Outcome::Failed(format!("dpkg --configure -a failed: {e}"));
        }
        let before_reboot = crate::inventory::reboot_required(&self.root);
        let mut c = self.command();
        c.arg("-i");
        for (_, path) in items {
            c.arg(path);
        }
        let out = match c.output() {
            Ok(o) => o,
            Err(e) => return Outcome::Failed(format!("cannot run dpkg: {e}")),
        };
        if !out.status.success() {
            return Outcome::Failed(message(&out));
        }
        let status = match std::fs::read_to_string(crate::inventory::status_path(&self.root)) {
            Ok(s) => s,
            Err(e) => {
                return Outcome::Failed(format!("cannot read dpkg status after install: {e}"))
            }
        };
        for (p, _) in items {
            let arch = if p.architecture == "all" {
                ""
            } else {
                p.architecture.as_str()
            };
            match patchday_pkg::status::installed_version(&status, &p.package, arch) {
                Some(v) if v == p.version => {}
                Some(v) => {
                    return Outcome::Failed(format!(
                        "dpkg exited 0 but reports {} at version {v}, not {}",
                        p.package, p.version
                    ))
                }
                None => {
                    return Outcome::Failed(format!(
                        "dpkg exited 0 but does not list {} as installed",
                        p.package
                    ))
                }
            }
        }
        if crate::inventory::reboot_required(&self.root) && !before_reboot
            || reboot_pkgs_name(&self.root, items)
        {
            Outcome::PendingReboot
        } else {
            Outcome::Installed
        }
    }
}

/// Whether `/run/reboot-required.pkgs` names one of the installed packages.
fn reboot_pkgs_name(root: &Path, items: &[(PayloadRef, PathBuf)]) -> bool {
    let text = std::fs::read_to_string(root.join("run/reboot-required.pkgs")).unwrap_or_default();
    text.lines().any(|l| {
        items
            .iter()
            .any(|(p, _)| l.trim() == p.package || l.trim() == p.source)
    })
}

fn message(out: &std::process::Output) -> String {
    let mut m = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if m.is_empty() {
        m = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    if m.len() > 4000 {
        let mut cut = 4000;
        while !m.is_char_boundary(cut) {
            cut -= 1;
        }
        m.truncate(cut);
    }
    format!("dpkg failed ({}): {m}", out.status)
}
