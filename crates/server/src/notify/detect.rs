//! Finding the events that are not announced where they happen: broken hosts, overdue
//! updates and known-exploited vulnerabilities in a tenant's fleet, read from the same
//! statuses the compliance report reads. (A halt is announced by `rollout::halt`, an
//! expiring catalog role by `catalog_expiry::watch`.) Each event's key holds what makes
//! it new (the time of the failure, the deadline, the CVE), so a scan that sees it again
//! enqueues nothing.

use super::{enqueue, event};
use crate::error::ApiResult;
use crate::state::AppState;
use jiff::Timestamp;
use patchday_types::notify::NotifyEvent;
use patchday_types::{HostId, TenantId, UpdateId, UpdateState};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What the scans remember between rounds: each host's last agent error, to see it
/// repeat.
#[derive(Default)]
pub struct Watch {
    errors: HashMap<(TenantId, HostId), (String, Timestamp)>,
}

fn short_hash(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
        .chars()
        .take(12)
        .collect()
}

/// One round over every tenant.
pub async fn scan(state: &AppState, watch: &mut Watch, now: Timestamp) -> ApiResult<()> {
    if state.config.notify.targets.is_empty() {
        return Ok(());
    }
    let (version, catalog) = state.catalog_index.versioned(state.store.as_ref()).await?;
    let kev_known = state.feeds.advisories.known_exploited_count() > 0;
    for t in state.store.list_tenants().await? {
        let tenant = state.store.tenant(&t.id).await?;
        // update → (when it became overdue, hosts)
        let mut overdue: BTreeMap<UpdateId, (Timestamp, BTreeSet<String>)> = BTreeMap::new();
        // CVE → (updates that fix it, hosts exposed)
        let mut exploited: BTreeMap<String, (BTreeSet<UpdateId>, BTreeSet<String>)> =
            BTreeMap::new();
        // Issue 11, point 1: stored evaluations of hosts that did not change.
        let fleet = crate::fleet_view::FleetReader::open(
            tenant.as_ref(),
            &version,
            &catalog,
            &state.metrics,
        )
        .await?;
        for e in fleet.all().await? {
            let (h, statuses) = (&e.host, &e.statuses);
            // When each failure was reported: read only for hosts with one.
            let reported: HashMap<UpdateId, Timestamp> = if statuses
                .iter()
                .any(|st| matches!(st.state, UpdateState::Failed | UpdateState::RemoveFailed))
            {
                tenant
                    .states(&h.id)
                    .await?
                    .into_iter()
                    .map(|s| (s.report.update, s.at))
                    .collect()
            } else {
                HashMap::new()
            };
            for st in statuses {
                // An install or a removal failed.
                if matches!(st.state, UpdateState::Failed | UpdateState::RemoveFailed) {
                    let since = reported.get(&st.update).copied().unwrap_or(now);
                    let what = if st.state == UpdateState::Failed {
                        "install"
                    } else {
                        "removal"
                    };
                    enqueue(
                        state,
                        event(
                            NotifyEvent::HostBroken,
                            format!(
                                "{}:{}:{}:{}:{}",
                                t.id,
                                h.id,
                                st.update,
                                st.state,
                                since.as_second()
                            ),
                            Some(t.id.clone()),
                            format!(
                                "host {} ({}): the {what} of {} failed",
                                h.hostname, h.id, st.update
                            ),
                            serde_json::json!({
                                "host": h.id, "hostname": h.hostname, "update": st.update,
                                "state": st.state, "message": st.message, "since": since,
                            }),
                            now,
                        ),
                    )
                    .await;
                }
                let outstanding = matches!(
                    st.state,
                    UpdateState::Approved
                        | UpdateState::Downloading
                        | UpdateState::Downloaded
                        | UpdateState::Installing
                        | UpdateState::InstalledPendingReboot
                );
                if let Some(due) = st.overdue_at.or(st.deadline).filter(|d| *d <= now) {
                    if outstanding {
                        let e = overdue
                            .entry(st.update.clone())
                            .or_insert_with(|| (due, BTreeSet::new()));
                        e.0 = e.0.min(due);
                        e.1.insert(h.id.to_string());
                    }
                }
                let exposed = outstanding && st.state != UpdateState::InstalledPendingReboot
                    || matches!(st.state, UpdateState::Needed | UpdateState::Failed);
                if kev_known && exposed {
                    if let Some(u) = catalog.get(st.update.as_str()) {
                        for c in u
                            .cves
                            .iter()
                            .filter(|c| state.feeds.advisories.known_exploited(c).is_some())
                        {
                            let e = exploited.entry(c.clone()).or_default();
                            e.0.insert(st.update.clone());
                            e.1.insert(h.id.to_string());
                        }
                    }
                }
            }
            // The host's dpkg database is broken (dpkg's own words).
            if let Some(b) = &e.dpkg_broken {
                enqueue(
                    state,
                    event(
                        NotifyEvent::HostBroken,
                        format!("{}:{}:dpkg:{}", t.id, h.id, short_hash(b)),
                        Some(t.id.clone()),
                        format!(
                            "host {} ({}): its dpkg database is broken",
                            h.hostname, h.id
                        ),
                        serde_json::json!({ "host": h.id, "hostname": h.hostname, "dpkg": b }),
                        now,
                    ),
                )
                .await;
            }
            // The same run error twice in a row (two runs, one error): not a blip.
            let signing = tenant.host_signing(&h.id).await?;
            let key = (t.id.clone(), h.id.clone());
            match signing.agent_error {
                Some((err, at)) => {
                    if let Some((before, first)) = watch.errors.get(&key) {
                        if *before == err && *first != at {
                            enqueue(
                                state,
                                event(
                                    NotifyEvent::HostBroken,
                                    format!(
                                        "{}:{}:agent-error:{}:{}",
                                        t.id,
                                        h.id,
                                        short_hash(&err),
                                        first.as_second()
                                    ),
                                    Some(t.id.clone()),
                                    format!(
                                        "host {} ({}): its runs keep failing",
                                        h.hostname, h.id
                                    ),
                                    serde_json::json!({
                                        "host": h.id, "hostname": h.hostname, "error": err,
                                        "first_seen": first, "last_seen": at,
                                    }),
                                    now,
                                ),
                            )
                            .await;
                            continue;
                        }
                    }
                    watch.errors.insert(key, (err, at));
                }
                None => {
                    watch.errors.remove(&key);
                }
            }
        }
        for (u, (due, hosts)) in overdue {
            enqueue(
                state,
                event(
                    NotifyEvent::UpdateOverdue,
                    format!("{}:{}:{}", t.id, u, due.as_second()),
                    Some(t.id.clone()),
                    format!(
                        "tenant {}: {u} is overdue on {} host(s) (due {due})",
                        t.id,
                        hosts.len()
                    ),
                    serde_json::json!({ "update": u, "due": due, "hosts": hosts }),
                    now,
                ),
            )
            .await;
        }
        for (cve, (updates, hosts)) in exploited {
            let kev = state.feeds.advisories.known_exploited(&cve);
            enqueue(
                state,
                event(
                    NotifyEvent::KnownExploited,
                    format!("{}:{cve}", t.id),
                    Some(t.id.clone()),
                    format!(
                        "tenant {}: {cve} is known to be exploited and open on {} host(s)",
                        t.id,
                        hosts.len()
                    ),
                    serde_json::json!({
                        "cve": cve, "updates": updates, "hosts": hosts,
                        "kev_date_added": kev.map(|k| k.date_added.clone()),
                        "kev_due_date": kev.map(|k| k.due_date.clone()),
                        "ransomware": kev.map(|k| k.ransomware.clone()),
                    }),
                    now,
                ),
            )
            .await;
        }
    }
    Ok(())
}
