//! `Packages` indexes: decompression and the fields the mirror needs.

use std::io::Read;

use sha2::{Digest, Sha256};

use crate::MirrorError;

/// Largest decompressed index accepted (Debian main amd64 is ~100 MB; security ~2 MB).
const MAX_INDEX_BYTES: u64 = 512 * 1024 * 1024;

/// One binary package an index lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinaryPackage {
    /// `Package:`.
    pub package: String,
    /// `Version:`.
    pub version: String,
    /// `Architecture:`.
    pub architecture: String,
    /// Source name (`Source:` without its version, or the package name).
    pub source: String,
    /// Source version (from `Source: name (version)`, or the binary version).
    pub source_version: String,
    /// `Filename:`, relative to the archive root.
    pub filename: String,
    /// `Size:`.
    pub size: u64,
    /// `SHA256:`, lower-case hex.
    pub sha256: String,
    /// `Depends:`, verbatim (empty when absent).
    pub depends: String,
    /// `Pre-Depends:`, verbatim (empty when absent): issue 9, point 4 (closure).
    pub pre_depends: String,
    /// `Provides:`, verbatim (empty when absent): issue 9, point 4 (closure).
    pub provides: String,
}

/// Lower-case hex SHA256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Decompresses an index by its file name's extension (`.xz`, `.gz`, none).
pub fn decompress(path: &str, bytes: &[u8], url: &str) -> Result<String, MirrorError> {
    let malformed = |detail: String| MirrorError::MalformedIndex {
        url: url.to_owned(),
        detail,
    };
    let mut out = Vec::new();
    let read = if path.ends_with(".xz") {
        xz2::read::XzDecoder::new(bytes)
            .take(MAX_INDEX_BYTES)
            .read_to_end(&mut out)
    } else if path.ends_with(".gz") {
        flate2::read::GzDecoder::new(bytes)
            .take(MAX_INDEX_BYTES)
            .read_to_end(&mut out)
    } else {
        out.extend_from_slice(bytes);
        Ok(out.len())
    };
    read.map_err(|e| malformed(format!("cannot decompress: {e}")))?;
    String::from_utf8(out).map_err(|_| malformed("not UTF-8".into()))
}

/// Parses a Packages index. Paragraphs without the fields a download needs are an error:
/// the index is signed through InRelease, so a broken one is a broken archive.
pub fn parse_packages(text: &str, url: &str) -> Result<Vec<BinaryPackage>, MirrorError> {
    let mut out = Vec::new();
    for para in text.split("\n\n") {
        if para.trim().is_empty() {
            continue;
        }
        let mut get = std::collections::HashMap::new();
        for line in para.lines() {
            if line.starts_with(' ') || line.starts_with('\t') {
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                get.insert(k.trim(), v.trim());
            }
        }
        let need = |k: &str| -> Result<String, MirrorError> {
            get.get(k)
                .map(|v| v.to_string())
                .ok_or_else(|| MirrorError::MalformedIndex {
                    url: url.to_owned(),
                    detail: format!(
                        "a paragraph has no {k}: field ({})",
                        para.lines().next().unwrap_or_default()
                    ),
                })
        };
        let package = need("Package")?;
        let version = need("Version")?;
        let (source, source_version) = match get.get("Source") {
            None => (package.clone(), version.clone()),
            Some(s) => match s.split_once('(') {
                Some((n, v)) => (
                    n.trim().to_owned(),
                    v.trim_end_matches(')').trim().to_owned(),
                ),
                None => (s.trim().to_owned(), version.clone()),
            },
        };
        let size = need("Size")?
            .parse::<u64>()
            .map_err(|_| MirrorError::MalformedIndex {
                url: url.to_owned(),
                detail: format!("{package}: Size is not a number"),
            })?;
        let filename = need("Filename")?;
        if filename.starts_with('/') || filename.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(MirrorError::MalformedIndex {
                url: url.to_owned(),
                detail: format!("{package}: unsafe Filename {filename:?}"),
            });
        }
        out.push(BinaryPackage {
            architecture: need("Architecture")?,
            sha256: need("SHA256")?.to_ascii_lowercase(),
            depends: get
                .get("Depends")
                .map(|s| s.to_string())
                .unwrap_or_default(),
            pre_depends: get
                .get("Pre-Depends")
                .map(|s| s.to_string())
                .unwrap_or_default(),
            provides: get
                .get("Provides")
                .map(|s| s.to_string())
                .unwrap_or_default(),
            package,
            version,
            source,
            source_version,
            filename,
            size,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_with_version_and_without() {
        let t = "Package: libssl3\nVersion: 3.0.15-1~deb12u1\nArchitecture: amd64\nSource: openssl\nFilename: pool/main/o/openssl/libssl3_3.0.15-1~deb12u1_amd64.deb\nSize: 10\nSHA256: AB\n\nPackage: x\nVersion: 1+b1\nSource: y (1)\nArchitecture: all\nFilename: pool/x.deb\nSize: 3\nSHA256: cd\nDescription: d\n multi\n";
        let p = parse_packages(t, "u").unwrap();
        assert_eq!(p[0].source, "openssl");
        assert_eq!(p[0].source_version, "3.0.15-1~deb12u1");
        assert_eq!(p[0].sha256, "ab");
        assert_eq!(
            (p[1].source.as_str(), p[1].source_version.as_str()),
            ("y", "1")
        );
    }

    #[test]
    fn path_traversal_in_filename_is_refused() {
        let t = "Package: a\nVersion: 1\nArchitecture: all\nFilename: pool/../../etc/x.deb\nSize: 1\nSHA256: ab\n";
        assert!(matches!(
            parse_packages(t, "u"),
            Err(MirrorError::MalformedIndex { .. })
        ));
    }
}
