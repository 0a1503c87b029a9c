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
