//! patchday-store-sqlite
