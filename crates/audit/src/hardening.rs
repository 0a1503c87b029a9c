//! Hardening checks ("memory protection") over collected [`Facts`]: CPU NX, kernel
//! sysctl settings, per-binary ELF hardening, the host firewall and sshd.
//!
//! A sysctl key that the kernel does not have is "unsupported by this kernel"
//! (not applicable), kept apart from a key that is present with a weak value
//! ("misconfigured", a failure with the `sysctl -w` fix and its persistent line).

use crate::model::{BinaryFacts, Facts, Finding, FindingKind, Outcome, Relro};

/// File the remediations suggest for persistent sysctl settings.
pub const SYSCTL_CONF: &str = "/etc/sysctl.d/60-patchday-hardening.conf";

/// What a sysctl value must satisfy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Exactly this value.
    Equal(i64),
    /// This value or higher.
    AtLeast(i64),
}

/// One kernel setting the audit checks.
#[derive(Clone, Copy, Debug)]
pub struct SysctlRule {
    /// Dotted sysctl name.
    pub key: &'static str,
    /// The acceptable values.
    pub want: Want,
    /// The value the remediation sets.
    pub set: i64,
    /// What the setting protects against, for the report.
    pub why: &'static str,
    /// Severity when misconfigured.
    pub severity: &'static str,
}

/// The kernel settings checked, in report order.
pub const SYSCTL_RULES: &[SysctlRule] = &[
    SysctlRule {
        key: "kernel.randomize_va_space",
        want: Want::Equal(2),
        set: 2,
        why: "full address space layout randomisation (stack, mmap, heap)",
        severity: "high",
    },
    SysctlRule {
        key: "kernel.kptr_restrict",
        want: Want::AtLeast(1),
        set: 1,
        why: "kernel pointers hidden from unprivileged users",
        severity: "low",
    },
    SysctlRule {
        key: "kernel.dmesg_restrict",
        want: Want::Equal(1),
        set: 1,
        why: "kernel log readable by privileged users only",
        severity: "low",
    },
    SysctlRule {
        key: "kernel.unprivileged_bpf_disabled",
        want: Want::AtLeast(1),
        set: 1,
        why: "unprivileged users cannot load BPF programs",
        severity: "medium",
    },
    SysctlRule {
        key: "kernel.yama.ptrace_scope",
        want: Want::AtLeast(1),
        set: 1,
        why: "processes cannot ptrace unrelated processes of the same user",
        severity: "medium",
    },
    SysctlRule {
        key: "fs.protected_symlinks",
        want: Want::Equal(1),
        set: 1,
        why: "symlinks in sticky world-writable directories are followed only by their owner",
        severity: "medium",
    },
    SysctlRule {
        key: "fs.protected_hardlinks",
        want: Want::Equal(1),
        set: 1,
        why: "users cannot hardlink files they do not own",
        severity: "medium",
    },
    SysctlRule {
        key: "fs.protected_fifos",
        want: Want::AtLeast(1),
        set: 2,
        why: "O_CREAT opens of others' FIFOs in sticky directories are refused",
        severity: "low",
    },
    SysctlRule {
        key: "fs.protected_regular",
        want: Want::AtLeast(1),
        set: 2,
        why: "O_CREAT opens of others' regular files in sticky directories are refused",
        severity: "low",
    },
    SysctlRule {
        key: "fs.suid_dumpable",
        want: Want::Equal(0),
        set: 0,
        why: "setuid programs do not dump core",
        severity: "low",
    },
];

/// Run every hardening check over the facts.
pub fn check(facts: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    out.push(check_cpu_nx(facts));
    out.extend(check_cmdline(facts));
    let image = facts.kernel_running.is_empty() && facts.sysctl.is_empty();
    for rule in SYSCTL_RULES {
        out.push(check_sysctl(rule, facts.sysctl.get(rule.key), image));
    }
    for b in &facts.binaries {
        out.extend(check_binary(b));
    }
    out.push(check_firewall(facts.firewall_loaded));
    out.extend(check_sshd(facts));
    out
}

fn finding(check: &str, outcome: Outcome, subject: &str, reason: String) -> Finding {
    Finding {
        check: check.to_string(),
        kind: FindingKind::Hardening,
        outcome,
        subject: subject.to_string(),
        reason,
        remediation: String::new(),
        ids: Vec::new(),
        severity: None,
        known_exploited: false,
        fix: None,
    }
}

fn failing(mut f: Finding, severity: &str, remediation: String) -> Finding {
    f.severity = Some(severity.to_string());
    f.remediation = remediation;
    f
}

fn check_cpu_nx(facts: &Facts) -> Finding {
    let id = "hardening.cpu.nx";
    match facts.cpu_nx {
        Some(true) => finding(id, Outcome::Pass, "cpu", "the CPU advertises NX (no-execute)".into()),
        Some(false) => failing(
            finding(
                id,
                Outcome::Fail,
                "cpu",
                "the CPU does not advertise NX: data pages are executable".into(),
            ),
            "high",
            "enable NX/XD (\"Execute Disable Bit\") in the firmware settings; on 32-bit x86 boot a PAE kernel".into(),
        ),
        None => finding(
            id,
            Outcome::NotApplicable,
            "cpu",
            "NX state unknown: no x86 CPU flags were collected (image or non-x86 CPU)".into(),
        ),
    }
}

/// Boot parameters that switch protections off.
fn check_cmdline(facts: &Facts) -> Vec<Finding> {
    const WEAKENING: &[(&str, &str)] = &[
        ("noexec=off", "disables NX for the kernel's data pages"),
        ("noexec32=off", "disables NX for 32-bit processes"),
        ("norandmaps", "disables address space randomisation"),
        ("nokaslr", "disables kernel address space randomisation"),
        ("mitigations=off", "disables CPU vulnerability mitigations"),
    ];
    if facts.cmdline.is_empty() {
        return Vec::new();
    }
    let words: Vec<&str> = facts.cmdline.split_whitespace().collect();
    let bad: Vec<String> = WEAKENING
        .iter()
        .filter(|(p, _)| words.contains(p))
        .map(|(p, why)| format!("{p} ({why})"))
        .collect();
    let id = "hardening.kernel.cmdline";
    let f = if bad.is_empty() {
        finding(
            id,
            Outcome::Pass,
            "/proc/cmdline",
            "no boot parameter disables NX, ASLR or mitigations".into(),
        )
    } else {
        failing(
            finding(
                id,
                Outcome::Fail,
                "/proc/cmdline",
                format!("the kernel was booted with {}", bad.join(", ")),
            ),
            "high",
            "remove these parameters from GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub and reboot".into(),
        )
    };
    vec![f]
}

/// One sysctl rule against the collected value (`None`: the key is absent).
pub fn check_sysctl(rule: &SysctlRule, value: Option<&String>, image: bool) -> Finding {
    let id = format!("hardening.sysctl.{}", rule.key);
    let Some(value) = value else {
        let reason = if image {
            "no running kernel: the facts come from an image".to_string()
        } else {
            format!("unsupported by this kernel: {} does not exist", rule.key)
        };
        return finding(&id, Outcome::NotApplicable, rule.key, reason);
    };
    let wanted = match rule.want {
        Want::Equal(v) => format!("{v}"),
        Want::AtLeast(v) => format!("{v} or higher"),
    };
    let ok = value.trim().parse::<i64>().ok().map(|v| match rule.want {
        Want::Equal(w) => v == w,
        Want::AtLeast(w) => v >= w,
    });
    match ok {
        Some(true) => finding(
            &id,
            Outcome::Pass,
            rule.key,
            format!("{} = {value}: {}", rule.key, rule.why),
        ),
        _ => failing(
            finding(
                &id,
                Outcome::Fail,
                rule.key,
                format!(
                    "misconfigured: {} = {value}, want {wanted} ({})",
                    rule.key, rule.why
                ),
            ),
            rule.severity,
            format!(
                "sysctl -w {key}={set}; to persist, add the line \"{key} = {set}\" to {SYSCTL_CONF}",
                key = rule.key,
                set = rule.set
            ),
        ),
    }
}

/// The six ELF hardening checks for one binary.
pub fn check_binary(b: &BinaryFacts) -> Vec<Finding> {
    let rebuild = match &b.package {
        Some(p) => format!(
            "ask the maintainer of {p} for a hardened build (dpkg-buildflags with DEB_BUILD_MAINT_OPTIONS=hardening=+all), or remove it if unused"
        ),
        None => "rebuild with hardening flags (-fPIE -pie -Wl,-z,relro,-z,now -fstack-protector-strong -D_FORTIFY_SOURCE=2 -O2), or remove it if unused".to_string(),
    };
    let what = match b.reason {
        crate::model::BinaryReason::Setuid => "setuid/setgid binary",
        crate::model::BinaryReason::Listening => "network-facing binary",
        crate::model::BinaryReason::Requested => "binary",
    };
    let severity = match b.reason {
        crate::model::BinaryReason::Requested => "low",
        _ => "medium",
    };
    let mut out = Vec::with_capacity(6);
    let mut one = |check: &str, ok: bool, pass: &str, fail: String| {
        let id = format!("hardening.binary.{check}");
        out.push(if ok {
            finding(&id, Outcome::Pass, &b.path, pass.to_string())
        } else {
            failing(
                finding(&id, Outcome::Fail, &b.path, format!("{what}: {fail}")),
                severity,
                rebuild.clone(),
            )
        });
    };
    one(
        "pie",
        b.pie,
        "position-independent executable: loaded at a random address",
        "not position-independent: code is at a fixed address, ASLR does not move it".into(),
    );
    let relro_fail = match b.relro {
        Relro::Full => String::new(),
        Relro::Partial => "partial RELRO: the GOT stays writable (no BIND_NOW)".into(),
        Relro::None => "no RELRO: relocation tables stay writable".into(),
    };
    one(
        "relro",
        b.relro == Relro::Full,
        "full RELRO: relocations are read-only after start-up",
        relro_fail,
    );
    one(
        "canary",
        b.canary,
        "stack protector present",
        "no stack protector symbol: stack overflows are not detected".into(),
    );
    one(
        "nx",
        b.nx,
        "non-executable stack",
        "executable stack (PT_GNU_STACK with X, or missing)".into(),
    );
    one(
        "fortify",
        b.fortify,
        "FORTIFY_SOURCE: fortified _chk functions imported",
        "no fortified _chk function imported (built without _FORTIFY_SOURCE, or uses none)".into(),
    );
    let paths: Vec<String> = [("RPATH", &b.rpath), ("RUNPATH", &b.runpath)]
        .iter()
        .filter_map(|(name, v)| v.as_ref().map(|v| format!("{name} {v}")))
        .collect();
    one(
        "rpath",
        paths.is_empty(),
        "no RPATH or RUNPATH",
        format!(
            "{}: libraries may load from these directories; each must be root-owned and not writable by others",
            paths.join(", ")
        ),
    );
    out
}

fn check_firewall(loaded: Option<bool>) -> Finding {
    let id = "hardening.firewall";
    match loaded {
        Some(true) => finding(id, Outcome::Pass, "firewall", "a host firewall ruleset is loaded".into()),
        Some(false) => failing(
            finding(id, Outcome::Fail, "firewall", "no host firewall ruleset is loaded (nftables and iptables are empty)".into()),
            "medium",
            "apt-get install nftables; write a default-deny input policy in /etc/nftables.conf; systemctl enable --now nftables".into(),
        ),
        None => finding(
            id,
            Outcome::NotApplicable,
            "firewall",
            "firewall state unknown: needs root on the live host (not an image)".into(),
        ),
    }
}

fn check_sshd(facts: &Facts) -> Vec<Finding> {
    let conf = "/etc/ssh/sshd_config.d/60-patchday.conf";
    if facts.sshd.is_empty() {
        return [
            "permitrootlogin",
            "passwordauthentication",
            "permitemptypasswords",
        ]
        .iter()
        .map(|k| {
            finding(
                &format!("hardening.sshd.{k}"),
                Outcome::NotApplicable,
                "sshd",
                "sshd is not installed".into(),
            )
        })
        .collect();
    }
    let get = |k: &str| {
        facts
            .sshd
            .get(k)
            .map(|v| v.to_ascii_lowercase())
            .unwrap_or_default()
    };
    let mut out = Vec::new();

    let root = get("permitrootlogin");
    let id = "hardening.sshd.permitrootlogin";
    out.push(match root.as_str() {
        "no" => finding(id, Outcome::Pass, "sshd", "PermitRootLogin no: root cannot log in over SSH".into()),
        "prohibit-password" | "without-password" | "forced-commands-only" => finding(
            id,
            Outcome::Pass,
            "sshd",
            format!("PermitRootLogin {root}: root may log in with keys only"),
        ),
        other => failing(
            finding(
                id,
                Outcome::Fail,
                "sshd",
                format!("PermitRootLogin {other}: root may log in over SSH with a password"),
            ),
            "high",
            format!("set \"PermitRootLogin prohibit-password\" (or \"no\") in {conf}, then systemctl reload ssh"),
        ),
    });

    let pw = get("passwordauthentication");
    let id = "hardening.sshd.passwordauthentication";
    out.push(if pw == "no" {
        finding(id, Outcome::Pass, "sshd", "PasswordAuthentication no: keys only".into())
    } else {
        failing(
            finding(
                id,
                Outcome::Fail,
                "sshd",
                format!("PasswordAuthentication {pw}: passwords can be guessed over the network"),
            ),
            "medium",
            format!("set \"PasswordAuthentication no\" in {conf} after installing keys, then systemctl reload ssh"),
        )
    });

    let empty = get("permitemptypasswords");
    let id = "hardening.sshd.permitemptypasswords";
    out.push(if empty == "yes" {
        failing(
            finding(
                id,
                Outcome::Fail,
                "sshd",
                "PermitEmptyPasswords yes: accounts without a password can log in".into(),
            ),
            "high",
            format!("set \"PermitEmptyPasswords no\" in {conf}, then systemctl reload ssh"),
        )
    } else {
        finding(id, Outcome::Pass, "sshd", "PermitEmptyPasswords no".into())
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts;
    use crate::model::BinaryReason;
    use std::collections::BTreeMap;

    fn by_check<'a>(findings: &'a [Finding], check: &str) -> &'a Finding {
        findings
            .iter()
            .find(|f| f.check == check)
            .unwrap_or_else(|| panic!("no finding {check}"))
    }

    #[test]
    fn every_rule_key_is_collected() {
        for rule in SYSCTL_RULES {
            assert!(facts::SYSCTL_KEYS.contains(&rule.key), "{}", rule.key);
        }
    }

    #[test]
    fn fake_sysctl_tree_good_bad_and_missing_keys() {
        let dir = tempfile::tempdir().unwrap();
        let put = |key: &str, v: &str| {
            let p = dir.path().join(key.replace('.', "/"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, format!("{v}\n")).unwrap();
        };
        put("kernel.randomize_va_space", "2"); // good
        put("kernel.kptr_restrict", "2"); // good (>= 1)
        put("kernel.dmesg_restrict", "0"); // bad
        put("kernel.yama.ptrace_scope", "0"); // bad
        put("fs.protected_symlinks", "1");
        put("fs.protected_hardlinks", "1");
        put("fs.protected_fifos", "1");
        put("fs.protected_regular", "2");
        put("fs.suid_dumpable", "2"); // bad
                                      // kernel.unprivileged_bpf_disabled is missing: unsupported by this kernel.
        let f = Facts {
            kernel_running: "6.1.0-26-amd64".into(),
            sysctl: facts::read_sysctl(dir.path()),
            ..Facts::default()
        };
        let out = check(&f);
        let aslr = by_check(&out, "hardening.sysctl.kernel.randomize_va_space");
        assert_eq!(aslr.outcome, Outcome::Pass);
        assert_eq!(
            by_check(&out, "hardening.sysctl.kernel.kptr_restrict").outcome,
            Outcome::Pass
        );
        for bad in [
            "kernel.dmesg_restrict",
            "kernel.yama.ptrace_scope",
            "fs.suid_dumpable",
        ] {
            let f = by_check(&out, &format!("hardening.sysctl.{bad}"));
            assert_eq!(f.outcome, Outcome::Fail, "{bad}");
            assert!(f.reason.starts_with("misconfigured"), "{}", f.reason);
            assert!(f.remediation.contains(&format!("sysctl -w {bad}=")));
            assert!(f.remediation.contains(SYSCTL_CONF));
        }
        let bpf = by_check(&out, "hardening.sysctl.kernel.unprivileged_bpf_disabled");
        assert_eq!(bpf.outcome, Outcome::NotApplicable);
        assert!(bpf.reason.contains("unsupported by this kernel"));
        let dump = by_check(&out, "hardening.sysctl.fs.suid_dumpable");
        assert!(dump.remediation.contains("fs.suid_dumpable = 0"));

        // An image: not applicable for another reason.
        let img = check(&Facts::default());
        let aslr = by_check(&img, "hardening.sysctl.kernel.randomize_va_space");
        assert_eq!(aslr.outcome, Outcome::NotApplicable);
        assert!(aslr.reason.contains("image"));

        // A garbage value is a misconfiguration, not a crash.
        let rule = &SYSCTL_RULES[0];
        let f = check_sysctl(rule, Some(&"x".to_string()), false);
        assert_eq!(f.outcome, Outcome::Fail);
    }

    #[test]
    fn cpu_cmdline_firewall_and_sshd() {
        let mut f = Facts {
            cpu_nx: Some(false),
            cmdline: "BOOT_IMAGE=/vmlinuz root=/dev/sda1 norandmaps quiet".into(),
            firewall_loaded: Some(false),
            sshd: BTreeMap::from([
                ("permitrootlogin".to_string(), "yes".to_string()),
                ("passwordauthentication".to_string(), "yes".to_string()),
            ]),
            ..Facts::default()
        };
        let out = check(&f);
        assert_eq!(by_check(&out, "hardening.cpu.nx").outcome, Outcome::Fail);
        let cmd = by_check(&out, "hardening.kernel.cmdline");
        assert_eq!(cmd.outcome, Outcome::Fail);
        assert!(cmd.reason.contains("norandmaps"));
        assert_eq!(by_check(&out, "hardening.firewall").outcome, Outcome::Fail);
        assert_eq!(
            by_check(&out, "hardening.sshd.permitrootlogin").outcome,
            Outcome::Fail
        );
        assert_eq!(
            by_check(&out, "hardening.sshd.passwordauthentication").outcome,
            Outcome::Fail
        );
        assert_eq!(
            by_check(&out, "hardening.sshd.permitemptypasswords").outcome,
            Outcome::Pass
        );

        f.cpu_nx = Some(true);
        f.cmdline = "root=/dev/sda1 quiet".into();
        f.firewall_loaded = None;
        f.sshd
            .insert("permitrootlogin".into(), "without-password".into());
        f.sshd.insert("passwordauthentication".into(), "no".into());
        let out = check(&f);
        assert_eq!(by_check(&out, "hardening.cpu.nx").outcome, Outcome::Pass);
        assert_eq!(
            by_check(&out, "hardening.kernel.cmdline").outcome,
            Outcome::Pass
        );
        assert_eq!(
            by_check(&out, "hardening.firewall").outcome,
            Outcome::NotApplicable
        );
        assert_eq!(
            by_check(&out, "hardening.sshd.permitrootlogin").outcome,
            Outcome::Pass
        );
        assert_eq!(
            by_check(&out, "hardening.sshd.passwordauthentication").outcome,
            Outcome::Pass
        );

        f.sshd.clear();
        f.cpu_nx = None;
        let out = check(&f);
        assert_eq!(
            by_check(&out, "hardening.sshd.permitrootlogin").outcome,
            Outcome::NotApplicable
        );
        assert_eq!(
            by_check(&out, "hardening.cpu.nx").outcome,
            Outcome::NotApplicable
        );
    }

    #[test]
    fn binary_checks_flag_by_flag() {
        let good = BinaryFacts {
            path: "/usr/bin/good".into(),
            reason: BinaryReason::Setuid,
            package: Some("goodpkg".into()),
            pie: true,
            relro: Relro::Full,
            canary: true,
            nx: true,
            fortify: true,
            rpath: None,
            runpath: None,
        };
        let out = check_binary(&good);
        assert_eq!(out.len(), 6);
        assert!(out.iter().all(|f| f.outcome == Outcome::Pass), "{out:?}");

        let bad = BinaryFacts {
            path: "/usr/sbin/bad".into(),
            reason: BinaryReason::Listening,
            package: None,
            pie: false,
            relro: Relro::Partial,
            canary: false,
            nx: false,
            fortify: false,
            rpath: Some("/opt/x".into()),
            runpath: None,
        };
        let f = Facts {
            binaries: vec![bad],
            ..Facts::default()
        };
        let out = check(&f);
        for c in ["pie", "relro", "canary", "nx", "fortify", "rpath"] {
            let x = by_check(&out, &format!("hardening.binary.{c}"));
            assert_eq!(x.outcome, Outcome::Fail, "{c}");
            assert_eq!(x.subject, "/usr/sbin/bad");
            assert!(x.reason.starts_with("network-facing"), "{}", x.reason);
            assert!(!x.remediation.is_empty());
        }
        assert!(by_check(&out, "hardening.binary.relro")
            .reason
            .contains("partial"));
        assert!(by_check(&out, "hardening.binary.rpath")
            .reason
            .contains("/opt/x"));
    }
}
