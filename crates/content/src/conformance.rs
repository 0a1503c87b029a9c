//! Issue 12, point 3: the content-store conformance suite, the promises every backend
//! keeps (the local directory and an S3-compatible bucket alike).
//!
//! A backend's tests invoke [`content_conformance_tests!`](crate::content_conformance_tests)
//! with a function that makes a fresh, empty store (a [`Harness`]): the macro expands to
//! one `#[tokio::test]` per case of [`case`], so one broken promise does not hide the
//! others. Each step panics with a message naming the broken promise.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use crate::{ContentError, ContentStore, Usage};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::AsyncReadExt;

/// A fresh, empty store for one case, and what the cases need around it.
#[async_trait]
pub trait Harness: Send + Sync {
    /// The store under test.
    fn store(&self) -> &dyn ContentStore;
    /// Another handle on the same blobs with nothing cached (another server replica).
    fn replica(&self) -> Box<dyn ContentStore>;
    /// Replaces the stored bytes of blob `key` behind the store's back (bit rot, an
    /// operator's mistake, an attacker with write access to the bucket).
    async fn damage(&self, key: &str, bytes: &[u8]);
    /// A directory for source files.
    fn scratch(&self) -> &Path;
    /// GETs `url` over HTTP with an optional `Range` value and no credentials: the
    /// status and the body (the library itself does no HTTP).
    async fn http_get(&self, url: &str, range: Option<&str>) -> (u16, Vec<u8>);
}

/// Expands to one test per case for the harness made by `$make` (an async fn returning
/// `Option<H>`: `None` skips, as [`patchday_lab::require`] decides).
#[macro_export]
macro_rules! content_conformance_tests {
    ($make:path) => {
        $crate::content_conformance_tests!(@cases $make;
            a_put_blob_reads_back_whole_and_by_length, puts_are_idempotent,
            a_put_whose_bytes_do_not_match_keeps_nothing, malformed_keys_are_refused_everywhere,
            ranged_reads_start_at_any_offset_and_refuse_past_the_end,
            a_missing_blob_is_not_found, an_empty_blob_is_stored_and_served,
            listing_names_blobs_only, removal_frees_the_bytes_once, usage_counts_blobs_and_bytes,
            verify_finds_a_damaged_blob, open_verified_refuses_and_quarantines_a_damaged_blob,
            open_verified_notices_damage_after_a_verified_read,
            a_replica_verifies_before_it_serves, quarantine_sets_aside_and_a_put_repairs,
            a_big_payload_goes_up_in_parts_and_reads_back_by_range,
            concurrent_puts_of_one_blob_store_it_once, the_readiness_probe_leaves_nothing,
            a_presigned_url_serves_the_blob_or_there_is_none,
            holds_is_true_for_a_stored_blob_not_known_to_be_damaged);
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(harness) = $make().await else { return };
                $crate::conformance::case::$case(&harness).await;
            }
        )*
    };
}

/// Writes `bytes` to a file in the harness's scratch directory; returns it and its key.
pub fn source(h: &dyn Harness, name: &str, bytes: &[u8]) -> (PathBuf, String) {
    let p = h.scratch().join(name);
    std::fs::write(&p, bytes).unwrap();
    (p, hex::encode(Sha256::digest(bytes)))
}

async fn read_all(store: &dyn ContentStore, key: &str, offset: u64) -> Vec<u8> {
    let mut b = store.open(key, offset).await.unwrap();
    let mut out = Vec::new();
    b.reader.read_to_end(&mut out).await.unwrap();
    out
}

async fn read_verified(
    store: &dyn ContentStore,
    key: &str,
    offset: u64,
) -> Result<Vec<u8>, ContentError> {
    let mut b = store.open_verified(key, offset).await?;
    let mut out = Vec::new();
    b.reader.read_to_end(&mut out).await.unwrap();
    Ok(out)
}

/// Bytes that are not all the same, so a range read from the wrong offset shows.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// The cases.
pub mod case {
    use super::*;

    /// A put blob has its length and reads back byte for byte.
    pub async fn a_put_blob_reads_back_whole_and_by_length(h: &dyn Harness) {
        let s = h.store();
        let (src, key) = source(h, "a", b"hello world");
        s.put_file(&src, &key).await.unwrap();
        assert_eq!(s.len(&key).await.unwrap(), Some(11), "length after put");
        assert_eq!(read_all(s, &key, 0).await, b"hello world");
        assert_eq!(read_verified(s, &key, 0).await.unwrap(), b"hello world");
        let b = s.open(&key, 0).await.unwrap();
        assert_eq!(b.len, 11, "BlobReader::len is the whole length");
    }

    /// Putting the same blob again succeeds and changes nothing.
    pub async fn puts_are_idempotent(h: &dyn Harness) {
        let s = h.store();
        let (src, key) = source(h, "a", b"same bytes");
        s.put_file(&src, &key).await.unwrap();
        s.put_file(&src, &key).await.unwrap();
        h.replica().put_file(&src, &key).await.unwrap();
        assert_eq!(s.keys().await.unwrap(), vec![key.clone()]);
        assert_eq!(
            s.usage().await.unwrap(),
            Usage {
                blobs: 1,
                bytes: 10
            }
        );
    }

    /// A file that does not hash to the key is refused and leaves no blob behind.
    pub async fn a_put_whose_bytes_do_not_match_keeps_nothing(h: &dyn Harness) {
        let s = h.store();
        let (src, _) = source(h, "a", b"these bytes");
        let wrong = hex::encode(Sha256::digest(b"other bytes"));
        let e = s.put_file(&src, &wrong).await.unwrap_err();
        assert!(matches!(e, ContentError::DigestMismatch { .. }), "{e}");
        assert_eq!(s.len(&wrong).await.unwrap(), None, "nothing stored");
        assert!(s.keys().await.unwrap().is_empty());
    }

    /// Keys that are not a lowercase hex sha256 never reach the backend.
    pub async fn malformed_keys_are_refused_everywhere(h: &dyn Harness) {
        let s = h.store();
        let (src, _) = source(h, "a", b"x");
        for bad in [
            "../etc/passwd",
            "ABCDEF",
            "",
            "A".repeat(64).as_str(),
            "0".repeat(63).as_str(),
        ] {
            assert!(
                matches!(s.len(bad).await, Err(ContentError::BadKey(_))),
                "len {bad}"
            );
            assert!(
                matches!(s.open(bad, 0).await, Err(ContentError::BadKey(_))),
                "open {bad}"
            );
            assert!(
                matches!(s.open_verified(bad, 0).await, Err(ContentError::BadKey(_))),
                "open_verified {bad}"
            );
            assert!(
                matches!(s.put_file(&src, bad).await, Err(ContentError::BadKey(_))),
                "put {bad}"
            );
            assert!(
                matches!(s.remove(bad).await, Err(ContentError::BadKey(_))),
                "remove {bad}"
            );
            assert!(
                matches!(s.quarantine(bad).await, Err(ContentError::BadKey(_))),
                "quarantine {bad}"
            );
            assert!(
                matches!(
                    s.presigned_url(bad, std::time::Duration::from_secs(60))
                        .await,
                    Err(ContentError::BadKey(_))
                ),
                "presign {bad}"
            );
        }
    }

    /// Reads start at any offset up to the length (an empty rest at the end); past the
    /// end is refused with the length.
    pub async fn ranged_reads_start_at_any_offset_and_refuse_past_the_end(h: &dyn Harness) {
        let s = h.store();
        let bytes = pattern(100_000);
        let (src, key) = source(h, "a", &bytes);
        s.put_file(&src, &key).await.unwrap();
        for offset in [0u64, 1, 4096, 65_537, 99_999, 100_000] {
            let o = offset as usize;
            assert_eq!(
                read_all(s, &key, offset).await,
                &bytes[o..],
                "open from {offset}"
            );
            assert_eq!(
                read_verified(s, &key, offset).await.unwrap(),
                &bytes[o..],
                "open_verified from {offset}"
            );
        }
        assert!(matches!(
            s.open(&key, 100_001).await,
            Err(ContentError::BadRange {
                offset: 100_001,
                len: 100_000
            })
        ));
        assert!(matches!(
            s.open_verified(&key, 100_001).await,
            Err(ContentError::BadRange { .. })
        ));
    }

    /// A blob never put is `NotFound` for reads and `None` for its length.
    pub async fn a_missing_blob_is_not_found(h: &dyn Harness) {
        let s = h.store();
        let key = hex::encode(Sha256::digest(b"never stored"));
        assert_eq!(s.len(&key).await.unwrap(), None);
        assert!(matches!(
            s.open(&key, 0).await,
            Err(ContentError::NotFound(_))
        ));
        assert!(matches!(
            s.open_verified(&key, 0).await,
            Err(ContentError::NotFound(_))
        ));
        assert_eq!(s.remove(&key).await.unwrap(), None);
    }

    /// A zero-byte payload is a blob like any other.
    pub async fn an_empty_blob_is_stored_and_served(h: &dyn Harness) {
        let s = h.store();
        let (src, key) = source(h, "empty", b"");
        s.put_file(&src, &key).await.unwrap();
        assert_eq!(s.len(&key).await.unwrap(), Some(0));
        assert_eq!(read_verified(s, &key, 0).await.unwrap(), b"");
        assert!(s.verify(&key).await.unwrap());
    }

    /// Listing names the blobs, sorted, and not the quarantine or anything else.
    pub async fn listing_names_blobs_only(h: &dyn Harness) {
        let s = h.store();
        let mut keys = Vec::new();
        for i in 0..5 {
            let (src, key) = source(h, &format!("f{i}"), format!("blob {i}").as_bytes());
            s.put_file(&src, &key).await.unwrap();
            keys.push(key);
        }
        s.quarantine(&keys[4]).await.unwrap();
        s.ready().await.unwrap();
        let mut want = keys[..4].to_vec();
        want.sort();
        assert_eq!(s.keys().await.unwrap(), want, "blobs only, in order");
    }

    /// Removing a blob frees its bytes; removing it again frees nothing.
    pub async fn removal_frees_the_bytes_once(h: &dyn Harness) {
        let s = h.store();
        let (src, key) = source(h, "a", b"hello world");
        s.put_file(&src, &key).await.unwrap();
        assert_eq!(s.remove(&key).await.unwrap(), Some(11));
        assert_eq!(s.remove(&key).await.unwrap(), None);
        assert_eq!(s.len(&key).await.unwrap(), None);
        assert!(matches!(
            s.open_verified(&key, 0).await,
            Err(ContentError::NotFound(_))
        ));
        assert_eq!(
            h.replica().len(&key).await.unwrap(),
            None,
            "gone for every replica"
        );
    }

    /// Usage is the count and bytes of the blobs, quarantined ones left out.
    pub async fn usage_counts_blobs_and_bytes(h: &dyn Harness) {
        let s = h.store();
        assert_eq!(s.usage().await.unwrap(), Usage::default());
        let (a, ka) = source(h, "a", &[1u8; 1000]);
        let (b, kb) = source(h, "b", &[2u8; 24]);
        s.put_file(&a, &ka).await.unwrap();
        s.put_file(&b, &kb).await.unwrap();
        assert_eq!(
            s.usage().await.unwrap(),
            Usage {
                blobs: 2,
                bytes: 1024
            }
        );
        s.quarantine(&kb).await.unwrap();
        assert_eq!(
            s.usage().await.unwrap(),
            Usage {
                blobs: 1,
                bytes: 1000
            }
        );
    }

    /// `verify` hashes the stored bytes: good is true, a flipped byte is false.
    pub async fn verify_finds_a_damaged_blob(h: &dyn Harness) {
        let s = h.store();
        let (src, key) = source(h, "a", b"hello world");
        s.put_file(&src, &key).await.unwrap();
        assert!(s.verify(&key).await.unwrap());
        h.damage(&key, b"hello worle").await;
        assert!(!s.verify(&key).await.unwrap(), "a flipped byte is found");
        assert!(!h.replica().verify(&key).await.unwrap());
    }

    /// A damaged blob is never served: `open_verified` says `Damaged`, sets it aside,
    /// and then it is `NotFound`.
    pub async fn open_verified_refuses_and_quarantines_a_damaged_blob(h: &dyn Harness) {
        let s = h.store();
        let (src, key) = source(h, "a", b"hello world");
        s.put_file(&src, &key).await.unwrap();
        h.damage(&key, b"hello worle").await;
        let r = h.replica();
        assert!(matches!(
            r.open_verified(&key, 0).await,
            Err(ContentError::Damaged { .. })
        ));
        assert_eq!(r.len(&key).await.unwrap(), None, "set aside");
        assert!(matches!(
            r.open_verified(&key, 0).await,
            Err(ContentError::NotFound(_))
        ));
        assert_eq!(s.usage().await.unwrap(), Usage::default());
    }

    /// A blob verified and served once, then damaged, is not served from what was
    /// remembered: the change is noticed and the bytes hashed again.
    pub async fn open_verified_notices_damage_after_a_verified_read(h: &dyn Harness) {
        let s = h.store();
        let bytes = pattern(50_000);
        let (src, key) = source(h, "a", &bytes);
        s.put_file(&src, &key).await.unwrap();
        assert_eq!(read_verified(s, &key, 10).await.unwrap(), &bytes[10..]);
        let mut damaged = bytes.clone();
        damaged[25_000] ^= 1;
        h.damage(&key, &damaged).await;
        assert!(
            matches!(
                s.open_verified(&key, 10).await,
                Err(ContentError::Damaged { .. })
            ),
            "damage after a verified read is found before a byte is served"
        );
    }

    /// A replica that did not write a blob serves it after hashing it (and serves it
    /// again without surprises).
    pub async fn a_replica_verifies_before_it_serves(h: &dyn Harness) {
        let s = h.store();
        let bytes = pattern(70_000);
        let (src, key) = source(h, "a", &bytes);
        s.put_file(&src, &key).await.unwrap();
        let r = h.replica();
        for _ in 0..3 {
            assert_eq!(
                read_verified(r.as_ref(), &key, 69_000).await.unwrap(),
                &bytes[69_000..]
            );
        }
    }

    /// Quarantine moves a blob out of the way (the store lists it no more) and the next
    /// put of the good bytes stores it anew, also when it was damaged in place.
    pub async fn quarantine_sets_aside_and_a_put_repairs(h: &dyn Harness) {
        let s = h.store();
        let (src, key) = source(h, "a", b"hello world");
        s.put_file(&src, &key).await.unwrap();
        s.quarantine(&key).await.unwrap();
        assert_eq!(s.len(&key).await.unwrap(), None);
        s.quarantine(&key).await.unwrap();
        s.put_file(&src, &key).await.unwrap();
        assert_eq!(read_verified(s, &key, 0).await.unwrap(), b"hello world");
        // Damaged in place: the put finds it, sets it aside, writes the good bytes.
        h.damage(&key, b"hello worle").await;
        h.replica().put_file(&src, &key).await.unwrap();
        assert!(s.verify(&key).await.unwrap(), "repaired by the put");
        assert_eq!(read_verified(s, &key, 0).await.unwrap(), b"hello world");
    }

    /// A payload bigger than one part (multipart on an object store) reads back by
    /// range, and a wrong digest for it leaves nothing.
    pub async fn a_big_payload_goes_up_in_parts_and_reads_back_by_range(h: &dyn Harness) {
        let s = h.store();
        let len = crate::s3::MULTIPART_PART * 2 + 12_345;
        let bytes = pattern(len);
        let (src, key) = source(h, "big", &bytes);
        let wrong = hex::encode(Sha256::digest(b"not it"));
        assert!(matches!(
            s.put_file(&src, &wrong).await,
            Err(ContentError::DigestMismatch { .. })
        ));
        assert_eq!(
            s.len(&wrong).await.unwrap(),
            None,
            "a refused big upload leaves nothing"
        );
        s.put_file(&src, &key).await.unwrap();
        assert_eq!(s.len(&key).await.unwrap(), Some(len as u64));
        let from = len - 100_000;
        assert_eq!(
            read_verified(s, &key, from as u64).await.unwrap(),
            &bytes[from..]
        );
        let r = h.replica();
        assert_eq!(
            read_verified(r.as_ref(), &key, 5).await.unwrap(),
            &bytes[5..]
        );
        assert!(s.verify(&key).await.unwrap());
    }

    /// Two replicas putting the same blob at once both succeed; it is there once.
    pub async fn concurrent_puts_of_one_blob_store_it_once(h: &dyn Harness) {
        let s = h.store();
        let r = h.replica();
        let bytes = pattern(300_000);
        let (src, key) = source(h, "a", &bytes);
        let (a, b) = tokio::join!(s.put_file(&src, &key), r.put_file(&src, &key));
        a.unwrap();
        b.unwrap();
        assert_eq!(s.keys().await.unwrap(), vec![key.clone()]);
        assert_eq!(read_verified(s, &key, 0).await.unwrap(), bytes);
    }

    /// Issue 12: `holds` (what a push asks for every payload) says no for an absent blob,
    /// yes for a stored one, also on a replica that never read it, and no once this store
    /// saw it damaged (quarantined, so the push uploads it again).
    pub async fn holds_is_true_for_a_stored_blob_not_known_to_be_damaged(h: &dyn Harness) {
        let s = h.store();
        let bytes = pattern(30_000);
        let (src, key) = source(h, "a", &bytes);
        assert!(!s.holds(&key).await.unwrap(), "absent");
        s.put_file(&src, &key).await.unwrap();
        assert!(s.holds(&key).await.unwrap());
        assert!(h.replica().holds(&key).await.unwrap(), "a replica sees it");
        let mut damaged = bytes.clone();
        damaged[100] ^= 1;
        h.damage(&key, &damaged).await;
        assert!(
            !s.holds(&key).await.unwrap(),
            "damage behind its back is noticed"
        );
        assert_eq!(s.len(&key).await.unwrap(), None, "and set aside");
        s.put_file(&src, &key).await.unwrap();
        assert!(s.holds(&key).await.unwrap(), "a put repairs it");
        assert!(matches!(
            s.holds("not-a-key").await,
            Err(ContentError::BadKey(_))
        ));
    }

    /// The readiness probe passes on a working store and leaves no object behind.
    pub async fn the_readiness_probe_leaves_nothing(h: &dyn Harness) {
        let s = h.store();
        s.ready().await.unwrap();
        s.ready().await.unwrap();
        assert!(s.keys().await.unwrap().is_empty());
        assert_eq!(s.usage().await.unwrap(), Usage::default());
        assert!(!s.describe().is_empty());
    }

    /// An object store signs a URL that serves exactly the blob, ranges included, to a
    /// client without credentials; a local directory has none.
    pub async fn a_presigned_url_serves_the_blob_or_there_is_none(h: &dyn Harness) {
        let s = h.store();
        let bytes = pattern(20_000);
        let (src, key) = source(h, "a", &bytes);
        s.put_file(&src, &key).await.unwrap();
        let Some(url) = s
            .presigned_url(&key, std::time::Duration::from_secs(60))
            .await
            .unwrap()
        else {
            return;
        };
        let (status, body) = h.http_get(url.as_str(), None).await;
        assert_eq!(
            (status, body.as_slice()),
            (200, &bytes[..]),
            "the whole blob"
        );
        let (status, body) = h.http_get(url.as_str(), Some("bytes=19000-")).await;
        assert_eq!(
            (status, body.as_slice()),
            (206, &bytes[19_000..]),
            "a range of it"
        );
        // The signature covers the object: another key under the same URL is refused.
        let other = url.as_str().replace(&key, &"0".repeat(64));
        let (status, _) = h.http_get(&other, None).await;
        assert!((400..500).contains(&status), "another object: {status}");
    }
}
