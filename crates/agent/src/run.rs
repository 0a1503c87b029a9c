//! One agent run, start to finish.
//!
//! Check in → verify the signed director answer (every answer carries one, also "nothing
//! to do") → refresh the catalog (every run, so expiry and root rotations are noticed) →
//! for each update the signed answer assigns, [`patchday_trust::decision::decide`] → download,
//! install, report. The security decision itself is pure and lives in `patchday_trust`.

use crate::client::{Client, HttpTransport};
use crate::install::deb::Dpkg;
use crate::install::{bundle, Outcome};
use crate::state::{Identity, StateDir};
use anyhow::Context;
use jiff::{SignedDuration, Timestamp};
use patchday_trust::decision::{self, Assignment, DecisionInput, HostIdentity, Install};
use patchday_trust::director::{DirectorPublicKey, DirectorTargets};
use patchday_trust::{LoadTime, VerifiedCatalog};
use patchday_types::api::{
    CheckinRequest, CheckinResponse, DirectorKeyInfo, EnrollRequest, EnrollResponse, ReportRequest,
    StateReport,
};
use patchday_types::{PayloadKind, PayloadRef, UpdateDocument, UpdateId, UpdateState};
use std::path::PathBuf;
use std::time::Duration;

/// Agent settings.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Server base URL.
    pub server: String,
    /// State directory.
    pub state_dir: PathBuf,
    /// Enrolment token, for the first run (never printed: issue 8, finding 9).
    pub enroll_token: Option<patchday_types::Secret>,
    /// Root of the managed system.
    pub root: PathBuf,
    /// Extra dpkg arguments.
    pub dpkg_args: Vec<String>,
    /// A catalog root to pin instead of the one the server hands out at enrolment.
    pub catalog_root: Option<PathBuf>,
    /// Longest a transfer may stall.
    pub read_timeout: Duration,
    /// Longest one payload download may take.
    pub download_deadline: Duration,
    /// Collect and send security-audit facts after each run.
    pub audit: bool,
    /// The server's CA certificate to pin at enrolment (PEM file).
    pub ca: Option<PathBuf>,
    /// The director key to pin at enrolment instead of trusting the server's on first
    /// use (finding 7): a file with the key (`patchday director key` output) or its key id.
    pub director_key: Option<String>,
    /// Longest time without a valid signed director answer before a run fails saying so,
    /// and the oldest answer a run accepts (finding 6).
    pub max_silence: SignedDuration,
    /// Issue 10, point 5: the command that reboots the host (program and arguments).
    pub reboot_command: Vec<String>,
    /// Issue 10, point 2: labels from `--label`, over those of `/etc/patchday/labels`.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Default `--max-silence`: one day.
pub const DEFAULT_MAX_SILENCE: SignedDuration = SignedDuration::from_hours(24);

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Updates assigned by the server.
    pub assigned: usize,
    /// Updates installed (including pending reboot).
    pub installed: usize,
    /// Updates that failed, with the message.
    pub failed: Vec<(UpdateId, String)>,
    /// Seconds the server suggests until the next check-in.
    pub poll_seconds: u64,
    // ---- issue 10, point 5: maintenance windows, deadlines, reboots ----
    /// Updates downloaded and waiting for a window (or their deadline), with why.
    pub waiting: Vec<(UpdateId, String)>,
    /// Installed updates waiting for a reboot, with why the agent did not reboot.
    pub pending_reboot: Option<(Vec<UpdateId>, String)>,
    /// The reboot command ran (for these updates).
    pub rebooted: Vec<UpdateId>,
    /// Updates a reboot since the last run completed (installed-pending-reboot → installed).
    pub reboot_completed: Vec<UpdateId>,
    /// The server could not be reached; the run acted on the last signed answer kept.
    pub offline: Option<String>,
    // ---- issue 10, point 3: decline with removal ----
    /// Updates taken back, with what was done.
    pub removed: Vec<(UpdateId, String)>,
    /// Updates that could not be taken back, with why.
    pub remove_failed: Vec<(UpdateId, String)>,
    /// Seconds from this run until something it left waiting falls due (a window opens,
    /// a deadline or a grace period ends): the daemon runs again then, not an interval
    /// later, and without the server's push (these are the agent's own signed schedules).
    pub due_in_seconds: Option<u64>,
}

impl RunSummary {
    /// Notes that something the run left waiting falls due at `at`.
    pub fn due_at(&mut self, at: Timestamp, now: Timestamp) {
        let secs = u64::try_from(at.duration_since(now).as_secs()).unwrap_or(0);
        self.due_in_seconds = Some(self.due_in_seconds.map_or(secs, |d| d.min(secs)));
    }
}

/// The director key to pin at enrolment: the one `--director-key` names (finding 7), which
/// the server's must equal, or else the server's own (trusted on first use).
fn director_key_to_pin(
    pin: Option<&str>,
    offered: Option<&DirectorKeyInfo>,
) -> anyhow::Result<Option<DirectorPublicKey>> {
    let offered = offered.map(|k| DirectorPublicKey {
        keyid: k.keyid.clone(),
        public: k.public.clone(),
    });
    let Some(pin) = pin else {
        if let Some(k) = &offered {
            tracing::warn!(keyid = %k.keyid, "director key trusted on first use; pin it out of band with --director-key (`patchday director key`)");
        }
        return Ok(offered);
    };
    let path = std::path::Path::new(pin);
    let pinned_id = if path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --director-key {}", path.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text).with_context(|| {
            format!(
                "--director-key {}: not the JSON of `patchday director key`",
                path.display()
            )
        })?;
        // `patchday director key` prints the key; `GET /v1/director` wraps it in `key`.
        let k: DirectorPublicKey = serde_json::from_value(v.get("key").cloned().unwrap_or(v))
            .with_context(|| {
                format!(
                    "--director-key {}: no `keyid` and `public` in it",
                    path.display()
                )
            })?;
        patchday_trust::director::check_key_id(&k)
            .with_context(|| format!("--director-key {}", path.display()))?;
        k.keyid
    } else if pin.len() == 64 && pin.bytes().all(|b| b.is_ascii_hexdigit()) {
        pin.to_ascii_lowercase()
    } else {
        anyhow::bail!(
            "--director-key {pin:?} is neither a file nor a 64-digit key id (see `patchday director key`)"
        );
    };
    let Some(k) = offered else {
        anyhow::bail!("the server offered no director key, but --director-key {pinned_id} was given: enrolment refused");
    };
    if patchday_trust::director::check_key_id(&k).is_err() || k.keyid != pinned_id {
        anyhow::bail!(
            "the server's director key {} is not the pinned key {pinned_id} given with --director-key: enrolment refused (a man in the middle, or another server?); nothing was saved",
            k.keyid
        );
    }
    Ok(Some(k))
}

pub async fn enroll(
    cfg: &AgentConfig,
    state: &StateDir,
    now: Timestamp,
) -> anyhow::Result<Identity> {
    let token = cfg.enroll_token.clone().ok_or_else(|| {
        anyhow::anyhow!("this agent is not enrolled: give it an enrolment token in PATCHDAY_ENROLL_TOKEN or --enroll-token-file (from `patchday enroll-token create --tenant T`)")
    })?;
    let hostname = crate::inventory::collect(&cfg.root)
        .map(|i| i.hostname)
        .unwrap_or_else(|_| "host".into());
    if let Some(p) = &cfg.ca {
        let pem = std::fs::read(p).with_context(|| format!("reading --ca {}", p.display()))?;
        state.save_ca(&pem)?;
    }
    let client = Client::new(&cfg.server, None, cfg.read_timeout, state.ca().as_deref())?;
    // finding 8: the host's own signing key, made here; only its public half leaves.
    let key = patchday_trust::host_signature::HostKey::generate(&state.host_key_path())?;
    let _ = std::fs::remove_file(state.sequence_path());
    let public_key = Some(key.public_hex());
    let resp: EnrollResponse = client
        .post(
            "v1/agent/enroll",
            &EnrollRequest {
                token: token.expose().to_string(),
                hostname,
                public_key,
            },
        )
        .await?;
    let director_key =
        director_key_to_pin(cfg.director_key.as_deref(), resp.director_key.as_ref())?;
    match (&cfg.catalog_root, &resp.catalog_root) {
        (Some(p), _) => {
            let b = std::fs::read(p)
                .with_context(|| format!("reading --catalog-root {}", p.display()))?;
            crate::state::write_atomic(&state.trusted_root(), &b, 0o644)?;
        }
        (None, Some(r)) => crate::state::write_atomic(&state.trusted_root(), r.as_bytes(), 0o644)?,
        (None, None) => anyhow::bail!(
            "the server has no catalog root to hand out and none was given with --catalog-root"
        ),
    }
    if let Some(k) = &director_key {
        state.save_director_key(k)?;
    }
    // --max-silence counts from here until the first valid answer.
    state.set_last_director_answer(now)?;
    let id = Identity {
        server: cfg.server.clone(),
        tenant: resp.tenant,
        host: resp.host,
        credential: resp.credential,
    };
    state.save_identity(&id)?;
    tracing::info!(host = %id.host, tenant = %id.tenant, "enrolled");
    Ok(id)
}

/// Sends the run's state reports. The outcome of an install (installed, waiting for a
/// reboot, failed, staged) is held back ([`Reporter::later`]) until the next report or the
/// closing check-in carries it: the last group's outcomes, the common case, then cost no
/// request of their own (issue 10, point 8), and no outcome waits for a later install.
struct Reporter<'a> {
    client: &'a Client,
    pending: std::sync::Mutex<Vec<StateReport>>,
}

impl<'a> Reporter<'a> {
    fn new(client: &'a Client) -> Self {
        Self {
            client,
            pending: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The outcomes held back so far, in the order they happened.
    fn take(&self) -> Vec<StateReport> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Holds an outcome back for the next report or the closing check-in.
    fn later(&self, update: &UpdateId, state: UpdateState, message: Option<String>) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(StateReport {
                update: update.clone(),
                state,
                message,
            });
    }

    /// Reports a state now, after the outcomes held back.
    async fn send(&self, update: &UpdateId, state: UpdateState, message: Option<String>) {
        self.later(update, state, message);
        self.flush().await;
    }

    /// Sends the outcomes held back, if any, in one report.
    async fn flush(&self) {
        let states = self.take();
        if states.is_empty() {
            return;
        }
        // A lost report is repaired by the next run: the server derives installed
        // states from the inventory, not from these messages.
        if let Err(e) = self
            .client
            .post::<_, ()>("v1/agent/report", &ReportRequest { states })
            .await
        {
            tracing::warn!(error = %e, "could not report states");
        }
    }
}

/// One complete run.
pub async fn run_once(cfg: &AgentConfig) -> anyhow::Result<RunSummary> {
    let now = clock_now();
    let state = StateDir::open(&cfg.state_dir)?;
    let id = match state.identity()? {
        Some(id) => id,
        None => enroll(cfg, &state, now).await?,
    };
    let id = crate::signed::follow_server(cfg, &state, id)?;
    let client = crate::signed::host_client(cfg, &state, &id)?;
    let reporter = Reporter::new(&client);
    let dpkg = Dpkg {
        root: cfg.root.clone(),
        extra_args: cfg.dpkg_args.clone(),
    };

    // Finish or undo whatever a killed run left behind, before looking at anything.
    if let Some(u) = state.journal_entry() {
        tracing::warn!(update = %u, "the previous run stopped during an install; it will be verified and retried");
    }
    if let Err(e) = dpkg.recover() {
        tracing::warn!(error = %e, "dpkg recovery failed");
    }
    bundle::recover(&cfg.root)?;
    crate::take_back::recover(&state, &dpkg)?; // issue 10, point 3
                                               // Issue 13, points 1-2: undo a firewall a stopped run left unconfirmed, then verify
                                               // every applied baseline (drift repaired) before anything else, also when offline.
    crate::install::baseline::recover(&cfg.root)?;
    let baselines = crate::install::baseline::enforce_all(&cfg.root);

    let mut inventory = crate::inventory::collect(&cfg.root)?;
    let labels = crate::inventory::labels(cfg)?; // issue 10, point 2
    inventory.dpkg_broken = dpkg.audit(); // issue 9, point 4
                                          // Until a valid signed answer arrives, every failure is also a possible withheld answer.
    let last_answer = state.last_director_answer();
    let silent = |e: anyhow::Error| -> anyhow::Error {
        match last_answer.map(|t| decision::check_silence(t, now, cfg.max_silence)) {
            Some(Err(refusal)) => e.context(refusal),
            _ => e,
        }
    };
    let resp: CheckinResponse = match client
        .post(
            "v1/agent/checkin",
            &CheckinRequest {
                inventory: inventory.clone(),
                labels: Some(labels.clone()),
                baselines: baselines.clone(),
                states: Vec::new(),
            },
        )
        .await
    {
        Ok(r) => r,
        // Issue 10, point 5: the server is unreachable; obey the last signed answer.
        Err(e) => return crate::window::offline_run(cfg, &state, &id, &dpkg, now, e, silent),
    };
    let (dt, catalog) =
        signed_answer_and_catalog(cfg, &state, &id, &client, &resp, now, last_answer)
            .await
            .map_err(silent)?;
    // Issue 10, point 5: kept for the runs that cannot reach the server.
    if let Some(doc) = resp.director.as_deref() {
        state.save_last_answer(doc.as_bytes())?;
    }

    // Only what the signed answer assigns is kept in downloads/ (finding 15).
    let keep = dt
        .targets
        .values()
        .filter_map(|t| t.hashes.get("sha256").cloned())
        .collect();
    match crate::download::prune(&state.downloads(), &keep) {
        Ok(0) => {}
        Ok(n) => tracing::info!(bytes = n, "removed stale downloads"),
        Err(e) => tracing::warn!(error = %e, "could not clean the download directory"),
    }

    // Issue 9, point 4 (closure): a repair the operator asked for, from the signed answer
    // only (`patchday host repair`); before any install, as an admin would.
    let repaired = match &dt.repair {
        Some(r) => {
            tracing::warn!(requested = %r.requested, allow_apt = r.allow_apt, "the server asks for a repair of the dpkg database");
            Some(recover(cfg, &dpkg, r.allow_apt))
        }
        None => None,
    };

    // Assignments come from the signed answer alone: an unsigned list can be cut on the way.
    let assignments = decision::assignments(&dt).context("nothing was installed")?;
    let mut summary = RunSummary {
        assigned: assignments.len(),
        poll_seconds: resp.poll_seconds,
        ..Default::default()
    };
    // Issue 10, point 5: what a reboot since the last run completed.
    for u in crate::window::reboot_completed(cfg, &state)? {
        reporter
            .send(
                &u,
                UpdateState::Installed,
                Some("the reboot completed the install".into()),
            )
            .await;
        summary.reboot_completed.push(u);
    }
    // Issue 10, point 3: updates an operator declined with removal, from the signed
    // answer only; before any install, so a bad update is gone before the next arrives.
    let took_back = !dt.remove.is_empty();
    if took_back {
        let ctx = crate::take_back::TakeBackCtx {
            cfg,
            state: &state,
            client: &client,
            dpkg: &dpkg,
            catalog: &catalog,
            director: &dt,
        };
        for (u, result) in crate::take_back::take_back_all(&ctx).await {
            match result {
                Ok(m) => {
                    reporter
                        .send(&u, UpdateState::Removed, Some(m.clone()))
                        .await;
                    summary.removed.push((u, m));
                }
                Err(m) => {
                    reporter
                        .send(&u, UpdateState::RemoveFailed, Some(m.clone()))
                        .await;
                    summary.remove_failed.push((u, m));
                }
            }
        }
    }
    if assignments.is_empty() && repaired.is_none() && !took_back {
        state.set_journal(None)?;
        state.save_staged(&Default::default())?;
        send_facts(cfg, &client, resp.facts_sha256.as_deref()).await;
        // Issue 10, point 5: a reboot left for a window that is open now.
        crate::window::reboot_if_due(cfg, &state, now, &mut summary)?;
        return Ok(summary);
    }

    let mut counters = state.release_counters()?;
    let mut staged = crate::window::Staged::default();
    // Issue 9, point 4 (closure): updates the signed answer groups go into one dpkg run.
    for group in install_groups(&assignments, &dt.install_with) {
        let ctx = Ctx {
            cfg,
            state: &state,
            client: &client,
            reporter: &reporter,
            dpkg: &dpkg,
            catalog: &catalog,
            director: &dt,
            host: HostIdentity {
                host: id.host.as_str(),
                tenant: id.tenant.as_str(),
            },
            now,
        };
        let members: Vec<&Assignment> = group.iter().map(|&i| &assignments[i]).collect();
        // Issue 10, point 5: inside a window or past the deadline, else staged.
        let updates: Vec<&UpdateId> = members.iter().map(|a| &a.update).collect();
        let when = crate::window::group_decision(&dt, &updates, now);
        let install_now = when.as_ref().is_ok_and(|d| d.install());
        // Issue 10, point 3: what the host had before, for a later removal.
        let before = crate::inventory::collect(&cfg.root)?;
        let result = match when {
            Err(m) => Err(FailedBefore(m)),
            Ok(_) => process_together(&ctx, &members, &counters, install_now).await,
        };
        match result {
            Ok((installs, None)) => {
                let (why, reason) = match crate::window::group_decision(&dt, &updates, now) {
                    Ok(patchday_core::window::InstallDecision::Wait {
                        message,
                        reason,
                        until,
                    }) => {
                        summary.due_at(until, now);
                        (message, reason)
                    }
                    _ => {
                        let m = "waiting for a maintenance window".to_string();
                        (m.clone(), m)
                    }
                };
                for install in &installs {
                    tracing::info!(update = %install.update, "{why}");
                    // Without the relative time: the server's history records a change
                    // only when the state or the message changes, not at every poll.
                    reporter.later(
                        &install.update,
                        UpdateState::Downloaded,
                        Some(reason.clone()),
                    );
                    summary.waiting.push((install.update.clone(), why.clone()));
                }
                staged.runs.push(
                    installs
                        .iter()
                        .map(crate::window::StagedInstall::new)
                        .collect(),
                );
            }
            Ok((installs, Some(outcome @ (Outcome::Installed | Outcome::PendingReboot)))) => {
                let st = if outcome == Outcome::Installed {
                    UpdateState::Installed
                } else {
                    UpdateState::InstalledPendingReboot
                };
                for install in &installs {
                    summary.installed += 1;
                    counters.record(install);
                    state.save_release_counters(&counters)?;
                    reporter.later(&install.update, st, None);
                }
                crate::take_back::record_installs(&state, &before, &installs)?;
                if outcome == Outcome::PendingReboot {
                    let done: Vec<UpdateId> = installs.iter().map(|i| i.update.clone()).collect();
                    crate::window::add_pending_reboot(&state, &dt, &done)?;
                }
            }
            Ok((_, Some(Outcome::Failed(m)))) | Err(FailedBefore(m)) => {
                for a in &members {
                    tracing::error!(update = %a.update, message = %m, "update failed");
                    reporter.later(&a.update, UpdateState::Failed, Some(m.clone()));
                    summary.failed.push((a.update.clone(), m.clone()));
                }
            }
        }
    }
    state.set_journal(None)?;
    state.save_staged(&staged)?; // issue 10, point 5
                                 // Tell the server the truth as dpkg now sees it.
    let mut inventory = crate::inventory::collect(&cfg.root)?;
    inventory.dpkg_broken = dpkg.audit(); // issue 9, point 4
    let states = reporter.take(); // issue 10, point 8: the last outcomes ride along
    let after: CheckinResponse = match client
        .post(
            "v1/agent/checkin",
            &CheckinRequest {
                inventory,
                labels: Some(labels),
                baselines: crate::install::baseline::merge_reports(
                    &baselines,
                    crate::install::baseline::enforce_all(&cfg.root),
                ),
                states: states.clone(),
            },
        )
        .await
    {
        Ok(a) => a,
        Err(e) => {
            // Not lost when the check-in alone was refused: a failure is evidence the
            // rollout's halt needs now, not at the next run.
            if !states.is_empty() {
                let _ = client
                    .post::<_, ()>("v1/agent/report", &ReportRequest { states })
                    .await;
            }
            return Err(e);
        }
    };
    send_facts(cfg, &client, after.facts_sha256.as_deref()).await;
    // Issue 10, point 5: reboot as the policy says, after the server heard the truth.
    crate::window::reboot_if_due(cfg, &state, now, &mut summary)?;
    if let Some(r) = repaired {
        r.outcome()?;
    }
    Ok(summary)
}

// ---- issue 9, point 4: `patchday-agent repair` ----

/// What `patchday-agent repair` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairSummary {
    /// The steps run, each with its result.
    pub steps: Vec<String>,
    /// dpkg's words when the database is still not clean afterwards.
    pub still_broken: Option<String>,
}

/// The recovery an admin would run: `dpkg --configure -a`, then `apt-get -f install`
/// only when `allow_apt` (else it says what apt would do); then a check-in, so the
/// server sees the host's dpkg state at once. `Err` when the host is still broken.
pub async fn repair(cfg: &AgentConfig, allow_apt: bool) -> anyhow::Result<RepairSummary> {
    let state = StateDir::open(&cfg.state_dir)?;
    let id = state.identity()?.ok_or_else(|| {
        anyhow::anyhow!("this agent is not enrolled: run it once with an enrolment token first")
    })?;
    let id = crate::signed::follow_server(cfg, &state, id)?;
    let client = crate::signed::host_client(cfg, &state, &id)?;
    let dpkg = Dpkg {
        root: cfg.root.clone(),
        extra_args: cfg.dpkg_args.clone(),
    };
    let done = recover(cfg, &dpkg, allow_apt);
    let mut inventory = crate::inventory::collect(&cfg.root)?;
    inventory.dpkg_broken = done.summary.still_broken.clone();
    let _: CheckinResponse = client
        .post(
            "v1/agent/checkin",
            &CheckinRequest {
                inventory,
                labels: Some(crate::inventory::labels(cfg)?),
                baselines: Vec::new(),
                states: Vec::new(),
            },
        )
        .await?;
    done.outcome()
}

/// A recovery that ran: what it did, and whether apt still has something to fix.
struct Recovery {
    summary: RepairSummary,
    apt_pending: bool,
}

impl Recovery {
    /// `Err` when the host is still broken (dpkg's words) or apt still has unmet
    /// dependencies.
    fn outcome(self) -> anyhow::Result<RepairSummary> {
        match &self.summary.still_broken {
            Some(m) => anyhow::bail!(
                "repair: the host is still broken: dpkg says: {m}; steps: {}",
                self.summary.steps.join("; ")
            ),
            None if self.apt_pending => anyhow::bail!(
                "repair: dpkg is clean, but apt has unmet dependencies: {}",
                self.summary.steps.join("; ")
            ),
            None => Ok(self.summary),
        }
    }
}

/// The recovery itself, shared by `patchday-agent repair` and the server's repair
/// assignment: `dpkg --configure -a` when dpkg's database is not clean, then `apt-get -f
/// install` (simulated unless `allow_apt`).
fn recover(cfg: &AgentConfig, dpkg: &Dpkg, allow_apt: bool) -> Recovery {
    let mut summary = RepairSummary::default();
    if dpkg.audit().is_some() {
        match dpkg.configure_pending() {
            Ok(()) => summary.steps.push("dpkg --configure -a: done".into()),
            Err(e) => summary
                .steps
                .push(format!("dpkg --configure -a failed: {e}")),
        }
    }
    let apt = crate::install::deb::apt_fix(&cfg.root, !allow_apt);
    match (&apt, allow_apt) {
        (Ok(None), _) => {}
        (Ok(Some(m)), true) => summary.steps.push(format!("apt-get -f install: {m}")),
        (Ok(Some(m)), false) => summary.steps.push(format!(
            "apt-get -f install would: {m}; run `patchday-agent repair --allow-apt` to let it"
        )),
        (Err(e), _) => summary
            .steps
            .push(format!("apt-get -f install failed: {e}")),
    }
    for step in &summary.steps {
        tracing::info!(step = %step, "repair");
    }
    summary.still_broken = dpkg.audit();
    let apt_pending = matches!(&apt, Ok(Some(_)) if !allow_apt) || apt.is_err();
    Recovery {
        summary,
        apt_pending,
    }
}

/// Verifies the signed director answer of a check-in (adopting a director key rotation
/// first when the answer brings a newer certificate) and refreshes the catalog, which every
/// run does so that catalog expiry and root rotations are noticed (finding 6). The catalog's
/// datastore remembers at most the answer's signed time (finding 12). Public for the
/// fleet simulator (`bench/fleet`), which runs this same verification per simulated host.
pub async fn signed_answer_and_catalog(
    cfg: &AgentConfig,
    state: &StateDir,
    id: &Identity,
    client: &Client,
    resp: &CheckinResponse,
    now: Timestamp,
    last_answer: Option<Timestamp>,
) -> anyhow::Result<(DirectorTargets, VerifiedCatalog)> {
    let doc = resp.director.as_deref().ok_or_else(|| {
        anyhow::anyhow!("assignment rejected: signature: the server sent an answer without director metadata (withheld by a man in the middle, or an older server); nothing was installed")
    })?;
    let load = |vouched: Option<Timestamp>| async move {
        patchday_trust::load_remote(
            HttpTransport(client.clone()),
            client.url("v1/tuf/metadata/")?,
            &state.trusted_root(),
            &state.tuf(),
            LoadTime { now, vouched },
        )
        .await
        .context("catalog verification failed; nothing was installed")
    };
    let new_certificate = resp
        .director_certificate
        .as_deref()
        .filter(|c| certificate_version(c) > state.director_certificate_version());
    // A director key rotation: the new key counts once a threshold of the catalog's root
    // keys (as this agent trusts them) certified it. The root may have rotated in the same
    // step, so a certificate refused now is tried again after the catalog refresh.
    let deferred = match new_certificate {
        Some(cert) => adopt_certificate(state, cert, now).err(),
        None => None,
    };
    let verify = || -> anyhow::Result<DirectorTargets> {
        let pk = state.director_key()?.ok_or_else(|| {
            anyhow::anyhow!("no director key is pinned in {}: enrol this agent again (--enroll-token); nothing was installed", cfg.state_dir.display())
        })?;
        patchday_trust::director::verify(
            doc.as_bytes(),
            &pk,
            id.host.as_str(),
            now,
            state.director_version(),
        )
        .context("nothing was installed")
    };
    let (dt, catalog) = match (verify(), deferred, new_certificate) {
        (Ok(dt), _, _) => {
            let signed_at = accept(state, &dt, now, cfg.max_silence)?;
            let catalog = load(Some(signed_at)).await?;
            (dt, catalog)
        }
        (Err(_), Some(_), Some(cert)) => {
            // Until the answer verifies, the datastore remembers no more than the last
            // answer vouched for.
            let catalog = load(last_answer).await?;
            adopt_certificate(state, cert, now)?;
            let dt = verify()?;
            accept(state, &dt, now, cfg.max_silence)?;
            (dt, catalog)
        }
        (Err(e), _, _) => return Err(e),
    };
    Ok((dt, catalog))
}

/// Takes a verified answer as the newest: fresh enough for `--max-silence`, then recorded.
fn accept(
    state: &StateDir,
    dt: &DirectorTargets,
    now: Timestamp,
    max_silence: SignedDuration,
) -> anyhow::Result<Timestamp> {
    let signed_at = dt.signed_at().ok_or_else(|| {
        anyhow::anyhow!("assignment rejected: format: director version {} is not a signing time; nothing was installed", dt.version)
    })?;
    decision::check_fresh_answer(signed_at, now, max_silence).context("nothing was installed")?;
    state.set_director_version(dt.version)?;
    state.set_last_director_answer(signed_at)?;
    Ok(signed_at)
}

/// Collects the security-audit facts and sends them when they changed; a failure is
/// logged, never fatal: patching must not depend on the audit.
///
/// Issue 12, point 7: `held` is the digest of the facts the server holds for this host
/// (from the check-in answer); equal facts are not sent. Otherwise the facts go by parts,
/// zstd-compressed, each apt suite by its digest; the suites the server then asks for
/// follow in a second upload.
async fn send_facts(cfg: &AgentConfig, client: &Client, held: Option<&str>) {
    if !cfg.audit {
        return;
    }
    let opts = if cfg.root == std::path::Path::new("/") {
        patchday_audit::facts::CollectOptions::host()
    } else {
        patchday_audit::facts::CollectOptions::image(&cfg.root)
    };
    let split = tokio::task::spawn_blocking(move || {
        patchday_audit::facts::collect(&opts).map(patchday_audit::upload::split)
    })
    .await;
    let (mut upload, contents) = match split {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return tracing::warn!(error = %e, "could not collect audit facts"),
        Err(e) => return tracing::warn!(error = %e, "audit fact collection failed"),
    };
    if held == Some(upload.sha256.as_str()) {
        tracing::debug!(sha256 = %upload.sha256, "audit facts unchanged: not sent");
        return;
    }
    // Two rounds at most: the second carries what the first was told is missing. (A
    // third is needed only if a suite vanished from the server in between.)
    for _ in 0..3 {
        let answer: patchday_audit::upload::FactsAnswer =
            match client.post_compressed("v1/agent/facts", &upload).await {
                Ok(a) => a,
                Err(e) => return tracing::warn!(error = %e, "could not send audit facts"),
            };
        if answer.stored {
            return;
        }
        upload.contents = answer
            .missing
            .iter()
            .filter_map(|d| contents.get(d).map(|suite| (d.clone(), suite.clone())))
            .collect();
        if upload.contents.is_empty() {
            return tracing::warn!(
                missing = ?answer.missing,
                "the server asked for audit facts this agent did not name; not sent"
            );
        }
    }
    tracing::warn!("the server did not store the audit facts after three uploads");
}

/// Test-only clock offset in seconds (finding 12's tests run an agent whose clock is
/// ahead); never set it on a real host.
pub const CLOCK_OFFSET_ENV: &str = "PATCHDAY_TEST_CLOCK_OFFSET_SECONDS";

/// The agent's one clock read; every decision takes its result as `now`.
#[allow(clippy::disallowed_methods)]
pub(crate) fn clock_now() -> Timestamp {
    let now = Timestamp::now();
    match std::env::var(CLOCK_OFFSET_ENV)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
    {
        Some(offset) => now
            .checked_add(SignedDuration::from_secs(offset))
            .unwrap_or(now),
        None => now,
    }
}

/// The version a director key certificate claims, before it is verified (to decide
/// whether it is worth verifying); 0 when unreadable.
fn certificate_version(text: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v["signed"]["version"].as_u64())
        .unwrap_or(0)
}

/// Verifies a newer director key certificate against the newest catalog root this agent
/// trusts and pins the key it names.
fn adopt_certificate(state: &StateDir, cert: &str, now: Timestamp) -> anyhow::Result<()> {
    // A certificate for the key already pinned changes nothing: an agent enrolled after
    // the last rotation must not stop working because that certificate has since expired.
    let claimed = serde_json::from_str::<serde_json::Value>(cert)
        .ok()
        .and_then(|v| v["signed"]["key"]["keyid"].as_str().map(str::to_owned));
    let pinned = state.director_key()?;
    let same_key =
        claimed.is_some() && claimed.as_deref() == pinned.as_ref().map(|k| k.keyid.as_str());
    let root_path = state.tuf().join("root.json");
    let root = std::fs::read(&root_path)
        .with_context(|| format!("reading the trusted root {}", root_path.display()))?;
    let verified = patchday_trust::director::verify_certificate(
        cert.as_bytes(),
        &root,
        now,
        state.director_certificate_version(),
    );
    let c = match verified {
        Ok(c) => c,
        // Its version is only recorded once it verifies; refusing it would stop an agent
        // for nothing.
        Err(e) if same_key => {
            tracing::debug!(error = %e, "certificate for the pinned director key not adopted");
            return Ok(());
        }
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context("director key change refused; nothing was installed")
            )
        }
    };
    let before = state.director_key()?;
    state.adopt_director_key(&c.key, c.version)?;
    if before.as_ref() != Some(&c.key) {
        tracing::warn!(keyid = %c.key.keyid, version = c.version, "director key rotated: assignments signed by the previous key are refused from now on");
    }
    Ok(())
}

/// A failure before anything was installed.
pub(crate) struct FailedBefore(pub(crate) String);

impl<E: std::fmt::Display> From<E> for FailedBefore {
    fn from(e: E) -> Self {
        FailedBefore(e.to_string())
    }
}

/// Everything one assignment's processing reads.
struct Ctx<'a> {
    cfg: &'a AgentConfig,
    state: &'a StateDir,
    client: &'a Client,
    reporter: &'a Reporter<'a>,
    dpkg: &'a Dpkg,
    catalog: &'a VerifiedCatalog,
    director: &'a DirectorTargets,
    host: HostIdentity<'a>,
    now: Timestamp,
}

/// The update document of an assignment, read with the catalog's signed length and sha256
/// (`Err` with the reason when the catalog does not list it or it does not parse).
async fn read_document(
    ctx: &Ctx<'_>,
    a: &Assignment,
) -> Result<Result<UpdateDocument, String>, FailedBefore> {
    signed_document(ctx.cfg, ctx.state, ctx.client, ctx.catalog, &a.update).await
}

/// An update's signed document from the verified catalog, read with its signed length
/// and sha256 (`Ok(Err)` with the reason when the catalog does not list it or it does
/// not parse). Shared by installs and removals (issue 10, point 3).
pub(crate) async fn signed_document(
    cfg: &AgentConfig,
    state: &StateDir,
    client: &Client,
    catalog: &VerifiedCatalog,
    update: &UpdateId,
) -> Result<Result<UpdateDocument, String>, FailedBefore> {
    let name = UpdateDocument::target_name(update);
    let Ok(info) = catalog.target(&name) else {
        // The caller's decision names the refusal: the catalog does not publish it.
        return Ok(Err("the catalog does not list it".into()));
    };
    let path = crate::download::fetch_target(
        client,
        &state.downloads(),
        &name,
        info,
        cfg.download_deadline,
    )
    .await?;
    Ok(serde_json::from_slice(&std::fs::read(&path)?).map_err(|e| e.to_string()))
}

/// Issue 9, point 4 (closure): the assigned updates the signed answer says install
/// together (`install_with`), as groups of indexes into `assignments`, each group in
/// assignment order, groups in the order of their first member. Names the answer does
/// not assign were refused when it was verified.
fn install_groups(
    assignments: &[Assignment],
    with: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Vec<Vec<usize>> {
    let mut group: Vec<usize> = (0..assignments.len()).collect();
    let index = |u: &str| assignments.iter().position(|a| a.update.as_str() == u);
    for (u, others) in with {
        for o in others {
            if let (Some(a), Some(b)) = (index(u), index(o)) {
                let (keep, gone) = (group[a].min(group[b]), group[a].max(group[b]));
                for g in group.iter_mut().filter(|g| **g == gone) {
                    *g = keep;
                }
            }
        }
    }
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (i, g) in group.iter().enumerate() {
        match out.iter_mut().find(|m| group[m[0]] == *g) {
            Some(m) => m.push(i),
            None => out.push(vec![i]),
        }
    }
    out
}

/// Installs the updates of one group in one dpkg run: each is decided on its own (a
/// refusal of one fails them all, nothing is changed), then all their payloads go to
/// dpkg together, checked whole first.
async fn process_together(
    ctx: &Ctx<'_>,
    members: &[&Assignment],
    counters: &crate::state::ReleaseCounters,
    install_now: bool,
) -> Result<(Vec<Install>, Option<Outcome>), FailedBefore> {
    let mut installs = Vec::new();
    let mut files = Vec::new();
    for a in members {
        let (install, mut f) =
            prepare(ctx, a, counters, install_now)
                .await
                .map_err(|FailedBefore(m)| {
                    if members.len() > 1 {
                        FailedBefore(format!("{} (installed together with it): {m}", a.update))
                    } else {
                        FailedBefore(m)
                    }
                })?;
        installs.push(install);
        files.append(&mut f);
    }
    // Issue 10, point 5: outside its window the update stays downloaded (staged).
    if !install_now {
        return Ok((installs, None));
    }
    let Some(first) = members.first() else {
        return Ok((installs, Some(Outcome::Installed)));
    };
    // Issue 10, point 8: "installing" is reported only when dpkg is still at work after
    // INSTALLING_REPORT_AFTER (a large package, a slow maintainer script, a hang: what an
    // operator watching the rollout should see), in one report for the whole group. An
    // install of a few seconds goes straight to its outcome, which the closing check-in
    // carries, as a fast download skips "downloading". dpkg runs on a blocking thread so
    // that the report can go out while it works.
    let (cfg, state, dpkg, journal) = (
        ctx.cfg.clone(),
        ctx.state.clone(),
        ctx.dpkg.clone(),
        first.update.clone(),
    );
    let install = tokio::task::spawn_blocking(move || apply(&cfg, &state, &dpkg, &journal, &files));
    let say = async {
        for a in members {
            ctx.reporter.later(&a.update, UpdateState::Installing, None);
        }
        ctx.reporter.flush().await;
    };
    let outcome = crate::download::saying_when_slow(INSTALLING_REPORT_AFTER, install, say)
        .await
        .map_err(|e| {
            FailedBefore(format!(
                "the install stopped before dpkg's outcome was known ({e}); the next run checks dpkg's database and finishes it"
            ))
        })??;
    Ok((installs, Some(outcome)))
}

/// How long a download runs before the agent reports "downloading" (issue 10, point 8).
pub const DOWNLOADING_REPORT_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// How long dpkg works on an update before the agent reports "installing" (issue 10,
/// point 8): most security updates install in a few seconds, and a state that short is
/// one nobody watching could act on; past this, the report says where the host is.
pub const INSTALLING_REPORT_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// Decides and downloads one assignment.
async fn prepare(
    ctx: &Ctx<'_>,
    a: &Assignment,
    counters: &crate::state::ReleaseCounters,
    report: bool,
) -> Result<(Install, Vec<(PayloadRef, PathBuf)>), FailedBefore> {
    let Ctx {
        cfg,
        state,
        client,
        reporter,
        ..
    } = *ctx;
    let document = read_document(ctx, a).await?;
    // The inventory as it is now: an earlier update of this run may have changed it.
    let inventory = crate::inventory::collect(&cfg.root)?;
    let input = DecisionInput {
        director: ctx.director,
        catalog: ctx.catalog,
        host: ctx.host,
        inventory: &inventory,
        counters,
        document: document.as_ref().map_err(String::as_str),
        now: ctx.now,
    };
    let install = decision::decide(&input, a).map_err(|r| {
        tracing::error!(update = %a.update, refusal = %r, "update refused");
        FailedBefore(r.to_string())
    })?;

    // Issue 10, point 5: an update staged for its window says so once, not at every poll
    // (`report` is false then). Issue 10, point 8: "downloading" is reported only when
    // the download is still going after DOWNLOADING_REPORT_AFTER, so that a fleet
    // fetching a small payload from a near server does not send a report nobody could
    // see; "installing" follows at once otherwise. There is no "downloaded" report here
    // either: a staged update reports it with its reason where it waits.
    let files = {
        let fetch = async {
            let mut files = Vec::new();
            for (p, info) in &install.payloads {
                let path = crate::download::fetch_target(
                    client,
                    &state.downloads(),
                    &p.target,
                    info,
                    cfg.download_deadline,
                )
                .await?;
                files.push((p.clone(), path));
            }
            Ok::<_, FailedBefore>(files)
        };
        if report {
            crate::download::saying_when_slow(
                DOWNLOADING_REPORT_AFTER,
                fetch,
                reporter.send(&a.update, UpdateState::Downloading, None),
            )
            .await?
        } else {
            fetch.await?
        }
    };
    Ok((install, files))
}

/// Installs the downloaded payloads of one dpkg run (debs together, then bundles).
pub(crate) fn apply(
    cfg: &AgentConfig,
    state: &StateDir,
    dpkg: &Dpkg,
    journal: &UpdateId,
    files: &[(PayloadRef, PathBuf)],
) -> Result<Outcome, FailedBefore> {
    state.set_journal(Some(journal))?;
    let debs: Vec<(PayloadRef, PathBuf)> = files
        .iter()
        .filter(|(p, _)| p.kind == PayloadKind::Deb)
        .cloned()
        .collect();
    let mut outcome = Outcome::Installed;
    if !debs.is_empty() {
        // dpkg wants a .deb suffix for nothing, but its messages are clearer with one.
        let named: Vec<(PayloadRef, PathBuf)> = debs
            .into_iter()
            .map(|(p, path)| {
                let link = path.with_extension("deb");
                let _ = std::fs::remove_file(&link);
                match std::fs::hard_link(&path, &link) {
                    Ok(()) => (p, link),
                    Err(_) => (p, path),
                }
            })
            .collect();
        outcome = dpkg.install(&named);
        for (_, l) in &named {
            if l.extension().is_some_and(|e| e == "deb") {
                let _ = std::fs::remove_file(l);
            }
        }
    }
    for (p, path) in files.iter().filter(|(p, _)| p.kind == PayloadKind::Bundle) {
        if matches!(outcome, Outcome::Failed(_)) {
            break;
        }
        if let Outcome::Failed(m) = bundle::install(&cfg.root, path, &p.package, &p.version) {
            outcome = Outcome::Failed(m);
        }
    }
    // Issue 13, points 1-2: baselines last, each guarded by the server's reachability.
    let server = state
        .identity()
        .ok()
        .flatten()
        .map(|i| i.server)
        .filter(|_| cfg.server.is_empty())
        .unwrap_or_else(|| cfg.server.clone());
    for (p, path) in files
        .iter()
        .filter(|(p, _)| p.kind == PayloadKind::Baseline)
    {
        if matches!(outcome, Outcome::Failed(_)) {
            break;
        }
        if let Outcome::Failed(m) =
            crate::install::baseline::install(&cfg.root, &server, path, &p.package, &p.version)
        {
            outcome = Outcome::Failed(m);
        }
    }
    if !matches!(outcome, Outcome::Failed(_)) {
        for (_, path) in files {
            let _ = std::fs::remove_file(path);
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ReleaseCounters;

    #[test]
    fn release_counters_only_go_up() {
        let mut c = ReleaseCounters::default();
        c.raise(PayloadKind::Deb, "libfoo", 4);
        c.raise(PayloadKind::Deb, "libfoo", 2);
        assert_eq!(c.get(PayloadKind::Deb, "libfoo"), 4);
        assert_eq!(c.get(PayloadKind::Bundle, "libfoo"), 0, "kinds are apart");
    }

    #[test]
    fn updates_the_answer_groups_install_in_one_run_and_unknown_names_group_nothing() {
        let a = |u: &str| Assignment {
            update: UpdateId::new(u).unwrap(),
            targets: vec![],
        };
        let assignments = [a("A"), a("B"), a("C"), a("D")];
        let with = std::collections::BTreeMap::from([
            (
                "D".to_string(),
                std::collections::BTreeSet::from(["B".to_string()]),
            ),
            (
                "C".to_string(),
                std::collections::BTreeSet::from(["D".to_string(), "X".to_string()]),
            ),
        ]);
        assert_eq!(
            install_groups(&assignments, &with),
            [vec![0], vec![1, 2, 3]]
        );
        assert_eq!(
            install_groups(&assignments, &Default::default()),
            [vec![0], vec![1], vec![2], vec![3]]
        );
    }

    #[tokio::test]
    async fn an_expired_certificate_for_the_pinned_key_does_not_stop_the_agent() {
        use patchday_trust::director::{certify, DirectorKey, KeyCertificate};
        let d = tempfile::tempdir().unwrap();
        let keys = patchday_trust::generate_keyset(&d.path().join("keys"), 3, 2).unwrap();
        let repo = d.path().join("repo");
        let now = clock_now();
        patchday_trust::init_catalog(&keys, &repo, now, &patchday_trust::Expiries::default())
            .await
            .unwrap();
        let state = StateDir::open(&d.path().join("state")).unwrap();
        std::fs::copy(
            repo.join("metadata/1.root.json"),
            state.tuf().join("root.json"),
        )
        .unwrap();
        let pinned = DirectorKey::load_or_create(&d.path().join("pinned")).unwrap();
        state.save_director_key(pinned.public()).unwrap();
        let expired = |key: &DirectorKey| {
            let mut c = KeyCertificate::new(key.public().clone(), 1, now, 1).unwrap();
            c.expires = "2020-01-01T00:00:00Z".into();
            c
        };
        // Enrolled after the rotation it certified: nothing to adopt, nothing refused.
        let same = certify(&expired(&pinned), &keys.root).await.unwrap();
        adopt_certificate(&state, std::str::from_utf8(&same).unwrap(), now).unwrap();
        assert_eq!(state.director_certificate_version(), 0);
        // An expired certificate for another key is a refused key change.
        let other = DirectorKey::load_or_create(&d.path().join("other")).unwrap();
        let change = certify(&expired(&other), &keys.root).await.unwrap();
        let err =
            adopt_certificate(&state, std::str::from_utf8(&change).unwrap(), now).unwrap_err();
        assert!(
            format!("{err:#}").contains("director key change refused"),
            "{err:#}"
        );
        assert_eq!(
            state.director_key().unwrap().as_ref(),
            Some(pinned.public())
        );
    }
}
