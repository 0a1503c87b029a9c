//! One error type for the crate; each variant names the check that failed.

use std::path::PathBuf;

use jiff::Timestamp;

/// Why a catalog, a payload or a signing step was refused, worded for an admin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// A metadata version went down compared with what the datastore already trusts.
    #[error("catalog rejected: {role} version {offered} is older than trusted version {trusted} (rollback?)")]
    Rollback {
        /// The TUF role (root, timestamp, snapshot, targets).
        role: String,
        /// The version the catalog offered.
        offered: u64,
        /// The version already trusted.
        trusted: u64,
    },

    /// A metadata file is past its expiry (checked against the system clock by tough).
    #[error("catalog rejected: {role} expired{} (freeze attack, or the publisher must re-sign)", at_time(.expires))]
    Expired {
        /// The TUF role whose metadata expired.
        role: String,
        /// Its claimed expiry, when it could be read.
        expires: Option<Timestamp>,
    },

    /// Director metadata (a signed assignment) failed a check.
    #[error("assignment rejected: {check}: {detail}")]
    AssignmentRejected {
        /// Which check failed (signature, rollback, expiry, host, delegations, format, size).
        check: &'static str,
        /// What was wrong.
        detail: String,
    },

    /// A director key certificate failed a check; the pinned director key stays.
    #[error("director key certificate rejected: {check}: {detail}")]
    CertificateRejected {
        /// Which check failed (signature, format, rollback, expiry, size).
        check: &'static str,
        /// What was wrong.
        detail: String,
    },

    /// Metadata is not signed by a threshold of the keys the trusted root names.
    #[error("catalog rejected: {role} metadata is not signed by the keys the trusted root names ({detail}); it was tampered with, or signed with other keys")]
    BadSignature {
        /// The TUF role whose signatures failed.
        role: String,
        /// What the signature check said.
        detail: String,
    },

    /// The catalog carries a root of the pinned version that is not the pinned root.
    #[error("catalog rejected: it was made under a different root than the pinned one (its {version}.root.json differs from the pinned root); pin this catalog's root.json, or re-sign the catalog with the pinned keys")]
    ForeignRoot {
        /// The root version that differs.
        version: u64,
    },

    /// A metadata file does not match the version, length or hash that its parent lists.
    #[error("catalog rejected: {role} metadata does not match what {listed_by} lists ({detail}) (mix-and-match attack, or an incomplete upload)")]
    MetadataMismatch {
        /// The role whose file did not match.
        role: String,
        /// The role that lists it (snapshot lists targets, timestamp lists snapshot).
        listed_by: String,
        /// Which property differed.
        detail: String,
    },

    /// A metadata file is larger than the crate's size cap.
    #[error("catalog rejected: {file} is larger than the {max} byte limit (endless-data attack?)")]
    MetadataTooLarge {
        /// The file (URL) that was too large.
        file: String,
        /// The cap in bytes.
        max: u64,
    },

    /// A metadata file the workflow needs is absent.
    #[error("catalog rejected: {file} is missing (incomplete upload, or the wrong directory)")]
    MetadataMissing {
        /// The file (URL) that could not be found.
        file: String,
    },

    /// A metadata file does not parse or lacks a required entry.
    #[error("catalog rejected: {role} metadata is malformed: {detail}")]
    MalformedMetadata {
        /// The role (or file) that is malformed.
        role: String,
        /// What is wrong with it.
        detail: String,
    },

    /// The pinned root file itself is unreadable or not self-signed.
    #[error("pinned root {path} is unusable: {detail}; copy the catalog's 1.root.json (or a later root) there again")]
    BadPinnedRoot {
        /// Where the pinned root was read from.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },

    /// The chain of root rotations is longer than the cap.
    #[error(
        "catalog rejected: more than {max} root rotations in one update (endless-data attack?)"
    )]
    TooManyRootUpdates {
        /// The cap.
        max: u64,
    },

    /// The system clock is earlier than a time this datastore has already seen.
    #[error("catalog rejected: the system clock ({now}) is behind the latest time this datastore has seen ({latest}); fix the clock (NTP) before verifying")]
    ClockSteppedBackward {
        /// The system time now.
        now: Timestamp,
        /// The latest time recorded in the datastore.
        latest: Timestamp,
    },

    /// A target file's length differs from the signed length.
    #[error("payload {name}: length {actual} bytes, the catalog says {expected} (truncated, tampered with, or still downloading)")]
    LengthMismatch {
        /// The target name.
        name: String,
        /// The signed length.
        expected: u64,
        /// The length found.
        actual: u64,
    },

    /// A target file's sha256 differs from the signed hash.
    #[error("payload {name}: sha256 mismatch (tampered or corrupted): the catalog says {expected}, the file has {actual}")]
    HashMismatch {
        /// The target name.
        name: String,
        /// The signed sha256 (hex).
        expected: String,
        /// The sha256 found (hex).
        actual: String,
    },

    /// A target file's digest (other than sha256) differs from the signed one.
    #[error("payload {name}: {algorithm} mismatch (tampered or corrupted): the catalog says {expected}, the file has {actual}")]
    DigestMismatch {
        /// The target name.
        name: String,
        /// The hash algorithm, e.g. sha512.
        algorithm: String,
        /// The signed digest (hex).
        expected: String,
        /// The digest found (hex).
        actual: String,
    },

    /// A target lists no hash this crate can compute, so its content cannot be checked.
    #[error("payload {name}: cannot be checked, its hash algorithm {algorithm} is not supported (sha256 and sha512 are); the publisher must list one of those")]
    UnsupportedHash {
        /// The target name.
        name: String,
        /// The algorithm that cannot be computed.
        algorithm: String,
    },

    /// A file could not be fetched for a reason other than its absence.
    #[error("cannot fetch {file}: {detail} (network or server problem; nothing was trusted from it, try again later)")]
    FetchFailed {
        /// The URL asked for.
        file: String,
        /// What the transport said.
        detail: String,
    },

    /// A target listed in the catalog has no file in the targets directory.
    #[error("payload {name}: {} is missing (incomplete upload?)", .path.display())]
    TargetFileMissing {
        /// The target name.
        name: String,
        /// Where the file was expected.
        path: PathBuf,
    },

    /// A target name was asked for that the verified catalog does not list.
    #[error("target {name} is not in the verified catalog")]
    UnknownTarget {
        /// The target name.
        name: String,
    },

    /// A target name is not a flat, safe file name.
    #[error("target name {name:?} rejected: {reason}; use a flat file name such as foo_1.2.deb or update-ID.json")]
    UnsafeTargetName {
        /// The offending name.
        name: String,
        /// Which rule it broke.
        reason: &'static str,
    },

    // Issue 9, points 2 and 3: delegated roles (mirror, tenant-<slug>).
    /// A delegated role listed (or was asked to sign) a target outside the paths its delegator gave it.
    #[error("target {name} is outside the paths delegated to role {role} ({paths}): a delegated role may sign only under its own paths (stolen or misused {role} key?)")]
    OutsideDelegation {
        /// The delegated role.
        role: String,
        /// The target name.
        name: String,
        /// The paths it was delegated, comma-separated.
        paths: String,
    },

    /// A delegated role was named that the catalog's targets role does not delegate to.
    #[error("the catalog delegates to no role {role}: create it first with `patchday catalog delegate --role {role} ...`")]
    UnknownRole {
        /// The role asked for.
        role: String,
    },

    /// A delegated role name or path pattern that Patchday does not accept.
    #[error("delegation {role:?} rejected: {reason}")]
    BadDelegation {
        /// The role name.
        role: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A target's custom metadata is not a JSON object.
    #[error("target {name}: custom metadata must be a JSON object, e.g. {{\"type\":\"payload\"}}")]
    CustomNotObject {
        /// The target name.
        name: String,
    },

    /// A threshold that no key set can meet, or that any single key would meet alone by mistake.
    #[error("{role} threshold {threshold} is impossible with {keys} key(s): it must be between 1 and the number of keys")]
    BadThreshold {
        /// The role.
        role: String,
        /// The threshold asked for.
        threshold: u64,
        /// How many keys there are.
        keys: usize,
    },

    /// A new root would carry fewer valid signatures than a threshold requires.
    #[error("root version {version} has {signatures} valid signature(s) from the {which} root keys, below its threshold of {threshold}; bring more root keys")]
    BelowThreshold {
        /// The root version being signed.
        version: u64,
        /// Which keys: "old" (the trusted root) or "new" (the root itself).
        which: &'static str,
        /// Valid signatures found.
        signatures: usize,
        /// Signatures needed.
        threshold: u64,
    },

    /// A key file already exists where a new key would be written.
    #[error("refusing to overwrite existing key {}; move it away or choose another directory", .path.display())]
    KeyExists {
        /// The existing key file.
        path: PathBuf,
    },

    /// A key file cannot be read or parsed.
    #[error("key {} is unusable: {detail}", .path.display())]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },

    /// The given key files do not match the keys the catalog's root names for a role.
    #[error("cannot sign {role}: {detail}; are these the key files of this catalog?")]
    Signing {
        /// The role being signed.
        role: String,
        /// What tough said.
        detail: String,
    },

    /// There is no catalog in the given directory.
    #[error("no catalog at {}: run catalog init first", .path.display())]
    NoCatalog {
        /// The directory looked at.
        path: PathBuf,
    },

    /// A catalog already exists where init would write one.
    #[error("a catalog already exists at {}; refusing to overwrite it", .path.display())]
    CatalogExists {
        /// The existing catalog's metadata directory.
        path: PathBuf,
    },

    /// A signing expiry lies outside jiff's range.
    #[error("expiry out of range: {detail}")]
    ExpiryOutOfRange {
        /// What overflowed.
        detail: String,
    },

    /// A filesystem operation failed.
    // The cause is in the message and deliberately not a `source`: printed with its
    // chain (`{:#}`), it would otherwise say the same thing twice.
    #[error("cannot {action} {}: {cause}", .path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        cause: std::io::Error,
    },
}

fn at_time(t: &Option<Timestamp>) -> String {
    match t {
        Some(t) => format!(" at {t}"),
        None => String::new(),
    }
}

impl TrustError {
    /// Shorthand for an [`TrustError::Io`] error.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |cause| TrustError::Io {
            action,
            path,
            cause,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_happened_and_what_to_do() {
        let e = TrustError::Rollback {
            role: "snapshot".into(),
            offered: 7,
            trusted: 9,
        };
        assert_eq!(
            e.to_string(),
            "catalog rejected: snapshot version 7 is older than trusted version 9 (rollback?)"
        );
        let e = TrustError::Expired {
            role: "timestamp".into(),
            expires: Some("2026-11-01T00:00:00Z".parse().unwrap()),
        };
        assert_eq!(
            e.to_string(),
            "catalog rejected: timestamp expired at 2026-11-01T00:00:00Z (freeze attack, or the publisher must re-sign)"
        );
        let e = TrustError::HashMismatch {
            name: "libfoo_1.2.deb".into(),
            expected: "aa".into(),
            actual: "bb".into(),
        };
        assert!(e
            .to_string()
            .starts_with("payload libfoo_1.2.deb: sha256 mismatch (tampered or corrupted)"));
    }
}
