//! One error type for the mirror; each variant says what happened and what to do.

use std::path::PathBuf;

/// Why a mirror run stopped.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The configuration file could not be read or parsed.
    #[error("mirror configuration {path}: {detail}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// A pinned keyring could not be read.
    #[error("keyring {path} of source {source_name}: {detail} (pin the archive's public key, e.g. /usr/share/keyrings/debian-archive-keyring.gpg)")]
    Keyring {
        /// Source name.
        source_name: String,
        /// The keyring file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// No key of the pinned keyring made the InRelease signature.
    #[error("{url}: the InRelease signature does not verify against the pinned keyring {keyring} (wrong archive key or tampered file): refusing it")]
    BadSignature {
        /// Where the InRelease came from.
        url: String,
        /// The keyring it was checked against.
        keyring: PathBuf,
    },
    /// The InRelease is older than one already seen: a replay or a rollback.
    #[error("{url}: InRelease dated {date} is older than {seen}, seen before (replayed or rolled-back archive): refusing it")]
    Replayed {
        /// Where it came from.
        url: String,
        /// Its Date.
        date: jiff::Timestamp,
        /// The Date seen before.
        seen: jiff::Timestamp,
    },
    /// The InRelease's Valid-Until has passed.
    #[error("{url}: InRelease expired at {valid_until} (it is now {now}; a stale mirror or a replay): refusing it")]
    Expired {
        /// Where it came from.
        url: String,
        /// Its Valid-Until.
        valid_until: jiff::Timestamp,
        /// The time of the check.
        now: jiff::Timestamp,
    },
    /// The InRelease is for another suite than the configuration names.
    #[error("{url}: InRelease is for suite {found:?}, not {expected:?} (a signed file of another suite substituted?)")]
    WrongSuite {
        /// Where it came from.
        url: String,
        /// Suite/Codename it names.
        found: String,
        /// The configured suite.
        expected: String,
    },
    /// The InRelease text is not a valid Release file.
    #[error("{url}: malformed InRelease: {detail}")]
    MalformedRelease {
        /// Where it came from.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// The InRelease lists no Packages index for a configured component/architecture.
    #[error("{url}: InRelease lists no Packages index for {component}/binary-{architecture}: check components and architectures in the configuration")]
    NoIndex {
        /// The InRelease.
        url: String,
        /// Component.
        component: String,
        /// Architecture.
        architecture: String,
    },
    /// An index does not match the hash its InRelease gives.
    #[error("{url}: index does not match the SHA256 in InRelease (expected {expected}, got {actual}): tampered or corrupted, refusing it")]
    TamperedIndex {
        /// The index URL.
        url: String,
        /// SHA256 (and size) InRelease gives.
        expected: String,
        /// SHA256 (and size) received.
        actual: String,
    },
    /// A .deb does not match its index entry.
    #[error("{url}: package does not match the index (expected {expected}, got {actual}): tampered or corrupted, deleted it and refusing it")]
    TamperedDeb {
        /// The package URL.
        url: String,
        /// SHA256 and size from the index.
        expected: String,
        /// SHA256 and size received.
        actual: String,
    },
    /// An index could not be decompressed or parsed.
    #[error("{url}: malformed index: {detail}")]
    MalformedIndex {
        /// The index URL.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// A fetch failed.
    #[error("fetching {url}: {detail} (check the source's uri and the network; a rerun resumes)")]
    Fetch {
        /// What was fetched.
        url: String,
        /// Why it failed.
        detail: String,
    },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A downloaded package could not be read.
    #[error("reading {path}: {detail}")]
    Package {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// An advisory feed (tracker JSON or KEV) could not be read.
    #[error("advisory feed: {0}")]
    Advisories(String),
    /// The caller's publisher refused or failed to sign an update.
    /// Issue 12, point 1: the run's progress could not be read or kept where the caller
    /// keeps it (the server's database).
    #[error("mirror progress: {0} (a rerun resumes from the last progress kept)")]
    Progress(String),
    #[error("signing update {id} into the catalog: {detail}")]
    Publish {
        /// Update id.
        id: String,
        /// Why.
        detail: String,
    },
}

impl MirrorError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        MirrorError::Io {
            path: path.into(),
            source,
        }
    }
}
