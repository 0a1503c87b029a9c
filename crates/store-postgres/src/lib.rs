//! PostgreSQL backend for `patchday-store` (issue 12, point 2): the same tables and the
//! same behaviour as the SQLite backend, for providers that run several servers on one
//! database. Schema from `migrations/` (PostgreSQL dialect); a pool whose limits come
//! from the URL (`?max_connections=16&acquire_timeout=10`); failures that may pass when
//! retried (serialization failure, deadlock, a lost connection, a pool timeout) are
//! [`StoreError::Unavailable`], every other one is fatal.
//!
//! Where SQLite serialises every write with `BEGIN IMMEDIATE`, this backend locks what a
//! transaction reads before it writes (`SELECT … FOR NO KEY UPDATE` on the tenant or host
//! row, `LOCK TABLE` for the catalog), and relies on single statements (`UPDATE … WHERE`,
//! `INSERT … ON CONFLICT`) where one statement decides.

use async_trait::async_trait;
use jiff::Timestamp;
use patchday_store::{
    CatalogRecord, CatalogTarget, DirectorCertificate, EnrollGrant, FleetHost, FleetSummary,
    HistoryEntry, HostMarks, HostMemberships, HostRecord, HostSigning, LogScope, MarksAtCheckin,
    NewEnrollToken, PushAnnouncement, PushAnnouncements, PushScope, RemovedHost, RepairRequest,
    Result, SequenceCheck, Store, StoreError, StoredFacts, StoredState, StoredVerdict, TenantStore,
    TokenRecord,
};
use patchday_types::api::{
    Approval, CatalogStatus, Decision, EnrollTokenInfo, Group, GroupRule, GroupRuleInfo, LogEntry,
    MembershipChange, MembershipFacts, PatchDayConfig, Role, StateReport, Tenant, TokenInfo,
};
use patchday_types::{GroupId, HostId, Inventory, TenantId, UpdateDocument, UpdateId, UpdateState};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Row;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

patchday_store::sql_row_decoders!(sqlx::postgres::PgRow);

fn backend(e: sqlx::Error) -> StoreError {
    if let Some(why) = retryable(&e) {
        return StoreError::Unavailable(format!("{why} ({e}); retry"));
    }
    match &e {
        sqlx::Error::Database(d) if d.code().as_deref() == Some("53100") => {
            StoreError::StorageFull(format!(
                "the PostgreSQL server's disk is full ({e}); free space on the database server"
            ))
        }
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Conflict(d.message().to_string())
        }
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            StoreError::NotFound(format!("referenced object ({})", d.message()))
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

/// Why `e` may pass when the same work is tried again, or `None` for a fatal failure.
fn retryable(e: &sqlx::Error) -> Option<&'static str> {
    match e {
        sqlx::Error::Database(d) => match d.code().as_deref() {
            Some("40001") => Some("serialization failure"),
            Some("40P01") => Some("deadlock detected"),
            // Class 08: connection exceptions.
            Some(c) if c.starts_with("08") => Some("the database connection failed"),
            // admin_shutdown, crash_shutdown, cannot_connect_now: a restart or failover.
            Some("57P01" | "57P02" | "57P03") => Some("the database server is restarting"),
            Some("53300") => Some("the database server has too many connections"),
            _ => None,
        },
        sqlx::Error::PoolTimedOut => Some("no database connection was free in time"),
        sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            Some("the database pool is closing")
        }
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => Some("the database connection was lost"),
        _ => None,
    }
}

/// A write transaction. PostgreSQL keeps its own transaction state, so sqlx's
/// transaction is enough: one dropped unfinished (an error, a cancelled request) is
/// rolled back before its connection is used again.
struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
}

impl WriteTx {
    async fn begin(pool: &PgPool) -> Result<Self> {
        Ok(Self {
            tx: pool.begin().await.map_err(backend)?,
        })
    }

    /// Commits, first appending `log` to the operator log when there is one.
    async fn finish(mut self, log: Option<&LogEntry>) -> Result<()> {
        if let Some(log) = log {
            insert_log(&mut self, log).await?;
        }
        self.commit().await.map_err(backend)
    }

    async fn commit(self) -> std::result::Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    /// Locks tenant `id`'s row until the end of the transaction (its writers queue
    /// behind each other as SQLite's `BEGIN IMMEDIATE` made them); `NotFound` when the
    /// tenant is not there.
    async fn lock_tenant(&mut self, id: &TenantId) -> Result<()> {
        sqlx::query("SELECT 1 FROM tenants WHERE id = $1 FOR NO KEY UPDATE")
            .bind(id.as_str())
            .fetch_optional(&mut **self)
            .await
            .map_err(backend)?
            .map(|_| ())
            .ok_or_else(|| StoreError::NotFound(format!("tenant {id}")))
    }

    /// Serialises catalog writers (readers are not blocked).
    async fn lock_catalog(&mut self) -> Result<()> {
        sqlx::query("LOCK TABLE catalog_status IN EXCLUSIVE MODE")
            .execute(&mut **self)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::PgConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// Like [`backend`], naming the object in conflict and not-found errors.
fn about(what: String) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match backend(e) {
        StoreError::Conflict(_) => StoreError::Conflict(what),
        StoreError::NotFound(_) => StoreError::NotFound(what),
        o => o,
    }
}

/// Pool limits, read from the database URL's query (the parameters below are taken out
/// before the URL reaches the driver; every other one, such as `sslmode`, is the
/// driver's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolLimits {
    /// `max_connections`: connections this server opens at most (default 16). With
    /// several replicas, keep their sum below the server's `max_connections`.
    pub max_connections: u32,
    /// `min_connections`: connections kept open when idle (default 1).
    pub min_connections: u32,
    /// `acquire_timeout` (seconds): how long a request waits for a free connection
    /// before it fails as retryable (default 10).
    pub acquire_timeout: Duration,
}

impl Default for PoolLimits {
    fn default() -> Self {
        Self {
            max_connections: 16,
            min_connections: 1,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// A database URL split into the driver's options and the pool's limits.
#[derive(Clone)]
pub struct DatabaseUrl {
    /// What the driver gets (our own parameters taken out).
    driver: url::Url,
    /// The pool's limits.
    pub limits: PoolLimits,
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("DatabaseUrl")
            .field("url", &self.redacted())
            .field("limits", &self.limits)
            .finish()
    }
}

impl DatabaseUrl {
    /// Parses `postgres://user:password@host:port/database?max_connections=16`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: String| {
            StoreError::Backend(format!(
                "{why}; write it as postgres://USER:PASSWORD@HOST:PORT/DATABASE \
                 (pool limits as ?max_connections=16&min_connections=1&acquire_timeout=10)"
            ))
        };
        let mut url =
            url::Url::parse(s).map_err(|e| bad(format!("the database URL is not a URL ({e})")))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(bad(format!(
                "the database URL's scheme is {:?}, not postgres",
                url.scheme()
            )));
        }
        let mut limits = PoolLimits::default();
        let mut keep = Vec::new();
        for (k, v) in url.query_pairs() {
            let number = || {
                v.parse::<u32>()
                    .map_err(|_| bad(format!("{k}={v} in the database URL is not a whole number")))
            };
            match k.as_ref() {
                "max_connections" => limits.max_connections = number()?.max(1),
                "min_connections" => limits.min_connections = number()?,
                "acquire_timeout" => {
                    limits.acquire_timeout = Duration::from_secs(u64::from(number()?.max(1)))
                }
                _ => keep.push((k.into_owned(), v.into_owned())),
            }
        }
        limits.min_connections = limits.min_connections.min(limits.max_connections);
        if keep.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(keep);
        }
        Ok(Self {
            driver: url,
            limits,
        })
    }

    /// The URL without its password, for messages and logs.
    pub fn redacted(&self) -> String {
        let mut u = self.driver.clone();
        if u.password().is_some() {
            let _ = u.set_password(Some("***"));
        }
        u.to_string()
    }

    /// The URL the driver connects to (with its password).
    fn connect_options(&self) -> Result<PgConnectOptions> {
        PgConnectOptions::from_str(self.driver.as_str()).map_err(|e| {
            StoreError::Backend(format!(
                "the database URL {} is not usable: {e}",
                self.redacted()
            ))
        })
    }
}

// ---- Issue 12, point 5: push across replicas ----

/// The channel push raises are announced on.
const PUSH_CHANNEL: &str = "patchday_push";
/// The announcement that asks listeners to read every generation again.
const RESYNC: &str = "resync";
/// Most scopes one raise announces one by one; more are announced as [`RESYNC`], so a
/// flood of raises costs each listener one read, not a queue of notifications.
const MAX_ANNOUNCED_RAISES: usize = 64;
/// The listener connection's `application_name`, so an operator (or a test) can tell
/// it from the request pool's in `pg_stat_activity`.
pub const LISTENER_NAME: &str = "patchday-push";

/// `LISTEN patchday_push` on a connection of its own, remade after it is lost.
struct PgAnnouncements {
    pool: PgPool,
    listener: Option<sqlx::postgres::PgListener>,
}

#[async_trait]
impl PushAnnouncements for PgAnnouncements {
    async fn next(&mut self) -> Result<PushAnnouncement> {
        let Some(listener) = self.listener.as_mut() else {
            // Listening before the caller reads the rows again: a raise committed after
            // that read is announced, one before it is in the read.
            let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool)
                .await
                .map_err(backend)?;
            listener.listen(PUSH_CHANNEL).await.map_err(backend)?;
            self.listener = Some(listener);
            return Ok(PushAnnouncement::Resync);
        };
        match listener.try_recv().await {
            Ok(Some(n)) => Ok(parse_announcement(n.payload())),
            // Lost and listening again (sqlx reconnects before it says so): whatever was
            // announced in between is missed.
            Ok(None) => Ok(PushAnnouncement::Resync),
            Err(e) => {
                // Whatever state the connection is in, the next call starts afresh.
                self.listener = None;
                Err(backend(e))
            }
        }
    }
}

/// `GENERATION SCOPE`, as `raise_push_generations` announces it; anything else (a
/// resync, or a payload this version does not know) asks for a resync.
fn parse_announcement(payload: &str) -> PushAnnouncement {
    payload
        .split_once(' ')
        .and_then(|(g, key)| Some((g.parse::<u64>().ok()?, PushScope::from_key(key).ok()?)))
        .map_or(PushAnnouncement::Resync, |(g, scope)| {
            PushAnnouncement::Raised(scope, g)
        })
}

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// How to connect, for the push listener's own connection (issue 12, point 5).
    options: PgConnectOptions,
}

impl PostgresStore {
    /// Connects with the URL's pool limits and applies migrations (replicas starting at
    /// once take turns: sqlx holds an advisory lock while it migrates).
    pub async fn connect(url: &DatabaseUrl) -> Result<Self> {
        let opts = url.connect_options()?.application_name("patchday");
        let options = opts.clone();
        let pool = PgPoolOptions::new()
            .max_connections(url.limits.max_connections)
            .min_connections(url.limits.min_connections)
            .acquire_timeout(url.limits.acquire_timeout)
            .idle_timeout(Duration::from_secs(600))
            .max_lifetime(Duration::from_secs(1800))
            .connect_with(opts)
            .await
            .map_err(|e| match backend(e) {
                StoreError::Unavailable(m) | StoreError::Backend(m) => {
                    StoreError::Backend(format!(
                    "cannot connect to {}: {m}; check that the server runs and the URL's user, \
                     password and database are right",
                    url.redacted()
                ))
                }
                other => other,
            })?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(format!("migrating {}: {e}", url.redacted())))?;
        Ok(Self { pool, options })
    }

    /// The pool, for tests and tools of this crate's users (closing it ends the store).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates tenant `t`; with `log`, logs it in the same transaction (finding 10, issue 8).
    async fn write_tenant(&self, t: &Tenant, now: Timestamp, log: Option<&LogEntry>) -> Result<()> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        sqlx::query(
            "INSERT INTO tenants (id, name, patch_day, created_at, max_hosts) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(t.id.as_str())
        .bind(&t.name)
        .bind(to_json(&t.patch_day)?)
        .bind(now.to_string())
        .bind(t.max_hosts.map(i64::from))
        .execute(&mut *tx)
        .await
        .map_err(about(format!("tenant {}", t.id)))?;
        tx.finish(log).await
    }

    /// Stores operator token `t`; with `log`, logs it in the same transaction.
    async fn write_token(
        &self,
        t: &TokenRecord,
        prefix: &str,
        expires_at: Option<Timestamp>,
        log: Option<&LogEntry>,
    ) -> Result<()> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        sqlx::query(
            "INSERT INTO tokens (hash, name, role, tenant_id, created_at, prefix, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&t.hash)
        .bind(&t.name)
        .bind(t.role.as_str())
        .bind(t.tenant.as_ref().map(|t| t.as_str().to_string()))
        .bind(t.created_at.to_string())
        .bind(prefix)
        .bind(expires_at.map(|e| e.to_string()))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.finish(log).await
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn tenant(&self, id: &TenantId) -> Result<Arc<dyn TenantStore>> {
        let exists = sqlx::query("SELECT 1 FROM tenants WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        match exists {
            Some(_) => Ok(Arc::new(PgTenant {
                pool: self.pool.clone(),
                id: id.clone(),
            })),
            None => Err(StoreError::NotFound(format!("tenant {id}"))),
        }
    }

    async fn create_tenant(&self, t: &Tenant, now: Timestamp) -> Result<()> {
        self.write_tenant(t, now, None).await
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        let rows = sqlx::query("SELECT id, name, patch_day, max_hosts FROM tenants ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(tenant_from_row).collect()
    }

    async fn put_token(&self, t: &TokenRecord) -> Result<()> {
        // No prefix (the column's default) and no expiry, as before finding 3.
        self.write_token(t, "", None, None).await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(
            "SELECT hash, name, role, tenant_id, created_at FROM tokens WHERE hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|r| {
            Ok(TokenRecord {
                hash: r.get("hash"),
                name: r.get("name"),
                role: parse::<Role>("role", r.get::<&str, _>("role"))?,
                tenant: r
                    .get::<Option<String>, _>("tenant_id")
                    .map(|t| parse("tenant id", &t))
                    .transpose()?,
                created_at: parse("timestamp", r.get::<&str, _>("created_at"))?,
            })
        })
        .transpose()
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool> {
        // One statement: a free name is inserted; a held one changes hands only when it
        // expired or is the holder's own (a renewal), so two replicas never both win.
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, expires_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms \
             WHERE leases.holder = excluded.holder OR leases.expires_ms <= $4",
        )
        .bind(name)
        .bind(holder)
        .bind(until.as_millisecond())
        .bind(now.as_millisecond())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn raise_push_generations(
        &self,
        raises: &[(PushScope, u64)],
    ) -> Result<Vec<(PushScope, u64)>> {
        let raises = patchday_store::merge_push_raises(raises);
        if raises.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = raises.iter().map(|(s, _)| s.key().to_string()).collect();
        let floors: Vec<i64> = raises
            .iter()
            .map(|(_, g)| i64::try_from(*g).unwrap_or(i64::MAX))
            .collect();
        // Bounded: a flood of scopes is announced as one resync, not one by one.
        let each = raises.len() <= MAX_ANNOUNCED_RAISES;
        let mut tx = WriteTx::begin(&self.pool).await?;
        // One statement: the rows are raised (in key order, so replicas raising
        // overlapping sets lock them in the same order) and each new value is announced;
        // NOTIFY is delivered when the transaction commits, and only then.
        let rows = sqlx::query(
            "WITH raised AS ( \
               INSERT INTO push_generations (scope, generation) \
               SELECT k, GREATEST(f, 1) FROM UNNEST($1::text[], $2::bigint[]) AS r(k, f) ORDER BY k \
               ON CONFLICT (scope) DO UPDATE \
               SET generation = GREATEST(push_generations.generation + 1, excluded.generation) \
               RETURNING scope, generation) \
             SELECT scope, generation, \
               CASE WHEN $3 THEN pg_notify($4, generation::text || ' ' || scope) END AS announced \
             FROM raised",
        )
        .bind(&keys)
        .bind(&floors)
        .bind(each)
        .bind(PUSH_CHANNEL)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        if !each {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(PUSH_CHANNEL)
                .bind(RESYNC)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        rows.iter()
            .map(|r| {
                let g: i64 = r.get("generation");
                Ok((
                    PushScope::from_key(r.get::<&str, _>("scope"))?,
                    u64::try_from(g).unwrap_or(0),
                ))
            })
            .collect()
    }

    async fn push_generations(&self) -> Result<Vec<(PushScope, u64)>> {
        let rows = sqlx::query("SELECT scope, generation FROM push_generations")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                let g: i64 = r.get("generation");
                Ok((
                    PushScope::from_key(r.get::<&str, _>("scope"))?,
                    u64::try_from(g).unwrap_or(0),
                ))
            })
            .collect()
    }

    async fn push_announcements(&self) -> Result<Option<Box<dyn PushAnnouncements>>> {
        // A connection of its own, outside the request pool (a LISTEN holds it for
        // good), kept open however long it idles; made when first needed.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(self.options.clone().application_name(LISTENER_NAME));
        Ok(Some(Box::new(PgAnnouncements {
            pool,
            listener: None,
        })))
    }

    async fn has_provider_admin(&self) -> Result<bool> {
        // A revoked admin token does not count: a restart then prints a new one.
        let row = sqlx::query(
            "SELECT 1 FROM tokens WHERE role = 'provider-admin' AND revoked_at IS NULL LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(row.is_some())
    }

    async fn enroll_token_tenant(&self, hash: &str) -> Result<Option<TenantId>> {
        let row = sqlx::query("SELECT tenant_id FROM enroll_tokens WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| parse("tenant id", r.get::<&str, _>("tenant_id")))
            .transpose()
    }

    async fn host_by_credential(&self, hash: &str) -> Result<Option<(TenantId, HostId)>> {
        let row = sqlx::query("SELECT tenant_id, id FROM hosts WHERE credential_hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| {
            Ok((
                parse("tenant id", r.get::<&str, _>("tenant_id"))?,
                parse("host id", r.get::<&str, _>("id"))?,
            ))
        })
        .transpose()
    }

    async fn replace_catalog(&self, c: &CatalogRecord) -> Result<()> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        tx.lock_catalog().await?;
        // Issue 12, point 1: a push verified against an older trusted state than the
        // one committed meanwhile (another push, another replica) must not roll it back.
        if let Some(r) = sqlx::query("SELECT status FROM catalog_status WHERE k = 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?
        {
            let now: CatalogStatus = json("catalog status", r.get::<&str, _>("status"))?;
            if now.timestamp_version > c.status.timestamp_version {
                return Err(StoreError::Conflict(format!(
                    "a newer catalog (timestamp version {}) was accepted meanwhile; this one has {}: push again",
                    now.timestamp_version, c.status.timestamp_version
                )));
            }
            if c.based_on_snapshot
                .is_some_and(|b| b != now.snapshot_version)
            {
                return Err(based_on_another(c, now.snapshot_version));
            }
        } else if c.based_on_snapshot.is_some() {
            return Err(based_on_another(c, 0));
        }
        for table in [
            "catalog_updates",
            "catalog_targets",
            "catalog_metadata",
            "catalog_status",
        ] {
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        sqlx::query("INSERT INTO catalog_status (k, status) VALUES (1, $1)")
            .bind(to_json(&c.status)?)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        for u in &c.updates {
            sqlx::query("INSERT INTO catalog_updates (id, doc) VALUES ($1, $2)")
                .bind(u.id.as_str())
                .bind(to_json(u)?)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        for t in &c.targets {
            sqlx::query(
                "INSERT INTO catalog_targets (name, length, sha256, release_counter) VALUES ($1, $2, $3, $4)",
            )
            .bind(&t.name)
            .bind(i64::try_from(t.length).map_err(|e| StoreError::Backend(e.to_string()))?)
            .bind(&t.sha256)
            .bind(i64::try_from(t.release_counter).map_err(|e| StoreError::Backend(e.to_string()))?)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        put_metadata(&mut tx, &c.metadata).await?;
        sqlx::query("DELETE FROM catalog_trusted")
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        put_trusted(&mut tx, &c.trusted).await?;
        if let Some(progress) = &c.mirror_progress {
            put_progress(&mut tx, progress).await?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn refresh_catalog_metadata(
        &self,
        status: &CatalogStatus,
        metadata: &[(String, Vec<u8>)],
        trusted: &[(String, Vec<u8>)],
    ) -> Result<()> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        tx.lock_catalog().await?;
        sqlx::query("UPDATE catalog_status SET status = $1 WHERE k = 1")
            .bind(to_json(status)?)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        put_metadata(&mut tx, metadata).await?;
        put_trusted(&mut tx, trusted).await?;
        tx.commit().await.map_err(backend)
    }

    async fn pinned_root(&self) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT root FROM catalog_pin WHERE k = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        Ok(row.map(|r| r.get::<Vec<u8>, _>("root")))
    }

    async fn pin_root(&self, root: &[u8]) -> Result<()> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        tx.lock_catalog().await?;
        let pinned = sqlx::query("SELECT root FROM catalog_pin WHERE k = 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?
            .map(|r| r.get::<Vec<u8>, _>("root"));
        match pinned {
            Some(p) if p == root => Ok(()),
            Some(_) => Err(StoreError::Refused(
                "this server already pins a different catalog root; a root changes only by a rotation signed with the old root keys, pushed as a catalog".into(),
            )),
            None => {
                sqlx::query("INSERT INTO catalog_pin (k, root) VALUES (1, $1)")
                    .bind(root)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                tx.commit().await.map_err(backend)
            }
        }
    }

    async fn trusted_metadata(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let rows = sqlx::query("SELECT name, bytes FROM catalog_trusted ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        Ok(rows
            .iter()
            .map(|r| (r.get("name"), r.get::<Vec<u8>, _>("bytes")))
            .collect())
    }

    async fn adopt_trusted_metadata(&self, trusted: &[(String, Vec<u8>)]) -> Result<bool> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        tx.lock_catalog().await?;
        let held = sqlx::query("SELECT 1 FROM catalog_trusted LIMIT 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        if held.is_some() {
            return Ok(false);
        }
        put_trusted(&mut tx, trusted).await?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn director_certificate(&self) -> Result<Option<DirectorCertificate>> {
        let row = sqlx::query("SELECT version, keyid, bytes FROM director_certificate WHERE k = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| {
            Ok(DirectorCertificate {
                version: u64::try_from(r.get::<i64, _>("version")).map_err(|e| {
                    StoreError::Corrupt(format!("director certificate version: {e}"))
                })?,
                keyid: r.get("keyid"),
                bytes: r.get("bytes"),
            })
        })
        .transpose()
    }

    async fn put_director_certificate(
        &self,
        c: &DirectorCertificate,
        log: &LogEntry,
    ) -> Result<bool> {
        let version = i64::try_from(c.version).map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut tx = WriteTx::begin(&self.pool).await?;
        // Two replicas installing at once take turns (SQLite's BEGIN IMMEDIATE does so).
        sqlx::query("LOCK TABLE director_certificate IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let stored = sqlx::query("SELECT version, bytes FROM director_certificate WHERE k = 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?
            .map(|r| (r.get::<i64, _>("version"), r.get::<Vec<u8>, _>("bytes")));
        match stored {
            Some((v, bytes)) if v == version && bytes == c.bytes => return Ok(false),
            Some((v, _)) if v >= version => {
                return Err(StoreError::Conflict(format!(
                    "director certificate v{}: v{v} is installed already (another rotation came first); sign a certificate with a version above {v}",
                    c.version
                )))
            }
            _ => {}
        }
        sqlx::query(
            "INSERT INTO director_certificate (k, version, keyid, bytes) VALUES (1, $1, $2, $3) \
             ON CONFLICT (k) DO UPDATE SET version = excluded.version, keyid = excluded.keyid, bytes = excluded.bytes",
        )
        .bind(version)
        .bind(&c.keyid)
        .bind(c.bytes.as_slice())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.finish(Some(log)).await?;
        Ok(true)
    }

    async fn mirror_progress(&self) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT progress FROM mirror_progress WHERE k = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        Ok(row.map(|r| r.get::<Vec<u8>, _>("progress")))
    }

    async fn put_mirror_progress(&self, progress: &[u8]) -> Result<()> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        put_progress(&mut tx, progress).await?;
        tx.commit().await.map_err(backend)
    }

    async fn catalog_status(&self) -> Result<CatalogStatus> {
        let row = sqlx::query("SELECT status FROM catalog_status WHERE k = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        match row {
            Some(r) => json("catalog status", r.get::<&str, _>("status")),
            None => Ok(CatalogStatus::default()),
        }
    }

    async fn catalog_updates(&self) -> Result<Vec<UpdateDocument>> {
        let rows = sqlx::query("SELECT doc FROM catalog_updates ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| json("update document", r.get::<&str, _>("doc")))
            .collect()
    }

    async fn catalog_metadata_files(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let rows = sqlx::query("SELECT name, bytes FROM catalog_metadata ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        Ok(rows
            .iter()
            .map(|r| (r.get("name"), r.get::<Vec<u8>, _>("bytes")))
            .collect())
    }

    async fn catalog_metadata(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT bytes FROM catalog_metadata WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        Ok(row.map(|r| r.get::<Vec<u8>, _>("bytes")))
    }

    async fn catalog_target(&self, name: &str) -> Result<Option<CatalogTarget>> {
        let row = sqlx::query(
            "SELECT name, length, sha256, release_counter FROM catalog_targets WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(catalog_target_row).transpose()
    }

    async fn catalog_targets(&self, names: &[String]) -> Result<Vec<CatalogTarget>> {
        // One round trip for a whole assignment list: the names go in as an array.
        let rows = sqlx::query(
            "SELECT name, length, sha256, release_counter FROM catalog_targets \
             WHERE name = ANY($1)",
        )
        .bind(names)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(catalog_target_row).collect()
    }

    // ---- Finding 3 (issue 8): operator tokens expire and are revoked ----

    async fn create_token(
        &self,
        t: &TokenRecord,
        prefix: &str,
        expires_at: Option<Timestamp>,
        log: &LogEntry,
    ) -> Result<()> {
        self.write_token(t, prefix, expires_at, Some(log)).await
    }

    async fn token_info_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(token_info_row).transpose()
    }

    async fn token_info(&self, id: &str) -> Result<Option<TokenInfo>> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE substr(hash, 1, 12) = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(token_info_row).transpose()
    }

    async fn list_tokens(&self, tenant: Option<&TenantId>) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE $1 IS NULL OR tenant_id = $1 \
             ORDER BY created_at, hash"
        ))
        .bind(tenant.map(|t| t.as_str().to_string()))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(token_info_row).collect()
    }

    async fn revoke_token(&self, id: &str, now: Timestamp, log: &LogEntry) -> Result<TokenInfo> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        sqlx::query(
            "UPDATE tokens SET revoked_at = $1 WHERE substr(hash, 1, 12) = $2 AND revoked_at IS NULL",
        )
        .bind(now.to_string())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE substr(hash, 1, 12) = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?
        .ok_or_else(|| StoreError::NotFound(format!("token {id}")))?;
        insert_log(&mut tx, log).await?;
        tx.commit().await.map_err(backend)?;
        token_info_row(&row)
    }

    async fn redeem_enroll_token(&self, hash: &str, now: Timestamp) -> Result<EnrollGrant> {
        let Some(row) = sqlx::query(
            "SELECT e.tenant_id, e.group_id, e.expires_at, e.max_uses, e.revoked_at, \
             (e.group_id IS NULL OR g.id IS NOT NULL) AS group_exists, t.max_hosts, \
             (SELECT count(*) FROM hosts h WHERE h.tenant_id = e.tenant_id) AS hosts \
             FROM enroll_tokens e JOIN tenants t ON t.id = e.tenant_id \
             LEFT JOIN groups g ON g.tenant_id = e.tenant_id AND g.id = e.group_id \
             WHERE e.hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        else {
            return Ok(EnrollGrant::Unknown);
        };
        if let Some(at) = opt_ts(row.get("revoked_at"))? {
            return Ok(EnrollGrant::Revoked { at });
        }
        if let Some(at) = opt_ts(row.get("expires_at"))? {
            if at <= now {
                return Ok(EnrollGrant::Expired { at });
            }
        }
        let group = row
            .get::<Option<String>, _>("group_id")
            .map(|g| parse::<GroupId>("group id", &g))
            .transpose()?;
        if let (Some(g), false) = (&group, row.get::<bool, _>("group_exists")) {
            return Ok(EnrollGrant::GroupRemoved { group: g.clone() });
        }
        let tenant: TenantId = parse("tenant id", row.get::<&str, _>("tenant_id"))?;
        if let Some(max_hosts) = u32_col(&row, "max_hosts")? {
            if row.get::<i64, _>("hosts") >= i64::from(max_hosts) {
                return Ok(EnrollGrant::QuotaFull { tenant, max_hosts });
            }
        }
        // The use is taken in one statement, so concurrent enrolments cannot share it.
        let taken = sqlx::query(
            "UPDATE enroll_tokens SET uses = uses + 1 WHERE hash = $1 AND revoked_at IS NULL \
             AND (max_uses IS NULL OR uses < max_uses)",
        )
        .bind(hash)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if taken.rows_affected() == 0 {
            let again =
                sqlx::query("SELECT max_uses, revoked_at FROM enroll_tokens WHERE hash = $1")
                    .bind(hash)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(backend)?;
            if let Some(at) = opt_ts(again.get("revoked_at"))? {
                return Ok(EnrollGrant::Revoked { at });
            }
            let max_uses = u32_col(&again, "max_uses")?.unwrap_or(0);
            return Ok(EnrollGrant::UsedUp { max_uses });
        }
        Ok(EnrollGrant::Granted { tenant, group })
    }

    async fn removed_host_by_credential(&self, hash: &str) -> Result<Option<RemovedHost>> {
        let row = sqlx::query(
            "SELECT tenant_id, host_id, removed_at FROM removed_hosts WHERE credential_hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|r| {
            Ok(RemovedHost {
                tenant: parse("tenant id", r.get::<&str, _>("tenant_id"))?,
                host: parse("host id", r.get::<&str, _>("host_id"))?,
                removed_at: parse("timestamp", r.get::<&str, _>("removed_at"))?,
            })
        })
        .transpose()
    }

    async fn remove_tenant(
        &self,
        id: &TenantId,
        force: bool,
        now: Timestamp,
        log: &LogEntry,
    ) -> Result<u64> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        // Locked: a host enrolling now waits, and is then refused (its tenant is gone).
        sqlx::query("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE")
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?
            .ok_or_else(|| StoreError::NotFound(format!("tenant {id}")))?;
        let hosts: i64 = sqlx::query("SELECT count(*) AS n FROM hosts WHERE tenant_id = $1")
            .bind(id.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?
            .get("n");
        if hosts > 0 && !force {
            return Err(StoreError::Refused(format!(
                "tenant {id} still has {hosts} host(s): remove them first (`patchday host remove`) \
                 or pass --force to remove them with the tenant"
            )));
        }
        sqlx::query(
            "INSERT INTO removed_hosts (credential_hash, tenant_id, host_id, removed_at) \
             SELECT credential_hash, tenant_id, id, $1 FROM hosts WHERE tenant_id = $2 \
             ON CONFLICT (credential_hash) DO NOTHING",
        )
        .bind(now.to_string())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        for table in [
            "host_states",
            "host_groups",
            "approvals",
            "hosts",
            "facts_blobs",
            "groups",
            "enroll_tokens",
            "tokens",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE tenant_id = $1"))
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        insert_log(&mut tx, log).await?;
        tx.commit().await.map_err(backend)?;
        Ok(u64::try_from(hosts).unwrap_or(0))
    }

    // ---- Finding 10 (issue 8): the operator log ----

    async fn create_tenant_logged(&self, t: &Tenant, now: Timestamp, log: &LogEntry) -> Result<()> {
        self.write_tenant(t, now, Some(log)).await
    }

    async fn append_log(&self, entry: &LogEntry) -> Result<u64> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        let seq = insert_log(&mut tx, entry).await?;
        tx.commit().await.map_err(backend)?;
        Ok(seq)
    }

    async fn list_log(
        &self,
        scope: &LogScope,
        since: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<LogEntry>> {
        let tenant = match scope {
            LogScope::Everything => None,
            LogScope::Tenant(t) => Some(t.as_str().to_string()),
        };
        let rows = sqlx::query(
            "SELECT seq, at, tenant_id, actor, actor_id, source, action, object, detail \
             FROM operator_log WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR at_ms >= $2) \
             ORDER BY seq LIMIT $3",
        )
        .bind(tenant)
        .bind(since.map(|s| s.as_millisecond()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(LogEntry {
                    seq: u64::try_from(r.get::<i64, _>("seq")).map_err(|e| corrupt("seq", e))?,
                    at: parse("timestamp", r.get::<&str, _>("at"))?,
                    tenant: r
                        .get::<Option<String>, _>("tenant_id")
                        .map(|t| parse("tenant id", &t))
                        .transpose()?,
                    actor: r.get("actor"),
                    actor_id: r.get("actor_id"),
                    source: r.get("source"),
                    action: r.get("action"),
                    object: r.get("object"),
                    detail: json("log detail", r.get::<&str, _>("detail"))?,
                })
            })
            .collect()
    }

    // Issue 8, finding 11 (server-hardening).
    async fn probe_write(&self, now: Timestamp) -> Result<()> {
        sqlx::query(
            "INSERT INTO storage_probe (id, at) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET at = EXCLUDED.at",
        )
        .bind(now.to_string())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    // ---- Issue 10, point 1: state history ----

    async fn note_published(&self, updates: &[UpdateId], now: Timestamp) -> Result<()> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        for u in updates {
            sqlx::query("INSERT INTO update_published (update_id, at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(u.as_str())
                .bind(now.to_string())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn published_at(&self, updates: &[UpdateId]) -> Result<Vec<(UpdateId, Timestamp)>> {
        let ids: Vec<&str> = updates.iter().map(UpdateId::as_str).collect();
        let rows =
            sqlx::query("SELECT update_id, at FROM update_published WHERE update_id = ANY($1)")
                .bind(&ids)
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok((
                    parse("update id", r.get::<&str, _>("update_id"))?,
                    parse("timestamp", r.get::<&str, _>("at"))?,
                ))
            })
            .collect()
    }

    // ---- Issue 10, point 3 (rings): halted rollouts ----

    async fn halt_rollout(
        &self,
        halt: &patchday_types::api::RolloutHalt,
        log: Option<&LogEntry>,
    ) -> Result<bool> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        let done = sqlx::query(
            "INSERT INTO rollout_halts (update_id, reason, at, halted_by) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (update_id) DO UPDATE SET reason = excluded.reason, at = excluded.at, \
             halted_by = excluded.halted_by, resumed_at = NULL \
             WHERE rollout_halts.resumed_at IS NOT NULL",
        )
        .bind(halt.update.as_str())
        .bind(&halt.reason)
        .bind(halt.at.to_string())
        .bind(&halt.by)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let new = done.rows_affected() > 0;
        tx.finish(log.filter(|_| new)).await?;
        Ok(new)
    }

    async fn resume_rollout(
        &self,
        update: &UpdateId,
        now: Timestamp,
        log: &LogEntry,
    ) -> Result<bool> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        let done = sqlx::query(
            "UPDATE rollout_halts SET resumed_at = $1 WHERE update_id = $2 AND resumed_at IS NULL",
        )
        .bind(now.to_string())
        .bind(update.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let was = done.rows_affected() > 0;
        tx.finish(Some(log).filter(|_| was)).await?;
        Ok(was)
    }

    async fn rollout_halts(&self) -> Result<Vec<patchday_types::api::RolloutHalt>> {
        let rows = sqlx::query(
            "SELECT update_id, reason, at, halted_by, resumed_at FROM rollout_halts ORDER BY update_id",
        )
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(patchday_types::api::RolloutHalt {
                    update: parse("update id", r.get::<&str, _>("update_id"))?,
                    reason: r.get("reason"),
                    at: parse("timestamp", r.get::<&str, _>("at"))?,
                    by: r.get("halted_by"),
                    resumed_at: opt_ts(r.get("resumed_at"))?,
                })
            })
            .collect()
    }

    // ---- Issue 10, point 7 (cleanup): evicted payloads ----

    async fn record_evictions(
        &self,
        evictions: &[patchday_store::PayloadEviction],
        log: &LogEntry,
    ) -> Result<()> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        for e in evictions {
            sqlx::query(
                "INSERT INTO payload_evictions (sha256, name, length, evicted_at, reason) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(&e.sha256)
            .bind(&e.name)
            .bind(i64::try_from(e.length).unwrap_or(i64::MAX))
            .bind(e.evicted_at.to_string())
            .bind(&e.reason)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.finish(Some(log).filter(|_| !evictions.is_empty())).await
    }

    async fn evictions(&self) -> Result<Vec<patchday_store::PayloadEviction>> {
        let rows = sqlx::query(
            "SELECT sha256, name, length, evicted_at, reason FROM payload_evictions ORDER BY sha256",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(eviction_row).collect()
    }

    async fn eviction(&self, sha256: &str) -> Result<Option<patchday_store::PayloadEviction>> {
        sqlx::query(
            "SELECT sha256, name, length, evicted_at, reason FROM payload_evictions WHERE sha256 = $1",
        )
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .as_ref()
        .map(eviction_row)
        .transpose()
    }

    async fn catalog_digests(&self) -> Result<std::collections::BTreeSet<String>> {
        let rows = sqlx::query("SELECT DISTINCT sha256 FROM catalog_targets")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        Ok(rows.iter().map(|r| r.get::<String, _>("sha256")).collect())
    }

    async fn forget_evictions(&self, sha256: &[String], log: &LogEntry) -> Result<u64> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        let mut n = 0;
        for h in sha256 {
            n += sqlx::query("DELETE FROM payload_evictions WHERE sha256 = $1")
                .bind(h)
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected();
        }
        tx.finish(Some(log).filter(|_| n > 0)).await?;
        Ok(n)
    }

    // ---- Issue 11, point 5: notifications ----

    async fn enqueue_notification(
        &self,
        e: &patchday_store::OutboxEvent,
        targets: &[String],
    ) -> Result<bool> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        let row = sqlx::query(
            "INSERT INTO notification_outbox \
             (event_key, tenant_id, event, subject, body, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (event_key) DO NOTHING RETURNING id",
        )
        .bind(&e.key)
        .bind(e.tenant.as_ref().map(|t| t.as_str()))
        .bind(e.event.as_str())
        .bind(&e.subject)
        .bind(e.body.to_string())
        .bind(e.at.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let Some(row) = row else {
            tx.finish(None).await?;
            return Ok(false);
        };
        let outbox: i64 = row.get("id");
        for t in targets {
            sqlx::query(
                "INSERT INTO notification_deliveries \
                 (outbox_id, target, status, attempts, next_at) VALUES ($1, $2, 'pending', 0, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(outbox)
            .bind(t)
            .bind(e.at.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.finish(None).await?;
        Ok(true)
    }

    async fn due_deliveries(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<patchday_store::DueDelivery>> {
        // Timestamps are stored as RFC 3339 text in UTC, which sorts as time does only at
        // equal precision: compare parsed, after a coarse filter on status.
        let rows = sqlx::query(
            "SELECT d.id, d.target, d.attempts, d.next_at, o.event_key, o.tenant_id, o.event, \
             o.subject, o.body, o.created_at FROM notification_deliveries d \
             JOIN notification_outbox o ON o.id = d.outbox_id \
             WHERE d.status = 'pending' ORDER BY d.id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let mut due = Vec::new();
        for r in &rows {
            let next: Timestamp = parse("timestamp", r.get::<&str, _>("next_at"))?;
            if next > now {
                continue;
            }
            due.push(patchday_store::DueDelivery {
                id: u64::try_from(r.get::<i64, _>("id"))
                    .map_err(|_| StoreError::Corrupt("negative delivery id".into()))?,
                target: r.get("target"),
                attempts: u32::try_from(r.get::<i64, _>("attempts")).unwrap_or(u32::MAX),
                event: outbox_row(r)?,
            });
            if due.len() >= limit as usize {
                break;
            }
        }
        Ok(due)
    }

    async fn record_delivery(
        &self,
        delivery: u64,
        attempt: &patchday_types::notify::DeliveryAttempt,
        status: patchday_types::notify::DeliveryStatus,
        next_at: Timestamp,
    ) -> Result<()> {
        let id = i64::try_from(delivery)
            .map_err(|_| StoreError::NotFound(format!("delivery {delivery}")))?;
        let mut tx = WriteTx::begin(&self.pool).await?;
        let done = sqlx::query(
            "UPDATE notification_deliveries SET status = $1, attempts = $2, next_at = $3 WHERE id = $4",
        )
        .bind(status.as_str())
        .bind(i64::from(attempt.attempt))
        .bind(next_at.to_string())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("delivery {delivery}")));
        }
        sqlx::query(
            "INSERT INTO notification_attempts (delivery_id, attempt, at, ok, detail) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(i64::from(attempt.attempt))
        .bind(attempt.at.to_string())
        .bind(attempt.ok)
        .bind(&attempt.detail)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.finish(None).await
    }

    async fn notification_log(
        &self,
        tenant: Option<&TenantId>,
        limit: u32,
    ) -> Result<Vec<patchday_types::notify::NotificationDelivery>> {
        let rows = sqlx::query(
            "SELECT d.id, d.target, d.status, d.next_at, o.event_key, o.tenant_id, o.event, \
             o.subject, o.body, o.created_at FROM notification_deliveries d \
             JOIN notification_outbox o ON o.id = d.outbox_id \
             WHERE ($1 IS NULL OR o.tenant_id = $1) ORDER BY o.id DESC, d.target LIMIT $2",
        )
        .bind(tenant.map(|t| t.as_str()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let e = outbox_row(r)?;
            let attempts = sqlx::query(
                "SELECT attempt, at, ok, detail FROM notification_attempts \
                 WHERE delivery_id = $1 ORDER BY id",
            )
            .bind(r.get::<i64, _>("id"))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(|a| {
                Ok(patchday_types::notify::DeliveryAttempt {
                    attempt: u32::try_from(a.get::<i64, _>("attempt")).unwrap_or(u32::MAX),
                    at: parse("timestamp", a.get::<&str, _>("at"))?,
                    ok: a.get("ok"),
                    detail: a.get("detail"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
            out.push(patchday_types::notify::NotificationDelivery {
                key: e.key,
                tenant: e.tenant,
                event: e.event,
                subject: e.subject,
                created_at: e.at,
                target: r.get("target"),
                status: parse("delivery status", r.get::<&str, _>("status"))?,
                next_at: parse("timestamp", r.get::<&str, _>("next_at"))?,
                attempts,
            });
        }
        Ok(out)
    }

    // ---- Issue 11, point 1: operator console sessions ----

    async fn create_console_session(&self, session: &patchday_store::ConsoleSession) -> Result<()> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        sqlx::query("DELETE FROM console_sessions WHERE expires_unix <= $1")
            .bind(session.created_at.as_second())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query(
            "INSERT INTO console_sessions (id_hash, token_hash, csrf, created_at, expires_unix) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&session.id_hash)
        .bind(&session.token_hash)
        .bind(&session.csrf)
        .bind(session.created_at.to_string())
        .bind(session.expires_at.as_second())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.finish(None).await
    }

    async fn console_session(
        &self,
        id_hash: &str,
        now: Timestamp,
    ) -> Result<Option<patchday_store::ConsoleSession>> {
        let Some(r) = sqlx::query(
            "SELECT id_hash, token_hash, csrf, created_at, expires_unix FROM console_sessions \
             WHERE id_hash = $1 AND expires_unix > $2",
        )
        .bind(id_hash)
        .bind(now.as_second())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        else {
            return Ok(None);
        };
        Ok(Some(patchday_store::ConsoleSession {
            id_hash: r.get("id_hash"),
            token_hash: r.get("token_hash"),
            csrf: r.get("csrf"),
            created_at: parse("timestamp", r.get::<&str, _>("created_at"))?,
            expires_at: Timestamp::from_second(r.get::<i64, _>("expires_unix"))
                .map_err(|e| StoreError::Corrupt(format!("session expiry: {e}")))?,
        }))
    }

    async fn end_console_session(&self, id_hash: &str) -> Result<()> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.finish(None).await
    }
}

/// A store handle bound to one tenant.
struct PgTenant {
    pool: PgPool,
    id: TenantId,
}

impl PgTenant {
    async fn require_host(&self, host: &HostId) -> Result<()> {
        self.host_row("1", host).await.map(|_| ())
    }

    /// `columns` of this tenant's host `id`, or `NotFound`.
    async fn host_row(&self, columns: &'static str, id: &HostId) -> Result<sqlx::postgres::PgRow> {
        sqlx::query(&format!(
            "SELECT {columns} FROM hosts WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(self.id.as_str())
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .ok_or_else(|| StoreError::NotFound(format!("host {id}")))
    }

    async fn host_groups(&self, host: &str) -> Result<Vec<GroupId>> {
        let rows = sqlx::query("SELECT group_id FROM host_groups WHERE tenant_id = $1 AND host_id = $2 ORDER BY group_id")
            .bind(self.id.as_str())
            .bind(host)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| parse("group id", r.get::<&str, _>("group_id")))
            .collect()
    }

    async fn host_from_row(&self, r: &sqlx::postgres::PgRow) -> Result<HostRecord> {
        let id: String = r.get("id");
        Ok(HostRecord {
            groups: self.host_groups(&id).await?,
            id: parse("host id", &id)?,
            hostname: r.get("hostname"),
            enrolled_at: parse("timestamp", r.get::<&str, _>("enrolled_at"))?,
            last_seen: opt_ts(r.get("last_seen"))?,
            facts_sha256: r.get("facts_sha256"),
        })
    }
}

#[async_trait]
impl TenantStore for PgTenant {
    fn id(&self) -> &TenantId {
        &self.id
    }

    async fn get(&self) -> Result<Tenant> {
        let row = sqlx::query("SELECT id, name, patch_day, max_hosts FROM tenants WHERE id = $1")
            .bind(self.id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .ok_or_else(|| StoreError::NotFound(format!("tenant {}", self.id)))?;
        tenant_from_row(&row)
    }

    async fn set_patch_day(&self, pd: &PatchDayConfig) -> Result<()> {
        self.write_patch_day(pd, None).await
    }

    async fn add_enroll_token(&self, hash: &str, now: Timestamp) -> Result<()> {
        sqlx::query("INSERT INTO enroll_tokens (hash, tenant_id, created_at) VALUES ($1, $2, $3)")
            .bind(hash)
            .bind(self.id.as_str())
            .bind(now.to_string())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn create_group(&self, g: &Group) -> Result<()> {
        self.write_group(g, None).await
    }

    async fn list_groups(&self) -> Result<Vec<Group>> {
        let rows = sqlx::query("SELECT id, name FROM groups WHERE tenant_id = $1 ORDER BY id")
            .bind(self.id.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(Group {
                    id: parse("group id", r.get::<&str, _>("id"))?,
                    name: r.get("name"),
                })
            })
            .collect()
    }

    async fn create_host(
        &self,
        id: &HostId,
        hostname: &str,
        cred: &str,
        now: Timestamp,
    ) -> Result<()> {
        // The quota (finding 4) is checked with the tenant's row locked, so concurrent
        // enrolments (on any replica) cannot pass it together.
        let mut tx = WriteTx::begin(&self.pool).await?;
        tx.lock_tenant(&self.id).await?;
        let done = sqlx::query(
            "INSERT INTO hosts (tenant_id, id, hostname, credential_hash, enrolled_at) \
             SELECT $1, $2, $3, $4, $5 FROM tenants t WHERE t.id = $1 AND (t.max_hosts IS NULL \
             OR (SELECT count(*) FROM hosts WHERE tenant_id = $1) < t.max_hosts)",
        )
        .bind(self.id.as_str())
        .bind(id.as_str())
        .bind(hostname)
        .bind(cred)
        .bind(now.to_string())
        .execute(&mut *tx)
        .await
        .map_err(about(format!("host {id}")))?;
        if done.rows_affected() == 0 {
            drop(tx);
            return Err(self.quota_refusal().await);
        }
        tx.commit().await.map_err(backend)
    }

    async fn host(&self, id: &HostId) -> Result<HostRecord> {
        let row = self
            .host_row("id, hostname, enrolled_at, last_seen, facts_sha256", id)
            .await?;
        self.host_from_row(&row).await
    }

    async fn list_hosts(&self) -> Result<Vec<HostRecord>> {
        // Two queries for the tenant, whatever its size (a groups query per host cost
        // 10,000 round trips at 10,000 hosts: ring previews and the rollout tick call this).
        let rows = sqlx::query("SELECT id, hostname, enrolled_at, last_seen, facts_sha256 FROM hosts WHERE tenant_id = $1 ORDER BY id")
            .bind(self.id.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        let groups = sqlx::query(
            "SELECT host_id, group_id FROM host_groups WHERE tenant_id = $1 ORDER BY host_id, group_id",
        )
        .bind(self.id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let mut by_host: std::collections::HashMap<String, Vec<GroupId>> =
            std::collections::HashMap::new();
        for r in &groups {
            by_host
                .entry(r.get("host_id"))
                .or_default()
                .push(parse("group id", r.get::<&str, _>("group_id"))?);
        }
        rows.iter()
            .map(|r| {
                let id: String = r.get("id");
                Ok(HostRecord {
                    groups: by_host.remove(&id).unwrap_or_default(),
                    id: parse("host id", &id)?,
                    hostname: r.get("hostname"),
                    enrolled_at: parse("timestamp", r.get::<&str, _>("enrolled_at"))?,
                    last_seen: opt_ts(r.get("last_seen"))?,
                    facts_sha256: r.get("facts_sha256"),
                })
            })
            .collect()
    }

    async fn set_host_groups(&self, id: &HostId, groups: &[GroupId]) -> Result<()> {
        self.write_host_groups(id, groups, None).await
    }

    async fn save_inventory(&self, id: &HostId, inv: &Inventory, now: Timestamp) -> Result<()> {
        let text = to_json(inv)?;
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes()));
        // Most check-ins send what the last one did: then only the time moves.
        let same = sqlx::query(
            "UPDATE hosts SET last_seen = $1 WHERE tenant_id = $2 AND id = $3 AND inventory_sha256 = $4",
        )
        .bind(now.to_string())
        .bind(self.id.as_str())
        .bind(id.as_str())
        .bind(&sha)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if same.rows_affected() == 1 {
            return Ok(());
        }
        // In one call, the size known: zstd sizes its tables to the inventory (a few KB)
        // where the streaming encoder set up level 3's whole window at every check-in.
        let packed = zstd::bulk::compress(text.as_bytes(), 3)
            .map_err(|e| StoreError::Backend(format!("compressing an inventory: {e}")))?;
        let done = sqlx::query(
            "UPDATE hosts SET inventory = NULL, inventory_zstd = $1, inventory_sha256 = $2, \
             last_seen = $3, hostname = $4 WHERE tenant_id = $5 AND id = $6",
        )
        .bind(packed)
        .bind(&sha)
        .bind(now.to_string())
        .bind(&inv.hostname)
        .bind(self.id.as_str())
        .bind(id.as_str())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        host_updated(&done, id)
    }

    async fn inventory(&self, id: &HostId) -> Result<Option<Inventory>> {
        let row = self.host_row("inventory, inventory_zstd", id).await?;
        if let Some(packed) = row.get::<Option<Vec<u8>>, _>("inventory_zstd") {
            let text =
                zstd::decode_all(packed.as_slice()).map_err(|e| corrupt("inventory_zstd", e))?;
            return serde_json::from_slice(&text)
                .map(Some)
                .map_err(|e| corrupt("inventory_zstd", e));
        }
        row.get::<Option<String>, _>("inventory")
            .map(|s| json("inventory", &s))
            .transpose()
    }

    async fn put_approval(&self, a: &Approval) -> Result<()> {
        self.write_approval(a, None).await
    }

    async fn list_approvals(&self) -> Result<Vec<Approval>> {
        let rows = sqlx::query(
            "SELECT update_id, group_id, decision, deadline, decided_at, decided_by, reason, emergency, remove FROM approvals
             WHERE tenant_id = $1 ORDER BY update_id, group_id",
        )
        .bind(self.id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(approval_row).collect()
    }

    async fn list_approvals_for(&self, updates: &[UpdateId]) -> Result<Vec<Approval>> {
        let ids: Vec<&str> = updates.iter().map(UpdateId::as_str).collect();
        let rows = sqlx::query(
            "SELECT update_id, group_id, decision, deadline, decided_at, decided_by, reason, emergency, remove FROM approvals \
             WHERE tenant_id = $1 AND update_id = ANY($2) ORDER BY update_id, group_id",
        )
        .bind(self.id.as_str())
        .bind(&ids)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(approval_row).collect()
    }

    async fn missing_facts_blobs(&self, digests: &[String]) -> Result<Vec<String>> {
        let held: std::collections::HashSet<String> =
            sqlx::query("SELECT sha256 FROM facts_blobs WHERE tenant_id = $1 AND sha256 = ANY($2)")
                .bind(self.id.as_str())
                .bind(digests)
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?
                .iter()
                .map(|r| r.get("sha256"))
                .collect();
        Ok(digests
            .iter()
            .filter(|d| !held.contains(*d))
            .cloned()
            .collect())
    }

    async fn save_facts(
        &self,
        id: &HostId,
        facts: &StoredFacts,
        blobs: &[(String, Vec<u8>)],
    ) -> Result<()> {
        let tenant = self.id.as_str();
        let mut tx = WriteTx::begin(&self.pool).await?;
        let done = sqlx::query(
            "UPDATE hosts SET facts = NULL, facts_sha256 = $1, facts_at = $2 WHERE tenant_id = $3 AND id = $4",
        )
        .bind(&facts.sha256)
        .bind(facts.at.to_string())
        .bind(tenant)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        host_updated(&done, id)?;
        for (digest, body) in blobs {
            sqlx::query(
                "INSERT INTO facts_blobs (tenant_id, sha256, body) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id, sha256) DO NOTHING",
            )
            .bind(tenant)
            .bind(digest)
            .bind(body.as_slice())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        let old: Vec<String> = sqlx::query(
            "DELETE FROM host_facts_parts WHERE tenant_id = $1 AND host_id = $2 RETURNING sha256",
        )
        .bind(tenant)
        .bind(id.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?
        .iter()
        .map(|r| r.get("sha256"))
        .collect();
        for (part, digest) in &facts.parts {
            // FOR KEY SHARE: a concurrent save's orphan sweep cannot take the blob away
            // between this check and the commit.
            let held = sqlx::query(
                "SELECT 1 FROM facts_blobs WHERE tenant_id = $1 AND sha256 = $2 FOR KEY SHARE",
            )
            .bind(tenant)
            .bind(digest)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
            if held.is_none() {
                return Err(StoreError::Refused(format!(
                    "facts part {part:?} names blob {digest}, which tenant {tenant} does not hold: send its content"
                )));
            }
            sqlx::query(
                "INSERT INTO host_facts_parts (tenant_id, host_id, part, sha256) VALUES ($1, $2, $3, $4)",
            )
            .bind(tenant)
            .bind(id.as_str())
            .bind(part)
            .bind(digest)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        // Blobs no host names any more, after the commit and on their own: a concurrent
        // save that just named one holds it (the foreign key), and this sweep then fails
        // for it, which is what should happen. A blob left over costs disk only.
        for digest in old {
            let _ = sqlx::query(
                "DELETE FROM facts_blobs WHERE tenant_id = $1 AND sha256 = $2 AND NOT EXISTS \
                 (SELECT 1 FROM host_facts_parts WHERE tenant_id = $1 AND sha256 = $2)",
            )
            .bind(tenant)
            .bind(&digest)
            .execute(&self.pool)
            .await;
        }
        Ok(())
    }

    async fn facts(&self, id: &HostId) -> Result<Option<StoredFacts>> {
        let row = self.host_row("facts_sha256, facts_at", id).await?;
        let (Some(sha256), Some(at)) = (
            row.get::<Option<String>, _>("facts_sha256"),
            opt_ts(row.get("facts_at"))?,
        ) else {
            return Ok(None);
        };
        let parts = sqlx::query(
            "SELECT part, sha256 FROM host_facts_parts WHERE tenant_id = $1 AND host_id = $2",
        )
        .bind(self.id.as_str())
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(|r| (r.get("part"), r.get("sha256")))
        .collect();
        Ok(Some(StoredFacts { sha256, parts, at }))
    }

    async fn all_facts(&self) -> Result<Vec<(HostId, StoredFacts)>> {
        let rows = sqlx::query(
            "SELECT h.id, h.facts_sha256, h.facts_at, p.part, p.sha256 FROM hosts h \
             JOIN host_facts_parts p ON p.tenant_id = h.tenant_id AND p.host_id = h.id \
             WHERE h.tenant_id = $1 AND h.facts_sha256 IS NOT NULL ORDER BY h.id, p.part",
        )
        .bind(self.id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let mut out: Vec<(HostId, StoredFacts)> = Vec::new();
        for r in &rows {
            let host: HostId = parse("host id", r.get::<&str, _>("id"))?;
            if out.last().is_none_or(|(h, _)| *h != host) {
                out.push((
                    host,
                    StoredFacts {
                        sha256: r.get("facts_sha256"),
                        parts: Default::default(),
                        at: parse("timestamp", r.get::<&str, _>("facts_at"))?,
                    },
                ));
            }
            if let Some((_, f)) = out.last_mut() {
                f.parts.insert(r.get("part"), r.get("sha256"));
            }
        }
        Ok(out)
    }

    async fn facts_blobs(&self, digests: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(sqlx::query(
            "SELECT sha256, body FROM facts_blobs WHERE tenant_id = $1 AND sha256 = ANY($2)",
        )
        .bind(self.id.as_str())
        .bind(digests)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(|r| (r.get("sha256"), r.get("body")))
        .collect())
    }

    async fn put_states(&self, id: &HostId, states: &[StateReport], now: Timestamp) -> Result<()> {
        self.require_host(id).await?;
        let mut tx = WriteTx::begin(&self.pool).await?;
        // Issue 10, point 8: in turn with `report_on_kept` for the same host.
        lock_host_states(&mut tx, &self.id, id).await?;
        store_states(&mut tx, &self.id, id, states, now).await?;
        tx.commit().await.map_err(backend)
    }

    // ---- Issue 14, point 4: the mail attachment filter's verdicts ----

    async fn record_mail_verdict(&self, verdict: &patchday_types::api::MailVerdict) -> Result<()> {
        sqlx::query(
            "INSERT INTO mail_verdicts (tenant_id, time, verdict, record) VALUES ($1, $2, $3, $4)",
        )
        .bind(self.id.as_str())
        .bind(verdict.time.to_string())
        .bind(&verdict.verdict)
        .bind(to_json(verdict)?)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn mail_verdicts(&self, limit: u32) -> Result<Vec<patchday_types::api::MailVerdict>> {
        let rows = sqlx::query(
            "SELECT record FROM mail_verdicts WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(self.id.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| json("mail verdict", &r.get::<String, _>("record")))
            .collect()
    }

    // ---- Issue 14, point 5: the agents' folder scan ----

    async fn record_scan_findings(
        &self,
        host: &HostId,
        findings: &[patchday_types::api::ScanFinding],
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        for f in findings {
            let outcome = serde_json::to_value(f.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            sqlx::query(
                "INSERT INTO scan_findings (tenant_id, host_id, received_at, outcome, record) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(self.id.as_str())
            .bind(host.as_str())
            .bind(now.to_string())
            .bind(outcome)
            .bind(to_json(f)?)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn scan_findings(&self, limit: u32) -> Result<Vec<patchday_types::api::HostScanFinding>> {
        let rows = sqlx::query(
            "SELECT f.host_id, COALESCE(h.hostname, '') AS hostname, f.received_at, f.record FROM scan_findings f LEFT JOIN hosts h ON h.tenant_id = f.tenant_id AND h.id = f.host_id WHERE f.tenant_id = $1 ORDER BY f.id DESC LIMIT $2",
        )
        .bind(self.id.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(patchday_types::api::HostScanFinding {
                    host: parse("host id", r.get::<&str, _>("host_id"))?,
                    hostname: r.get("hostname"),
                    received_at: parse("timestamp", r.get::<&str, _>("received_at"))?,
                    finding: json("scan finding", &r.get::<String, _>("record"))?,
                })
            })
            .collect()
    }

    // ---- issue 13, point 1: baselines ----

    async fn save_baseline_reports(
        &self,
        id: &HostId,
        reports: &[patchday_types::api::BaselineReport],
        now: Timestamp,
    ) -> Result<()> {
        if reports.is_empty() {
            return Ok(());
        }
        let mut tx = WriteTx::begin(&self.pool).await?;
        for r in reports {
            let drifted = !r.drift.is_empty();
            sqlx::query(
                "INSERT INTO host_baselines (tenant_id, host_id, baseline, version, drift, repaired, error, \
                 measured, reported_at, last_drift_at, drift_runs) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
                 CASE WHEN $10 > 0 THEN $9 END, $10) \
                 ON CONFLICT (tenant_id, host_id, baseline) DO UPDATE SET version = excluded.version, \
                 drift = excluded.drift, repaired = excluded.repaired, error = excluded.error, \
                 measured = excluded.measured, reported_at = excluded.reported_at, \
                 last_drift_at = COALESCE(excluded.last_drift_at, host_baselines.last_drift_at), \
                 drift_runs = host_baselines.drift_runs + excluded.drift_runs",
            )
            .bind(self.id.as_str())
            .bind(id.as_str())
            .bind(&r.name)
            .bind(&r.version)
            .bind(to_json(&r.drift)?)
            .bind(i64::from(r.repaired))
            .bind(&r.error)
            .bind(to_json(&r.measured)?)
            .bind(now.to_string())
            .bind(i64::from(drifted))
            .execute(&mut *tx)
            .await
            .map_err(about(format!("host {id}")))?;
            if drifted {
                sqlx::query(
                    "INSERT INTO baseline_drift (tenant_id, host_id, baseline, version, drift, repaired, at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(self.id.as_str())
                .bind(id.as_str())
                .bind(&r.name)
                .bind(&r.version)
                .bind(to_json(&r.drift)?)
                .bind(i64::from(r.repaired))
                .bind(now.to_string())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            }
        }
        tx.commit().await.map_err(backend)
    }

    async fn baseline_reports(&self) -> Result<Vec<patchday_types::api::HostBaseline>> {
        let rows = sqlx::query(
            "SELECT b.host_id, h.hostname, b.baseline, b.version, b.drift, b.repaired, b.error, \
             b.measured, b.reported_at, b.last_drift_at, b.drift_runs FROM host_baselines b \
             JOIN hosts h ON h.tenant_id = b.tenant_id AND h.id = b.host_id \
             WHERE b.tenant_id = $1 ORDER BY h.hostname, b.host_id, b.baseline",
        )
        .bind(self.id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(patchday_types::api::HostBaseline {
                    host: parse("host id", r.get::<&str, _>("host_id"))?,
                    hostname: r.get("hostname"),
                    baseline: r.get("baseline"),
                    version: r.get("version"),
                    drift: json("baseline drift", r.get::<&str, _>("drift"))?,
                    repaired: r.get::<i64, _>("repaired") != 0,
                    error: r.get("error"),
                    measured: json("baseline measurements", r.get::<&str, _>("measured"))?,
                    reported_at: parse("timestamp", r.get::<&str, _>("reported_at"))?,
                    last_drift_at: opt_ts(r.get("last_drift_at"))?,
                    drift_runs: u64::try_from(r.get::<i64, _>("drift_runs")).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn baseline_drift(
        &self,
        limit: u32,
    ) -> Result<Vec<patchday_types::api::BaselineDriftEvent>> {
        let rows = sqlx::query(
            "SELECT host_id, baseline, version, drift, repaired, at FROM baseline_drift \
             WHERE tenant_id = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(self.id.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(patchday_types::api::BaselineDriftEvent {
                    host: parse("host id", r.get::<&str, _>("host_id"))?,
                    baseline: r.get("baseline"),
                    version: r.get("version"),
                    drift: json("baseline drift", r.get::<&str, _>("drift"))?,
                    repaired: r.get::<i64, _>("repaired") != 0,
                    at: parse("timestamp", r.get::<&str, _>("at"))?,
                })
            })
            .collect()
    }

    async fn fleet_page(&self, after: Option<&HostId>, limit: u32) -> Result<Vec<FleetHost>> {
        // One query for the tenant, whatever its size (issue 11, point 1), and one value
        // for the page: PostgreSQL builds it as JSON (patchday_store::fleet_pages).
        let page: Option<String> = sqlx::query_scalar(
            "SELECT json_agg(json_build_array(h.id, h.hostname, h.enrolled_at, h.last_seen,
                    h.facts_sha256, h.public_key, h.last_sequence, h.last_signed_at, h.agent_error,
                    h.agent_error_at,
                    (SELECT string_agg(g.group_id, ' ' ORDER BY g.group_id) FROM host_groups g
                       WHERE g.tenant_id = h.tenant_id AND g.host_id = h.id),
                    (SELECT string_agg(s.update_id || '=' || s.state || '@' || s.at, ';' ORDER BY s.update_id)
                       FROM host_states s WHERE s.tenant_id = h.tenant_id AND s.host_id = h.id),
                    COALESCE(h.inventory_sha256, 'seen ' || h.last_seen),
                    v.basis, v.body, v.summary) ORDER BY h.id)::text
             FROM (SELECT tenant_id, id, hostname, enrolled_at, last_seen, facts_sha256, public_key,
                          last_sequence, last_signed_at, agent_error, agent_error_at, inventory_sha256
                   FROM hosts WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3) h
             LEFT JOIN host_verdicts v ON v.tenant_id = h.tenant_id AND v.host_id = h.id",
        )
        .bind(self.id.as_str())
        .bind(after.map_or("", |a| a.as_str()))
        .bind(i64::from(limit))
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        patchday_store::fleet_pages::fleet_hosts(page.as_deref())
    }

    async fn fleet_summaries(
        &self,
        after: Option<&HostId>,
        limit: u32,
    ) -> Result<Vec<FleetSummary>> {
        // `fleet_page` without what the host signed and with the summary for the body.
        let page: Option<String> = sqlx::query_scalar(
            "SELECT json_agg(json_build_array(h.id, h.hostname, h.enrolled_at, h.last_seen,
                    h.facts_sha256, h.agent_error, h.agent_error_at,
                    (SELECT string_agg(g.group_id, ' ' ORDER BY g.group_id) FROM host_groups g
                       WHERE g.tenant_id = h.tenant_id AND g.host_id = h.id),
                    (SELECT string_agg(s.update_id || '=' || s.state || '@' || s.at, ';' ORDER BY s.update_id)
                       FROM host_states s WHERE s.tenant_id = h.tenant_id AND s.host_id = h.id),
                    COALESCE(h.inventory_sha256, 'seen ' || h.last_seen),
                    v.basis, v.summary) ORDER BY h.id)::text
             FROM (SELECT tenant_id, id, hostname, enrolled_at, last_seen, facts_sha256, agent_error,
                          agent_error_at, inventory_sha256
                   FROM hosts WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3) h
             LEFT JOIN host_verdicts v ON v.tenant_id = h.tenant_id AND v.host_id = h.id",
        )
        .bind(self.id.as_str())
        .bind(after.map_or("", |a| a.as_str()))
        .bind(i64::from(limit))
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        patchday_store::fleet_pages::fleet_summaries(page.as_deref())
    }

    async fn decisions_mark(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT decisions_rev FROM tenants WHERE id = $1")
            .bind(self.id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .ok_or_else(|| StoreError::NotFound(format!("tenant {}", self.id)))
    }

    async fn host_marks(&self, id: &HostId) -> Result<MarksAtCheckin> {
        // The same marks as `fleet_page`, for one host, in one query.
        let mut c = self.pool.acquire().await.map_err(backend)?;
        marks_and_kept(&mut c, &self.id, id, false)
            .await?
            .map(|(m, _)| m)
            .ok_or_else(|| StoreError::NotFound(format!("host {id}")))
    }

    async fn put_verdicts(&self, verdicts: &[StoredVerdict]) -> Result<()> {
        if verdicts.is_empty() {
            return Ok(());
        }
        let mut tx = WriteTx::begin(&self.pool).await?;
        for v in verdicts {
            put_verdict(&mut tx, &self.id, v).await?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn states(&self, id: &HostId) -> Result<Vec<StoredState>> {
        let rows = sqlx::query(
            "SELECT update_id, state, message, at FROM host_states WHERE tenant_id = $1 AND host_id = $2 ORDER BY update_id",
        )
        .bind(self.id.as_str())
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(StoredState {
                    report: StateReport {
                        update: parse("update id", r.get::<&str, _>("update_id"))?,
                        state: parse::<UpdateState>("state", r.get::<&str, _>("state"))?,
                        message: r.get("message"),
                    },
                    at: parse("timestamp", r.get::<&str, _>("at"))?,
                })
            })
            .collect()
    }

    // finding 8/13 (issue 8): host-signed requests and agent errors.

    async fn set_host_public_key(&self, id: &HostId, public_key: &str) -> Result<()> {
        let done = sqlx::query(
            "UPDATE hosts SET public_key = $1 WHERE tenant_id = $2 AND id = $3 AND public_key IS NULL",
        )
        .bind(public_key)
        .bind(self.id.as_str())
        .bind(id.as_str())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 0 {
            self.require_host(id).await?;
            return Err(StoreError::Conflict(format!("signing key of host {id}")));
        }
        Ok(())
    }

    async fn host_signing(&self, id: &HostId) -> Result<HostSigning> {
        let r = self
            .host_row(
                "public_key, last_sequence, last_signed_at, agent_error, agent_error_at",
                id,
            )
            .await?;
        let agent_error = match (
            r.get::<Option<String>, _>("agent_error"),
            opt_ts(r.get("agent_error_at"))?,
        ) {
            (Some(e), Some(at)) => Some((e, at)),
            _ => None,
        };
        Ok(HostSigning {
            public_key: r.get("public_key"),
            last_sequence: u64::try_from(r.get::<i64, _>("last_sequence"))
                .map_err(|e| corrupt("last_sequence", e))?,
            last_signed_at: opt_ts(r.get("last_signed_at"))?,
            agent_error,
        })
    }

    async fn advance_sequence(
        &self,
        id: &HostId,
        sequence: u64,
        now: Timestamp,
    ) -> Result<SequenceCheck> {
        // Columns are BIGINT (i64): a larger number can never be stored, so it is
        // refused as a replay of the largest storable one rather than wrapped.
        let Ok(seq) = i64::try_from(sequence) else {
            return Ok(SequenceCheck::Replayed {
                last: self.host_signing(id).await?.last_sequence,
            });
        };
        let done = sqlx::query(
            "UPDATE hosts SET last_sequence = $1, last_signed_at = $2 \
             WHERE tenant_id = $3 AND id = $4 AND last_sequence < $5",
        )
        .bind(seq)
        .bind(now.to_string())
        .bind(self.id.as_str())
        .bind(id.as_str())
        .bind(seq)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 1 {
            return Ok(SequenceCheck::Accepted);
        }
        let last = self.host_signing(id).await?.last_sequence;
        Ok(SequenceCheck::Replayed { last })
    }

    async fn set_agent_error(
        &self,
        id: &HostId,
        error: Option<&str>,
        now: Timestamp,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE hosts SET agent_error = $1, agent_error_at = $2 WHERE tenant_id = $3 AND id = $4",
        )
        .bind(error)
        .bind(error.map(|_| now.to_string()))
        .bind(self.id.as_str())
        .bind(id.as_str())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        host_updated(&done, id)
    }

    // ---- Finding 3/4 (issue 8): enrolment tokens with limits, removal, host quota ----

    async fn create_enroll_token(&self, t: &NewEnrollToken, log: &LogEntry) -> Result<()> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        if let Some(g) = &t.group {
            sqlx::query("SELECT 1 FROM groups WHERE tenant_id = $1 AND id = $2")
                .bind(self.id.as_str())
                .bind(g.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?
                .ok_or_else(|| StoreError::NotFound(format!("group {g}")))?;
        }
        sqlx::query(
            "INSERT INTO enroll_tokens (hash, tenant_id, created_at, name, prefix, group_id, \
             expires_at, max_uses) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&t.hash)
        .bind(self.id.as_str())
        .bind(t.created_at.to_string())
        .bind(&t.name)
        .bind(&t.prefix)
        .bind(t.group.as_ref().map(|g| g.as_str().to_string()))
        .bind(t.expires_at.map(|e| e.to_string()))
        .bind(t.max_uses.map(i64::from))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        insert_log(&mut tx, log).await?;
        tx.commit().await.map_err(backend)
    }

    async fn list_enroll_tokens(&self) -> Result<Vec<EnrollTokenInfo>> {
        let rows = sqlx::query(&format!(
            "SELECT {ENROLL_COLUMNS} FROM enroll_tokens WHERE tenant_id = $1 ORDER BY created_at, hash"
        ))
        .bind(self.id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(enroll_info_row).collect()
    }

    async fn revoke_enroll_token(
        &self,
        id: &str,
        now: Timestamp,
        log: &LogEntry,
    ) -> Result<EnrollTokenInfo> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        sqlx::query(
            "UPDATE enroll_tokens SET revoked_at = $1 WHERE tenant_id = $2 \
             AND substr(hash, 1, 12) = $3 AND revoked_at IS NULL",
        )
        .bind(now.to_string())
        .bind(self.id.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let row = sqlx::query(&format!(
            "SELECT {ENROLL_COLUMNS} FROM enroll_tokens WHERE tenant_id = $1 AND substr(hash, 1, 12) = $2"
        ))
        .bind(self.id.as_str())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?
        .ok_or_else(|| StoreError::NotFound(format!("enrolment token {id}")))?;
        insert_log(&mut tx, log).await?;
        tx.commit().await.map_err(backend)?;
        enroll_info_row(&row)
    }

    async fn remove_host(&self, id: &HostId, now: Timestamp, log: &LogEntry) -> Result<()> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        let moved = sqlx::query(
            "INSERT INTO removed_hosts (credential_hash, tenant_id, host_id, removed_at) \
             SELECT credential_hash, tenant_id, id, $1 FROM hosts WHERE tenant_id = $2 AND id = $3 \
             ON CONFLICT (credential_hash) DO NOTHING",
        )
        .bind(now.to_string())
        .bind(self.id.as_str())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        // Memberships and states go with the host (ON DELETE CASCADE).
        let gone = sqlx::query("DELETE FROM hosts WHERE tenant_id = $1 AND id = $2")
            .bind(self.id.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if gone.rows_affected() == 0 && moved.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("host {id}")));
        }
        insert_log(&mut tx, log).await?;
        tx.commit().await.map_err(backend)?;
        // Its facts parts went with it; the blobs only it named go too (issue 12, point
        // 7), after the commit and best-effort as in `save_facts`.
        let _ = sqlx::query(
            "DELETE FROM facts_blobs WHERE tenant_id = $1 AND NOT EXISTS \
             (SELECT 1 FROM host_facts_parts p WHERE p.tenant_id = facts_blobs.tenant_id \
             AND p.sha256 = facts_blobs.sha256)",
        )
        .bind(self.id.as_str())
        .execute(&self.pool)
        .await;
        Ok(())
    }

    async fn remove_group(&self, id: &GroupId, log: &LogEntry) -> Result<()> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        // Memberships and approvals go with the group (ON DELETE CASCADE).
        let gone = sqlx::query("DELETE FROM groups WHERE tenant_id = $1 AND id = $2")
            .bind(self.id.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if gone.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("group {id}")));
        }
        insert_log(&mut tx, log).await?;
        tx.commit().await.map_err(backend)
    }

    async fn put_approval_logged(&self, a: &Approval, log: &LogEntry) -> Result<()> {
        self.write_approval(a, Some(log)).await
    }

    async fn create_group_logged(&self, g: &Group, log: &LogEntry) -> Result<()> {
        self.write_group(g, Some(log)).await
    }

    async fn set_patch_day_logged(&self, pd: &PatchDayConfig, log: &LogEntry) -> Result<()> {
        self.write_patch_day(pd, Some(log)).await
    }

    async fn set_host_groups_logged(
        &self,
        id: &HostId,
        groups: &[GroupId],
        log: &LogEntry,
    ) -> Result<()> {
        self.write_host_groups(id, groups, Some(log)).await
    }

    async fn set_max_hosts(&self, max_hosts: Option<u32>, log: &LogEntry) -> Result<()> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        sqlx::query("UPDATE tenants SET max_hosts = $1 WHERE id = $2")
            .bind(max_hosts.map(i64::from))
            .bind(self.id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        insert_log(&mut tx, log).await?;
        tx.commit().await.map_err(backend)
    }

    // ---- issue 9, point 4 (closure): server-side repair assignments ----

    async fn request_repair_logged(
        &self,
        id: &HostId,
        allow_apt: bool,
        now: Timestamp,
        log: &LogEntry,
    ) -> Result<()> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        let done = sqlx::query(
            "UPDATE hosts SET repair_requested_at = $1, repair_allow_apt = $2, repair_sent_at = NULL WHERE tenant_id = $3 AND id = $4",
        )
        .bind(now.to_string())
        .bind(i64::from(allow_apt))
        .bind(self.id.as_str())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        host_updated(&done, id)?;
        insert_log(&mut tx, log).await?;
        tx.commit().await.map_err(backend)
    }

    async fn repair_request(&self, id: &HostId) -> Result<Option<RepairRequest>> {
        let r = self
            .host_row("repair_requested_at, repair_allow_apt, repair_sent_at", id)
            .await?;
        let Some(requested_at) = opt_ts(r.get("repair_requested_at"))? else {
            return Ok(None);
        };
        Ok(Some(RepairRequest {
            requested_at,
            allow_apt: r.get::<i64, _>("repair_allow_apt") != 0,
            sent_at: opt_ts(r.get("repair_sent_at"))?,
        }))
    }

    async fn repair_sent(&self, id: &HostId, now: Timestamp) -> Result<()> {
        sqlx::query(
            "UPDATE hosts SET repair_sent_at = COALESCE(repair_sent_at, $1) WHERE tenant_id = $2 AND id = $3 AND repair_requested_at IS NOT NULL",
        )
        .bind(now.to_string())
        .bind(self.id.as_str())
        .bind(id.as_str())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn clear_repair(&self, id: &HostId) -> Result<()> {
        sqlx::query(
            "UPDATE hosts SET repair_requested_at = NULL, repair_allow_apt = 0, repair_sent_at = NULL WHERE tenant_id = $1 AND id = $2",
        )
        .bind(self.id.as_str())
        .bind(id.as_str())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    // ---- Issue 10, point 5: maintenance windows and reboot policy per group ----

    async fn set_group_policy_logged(
        &self,
        group: &GroupId,
        policy: &patchday_types::api::GroupPolicy,
        log: &LogEntry,
    ) -> Result<()> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        let done = sqlx::query(
            "UPDATE groups SET windows = $1, reboot = $2 WHERE tenant_id = $3 AND id = $4",
        )
        .bind(to_json(&policy.windows)?)
        .bind(&policy.reboot)
        .bind(self.id.as_str())
        .bind(group.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("group {group}")));
        }
        tx.finish(Some(log)).await
    }

    async fn group_policies(
        &self,
    ) -> Result<std::collections::BTreeMap<GroupId, patchday_types::api::GroupPolicy>> {
        let rows = sqlx::query("SELECT id, windows, reboot FROM groups WHERE tenant_id = $1")
            .bind(self.id.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                let id: GroupId = parse("group id", r.get::<&str, _>("id"))?;
                let windows: Vec<String> = serde_json::from_str(&r.get::<String, _>("windows"))
                    .map_err(|e| corrupt("group windows", e))?;
                let policy = patchday_types::api::GroupPolicy {
                    windows,
                    reboot: r.get("reboot"),
                };
                Ok((id, policy))
            })
            .collect()
    }

    // ---- Issue 10, point 1: state history ----

    async fn record_host_states(
        &self,
        id: &HostId,
        states: &[StateReport],
        now: Timestamp,
        verdict: Option<&StoredVerdict>,
    ) -> Result<Vec<HistoryEntry>> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        lock_host_states(&mut tx, &self.id, id).await?;
        if let Some(v) = verdict {
            put_verdict(&mut tx, &self.id, v).await?;
        }
        let appended = record_changes(&mut tx, &self.id, id, states, now).await?;
        tx.commit().await.map_err(backend)?;
        Ok(appended)
    }

    async fn report_on_kept(
        &self,
        id: &HostId,
        states: &[StateReport],
        now: Timestamp,
        carry: &patchday_store::CarryForward<'_>,
    ) -> Result<Option<Vec<HistoryEntry>>> {
        // Issue 10, point 8: one transaction for the whole report, its evaluation carried
        // forward. The host's row stays locked from the marks read to the commit (a
        // check-in's inventory waits), and reports of the host take turns.
        let mut tx = WriteTx::begin(&self.pool).await?;
        lock_host_states(&mut tx, &self.id, id).await?;
        let (before, body) = marks_and_kept(&mut tx, &self.id, id, true)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("host {id}")))?;
        let Some(carried) = carry(&before, body.as_deref()) else {
            return Ok(None); // rolled back: nothing was written
        };
        store_states(&mut tx, &self.id, id, states, now).await?;
        if let Some((after, _)) = marks_and_kept(&mut tx, &self.id, id, false).await? {
            if let Some(v) = (carried.keep)(&after) {
                put_verdict(&mut tx, &self.id, &v).await?;
            }
        }
        let appended = record_changes(&mut tx, &self.id, id, &carried.history, now).await?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(appended))
    }

    // ---- Issue 10, points 2 and 3 (rings) ----

    async fn set_rings_logged(
        &self,
        rings: &[patchday_types::api::Ring],
        log: &LogEntry,
    ) -> Result<()> {
        self.write_rings(rings, log).await
    }

    async fn rings(&self) -> Result<Vec<patchday_types::api::Ring>> {
        self.read_rings().await
    }

    async fn update_states(
        &self,
        update: &UpdateId,
    ) -> Result<Vec<(HostId, UpdateState, Timestamp)>> {
        let rows = sqlx::query(
            "SELECT host_id, state, since FROM host_update_state WHERE tenant_id = $1 AND update_id = $2",
        )
        .bind(self.id.as_str())
        .bind(update.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok((
                    parse("host id", r.get::<&str, _>("host_id"))?,
                    parse("state", r.get::<&str, _>("state"))?,
                    parse("timestamp", r.get::<&str, _>("since"))?,
                ))
            })
            .collect()
    }

    async fn admit_wave(
        &self,
        update: &UpdateId,
        group: &GroupId,
        hosts: &[HostId],
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        for h in hosts {
            sqlx::query(
                "INSERT INTO rollout_waves (tenant_id, update_id, group_id, host_id, admitted_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(self.id.as_str())
            .bind(update.as_str())
            .bind(group.as_str())
            .bind(h.as_str())
            .bind(now.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn wave_admitted(
        &self,
        update: &UpdateId,
        group: &GroupId,
    ) -> Result<Vec<(HostId, Timestamp)>> {
        let rows = sqlx::query(
            "SELECT host_id, admitted_at FROM rollout_waves WHERE tenant_id = $1 AND update_id = $2 AND group_id = $3",
        )
        .bind(self.id.as_str())
        .bind(update.as_str())
        .bind(group.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok((
                    parse("host id", r.get::<&str, _>("host_id"))?,
                    parse("timestamp", r.get::<&str, _>("admitted_at"))?,
                ))
            })
            .collect()
    }

    async fn wave_held(&self, host: &HostId, updates: &[UpdateId]) -> Result<Vec<UpdateId>> {
        let rows = sqlx::query(
            "SELECT DISTINCT w.update_id FROM rollout_waves w \
             JOIN host_groups g ON g.tenant_id = w.tenant_id AND g.group_id = w.group_id AND g.host_id = $2 \
             WHERE w.tenant_id = $1 AND NOT EXISTS (SELECT 1 FROM rollout_waves a \
               WHERE a.tenant_id = w.tenant_id AND a.update_id = w.update_id AND a.host_id = $2)",
        )
        .bind(self.id.as_str())
        .bind(host.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let mut held = Vec::new();
        for r in &rows {
            let u: UpdateId = parse("update id", r.get::<&str, _>("update_id"))?;
            if updates.contains(&u) {
                held.push(u);
            }
        }
        Ok(held)
    }

    async fn history(
        &self,
        host: Option<&HostId>,
        update: Option<&UpdateId>,
        limit: u32,
    ) -> Result<Vec<HistoryEntry>> {
        let rows = sqlx::query(history_sql(host.is_some(), update.is_some()))
            .bind(self.id.as_str())
            .bind(host.map(|h| h.as_str()))
            .bind(update.map(|u| u.as_str()))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(HistoryEntry {
                    host: parse("host id", r.get::<&str, _>("host_id"))?,
                    update: parse("update id", r.get::<&str, _>("update_id"))?,
                    state: parse("state", r.get::<&str, _>("state"))?,
                    previous: match r.get::<Option<&str>, _>("previous") {
                        Some(p) => Some(parse("state", p)?),
                        None => None,
                    },
                    message: r.get("message"),
                    at: parse("timestamp", r.get::<&str, _>("at"))?,
                })
            })
            .collect()
    }

    // ---- Issue 10, point 2: groups joined by rules on host facts ----

    async fn add_group_rule_logged(
        &self,
        group: &GroupId,
        rule: &GroupRule,
        log: &LogEntry,
    ) -> Result<GroupRuleInfo> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        self.must_exist(&mut tx, "groups", group.as_str(), || {
            format!("group {group}")
        })
        .await?;
        // Numbered per tenant, never reused (a removed rule's number stays removed).
        let row = sqlx::query(
            "UPDATE tenants SET last_group_rule = last_group_rule + 1 WHERE id = $1 \
             RETURNING last_group_rule",
        )
        .bind(self.id.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        let n: i64 = row.get("last_group_rule");
        sqlx::query(
            "INSERT INTO group_rules (tenant_id, id, group_id, spec) VALUES ($1, $2, $3, $4)",
        )
        .bind(self.id.as_str())
        .bind(n)
        .bind(group.as_str())
        .bind(to_json(rule)?)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.finish(Some(log)).await?;
        Ok(GroupRuleInfo {
            id: u64::try_from(n).map_err(|e| corrupt("rule id", e))?,
            group: group.clone(),
            rule: rule.clone(),
        })
    }

    async fn remove_group_rule_logged(
        &self,
        group: &GroupId,
        id: u64,
        log: &LogEntry,
    ) -> Result<()> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        let n = i64::try_from(id).map_err(|_| StoreError::NotFound(format!("rule {id}")))?;
        let gone = sqlx::query(
            "DELETE FROM group_rules WHERE tenant_id = $1 AND group_id = $2 AND id = $3",
        )
        .bind(self.id.as_str())
        .bind(group.as_str())
        .bind(n)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if gone.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("rule {id} of group {group}")));
        }
        tx.finish(Some(log)).await
    }

    async fn group_rules(&self) -> Result<Vec<GroupRuleInfo>> {
        let rows = sqlx::query(
            "SELECT id, group_id, spec FROM group_rules WHERE tenant_id = $1 ORDER BY id",
        )
        .bind(self.id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(GroupRuleInfo {
                    id: u64::try_from(r.get::<i64, _>("id")).map_err(|e| corrupt("rule id", e))?,
                    group: parse("group id", r.get::<&str, _>("group_id"))?,
                    rule: json("group rule", r.get::<&str, _>("spec"))?,
                })
            })
            .collect()
    }

    async fn set_membership_facts(&self, id: &HostId, facts: &MembershipFacts) -> Result<()> {
        let done =
            sqlx::query("UPDATE hosts SET membership_facts = $1 WHERE tenant_id = $2 AND id = $3")
                .bind(to_json(facts)?)
                .bind(self.id.as_str())
                .bind(id.as_str())
                .execute(&self.pool)
                .await
                .map_err(backend)?;
        host_updated(&done, id)
    }

    async fn memberships(&self) -> Result<Vec<HostMemberships>> {
        self.read_memberships(None).await
    }

    async fn host_memberships(&self, id: &HostId) -> Result<HostMemberships> {
        self.read_memberships(Some(id))
            .await?
            .pop()
            .ok_or_else(|| StoreError::NotFound(format!("host {id}")))
    }

    async fn apply_membership_changes_logged(
        &self,
        changes: &[MembershipChange],
        logs: &[LogEntry],
    ) -> Result<()> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        for c in changes {
            self.must_exist(&mut tx, "hosts", c.host.as_str(), || {
                format!("host {}", c.host)
            })
            .await?;
            self.must_exist(&mut tx, "groups", c.group.as_str(), || {
                format!("group {}", c.group)
            })
            .await?;
            let sql = if c.join {
                "INSERT INTO host_groups (tenant_id, host_id, group_id, by_rule) VALUES ($1, $2, $3, 1) \
                 ON CONFLICT (tenant_id, host_id, group_id) DO NOTHING"
            } else {
                "DELETE FROM host_groups WHERE tenant_id = $1 AND host_id = $2 AND group_id = $3 AND by_rule = 1"
            };
            sqlx::query(sql)
                .bind(self.id.as_str())
                .bind(c.host.as_str())
                .bind(c.group.as_str())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        for log in logs {
            insert_log(&mut tx, log).await?;
        }
        tx.commit().await.map_err(backend)
    }
}

impl PgTenant {
    /// `NotFound` (named by `what`) unless this tenant's `table` has a row with `id`.
    async fn must_exist(
        &self,
        tx: &mut WriteTx,
        table: &str,
        id: &str,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        // A host's row is locked until the commit (its writers take turns); a group's is
        // only kept from being removed meanwhile.
        let lock = if table == "hosts" {
            "FOR NO KEY UPDATE"
        } else {
            "FOR KEY SHARE"
        };
        sqlx::query(&format!(
            "SELECT 1 FROM {table} WHERE tenant_id = $1 AND id = $2 {lock}"
        ))
        .bind(self.id.as_str())
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?
        .map(|_| ())
        .ok_or_else(|| StoreError::NotFound(what()))
    }

    /// Facts and memberships of every host, or of `one`.
    async fn read_memberships(&self, one: Option<&HostId>) -> Result<Vec<HostMemberships>> {
        // Two statements each, not one with `($2 IS NULL OR id = $2)`, on which a
        // generic plan cannot use the host's index (every check-in reads its host's).
        let hosts = sqlx::query(if one.is_some() {
            "SELECT id, hostname, membership_facts FROM hosts WHERE tenant_id = $1 AND id = $2"
        } else {
            "SELECT id, hostname, membership_facts FROM hosts \
             WHERE tenant_id = $1 AND $2::text IS NULL ORDER BY id"
        })
        .bind(self.id.as_str())
        .bind(one.map(HostId::as_str))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let rows = sqlx::query(if one.is_some() {
            "SELECT host_id, group_id, by_rule FROM host_groups \
             WHERE tenant_id = $1 AND host_id = $2 ORDER BY group_id"
        } else {
            "SELECT host_id, group_id, by_rule FROM host_groups \
             WHERE tenant_id = $1 AND $2::text IS NULL ORDER BY host_id, group_id"
        })
        .bind(self.id.as_str())
        .bind(one.map(HostId::as_str))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let mut groups: std::collections::BTreeMap<String, (Vec<GroupId>, Vec<GroupId>)> =
            std::collections::BTreeMap::new();
        for r in &rows {
            let g: GroupId = parse("group id", r.get::<&str, _>("group_id"))?;
            let e = groups.entry(r.get("host_id")).or_default();
            if r.get::<i64, _>("by_rule") != 0 {
                e.1.push(g.clone());
            }
            e.0.push(g);
        }
        hosts
            .iter()
            .map(|r| {
                let host: String = r.get("id");
                let mut facts: MembershipFacts = match r.get::<Option<&str>, _>("membership_facts")
                {
                    Some(f) => json("membership facts", f)?,
                    None => MembershipFacts::default(),
                };
                facts.hostname = r.get("hostname");
                let (all, by_rule) = groups.remove(&host).unwrap_or_default();
                Ok(HostMemberships {
                    host: parse("host id", &host)?,
                    facts,
                    groups: all,
                    rule_groups: by_rule,
                })
            })
            .collect()
    }
}

// ---- Issue 10, points 2 and 3 (rings) ----

impl PgTenant {
    async fn write_rings(&self, rings: &[patchday_types::api::Ring], log: &LogEntry) -> Result<()> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        tx.lock_tenant(&self.id).await?;
        sqlx::query("DELETE FROM rings WHERE tenant_id = $1")
            .bind(self.id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        for (i, r) in rings.iter().enumerate() {
            sqlx::query(
                "INSERT INTO rings (tenant_id, position, group_id, spec) VALUES ($1, $2, $3, $4)",
            )
            .bind(self.id.as_str())
            .bind(i64::try_from(i).map_err(|e| corrupt("ring position", e))?)
            .bind(r.group.as_str())
            .bind(to_json(r)?)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.finish(Some(log)).await
    }

    async fn read_rings(&self) -> Result<Vec<patchday_types::api::Ring>> {
        let rows = sqlx::query("SELECT spec FROM rings WHERE tenant_id = $1 ORDER BY position")
            .bind(self.id.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| json("ring", r.get::<&str, _>("spec")))
            .collect()
    }
}

/// `NotFound` when an UPDATE of one host touched no row.
fn host_updated(done: &sqlx::postgres::PgQueryResult, id: &HostId) -> Result<()> {
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("host {id}")));
    }
    Ok(())
}

/// Issue 12, point 1: a scheduled mirror run's catalog signed onto a catalog that is no
/// longer the stored one.
fn based_on_another(c: &CatalogRecord, stored: u64) -> StoreError {
    StoreError::Conflict(format!(
        "the mirror's catalog was signed onto snapshot version {}, but the stored catalog is at snapshot version {stored} now (a push, or another replica's run, came first); the next run signs onto it",
        c.based_on_snapshot.unwrap_or(0)
    ))
}

/// Replaces the scheduled mirror's progress inside a transaction (issue 12, point 1).
async fn put_progress(tx: &mut WriteTx, progress: &[u8]) -> Result<()> {
    sqlx::query(
        "INSERT INTO mirror_progress (k, progress) VALUES (1, $1) \
         ON CONFLICT (k) DO UPDATE SET progress = excluded.progress",
    )
    .bind(progress)
    .execute(&mut **tx)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Writes (or replaces) files of the trusted catalog state inside a transaction.
async fn put_trusted(tx: &mut WriteTx, trusted: &[(String, Vec<u8>)]) -> Result<()> {
    put_named(tx, "catalog_trusted", trusted).await
}

/// Writes (or replaces) catalog metadata files inside a transaction.
async fn put_metadata(tx: &mut WriteTx, metadata: &[(String, Vec<u8>)]) -> Result<()> {
    put_named(tx, "catalog_metadata", metadata).await
}

/// Writes (or replaces) named files in `table` (one of the two above) inside a transaction.
async fn put_named(
    tx: &mut WriteTx,
    table: &'static str,
    files: &[(String, Vec<u8>)],
) -> Result<()> {
    let sql = format!(
        "INSERT INTO {table} (name, bytes) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET bytes = excluded.bytes"
    );
    for (name, bytes) in files {
        sqlx::query(&sql)
            .bind(name)
            .bind(bytes.as_slice())
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
    }
    Ok(())
}

// ---- Issue 10, points 1 and 8: state reports and the history ----

/// Reports and history of one host take turns across replicas: each compares with what
/// the other committed, so no change is appended twice or lost.
async fn lock_host_states(tx: &mut WriteTx, tenant: &TenantId, host: &HostId) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("host-states/{tenant}/{host}"))
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    Ok(())
}

/// Stores an agent's reported states.
async fn store_states(
    tx: &mut WriteTx,
    tenant: &TenantId,
    host: &HostId,
    states: &[StateReport],
    now: Timestamp,
) -> Result<()> {
    for s in states {
        sqlx::query(
            "INSERT INTO host_states (tenant_id, host_id, update_id, state, message, at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant_id, host_id, update_id) DO UPDATE SET
               state = excluded.state, message = excluded.message, at = excluded.at",
        )
        .bind(tenant.as_str())
        .bind(host.as_str())
        .bind(s.update.as_str())
        .bind(s.state.as_str())
        .bind(&s.message)
        .bind(now.to_string())
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    }
    Ok(())
}

/// The host's marks (as `fleet_page` computes them); `None` for an unknown host. With
/// `kept` (a report's transaction, `report_on_kept`): also its kept evaluation's body,
/// and its row locked until the transaction ends, so that a check-in's inventory waits.
/// Without, a plain read: a row lock writes to the row (its `xmax`), which no check-in's
/// `host_marks` should pay.
async fn marks_and_kept(
    c: &mut sqlx::PgConnection,
    tenant: &TenantId,
    host: &HostId,
    kept: bool,
) -> Result<Option<(MarksAtCheckin, Option<String>)>> {
    const MARKS: &str = "SELECT (SELECT decisions_rev FROM tenants t WHERE t.id = h.tenant_id) AS decisions_rev,
                (SELECT string_agg(s.update_id || '=' || s.state || '@' || s.at, ';' ORDER BY s.update_id)
                   FROM host_states s WHERE s.tenant_id = h.tenant_id AND s.host_id = h.id) AS states_mark,
                COALESCE(h.inventory_sha256, 'seen ' || h.last_seen) AS inventory_mark,
                v.basis, CASE WHEN $3 THEN v.body END AS body
         FROM hosts h LEFT JOIN host_verdicts v ON v.tenant_id = h.tenant_id AND v.host_id = h.id
         WHERE h.tenant_id = $1 AND h.id = $2";
    let sql = if kept {
        format!("{MARKS} FOR SHARE OF h")
    } else {
        MARKS.to_owned()
    };
    let row = sqlx::query(&sql)
        .bind(tenant.as_str())
        .bind(host.as_str())
        .bind(kept)
        .fetch_optional(&mut *c)
        .await
        .map_err(backend)?;
    Ok(row.map(|row| {
        (
            MarksAtCheckin {
                decisions: row.get("decisions_rev"),
                host: HostMarks {
                    states: row
                        .get::<Option<String>, _>("states_mark")
                        .unwrap_or_default(),
                    inventory: row
                        .get::<Option<String>, _>("inventory_mark")
                        .unwrap_or_default(),
                },
                basis: row.get("basis"),
            },
            row.get("body"),
        )
    }))
}

/// Records the host's states that changed in the read model and the history.
async fn record_changes(
    tx: &mut WriteTx,
    tenant: &TenantId,
    id: &HostId,
    states: &[StateReport],
    now: Timestamp,
) -> Result<Vec<HistoryEntry>> {
    let rows = sqlx::query(
        "SELECT update_id, state, message FROM host_update_state WHERE tenant_id = $1 AND host_id = $2",
    )
    .bind(tenant.as_str())
    .bind(id.as_str())
    .fetch_all(&mut **tx)
    .await
    .map_err(backend)?;
    let mut last: std::collections::HashMap<String, (String, Option<String>)> = rows
        .iter()
        .map(|r| {
            (
                r.get::<String, _>("update_id"),
                (
                    r.get::<String, _>("state"),
                    r.get::<Option<String>, _>("message"),
                ),
            )
        })
        .collect();
    let mut appended = Vec::new();
    for st in states {
        let before = last.remove(st.update.as_str());
        if before
            .as_ref()
            .is_some_and(|(s, m)| s == st.state.as_str() && *m == st.message)
        {
            continue;
        }
        let previous = match &before {
            Some((s, _)) => Some(parse::<UpdateState>("state", s)?),
            None => None,
        };
        sqlx::query(
            "INSERT INTO host_update_state (tenant_id, host_id, update_id, state, message, since)                  VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, host_id, update_id) DO UPDATE SET                  state = excluded.state, message = excluded.message, since = excluded.since",
        )
        .bind(tenant.as_str())
        .bind(id.as_str())
        .bind(st.update.as_str())
        .bind(st.state.as_str())
        .bind(&st.message)
        .bind(now.to_string())
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
        sqlx::query(
            "INSERT INTO state_history (tenant_id, host_id, update_id, state, previous, message, at)                  VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(tenant.as_str())
        .bind(id.as_str())
        .bind(st.update.as_str())
        .bind(st.state.as_str())
        .bind(previous.map(|p| p.as_str()))
        .bind(&st.message)
        .bind(now.to_string())
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
        appended.push(HistoryEntry {
            host: id.clone(),
            update: st.update.clone(),
            state: st.state,
            previous,
            message: st.message.clone(),
            at: now,
        });
    }
    Ok(appended)
}

// ---- Finding 3/4/10 (issue 8): helpers of the lifecycle and log methods ----

/// Keeps one host's evaluation for the fleet views; a host removed meanwhile is skipped.
async fn put_verdict(tx: &mut WriteTx, tenant: &TenantId, v: &StoredVerdict) -> Result<()> {
    sqlx::query(
        "INSERT INTO host_verdicts (tenant_id, host_id, basis, body, summary)
         SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM hosts WHERE tenant_id = $1 AND id = $2)
         ON CONFLICT (tenant_id, host_id) DO UPDATE SET basis = excluded.basis, body = excluded.body,
             summary = excluded.summary",
    )
    .bind(tenant.as_str())
    .bind(v.host.as_str())
    .bind(&v.basis)
    .bind(&v.body)
    .bind(&v.summary)
    .execute(&mut **tx)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Appends a log entry inside a transaction; returns its sequence number.
async fn insert_log(tx: &mut WriteTx, e: &LogEntry) -> Result<u64> {
    let done = sqlx::query(
        "INSERT INTO operator_log (at, at_ms, tenant_id, actor, actor_id, source, action, object, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING seq",
    )
    .bind(e.at.to_string())
    .bind(e.at.as_millisecond())
    .bind(e.tenant.as_ref().map(|t| t.as_str().to_string()))
    .bind(&e.actor)
    .bind(&e.actor_id)
    .bind(&e.source)
    .bind(&e.action)
    .bind(&e.object)
    .bind(to_json(&e.detail)?)
    .fetch_one(&mut **tx)
    .await
    .map_err(backend)?;
    u64::try_from(done.get::<i64, _>("seq")).map_err(|e| corrupt("seq", e))
}

impl PgTenant {
    // The writes below serve a trait method and its `*_logged` twin: with `log` the
    // operator-log entry is written in the same transaction (finding 10, issue 8).

    /// Records (or replaces) a decision.
    async fn write_approval(&self, a: &Approval, log: Option<&LogEntry>) -> Result<()> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        let decision = match a.decision {
            Decision::Approve => "approve",
            Decision::Decline => "decline",
        };
        sqlx::query(
            "INSERT INTO approvals (tenant_id, update_id, group_id, decision, deadline, decided_at, decided_by, reason, emergency, remove)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (tenant_id, update_id, group_id) DO UPDATE SET
               decision = excluded.decision, deadline = excluded.deadline,
               decided_at = excluded.decided_at, decided_by = excluded.decided_by,
               reason = excluded.reason, emergency = excluded.emergency, remove = excluded.remove",
        )
        .bind(self.id.as_str())
        .bind(a.update.as_str())
        .bind(a.group.as_str())
        .bind(decision)
        .bind(a.deadline.map(|d| d.to_string()))
        .bind(a.decided_at.to_string())
        .bind(&a.decided_by)
        .bind(&a.reason)
        .bind(i64::from(a.emergency))
        .bind(i64::from(a.remove))
        .execute(&mut *tx)
        .await
        .map_err(about(format!("group {}", a.group)))?;
        tx.finish(log).await
    }

    /// Creates group `g`.
    async fn write_group(&self, g: &Group, log: Option<&LogEntry>) -> Result<()> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        sqlx::query("INSERT INTO groups (tenant_id, id, name) VALUES ($1, $2, $3)")
            .bind(self.id.as_str())
            .bind(g.id.as_str())
            .bind(&g.name)
            .execute(&mut *tx)
            .await
            .map_err(about(format!("group {}", g.id)))?;
        tx.finish(log).await
    }

    /// Sets this tenant's patch day.
    async fn write_patch_day(&self, pd: &PatchDayConfig, log: Option<&LogEntry>) -> Result<()> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        sqlx::query("UPDATE tenants SET patch_day = $1 WHERE id = $2")
            .bind(to_json(pd)?)
            .bind(self.id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.finish(log).await
    }

    /// Replaces host `id`'s group memberships; `NotFound` when the host is not there.
    async fn write_host_groups(
        &self,
        id: &HostId,
        groups: &[GroupId],
        log: Option<&LogEntry>,
    ) -> Result<()> {
        let mut tx = WriteTx::begin(&self.pool).await?;
        self.must_exist(&mut tx, "hosts", id.as_str(), || format!("host {id}"))
            .await?;
        // Issue 10, point 2: only the manual memberships are replaced; what a rule made
        // stays, unless named here, which makes it manual.
        sqlx::query(
            "DELETE FROM host_groups WHERE tenant_id = $1 AND host_id = $2 AND by_rule = 0",
        )
        .bind(self.id.as_str())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        for g in groups {
            sqlx::query(
                "INSERT INTO host_groups (tenant_id, host_id, group_id, by_rule) VALUES ($1, $2, $3, 0) \
                 ON CONFLICT (tenant_id, host_id, group_id) DO UPDATE SET by_rule = 0",
            )
                .bind(self.id.as_str())
                .bind(id.as_str())
                .bind(g.as_str())
                .execute(&mut *tx)
                .await
                .map_err(about(format!("group {g}")))?;
        }
        tx.finish(log).await
    }

    /// Why `create_host` inserted nothing: the tenant is gone or its quota is full.
    async fn quota_refusal(&self) -> StoreError {
        let max = sqlx::query("SELECT max_hosts FROM tenants WHERE id = $1")
            .bind(self.id.as_str())
            .fetch_optional(&self.pool)
            .await;
        match max {
            Ok(Some(r)) => match r.get::<Option<i64>, _>("max_hosts") {
                Some(n) => StoreError::Refused(format!(
                    "tenant {t} has reached its quota of {n} host(s): remove hosts \
                     (`patchday host remove`) or raise it (`patchday tenant set {t} --max-hosts N`)",
                    t = self.id
                )),
                None => StoreError::Backend("host insert touched no row".into()),
            },
            Ok(None) => StoreError::NotFound(format!("tenant {}", self.id)),
            Err(e) => backend(e),
        }
    }
}

/// Throwaway databases for tests (issue 12, point 2): each test creates its own database
/// on a server it may create databases on, and drops it when done, whether it passed or
/// not.
pub mod testing {
    use super::{DatabaseUrl, PostgresStore};
    use patchday_store::{Result, StoreError};
    use sqlx::Connection;

    /// A database created for one test, dropped (with its connections) when this drops.
    pub struct ThrowawayDatabase {
        server: String,
        name: String,
        url: String,
    }

    impl std::fmt::Debug for ThrowawayDatabase {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("ThrowawayDatabase")
                .field("name", &self.name)
                .finish()
        }
    }

    fn failed(what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Backend(format!("{what}: {e}"))
    }

    impl ThrowawayDatabase {
        /// Creates a database with a random name on the server of `server_url` (a URL
        /// whose role may `CREATE DATABASE`, e.g. `postgres://postgres@127.0.0.1:5432/postgres`).
        pub async fn create(server_url: &str) -> Result<Self> {
            use std::hash::{BuildHasher, Hasher};
            let random = std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish();
            let name = format!("patchday_test_{}_{random:016x}", std::process::id());
            let mut admin = sqlx::PgConnection::connect(server_url)
                .await
                .map_err(|e| failed("connecting to the test server", e))?;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .await
                .map_err(|e| failed("creating a test database", e))?;
            let _ = admin.close().await;
            let mut url = url::Url::parse(server_url).map_err(|e| failed("test server URL", e))?;
            url.set_path(&format!("/{name}"));
            Ok(Self {
                server: server_url.to_string(),
                name,
                url: url.to_string(),
            })
        }

        /// Its URL (with the server URL's user, password and parameters).
        pub fn url(&self) -> &str {
            &self.url
        }

        /// Opens a store on it (migrations applied).
        pub async fn open(&self) -> Result<PostgresStore> {
            PostgresStore::connect(&DatabaseUrl::parse(&self.url)?).await
        }
    }

    impl Drop for ThrowawayDatabase {
        fn drop(&mut self) {
            // Drop runs inside the test's runtime, which cannot be blocked on: a thread
            // of its own with a runtime of its own drops the database.
            let server = self.server.clone();
            let name = self.name.clone();
            let dropped = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                rt.block_on(async move {
                    let mut admin = sqlx::PgConnection::connect(&server)
                        .await
                        .map_err(|e| e.to_string())?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await
                        .map_err(|e| e.to_string())?;
                    let _ = admin.close().await;
                    Ok::<(), String>(())
                })
            })
            .join();
            if let Ok(Err(e)) = dropped {
                eprintln!("could not drop test database {}: {e}", self.name);
            }
        }
    }
}

/// Issue 12: the history read, one statement per shape of the question, each able to
/// seek on its index (`state_history_by_host`, `state_history_by_update`); one statement
/// with `($2 IS NULL OR host_id = $2)` read the tenant's whole history for one host.
/// Every shape takes the same four parameters.
fn history_sql(host: bool, update: bool) -> &'static str {
    match (host, update) {
        (true, true) => {
            "SELECT host_id, update_id, state, previous, message, at FROM state_history \
             WHERE tenant_id = $1 AND host_id = $2 AND update_id = $3 ORDER BY seq LIMIT $4"
        }
        (true, false) => {
            "SELECT host_id, update_id, state, previous, message, at FROM state_history \
             WHERE tenant_id = $1 AND host_id = $2 AND $3::text IS NULL ORDER BY seq LIMIT $4"
        }
        (false, true) => {
            "SELECT host_id, update_id, state, previous, message, at FROM state_history \
             WHERE tenant_id = $1 AND $2::text IS NULL AND update_id = $3 ORDER BY seq LIMIT $4"
        }
        (false, false) => {
            "SELECT host_id, update_id, state, previous, message, at FROM state_history \
             WHERE tenant_id = $1 AND $2::text IS NULL AND $3::text IS NULL ORDER BY seq LIMIT $4"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchday_lab::Requirement;

    /// A throwaway database with a store on it (fields drop in order: pool, database).
    struct Fresh {
        store: PostgresStore,
        db: testing::ThrowawayDatabase,
    }

    async fn fresh() -> Option<Fresh> {
        if !patchday_lab::require(Requirement::Postgres) {
            return None;
        }
        let server = patchday_lab::postgres_url()?;
        let db = testing::ThrowawayDatabase::create(&server).await.unwrap();
        let store = db.open().await.unwrap();
        Some(Fresh { store, db })
    }

    /// Issue 12, point 5: a push listener whose connection the database ends (a failover,
    /// an idle reaper, an operator's `pg_terminate_backend`) listens again, says that
    /// announcements may have been missed, and hears the next raise.
    #[tokio::test]
    async fn a_push_listener_whose_connection_is_killed_listens_again_and_asks_for_a_resync() {
        use patchday_store::{PushAnnouncement, PushScope};
        let Some(f) = fresh().await else { return };
        let mut feed = f.store.push_announcements().await.unwrap().unwrap();
        async fn next(feed: &mut Box<dyn PushAnnouncements>) -> Result<PushAnnouncement> {
            tokio::time::timeout(Duration::from_secs(10), feed.next())
                .await
                .expect("an announcement within 10 s")
        }
        assert_eq!(next(&mut feed).await.unwrap(), PushAnnouncement::Resync);
        let killed = sqlx::query(
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
             WHERE application_name = $1 AND datname = current_database()",
        )
        .bind(LISTENER_NAME)
        .fetch_one(f.store.pool())
        .await
        .unwrap();
        assert_eq!(killed.get::<i64, _>("n"), 1, "one listener connection");
        // Whatever the driver makes of the dead connection (an error, or a reconnect),
        // the feed comes back with a resync before anything else.
        let mut answers = Vec::new();
        loop {
            match next(&mut feed).await {
                Ok(PushAnnouncement::Resync) => break,
                other => {
                    answers.push(format!("{other:?}"));
                    assert!(answers.len() < 5, "no resync after the kill: {answers:?}");
                }
            }
        }
        let raised = f
            .store
            .raise_push_generations(&[(PushScope::Everyone, 77)])
            .await
            .unwrap();
        assert_eq!(raised, [(PushScope::Everyone, 77)]);
        assert_eq!(
            next(&mut feed).await.unwrap(),
            PushAnnouncement::Raised(PushScope::Everyone, 77)
        );
    }

    #[test]
    fn announcements_parse_or_ask_for_a_resync() {
        use patchday_store::{PushAnnouncement, PushScope};
        assert_eq!(
            parse_announcement("12 acme"),
            PushAnnouncement::Raised(PushScope::Tenant("acme".parse().unwrap()), 12)
        );
        assert_eq!(
            parse_announcement("3 *"),
            PushAnnouncement::Raised(PushScope::Everyone, 3)
        );
        for odd in ["resync", "", "x acme", "12", "12 -bad"] {
            assert_eq!(parse_announcement(odd), PushAnnouncement::Resync, "{odd:?}");
        }
    }

    #[tokio::test]
    async fn reconnecting_applies_no_migration_twice_and_keeps_the_data() {
        let Some(f) = fresh().await else { return };
        patchday_store::conformance::case::tenant_isolation(&f.store).await;
        let again = f.db.open().await.unwrap();
        assert_eq!(again.list_tenants().await.unwrap().len(), 2);
    }

    // Finding 10 (issue 8): the log refuses changes even from outside the trait.
    #[tokio::test]
    async fn operator_log_refuses_update_delete_and_truncate() {
        let Some(f) = fresh().await else { return };
        patchday_store::conformance::case::approval_and_its_log_entry_commit_together(&f.store)
            .await;
        for sql in [
            "UPDATE operator_log SET actor = 'mallory'",
            "DELETE FROM operator_log",
            "TRUNCATE operator_log",
        ] {
            let e = sqlx::query(sql).execute(f.store.pool()).await.unwrap_err();
            assert!(e.to_string().contains("append-only"), "{sql}: {e}");
        }
    }

    // Issue 12, point 2: retryable failures are told apart from fatal ones, with the
    // server's own error codes.
    #[tokio::test]
    async fn serialization_failures_and_deadlocks_are_retryable() {
        let Some(f) = fresh().await else { return };
        for (code, retry) in [
            ("40001", true),
            ("40P01", true),
            ("57P01", true),
            ("42601", false),
        ] {
            let e = sqlx::query(&format!(
                "DO $$ BEGIN RAISE EXCEPTION 'test' USING ERRCODE = '{code}'; END $$"
            ))
            .execute(f.store.pool())
            .await
            .unwrap_err();
            assert_eq!(backend(e).is_retryable(), retry, "SQLSTATE {code}");
        }
        // A real deadlock between two transactions.
        let (mut a, mut b) = (
            f.store.pool().begin().await.unwrap(),
            f.store.pool().begin().await.unwrap(),
        );
        sqlx::query("CREATE TABLE IF NOT EXISTS deadlock_probe (id BIGINT PRIMARY KEY)")
            .execute(f.store.pool())
            .await
            .unwrap();
        sqlx::query("INSERT INTO deadlock_probe VALUES (1), (2) ON CONFLICT DO NOTHING")
            .execute(f.store.pool())
            .await
            .unwrap();
        sqlx::query("UPDATE deadlock_probe SET id = id WHERE id = 1")
            .execute(&mut *a)
            .await
            .unwrap();
        sqlx::query("UPDATE deadlock_probe SET id = id WHERE id = 2")
            .execute(&mut *b)
            .await
            .unwrap();
        let (x, y) = tokio::join!(
            sqlx::query("UPDATE deadlock_probe SET id = id WHERE id = 2").execute(&mut *a),
            sqlx::query("UPDATE deadlock_probe SET id = id WHERE id = 1").execute(&mut *b),
        );
        let failure = x
            .err()
            .or(y.err())
            .expect("one of the two is chosen as the victim");
        let e = backend(failure);
        assert!(e.is_retryable(), "a deadlock is retryable: {e}");
    }

    #[test]
    fn pool_limits_come_from_the_url_and_the_password_stays_out_of_messages() {
        let u = DatabaseUrl::parse(
            "postgres://pd:s3cret@db.example:5433/patchday?max_connections=4&acquire_timeout=3&sslmode=require",
        )
        .unwrap();
        assert_eq!(u.limits.max_connections, 4);
        assert_eq!(u.limits.acquire_timeout, Duration::from_secs(3));
        assert_eq!(u.driver.query(), Some("sslmode=require"));
        assert!(!u.redacted().contains("s3cret"), "{}", u.redacted());
        assert!(!format!("{u:?}").contains("s3cret"));
        let e = DatabaseUrl::parse("mysql://x/y").unwrap_err().to_string();
        assert!(e.contains("not postgres"), "{e}");
        let e = DatabaseUrl::parse("postgres://x/y?max_connections=many")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_connections=many"), "{e}");
    }
}
