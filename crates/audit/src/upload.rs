//! How audit facts travel from agent to server (issue 12, point 7): only when they
//! changed, and without the apt suites the server already holds.
//!
//! A host's facts are ~2.4 MB, ~95% of it the newest version of every package of each apt
//! suite its lists know (`Facts::apt_suites`), which is the same for every host that
//! follows the same suites. So the facts travel as a [`FactsUpload`]: the host's own
//! document without those suites, plus a name → sha256 reference for each suite; a
//! suite's content goes along only when the server says it lacks it. The whole is named
//! by one digest ([`FactsUpload::sha256`]) that the server hands back in every check-in
//! answer, so an agent whose facts did not change sends nothing at all.
//!
//! The digests are over canonical bytes: a suite's JSON (a `BTreeMap`, so its order is
//! fixed) and, for the whole, the document's JSON digest and the suite references. The
//! server checks every suite's content against its digest before storing it (a suite is
//! shared by all hosts of the tenant that reference it, so a lying host must not be able
//! to plant one); the document's digest only names this host's own facts to itself.

use crate::model::Facts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The newest version of each package in one apt suite (package → version).
pub type Suite = BTreeMap<String, String>;

/// A facts upload: `POST /v1/agent/facts`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FactsUpload {
    /// Digest of the whole facts ([`facts_sha256`]): what the server returns in check-ins.
    pub sha256: String,
    /// The facts with `apt_suites` left empty.
    pub facts: Facts,
    /// Suite name → sha256 of its content ([`suite_sha256`]).
    pub suites: BTreeMap<String, String>,
    /// The content of the suites the server asked for, by digest (empty at first).
    #[serde(default)]
    pub contents: BTreeMap<String, Suite>,
}

/// The server's answer to a facts upload.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FactsAnswer {
    /// The facts are stored.
    pub stored: bool,
    /// Digests of suites the server lacks: send the upload again with their contents.
    #[serde(default)]
    pub missing: Vec<String>,
}

/// Lower-case hex sha256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A suite's canonical bytes (its JSON; a `BTreeMap` serialises in key order).
pub fn suite_bytes(suite: &Suite) -> Vec<u8> {
    // A map of strings to strings always serialises.
    serde_json::to_vec(suite).unwrap_or_default()
}

/// The digest that names a suite's content.
pub fn suite_sha256(suite: &Suite) -> String {
    sha256_hex(&suite_bytes(suite))
}

/// The digest of the whole facts: the document's JSON digest, then each suite's name and
/// digest, one per line, in name order.
pub fn facts_sha256(document_sha256: &str, suites: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    h.update(b"patchday-facts-v1\n");
    h.update(document_sha256.as_bytes());
    h.update(b"\n");
    for (name, digest) in suites {
        h.update(name.as_bytes());
        h.update(b"\t");
        h.update(digest.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// Splits facts for upload: the upload (with no contents yet) and each suite's content
/// by digest, to send when the server asks.
pub fn split(mut facts: Facts) -> (FactsUpload, BTreeMap<String, Suite>) {
    let suites_content = std::mem::take(&mut facts.apt_suites);
    let mut suites = BTreeMap::new();
    let mut contents = BTreeMap::new();
    for (name, suite) in suites_content {
        let digest = suite_sha256(&suite);
        suites.insert(name, digest.clone());
        contents.insert(digest, suite);
    }
    let document = serde_json::to_vec(&facts).unwrap_or_default();
    let sha256 = facts_sha256(&sha256_hex(&document), &suites);
    (
        FactsUpload {
            sha256,
            facts,
            suites,
            contents: BTreeMap::new(),
        },
        contents,
    )
}

/// Whether a string is a lower-case hex sha256.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        let mut f = Facts {
            hostname: "web-1".into(),
            ..Facts::default()
        };
        f.apt_suites.insert(
            "bookworm".into(),
            [("curl".to_string(), "7.88.1-10+deb12u5".to_string())].into(),
        );
        f.apt_suites.insert(
            "bookworm-security".into(),
            [("curl".to_string(), "7.88.1-10+deb12u8".to_string())].into(),
        );
        f
    }

    #[test]
    fn split_names_each_suite_by_its_content_and_leaves_the_document_without_suites() {
        let (up, contents) = split(facts());
        assert!(up.facts.apt_suites.is_empty());
        assert_eq!(up.suites.len(), 2);
        assert_eq!(contents.len(), 2);
        for digest in up.suites.values() {
            assert!(is_sha256(digest));
            assert_eq!(&suite_sha256(&contents[digest]), digest);
        }
        assert!(up.contents.is_empty());
    }

    #[test]
    fn the_digest_changes_with_the_document_and_with_any_suite_but_not_otherwise() {
        let (a, _) = split(facts());
        let (b, _) = split(facts());
        assert_eq!(a.sha256, b.sha256);
        let mut other_host = facts();
        other_host.hostname = "web-2".into();
        assert_ne!(split(other_host).0.sha256, a.sha256);
        let mut newer_suite = facts();
        newer_suite
            .apt_suites
            .get_mut("bookworm-security")
            .unwrap()
            .insert("curl".into(), "7.88.1-10+deb12u9".into());
        let (c, _) = split(newer_suite);
        assert_ne!(c.sha256, a.sha256);
        assert_eq!(c.suites["bookworm"], a.suites["bookworm"]);
    }

    #[test]
    fn is_sha256_takes_only_lower_case_hex_of_the_right_length() {
        assert!(is_sha256(&sha256_hex(b"x")));
        assert!(!is_sha256(&sha256_hex(b"x").to_uppercase()));
        assert!(!is_sha256("abc"));
        assert!(!is_sha256(&format!("{}/", &sha256_hex(b"x")[..63])));
    }
}
