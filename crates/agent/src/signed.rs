//! Issue 8: the host signs what it says about itself (finding 8), tells the server
//! when a run fails before or outside any update (finding 13), and follows a changed
//! `--server` (finding 9).

use crate::client::{Client, Signer};
use crate::run::{AgentConfig, RunSummary};
use crate::state::{Identity, StateDir};
use patchday_types::api::AgentStatusRequest;

/// The client for an enrolled host: its credential, its pinned CA, and every body
/// signed with its own key.
pub fn host_client(cfg: &AgentConfig, state: &StateDir, id: &Identity) -> anyhow::Result<Client> {
    let key = state.host_key()?;
    let signer = Signer::new(
        key,
        id.tenant.as_str(),
        id.host.as_str(),
        state.sequence_path(),
    );
    Ok(Client::new(
        &id.server,
        Some(id.credential.clone()),
        cfg.read_timeout,
        state.ca().as_deref(),
    )?
    .signing(signer))
}

/// Uses the `--server` given now rather than the one stored at enrolment, and stores
/// it: an admin who moves the server points the agent at it. What protects the host
/// stays pinned (the CA, the catalog root, the director key, the host key), so a wrong
/// URL can fail a run, never make it trust another server.
pub fn follow_server(
    cfg: &AgentConfig,
    state: &StateDir,
    mut id: Identity,
) -> anyhow::Result<Identity> {
    let given = cfg.server.trim_end_matches('/');
    if given.is_empty() || given == id.server.trim_end_matches('/') {
        return Ok(id);
    }
    tracing::warn!(
        from = %id.server,
        to = %cfg.server,
        "--server differs from the server this agent enrolled with: using and storing the new one (the pinned CA and keys stay)"
    );
    id.server = cfg.server.clone();
    state.save_identity(&id)?;
    Ok(id)
}

/// Tells the server how the run ended (finding 13): a failed run's error becomes the
/// host's state in reports; the next good run clears it. Never fatal, and silent when
/// the agent is not enrolled (nothing to sign with).
pub async fn report_outcome(cfg: &AgentConfig, result: &anyhow::Result<RunSummary>) {
    let state = match StateDir::open(&cfg.state_dir) {
        Ok(s) => s,
        Err(_) => return,
    };
    let Ok(Some(id)) = state.identity() else {
        return;
    };
    let marker = state.agent_error_reported_path();
    let error = match result {
        Ok(_) if !marker.exists() => return,
        Ok(_) => None,
        Err(e) => Some(format!("{e:#}")),
    };
    let sent = async {
        let client = host_client(cfg, &state, &id)?;
        client
            .post::<_, ()>(
                "v1/agent/status",
                &AgentStatusRequest {
                    error: error.clone(),
                },
            )
            .await
    }
    .await;
    match (sent, &error) {
        (Ok(()), Some(_)) => {
            if let Err(e) = crate::state::write_atomic(&marker, b"1\n", 0o600) {
                tracing::warn!(error = %e, "could not record that the failure was reported");
            }
        }
        (Ok(()), None) => {
            let _ = std::fs::remove_file(&marker);
        }
        (Err(e), _) => {
            tracing::warn!(error = %format!("{e:#}"), "could not report the run's outcome to the server");
        }
    }
}
