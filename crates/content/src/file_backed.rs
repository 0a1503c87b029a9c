//! Issue 10 (a fleet downloading at once): bytes held in memory that are also the
//! contents of an open file, so that a server writing them to a plain TCP socket can hand
//! the kernel the file (`sendfile`) instead of copying the bytes into the socket.
//!
//! Why this exists: hyper writes a response body from memory (`writev`); it has no way to
//! send a file region. At 2,000 agents each downloading a 1 MB payload, that copy was 24%
//! of the server's CPU (`perf record` of `bench/fleet.sh`). The verified payload cache
//! keeps its bytes as [`bytes`] makes them; the connection layer asks [`find`] whether a
//! buffer it is about to write lies inside such bytes and, if so, sends the same region
//! of the file. Anything that cannot (TLS, another store) still writes the bytes.
//!
//! The registry entry lives exactly as long as the memory: it is removed in the owner's
//! `Drop`, before the memory is freed, so an address is never looked up after its bytes
//! are gone. The file is the one the bytes were read from (one open descriptor, fstat
//! checked by the caller): renaming or deleting its path does not change what it holds.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::fs::File;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

struct Entry {
    len: usize,
    file: Arc<File>,
}

fn registry() -> &'static RwLock<BTreeMap<usize, Entry>> {
    static R: OnceLock<RwLock<BTreeMap<usize, Entry>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// Entries registered now: lets [`find`] answer without a lock when there are none.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Owns the memory; removes its registry entry when dropped, before the memory goes.
struct Owner {
    data: Vec<u8>,
}

impl AsRef<[u8]> for Owner {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        if self.data.is_empty() {
            return;
        }
        let start = self.data.as_ptr() as usize;
        let mut r = registry().write().unwrap_or_else(|p| p.into_inner());
        if r.remove(&start).is_some() {
            LIVE.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// `data`, which is exactly the contents of `file` from its first byte, as [`Bytes`]
/// whose slices [`find`] maps back to regions of `file`.
pub fn bytes(data: Vec<u8>, file: File) -> Bytes {
    if data.is_empty() {
        return Bytes::new();
    }
    let owner = Owner { data };
    let start = owner.data.as_ptr() as usize;
    let len = owner.data.len();
    {
        let mut r = registry().write().unwrap_or_else(|p| p.into_inner());
        r.insert(
            start,
            Entry {
                len,
                file: Arc::new(file),
            },
        );
        LIVE.fetch_add(1, Ordering::Relaxed);
    }
    // The Vec is never touched again: its buffer stays where it is until `Owner` drops.
    Bytes::from_owner(owner)
}

/// The file and offset holding exactly `buf`, when `buf` lies inside bytes made by
/// [`bytes`] that are still alive.
pub fn find(buf: &[u8]) -> Option<(Arc<File>, u64)> {
    if buf.is_empty() || LIVE.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let at = buf.as_ptr() as usize;
    let r = registry().read().unwrap_or_else(|p| p.into_inner());
    let (&start, e) = r.range(..=at).next_back()?;
    let offset = at - start;
    (offset.checked_add(buf.len())? <= e.len).then(|| (e.file.clone(), offset as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn slices_map_to_their_region_of_the_file_and_nothing_outlives_the_bytes() {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        tmp.write_all(&data).unwrap();
        let file = File::open(tmp.path()).unwrap();
        let b = bytes(data.clone(), file);
        assert_eq!(&b[..], &data[..]);

        let (_, off) = find(&b[..]).expect("the whole is found");
        assert_eq!(off, 0);
        let part = b.slice(1234..5678);
        let (f, off) = find(&part).expect("a slice is found");
        assert_eq!(off, 1234);
        let mut got = vec![0u8; part.len()];
        std::os::unix::fs::FileExt::read_exact_at(&*f, &mut got, off).unwrap();
        assert_eq!(got, &part[..], "the file region holds the slice's bytes");

        // Bytes not made here are not found; the last byte is.
        let other = vec![7u8; 100];
        assert!(find(&other).is_none());
        assert_eq!(find(&b[b.len() - 1..]).map(|(_, o)| o), Some(9_999));

        let addr = b.as_ptr() as usize;
        drop(b);
        drop(part);
        let r = registry().read().unwrap();
        assert!(
            !r.contains_key(&addr),
            "the entry goes with the last slice of the bytes"
        );
    }
}
