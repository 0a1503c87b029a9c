//! patchday-agent
