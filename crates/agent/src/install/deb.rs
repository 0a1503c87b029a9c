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
    ///
    /// A failed `dpkg --configure -a` no longer stops the install (issue 9, point 4): the
    /// broken package is reported as the host's dpkg state, and the transaction check
    /// refuses only updates that need it.
    pub fn install(&self, items: &[(PayloadRef, PathBuf)]) -> Outcome {
        if let Err(e) = self.recover() {
            tracing::warn!(error = %e, "dpkg --configure -a failed; the host is reported broken, unrelated updates go on");
        }
        let facts = match self.check(items) {
            Ok(f) => f,
            Err(refusal) => return Outcome::Failed(refusal),
        };
        let before_reboot = crate::inventory::reboot_required(&self.root);
        // A package that pre-depends on another of this transaction goes into a later
        // dpkg run than it (dpkg needs the pre-dependency configured before it unpacks);
        // everything else goes in together.
        for stage in patchday_pkg::depends::dpkg_stages(&facts) {
            let mut c = self.command();
            c.arg("-i");
            for i in stage {
                if let Some((_, path)) = items.get(i) {
                    c.arg(path);
                }
            }
            let out = match c.output() {
                Ok(o) => o,
                Err(e) => return Outcome::Failed(format!("cannot run dpkg: {e}")),
            };
            if !out.status.success() {
                return Outcome::Failed(message(&out));
            }
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

// ---- issue 9, point 4: installs that cannot break apt ----

/// The control facts of each `.deb` (`dpkg-deb --field`), in the order of `items`.
pub fn control_facts(
    items: &[(PayloadRef, PathBuf)],
) -> Result<Vec<patchday_pkg::depends::PackageFacts>, String> {
    let mut incoming = Vec::new();
    for (p, path) in items {
        let out = Command::new("dpkg-deb")
            .arg("--field")
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run dpkg-deb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{} is not a readable package: {}",
                p.package,
                message(&out)
            ));
        }
        let facts =
            patchday_pkg::depends::facts_from_control(&String::from_utf8_lossy(&out.stdout))
                .map_err(|e| format!("{}: {e}", p.package))?;
        incoming.push(facts);
    }
    Ok(incoming)
}

/// Longest dpkg text the agent reports (the server's message limit is 4096 bytes).
const MAX_DPKG_TEXT: usize = 4000;

impl Dpkg {
    /// dpkg's native architecture for this host.
    pub fn native_architecture(&self) -> Result<String, String> {
        let out = self
            .command()
            .arg("--print-architecture")
            .output()
            .map_err(|e| format!("cannot run dpkg --print-architecture: {e}"))?;
        let arch = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || arch.is_empty() {
            return Err(message(&out));
        }
        Ok(arch)
    }

    /// The whole transaction, checked before dpkg runs: every payload's `Depends` and
    /// `Pre-Depends` are met by the installed packages or by the other payloads of this
    /// one dpkg run, no installed package loses what it needs, and nothing conflicts.
    /// `Err` is the refusal (`python3.11 3.11.2-6+deb12u5 needs libpython3.11-stdlib (=
    /// 3.11.2-6+deb12u5)`); nothing was changed.
    /// On success, the packages' control facts, in the order of `items`.
    pub fn check(
        &self,
        items: &[(PayloadRef, PathBuf)],
    ) -> Result<Vec<patchday_pkg::depends::PackageFacts>, String> {
        let refused = |m: String| format!("refused before dpkg ran, nothing was changed: {m}");
        let status = std::fs::read_to_string(crate::inventory::status_path(&self.root))
            .map_err(|e| refused(format!("cannot read the dpkg status file: {e}")))?;
        let installed = patchday_pkg::depends::facts_from_status(&status);
        let incoming = control_facts(items).map_err(refused)?;
        let native = self.native_architecture().map_err(refused)?;
        patchday_pkg::depends::check_transaction(&installed, &incoming, &native).map_err(|unmet| {
            let list: Vec<String> = unmet.iter().map(ToString::to_string).collect();
            refused(format!(
                "{}; publish the missing packages in the same update or in the catalog, where the server assigns them with it (or install them first)",
                list.join("; ")
            ))
        })?;
        Ok(incoming)
    }

    /// dpkg's own words when its database is not clean (`dpkg --audit`: half-installed,
    /// unconfigured, triggers pending), on one line; `None` when it is clean.
    ///
    /// A failure that is not dpkg's report (dpkg could not be started, or it exited
    /// non-zero without listing anything, as when the machine is out of processes or
    /// memory for a moment) is tried once more before it is reported: the host is then
    /// shown broken with those words, since an agent that cannot run dpkg cannot install.
    pub fn audit(&self) -> Option<String> {
        match self.audit_once() {
            Audit::Clean => None,
            Audit::Listed(words) => Some(words),
            Audit::NotRun(first) => {
                tracing::warn!(error = %first, "dpkg --audit did not run; trying once more");
                std::thread::sleep(std::time::Duration::from_millis(200));
                match self.audit_once() {
                    Audit::Clean => None,
                    Audit::Listed(words) | Audit::NotRun(words) => Some(words),
                }
            }
        }
    }

    fn audit_once(&self) -> Audit {
        let out = match self.command().arg("--audit").output() {
            Ok(o) => o,
            Err(e) => return Audit::NotRun(format!("cannot run dpkg --audit: {e}")),
        };
        let words = one_line(&String::from_utf8_lossy(&out.stdout));
        match (words.is_empty(), out.status.success()) {
            (true, true) => Audit::Clean,
            (true, false) => Audit::NotRun(message(&out)),
            (false, _) => Audit::Listed(words),
        }
    }
}

/// What one `dpkg --audit` said.
enum Audit {
    /// Nothing listed, exit 0.
    Clean,
    /// dpkg's own report of packages not in order, on one line.
    Listed(String),
    /// dpkg did not run or failed without listing anything (its words or the error).
    NotRun(String),
}

impl Dpkg {
    /// Issue 10, point 3: `dpkg --remove` of these packages (`name:arch`) in one run,
    /// then dpkg's database must list none of them as installed. Never forces anything:
    /// dpkg's own refusals (essential, depended on) stand, in its words.
    pub fn remove(&self, packages: &[String]) -> Result<(), String> {
        if packages.is_empty() {
            return Ok(());
        }
        let out = self
            .command()
            .arg("--remove")
            .args(packages)
            .output()
            .map_err(|e| format!("cannot run dpkg: {e}"))?;
        if !out.status.success() {
            return Err(one_line(&message(&out)));
        }
        let status = std::fs::read_to_string(crate::inventory::status_path(&self.root))
            .map_err(|e| format!("cannot read dpkg status after removal: {e}"))?;
        for p in packages {
            let (name, arch) = p.split_once(':').unwrap_or((p.as_str(), ""));
            if let Some(v) = patchday_pkg::status::installed_version(&status, name, arch) {
                return Err(format!(
                    "dpkg --remove exited 0 but still lists {name} {v} as installed"
                ));
            }
        }
        Ok(())
    }

    /// `dpkg --configure -a`, whatever the status file says (for `repair`).
    pub fn configure_pending(&self) -> Result<(), String> {
        let out = self
            .command()
            .args(["--configure", "-a"])
            .output()
            .map_err(|e| format!("cannot run dpkg: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(one_line(&message(&out)))
        }
    }
}

/// `apt-get -f install` (simulated with `simulate`): `Ok(None)` when apt has nothing to
/// fix, `Ok(Some(what))` with apt's plan, `Err` with apt's words when it cannot.
pub fn apt_fix(root: &Path, simulate: bool) -> Result<Option<String>, String> {
    if root != Path::new("/") {
        return Err(format!(
            "apt-get runs only on the host's own root, not --root {}; fix it by hand",
            root.display()
        ));
    }
    let mut c = Command::new("apt-get");
    c.args(["-f", "install", "-y", "-q"]);
    if simulate {
        c.arg("-s");
    }
    c.env("DEBIAN_FRONTEND", "noninteractive");
    let path = std::env::var("PATH").unwrap_or_default();
    c.env(
        "PATH",
        format!("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:{path}"),
    );
    let out = c.output().map_err(|e| format!("cannot run apt-get: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(one_line(&format!(
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    // apt's summary line: "N upgraded, N newly installed, N to remove and N not upgraded."
    let plan: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("Inst ") || l.starts_with("Remv ") || l.starts_with("Conf "))
        .collect();
    let summary = text
        .lines()
        .find(|l| l.contains(" upgraded, "))
        .unwrap_or("");
    let nothing = summary.starts_with("0 upgraded, 0 newly installed, 0 to remove");
    if nothing && plan.is_empty() {
        Ok(None)
    } else {
        Ok(Some(one_line(&format!("{}\n{summary}", plan.join("\n")))))
    }
}

/// dpkg's multi-line text as one line (`; ` between lines), cut at [`MAX_DPKG_TEXT`].
pub fn one_line(text: &str) -> String {
    let mut s = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    s.retain(|c| !c.is_control());
    if s.len() > MAX_DPKG_TEXT {
        let mut cut = MAX_DPKG_TEXT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// Real dpkg on a scratch root (`dpkg --root=DIR --audit` only reads). Without dpkg
    /// the test skips on a laptop and fails under `CI`.
    fn dpkg_here() -> bool {
        let ok = Command::new("dpkg").arg("--version").output().is_ok();
        assert!(
            ok || std::env::var_os("CI").is_none(),
            "dpkg is required under CI"
        );
        ok
    }

    fn root_with_status(status: &str) -> (tempfile::TempDir, Dpkg) {
        let dir = tempfile::tempdir().unwrap();
        let admin = dir.path().join("var/lib/dpkg");
        std::fs::create_dir_all(admin.join("updates")).unwrap();
        std::fs::create_dir_all(admin.join("info")).unwrap();
        std::fs::write(admin.join("status"), status).unwrap();
        let dpkg = Dpkg {
            root: dir.path().to_path_buf(),
            extra_args: Vec::new(),
        };
        (dir, dpkg)
    }

    #[test]
    fn audit_is_clean_lists_dpkgs_words_and_reports_a_dpkg_that_cannot_run() {
        if !dpkg_here() {
            return;
        }
        let (_clean, dpkg) = root_with_status("");
        assert_eq!(dpkg.audit(), None);
        let half = "Package: pd-x\nStatus: install ok half-configured\nPriority: optional\n\
                    Section: misc\nMaintainer: t <t@example.org>\nArchitecture: all\n\
                    Version: 1.0-1\nDescription: x\n\n";
        let (_half, dpkg) = root_with_status(half);
        let words = dpkg.audit().expect("a half-configured package is reported");
        assert!(words.contains("pd-x"), "{words}");
        // A dpkg that fails without listing anything (here: an option it refuses) is
        // tried twice, and the failure is still reported (the host cannot install), in
        // dpkg's words.
        let (_bad, mut dpkg) = root_with_status("");
        dpkg.extra_args = vec!["--no-such-option-here".into()];
        let words = dpkg.audit().expect("a dpkg that cannot run is reported");
        assert!(
            words.starts_with("dpkg failed") && words.contains("no-such-option-here"),
            "{words}"
        );
    }
}
