//! Running `nft` and reading back what the kernel holds: apply a document atomically
//! (`nft -j -f -`), list Patchday's table, compare it with what was applied (drift),
//! read per-rule counters, and build the document that restores an earlier listing (the
//! lock-out guard's way back).

use crate::firewall::{COMMENT_PREFIX, FAMILY, TABLE};
use crate::{BaselineError, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The `nft` program (inside the host's root and network namespace).
#[derive(Clone, Debug)]
pub struct Nft {
    /// Program path or name.
    pub program: PathBuf,
}

impl Default for Nft {
    fn default() -> Self {
        Nft {
            program: PathBuf::from("nft"),
        }
    }
}

impl Nft {
    fn run(&self, args: &[&str], input: Option<&[u8]>) -> Result<String> {
        let mut cmd = Command::new(&self.program);
        cmd.args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            BaselineError::Nft(format!(
                "cannot run {}: {e}; install the Debian package nftables",
                self.program.display()
            ))
        })?;
        if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin
                .write_all(bytes)
                .map_err(|e| BaselineError::Nft(format!("writing to nft: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| BaselineError::Nft(format!("waiting for nft: {e}")))?;
        if !out.status.success() {
            return Err(BaselineError::Nft(format!(
                "`nft {}` failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Applies a whole document in one transaction: all of it or nothing.
    pub fn apply(&self, document: &Value) -> Result<()> {
        let bytes = serde_json::to_vec(document)
            .map_err(|e| BaselineError::Nft(format!("encoding the ruleset: {e}")))?;
        self.run(&["-j", "-f", "-"], Some(&bytes)).map(|_| ())
    }

    /// Patchday's table as `nft -j` lists it, or `None` when it does not exist.
    pub fn list(&self) -> Result<Option<Value>> {
        let tables: Value = parse(&self.run(&["-j", "list", "tables"], None)?)?;
        let present = objects(&tables)
            .any(|(kind, o)| kind == "table" && o["family"] == FAMILY && o["name"] == TABLE);
        if !present {
            return Ok(None);
        }
        parse(&self.run(&["-j", "list", "table", FAMILY, TABLE], None)?).map(Some)
    }
}

fn parse(text: &str) -> Result<Value> {
    serde_json::from_str(text)
        .map_err(|e| BaselineError::Nft(format!("nft printed JSON this agent cannot read: {e}")))
}

/// The objects of an `nft -j` listing as (kind, body): `("rule", {...})`.
fn objects(listing: &Value) -> impl Iterator<Item = (&str, &Value)> {
    listing["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o.as_object())
        .filter_map(|o| o.iter().next())
        .map(|(k, v)| (k.as_str(), v))
}

/// A listing without what changes by itself (handles, counter values, metainfo): what
/// must stay as applied.
pub fn canonical(listing: &Value) -> Vec<(String, Value)> {
    objects(listing)
        .filter(|(kind, _)| *kind != "metainfo")
        .map(|(kind, body)| {
            let mut b = body.clone();
            if let Some(o) = b.as_object_mut() {
                o.remove("handle");
            }
            if let Some(exprs) = b.get_mut("expr").and_then(Value::as_array_mut) {
                for e in exprs {
                    if e.get("counter").is_some() {
                        *e = json!({"counter": null});
                    }
                }
            }
            (kind.to_owned(), b)
        })
        .collect()
}

fn describe(kind: &str, body: &Value) -> String {
    match kind {
        "rule" => {
            let chain = body["chain"].as_str().unwrap_or("?");
            match body["comment"].as_str() {
                Some(c) => format!("rule {c:?} in chain {chain}"),
                None => format!("a rule without a Patchday comment in chain {chain}"),
            }
        }
        "chain" => format!(
            "chain {} (policy {})",
            body["name"].as_str().unwrap_or("?"),
            body["policy"].as_str().unwrap_or("?")
        ),
        other => format!("{other} {}", body["name"].as_str().unwrap_or("?")),
    }
}

/// What differs between the applied listing and the current one, in words (empty: none).
pub fn drift(applied: &Value, current: Option<&Value>) -> Vec<String> {
    let Some(current) = current else {
        return vec![format!("table {FAMILY} {TABLE} is gone")];
    };
    let a = canonical(applied);
    let c = canonical(current);
    if a == c {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (kind, body) in &a {
        if !c.iter().any(|(k, b)| k == kind && b == body) {
            out.push(format!("{} was changed or removed", describe(kind, body)));
        }
    }
    for (kind, body) in &c {
        if !a.iter().any(|(k, b)| k == kind && b == body) {
            out.push(format!(
                "{} was added or changed by hand",
                describe(kind, body)
            ));
        }
    }
    if out.is_empty() {
        out.push("the rules were reordered".into());
    }
    out
}

/// Packets and bytes per rule name (summed over the nftables rules one policy rule became).
pub fn counters(listing: &Value) -> BTreeMap<String, (u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (kind, body) in objects(listing) {
        if kind != "rule" {
            continue;
        }
        let Some(name) = body["comment"]
            .as_str()
            .and_then(|c| c.strip_prefix(COMMENT_PREFIX))
        else {
            continue;
        };
        for e in body["expr"].as_array().into_iter().flatten() {
            if let Some(c) = e.get("counter") {
                let entry = out.entry(name.to_owned()).or_default();
                entry.0 += c["packets"].as_u64().unwrap_or(0);
                entry.1 += c["bytes"].as_u64().unwrap_or(0);
            }
        }
    }
    out
}

/// The document that puts Patchday's table back as `previous` listed it (or removes it
/// when there was none), in one transaction.
pub fn restore_document(previous: Option<&Value>) -> Value {
    let table = json!({"table": {"family": FAMILY, "name": TABLE}});
    let mut cmds = vec![json!({"add": table}), json!({"delete": table})];
    if let Some(prev) = previous {
        for (kind, body) in canonical(prev) {
            cmds.push(json!({ "add": { kind: body } }));
        }
    }
    json!({ "nftables": cmds })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(policy: &str, packets: u64) -> Value {
        json!({"nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "inet", "name": "patchday", "handle": 7}},
            {"chain": {"family": "inet", "table": "patchday", "name": "input", "handle": 1,
                       "type": "filter", "hook": "input", "prio": 0, "policy": policy}},
            {"rule": {"family": "inet", "table": "patchday", "chain": "input", "handle": 4,
                      "comment": "patchday:https",
                      "expr": [{"counter": {"packets": packets, "bytes": packets * 60}}, {"accept": null}]}}
        ]})
    }

    #[test]
    fn counters_and_handles_are_not_drift() {
        assert!(drift(&listing("drop", 0), Some(&listing("drop", 99))).is_empty());
        let d = drift(&listing("drop", 0), Some(&listing("accept", 0)));
        assert!(
            d.iter().any(|m| m.contains("chain input (policy drop)")),
            "{d:?}"
        );
        assert_eq!(
            drift(&listing("drop", 0), None),
            vec!["table inet patchday is gone"]
        );
    }

    #[test]
    fn counters_by_rule_name() {
        assert_eq!(counters(&listing("drop", 3))["https"], (3, 180));
    }

    #[test]
    fn restore_replaces_or_removes() {
        let none = restore_document(None);
        assert_eq!(none["nftables"].as_array().unwrap().len(), 2);
        let back = restore_document(Some(&listing("drop", 5)));
        let text = back.to_string();
        assert!(
            !text.contains("handle") && !text.contains("metainfo"),
            "{text}"
        );
        assert!(text.contains(r#""comment":"patchday:https""#), "{text}");
    }
}
