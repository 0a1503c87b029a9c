//! `InRelease`: the archive's signed table of contents. Verified against a pinned
//! keyring before a single field is read; then its Date, Valid-Until and index hashes.

use std::collections::BTreeMap;
use std::path::Path;

use jiff::Timestamp;
use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey};
use pgp::types::KeyDetails;

use crate::MirrorError;

/// The keys an archive may sign with, read from a pinned keyring file.
#[derive(Clone, Debug)]
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
}

impl Keyring {
    /// Reads a binary (`.gpg`) or ASCII-armored (`.asc`) keyring with one or more keys.
    pub fn load(path: &Path, source_name: &str) -> Result<Self, MirrorError> {
        let err = |detail: String| MirrorError::Keyring {
            source_name: source_name.to_owned(),
            path: path.to_path_buf(),
            detail,
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        Self::from_bytes(&bytes).map_err(err)
    }

    /// Parses keyring bytes (binary or armored).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let armored = bytes
            .iter()
            .skip_while(|b| b.is_ascii_whitespace())
            .take(5)
            .eq(b"-----".iter());
        let parsed: Vec<_> = if armored {
            SignedPublicKey::from_armor_many(bytes)
                .map_err(|e| e.to_string())?
                .0
                .collect()
        } else {
            SignedPublicKey::from_bytes_many(bytes)
                .map_err(|e| e.to_string())?
                .collect()
        };
        let mut keys = Vec::new();
        for k in parsed {
            let mut k = k.map_err(|e| format!("not an OpenPGP public key: {e}"))?;
            // A subkey whose binding signature by the primary does not verify must not
            // sign for it. (User-id certifications are not checked: archive keyrings
            // carry third-party certifications whose issuers they do not hold.)
            let primary = k.primary_key.clone();
            k.public_subkeys
                .retain(|s| s.verify_bindings(&primary).is_ok());
            keys.push(k);
        }
        if keys.is_empty() {
            return Err("holds no public key".into());
        }
        Ok(Keyring { keys })
    }

    /// Fingerprints of the primary keys, upper-case hex.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| hex::encode_upper(k.fingerprint().as_bytes()))
            .collect()
    }

    /// The fingerprint of the primary key one of whose (sub)keys made a signature of `msg`.
    fn verifies(&self, msg: &CleartextSignedMessage) -> Option<String> {
        for k in &self.keys {
            let fp = hex::encode_upper(k.fingerprint().as_bytes());
            if msg.verify(&k.primary_key).is_ok() {
                return Some(fp);
            }
            if k.public_subkeys.iter().any(|s| msg.verify(&s.key).is_ok()) {
                return Some(fp);
            }
        }
        None
    }
}

/// One file listed in the SHA256 section of a Release file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Lower-case hex SHA256.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// A verified InRelease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// `Suite:` field.
    pub suite: String,
    /// `Codename:` field.
    pub codename: String,
    /// `Date:`.
    pub date: Timestamp,
    /// `Valid-Until:`, when present.
    pub valid_until: Option<Timestamp>,
    /// SHA256 section: path under `dists/<suite>/` → hash and size.
    pub sha256: BTreeMap<String, IndexEntry>,
    /// Fingerprint of the pinned key that signed it.
    pub signed_by: String,
}

/// Parses an RFC 2822 date as apt writes it (`Sat, 30 Nov 2024 10:05:43 UTC`).
pub fn parse_date(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    let s = s
        .strip_suffix(" UTC")
        .map(|x| format!("{x} +0000"))
        .unwrap_or_else(|| s.to_owned());
    jiff::fmt::rfc2822::parse(&s).ok().map(|z| z.timestamp())
}

/// Formats a time as apt writes Release dates.
pub fn format_date(t: Timestamp) -> String {
    t.strftime("%a, %d %b %Y %H:%M:%S UTC").to_string()
}

/// Verifies the signature of `inrelease` against `keyring`, then parses the signed text
/// (and only the signed text: anything outside the signature is ignored).
pub fn verify_inrelease(
    inrelease: &[u8],
    keyring: &Keyring,
    keyring_path: &Path,
    url: &str,
) -> Result<Release, MirrorError> {
    let bad = || MirrorError::BadSignature {
        url: url.to_owned(),
        keyring: keyring_path.to_path_buf(),
    };
    let text = std::str::from_utf8(inrelease).map_err(|_| bad())?;
    let (msg, _) = CleartextSignedMessage::from_string(text).map_err(|_| bad())?;
    let signed_by = keyring.verifies(&msg).ok_or_else(bad)?;
    let body = msg.signed_text().replace("\r\n", "\n");
    parse_release(&body, signed_by, url)
}

/// Parses Release text (already verified).
pub fn parse_release(body: &str, signed_by: String, url: &str) -> Result<Release, MirrorError> {
    let malformed = |detail: String| MirrorError::MalformedRelease {
        url: url.to_owned(),
        detail,
    };
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut sha256 = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in body.lines() {
        if line.starts_with(' ') || line.starts_with('\t') {
            if current.as_deref() == Some("SHA256") {
                let parts: Vec<&str> = line.split_whitespace().collect();
                let [hash, size, path] = parts[..] else {
                    return Err(malformed(format!("SHA256 line {line:?}")));
                };
                let size = size
                    .parse::<u64>()
                    .map_err(|_| malformed(format!("SHA256 size in {line:?}")))?;
                if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(malformed(format!("SHA256 hash in {line:?}")));
                }
                sha256.insert(
                    path.to_owned(),
                    IndexEntry {
                        sha256: hash.to_ascii_lowercase(),
                        size,
                    },
                );
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(malformed(format!("line {line:?}")));
        };
        current = Some(k.to_owned());
        fields.insert(k.to_owned(), v.trim().to_owned());
    }
    let date_of = |k: &str| -> Result<Option<Timestamp>, MirrorError> {
        match fields.get(k) {
            None => Ok(None),
            Some(v) => parse_date(v)
                .map(Some)
                .ok_or_else(|| malformed(format!("{k}: {v:?} is not an RFC 2822 date"))),
        }
    };
    let date = date_of("Date")?.ok_or_else(|| malformed("no Date field".into()))?;
    let valid_until = date_of("Valid-Until")?;
    if sha256.is_empty() {
        return Err(malformed("no SHA256 section".into()));
    }
    Ok(Release {
        suite: fields.get("Suite").cloned().unwrap_or_default(),
        codename: fields.get("Codename").cloned().unwrap_or_default(),
        date,
        valid_until,
        sha256,
        signed_by,
    })
}

impl Release {
    /// Checks suite, expiry and that the Date does not go back behind `seen`.
    pub fn check_fresh(
        &self,
        suite: &str,
        seen: Option<Timestamp>,
        now: Timestamp,
        url: &str,
    ) -> Result<(), MirrorError> {
        if self.suite != suite && self.codename != suite {
            return Err(MirrorError::WrongSuite {
                url: url.to_owned(),
                found: format!("{}/{}", self.suite, self.codename),
                expected: suite.to_owned(),
            });
        }
        if let Some(v) = self.valid_until {
            if v < now {
                return Err(MirrorError::Expired {
                    url: url.to_owned(),
                    valid_until: v,
                    now,
                });
            }
        }
        if let Some(seen) = seen {
            if self.date < seen {
                return Err(MirrorError::Replayed {
                    url: url.to_owned(),
                    date: self.date,
                    seen,
                });
            }
        }
        Ok(())
    }

    /// The best Packages index InRelease lists for a component and architecture:
    /// `.xz`, then `.gz`, then plain.
    pub fn packages_index(&self, component: &str, arch: &str) -> Option<(String, &IndexEntry)> {
        ["xz", "gz", ""].iter().find_map(|ext| {
            let p = if ext.is_empty() {
                format!("{component}/binary-{arch}/Packages")
            } else {
                format!("{component}/binary-{arch}/Packages.{ext}")
            };
            self.sha256.get(&p).map(|e| (p, e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_dates_parse() {
        let t = parse_date("Sat, 30 Nov 2024 10:05:43 UTC");
        assert_eq!(t.map(|t| t.as_second()), Some(1_732_961_143));
        let back = parse_date(&format_date(Timestamp::from_second(1_732_961_143).unwrap()));
        assert_eq!(back.map(|t| t.as_second()), Some(1_732_961_143));
    }

    #[test]
    fn release_without_sha256_is_malformed() {
        let e = parse_release(
            "Suite: x\nDate: Sat, 30 Nov 2024 10:05:43 UTC\n",
            "F".into(),
            "u",
        );
        assert!(matches!(e, Err(MirrorError::MalformedRelease { .. })));
    }
}
