//! Installer backends. Each runs in phases: stage → apply → verify, and leaves a
//! state the next run can finish or undo when it dies at any point.

pub mod baseline;
pub mod bundle;
pub mod deb;

/// The outcome of installing one update's payloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Installed and verified.
    Installed,
    /// Installed; the host wants a reboot.
    PendingReboot,
    /// Failed; the installer's own message.
    Failed(String),
}

/// A backend's registry file (`var/lib/patchday/*.json`): empty when absent, an error that
/// says `what_to_do` when it does not parse.
pub(crate) fn read_registry<T: serde::de::DeserializeOwned + Default>(
    path: &std::path::Path,
    what_to_do: &str,
) -> anyhow::Result<T> {
    use anyhow::Context;
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .with_context(|| format!("{} is corrupt; {what_to_do}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e.into()),
    }
}
