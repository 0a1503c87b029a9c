//! The Patchday server.
//!
//! Owns: the `/v1` HTTP API, authentication and tenant scoping of every request,
//! catalog intake (verified against the pinned root before anything is stored),
//! serving TUF metadata and payloads to agents, and computing applicability and
//! compliance from what agents report. Must not touch: signing keys of the catalog
//! (it never has them), installing anything.
//!
//! It also defends itself (issue 8): the accept loop bounds connections and slow
//! clients (`listener`), failed logins are limited per address (`ratelimit`), a full
//! disk is answered 507 and shown in `/v1/health` (`storage`), payloads are hashed
//! before they are served and damaged ones quarantined ([`scrub`] checks them all),
//! and the trusted catalog state is swapped in a way a crash can recover from.

// Issue 14, points 1-3: who may hold compliance access tokens.
mod access;
pub mod admission; // issue 10: agent requests admitted at the measured rate
mod auth;
pub mod backup; // issue 12, point 6: backup and restore of a SQLite server
mod catalog;
mod catalog_expiry; // issue 9, point 5
mod catalog_index; // issue 9, point 6
pub mod cleanup; // issue 10, point 7 (second half)
mod clock;
mod closure; // issue 9, point 4: dependency payloads, repair assignments
mod compliance;
mod console; // issue 11, point 1: the operator console
mod director;
mod error;
mod facts; // issue 12, point 7: audit facts once per distinct content
mod fleet_view; // issue 11, point 1: stored evaluations for the fleet views
pub mod freshness;
mod host_credentials; // issue 10, point 8: host credentials remembered for seconds
mod lease; // issue 12, point 5: background work on one replica at a time
mod limits; // finding 4 (issue 8)
pub mod listener;
pub mod metrics; // issue 11, point 4
pub mod mirror_schedule; // issue 9, point 1
pub mod notify; // issue 11, point 5
pub mod openapi; // issue 11, point 3
pub mod push; // issue 10, point 6
mod push_relay; // issue 12, point 5: push events across replicas, through the store
mod ratelimit;
mod resume; // issue 12, point 4: a cut-off push is resumed
pub mod rollout; // issue 10, points 2 and 3 (rings)
mod routes;
mod state;
mod storage;
mod take_back; // issue 10, point 3: decline with removal
pub mod tls;

pub use clock::{Clock, SystemClock};
pub use state::{DatabaseChoice, ServerConfig};

use anyhow::Context;
use patchday_store::{hash_secret, Store, TokenRecord};
use patchday_types::api::Role;
use std::net::SocketAddr;
use std::sync::Arc;

/// What `init` found or made.
pub struct Initialised {
    /// The application state, ready to serve.
    pub state: state::AppState,
    /// The first provider-admin token, when this start created it (shown once).
    pub first_admin_token: Option<String>,
}

/// Prepares the data directory: database, content store, pinned catalog root, and a
/// first provider-admin token when there is none.
pub async fn init(config: &ServerConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Initialised> {
    let state = state::AppState::open(config, clock.clone()).await?;
    if let Some(online) = &config.online_timestamp {
        freshness::check(online, state.store.as_ref()).await?;
        tokio::spawn(freshness::run(state.clone(), online.clone()));
    }
    // Issue 9, point 5: the log shows every role's expiry and warns before one expires.
    tokio::spawn(catalog_expiry::watch(
        state.clone(),
        config.expiry_check_every,
    ));
    // Issue 9, point 1: the archive sync on a schedule.
    if let Some(schedule) = &config.mirror {
        tokio::spawn(mirror_schedule::run(state.clone(), schedule.clone()));
    }
    // Issue 12, point 5: this replica's push events to the others, and theirs to it.
    push_relay::spawn(&state).await;
    // Issue 10, points 2 and 3 (rings): rings advance on evidence, failures halt.
    tokio::spawn(rollout::run(state.clone(), config.rollout_every));
    // Issue 10, point 7: payloads no host can need leave the content store.
    tokio::spawn(cleanup::run(state.clone(), config.cleanup_every));
    // Issue 11, point 5: notifications, from the outbox, with retries.
    crate::notify::check_names(&config.notify.targets)?;
    tokio::spawn(notify::run(state.clone()));
    let mut first = None;
    if !state.store.has_provider_admin().await? {
        let secret = auth::new_secret("pd");
        let record = TokenRecord {
            hash: hash_secret(&secret),
            name: "first-admin".into(),
            role: Role::ProviderAdmin,
            tenant: None,
            created_at: clock.now(),
        };
        // Finding 3/10 (issue 8): listed by its prefix, and the log starts with it.
        let prefix: String = secret.chars().take(11).collect();
        let entry = patchday_types::api::LogEntry {
            seq: 0,
            at: record.created_at,
            tenant: None,
            actor: "patchday server".into(),
            actor_id: String::new(),
            source: "local".into(),
            action: "token.create".into(),
            object: format!("token {}", record.hash.chars().take(12).collect::<String>()),
            detail: serde_json::json!({ "name": record.name, "prefix": prefix, "role": record.role }),
        };
        state
            .store
            .create_token(&record, &prefix, None, &entry)
            .await?;
        first = Some(secret);
    }
    Ok(Initialised {
        state,
        first_admin_token: first,
    })
}

/// The API router over an initialised state.
pub fn router(state: state::AppState) -> axum::Router {
    routes::router(state)
}

/// Issue 11, point 3: the OpenAPI document of the `/v1` API (also at `/v1/openapi.json`).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    routes::document()
}

/// Binds `listen` and returns the bound address and the serving future.
pub async fn bind(
    state: state::AppState,
    listen: SocketAddr,
) -> anyhow::Result<(
    SocketAddr,
    impl std::future::Future<Output = std::io::Result<()>>,
)> {
    // Issue 10, point 6 (push): a backlog sized for a fleet reconnecting at once.
    let listener = listener::bind_with_backlog(listen, state.config.listen_backlog)
        .with_context(|| format!("cannot listen on {listen}: is another server running there?"))?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let addr = listener.local_addr()?;
    // The listener puts the peer address in each request (finding 10: the operator log
    // says from where; finding 9: failed logins are limited per address).
    let limits = state.config.limits;
    let app = router(state);
    Ok((addr, listener::serve(listener, app, limits, None)))
}

/// Binds `listen` and returns the bound address and the HTTPS serving future.
pub async fn bind_tls(
    state: state::AppState,
    listen: SocketAddr,
    files: tls::TlsFiles,
) -> anyhow::Result<(
    SocketAddr,
    impl std::future::Future<Output = anyhow::Result<()>>,
)> {
    let listener = listener::bind_with_backlog(listen, state.config.listen_backlog)
        .with_context(|| format!("cannot listen on {listen}: is another server running there?"))?;
    let addr = listener.local_addr()?;
    let limits = state.config.limits;
    // Issue 11, point 1: over HTTPS the console's cookies are `Secure`.
    let app = router(state).layer(axum::middleware::map_response(
        console::session::secure_cookies,
    ));
    Ok((addr, async move {
        tls::serve(listener, &files, app, limits).await
    }))
}

/// Keeps the `Store` trait object type nameable for callers.
pub type DynStore = Arc<dyn Store>;

// Issue 8, finding 14: `patchday server scrub`.

/// What a scrub of the content store found.
#[derive(Debug, Default)]
pub struct ScrubReport {
    /// Blobs checked.
    pub checked: usize,
    /// Blobs whose bytes no longer match their sha256 (now quarantined).
    pub damaged: Vec<String>,
    /// Payloads the current catalog lists that the content store does not have (evicted
    /// ones left out: issue 10, point 7).
    pub missing: Vec<String>,
}

impl ScrubReport {
    /// Whether everything was intact.
    pub fn clean(&self) -> bool {
        self.damaged.is_empty() && self.missing.is_empty()
    }
}

/// Hashes every stored payload of the server configured by `config` (its directory or,
/// issue 12 point 3, its bucket), quarantines damaged ones, and lists what the current
/// catalog names but the store lacks. A later catalog push repairs both.
pub async fn scrub(config: &ServerConfig) -> anyhow::Result<ScrubReport> {
    let data_dir = config.data_dir.as_path();
    if let Some(dir) = config.content_directory() {
        anyhow::ensure!(
            dir.is_dir(),
            "{} has no content store: is it a server data directory (--data), or are its payloads elsewhere (--content)?",
            dir.display()
        );
    }
    let content = state::open_content(config).await?;
    let mut report = ScrubReport::default();
    for key in content.keys().await? {
        report.checked += 1;
        if !content.verify(&key).await? {
            tracing::error!(sha256 = %key, "stored payload is damaged: quarantined");
            content.quarantine(&key).await?;
            report.damaged.push(key);
        }
    }
    let db = data_dir.join("patchday.db");
    if db.exists() {
        let store = patchday_store_sqlite::SqliteStore::open(&db)
            .await
            .with_context(|| format!("opening {}", db.display()))?;
        let names: Vec<String> = store
            .catalog_updates()
            .await?
            .iter()
            .flat_map(|u| {
                std::iter::once(patchday_types::UpdateDocument::target_name(&u.id))
                    .chain(u.payloads.iter().map(|p| p.target.clone()))
            })
            .collect();
        // Issue 10, point 7: an evicted payload is absent on purpose.
        let evicted = cleanup::evicted_digests(&store).await?;
        for t in store.catalog_targets(&names).await? {
            if content.len(&t.sha256).await?.is_none() && !evicted.contains(&t.sha256) {
                report.missing.push(format!("{} ({})", t.name, t.sha256));
            }
        }
    }
    Ok(report)
}
