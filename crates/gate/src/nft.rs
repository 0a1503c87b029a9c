//! The network-edge gate (issue 14, point 3): on a VPN or gateway host, an nftables
//! table `inet patchday_gate` whose set of quarantined addresses follows the server's
//! access list. Quarantined addresses may reach only the addresses in the `reachable`
//! sets (the Patchday server, package archives); everything else they send through the
//! gateway is rejected. A host that is patched again leaves the set at the next answer.
//!
//! Addresses come from the operator's mapping (`HOST=ADDRESS`, e.g. each WireGuard peer's
//! tunnel address), by host id or hostname. A mapped host that the server does not list
//! is quarantined too (removed, or a wrong mapping): the gate fails closed.
//!
//! The documents are `nft -j` JSON, applied through `patchday_baseline::nft::Nft` in one
//! transaction each: the table as a whole at start, then only the set's contents.

use patchday_types::api::AccessList;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The table's family.
pub const FAMILY: &str = "inet";
/// The table's name (apart from baselines' `inet patchday`).
pub const TABLE: &str = "patchday_gate";

/// One operator mapping: a host (id or hostname) and its address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Host id or hostname.
    pub host: String,
    /// Its address as the gateway sees it.
    pub addr: IpAddr,
}

/// Parses `HOST=ADDRESS`.
pub fn parse_peer(s: &str) -> Result<Peer, String> {
    let (host, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected HOST=ADDRESS, e.g. laptop-7=10.8.0.7"))?;
    let addr = addr
        .trim()
        .parse()
        .map_err(|e| format!("{s:?}: {addr:?} is not an IP address: {e}"))?;
    if host.trim().is_empty() {
        return Err(format!("{s:?}: the host (id or hostname) is empty"));
    }
    Ok(Peer {
        host: host.trim().to_string(),
        addr,
    })
}

/// Reads a peers file: one `HOST=ADDRESS` or `HOST ADDRESS` a line, `#` comments.
pub fn parse_peers_file(text: &str) -> Result<Vec<Peer>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let line = match line.split_once(char::is_whitespace) {
            Some((h, a)) if !line.contains('=') => format!("{h}={}", a.trim()),
            _ => line.to_string(),
        };
        out.push(parse_peer(&line).map_err(|e| format!("line {}: {e}", n + 1))?);
    }
    Ok(out)
}

/// An address or network quarantined hosts may still reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reachable {
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length.
    pub len: u8,
}

/// Parses `ADDRESS` or `ADDRESS/PREFIX`.
pub fn parse_reachable(s: &str) -> Result<Reachable, String> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (
            a,
            Some(
                l.parse::<u8>()
                    .map_err(|e| format!("{s:?}: bad prefix length: {e}"))?,
            ),
        ),
        None => (s, None),
    };
    let addr: IpAddr = a
        .trim()
        .parse()
        .map_err(|e| format!("{s:?} is not an address or network: {e}"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    if len > max {
        return Err(format!("{s:?}: prefix length above {max}"));
    }
    Ok(Reachable { addr, len })
}

/// One quarantined address and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quarantined {
    /// The address.
    pub addr: IpAddr,
    /// The host as mapped.
    pub host: String,
    /// Why.
    pub reason: String,
}

/// The mapped addresses whose hosts may not pass now.
pub fn quarantined(list: &AccessList, peers: &[Peer]) -> Vec<Quarantined> {
    let mut out: BTreeMap<IpAddr, Quarantined> = BTreeMap::new();
    for p in peers {
        let host = list
            .hosts
            .iter()
            .find(|h| h.host.as_str() == p.host || h.hostname == p.host);
        let reason = match host {
            Some(h) if h.allowed => continue,
            Some(h) => h.reason.clone().unwrap_or_else(|| "not compliant".into()),
            None => format!(
                "not in tenant {}'s list on the server (removed, or the mapping names another host)",
                list.tenant
            ),
        };
        out.entry(p.addr).or_insert(Quarantined {
            addr: p.addr,
            host: p.host.clone(),
            reason,
        });
    }
    out.into_values().collect()
}

fn set(name: &str) -> Value {
    json!({"family": FAMILY, "table": TABLE, "name": name})
}

fn element(r: &Reachable) -> Value {
    let full = if r.addr.is_ipv4() { 32 } else { 128 };
    if r.len == full {
        json!(r.addr.to_string())
    } else {
        json!({"prefix": {"addr": r.addr.to_string(), "len": r.len}})
    }
}

fn rule(expr: Vec<Value>, comment: &str) -> Value {
    json!({"add": {"rule": {"family": FAMILY, "table": TABLE, "chain": "forward", "expr": expr, "comment": comment}}})
}

fn addr_match(proto: &str, field: &str, set: &str) -> Value {
    json!({"match": {"op": "==", "left": {"payload": {"protocol": proto, "field": field}}, "right": format!("@{set}")}})
}

/// The whole table: sets, the forward chain (before other filters) and its rules, and
/// the quarantined addresses; replaces an earlier table of the same name.
pub fn table_document(reachable: &[Reachable], quarantine: &[Quarantined]) -> Value {
    let table = json!({"family": FAMILY, "name": TABLE});
    let mut cmds = vec![
        // `add` then `delete`: one transaction whether or not the table exists.
        json!({"add": {"table": table}}),
        json!({"delete": {"table": table}}),
        json!({"add": {"table": table}}),
    ];
    for (name, kind, interval) in [
        ("quarantined4", "ipv4_addr", false),
        ("quarantined6", "ipv6_addr", false),
        ("reachable4", "ipv4_addr", true),
        ("reachable6", "ipv6_addr", true),
    ] {
        let mut s = set(name);
        s["type"] = json!(kind);
        if interval {
            s["flags"] = json!(["interval"]);
        }
        cmds.push(json!({"add": {"set": s}}));
    }
    cmds.push(
        json!({"add": {"chain": {"family": FAMILY, "table": TABLE, "name": "forward",
        "type": "filter", "hook": "forward", "prio": -10, "policy": "accept"}}}),
    );
    for (proto, v) in [("ip", "4"), ("ip6", "6")] {
        cmds.push(rule(
            vec![
                addr_match(proto, "saddr", &format!("quarantined{v}")),
                addr_match(proto, "daddr", &format!("reachable{v}")),
                json!({"counter": null}),
                json!({"accept": null}),
            ],
            "patchday-gate: quarantined hosts reach the Patchday server and package archives",
        ));
        cmds.push(rule(
            vec![
                addr_match(proto, "saddr", &format!("quarantined{v}")),
                json!({"counter": null}),
                json!({"reject": {"type": "icmpx", "expr": "admin-prohibited"}}),
            ],
            "patchday-gate: quarantined hosts reach nothing else until patched",
        ));
    }
    for (name, elems) in [
        (
            "reachable4",
            reachable
                .iter()
                .filter(|r| r.addr.is_ipv4())
                .map(element)
                .collect::<Vec<_>>(),
        ),
        (
            "reachable6",
            reachable
                .iter()
                .filter(|r| r.addr.is_ipv6())
                .map(element)
                .collect(),
        ),
    ] {
        if !elems.is_empty() {
            let mut e = set(name);
            e["elem"] = json!(elems);
            cmds.push(json!({"add": {"element": e}}));
        }
    }
    let mut doc = set_commands(quarantine);
    if let Some(list) = doc["nftables"].as_array_mut() {
        cmds.append(list);
    }
    json!({ "nftables": cmds })
}

fn set_commands(quarantine: &[Quarantined]) -> Value {
    let mut cmds = Vec::new();
    for (name, v4) in [("quarantined4", true), ("quarantined6", false)] {
        cmds.push(json!({"flush": {"set": set(name)}}));
        let elems: Vec<Value> = quarantine
            .iter()
            .filter(|q| q.addr.is_ipv4() == v4)
            .map(|q| json!(q.addr.to_string()))
            .collect();
        if !elems.is_empty() {
            let mut e = set(name);
            e["elem"] = json!(elems);
            cmds.push(json!({"add": {"element": e}}));
        }
    }
    json!({ "nftables": cmds })
}

/// The quarantine sets' new contents, replacing the old in one transaction.
pub fn set_document(quarantine: &[Quarantined]) -> Value {
    set_commands(quarantine)
}

/// What one change did: addresses put into quarantine and released.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// Newly quarantined (or quarantined for another reason).
    pub quarantined: Vec<Quarantined>,
    /// Released.
    pub released: Vec<Quarantined>,
}

fn diff(old: &[Quarantined], new: &[Quarantined]) -> Change {
    Change {
        quarantined: new.iter().filter(|q| !old.contains(q)).cloned().collect(),
        released: old
            .iter()
            .filter(|o| !new.iter().any(|n| n.addr == o.addr))
            .cloned()
            .collect(),
    }
}

async fn apply(nft: &patchday_baseline::nft::Nft, doc: Value) -> Result<(), String> {
    let nft = nft.clone();
    tokio::task::spawn_blocking(move || nft.apply(&doc))
        .await
        .map_err(|e| format!("nft did not finish: {e}"))?
        .map_err(|e| e.to_string())
}

/// Keeps the table current from `view` until the view's sender is gone: the whole table
/// once the first list arrives, then the quarantine sets at each change; `report` hears
/// every change. A failed `nft` run is an error (the gate's service restarts it).
pub async fn keep_current(
    nft: patchday_baseline::nft::Nft,
    peers: Vec<Peer>,
    reachable: Vec<Reachable>,
    mut view: crate::follow::View,
    mut report: impl FnMut(&Change) + Send,
) -> Result<(), String> {
    let mut applied: Option<Vec<Quarantined>> = None;
    loop {
        let current = view.borrow_and_update().clone();
        if let Some(c) = current {
            let want = quarantined(&c.list, &peers);
            match &applied {
                None => {
                    apply(&nft, table_document(&reachable, &want)).await?;
                    report(&diff(&[], &want));
                    applied = Some(want);
                }
                Some(old) if *old != want => {
                    apply(&nft, set_document(&want)).await?;
                    report(&diff(old, &want));
                    applied = Some(want);
                }
                Some(_) => {}
            }
        }
        if view.changed().await.is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use patchday_types::api::{HostAccess, HostCompliance, JwkSet};

    fn list() -> AccessList {
        let host = |id: &str, name: &str, allowed: bool| HostAccess {
            host: patchday_types::HostId::new(id).unwrap(),
            hostname: name.into(),
            allowed,
            compliance: if allowed {
                HostCompliance::UpToDate
            } else {
                HostCompliance::Overdue
            },
            reason: (!allowed).then(|| "overdue: past its deadline: PD-1".into()),
        };
        AccessList {
            tenant: patchday_types::TenantId::new("acme").unwrap(),
            generated_at: jiff::Timestamp::UNIX_EPOCH,
            etag: "e".into(),
            token_lifetime_seconds: 600,
            keys: JwkSet::default(),
            hosts: vec![
                host("good-1a", "good", true),
                host("late-2b", "late", false),
            ],
        }
    }

    #[test]
    fn lapsed_and_unknown_mapped_hosts_are_quarantined_compliant_ones_not() {
        let peers = parse_peers_file(
            "# wireguard peers\ngood 10.8.0.2\nlate-2b=10.8.0.3\nghost=10.8.0.4\nlate fd00::3\n",
        )
        .unwrap();
        let q = quarantined(&list(), &peers);
        let addrs: Vec<String> = q.iter().map(|q| q.addr.to_string()).collect();
        assert_eq!(addrs, ["10.8.0.3", "10.8.0.4", "fd00::3"]);
        assert_eq!(q[0].reason, "overdue: past its deadline: PD-1");
        assert!(
            q[1].reason.contains("not in tenant acme's list"),
            "{}",
            q[1].reason
        );
        let doc = table_document(
            &[
                parse_reachable("10.9.0.0/16").unwrap(),
                parse_reachable("10.0.0.1").unwrap(),
            ],
            &q,
        );
        let text = doc.to_string();
        assert!(text.contains(r#""elem":["10.8.0.3","10.8.0.4"]"#), "{text}");
        assert!(
            text.contains(r#"{"prefix":{"addr":"10.9.0.0","len":16}}"#),
            "{text}"
        );
        assert!(parse_peer("nohost").is_err());
        assert!(parse_reachable("10.0.0.0/33").is_err());
    }
}
