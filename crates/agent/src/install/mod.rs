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
