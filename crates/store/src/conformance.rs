//! One behavioural suite for every storage backend (SQLite now, PostgreSQL later).
//!
//! A backend's test calls [`run`] with a fresh, empty store. Each step panics with a
//! message naming the broken promise, which is what a test wants.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use crate::{hash_secret, CatalogRecord, CatalogTarget, Store, StoreError, TokenRecord};
use jiff::Timestamp;
use patchday_types::api::{
    Approval, CatalogStatus, Decision, Group, PatchDayConfig, Role, StateReport, Tenant,
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

/// Runs every conformance step against an empty store.
pub async fn run(store: &dyn Store) {
    tenants_and_tokens(store).await;
    tenant_isolation(store).await;
    approvals_and_states(store).await;
    catalog_replacement(store).await;
    storage_probe(store).await;
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
    assert!(matches!(
        globex
            .save_inventory(&id("h1"), &Inventory::default(), now)
            .await,
        Err(StoreError::NotFound(_))
    ));
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
    acme.save_facts(&id("h1"), r#"{"hostname":"alpha"}"#, later)
        .await
        .unwrap();
    assert_eq!(
        acme.facts(&id("h1")).await.unwrap(),
        Some((r#"{"hostname":"alpha"}"#.to_string(), later))
    );
    assert!(matches!(
        globex.save_facts(&id("h1"), "{}", later).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        globex.facts(&id("h1")).await,
        Err(StoreError::NotFound(_))
    ));
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
    };
    acme.put_approval(&a).await.unwrap();
    assert_eq!(acme.list_approvals().await.unwrap(), vec![a.clone()]);
    assert!(
        globex.list_approvals().await.unwrap().is_empty(),
        "approvals leak across tenants"
    );
    // A new decision for the same (update, group) replaces the old one.
    let d = Approval {
        decision: Decision::Decline,
        deadline: None,
        ..a
    };
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
        },
        updates: vec![doc.clone()],
        targets: vec![target.clone()],
        metadata: vec![("timestamp.json".into(), b"{}".to_vec())],
    };
    store.replace_catalog(&rec).await.unwrap();
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
        )
        .await
        .unwrap();
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
        },
        ..Default::default()
    };
    store.replace_catalog(&empty).await.unwrap();
    assert!(store.catalog_updates().await.unwrap().is_empty());
    assert_eq!(
        store.catalog_metadata("timestamp.json").await.unwrap(),
        None
    );
    let _: TenantId = id("acme");
}

// Issue 8, finding 11 (server-hardening): the health probe commits a write, repeatably,
// and changes nothing anyone reads.
async fn storage_probe(store: &dyn Store) {
    let before = store.list_tenants().await.unwrap();
    store.probe_write(ts("2026-12-08T02:00:00Z")).await.unwrap();
    store.probe_write(ts("2026-12-08T02:00:01Z")).await.unwrap();
    assert_eq!(store.list_tenants().await.unwrap(), before);
}
