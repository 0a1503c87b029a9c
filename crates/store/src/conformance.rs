//! One behavioural suite for every storage backend (SQLite and PostgreSQL).
//!
//! A backend's tests invoke [`conformance_tests!`](crate::conformance_tests) with a
//! function that makes a fresh, empty database (a [`Harness`]): the macro expands to one
//! `#[tokio::test]` per case of [`case`], so one broken promise does not hide the
//! others. Each step panics with a message naming the broken promise, which is what a
//! test wants. The concurrency cases open a second handle on the same database (a second
//! server replica) and race the two.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use crate::{
    hash_secret, CatalogRecord, CatalogTarget, EnrollGrant, NewEnrollToken, Store, StoreError,
    TokenRecord,
};
use jiff::Timestamp;
use patchday_types::api::{
    Approval, CatalogStatus, Decision, Group, LogEntry, PatchDayConfig, Role, StateReport, Tenant,
};
use patchday_types::{
    Classification, GroupId, HostId, InstalledPackage, Inventory, PayloadKind, PayloadRef, Release,
    Severity, TenantId, UpdateDocument, UpdateId, UpdateState,
};

fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().expect("valid id")
}

fn ts(s: &str) -> Timestamp {
    s.parse().expect("valid timestamp")
}

/// A fresh, empty database for one conformance case (issue 12, point 2).
#[async_trait::async_trait]
pub trait Harness: Send + Sync {
    /// The store the case uses.
    fn store(&self) -> &dyn Store;
    /// Another handle on the same database, as a second server replica opens it (its own
    /// connections; nothing shared in memory with [`Harness::store`]).
    async fn replica(&self) -> Box<dyn Store>;
}

/// Expands to one `#[tokio::test]` per conformance case. `$make` is an async function
/// returning `Option<H>` where `H:` [`Harness`]: `None` when the backend cannot run here
/// (the function has said why, and fails under `CI=true`).
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!(@cases $make;
            tenants_and_tokens, tenant_isolation, approvals_and_states, catalog_replacement,
            host_signing_and_sequences, storage_probe, state_history_records_changes_only,
            report_on_kept_carries_forward_or_writes_nothing, enroll_token_limits_expiry_and_revocation, enroll_token_into_a_removed_group,
            operator_token_expiry_and_revocation, removed_host_credential_is_remembered,
            tenant_removal_refused_while_it_has_hosts, host_quota_refuses_above_its_limit,
            operator_log_is_scoped_and_filtered, approval_and_its_log_entry_commit_together,
            refused_changes_leave_no_log_entry, repair_requests, group_policies,
            rings_halts_and_waves, payload_evictions, group_rules_and_memberships,
            notification_outbox, console_sessions, fleet_views, fleet_marks, fleet_summaries,
            baseline_reports,
            mail_verdicts, scan_findings, facts_blobs, catalog_trust, director_certificate,
            mirror_progress_with_the_catalog, mirror_catalog_from_the_store,
            push_generations_rise_and_never_fall);
        $crate::conformance_tests!(@replicas $make;
            replicas_approve_and_check_in_at_once, replicas_accept_each_sequence_once,
            replicas_record_each_state_change_once, replicas_share_one_host_quota,
            replicas_number_log_entries_uniquely, replicas_take_a_lease_once,
            replicas_share_facts_blobs, replicas_share_one_director_certificate,
            replicas_hear_each_others_push_raises);
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(harness) = $make().await else { return };
                $crate::conformance::case::$case($crate::conformance::Harness::store(&harness))
                    .await;
            }
        )*
    };
    (@replicas $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(harness) = $make().await else { return };
                $crate::conformance::case::$case(&harness).await;
            }
        )*
    };
}

/// The named cases; each starts from an empty store and runs the steps it needs.
pub mod case {
    use crate::Store;

    /// Issue 12, point 5: push generations rise by one or to the floor given, never fall.
    pub async fn push_generations_rise_and_never_fall(s: &dyn Store) {
        super::push::push_generations_rise_and_never_fall(s).await;
    }
    /// Issue 14, point 4: the milter's verdicts, per tenant.
    pub async fn mail_verdicts(s: &dyn Store) {
        super::mail_verdicts(s).await;
    }
    /// Issue 14, point 5: the folder scan's findings, per tenant, with the host's name.
    pub async fn scan_findings(s: &dyn Store) {
        super::scan_findings(s).await;
    }
    /// Issue 13, point 1: baseline reports and drift history.
    pub async fn baseline_reports(s: &dyn Store) {
        super::baseline_reports(s).await;
    }
    /// Issue 11, point 1: the fleet read in one call and the stored evaluations.
    pub async fn fleet_views(s: &dyn Store) {
        super::fleet_views(s).await;
    }
    /// Issue 11: the marks a check-in keeps its evaluation with, and the fleet in pages.
    pub async fn fleet_marks(s: &dyn Store) {
        super::fleet_marks(s).await;
    }
    /// Issue 11, point 1: the fleet's kept summaries in pages, as the console counts.
    pub async fn fleet_summaries(s: &dyn Store) {
        super::fleet_summaries(s).await;
    }

    /// Tenants, operator tokens and the first provider admin.
    pub async fn tenants_and_tokens(s: &dyn Store) {
        super::tenants_and_tokens(s).await;
    }
    /// Groups, hosts and tokens stay in their tenant.
    pub async fn tenant_isolation(s: &dyn Store) {
        super::tenants_and_tokens(s).await;
        super::tenant_isolation(s).await;
    }
    /// The pinned root and the trusted catalog state (issue 12, point 1).
    pub async fn catalog_trust(s: &dyn Store) {
        super::catalog_trust(s).await;
    }
    /// The director key's certificate, with its log entry, versions only rising (issue
    /// 12, point 1).
    pub async fn director_certificate(s: &dyn Store) {
        super::director_certificate(s).await;
    }
    /// The scheduled mirror's progress, kept alone or with the catalog a run made, in one
    /// transaction (issue 12, point 1).
    pub async fn mirror_progress_with_the_catalog(s: &dyn Store) {
        super::mirror_progress_with_the_catalog(s).await;
    }
    /// The whole stored catalog metadata, which a mirror run signs onto, and its catalog
    /// taken in only onto the catalog it was built from (issue 12, point 1).
    pub async fn mirror_catalog_from_the_store(s: &dyn Store) {
        super::mirror_catalog_from_the_store(s).await;
    }
    /// Facts stored once per distinct content (issue 12, point 7).
    pub async fn facts_blobs(s: &dyn Store) {
        super::tenants_and_tokens(s).await;
        super::tenant_isolation(s).await;
        super::facts_blobs(s).await;
    }
    /// Decisions, inventories and reported states.
    pub async fn approvals_and_states(s: &dyn Store) {
        super::tenants_and_tokens(s).await;
        super::tenant_isolation(s).await;
        super::approvals_and_states(s).await;
    }
    /// The catalog is replaced as a whole.
    pub async fn catalog_replacement(s: &dyn Store) {
        super::catalog_replacement(s).await;
    }
    /// Host keys, replay-proof sequence numbers, agent errors (finding 8/13, issue 8).
    pub async fn host_signing_and_sequences(s: &dyn Store) {
        super::tenants_and_tokens(s).await;
        super::host_signing_and_sequences(s).await;
    }
    /// The health probe commits and changes nothing anyone reads (finding 11, issue 8).
    pub async fn storage_probe(s: &dyn Store) {
        super::tenants_and_tokens(s).await;
        super::storage_probe(s).await;
    }
    /// Issue 10, point 1.
    pub async fn state_history_records_changes_only(s: &dyn Store) {
        super::state_history_records_changes_only(s).await;
    }
    /// Issue 10, point 8.
    pub async fn report_on_kept_carries_forward_or_writes_nothing(s: &dyn Store) {
        super::report_on_kept_carries_forward_or_writes_nothing(s).await;
    }
    /// Finding 3 (issue 8).
    pub async fn enroll_token_limits_expiry_and_revocation(s: &dyn Store) {
        super::enroll_token_limits_expiry_and_revocation(s).await;
    }
    /// Finding 3 (issue 8).
    pub async fn enroll_token_into_a_removed_group(s: &dyn Store) {
        super::enroll_token_into_a_removed_group(s).await;
    }
    /// Finding 3 (issue 8).
    pub async fn operator_token_expiry_and_revocation(s: &dyn Store) {
        super::operator_token_expiry_and_revocation(s).await;
    }
    /// Finding 3 (issue 8).
    pub async fn removed_host_credential_is_remembered(s: &dyn Store) {
        super::removed_host_credential_is_remembered(s).await;
    }
    /// Finding 3 (issue 8).
    pub async fn tenant_removal_refused_while_it_has_hosts(s: &dyn Store) {
        super::tenant_removal_refused_while_it_has_hosts(s).await;
    }
    /// Finding 4 (issue 8).
    pub async fn host_quota_refuses_above_its_limit(s: &dyn Store) {
        super::host_quota_refuses_above_its_limit(s).await;
    }
    /// Finding 10 (issue 8).
    pub async fn operator_log_is_scoped_and_filtered(s: &dyn Store) {
        super::operator_log_is_scoped_and_filtered(s).await;
    }
    /// Finding 10 (issue 8).
    pub async fn approval_and_its_log_entry_commit_together(s: &dyn Store) {
        super::approval_and_its_log_entry_commit_together(s).await;
    }
    /// Finding 10 (issue 8).
    pub async fn refused_changes_leave_no_log_entry(s: &dyn Store) {
        super::refused_changes_leave_no_log_entry(s).await;
    }
    /// Issue 9, point 4.
    pub async fn repair_requests(s: &dyn Store) {
        super::repair_requests(s).await;
    }
    /// Issue 10, point 5.
    pub async fn group_policies(s: &dyn Store) {
        super::group_policies(s).await;
    }
    /// Issue 10, points 2 and 3.
    pub async fn rings_halts_and_waves(s: &dyn Store) {
        super::rings_halts_and_waves(s).await;
    }
    /// Issue 10, point 7.
    pub async fn payload_evictions(s: &dyn Store) {
        super::payload_evictions(s).await;
    }
    /// Issue 10, point 2.
    pub async fn group_rules_and_memberships(s: &dyn Store) {
        super::group_rules_and_memberships(s).await;
    }
    /// Issue 11, point 5.
    pub async fn notification_outbox(s: &dyn Store) {
        super::notification_outbox(s).await;
    }
    /// Issue 11, point 1.
    pub async fn console_sessions(s: &dyn Store) {
        super::console_sessions(s).await;
    }

    pub use super::push::replicas_hear_each_others_push_raises;
    pub use super::replicas::{
        replicas_accept_each_sequence_once, replicas_approve_and_check_in_at_once,
        replicas_number_log_entries_uniquely, replicas_record_each_state_change_once,
        replicas_share_facts_blobs, replicas_share_one_director_certificate,
        replicas_share_one_host_quota, replicas_take_a_lease_once,
    };
}

async fn tenants_and_tokens(store: &dyn Store) {
    let now = ts("2026-11-26T10:00:00Z");
    assert!(
        !store.has_provider_admin().await.unwrap(),
        "a new store has no admin"
    );
    for t in ["acme", "globex"] {
        store
            .create_tenant(
                &Tenant {
                    id: id(t),
                    name: t.to_uppercase(),
                    patch_day: PatchDayConfig::default(),
                    max_hosts: None,
                },
                now,
            )
            .await
            .unwrap();
    }
    let dup = store
        .create_tenant(
            &Tenant {
                id: id("acme"),
                name: "x".into(),
                patch_day: PatchDayConfig::default(),
                max_hosts: None,
            },
            now,
        )
        .await;
    assert!(
        matches!(dup, Err(StoreError::Conflict(_))),
        "duplicate tenant must conflict: {dup:?}"
    );
    let names: Vec<String> = store
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id.to_string())
        .collect();
    assert_eq!(names, ["acme", "globex"]);
    assert!(matches!(
        store.tenant(&id("nope")).await,
        Err(StoreError::NotFound(_))
    ));

    let tok = TokenRecord {
        hash: hash_secret("s3cret"),
        name: "root".into(),
        role: Role::ProviderAdmin,
        tenant: None,
        created_at: now,
    };
    store.put_token(&tok).await.unwrap();
    assert!(store.has_provider_admin().await.unwrap());
    assert_eq!(
        store.token_by_hash(&hash_secret("s3cret")).await.unwrap(),
        Some(tok)
    );
    assert_eq!(
        store.token_by_hash(&hash_secret("other")).await.unwrap(),
        None
    );

    let acme = store.tenant(&id("acme")).await.unwrap();
    acme.add_enroll_token(&hash_secret("enrol-acme"), now)
        .await
        .unwrap();
    assert_eq!(
        store
            .enroll_token_tenant(&hash_secret("enrol-acme"))
            .await
            .unwrap(),
        Some(id("acme"))
    );
    assert_eq!(
        store
            .enroll_token_tenant(&hash_secret("enrol-x"))
            .await
            .unwrap(),
        None
    );

    let pd = PatchDayConfig {
        week: "last".into(),
        weekday: "friday".into(),
        time: "22:00".into(),
        time_zone: "Europe/Berlin".into(),
    };
    acme.set_patch_day(&pd).await.unwrap();
    assert_eq!(acme.get().await.unwrap().patch_day, pd);
}

async fn tenant_isolation(store: &dyn Store) {
    let now = ts("2026-11-26T10:00:00Z");
    let acme = store.tenant(&id("acme")).await.unwrap();
    let globex = store.tenant(&id("globex")).await.unwrap();
    acme.create_group(&Group {
        id: id("web"),
        name: "Web".into(),
    })
    .await
    .unwrap();
    globex
        .create_group(&Group {
            id: id("web"),
            name: "G-Web".into(),
        })
        .await
        .unwrap();
    assert!(matches!(
        acme.create_group(&Group {
            id: id("web"),
            name: "again".into()
        })
        .await,
        Err(StoreError::Conflict(_))
    ));
    acme.create_host(&id("h1"), "alpha", &hash_secret("cred-h1"), now)
        .await
        .unwrap();
    globex
        .create_host(&id("g1"), "gamma", &hash_secret("cred-g1"), now)
        .await
        .unwrap();

    assert_eq!(
        store
            .host_by_credential(&hash_secret("cred-h1"))
            .await
            .unwrap(),
        Some((id("acme"), id("h1")))
    );
    // A host of one tenant is invisible through another tenant's handle.
    assert!(matches!(
        globex.host(&id("h1")).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        globex.set_host_groups(&id("h1"), &[id("web")]).await,
        Err(StoreError::NotFound(_))
    ));
    let r = globex
        .save_inventory(&id("h1"), &Inventory::default(), now)
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    assert_eq!(globex.list_hosts().await.unwrap().len(), 1);
    // Groups must exist in the host's own tenant.
    assert!(matches!(
        acme.set_host_groups(&id("h1"), &[id("db")]).await,
        Err(StoreError::NotFound(_))
    ));
    acme.set_host_groups(&id("h1"), &[id("web")]).await.unwrap();
    let h = acme.host(&id("h1")).await.unwrap();
    assert_eq!(h.groups, vec![id::<GroupId>("web")]);
    assert_eq!(h.last_seen, None);

    let inv = Inventory {
        hostname: "alpha".into(),
        architecture: "amd64".into(),
        packages: vec![InstalledPackage {
            name: "libfoo1".into(),
            version: "1.0-1".into(),
            architecture: "amd64".into(),
            source: "foo".into(),
            source_version: "1.0-1".into(),
        }],
        ..Default::default()
    };
    let later = ts("2026-11-26T11:00:00Z");
    acme.save_inventory(&id("h1"), &inv, later).await.unwrap();
    assert_eq!(acme.inventory(&id("h1")).await.unwrap(), Some(inv.clone()));
    assert_eq!(acme.host(&id("h1")).await.unwrap().last_seen, Some(later));
    // The same inventory again moves only the time; a changed one replaces it.
    let again = ts("2026-11-26T12:00:00Z");
    acme.save_inventory(&id("h1"), &inv, again).await.unwrap();
    assert_eq!(acme.host(&id("h1")).await.unwrap().last_seen, Some(again));
    assert_eq!(acme.inventory(&id("h1")).await.unwrap(), Some(inv.clone()));
    let mut changed = inv.clone();
    changed.packages[0].version = "1.0-2".into();
    acme.save_inventory(&id("h1"), &changed, again)
        .await
        .unwrap();
    assert_eq!(acme.inventory(&id("h1")).await.unwrap(), Some(changed));
    acme.save_inventory(&id("h1"), &inv, again).await.unwrap();
    assert_eq!(globex.inventory(&id("g1")).await.unwrap(), None);

    assert_eq!(acme.facts(&id("h1")).await.unwrap(), None);
    let facts = |sha: &str, parts: &[(&str, &str)], at: Timestamp| crate::StoredFacts {
        sha256: sha.into(),
        parts: parts
            .iter()
            .map(|(p, d)| (p.to_string(), d.to_string()))
            .collect(),
        at,
    };
    let f = facts("whole-1", &[("", "doc-1")], later);
    acme.save_facts(&id("h1"), &f, &[("doc-1".into(), b"alpha".to_vec())])
        .await
        .unwrap();
    assert_eq!(acme.facts(&id("h1")).await.unwrap(), Some(f.clone()));
    assert!(matches!(
        globex.save_facts(&id("h1"), &f, &[]).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        globex.facts(&id("h1")).await,
        Err(StoreError::NotFound(_))
    ));
    // Another tenant's blobs are not this tenant's.
    assert_eq!(
        globex.missing_facts_blobs(&["doc-1".into()]).await.unwrap(),
        vec!["doc-1".to_string()]
    );
    assert!(globex
        .facts_blobs(&["doc-1".into()])
        .await
        .unwrap()
        .is_empty());
}

/// Issue 12, point 7: facts stored once per distinct content, shared between the hosts
/// of one tenant, refused when a part names a blob the tenant lacks, swept when no host
/// names it any more.
async fn facts_blobs(store: &dyn Store) {
    let acme = store.tenant(&id("acme")).await.unwrap();
    let now = ts("2026-11-26T11:00:00Z");
    let facts = |sha: &str, parts: &[(&str, &str)]| crate::StoredFacts {
        sha256: sha.into(),
        parts: parts
            .iter()
            .map(|(p, d)| (p.to_string(), d.to_string()))
            .collect(),
        at: now,
    };
    let blob = |d: &str, b: &str| (d.to_string(), b.as_bytes().to_vec());
    let digests = |v: &[&str]| v.iter().map(|d| d.to_string()).collect::<Vec<_>>();
    acme.create_host(&id("h2"), "beta", &crate::hash_secret("cred-h2"), now)
        .await
        .unwrap();
    // h1: its document and the shared suite.
    let h1 = facts("w1", &[("", "doc-h1"), ("suite:bookworm", "suite-a")]);
    acme.save_facts(
        &id("h1"),
        &h1,
        &[blob("doc-h1", "one"), blob("suite-a", "A")],
    )
    .await
    .unwrap();
    assert_eq!(
        acme.missing_facts_blobs(&digests(&["doc-2", "suite-a"]))
            .await
            .unwrap(),
        digests(&["doc-2"])
    );
    // h2 names the suite without sending it again.
    let h2 = facts("w2", &[("", "doc-2"), ("suite:bookworm", "suite-a")]);
    acme.save_facts(&id("h2"), &h2, &[blob("doc-2", "two")])
        .await
        .unwrap();
    let mut all = acme.all_facts().await.unwrap();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(all, vec![(id("h1"), h1.clone()), (id("h2"), h2.clone())]);
    let mut got = acme
        .facts_blobs(&digests(&["suite-a", "doc-h1", "nope"]))
        .await
        .unwrap();
    got.sort();
    assert_eq!(got, vec![blob("doc-h1", "one"), blob("suite-a", "A")]);
    // A part naming a blob nobody sent is refused, and nothing changes.
    let bad = facts("w3", &[("", "doc-3"), ("suite:bookworm", "suite-b")]);
    assert!(matches!(
        acme.save_facts(&id("h1"), &bad, &[blob("doc-3", "three")])
            .await,
        Err(StoreError::Refused(_))
    ));
    assert_eq!(acme.facts(&id("h1")).await.unwrap(), Some(h1.clone()));
    assert_eq!(
        acme.missing_facts_blobs(&digests(&["doc-3"]))
            .await
            .unwrap(),
        digests(&["doc-3"]),
        "a refused save stores no blob"
    );
    // h1 moves to a new suite: the old one stays while h2 names it.
    let h1b = facts("w1b", &[("", "doc-h1"), ("suite:bookworm", "suite-b")]);
    acme.save_facts(&id("h1"), &h1b, &[blob("suite-b", "B")])
        .await
        .unwrap();
    assert!(acme
        .missing_facts_blobs(&digests(&["suite-a", "suite-b", "doc-h1"]))
        .await
        .unwrap()
        .is_empty());
    // h2 moves too: suite-a is named by nobody and goes; doc-2 is replaced and goes.
    let h2b = facts("w2b", &[("", "doc-2b"), ("suite:bookworm", "suite-b")]);
    acme.save_facts(&id("h2"), &h2b, &[blob("doc-2b", "two b")])
        .await
        .unwrap();
    assert_eq!(
        acme.missing_facts_blobs(&digests(&["suite-a", "doc-2", "suite-b", "doc-2b"]))
            .await
            .unwrap(),
        digests(&["suite-a", "doc-2"])
    );
    // A removed host's blobs go with it, the shared ones stay.
    acme.remove_host(
        &id("h2"),
        now,
        &log_entry(Some("acme"), "host.remove", "2026-11-26T11:00:00Z"),
    )
    .await
    .unwrap();
    assert_eq!(
        acme.missing_facts_blobs(&digests(&["doc-2b", "suite-b", "doc-h1"]))
            .await
            .unwrap(),
        digests(&["doc-2b"])
    );
    assert_eq!(acme.all_facts().await.unwrap(), vec![(id("h1"), h1b)]);
}

async fn approvals_and_states(store: &dyn Store) {
    let acme = store.tenant(&id("acme")).await.unwrap();
    let globex = store.tenant(&id("globex")).await.unwrap();
    let a = Approval {
        update: id("PD-1"),
        group: id("web"),
        decision: Decision::Approve,
        deadline: Some(ts("2026-12-01T00:00:00Z")),
        decided_at: ts("2026-11-26T12:00:00Z"),
        decided_by: "root".into(),
        reason: None,
        emergency: false,
        remove: false,
    };
    acme.put_approval(&a).await.unwrap();
    assert_eq!(acme.list_approvals().await.unwrap(), vec![a.clone()]);
    // Issue 9, point 6: the decisions about some updates only.
    assert_eq!(
        acme.list_approvals_for(&[a.update.clone(), id("PD-NONE")])
            .await
            .unwrap(),
        vec![a.clone()]
    );
    assert!(acme
        .list_approvals_for(&[id("PD-NONE")])
        .await
        .unwrap()
        .is_empty());
    assert!(globex
        .list_approvals_for(std::slice::from_ref(&a.update))
        .await
        .unwrap()
        .is_empty());
    assert!(
        globex.list_approvals().await.unwrap().is_empty(),
        "approvals leak across tenants"
    );
    // A new decision for the same (update, group) replaces the old one, with its
    // reason (issue 9, point 7).
    let d = Approval {
        decision: Decision::Decline,
        deadline: None,
        reason: Some("the vendor's build replaces it".into()),
        ..a
    };
    acme.put_approval(&d).await.unwrap();
    assert_eq!(acme.list_approvals().await.unwrap(), vec![d.clone()]);
    // Issue 10, point 3: a decline with removal keeps its flag, and a later decision
    // without it clears it.
    let r = Approval {
        remove: true,
        ..d.clone()
    };
    acme.put_approval(&r).await.unwrap();
    assert_eq!(acme.list_approvals().await.unwrap(), vec![r.clone()]);
    assert_eq!(
        acme.list_approvals_for(std::slice::from_ref(&r.update))
            .await
            .unwrap(),
        vec![r]
    );
    acme.put_approval(&d).await.unwrap();
    assert_eq!(acme.list_approvals().await.unwrap(), vec![d]);
    // Approving for a group that does not exist in this tenant fails.
    let missing_group = Approval {
        update: id("PD-1"),
        group: id("nogroup"),
        decision: Decision::Approve,
        deadline: None,
        decided_at: ts("2026-11-26T12:00:00Z"),
        decided_by: "root".into(),
        reason: None,
        emergency: false,
        remove: false,
    };
    assert!(matches!(
        acme.put_approval(&missing_group).await,
        Err(StoreError::NotFound(_))
    ));

    let t1 = ts("2026-11-26T13:00:00Z");
    let s1 = StateReport {
        update: id("PD-1"),
        state: UpdateState::Failed,
        message: Some("dpkg: error".into()),
    };
    acme.put_states(&id("h1"), std::slice::from_ref(&s1), t1)
        .await
        .unwrap();
    let t2 = ts("2026-11-26T14:00:00Z");
    let s2 = StateReport {
        update: id("PD-1"),
        state: UpdateState::Installed,
        message: None,
    };
    acme.put_states(&id("h1"), std::slice::from_ref(&s2), t2)
        .await
        .unwrap();
    let st = acme.states(&id("h1")).await.unwrap();
    assert_eq!(st.len(), 1, "one latest state per update");
    assert_eq!(st[0].report, s2);
    assert_eq!(st[0].at, t2);
    assert!(matches!(
        globex.put_states(&id("h1"), &[s1], t1).await,
        Err(StoreError::NotFound(_))
    ));
    let _: HostId = id("h1");
}

async fn catalog_replacement(store: &dyn Store) {
    assert_eq!(
        store.catalog_status().await.unwrap(),
        CatalogStatus::default()
    );
    let doc = UpdateDocument {
        id: id::<UpdateId>("PD-1"),
        title: "foo security update".into(),
        product: "debian-12".into(),
        classification: Classification::Security,
        severity: Severity::Important,
        cves: vec!["CVE-2026-0001".into()],
        supersedes: vec![],
        release: Release::Emergency {
            reason: "worm".into(),
        },
        payloads: vec![PayloadRef {
            target: "libfoo1_1.0-2_amd64.deb".into(),
            kind: PayloadKind::Deb,
            package: "libfoo1".into(),
            version: "1.0-2".into(),
            architecture: "amd64".into(),
            source: "foo".into(),
            source_version: "1.0-2".into(),
        }],
        description: String::new(),
        tenants: vec![],
        upstream: None,
    };
    let target = CatalogTarget {
        name: "libfoo1_1.0-2_amd64.deb".into(),
        length: 10,
        sha256: "ab".repeat(32),
        release_counter: 7,
    };
    let rec = CatalogRecord {
        status: CatalogStatus {
            root_version: 1,
            targets_version: 2,
            snapshot_version: 2,
            timestamp_version: 2,
            updates: 1,
            payloads: 1,
            ..Default::default()
        },
        updates: vec![doc.clone()],
        targets: vec![target.clone()],
        metadata: vec![("timestamp.json".into(), b"{}".to_vec())],
        trusted: vec![
            ("root.json".into(), b"root-1".to_vec()),
            ("timestamp.json".into(), b"ts-2".to_vec()),
        ],
        mirror_progress: None,
        based_on_snapshot: None,
    };
    assert!(store.trusted_metadata().await.unwrap().is_empty());
    store.replace_catalog(&rec).await.unwrap();
    assert_eq!(store.trusted_metadata().await.unwrap(), rec.trusted);
    assert_eq!(store.catalog_status().await.unwrap(), rec.status);
    assert_eq!(store.catalog_updates().await.unwrap(), vec![doc]);
    assert_eq!(
        store
            .catalog_target("libfoo1_1.0-2_amd64.deb")
            .await
            .unwrap(),
        Some(target.clone())
    );
    assert_eq!(
        store
            .catalog_targets(&["libfoo1_1.0-2_amd64.deb".into(), "not-listed.deb".into()])
            .await
            .unwrap(),
        vec![target]
    );
    assert!(store.catalog_targets(&[]).await.unwrap().is_empty());
    assert_eq!(
        store.catalog_metadata("timestamp.json").await.unwrap(),
        Some(b"{}".to_vec())
    );
    // A timestamp refresh replaces one file and the status, nothing else.
    let mut refreshed = rec.status.clone();
    refreshed.timestamp_version = 3;
    store
        .refresh_catalog_metadata(
            &refreshed,
            &[("timestamp.json".into(), b"{\"v\":3}".to_vec())],
            &[("timestamp.json".into(), b"ts-3".to_vec())],
        )
        .await
        .unwrap();
    assert_eq!(store.catalog_status().await.unwrap(), refreshed);
    assert_eq!(
        store.trusted_metadata().await.unwrap(),
        vec![
            ("root.json".into(), b"root-1".to_vec()),
            ("timestamp.json".into(), b"ts-3".to_vec())
        ],
        "the refresher's timestamp is trusted with the served one"
    );
    // A push verified against an older state than the one committed is refused.
    assert!(matches!(
        store.replace_catalog(&rec).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.catalog_status().await.unwrap(), refreshed);
    assert_eq!(
        store.catalog_metadata("timestamp.json").await.unwrap(),
        Some(b"{\"v\":3}".to_vec())
    );
    assert_eq!(store.catalog_updates().await.unwrap().len(), 1);
    // Replacing drops what the new catalog no longer lists.
    let empty = CatalogRecord {
        status: CatalogStatus {
            root_version: 1,
            targets_version: 3,
            snapshot_version: 3,
            timestamp_version: 3,
            updates: 0,
            payloads: 0,
            ..Default::default()
        },
        ..Default::default()
    };
    store.replace_catalog(&empty).await.unwrap();
    assert!(store.catalog_updates().await.unwrap().is_empty());
    assert_eq!(
        store.catalog_metadata("timestamp.json").await.unwrap(),
        None
    );
    assert!(store.trusted_metadata().await.unwrap().is_empty());
    let _: TenantId = id("acme");
}

/// Issue 12, point 1: the pinned root and an adopted file-kept trusted state.
async fn catalog_trust(store: &dyn Store) {
    assert_eq!(store.pinned_root().await.unwrap(), None);
    store.pin_root(b"root-a").await.unwrap();
    store.pin_root(b"root-a").await.unwrap();
    assert!(matches!(
        store.pin_root(b"root-b").await,
        Err(StoreError::Refused(_))
    ));
    assert_eq!(store.pinned_root().await.unwrap(), Some(b"root-a".to_vec()));
    let files = vec![("timestamp.json".to_string(), b"ts-9".to_vec())];
    assert!(store.adopt_trusted_metadata(&files).await.unwrap());
    assert_eq!(store.trusted_metadata().await.unwrap(), files);
    // Only once: a store that holds a trusted state keeps it.
    let other = vec![("timestamp.json".to_string(), b"ts-1".to_vec())];
    assert!(!store.adopt_trusted_metadata(&other).await.unwrap());
    assert_eq!(store.trusted_metadata().await.unwrap(), files);
}

/// Issue 12, point 1: the director certificate in the store, rising versions only, each
/// with its operator log entry in the same transaction.
async fn director_certificate(store: &dyn Store) {
    use crate::{DirectorCertificate, LogScope};
    let cert = |version: u64, keyid: &str, bytes: &str| DirectorCertificate {
        version,
        keyid: keyid.into(),
        bytes: bytes.as_bytes().to_vec(),
    };
    let entries = || async {
        store
            .list_log(&LogScope::Everything, None, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action.starts_with("director."))
            .count()
    };
    assert_eq!(store.director_certificate().await.unwrap(), None);
    let v1 = cert(1, "key-1", "{\"signed\":1}");
    let log = log_entry(None, "director.certificate", "2026-12-02T10:00:00Z");
    assert!(store.put_director_certificate(&v1, &log).await.unwrap());
    assert_eq!(
        store.director_certificate().await.unwrap(),
        Some(v1.clone())
    );
    assert_eq!(entries().await, 1, "the install is logged with it");
    // The same certificate again (a retried request, a second replica moving its file
    // in): nothing changes, nothing is logged.
    assert!(!store.put_director_certificate(&v1, &log).await.unwrap());
    assert_eq!(entries().await, 1);
    // Another certificate at the same version, or an older one: refused, nothing logged.
    for stale in [cert(1, "key-x", "{\"other\":1}"), cert(0, "key-0", "{}")] {
        assert!(
            matches!(
                store.put_director_certificate(&stale, &log).await,
                Err(StoreError::Conflict(_))
            ),
            "v{} after v1",
            stale.version
        );
    }
    assert_eq!(store.director_certificate().await.unwrap(), Some(v1));
    assert_eq!(entries().await, 1);
    let v2 = cert(2, "key-2", "{\"signed\":2}");
    assert!(store.put_director_certificate(&v2, &log).await.unwrap());
    assert_eq!(store.director_certificate().await.unwrap(), Some(v2));
    assert_eq!(entries().await, 2);
}

/// Issue 12, point 1: the mirror's progress, saved alone during a run and with the
/// catalog the run made in the catalog's transaction; a push leaves it as it is, and a
/// refused catalog does not move it.
async fn mirror_progress_with_the_catalog(store: &dyn Store) {
    assert_eq!(store.mirror_progress().await.unwrap(), None);
    store.put_mirror_progress(b"{\"run\":1}").await.unwrap();
    assert_eq!(
        store.mirror_progress().await.unwrap(),
        Some(b"{\"run\":1}".to_vec())
    );
    store.put_mirror_progress(b"{\"run\":2}").await.unwrap();
    assert_eq!(
        store.mirror_progress().await.unwrap(),
        Some(b"{\"run\":2}".to_vec())
    );
    let catalog = |timestamp_version: u64, progress: Option<&[u8]>| CatalogRecord {
        status: CatalogStatus {
            root_version: 1,
            targets_version: timestamp_version,
            snapshot_version: timestamp_version,
            timestamp_version,
            ..Default::default()
        },
        mirror_progress: progress.map(<[u8]>::to_vec),
        ..Default::default()
    };
    store
        .replace_catalog(&catalog(5, Some(b"{\"run\":3}")))
        .await
        .unwrap();
    assert_eq!(
        store.mirror_progress().await.unwrap(),
        Some(b"{\"run\":3}".to_vec()),
        "the run's catalog and its progress commit together"
    );
    store.replace_catalog(&catalog(6, None)).await.unwrap();
    assert_eq!(
        store.mirror_progress().await.unwrap(),
        Some(b"{\"run\":3}".to_vec()),
        "a push leaves the mirror's progress alone"
    );
    assert!(matches!(
        store
            .replace_catalog(&catalog(4, Some(b"{\"run\":4}")))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.mirror_progress().await.unwrap(),
        Some(b"{\"run\":3}".to_vec()),
        "a refused catalog takes its progress with it"
    );
}

/// Issue 12, point 1: the scheduled mirror builds its working catalog from the stored
/// metadata (every file, ordered by name, replaced whole with the catalog) and takes its
/// catalog in only onto the snapshot it was built from: a push (or another replica's
/// run) that came first makes it a `Conflict` that changes nothing, progress included.
async fn mirror_catalog_from_the_store(store: &dyn Store) {
    assert!(store.catalog_metadata_files().await.unwrap().is_empty());
    let catalog = |version: u64, files: &[&str], based_on: Option<u64>| CatalogRecord {
        status: CatalogStatus {
            root_version: 1,
            targets_version: version,
            snapshot_version: version,
            timestamp_version: version,
            ..Default::default()
        },
        metadata: files
            .iter()
            .map(|f| (f.to_string(), format!("{f}@{version}").into_bytes()))
            .collect(),
        mirror_progress: based_on.map(|b| format!("{{\"onto\":{b}}}").into_bytes()),
        based_on_snapshot: based_on,
        ..Default::default()
    };
    // Onto no catalog at all: refused (a run needs a pushed catalog to sign onto).
    assert!(matches!(
        store
            .replace_catalog(&catalog(1, &["timestamp.json"], Some(0)))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store.catalog_metadata_files().await.unwrap().is_empty());
    let pushed = [
        "1.root.json",
        "2.root.json",
        "root.json",
        "3.targets.json",
        "3.snapshot.json",
        "timestamp.json",
    ];
    store
        .replace_catalog(&catalog(3, &pushed, None))
        .await
        .unwrap();
    let files = store.catalog_metadata_files().await.unwrap();
    let mut names: Vec<&str> = pushed.to_vec();
    names.sort_unstable();
    assert_eq!(
        files.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        names,
        "every metadata file, ordered by name"
    );
    assert!(files.iter().all(|(n, b)| b == format!("{n}@3").as_bytes()));
    // A run built on snapshot 3 is taken in, with its progress.
    let mirrored = [
        "1.root.json",
        "2.root.json",
        "root.json",
        "3.targets.json",
        "4.mirror.json",
        "4.snapshot.json",
        "timestamp.json",
    ];
    store
        .replace_catalog(&catalog(4, &mirrored, Some(3)))
        .await
        .unwrap();
    assert_eq!(store.catalog_status().await.unwrap().snapshot_version, 4);
    assert_eq!(
        store.mirror_progress().await.unwrap(),
        Some(b"{\"onto\":3}".to_vec())
    );
    let files = store.catalog_metadata_files().await.unwrap();
    assert_eq!(files.len(), mirrored.len(), "replaced whole: {files:?}");
    assert!(!files.iter().any(|(n, _)| n == "3.snapshot.json"));
    // Another run built on snapshot 3 (a replica that read the store before that
    // intake): refused, whatever its versions, and nothing of it is stored.
    for version in [4, 5] {
        assert!(
            matches!(
                store
                    .replace_catalog(&catalog(version, &mirrored, Some(3)))
                    .await,
                Err(StoreError::Conflict(_))
            ),
            "a run onto snapshot 3 after snapshot 4 was stored (version {version})"
        );
    }
    assert_eq!(store.catalog_status().await.unwrap().snapshot_version, 4);
    assert_eq!(
        store.mirror_progress().await.unwrap(),
        Some(b"{\"onto\":3}".to_vec())
    );
    assert_eq!(
        store.catalog_metadata("4.mirror.json").await.unwrap(),
        Some(b"4.mirror.json@4".to_vec())
    );
    // A push needs no base.
    store
        .replace_catalog(&catalog(6, &pushed, None))
        .await
        .unwrap();
    assert_eq!(store.catalog_status().await.unwrap().snapshot_version, 6);
}

// finding 8/13 (issue 8): host keys, replay-proof sequence numbers, agent errors.
async fn host_signing_and_sequences(store: &dyn Store) {
    use crate::{HostSigning, SequenceCheck};
    let now = ts("2026-11-27T10:00:00Z");
    let later = ts("2026-11-27T11:00:00Z");
    let acme = store.tenant(&id("acme")).await.unwrap();
    let globex = store.tenant(&id("globex")).await.unwrap();
    acme.create_host(&id("signer"), "signer", &hash_secret("cred-signer"), now)
        .await
        .unwrap();
    assert_eq!(
        acme.host_signing(&id("signer")).await.unwrap(),
        HostSigning::default(),
        "a new host has no key, no sequence and no error"
    );
    let key = "ab".repeat(32);
    acme.set_host_public_key(&id("signer"), &key).await.unwrap();
    // The key is registered once: a stolen credential cannot swap it later.
    assert!(matches!(
        acme.set_host_public_key(&id("signer"), &"cd".repeat(32))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        globex.set_host_public_key(&id("signer"), &key).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        acme.host_signing(&id("signer")).await.unwrap().public_key,
        Some(key.clone())
    );

    // Sequence numbers only go up; an equal or lower one is a replay and changes nothing.
    assert_eq!(
        acme.advance_sequence(&id("signer"), 5, now).await.unwrap(),
        SequenceCheck::Accepted
    );
    for replay in [5, 4, 0] {
        assert_eq!(
            acme.advance_sequence(&id("signer"), replay, later)
                .await
                .unwrap(),
            SequenceCheck::Replayed { last: 5 }
        );
    }
    assert_eq!(
        acme.advance_sequence(&id("signer"), u64::MAX, later)
            .await
            .unwrap(),
        SequenceCheck::Replayed { last: 5 },
        "a number the backend cannot store is refused, not wrapped"
    );
    let s = acme.host_signing(&id("signer")).await.unwrap();
    assert_eq!((s.last_sequence, s.last_signed_at), (5, Some(now)));
    assert_eq!(
        acme.advance_sequence(&id("signer"), 9, later)
            .await
            .unwrap(),
        SequenceCheck::Accepted
    );
    assert_eq!(
        acme.host_signing(&id("signer"))
            .await
            .unwrap()
            .last_sequence,
        9
    );
    assert!(matches!(
        globex.advance_sequence(&id("signer"), 10, later).await,
        Err(StoreError::NotFound(_))
    ));

    // The agent's last run error: recorded, then cleared by a successful run.
    acme.set_agent_error(&id("signer"), Some("catalog verification failed: x"), later)
        .await
        .unwrap();
    assert_eq!(
        acme.host_signing(&id("signer")).await.unwrap().agent_error,
        Some(("catalog verification failed: x".to_string(), later))
    );
    assert!(matches!(
        globex.set_agent_error(&id("signer"), None, later).await,
        Err(StoreError::NotFound(_))
    ));
    acme.set_agent_error(&id("signer"), None, later)
        .await
        .unwrap();
    assert_eq!(
        acme.host_signing(&id("signer")).await.unwrap().agent_error,
        None
    );
}

// ---- Finding 3/4/10 (issue 8): lifecycle, quotas and the operator log ----

fn log_entry(tenant: Option<&str>, action: &str, at: &str) -> LogEntry {
    LogEntry {
        seq: 0,
        at: ts(at),
        tenant: tenant.map(id),
        actor: "alice".into(),
        actor_id: "0123456789ab".into(),
        source: "192.0.2.7:5000".into(),
        action: action.into(),
        object: "thing".into(),
        detail: serde_json::json!({ "k": "v" }),
    }
}

async fn new_tenant(store: &dyn Store, t: &str) -> std::sync::Arc<dyn crate::TenantStore> {
    store
        .create_tenant(
            &Tenant {
                id: id(t),
                name: t.into(),
                patch_day: PatchDayConfig::default(),
                max_hosts: None,
            },
            ts("2026-11-26T10:00:00Z"),
        )
        .await
        .unwrap();
    store.tenant(&id(t)).await.unwrap()
}

fn enroll_token(secret: &str, max_uses: Option<u32>, expires: Option<&str>) -> NewEnrollToken {
    NewEnrollToken {
        hash: hash_secret(secret),
        name: "batch".into(),
        prefix: secret.chars().take(8).collect(),
        group: None,
        created_at: ts("2026-11-26T10:00:00Z"),
        expires_at: expires.map(ts),
        max_uses,
    }
}

async fn enroll_token_limits_expiry_and_revocation(store: &dyn Store) {
    let t = new_tenant(store, "lc-enrol").await;
    let now = ts("2026-11-26T11:00:00Z");
    let log = log_entry(
        Some("lc-enrol"),
        "enroll-token.create",
        "2026-11-26T10:00:00Z",
    );
    t.create_enroll_token(
        &enroll_token("pde_twice", Some(2), Some("2026-11-27T10:00:00Z")),
        &log,
    )
    .await
    .unwrap();
    for _ in 0..2 {
        assert_eq!(
            store
                .redeem_enroll_token(&hash_secret("pde_twice"), now)
                .await
                .unwrap(),
            EnrollGrant::Granted {
                tenant: id("lc-enrol"),
                group: None
            },
            "a token with uses left is granted"
        );
    }
    assert_eq!(
        store
            .redeem_enroll_token(&hash_secret("pde_twice"), now)
            .await
            .unwrap(),
        EnrollGrant::UsedUp { max_uses: 2 },
        "a third use of a two-use token is refused"
    );
    assert_eq!(
        store
            .redeem_enroll_token(&hash_secret("pde_twice"), ts("2026-11-27T10:00:00Z"))
            .await
            .unwrap(),
        EnrollGrant::Expired {
            at: ts("2026-11-27T10:00:00Z")
        },
        "a token is expired at its expiry time"
    );
    assert_eq!(
        store
            .redeem_enroll_token(&hash_secret("pde_nope"), now)
            .await
            .unwrap(),
        EnrollGrant::Unknown
    );

    t.create_enroll_token(&enroll_token("pde_unlimited", None, None), &log)
        .await
        .unwrap();
    for _ in 0..5 {
        assert!(matches!(
            store
                .redeem_enroll_token(&hash_secret("pde_unlimited"), now)
                .await
                .unwrap(),
            EnrollGrant::Granted { .. }
        ));
    }
    let listed = t.list_enroll_tokens().await.unwrap();
    let unlimited = listed
        .iter()
        .find(|e| e.prefix == "pde_unli")
        .expect("listed by prefix");
    assert_eq!((unlimited.uses, unlimited.max_uses), (5, None));
    assert!(
        !unlimited.id.is_empty() && !unlimited.id.contains("unlimited"),
        "ids do not reveal the secret: {unlimited:?}"
    );
    let revoked = t
        .revoke_enroll_token(&unlimited.id, now, &log)
        .await
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(now));
    assert_eq!(
        store
            .redeem_enroll_token(&hash_secret("pde_unlimited"), now)
            .await
            .unwrap(),
        EnrollGrant::Revoked { at: now }
    );
    // Another tenant cannot revoke it, nor see that it exists.
    let other = new_tenant(store, "lc-enrol-other").await;
    assert!(matches!(
        other.revoke_enroll_token(&unlimited.id, now, &log).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(other.list_enroll_tokens().await.unwrap().is_empty());
}

async fn enroll_token_into_a_removed_group(store: &dyn Store) {
    let t = new_tenant(store, "lc-group").await;
    let now = ts("2026-11-26T11:00:00Z");
    let log = log_entry(Some("lc-group"), "group.remove", "2026-11-26T10:00:00Z");
    t.create_group(&Group {
        id: id("web"),
        name: "web".into(),
    })
    .await
    .unwrap();
    let mut tok = enroll_token("pde_web", None, None);
    tok.group = Some(id("web"));
    t.create_enroll_token(&tok, &log).await.unwrap();
    assert_eq!(
        store.redeem_enroll_token(&tok.hash, now).await.unwrap(),
        EnrollGrant::Granted {
            tenant: id("lc-group"),
            group: Some(id("web"))
        }
    );
    let mut missing = enroll_token("pde_nogroup", None, None);
    missing.group = Some(id("nope"));
    assert!(
        matches!(
            t.create_enroll_token(&missing, &log).await,
            Err(StoreError::NotFound(_))
        ),
        "a token for a group that does not exist is refused"
    );
    t.remove_group(&id("web"), &log).await.unwrap();
    assert!(t.list_groups().await.unwrap().is_empty());
    assert!(matches!(
        t.remove_group(&id("web"), &log).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.redeem_enroll_token(&tok.hash, now).await.unwrap(),
        EnrollGrant::GroupRemoved { group: id("web") }
    );
}

async fn operator_token_expiry_and_revocation(store: &dyn Store) {
    new_tenant(store, "lc-tokens").await;
    let now = ts("2026-11-26T11:00:00Z");
    let log = log_entry(None, "token.create", "2026-11-26T10:00:00Z");
    let rec = TokenRecord {
        hash: hash_secret("pd_expiring"),
        name: "ci".into(),
        role: Role::ReadOnly,
        tenant: Some(id("lc-tokens")),
        created_at: now,
    };
    store
        .create_token(&rec, "pd_expir", Some(ts("2026-12-01T00:00:00Z")), &log)
        .await
        .unwrap();
    let info = store
        .token_info_by_hash(&rec.hash)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(info.expires_at, Some(ts("2026-12-01T00:00:00Z")));
    assert_eq!(
        (info.name.as_str(), info.prefix.as_str()),
        ("ci", "pd_expir")
    );
    assert_eq!(
        store.token_info(&info.id).await.unwrap().as_ref(),
        Some(&info)
    );
    let mine = store.list_tokens(Some(&id("lc-tokens"))).await.unwrap();
    assert_eq!(
        mine,
        vec![info.clone()],
        "a tenant lists its own tokens only"
    );
    let revoked = store.revoke_token(&info.id, now, &log).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(now));
    // Revoking again keeps the first revocation time.
    let again = store
        .revoke_token(&info.id, ts("2026-11-27T00:00:00Z"), &log)
        .await
        .unwrap();
    assert_eq!(again.revoked_at, Some(now));
    assert!(matches!(
        store.revoke_token("000000000000", now, &log).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn removed_host_credential_is_remembered(store: &dyn Store) {
    let t = new_tenant(store, "lc-hosts").await;
    let now = ts("2026-11-26T11:00:00Z");
    let log = log_entry(Some("lc-hosts"), "host.remove", "2026-11-26T11:00:00Z");
    let h: HostId = id("gone-1");
    t.create_host(&h, "gone-1", &hash_secret("pdh_gone"), now)
        .await
        .unwrap();
    t.put_states(
        &h,
        &[StateReport {
            update: id("PD-1"),
            state: UpdateState::Failed,
            message: None,
        }],
        now,
    )
    .await
    .unwrap();
    t.remove_host(&h, now, &log).await.unwrap();
    assert!(store
        .host_by_credential(&hash_secret("pdh_gone"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .removed_host_by_credential(&hash_secret("pdh_gone"))
            .await
            .unwrap(),
        Some(crate::RemovedHost {
            tenant: id("lc-hosts"),
            host: h.clone(),
            removed_at: now
        })
    );
    assert!(matches!(t.host(&h).await, Err(StoreError::NotFound(_))));
    // Issue 10, point 8: a server that still remembers the credential (another replica)
    // learns here that the host is gone, and refuses its signed body.
    assert!(matches!(
        t.advance_sequence(&h, 7, now).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(t.list_hosts().await.unwrap().is_empty());
    assert!(matches!(
        t.remove_host(&h, now, &log).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn tenant_removal_refused_while_it_has_hosts(store: &dyn Store) {
    let t = new_tenant(store, "lc-remove").await;
    let now = ts("2026-11-26T11:00:00Z");
    let log = log_entry(None, "tenant.remove", "2026-11-26T11:00:00Z");
    t.create_group(&Group {
        id: id("web"),
        name: "web".into(),
    })
    .await
    .unwrap();
    t.create_host(&id("h-1"), "h-1", &hash_secret("pdh_lc_remove"), now)
        .await
        .unwrap();
    t.set_host_groups(&id("h-1"), &[id("web")]).await.unwrap();
    store
        .create_token(
            &TokenRecord {
                hash: hash_secret("pd_lc_remove"),
                name: "ops".into(),
                role: Role::TenantAdmin,
                tenant: Some(id("lc-remove")),
                created_at: now,
            },
            "pd_lc_re",
            None,
            &log,
        )
        .await
        .unwrap();
    let refused = store
        .remove_tenant(&id("lc-remove"), false, now, &log)
        .await;
    assert!(
        matches!(&refused, Err(StoreError::Refused(m)) if m.contains("1 host") && m.contains("--force")),
        "removing a tenant with hosts needs --force: {refused:?}"
    );
    assert!(
        store.tenant(&id("lc-remove")).await.is_ok(),
        "nothing removed"
    );
    assert_eq!(
        store
            .remove_tenant(&id("lc-remove"), true, now, &log)
            .await
            .unwrap(),
        1
    );
    assert!(matches!(
        store.tenant(&id("lc-remove")).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store
        .token_info_by_hash(&hash_secret("pd_lc_remove"))
        .await
        .unwrap()
        .is_none());
    assert!(store
        .removed_host_by_credential(&hash_secret("pdh_lc_remove"))
        .await
        .unwrap()
        .is_some());
    let empty = new_tenant(store, "lc-empty").await;
    drop(empty);
    assert_eq!(
        store
            .remove_tenant(&id("lc-empty"), false, now, &log)
            .await
            .unwrap(),
        0,
        "a tenant without hosts is removed without --force"
    );
}

async fn host_quota_refuses_above_its_limit(store: &dyn Store) {
    let t = new_tenant(store, "lc-quota").await;
    let now = ts("2026-11-26T11:00:00Z");
    let log = log_entry(Some("lc-quota"), "tenant.set", "2026-11-26T11:00:00Z");
    t.set_max_hosts(Some(2), &log).await.unwrap();
    assert_eq!(t.get().await.unwrap().max_hosts, Some(2));
    for n in 1..=2 {
        t.create_host(
            &id(&format!("q-{n}")),
            "q",
            &hash_secret(&format!("pdh_q{n}")),
            now,
        )
        .await
        .unwrap();
    }
    // A full quota refuses the enrolment token before it takes a use.
    t.create_enroll_token(
        &enroll_token("pde_quota", Some(1), None),
        &log_entry(
            Some("lc-quota"),
            "enroll-token.create",
            "2026-11-26T11:00:00Z",
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        store
            .redeem_enroll_token(&hash_secret("pde_quota"), now)
            .await
            .unwrap(),
        EnrollGrant::QuotaFull {
            tenant: id("lc-quota"),
            max_hosts: 2
        }
    );
    assert_eq!(t.list_enroll_tokens().await.unwrap()[0].uses, 0);
    let third = t
        .create_host(&id("q-3"), "q", &hash_secret("pdh_q3"), now)
        .await;
    assert!(
        matches!(&third, Err(StoreError::Refused(m)) if m.contains("quota of 2")),
        "a third host above a quota of 2 is refused: {third:?}"
    );
    assert_eq!(t.list_hosts().await.unwrap().len(), 2);
    t.set_max_hosts(None, &log).await.unwrap();
    t.create_host(&id("q-3"), "q", &hash_secret("pdh_q3"), now)
        .await
        .unwrap();
}

async fn operator_log_is_scoped_and_filtered(store: &dyn Store) {
    let before = store
        .list_log(&crate::LogScope::Everything, None, 100_000)
        .await
        .unwrap()
        .len();
    let a = store
        .append_log(&log_entry(
            Some("lc-log-a"),
            "approval.approve",
            "2026-11-30T10:00:00Z",
        ))
        .await
        .unwrap();
    let b = store
        .append_log(&log_entry(
            Some("lc-log-b"),
            "group.create",
            "2026-11-30T11:00:00Z",
        ))
        .await
        .unwrap();
    let p = store
        .append_log(&log_entry(None, "catalog.push", "2026-11-30T12:00:00.5Z"))
        .await
        .unwrap();
    assert!(a < b && b < p, "sequence numbers increase: {a} {b} {p}");
    let only_a = store
        .list_log(&crate::LogScope::Tenant(id("lc-log-a")), None, 100)
        .await
        .unwrap();
    assert_eq!(only_a.len(), 1, "a tenant sees its own entries only");
    assert_eq!(only_a[0].seq, a);
    assert_eq!(only_a[0].actor, "alice");
    assert_eq!(only_a[0].source, "192.0.2.7:5000");
    assert_eq!(only_a[0].detail, serde_json::json!({ "k": "v" }));
    let all = store
        .list_log(&crate::LogScope::Everything, None, 100_000)
        .await
        .unwrap();
    assert_eq!(
        all.len(),
        before + 3,
        "provider scope sees provider-wide entries"
    );
    let since = store
        .list_log(
            &crate::LogScope::Everything,
            Some(ts("2026-11-30T12:00:00Z")),
            100,
        )
        .await
        .unwrap();
    assert_eq!(
        since.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![p],
        "--since compares times, not their text"
    );
    assert_eq!(
        store
            .list_log(&crate::LogScope::Everything, None, 2)
            .await
            .unwrap()
            .len(),
        2,
        "limit"
    );
}

async fn approval_and_its_log_entry_commit_together(store: &dyn Store) {
    let t = new_tenant(store, "lc-approve").await;
    let scope = crate::LogScope::Tenant(id("lc-approve"));
    let approval = |group: &str| Approval {
        update: id("PD-1"),
        group: id(group),
        decision: Decision::Approve,
        deadline: None,
        decided_at: ts("2026-11-26T12:00:00Z"),
        decided_by: "alice".into(),
        reason: None,
        emergency: false,
        remove: false,
    };
    let log = log_entry(
        Some("lc-approve"),
        "approval.approve",
        "2026-11-26T12:00:00Z",
    );
    // A decision for a group that does not exist fails, and leaves no log entry.
    let refused = t.put_approval_logged(&approval("nope"), &log).await;
    assert!(
        matches!(refused, Err(StoreError::NotFound(_))),
        "{refused:?}"
    );
    assert!(store.list_log(&scope, None, 10).await.unwrap().is_empty());
    t.create_group(&Group {
        id: id("web"),
        name: "web".into(),
    })
    .await
    .unwrap();
    t.put_approval_logged(&approval("web"), &log).await.unwrap();
    assert_eq!(t.list_approvals().await.unwrap(), vec![approval("web")]);
    let entries = store.list_log(&scope, None, 10).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].action, "approval.approve");
}

async fn refused_changes_leave_no_log_entry(store: &dyn Store) {
    let now = ts("2026-11-26T12:00:00Z");
    let t = new_tenant(store, "lc-atomic").await;
    let scope = crate::LogScope::Tenant(id("lc-atomic"));
    let log = log_entry(Some("lc-atomic"), "x", "2026-11-26T12:00:00Z");
    let tenant = Tenant {
        id: id("lc-atomic"),
        name: "again".into(),
        patch_day: PatchDayConfig::default(),
        max_hosts: None,
    };
    assert!(matches!(
        store.create_tenant_logged(&tenant, now, &log).await,
        Err(StoreError::Conflict(_))
    ));
    let web = Group {
        id: id("web"),
        name: "web".into(),
    };
    t.create_group_logged(&web, &log).await.unwrap();
    assert!(matches!(
        t.create_group_logged(&web, &log).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        t.set_host_groups_logged(&id("nope"), &[id("web")], &log)
            .await,
        Err(StoreError::NotFound(_))
    ));
    t.create_host(&id("h-1"), "h-1", &hash_secret("pdh_atomic"), now)
        .await
        .unwrap();
    assert!(matches!(
        t.set_host_groups_logged(&id("h-1"), &[id("db")], &log)
            .await,
        Err(StoreError::NotFound(_))
    ));
    t.set_host_groups_logged(&id("h-1"), &[id("web")], &log)
        .await
        .unwrap();
    let pd = PatchDayConfig {
        week: "last".into(),
        ..PatchDayConfig::default()
    };
    t.set_patch_day_logged(&pd, &log).await.unwrap();
    assert_eq!(t.get().await.unwrap().patch_day, pd);
    assert_eq!(t.host(&id("h-1")).await.unwrap().groups, vec![id("web")]);
    assert_eq!(
        store.list_log(&scope, None, 100).await.unwrap().len(),
        3,
        "one entry per change that was made, none for the refused ones"
    );
}

// Issue 8, finding 11 (server-hardening): the health probe commits a write, repeatably,
// and changes nothing anyone reads.
async fn storage_probe(store: &dyn Store) {
    let before = store.list_tenants().await.unwrap();
    store.probe_write(ts("2026-12-08T02:00:00Z")).await.unwrap();
    store.probe_write(ts("2026-12-08T02:00:01Z")).await.unwrap();
    assert_eq!(store.list_tenants().await.unwrap(), before);
}

// ---- issue 9, point 4 (closure): server-side repair requests ----

/// A repair request: logged with its request, replaced by a newer one, marked sent once
/// (the first time counts), cleared, scoped to its tenant, `NotFound` for another host.
async fn repair_requests(store: &dyn Store) {
    let t = new_tenant(store, "repair").await;
    let other = new_tenant(store, "elsewhere").await;
    let now = ts("2026-12-01T10:00:00Z");
    t.create_host(&id("r-1"), "r", &hash_secret("cred-r-1"), now)
        .await
        .unwrap();
    assert_eq!(t.repair_request(&id("r-1")).await.unwrap(), None);
    let log = log_entry(Some("repair"), "host.repair", "2026-12-01T10:00:00Z");
    assert!(matches!(
        other
            .request_repair_logged(&id("r-1"), true, now, &log)
            .await,
        Err(StoreError::NotFound(_))
    ));
    t.request_repair_logged(&id("r-1"), false, now, &log)
        .await
        .unwrap();
    let later = ts("2026-12-01T11:00:00Z");
    t.request_repair_logged(&id("r-1"), true, later, &log)
        .await
        .unwrap();
    let r = t.repair_request(&id("r-1")).await.unwrap().unwrap();
    assert_eq!(
        (r.requested_at, r.allow_apt, r.sent_at),
        (later, true, None)
    );
    t.repair_sent(&id("r-1"), ts("2026-12-01T12:00:00Z"))
        .await
        .unwrap();
    t.repair_sent(&id("r-1"), ts("2026-12-01T13:00:00Z"))
        .await
        .unwrap();
    let r = t.repair_request(&id("r-1")).await.unwrap().unwrap();
    assert_eq!(r.sent_at, Some(ts("2026-12-01T12:00:00Z")));
    t.clear_repair(&id("r-1")).await.unwrap();
    assert_eq!(t.repair_request(&id("r-1")).await.unwrap(), None);
    // Sending needs a request: nothing appears from a stray mark.
    t.repair_sent(&id("r-1"), later).await.unwrap();
    assert_eq!(t.repair_request(&id("r-1")).await.unwrap(), None);
    let scope = crate::LogScope::Tenant(id("repair"));
    assert_eq!(store.list_log(&scope, None, 10).await.unwrap().len(), 2);
}

/// Issue 14, point 4: mail verdicts are kept per tenant and listed newest first, bounded.
pub async fn mail_verdicts(store: &dyn Store) {
    use patchday_types::api::MailVerdict;
    let t = new_tenant(store, "mail").await;
    let other = new_tenant(store, "mail-other").await;
    let verdict = |n: u64, kind: &str| MailVerdict {
        time: ts("2026-12-02T04:00:00Z"),
        verdict: kind.into(),
        queue_id: Some(format!("Q{n}")),
        sender: "a@outside.example".into(),
        recipients: vec!["b@mail.example".into()],
        reasons: vec![format!("reason {n}")],
        size: n,
        quarantine_id: None,
    };
    assert!(t.mail_verdicts(10).await.unwrap().is_empty());
    t.record_mail_verdict(&verdict(1, "reject")).await.unwrap();
    t.record_mail_verdict(&verdict(2, "accept")).await.unwrap();
    other
        .record_mail_verdict(&verdict(3, "quarantine"))
        .await
        .unwrap();
    let listed = t.mail_verdicts(10).await.unwrap();
    assert_eq!(listed, vec![verdict(2, "accept"), verdict(1, "reject")]);
    assert_eq!(
        t.mail_verdicts(1).await.unwrap(),
        vec![verdict(2, "accept")]
    );
    assert_eq!(
        other.mail_verdicts(10).await.unwrap(),
        vec![verdict(3, "quarantine")]
    );
}

/// Issue 14, point 5: scan findings are kept per tenant with the reporting host and its
/// name, listed newest first, bounded.
pub async fn scan_findings(store: &dyn Store) {
    use patchday_types::api::{ScanFinding, ScanOutcome};
    let t = new_tenant(store, "scan").await;
    let other = new_tenant(store, "scan-other").await;
    let h: HostId = id("laptop-1");
    t.create_host(
        &h,
        "laptop-1",
        &hash_secret("c-l1"),
        ts("2026-12-02T10:00:00Z"),
    )
    .await
    .unwrap();
    let finding = |n: u64, outcome: ScanOutcome| ScanFinding {
        time: ts("2026-12-02T10:00:00Z"),
        baseline: "laptops".into(),
        outcome,
        path: format!("/home/alice/Downloads/file-{n}"),
        size: n,
        owner: Some(1000),
        sha256: Some("ab".repeat(32)),
        signature: (outcome == ScanOutcome::Quarantined).then(|| "Eicar-Test".into()),
        quarantine_id: None,
        reason: None,
    };
    assert!(t.scan_findings(10).await.unwrap().is_empty());
    t.record_scan_findings(
        &h,
        &[
            finding(1, ScanOutcome::Quarantined),
            finding(2, ScanOutcome::Unscanned),
        ],
        ts("2026-12-02T10:00:01Z"),
    )
    .await
    .unwrap();
    other
        .record_scan_findings(
            &h,
            &[finding(3, ScanOutcome::Quarantined)],
            ts("2026-12-02T10:00:02Z"),
        )
        .await
        .unwrap();
    let listed = t.scan_findings(10).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].finding, finding(2, ScanOutcome::Unscanned));
    assert_eq!(listed[1].finding, finding(1, ScanOutcome::Quarantined));
    assert_eq!(listed[0].hostname, "laptop-1");
    assert_eq!(listed[0].received_at, ts("2026-12-02T10:00:01Z"));
    assert_eq!(t.scan_findings(1).await.unwrap().len(), 1);
    let theirs = other.scan_findings(10).await.unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].finding.size, 3);
}

/// Issue 10, point 1: only changes are appended, per tenant, in order; publication times
/// are kept from the first push.
async fn state_history_records_changes_only(store: &dyn Store) {
    use patchday_types::UpdateState as S;
    let t = new_tenant(store, "hist").await;
    let other = new_tenant(store, "hist-other").await;
    let h: HostId = id("h1");
    t.create_host(&h, "h1", &hash_secret("c-h1"), ts("2026-11-26T10:00:00Z"))
        .await
        .unwrap();
    let st = |u: &str, s: S, m: Option<&str>| StateReport {
        update: id(u),
        state: s,
        message: m.map(String::from),
    };
    let first = t
        .record_host_states(
            &h,
            &[st("U1", S::Needed, None), st("U2", S::Approved, None)],
            ts("2026-11-26T10:00:00Z"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].previous, None);
    // The same states again: nothing appended.
    let again = t
        .record_host_states(
            &h,
            &[st("U1", S::Needed, None), st("U2", S::Approved, None)],
            ts("2026-11-26T11:00:00Z"),
            None,
        )
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    // A change of state, and one of message only.
    let changed = t
        .record_host_states(
            &h,
            &[
                st("U1", S::Installed, None),
                st("U2", S::Approved, Some("waiting")),
            ],
            ts("2026-11-26T12:00:00Z"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(changed.len(), 2);
    assert_eq!(changed[0].previous, Some(S::Needed));
    let all = t.history(Some(&h), None, 100).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|e| (e.update.as_str(), e.state))
            .collect::<Vec<_>>(),
        [
            ("U1", S::Needed),
            ("U2", S::Approved),
            ("U1", S::Installed),
            ("U2", S::Approved)
        ]
    );
    let u1 = t.history(None, Some(&id("U1")), 100).await.unwrap();
    assert_eq!(u1.len(), 2);
    assert_eq!(u1[1].at, ts("2026-11-26T12:00:00Z"));
    // Every shape of the question (each backend has one statement per shape).
    let h_u2 = t.history(Some(&h), Some(&id("U2")), 100).await.unwrap();
    assert_eq!(
        h_u2.iter()
            .map(|e| (e.update.as_str(), e.message.as_deref()))
            .collect::<Vec<_>>(),
        [("U2", None), ("U2", Some("waiting"))]
    );
    assert_eq!(t.history(None, None, 100).await.unwrap(), all);
    assert_eq!(t.history(None, None, 3).await.unwrap(), all[..3]);
    assert!(t
        .history(Some(&h), Some(&id("U3")), 100)
        .await
        .unwrap()
        .is_empty());
    assert!(other.history(None, None, 100).await.unwrap().is_empty());

    store
        .note_published(&[id("U1")], ts("2026-11-20T00:00:00Z"))
        .await
        .unwrap();
    store
        .note_published(&[id("U1"), id("U2")], ts("2026-11-25T00:00:00Z"))
        .await
        .unwrap();
    let mut p = store
        .published_at(&[id("U1"), id("U2"), id("U3")])
        .await
        .unwrap();
    p.sort();
    assert_eq!(
        p,
        [
            (id("U1"), ts("2026-11-20T00:00:00Z")),
            (id("U2"), ts("2026-11-25T00:00:00Z"))
        ]
    );
}

/// Issue 10, point 8: a report on the kept evaluation. The caller sees the host's marks
/// and kept body as they stand; when it declines, nothing is written; when it carries
/// them forward, the states, the changed history and the evaluation (made from the marks
/// after the states were stored) are written together.
async fn report_on_kept_carries_forward_or_writes_nothing(store: &dyn Store) {
    use crate::{CarriedForward, MarksAtCheckin, StoredVerdict};
    use patchday_types::UpdateState as S;
    let t = new_tenant(store, "carry").await;
    let other = new_tenant(store, "carry-other").await;
    let h: HostId = id("h1");
    let now = ts("2026-11-26T10:00:00Z");
    t.create_host(&h, "h1", &hash_secret("c-carry-h1"), now)
        .await
        .unwrap();
    let st = |u: &str, s: S| StateReport {
        update: id(u),
        state: s,
        message: None,
    };
    let kept = StoredVerdict {
        host: h.clone(),
        basis: "b0".into(),
        body: "body0".into(),
        summary: "summary0".into(),
    };
    t.record_host_states(&h, &[st("U1", S::Approved)], now, Some(&kept))
        .await
        .unwrap();
    let marks0 = t.host_marks(&h).await.unwrap();
    assert_eq!(marks0.basis.as_deref(), Some("b0"));

    // Declined: nothing written.
    let seen = std::sync::Mutex::new(None);
    let decline = |m: &MarksAtCheckin, body: Option<&str>| {
        *seen.lock().unwrap() = Some((m.clone(), body.map(String::from)));
        None
    };
    let later = ts("2026-11-26T10:05:00Z");
    let none = t
        .report_on_kept(&h, &[st("U1", S::Downloading)], later, &decline)
        .await
        .unwrap();
    assert!(none.is_none());
    assert_eq!(
        seen.lock().unwrap().clone(),
        Some((marks0.clone(), Some("body0".into()))),
        "the caller sees the marks and the kept body"
    );
    assert!(t.states(&h).await.unwrap().is_empty(), "nothing stored");
    assert_eq!(t.host_marks(&h).await.unwrap(), marks0);
    assert_eq!(t.history(Some(&h), None, 100).await.unwrap().len(), 1);

    // Carried forward: the states, the history and the evaluation, together.
    let carry = |m: &MarksAtCheckin, body: Option<&str>| {
        assert_eq!(body, Some("body0"));
        assert_eq!(m.basis.as_deref(), Some("b0"));
        Some(CarriedForward {
            history: vec![st("U1", S::Downloading)],
            keep: Box::new(|after: &MarksAtCheckin| {
                Some(StoredVerdict {
                    host: id("h1"),
                    basis: format!("after {}", after.host.states),
                    body: "body1".into(),
                    summary: "summary1".into(),
                })
            }),
        })
    };
    let entries = t
        .report_on_kept(&h, &[st("U1", S::Downloading)], later, &carry)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].previous, Some(S::Approved));
    assert_eq!(entries[0].state, S::Downloading);
    assert_eq!(entries[0].at, later);
    let states = t.states(&h).await.unwrap();
    assert_eq!(
        states
            .iter()
            .map(|s| (s.report.update.as_str(), s.report.state, s.at))
            .collect::<Vec<_>>(),
        [("U1", S::Downloading, later)]
    );
    let marks1 = t.host_marks(&h).await.unwrap();
    assert_ne!(marks1.host.states, marks0.host.states);
    assert_eq!(
        marks1.basis,
        Some(format!("after {}", marks1.host.states)),
        "the evaluation is kept under the marks after the report"
    );
    let history = t.history(Some(&h), None, 100).await.unwrap();
    assert_eq!(
        history.iter().map(|e| e.state).collect::<Vec<_>>(),
        [S::Approved, S::Downloading]
    );
    // An unchanged state is stored again but not appended to the history.
    let again = t
        .report_on_kept(
            &h,
            &[st("U1", S::Downloading)],
            ts("2026-11-26T10:06:00Z"),
            &carry_same(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(t.history(Some(&h), None, 100).await.unwrap().len(), 2);

    // Unknown here: another tenant's host, a host that is not there.
    for (tenant, host) in [(&other, &h), (&t, &id("nope"))] {
        assert!(matches!(
            tenant
                .report_on_kept(host, &[st("U1", S::Installing)], later, &decline)
                .await,
            Err(StoreError::NotFound(_))
        ));
    }
}

/// A carry that records the same state again and keeps no evaluation.
fn carry_same(
) -> impl Fn(&crate::MarksAtCheckin, Option<&str>) -> Option<crate::CarriedForward> + Sync {
    |_, _| {
        Some(crate::CarriedForward {
            history: vec![StateReport {
                update: id("U1"),
                state: patchday_types::UpdateState::Downloading,
                message: None,
            }],
            keep: Box::new(|_| None),
        })
    }
}

// ---- Issue 10, point 5: maintenance windows and reboot policy per group ----

/// A group's policy: defaults until set, replaced whole, logged with its change, scoped
/// to its tenant, `NotFound` for a group that is not there (and then nothing is logged).
async fn group_policies(store: &dyn Store) {
    use patchday_types::api::GroupPolicy;
    let t = new_tenant(store, "windows").await;
    let other = new_tenant(store, "windows-elsewhere").await;
    let web: GroupId = id("web");
    t.create_group(&Group {
        id: web.clone(),
        name: "Web".into(),
    })
    .await
    .unwrap();
    assert_eq!(
        t.group_policies().await.unwrap().get(&web),
        Some(&GroupPolicy::default())
    );
    let policy = GroupPolicy {
        windows: vec![
            "Sat 02:00-05:00 Europe/Berlin".into(),
            "Wed 22:00-23:00 UTC".into(),
        ],
        reboot: "in-window".into(),
    };
    let log = log_entry(Some("windows"), "group.policy", "2026-12-01T10:00:00Z");
    let elsewhere = other.set_group_policy_logged(&web, &policy, &log).await;
    assert!(
        matches!(elsewhere, Err(StoreError::NotFound(_))),
        "{elsewhere:?}"
    );
    t.set_group_policy_logged(&web, &policy, &log)
        .await
        .unwrap();
    assert_eq!(t.group_policies().await.unwrap().get(&web), Some(&policy));
    assert!(other.group_policies().await.unwrap().is_empty());
    let cleared = GroupPolicy {
        windows: vec![],
        reboot: "now".into(),
    };
    t.set_group_policy_logged(&web, &cleared, &log)
        .await
        .unwrap();
    assert_eq!(t.group_policies().await.unwrap().get(&web), Some(&cleared));
    let scope = crate::LogScope::Tenant(id("windows"));
    assert_eq!(store.list_log(&scope, None, 10).await.unwrap().len(), 2);
    let scope = crate::LogScope::Tenant(id("windows-elsewhere"));
    assert!(store.list_log(&scope, None, 10).await.unwrap().is_empty());
}

// ---- Issue 10, points 2 and 3 (rings) ----

/// Rings replace each other in order and stay in their tenant; halts are per update and
/// resume once; waves admit hosts idempotently and hold the others of the group.
async fn rings_halts_and_waves(store: &dyn Store) {
    use patchday_types::api::{Ring, RolloutHalt};
    let t = new_tenant(store, "rings").await;
    let other = new_tenant(store, "rings-other").await;
    let log = |action: &str| LogEntry {
        seq: 0,
        at: ts("2026-11-26T10:00:00Z"),
        tenant: Some(id("rings")),
        actor: "test".into(),
        actor_id: String::new(),
        source: "local".into(),
        action: action.into(),
        object: String::new(),
        detail: serde_json::json!({}),
    };
    let ring = |g: &str, d: i64| Ring {
        group: id(g),
        deferral_seconds: d,
        deadline_seconds: None,
        grace_seconds: 0,
        soak_seconds: 60,
        rule: None,
        success_permille: 950,
        failure_permille: 50,
        failure_count: None,
    };
    t.set_rings_logged(
        &[ring("pilot", 0), ring("early", 86_400)],
        &log("rings.set"),
    )
    .await
    .unwrap();
    t.set_rings_logged(&[ring("early", 0), ring("pilot", 3600)], &log("rings.set"))
        .await
        .unwrap();
    let got = t.rings().await.unwrap();
    assert_eq!(
        got,
        vec![ring("early", 0), ring("pilot", 3600)],
        "replaced, in order"
    );
    assert!(
        other.rings().await.unwrap().is_empty(),
        "rings leak across tenants"
    );

    let u: UpdateId = id("PD-RING-1");
    let halt = RolloutHalt {
        update: u.clone(),
        reason: "1 of 1 failed".into(),
        at: ts("2026-11-26T11:00:00Z"),
        by: "rollout gate".into(),
        resumed_at: None,
    };
    assert!(store.halt_rollout(&halt, None).await.unwrap());
    assert!(
        !store.halt_rollout(&halt, None).await.unwrap(),
        "halted twice"
    );
    let resumed_at = ts("2026-11-26T12:00:00Z");
    assert!(store
        .resume_rollout(&u, resumed_at, &log("rollout.resume"))
        .await
        .unwrap());
    assert!(!store
        .resume_rollout(&u, resumed_at, &log("rollout.resume"))
        .await
        .unwrap());
    let halts = store.rollout_halts().await.unwrap();
    assert_eq!(halts.len(), 1);
    assert_eq!(halts[0].resumed_at, Some(resumed_at));
    assert!(
        store.halt_rollout(&halt, None).await.unwrap(),
        "a resumed update halts again"
    );
    assert!(store.rollout_halts().await.unwrap()[0].active());

    let g: GroupId = id("pilot");
    t.create_group(&Group {
        id: g.clone(),
        name: "pilot".into(),
    })
    .await
    .unwrap();
    for h in ["w1", "w2"] {
        let h: HostId = id(h);
        t.create_host(
            &h,
            h.as_str(),
            &hash_secret(&format!("c-{h}")),
            ts("2026-11-26T10:00:00Z"),
        )
        .await
        .unwrap();
        t.set_host_groups(&h, std::slice::from_ref(&g))
            .await
            .unwrap();
    }
    let (w1, w2): (HostId, HostId) = (id("w1"), id("w2"));
    let ups = vec![u.clone()];
    assert!(
        t.wave_held(&w2, &ups).await.unwrap().is_empty(),
        "no waves: nothing held"
    );
    for _ in 0..2 {
        t.admit_wave(
            &u,
            &g,
            std::slice::from_ref(&w1),
            ts("2026-11-26T10:30:00Z"),
        )
        .await
        .unwrap();
    }
    assert_eq!(t.wave_admitted(&u, &g).await.unwrap().len(), 1);
    assert!(t.wave_held(&w1, &ups).await.unwrap().is_empty());
    assert_eq!(t.wave_held(&w2, &ups).await.unwrap(), ups);
    assert!(other.wave_held(&w2, &ups).await.unwrap().is_empty());
}

/// Issue 10, point 7 (cleanup): evicted payloads are recorded once, with their log entry,
/// listed, found by sha256 and forgotten when needed again.
async fn payload_evictions(store: &dyn Store) {
    use crate::{LogScope, PayloadEviction};
    let e = |n: u8, at: &str| PayloadEviction {
        sha256: format!("{n:02x}").repeat(32),
        name: format!("payloads/p{n}.deb"),
        length: 1000 + u64::from(n),
        evicted_at: ts(at),
        reason: "superseded".into(),
    };
    let log = |action: &str| LogEntry {
        actor: "cleanup".into(),
        ..log_entry(None, action, "2026-11-30T10:00:00Z")
    };
    assert!(store.evictions().await.unwrap().is_empty());
    assert_eq!(
        store
            .eviction(&e(1, "2026-11-30T10:00:00Z").sha256)
            .await
            .unwrap(),
        None
    );
    store
        .record_evictions(
            &[e(1, "2026-11-30T10:00:00Z"), e(2, "2026-11-30T10:00:00Z")],
            &log("content.evict"),
        )
        .await
        .unwrap();
    // Recording one again keeps its first record.
    store
        .record_evictions(&[e(1, "2026-12-01T10:00:00Z")], &log("content.evict"))
        .await
        .unwrap();
    assert_eq!(
        store.evictions().await.unwrap(),
        vec![e(1, "2026-11-30T10:00:00Z"), e(2, "2026-11-30T10:00:00Z")]
    );
    assert_eq!(
        store
            .eviction(&e(2, "2026-11-30T10:00:00Z").sha256)
            .await
            .unwrap(),
        Some(e(2, "2026-11-30T10:00:00Z"))
    );
    // Nothing recorded, nothing logged.
    store
        .record_evictions(&[], &log("content.evict"))
        .await
        .unwrap();
    let forgotten = store
        .forget_evictions(
            &[e(1, "2026-11-30T10:00:00Z").sha256, "ff".repeat(32)],
            &log("content.needed-again"),
        )
        .await
        .unwrap();
    assert_eq!(forgotten, 1);
    assert_eq!(
        store.evictions().await.unwrap(),
        vec![e(2, "2026-11-30T10:00:00Z")]
    );
    assert_eq!(
        store
            .forget_evictions(&["ff".repeat(32)], &log("content.needed-again"))
            .await
            .unwrap(),
        0
    );
    let actions: Vec<String> = store
        .list_log(&LogScope::Everything, None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.actor == "cleanup")
        .map(|l| l.action)
        .collect();
    assert_eq!(
        actions,
        ["content.evict", "content.evict", "content.needed-again"],
        "one entry per change, none for no change"
    );
}

// ---- Issue 10, point 2: groups joined by rules on host facts ----

/// Group rules get ids per tenant, stay in their tenant and go with their group; facts
/// are stored per host; rule-made memberships join and leave, manual ones never leave by
/// a rule, and `set_host_groups` replaces only the manual ones; every change is logged in
/// the same transaction.
async fn group_rules_and_memberships(store: &dyn Store) {
    use patchday_types::api::{GroupRule, MembershipChange, MembershipFacts};
    let t = new_tenant(store, "rules").await;
    let other = new_tenant(store, "rules-other").await;
    for g in ["web", "prod", "manual"] {
        t.create_group(&Group {
            id: id(g),
            name: g.into(),
        })
        .await
        .unwrap();
    }
    let now = ts("2026-12-01T10:00:00Z");
    for h in ["web-1", "db-1"] {
        t.create_host(&id(h), h, &hash_secret(&format!("cred-{h}")), now)
            .await
            .unwrap();
    }
    let log = log_entry(Some("rules"), "group.rule.add", "2026-12-01T10:00:00Z");
    let by_name = GroupRule {
        hostname: Some("web-*".into()),
        ..Default::default()
    };
    let by_label = GroupRule {
        labels: [("env".to_string(), "prod".to_string())].into(),
        release: Some("debian-12".into()),
        ..Default::default()
    };
    // Another tenant's handle cannot add rules to this tenant's group.
    let elsewhere = other
        .add_group_rule_logged(&id("web"), &by_name, &log)
        .await;
    assert!(
        matches!(elsewhere, Err(StoreError::NotFound(_))),
        "{elsewhere:?}"
    );
    let r1 = t
        .add_group_rule_logged(&id("web"), &by_name, &log)
        .await
        .unwrap();
    let r2 = t
        .add_group_rule_logged(&id("prod"), &by_label, &log)
        .await
        .unwrap();
    assert_ne!(r1.id, r2.id, "rule ids are distinct");
    assert_eq!(r2.rule, by_label);
    assert_eq!(r2.group, id::<GroupId>("prod"));
    let rules = t.group_rules().await.unwrap();
    assert_eq!(rules, vec![r1.clone(), r2.clone()], "rules listed by id");
    assert!(other.group_rules().await.unwrap().is_empty());
    let missing = t.remove_group_rule_logged(&id("prod"), r1.id, &log).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "a rule is removed only through its own group: {missing:?}"
    );
    let missing = t.add_group_rule_logged(&id("nope"), &by_name, &log).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );

    // Facts: the hostname as enrolled, the rest as stored.
    let facts = MembershipFacts {
        hostname: "ignored: the enrolled name counts".into(),
        os: patchday_types::OsRelease {
            id: "debian".into(),
            version_id: "12".into(),
            version_codename: "bookworm".into(),
            pretty_name: "Debian".into(),
        },
        labels: [("env".to_string(), "prod".to_string())].into(),
    };
    t.set_membership_facts(&id("web-1"), &facts).await.unwrap();
    assert!(matches!(
        t.set_membership_facts(&id("nope"), &facts).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        other.set_membership_facts(&id("web-1"), &facts).await,
        Err(StoreError::NotFound(_))
    ));
    let m = t.memberships().await.unwrap();
    assert_eq!(m.len(), 2);
    let db = m.iter().find(|h| h.host.as_str() == "db-1").unwrap();
    assert_eq!(db.facts.hostname, "db-1");
    assert!(db.facts.labels.is_empty() && db.facts.os.id.is_empty());
    let web = m.iter().find(|h| h.host.as_str() == "web-1").unwrap();
    assert_eq!(web.facts.hostname, "web-1");
    assert_eq!(web.facts.os, facts.os);
    assert_eq!(web.facts.labels, facts.labels);
    assert_eq!(&t.host_memberships(&id("web-1")).await.unwrap(), web);
    assert!(matches!(
        other.host_memberships(&id("web-1")).await,
        Err(StoreError::NotFound(_))
    ));

    // Memberships: manual first, then rules join and leave around it.
    t.set_host_groups(&id("web-1"), &[id("manual"), id("prod")])
        .await
        .unwrap();
    let change = |h: &str, g: &str, join: bool| MembershipChange {
        host: id(h),
        group: id(g),
        join,
    };
    let logs = vec![
        log_entry(Some("rules"), "group.join", "2026-12-01T10:01:00Z"),
        log_entry(Some("rules"), "group.join", "2026-12-01T10:01:00Z"),
    ];
    t.apply_membership_changes_logged(
        &[change("web-1", "web", true), change("web-1", "prod", true)],
        &logs,
    )
    .await
    .unwrap();
    let of = |all: &[crate::HostMemberships], h: &str| {
        let x = all.iter().find(|m| m.host.as_str() == h).unwrap();
        (
            x.groups.iter().map(ToString::to_string).collect::<Vec<_>>(),
            x.rule_groups
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        )
    };
    let m = t.memberships().await.unwrap();
    assert_eq!(
        of(&m, "web-1"),
        (
            vec!["manual".to_string(), "prod".into(), "web".into()],
            vec!["web".to_string()]
        ),
        "a join where a manual membership exists keeps it manual"
    );
    assert_eq!(
        t.host(&id("web-1")).await.unwrap().groups,
        vec![id::<GroupId>("manual"), id("prod"), id("web")]
    );
    // A rule never removes a manual membership.
    t.apply_membership_changes_logged(
        &[
            change("web-1", "prod", false),
            change("web-1", "manual", false),
        ],
        &[],
    )
    .await
    .unwrap();
    let m = t.memberships().await.unwrap();
    assert_eq!(of(&m, "web-1").0, vec!["manual", "prod", "web"]);
    // set_host_groups replaces the manual ones and keeps what rules made.
    t.set_host_groups(&id("web-1"), &[id("prod")])
        .await
        .unwrap();
    let m = t.memberships().await.unwrap();
    assert_eq!(
        of(&m, "web-1"),
        (
            vec!["prod".to_string(), "web".into()],
            vec!["web".to_string()]
        )
    );
    // A rule-made membership leaves.
    t.apply_membership_changes_logged(&[change("web-1", "web", false)], &[])
        .await
        .unwrap();
    assert_eq!(of(&t.memberships().await.unwrap(), "web-1").0, vec!["prod"]);
    // Naming a rule-made group in set_host_groups makes it manual.
    t.apply_membership_changes_logged(&[change("db-1", "web", true)], &[])
        .await
        .unwrap();
    t.set_host_groups(&id("db-1"), &[id("web")]).await.unwrap();
    assert_eq!(
        of(&t.memberships().await.unwrap(), "db-1"),
        (vec!["web".to_string()], vec![])
    );
    // Unknown hosts or groups change nothing, the log entries included.
    let before = store
        .list_log(&crate::LogScope::Tenant(id("rules")), None, 100)
        .await
        .unwrap()
        .len();
    let bad = t
        .apply_membership_changes_logged(
            &[change("db-1", "prod", true), change("db-1", "nope", true)],
            &logs,
        )
        .await;
    assert!(matches!(bad, Err(StoreError::NotFound(_))), "{bad:?}");
    assert_eq!(of(&t.memberships().await.unwrap(), "db-1").0, vec!["web"]);
    let bad = other
        .apply_membership_changes_logged(&[change("db-1", "prod", true)], &[])
        .await;
    assert!(matches!(bad, Err(StoreError::NotFound(_))), "{bad:?}");
    let after = store
        .list_log(&crate::LogScope::Tenant(id("rules")), None, 100)
        .await
        .unwrap()
        .len();
    assert_eq!(before, after, "a refused change logs nothing");
    // Logged: two rules added, two joins.
    assert_eq!(after, 4);

    // Removing a rule, then its group, takes the rest with them.
    t.remove_group_rule_logged(&id("web"), r1.id, &log)
        .await
        .unwrap();
    assert_eq!(t.group_rules().await.unwrap(), vec![r2.clone()]);
    t.apply_membership_changes_logged(&[change("web-1", "web", true)], &[])
        .await
        .unwrap();
    t.remove_group(&id("prod"), &log).await.unwrap();
    assert!(t.group_rules().await.unwrap().is_empty());
    let m = t.memberships().await.unwrap();
    assert_eq!(of(&m, "web-1").0, vec!["web"]);
    // A new rule never reuses an id.
    let r3 = t
        .add_group_rule_logged(&id("web"), &by_name, &log)
        .await
        .unwrap();
    assert!(r3.id > r2.id, "{} after {}", r3.id, r2.id);
}

/// Issue 11, point 5 (notifications): an event is enqueued once per key with one
/// pending delivery per target; due deliveries come oldest first and not before their
/// time; each try is logged; a delivered or given-up delivery is no longer due; the log
/// is scoped to one tenant or shows every event.
async fn notification_outbox(store: &dyn Store) {
    use crate::OutboxEvent;
    use patchday_types::notify::{DeliveryAttempt, DeliveryStatus, NotifyEvent};
    let ev = |key: &str, tenant: Option<&str>, at: &str| OutboxEvent {
        key: key.into(),
        tenant: tenant.map(id),
        event: NotifyEvent::RolloutHalted,
        subject: format!("subject of {key}"),
        body: serde_json::json!({ "key": key }),
        at: ts(at),
    };
    let targets = vec!["hook".to_string(), "mail".to_string()];
    let halt = ev("rollout.halted:U1", Some("acme"), "2026-11-30T10:00:00Z");
    assert!(store.enqueue_notification(&halt, &targets).await.unwrap());
    // The same key again (the gate sees the same halt next round): nothing new.
    let again = ev("rollout.halted:U1", Some("acme"), "2026-11-30T11:00:00Z");
    assert!(
        !store.enqueue_notification(&again, &targets).await.unwrap(),
        "an event key is enqueued once"
    );
    let expiry = ev("catalog.expiring:root:1", None, "2026-11-30T10:05:00Z");
    assert!(store
        .enqueue_notification(&expiry, &["hook".to_string()])
        .await
        .unwrap());

    assert!(
        store
            .due_deliveries(ts("2026-11-30T09:59:59Z"), 10)
            .await
            .unwrap()
            .is_empty(),
        "nothing is due before its time"
    );
    let due = store
        .due_deliveries(ts("2026-11-30T10:10:00Z"), 10)
        .await
        .unwrap();
    let seen: Vec<(&str, &str)> = due
        .iter()
        .map(|d| (d.event.key.as_str(), d.target.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("rollout.halted:U1", "hook"),
            ("rollout.halted:U1", "mail"),
            ("catalog.expiring:root:1", "hook"),
        ]
    );
    assert_eq!(due[0].event, halt, "the event comes back as enqueued");
    assert_eq!(due[0].attempts, 0);
    assert_eq!(
        store
            .due_deliveries(ts("2026-11-30T10:10:00Z"), 1)
            .await
            .unwrap()
            .len(),
        1,
        "the limit holds"
    );

    // The hook fails once (due again later), then takes it; the mail is given up.
    let attempt = |n: u32, at: &str, ok: bool, detail: &str| DeliveryAttempt {
        attempt: n,
        at: ts(at),
        ok,
        detail: detail.into(),
    };
    let (hook, mail) = (due[0].id, due[1].id);
    store
        .record_delivery(
            hook,
            &attempt(1, "2026-11-30T10:10:00Z", false, "HTTP 503"),
            DeliveryStatus::Pending,
            ts("2026-11-30T10:11:00Z"),
        )
        .await
        .unwrap();
    store
        .record_delivery(
            mail,
            &attempt(1, "2026-11-30T10:10:00Z", false, "connection refused"),
            DeliveryStatus::Failed,
            ts("2026-11-30T10:10:00Z"),
        )
        .await
        .unwrap();
    let due = store
        .due_deliveries(ts("2026-11-30T10:10:30Z"), 10)
        .await
        .unwrap();
    assert_eq!(
        due.len(),
        1,
        "a retry waits for its back-off; given up is never due"
    );
    assert_eq!(due[0].event.key, "catalog.expiring:root:1");
    let due = store
        .due_deliveries(ts("2026-11-30T10:11:00Z"), 10)
        .await
        .unwrap();
    let retry = due.iter().find(|d| d.id == hook).expect("the retry is due");
    assert_eq!(retry.attempts, 1);
    store
        .record_delivery(
            hook,
            &attempt(2, "2026-11-30T10:11:00Z", true, "HTTP 200"),
            DeliveryStatus::Delivered,
            ts("2026-11-30T10:11:00Z"),
        )
        .await
        .unwrap();
    assert!(store
        .due_deliveries(ts("2026-12-30T00:00:00Z"), 10)
        .await
        .unwrap()
        .iter()
        .all(|d| d.id != hook && d.id != mail));
    assert!(matches!(
        store
            .record_delivery(
                999_999,
                &attempt(1, "2026-11-30T10:11:00Z", true, "HTTP 200"),
                DeliveryStatus::Delivered,
                ts("2026-11-30T10:11:00Z"),
            )
            .await,
        Err(StoreError::NotFound(_))
    ));

    // The log: newest event first; the tries in order; scoped per tenant.
    let log = store.notification_log(None, 100).await.unwrap();
    let keys: Vec<(&str, &str)> = log
        .iter()
        .map(|d| (d.key.as_str(), d.target.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("catalog.expiring:root:1", "hook"),
            ("rollout.halted:U1", "hook"),
            ("rollout.halted:U1", "mail"),
        ]
    );
    let h = &log[1];
    assert_eq!(h.status, DeliveryStatus::Delivered);
    assert_eq!(
        h.attempts
            .iter()
            .map(|a| (a.attempt, a.ok, a.detail.as_str()))
            .collect::<Vec<_>>(),
        [(1, false, "HTTP 503"), (2, true, "HTTP 200")]
    );
    assert_eq!(log[2].status, DeliveryStatus::Failed);
    let acme = store
        .notification_log(Some(&id("acme")), 100)
        .await
        .unwrap();
    assert_eq!(acme.len(), 2, "a tenant's log has its own events only");
    assert!(store
        .notification_log(Some(&id("globex")), 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.notification_log(None, 1).await.unwrap().len(), 1);
}

/// Issue 11, point 1 (console): a session is found by its id's hash until it expires,
/// never after, and is gone after logout; opening a session forgets expired ones.
async fn console_sessions(store: &dyn Store) {
    use crate::ConsoleSession;
    let s = |n: u8, created: &str, expires: &str| ConsoleSession {
        id_hash: hash_secret(&format!("session-{n}")),
        token_hash: hash_secret("pd_operator"),
        csrf: format!("csrf-{n}"),
        created_at: ts(created),
        expires_at: ts(expires),
    };
    let first = s(1, "2026-12-01T10:00:00Z", "2026-12-01T18:00:00Z");
    store.create_console_session(&first).await.unwrap();
    assert_eq!(
        store
            .console_session(&first.id_hash, ts("2026-12-01T17:59:59Z"))
            .await
            .unwrap(),
        Some(first.clone()),
        "a session is found before it expires"
    );
    assert_eq!(
        store
            .console_session(&first.id_hash, ts("2026-12-01T18:00:00Z"))
            .await
            .unwrap(),
        None,
        "an expired session is not found"
    );
    assert_eq!(
        store
            .console_session(&hash_secret("session-unknown"), ts("2026-12-01T11:00:00Z"))
            .await
            .unwrap(),
        None,
        "an unknown id finds nothing"
    );
    // A later session opened after the first expired removes the first.
    let second = s(2, "2026-12-02T10:00:00Z", "2026-12-02T18:00:00Z");
    store.create_console_session(&second).await.unwrap();
    assert_eq!(
        store
            .console_session(&first.id_hash, ts("2026-12-01T11:00:00Z"))
            .await
            .unwrap(),
        None,
        "expired sessions are forgotten when a new one opens"
    );
    store.end_console_session(&second.id_hash).await.unwrap();
    store.end_console_session(&second.id_hash).await.unwrap();
    assert_eq!(
        store
            .console_session(&second.id_hash, ts("2026-12-02T11:00:00Z"))
            .await
            .unwrap(),
        None,
        "logout ends the session"
    );
}

/// Issue 11, point 1: the fleet read in one call, stored verdicts kept per host, marks
/// that move with every report, and nothing crossing tenants.
pub async fn fleet_views(store: &dyn Store) {
    use crate::StoredVerdict;
    let now = ts("2026-11-26T10:00:00Z");
    let a = new_tenant(store, "fv-a").await;
    let b = new_tenant(store, "fv-b").await;
    for g in ["db", "web"] {
        a.create_group(&Group {
            id: id(g),
            name: g.into(),
        })
        .await
        .unwrap();
    }
    a.create_host(&id("h2"), "beta", &hash_secret("fv-h2"), now)
        .await
        .unwrap();
    a.create_host(&id("h1"), "alpha", &hash_secret("fv-h1"), now)
        .await
        .unwrap();
    b.create_host(&id("x1"), "other", &hash_secret("fv-x1"), now)
        .await
        .unwrap();
    a.set_host_groups(&id("h1"), &[id("web"), id("db")])
        .await
        .unwrap();
    a.set_host_public_key(&id("h1"), "ab12").await.unwrap();

    let fleet = a.fleet().await.unwrap();
    let ids: Vec<&str> = fleet.iter().map(|f| f.host.id.as_str()).collect();
    assert_eq!(ids, ["h1", "h2"], "the tenant's hosts only, by id");
    assert_eq!(fleet[0].host, a.host(&id("h1")).await.unwrap());
    assert_eq!(fleet[0].signing, a.host_signing(&id("h1")).await.unwrap());
    assert_eq!(fleet[0].host.groups, vec![id("db"), id("web")]);
    assert!(fleet[1].host.groups.is_empty());
    assert_eq!(fleet[0].marks.states, "", "no reports yet");
    assert_eq!(fleet[0].marks.inventory, "", "no inventory yet");
    assert!(fleet.iter().all(|f| f.verdict.is_none()));

    // A report moves the host's mark, and only its own.
    let report = |state| StateReport {
        update: id("PD-FV-1"),
        state,
        message: None,
    };
    a.put_states(&id("h1"), &[report(UpdateState::Downloading)], now)
        .await
        .unwrap();
    let first = a.fleet().await.unwrap()[0].marks.states.clone();
    assert!(!first.is_empty());
    a.put_states(
        &id("h1"),
        &[report(UpdateState::Installed)],
        ts("2026-11-26T10:05:00Z"),
    )
    .await
    .unwrap();
    let fleet = a.fleet().await.unwrap();
    assert_ne!(fleet[0].marks.states, first, "a new report, a new mark");
    assert_eq!(fleet[1].marks.states, "");

    // Verdicts are kept and replaced; one for a host of another tenant (or none) is
    // skipped, not stored under this tenant.
    let v = |host: &str, basis: &str| StoredVerdict {
        host: id(host),
        basis: basis.into(),
        body: format!("{{\"{basis}\":1}}"),
        summary: format!("{{\"{basis}\":0}}"),
    };
    a.put_verdicts(&[v("h1", "one"), v("x1", "stray"), v("nope", "stray")])
        .await
        .unwrap();
    a.put_verdicts(&[v("h1", "two"), v("h2", "one")])
        .await
        .unwrap();
    let fleet = a.fleet().await.unwrap();
    assert_eq!(fleet[0].verdict, Some(v("h1", "two")));
    assert_eq!(fleet[1].verdict, Some(v("h2", "one")));
    let other = b.fleet().await.unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].verdict, None, "nothing crossed tenants");
    a.put_verdicts(&[]).await.unwrap();

    // A removed host takes its verdict with it.
    a.remove_host(
        &id("h2"),
        now,
        &log_entry(Some("fv-a"), "host.remove", "2026-11-26T10:06:00Z"),
    )
    .await
    .unwrap();
    assert_eq!(a.fleet().await.unwrap().len(), 1);
}

/// Issue 11: the marks a check-in reads before it evaluates a host and keeps its
/// evaluation with; the decisions mark moves with every change of approvals and rings,
/// whatever wrote it; the fleet read in pages.
pub async fn fleet_marks(store: &dyn Store) {
    use crate::StoredVerdict;
    let now = ts("2026-11-26T10:00:00Z");
    let a = new_tenant(store, "fm-a").await;
    let b = new_tenant(store, "fm-b").await;
    a.create_group(&Group {
        id: id("web"),
        name: "web".into(),
    })
    .await
    .unwrap();
    for h in ["h3", "h1", "h2"] {
        a.create_host(&id(h), h, &hash_secret(&format!("fm-{h}")), now)
            .await
            .unwrap();
    }
    b.create_host(&id("x1"), "x1", &hash_secret("fm-x1"), now)
        .await
        .unwrap();

    // The decisions mark: approvals, declines, removals and rings move it; the other
    // tenant's does not move with it.
    let mut last = a.decisions_mark().await.unwrap();
    let other = b.decisions_mark().await.unwrap();
    let moved = |before: i64, after: i64, what: &str| {
        assert!(
            after > before,
            "{what} moves the decisions mark ({before} -> {after})"
        );
        after
    };
    let approval = |decision| Approval {
        update: id("PD-FM-1"),
        group: id("web"),
        decision,
        deadline: None,
        decided_at: now,
        decided_by: "conformance".into(),
        reason: None,
        emergency: false,
        remove: false,
    };
    a.put_approval(&approval(Decision::Approve)).await.unwrap();
    last = moved(last, a.decisions_mark().await.unwrap(), "an approval");
    a.put_approval(&approval(Decision::Decline)).await.unwrap();
    last = moved(last, a.decisions_mark().await.unwrap(), "a decline");
    a.set_rings_logged(
        &[patchday_types::api::Ring {
            group: id("web"),
            deferral_seconds: 0,
            deadline_seconds: None,
            grace_seconds: 3600,
            soak_seconds: 60,
            rule: None,
            success_permille: 950,
            failure_permille: 50,
            failure_count: None,
        }],
        &log_entry(Some("fm-a"), "rings.set", "2026-11-26T10:01:00Z"),
    )
    .await
    .unwrap();
    last = moved(last, a.decisions_mark().await.unwrap(), "setting the rings");
    a.remove_group(
        &id("web"),
        &log_entry(Some("fm-a"), "group.remove", "2026-11-26T10:02:00Z"),
    )
    .await
    .unwrap();
    last = moved(
        last,
        a.decisions_mark().await.unwrap(),
        "removing a group (its approvals and ring go with it)",
    );
    assert_eq!(
        b.decisions_mark().await.unwrap(),
        other,
        "other tenants' marks stay"
    );
    a.create_host(&id("h4"), "h4", &hash_secret("fm-h4"), now)
        .await
        .unwrap();
    assert_eq!(
        a.decisions_mark().await.unwrap(),
        last,
        "a new host is no decision"
    );

    // One host's marks are the ones the fleet shows; the inventory mark moves with a new
    // inventory and stays with the same one sent again; a report moves the states mark.
    let at = a.host_marks(&id("h1")).await.unwrap();
    assert_eq!(at.host, crate::HostMarks::default(), "nothing reported yet");
    assert_eq!(at.basis, None);
    assert_eq!(
        at.decisions, last,
        "the tenant's decisions mark, with the host's"
    );
    let mut inv = Inventory {
        hostname: "h1".into(),
        ..Default::default()
    };
    a.save_inventory(&id("h1"), &inv, now).await.unwrap();
    let first = a.host_marks(&id("h1")).await.unwrap().host;
    assert!(!first.inventory.is_empty());
    a.save_inventory(&id("h1"), &inv, ts("2026-11-26T10:03:00Z"))
        .await
        .unwrap();
    assert_eq!(
        a.host_marks(&id("h1")).await.unwrap().host,
        first,
        "the same inventory again keeps its mark"
    );
    inv.kernel_running = "6.1.0-99-amd64".into();
    a.save_inventory(&id("h1"), &inv, ts("2026-11-26T10:04:00Z"))
        .await
        .unwrap();
    let second = a.host_marks(&id("h1")).await.unwrap().host;
    assert_ne!(
        second.inventory, first.inventory,
        "a new inventory, a new mark"
    );
    a.put_states(
        &id("h1"),
        &[StateReport {
            update: id("PD-FM-1"),
            state: UpdateState::Downloading,
            message: None,
        }],
        now,
    )
    .await
    .unwrap();
    let third = a.host_marks(&id("h1")).await.unwrap().host;
    assert_eq!(third.inventory, second.inventory);
    assert_ne!(
        third.states, second.states,
        "a report moves the states mark"
    );
    let fleet = a.fleet().await.unwrap();
    assert_eq!(fleet[0].host.id, id("h1"));
    assert_eq!(fleet[0].marks, third, "host_marks and the fleet agree");
    assert!(
        matches!(a.host_marks(&id("x1")).await, Err(StoreError::NotFound(_))),
        "another tenant's host is not found"
    );

    // A check-in keeps its evaluation with the state it records, also when no state
    // changed.
    let verdict = StoredVerdict {
        host: id("h1"),
        basis: "b1".into(),
        body: "{}".into(),
        summary: "[]".into(),
    };
    a.record_host_states(&id("h1"), &[], now, Some(&verdict))
        .await
        .unwrap();
    assert_eq!(
        a.host_marks(&id("h1")).await.unwrap().basis.as_deref(),
        Some("b1")
    );
    assert_eq!(a.fleet().await.unwrap()[0].verdict, Some(verdict));

    // Pages: in id order, each after the last one's id, never crossing tenants.
    let mut seen = Vec::new();
    let mut after: Option<HostId> = None;
    loop {
        let page = a.fleet_page(after.as_ref(), 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.host.id.clone());
        seen.extend(page.into_iter().map(|f| f.host.id.to_string()));
    }
    assert_eq!(seen, ["h1", "h2", "h3", "h4"]);
    assert_eq!(a.fleet_page(Some(&id("h4")), 10).await.unwrap().len(), 0);
}

/// Issue 11, point 1: the counting pages read each host's kept summary in pages: the
/// same hosts, groups, marks and agent error as the whole fleet page, the summary
/// written with the evaluation (also by a check-in's `record_host_states`), hosts
/// without one listed without it, nothing crossing tenants, and the pages in id order
/// whatever order the hosts were made in.
pub async fn fleet_summaries(store: &dyn Store) {
    use crate::{KeptSummary, StoredVerdict};
    let now = ts("2026-11-26T10:00:00Z");
    let a = new_tenant(store, "fs-a").await;
    let b = new_tenant(store, "fs-b").await;
    for g in ["db", "web"] {
        a.create_group(&Group {
            id: id(g),
            name: g.into(),
        })
        .await
        .unwrap();
    }
    for (h, name) in [
        ("h3", "gamma"),
        ("h1", "alpha"),
        ("h2", "beta"),
        ("h4", "delta"),
    ] {
        a.create_host(&id(h), name, &hash_secret(&format!("fs-{h}")), now)
            .await
            .unwrap();
    }
    b.create_host(&id("x1"), "other", &hash_secret("fs-x1"), now)
        .await
        .unwrap();
    a.set_host_groups(&id("h1"), &[id("web"), id("db")])
        .await
        .unwrap();
    a.save_inventory(&id("h2"), &Inventory::default(), ts("2026-11-26T10:01:00Z"))
        .await
        .unwrap();
    a.set_agent_error(&id("h3"), Some("broken: dpkg was interrupted"), now)
        .await
        .unwrap();
    a.put_states(
        &id("h1"),
        &[StateReport {
            update: id("PD-FS-1"),
            state: UpdateState::Failed,
            message: Some("dpkg said no".into()),
        }],
        now,
    )
    .await
    .unwrap();
    let kept = |host: &str, n: u32| StoredVerdict {
        host: id(host),
        basis: format!("basis-{n}"),
        body: format!("{{\"whole\":{n}}}"),
        summary: format!("{{\"counted\":{n}}}"),
    };
    a.put_verdicts(&[kept("h1", 1), kept("h3", 3)])
        .await
        .unwrap();
    b.put_verdicts(&[kept("x1", 9)]).await.unwrap();
    // A check-in writes its summary with the states it records.
    a.record_host_states(&id("h4"), &[], now, Some(&kept("h4", 4)))
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut after: Option<HostId> = None;
    loop {
        let page = a.fleet_summaries(after.as_ref(), 3).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = Some(last.host.id.clone());
        seen.extend(page);
    }
    let ids: Vec<&str> = seen.iter().map(|f| f.host.id.as_str()).collect();
    assert_eq!(
        ids,
        ["h1", "h2", "h3", "h4"],
        "the tenant's hosts only, by id"
    );
    let whole = a.fleet().await.unwrap();
    for (s, w) in seen.iter().zip(&whole) {
        assert_eq!(s.host, w.host, "the same host as the whole fleet page");
        assert_eq!(s.marks, w.marks, "the same marks");
        assert_eq!(s.agent_error, w.signing.agent_error, "the same agent error");
        assert_eq!(
            s.kept,
            w.verdict.as_ref().map(|v| KeptSummary {
                basis: v.basis.clone(),
                summary: v.summary.clone(),
            }),
            "the summary kept with the evaluation"
        );
    }
    assert_eq!(seen[0].host.groups, vec![id("db"), id("web")]);
    assert!(!seen[0].marks.states.is_empty(), "h1 reported");
    assert_eq!(
        seen[0].kept,
        Some(KeptSummary {
            basis: "basis-1".into(),
            summary: "{\"counted\":1}".into(),
        })
    );
    assert_eq!(seen[1].kept, None, "h2 has no kept evaluation");
    assert_eq!(seen[1].host.last_seen, Some(ts("2026-11-26T10:01:00Z")));
    assert_eq!(
        seen[2].agent_error.as_ref().map(|(e, _)| e.as_str()),
        Some("broken: dpkg was interrupted")
    );
    assert_eq!(
        seen[3].kept.as_ref().map(|k| k.summary.as_str()),
        Some("{\"counted\":4}")
    );
    assert_eq!(
        a.fleet_summaries(Some(&id("h4")), 10).await.unwrap().len(),
        0
    );
    let other = b.fleet_summaries(None, 10).await.unwrap();
    assert_eq!(other.len(), 1, "nothing crossed tenants");
    assert_eq!(
        other[0].kept.as_ref().map(|k| k.basis.as_str()),
        Some("basis-9")
    );
}

// ---- Issue 12, point 2: two replicas on one database ----

/// Two handles on one database (two server replicas) racing each other: nothing is lost,
/// nothing is done twice. A failure the backend calls retryable is retried, as a client
/// of the server retries a 503.
mod replicas {
    use super::{hash_secret, id, log_entry, new_tenant, ts, Harness};
    use crate::{LogScope, SequenceCheck, Store, StoreError};
    use futures::future::join_all;
    use patchday_types::api::{Approval, Decision, Group, StateReport};
    use patchday_types::{GroupId, HostId, Inventory, UpdateState};
    use std::future::Future;

    /// Runs `f` until it does not fail retryably (at most 50 tries).
    async fn retrying<T, F, Fut>(mut f: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut tries = 0;
        loop {
            match f().await {
                Err(e) if e.is_retryable() && tries < 50 => tries += 1,
                other => return other,
            }
        }
    }

    async fn hosts_in_group(store: &dyn Store, tenant: &str, n: usize) -> Vec<HostId> {
        let t = new_tenant(store, tenant).await;
        t.create_group(&Group {
            id: id("web"),
            name: "Web".into(),
        })
        .await
        .unwrap();
        let mut hosts = Vec::new();
        for i in 0..n {
            let h: HostId = id(&format!("h{i:02}"));
            t.create_host(
                &h,
                h.as_str(),
                &hash_secret(&format!("cred-{h}")),
                ts("2026-12-01T10:00:00Z"),
            )
            .await
            .unwrap();
            t.set_host_groups(&h, &[id("web")]).await.unwrap();
            hosts.push(h);
        }
        hosts
    }

    /// Two replicas record approvals (each with its log entry) while both take check-ins
    /// (inventory, sequence, states): every approval and log entry is there once, every
    /// host's last sequence and states are what its last check-in said.
    pub async fn replicas_approve_and_check_in_at_once(h: &dyn Harness) {
        let a = h.store();
        let b = h.replica().await;
        let hosts = hosts_in_group(a, "race", 8).await;
        let (ta, tb) = (
            a.tenant(&id("race")).await.unwrap(),
            b.tenant(&id("race")).await.unwrap(),
        );
        let approve = |n: usize| Approval {
            update: id(&format!("PD-{n}")),
            group: id::<GroupId>("web"),
            decision: Decision::Approve,
            deadline: None,
            decided_at: ts("2026-12-01T11:00:00Z"),
            decided_by: "alice".into(),
            reason: None,
            emergency: false,
            remove: false,
        };
        let mut work: Vec<std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>>> = Vec::new();
        for n in 0..40 {
            let t = if n % 2 == 0 { ta.clone() } else { tb.clone() };
            work.push(Box::pin(async move {
                let log = log_entry(Some("race"), "approve", "2026-12-01T11:00:00Z");
                let decision = approve(n);
                retrying(|| t.put_approval_logged(&decision, &log))
                    .await
                    .unwrap();
            }));
        }
        for (i, host) in hosts.iter().enumerate() {
            for round in 1..=5u64 {
                let t = if (i + round as usize).is_multiple_of(2) {
                    ta.clone()
                } else {
                    tb.clone()
                };
                let host = host.clone();
                work.push(Box::pin(async move {
                    let now = ts("2026-12-01T12:00:00Z");
                    let inv = Inventory {
                        hostname: format!("{host}-round-{round}"),
                        ..Default::default()
                    };
                    retrying(|| t.save_inventory(&host, &inv, now))
                        .await
                        .unwrap();
                    retrying(|| t.advance_sequence(&host, round, now))
                        .await
                        .unwrap();
                    let states = [StateReport {
                        update: id("PD-0"),
                        state: UpdateState::Installed,
                        message: None,
                    }];
                    retrying(|| t.put_states(&host, &states, now))
                        .await
                        .unwrap();
                }));
            }
        }
        join_all(work).await;
        let approvals = ta.list_approvals().await.unwrap();
        assert_eq!(
            approvals.len(),
            40,
            "every approval of both replicas is there once"
        );
        let log = a
            .list_log(&LogScope::Tenant(id("race")), None, 1000)
            .await
            .unwrap();
        assert_eq!(log.len(), 40, "one log entry per approval");
        let mut seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
        seqs.dedup();
        assert_eq!(seqs.len(), 40, "log sequence numbers are unique");
        for host in &hosts {
            let s = tb.host_signing(host).await.unwrap();
            assert!(
                (1..=5).contains(&s.last_sequence),
                "{host}: a sequence number was accepted"
            );
            let states = ta.states(host).await.unwrap();
            assert_eq!(states.len(), 1, "{host}: one state per update");
            assert!(
                tb.inventory(host).await.unwrap().is_some(),
                "{host}: inventory kept"
            );
            assert!(
                tb.host(host).await.unwrap().last_seen.is_some(),
                "{host}: seen"
            );
        }
    }

    /// The same sequence numbers offered through two replicas at once: each is accepted
    /// exactly once (a signed check-in cannot be replayed through another replica).
    pub async fn replicas_accept_each_sequence_once(h: &dyn Harness) {
        let a = h.store();
        let b = h.replica().await;
        let hosts = hosts_in_group(a, "seq", 1).await;
        let host = &hosts[0];
        let (ta, tb) = (
            a.tenant(&id("seq")).await.unwrap(),
            b.tenant(&id("seq")).await.unwrap(),
        );
        let now = ts("2026-12-01T12:00:00Z");
        let mut work = Vec::new();
        for n in 1..=30u64 {
            for t in [ta.clone(), tb.clone()] {
                work.push(
                    async move { retrying(|| t.advance_sequence(host, n, now)).await.unwrap() },
                );
            }
        }
        let outcomes = join_all(work).await;
        let accepted = outcomes
            .iter()
            .filter(|o| **o == SequenceCheck::Accepted)
            .count();
        assert!(
            (1..=30).contains(&accepted),
            "each number is accepted by one replica at most: {accepted} accepted of 30"
        );
        let last = ta.host_signing(host).await.unwrap().last_sequence;
        assert_eq!(last, 30, "the highest number offered is the last accepted");
        assert_eq!(
            tb.advance_sequence(host, 30, now).await.unwrap(),
            SequenceCheck::Replayed { last: 30 },
            "a number accepted through one replica is a replay through the other"
        );
        // Accepted numbers strictly increase: a number is never accepted twice.
        let mut pairs = Vec::new();
        for (i, o) in outcomes.iter().enumerate() {
            if *o == SequenceCheck::Accepted {
                pairs.push(i / 2 + 1);
            }
        }
        let before = pairs.len();
        pairs.dedup();
        assert_eq!(
            pairs.len(),
            before,
            "no number was accepted by both replicas"
        );
    }

    /// One host's check-in handled by two replicas at once (a retry through the load
    /// balancer): each state change is appended to the history once.
    pub async fn replicas_record_each_state_change_once(h: &dyn Harness) {
        let a = h.store();
        let b = h.replica().await;
        let hosts = hosts_in_group(a, "hist-race", 1).await;
        let host = &hosts[0];
        let (ta, tb) = (
            a.tenant(&id("hist-race")).await.unwrap(),
            b.tenant(&id("hist-race")).await.unwrap(),
        );
        let states = |s: UpdateState| {
            (0..5)
                .map(|n| StateReport {
                    update: id(&format!("PD-{n}")),
                    state: s,
                    message: None,
                })
                .collect::<Vec<_>>()
        };
        for s in [
            UpdateState::Needed,
            UpdateState::Approved,
            UpdateState::Installed,
        ] {
            let now = ts("2026-12-01T12:00:00Z");
            let list = states(s);
            let (x, y) = futures::join!(
                retrying(|| ta.record_host_states(host, &list, now, None)),
                retrying(|| tb.record_host_states(host, &list, now, None)),
            );
            let appended = x.unwrap().len() + y.unwrap().len();
            assert_eq!(
                appended, 5,
                "{s:?}: five changes, appended once between the replicas"
            );
        }
        let history = ta.history(Some(host), None, 1000).await.unwrap();
        assert_eq!(history.len(), 15, "three changes of five updates");
    }

    /// Two replicas enrol hosts into a tenant with a quota at once: exactly the quota
    /// is enrolled, the rest is refused.
    pub async fn replicas_share_one_host_quota(h: &dyn Harness) {
        let a = h.store();
        let b = h.replica().await;
        let t = new_tenant(a, "quota-race").await;
        t.set_max_hosts(
            Some(5),
            &log_entry(Some("quota-race"), "quota", "2026-12-01T10:00:00Z"),
        )
        .await
        .unwrap();
        let tb = b.tenant(&id("quota-race")).await.unwrap();
        let mut work = Vec::new();
        for i in 0..12 {
            let t = if i % 2 == 0 { t.clone() } else { tb.clone() };
            work.push(async move {
                let h: HostId = id(&format!("q{i:02}"));
                let cred = hash_secret(&format!("cred-q{i}"));
                retrying(|| t.create_host(&h, "q", &cred, ts("2026-12-01T10:00:00Z"))).await
            });
        }
        let outcomes = join_all(work).await;
        let created = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(created, 5, "exactly the quota is enrolled: {outcomes:?}");
        assert!(
            outcomes
                .iter()
                .all(|o| o.is_ok() || matches!(o, Err(StoreError::Refused(_)))),
            "the others are refused by the quota: {outcomes:?}"
        );
        assert_eq!(t.list_hosts().await.unwrap().len(), 5);
    }

    /// Log entries appended through two replicas at once get distinct, increasing
    /// sequence numbers, and all of them are listed.
    pub async fn replicas_number_log_entries_uniquely(h: &dyn Harness) {
        let a = h.store();
        let b = h.replica().await;
        let b: &dyn Store = &*b;
        let mut work = Vec::new();
        for i in 0..50 {
            let s = if i % 2 == 0 { a } else { b };
            work.push(async move {
                let entry = log_entry(None, "race", "2026-12-01T10:00:00Z");
                retrying(|| s.append_log(&entry)).await.unwrap()
            });
        }
        let mut seqs = join_all(work).await;
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), 50, "no sequence number was given twice");
        let listed = a.list_log(&LogScope::Everything, None, 1000).await.unwrap();
        let listed: Vec<u64> = listed.iter().map(|e| e.seq).collect();
        assert_eq!(listed, seqs, "every entry is listed, in sequence order");
    }

    /// Two replicas save the facts of two hosts that move from one shared suite to the
    /// next at once, round after round: no part ever names a blob that is gone, and the
    /// suites nobody names any more are swept (issue 12, point 7).
    pub async fn replicas_share_facts_blobs(h: &dyn Harness) {
        let a = h.store();
        let b = h.replica().await;
        let t = new_tenant(a, "facts-race").await;
        let tb = b.tenant(&id("facts-race")).await.unwrap();
        let now = ts("2026-12-01T10:00:00Z");
        for (i, host) in ["f1", "f2"].iter().enumerate() {
            t.create_host(&id(host), host, &hash_secret(&format!("cred-f{i}")), now)
                .await
                .unwrap();
        }
        let facts = |host: &str, round: usize| crate::StoredFacts {
            sha256: format!("{host}-{round}"),
            parts: [
                (String::new(), format!("doc-{host}-{round}")),
                ("suite:bookworm".to_string(), format!("suite-{round}")),
            ]
            .into(),
            at: now,
        };
        let blobs = |host: &str, round: usize| {
            vec![
                (format!("doc-{host}-{round}"), host.as_bytes().to_vec()),
                (format!("suite-{round}"), b"suite".to_vec()),
            ]
        };
        for round in 0..15 {
            let (fa, fb) = (facts("f1", round), facts("f2", round));
            let (ba, bb) = (blobs("f1", round), blobs("f2", round));
            let (h1, h2): (HostId, HostId) = (id("f1"), id("f2"));
            let (x, y) = futures::join!(
                retrying(|| t.save_facts(&h1, &fa, &ba)),
                retrying(|| tb.save_facts(&h2, &fb, &bb)),
            );
            x.unwrap();
            y.unwrap();
            for (host, f) in [("f1", &fa), ("f2", &fb)] {
                let named: Vec<String> = f.parts.values().cloned().collect();
                let held = t.facts_blobs(&named).await.unwrap();
                assert_eq!(
                    held.len(),
                    2,
                    "round {round}: {host}'s parts name blobs that are gone"
                );
            }
        }
        let old: Vec<String> = (0..14).map(|r| format!("suite-{r}")).collect();
        assert_eq!(
            t.missing_facts_blobs(&old).await.unwrap().len(),
            14,
            "suites no host names any more are swept"
        );
    }

    /// Two replicas race for the same lease, many times: each round exactly one holds
    /// it; it changes hands only after it expired (issue 12, point 5).
    /// Issue 12, point 1: a certificate installed through one replica is the one the
    /// other reads; two rotations racing to the same version: exactly one is installed
    /// and logged.
    pub async fn replicas_share_one_director_certificate(h: &dyn Harness) {
        use crate::DirectorCertificate;
        let a = h.store();
        let b = h.replica().await;
        let b: &dyn Store = &*b;
        let cert = |version: u64, keyid: &str| DirectorCertificate {
            version,
            keyid: keyid.into(),
            bytes: format!("{{\"version\":{version},\"key\":\"{keyid}\"}}").into_bytes(),
        };
        let log = log_entry(None, "director.certificate", "2026-12-02T10:00:00Z");
        assert!(a
            .put_director_certificate(&cert(1, "k1"), &log)
            .await
            .unwrap());
        assert_eq!(b.director_certificate().await.unwrap(), Some(cert(1, "k1")));
        for round in 2..12u64 {
            let (ca, cb) = (cert(round, "ka"), cert(round, "kb"));
            let (x, y) = futures::join!(
                retrying(|| a.put_director_certificate(&ca, &log)),
                retrying(|| b.put_director_certificate(&cb, &log)),
            );
            let won = |r: &Result<bool, StoreError>| matches!(r, Ok(true));
            let lost = |r: &Result<bool, StoreError>| matches!(r, Err(StoreError::Conflict(_)));
            assert!(
                (won(&x) && lost(&y)) || (lost(&x) && won(&y)),
                "round {round}: one install wins, the other is told: {x:?} {y:?}"
            );
            let winner = if won(&x) { "ka" } else { "kb" };
            assert_eq!(
                a.director_certificate().await.unwrap(),
                Some(cert(round, winner))
            );
            assert_eq!(
                b.director_certificate().await.unwrap(),
                Some(cert(round, winner))
            );
        }
        let logged = a
            .list_log(&LogScope::Everything, None, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "director.certificate")
            .count();
        assert_eq!(logged, 11, "one log entry per installed certificate");
    }

    pub async fn replicas_take_a_lease_once(h: &dyn Harness) {
        let a = h.store();
        let b = h.replica().await;
        let b: &dyn Store = &*b;
        let t0 = ts("2026-12-01T10:00:00Z");
        for round in 0..20i64 {
            // Each round starts after the last one's lease expired.
            let now = t0 + jiff::SignedDuration::from_secs(round * 100);
            let until = now + jiff::SignedDuration::from_secs(60);
            let (x, y) = futures::join!(
                retrying(|| a.acquire_lease("rollout", "replica-a", now, until)),
                retrying(|| b.acquire_lease("rollout", "replica-b", now, until)),
            );
            let (x, y) = (x.unwrap(), y.unwrap());
            assert!(
                x ^ y,
                "round {round}: exactly one replica holds the lease ({x}, {y})"
            );
            let (winner, loser): (&dyn Store, &dyn Store) = if x { (a, b) } else { (b, a) };
            let (w, l) = if x {
                ("replica-a", "replica-b")
            } else {
                ("replica-b", "replica-a")
            };
            let later = now + jiff::SignedDuration::from_secs(30);
            let renew = later + jiff::SignedDuration::from_secs(60);
            assert!(!loser
                .acquire_lease("rollout", l, later, renew)
                .await
                .unwrap());
            assert!(winner
                .acquire_lease("rollout", w, later, renew)
                .await
                .unwrap());
        }
        // Leases are per name.
        assert!(a
            .acquire_lease(
                "cleanup",
                "replica-a",
                t0,
                t0 + jiff::SignedDuration::from_secs(60)
            )
            .await
            .unwrap());
    }
}

// ---- Issue 12, point 5: push across replicas ----

mod push {
    use super::{id, Harness};
    use crate::{PushAnnouncement, PushScope, Store, StoreError};
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn tenant(t: &str) -> PushScope {
        PushScope::Tenant(id(t))
    }

    async fn read(s: &dyn Store) -> BTreeMap<PushScope, u64> {
        s.push_generations().await.unwrap().into_iter().collect()
    }

    pub async fn push_generations_rise_and_never_fall(s: &dyn Store) {
        assert!(read(s).await.is_empty(), "a new store has no generation");
        // The first raise takes the floor (a server's start time, in seconds).
        let first = s
            .raise_push_generations(&[(PushScope::Everyone, 1_000)])
            .await
            .unwrap();
        assert_eq!(first, [(PushScope::Everyone, 1_000)]);
        // Without a floor above it: one more.
        let next = s
            .raise_push_generations(&[(PushScope::Everyone, 0)])
            .await
            .unwrap();
        assert_eq!(next, [(PushScope::Everyone, 1_001)]);
        // A scope named twice is raised once, to its larger floor; a floor below the
        // stored value still raises it by one.
        let mut both = s
            .raise_push_generations(&[
                (tenant("acme"), 0),
                (tenant("acme"), 5),
                (PushScope::Everyone, 10),
            ])
            .await
            .unwrap();
        both.sort();
        assert_eq!(both, [(PushScope::Everyone, 1_002), (tenant("acme"), 5)]);
        // A tenant never raised starts at one.
        assert_eq!(
            s.raise_push_generations(&[(tenant("globex"), 0)])
                .await
                .unwrap(),
            [(tenant("globex"), 1)]
        );
        assert_eq!(
            read(s).await,
            BTreeMap::from([
                (PushScope::Everyone, 1_002),
                (tenant("acme"), 5),
                (tenant("globex"), 1)
            ])
        );
        // A flood of scopes at once (more than are announced one by one) is raised whole.
        let flood: Vec<(PushScope, u64)> =
            (0..200).map(|i| (tenant(&format!("t{i:03}")), 7)).collect();
        assert_eq!(s.raise_push_generations(&flood).await.unwrap().len(), 200);
        let all = read(s).await;
        assert_eq!(all.len(), 203);
        assert_eq!(all[&tenant("t199")], 7);
        assert!(s.raise_push_generations(&[]).await.unwrap().is_empty());
    }

    /// The next announcement within ten seconds.
    async fn heard(feed: &mut Box<dyn crate::PushAnnouncements>, what: &str) -> PushAnnouncement {
        tokio::time::timeout(Duration::from_secs(10), feed.next())
            .await
            .unwrap_or_else(|_| panic!("no announcement within 10 s: {what}"))
            .unwrap_or_else(|e| panic!("the announcements failed ({e}): {what}"))
    }

    pub async fn replicas_hear_each_others_push_raises(h: &dyn Harness) {
        let a = h.store();
        let b = h.replica().await;
        let b: &dyn Store = &*b;
        // Two replicas raising one tenant at once lose no raise.
        let mut tries = Vec::new();
        let acme = [(tenant("acme"), 0)];
        for i in 0..20 {
            let (x, y) = futures::join!(
                retrying(|| a.raise_push_generations(&acme)),
                retrying(|| b.raise_push_generations(&acme)),
            );
            tries.push((i, x.unwrap(), y.unwrap()));
        }
        for (i, x, y) in &tries {
            assert_ne!(x, y, "round {i}: two raises at once got one value");
        }
        assert_eq!(read(a).await[&tenant("acme")], 40, "no raise was lost");
        assert_eq!(read(b).await, read(a).await, "both replicas read the same");

        // A replica listening hears the other's raises as they commit.
        let Some(mut feed) = b.push_announcements().await.unwrap() else {
            // One process per database (SQLite): nothing to announce to.
            return;
        };
        assert_eq!(
            heard(&mut feed, "the subscription's first").await,
            PushAnnouncement::Resync,
            "a new subscription first asks for a read of every generation"
        );
        let raised = a
            .raise_push_generations(&[(tenant("acme"), 0)])
            .await
            .unwrap();
        assert_eq!(raised, [(tenant("acme"), 41)]);
        assert_eq!(
            heard(&mut feed, "a raise on the other replica").await,
            PushAnnouncement::Raised(tenant("acme"), 41)
        );
        let mut both = a
            .raise_push_generations(&[(PushScope::Everyone, 500), (tenant("globex"), 0)])
            .await
            .unwrap();
        both.sort();
        let mut got = vec![
            heard(&mut feed, "the first of two raised together").await,
            heard(&mut feed, "the second of two raised together").await,
        ];
        got.sort_by_key(|a| format!("{a:?}"));
        assert_eq!(
            got,
            [
                PushAnnouncement::Raised(PushScope::Everyone, 500),
                PushAnnouncement::Raised(tenant("globex"), 1)
            ]
        );
        // A flood is announced as one resync, not one notification per scope.
        let flood: Vec<(PushScope, u64)> =
            (0..100).map(|i| (tenant(&format!("f{i:03}")), 0)).collect();
        a.raise_push_generations(&flood).await.unwrap();
        assert_eq!(
            heard(&mut feed, "a flood of raises").await,
            PushAnnouncement::Resync
        );
    }

    /// Runs `f` until it does not fail retryably (at most 50 tries).
    async fn retrying<T, F, Fut>(mut f: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut tries = 0;
        loop {
            match f().await {
                Err(e) if e.is_retryable() && tries < 50 => tries += 1,
                other => return other,
            }
        }
    }
}

// ---- Issue 13, point 1: baselines ----

/// The latest report per host and baseline replaces the one before (a later run without
/// drift keeps when drift was last found and how often); drift is also kept as history,
/// newest first; another tenant sees none of it.
pub async fn baseline_reports(store: &dyn Store) {
    use patchday_types::api::BaselineReport;
    let acme = new_tenant(store, "bl-acme").await;
    let other = new_tenant(store, "bl-other").await;
    let now = ts("2026-12-02T04:00:00Z");
    acme.create_host(&id("bh1"), "alpha", &hash_secret("cred-bh1"), now)
        .await
        .unwrap();
    assert!(acme.baseline_reports().await.unwrap().is_empty());
    let report = |version: &str, drift: &[&str], repaired: bool| BaselineReport {
        name: "web-fw".into(),
        version: version.into(),
        drift: drift.iter().map(|d| d.to_string()).collect(),
        repaired,
        error: None,
        measured: [("firewall.https.packets".to_string(), 7u64)]
            .into_iter()
            .collect(),
    };
    // Nothing reported, nothing stored.
    acme.save_baseline_reports(&id("bh1"), &[], now)
        .await
        .unwrap();
    assert!(acme.baseline_reports().await.unwrap().is_empty());
    acme.save_baseline_reports(
        &id("bh1"),
        &[report("1", &["rule added by hand"], true)],
        now,
    )
    .await
    .unwrap();
    let later = ts("2026-12-02T05:00:00Z");
    acme.save_baseline_reports(&id("bh1"), &[report("2", &[], false)], later)
        .await
        .unwrap();
    let rows = acme.baseline_reports().await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!(
        (r.hostname.as_str(), r.baseline.as_str(), r.version.as_str()),
        ("alpha", "web-fw", "2")
    );
    assert!(r.drift.is_empty() && !r.repaired);
    assert_eq!(r.reported_at, later);
    assert_eq!(
        r.last_drift_at,
        Some(now),
        "when drift was last found stays"
    );
    assert_eq!(r.drift_runs, 1);
    assert_eq!(r.measured["firewall.https.packets"], 7);
    let drift = acme.baseline_drift(10).await.unwrap();
    assert_eq!(drift.len(), 1);
    assert_eq!(drift[0].drift, vec!["rule added by hand".to_string()]);
    assert!(drift[0].repaired);
    assert_eq!(drift[0].version, "1");
    // Tenant isolation.
    assert!(other.baseline_reports().await.unwrap().is_empty());
    assert!(other.baseline_drift(10).await.unwrap().is_empty());
}
