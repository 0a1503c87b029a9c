//! patchday-pkg
