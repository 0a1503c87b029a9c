//! patchday-server
