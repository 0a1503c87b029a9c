//! Issue 13, points 1 to 4: the baseline backend. A baseline payload is a signed TOML
//! policy (`baselines/<name>-<version>.toml`), verified through TUF like every payload
//! before it gets here. Phases:
//! 1. check: the policy parses strictly and names the package and version the signed
//!    catalog described;
//! 2. apply: the firewall is compiled for this host's accounts and replaces the one
//!    `inet patchday` table in one `nft -j -f` transaction, after the previous table was
//!    saved in a guard journal (`var/lib/patchday/baseline-guard.json`);
//! 3. guard: the server must be reachable (a new TCP connection to it) within the policy's
//!    `guard_seconds`, or the previous table comes back and the install fails;
//! 4. commit: the registry (`var/lib/patchday/baselines.json`) records the version, the
//!    policy and what the kernel listed after applying (the commit point).
//!
//! A `[memory]` profile and a `[browser]` policy are files the baseline owns (sysctl.d,
//! systemd drop-ins, Chromium's and Firefox's enterprise policy files), each written
//! atomically (temporary file + rename) and recorded in the registry entry.
//!
//! [`recover`] finishes or undoes a run that died between two steps. [`enforce_all`] runs
//! at every agent run: what differs from the committed listing (a hand edit) is drift,
//! repaired by applying the policy again, and reported with the rules' counters.

use super::Outcome;
use anyhow::Context;
use patchday_baseline::accounts::Accounts;
use patchday_baseline::browser::{self, BrowserPaths};
use patchday_baseline::memory::{self, OwnedFile};
use patchday_baseline::nft::{self, Nft};
use patchday_baseline::{firewall, Policy};
use patchday_types::api::BaselineReport;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One applied baseline.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// Applied version.
    pub version: String,
    /// The signed policy text it was applied from (re-applied when the host drifts).
    pub policy: String,
    /// What `nft -j list table inet patchday` said right after applying (drift is any
    /// difference from it); absent for a baseline without a firewall.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<serde_json::Value>,
    /// Issue 13, point 3 (partial): the files the memory profile owns, as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<OwnedFile>,
}

/// What an apply left to undo if the guard does not confirm it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Guard {
    name: String,
    version: String,
    /// The table before, as listed (`None`: there was none).
    previous: Option<serde_json::Value>,
}

fn registry_path(root: &Path) -> PathBuf {
    root.join("var/lib/patchday/baselines.json")
}

fn guard_path(root: &Path) -> PathBuf {
    root.join("var/lib/patchday/baseline-guard.json")
}

/// Applied baselines by name.
pub fn registry(root: &Path) -> anyhow::Result<BTreeMap<String, Entry>> {
    super::read_registry(
        &registry_path(root),
        "remove it and the next run applies the assigned baselines again",
    )
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    crate::state::write_atomic(path, &serde_json::to_vec_pretty(value)?, 0o600)
}

/// The firewall is the running system's: refused for an image (`--root` elsewhere), whose
/// rules would land on the machine running the agent.
fn running_system(root: &Path) -> anyhow::Result<()> {
    if root != Path::new("/") {
        anyhow::bail!(
            "a firewall baseline applies to the running system only; run the agent with --root / on the host itself (its root here is {})",
            root.display()
        );
    }
    Ok(())
}

/// Compiles a policy's firewall for the host at `root` (`None`: the policy has none).
fn compile(root: &Path, policy: &Policy) -> anyhow::Result<Option<serde_json::Value>> {
    let Some(fw) = &policy.firewall else {
        return Ok(None);
    };
    running_system(root)?;
    let accounts = Accounts::read(root)?;
    let doc = firewall::compile(fw, &accounts)?;
    Ok(Some(serde_json::to_value(doc)?))
}

/// Whether a new TCP connection to the server opens within `limit` (tried every second).
fn server_reachable(server: &str, limit: Duration) -> bool {
    let Ok(url) = url::Url::parse(server) else {
        return false;
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return false;
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let start = Instant::now();
    loop {
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            return false;
        }
        let addrs = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
            .map(|a| a.collect::<Vec<_>>())
            .unwrap_or_default();
        for a in addrs {
            let attempt = left.min(Duration::from_secs(2));
            if std::net::TcpStream::connect_timeout(&a, attempt).is_ok() {
                return true;
            }
        }
        std::thread::sleep(Duration::from_secs(1).min(limit.saturating_sub(start.elapsed())));
    }
}

/// Applies one verified baseline payload (`package`/`version` as the signed catalog
/// describes it), guarded: `server` must stay reachable.
pub fn install(root: &Path, server: &str, path: &Path, package: &str, version: &str) -> Outcome {
    match install_inner(root, server, path, package, version) {
        Ok(()) => Outcome::Installed,
        Err(e) => Outcome::Failed(format!("baseline {package} {version}: {e:#}")),
    }
}

fn install_inner(
    root: &Path,
    server: &str,
    path: &Path,
    package: &str,
    version: &str,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the policy {}", path.display()))?;
    let policy = Policy::parse(&text)?;
    if policy.baseline.name != package || policy.baseline.version != version {
        anyhow::bail!(
            "the policy file says it is {} {}, but the signed catalog describes {package} {version}; nothing was applied",
            policy.baseline.name,
            policy.baseline.version
        );
    }
    let mut reg = registry(root)?;
    // Checked and compiled before anything is applied, so a refusal changes nothing.
    let browser_files = match &policy.browser {
        None => Vec::new(),
        Some(b) => {
            if let Some((other, _)) = reg
                .iter()
                .find(|(n, e)| n.as_str() != package && entry_has_browser(e))
            {
                anyhow::bail!(
                    "baseline {other} already sets the browser policy on this host, and Firefox reads one policies.json; put the browser settings in one baseline (or decline {other}); nothing was applied"
                );
            }
            browser::compile(package, b, &BrowserPaths::default())?
        }
    };
    let applied = match compile(root, &policy)? {
        None => None,
        Some(doc) => {
            let nft = Nft::default();
            let previous = nft.list()?;
            write_json(
                &guard_path(root),
                &Guard {
                    name: package.to_owned(),
                    version: version.to_owned(),
                    previous: previous.clone(),
                },
            )?;
            nft.apply(&doc)?;
            let guard =
                Duration::from_secs(policy.firewall.as_ref().map_or(60, |f| f.guard_seconds));
            if !server_reachable(server, guard) {
                nft.apply(&nft::restore_document(previous.as_ref()))
                    .context("the lock-out guard could not restore the previous ruleset")?;
                let _ = std::fs::remove_file(guard_path(root));
                anyhow::bail!(
                    "the server {server} was not reachable within {}s of applying the firewall; the previous ruleset was restored (lock-out guard)",
                    guard.as_secs()
                );
            }
            nft.list()?
        }
    };
    // Issue 13, point 3 (partial): the memory profile's files and kernel settings.
    let mut files = match &policy.memory {
        Some(m) if !m.dry_run => {
            let files = memory::compile(package, m);
            write_files(root, &files)?;
            apply_sysctls(root, m)?;
            reload_units(root, &files);
            files
        }
        _ => Vec::new(),
    };
    // Issue 14, point 5: the folder scan's quarantine exists (root only) before the
    // daemon's watcher starts on the committed policy.
    if let Some(scan) = &policy.scan {
        crate::scan::quarantine::prepare(&crate::scan::on_machine(root, &scan.quarantine))?;
    }
    // Issue 13, point 4: the browsers' enterprise policy files.
    write_files(root, &browser_files)?;
    files.extend(browser_files);
    // Files the previous version owned and this one does not (a service or browser
    // dropped from the policy) go, so no stale setting stays in force.
    if let Some(previous) = reg.get(package) {
        for old in &previous.files {
            if !files.iter().any(|f| f.path == old.path) {
                match std::fs::remove_file(root.join(&old.path)) {
                    Ok(()) => tracing::info!(file = %old.path, "baseline file removed"),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(anyhow::Error::new(e)
                            .context(format!("removing /{} of the previous version", old.path)))
                    }
                }
            }
        }
    }
    reg.insert(
        package.to_owned(),
        Entry {
            version: version.to_owned(),
            policy: text,
            applied,
            files,
        },
    );
    write_json(&registry_path(root), &reg)?; // the commit point
    let _ = std::fs::remove_file(guard_path(root));
    tracing::info!(baseline = package, version, "baseline applied");
    Ok(())
}

/// Whether the policy an entry was applied from has a `[browser]` section.
fn entry_has_browser(e: &Entry) -> bool {
    Policy::parse(&e.policy).is_ok_and(|p| p.browser.is_some())
}

/// Finishes or undoes an apply that a stopped run left in its guard: committed, the
/// journal goes; not committed, the previous table comes back.
pub fn recover(root: &Path) -> anyhow::Result<()> {
    let Ok(bytes) = std::fs::read(guard_path(root)) else {
        return Ok(());
    };
    let guard: Guard = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is corrupt; remove it", guard_path(root).display()))?;
    let committed = registry(root)?
        .get(&guard.name)
        .is_some_and(|e| e.version == guard.version);
    if !committed {
        tracing::warn!(baseline = %guard.name, version = %guard.version, "a run stopped while guarding a new firewall; the previous ruleset is restored");
        Nft::default().apply(&nft::restore_document(guard.previous.as_ref()))?;
    }
    std::fs::remove_file(guard_path(root))?;
    Ok(())
}

/// Verifies every applied baseline: drift is repaired by applying the policy again; each
/// baseline's report says what was found and measured.
pub fn enforce_all(root: &Path) -> Vec<BaselineReport> {
    let mut reg = match registry(root) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "baselines not verified");
            return Vec::new();
        }
    };
    let mut reports = Vec::new();
    let mut changed = false;
    for (name, entry) in reg.iter_mut() {
        let mut report = BaselineReport {
            name: name.clone(),
            version: entry.version.clone(),
            ..Default::default()
        };
        if let Err(e) = enforce(root, entry, &mut report, &mut changed) {
            report.error = Some(format!("{e:#}"));
            tracing::error!(baseline = %name, error = %format!("{e:#}"), "baseline not enforced");
        }
        reports.push(report);
    }
    if changed {
        if let Err(e) = write_json(&registry_path(root), &reg) {
            tracing::error!(error = %format!("{e:#}"), "could not record the repaired baselines");
        }
    }
    reports
}

fn enforce(
    root: &Path,
    entry: &mut Entry,
    report: &mut BaselineReport,
    changed: &mut bool,
) -> anyhow::Result<()> {
    enforce_files(root, entry, report)?;
    let Some(applied) = &entry.applied else {
        return Ok(());
    };
    let nft = Nft::default();
    let current = nft.list()?;
    // Measured before a repair, which replaces the table and so starts its counters at 0.
    if let Some(listing) = &current {
        for (rule, (packets, bytes)) in nft::counters(listing) {
            report
                .measured
                .insert(format!("firewall.{rule}.packets"), packets);
            report
                .measured
                .insert(format!("firewall.{rule}.bytes"), bytes);
        }
    }
    let drift = nft::drift(applied, current.as_ref());
    if !drift.is_empty() {
        for d in &drift {
            tracing::warn!(baseline = %report.name, drift = %d, "baseline drift found");
        }
        report.drift.extend(drift);
        let policy = Policy::parse(&entry.policy)?;
        let doc = compile(root, &policy)?.context("the applied policy has no firewall")?;
        nft.apply(&doc).context("repairing the drift")?;
        entry.applied = nft.list()?;
        *changed = true;
        report.repaired = true;
        tracing::info!(baseline = %report.name, "baseline drift repaired");
    }
    Ok(())
}

/// The reports of a run's second check-in (after installs): what the first verification
/// found stays reported (drift repaired then is not lost because it is gone now).
pub fn merge_reports(
    earlier: &[BaselineReport],
    mut later: Vec<BaselineReport>,
) -> Vec<BaselineReport> {
    for r in &mut later {
        if let Some(e) = earlier
            .iter()
            .find(|e| e.name == r.name && e.version == r.version)
        {
            if r.drift.is_empty() && !e.drift.is_empty() {
                r.drift = e.drift.clone();
                r.repaired = e.repaired;
            }
        }
    }
    later
}

// ---- Issue 13, points 3 and 4: files the baseline owns (memory profiles, browser policy) ----

/// Writes the profile's files below `root` (a `sysctl.d` file, systemd drop-ins).
fn write_files(root: &Path, files: &[OwnedFile]) -> anyhow::Result<()> {
    for f in files {
        let path = root.join(&f.path);
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        crate::state::write_atomic(&path, f.content.as_bytes(), 0o644)
            .with_context(|| format!("writing {}", path.display()))?;
        tracing::info!(file = %path.display(), "baseline file written");
    }
    Ok(())
}

/// After drop-ins changed on a running systemd (`/run/systemd/system`): `systemctl
/// daemon-reload`, so each service gets them at its next start (services are not
/// restarted here). A failure is logged, never fatal: the files are in place.
fn reload_units(root: &Path, files: &[OwnedFile]) {
    let dropins = files.iter().any(|f| f.path.starts_with("etc/systemd/"));
    if !dropins || root != Path::new("/") || !Path::new("/run/systemd/system").exists() {
        return;
    }
    match std::process::Command::new("systemctl")
        .arg("daemon-reload")
        .status()
    {
        Ok(s) if s.success() => tracing::info!("systemctl daemon-reload: done"),
        Ok(s) => tracing::warn!(status = %s, "systemctl daemon-reload failed"),
        Err(e) => tracing::warn!(error = %e, "cannot run systemctl daemon-reload"),
    }
}

/// `/proc/sys` path of a sysctl name.
fn proc_sys(name: &str) -> PathBuf {
    Path::new("/proc/sys").join(name.replace('.', "/"))
}

/// Sets the profile's kernel settings now, as `sysctl -p FILE` would, on the running
/// system only (an image gets them from its sysctl.d file at boot).
fn apply_sysctls(root: &Path, m: &memory::Memory) -> anyhow::Result<()> {
    if root != Path::new("/") {
        return Ok(());
    }
    for (k, v) in &m.sysctls {
        std::fs::write(proc_sys(k), format!("{v}\n"))
            .with_context(|| format!("setting {k} = {v} in {}", proc_sys(k).display()))?;
        tracing::info!(setting = %k, value = v, "kernel setting applied");
    }
    Ok(())
}

/// Every run: files changed or removed by hand are written again, kernel settings that
/// moved are set again, another Chromium policy file that would override the baseline's
/// is moved out of Chromium's reach (drift, repaired), and the services a memory profile
/// names are measured ([`measure_service`]; with `dry_run` that is all the profile does).
fn enforce_files(
    root: &Path,
    entry: &mut Entry,
    report: &mut BaselineReport,
) -> anyhow::Result<()> {
    let policy = Policy::parse(&entry.policy)?;
    let mut drift = Vec::new();
    for f in &entry.files {
        let path = root.join(&f.path);
        match std::fs::read_to_string(&path) {
            Ok(c) if c == f.content => {}
            Ok(_) => drift.push(format!("file /{} was changed by hand", f.path)),
            Err(_) => drift.push(format!("file /{} is gone", f.path)),
        }
    }
    let memory = policy.memory.as_ref().filter(|m| !m.dry_run);
    if let Some(m) = memory {
        if root == Path::new("/") {
            for (k, v) in &m.sysctls {
                let live = std::fs::read_to_string(proc_sys(k)).unwrap_or_default();
                if live.trim() != v.to_string() {
                    drift.push(format!(
                        "kernel setting {k} is {}, the baseline says {v}",
                        live.trim()
                    ));
                }
            }
        }
    }
    if let Some(b) = &policy.browser {
        drift.extend(displace_chromium_overrides(
            root,
            &report.name,
            b,
            &BrowserPaths::default(),
        )?);
    }
    if !drift.is_empty() {
        for d in &drift {
            tracing::warn!(baseline = %report.name, drift = %d, "baseline drift found");
        }
        write_files(root, &entry.files)?;
        if let Some(m) = memory {
            apply_sysctls(root, m)?;
            reload_units(root, &entry.files);
        }
        report.repaired = true;
        tracing::info!(baseline = %report.name, "baseline drift repaired");
        report.drift.extend(drift);
    }
    if let Some(b) = &policy.browser {
        // Measured after any repair: the browser policy files in place as compiled.
        let in_place = browser::compile(&report.name, b, &BrowserPaths::default())?
            .iter()
            .filter(|f| std::fs::read_to_string(root.join(&f.path)).is_ok_and(|c| c == f.content))
            .count();
        report
            .measured
            .insert("browser.policy_files".into(), u64::try_from(in_place)?);
    }
    // Issue 14, point 5: what the folder scan watches and holds, measured every run.
    if let Some(scan) = &policy.scan {
        let folders =
            patchday_baseline::scan::expand(root, &scan.folders, crate::scan::MAX_FOLDERS);
        let held = crate::scan::quarantine::list(&crate::scan::on_machine(root, &scan.quarantine))
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.baseline == report.name)
            .count();
        report
            .measured
            .insert("scan.folders".into(), u64::try_from(folders.len())?);
        report
            .measured
            .insert("scan.quarantined".into(), u64::try_from(held)?);
        let alive = crate::scan::running(root, crate::run::clock_now());
        report
            .measured
            .insert("scan.running".into(), u64::from(alive));
        if !alive {
            report.error = Some(
                "the folder scan is not running: start patchday-agent-scan.service (or `patchday-agent scan-folders`)"
                    .into(),
            );
        }
    }
    let Some(m) = &policy.memory else {
        return Ok(());
    };
    for s in &m.services {
        measure_service(root, &s.unit, s.memory_deny_write_execute, report);
    }
    Ok(())
}

/// Another file in a Chromium policy directory that sets a policy the baseline sets can
/// override it (Chromium lets the file whose name sorts last win): such a file is moved to
/// `var/lib/patchday/displaced/` (out of Chromium's reach, kept for the admin) and each
/// move is returned as drift.
fn displace_chromium_overrides(
    root: &Path,
    baseline: &str,
    b: &browser::Browser,
    paths: &BrowserPaths,
) -> anyhow::Result<Vec<String>> {
    if !b.browsers.contains(&browser::BrowserKind::Chromium) {
        return Ok(Vec::new());
    }
    let own_name = browser::chromium_file_name(baseline);
    let own = browser::chromium_policies(b);
    let mut drift = Vec::new();
    for dir in &paths.chromium_dirs {
        let dir_path = root.join(dir);
        let Ok(entries) = std::fs::read_dir(&dir_path) else {
            continue;
        };
        let mut listing = Vec::new();
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            // Files that cannot be read as text are not JSON policy either.
            if let Ok(content) = std::fs::read_to_string(e.path()) {
                listing.push((name, content));
            }
        }
        for (name, policies) in browser::chromium_overrides(&own_name, &own, &listing) {
            let aside_dir = root.join("var/lib/patchday/displaced");
            std::fs::create_dir_all(&aside_dir)
                .with_context(|| format!("creating {}", aside_dir.display()))?;
            let flat = format!("{}-{name}", dir.replace('/', "_"));
            let aside = aside_dir.join(&flat);
            std::fs::rename(dir_path.join(&name), &aside).with_context(|| {
                format!(
                    "moving /{dir}/{name}, which overrides the baseline's browser policy, to {}",
                    aside.display()
                )
            })?;
            drift.push(format!(
                "file /{dir}/{name} set {} over the baseline; moved to /var/lib/patchday/displaced/{flat}",
                policies.join(", ")
            ));
        }
    }
    Ok(drift)
}

/// The running processes of `unit` on the running system (`None` for an image): every
/// process whose cgroup names the unit, workers included.
fn unit_processes(root: &Path, unit: &str) -> Option<Vec<u32>> {
    if root != Path::new("/") {
        return None;
    }
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // A process may end between listing and reading: it is simply not counted.
        if let Ok(cgroup) = std::fs::read_to_string(e.path().join("cgroup")) {
            if memory::in_unit(&cgroup, unit) {
                pids.push(pid);
            }
        }
    }
    Some(pids)
}

/// Issue 13, point 3: what the profile's dry run and the audit's ELF checks say about a
/// named service that is running. Under `MemoryDenyWriteExecute` (`mdwe`), the mappings
/// MDWE forbids, summed over its processes (`memory.<unit>.wx_mappings`: more than 0 and
/// the service would fail under the drop-in). For its programs (`/proc/PID/exe`), how
/// many lack each protection the audit checks (`memory.<unit>.elf_without_pie`, `_nx`,
/// `_full_relro`, `_canary`), the audit's findings as the baseline's.
fn measure_service(root: &Path, unit: &str, mdwe: bool, report: &mut BaselineReport) {
    let Some(pids) = unit_processes(root, unit) else {
        return;
    };
    report
        .measured
        .insert(format!("memory.{unit}.processes"), pids.len() as u64);
    if pids.is_empty() {
        return;
    }
    if mdwe {
        let n: usize = pids
            .iter()
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/maps")).ok())
            .map(|maps| memory::write_execute_mappings(&maps).len())
            .sum();
        report
            .measured
            .insert(format!("memory.{unit}.wx_mappings"), n as u64);
        if n > 0 {
            tracing::warn!(unit = %unit, mappings = n, "this running service maps memory writable and executable: it would fail under MemoryDenyWriteExecute");
        }
    }
    // One inspection per program (a service's workers usually share one); the link is
    // opened itself, so the path need not resolve from the agent's root.
    let mut programs = BTreeMap::new();
    for p in &pids {
        let exe = format!("/proc/{p}/exe");
        let Ok(target) = std::fs::read_link(&exe) else {
            continue;
        };
        if let std::collections::btree_map::Entry::Vacant(v) = programs.entry(target) {
            if let Ok(info) = patchday_audit::elf::inspect(Path::new(&exe)) {
                v.insert(info);
            }
        }
    }
    let mut without = BTreeMap::from([("pie", 0u64), ("nx", 0), ("full_relro", 0), ("canary", 0)]);
    for (path, info) in &programs {
        let missing = [
            ("pie", info.pie),
            ("nx", info.nx),
            (
                "full_relro",
                info.relro == patchday_audit::model::Relro::Full,
            ),
            ("canary", info.canary),
        ];
        for (what, ok) in missing {
            if !ok {
                *without.entry(what).or_default() += 1;
                tracing::warn!(unit = %unit, program = %path.display(), missing = what, "a program of this service is built without a protection the audit checks");
            }
        }
    }
    for (what, n) in without {
        report
            .measured
            .insert(format!("memory.{unit}.elf_without_{what}"), n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, version: &str, browsers: &str) -> String {
        format!(
            "[baseline]\nname = \"{name}\"\nversion = \"{version}\"\n\n[browser]\nbrowsers = {browsers}\ndownloads = \"block-dangerous\"\n\n[browser.javascript]\nmode = \"allow-list\"\nsites = [\"https://intranet.example\"]\n"
        )
    }

    fn install_text(root: &Path, name: &str, version: &str, text: &str) -> Outcome {
        let file = root.join(format!("{name}-{version}.toml"));
        std::fs::write(&file, text).unwrap();
        // No firewall, so the server is never probed.
        install(root, "http://127.0.0.1:9", &file, name, version)
    }

    /// An image root (not `/`): the browser files land below it, one browser baseline per
    /// host, a new version removes what it no longer owns, and every run repairs an edit
    /// and moves an overriding Chromium file aside.
    #[test]
    fn browser_files_land_below_the_root_and_drift_is_repaired() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let both = policy("desk", "1", "[\"chromium\", \"firefox\"]");
        assert_eq!(install_text(root, "desk", "1", &both), Outcome::Installed);
        let chromium = root.join("etc/chromium/policies/managed/patchday-desk.json");
        let firefox = root.join("etc/firefox-esr/policies/policies.json");
        assert!(std::fs::read_to_string(&chromium)
            .unwrap()
            .contains("\"DefaultJavaScriptSetting\": 2"));
        assert!(firefox.exists());

        // A second browser baseline is refused, and writes nothing.
        let Outcome::Failed(why) =
            install_text(root, "other", "1", &policy("other", "1", "[\"chromium\"]"))
        else {
            panic!("a second browser baseline was applied");
        };
        assert!(
            why.contains("baseline desk already sets the browser policy"),
            "{why}"
        );
        assert!(!root
            .join("etc/chromium/policies/managed/patchday-other.json")
            .exists());

        // Version 2 is for Chromium only: Firefox's files go.
        let v2 = policy("desk", "2", "[\"chromium\"]");
        assert_eq!(install_text(root, "desk", "2", &v2), Outcome::Installed);
        assert!(!firefox.exists());
        assert!(chromium.exists());

        // Drift: an edit and an overriding file; one run repairs both and says so.
        std::fs::write(&chromium, "{\"DefaultJavaScriptSetting\": 1}").unwrap();
        let local = root.join("etc/chromium/policies/managed/zz-local.json");
        std::fs::write(
            &local,
            "{\"DefaultJavaScriptSetting\": 1, \"ShowHomeButton\": true}",
        )
        .unwrap();
        let unrelated = root.join("etc/chromium/policies/managed/home.json");
        std::fs::write(&unrelated, "{\"ShowHomeButton\": true}").unwrap();
        let reports = enforce_all(root);
        let r = &reports[0];
        assert!(r.repaired, "{r:?}");
        assert_eq!(r.drift.len(), 2, "{r:?}");
        assert!(
            r.drift[1].contains("zz-local.json set DefaultJavaScriptSetting"),
            "{r:?}"
        );
        assert!(std::fs::read_to_string(&chromium)
            .unwrap()
            .contains("\"DefaultJavaScriptSetting\": 2"));
        assert!(!local.exists());
        assert!(root
            .join("var/lib/patchday/displaced/etc_chromium_policies_managed-zz-local.json")
            .exists());
        assert!(
            unrelated.exists(),
            "a file setting other policies is left alone"
        );
        // Both Chromium directories, in place.
        assert_eq!(r.measured["browser.policy_files"], 2, "{r:?}");
        // Nothing left to repair.
        let again = enforce_all(root);
        assert!(again[0].drift.is_empty() && !again[0].repaired, "{again:?}");
    }
}
