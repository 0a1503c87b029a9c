//! Shared server state and configuration.

use crate::clock::Clock;
use anyhow::Context;
use patchday_content::{ContentStore, LocalDisk};
use patchday_store::Store;
use patchday_store_sqlite::SqliteStore;
use std::path::PathBuf;
use std::sync::Arc;

/// Server configuration (from flags, environment or `server.toml`).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Data directory: database, content store, pinned root.
    pub data_dir: PathBuf,
    /// Issue 12, point 2: the database (`--database postgres://…`); `None`: SQLite in
    /// the data directory.
    pub database: Option<DatabaseChoice>,
    /// Issue 12, points 3 and 5: the payload directory, when not `DATA/content` (a
    /// directory all replicas share, e.g. on a network filesystem).
    pub content_dir: Option<PathBuf>,
    /// Issue 12, point 3: payloads in an S3-compatible bucket instead of a directory
    /// (`--content s3://BUCKET/PREFIX`).
    pub content_s3: Option<patchday_content::s3::S3Config>,
    /// Issue 12, point 3: answer payload downloads with a redirect to a presigned URL
    /// of this lifetime (object stores only); `None`: stream them through the server.
    pub content_redirect: Option<std::time::Duration>,
    /// The catalog root to pin on first start (`root.json` from the publisher).
    pub catalog_root: Option<PathBuf>,
    /// Largest accepted catalog upload in bytes.
    pub max_catalog_bytes: u64,
    /// Seconds agents should wait between check-ins.
    pub poll_seconds: u64,
    /// Advisory feeds for assessing the audit facts agents report.
    pub audit_feeds: patchday_audit::feeds::FeedPaths,
    /// The catalog's timestamp key, when the server signs and refreshes timestamps.
    pub online_timestamp: Option<crate::freshness::OnlineTimestampKey>,
    /// Connection cap and client timeouts (issue 8, finding 2).
    pub limits: crate::listener::ConnectionLimits,
    /// A host not seen for longer is `stale` in reports; `None`: three poll intervals
    /// (issue 9, point 7).
    pub stale_after: Option<jiff::SignedDuration>,
    /// How long before a catalog role expires the server warns (issue 9, point 5).
    pub expiry_warning: patchday_core::catalog_expiry::ExpiryWarning,
    /// How often the server looks at the catalog's expiries for its log.
    pub expiry_check_every: std::time::Duration,
    /// Issue 9, point 1: the archive sync the server runs on a schedule (`--mirror-every`).
    pub mirror: Option<crate::mirror_schedule::MirrorSchedule>,
    /// Issue 11, point 5 (generalising issue 10's `--webhook`): notification targets,
    /// the task's pace and its retries.
    pub notify: crate::notify::NotifyConfig,
    /// Issue 10, points 2 and 3 (rings): how often the rollout task looks.
    pub rollout_every: std::time::Duration,
    /// Issue 10, point 6 (push): how long waits are held and how many at most.
    pub push: crate::push::PushLimits,
    /// Issue 10, point 6 (push): the listen backlog (`--listen-backlog`).
    pub listen_backlog: u32,
    /// Issue 10, point 7: how often the cleanup looks for payloads no host can need.
    pub cleanup_every: std::time::Duration,
    /// Issue 10, point 7: how long such a payload is kept (`--retain`, 30 days by default).
    pub retain: jiff::SignedDuration,
    /// Issue 11, point 4: the secret a scraper of `/metrics` sends (`--metrics-token-file`);
    /// `None`: `/metrics` is off.
    pub metrics_token: Option<patchday_types::Secret>,
    /// Issue 14, point 1: how long a compliance access token lives
    /// (`--access-token-lifetime`, ten minutes by default).
    pub access_token_lifetime: jiff::SignedDuration,
}

impl ServerConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            database: None,
            content_dir: None,
            content_s3: None,
            content_redirect: None,
            catalog_root: None,
            max_catalog_bytes: 2 << 30,
            poll_seconds: 3600,
            audit_feeds: patchday_audit::feeds::FeedPaths::default(),
            online_timestamp: None,
            limits: crate::listener::ConnectionLimits::default(),
            stale_after: None,
            expiry_warning: Default::default(),
            expiry_check_every: std::time::Duration::from_secs(60),
            mirror: None,
            notify: crate::notify::NotifyConfig::default(),
            rollout_every: std::time::Duration::from_secs(30),
            push: crate::push::PushLimits::default(),
            listen_backlog: crate::listener::DEFAULT_LISTEN_BACKLOG,
            cleanup_every: std::time::Duration::from_secs(3600),
            retain: jiff::SignedDuration::from_hours(30 * 24),
            metrics_token: None,
            access_token_lifetime: jiff::SignedDuration::from_mins(10),
        }
    }

    /// The payload directory when payloads are on disk (`None` with an object store).
    pub fn content_directory(&self) -> Option<PathBuf> {
        match self.content_s3 {
            Some(_) => None,
            None => Some(
                self.content_dir
                    .clone()
                    .unwrap_or_else(|| self.data_dir.join("content")),
            ),
        }
    }

    /// How long a host may stay silent before reports call it stale (issue 9, point 7).
    pub fn stale_after(&self) -> jiff::SignedDuration {
        self.stale_after.unwrap_or_else(|| {
            let poll = i64::try_from(self.poll_seconds).unwrap_or(i64::MAX / 3);
            jiff::SignedDuration::from_secs(poll.saturating_mul(3))
        })
    }
}

/// Issue 12, point 2: which database the server uses besides SQLite in its data
/// directory. Parsed from `--database URL`; an unknown scheme is refused with the ones
/// known.
#[derive(Clone, Debug)]
pub enum DatabaseChoice {
    /// A PostgreSQL server (several replicas may share it).
    Postgres(patchday_store_postgres::DatabaseUrl),
}

impl std::str::FromStr for DatabaseChoice {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let scheme = s.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some("postgres" | "postgresql") => Ok(DatabaseChoice::Postgres(
                patchday_store_postgres::DatabaseUrl::parse(s)?,
            )),
            Some(other) => anyhow::bail!(
                "--database: unknown database scheme {other:?}; use postgres://USER:PASSWORD@HOST:PORT/DATABASE, \
                 or leave --database out for SQLite in the data directory (--data DIR)"
            ),
            None => anyhow::bail!(
                "--database: {:?} is not a URL; use postgres://USER:PASSWORD@HOST:PORT/DATABASE, \
                 or leave --database out for SQLite in the data directory (--data DIR)",
                s.chars().take(40).collect::<String>()
            ),
        }
    }
}

/// Opens the configured database: SQLite in the data directory, or PostgreSQL.
async fn open_store(config: &ServerConfig) -> anyhow::Result<Arc<dyn Store>> {
    match &config.database {
        None => {
            let dir = &config.data_dir;
            let store = SqliteStore::open(&dir.join("patchday.db"))
                .await
                .with_context(|| format!("opening the database in {}", dir.display()))?;
            Ok(Arc::new(store))
        }
        Some(DatabaseChoice::Postgres(url)) => {
            let store = patchday_store_postgres::PostgresStore::connect(url)
                .await
                .with_context(|| format!("opening the PostgreSQL database {}", url.redacted()))?;
            tracing::info!(database = %url.redacted(), "using PostgreSQL");
            Ok(Arc::new(store))
        }
    }
}

/// Opens the configured content store: a directory, or (issue 12, point 3) a bucket,
/// which must answer a probe before the server starts.
pub async fn open_content(config: &ServerConfig) -> anyhow::Result<Arc<dyn ContentStore>> {
    if let Some(s3) = &config.content_s3 {
        let store = patchday_content::s3::S3Store::new(s3)?;
        store
            .ready()
            .await
            .with_context(|| format!("the content store {} is not usable", s3.location))?;
        tracing::info!(content = %s3.location, redirect = config.content_redirect.is_some(), "payloads in an object store");
        return Ok(Arc::new(store));
    }
    anyhow::ensure!(
        config.content_redirect.is_none(),
        "--content-redirect needs an object store (--content s3://BUCKET/PREFIX): a directory has no URL to send agents to"
    );
    let dir = config
        .content_directory()
        .unwrap_or_else(|| config.data_dir.join("content"));
    Ok(Arc::new(LocalDisk::new(dir)?))
}

/// Everything a request handler needs: one shared allocation, so that handing it to a
/// request (axum clones the state for every extractor) is one reference count, not one
/// per field (issue 10: 2% of the server's CPU in a fleet rollout went to those counts).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Shared {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Payload bytes.
    pub content: Arc<dyn ContentStore>,
    /// The wall clock.
    pub clock: Arc<dyn Clock>,
    /// Configuration.
    pub config: Arc<ServerConfig>,
    /// Serialises catalog pushes.
    pub catalog_lock: Arc<tokio::sync::Mutex<()>>,
    /// Advisory data, loaded at start.
    pub feeds: Arc<patchday_audit::feeds::Feeds>,
    /// The director's online key (and its certificate), which signs per-host assignments.
    pub director: Arc<crate::director::Director>,
    /// Failed logins per source address (issue 8, finding 9).
    pub failed_logins: Arc<crate::ratelimit::FailedLogins>,
    /// Whether the database can commit writes now (issue 8, finding 11).
    pub storage: Arc<crate::storage::StorageHealth>,
    /// The catalog's update documents, indexed per catalog version (issue 9, point 6).
    pub catalog_index: Arc<crate::catalog_index::CatalogCache>,
    /// Issue 9, point 1: the scheduled mirror's last run.
    pub mirror_runs: Arc<crate::mirror_schedule::MirrorRuns>,
    /// Issue 10, point 6 (push): generations per tenant and the held waits.
    pub push: Arc<crate::push::PushHub>,
    /// Issue 10, point 7: the cleanup's last run.
    pub cleanup_runs: Arc<crate::cleanup::CleanupRuns>,
    /// Issue 11, point 5: wakes the notification task when an event is queued.
    pub notify_wake: Arc<tokio::sync::Notify>,
    /// Issue 11, point 4: counters and histograms for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Issue 11, point 1: the console overview's per-tenant summaries.
    pub console_overview: Arc<crate::console::cache::OverviewCache>,
    /// Issue 10: admission of agent requests and the measured rate behind wake spreads.
    pub admission: Arc<crate::admission::Admission>,
    /// Issue 12, point 5: this process's name among replicas, as lease holder.
    pub replica: Arc<str>,
    /// Issue 14, point 1: the key that signs compliance access tokens (apart from the
    /// director key).
    pub access_key: Arc<patchday_trust::access::AccessKey>,
    /// Issue 10, point 8: host credentials looked up in the last seconds.
    pub host_credentials: Arc<crate::host_credentials::HostCredentials>,
}

impl AppState {
    /// Opens the data directory, pinning the catalog root if one is given.
    pub async fn open(config: &ServerConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
        set_private(dir)?;
        let store = open_store(config).await?;
        let content = open_content(config).await?;
        crate::catalog::pin_root(store.as_ref(), dir, config.catalog_root.as_deref()).await?;
        crate::catalog::recover(dir, store.as_ref())
            .await
            .context("recovering the trusted catalog state")?;
        let feeds = patchday_audit::feeds::Feeds::load(&config.audit_feeds)
            .context("loading the audit feeds")?;
        // The server's own online key: the only private key in its data directory.
        // Issue 12, point 1: its certificate is in the store (an older server's file is
        // moved there now).
        let director =
            crate::director::Director::open(&dir.join("director"), store.as_ref(), clock.now())
                .await
                .context("loading the director key")?;
        // Issue 14, point 1: its own key, so gates trust tokens without trusting
        // assignments and a leak of one key is not a leak of the other.
        let access_key = patchday_trust::access::AccessKey::load_or_create(
            &dir.join("access").join("ed25519.pk8"),
        )
        .context("loading the access token key")?;
        // Issue 12, point 5: the generations every replica shares.
        let (push_start, push_tenants) =
            crate::push_relay::starting_generations(store.as_ref(), clock.now()).await?;
        Ok(Self(Arc::new(Shared {
            store,
            content,
            clock,
            config: Arc::new(config.clone()),
            catalog_lock: Arc::new(tokio::sync::Mutex::new(())),
            feeds: Arc::new(feeds),
            director: Arc::new(director),
            failed_logins: Arc::default(),
            // Issue 11, point 4: `/v1/ready` checks the database is still this file.
            storage: Arc::new(crate::storage::StorageHealth::opened(
                &dir.join("patchday.db"),
            )),
            catalog_index: Arc::default(),
            mirror_runs: Arc::default(),
            // Issue 10, point 6 (push): long polls stay below the connection cap.
            push: Arc::new(crate::push::PushHub::starting(
                push_start,
                push_tenants,
                config.push.within(crate::listener::connection_cap(
                    config.limits.max_connections,
                )),
            )),
            cleanup_runs: Arc::default(),
            notify_wake: Arc::default(),
            metrics: Arc::default(),
            console_overview: Arc::default(),
            admission: Arc::new(crate::admission::Admission::for_this_machine()),
            replica: crate::lease::replica_name(dir)?.into(),
            access_key: Arc::new(access_key),
            host_credentials: Arc::default(),
        })))
    }
}

#[cfg(unix)]
fn set_private(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict permissions of {}", dir.display()))
}
