//! Issue 10, point 3: decline with removal. Which updates a check-in answer asks the host
//! to take back: those its groups declined with `--remove` (and none approves) that the
//! host still has installed. The instruction travels only inside the signed answer; the
//! agent acts only on what it installed itself (`patchday_trust::removal::decide`).

use patchday_core::applicability::UpdateStatus;
use patchday_store::HostRecord;
use patchday_trust::director::RemoveInstruction;
use patchday_types::api::{Approval, Decision};
use patchday_types::UpdateState;
use std::collections::BTreeMap;

/// Update id → the instruction, for each installed update the host's groups declined
/// with removal. Sent until the host reports `removed` or `remove-failed`: both replace
/// the installed state, so a refusal is not retried at every check-in.
pub fn instructions(
    approvals: &[Approval],
    host: &HostRecord,
    statuses: &[UpdateStatus],
) -> BTreeMap<String, RemoveInstruction> {
    let mut out = BTreeMap::new();
    for st in statuses.iter().filter(|st| {
        matches!(
            st.state,
            UpdateState::Installed | UpdateState::InstalledPendingReboot
        )
    }) {
        let mine: Vec<&Approval> = approvals
            .iter()
            .filter(|a| a.update == st.update && host.groups.contains(&a.group))
            .collect();
        // An approval in any of the host's groups wins, as for installing.
        if mine.iter().any(|a| a.decision == Decision::Approve) {
            continue;
        }
        if let Some(a) = mine
            .iter()
            .filter(|a| a.decision == Decision::Decline && a.remove)
            .max_by_key(|a| a.decided_at)
        {
            out.insert(
                st.update.to_string(),
                RemoveInstruction {
                    reason: a.reason.clone().unwrap_or_default(),
                    by: a.decided_by.clone(),
                    requested: a
                        .decided_at
                        .round(jiff::Unit::Second)
                        .unwrap_or(a.decided_at)
                        .to_string(),
                },
            );
        }
    }
    out
}
