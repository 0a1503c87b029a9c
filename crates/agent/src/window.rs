//! Issue 10, point 5: maintenance windows, deadlines and reboots on the host.
//!
//! The windows, deadline and reboot policy of an assignment come from the signed director
//! answer alone ([`DirectorTargets::schedule`]). Outside its window an assigned update is
//! decided and downloaded at once (staged: everything verified while the server is there)
//! and installed once a window opens or its deadline passes.
//!
//! Server unreachable: the agent acts on the last verified answer it kept, as long as
//! that answer was signed within `--max-silence` (default one day). The answer's own
//! short expiry (one hour) is there to notice a withheld answer while the server is
//! reachable; for a host whose server is down, what matters is that it never installs
//! outside its window and still installs by its deadline what it was assigned. Past
//! `--max-silence` nothing is installed at all (the server may have revoked it since).
//! Offline, only staged updates are installed: their payloads are checked again against
//! the signed hashes, the release counters and the installed versions.

use crate::run::{AgentConfig, RunSummary};
use crate::state::{write_atomic, StateDir};
use anyhow::Context;
use jiff::Timestamp;
use patchday_core::window::{
    grace_end, install_decision, reboot_due, InstallDecision, RebootDue, RebootPolicy,
    WindowSchedule,
};
use patchday_trust::decision::Install;
use patchday_trust::director::DirectorTargets;
use patchday_trust::TargetInfo;
use patchday_types::{PayloadRef, UpdateId};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One assignment's signed schedule, parsed.
#[derive(Clone, Debug, Default)]
pub struct Schedule {
    /// Its windows (none: any time).
    pub windows: WindowSchedule,
    /// Its deadline.
    pub deadline: Option<Timestamp>,
    /// What to do after an install that needs a reboot.
    pub reboot: RebootPolicy,
    /// Issue 10, point 2: the ring's grace period after the deadline (none outside rings).
    pub grace_seconds: Option<i64>,
}

/// The signed schedule of `update` (none in the answer: any time, never reboot); `Err`
/// when the signed text cannot be read, which installs nothing.
pub fn schedule_of(dt: &DirectorTargets, update: &UpdateId) -> Result<Schedule, String> {
    let Some(s) = dt.schedule.get(update.as_str()) else {
        return Ok(Schedule::default());
    };
    let bad = |e: &dyn std::fmt::Display| {
        format!("the signed schedule of {update} cannot be read: {e}; nothing was installed (update the agent?)")
    };
    Ok(Schedule {
        windows: WindowSchedule::parse(&s.windows).map_err(|e| bad(&e))?,
        deadline: s
            .deadline
            .as_deref()
            .map(str::parse::<Timestamp>)
            .transpose()
            .map_err(|e| bad(&e))?,
        reboot: s.reboot.parse().map_err(|e| bad(&e))?,
        grace_seconds: s.grace_seconds,
    })
}

/// Whether the updates of one dpkg run may be installed now: when any member's deadline
/// passed, or when every member may; else the earliest wait.
pub fn group_decision(
    dt: &DirectorTargets,
    updates: &[&UpdateId],
    now: Timestamp,
) -> Result<InstallDecision, String> {
    let mut decisions = Vec::new();
    for u in updates {
        let s = schedule_of(dt, u)?;
        decisions.push(install_decision(&s.windows, s.deadline, now));
    }
    if decisions.contains(&InstallDecision::DeadlinePassed) {
        return Ok(InstallDecision::DeadlinePassed);
    }
    let wait = decisions
        .iter()
        .filter(|d| !d.install())
        .min_by_key(|d| match d {
            InstallDecision::Wait { until, .. } => *until,
            _ => now,
        })
        .cloned();
    Ok(wait
        .or_else(|| decisions.into_iter().next())
        .unwrap_or(InstallDecision::AnyTime))
}

/// The most careful reboot policy among `updates` (never before in-window before now),
/// with their windows together, and the earliest end of their grace periods (issue 10,
/// point 2: after it, an `in-window` reboot no longer waits for a window).
pub fn reboot_policy(
    dt: &DirectorTargets,
    updates: &[UpdateId],
) -> (RebootPolicy, WindowSchedule, Option<Timestamp>) {
    let mut policy: Option<RebootPolicy> = None;
    let mut windows = WindowSchedule::default();
    let mut forced: Option<Timestamp> = None;
    for u in updates {
        // An unreadable schedule reboots never.
        let s = schedule_of(dt, u).unwrap_or_default();
        if let Some(end) = grace_end(s.deadline, s.grace_seconds) {
            forced = Some(forced.map_or(end, |f| f.min(end)));
        }
        policy = Some(match policy {
            None => s.reboot,
            Some(p) => p.most_careful(s.reboot),
        });
        for w in s.windows.0 {
            if !windows.0.contains(&w) {
                windows.0.push(w);
            }
        }
    }
    (policy.unwrap_or_default(), windows, forced)
}

/// One staged payload: what the decision verified, kept for an install later.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StagedPayload {
    /// The payload.
    pub payload: PayloadRef,
    /// Signed length.
    pub length: u64,
    /// Signed sha256.
    pub sha256: String,
    /// The catalog's signed custom fields (release counter).
    pub custom: serde_json::Value,
}

/// One staged update.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StagedInstall {
    /// The update.
    pub update: UpdateId,
    /// Its payloads.
    pub payloads: Vec<StagedPayload>,
}

impl StagedInstall {
    /// From a decided install.
    pub fn new(install: &Install) -> StagedInstall {
        StagedInstall {
            update: install.update.clone(),
            payloads: install
                .payloads
                .iter()
                .map(|(p, info)| StagedPayload {
                    payload: p.clone(),
                    length: info.length,
                    sha256: info.sha256.clone(),
                    custom: info.custom.clone(),
                })
                .collect(),
        }
    }

    /// Back to the install it was decided as.
    pub fn install(&self) -> Install {
        Install {
            update: self.update.clone(),
            payloads: self
                .payloads
                .iter()
                .map(|p| {
                    (
                        p.payload.clone(),
                        TargetInfo {
                            length: p.length,
                            sha256: p.sha256.clone(),
                            custom: p.custom.clone(),
                        },
                    )
                })
                .collect(),
        }
    }
}

/// Updates decided and downloaded, waiting for a window or a deadline: each inner list
/// is one dpkg run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Staged {
    /// The dpkg runs.
    pub runs: Vec<Vec<StagedInstall>>,
}

/// Updates installed that wait for a reboot, with the signed policy they came with.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PendingReboot {
    /// The updates.
    pub updates: Vec<UpdateId>,
    /// The most careful reboot policy among them.
    #[serde(default)]
    pub reboot: RebootPolicy,
    /// Their windows.
    #[serde(default)]
    pub windows: WindowSchedule,
    /// Issue 10, point 2: when the earliest grace period among them ends (deadline plus
    /// the ring's grace): from then on an `in-window` reboot no longer waits.
    #[serde(default)]
    pub grace_end: Option<Timestamp>,
}

/// Remembers installed updates that wait for a reboot, with their signed reboot policy.
pub fn add_pending_reboot(
    state: &StateDir,
    dt: &DirectorTargets,
    updates: &[UpdateId],
) -> anyhow::Result<()> {
    let mut pending = state.pending_reboot()?;
    let mut all = pending.updates.clone();
    for u in updates {
        if !all.contains(u) {
            all.push(u.clone());
        }
    }
    let (policy, windows, forced) = reboot_policy(dt, updates);
    let first = pending.updates.is_empty();
    if let Some(end) = forced {
        pending.grace_end = Some(pending.grace_end.map_or(end, |e| e.min(end)));
    }
    pending.reboot = if first {
        policy
    } else {
        pending.reboot.most_careful(policy)
    };
    for w in windows.0 {
        if !pending.windows.0.contains(&w) {
            pending.windows.0.push(w);
        }
    }
    pending.updates = all;
    state.save_pending_reboot(&pending)
}

/// The updates waiting for a reboot that the host no longer asks for: a reboot completed
/// them. Forgotten once returned.
pub fn reboot_completed(cfg: &AgentConfig, state: &StateDir) -> anyhow::Result<Vec<UpdateId>> {
    let pending = state.pending_reboot()?;
    if pending.updates.is_empty() || crate::inventory::reboot_required(&cfg.root) {
        return Ok(Vec::new());
    }
    state.save_pending_reboot(&PendingReboot::default())?;
    for u in &pending.updates {
        tracing::info!(update = %u, "the reboot completed the install");
    }
    Ok(pending.updates)
}

/// Reboots when updates wait for it and the policy allows it at `now`; else says why not
/// in the summary. `true` when the reboot command ran.
pub fn reboot_if_due(
    cfg: &AgentConfig,
    state: &StateDir,
    now: Timestamp,
    summary: &mut RunSummary,
) -> anyhow::Result<bool> {
    let pending = state.pending_reboot()?;
    if pending.updates.is_empty() || !crate::inventory::reboot_required(&cfg.root) {
        return Ok(false);
    }
    match reboot_due(pending.reboot, &pending.windows, pending.grace_end, now) {
        RebootDue::ByPolicy => {
            tracing::warn!(updates = ?pending.updates, policy = %pending.reboot, "rebooting to complete the install");
            reboot(&cfg.reboot_command)?;
            summary.rebooted = pending.updates;
            return Ok(true);
        }
        // Issue 10, point 2: the deadline plus the ring's grace period passed.
        RebootDue::GraceOver => {
            tracing::warn!(updates = ?pending.updates, grace_end = ?pending.grace_end, "the grace period after the deadline is over: rebooting outside the maintenance window");
            reboot(&cfg.reboot_command)?;
            summary.rebooted = pending.updates;
            return Ok(true);
        }
        RebootDue::NotYet => {}
    }
    // Run again when the window opens or the grace period ends, whichever comes first.
    if pending.reboot != RebootPolicy::Never {
        let due = [
            pending.windows.next_opening(now).map(|o| o.opens),
            pending.grace_end,
        ];
        if let Some(at) = due.into_iter().flatten().min() {
            summary.due_at(at, now);
        }
    }
    let why = match pending.reboot {
        RebootPolicy::Never => {
            "reboot pending: the reboot policy is never, the admin reboots".to_string()
        }
        _ => match pending.windows.next_opening(now) {
            Some(o) => match pending.grace_end.filter(|e| *e < o.opens) {
                // Issue 10, point 2: forced before the window opens.
                Some(e) => format!(
                    "reboot pending until the maintenance window {} or the end of the grace period at {e}, whichever comes first",
                    o.window.opening_text()
                ),
                None => format!(
                    "reboot pending until the maintenance window {}",
                    o.window.opening_text()
                ),
            },
            None => "reboot pending until a maintenance window".to_string(),
        },
    };
    summary.pending_reboot = Some((pending.updates, why));
    Ok(false)
}

/// A run whose check-in could not reach the server (`err`): installs the staged updates
/// whose window is open or whose deadline passed, as the last verified answer says, if
/// that answer was signed within `--max-silence`; reboots as it says. `Err` (the check-in
/// error, with `silent`'s context) when there is nothing to act on.
pub fn offline_run(
    cfg: &AgentConfig,
    state: &StateDir,
    id: &crate::state::Identity,
    dpkg: &crate::install::deb::Dpkg,
    now: Timestamp,
    err: anyhow::Error,
    silent: impl Fn(anyhow::Error) -> anyhow::Error,
) -> anyhow::Result<RunSummary> {
    let staged = state.staged()?;
    let pending = state.pending_reboot()?;
    let (Some(doc), Some(signed_at)) = (state.last_answer(), state.last_director_answer()) else {
        return Err(silent(err));
    };
    if staged.runs.is_empty() && pending.updates.is_empty() {
        return Err(silent(err));
    }
    let unreachable = format!("{err:#}");
    if let Err(refusal) = patchday_trust::decision::check_silence(signed_at, now, cfg.max_silence) {
        return Err(err.context(format!(
            "{refusal}; the server is unreachable and the last signed answer is too old to act on: nothing was installed"
        )));
    }
    let pk = state.director_key()?.ok_or_else(|| {
        anyhow::anyhow!(
            "no director key is pinned in {}: nothing was installed",
            cfg.state_dir.display()
        )
    })?;
    // Judged as of its signing time: its one-hour expiry is for a reachable server.
    let dt = patchday_trust::director::verify(
        &doc,
        &pk,
        id.host.as_str(),
        signed_at,
        state.director_version(),
    )
    .context("the kept signed answer does not verify; nothing was installed")?;
    tracing::warn!(error = %unreachable, signed_at = %signed_at, "the server is unreachable: acting on the last signed answer");
    let mut summary = RunSummary {
        assigned: staged.runs.iter().map(Vec::len).sum(),
        offline: Some(unreachable),
        ..Default::default()
    };
    summary.reboot_completed = reboot_completed(cfg, state)?;
    let mut counters = state.release_counters()?;
    let mut keep = Staged::default();
    for run in staged.runs {
        let updates: Vec<&UpdateId> = run.iter().map(|s| &s.update).collect();
        match group_decision(&dt, &updates, now) {
            Err(m) => {
                for u in &updates {
                    summary.failed.push(((*u).clone(), m.clone()));
                }
                continue;
            }
            Ok(InstallDecision::Wait { message, until, .. }) => {
                summary.due_at(until, now);
                for u in &updates {
                    tracing::info!(update = %u, "{message}");
                    summary.waiting.push(((*u).clone(), message.clone()));
                }
                keep.runs.push(run);
                continue;
            }
            Ok(_) => {}
        }
        let files = match staged_files(state, &dt, &counters, cfg, &run) {
            Ok(f) => f,
            Err(m) => {
                for u in &updates {
                    summary.failed.push(((*u).clone(), m.clone()));
                }
                continue;
            }
        };
        let Some(first) = updates.first() else {
            continue;
        };
        let before = crate::inventory::collect(&cfg.root)?; // issue 10, point 3
        let outcome = match crate::run::apply(cfg, state, dpkg, first, &files) {
            Ok(o) => o,
            Err(crate::run::FailedBefore(m)) => crate::install::Outcome::Failed(m),
        };
        match outcome {
            crate::install::Outcome::Failed(m) => {
                for u in &updates {
                    tracing::error!(update = %u, message = %m, "update failed");
                    summary.failed.push(((*u).clone(), m.clone()));
                }
            }
            o => {
                for s in &run {
                    summary.installed += 1;
                    counters.record(&s.install());
                    state.save_release_counters(&counters)?;
                }
                let installs: Vec<_> = run.iter().map(|s| s.install()).collect();
                crate::take_back::record_installs(state, &before, &installs)?;
                if o == crate::install::Outcome::PendingReboot {
                    let done: Vec<UpdateId> = updates.iter().map(|u| (*u).clone()).collect();
                    add_pending_reboot(state, &dt, &done)?;
                }
            }
        }
    }
    state.set_journal(None)?;
    state.save_staged(&keep)?;
    reboot_if_due(cfg, state, now, &mut summary)?;
    Ok(summary)
}

/// The staged payload files of one dpkg run, checked again: the kept answer still signs
/// them with these hashes, the files match, and no installed version or release counter
/// has since gone past them.
fn staged_files(
    state: &StateDir,
    dt: &DirectorTargets,
    counters: &crate::state::ReleaseCounters,
    cfg: &AgentConfig,
    run: &[StagedInstall],
) -> Result<Vec<(PayloadRef, PathBuf)>, String> {
    let inventory = crate::inventory::collect(&cfg.root).map_err(|e| e.to_string())?;
    let mut files = Vec::new();
    for s in run {
        for p in &s.payloads {
            let name = &p.payload.target;
            let signed = dt.targets.get(name).ok_or_else(|| {
                format!(
                    "{}: the signed answer no longer assigns {name}; nothing was installed",
                    s.update
                )
            })?;
            if signed.hashes.get("sha256") != Some(&p.sha256) || signed.length != p.length {
                return Err(format!(
                    "{}: {name} differs from the signed answer; nothing was installed",
                    s.update
                ));
            }
            let info = TargetInfo {
                length: p.length,
                sha256: p.sha256.clone(),
                custom: p.custom.clone(),
            };
            let path = state.downloads().join(format!("{}.payload", p.sha256));
            patchday_trust::check_target_file(name, &info, &path)
                .map_err(|e| format!("{}: {e}; nothing was installed", s.update))?;
            patchday_trust::decision::downgrade(&inventory, &p.payload)
                .map_err(|r| format!("{}: {r}", s.update))?;
            let signed_custom = serde_json::from_value(p.custom.clone());
            if let Ok(patchday_types::TargetCustom::Payload {
                release_counter: c, ..
            }) = signed_custom
            {
                let have = counters.get(p.payload.kind, &p.payload.package);
                if have > c {
                    return Err(format!(
                        "{}: {name} has release counter {c}, below the installed {have}; nothing was installed",
                        s.update
                    ));
                }
            }
            files.push((p.payload.clone(), path));
        }
    }
    Ok(files)
}

impl StateDir {
    fn windows_file(&self, name: &str) -> PathBuf {
        self.path(name)
    }

    /// The last verified signed check-in answer, as the server sent it.
    pub fn last_answer(&self) -> Option<Vec<u8>> {
        std::fs::read(self.windows_file("last-answer.json")).ok()
    }

    /// Keeps a verified signed answer for the runs the server cannot be reached.
    pub fn save_last_answer(&self, doc: &[u8]) -> anyhow::Result<()> {
        write_atomic(&self.windows_file("last-answer.json"), doc, 0o600)
    }

    /// The staged updates.
    pub fn staged(&self) -> anyhow::Result<Staged> {
        read_json(&self.windows_file("staged.json"))
    }

    /// Replaces the staged updates.
    pub fn save_staged(&self, s: &Staged) -> anyhow::Result<()> {
        write_json(&self.windows_file("staged.json"), s)
    }

    /// The updates waiting for a reboot.
    pub fn pending_reboot(&self) -> anyhow::Result<PendingReboot> {
        read_json(&self.windows_file("pending-reboot.json"))
    }

    /// Replaces the updates waiting for a reboot.
    pub fn save_pending_reboot(&self, p: &PendingReboot) -> anyhow::Result<()> {
        write_json(&self.windows_file("pending-reboot.json"), p)
    }
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> anyhow::Result<()> {
    write_atomic(path, &serde_json::to_vec_pretty(v)?, 0o600)
}

fn read_json<T: Default + for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<T> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .with_context(|| format!("{} is corrupt: remove it", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Runs the reboot command (`--reboot-command`); `Err` with what it said when it fails.
pub fn reboot(command: &[String]) -> anyhow::Result<()> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("--reboot-command is empty"))?;
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running the reboot command {program}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "the reboot command {} failed ({}): {}",
            command.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchday_trust::director::InstallSchedule;

    fn answer(entries: &[(&str, &[&str], Option<&str>, &str)]) -> DirectorTargets {
        DirectorTargets {
            kind: "targets".into(),
            spec_version: "1.0.0".into(),
            version: 1,
            expires: "2030-01-01T00:00:00Z".into(),
            host: Some("h".into()),
            targets: Default::default(),
            install_with: Default::default(),
            repair: None,
            remove: Default::default(),
            schedule: entries
                .iter()
                .map(|(u, w, d, r)| {
                    (
                        u.to_string(),
                        InstallSchedule {
                            windows: w.iter().map(|s| s.to_string()).collect(),
                            deadline: d.map(str::to_string),
                            reboot: r.to_string(),
                            grace_seconds: None,
                        },
                    )
                })
                .collect(),
        }
    }

    fn id(s: &str) -> UpdateId {
        UpdateId::new(s).unwrap()
    }

    #[test]
    fn a_dpkg_run_waits_unless_a_deadline_passed_and_an_unreadable_schedule_installs_nothing() {
        let dt = answer(&[
            ("A", &["Sat 02:00-05:00 Europe/Berlin"], None, "never"),
            ("B", &[], None, "now"),
            (
                "C",
                &["Sat 02:00-05:00 Europe/Berlin"],
                Some("2026-12-01T00:00:00Z"),
                "never",
            ),
            ("D", &["Caturday 02:00-05:00 UTC"], None, "never"),
        ]);
        let tue = "2026-12-01T12:00:00Z".parse().unwrap();
        let (a, b, c, d) = (id("A"), id("B"), id("C"), id("D"));
        assert!(!group_decision(&dt, &[&a, &b], tue).unwrap().install());
        assert!(group_decision(&dt, &[&b], tue).unwrap().install());
        assert_eq!(
            group_decision(&dt, &[&a, &c], tue).unwrap(),
            InstallDecision::DeadlinePassed
        );
        let err = group_decision(&dt, &[&d], tue).unwrap_err();
        assert!(err.contains("cannot be read"), "{err}");
        assert_eq!(
            reboot_policy(&dt, std::slice::from_ref(&b)).0,
            RebootPolicy::Now
        );
        assert_eq!(reboot_policy(&dt, &[a, b]).0, RebootPolicy::Never);
        assert_eq!(reboot_policy(&dt, &[id("X")]).0, RebootPolicy::Never);
    }

    // Issue 10, point 2: the grace period travels in the signed schedule, and the
    // earliest end among a dpkg run's updates forces the reboot.
    #[test]
    fn the_earliest_grace_end_among_the_updates_forces_an_in_window_reboot() {
        let mut dt = answer(&[
            (
                "A",
                &["Sat 02:00-05:00 Europe/Berlin"],
                Some("2026-12-01T12:00:00Z"),
                "in-window",
            ),
            (
                "B",
                &["Sat 02:00-05:00 Europe/Berlin"],
                Some("2026-12-01T18:00:00Z"),
                "in-window",
            ),
            ("C", &["Sat 02:00-05:00 Europe/Berlin"], None, "in-window"),
        ]);
        for (u, g) in [("A", 86_400), ("B", 3600), ("C", 60)] {
            dt.schedule.get_mut(u).unwrap().grace_seconds = Some(g);
        }
        let (policy, windows, forced) = reboot_policy(&dt, &[id("A"), id("B"), id("C")]);
        assert_eq!(policy, RebootPolicy::InWindow);
        // B: 18:00 + 1h comes before A: 12:00 + 1 day; C has no deadline, so no end.
        assert_eq!(forced, Some("2026-12-01T19:00:00Z".parse().unwrap()));
        let before: Timestamp = "2026-12-01T18:59:59Z".parse().unwrap();
        let after: Timestamp = "2026-12-01T19:00:00Z".parse().unwrap();
        assert_eq!(
            reboot_due(policy, &windows, forced, before),
            RebootDue::NotYet
        );
        assert_eq!(
            reboot_due(policy, &windows, forced, after),
            RebootDue::GraceOver
        );
        assert_eq!(reboot_policy(&dt, &[id("C")]).2, None);
    }
}
