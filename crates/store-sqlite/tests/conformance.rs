//! Issue 12, point 2: the store conformance suite, one test per case, on SQLite.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_trait::async_trait;
use patchday_store::Store;
use patchday_store_sqlite::SqliteStore;

/// A fresh database file per case; a replica is a second pool on the same file.
struct Fresh {
    dir: tempfile::TempDir,
    store: SqliteStore,
}

#[async_trait]
impl patchday_store::conformance::Harness for Fresh {
    fn store(&self) -> &dyn Store {
        &self.store
    }
    async fn replica(&self) -> Box<dyn Store> {
        Box::new(
            SqliteStore::open(&self.dir.path().join("patchday.db"))
                .await
                .unwrap(),
        )
    }
}

async fn fresh() -> Option<Fresh> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("patchday.db"))
        .await
        .unwrap();
    Some(Fresh { dir, store })
}

patchday_store::conformance_tests!(fresh);
