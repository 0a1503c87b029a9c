//! Collect [`Facts`] from the running host or from a `--root DIR` image.
//!
//! Everything is read from files under the root (dpkg status, os-release, apt lists,
//! sshd_config, the binaries themselves). Only for the live host does collection also
//! read `/proc` (sysctl, CPU flags, command line, sockets) and run `nft`,
//! `iptables-save` and `sshd -T`; an image has no kernel, so those facts stay empty.

use crate::elf;
use crate::model::{BinaryFacts, BinaryReason, Facts};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The sysctl keys collected (dotted names), the ones the hardening checks look at.
pub const SYSCTL_KEYS: &[&str] = &[
    "kernel.randomize_va_space",
    "kernel.kptr_restrict",
    "kernel.dmesg_restrict",
    "kernel.unprivileged_bpf_disabled",
    "kernel.yama.ptrace_scope",
    "kernel.kexec_load_disabled",
    "kernel.perf_event_paranoid",
    "fs.protected_symlinks",
    "fs.protected_hardlinks",
    "fs.protected_fifos",
    "fs.protected_regular",
    "fs.suid_dumpable",
    "net.ipv4.ip_forward",
    "net.ipv4.tcp_syncookies",
];

/// Directories walked for setuid and setgid binaries (plus every `/usr/lib*`).
const SETUID_DIRS: &[&str] = &["usr/bin", "usr/sbin", "bin", "sbin", "usr/libexec"];

/// Where and how to collect.
#[derive(Clone, Debug)]
pub struct CollectOptions {
    /// Filesystem root to read: `/` for the host, or an image or overlay root.
    pub root: PathBuf,
    /// `root` is the running system: read `/proc`, list sockets, run `nft` and `sshd -T`.
    pub live: bool,
    /// Walk the binary directories for setuid/setgid files and inspect their ELF headers.
    pub scan_binaries: bool,
}

impl CollectOptions {
    /// The running host (`/`, live, with the binary scan).
    pub fn host() -> Self {
        CollectOptions {
            root: PathBuf::from("/"),
            live: true,
            scan_binaries: true,
        }
    }

    /// An image or overlay root (`--root DIR`): files only, nothing from `/proc`.
    pub fn image(root: impl Into<PathBuf>) -> Self {
        CollectOptions {
            root: root.into(),
            live: false,
            scan_binaries: true,
        }
    }
}

/// Why facts could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// The root is not a directory.
    #[error("{path} is not a directory; pass the root of a Debian-family system")]
    NoRoot {
        /// The root given.
        path: String,
    },
    /// The dpkg status database is missing or unreadable.
    #[error(
        "cannot read the dpkg status database {path}: {source}; is this a Debian-family system?"
    )]
    DpkgStatus {
        /// Path of the status file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Collect all facts for one host or image.
pub fn collect(opts: &CollectOptions) -> Result<Facts, FactsError> {
    let root = opts.root.as_path();
    if !root.is_dir() {
        return Err(FactsError::NoRoot {
            path: root.display().to_string(),
        });
    }
    let status_path = root.join("var/lib/dpkg/status");
    let status = fs::read_to_string(&status_path).map_err(|source| FactsError::DpkgStatus {
        path: status_path.display().to_string(),
        source,
    })?;
    let packages = patchday_pkg::status::parse_status(&status);
    let os_text = fs::read_to_string(root.join("etc/os-release"))
        .or_else(|_| fs::read_to_string(root.join("usr/lib/os-release")))
        .unwrap_or_default();
    let os = patchday_pkg::osrelease::parse_os_release(&os_text);

    let architecture = native_architecture(root, &packages);
    let kernels_installed = packages
        .iter()
        .filter(|p| {
            p.name
                .strip_prefix("linux-image-")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .map(|p| format!("{} {}", p.name, p.version))
        .collect();

    let proc_dir = root.join("proc");
    let (hostname, kernel_running, sysctl, cpu_nx, cmdline) = if opts.live {
        (
            read_trimmed(&proc_dir.join("sys/kernel/hostname")),
            read_trimmed(&proc_dir.join("sys/kernel/osrelease")),
            read_sysctl(&proc_dir.join("sys")),
            fs::read_to_string(proc_dir.join("cpuinfo"))
                .ok()
                .and_then(|t| cpu_has_nx(&t)),
            read_trimmed(&proc_dir.join("cmdline")),
        )
    } else {
        (
            read_trimmed(&root.join("etc/hostname")),
            String::new(),
            BTreeMap::new(),
            None,
            String::new(),
        )
    };

    let mut binaries = Vec::new();
    if opts.scan_binaries {
        let mut wanted: Vec<(String, BinaryReason)> = setuid_files(root)
            .into_iter()
            .map(|p| (p, BinaryReason::Setuid))
            .collect();
        if opts.live {
            let seen: HashSet<String> = wanted.iter().map(|(p, _)| p.clone()).collect();
            for exe in listening_executables(&proc_dir) {
                if !seen.contains(&exe) {
                    wanted.push((exe, BinaryReason::Listening));
                }
            }
        }
        for (path, reason) in wanted {
            let on_disk = under_root(root, &path);
            if let Ok(info) = elf::inspect(&on_disk) {
                binaries.push(info.to_facts(&path, reason));
            }
        }
        assign_packages(root, &mut binaries);
    }

    let firewall_loaded = if opts.live {
        firewall_state(&proc_dir)
    } else {
        None
    };
    let sshd = sshd_settings(root, opts.live);

    Ok(Facts {
        hostname,
        os,
        architecture,
        packages,
        kernel_running,
        kernels_installed,
        reboot_required: root.join("run/reboot-required").exists(),
        apt_suites: read_apt_lists(&root.join("var/lib/apt/lists")),
        sysctl,
        cpu_nx,
        cmdline,
        binaries,
        firewall_loaded,
        sshd,
        browser_policy: crate::browser::collect(root),
    })
}

/// `path` (absolute, as on the host) inside `root`.
fn under_root(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

fn read_trimmed(path: &Path) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// dpkg's native architecture: that of the `dpkg` package itself, else the first line
/// of `/var/lib/dpkg/arch`, else the most common non-`all` architecture.
fn native_architecture(root: &Path, packages: &[patchday_types::InstalledPackage]) -> String {
    if let Some(p) = packages.iter().find(|p| p.name == "dpkg") {
        if p.architecture != "all" {
            return p.architecture.clone();
        }
    }
    let from_file = read_trimmed(&root.join("var/lib/dpkg/arch"));
    if let Some(first) = from_file.lines().next().filter(|l| !l.is_empty()) {
        return first.trim().to_string();
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for p in packages.iter().filter(|p| p.architecture != "all") {
        *counts.entry(p.architecture.as_str()).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(a, _)| a.to_string())
        .unwrap_or_default()
}

/// Values of [`SYSCTL_KEYS`] present under a `proc/sys`-shaped directory; keys whose
/// file is absent (unsupported by this kernel) or unreadable are left out.
pub fn read_sysctl(proc_sys: &Path) -> BTreeMap<String, String> {
    SYSCTL_KEYS
        .iter()
        .filter_map(|key| {
            let value = fs::read_to_string(proc_sys.join(key.replace('.', "/"))).ok()?;
            let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
            Some((key.to_string(), value))
        })
        .collect()
}

/// Whether `/proc/cpuinfo` text advertises NX; None when it has no x86 `flags` line.
pub fn cpu_has_nx(cpuinfo: &str) -> Option<bool> {
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags") && l.contains(':'))?;
    let (_, list) = flags.split_once(':')?;
    Some(list.split_whitespace().any(|f| f == "nx"))
}

/// Newest version of every binary package per suite, from an apt lists directory
/// (`*_Packages`, also `.lz4` and `.gz`), the suite taken from the matching
/// `*_InRelease` or `*_Release` file.
pub fn read_apt_lists(lists: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut suites: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let Ok(entries) = fs::read_dir(lists) else {
        return suites;
    };
    let mut releases: Vec<(String, String)> = Vec::new(); // (prefix, suite)
    let mut package_files: Vec<(String, PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if let Some(prefix) = name
            .strip_suffix("_InRelease")
            .or_else(|| name.strip_suffix("_Release"))
        {
            if let Some(suite) = read_head(&path, 64 * 1024).and_then(|t| release_suite(&t)) {
                releases.push((format!("{prefix}_"), suite));
            }
        } else if name.ends_with("_Packages")
            || name.ends_with("_Packages.lz4")
            || name.ends_with("_Packages.gz")
        {
            package_files.push((name, path));
        }
    }
    // InRelease and Release for the same prefix agree; keep the longest prefix match.
    releases.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
    package_files.sort();
    for (name, path) in package_files {
        let suite = releases
            .iter()
            .find(|(prefix, _)| name.starts_with(prefix.as_str()))
            .map(|(_, s)| s.clone())
            .or_else(|| suite_from_list_name(&name));
        let Some(suite) = suite else { continue };
        let Some(text) = read_index(&path) else {
            continue;
        };
        let newest = suites.entry(suite).or_default();
        merge_packages(&text, newest);
    }
    suites
}

/// The first `limit` bytes of a file as text.
fn read_head(path: &Path, limit: u64) -> Option<String> {
    let mut text = String::new();
    let file = fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes).ok()?;
    text.push_str(&String::from_utf8_lossy(&bytes));
    Some(text)
}

/// A Packages index, decompressed by its extension.
fn read_index(path: &Path) -> Option<String> {
    let file = fs::File::open(path).ok()?;
    let mut out = String::new();
    let name = path.file_name()?.to_string_lossy();
    if name.ends_with(".lz4") {
        lz4_flex::frame::FrameDecoder::new(std::io::BufReader::new(file))
            .read_to_string(&mut out)
            .ok()?;
    } else if name.ends_with(".gz") {
        flate2::read::GzDecoder::new(std::io::BufReader::new(file))
            .read_to_string(&mut out)
            .ok()?;
    } else {
        std::io::BufReader::new(file)
            .read_to_string(&mut out)
            .ok()?;
    }
    Some(out)
}

/// The suite of a Release or InRelease file: the `Codename` when it names the same
/// pocket as `Suite` (Debian: `bookworm-security` for `stable-security`), otherwise
/// the `Suite` (Ubuntu: `jammy-security`, whose Codename is plain `jammy`).
pub fn release_suite(text: &str) -> Option<String> {
    let mut suite = None;
    let mut codename = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("Suite:") {
            suite.get_or_insert_with(|| v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("Codename:") {
            codename.get_or_insert_with(|| v.trim().to_string());
        } else if line.starts_with("MD5Sum:") || line.starts_with("SHA256:") {
            break;
        }
    }
    let pocket = |s: &str| s.split_once('-').map(|(_, p)| p.to_string());
    match (
        suite.filter(|s| !s.is_empty()),
        codename.filter(|c| !c.is_empty()),
    ) {
        (Some(s), Some(c)) if pocket(&s) == pocket(&c) => Some(c),
        (Some(s), _) => Some(s),
        (None, c) => c,
    }
}

/// The dist of an apt list file name without a Release file
/// (`host_debian_dists_bookworm_main_binary-amd64_Packages` → `bookworm`).
fn suite_from_list_name(name: &str) -> Option<String> {
    let (_, rest) = name.split_once("_dists_")?;
    let (dist, _) = rest.split_once('_')?;
    Some(dist.to_string())
}

/// Fold one Packages index into `newest`, keeping the highest version per package.
pub fn merge_packages(text: &str, newest: &mut BTreeMap<String, String>) {
    let mut name: Option<&str> = None;
    let mut version: Option<&str> = None;
    let mut flush = |name: &mut Option<&str>, version: &mut Option<&str>| {
        if let (Some(n), Some(v)) = (name.take(), version.take()) {
            match newest.get_mut(n) {
                Some(old) => {
                    if patchday_pkg::version::compare_deb(v, old)
                        .is_ok_and(|o| o == std::cmp::Ordering::Greater)
                    {
                        *old = v.to_string();
                    }
                }
                None => {
                    newest.insert(n.to_string(), v.to_string());
                }
            }
        }
        *name = None;
        *version = None;
    };
    for line in text.lines() {
        if line.is_empty() {
            flush(&mut name, &mut version);
        } else if let Some(v) = line.strip_prefix("Package:") {
            name = Some(v.trim());
        } else if let Some(v) = line.strip_prefix("Version:") {
            version = Some(v.trim());
        }
    }
    flush(&mut name, &mut version);
}

/// Setuid and setgid regular files (host paths) in the binary directories under
/// `root`, without crossing into other filesystems.
pub fn setuid_files(root: &Path) -> Vec<String> {
    let mut starts: Vec<String> = SETUID_DIRS.iter().map(|s| s.to_string()).collect();
    if let Ok(entries) = fs::read_dir(root.join("usr")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("lib") && name != "libexec" {
                starts.push(format!("usr/{name}"));
            }
        }
    }
    let mut found = BTreeSet::new();
    for start in starts {
        let dir = root.join(&start);
        // Merged-/usr symlinks (/bin -> usr/bin) point at directories walked anyway.
        let Ok(meta) = fs::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let dev = meta.dev();
        let mut stack = vec![(dir, format!("/{start}"))];
        while let Some((dir, host)) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let Ok(ft) = e.file_type() else { continue };
                let host_path = format!("{host}/{}", e.file_name().to_string_lossy());
                if ft.is_dir() {
                    if let Ok(m) = e.metadata() {
                        if m.dev() == dev {
                            stack.push((e.path(), host_path));
                        }
                    }
                } else if ft.is_file() {
                    if let Ok(m) = e.metadata() {
                        if m.permissions().mode() & 0o6000 != 0 {
                            found.insert(host_path);
                        }
                    }
                }
            }
        }
    }
    found.into_iter().collect()
}

/// Socket inodes in LISTEN state (TCP) or bound and unconnected (UDP) from the text
/// of `/proc/net/{tcp,tcp6,udp,udp6}`.
pub fn listening_inodes(text: &str, udp: bool) -> Vec<u64> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (rem, st, inode) = (f.get(2)?, f.get(3)?, f.get(9)?);
            let listening = if udp {
                *st == "07" && rem.ends_with(":0000")
            } else {
                *st == "0A"
            };
            let inode: u64 = inode.parse().ok()?;
            (listening && inode != 0).then_some(inode)
        })
        .collect()
}

/// Executables (host paths) of processes that hold a listening socket.
fn listening_executables(proc_dir: &Path) -> BTreeSet<String> {
    let mut inodes = HashSet::new();
    for (file, udp) in [
        ("tcp", false),
        ("tcp6", false),
        ("udp", true),
        ("udp6", true),
    ] {
        if let Ok(text) = fs::read_to_string(proc_dir.join("net").join(file)) {
            inodes.extend(listening_inodes(&text, udp));
        }
    }
    let mut exes = BTreeSet::new();
    if inodes.is_empty() {
        return exes;
    }
    let Ok(procs) = fs::read_dir(proc_dir) else {
        return exes;
    };
    for p in procs.flatten() {
        let name = p.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            fs::read_link(fd.path()).is_ok_and(|target| {
                target
                    .to_string_lossy()
                    .strip_prefix("socket:[")
                    .and_then(|s| s.strip_suffix(']'))
                    .and_then(|s| s.parse::<u64>().ok())
                    .is_some_and(|i| inodes.contains(&i))
            })
        });
        if holds {
            if let Ok(exe) = fs::read_link(p.path().join("exe")) {
                let exe = exe.to_string_lossy();
                let exe = exe.strip_suffix(" (deleted)").unwrap_or(&exe);
                exes.insert(exe.to_string());
            }
        }
    }
    exes
}

/// Fill `package` from dpkg's file lists, matching merged-/usr aliases too.
fn assign_packages(root: &Path, binaries: &mut [BinaryFacts]) {
    if binaries.is_empty() {
        return;
    }
    let alias = |p: &str| -> Option<String> {
        for d in ["/bin/", "/sbin/", "/lib/", "/lib64/"] {
            if let Some(rest) = p.strip_prefix(d) {
                return Some(format!("/usr{d}{rest}"));
            }
            if let Some(rest) = p.strip_prefix(&format!("/usr{d}")) {
                return Some(format!("{d}{rest}"));
            }
        }
        None
    };
    let mut wanted: HashMap<String, usize> = HashMap::new();
    for (i, b) in binaries.iter().enumerate() {
        wanted.insert(b.path.clone(), i);
        if let Some(a) = alias(&b.path) {
            wanted.entry(a).or_insert(i);
        }
    }
    let Ok(entries) = fs::read_dir(root.join("var/lib/dpkg/info")) else {
        return;
    };
    let mut left = binaries.len();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pkg) = name.strip_suffix(".list") else {
            continue;
        };
        let Ok(text) = fs::read_to_string(e.path()) else {
            continue;
        };
        for line in text.lines() {
            if let Some(&i) = wanted.get(line) {
                if let Some(b) = binaries.get_mut(i) {
                    if b.package.is_none() {
                        let pkg = pkg.split(':').next().unwrap_or(pkg);
                        b.package = Some(pkg.to_string());
                        left -= 1;
                    }
                }
            }
        }
        if left == 0 {
            break;
        }
    }
}

/// The first existing program among `candidates` under `root`.
fn find_program(root: &Path, candidates: &[&str]) -> Option<PathBuf> {
    candidates
        .iter()
        .map(|c| under_root(root, c))
        .find(|p| p.is_file())
}

/// Run a program and return its stdout when it exits successfully.
fn run(program: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether the effective user is root, from `/proc/self/status`.
fn is_root(proc_dir: &Path) -> bool {
    fs::read_to_string(proc_dir.join("self/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Whether a host firewall ruleset is loaded: `nft list ruleset` or `iptables-save`
/// print rules, or legacy iptables tables exist; `Some(false)` only when a tool that
/// could see rules ran and printed none; None when nothing could tell.
fn firewall_state(proc_dir: &Path) -> Option<bool> {
    let root = Path::new("/");
    let mut answers = Vec::new();
    if is_root(proc_dir) {
        if let Some(nft) = find_program(root, &["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]) {
            answers.push(run(&nft, &["list", "ruleset"]).map(|out| nft_has_rules(&out)));
        }
        if let Some(ipt) = find_program(
            root,
            &[
                "/usr/sbin/iptables-save",
                "/sbin/iptables-save",
                "/usr/bin/iptables-save",
            ],
        ) {
            answers.push(run(&ipt, &[]).map(|out| iptables_has_rules(&out)));
        }
    }
    // Legacy iptables tables prove a ruleset; their absence proves nothing about nftables.
    if fs::read_to_string(proc_dir.join("net/ip_tables_names")).is_ok_and(|s| !s.trim().is_empty())
    {
        answers.push(Some(true));
    }
    if answers.contains(&Some(true)) {
        Some(true)
    } else if answers.contains(&Some(false)) {
        Some(false)
    } else {
        None
    }
}

/// `nft list ruleset` output holds at least one table.
pub fn nft_has_rules(out: &str) -> bool {
    out.lines().any(|l| l.trim_start().starts_with("table "))
}

/// `iptables-save` output holds a rule or a non-ACCEPT chain policy.
pub fn iptables_has_rules(out: &str) -> bool {
    out.lines().any(|l| {
        l.starts_with("-A ")
            || (l.starts_with(':') && (l.contains(" DROP ") || l.contains(" REJECT ")))
    })
}

/// sshd's effective settings: `sshd -T` on the live host as root, else the config
/// files with OpenSSH's defaults; empty when sshd is not installed under `root`.
fn sshd_settings(root: &Path, live: bool) -> BTreeMap<String, String> {
    let Some(sshd) = find_program(root, &["/usr/sbin/sshd", "/sbin/sshd"]) else {
        return BTreeMap::new();
    };
    if live && root == Path::new("/") && is_root(Path::new("/proc")) {
        if let Some(out) = run(&sshd, &["-T"]) {
            let parsed = parse_sshd_t(&out);
            if !parsed.is_empty() {
                return parsed;
            }
        }
    }
    parse_sshd_config(root, Path::new("/etc/ssh/sshd_config"))
}

/// Parse `sshd -T` output (`key value` lines) into lower-case keys.
pub fn parse_sshd_t(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(' ')?;
            Some((k.to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect()
}

/// OpenSSH's defaults for the settings the checks read.
const SSHD_DEFAULTS: &[(&str, &str)] = &[
    ("permitrootlogin", "prohibit-password"),
    ("passwordauthentication", "yes"),
    ("permitemptypasswords", "no"),
    ("pubkeyauthentication", "yes"),
    ("kbdinteractiveauthentication", "yes"),
    ("x11forwarding", "no"),
    ("maxauthtries", "6"),
    ("port", "22"),
    ("usepam", "no"),
];

/// Effective settings from `config` (a host path) under `root`, following `Include`
/// and stopping at the first `Match` block; the first value of a keyword wins, as in
/// sshd, and OpenSSH defaults fill the rest.
pub fn parse_sshd_config(root: &Path, config: &Path) -> BTreeMap<String, String> {
    let mut settings = BTreeMap::new();
    let mut in_match = false;
    read_sshd_file(root, config, &mut settings, &mut in_match, 0);
    for (k, v) in SSHD_DEFAULTS {
        settings
            .entry(k.to_string())
            .or_insert_with(|| v.to_string());
    }
    settings
}

fn read_sshd_file(
    root: &Path,
    config: &Path,
    settings: &mut BTreeMap<String, String>,
    in_match: &mut bool,
    depth: u32,
) {
    if depth > 8 {
        return;
    }
    let host = config.to_string_lossy();
    let Ok(text) = fs::read_to_string(under_root(root, &host)) else {
        return;
    };
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once(|c: char| c.is_whitespace() || c == '=') {
            Some((k, v)) => (
                k.to_ascii_lowercase(),
                v.trim_start_matches([' ', '\t', '=']).trim(),
            ),
            None => continue,
        };
        if key == "match" {
            *in_match = true;
        }
        if *in_match {
            continue;
        }
        if key == "include" {
            for pattern in value.split_whitespace() {
                let pattern = if pattern.starts_with('/') {
                    pattern.to_string()
                } else {
                    format!("/etc/ssh/{pattern}")
                };
                for file in expand_glob(root, &pattern) {
                    read_sshd_file(root, Path::new(&file), settings, in_match, depth + 1);
                }
            }
            continue;
        }
        settings.entry(key).or_insert_with(|| value.to_string());
    }
}

/// Expand a host path whose last component may hold one `*` into sorted host paths.
fn expand_glob(root: &Path, pattern: &str) -> Vec<String> {
    let Some((dir, file)) = pattern.rsplit_once('/') else {
        return Vec::new();
    };
    let Some((pre, post)) = file.split_once('*') else {
        return vec![pattern.to_string()];
    };
    let mut out: Vec<String> = fs::read_dir(under_root(root, dir))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| {
                    n.starts_with(pre) && n.ends_with(post) && n.len() >= pre.len() + post.len()
                })
                .map(|n| format!("{dir}/{n}"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    const SMALL_ELF: &str = "/usr/bin/true";

    const STATUS: &str = "\
Package: dpkg
Status: install ok installed
Architecture: amd64
Version: 1.21.22

Package: openssh-client
Status: install ok installed
Architecture: amd64
Source: openssh
Version: 1:9.2p1-2+deb12u3

Package: linux-image-6.1.0-26-amd64
Status: install ok installed
Architecture: amd64
Source: linux-signed-amd64
Version: 6.1.112-1

Package: linux-image-amd64
Status: install ok installed
Architecture: amd64
Source: linux-signed-amd64
Version: 6.1.112-1

Package: removed-thing
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0
";

    const INRELEASE_SECURITY: &str = "\
-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA256

Origin: Debian
Label: Debian-Security
Suite: stable-security
Codename: bookworm-security
SHA256:
 0123 45 main/binary-amd64/Packages
";

    const PACKAGES_SECURITY: &str = "\
Package: openssh-client
Source: openssh
Version: 1:9.2p1-2+deb12u5
Architecture: amd64

Package: openssh-client
Version: 1:9.2p1-2+deb12u4
Architecture: amd64

Package: libssl3
Source: openssl
Version: 3.0.15-1~deb12u1
Architecture: amd64
";

    #[test]
    fn image_root_collects_os_packages_apt_lists_and_setuid() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "etc/os-release",
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
        );
        write(root, "etc/hostname", "image-host\n");
        write(root, "var/lib/dpkg/status", STATUS);
        let lists = "var/lib/apt/lists";
        write(
            root,
            &format!("{lists}/deb.debian.org_debian-security_dists_bookworm-security_InRelease"),
            INRELEASE_SECURITY,
        );
        write(
            root,
            &format!("{lists}/deb.debian.org_debian-security_dists_bookworm-security_main_binary-amd64_Packages"),
            PACKAGES_SECURITY,
        );
        // A Release file (not InRelease) for the main suite, and a gzip index.
        write(
            root,
            &format!("{lists}/deb.debian.org_debian_dists_bookworm_Release"),
            "Origin: Debian\nSuite: stable\nCodename: bookworm\n",
        );
        let gz = root.join(format!(
            "{lists}/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.gz"
        ));
        let mut enc = flate2::write::GzEncoder::new(
            fs::File::create(&gz).unwrap(),
            flate2::Compression::fast(),
        );
        std::io::Write::write_all(
            &mut enc,
            b"Package: openssh-client\nVersion: 1:9.2p1-2+deb12u3\n\n",
        )
        .unwrap();
        enc.finish().unwrap();
        // An lz4 index for a suite known only from its file name.
        let lz4 = root.join(format!(
            "{lists}/example.org_repo_dists_extra_main_binary-amd64_Packages.lz4"
        ));
        let mut enc = lz4_flex::frame::FrameEncoder::new(fs::File::create(&lz4).unwrap());
        std::io::Write::write_all(&mut enc, b"Package: tool\nVersion: 2.0\n").unwrap();
        enc.finish().unwrap();

        // A setuid ELF and a setuid script (not ELF) under usr/bin, a plain ELF.
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        let suid = root.join("usr/bin/suidtool");
        fs::copy(SMALL_ELF, &suid).unwrap();
        fs::set_permissions(&suid, fs::Permissions::from_mode(0o4755)).unwrap();
        write(root, "usr/bin/script", "#!/bin/sh\n");
        fs::set_permissions(
            root.join("usr/bin/script"),
            fs::Permissions::from_mode(0o2755),
        )
        .unwrap();
        fs::copy(SMALL_ELF, root.join("usr/bin/plain")).unwrap();
        write(
            root,
            "var/lib/dpkg/info/suidpkg:amd64.list",
            "/usr\n/usr/bin\n/usr/bin/suidtool\n",
        );
        write(root, "usr/sbin/sshd", "");
        write(
            root,
            "etc/ssh/sshd_config",
            "Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication yes\nMatch User bob\nPermitRootLogin yes\n",
        );
        write(
            root,
            "etc/ssh/sshd_config.d/10-hard.conf",
            "PasswordAuthentication no\n",
        );

        let facts = collect(&CollectOptions::image(root)).unwrap();
        assert_eq!(facts.hostname, "image-host");
        assert_eq!(facts.os.id, "debian");
        assert_eq!(facts.os.version_id, "12");
        assert_eq!(facts.os.version_codename, "bookworm");
        assert_eq!(facts.architecture, "amd64");
        assert_eq!(facts.packages.len(), 4);
        let ssh = facts
            .packages
            .iter()
            .find(|p| p.name == "openssh-client")
            .unwrap();
        assert_eq!(ssh.source, "openssh");
        assert_eq!(
            facts.kernels_installed,
            vec!["linux-image-6.1.0-26-amd64 6.1.112-1".to_string()]
        );
        assert_eq!(facts.kernel_running, "");
        assert!(facts.sysctl.is_empty(), "no sysctl for an image");
        assert_eq!(facts.cpu_nx, None);
        assert_eq!(facts.firewall_loaded, None);

        let sec = &facts.apt_suites["bookworm-security"];
        assert_eq!(sec["openssh-client"], "1:9.2p1-2+deb12u5", "newest kept");
        assert_eq!(sec["libssl3"], "3.0.15-1~deb12u1");
        assert_eq!(
            facts.apt_suites["bookworm"]["openssh-client"],
            "1:9.2p1-2+deb12u3"
        );
        assert_eq!(facts.apt_suites["extra"]["tool"], "2.0");

        assert_eq!(facts.binaries.len(), 1, "{:?}", facts.binaries);
        let b = &facts.binaries[0];
        assert_eq!(b.path, "/usr/bin/suidtool");
        assert_eq!(b.reason, BinaryReason::Setuid);
        assert_eq!(b.package.as_deref(), Some("suidpkg"));

        assert_eq!(
            facts.sshd["passwordauthentication"], "no",
            "include wins first"
        );
        assert_eq!(
            facts.sshd["permitrootlogin"], "prohibit-password",
            "match ignored"
        );
    }

    #[test]
    fn missing_dpkg_status_is_an_error_that_says_what_to_check() {
        let dir = tempfile::tempdir().unwrap();
        let err = collect(&CollectOptions::image(dir.path())).unwrap_err();
        assert!(err.to_string().contains("dpkg status"), "{err}");
        let err = collect(&CollectOptions::image(dir.path().join("nope"))).unwrap_err();
        assert!(matches!(err, FactsError::NoRoot { .. }));
    }

    #[test]
    fn sysctl_tree_reads_present_keys_only() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "kernel/randomize_va_space", "2\n");
        write(dir.path(), "fs/protected_symlinks", "1\n");
        write(dir.path(), "kernel/yama/ptrace_scope", "0\n");
        let s = read_sysctl(dir.path());
        assert_eq!(s.len(), 3);
        assert_eq!(s["kernel.randomize_va_space"], "2");
        assert_eq!(s["kernel.yama.ptrace_scope"], "0");
        assert!(!s.contains_key("kernel.kptr_restrict"));
    }

    #[test]
    fn small_parsers() {
        assert_eq!(
            cpu_has_nx("processor\t: 0\nflags\t\t: fpu pae nx lm\n"),
            Some(true)
        );
        assert_eq!(cpu_has_nx("flags\t\t: fpu pae lm\n"), Some(false));
        assert_eq!(cpu_has_nx("Features\t: fp asimd\n"), None);

        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1213 1 0 100 0 0 10 0\n\
   1: 020200C0:E430 507100CB:01BB 01 00000000:00000000 00:00000000 00000000     0        0 15284 1 0 20 4 0 94 148\n";
        assert_eq!(listening_inodes(tcp, false), vec![1213]);
        let udp = "  sl header\n   0: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 777 2 0 0\n   1: 0100007F:0035 0100007F:A000 01 00000000:00000000 00:00000000 00000000 0 0 778 2 0 0\n";
        assert_eq!(listening_inodes(udp, true), vec![777]);

        assert_eq!(
            release_suite("Suite: jammy-security\nCodename: jammy\n").as_deref(),
            Some("jammy-security")
        );
        assert_eq!(
            release_suite("Suite: stable\nCodename: bookworm\n").as_deref(),
            Some("bookworm")
        );
        assert_eq!(
            release_suite("Codename: trixie\n").as_deref(),
            Some("trixie")
        );
        assert_eq!(release_suite("Origin: x\n"), None);

        assert!(nft_has_rules(
            "table inet filter {\n\tchain input {\n\t}\n}\n"
        ));
        assert!(!nft_has_rules(""));
        assert!(iptables_has_rules(
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j DROP\nCOMMIT\n"
        ));
        assert!(!iptables_has_rules(
            "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"
        ));

        let t = parse_sshd_t("permitrootlogin without-password\nPasswordAuthentication no\n");
        assert_eq!(t["permitrootlogin"], "without-password");
        assert_eq!(t["passwordauthentication"], "no");
    }
}
