//! Issue 13, point 3 (partial, see docs/notes-baseline.md): a memory-protection profile
//! compiled into the files the host needs: one Patchday-owned `sysctl.d` file and one
//! systemd drop-in per named service, plus the dry run's judgement of whether a running
//! process would break under `MemoryDenyWriteExecute=` (it maps memory writable and
//! executable, as JITs do).

use crate::{BaselineError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `[memory]` table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    /// Write nothing: only report what the profile would change and which running
    /// services would break (`memory.<unit>.wx_mappings`).
    #[serde(default)]
    pub dry_run: bool,
    /// Kernel settings by sysctl name (`kernel.kptr_restrict = 2`); only the names in
    /// [`ALLOWED_SYSCTLS`] and `net.*`.
    #[serde(default)]
    pub sysctls: BTreeMap<String, i64>,
    /// Per-service hardening.
    #[serde(default)]
    pub services: Vec<Service>,
}

/// Hardening for one systemd service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// The unit, `nginx.service`.
    pub unit: String,
    /// `MemoryDenyWriteExecute=yes`.
    #[serde(default)]
    pub memory_deny_write_execute: bool,
    /// `NoNewPrivileges=yes`.
    #[serde(default)]
    pub no_new_privileges: bool,
    /// `ProtectSystem=` (`true`, `full`, `strict`).
    #[serde(default)]
    pub protect_system: Option<String>,
    /// `SystemCallFilter=` sets and calls (`@system-service`, `~@privileged`).
    #[serde(default)]
    pub system_call_filter: Vec<String>,
}

/// The kernel settings a profile may set besides `net.*`: what the issue names (ASLR,
/// pointer and log restrictions, protected links and files, unprivileged BPF and user
/// namespaces, ptrace scope).
pub const ALLOWED_SYSCTLS: &[&str] = &[
    "kernel.randomize_va_space",
    "kernel.kptr_restrict",
    "kernel.dmesg_restrict",
    "kernel.unprivileged_bpf_disabled",
    "kernel.unprivileged_userns_clone",
    "kernel.yama.ptrace_scope",
    "user.max_user_namespaces",
    "fs.protected_symlinks",
    "fs.protected_hardlinks",
    "fs.protected_fifos",
    "fs.protected_regular",
    "fs.suid_dumpable",
];

impl Memory {
    /// Checks names and values.
    pub fn check(&self) -> Result<()> {
        let err = |m: String| Err(BaselineError::Policy(m));
        for k in self.sysctls.keys() {
            let net = k.starts_with("net.")
                && k.len() <= 128
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !net && !ALLOWED_SYSCTLS.contains(&k.as_str()) {
                return err(format!(
                    "memory.sysctls: {k:?} is not a setting a profile may set; allowed: {} and net.*",
                    ALLOWED_SYSCTLS.join(", ")
                ));
            }
        }
        for s in &self.services {
            let unit_ok = s.unit.ends_with(".service")
                && s.unit.len() <= 128
                && s.unit
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"@._-:".contains(&b));
            if !unit_ok {
                return err(format!(
                    "memory.services: {:?} is not a service unit name (e.g. nginx.service)",
                    s.unit
                ));
            }
            if let Some(p) = &s.protect_system {
                if !["true", "full", "strict"].contains(&p.as_str()) {
                    return err(format!(
                        "memory.services {}: protect_system = {p:?}; use \"true\", \"full\" or \"strict\"",
                        s.unit
                    ));
                }
            }
            for f in &s.system_call_filter {
                let ok = !f.is_empty()
                    && f.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"@~_-:".contains(&b));
                if !ok {
                    return err(format!(
                        "memory.services {}: {f:?} is not a system call or set name (e.g. @system-service, ~@privileged)",
                        s.unit
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One file a profile owns, relative to the host's root, with its whole content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedFile {
    /// Path below the root, `etc/sysctl.d/90-patchday-web.conf`.
    pub path: String,
    /// Content.
    pub content: String,
}

/// The files a profile of baseline `name` needs: the sysctl file (when it sets any) and
/// one drop-in per service.
pub fn compile(name: &str, m: &Memory) -> Vec<OwnedFile> {
    let header = format!(
        "# Written by Patchday for baseline {name}; edits are repaired at the next agent run.\n"
    );
    let mut out = Vec::new();
    if !m.sysctls.is_empty() {
        let mut content = header.clone();
        for (k, v) in &m.sysctls {
            content.push_str(&format!("{k} = {v}\n"));
        }
        out.push(OwnedFile {
            path: format!("etc/sysctl.d/90-patchday-{name}.conf"),
            content,
        });
    }
    for s in &m.services {
        let mut content = header.clone();
        content.push_str("[Service]\n");
        if s.memory_deny_write_execute {
            content.push_str("MemoryDenyWriteExecute=yes\n");
        }
        if s.no_new_privileges {
            content.push_str("NoNewPrivileges=yes\n");
        }
        if let Some(p) = &s.protect_system {
            content.push_str(&format!("ProtectSystem={p}\n"));
        }
        if !s.system_call_filter.is_empty() {
            content.push_str(&format!(
                "SystemCallFilter={}\n",
                s.system_call_filter.join(" ")
            ));
        }
        out.push(OwnedFile {
            path: format!("etc/systemd/system/{}.d/90-patchday-{name}.conf", s.unit),
            content,
        });
    }
    out
}

/// The dry run's judgement for `MemoryDenyWriteExecute=`: the mappings of a running
/// process (`/proc/PID/maps`) that are writable and executable at once, or anonymous and
/// executable (code generated at run time): such a process would fail under MDWE.
pub fn write_execute_mappings(maps: &str) -> Vec<String> {
    maps.lines()
        .filter(|l| {
            let mut f = l.split_whitespace();
            let perms = f.nth(1).unwrap_or("");
            let path = f.nth(3);
            let x = perms.as_bytes().get(2) == Some(&b'x');
            let w = perms.as_bytes().get(1) == Some(&b'w');
            x && (w || path.is_none())
        })
        .map(str::to_owned)
        .collect()
}

/// Whether a process whose `/proc/PID/cgroup` reads `cgroup` belongs to `unit`: one of
/// its cgroup paths (v2 `0::/system.slice/nginx.service`, or a v1 hierarchy) names the
/// unit as a component, so worker processes and sub-cgroups count, not only the main
/// process systemd records.
pub fn in_unit(cgroup: &str, unit: &str) -> bool {
    cgroup.lines().any(|l| {
        l.splitn(3, ':')
            .nth(2)
            .is_some_and(|path| path.split('/').any(|c| c == unit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_refusals() {
        let m = Memory {
            dry_run: false,
            sysctls: [
                ("kernel.kptr_restrict".to_string(), 2),
                ("net.ipv4.conf.all.log_martians".to_string(), 1),
            ]
            .into_iter()
            .collect(),
            services: vec![Service {
                unit: "nginx.service".into(),
                memory_deny_write_execute: true,
                no_new_privileges: true,
                protect_system: Some("strict".into()),
                system_call_filter: vec!["@system-service".into()],
            }],
        };
        m.check().unwrap();
        let files = compile("web", &m);
        assert_eq!(files[0].path, "etc/sysctl.d/90-patchday-web.conf");
        assert!(files[0].content.contains("kernel.kptr_restrict = 2\n"));
        assert_eq!(
            files[1].path,
            "etc/systemd/system/nginx.service.d/90-patchday-web.conf"
        );
        assert!(files[1].content.contains(
            "[Service]\nMemoryDenyWriteExecute=yes\nNoNewPrivileges=yes\nProtectSystem=strict\nSystemCallFilter=@system-service\n"
        ));
        let mut bad = m.clone();
        bad.sysctls.insert("kernel.panic".into(), 1);
        assert!(bad
            .check()
            .unwrap_err()
            .to_string()
            .contains("kernel.panic"));
        let mut bad = m;
        bad.services[0].unit = "../../etc/passwd".into();
        assert!(bad
            .check()
            .unwrap_err()
            .to_string()
            .contains("service unit"));
    }

    #[test]
    fn processes_are_found_by_cgroup() {
        let v2 = "0::/system.slice/nginx.service\n";
        let v1 = "9:name=systemd:/system.slice/nginx.service/worker\n4:memory:/\n";
        assert!(in_unit(v2, "nginx.service"));
        assert!(in_unit(v1, "nginx.service"));
        assert!(!in_unit(v2, "ginx.service"));
        assert!(!in_unit(
            "0::/user.slice/user-1000.slice\n",
            "nginx.service"
        ));
    }

    #[test]
    fn jit_mappings_are_found() {
        let maps = "55d0c0000000-55d0c0001000 r-xp 00000000 08:01 123 /usr/bin/node\n\
                    7f0000000000-7f0000100000 rwxp 00000000 00:00 0 \n\
                    7f1000000000-7f1000100000 r-xp 00000000 00:00 0\n\
                    7f2000000000-7f2000100000 rw-p 00000000 00:00 0\n";
        let found = write_execute_mappings(maps);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(write_execute_mappings("5000-6000 r-xp 0 08:01 1 /bin/true\n").is_empty());
    }
}
