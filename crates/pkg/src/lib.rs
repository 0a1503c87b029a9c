//! Package metadata for Patchday: Debian and RPM version ordering, reading `.deb`
//! files, Debian changelogs and the CVEs they name, the dpkg status database and
//! `os-release`.
//!
//! Everything here is pure parsing of bytes the caller hands over (or a file path it
//! names). The crate does no network I/O, talks to no server and installs nothing.

pub mod changelog;
mod control;
pub mod deb;
pub mod depends;
pub mod osrelease;
pub mod status;
pub mod version;

/// Everything that can go wrong while reading package metadata.
#[derive(Debug, thiserror::Error)]
pub enum PkgError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}; check that the file exists and is readable")]
    Io {
        /// The file being read.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file does not start with the ar archive magic.
    #[error(
        "not a Debian package: ar magic missing in {path}; was it truncated by a failed download?"
    )]
    NotDebPackage {
        /// The file being read.
        path: String,
    },
    /// The archive ends before a header or member it announces.
    #[error("truncated Debian package {path}: {what}; download it again")]
    Truncated {
        /// The file being read.
        path: String,
        /// What is cut short.
        what: String,
    },
    /// An ar member header is not well formed.
    #[error("corrupt Debian package {path}: {detail} at byte {offset}; download it again")]
    BadArchive {
        /// The file being read.
        path: String,
        /// Byte offset of the bad header.
        offset: u64,
        /// What is wrong with it.
        detail: String,
    },
    /// `debian-binary` does not announce format 2.0.
    #[error("unsupported Debian package format in {path}: debian-binary says {found:?}, expected \"2.0\"; rebuild it with dpkg-deb")]
    UnsupportedFormat {
        /// The file being read.
        path: String,
        /// The first line of `debian-binary`.
        found: String,
    },
    /// A required member (`debian-binary`, `control.tar`, `data.tar`) is missing or out of order.
    #[error("{path} is not a complete Debian binary package: {detail}; rebuild it with dpkg-deb")]
    MissingMember {
        /// The file being read.
        path: String,
        /// Which member is missing or misplaced.
        detail: String,
    },
    /// A member is compressed with a method this crate does not read.
    #[error("{path}: member {member} uses an unsupported compression; expected gz, xz, zst, bz2, lzma or none")]
    UnsupportedCompression {
        /// The file being read.
        path: String,
        /// The member's name.
        member: String,
    },
    /// A member's content could not be decompressed or unpacked.
    #[error("{path}: cannot unpack {member}: {detail}; the package is corrupt, download it again")]
    Corrupt {
        /// The file being read.
        path: String,
        /// The member or file inside it.
        member: String,
        /// The decoder's own message.
        detail: String,
    },
    /// Decompressed content exceeds a safety limit.
    #[error("{path}: {what} is larger than {limit} bytes after decompression; refusing it as a possible decompression bomb")]
    TooLarge {
        /// The file being read.
        path: String,
        /// What grew too large.
        what: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// The control file is absent or its fields are unusable.
    #[error(
        "{path}: bad control file: {detail}; the package is malformed, rebuild it with dpkg-deb"
    )]
    BadControl {
        /// The file being read.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// A version string that dpkg itself would reject.
    #[error("invalid Debian version {version:?}: {reason}; use [epoch:]upstream[-revision] as in Debian policy 5.6.12")]
    InvalidVersion {
        /// The rejected string.
        version: String,
        /// dpkg's reason.
        reason: &'static str,
    },
}
