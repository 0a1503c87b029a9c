//! Issue 10, point 3: taking back an update an operator declined with removal
//! (`patchday decline U --remove`).
//!
//! The instruction counts only inside the signed director answer. The agent acts only on
//! what it recorded installing for that update (`installed-updates.json`, written after a
//! verified install) and what the signed document names, decides with
//! [`patchday_trust::removal::decide`], downloads an older payload only as the catalog
//! signed it, checks the whole step against dpkg's database (nothing installed may lose
//! what it needs, nothing essential goes) before anything changes, then downgrades
//! (`dpkg -i`, the same journalled install path as every update) and removes
//! (`dpkg --remove`, journalled so a stopped run finishes it). Refusals are reported
//! truthfully as `remove-failed` with the reason.

use crate::client::Client;
use crate::install::deb::Dpkg;
use crate::install::Outcome;
use crate::run::AgentConfig;
use crate::state::{RemovalJournal, StateDir};
use patchday_trust::decision::Install;
use patchday_trust::director::DirectorTargets;
use patchday_trust::removal::{self, InstalledPayload, RemovalInput, TakeBack};
use patchday_trust::VerifiedCatalog;
use patchday_types::{Inventory, PayloadRef, UpdateDocument, UpdateId};
use std::path::PathBuf;

/// What the agent needs to take updates back.
pub(crate) struct TakeBackCtx<'a> {
    pub(crate) cfg: &'a AgentConfig,
    pub(crate) state: &'a StateDir,
    pub(crate) client: &'a Client,
    pub(crate) dpkg: &'a Dpkg,
    pub(crate) catalog: &'a VerifiedCatalog,
    pub(crate) director: &'a DirectorTargets,
}

/// Records, after a verified install, which payloads this agent installed for each
/// update and what the host had before (`before`: the inventory just before dpkg ran).
pub(crate) fn record_installs(
    state: &StateDir,
    before: &Inventory,
    installs: &[Install],
) -> anyhow::Result<()> {
    if installs.is_empty() {
        return Ok(());
    }
    let mut records = state.installed_records()?;
    for i in installs {
        let payloads = i
            .payloads
            .iter()
            .map(|(p, _)| InstalledPayload {
                kind: p.kind,
                package: p.package.clone(),
                architecture: p.architecture.clone(),
                version: p.version.clone(),
                before: match p.kind {
                    patchday_types::PayloadKind::Deb => before
                        .package(&p.package, &p.architecture)
                        .map(|x| x.version.clone()),
                    patchday_types::PayloadKind::Bundle => {
                        before.bundle(&p.package).map(|b| b.version.clone())
                    }
                    patchday_types::PayloadKind::Baseline => {
                        before.baseline(&p.package).map(|b| b.version.clone())
                    }
                },
            })
            .collect();
        records.insert(i.update.clone(), payloads);
    }
    state.save_installed_records(&records)
}

/// Finishes a removal a stopped run left behind (`dpkg --remove` again); the journal
/// stays while dpkg refuses, and the run says so.
pub(crate) fn recover(state: &StateDir, dpkg: &Dpkg) -> anyhow::Result<()> {
    let Some(j) = state.removal_journal() else {
        return Ok(());
    };
    tracing::warn!(update = ?j.update, "the previous run stopped during a removal; finishing it");
    match dpkg.remove(&j.remove) {
        Ok(()) => state.set_removal_journal(None),
        Err(e) => {
            tracing::warn!(error = %e, "the interrupted removal cannot be finished yet");
            Ok(())
        }
    }
}

/// Takes back every update the signed answer asks for: per update `Ok(what was done)` or
/// `Err(why not)`.
pub(crate) async fn take_back_all(
    ctx: &TakeBackCtx<'_>,
) -> Vec<(UpdateId, Result<String, String>)> {
    let mut out = Vec::new();
    for (id, instruction) in &ctx.director.remove {
        let Ok(update) = UpdateId::new(id.clone()) else {
            tracing::warn!(update = %id, "the signed answer asks to remove an invalid update id; ignored");
            continue;
        };
        tracing::warn!(update = %update, by = %instruction.by, reason = %instruction.reason, "the operator declined this update with removal");
        let result = match take_back(ctx, &update).await {
            Ok(done) => Ok(format!(
                "{done} (declined by {} at {}: {})",
                instruction.by, instruction.requested, instruction.reason
            )),
            Err(e) => Err(e),
        };
        match &result {
            Ok(m) => tracing::info!(update = %update, "{m}"),
            Err(m) => tracing::error!(update = %update, "{m}"),
        }
        out.push((update, result));
    }
    out
}

/// Reads the update's signed document from the catalog (its signed length and sha256).
async fn document(ctx: &TakeBackCtx<'_>, update: &UpdateId) -> Result<UpdateDocument, String> {
    crate::run::signed_document(ctx.cfg, ctx.state, ctx.client, ctx.catalog, update)
        .await
        .map_err(|crate::run::FailedBefore(m)| m)?
}

/// One update: decide, download, check the whole step, then change the host.
async fn take_back(ctx: &TakeBackCtx<'_>, update: &UpdateId) -> Result<String, String> {
    let document = document(ctx, update).await;
    let mut records = ctx
        .state
        .installed_records()
        .map_err(|e| format!("{e:#}"))?;
    let inventory = crate::inventory::collect(&ctx.cfg.root).map_err(|e| format!("{e:#}"))?;
    let plan = removal::decide(
        &RemovalInput {
            director: ctx.director,
            catalog: ctx.catalog,
            document: document.as_ref().map_err(String::as_str),
            record: records.get(update).map(Vec::as_slice),
            inventory: &inventory,
        },
        update,
    )
    .map_err(|r| r.to_string())?;

    // Older payloads, exactly as the catalog signed them (TUF length and sha256).
    let mut files: Vec<(PayloadRef, PathBuf)> = Vec::new();
    let mut removing = Vec::new();
    let mut done = Vec::new();
    for step in &plan.steps {
        match step {
            TakeBack::Downgrade {
                from,
                payload,
                info,
            } => {
                let path = crate::download::fetch_target(
                    ctx.client,
                    &ctx.state.downloads(),
                    &payload.target,
                    info,
                    ctx.cfg.download_deadline,
                )
                .await
                .map_err(|e| {
                    format!(
                        "cannot remove {update}: downloading {}: {e:#}; nothing was changed",
                        payload.target
                    )
                })?;
                done.push(format!(
                    "{} {from} downgraded to {} (signed payload {})",
                    payload.package, payload.version, payload.target
                ));
                files.push((payload.clone(), path));
            }
            TakeBack::Remove {
                package,
                architecture,
                version,
            } => {
                done.push(format!(
                    "{package} {version} removed (the update brought it)"
                ));
                removing.push((package.clone(), architecture.clone()));
            }
        }
    }
    check_whole(ctx.dpkg, update, &files, &removing)?;

    // Downgrades: the install path every update takes (journalled, dpkg's check again,
    // versions verified after).
    if !files.is_empty() {
        match crate::run::apply(ctx.cfg, ctx.state, ctx.dpkg, update, &files) {
            Ok(Outcome::Installed | Outcome::PendingReboot) => {}
            Ok(Outcome::Failed(m)) | Err(crate::run::FailedBefore(m)) => {
                return Err(format!("cannot remove {update}: the downgrade failed: {m}"));
            }
        }
        ctx.state.set_journal(None).map_err(|e| format!("{e:#}"))?;
    }
    if !removing.is_empty() {
        let names: Vec<String> = removing.iter().map(|(p, a)| dpkg_name(p, a)).collect();
        let journal = RemovalJournal {
            update: Some(update.clone()),
            remove: names.clone(),
        };
        ctx.state
            .set_removal_journal(Some(&journal))
            .map_err(|e| format!("{e:#}"))?;
        let result = ctx.dpkg.remove(&names);
        ctx.state
            .set_removal_journal(None)
            .map_err(|e| format!("{e:#}"))?;
        if let Err(m) = result {
            let downgraded = if files.is_empty() {
                String::new()
            } else {
                " (its downgrades are done)".to_string()
            };
            return Err(format!(
                "cannot remove {update}{downgraded}: dpkg --remove failed: {m}"
            ));
        }
    }
    records.remove(update);
    ctx.state
        .save_installed_records(&records)
        .map_err(|e| format!("{e:#}"))?;
    Ok(done.join("; "))
}

/// `name:arch` for dpkg (an `all` package is named alone).
fn dpkg_name(package: &str, architecture: &str) -> String {
    if architecture == "all" {
        package.to_string()
    } else {
        format!("{package}:{architecture}")
    }
}

/// The whole step checked against dpkg's database before anything changes: no
/// essential package is removed, nothing installed loses what it needs, the older
/// versions' own needs are met.
fn check_whole(
    dpkg: &Dpkg,
    update: &UpdateId,
    files: &[(PayloadRef, PathBuf)],
    removing: &[(String, String)],
) -> Result<(), String> {
    let refused = |m: String| format!("cannot remove {update}: {m}; nothing was changed");
    let status = std::fs::read_to_string(crate::inventory::status_path(&dpkg.root))
        .map_err(|e| refused(format!("cannot read the dpkg status file: {e}")))?;
    for (p, _) in removing {
        if patchday_pkg::status::is_essential(&status, p) {
            return Err(refused(format!(
                "{p} is an essential package, which dpkg does not remove"
            )));
        }
    }
    let installed = patchday_pkg::depends::facts_from_status(&status);
    let incoming = crate::install::deb::control_facts(files).map_err(refused)?;
    let native = dpkg.native_architecture().map_err(refused)?;
    let names: Vec<String> = removing.iter().map(|(p, _)| p.clone()).collect();
    patchday_pkg::depends::check_take_back(&installed, &incoming, &names, &native).map_err(
        |unmet| {
            let list: Vec<String> = unmet.iter().map(ToString::to_string).collect();
            refused(list.join("; "))
        },
    )
}
