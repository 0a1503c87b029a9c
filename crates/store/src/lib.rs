//! patchday-store
