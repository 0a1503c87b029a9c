//! SQLite backend for `patchday-store`: one database file in the server's data
//! directory, WAL mode, foreign keys on, schema from `migrations/`.

use async_trait::async_trait;
use jiff::Timestamp;
use patchday_store::{
    CatalogRecord, CatalogTarget, DirectorCertificate, EnrollGrant, FleetHost, FleetSummary,
    HistoryEntry, HostMarks, HostMemberships, HostRecord, HostSigning, LogScope, MarksAtCheckin,
    NewEnrollToken, PushAnnouncements, PushScope, RemovedHost, RepairRequest, Result,
    SequenceCheck, Store, StoreError, StoredFacts, StoredState, StoredVerdict, TenantStore,
    TokenRecord,
};
use patchday_types::api::{
    Approval, CatalogStatus, Decision, EnrollTokenInfo, Group, GroupRule, GroupRuleInfo, LogEntry,
    MembershipChange, MembershipFacts, PatchDayConfig, Role, StateReport, Tenant, TokenInfo,
};
use patchday_types::{GroupId, HostId, Inventory, TenantId, UpdateDocument, UpdateId, UpdateState};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

mod inline;
use inline::{InlineReads, Writer};
use rusqlite::OptionalExtension;

patchday_store::sql_row_decoders!(sqlx::sqlite::SqliteRow);

fn backend(e: sqlx::Error) -> StoreError {
    if is_disk_full(&e) {
        return StoreError::StorageFull(format!(
            "disk full ({e}); free space in the data directory"
        ));
    }
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Conflict(d.message().to_string())
        }
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            StoreError::NotFound(format!("referenced object ({})", d.message()))
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

// Issue 8, finding 11: a full disk is its own error, so the server answers 507 and
// its health says so, and no connection goes back to the pool inside a transaction.

/// SQLITE_FULL (13), or an I/O error with ENOSPC / EDQUOT.
fn is_disk_full(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.code().is_some_and(|c| c == "13") || d.message().contains("database or disk is full")
        }
        sqlx::Error::Io(io) => matches!(io.raw_os_error(), Some(28 | 122)),
        _ => false,
    }
}

/// A write transaction (`BEGIN IMMEDIATE` … `COMMIT`) whose connection never goes
/// back to the pool inside a transaction: a failed commit rolls back and closes it, and
/// one dropped unfinished (an error such as SQLITE_FULL, after which SQLite may end or
/// keep the transaction on its own, or a cancelled request) is closed instead of
/// returned, which rolls it back. sqlx's own transactions track their depth in a counter
/// that a SQLITE_FULL can put out of step with SQLite.
///
/// Issue 10: this replaced a `ROLLBACK` probe after every use of every connection (an
/// `after_release` hook): each probe was one more round trip to the connection's worker
/// thread, and with ~150 statements per host and rollout the probes cost as many thread
/// wake-ups as the work itself (half the server's CPU in a 2,000-host profile).
struct WriteTx {
    conn: inline::WriterConn,
    /// Set once `COMMIT` (or the rollback of a failed commit) ran.
    ended: bool,
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if !self.ended {
            // Closing the connection ends its transaction: SQLite rolls back on close.
            self.conn.close_on_drop();
        }
    }
}

impl WriteTx {
    async fn begin(writer: &Writer) -> Result<Self> {
        let mut conn = writer.conn().await?;
        if let Err(e) = sqlx::Executor::execute(&mut *conn, "BEGIN IMMEDIATE").await {
            conn.close().await;
            return Err(backend(e));
        }
        Ok(Self { conn, ended: false })
    }

    /// Commits, first appending `log` to the operator log when there is one.
    async fn finish(mut self, log: Option<&LogEntry>) -> Result<()> {
        if let Some(log) = log {
            insert_log(&mut self, log).await?;
        }
        self.commit().await.map_err(backend)
    }

    async fn commit(mut self) -> std::result::Result<(), sqlx::Error> {
        match sqlx::Executor::execute(&mut *self.conn, "COMMIT").await {
            Ok(_) => {
                self.ended = true;
                Ok(())
            }
            Err(e) => {
                let _ = sqlx::Executor::execute(&mut *self.conn, "ROLLBACK").await;
                // `ended` stays false: the connection is closed when self drops.
                Err(e)
            }
        }
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
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

/// The SQLite store.
///
/// Issue 10 (10,000 agents checking in at once): reads and writes use separate pools.
/// Readers (several connections, `query_only`) never wait for the write lock in WAL
/// mode. Every write goes through one writer connection, so writers queue in order in
/// the pool instead of in SQLite's busy handler, which sleeps in growing steps (up to
/// 100 ms) between tries: with eight connections contending, a burst of check-ins
/// waited seconds for `BEGIN IMMEDIATE` while the lock sat mostly unused.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: Writer,
    /// Tenants known to exist (issue 10: `tenant()` is called several times per agent
    /// request; each call was a query, a round trip to a connection's thread). Only this
    /// process writes its database, and a tenant leaves the set when it is removed.
    known_tenants: Arc<KnownTenants>,
    /// Issue 10: the agent hot path's reads, on the caller's thread (`inline.rs`).
    inline: Arc<InlineReads>,
}

/// The tenants seen to exist, and a count of removals so that an existence read that
/// raced a removal is not cached.
#[derive(Default)]
struct KnownTenants {
    ids: std::sync::RwLock<std::collections::HashSet<TenantId>>,
    removals: std::sync::atomic::AtomicU64,
}

impl KnownTenants {
    fn contains(&self, id: &TenantId) -> bool {
        self.ids.read().is_ok_and(|ids| ids.contains(id))
    }

    fn removals(&self) -> u64 {
        self.removals.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records that `id` exists, as read when `removals` was `seen`.
    fn found(&self, id: &TenantId, seen: u64) {
        if let Ok(mut ids) = self.ids.write() {
            if self.removals() == seen {
                ids.insert(id.clone());
            }
        }
    }

    fn removed(&self, id: &TenantId) {
        if let Ok(mut ids) = self.ids.write() {
            self.removals
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            ids.remove(id);
        }
    }
}

impl SqliteStore {
    /// Writes a consistent copy of the whole database to `path`, a file that must not
    /// exist yet (SQLite's `VACUUM INTO`: one read transaction, so the server's writers
    /// go on meanwhile). Issue 12, point 6: `patchday server backup`.
    pub async fn copy_into(&self, path: &Path) -> Result<()> {
        sqlx::query("VACUUM INTO ?")
            .bind(path.to_string_lossy().into_owned())
            .execute(&mut *self.writer.conn().await?)
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let open_failed =
            |e: sqlx::Error| StoreError::Backend(format!("cannot open {}: {e}", path.display()));
        // One writer, kept open (its connection also keeps the WAL files in place).
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.clone())
            .await
            .map_err(open_failed)?;
        sqlx::migrate!("./migrations")
            .run(&writer)
            .await
            .map_err(|e| StoreError::Backend(format!("migrating {}: {e}", path.display())))?;
        // Readers refuse writes (`query_only`): a write sent to the wrong pool fails in
        // the tests instead of contending for the lock.
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts.pragma("query_only", "ON"))
            .await
            .map_err(open_failed)?;
        Ok(Self {
            pool,
            writer: Writer::new(writer, path),
            known_tenants: Arc::default(),
            inline: Arc::new(InlineReads::new(path)),
        })
    }

    /// Creates tenant `t`; with `log`, logs it in the same transaction (finding 10, issue 8).
    async fn write_tenant(&self, t: &Tenant, now: Timestamp, log: Option<&LogEntry>) -> Result<()> {
        let mut tx = WriteTx::begin(&self.writer).await?;
        sqlx::query(
            "INSERT INTO tenants (id, name, patch_day, created_at, max_hosts) VALUES (?, ?, ?, ?, ?)",
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
        let mut tx = WriteTx::begin(&self.writer).await?;
        sqlx::query(
            "INSERT INTO tokens (hash, name, role, tenant_id, created_at, prefix, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
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
impl Store for SqliteStore {
    async fn tenant(&self, id: &TenantId) -> Result<Arc<dyn TenantStore>> {
        let exists = if self.known_tenants.contains(id) {
            true
        } else {
            let seen = self.known_tenants.removals();
            let row = sqlx::query("SELECT 1 FROM tenants WHERE id = ?")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
            if row.is_some() {
                self.known_tenants.found(id, seen);
            }
            row.is_some()
        };
        match exists {
            true => Ok(Arc::new(SqliteTenant {
                pool: self.pool.clone(),
                writer: self.writer.clone(),
                inline: self.inline.clone(),
                id: id.clone(),
            })),
            false => Err(StoreError::NotFound(format!("tenant {id}"))),
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
            "SELECT hash, name, role, tenant_id, created_at FROM tokens WHERE hash = ?",
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
            "INSERT INTO leases (name, holder, expires_ms) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms \
             WHERE leases.holder = excluded.holder OR leases.expires_ms <= ?4",
        )
        .bind(name)
        .bind(holder)
        .bind(until.as_millisecond())
        .bind(now.as_millisecond())
        .execute(&mut *self.writer.conn().await?)
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
        let mut tx = WriteTx::begin(&self.writer).await?;
        let mut out = Vec::with_capacity(raises.len());
        for (scope, at_least) in raises {
            let row = sqlx::query(
                "INSERT INTO push_generations (scope, generation) VALUES (?1, MAX(?2, 1)) \
                 ON CONFLICT (scope) DO UPDATE \
                 SET generation = MAX(push_generations.generation + 1, excluded.generation) \
                 RETURNING generation",
            )
            .bind(scope.key())
            .bind(i64::try_from(at_least).unwrap_or(i64::MAX))
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
            let g: i64 = row.get("generation");
            out.push((scope, u64::try_from(g).unwrap_or(0)));
        }
        tx.commit().await.map_err(backend)?;
        Ok(out)
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
        // One server per database file: no other process raises anything.
        Ok(None)
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
        let row = sqlx::query("SELECT tenant_id FROM enroll_tokens WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| parse("tenant id", r.get::<&str, _>("tenant_id")))
            .transpose()
    }

    async fn host_by_credential(&self, hash: &str) -> Result<Option<(TenantId, HostId)>> {
        let row = self.inline.read(|c| {
            c.prepare_cached("SELECT tenant_id, id FROM hosts WHERE credential_hash = ?")?
                .query_row([hash], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .optional()
        })?;
        row.map(|(t, h)| Ok((parse("tenant id", &t)?, parse("host id", &h)?)))
            .transpose()
    }

    async fn replace_catalog(&self, c: &CatalogRecord) -> Result<()> {
        let mut tx = WriteTx::begin(&self.writer).await?;
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
        sqlx::query("INSERT INTO catalog_status (k, status) VALUES (1, ?)")
            .bind(to_json(&c.status)?)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        for u in &c.updates {
            sqlx::query("INSERT INTO catalog_updates (id, doc) VALUES (?, ?)")
                .bind(u.id.as_str())
                .bind(to_json(u)?)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        for t in &c.targets {
            sqlx::query(
                "INSERT INTO catalog_targets (name, length, sha256, release_counter) VALUES (?, ?, ?, ?)",
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
        let mut tx = WriteTx::begin(&self.writer).await?;
        sqlx::query("UPDATE catalog_status SET status = ? WHERE k = 1")
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
        let mut tx = WriteTx::begin(&self.writer).await?;
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
                sqlx::query("INSERT INTO catalog_pin (k, root) VALUES (1, ?)")
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
        let mut tx = WriteTx::begin(&self.writer).await?;
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
        let mut tx = WriteTx::begin(&self.writer).await?;
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
            "INSERT INTO director_certificate (k, version, keyid, bytes) VALUES (1, ?, ?, ?) \
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
        let mut tx = WriteTx::begin(&self.writer).await?;
        put_progress(&mut tx, progress).await?;
        tx.commit().await.map_err(backend)
    }

    async fn catalog_status(&self) -> Result<CatalogStatus> {
        let row = self.inline.read(|c| {
            c.prepare_cached("SELECT status FROM catalog_status WHERE k = 1")?
                .query_row([], |r| r.get::<_, String>(0))
                .optional()
        })?;
        match row {
            Some(r) => json("catalog status", &r),
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
        self.inline.read(|c| {
            c.prepare_cached("SELECT bytes FROM catalog_metadata WHERE name = ?")?
                .query_row([name], |r| r.get::<_, Vec<u8>>(0))
                .optional()
        })
    }

    async fn catalog_target(&self, name: &str) -> Result<Option<CatalogTarget>> {
        let rows = self.inline.read(|c| {
            c.prepare_cached(
                "SELECT name, length, sha256, release_counter FROM catalog_targets WHERE name = ?",
            )?
            .query_map([name], inline::catalog_target)?
            .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .next()
            .map(inline::CatalogTargetRow::decode)
            .transpose()
    }

    async fn catalog_targets(&self, names: &[String]) -> Result<Vec<CatalogTarget>> {
        // One statement for a whole assignment list: the names go in as a JSON array.
        let names = to_json(&names)?;
        let rows = self.inline.read(|c| {
            c.prepare_cached(
                "SELECT name, length, sha256, release_counter FROM catalog_targets \
                 WHERE name IN (SELECT value FROM json_each(?))",
            )?
            .query_map([&names], inline::catalog_target)?
            .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(inline::CatalogTargetRow::decode)
            .collect()
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
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(token_info_row).transpose()
    }

    async fn token_info(&self, id: &str) -> Result<Option<TokenInfo>> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE substr(hash, 1, 12) = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(token_info_row).transpose()
    }

    async fn list_tokens(&self, tenant: Option<&TenantId>) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE ?1 IS NULL OR tenant_id = ?1 \
             ORDER BY created_at, hash"
        ))
        .bind(tenant.map(|t| t.as_str().to_string()))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(token_info_row).collect()
    }

    async fn revoke_token(&self, id: &str, now: Timestamp, log: &LogEntry) -> Result<TokenInfo> {
        let mut tx = WriteTx::begin(&self.writer).await?;
        sqlx::query(
            "UPDATE tokens SET revoked_at = ? WHERE substr(hash, 1, 12) = ? AND revoked_at IS NULL",
        )
        .bind(now.to_string())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE substr(hash, 1, 12) = ?"
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
             WHERE e.hash = ?",
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
            "UPDATE enroll_tokens SET uses = uses + 1 WHERE hash = ? AND revoked_at IS NULL \
             AND (max_uses IS NULL OR uses < max_uses)",
        )
        .bind(hash)
        .execute(&mut *self.writer.conn().await?)
        .await
        .map_err(backend)?;
        if taken.rows_affected() == 0 {
            let again =
                sqlx::query("SELECT max_uses, revoked_at FROM enroll_tokens WHERE hash = ?")
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
            "SELECT tenant_id, host_id, removed_at FROM removed_hosts WHERE credential_hash = ?",
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
        let mut tx = WriteTx::begin(&self.writer).await?;
        sqlx::query("SELECT 1 FROM tenants WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?
            .ok_or_else(|| StoreError::NotFound(format!("tenant {id}")))?;
        let hosts: i64 = sqlx::query("SELECT count(*) AS n FROM hosts WHERE tenant_id = ?")
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
             SELECT credential_hash, tenant_id, id, ? FROM hosts WHERE tenant_id = ? \
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
            sqlx::query(&format!("DELETE FROM {table} WHERE tenant_id = ?"))
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        sqlx::query("DELETE FROM tenants WHERE id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        insert_log(&mut tx, log).await?;
        tx.commit().await.map_err(backend)?;
        // After the commit: an existence read that began before it (and saw the tenant)
        // finds the removal count moved and caches nothing.
        self.known_tenants.removed(id);
        Ok(u64::try_from(hosts).unwrap_or(0))
    }

    // ---- Finding 10 (issue 8): the operator log ----

    async fn create_tenant_logged(&self, t: &Tenant, now: Timestamp, log: &LogEntry) -> Result<()> {
        self.write_tenant(t, now, Some(log)).await
    }

    async fn append_log(&self, entry: &LogEntry) -> Result<u64> {
        let mut tx = WriteTx::begin(&self.writer).await?;
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
             FROM operator_log WHERE (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR at_ms >= ?2) \
             ORDER BY seq LIMIT ?3",
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
        sqlx::query("INSERT OR REPLACE INTO storage_probe (id, at) VALUES (1, ?)")
            .bind(now.to_string())
            .execute(&mut *self.writer.conn().await?)
            .await
            .map_err(backend)?;
        Ok(())
    }

    // ---- Issue 10, point 1: state history ----

    async fn note_published(&self, updates: &[UpdateId], now: Timestamp) -> Result<()> {
        let mut tx = WriteTx::begin(&self.writer).await?;
        for u in updates {
            sqlx::query("INSERT OR IGNORE INTO update_published (update_id, at) VALUES (?, ?)")
                .bind(u.as_str())
                .bind(now.to_string())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn published_at(&self, updates: &[UpdateId]) -> Result<Vec<(UpdateId, Timestamp)>> {
        let mut out = Vec::new();
        for chunk in updates.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql =
                format!("SELECT update_id, at FROM update_published WHERE update_id IN ({marks})");
            let mut q = sqlx::query(&sql);
            for u in chunk {
                q = q.bind(u.as_str());
            }
            for r in q.fetch_all(&self.pool).await.map_err(backend)? {
                out.push((
                    parse("update id", r.get::<&str, _>("update_id"))?,
                    parse("timestamp", r.get::<&str, _>("at"))?,
                ));
            }
        }
        Ok(out)
    }

    // ---- Issue 10, point 3 (rings): halted rollouts ----

    async fn halt_rollout(
        &self,
        halt: &patchday_types::api::RolloutHalt,
        log: Option<&LogEntry>,
    ) -> Result<bool> {
        let mut tx = WriteTx::begin(&self.writer).await?;
        let done = sqlx::query(
            "INSERT INTO rollout_halts (update_id, reason, at, halted_by) VALUES (?, ?, ?, ?) \
             ON CONFLICT (update_id) DO UPDATE SET reason = excluded.reason, at = excluded.at, \
             halted_by = excluded.halted_by, resumed_at = NULL WHERE resumed_at IS NOT NULL",
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
        let mut tx = WriteTx::begin(&self.writer).await?;
        let done = sqlx::query(
            "UPDATE rollout_halts SET resumed_at = ? WHERE update_id = ? AND resumed_at IS NULL",
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
        // Issue 10: every check-in asks; inline (`inline.rs`).
        let rows = self.inline.read(|c| {
            c.prepare_cached(
                "SELECT update_id, reason, at, halted_by, resumed_at FROM rollout_halts ORDER BY update_id",
            )?
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(|(update, reason, at, by, resumed_at)| {
                Ok(patchday_types::api::RolloutHalt {
                    update: parse("update id", &update)?,
                    reason,
                    at: parse("timestamp", &at)?,
                    by,
                    resumed_at: opt_ts(resumed_at)?,
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
        let mut tx = WriteTx::begin(&self.writer).await?;
        for e in evictions {
            sqlx::query(
                "INSERT OR IGNORE INTO payload_evictions (sha256, name, length, evicted_at, reason) \
                 VALUES (?, ?, ?, ?, ?)",
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
            "SELECT sha256, name, length, evicted_at, reason FROM payload_evictions WHERE sha256 = ?",
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
        let mut tx = WriteTx::begin(&self.writer).await?;
        let mut n = 0;
        for h in sha256 {
            n += sqlx::query("DELETE FROM payload_evictions WHERE sha256 = ?")
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
        let mut tx = WriteTx::begin(&self.writer).await?;
        let done = sqlx::query(
            "INSERT OR IGNORE INTO notification_outbox \
             (event_key, tenant_id, event, subject, body, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&e.key)
        .bind(e.tenant.as_ref().map(|t| t.as_str()))
        .bind(e.event.as_str())
        .bind(&e.subject)
        .bind(e.body.to_string())
        .bind(e.at.to_string())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 0 {
            tx.finish(None).await?;
            return Ok(false);
        }
        let outbox = done.last_insert_rowid();
        for t in targets {
            sqlx::query(
                "INSERT OR IGNORE INTO notification_deliveries \
                 (outbox_id, target, status, attempts, next_at) VALUES (?, ?, 'pending', 0, ?)",
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
        let mut tx = WriteTx::begin(&self.writer).await?;
        let done = sqlx::query(
            "UPDATE notification_deliveries SET status = ?, attempts = ?, next_at = ? WHERE id = ?",
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
             VALUES (?, ?, ?, ?, ?)",
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
             WHERE (?1 IS NULL OR o.tenant_id = ?1) ORDER BY o.id DESC, d.target LIMIT ?2",
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
                 WHERE delivery_id = ? ORDER BY id",
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
        let mut tx = WriteTx::begin(&self.writer).await?;
        sqlx::query("DELETE FROM console_sessions WHERE expires_unix <= ?")
            .bind(session.created_at.as_second())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query(
            "INSERT INTO console_sessions (id_hash, token_hash, csrf, created_at, expires_unix) \
             VALUES (?, ?, ?, ?, ?)",
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
             WHERE id_hash = ? AND expires_unix > ?",
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
        let mut tx = WriteTx::begin(&self.writer).await?;
        sqlx::query("DELETE FROM console_sessions WHERE id_hash = ?")
            .bind(id_hash)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.finish(None).await
    }
}

/// A store handle bound to one tenant.
struct SqliteTenant {
    pool: SqlitePool,
    writer: Writer,
    inline: Arc<InlineReads>,
    id: TenantId,
}

impl SqliteTenant {
    async fn require_host(&self, host: &HostId) -> Result<()> {
        self.host_row("1", host).await.map(|_| ())
    }

    /// `columns` of this tenant's host `id`, or `NotFound`.
    async fn host_row(
        &self,
        columns: &'static str,
        id: &HostId,
    ) -> Result<sqlx::sqlite::SqliteRow> {
        sqlx::query(&format!(
            "SELECT {columns} FROM hosts WHERE tenant_id = ? AND id = ?"
        ))
        .bind(self.id.as_str())
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .ok_or_else(|| StoreError::NotFound(format!("host {id}")))
    }
}

#[async_trait]
impl TenantStore for SqliteTenant {
    fn id(&self) -> &TenantId {
        &self.id
    }

    async fn get(&self) -> Result<Tenant> {
        // Read at every check-in (the patch day its rollout gates use): inline (issue 10).
        let tenant = self.id.as_str();
        let row = self.inline.read(|c| {
            c.prepare_cached("SELECT name, patch_day, max_hosts FROM tenants WHERE id = ?")?
                .query_row([tenant], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                    ))
                })
                .optional()
        })?;
        let Some((name, patch_day, max_hosts)) = row else {
            return Err(StoreError::NotFound(format!("tenant {}", self.id)));
        };
        Ok(Tenant {
            id: self.id.clone(),
            name,
            patch_day: json::<PatchDayConfig>("patch day", &patch_day)?,
            max_hosts: max_hosts
                .map(|n| u32::try_from(n).map_err(|e| corrupt("max_hosts", e)))
                .transpose()?,
        })
    }

    async fn set_patch_day(&self, pd: &PatchDayConfig) -> Result<()> {
        self.write_patch_day(pd, None).await
    }

    async fn add_enroll_token(&self, hash: &str, now: Timestamp) -> Result<()> {
        sqlx::query("INSERT INTO enroll_tokens (hash, tenant_id, created_at) VALUES (?, ?, ?)")
            .bind(hash)
            .bind(self.id.as_str())
            .bind(now.to_string())
            .execute(&mut *self.writer.conn().await?)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn create_group(&self, g: &Group) -> Result<()> {
        self.write_group(g, None).await
    }

    async fn list_groups(&self) -> Result<Vec<Group>> {
        let rows = sqlx::query("SELECT id, name FROM groups WHERE tenant_id = ? ORDER BY id")
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
        // The quota (finding 4) is checked in the same statement, so concurrent
        // enrolments cannot pass it together.
        let done = sqlx::query(
            "INSERT INTO hosts (tenant_id, id, hostname, credential_hash, enrolled_at) \
             SELECT ?1, ?2, ?3, ?4, ?5 FROM tenants t WHERE t.id = ?1 AND (t.max_hosts IS NULL \
             OR (SELECT count(*) FROM hosts WHERE tenant_id = ?1) < t.max_hosts)",
        )
        .bind(self.id.as_str())
        .bind(id.as_str())
        .bind(hostname)
        .bind(cred)
        .bind(now.to_string())
        .execute(&mut *self.writer.conn().await?)
        .await
        .map_err(about(format!("host {id}")))?;
        if done.rows_affected() == 0 {
            return Err(self.quota_refusal().await);
        }
        Ok(())
    }

    async fn host(&self, id: &HostId) -> Result<HostRecord> {
        // Issue 10: a check-in and a report each read their host; inline (`inline.rs`).
        let (tenant, host) = (self.id.as_str(), id.as_str());
        let read = self.inline.read(|c| {
            let row = c
                .prepare_cached(
                    "SELECT hostname, enrolled_at, last_seen, facts_sha256 FROM hosts \
                     WHERE tenant_id = ? AND id = ?",
                )?
                .query_row([tenant, host], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                })
                .optional()?;
            let groups = c
                .prepare_cached(
                    "SELECT group_id FROM host_groups WHERE tenant_id = ? AND host_id = ? ORDER BY group_id",
                )?
                .query_map([tenant, host], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(row.map(|r| (r, groups)))
        })?;
        let ((hostname, enrolled_at, last_seen, facts_sha256), groups) =
            read.ok_or_else(|| StoreError::NotFound(format!("host {id}")))?;
        Ok(HostRecord {
            id: id.clone(),
            hostname,
            groups: groups
                .iter()
                .map(|g| parse("group id", g))
                .collect::<Result<_>>()?,
            enrolled_at: parse("timestamp", &enrolled_at)?,
            last_seen: opt_ts(last_seen)?,
            facts_sha256,
        })
    }

    async fn list_hosts(&self) -> Result<Vec<HostRecord>> {
        // Two statements for the tenant, whatever its size (a groups query per host cost
        // 10,000 round trips at 10,000 hosts: ring previews and the rollout tick call
        // this), read through rusqlite on a blocking thread (`inline.rs`: sqlx's per-row
        // hand-over was most of the time; a whole tenant would hold an async worker).
        let tenant = self.id.as_str().to_string();
        let (hosts, groups) = inline::read_blocking(&self.inline, move |c| {
            let hosts = c
                .prepare_cached(
                    "SELECT id, hostname, enrolled_at, last_seen, facts_sha256 FROM hosts \
                     WHERE tenant_id = ? ORDER BY id",
                )?
                .query_map([tenant.as_str()], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let groups = c
                .prepare_cached(
                    "SELECT host_id, group_id FROM host_groups WHERE tenant_id = ? \
                     ORDER BY host_id, group_id",
                )?
                .query_map([tenant.as_str()], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((hosts, groups))
        })
        .await?;
        let mut by_host: std::collections::HashMap<String, Vec<GroupId>> =
            std::collections::HashMap::new();
        for (host, group) in groups {
            by_host
                .entry(host)
                .or_default()
                .push(parse("group id", &group)?);
        }
        hosts
            .into_iter()
            .map(|(id, hostname, enrolled_at, last_seen, facts_sha256)| {
                Ok(HostRecord {
                    groups: by_host.remove(&id).unwrap_or_default(),
                    id: parse("host id", &id)?,
                    hostname,
                    enrolled_at: parse("timestamp", &enrolled_at)?,
                    last_seen: opt_ts(last_seen)?,
                    facts_sha256,
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
        // Issue 10: inline (`inline.rs`, `Writer`).
        let at = now.to_string();
        let (tenant, host) = (self.id.as_str(), id.as_str());
        let same = self
            .writer
            .inline(|tx| {
                tx.prepare_cached(
                    "UPDATE hosts SET last_seen = ? WHERE tenant_id = ? AND id = ? AND inventory_sha256 = ?",
                )?
                .execute([at.as_str(), tenant, host, sha.as_str()])
            })
            .await?;
        if same == 1 {
            return Ok(());
        }
        // In one call, the size known: zstd sizes its tables to the inventory (a few KB)
        // where the streaming encoder set up level 3's whole window at every check-in.
        let packed = zstd::bulk::compress(text.as_bytes(), 3)
            .map_err(|e| StoreError::Backend(format!("compressing an inventory: {e}")))?;
        let done =
            self.writer
                .inline(|tx| {
                    tx.prepare_cached(
                    "UPDATE hosts SET inventory = NULL, inventory_zstd = ?, inventory_sha256 = ?, \
                     last_seen = ?, hostname = ? WHERE tenant_id = ? AND id = ?",
                )?
                .execute(rusqlite::params![packed, sha, at, inv.hostname, tenant, host])
                })
                .await?;
        if done == 0 {
            return Err(StoreError::NotFound(format!("host {id}")));
        }
        Ok(())
    }

    async fn inventory(&self, id: &HostId) -> Result<Option<Inventory>> {
        // Read by every state report: inline (issue 10).
        let (tenant, host) = (self.id.as_str(), id.as_str());
        let row = self.inline.read(|c| {
            c.prepare_cached(
                "SELECT inventory, inventory_zstd FROM hosts WHERE tenant_id = ? AND id = ?",
            )?
            .query_row([tenant, host], |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, Option<Vec<u8>>>(1)?,
                ))
            })
            .optional()
        })?;
        let Some((text, packed)) = row else {
            return Err(StoreError::NotFound(format!("host {id}")));
        };
        if let Some(packed) = packed {
            let text =
                zstd::decode_all(packed.as_slice()).map_err(|e| corrupt("inventory_zstd", e))?;
            return serde_json::from_slice(&text)
                .map(Some)
                .map_err(|e| corrupt("inventory_zstd", e));
        }
        text.map(|s| json("inventory", &s)).transpose()
    }

    async fn put_approval(&self, a: &Approval) -> Result<()> {
        self.write_approval(a, None).await
    }

    async fn list_approvals(&self) -> Result<Vec<Approval>> {
        let rows = sqlx::query(
            "SELECT update_id, group_id, decision, deadline, decided_at, decided_by, reason, emergency, remove FROM approvals
             WHERE tenant_id = ? ORDER BY update_id, group_id",
        )
        .bind(self.id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(approval_row).collect()
    }

    async fn list_approvals_for(&self, updates: &[UpdateId]) -> Result<Vec<Approval>> {
        // Issue 10: every check-in asks; inline (`inline.rs`), the ids as one JSON array.
        let ids = to_json(&updates.iter().map(UpdateId::as_str).collect::<Vec<_>>())?;
        let rows = self.inline.read(|c| {
            c.prepare_cached(
                "SELECT update_id, group_id, decision, deadline, decided_at, decided_by, reason, emergency, remove \
                 FROM approvals WHERE tenant_id = ? AND update_id IN (SELECT value FROM json_each(?)) \
                 ORDER BY update_id, group_id",
            )?
            .query_map([self.id.as_str(), ids.as_str()], inline::approval)?
            .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(|r| {
                Ok(Approval {
                    update: parse("update id", &r.update)?,
                    group: parse("group id", &r.group)?,
                    decision: match r.decision.as_str() {
                        "approve" => Decision::Approve,
                        "decline" => Decision::Decline,
                        other => return Err(corrupt("decision", other)),
                    },
                    deadline: opt_ts(r.deadline)?,
                    decided_at: parse("timestamp", &r.decided_at)?,
                    decided_by: r.decided_by,
                    reason: r.reason,
                    emergency: r.emergency != 0,
                    remove: r.remove != 0,
                })
            })
            .collect()
    }

    async fn missing_facts_blobs(&self, digests: &[String]) -> Result<Vec<String>> {
        let mut missing = Vec::new();
        for chunk in digests.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "SELECT sha256 FROM facts_blobs WHERE tenant_id = ? AND sha256 IN ({marks})"
            );
            let mut q = sqlx::query(&sql).bind(self.id.as_str());
            for d in chunk {
                q = q.bind(d.as_str());
            }
            let held: std::collections::HashSet<String> = q
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?
                .iter()
                .map(|r| r.get("sha256"))
                .collect();
            missing.extend(chunk.iter().filter(|d| !held.contains(*d)).cloned());
        }
        Ok(missing)
    }

    async fn save_facts(
        &self,
        id: &HostId,
        facts: &StoredFacts,
        blobs: &[(String, Vec<u8>)],
    ) -> Result<()> {
        let tenant = self.id.as_str();
        let mut tx = WriteTx::begin(&self.writer).await?;
        let done = sqlx::query(
            "UPDATE hosts SET facts = NULL, facts_sha256 = ?, facts_at = ? WHERE tenant_id = ? AND id = ?",
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
                "INSERT INTO facts_blobs (tenant_id, sha256, body) VALUES (?, ?, ?) \
                 ON CONFLICT (tenant_id, sha256) DO NOTHING",
            )
            .bind(tenant)
            .bind(digest)
            .bind(body.as_slice())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        let old: Vec<String> =
            sqlx::query("SELECT sha256 FROM host_facts_parts WHERE tenant_id = ? AND host_id = ?")
                .bind(tenant)
                .bind(id.as_str())
                .fetch_all(&mut *tx)
                .await
                .map_err(backend)?
                .iter()
                .map(|r| r.get("sha256"))
                .collect();
        sqlx::query("DELETE FROM host_facts_parts WHERE tenant_id = ? AND host_id = ?")
            .bind(tenant)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        for (part, digest) in &facts.parts {
            let held = sqlx::query("SELECT 1 FROM facts_blobs WHERE tenant_id = ? AND sha256 = ?")
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
                "INSERT INTO host_facts_parts (tenant_id, host_id, part, sha256) VALUES (?, ?, ?, ?)",
            )
            .bind(tenant)
            .bind(id.as_str())
            .bind(part)
            .bind(digest)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        for digest in old {
            sqlx::query(
                "DELETE FROM facts_blobs WHERE tenant_id = ?1 AND sha256 = ?2 AND NOT EXISTS \
                 (SELECT 1 FROM host_facts_parts WHERE tenant_id = ?1 AND sha256 = ?2)",
            )
            .bind(tenant)
            .bind(&digest)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
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
            "SELECT part, sha256 FROM host_facts_parts WHERE tenant_id = ? AND host_id = ?",
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
             WHERE h.tenant_id = ? AND h.facts_sha256 IS NOT NULL ORDER BY h.id, p.part",
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
        let mut out = Vec::new();
        for chunk in digests.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "SELECT sha256, body FROM facts_blobs WHERE tenant_id = ? AND sha256 IN ({marks})"
            );
            let mut q = sqlx::query(&sql).bind(self.id.as_str());
            for d in chunk {
                q = q.bind(d.as_str());
            }
            for r in q.fetch_all(&self.pool).await.map_err(backend)? {
                out.push((r.get("sha256"), r.get("body")));
            }
        }
        Ok(out)
    }

    async fn put_states(&self, id: &HostId, states: &[StateReport], now: Timestamp) -> Result<()> {
        // Issue 10: every report writes them; inline (`inline.rs`, `Writer`), the host's
        // existence checked in the same transaction.
        let at = now.to_string();
        let (tenant, host) = (self.id.as_str(), id.as_str());
        let found = self
            .writer
            .inline(|tx| {
                let found = tx
                    .prepare_cached("SELECT 1 FROM hosts WHERE tenant_id = ? AND id = ?")?
                    .exists([tenant, host])?;
                if !found {
                    return Ok(false);
                }
                store_states(tx, tenant, host, states, &at)?;
                Ok(true)
            })
            .await?;
        if !found {
            return Err(StoreError::NotFound(format!("host {id}")));
        }
        Ok(())
    }

    async fn fleet_page(&self, after: Option<&HostId>, limit: u32) -> Result<Vec<FleetHost>> {
        // One query for the tenant, whatever its size (the per-host queries of
        // `list_hosts`, `host_signing` and `states` cost 10,000 round trips at 10,000),
        // and one value for the page: SQLite builds it as JSON (patchday_store::
        // fleet_pages says why and in which order).
        let page: Option<String> = sqlx::query_scalar(
            "SELECT json_group_array(json_array(h.id, h.hostname, h.enrolled_at, h.last_seen,
                    h.facts_sha256, h.public_key, h.last_sequence, h.last_signed_at, h.agent_error,
                    h.agent_error_at,
                    (SELECT group_concat(group_id, ' ') FROM (SELECT group_id FROM host_groups g
                       WHERE g.tenant_id = h.tenant_id AND g.host_id = h.id ORDER BY group_id)),
                    (SELECT group_concat(mark, ';') FROM (SELECT update_id || '=' || state || '@' || at AS mark
                       FROM host_states s WHERE s.tenant_id = h.tenant_id AND s.host_id = h.id
                       ORDER BY update_id)),
                    COALESCE(h.inventory_sha256, 'seen ' || h.last_seen),
                    v.basis, v.body, v.summary))
             FROM (SELECT tenant_id, id, hostname, enrolled_at, last_seen, facts_sha256, public_key,
                          last_sequence, last_signed_at, agent_error, agent_error_at, inventory_sha256
                   FROM hosts WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?) h
             LEFT JOIN host_verdicts v ON v.tenant_id = h.tenant_id AND v.host_id = h.id",
        )
        .bind(self.id.as_str())
        .bind(after.map_or("", |a| a.as_str()))
        .bind(i64::from(limit))
        .fetch_optional(&self.pool)
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
            "SELECT json_group_array(json_array(h.id, h.hostname, h.enrolled_at, h.last_seen,
                    h.facts_sha256, h.agent_error, h.agent_error_at,
                    (SELECT group_concat(group_id, ' ') FROM (SELECT group_id FROM host_groups g
                       WHERE g.tenant_id = h.tenant_id AND g.host_id = h.id ORDER BY group_id)),
                    (SELECT group_concat(mark, ';') FROM (SELECT update_id || '=' || state || '@' || at AS mark
                       FROM host_states s WHERE s.tenant_id = h.tenant_id AND s.host_id = h.id
                       ORDER BY update_id)),
                    COALESCE(h.inventory_sha256, 'seen ' || h.last_seen),
                    v.basis, v.summary))
             FROM (SELECT tenant_id, id, hostname, enrolled_at, last_seen, facts_sha256, agent_error,
                          agent_error_at, inventory_sha256
                   FROM hosts WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?) h
             LEFT JOIN host_verdicts v ON v.tenant_id = h.tenant_id AND v.host_id = h.id",
        )
        .bind(self.id.as_str())
        .bind(after.map_or("", |a| a.as_str()))
        .bind(i64::from(limit))
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        patchday_store::fleet_pages::fleet_summaries(page.as_deref())
    }

    async fn decisions_mark(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT decisions_rev FROM tenants WHERE id = ?")
            .bind(self.id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .ok_or_else(|| StoreError::NotFound(format!("tenant {}", self.id)))
    }

    async fn host_marks(&self, id: &HostId) -> Result<MarksAtCheckin> {
        // The same marks as `fleet_page`, for one host, in one query, inline (issue 10).
        let (tenant, host) = (self.id.as_str(), id.as_str());
        let row = self
            .inline
            .read(|c| marks_and_kept(c, tenant, host, false))?;
        row.map(|(marks, _)| marks)
            .ok_or_else(|| StoreError::NotFound(format!("host {id}")))
    }

    async fn put_verdicts(&self, verdicts: &[StoredVerdict]) -> Result<()> {
        if verdicts.is_empty() {
            return Ok(());
        }
        // One transaction for the lot: one turn of the writer, not one per host.
        let mut tx = WriteTx::begin(&self.writer).await?;
        for v in verdicts {
            put_verdict(&mut tx, &self.id, v).await?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn states(&self, id: &HostId) -> Result<Vec<StoredState>> {
        // Issue 10: every evaluation of a host reads them; inline (`inline.rs`).
        let rows = self.inline.read(|c| {
            c.prepare_cached(
                "SELECT update_id, state, message, at FROM host_states WHERE tenant_id = ? AND host_id = ? ORDER BY update_id",
            )?
            .query_map([self.id.as_str(), id.as_str()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(|(update, state, message, at)| {
                Ok(StoredState {
                    report: StateReport {
                        update: parse("update id", &update)?,
                        state: parse::<UpdateState>("state", &state)?,
                        message,
                    },
                    at: parse("timestamp", &at)?,
                })
            })
            .collect()
    }

    // finding 8/13 (issue 8): host-signed requests and agent errors.

    async fn set_host_public_key(&self, id: &HostId, public_key: &str) -> Result<()> {
        let done = sqlx::query(
            "UPDATE hosts SET public_key = ? WHERE tenant_id = ? AND id = ? AND public_key IS NULL",
        )
        .bind(public_key)
        .bind(self.id.as_str())
        .bind(id.as_str())
        .execute(&mut *self.writer.conn().await?)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 0 {
            self.require_host(id).await?;
            return Err(StoreError::Conflict(format!("signing key of host {id}")));
        }
        Ok(())
    }

    async fn host_signing(&self, id: &HostId) -> Result<HostSigning> {
        // Issue 10: every signed request reads it; inline (`inline.rs`).
        let r = self
            .inline
            .read(|c| {
                c.prepare_cached(
                    "SELECT public_key, last_sequence, last_signed_at, agent_error, agent_error_at \
                     FROM hosts WHERE tenant_id = ? AND id = ?",
                )?
                .query_row([self.id.as_str(), id.as_str()], |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                })
                .optional()
            })?
            .ok_or_else(|| StoreError::NotFound(format!("host {id}")))?;
        let (public_key, last_sequence, last_signed_at, agent_error, agent_error_at) = r;
        let agent_error = match (agent_error, opt_ts(agent_error_at)?) {
            (Some(e), Some(at)) => Some((e, at)),
            _ => None,
        };
        Ok(HostSigning {
            public_key,
            last_sequence: u64::try_from(last_sequence).map_err(|e| corrupt("last_sequence", e))?,
            last_signed_at: opt_ts(last_signed_at)?,
            agent_error,
        })
    }

    async fn advance_sequence(
        &self,
        id: &HostId,
        sequence: u64,
        now: Timestamp,
    ) -> Result<SequenceCheck> {
        // SQLite integers are i64: a larger number can never be stored, so it is
        // refused as a replay of the largest storable one rather than wrapped.
        let Ok(seq) = i64::try_from(sequence) else {
            return Ok(SequenceCheck::Replayed {
                last: self.host_signing(id).await?.last_sequence,
            });
        };
        // Issue 10: every signed request writes it; inline (`inline.rs`, `Writer`).
        let at = now.to_string();
        let changed = self
            .writer
            .inline(|tx| {
                tx.prepare_cached(
                    "UPDATE hosts SET last_sequence = ?1, last_signed_at = ?2 \
                     WHERE tenant_id = ?3 AND id = ?4 AND last_sequence < ?1",
                )?
                .execute(rusqlite::params![
                    seq,
                    at,
                    self.id.as_str(),
                    id.as_str()
                ])
            })
            .await?;
        if changed == 1 {
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
            "UPDATE hosts SET agent_error = ?, agent_error_at = ? WHERE tenant_id = ? AND id = ?",
        )
        .bind(error)
        .bind(error.map(|_| now.to_string()))
        .bind(self.id.as_str())
        .bind(id.as_str())
        .execute(&mut *self.writer.conn().await?)
        .await
        .map_err(backend)?;
        host_updated(&done, id)
    }

    // ---- Finding 3/4 (issue 8): enrolment tokens with limits, removal, host quota ----

    async fn create_enroll_token(&self, t: &NewEnrollToken, log: &LogEntry) -> Result<()> {
        let mut tx = WriteTx::begin(&self.writer).await?;
        if let Some(g) = &t.group {
            sqlx::query("SELECT 1 FROM groups WHERE tenant_id = ? AND id = ?")
                .bind(self.id.as_str())
                .bind(g.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?
                .ok_or_else(|| StoreError::NotFound(format!("group {g}")))?;
        }
        sqlx::query(
            "INSERT INTO enroll_tokens (hash, tenant_id, created_at, name, prefix, group_id, \
             expires_at, max_uses) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
            "SELECT {ENROLL_COLUMNS} FROM enroll_tokens WHERE tenant_id = ? ORDER BY created_at, hash"
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
        let mut tx = WriteTx::begin(&self.writer).await?;
        sqlx::query(
            "UPDATE enroll_tokens SET revoked_at = ? WHERE tenant_id = ? \
             AND substr(hash, 1, 12) = ? AND revoked_at IS NULL",
        )
        .bind(now.to_string())
        .bind(self.id.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let row = sqlx::query(&format!(
            "SELECT {ENROLL_COLUMNS} FROM enroll_tokens WHERE tenant_id = ? AND substr(hash, 1, 12) = ?"
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
        let mut tx = WriteTx::begin(&self.writer).await?;
        let moved = sqlx::query(
            "INSERT INTO removed_hosts (credential_hash, tenant_id, host_id, removed_at) \
             SELECT credential_hash, tenant_id, id, ? FROM hosts WHERE tenant_id = ? AND id = ? \
             ON CONFLICT (credential_hash) DO NOTHING",
        )
        .bind(now.to_string())
        .bind(self.id.as_str())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        // Memberships and states go with the host (ON DELETE CASCADE).
        let gone = sqlx::query("DELETE FROM hosts WHERE tenant_id = ? AND id = ?")
            .bind(self.id.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if gone.rows_affected() == 0 && moved.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("host {id}")));
        }
        // Its facts parts went with it; the blobs only it named go too (issue 12, point 7).
        sqlx::query(
            "DELETE FROM facts_blobs WHERE tenant_id = ? AND NOT EXISTS \
             (SELECT 1 FROM host_facts_parts p WHERE p.tenant_id = facts_blobs.tenant_id \
             AND p.sha256 = facts_blobs.sha256)",
        )
        .bind(self.id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        insert_log(&mut tx, log).await?;
        tx.commit().await.map_err(backend)
    }

    async fn remove_group(&self, id: &GroupId, log: &LogEntry) -> Result<()> {
        let mut tx = WriteTx::begin(&self.writer).await?;
        // Memberships and approvals go with the group (ON DELETE CASCADE).
        let gone = sqlx::query("DELETE FROM groups WHERE tenant_id = ? AND id = ?")
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
        let mut tx = WriteTx::begin(&self.writer).await?;
        sqlx::query("UPDATE tenants SET max_hosts = ? WHERE id = ?")
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
        let mut tx = WriteTx::begin(&self.writer).await?;
        let done = sqlx::query(
            "UPDATE hosts SET repair_requested_at = ?, repair_allow_apt = ?, repair_sent_at = NULL WHERE tenant_id = ? AND id = ?",
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
        // Issue 10: every check-in asks; inline (`inline.rs`).
        let (requested_at, allow_apt, sent_at) = self
            .inline
            .read(|c| {
                c.prepare_cached(
                    "SELECT repair_requested_at, repair_allow_apt, repair_sent_at FROM hosts \
                     WHERE tenant_id = ? AND id = ?",
                )?
                .query_row([self.id.as_str(), id.as_str()], |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<String>>(2)?,
                    ))
                })
                .optional()
            })?
            .ok_or_else(|| StoreError::NotFound(format!("host {id}")))?;
        let Some(requested_at) = opt_ts(requested_at)? else {
            return Ok(None);
        };
        Ok(Some(RepairRequest {
            requested_at,
            allow_apt: allow_apt != 0,
            sent_at: opt_ts(sent_at)?,
        }))
    }

    // ---- Issue 14, point 4: the mail attachment filter's verdicts ----

    async fn record_mail_verdict(&self, verdict: &patchday_types::api::MailVerdict) -> Result<()> {
        sqlx::query(
            "INSERT INTO mail_verdicts (tenant_id, time, verdict, record) VALUES (?, ?, ?, ?)",
        )
        .bind(self.id.as_str())
        .bind(verdict.time.to_string())
        .bind(&verdict.verdict)
        .bind(to_json(verdict)?)
        .execute(&mut *self.writer.conn().await?)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn mail_verdicts(&self, limit: u32) -> Result<Vec<patchday_types::api::MailVerdict>> {
        let rows = sqlx::query(
            "SELECT record FROM mail_verdicts WHERE tenant_id = ? ORDER BY id DESC LIMIT ?",
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
        // The store's own write transaction, as every write here (see `WriteTx`).
        let mut tx = WriteTx::begin(&self.writer).await?;
        for f in findings {
            let outcome = serde_json::to_value(f.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            sqlx::query(
                "INSERT INTO scan_findings (tenant_id, host_id, received_at, outcome, record) VALUES (?, ?, ?, ?, ?)",
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
        tx.finish(None).await
    }

    async fn scan_findings(&self, limit: u32) -> Result<Vec<patchday_types::api::HostScanFinding>> {
        let rows = sqlx::query(
            "SELECT f.host_id, COALESCE(h.hostname, '') AS hostname, f.received_at, f.record FROM scan_findings f LEFT JOIN hosts h ON h.tenant_id = f.tenant_id AND h.id = f.host_id WHERE f.tenant_id = ? ORDER BY f.id DESC LIMIT ?",
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

    async fn repair_sent(&self, id: &HostId, now: Timestamp) -> Result<()> {
        sqlx::query(
            "UPDATE hosts SET repair_sent_at = COALESCE(repair_sent_at, ?) WHERE tenant_id = ? AND id = ? AND repair_requested_at IS NOT NULL",
        )
        .bind(now.to_string())
        .bind(self.id.as_str())
        .bind(id.as_str())
        .execute(&mut *self.writer.conn().await?)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn clear_repair(&self, id: &HostId) -> Result<()> {
        sqlx::query(
            "UPDATE hosts SET repair_requested_at = NULL, repair_allow_apt = 0, repair_sent_at = NULL WHERE tenant_id = ? AND id = ?",
        )
        .bind(self.id.as_str())
        .bind(id.as_str())
        .execute(&mut *self.writer.conn().await?)
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
        let mut tx = WriteTx::begin(&self.writer).await?;
        let done =
            sqlx::query("UPDATE groups SET windows = ?, reboot = ? WHERE tenant_id = ? AND id = ?")
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
        // Issue 10: every check-in's signed schedule reads them; inline (`inline.rs`).
        let rows = self.inline.read(|c| {
            c.prepare_cached("SELECT id, windows, reboot FROM groups WHERE tenant_id = ?")?
                .query_map([self.id.as_str()], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(|(id, windows, reboot)| {
                let id: GroupId = parse("group id", &id)?;
                let windows: Vec<String> =
                    serde_json::from_str(&windows).map_err(|e| corrupt("group windows", e))?;
                Ok((id, patchday_types::api::GroupPolicy { windows, reboot }))
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
        // Issue 10: most check-ins change no state. Look first through a reader, so
        // they take no turn of the single writer; a change is checked again inside the
        // write transaction below.
        let current = self.inline.read(|c| {
            c.prepare_cached(
                "SELECT update_id, state, message FROM host_update_state WHERE tenant_id = ? AND host_id = ?",
            )?
            .query_map([self.id.as_str(), id.as_str()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        let unchanged = states.iter().all(|st| {
            current.iter().any(|(update, state, message)| {
                update == st.update.as_str() && state == st.state.as_str() && *message == st.message
            })
        });
        if unchanged && verdict.is_none() {
            return Ok(Vec::new());
        }
        // Issue 10: a check-in whose states moved writes here; inline (`inline.rs`,
        // `Writer`), one transaction with the kept evaluation.
        let at = now.to_string();
        let (tenant, host) = (self.id.as_str(), id.as_str());
        let changes = self
            .writer
            .inline(|tx| {
                if let Some(v) = verdict {
                    inline::put_verdict(tx, tenant, v)?;
                }
                record_changes(tx, tenant, host, states, &at)
            })
            .await?;
        history_entries(id, states, changes, now)
    }

    async fn report_on_kept(
        &self,
        id: &HostId,
        states: &[StateReport],
        now: Timestamp,
        carry: &patchday_store::CarryForward<'_>,
    ) -> Result<Option<Vec<HistoryEntry>>> {
        // Issue 10, point 8: one inline transaction (`inline.rs`, `Writer`) for the whole
        // report, its evaluation carried forward instead of made again.
        let at = now.to_string();
        let (tenant, host) = (self.id.as_str(), id.as_str());
        let recorded = self
            .writer
            .inline(|tx| {
                let Some((before, body)) = marks_and_kept(tx, tenant, host, true)? else {
                    return Ok(Err(()));
                };
                let Some(carried) = carry(&before, body.as_deref()) else {
                    return Ok(Ok(None));
                };
                store_states(tx, tenant, host, states, &at)?;
                if let Some((after, _)) = marks_and_kept(tx, tenant, host, false)? {
                    if let Some(v) = (carried.keep)(&after) {
                        inline::put_verdict(tx, tenant, &v)?;
                    }
                }
                let changes = record_changes(tx, tenant, host, &carried.history, &at)?;
                Ok(Ok(Some((carried.history, changes))))
            })
            .await?;
        match recorded {
            Err(()) => Err(StoreError::NotFound(format!("host {id}"))),
            Ok(None) => Ok(None),
            Ok(Some((history, changes))) => history_entries(id, &history, changes, now).map(Some),
        }
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
            "SELECT host_id, state, since FROM host_update_state WHERE tenant_id = ? AND update_id = ?",
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
        let mut tx = WriteTx::begin(&self.writer).await?;
        for h in hosts {
            sqlx::query(
                "INSERT OR IGNORE INTO rollout_waves (tenant_id, update_id, group_id, host_id, admitted_at) VALUES (?, ?, ?, ?, ?)",
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
            "SELECT host_id, admitted_at FROM rollout_waves WHERE tenant_id = ? AND update_id = ? AND group_id = ?",
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
        // Issue 10: every check-in asks; inline (`inline.rs`).
        let rows = self.inline.read(|c| {
            c.prepare_cached(
                "SELECT DISTINCT w.update_id FROM rollout_waves w \
                 JOIN host_groups g ON g.tenant_id = w.tenant_id AND g.group_id = w.group_id AND g.host_id = ?2 \
                 WHERE w.tenant_id = ?1 AND NOT EXISTS (SELECT 1 FROM rollout_waves a \
                   WHERE a.tenant_id = w.tenant_id AND a.update_id = w.update_id AND a.host_id = ?2)",
            )?
            .query_map([self.id.as_str(), host.as_str()], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        let mut held = Vec::new();
        for r in &rows {
            let u: UpdateId = parse("update id", r)?;
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

    // ---- Issue 13, point 1: baselines ----

    async fn save_baseline_reports(
        &self,
        id: &HostId,
        reports: &[patchday_types::api::BaselineReport],
        now: Timestamp,
    ) -> Result<()> {
        if reports.is_empty() {
            return Ok(());
        }
        let mut tx = WriteTx::begin(&self.writer).await?;
        for r in reports {
            let drifted = !r.drift.is_empty();
            sqlx::query(
                "INSERT INTO host_baselines (tenant_id, host_id, baseline, version, drift, repaired, error, \
                 measured, reported_at, last_drift_at, drift_runs) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
                 CASE WHEN ?10 THEN ?9 END, ?10) \
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
                     VALUES (?, ?, ?, ?, ?, ?, ?)",
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
             WHERE b.tenant_id = ? ORDER BY h.hostname, b.host_id, b.baseline",
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
             WHERE tenant_id = ? ORDER BY seq DESC LIMIT ?",
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

    // ---- Issue 10, point 2: groups joined by rules on host facts ----

    async fn add_group_rule_logged(
        &self,
        group: &GroupId,
        rule: &GroupRule,
        log: &LogEntry,
    ) -> Result<GroupRuleInfo> {
        let mut tx = WriteTx::begin(&self.writer).await?;
        self.must_exist(&mut tx, "groups", group.as_str(), || {
            format!("group {group}")
        })
        .await?;
        // Numbered per tenant, never reused (a removed rule's number stays removed).
        let row = sqlx::query(
            "UPDATE tenants SET last_group_rule = last_group_rule + 1 WHERE id = ? \
             RETURNING last_group_rule",
        )
        .bind(self.id.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        let n: i64 = row.get("last_group_rule");
        sqlx::query("INSERT INTO group_rules (tenant_id, id, group_id, spec) VALUES (?, ?, ?, ?)")
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
        let mut tx = WriteTx::begin(&self.writer).await?;
        let n = i64::try_from(id).map_err(|_| StoreError::NotFound(format!("rule {id}")))?;
        let gone =
            sqlx::query("DELETE FROM group_rules WHERE tenant_id = ? AND group_id = ? AND id = ?")
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
        // Issue 10: every check-in applies them; inline (`inline.rs`).
        let rows = self.inline.read(|c| {
            c.prepare_cached(
                "SELECT id, group_id, spec FROM group_rules WHERE tenant_id = ? ORDER BY id",
            )?
            .query_map([self.id.as_str()], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(|(id, group, spec)| {
                Ok(GroupRuleInfo {
                    id: u64::try_from(id).map_err(|e| corrupt("rule id", e))?,
                    group: parse("group id", &group)?,
                    rule: json("group rule", &spec)?,
                })
            })
            .collect()
    }

    async fn set_membership_facts(&self, id: &HostId, facts: &MembershipFacts) -> Result<()> {
        let done =
            sqlx::query("UPDATE hosts SET membership_facts = ? WHERE tenant_id = ? AND id = ?")
                .bind(to_json(facts)?)
                .bind(self.id.as_str())
                .bind(id.as_str())
                .execute(&mut *self.writer.conn().await?)
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
        let mut tx = WriteTx::begin(&self.writer).await?;
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
                "INSERT INTO host_groups (tenant_id, host_id, group_id, by_rule) VALUES (?, ?, ?, 1) \
                 ON CONFLICT (tenant_id, host_id, group_id) DO NOTHING"
            } else {
                "DELETE FROM host_groups WHERE tenant_id = ? AND host_id = ? AND group_id = ? AND by_rule = 1"
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

impl SqliteTenant {
    /// `NotFound` (named by `what`) unless this tenant's `table` has a row with `id`.
    async fn must_exist(
        &self,
        tx: &mut WriteTx,
        table: &str,
        id: &str,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        sqlx::query(&format!(
            "SELECT 1 FROM {table} WHERE tenant_id = ? AND id = ?"
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
        // Issue 10: every check-in reads its host's (inline, `inline.rs`); a rule change
        // reads every host's, a few columns each. Two statements each, not one with
        // `(?2 IS NULL OR id = ?2)`: SQLite cannot seek on that, so every check-in read
        // the whole tenant (the check-in's cost grew with the fleet: 2.6 CPU-ms per
        // check-in at 10,000 hosts, 16.7 at 100,000).
        let one = one.map(HostId::as_str);
        let (hosts, rows) = self.inline.read(|c| {
            let hosts = c
                .prepare_cached(if one.is_some() {
                    "SELECT id, hostname, membership_facts FROM hosts \
                         WHERE tenant_id = ?1 AND id = ?2"
                } else {
                    "SELECT id, hostname, membership_facts FROM hosts \
                         WHERE tenant_id = ?1 AND ?2 IS NULL ORDER BY id"
                })?
                .query_map(rusqlite::params![self.id.as_str(), one], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let rows = c
                .prepare_cached(if one.is_some() {
                    "SELECT host_id, group_id, by_rule FROM host_groups \
                         WHERE tenant_id = ?1 AND host_id = ?2 ORDER BY group_id"
                } else {
                    "SELECT host_id, group_id, by_rule FROM host_groups \
                         WHERE tenant_id = ?1 AND ?2 IS NULL ORDER BY host_id, group_id"
                })?
                .query_map(rusqlite::params![self.id.as_str(), one], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((hosts, rows))
        })?;
        let mut groups: std::collections::BTreeMap<String, (Vec<GroupId>, Vec<GroupId>)> =
            std::collections::BTreeMap::new();
        for (host, group, by_rule) in rows {
            let g: GroupId = parse("group id", &group)?;
            let e = groups.entry(host).or_default();
            if by_rule != 0 {
                e.1.push(g.clone());
            }
            e.0.push(g);
        }
        hosts
            .into_iter()
            .map(|(host, hostname, membership_facts)| {
                let mut facts: MembershipFacts = match membership_facts.as_deref() {
                    Some(f) => json("membership facts", f)?,
                    None => MembershipFacts::default(),
                };
                facts.hostname = hostname;
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

impl SqliteTenant {
    async fn write_rings(&self, rings: &[patchday_types::api::Ring], log: &LogEntry) -> Result<()> {
        let mut tx = WriteTx::begin(&self.writer).await?;
        sqlx::query("DELETE FROM rings WHERE tenant_id = ?")
            .bind(self.id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        for (i, r) in rings.iter().enumerate() {
            sqlx::query(
                "INSERT INTO rings (tenant_id, position, group_id, spec) VALUES (?, ?, ?, ?)",
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
        // Issue 10: several reads per check-in; inline (`inline.rs`).
        let rows = self.inline.read(|c| {
            c.prepare_cached("SELECT spec FROM rings WHERE tenant_id = ? ORDER BY position")?
                .query_map([self.id.as_str()], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.iter().map(|r| json("ring", r)).collect()
    }
}

/// `NotFound` when an UPDATE of one host touched no row.
fn host_updated(done: &sqlx::sqlite::SqliteQueryResult, id: &HostId) -> Result<()> {
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
        "INSERT INTO mirror_progress (k, progress) VALUES (1, ?) \
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
        "INSERT INTO {table} (name, bytes) VALUES (?, ?) \
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

// ---- Finding 3/4/10 (issue 8): helpers of the lifecycle and log methods ----

/// Appends a log entry inside a transaction; returns its sequence number.
/// Keeps one host's evaluation for the fleet views; a host removed meanwhile is skipped.
async fn put_verdict(tx: &mut WriteTx, tenant: &TenantId, v: &StoredVerdict) -> Result<()> {
    sqlx::query(
        "INSERT INTO host_verdicts (tenant_id, host_id, basis, body, summary)
         SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM hosts WHERE tenant_id = ?1 AND id = ?2)
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

async fn insert_log(tx: &mut WriteTx, e: &LogEntry) -> Result<u64> {
    let done = sqlx::query(
        "INSERT INTO operator_log (at, at_ms, tenant_id, actor, actor_id, source, action, object, detail) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    .execute(&mut **tx)
    .await
    .map_err(backend)?;
    u64::try_from(done.last_insert_rowid()).map_err(|e| corrupt("seq", e))
}

impl SqliteTenant {
    // The writes below serve a trait method and its `*_logged` twin: with `log` the
    // operator-log entry is written in the same transaction (finding 10, issue 8).

    /// Records (or replaces) a decision.
    async fn write_approval(&self, a: &Approval, log: Option<&LogEntry>) -> Result<()> {
        let mut tx = WriteTx::begin(&self.writer).await?;
        let decision = match a.decision {
            Decision::Approve => "approve",
            Decision::Decline => "decline",
        };
        sqlx::query(
            "INSERT INTO approvals (tenant_id, update_id, group_id, decision, deadline, decided_at, decided_by, reason, emergency, remove)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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
        let mut tx = WriteTx::begin(&self.writer).await?;
        sqlx::query("INSERT INTO groups (tenant_id, id, name) VALUES (?, ?, ?)")
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
        let mut tx = WriteTx::begin(&self.writer).await?;
        sqlx::query("UPDATE tenants SET patch_day = ? WHERE id = ?")
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
        let mut tx = WriteTx::begin(&self.writer).await?;
        self.must_exist(&mut tx, "hosts", id.as_str(), || format!("host {id}"))
            .await?;
        // Issue 10, point 2: only the manual memberships are replaced; what a rule made
        // stays, unless named here, which makes it manual.
        sqlx::query("DELETE FROM host_groups WHERE tenant_id = ? AND host_id = ? AND by_rule = 0")
            .bind(self.id.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        for g in groups {
            sqlx::query(
                "INSERT INTO host_groups (tenant_id, host_id, group_id, by_rule) VALUES (?, ?, ?, 0) \
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
        let max = sqlx::query("SELECT max_hosts FROM tenants WHERE id = ?")
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

/// Issue 12: the history read, one statement per shape of the question, each able to
/// seek on its index (`state_history_by_host`, `state_history_by_update`); one statement
/// with `(?2 IS NULL OR host_id = ?2)` read the tenant's whole history for one host.
/// Every shape takes the same four parameters.
fn history_sql(host: bool, update: bool) -> &'static str {
    match (host, update) {
        (true, true) => {
            "SELECT host_id, update_id, state, previous, message, at FROM state_history \
             WHERE tenant_id = ?1 AND host_id = ?2 AND update_id = ?3 ORDER BY seq LIMIT ?4"
        }
        (true, false) => {
            "SELECT host_id, update_id, state, previous, message, at FROM state_history \
             WHERE tenant_id = ?1 AND host_id = ?2 AND ?3 IS NULL ORDER BY seq LIMIT ?4"
        }
        (false, true) => {
            "SELECT host_id, update_id, state, previous, message, at FROM state_history \
             WHERE tenant_id = ?1 AND ?2 IS NULL AND update_id = ?3 ORDER BY seq LIMIT ?4"
        }
        (false, false) => {
            "SELECT host_id, update_id, state, previous, message, at FROM state_history \
             WHERE tenant_id = ?1 AND ?2 IS NULL AND ?3 IS NULL ORDER BY seq LIMIT ?4"
        }
    }
}

// ---- Issue 10, points 1 and 8: state reports and the history, inside one transaction ----

/// Stores an agent's reported states (`put_states`, `report_on_kept`).
fn store_states(
    tx: &rusqlite::Connection,
    tenant: &str,
    host: &str,
    states: &[StateReport],
    at: &str,
) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO host_states (tenant_id, host_id, update_id, state, message, at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (tenant_id, host_id, update_id) DO UPDATE SET
           state = excluded.state, message = excluded.message, at = excluded.at",
    )?;
    for s in states {
        insert.execute(rusqlite::params![
            tenant,
            host,
            s.update.as_str(),
            s.state.as_str(),
            s.message,
            at
        ])?;
    }
    Ok(())
}

/// The host's marks (as `fleet_page` computes them) and its kept evaluation's body when
/// `body`; `None` for an unknown host.
fn marks_and_kept(
    c: &rusqlite::Connection,
    tenant: &str,
    host: &str,
    body: bool,
) -> rusqlite::Result<Option<(MarksAtCheckin, Option<String>)>> {
    c.prepare_cached(
        "SELECT (SELECT decisions_rev FROM tenants t WHERE t.id = h.tenant_id) AS decisions_rev,
                (SELECT group_concat(mark, ';') FROM (SELECT update_id || '=' || state || '@' || at AS mark
                   FROM host_states s WHERE s.tenant_id = h.tenant_id AND s.host_id = h.id
                   ORDER BY update_id)) AS states_mark,
                COALESCE(h.inventory_sha256, 'seen ' || h.last_seen) AS inventory_mark,
                v.basis, CASE WHEN ?3 THEN v.body END
         FROM hosts h LEFT JOIN host_verdicts v ON v.tenant_id = h.tenant_id AND v.host_id = h.id
         WHERE h.tenant_id = ?1 AND h.id = ?2",
    )?
    .query_row(rusqlite::params![tenant, host, body], |r| {
        Ok((
            MarksAtCheckin {
                decisions: r.get(0)?,
                host: HostMarks {
                    states: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    inventory: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                },
                basis: r.get(3)?,
            },
            r.get(4)?,
        ))
    })
    .optional()
}

/// Records the host's states that changed in the read model and the history; the index
/// of each changed state with its previous state.
fn record_changes(
    tx: &rusqlite::Connection,
    tenant: &str,
    host: &str,
    states: &[StateReport],
    at: &str,
) -> rusqlite::Result<Vec<(usize, Option<String>)>> {
    let mut last: std::collections::HashMap<String, (String, Option<String>)> = tx
        .prepare_cached(
            "SELECT update_id, state, message FROM host_update_state WHERE tenant_id = ? AND host_id = ?",
        )?
        .query_map([tenant, host], |r| {
            Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?)))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut changes = Vec::new();
    for (i, st) in states.iter().enumerate() {
        let before = last.remove(st.update.as_str());
        if before
            .as_ref()
            .is_some_and(|(s, m)| s == st.state.as_str() && *m == st.message)
        {
            continue;
        }
        let previous = before.map(|(s, _)| s);
        tx.prepare_cached(
            "INSERT INTO host_update_state (tenant_id, host_id, update_id, state, message, since) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, host_id, update_id) DO UPDATE SET \
             state = excluded.state, message = excluded.message, since = excluded.since",
        )?
        .execute(rusqlite::params![
            tenant,
            host,
            st.update.as_str(),
            st.state.as_str(),
            st.message,
            at
        ])?;
        tx.prepare_cached(
            "INSERT INTO state_history (tenant_id, host_id, update_id, state, previous, message, at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )?
        .execute(rusqlite::params![
            tenant,
            host,
            st.update.as_str(),
            st.state.as_str(),
            previous,
            st.message,
            at
        ])?;
        changes.push((i, previous));
    }
    Ok(changes)
}

/// The history entries of `record_changes`'s answer.
fn history_entries(
    id: &HostId,
    states: &[StateReport],
    changes: Vec<(usize, Option<String>)>,
    now: Timestamp,
) -> Result<Vec<HistoryEntry>> {
    changes
        .into_iter()
        .filter_map(|(i, previous)| states.get(i).map(|st| (st, previous)))
        .map(|(st, previous)| {
            Ok(HistoryEntry {
                host: id.clone(),
                update: st.update.clone(),
                state: st.state,
                previous: previous
                    .map(|p| parse::<UpdateState>("state", &p))
                    .transpose()?,
                message: st.message.clone(),
                at: now,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reopening_applies_no_migration_twice_and_keeps_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("patchday.db"))
            .await
            .unwrap();
        patchday_store::conformance::case::tenant_isolation(&store).await;
        drop(store);
        let again = SqliteStore::open(&dir.path().join("patchday.db"))
            .await
            .unwrap();
        assert_eq!(again.list_tenants().await.unwrap().len(), 2);
    }

    // Finding 10 (issue 8): the log refuses changes even from outside the trait.
    #[tokio::test]
    async fn operator_log_refuses_update_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("patchday.db"))
            .await
            .unwrap();
        patchday_store::conformance::case::approval_and_its_log_entry_commit_together(&store).await;
        for sql in [
            "UPDATE operator_log SET actor = 'mallory'",
            "DELETE FROM operator_log",
        ] {
            let e = sqlx::query(sql)
                .execute(&mut *store.writer.conn().await.unwrap())
                .await
                .unwrap_err();
            assert!(e.to_string().contains("append-only"), "{sql}: {e}");
        }
    }

    // Issue 12: a history question about one host or one update seeks on its index.
    #[tokio::test]
    async fn history_reads_seek_on_the_host_or_update_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("patchday.db"))
            .await
            .unwrap();
        let plan = |host: bool, update: bool| {
            store
                .inline
                .read(|c| {
                    c.prepare(&format!("EXPLAIN QUERY PLAN {}", history_sql(host, update)))?
                        .query_map(rusqlite::params!["t", "h", "u", 10], |r| {
                            r.get::<_, String>(3)
                        })?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .unwrap()
                .join("; ")
        };
        for (host, update, index) in [
            (
                true,
                false,
                "state_history_by_host (tenant_id=? AND host_id=?)",
            ),
            (
                false,
                true,
                "state_history_by_update (tenant_id=? AND update_id=?)",
            ),
        ] {
            let p = plan(host, update);
            assert!(p.contains(index), "host {host}, update {update}: {p}");
        }
        let both = plan(true, true);
        assert!(
            both.contains("(tenant_id=? AND host_id=?)")
                || both.contains("(tenant_id=? AND update_id=?)"),
            "{both}"
        );
    }
}
