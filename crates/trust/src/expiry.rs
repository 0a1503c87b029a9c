//! Which roles a catalog has and when each expires (issue 9, point 5), read from the
//! metadata bytes of a catalog someone already verified (the server's stored catalog,
//! or the publisher's own repository). Nothing here checks signatures: it reports.

use jiff::Timestamp;
use std::collections::BTreeMap;

/// One role's version and expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleMeta {
    /// `root`, `targets`, `snapshot`, `timestamp` or a delegated role.
    pub role: String,
    /// Its version.
    pub version: u64,
    /// When it expires.
    pub expires: Timestamp,
}

/// Version, expiry and the `meta` entries (file name to version) of one metadata file.
fn read(bytes: &[u8]) -> Option<(u64, Timestamp, BTreeMap<String, u64>)> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let signed = v.get("signed")?;
    let meta = signed
        .get("meta")
        .and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, e)| Some((k.clone(), e.get("version")?.as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    Some((
        signed.get("version")?.as_u64()?,
        signed.get("expires")?.as_str()?.parse().ok()?,
        meta,
    ))
}

/// Every role of a catalog: root from `root` (the trusted root's bytes), then timestamp,
/// the snapshot it names, and every targets role the snapshot names, each fetched with
/// `fetch(file name)` (`timestamp.json`, `7.snapshot.json`, `12.targets.json`...).
/// Files that are missing or unreadable are left out.
pub fn role_expiries(
    root: Option<&[u8]>,
    fetch: impl Fn(&str) -> Option<Vec<u8>>,
) -> Vec<RoleMeta> {
    let mut out = Vec::new();
    if let Some((version, expires, _)) = root.and_then(read) {
        out.push(RoleMeta {
            role: "root".into(),
            version,
            expires,
        });
    }
    let Some((ts_version, ts_expires, ts_meta)) = fetch("timestamp.json").as_deref().and_then(read)
    else {
        return out;
    };
    let mut roles = Vec::new();
    if let Some(sv) = ts_meta.get("snapshot.json") {
        if let Some((version, expires, meta)) = fetch(&format!("{sv}.snapshot.json"))
            .as_deref()
            .and_then(read)
        {
            roles.push(RoleMeta {
                role: "snapshot".into(),
                version,
                expires,
            });
            // `targets.json` first, then delegated roles by name.
            let mut names: Vec<(&String, &u64)> = meta.iter().collect();
            names.sort_by_key(|(n, _)| (n.as_str() != "targets.json", n.to_string()));
            for (name, v) in names {
                let Some(role) = name.strip_suffix(".json") else {
                    continue;
                };
                if let Some((version, expires, _)) =
                    fetch(&format!("{v}.{name}")).as_deref().and_then(read)
                {
                    // Issue 9, point 6: a role's hash bins (`mirror.bin-3f`) are shown as
                    // one line, `mirror.bin-*`, with the earliest expiry among them.
                    let role = match role.rsplit_once(".bin-") {
                        Some((parent, _)) => format!("{parent}.bin-*"),
                        None => role.to_string(),
                    };
                    match roles.iter_mut().find(|r: &&mut RoleMeta| r.role == role) {
                        Some(r) => {
                            r.version = r.version.max(version);
                            r.expires = r.expires.min(expires);
                        }
                        None => roles.push(RoleMeta {
                            role,
                            version,
                            expires,
                        }),
                    }
                }
            }
        }
    }
    // Order: root, targets (and delegations), snapshot, timestamp.
    if let Some(snapshot) = roles.first().cloned() {
        out.extend(roles.into_iter().skip(1));
        out.push(snapshot);
    }
    out.push(RoleMeta {
        role: "timestamp".into(),
        version: ts_version,
        expires: ts_expires,
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(version: u64, expires: &str, meta: &[(&str, u64)]) -> Vec<u8> {
        let meta: serde_json::Map<String, serde_json::Value> = meta
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!({ "version": v })))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "signed": { "version": version, "expires": expires, "meta": meta }
        }))
        .unwrap()
    }

    #[test]
    fn every_role_of_a_catalog_with_a_delegation() {
        let files: BTreeMap<String, Vec<u8>> = [
            (
                "timestamp.json",
                doc(9, "2026-12-02T00:00:00Z", &[("snapshot.json", 7)]),
            ),
            (
                "7.snapshot.json",
                doc(
                    7,
                    "2027-01-05T00:00:00Z",
                    &[("targets.json", 4), ("mirror.json", 2)],
                ),
            ),
            ("4.targets.json", doc(4, "2027-03-01T00:00:00Z", &[])),
            ("2.mirror.json", doc(2, "2027-02-01T00:00:00Z", &[])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let root = doc(1, "2027-12-01T00:00:00Z", &[]);
        let got = role_expiries(Some(&root), |n| files.get(n).cloned());
        let names: Vec<(&str, u64)> = got.iter().map(|r| (r.role.as_str(), r.version)).collect();
        assert_eq!(
            names,
            [
                ("root", 1),
                ("targets", 4),
                ("mirror", 2),
                ("snapshot", 7),
                ("timestamp", 9)
            ]
        );
        assert_eq!(got[4].expires, "2026-12-02T00:00:00Z".parse().unwrap());
    }

    #[test]
    fn no_catalog_yet_lists_only_the_root() {
        let root = doc(1, "2027-12-01T00:00:00Z", &[]);
        let got = role_expiries(Some(&root), |_| None);
        assert_eq!(got.len(), 1);
        assert!(role_expiries(None, |_| None).is_empty());
    }
}
