//! ELF hardening properties of one file (PIE, RELRO, stack canary, NX stack, FORTIFY,
//! RPATH/RUNPATH), with the definitions of Debian's `checksec` script.
//!
//! The parser reads only what it needs with positioned reads: the ELF and program
//! headers, the dynamic section, the dynamic string table, the section headers and,
//! for unstripped files, the symbol string table. No mmap, no whole-file read.
//!
//! Definitions (checksec 2.6 `filecheck`, and where we deliberately differ):
//! - RELRO: a `PT_GNU_RELRO` segment; full when `DT_BIND_NOW`, `DF_BIND_NOW` in
//!   `DT_FLAGS`, or `DF_1_NOW` in `DT_FLAGS_1` (checksec ignores `DF_1_NOW`, which
//!   the glibc loader honours the same way).
//! - Canary: a symbol name containing `__stack_chk_fail`, `__stack_chk_guard` or
//!   `__intel_security_cookie` in `.dynsym` or `.symtab`.
//! - NX: a `PT_GNU_STACK` segment without the execute flag.
//! - PIE: `ET_DYN` with `DT_DEBUG` (checksec) or `DF_1_PIE`. Not `PT_INTERP`: runnable
//!   shared libraries such as `libc.so.6` have one and are still libraries.
//! - FORTIFY: a dynamic symbol whose name ends in `_chk` (e.g. `__memcpy_chk`).
//! - RPATH / RUNPATH: the `DT_RPATH` / `DT_RUNPATH` strings.

use crate::model::{BinaryFacts, BinaryReason, Relro};
use std::borrow::Cow;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Why an ELF file could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// The file could not be opened or read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file does not start with the ELF magic.
    #[error("not an ELF file")]
    NotElf,
    /// The file is ELF but a header or table is out of range.
    #[error("malformed ELF: {0}")]
    Malformed(&'static str),
}

/// The ELF object type from `e_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfType {
    /// `ET_REL`: an object file.
    Relocatable,
    /// `ET_EXEC`: a fixed-address executable.
    Executable,
    /// `ET_DYN`: a shared object or a position-independent executable.
    Shared,
    /// `ET_CORE` or anything else.
    Other(u16),
}

/// Hardening properties of one ELF file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfInfo {
    /// Object type.
    pub elf_type: ElfType,
    /// 64-bit (ELFCLASS64).
    pub is_64: bool,
    /// Has a `PT_INTERP` segment (dynamically linked program).
    pub interp: bool,
    /// Has a `PT_DYNAMIC` segment.
    pub dynamic: bool,
    /// Position-independent executable.
    pub pie: bool,
    /// RELRO level.
    pub relro: Relro,
    /// Stack protector symbol referenced.
    pub canary: bool,
    /// Non-executable stack.
    pub nx: bool,
    /// At least one fortified `_chk` function imported.
    pub fortify: bool,
    /// `DT_RPATH` value.
    pub rpath: Option<String>,
    /// `DT_RUNPATH` value.
    pub runpath: Option<String>,
    /// Has a `.symtab` (not stripped).
    pub symbols: bool,
}

impl ElfInfo {
    /// A shared library: `ET_DYN` that is not a PIE program.
    pub fn is_dso(&self) -> bool {
        self.elf_type == ElfType::Shared && !self.pie
    }

    /// The facts record for this file.
    pub fn to_facts(&self, path: &str, reason: BinaryReason) -> BinaryFacts {
        BinaryFacts {
            path: path.to_string(),
            reason,
            package: None,
            pie: self.pie,
            relro: self.relro,
            canary: self.canary,
            nx: self.nx,
            fortify: self.fortify,
            rpath: self.rpath.clone(),
            runpath: self.runpath.clone(),
        }
    }
}

/// Whether the file starts with the ELF magic (cheap pre-filter for directory walks).
pub fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|f| f.read_exact_at(&mut magic, 0))
        .map(|_| &magic == b"\x7fELF")
        .unwrap_or(false)
}

/// Inspect the ELF file at `path`.
pub fn inspect(path: &Path) -> Result<ElfInfo, ElfError> {
    let io = |source| ElfError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let src = FileSource { file: &file, len };
    inspect_source(&src).map_err(|e| match e {
        ElfError::Io { source, .. } => io(source),
        other => other,
    })
}

/// Inspect an ELF image held in memory.
pub fn inspect_bytes(bytes: &[u8]) -> Result<ElfInfo, ElfError> {
    inspect_source(&SliceSource(bytes))
}

// Bytes read up front: ELF header plus program headers almost always fit.
const HEAD: usize = 4096;
// Upper bounds against hostile sizes.
const MAX_TABLE: u64 = 64 << 20;

trait Source {
    fn len(&self) -> u64;
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
}

struct FileSource<'a> {
    file: &'a File,
    len: u64,
}

impl Source for FileSource<'_> {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
}

struct SliceSource<'a>(&'a [u8]);

impl Source for SliceSource<'_> {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start
            .checked_add(buf.len())
            .and_then(|end| self.0.get(start..end))
        {
            Some(s) => {
                buf.copy_from_slice(s);
                Ok(())
            }
            None => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

/// Reads ranges, serving them from the first page when they fall inside it.
struct Reader<'a, S: Source> {
    src: &'a S,
    head: Vec<u8>,
    big: bool,
    is64: bool,
}

impl<S: Source> Reader<'_, S> {
    fn range(&self, offset: u64, size: u64) -> Result<Cow<'_, [u8]>, ElfError> {
        let end = offset
            .checked_add(size)
            .ok_or(ElfError::Malformed("range overflows"))?;
        if end > self.src.len() || size > MAX_TABLE {
            return Err(ElfError::Malformed("range beyond end of file"));
        }
        if end <= self.head.len() as u64 {
            // Both fit in usize: they are below head.len().
            return Ok(Cow::Borrowed(&self.head[offset as usize..end as usize]));
        }
        let mut buf = vec![0u8; size as usize];
        self.src
            .read_at(&mut buf, offset)
            .map_err(|source| ElfError::Io {
                path: String::new(),
                source,
            })?;
        Ok(Cow::Owned(buf))
    }

    fn u16(&self, b: &[u8], at: usize) -> u16 {
        let v = [
            b.get(at).copied().unwrap_or(0),
            b.get(at + 1).copied().unwrap_or(0),
        ];
        if self.big {
            u16::from_be_bytes(v)
        } else {
            u16::from_le_bytes(v)
        }
    }

    fn u32(&self, b: &[u8], at: usize) -> u32 {
        let mut v = [0u8; 4];
        if let Some(s) = b.get(at..at + 4) {
            v.copy_from_slice(s);
        }
        if self.big {
            u32::from_be_bytes(v)
        } else {
            u32::from_le_bytes(v)
        }
    }

    fn u64(&self, b: &[u8], at: usize) -> u64 {
        let mut v = [0u8; 8];
        if let Some(s) = b.get(at..at + 8) {
            v.copy_from_slice(s);
        }
        if self.big {
            u64::from_be_bytes(v)
        } else {
            u64::from_le_bytes(v)
        }
    }

    /// A word: 4 bytes in ELF32, 8 in ELF64.
    fn word(&self, b: &[u8], at: usize) -> u64 {
        if self.is64 {
            self.u64(b, at)
        } else {
            u64::from(self.u32(b, at))
        }
    }
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PT_GNU_STACK: u32 = 0x6474_e551;
const PT_GNU_RELRO: u32 = 0x6474_e552;
const PF_X: u32 = 1;

const DT_NULL: u64 = 0;
const DT_STRTAB: u64 = 5;
const DT_STRSZ: u64 = 10;
const DT_RPATH: u64 = 15;
const DT_DEBUG: u64 = 21;
const DT_BIND_NOW: u64 = 24;
const DT_RUNPATH: u64 = 29;
const DT_FLAGS: u64 = 30;
const DT_FLAGS_1: u64 = 0x6fff_fffb;
const DF_BIND_NOW: u64 = 0x8;
const DF_1_NOW: u64 = 0x1;
const DF_1_PIE: u64 = 0x0800_0000;

const SHT_SYMTAB: u32 = 2;
const SHT_DYNSYM: u32 = 11;

const CANARY_SYMBOLS: [&[u8]; 3] = [
    b"__stack_chk_fail",
    b"__stack_chk_guard",
    b"__intel_security_cookie",
];

struct Segment {
    kind: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

fn inspect_source<S: Source>(src: &S) -> Result<ElfInfo, ElfError> {
    let head_len = usize::try_from(src.len().min(HEAD as u64)).unwrap_or(HEAD);
    if head_len < 16 {
        return Err(ElfError::NotElf);
    }
    let mut head = vec![0u8; head_len];
    src.read_at(&mut head, 0).map_err(|source| ElfError::Io {
        path: String::new(),
        source,
    })?;
    if &head[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    let is64 = match head[4] {
        1 => false,
        2 => true,
        _ => return Err(ElfError::Malformed("unknown ELF class")),
    };
    let big = match head[5] {
        1 => false,
        2 => true,
        _ => return Err(ElfError::Malformed("unknown ELF data encoding")),
    };
    let r = Reader {
        src,
        head,
        big,
        is64,
    };
    let ehdr = r.range(0, if is64 { 64 } else { 52 })?;
    let e_type = r.u16(&ehdr, 16);
    let (phoff, shoff, phentsize, phnum, shentsize, shnum) = if is64 {
        (
            r.u64(&ehdr, 32),
            r.u64(&ehdr, 40),
            r.u16(&ehdr, 54),
            r.u16(&ehdr, 56),
            r.u16(&ehdr, 58),
            r.u16(&ehdr, 60),
        )
    } else {
        (
            u64::from(r.u32(&ehdr, 28)),
            u64::from(r.u32(&ehdr, 32)),
            r.u16(&ehdr, 42),
            r.u16(&ehdr, 44),
            r.u16(&ehdr, 46),
            r.u16(&ehdr, 48),
        )
    };
    let elf_type = match e_type {
        1 => ElfType::Relocatable,
        2 => ElfType::Executable,
        3 => ElfType::Shared,
        t => ElfType::Other(t),
    };

    // Program headers.
    let mut segments = Vec::with_capacity(usize::from(phnum));
    if phnum > 0 {
        let min = if is64 { 56 } else { 32 };
        if usize::from(phentsize) < min {
            return Err(ElfError::Malformed("program header entry too small"));
        }
        let table = r.range(phoff, u64::from(phentsize) * u64::from(phnum))?;
        for i in 0..usize::from(phnum) {
            let p = &table[i * usize::from(phentsize)..];
            let seg = if is64 {
                Segment {
                    kind: r.u32(p, 0),
                    flags: r.u32(p, 4),
                    offset: r.u64(p, 8),
                    vaddr: r.u64(p, 16),
                    filesz: r.u64(p, 32),
                }
            } else {
                Segment {
                    kind: r.u32(p, 0),
                    offset: u64::from(r.u32(p, 4)),
                    vaddr: u64::from(r.u32(p, 8)),
                    filesz: u64::from(r.u32(p, 16)),
                    flags: r.u32(p, 24),
                }
            };
            segments.push(seg);
        }
    }
    let has = |kind| segments.iter().any(|s| s.kind == kind);
    let interp = has(PT_INTERP);
    let gnu_relro = has(PT_GNU_RELRO);
    let nx = segments
        .iter()
        .find(|s| s.kind == PT_GNU_STACK)
        .is_some_and(|s| s.flags & PF_X == 0);

    // Section headers: the dynamic string table (as readelf finds it) and .symtab.
    let mut dynstr_range = None;
    let mut symtab_strtab = None;
    if shnum > 0 && shoff > 0 {
        let min = if is64 { 64 } else { 40 };
        if usize::from(shentsize) >= min {
            if let Ok(table) = r.range(shoff, u64::from(shentsize) * u64::from(shnum)) {
                let section = |i: usize| -> Option<(u32, u64, u64, u32)> {
                    let s = table.get(i * usize::from(shentsize)..)?;
                    Some(if is64 {
                        (r.u32(s, 4), r.u64(s, 24), r.u64(s, 32), r.u32(s, 40))
                    } else {
                        (
                            r.u32(s, 4),
                            u64::from(r.u32(s, 16)),
                            u64::from(r.u32(s, 20)),
                            r.u32(s, 24),
                        )
                    })
                };
                for i in 0..usize::from(shnum) {
                    let Some((kind, _, _, link)) = section(i) else {
                        continue;
                    };
                    if kind == SHT_DYNSYM || kind == SHT_SYMTAB {
                        if let Some((_, off, size, _)) = section(link as usize) {
                            if kind == SHT_DYNSYM {
                                dynstr_range = Some((off, size));
                            } else {
                                symtab_strtab = Some((off, size));
                            }
                        }
                    }
                }
            }
        }
    }

    // Dynamic section.
    let mut bind_now = false;
    let mut debug = false;
    let mut flags_1 = 0u64;
    let mut strtab_vaddr = None;
    let mut strsz = 0u64;
    let mut rpath_off = None;
    let mut runpath_off = None;
    let dynamic_seg = segments.iter().find(|s| s.kind == PT_DYNAMIC);
    if let Some(d) = dynamic_seg {
        let entsize = if is64 { 16 } else { 8 };
        let dynamic = r.range(d.offset, d.filesz)?;
        for entry in dynamic.chunks_exact(entsize) {
            let tag = r.word(entry, 0);
            let val = r.word(entry, entsize / 2);
            match tag {
                DT_NULL => break,
                DT_STRTAB => strtab_vaddr = Some(val),
                DT_STRSZ => strsz = val,
                DT_RPATH => rpath_off = Some(val),
                DT_RUNPATH => runpath_off = Some(val),
                DT_DEBUG => debug = true,
                DT_BIND_NOW => bind_now = true,
                DT_FLAGS if val & DF_BIND_NOW != 0 => bind_now = true,
                DT_FLAGS_1 => flags_1 = val,
                _ => {}
            }
        }
    }
    if flags_1 & DF_1_NOW != 0 {
        bind_now = true;
    }
    // Without section headers, find the dynamic string table through the load map.
    if dynstr_range.is_none() {
        if let Some(vaddr) = strtab_vaddr {
            dynstr_range = segments
                .iter()
                .filter(|s| s.kind == PT_LOAD)
                .find(|s| vaddr >= s.vaddr && vaddr < s.vaddr.saturating_add(s.filesz))
                .map(|s| (vaddr - s.vaddr + s.offset, strsz));
        }
    }
    let dynstr = match dynstr_range {
        Some((off, size)) => r.range(off, size).ok(),
        None => None,
    };
    let dynstr: &[u8] = dynstr.as_deref().unwrap_or(&[]);

    let string_at = |off: Option<u64>| -> Option<String> {
        let off = usize::try_from(off?).ok()?;
        let rest = dynstr.get(off..)?;
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        Some(String::from_utf8_lossy(&rest[..end]).into_owned())
    };
    let rpath = string_at(rpath_off);
    let runpath = string_at(runpath_off);

    let mut canary = contains_any(dynstr, &CANARY_SYMBOLS);
    let fortify = dynstr
        .split(|&b| b == 0)
        .any(|name| name.ends_with(b"_chk"));
    if !canary {
        if let Some((off, size)) = symtab_strtab {
            if let Ok(strtab) = r.range(off, size) {
                canary = contains_any(&strtab, &CANARY_SYMBOLS);
            }
        }
    }

    let pie = elf_type == ElfType::Shared && (debug || flags_1 & DF_1_PIE != 0);
    let relro = match (gnu_relro, bind_now) {
        (false, _) => Relro::None,
        (true, false) => Relro::Partial,
        (true, true) => Relro::Full,
    };
    Ok(ElfInfo {
        elf_type,
        is_64: is64,
        interp,
        dynamic: dynamic_seg.is_some(),
        pie,
        relro,
        canary,
        nx,
        fortify,
        rpath,
        runpath,
        symbols: symtab_strtab.is_some(),
    })
}

fn contains_any(haystack: &[u8], needles: &[&[u8]]) -> bool {
    // Every needle starts with "__": find candidate positions with a cheap scan.
    let mut i = 0;
    while let Some(pos) = haystack
        .get(i..)
        .and_then(|rest| rest.windows(2).position(|w| w == b"__"))
    {
        let at = i + pos;
        let rest = &haystack[at..];
        if needles.iter().any(|n| rest.starts_with(n)) {
            return true;
        }
        i = at + 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const PROGRAM: &str = r#"
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    char buf[64];
    strcpy(buf, argc > 1 ? argv[1] : "x");
    memcpy(buf + 1, argv[0], argc);
    printf("%s\n", buf);
    return 0;
}
"#;

    fn compile(dir: &Path, name: &str, flags: &[&str]) -> Option<std::path::PathBuf> {
        let src = dir.join("prog.c");
        std::fs::write(&src, PROGRAM).ok()?;
        let out = dir.join(name);
        let status = Command::new("gcc")
            .args(flags)
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .status()
            .ok()?;
        status.success().then_some(out)
    }

    #[test]
    fn hardened_and_unhardened_binaries_flag_by_flag() {
        let dir = tempfile::tempdir().unwrap();
        let Some(hard) = compile(
            dir.path(),
            "hard",
            &[
                "-fPIE",
                "-pie",
                "-Wl,-z,relro,-z,now",
                "-fstack-protector-strong",
                "-D_FORTIFY_SOURCE=2",
                "-O2",
                "-s",
            ],
        ) else {
            patchday_lab::skip_or_fail(
                patchday_lab::Requirement::GCC,
                "gcc could not build the test program",
            );
            return;
        };
        let soft = compile(
            dir.path(),
            "soft",
            &[
                "-no-pie",
                "-fno-stack-protector",
                "-z",
                "execstack",
                "-Wl,-z,norelro",
                "-Wl,-rpath,/opt/x",
                "-Wl,--disable-new-dtags",
                "-O0",
            ],
        )
        .unwrap();
        let runpath = compile(
            dir.path(),
            "runpath",
            &[
                "-Wl,-z,relro,-z,lazy",
                "-Wl,-rpath,/opt/y",
                "-Wl,--enable-new-dtags",
            ],
        )
        .unwrap();

        let lib = compile(dir.path(), "lib.so", &["-shared", "-fPIC", "-Wl,-z,now"]).unwrap();

        let h = inspect(&hard).unwrap();
        assert_eq!(h.elf_type, ElfType::Shared);
        assert!(h.pie, "pie");
        assert_eq!(h.relro, Relro::Full);
        assert!(h.canary, "canary");
        assert!(h.nx, "nx");
        assert!(h.fortify, "fortify");
        assert_eq!(h.rpath, None);
        assert_eq!(h.runpath, None);
        assert!(!h.symbols, "stripped");

        let s = inspect(&soft).unwrap();
        assert_eq!(s.elf_type, ElfType::Executable);
        assert!(!s.pie, "pie");
        assert_eq!(s.relro, Relro::None);
        assert!(!s.canary, "canary");
        assert!(!s.nx, "nx");
        assert!(!s.fortify, "fortify");
        assert_eq!(s.rpath.as_deref(), Some("/opt/x"));
        assert_eq!(s.runpath, None);
        assert!(s.symbols, "not stripped");

        let p = inspect(&runpath).unwrap();
        assert_eq!(p.relro, Relro::Partial);
        assert_eq!(p.rpath, None);
        assert_eq!(p.runpath.as_deref(), Some("/opt/y"));

        let l = inspect(&lib).unwrap();
        assert_eq!(l.elf_type, ElfType::Shared);
        assert!(!l.pie && l.is_dso(), "a shared library is not a PIE");
        assert!(!l.interp);

        // The same answers from memory as from the file.
        let bytes = std::fs::read(&hard).unwrap();
        assert_eq!(inspect_bytes(&bytes).unwrap(), h);

        let facts = h.to_facts("/x/hard", BinaryReason::Requested);
        assert!(facts.pie && facts.canary && facts.nx && facts.fortify);
        assert_eq!(facts.relro, Relro::Full);
    }

    #[test]
    fn rejects_non_elf_and_truncated_files() {
        assert!(matches!(
            inspect_bytes(b"#!/bin/sh\necho hi\n"),
            Err(ElfError::NotElf)
        ));
        assert!(matches!(inspect_bytes(b"\x7fEL"), Err(ElfError::NotElf)));
        let mut truncated = b"\x7fELF\x02\x01\x01".to_vec();
        truncated.resize(40, 0);
        assert!(inspect_bytes(&truncated).is_err());
        // A header that points its program headers past the end.
        let mut bad = vec![0u8; 64];
        bad[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        bad[16] = 2;
        bad[32] = 0xff;
        bad[54] = 56;
        bad[56] = 3;
        assert!(matches!(inspect_bytes(&bad), Err(ElfError::Malformed(_))));
        assert!(!is_elf(Path::new("/nonexistent/file")));
    }

    #[test]
    fn canary_scan_finds_names_inside_tables() {
        assert!(contains_any(
            b"\0libc.so.6\0__stack_chk_fail\0",
            &CANARY_SYMBOLS
        ));
        assert!(contains_any(b"x__intel_security_cookie", &CANARY_SYMBOLS));
        assert!(!contains_any(b"\0__stack_chk\0__\0", &CANARY_SYMBOLS));
    }
}
