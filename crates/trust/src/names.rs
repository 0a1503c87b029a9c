//! Flat, safe target names: one file name, no directories.

use crate::TrustError;

/// Longest target name; with the 64-hex-digit prefix and a dot it still fits a 255-byte file name.
pub const MAX_TARGET_NAME_LEN: usize = 190;

/// Checks that `name` is a flat file name that is safe on every filesystem and in URLs.
///
/// Allowed: ASCII letters and digits and `. _ + ~ -`, starting with a letter or digit, at most
/// [`MAX_TARGET_NAME_LEN`] bytes. So no `/`, no `..`, no hidden files, no spaces or controls.
pub fn check_target_name(name: &str) -> Result<(), TrustError> {
    let reject = |reason| {
        Err(TrustError::UnsafeTargetName {
            name: name.to_owned(),
            reason,
        })
    };
    let Some(first) = name.chars().next() else {
        return reject("it is empty");
    };
    if name.len() > MAX_TARGET_NAME_LEN {
        return reject("it is longer than 190 bytes");
    }
    if name.contains('/') || name.contains('\\') {
        return reject("target names are flat: no directories");
    }
    if !first.is_ascii_alphanumeric() {
        return reject("it must start with a letter or digit");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '~' | '-'))
    {
        return reject("only ASCII letters, digits and . _ + ~ - are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_payload_and_document_names_pass() {
        for ok in [
            "libexpat1_2.5.0-1+deb12u5_amd64.deb",
            "foo_1.2.tar.zst",
            "update-PD-2026-0001.json",
            "pkg_1.0~rc1-1_all.deb",
        ] {
            check_target_name(ok).unwrap();
        }
    }

    #[test]
    fn path_traversal_and_odd_names_are_rejected() {
        for bad in [
            "",
            "..",
            "../etc/passwd",
            "a/b.deb",
            "a\\b.deb",
            ".hidden",
            "-rf",
            "with space.deb",
            "nul\0.deb",
            "ünïcode.deb",
            &"a".repeat(191),
        ] {
            assert!(
                matches!(
                    check_target_name(bad),
                    Err(TrustError::UnsafeTargetName { .. })
                ),
                "{bad:?} was accepted"
            );
        }
    }
}
