//! patchday-content
