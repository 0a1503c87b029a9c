//! Print the ELF hardening of files, one line each, in the form of `checksec --format=csv`
//! (RELRO, canary, NX, PIE, RPATH, RUNPATH, symbols, FORTIFY, path). Used by
//! `bench/audit-elf.sh`.
//!
//! Usage: `elfcheck [--listfile FILE] [PATH...]`

use patchday_audit::elf::{self, ElfType};
use patchday_audit::model::Relro;
use std::io::Write;
use std::path::Path;

fn main() -> std::process::ExitCode {
    let mut paths: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--listfile" {
            let Some(list) = args.next() else {
                eprintln!("--listfile needs a file");
                return std::process::ExitCode::from(2);
            };
            match std::fs::read_to_string(&list) {
                Ok(text) => paths.extend(text.lines().filter(|l| !l.is_empty()).map(String::from)),
                Err(e) => {
                    eprintln!("reading {list}: {e}");
                    return std::process::ExitCode::from(2);
                }
            }
        } else if let Some(list) = a.strip_prefix("--listfile=") {
            match std::fs::read_to_string(list) {
                Ok(text) => paths.extend(text.lines().filter(|l| !l.is_empty()).map(String::from)),
                Err(e) => {
                    eprintln!("reading {list}: {e}");
                    return std::process::ExitCode::from(2);
                }
            }
        } else {
            paths.push(a);
        }
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = false;
    for p in &paths {
        match elf::inspect(Path::new(p)) {
            Ok(i) => {
                let relro = match i.relro {
                    Relro::Full => "Full RELRO",
                    Relro::Partial => "Partial RELRO",
                    Relro::None => "No RELRO",
                };
                let pie = match i.elf_type {
                    ElfType::Executable => "No PIE",
                    ElfType::Shared if i.pie => "PIE enabled",
                    ElfType::Shared => "DSO",
                    ElfType::Relocatable => "REL",
                    ElfType::Other(_) => "Not an ELF file",
                };
                let line = format!(
                    "{relro},{},{},{pie},{},{},{},{},{p}",
                    if i.canary {
                        "Canary found"
                    } else {
                        "No Canary found"
                    },
                    if i.nx { "NX enabled" } else { "NX disabled" },
                    if i.rpath.is_some() {
                        "RPATH"
                    } else {
                        "No RPATH"
                    },
                    if i.runpath.is_some() {
                        "RUNPATH"
                    } else {
                        "No RUNPATH"
                    },
                    if i.symbols { "Symbols" } else { "No Symbols" },
                    if i.fortify { "Yes" } else { "No" },
                );
                if writeln!(out, "{line}").is_err() {
                    return std::process::ExitCode::from(1);
                }
            }
            Err(e) => {
                eprintln!("{p}: {e}");
                failed = true;
            }
        }
    }
    if out.flush().is_err() || failed {
        return std::process::ExitCode::from(1);
    }
    std::process::ExitCode::SUCCESS
}
