//! Reads run inline on the calling thread, for the agent hot path (issue 10, point 8).
//!
//! Why not sqlx here: sqlx-sqlite runs every connection on a thread of its own and sends
//! each statement there and each row back through channels. A profile of the fleet
//! benchmark (2,000 simulated agents, `perf record -g` on the server) put about half the
//! server's CPU in the futex wake-ups and context switches of those round trips, not in
//! SQLite: a check-in is some twenty statements, each a few microseconds of SQLite work
//! and tens of microseconds of thread hops. sqlx offers no way to run a statement on the
//! caller's thread, so the short, indexed reads an agent request makes go through
//! rusqlite on a small pool of read-only connections instead. A WAL read never waits for
//! the writer, so running it on an async worker thread blocks it only for the
//! statement's own work (tens of microseconds); large reads (fleet pages, reports) stay
//! on sqlx. Writes stay on sqlx's single writer, so everything that commits does so in
//! one place as before.
//!
//! rusqlite is the crate that wraps the same `libsqlite3-sys` sqlx links (one SQLite
//! library in the process; the versions must match, see Cargo.toml).

use patchday_store::{Result, StoreError};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Connections kept for reuse; more are opened while more readers run at once.
const KEEP: usize = 16;

/// A pool of read-only connections used on the caller's thread.
pub(crate) struct InlineReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl InlineReads {
    /// Readers of the database at `path` (already created and migrated).
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        }
    }

    fn open(&self) -> Result<Connection> {
        let c = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", self.path.display())))?;
        c.busy_timeout(Duration::from_secs(10)).map_err(failed)?;
        c.pragma_update(None, "query_only", "ON").map_err(failed)?;
        // Prepared statements are cached per connection (rusqlite's default is 16).
        c.set_prepared_statement_cache_capacity(64);
        Ok(c)
    }

    /// Runs `f` on a pooled connection, on this thread.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R> {
        let taken = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match taken {
            Some(c) => c,
            None => self.open()?,
        };
        let out = f(&conn).map_err(failed);
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < KEEP {
                idle.push(conn);
            }
        }
        out
    }
}

/// Runs `f` on a pooled connection on tokio's blocking threads: for reads of a whole
/// tenant (every host), which would hold an async worker for tens of milliseconds.
pub(crate) async fn read_blocking<R: Send + 'static>(
    reads: &std::sync::Arc<InlineReads>,
    f: impl FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
) -> Result<R> {
    let reads = reads.clone();
    tokio::task::spawn_blocking(move || reads.read(f))
        .await
        .map_err(|e| StoreError::Backend(format!("a database read stopped: {e}")))?
}

impl std::fmt::Debug for InlineReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineReads")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A rusqlite failure as the store's error: a busy database (a checkpoint holding it
/// past the busy timeout) may pass on a retry, anything else is fatal.
pub(crate) fn failed(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

/// `name, length, sha256, release_counter` of `catalog_targets`, as read.
pub(crate) struct CatalogTargetRow {
    name: String,
    length: i64,
    sha256: String,
    release_counter: i64,
}

/// Maps a row selecting `name, length, sha256, release_counter`.
pub(crate) fn catalog_target(r: &rusqlite::Row<'_>) -> rusqlite::Result<CatalogTargetRow> {
    Ok(CatalogTargetRow {
        name: r.get(0)?,
        length: r.get(1)?,
        sha256: r.get(2)?,
        release_counter: r.get(3)?,
    })
}

impl CatalogTargetRow {
    /// The target, or a "corrupt" error for a negative size or counter.
    pub(crate) fn decode(self) -> Result<patchday_store::CatalogTarget> {
        let corrupt =
            |what: &str, e: std::num::TryFromIntError| StoreError::Corrupt(format!("{what}: {e}"));
        Ok(patchday_store::CatalogTarget {
            name: self.name,
            length: u64::try_from(self.length).map_err(|e| corrupt("length", e))?,
            sha256: self.sha256,
            release_counter: u64::try_from(self.release_counter)
                .map_err(|e| corrupt("release_counter", e))?,
        })
    }
}

/// The columns of `approvals`, as read.
pub(crate) struct ApprovalRow {
    pub(crate) update: String,
    pub(crate) group: String,
    pub(crate) decision: String,
    pub(crate) deadline: Option<String>,
    pub(crate) decided_at: String,
    pub(crate) decided_by: String,
    pub(crate) reason: Option<String>,
    pub(crate) emergency: i64,
    pub(crate) remove: i64,
}

/// Maps a row selecting `update_id, group_id, decision, deadline, decided_at,
/// decided_by, reason, emergency, remove`.
pub(crate) fn approval(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApprovalRow> {
    Ok(ApprovalRow {
        update: r.get(0)?,
        group: r.get(1)?,
        decision: r.get(2)?,
        deadline: r.get(3)?,
        decided_at: r.get(4)?,
        decided_by: r.get(5)?,
        reason: r.get(6)?,
        emergency: r.get(7)?,
        remove: r.get(8)?,
    })
}

/// The one way to write the database (issue 10): sqlx's single writer connection for
/// transactions and rare statements, and an inline rusqlite connection for the agent
/// hot path's writes (a request's sequence number, a check-in's last-seen time, a
/// report's states), both behind one async lock, so they never meet in SQLite's busy
/// handler (which sleeps in growing steps) and commit one at a time as before.
#[derive(Clone)]
pub(crate) struct Writer {
    pool: sqlx::SqlitePool,
    /// Held for every write.
    gate: std::sync::Arc<Gate>,
    /// The inline connection (opened at first use); locked only under the gate.
    inline: std::sync::Arc<Mutex<Option<Connection>>>,
    path: PathBuf,
}

/// The write lock: whoever asks while it is free takes it at once.
///
/// Why not `tokio::sync::Mutex`: it hands the lock to its first waiter, which holds it
/// from then on although it runs only when a worker thread gets to its task. Under a
/// fleet's check-ins (each write tens of microseconds, the workers busy with requests)
/// the lock spent most of its time handed over and idle: the fleet benchmark measured
/// writes waiting ~1 ms each for a lock held ~50 µs. Here a release frees the lock and
/// wakes one waiter, which takes it if nobody took it meanwhile and waits again if
/// somebody did; a write that finds it free never yields.
pub(crate) struct Gate {
    held: AtomicBool,
    freed: tokio::sync::Notify,
}

/// The gate, held until dropped.
pub(crate) struct GateGuard(std::sync::Arc<Gate>);

impl Gate {
    fn new() -> Self {
        Self {
            held: AtomicBool::new(false),
            freed: tokio::sync::Notify::new(),
        }
    }

    fn try_take(&self) -> bool {
        self.held
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The lock, once free.
    pub(crate) async fn take(self: &std::sync::Arc<Self>) -> GateGuard {
        loop {
            if self.try_take() {
                return GateGuard(self.clone());
            }
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the second look: a release between the two wakes it.
            freed.as_mut().enable();
            if self.try_take() {
                return GateGuard(self.clone());
            }
            // A waiter dropped after its wake-up passes the wake-up on (tokio's Notify).
            freed.await;
        }
    }
}

impl Drop for GateGuard {
    fn drop(&mut self) {
        self.0.held.store(false, Ordering::Release);
        self.0.freed.notify_one();
    }
}

/// sqlx's writer connection, with the lock held as long as it is.
pub(crate) struct WriterConn {
    conn: sqlx::pool::PoolConnection<sqlx::Sqlite>,
    /// `None` once handed to the task that waits for this connection's close.
    gate: Option<GateGuard>,
    pool: sqlx::SqlitePool,
}

impl Writer {
    /// The writer of the database at `path`, through `pool` (one connection).
    pub(crate) fn new(pool: sqlx::SqlitePool, path: &Path) -> Self {
        Self {
            pool,
            gate: std::sync::Arc::new(Gate::new()),
            inline: std::sync::Arc::new(Mutex::new(None)),
            path: path.to_path_buf(),
        }
    }

    /// sqlx's writer connection, once no other write runs.
    pub(crate) async fn conn(&self) -> Result<WriterConn> {
        let gate = self.gate.take().await;
        let conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| StoreError::Unavailable(format!("the database writer: {e}")))?;
        Ok(WriterConn {
            conn,
            gate: Some(gate),
            pool: self.pool.clone(),
        })
    }

    /// Runs `f` in one transaction (`BEGIN IMMEDIATE` … `COMMIT`) on the inline writer,
    /// on this thread, once no other write runs. A statement's own work is microseconds;
    /// WAL with `synchronous = NORMAL` syncs only at checkpoints.
    pub(crate) async fn inline<R: Send>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<R> + Send,
    ) -> Result<R> {
        let _gate = self.gate.take().await;
        // SQLite's lock is free under the gate, except while a failed sqlx transaction's
        // connection is being closed (its rollback runs on a task of this runtime) or
        // another process (a replica on the same file) writes: wait for that
        // asynchronously, never in SQLite's busy handler, which would block this thread
        // and with it, on a one-thread runtime, the very writer it waits for.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut open = loop {
            if let Some(open) = self.begin(deadline)? {
                break open;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let Some(conn) = open.as_mut() else {
            return Err(StoreError::Backend("the inline writer is not open".into()));
        };
        // The transaction `begin` opened: committed, or rolled back on any error (a
        // failed COMMIT included), so the connection never stays inside one.
        match f(conn).and_then(|out| conn.execute_batch("COMMIT").map(|()| out)) {
            Ok(out) => Ok(out),
            Err(e) => {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                Err(written(e))
            }
        }
    }

    /// The inline connection (opened at first use) inside `BEGIN IMMEDIATE`, or `None`
    /// while SQLite's lock is still held by a closing sqlx connection (try again later).
    /// Called under the gate; the returned guard is uncontended and never held across
    /// an await.
    fn begin(
        &self,
        deadline: std::time::Instant,
    ) -> Result<Option<std::sync::MutexGuard<'_, Option<Connection>>>> {
        let mut open = self
            .inline
            .lock()
            .map_err(|_| StoreError::Backend("the inline writer's lock is poisoned".into()))?;
        if open.is_none() {
            let c = Connection::open_with_flags(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| {
                StoreError::Backend(format!("cannot open {}: {e}", self.path.display()))
            })?;
            // No busy handler: it would block this thread while it waits, and the
            // writer it waits for (another process's, or another store's on this file,
            // as replicas in tests) may need this very thread to finish. `BEGIN
            // IMMEDIATE` is the only statement that can find the lock taken (WAL: COMMIT
            // waits for no reader); it is retried asynchronously below.
            c.busy_timeout(Duration::ZERO).map_err(written)?;
            c.pragma_update(None, "foreign_keys", "ON")
                .map_err(written)?;
            c.pragma_update(None, "synchronous", "NORMAL")
                .map_err(written)?;
            c.set_prepared_statement_cache_capacity(64);
            *open = Some(c);
        }
        let Some(conn) = open.as_mut() else {
            return Err(StoreError::Backend("the inline writer is not open".into()));
        };
        match conn.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => Ok(Some(open)),
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy)
                ) && std::time::Instant::now() < deadline =>
            {
                Ok(None)
            }
            Err(e) => Err(written(e)),
        }
    }
}

impl std::ops::Deref for WriterConn {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl std::ops::DerefMut for WriterConn {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

impl WriterConn {
    /// Closes the connection when dropped instead of returning it to the pool (its
    /// transaction ended unfinished: closing rolls it back).
    ///
    /// The close (and with it the rollback) runs on a task of its own; the write lock
    /// passes on only once it is done, which the pool's one permit tells: a task holds
    /// the lock until it can take the pool's connection again.
    pub(crate) fn close_on_drop(&mut self) {
        self.conn.close_on_drop();
        if let Some(gate) = self.gate.take() {
            let pool = self.pool.clone();
            tokio::spawn(async move {
                let _ = pool.acquire().await;
                drop(gate);
            });
        }
    }

    /// Closes the connection now, then lets the next writer in.
    pub(crate) async fn close(self) {
        let WriterConn { conn, gate, .. } = self;
        let _ = conn.close().await;
        drop(gate);
    }
}

/// A rusqlite failure of a write as the store's error, as `backend` maps sqlx's: a full
/// disk, a unique or foreign-key violation, a busy database, or anything else.
pub(crate) fn written(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    let text = e.to_string();
    match e.sqlite_error_code() {
        Some(C::DiskFull) => StoreError::StorageFull(format!(
            "disk full ({text}); free space in the data directory"
        )),
        Some(C::SystemIoFailure)
            if text.contains("No space left") || text.contains("Disk quota exceeded") =>
        {
            StoreError::StorageFull(format!(
                "disk full ({text}); free space in the data directory"
            ))
        }
        Some(C::ConstraintViolation) if text.contains("FOREIGN KEY") => {
            StoreError::NotFound(format!("referenced object ({text})"))
        }
        Some(C::ConstraintViolation) if text.contains("UNIQUE") => StoreError::Conflict(text),
        Some(C::DatabaseBusy | C::DatabaseLocked) => StoreError::Unavailable(text),
        _ => StoreError::Backend(text),
    }
}

/// Keeps a host's evaluation (issue 11), in the writer's transaction `tx`; nothing when
/// the host is gone (removed meanwhile).
pub(crate) fn put_verdict(
    tx: &Connection,
    tenant: &str,
    v: &patchday_store::StoredVerdict,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO host_verdicts (tenant_id, host_id, basis, body, summary)
         SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM hosts WHERE tenant_id = ?1 AND id = ?2)
         ON CONFLICT (tenant_id, host_id) DO UPDATE SET basis = excluded.basis, body = excluded.body,
             summary = excluded.summary",
    )?
    .execute(rusqlite::params![
        tenant,
        v.host.as_str(),
        v.basis,
        v.body,
        v.summary
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_gate_lets_one_holder_in_at_a_time_under_contention() {
        let gate = Arc::new(Gate::new());
        let inside = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let (gate, inside, done) = (gate.clone(), inside.clone(), done.clone());
            tasks.spawn(async move {
                for i in 0..300 {
                    let _held = gate.take().await;
                    assert!(!inside.swap(true, Ordering::AcqRel), "two holders at once");
                    // Some holders yield while holding, as sqlx's writers do.
                    if i % 3 == 0 {
                        tokio::task::yield_now().await;
                    }
                    inside.store(false, Ordering::Release);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        assert_eq!(done.load(Ordering::Relaxed), 16 * 300);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_does_not_keep_the_gate_from_the_next() {
        let gate = Arc::new(Gate::new());
        let held = gate.take().await;
        // A waiter registers, then is dropped (its request was cancelled).
        let mut first = Box::pin(gate.take());
        assert!(futures::poll!(first.as_mut()).is_pending());
        let second = tokio::spawn({
            let gate = gate.clone();
            async move {
                let _g = gate.take().await;
            }
        });
        tokio::task::yield_now().await;
        drop(held);
        // Woken or not, the first waiter goes away without taking the gate.
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the second waiter got the gate")
            .unwrap();
        // And the gate is free again afterwards.
        assert!(gate.try_take());
    }
}
