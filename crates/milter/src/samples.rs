//! Sample messages that each check must catch, built here rather than shipped as binary
//! files: the tests send them through a real Postfix, and `patchday milter samples`
//! writes them for an operator to send through a new installation.

use base64::Engine as _;
use std::io::{Cursor, Write};

/// The EICAR anti-virus test file (68 bytes), assembled so that this source file itself
/// is not a match.
pub fn eicar() -> Vec<u8> {
    let mut s = String::from("X5O!P%@AP[4\\PZX54(P^)7CC)7}$");
    s.push_str("EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*");
    s.into_bytes()
}

/// A text that the tests' own ClamAV body signature (`.ndb`) matches.
pub const TEST_SAMPLE_MARKER: &str = "patchday-milter-test-sample-7f3a9c";

/// The smallest ELF header (64-bit, little-endian, executable), enough for any magic check.
pub fn elf_header() -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
    h[16] = 2; // ET_EXEC
    h[18] = 0x3e; // x86-64
    h
}

fn zip_of(entries: &[(&str, &[u8])], method: zip::CompressionMethod) -> std::io::Result<Vec<u8>> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(method)
        .large_file(false);
    for (name, bytes) in entries {
        w.start_file(*name, options)
            .map_err(std::io::Error::other)?;
        w.write_all(bytes)?;
    }
    Ok(w.finish().map_err(std::io::Error::other)?.into_inner())
}

/// A zip (deflated) of these entries.
pub fn zip(entries: &[(&str, &[u8])]) -> std::io::Result<Vec<u8>> {
    zip_of(entries, zip::CompressionMethod::Deflated)
}

/// A zip bomb: one deflated entry of `expanded` zero bytes (about 1/1000 of it packed).
pub fn zip_bomb(expanded: u64) -> std::io::Result<Vec<u8>> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(expanded >= u64::from(u32::MAX));
    w.start_file("zeros.bin", options)
        .map_err(std::io::Error::other)?;
    let block = vec![0u8; 1 << 20];
    let mut left = expanded;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        w.write_all(&block[..n])?;
        left -= n as u64;
    }
    Ok(w.finish().map_err(std::io::Error::other)?.into_inner())
}

/// Zips inside zips, `levels` deep, with a text file at the bottom.
pub fn nested_zip(levels: u32) -> std::io::Result<Vec<u8>> {
    let mut inner = zip(&[("readme.txt", b"hello")])?;
    for n in 1..levels {
        inner = zip(&[(&format!("level{n}.zip"), &inner)])?;
    }
    Ok(inner)
}

/// A zip whose one entry carries the "encrypted" flag (traditional PKWARE encryption).
pub fn encrypted_zip() -> std::io::Result<Vec<u8>> {
    let mut bytes = zip_of(
        &[("secret.txt", b"0123456789abcdef")],
        zip::CompressionMethod::Stored,
    )?;
    // General purpose bit 0 in the local header (offset 6) and central header (offset 8).
    for (magic, offset) in [(b"PK\x03\x04", 6usize), (b"PK\x01\x02", 8usize)] {
        if let Some(at) = bytes.windows(4).position(|w| w == magic) {
            bytes[at + offset] |= 1;
        }
    }
    Ok(bytes)
}

/// An OLE compound file with a VBA project (`Macros/VBA/_VBA_PROJECT`), as Word 97-2003
/// stores a document's macros.
pub fn ole_with_macros() -> std::io::Result<Vec<u8>> {
    let mut c = cfb::CompoundFile::create(Cursor::new(Vec::new()))?;
    c.create_stream("/WordDocument")?
        .write_all(b"not really a document")?;
    c.create_storage_all("/Macros/VBA")?;
    c.create_stream("/Macros/VBA/_VBA_PROJECT")?
        .write_all(b"\xcc\x61\xff\xff\x00\x00\x00")?;
    c.create_stream("/Macros/VBA/dir")?
        .write_all(b"Attribute VB_Name")?;
    c.flush()?;
    Ok(c.into_inner().into_inner())
}

/// An OOXML Word document with macros (.docm): a zip holding `word/vbaProject.bin`.
pub fn docm_with_macros() -> std::io::Result<Vec<u8>> {
    let vba = ole_with_macros()?;
    zip(&[
        (
            "[Content_Types].xml",
            br#"<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Override PartName="/word/document.xml" ContentType="application/vnd.ms-word.document.macroEnabled.main+xml"/></Types>"#,
        ),
        (
            "word/document.xml",
            br#"<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body/></w:document>"#,
        ),
        ("word/vbaProject.bin", &vba),
    ])
}

/// A small PDF-looking file (clean).
pub fn pdf() -> Vec<u8> {
    b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n".to_vec()
}

/// One attachment of a sample message.
pub struct Attachment<'a> {
    /// File name as the sender claims it.
    pub name: &'a str,
    /// MIME type as the sender claims it.
    pub content_type: &'a str,
    /// The bytes.
    pub bytes: &'a [u8],
}

/// A MIME message (CRLF line ends) with a text part and base64 attachments.
pub fn message(
    from: &str,
    to: &str,
    subject: &str,
    text: &str,
    attachments: &[Attachment<'_>],
) -> Vec<u8> {
    let boundary = "=_patchday_sample_boundary";
    let mut m = format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMessage-ID: <{}@patchday.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\
         --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n",
        subject.replace(' ', "-")
    );
    for a in attachments {
        let encoded = base64::engine::general_purpose::STANDARD.encode(a.bytes);
        m.push_str(&format!(
            "--{boundary}\r\nContent-Type: {}; name=\"{}\"\r\nContent-Disposition: attachment; filename=\"{}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
            a.content_type, a.name, a.name
        ));
        for line in encoded.as_bytes().chunks(76) {
            m.push_str(&String::from_utf8_lossy(line));
            m.push_str("\r\n");
        }
    }
    m.push_str(&format!("--{boundary}--\r\n"));
    m.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::ContentKind;
    use crate::inspect::{inspect_file, inspect_message, Limits, Problem};

    const LIMITS: Limits = Limits {
        max_depth: 3,
        max_expanded_bytes: 8 << 20,
        max_entries: 100,
    };

    #[test]
    fn a_zip_bomb_ends_at_the_byte_budget() {
        let bomb = zip_bomb(64 << 20).unwrap();
        assert!(bomb.len() < 1 << 20, "packed {} bytes", bomb.len());
        let seen = inspect_file("bomb.zip", &bomb, &LIMITS);
        assert!(
            matches!(&seen.problems[..], [Problem::Bomb { path, .. }] if path == "bomb.zip/zeros.bin"),
            "{:?}",
            seen.problems
        );
    }

    #[test]
    fn a_bomb_that_lies_about_its_size_still_ends_at_the_budget() {
        let mut bomb = zip_bomb(16 << 20).unwrap();
        // Declare 1 KiB uncompressed in the central directory (offset 24 from PK\1\2).
        let at = bomb.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        bomb[at + 24..at + 28].copy_from_slice(&1024u32.to_le_bytes());
        let seen = inspect_file("liar.zip", &bomb, &LIMITS);
        assert!(
            seen.problems
                .iter()
                .any(|p| matches!(p, Problem::Bomb { .. } | Problem::Unreadable { .. })),
            "{:?}",
            seen.problems
        );
        assert!(seen
            .files
            .iter()
            .all(|f| f.size <= LIMITS.max_expanded_bytes));
    }

    #[test]
    fn archives_are_opened_to_the_depth_limit_and_no_further() {
        let seen = inspect_file("n.zip", &nested_zip(3).unwrap(), &LIMITS);
        assert!(seen.problems.is_empty(), "{:?}", seen.problems);
        assert!(seen.files.iter().any(|f| f.path.ends_with("readme.txt")));
        let seen = inspect_file("n.zip", &nested_zip(4).unwrap(), &LIMITS);
        assert!(
            matches!(&seen.problems[..], [Problem::TooDeep { .. }]),
            "{:?}",
            seen.problems
        );
    }

    #[test]
    fn an_executable_inside_an_archive_is_seen_by_content() {
        let z = zip(&[("docs/manual.pdf", &elf_header())]).unwrap();
        let seen = inspect_file("docs.zip", &z, &LIMITS);
        let f = seen
            .files
            .iter()
            .find(|f| f.path == "docs.zip/docs/manual.pdf")
            .unwrap();
        assert_eq!(f.kind, Some(ContentKind::Elf));
    }

    #[test]
    fn macros_are_found_in_ooxml_and_ole_documents() {
        let seen = inspect_file("report.docm", &docm_with_macros().unwrap(), &LIMITS);
        assert!(seen.files[0].macros, "{:?}", seen.files);
        let seen = inspect_file("old.doc", &ole_with_macros().unwrap(), &LIMITS);
        assert!(seen.files[0].macros);
        let clean = zip(&[("word/document.xml", b"<w:document/>")]).unwrap();
        let seen = inspect_file("clean.docx", &clean, &LIMITS);
        assert!(!seen.files[0].macros);
    }

    #[test]
    fn encrypted_entries_are_flagged_not_read() {
        let seen = inspect_file("x.zip", &encrypted_zip().unwrap(), &LIMITS);
        let f = seen
            .files
            .iter()
            .find(|f| f.path == "x.zip/secret.txt")
            .unwrap();
        assert!(f.encrypted);
        assert!(seen.problems.is_empty(), "{:?}", seen.problems);
    }

    #[test]
    fn attachments_are_found_in_a_mime_message_whatever_their_names() {
        let elf = elf_header();
        let m = message(
            "a@x.example",
            "b@acme.example",
            "invoice",
            "see attached",
            &[Attachment {
                name: "invoice.pdf",
                content_type: "application/pdf",
                bytes: &elf,
            }],
        );
        let seen = inspect_message(&m, &LIMITS);
        assert_eq!(seen.files.len(), 1, "{:?}", seen.files);
        assert_eq!(seen.files[0].path, "invoice.pdf");
        assert_eq!(seen.files[0].kind, Some(ContentKind::Elf));
    }
}
