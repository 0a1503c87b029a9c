//! Issue 9, point 2: re-checking a mirrored update against the upstream evidence its
//! signed document records (`patchday catalog verify-upstream`).
//!
//! What is checked, and why it means something: the InRelease the mirror used (fetched
//! again, or the copy the mirror kept when the archive has moved on; either way its
//! sha256 must be the recorded one) must verify with the keyring the configuration pins,
//! signed by the recorded archive key; it must list the recorded index with the recorded
//! hash; and every payload the catalog signs for the update must be listed in that index
//! (or the index InRelease lists for the payload's architecture) with the same sha256 and
//! size. A mirror key that signed anything the archive did not publish fails here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use url::Url;

use crate::fetch::Fetch;
use crate::index;
use crate::release::{self, Keyring, Release};
use crate::MirrorError;

/// A payload as the catalog signs it for an update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedPayload {
    /// Target name in the catalog.
    pub target: String,
    /// Binary package name.
    pub package: String,
    /// Its version.
    pub version: String,
    /// Its architecture.
    pub architecture: String,
    /// sha256 the catalog signs.
    pub sha256: String,
    /// Length the catalog signs.
    pub length: u64,
}

/// One way an update differs from its upstream evidence.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Discrepancy {
    /// Neither the archive nor the mirror's kept copies have the recorded InRelease.
    #[error("the InRelease it records ({url}, sha256 {sha256}) is no longer served ({live}) and the mirror kept no copy in {kept}: cannot re-check it")]
    InReleaseUnavailable {
        /// Recorded URL.
        url: String,
        /// Recorded sha256.
        sha256: String,
        /// What the archive served instead.
        live: String,
        /// Where kept copies were looked for.
        kept: String,
    },
    /// The recorded InRelease does not verify with the pinned keyring.
    #[error("its InRelease does not verify with the pinned keyring: {0}")]
    Signature(String),
    /// Signed by another archive key than the document says.
    #[error("its InRelease is signed by {actual}, but the document records {recorded}")]
    ArchiveKey {
        /// Fingerprint in the document.
        recorded: String,
        /// Fingerprint that verified.
        actual: String,
    },
    /// InRelease does not list the recorded index, or with another hash.
    #[error("InRelease lists {path} {listed}, but the document records sha256 {recorded}")]
    IndexHash {
        /// Index path.
        path: String,
        /// What the document says.
        recorded: String,
        /// What InRelease lists ("not at all" when absent).
        listed: String,
    },
    /// The index could not be had or read.
    #[error("index {path}: {detail}")]
    IndexUnavailable {
        /// Index path.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// The archive's index does not list the payload at all.
    #[error("payload {target} ({package} {version} {architecture}) is not in the archive's index")]
    PayloadNotListed {
        /// Target name.
        target: String,
        /// Package.
        package: String,
        /// Version.
        version: String,
        /// Architecture.
        architecture: String,
    },
    /// The catalog signs other bytes than the archive published.
    #[error("payload {target}: the catalog signs sha256 {signed} ({signed_length} bytes), the archive's index lists {listed} ({listed_length} bytes)")]
    PayloadHash {
        /// Target name.
        target: String,
        /// sha256 the catalog signs.
        signed: String,
        /// Its length.
        signed_length: u64,
        /// sha256 the index lists.
        listed: String,
        /// Size the index lists.
        listed_length: u64,
    },
}

/// Where verified InRelease and index files are kept, by sha256 (`WORK/evidence`).
pub fn evidence_dir(work_dir: &Path) -> PathBuf {
    work_dir.join("evidence")
}

/// Keeps a verified upstream file under its sha256 (once; later runs find it).
pub fn keep(work_dir: &Path, sha256: &str, bytes: &[u8]) -> Result<(), MirrorError> {
    let dir = evidence_dir(work_dir);
    let path = dir.join(sha256);
    if path.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(&dir).map_err(|e| MirrorError::io(&dir, e))?;
    let tmp = dir.join(format!("{sha256}.tmp"));
    std::fs::write(&tmp, bytes).map_err(|e| MirrorError::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| MirrorError::io(&path, e))
}

/// The bytes whose sha256 is `sha256`: fetched from `url` when it still serves them, else
/// the kept copy. `Err` says what was found instead.
async fn recorded_bytes(
    fetch: &dyn Fetch,
    url: &Url,
    sha256: &str,
    work_dir: &Path,
) -> Result<Vec<u8>, String> {
    let live = match fetch.get(url, 0).await {
        Ok(got) if index::sha256_hex(&got.bytes) == sha256 => return Ok(got.bytes),
        Ok(got) => format!("it serves sha256 {} now", index::sha256_hex(&got.bytes)),
        Err(e) => e.to_string(),
    };
    match std::fs::read(evidence_dir(work_dir).join(sha256)) {
        Ok(b) if index::sha256_hex(&b) == sha256 => Ok(b),
        _ => Err(live),
    }
}

/// Re-checks one update's payloads against its recorded upstream evidence; empty when
/// everything matches. `keyring` is the one the mirror configuration pins for the source.
pub async fn verify(
    evidence: &patchday_types::UpstreamEvidence,
    payloads: &[SignedPayload],
    keyring: (&Keyring, &Path),
    fetch: &dyn Fetch,
    work_dir: &Path,
) -> Vec<Discrepancy> {
    let url = match Url::parse(&evidence.in_release_url) {
        Ok(u) => u,
        Err(e) => {
            return vec![Discrepancy::Signature(format!(
                "the recorded InRelease URL {:?} is not a URL ({e})",
                evidence.in_release_url
            ))]
        }
    };
    let raw = match recorded_bytes(fetch, &url, &evidence.in_release_sha256, work_dir).await {
        Ok(b) => b,
        Err(live) => {
            return vec![Discrepancy::InReleaseUnavailable {
                url: url.to_string(),
                sha256: evidence.in_release_sha256.clone(),
                live,
                kept: evidence_dir(work_dir).display().to_string(),
            }]
        }
    };
    let rel = match release::verify_inrelease(&raw, keyring.0, keyring.1, url.as_str()) {
        Ok(r) => r,
        Err(e) => return vec![Discrepancy::Signature(e.to_string())],
    };
    let mut out = Vec::new();
    if rel.signed_by != evidence.archive_key_fingerprint {
        out.push(Discrepancy::ArchiveKey {
            recorded: evidence.archive_key_fingerprint.clone(),
            actual: rel.signed_by.clone(),
        });
    }
    let listed = rel
        .sha256
        .get(&evidence.index_path)
        .map(|e| e.sha256.clone());
    if listed.as_deref() != Some(evidence.index_sha256.as_str()) {
        out.push(Discrepancy::IndexHash {
            path: evidence.index_path.clone(),
            recorded: evidence.index_sha256.clone(),
            listed: listed.map_or("not at all".into(), |s| format!("with sha256 {s}")),
        });
        return out;
    }
    // The recorded index first, then those InRelease lists for other architectures.
    let mut indexes: BTreeMap<String, IndexListing> = BTreeMap::new();
    for p in payloads {
        let key = (p.package.clone(), p.version.clone(), p.architecture.clone());
        let mut found = None;
        for path in candidate_indexes(&rel, &evidence.index_path, &p.architecture) {
            if !indexes.contains_key(&path) {
                match read_index(&rel, &url, &path, fetch, work_dir).await {
                    Ok(map) => {
                        indexes.insert(path.clone(), map);
                    }
                    Err(detail) => {
                        out.push(Discrepancy::IndexUnavailable {
                            path: path.clone(),
                            detail,
                        });
                        indexes.insert(path.clone(), BTreeMap::new());
                    }
                }
            }
            if let Some(hit) = indexes.get(&path).and_then(|m| m.get(&key)) {
                found = Some(hit.clone());
                break;
            }
        }
        match found {
            None => out.push(Discrepancy::PayloadNotListed {
                target: p.target.clone(),
                package: p.package.clone(),
                version: p.version.clone(),
                architecture: p.architecture.clone(),
            }),
            Some((sha, size)) if sha != p.sha256 || size != p.length => {
                out.push(Discrepancy::PayloadHash {
                    target: p.target.clone(),
                    signed: p.sha256.clone(),
                    signed_length: p.length,
                    listed: sha,
                    listed_length: size,
                })
            }
            Some(_) => {}
        }
    }
    out
}

/// The recorded index, then the index InRelease lists for `arch` in the same component.
fn candidate_indexes(rel: &Release, recorded: &str, arch: &str) -> Vec<String> {
    let mut out = vec![recorded.to_owned()];
    let component = recorded.split("/binary-").next().unwrap_or(recorded);
    if let Some((p, _)) = rel.packages_index(component, arch) {
        if p != recorded {
            out.push(p);
        }
    }
    out
}

/// What an index lists: (package, version, architecture) → (sha256, size).
type IndexListing = BTreeMap<(String, String, String), (String, u64)>;

/// An index InRelease lists, checked against its hash.
async fn read_index(
    rel: &Release,
    inrelease: &Url,
    path: &str,
    fetch: &dyn Fetch,
    work_dir: &Path,
) -> Result<IndexListing, String> {
    let entry = rel
        .sha256
        .get(path)
        .ok_or_else(|| "InRelease does not list it".to_owned())?;
    let url = inrelease
        .join(path)
        .map_err(|e| format!("cannot form its URL: {e}"))?;
    let bytes = recorded_bytes(fetch, &url, &entry.sha256, work_dir)
        .await
        .map_err(|live| {
            format!(
                "neither {url} ({live}) nor a kept copy has sha256 {}",
                entry.sha256
            )
        })?;
    let text = index::decompress(path, &bytes, url.as_str()).map_err(|e| e.to_string())?;
    let packages = index::parse_packages(&text, url.as_str()).map_err(|e| e.to_string())?;
    Ok(packages
        .into_iter()
        .map(|b| ((b.package, b.version, b.architecture), (b.sha256, b.size)))
        .collect())
}
