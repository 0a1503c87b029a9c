//! Version ordering: Debian (dpkg) and RPM (rpmvercmp).
//!
//! The Debian comparison is our own port of dpkg's `parseversion` and `verrevcmp`
//! (lib/dpkg/parsehelp.c, lib/dpkg/version.c), not the `debversion` crate. We checked
//! `debversion` 0.5 and it falls short in four ways:
//! - it orders an absent number before a zero (`1.0.` < `1.0.0`, `1a` < `1a0`) where
//!   dpkg, which skips leading zeros, says equal;
//! - it refuses strings that dpkg accepts with a warning and still orders (surrounding
//!   blanks, `_`), so an agent could not compare versions dpkg itself installed;
//! - it accepts strings dpkg rejects (`a:1`, a trailing `-`);
//! - it allocates (regex captures, `String`s) on every parse, several times slower in
//!   the applicability hot loop (see `bench/versions.sh`).
//!
//! The port below works on borrowed bytes and never allocates. `debversion` stays a
//! dev-dependency: a test checks that wherever the two differ, dpkg sides with us.

use crate::PkgError;
use std::cmp::Ordering;

/// A Debian version split the way dpkg splits it; borrowed, no allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DebVersion<'a> {
    epoch: u32,
    upstream: &'a [u8],
    revision: &'a [u8],
}

/// Why dpkg would refuse a version string outright (`dpkg` exits with status 2).
fn parse_deb(text: &str) -> Result<DebVersion<'_>, &'static str> {
    let s = text.trim_matches(|c| c == ' ' || c == '\t').as_bytes();
    if s.is_empty() {
        return Err("version string is empty");
    }
    if s.iter().any(|&c| c == b' ' || c == b'\t') {
        return Err("version string has embedded spaces");
    }
    let (epoch, rest) = match s.iter().position(|&c| c == b':') {
        Some(colon) => {
            let digits = &s[..colon];
            // dpkg uses strtol: an optional sign is tolerated, the rest must be digits.
            let (negative, body) = match digits.first() {
                Some(b'-') => (true, &digits[1..]),
                Some(b'+') => (false, &digits[1..]),
                _ => (false, digits),
            };
            if body.is_empty() {
                return Err("epoch in version is empty");
            }
            if !body.iter().all(u8::is_ascii_digit) {
                return Err("epoch in version is not number");
            }
            let mut value: u64 = 0;
            for &d in body {
                value = value.saturating_mul(10).saturating_add(u64::from(d - b'0'));
            }
            if negative && value != 0 {
                return Err("epoch in version is negative");
            }
            let epoch = match u32::try_from(value) {
                Ok(e) if e <= i32::MAX as u32 => e,
                _ => return Err("epoch in version is too big"),
            };
            let rest = &s[colon + 1..];
            if rest.is_empty() {
                return Err("nothing after colon in version number");
            }
            (epoch, rest)
        }
        None => (0, s),
    };
    let (upstream, revision): (&[u8], &[u8]) = match rest.iter().rposition(|&c| c == b'-') {
        Some(h) => {
            if h + 1 == rest.len() {
                return Err("revision number is empty");
            }
            (&rest[..h], &rest[h + 1..])
        }
        None => (rest, b""),
    };
    if upstream.is_empty() {
        return Err("upstream version is empty");
    }
    Ok(DebVersion {
        epoch,
        upstream,
        revision,
    })
}

/// dpkg's character weight: `~` sorts before the end of a part, letters before other symbols.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp` on one part (upstream version or revision).
fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0usize, 0usize);
    let at = |s: &[u8], k: usize| s.get(k).copied();
    let is_digit = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_digit());
    while i < a.len() || j < b.len() {
        while (i < a.len() && !is_digit(at(a, i))) || (j < b.len() && !is_digit(at(b, j))) {
            let ac = order(at(a, i));
            let bc = order(at(b, j));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while at(a, i) == Some(b'0') {
            i += 1;
        }
        while at(b, j) == Some(b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while is_digit(at(a, i)) && is_digit(at(b, j)) {
            if first_diff == Ordering::Equal {
                first_diff = at(a, i).cmp(&at(b, j));
            }
            i += 1;
            j += 1;
        }
        if is_digit(at(a, i)) {
            return Ordering::Greater;
        }
        if is_digit(at(b, j)) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

/// Compares two Debian versions exactly as `dpkg --compare-versions` does.
///
/// Like dpkg, this accepts versions that break Debian policy only in their characters
/// (dpkg warns and still compares); it fails where dpkg fails (empty string, embedded
/// blanks, a bad epoch, an empty upstream part or revision).
pub fn compare_deb(a: &str, b: &str) -> Result<Ordering, PkgError> {
    let va = parse_deb(a).map_err(|reason| invalid(a, reason))?;
    let vb = parse_deb(b).map_err(|reason| invalid(b, reason))?;
    Ok(va
        .epoch
        .cmp(&vb.epoch)
        .then_with(|| verrevcmp(va.upstream, vb.upstream))
        .then_with(|| verrevcmp(va.revision, vb.revision)))
}

fn invalid(version: &str, reason: &'static str) -> PkgError {
    PkgError::InvalidVersion {
        version: version.to_string(),
        reason,
    }
}

/// True when `v` is a Debian version that dpkg accepts without even a warning (policy 5.6.12).
pub fn is_valid_deb(v: &str) -> bool {
    // dpkg trims surrounding blanks before checking; a strict check does not.
    if v.trim_matches(|c| c == ' ' || c == '\t').len() != v.len() {
        return false;
    }
    let Ok(p) = parse_deb(v) else {
        return false;
    };
    let upstream_ok = p.upstream.first().is_some_and(u8::is_ascii_digit)
        && p.upstream
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || b".-+~:".contains(&c));
    let revision_ok = p
        .revision
        .iter()
        .all(|&c| c.is_ascii_alphanumeric() || b".+~".contains(&c));
    upstream_ok && revision_ok
}

/// rpm's `rpmvercmp` on one field (version or release), including `~` and `^`.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);
    let at = |s: &[u8], k: usize| s.get(k).copied().unwrap_or(0);
    let sep = |c: u8| c != 0 && !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    loop {
        while sep(at(a, i)) {
            i += 1;
        }
        while sep(at(b, j)) {
            j += 1;
        }
        let (ca, cb) = (at(a, i), at(b, j));
        if ca == 0 && cb == 0 {
            break;
        }
        // Tilde sorts before everything, even the end of the string.
        if ca == b'~' || cb == b'~' {
            if ca != b'~' {
                return Ordering::Greater;
            }
            if cb != b'~' {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        // Caret sorts after the end of the string but before anything else.
        if ca == b'^' || cb == b'^' {
            if ca == 0 {
                return Ordering::Less;
            }
            if cb == 0 {
                return Ordering::Greater;
            }
            if ca != b'^' {
                return Ordering::Greater;
            }
            if cb != b'^' {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca == 0 || cb == 0 {
            break;
        }
        let isnum = ca.is_ascii_digit();
        let class = |c: u8| {
            if isnum {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let (si, sj) = (i, j);
        while class(at(a, i)) {
            i += 1;
        }
        while class(at(b, j)) {
            j += 1;
        }
        let (mut sa, mut sb) = (&a[si..i], &b[sj..j]);
        if sb.is_empty() {
            // Different kinds of segment: numeric is newer than alphabetic.
            return if isnum {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        if isnum {
            while sa.first() == Some(&b'0') {
                sa = &sa[1..];
            }
            while sb.first() == Some(&b'0') {
                sb = &sb[1..];
            }
            match sa.len().cmp(&sb.len()) {
                Ordering::Equal => {}
                other => return other,
            }
        }
        match sa.cmp(sb) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    // All segments equal: whichever still has characters left wins.
    match (at(a, i), at(b, j)) {
        (0, 0) => Ordering::Equal,
        (0, _) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

/// Splits `[epoch:]version[-release]` the way librpm's `rpmverParse` does.
fn split_evr(evr: &str) -> (&str, &str, Option<&str>) {
    let digits = evr.bytes().take_while(u8::is_ascii_digit).count();
    let (epoch, rest) = if evr.as_bytes().get(digits) == Some(&b':') {
        let e = &evr[..digits];
        (if e.is_empty() { "0" } else { e }, &evr[digits + 1..])
    } else {
        ("0", evr)
    };
    match rest.rfind('-') {
        Some(h) => (epoch, &rest[..h], Some(&rest[h + 1..])),
        None => (epoch, rest, None),
    }
}

/// Compares two RPM `[epoch:]version[-release]` strings as librpm 4.18's `rpmverCmp`
/// (Python `rpm.ver`, Lua `rpm.vercmp`) does.
///
/// A missing epoch is `0`; a missing release compares as empty, so `1.0` < `1.0-3`
/// (checked against librpm; dependency ranges, which ignore a missing release, are not
/// this function's business).
pub fn compare_rpm(a: &str, b: &str) -> Ordering {
    let (ea, va, ra) = split_evr(a);
    let (eb, vb, rb) = split_evr(b);
    rpmvercmp(ea, eb)
        .then_with(|| rpmvercmp(va, vb))
        .then_with(|| rpmvercmp(ra.unwrap_or(""), rb.unwrap_or("")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    fn deb(a: &str, b: &str) -> Ordering {
        compare_deb(a, b).unwrap()
    }

    #[test]
    fn debian_basics() {
        assert_eq!(deb("1.0", "1.0"), Equal);
        assert_eq!(deb("1.0", "1.1"), Less);
        assert_eq!(deb("1.10", "1.9"), Greater);
        assert_eq!(deb("1.0-1", "1.0"), Greater);
        assert_eq!(deb("1.0-0", "1.0"), Equal);
        assert_eq!(deb("0:1.0", "1.0"), Equal);
        assert_eq!(deb("1:0.1", "9.9"), Greater);
        assert_eq!(deb("1.0~rc1", "1.0"), Less);
        assert_eq!(deb("1.0~~", "1.0~"), Less);
        assert_eq!(deb("1.0~~a", "1.0~~"), Greater);
        assert_eq!(deb("1.0+b1", "1.0"), Greater);
        assert_eq!(deb("1.0a", "1.0+"), Less);
        assert_eq!(deb("1.0a", "1.0."), Less);
        assert_eq!(deb("1.0.", "1.0+"), Greater);
        assert_eq!(deb("001", "1"), Equal);
        assert_eq!(deb("2.30-1", "2.3-1"), Greater);
        assert_eq!(deb("1.2-3+deb12u1", "1.2-3"), Greater);
        assert_eq!(deb("1.2-3+deb12u1", "1.2-3+deb12u10"), Less);
        assert_eq!(deb("1:2:3", "1:2:4"), Less);
        assert_eq!(
            deb("99999999999999999999999", "99999999999999999999998"),
            Greater
        );
        // dpkg compares these with a warning; we follow it.
        assert_eq!(deb("a1", "b1"), Less);
        assert_eq!(deb(" 1.0 ", "1.0"), Equal);
        assert_eq!(deb("1.0_1", "1.0.1"), Greater);
    }

    #[test]
    fn debian_errors_match_dpkg() {
        for bad in [
            "", "  ", "1 0", ":1", "a:1", "1:", "1.0-", "-1", "1:-1", "-1:2",
        ] {
            let e = compare_deb(bad, "1").unwrap_err();
            assert!(e.to_string().contains("invalid Debian version"), "{bad:?}");
        }
        assert!(compare_deb("0:1", "1").is_ok());
    }

    #[test]
    fn validity() {
        for ok in [
            "1",
            "1.0-1",
            "1:2.3~rc1+dfsg-4+deb12u1",
            "2:1.0-1.1~bpo12+1",
        ] {
            assert!(is_valid_deb(ok), "{ok}");
        }
        for bad in [
            "", "a1", "1.0_1", " 1", "1:", "1.0-", "1-a_b", "1-2:3", "x:1",
        ] {
            assert!(!is_valid_deb(bad), "{bad}");
        }
    }

    #[test]
    fn rpm_segments() {
        // Cases from rpm's own test suite (tests/rpmvercmp.at).
        let cases: &[(&str, &str, Ordering)] = &[
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("2.0.1", "2.0", Greater),
            ("2.0.1a", "2.0.1", Greater),
            ("5.5p1", "5.5p2", Less),
            ("5.5p10", "5.5p1", Greater),
            ("10xyz", "10.1xyz", Less),
            ("xyz10", "xyz10.1", Less),
            ("xyz.4", "8", Less),
            ("5.5p1", "5.5.p1", Equal),
            ("5.6p1", "5.5.p1", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~rc1~git123", "1.0~rc1", Less),
            ("1.0^", "1.0", Greater),
            ("1.0^git1", "1.0", Greater),
            ("1.0^git1", "1.01", Less),
            ("1.0^20160101", "1.0.1", Less),
            ("1.0^20160101^git1", "1.0^20160101", Greater),
            ("1.0~rc1^git1", "1.0~rc1", Greater),
            ("1.0^git1~pre", "1.0^git1", Less),
            ("a", "1", Less),
            ("a+", "a_", Equal),
            ("+", "_", Equal),
            ("", "", Equal),
            ("1.01", "1.1", Equal),
            ("1.0001", "1.1", Equal),
        ];
        for (a, b, want) in cases {
            assert_eq!(rpmvercmp(a, b), *want, "{a} vs {b}");
            assert_eq!(rpmvercmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn rpm_evr() {
        assert_eq!(compare_rpm("1:1.0-1", "2.0-1"), Greater);
        assert_eq!(compare_rpm("0:1.0-1", "1.0-1"), Equal);
        assert_eq!(compare_rpm("1.0", "1.0-5"), Less);
        assert_eq!(compare_rpm("1.0", "1.0-~1"), Greater);
        assert_eq!(compare_rpm("1.0-5", "1.0-10"), Less);
        assert_eq!(compare_rpm("1.0-5.el9", "1.0-5.el9_1"), Less);
        assert_eq!(compare_rpm(":1.0", "1.0"), Equal);
    }
}
