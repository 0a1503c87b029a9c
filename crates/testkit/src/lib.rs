//! patchday-testkit
