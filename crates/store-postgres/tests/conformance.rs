//! Issue 12, point 2: the store conformance suite, one test per case, on PostgreSQL: a
//! throwaway database per test on the server named in `PATCHDAY_TEST_POSTGRES` (skipped
//! without it, failed under `CI=true`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_trait::async_trait;
use patchday_lab::Requirement;
use patchday_store::Store;
use patchday_store_postgres::testing::ThrowawayDatabase;
use patchday_store_postgres::PostgresStore;

/// A throwaway database per case; a replica is a second pool on it. Fields drop in
/// order: the pool closes, then the database is dropped.
struct Fresh {
    store: PostgresStore,
    db: ThrowawayDatabase,
}

#[async_trait]
impl patchday_store::conformance::Harness for Fresh {
    fn store(&self) -> &dyn Store {
        &self.store
    }
    async fn replica(&self) -> Box<dyn Store> {
        Box::new(self.db.open().await.unwrap())
    }
}

async fn fresh() -> Option<Fresh> {
    if !patchday_lab::require(Requirement::Postgres) {
        return None;
    }
    let server = patchday_lab::postgres_url()?;
    let db = ThrowawayDatabase::create(&server).await.unwrap();
    let store = db.open().await.unwrap();
    Some(Fresh { store, db })
}

patchday_store::conformance_tests!(fresh);
