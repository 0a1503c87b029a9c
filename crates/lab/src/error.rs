//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while making hosts, packages or fetching real updates.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A file-system operation failed.
    #[error("could not {action} {path}: {source}")]
    Io {
        /// What we tried to do, e.g. "create directory".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A helper program could not be started.
    #[error(
        "could not start `{program}`: {source} (install it: dpkg, util-linux and apt are needed)"
    )]
    Spawn {
        /// The program name.
        program: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A helper program ran and reported failure.
    #[error("{what} failed ({status}): {detail}")]
    CommandFailed {
        /// What was being done, e.g. "dpkg -i foo.deb in host web-1".
        what: String,
        /// The exit status as text.
        status: String,
        /// The tail of the program's output.
        detail: String,
    },
    /// A helper program did not finish in time and was killed.
    #[error("{what} did not finish within {seconds} s and was killed; check network access or raise the limit")]
    Timeout {
        /// What was being done.
        what: String,
        /// The limit that was exceeded.
        seconds: u64,
    },
    /// An overlay host was requested but this process is not root.
    #[error(
        "overlay hosts need root (running as uid {uid}); use HostKind::Sandbox or best_kind()"
    )]
    NeedsRoot {
        /// The effective uid of this process.
        uid: u32,
    },
    /// `create` found the host directory already there.
    #[error("lab host directory {dir} already exists; call LabHost::open to reuse it, destroy it, or run cleanup_stale")]
    HostExists {
        /// The directory.
        dir: PathBuf,
    },
    /// `open` or a removal found a directory that is not a lab host.
    #[error("{dir} is not a lab host ({reason}); refusing to use or remove it")]
    NotAHost {
        /// The directory.
        dir: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// Something is still mounted below a host directory in this namespace.
    #[error("{mount} is mounted inside lab host directory {dir}; unmount it (umount -R) before removing the host")]
    StillMounted {
        /// The host directory.
        dir: PathBuf,
        /// The mount point found.
        mount: String,
    },
    /// A host name is not usable as a host name and directory name.
    #[error("invalid lab host name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A path inside a host is not absolute or climbs with `..`.
    #[error("invalid path in host {path:?}: use an absolute path without `..`")]
    InvalidPath {
        /// The rejected path.
        path: PathBuf,
    },
    /// A file asked for does not exist inside the host.
    #[error("{path} does not exist in lab host {host}")]
    FileMissing {
        /// Host name.
        host: String,
        /// Path inside the host.
        path: PathBuf,
    },
    /// A package specification cannot be built.
    #[error("invalid package spec for {name:?}: {reason}")]
    InvalidSpec {
        /// Package name.
        name: String,
        /// Why.
        reason: String,
    },
    /// apt has no package lists, so real updates cannot be found.
    #[error("apt has no package lists in {dir}; run `apt-get update` once as root, or skip tests that need real Debian updates")]
    AptListsMissing {
        /// The lists directory apt uses.
        dir: PathBuf,
    },
    /// The Debian archive could not be reached.
    #[error("could not download {package} from the Debian archive: {detail}; check network access or skip tests that need real Debian updates")]
    RegistryUnreachable {
        /// Package and version asked for.
        package: String,
        /// apt's own words.
        detail: String,
    },
}

impl LabError {
    /// True when the error means "the machine cannot do this here" (no root, no apt lists, no network), so a test may skip.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            LabError::NeedsRoot { .. }
                | LabError::AptListsMissing { .. }
                | LabError::RegistryUnreachable { .. }
                | LabError::Timeout { .. }
        )
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        LabError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
