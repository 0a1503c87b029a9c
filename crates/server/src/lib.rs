//! The Patchday server.
//!
//! Owns: the `/v1` HTTP API, authentication and tenant scoping of every request,
//! catalog intake (verified against the pinned root before anything is stored),
//! serving TUF metadata and payloads to agents, and computing applicability and
//! compliance from what agents report. Must not touch: signing keys of the catalog
//! (it never has them), installing anything.

mod auth;
mod catalog;
mod clock;
mod compliance;
mod director;
mod error;
pub mod freshness;
mod limits; // finding 4 (issue 8)
mod routes;
mod state;
pub mod tls;

pub use clock::{Clock, SystemClock};
pub use state::ServerConfig;

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
        freshness::check(online, &config.data_dir).await?;
        tokio::spawn(freshness::run(state.clone(), online.clone()));
    }
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

/// Binds `listen` and returns the bound address and the serving future.
pub async fn bind(
    state: state::AppState,
    listen: SocketAddr,
) -> anyhow::Result<(
    SocketAddr,
    impl std::future::Future<Output = std::io::Result<()>>,
)> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}: is another server running there?"))?;
    let addr = listener.local_addr()?;
    // The peer address reaches handlers (finding 10: the operator log says from where).
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    Ok((addr, async move { axum::serve(listener, app).await }))
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
    let listener = std::net::TcpListener::bind(listen)
        .with_context(|| format!("cannot listen on {listen}: is another server running there?"))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let app = router(state);
    Ok((addr, async move { tls::serve(listener, &files, app).await }))
}

/// Keeps the `Store` trait object type nameable for callers.
pub type DynStore = Arc<dyn Store>;
