//! patchday-cli
