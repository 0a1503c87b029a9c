//! The policy model: one TOML file per baseline version, read strictly (an unknown key is
//! an error that names it, so a typo never silently weakens a policy).

use crate::{BaselineError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::IpAddr;

/// One baseline version: its name and version, and what it enforces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// What this document is.
    pub baseline: Header,
    /// Issue 13, point 2: the host firewall, when the baseline has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<Firewall>,
    /// Issue 13, point 3 (partial): kernel settings and per-service hardening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<crate::memory::Memory>,
    /// Issue 13, point 4: Chromium and Firefox enterprise policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser: Option<crate::browser::Browser>,
    /// Issue 14, point 5: download and messenger folders scanned with clamd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<crate::scan::Scan>,
}

/// The `[baseline]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Name (`a-z`, `0-9`, `-`), the same for every version: `web-servers`.
    pub name: String,
    /// Version, ordered like Debian versions: `1`, `2`, `2.1`.
    pub version: String,
    /// For people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// What a firewall rule does with a packet it matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Let it through.
    #[default]
    Accept,
    /// Drop it silently.
    Drop,
    /// Refuse it (TCP reset / ICMP unreachable), so programs fail at once.
    Reject,
}

/// A transport protocol a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// The `[firewall]` table: default-deny inbound with allowed services per zone, outbound
/// rules per local user and group, in one nftables table owned by Patchday.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Firewall {
    /// The lock-out guard: seconds within which the agent must reach its server after
    /// applying a new ruleset, or it restores the previous one.
    #[serde(default = "default_guard_seconds")]
    pub guard_seconds: u64,
    /// Whether ICMP and ICMPv6 come in (ping, path MTU, IPv6 neighbour discovery).
    #[serde(default = "yes")]
    pub icmp: bool,
    /// What happens to outbound traffic no rule matches.
    #[serde(default)]
    pub outbound_default: Verdict,
    /// Named parts of the network, by interface and address.
    #[serde(default)]
    pub zones: Vec<Zone>,
    /// Services allowed in; everything else inbound is dropped.
    #[serde(default)]
    pub inbound: Vec<Inbound>,
    /// Outbound rules, first match wins.
    #[serde(default)]
    pub outbound: Vec<Outbound>,
}

fn default_guard_seconds() -> u64 {
    60
}

fn yes() -> bool {
    true
}

/// A zone: packets arriving on one of `interfaces` (when listed) from one of `addresses`
/// (when listed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    /// Name the rules use.
    pub name: String,
    /// Interface names (`eth0`, `wg0`).
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Networks (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`).
    #[serde(default)]
    pub addresses: Vec<String>,
}

/// A service allowed in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inbound {
    /// Rule name, unique in the baseline; counters are reported under it.
    pub name: String,
    /// The zone it is allowed from (absent: from anywhere).
    #[serde(default)]
    pub zone: Option<String>,
    /// Protocol.
    pub protocol: Protocol,
    /// Destination ports; at least one.
    pub ports: Vec<u16>,
}

/// An outbound rule, for everyone or for some local users or one primary group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outbound {
    /// Rule name, unique in the baseline; counters are reported under it.
    pub name: String,
    /// Destination networks (absent: anywhere).
    #[serde(default)]
    pub to: Vec<String>,
    /// Protocol (absent: any; needed with `ports`).
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// Destination ports (absent: any).
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Local users (names or uids) whose sockets it matches (`meta skuid`).
    #[serde(default)]
    pub users: Vec<String>,
    /// Local groups (names or gids) it matches, by the socket owner's primary group only
    /// (`meta skgid`: supplementary groups are not seen by nftables).
    #[serde(default)]
    pub groups: Vec<String>,
    /// What it does.
    pub action: Verdict,
}

/// A network: address and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The network address.
    pub addr: IpAddr,
    /// Prefix length.
    pub len: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `2001:db8::/32` or a single address.
    pub fn parse(s: &str) -> Result<Cidr> {
        let bad = |why: &str| {
            BaselineError::Policy(format!(
                "{s:?} is not a network ({why}); write an address with an optional prefix length, e.g. 10.0.0.0/8 or 2001:db8::/32"
            ))
        };
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| bad("bad address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            Some(l) => l
                .trim()
                .parse::<u8>()
                .map_err(|_| bad("bad prefix length"))?,
            None => max,
        };
        if len > max {
            return Err(bad("prefix length too long"));
        }
        Ok(Cidr { addr, len })
    }
}

impl Policy {
    /// Reads and checks a policy file's text.
    pub fn parse(text: &str) -> Result<Policy> {
        let p: Policy = toml::from_str(text).map_err(|e| {
            BaselineError::Policy(format!(
                "{}; see `patchday baseline new` for a commented example",
                e.to_string().trim_end()
            ))
        })?;
        p.check()?;
        Ok(p)
    }

    /// The policy as TOML that [`Policy::parse`] reads back (the audit's proposals).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self)
            .map_err(|e| BaselineError::Policy(format!("writing the policy as TOML: {e}")))
    }

    /// The TUF target name it is published under: `baseline-<name>-<version>.toml`, flat
    /// like every payload name (the catalog keeps files as `targets/<sha256>.<name>` in one
    /// directory, delegated roles prefix `<role>~`).
    pub fn target_name(&self) -> String {
        format!(
            "baseline-{}-{}.toml",
            self.baseline.name, self.baseline.version
        )
    }

    /// Checks what the types cannot say: names, versions, references, ports, networks.
    pub fn check(&self) -> Result<()> {
        let err = |m: String| Err(BaselineError::Policy(m));
        let h = &self.baseline;
        if h.name.is_empty()
            || h.name.len() > 64
            || !h
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            || h.name.starts_with('-')
        {
            return err(format!(
                "baseline name {:?} must be 1 to 64 of a-z, 0-9 and '-' (not first), e.g. web-servers",
                h.name
            ));
        }
        let version_ok = !h.version.is_empty()
            && h.version.len() <= 32
            && h.version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._+~".contains(&b))
            && h.version.starts_with(|c: char| c.is_ascii_digit())
            && patchday_pkg::version::compare_deb(&h.version, &h.version).is_ok();
        if !version_ok {
            return err(format!(
                "baseline version {:?} must start with a digit and hold only letters, digits and . + ~ (e.g. 1, 2, 2.1)",
                h.version
            ));
        }
        if let Some(f) = &self.firewall {
            f.check()?;
        }
        if let Some(m) = &self.memory {
            m.check()?;
        }
        if let Some(b) = &self.browser {
            b.check()?;
        }
        if let Some(s) = &self.scan {
            s.check()?;
        }
        Ok(())
    }
}

impl Firewall {
    fn check(&self) -> Result<()> {
        let err = |m: String| Err(BaselineError::Policy(m));
        if !(5..=3600).contains(&self.guard_seconds) {
            return err(format!(
                "firewall.guard_seconds = {} must be between 5 and 3600 (the agent must reach its server within it after applying, or it restores the previous ruleset)",
                self.guard_seconds
            ));
        }
        let mut zones = BTreeSet::new();
        for z in &self.zones {
            if !zones.insert(z.name.as_str()) {
                return err(format!("zone {:?} is defined twice", z.name));
            }
            if z.interfaces.is_empty() && z.addresses.is_empty() {
                return err(format!(
                    "zone {:?} lists neither interfaces nor addresses; give at least one",
                    z.name
                ));
            }
            for i in &z.interfaces {
                if i.is_empty() || i.len() > 15 || !i.bytes().all(|b| b.is_ascii_graphic()) {
                    return err(format!(
                        "zone {:?}: {i:?} is not an interface name (1 to 15 visible characters)",
                        z.name
                    ));
                }
            }
            for a in &z.addresses {
                Cidr::parse(a)
                    .map_err(|e| BaselineError::Policy(format!("zone {:?}: {e}", z.name)))?;
            }
        }
        let mut names = BTreeSet::new();
        let mut name_ok = |n: &str| -> Result<()> {
            let valid = !n.is_empty()
                && n.len() <= 64
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return err(format!(
                    "rule name {n:?} must be 1 to 64 of letters, digits, '-' and '_'"
                ));
            }
            if !names.insert(n.to_owned()) {
                return err(format!(
                    "rule name {n:?} is used twice; counters are reported by rule name, so each must be unique"
                ));
            }
            Ok(())
        };
        for r in &self.inbound {
            name_ok(&r.name)?;
            if let Some(z) = &r.zone {
                if !zones.contains(z.as_str()) {
                    return err(format!(
                        "inbound rule {:?} names zone {z:?}, which [[firewall.zones]] does not define",
                        r.name
                    ));
                }
            }
            if r.ports.is_empty() || r.ports.contains(&0) {
                return err(format!(
                    "inbound rule {:?} needs ports (1 to 65535): it allows a service",
                    r.name
                ));
            }
        }
        for r in &self.outbound {
            name_ok(&r.name)?;
            if !r.ports.is_empty() && r.protocol.is_none() {
                return err(format!(
                    "outbound rule {:?} lists ports but no protocol; add protocol = \"tcp\" or \"udp\"",
                    r.name
                ));
            }
            if r.ports.contains(&0) {
                return err(format!("outbound rule {:?}: port 0 is not a port", r.name));
            }
            if !r.users.is_empty() && !r.groups.is_empty() {
                return err(format!(
                    "outbound rule {:?} lists users and groups; a packet matches one socket owner, so write one rule for the users and one for the groups",
                    r.name
                ));
            }
            for a in &r.to {
                Cidr::parse(a).map_err(|e| {
                    BaselineError::Policy(format!("outbound rule {:?}: {e}", r.name))
                })?;
            }
        }
        Ok(())
    }
}

/// A commented example policy, for `patchday baseline new`.
pub fn example(name: &str) -> String {
    format!(
        r#"# Patchday baseline policy. Unknown keys are refused, so a typo cannot weaken it.
[baseline]
name = "{name}"
version = "1"
description = "Host firewall for {name}"

[firewall]
# After applying a new ruleset the agent must reach its server within this many seconds,
# or it restores the previous ruleset (the lock-out guard).
guard_seconds = 60
# ICMP and ICMPv6 in (ping, path MTU discovery, IPv6 neighbour discovery).
icmp = true
# What happens to outbound traffic no [[firewall.outbound]] rule matches: accept, drop, reject.
outbound_default = "accept"

[[firewall.zones]]
name = "admin"
interfaces = ["eth0"]
addresses = ["10.0.0.0/8"]

# Inbound is default-deny: only these services come in (plus loopback, replies, ICMP).
[[firewall.inbound]]
name = "ssh-from-admin"
zone = "admin"
protocol = "tcp"
ports = [22]

[[firewall.inbound]]
name = "https"
protocol = "tcp"
ports = [443]

# Outbound rules, first match wins. `users` match the socket's owner (meta skuid);
# `groups` match its primary group only (meta skgid): supplementary groups are not seen.
[[firewall.outbound]]
name = "registry-for-dev"
to = ["192.0.2.10/32"]
protocol = "tcp"
ports = [443]
groups = ["dev"]
action = "accept"

[[firewall.outbound]]
name = "registry-for-others"
to = ["192.0.2.10/32"]
action = "reject"

[[firewall.outbound]]
name = "www-data-stays-home"
users = ["www-data"]
action = "reject"
"#
    )
}

/// A commented example memory-protection profile, for `patchday baseline new --kind memory`.
pub fn example_memory(name: &str) -> String {
    format!(
        r#"# Patchday baseline policy. Unknown keys are refused, so a typo cannot weaken it.
[baseline]
name = "{name}"
version = "1"
description = "Memory protection for {name}"

[memory]
# true: write nothing, only report (memory.<unit>.wx_mappings) which running services map
# memory writable and executable, i.e. would break under MemoryDenyWriteExecute.
dry_run = true

# Written to /etc/sysctl.d/90-patchday-{name}.conf and set at once.
[memory.sysctls]
"kernel.randomize_va_space" = 2
"kernel.kptr_restrict" = 2
"kernel.dmesg_restrict" = 1
"kernel.unprivileged_bpf_disabled" = 1
"fs.protected_symlinks" = 1
"fs.protected_hardlinks" = 1

# One drop-in per service: /etc/systemd/system/<unit>.d/90-patchday-{name}.conf,
# in force at the service's next start.
[[memory.services]]
unit = "nginx.service"
memory_deny_write_execute = true
no_new_privileges = true
protect_system = "strict"
system_call_filter = ["@system-service"]
"#
    )
}

/// A commented example browser policy, for `patchday baseline new --kind browser`.
pub fn example_browser(name: &str) -> String {
    format!(
        r#"# Patchday baseline policy. Unknown keys are refused, so a typo cannot weaken it.
[baseline]
name = "{name}"
version = "1"
description = "Browser policy for {name}"

[browser]
# Written to /etc/chromium/policies/managed/patchday-{name}.json (and Google Chrome's
# /etc/opt/chrome/...) and to Firefox's policies.json (/etc/firefox-esr/policies/ for
# Debian's firefox-esr, /etc/firefox/policies/ for Mozilla's builds).
browsers = ["chromium", "firefox"]
# Refuse dangerous file types and files Safe Browsing flags: block-malicious,
# block-dangerous, block-potentially-dangerous, block-all.
downloads = "block-dangerous"
# Safe Browsing on, its warnings not bypassable: standard or enhanced.
safe_browsing = "standard"

# JavaScript only on these sites ("allow-list"), or everywhere but these ("block-list").
# Chromium content-setting patterns; Firefox has no per-site JavaScript policy.
[browser.javascript]
mode = "allow-list"
sites = ["https://intranet.example.com", "[*.]example.org"]

# Only these extensions may be installed; every other one is blocked.
[browser.extensions]
chromium = []
firefox = []

# After an update (through apt, so through Patchday) the browser must restart within this.
[browser.updates]
relaunch_within_hours = 24
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_other_examples_parse() {
        let p = Policy::parse(&example_memory("web")).unwrap();
        assert!(p.memory.unwrap().dry_run);
        let p = Policy::parse(&example_browser("desk")).unwrap();
        let b = p.browser.unwrap();
        assert_eq!(b.javascript.unwrap().sites.len(), 2);
        assert_eq!(b.downloads, Some(crate::browser::Downloads::BlockDangerous));
        let typo = example_browser("desk").replace("safe_browsing", "safe_browsnig");
        assert!(Policy::parse(&typo)
            .unwrap_err()
            .to_string()
            .contains("safe_browsnig"));
    }

    #[test]
    fn the_example_parses() {
        let p = Policy::parse(&example("web")).unwrap();
        assert_eq!(p.target_name(), "baseline-web-1.toml");
        let f = p.firewall.unwrap();
        assert_eq!(f.outbound[0].groups, vec!["dev".to_string()]);
        assert_eq!(f.guard_seconds, 60);
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let text = example("web").replace("icmp = true", "icmp = true\nallow_everything = true");
        let e = Policy::parse(&text).unwrap_err().to_string();
        assert!(e.contains("allow_everything"), "{e}");
        let text = example("web").replace("action = \"reject\"", "acton = \"reject\"");
        let e = Policy::parse(&text).unwrap_err().to_string();
        assert!(e.contains("acton"), "{e}");
    }

    #[test]
    fn bad_references_and_values_say_what_to_do() {
        let cases = [
            ("zone = \"admin\"", "zone = \"dmz\"", "does not define"),
            ("ports = [22]", "ports = []", "needs ports"),
            (
                "name = \"https\"",
                "name = \"ssh-from-admin\"",
                "used twice",
            ),
            (
                "guard_seconds = 60",
                "guard_seconds = 1",
                "between 5 and 3600",
            ),
            ("192.0.2.10/32", "192.0.2.10/33", "prefix length"),
            ("version = \"1\"", "version = \"one\"", "start with a digit"),
            (
                "groups = [\"dev\"]",
                "groups = [\"dev\"]\nusers = [\"bob\"]",
                "one rule for",
            ),
        ];
        for (from, to, want) in cases {
            let text = example("web").replacen(from, to, 1);
            let e = Policy::parse(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{from} -> {to}: {e}");
        }
    }

    #[test]
    fn cidrs() {
        assert_eq!(Cidr::parse("10.0.0.0/8").unwrap().len, 8);
        assert_eq!(Cidr::parse("192.0.2.7").unwrap().len, 32);
        assert_eq!(Cidr::parse("2001:db8::/32").unwrap().len, 32);
        assert!(Cidr::parse("10.0.0.300/8").is_err());
    }
}
