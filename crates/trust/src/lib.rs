//! patchday-trust
