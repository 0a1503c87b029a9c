//! What a file is, by its first bytes (never by its name).
//!
//! A small table of our own instead of the `infer` crate: `infer` does not recognise
//! scripts by their `#!` line, names OLE files only by guessing the Office product, and
//! the policy needs only these few kinds. Each entry is one magic number from the
//! format's specification.

use serde::{Deserialize, Serialize};

/// A kind of content the policy can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContentKind {
    /// ELF executable or shared object (`\x7fELF`).
    Elf,
    /// Windows PE/DOS executable (`MZ`): .exe, .dll, .scr, .sys.
    Pe,
    /// Mach-O executable (either byte order, 32/64-bit, or universal).
    MachO,
    /// A script with a `#!` interpreter line.
    Script,
    /// Java class file (`CAFEBABE`, also universal Mach-O: both are refused).
    JavaClass,
    /// Windows shortcut (`.lnk`).
    Shortcut,
    /// Zip archive, also OOXML documents (.docx, .xlsm) and .jar.
    Zip,
    /// gzip stream.
    Gzip,
    /// POSIX tar archive (`ustar` at offset 257).
    Tar,
    /// OLE compound file (.doc, .xls, .msi).
    Ole,
    /// PDF document.
    Pdf,
}

impl ContentKind {
    /// The policy's name for it (`block_types` in the policy file).
    pub fn name(self) -> &'static str {
        match self {
            ContentKind::Elf => "elf",
            ContentKind::Pe => "pe",
            ContentKind::MachO => "mach-o",
            ContentKind::Script => "script",
            ContentKind::JavaClass => "java-class",
            ContentKind::Shortcut => "shortcut",
            ContentKind::Zip => "zip",
            ContentKind::Gzip => "gzip",
            ContentKind::Tar => "tar",
            ContentKind::Ole => "ole",
            ContentKind::Pdf => "pdf",
        }
    }

    /// Kinds that run when opened (the policy's default `block_types`).
    pub const RUNNABLE: [ContentKind; 6] = [
        ContentKind::Elf,
        ContentKind::Pe,
        ContentKind::MachO,
        ContentKind::Script,
        ContentKind::JavaClass,
        ContentKind::Shortcut,
    ];
}

/// The kind of `bytes` by its magic number, `None` when it is none of ours.
pub fn sniff(bytes: &[u8]) -> Option<ContentKind> {
    const TABLE: &[(&[u8], ContentKind)] = &[
        (b"\x7fELF", ContentKind::Elf),
        (b"MZ", ContentKind::Pe),
        (b"\xfe\xed\xfa\xce", ContentKind::MachO),
        (b"\xfe\xed\xfa\xcf", ContentKind::MachO),
        (b"\xce\xfa\xed\xfe", ContentKind::MachO),
        (b"\xcf\xfa\xed\xfe", ContentKind::MachO),
        (b"\xca\xfe\xba\xbe", ContentKind::JavaClass),
        (b"#!", ContentKind::Script),
        (b"\x4c\x00\x00\x00\x01\x14\x02\x00", ContentKind::Shortcut),
        (b"PK\x03\x04", ContentKind::Zip),
        (b"PK\x05\x06", ContentKind::Zip),
        (b"\x1f\x8b", ContentKind::Gzip),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", ContentKind::Ole),
        (b"%PDF-", ContentKind::Pdf),
    ];
    // A UTF-8 byte order mark before `#!` still runs on some interpreters' loaders.
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    if let Some((_, kind)) = TABLE.iter().find(|(magic, _)| bytes.starts_with(magic)) {
        return Some(*kind);
    }
    if bytes.len() >= 262 && &bytes[257..262] == b"ustar" {
        return Some(ContentKind::Tar);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_the_bytes() {
        assert_eq!(sniff(b"\x7fELF\x02\x01\x01"), Some(ContentKind::Elf));
        assert_eq!(sniff(b"MZ\x90\x00"), Some(ContentKind::Pe));
        assert_eq!(sniff(b"#!/bin/sh\nrm -rf /"), Some(ContentKind::Script));
        assert_eq!(
            sniff(b"\xef\xbb\xbf#!/usr/bin/env python3"),
            Some(ContentKind::Script)
        );
        assert_eq!(sniff(b"%PDF-1.7\n"), Some(ContentKind::Pdf));
        assert_eq!(sniff(b"hello"), None);
        assert_eq!(sniff(b""), None);
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(sniff(&tar), Some(ContentKind::Tar));
    }
}
