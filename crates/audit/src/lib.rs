//! patchday-audit
