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
//! on sqlx. Writes go through one lock ([`Writer`]): the hot path's on an inline
//! rusqlite connection, committed in groups, the rest on sqlx's single writer.
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
        // No `mmap_size`: every commit empties a reader's page cache, but reading pages
        // through a map cost the fleet rollout more server CPU than it saved (BENCHMARKS.md,
        // twelfth run).
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
/// handler (which sleeps in growing steps).
///
/// The inline writes commit in groups ([`Writer::inline`]): each runs in a savepoint of
/// a transaction that stays open while other writes wait for the lock, and the last of
/// the group commits for all of them. A caller still returns only once its write is
/// committed (or with the error that lost it).
#[derive(Clone)]
pub(crate) struct Writer {
    pool: sqlx::SqlitePool,
    /// Held for every write.
    gate: std::sync::Arc<Gate>,
    /// The inline connection (opened at first use) and its open group; locked only
    /// under the gate, or briefly by a member reading its group's outcome.
    inline: std::sync::Arc<Mutex<InlineWriter>>,
    /// The last group that ended (committed or failed), by number.
    ended: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    path: PathBuf,
}

/// Most writes committed together: bounds the time a write waits for its group.
const GROUP_MEMBERS: usize = 128;
/// Longest a group stays open while writes keep coming.
const GROUP_AGE: Duration = Duration::from_millis(20);
/// A member of an open group commits it itself after this long without the group
/// ending: the write that was to come next may have been cancelled.
///
/// Tried and dropped: holding every group open for a few milliseconds under steady
/// load. Groups grew, but each agent request then held its admission place (sized by
/// the measured hold time, `patchday_server::admission`) milliseconds longer per
/// write, and a 10,000-host rollout slowed to a third of its rate.
const GROUP_FALLBACK: Duration = Duration::from_millis(25);
/// Failed groups remembered for members that have not read their outcome yet.
const FAILED_KEPT: usize = 256;

/// The inline writer's connection and its group commit.
#[derive(Default)]
pub(crate) struct InlineWriter {
    conn: Option<Connection>,
    /// The transaction now open on `conn`, if any.
    open: Option<Group>,
    /// The number the next group gets (groups are numbered from 1).
    next: u64,
    /// Groups that ended without committing, with the error their members get.
    failed: std::collections::VecDeque<(u64, StoreError)>,
    /// Most writes in one group ([`GROUP_MEMBERS`]; 1 turns grouping off, to measure).
    max_members: usize,
}

/// An open group: the transaction's number, how many writes it holds, since when.
struct Group {
    number: u64,
    members: usize,
    since: std::time::Instant,
}

impl InlineWriter {
    /// Ends the open group with `COMMIT`; on failure every member gets the error.
    fn commit(&mut self, ended: &tokio::sync::watch::Sender<u64>) -> Result<()> {
        let Some(group) = self.open.take() else {
            return Ok(());
        };
        let outcome = match self.conn.as_ref() {
            Some(conn) => conn.execute_batch("COMMIT").map_err(|e| {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                written(e)
            }),
            None => Err(StoreError::Backend("the inline writer is not open".into())),
        };
        self.end(group.number, outcome.clone(), ended);
        outcome
    }

    /// Records how group `number` ended and tells its members.
    fn end(&mut self, number: u64, outcome: Result<()>, ended: &tokio::sync::watch::Sender<u64>) {
        if let Err(e) = outcome {
            self.failed.push_back((number, e));
            while self.failed.len() > FAILED_KEPT {
                self.failed.pop_front();
            }
        }
        ended.send_replace(number);
    }

    /// How group `number` (ended) went.
    fn outcome(&self, number: u64) -> Result<()> {
        match self.failed.iter().find(|(n, _)| *n == number) {
            Some((_, e)) => Err(e.clone()),
            None => Ok(()),
        }
    }
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
    /// Tasks waiting in [`Gate::take`]: a group stays open while there are some.
    waiting: std::sync::atomic::AtomicUsize,
    freed: tokio::sync::Notify,
}

/// The gate, held until dropped.
pub(crate) struct GateGuard(std::sync::Arc<Gate>);

/// Counts a task among the gate's waiters while it lives.
struct Waiting<'a>(&'a Gate);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gate {
    fn new() -> Self {
        Self {
            held: AtomicBool::new(false),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            freed: tokio::sync::Notify::new(),
        }
    }

    fn try_take(&self) -> bool {
        self.held
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Whether some task waits for the gate now.
    fn contended(&self) -> bool {
        self.waiting.load(Ordering::Acquire) > 0
    }

    /// The lock, once free.
    pub(crate) async fn take(self: &std::sync::Arc<Self>) -> GateGuard {
        if self.try_take() {
            return GateGuard(self.clone());
        }
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let _counted = Waiting(self);
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the second look: a release between the two wakes it.
            freed.as_mut().enable();
            if self.try_take() {
                return GateGuard(self.clone());
            }
            // A waiter dropped after its wake-up passes the wake-up on (tokio's Notify).
            freed.await;
            if self.try_take() {
                return GateGuard(self.clone());
            }
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
            inline: std::sync::Arc::new(Mutex::new(InlineWriter {
                next: 1,
                max_members: GROUP_MEMBERS,
                ..InlineWriter::default()
            })),
            ended: std::sync::Arc::new(tokio::sync::watch::Sender::new(0)),
            path: path.to_path_buf(),
        }
    }

    fn lock_inline(&self) -> Result<std::sync::MutexGuard<'_, InlineWriter>> {
        self.inline
            .lock()
            .map_err(|_| StoreError::Backend("the inline writer's lock is poisoned".into()))
    }

    /// sqlx's writer connection, once no other write runs (an open group of inline
    /// writes is committed first: it holds SQLite's write lock).
    pub(crate) async fn conn(&self) -> Result<WriterConn> {
        let gate = self.gate.take().await;
        // The group's members learn its outcome; this write goes on either way.
        let _ = self.lock_inline()?.commit(&self.ended);
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

    /// Runs `f` on the inline writer, on this thread, once no other write runs, and
    /// returns once what it wrote is committed. A statement's own work is microseconds;
    /// WAL with `synchronous = NORMAL` syncs only at checkpoints.
    ///
    /// Group commit (issue 10, the fleet benchmark): `f` runs in a savepoint of the
    /// group's transaction (`BEGIN IMMEDIATE` by the group's first write). While other
    /// writes wait for the gate, the transaction stays open for them, up to
    /// [`GROUP_MEMBERS`] writes or [`GROUP_AGE`]; the write that finds nobody waiting
    /// (or the group full) commits it, so no write waits for writes that are not
    /// already queued. A profile at 10,000 hosts put ~17% of the
    /// server's CPU in per-commit work (WAL frames written again for pages every commit
    /// touches, locks, checkpoints) and in the read connections' page caches, which
    /// SQLite empties whenever another connection committed: one commit per write made
    /// every read start cold. A write that fails rolls back its savepoint only; a
    /// failure that ends the whole transaction (a full disk) or a failed `COMMIT` fails
    /// every write of the group.
    pub(crate) async fn inline<R: Send>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<R> + Send,
    ) -> Result<R> {
        let gate = self.gate.take().await;
        // SQLite's lock is free under the gate, except while a failed sqlx transaction's
        // connection is being closed (its rollback runs on a task of this runtime) or
        // another process (a replica on the same file) writes: wait for that
        // asynchronously, never in SQLite's busy handler, which would block this thread
        // and with it, on a one-thread runtime, the very writer it waits for.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let (number, out, until) = {
            let mut w = loop {
                if let Some(w) = self.begin(deadline)? {
                    break w;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            };
            let ran = {
                let InlineWriter { conn, open, .. } = &mut *w;
                let (Some(conn), Some(group)) = (conn.as_ref(), open.as_mut()) else {
                    return Err(StoreError::Backend("the inline writer is not open".into()));
                };
                // The group's first write needs no savepoint: if it fails, the whole
                // transaction goes (a lone write, the common case, pays nothing extra).
                let first = group.members == 0;
                let ran = if first {
                    f(conn)
                } else {
                    conn.execute_batch("SAVEPOINT pd_write")
                        .and_then(|()| f(conn))
                        .and_then(|out| conn.execute_batch("RELEASE pd_write").map(|()| out))
                };
                match ran {
                    Ok(out) => {
                        group.members += 1;
                        Ok((group.number, out))
                    }
                    Err(e) => {
                        // SQLite may have ended the whole transaction (a full disk, say).
                        let whole = conn.is_autocommit();
                        if !whole {
                            let undo = if first {
                                "ROLLBACK"
                            } else {
                                "ROLLBACK TO pd_write; RELEASE pd_write"
                            };
                            let _ = conn.execute_batch(undo);
                        }
                        Err((written(e), whole, first))
                    }
                }
            };
            let (number, out) = match ran {
                Ok(done) => done,
                Err((err, whole, first)) => {
                    if whole || first {
                        // The transaction is gone: with the group's earlier writes (they
                        // fail too), or with nothing else in it.
                        if let Some(group) = w.open.take() {
                            let outcome = if whole { Err(err.clone()) } else { Ok(()) };
                            w.end(group.number, outcome, &self.ended);
                        }
                    } else if !self.gate.contended() {
                        // As after a write that succeeded: nobody comes to commit the
                        // earlier writes, so this one does.
                        let _ = w.commit(&self.ended);
                    }
                    return Err(err);
                }
            };
            let full = w
                .open
                .as_ref()
                .is_some_and(|g| g.members >= w.max_members || g.since.elapsed() >= GROUP_AGE);
            if full || !self.gate.contended() {
                return w.commit(&self.ended).map(|()| out);
            }
            (number, out, std::time::Instant::now() + GROUP_FALLBACK)
        };
        // Others wait for the gate: the group stays open for them; one of them (or this
        // write, at `until`) commits it.
        drop(gate);
        self.group_ended(number, until).await.map(|()| out)
    }

    /// Waits until group `number` ended, committing it at `until` (and every
    /// [`GROUP_FALLBACK`] after) if it is still open then; its outcome.
    async fn group_ended(&self, number: u64, mut until: std::time::Instant) -> Result<()> {
        let mut ended = self.ended.subscribe();
        loop {
            if *ended.borrow_and_update() >= number {
                return self.lock_inline()?.outcome(number);
            }
            if tokio::time::timeout_at(until.into(), ended.changed())
                .await
                .is_err()
            {
                until = std::time::Instant::now() + GROUP_FALLBACK;
                let _gate = self.gate.take().await;
                let mut w = self.lock_inline()?;
                if w.open.as_ref().is_some_and(|g| g.number == number) {
                    let _ = w.commit(&self.ended);
                }
            }
        }
    }

    /// The inline connection (opened at first use) inside a group's transaction (begun
    /// with `BEGIN IMMEDIATE` when none is open), or `None` while SQLite's lock is
    /// still held by a closing sqlx connection (try again later). Called under the
    /// gate; the returned guard is uncontended and never held across an await.
    fn begin(
        &self,
        deadline: std::time::Instant,
    ) -> Result<Option<std::sync::MutexGuard<'_, InlineWriter>>> {
        let mut w = self.lock_inline()?;
        if w.conn.is_none() {
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
            w.conn = Some(c);
        }
        if w.open.is_some() {
            return Ok(Some(w));
        }
        let Some(conn) = w.conn.as_ref() else {
            return Err(StoreError::Backend("the inline writer is not open".into()));
        };
        match conn.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => {
                let number = w.next;
                w.next += 1;
                w.open = Some(Group {
                    number,
                    members: 0,
                    since: std::time::Instant::now(),
                });
                Ok(Some(w))
            }
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

    /// A store's writer on a fresh database, with a table of its own.
    async fn writer() -> (tempfile::TempDir, crate::SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::SqliteStore::open(&dir.path().join("patchday.db"))
            .await
            .unwrap();
        store
            .writer
            .inline(|c| c.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)"))
            .await
            .unwrap();
        (dir, store)
    }

    async fn wait_for_waiters(store: &crate::SqliteStore, n: usize) {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while store.writer.gate.waiting.load(Ordering::Acquire) < n {
            assert!(std::time::Instant::now() < until, "the writes never came");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn committed(dir: &tempfile::TempDir) -> Vec<i64> {
        let c = Connection::open(dir.path().join("patchday.db")).unwrap();
        let mut keys: Vec<i64> = c
            .prepare("SELECT k FROM t")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        keys.sort_unstable();
        keys
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn writes_waiting_for_the_gate_commit_in_one_group_and_each_returns_committed() {
        let (dir, store) = writer().await;
        let store = Arc::new(store);
        let groups_before = store.writer.lock_inline().unwrap().next;
        // The gate held (as by a long write) while nine writes come.
        let held = store.writer.gate.take().await;
        let mut tasks = tokio::task::JoinSet::new();
        for k in 0..=8i64 {
            let (store, path) = (store.clone(), dir.path().join("patchday.db"));
            tasks.spawn(async move {
                store
                    .writer
                    .inline(move |c| c.execute("INSERT INTO t VALUES (?, 'later')", [k]))
                    .await
                    .unwrap();
                // Returned: committed, so another connection sees it.
                let other = Connection::open(path).unwrap();
                let seen: i64 = other
                    .query_row("SELECT count(*) FROM t WHERE k = ?", [k], |r| r.get(0))
                    .unwrap();
                assert_eq!(seen, 1, "write {k} returned before it was committed");
            });
        }
        wait_for_waiters(&store, 9).await;
        drop(held);
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        assert_eq!(committed(&dir), (0..=8).collect::<Vec<_>>());
        let groups = store.writer.lock_inline().unwrap().next - groups_before;
        assert!(
            groups < 9,
            "nine writes took {groups} commits: no group formed"
        );
        assert!(store.writer.lock_inline().unwrap().open.is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failed_write_in_a_group_loses_only_itself() {
        let (dir, store) = writer().await;
        let store = Arc::new(store);
        store
            .writer
            .inline(|c| c.execute("INSERT INTO t VALUES (1, 'one')", []))
            .await
            .unwrap();
        let held = store.writer.gate.take().await;
        let mut tasks = tokio::task::JoinSet::new();
        for k in 2..=5i64 {
            let store = store.clone();
            tasks.spawn(async move {
                store
                    .writer
                    .inline(move |c| {
                        c.execute("INSERT INTO t VALUES (?, 'x')", [k])?;
                        if k == 3 {
                            // Its own row, then a conflict: the savepoint goes, not the group.
                            c.execute("INSERT INTO t VALUES (1, 'dup')", [])?;
                        }
                        Ok(k)
                    })
                    .await
            });
        }
        wait_for_waiters(&store, 4).await;
        drop(held);
        let mut failed = Vec::new();
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r.unwrap() {
                failed.push(e);
            }
        }
        assert_eq!(failed.len(), 1);
        assert!(
            matches!(failed[0], StoreError::Conflict(_)),
            "{:?}",
            failed[0]
        );
        assert_eq!(committed(&dir), vec![1, 2, 4, 5]);
    }

    #[tokio::test]
    async fn a_quiet_write_commits_at_once() {
        let (dir, store) = writer().await;
        let before = store.writer.lock_inline().unwrap().next;
        store
            .writer
            .inline(|c| c.execute("INSERT INTO t VALUES (1, 'quiet')", []))
            .await
            .unwrap();
        assert_eq!(store.writer.lock_inline().unwrap().next, before + 1);
        assert!(store.writer.lock_inline().unwrap().open.is_none());
        assert_eq!(committed(&dir), vec![1]);
    }

    /// 64 tasks, each a write (a host's sequence number) and five reads at a time, on
    /// two worker threads: every write lands, and they commit in groups.
    /// `PATCHDAY_GROUP_COMMIT_MEASURE=N` runs N rounds of 300 writes per task, with and
    /// without grouping, and prints wall and CPU time (BENCHMARKS.md).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_all_land_and_commit_in_groups() {
        let measure: usize = std::env::var("PATCHDAY_GROUP_COMMIT_MEASURE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let per_task = if measure > 0 { 300 } else { 40 };
        for round in 0..measure.max(1) * 2 {
            let grouped = round % 2 == 0;
            let (_dir, store) = writer().await;
            let store = Arc::new(store);
            store.writer.lock_inline().unwrap().max_members =
                if grouped { GROUP_MEMBERS } else { 1 };
            store
                .writer
                .inline(|c| {
                    c.execute_batch(
                        "CREATE TABLE s (k INTEGER PRIMARY KEY, seq INTEGER NOT NULL, pad TEXT)",
                    )?;
                    for k in 0..10_000 {
                        c.execute("INSERT INTO s VALUES (?, 0, hex(randomblob(100)))", [k])?;
                    }
                    Ok(())
                })
                .await
                .unwrap();
            let groups_before = store.writer.lock_inline().unwrap().next;
            let (t, cpu0) = (std::time::Instant::now(), process_cpu_seconds());
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..64i64 {
                let store = store.clone();
                tasks.spawn(async move {
                    for j in 0..per_task {
                        let k = (i * 7919 + j * 104_729) % 10_000;
                        store
                            .writer
                            .inline(move |c| {
                                c.execute("UPDATE s SET seq = seq + 1 WHERE k = ?", [k])
                            })
                            .await
                            .unwrap();
                        for r in 0..5 {
                            let _: i64 = store
                                .inline
                                .read(|c| {
                                    c.query_row(
                                        "SELECT seq FROM s WHERE k = ?",
                                        [(k + r * 31) % 10_000],
                                        |r| r.get(0),
                                    )
                                })
                                .unwrap();
                        }
                        tokio::task::yield_now().await;
                    }
                });
            }
            while let Some(r) = tasks.join_next().await {
                r.unwrap();
            }
            let (wall, cpu) = (t.elapsed().as_secs_f64(), process_cpu_seconds() - cpu0);
            let writes = 64 * per_task;
            let groups = store.writer.lock_inline().unwrap().next - groups_before;
            let total: i64 = store
                .inline
                .read(|c| c.query_row("SELECT sum(seq) FROM s", [], |r| r.get(0)))
                .unwrap();
            assert_eq!(total, writes, "writes lost");
            if grouped {
                assert!(
                    groups < u64::try_from(writes).unwrap() / 2,
                    "{writes} concurrent writes took {groups} commits"
                );
            }
            if measure > 0 {
                eprintln!(
                    "group commit {}: {writes} writes in {groups} commits, wall {wall:.2} s, process CPU {cpu:.2} s",
                    if grouped { "on " } else { "off" }
                );
            }
        }
    }

    /// This process's user and system CPU time, in seconds.
    fn process_cpu_seconds() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / 100.0
    }

    #[tokio::test]
    async fn a_lone_failed_write_leaves_no_transaction_open() {
        let (dir, store) = writer().await;
        let e = store
            .writer
            .inline(|c| {
                c.execute("INSERT INTO t VALUES (1, 'kept?')", [])?;
                c.execute("INSERT INTO t VALUES (1, 'dup')", [])
            })
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
        assert!(store.writer.lock_inline().unwrap().open.is_none());
        store
            .writer
            .inline(|c| c.execute("INSERT INTO t VALUES (2, 'next')", []))
            .await
            .unwrap();
        assert_eq!(committed(&dir), vec![2]);
    }

    #[tokio::test]
    async fn the_sqlx_writer_commits_an_open_group_first() {
        let (dir, store) = writer().await;
        // A group left open, as when its next writer was cancelled.
        {
            let mut w = store
                .writer
                .begin(std::time::Instant::now())
                .unwrap()
                .unwrap();
            let conn = w.conn.as_ref().unwrap();
            conn.execute("INSERT INTO t VALUES (7, 'open')", [])
                .unwrap();
            w.open.as_mut().unwrap().members += 1;
        }
        let mut conn = store.writer.conn().await.unwrap();
        sqlx::query("INSERT INTO t VALUES (8, 'sqlx')")
            .execute(&mut *conn)
            .await
            .unwrap();
        drop(conn);
        assert_eq!(committed(&dir), vec![7, 8]);
    }

    #[tokio::test]
    async fn a_member_commits_its_group_when_nobody_else_does() {
        let (dir, store) = writer().await;
        let number = {
            let mut w = store
                .writer
                .begin(std::time::Instant::now())
                .unwrap()
                .unwrap();
            w.conn
                .as_ref()
                .unwrap()
                .execute("INSERT INTO t VALUES (9, 'left open')", [])
                .unwrap();
            let g = w.open.as_mut().unwrap();
            g.members += 1;
            g.number
        };
        tokio::time::timeout(
            Duration::from_secs(5),
            store.writer.group_ended(number, std::time::Instant::now()),
        )
        .await
        .expect("the member committed its group")
        .unwrap();
        assert_eq!(committed(&dir), vec![9]);
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
