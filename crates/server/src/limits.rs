//! Finding 4 (issue 8): limits on what callers may send, checked at the API edge so that
//! no name, message or list can grow the database or every later report. Each refusal
//! names the limit: 400 for a field that is too long or malformed, 413 for too many items.

use crate::error::ApiError;
use patchday_types::api::{ErrorCode, StateReport};
use patchday_types::Inventory;

/// Longest host name (RFC 1035's limit for a full domain name), in bytes.
pub const MAX_HOSTNAME: usize = 253;
/// Longest name or label (tenants, groups, tokens, packages, versions), in bytes.
pub const MAX_NAME: usize = 256;
/// Longest message (an agent's state message), in bytes.
pub const MAX_MESSAGE: usize = 4096;
/// Most per-update states in one report.
pub const MAX_STATES: usize = 1000;
/// Most packages (installed, unfinished and bundles together) in one inventory.
pub const MAX_PACKAGES: usize = 100_000;

/// A host name: 1 to 253 bytes of letters, digits, '-', '_' and '.'.
pub fn hostname(name: &str) -> Result<(), ApiError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if name.is_empty() || name.len() > MAX_HOSTNAME || !ok_chars {
        let shown: String = name.chars().take(40).filter(|c| !c.is_control()).collect();
        return Err(ApiError::bad_request(format!(
            "hostname {shown:?}{} is not a valid host name: at most {MAX_HOSTNAME} bytes of \
             letters, digits, '-', '_' and '.' (this one has {} bytes)",
            if name.chars().count() > 40 { "..." } else { "" },
            name.len()
        )));
    }
    Ok(())
}

/// A name or label of at most [`MAX_NAME`] bytes without control characters.
pub fn name(what: &str, value: &str) -> Result<(), ApiError> {
    if value.len() > MAX_NAME {
        return Err(ApiError::bad_request(format!(
            "{what} is {} bytes long; the limit is {MAX_NAME} bytes",
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "{what} contains control characters; use printable text"
        )));
    }
    Ok(())
}

/// An inventory: its host name, how many packages, and the length of every field.
pub fn inventory(inv: &Inventory) -> Result<(), ApiError> {
    hostname(&inv.hostname)?;
    let count = inv.packages.len() + inv.unfinished.len() + inv.bundles.len();
    if count > MAX_PACKAGES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the inventory lists {count} packages; the limit is {MAX_PACKAGES}"),
        ));
    }
    for (what, v) in [
        ("architecture", &inv.architecture),
        ("kernel version", &inv.kernel_running),
        ("os id", &inv.os.id),
        ("os version id", &inv.os.version_id),
        ("os codename", &inv.os.version_codename),
        ("os name", &inv.os.pretty_name),
    ] {
        name(what, v)?;
    }
    for p in inv.packages.iter().chain(&inv.unfinished) {
        for (what, v) in [
            ("package name", &p.name),
            ("package version", &p.version),
            ("package architecture", &p.architecture),
            ("source package name", &p.source),
            ("source version", &p.source_version),
        ] {
            name(what, v)?;
        }
    }
    for b in &inv.bundles {
        name("bundle name", &b.name)?;
        name("bundle version", &b.version)?;
    }
    for b in &inv.baselines {
        name("baseline name", &b.name)?;
        name("baseline version", &b.version)?;
    }
    // issue 9, point 4: dpkg's words about a broken host, one line.
    if let Some(m) = &inv.dpkg_broken {
        if m.len() > MAX_MESSAGE || m.chars().any(char::is_control) {
            return Err(ApiError::bad_request(format!(
                "the dpkg state is {} bytes long or has control characters; the limit is {MAX_MESSAGE} bytes of one line",
                m.len()
            )));
        }
    }
    Ok(())
}

/// A report's states: how many, their messages, and that each names an update the
/// catalog has (`known`).
pub fn states(states: &[StateReport], known: impl Fn(&str) -> bool) -> Result<(), ApiError> {
    if states.len() > MAX_STATES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "{} states in one report; the limit is {MAX_STATES}",
                states.len()
            ),
        ));
    }
    for s in states {
        if let Some(m) = &s.message {
            if m.len() > MAX_MESSAGE {
                return Err(ApiError::bad_request(format!(
                    "the message for {} is {} bytes long; the limit is {MAX_MESSAGE} bytes",
                    s.update,
                    m.len()
                )));
            }
        }
        if !known(s.update.as_str()) {
            return Err(ApiError::bad_request(format!(
                "state for update {} refused: the catalog has no such update",
                s.update
            )));
        }
    }
    Ok(())
}

// ---- Issue 9, point 6: hash-bin role names ----

/// `role` without a hash-bin suffix (`.bin-` and two lower-case hex digits), as the
/// publisher names a role's bins (`tenant-acme.bin-3f` belongs to `tenant-acme`).
pub fn strip_bin_suffix(role: &str) -> &str {
    match role.rsplit_once(".bin-") {
        Some((parent, hex))
            if hex.len() == 2
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            parent
        }
        _ => role,
    }
}

/// A new tenant's id must not end like a hash bin, or its private role's name would read
/// as another tenant's bin.
pub fn tenant_id(id: &patchday_types::TenantId) -> Result<(), ApiError> {
    if strip_bin_suffix(id.as_str()) != id.as_str() {
        return Err(ApiError::bad_request(format!(
            "tenant id {id} ends like a catalog hash bin (.bin-xx): choose another id"
        )));
    }
    Ok(())
}

/// Issue 13, point 1: most baselines one check-in reports on.
pub const MAX_BASELINES: usize = 64;
/// Issue 13, point 1: most drift lines and measurements per baseline report.
pub const MAX_BASELINE_ITEMS: usize = 1000;

/// Issue 13, point 1: a check-in's baseline reports: how many, their names, drift lines,
/// errors and measurements.
pub fn baseline_reports(reports: &[patchday_types::api::BaselineReport]) -> Result<(), ApiError> {
    if reports.len() > MAX_BASELINES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the check-in reports {} baselines; the limit is {MAX_BASELINES}",
                reports.len()
            ),
        ));
    }
    for r in reports {
        name("baseline name", &r.name)?;
        name("baseline version", &r.version)?;
        if r.drift.len() > MAX_BASELINE_ITEMS || r.measured.len() > MAX_BASELINE_ITEMS {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "baseline {}: more than {MAX_BASELINE_ITEMS} drift lines or measurements",
                    r.name
                ),
            ));
        }
        for m in r.drift.iter().chain(&r.error) {
            if m.len() > MAX_MESSAGE || m.chars().any(char::is_control) {
                return Err(ApiError::bad_request(format!(
                    "baseline {}: a drift line or error is {} bytes long or has control characters; the limit is {MAX_MESSAGE} bytes of one line",
                    r.name,
                    m.len()
                )));
            }
        }
        for k in r.measured.keys() {
            name("baseline measurement", k)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_over_253_bytes_or_with_other_characters_are_refused() {
        assert!(hostname("web-1.example.com").is_ok());
        assert!(hostname(&"a".repeat(253)).is_ok());
        for bad in [
            String::new(),
            "a".repeat(254),
            "web 1".into(),
            "web\u{1b}[2J".into(),
            "wéb".into(),
        ] {
            let e = hostname(&bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest, "{bad:?}");
            assert!(e.message.contains("253 bytes"), "{}", e.message);
        }
    }

    #[test]
    fn names_over_256_bytes_are_refused() {
        assert!(name("group name", &"x".repeat(256)).is_ok());
        let e = name("group name", &"x".repeat(257)).unwrap_err();
        assert_eq!(
            e.message,
            "group name is 257 bytes long; the limit is 256 bytes"
        );
    }
}
