//! The catalog's update documents, parsed and indexed once per catalog version
//! (issue 9, point 6): a check-in, a report or a target request asks this cache instead
//! of loading and parsing every update document from the database.
//!
//! The cache is keyed by the catalog's versions as the database records them, read with
//! one small query per use, so servers sharing one database (issue 12) each notice another
//! server's push.

use crate::error::ApiError;
use patchday_core::applicability::CatalogIndex;
use patchday_store::Store;
use std::sync::Arc;
use tokio::sync::RwLock;

/// What identifies one catalog's content: snapshot and targets versions, and the update
/// count (a push always raises the snapshot version).
type Key = (u64, u64, u64);

/// The current catalog's index, rebuilt when the database holds a newer catalog.
#[derive(Default)]
pub struct CatalogCache {
    current: RwLock<Option<(Key, Arc<CatalogIndex>)>>,
}

impl CatalogCache {
    /// The index of the catalog the database holds now.
    pub async fn index(&self, store: &dyn Store) -> Result<Arc<CatalogIndex>, ApiError> {
        Ok(self.versioned(store).await?.1)
    }

    /// The index of the catalog the database holds now, with a text naming that
    /// catalog's content (issue 11: part of a stored evaluation's basis).
    pub async fn versioned(
        &self,
        store: &dyn Store,
    ) -> Result<(String, Arc<CatalogIndex>), ApiError> {
        let (key, index) = self.keyed(store).await?;
        Ok((format!("{}.{}.{}", key.0, key.1, key.2), index))
    }

    async fn keyed(&self, store: &dyn Store) -> Result<(Key, Arc<CatalogIndex>), ApiError> {
        let status = store.catalog_status().await?;
        let key = (
            status.snapshot_version,
            status.targets_version,
            status.updates,
        );
        if let Some((k, index)) = self.current.read().await.as_ref() {
            if *k == key {
                return Ok((key, index.clone()));
            }
        }
        let mut slot = self.current.write().await;
        // Another request may have rebuilt it while this one waited.
        if let Some((k, index)) = slot.as_ref() {
            if *k == key {
                return Ok((key, index.clone()));
            }
        }
        let updates = store.catalog_updates().await?;
        let index = Arc::new(CatalogIndex::new(updates));
        tracing::debug!(updates = index.len(), "catalog index rebuilt");
        *slot = Some((key, index.clone()));
        Ok((key, index))
    }
}
