//! Issue 13, point 2: a policy's `[firewall]` compiled into one nftables table owned by
//! Patchday (`inet patchday`), as the JSON `nft -j -f` reads, built with serde (never a
//! string-built rule). The document replaces the table in one transaction (add, delete,
//! add), so it is applied atomically and never touches another table.
//!
//! Limits, said where they are made: `users` match `meta skuid` and `groups` match
//! `meta skgid`, the socket owner's uid and primary gid as the kernel sees them on locally
//! generated packets; supplementary groups are not visible to nftables, and forwarded
//! traffic has no socket owner.

use crate::accounts::Accounts;
use crate::policy::{Cidr, Firewall, Protocol, Verdict};
use crate::Result;
use serde::Serialize;
use std::net::IpAddr;

/// The nftables family of the table.
pub const FAMILY: &str = "inet";
/// The one table Patchday owns.
pub const TABLE: &str = "patchday";
/// Every rule's comment starts with this; what follows is the rule's name.
pub const COMMENT_PREFIX: &str = "patchday:";

/// A whole `nft -j -f` document.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NftDocument {
    /// The commands, applied in one transaction.
    pub nftables: Vec<Command>,
}

/// One command of the document.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    /// Create (a table or chain that exists is kept).
    Add(Object),
    /// Remove.
    Delete(Object),
}

/// What a command acts on.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Object {
    /// A table.
    Table(Table),
    /// A base chain.
    Chain(Chain),
    /// A rule.
    Rule(Rule),
}

/// `inet patchday`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Table {
    /// Family.
    pub family: &'static str,
    /// Name.
    pub name: &'static str,
}

/// A base chain on a hook.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Chain {
    /// Family.
    pub family: &'static str,
    /// Table.
    pub table: &'static str,
    /// Chain name (`input`, `output`).
    pub name: &'static str,
    /// Always `filter`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Hook.
    pub hook: &'static str,
    /// Priority.
    pub prio: i32,
    /// What happens to packets no rule decides.
    pub policy: &'static str,
}

/// One rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rule {
    /// Family.
    pub family: &'static str,
    /// Table.
    pub table: &'static str,
    /// Chain.
    pub chain: &'static str,
    /// `patchday:<rule name>`: counters are read back by it.
    pub comment: String,
    /// Matches, then a counter, then the verdict.
    pub expr: Vec<Statement>,
}

/// A statement of a rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Statement {
    /// A match.
    Match(Match),
    /// An anonymous counter.
    Counter(()),
    /// Accept.
    Accept(()),
    /// Drop.
    Drop(()),
    /// Reject.
    Reject(()),
}

/// `left op right`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Match {
    /// `==` or `in`.
    pub op: &'static str,
    /// What is matched.
    pub left: Key,
    /// Against what.
    pub right: Value,
}

/// What a match reads from the packet.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Key {
    /// Packet meta data (`iifname`, `oifname`, `l4proto`, `skuid`, `skgid`).
    Meta {
        /// Which.
        key: &'static str,
    },
    /// Connection tracking (`state`).
    Ct {
        /// Which.
        key: &'static str,
    },
    /// A header field (`ip saddr`, `tcp dport`).
    Payload {
        /// Header.
        protocol: &'static str,
        /// Field.
        field: &'static str,
    },
}

/// The right-hand side of a match.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// A string.
    Text(String),
    /// A number.
    Number(u32),
    /// A network.
    Prefix {
        /// `{addr, len}`.
        prefix: Prefix,
    },
    /// An anonymous set.
    Set {
        /// Its elements.
        set: Vec<Value>,
    },
    /// A list (flags such as ct states).
    List(Vec<Value>),
}

/// `addr/len`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prefix {
    /// Address.
    pub addr: String,
    /// Length.
    pub len: u8,
}

fn one_or_set(mut values: Vec<Value>) -> Value {
    if values.len() == 1 {
        if let Some(v) = values.pop() {
            return v;
        }
    }
    Value::Set { set: values }
}

fn matches(op: &'static str, left: Key, right: Value) -> Statement {
    Statement::Match(Match { op, left, right })
}

fn verdict(v: Verdict) -> Statement {
    match v {
        Verdict::Accept => Statement::Accept(()),
        Verdict::Drop => Statement::Drop(()),
        Verdict::Reject => Statement::Reject(()),
    }
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Accept => "accept",
        // A base chain's policy cannot reject; what no rule decides is dropped then (the
        // compiler adds a final reject rule to keep "reject").
        Verdict::Drop | Verdict::Reject => "drop",
    }
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

/// Networks split by family: (`ip`, v4 prefixes), (`ip6`, v6 prefixes); each present family once.
fn by_family(nets: &[String]) -> Result<Vec<(&'static str, Value)>> {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for n in nets {
        let c = Cidr::parse(n)?;
        let p = Value::Prefix {
            prefix: Prefix {
                addr: network_address(c).to_string(),
                len: c.len,
            },
        };
        if c.addr.is_ipv4() {
            v4.push(p);
        } else {
            v6.push(p);
        }
    }
    let mut out = Vec::new();
    if !v4.is_empty() {
        out.push(("ip", one_or_set(v4)));
    }
    if !v6.is_empty() {
        out.push(("ip6", one_or_set(v6)));
    }
    Ok(out)
}

/// The address with the host bits cleared (nft refuses `10.0.0.1/8`).
fn network_address(c: Cidr) -> IpAddr {
    match c.addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let mask = if c.len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(c.len))
            };
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let mask = if c.len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(c.len))
            };
            IpAddr::V6((bits & mask).into())
        }
    }
}

fn ports_value(ports: &[u16]) -> Value {
    one_or_set(ports.iter().map(|p| Value::Number(u32::from(*p))).collect())
}

struct Builder {
    commands: Vec<Command>,
}

impl Builder {
    fn rule(&mut self, chain: &'static str, name: &str, mut expr: Vec<Statement>, v: Verdict) {
        expr.push(Statement::Counter(()));
        expr.push(verdict(v));
        self.commands.push(Command::Add(Object::Rule(Rule {
            family: FAMILY,
            table: TABLE,
            chain,
            comment: format!("{COMMENT_PREFIX}{name}"),
            expr,
        })));
    }
}

/// Compiles a firewall for a host whose accounts are `accounts`: the whole table, as one
/// transaction that replaces any earlier `inet patchday` and nothing else.
pub fn compile(fw: &Firewall, accounts: &Accounts) -> Result<NftDocument> {
    let table = || Table {
        family: FAMILY,
        name: TABLE,
    };
    let chain = |name: &'static str, hook: &'static str, policy: &'static str| {
        Command::Add(Object::Chain(Chain {
            family: FAMILY,
            table: TABLE,
            name,
            kind: "filter",
            hook,
            prio: 0,
            policy,
        }))
    };
    let mut b = Builder {
        // add + delete + add: the table is replaced whether or not it existed.
        commands: vec![
            Command::Add(Object::Table(table())),
            Command::Delete(Object::Table(table())),
            Command::Add(Object::Table(table())),
            chain("input", "input", "drop"),
            chain("output", "output", verdict_name(fw.outbound_default)),
        ],
    };
    let meta = |key| Key::Meta { key };
    let ct_state = || Key::Ct { key: "state" };
    let text = |s: &str| Value::Text(s.to_owned());

    // Inbound: default deny; loopback, replies and (by default) ICMP come in.
    b.rule(
        "input",
        "builtin-loopback",
        vec![matches("==", meta("iifname"), text("lo"))],
        Verdict::Accept,
    );
    b.rule(
        "input",
        "builtin-replies",
        vec![matches(
            "in",
            ct_state(),
            Value::List(vec![text("established"), text("related")]),
        )],
        Verdict::Accept,
    );
    b.rule(
        "input",
        "builtin-invalid",
        vec![matches(
            "in",
            ct_state(),
            Value::List(vec![text("invalid")]),
        )],
        Verdict::Drop,
    );
    if fw.icmp {
        b.rule(
            "input",
            "builtin-icmp",
            vec![matches(
                "==",
                meta("l4proto"),
                Value::Set {
                    set: vec![text("icmp"), text("ipv6-icmp")],
                },
            )],
            Verdict::Accept,
        );
    }
    for r in &fw.inbound {
        let zone = r
            .zone
            .as_ref()
            .and_then(|z| fw.zones.iter().find(|x| &x.name == z));
        let mut head = Vec::new();
        let mut families = vec![None];
        if let Some(z) = zone {
            if !z.interfaces.is_empty() {
                head.push(matches(
                    "==",
                    meta("iifname"),
                    one_or_set(z.interfaces.iter().map(|i| text(i)).collect()),
                ));
            }
            if !z.addresses.is_empty() {
                families = by_family(&z.addresses)?.into_iter().map(Some).collect();
            }
        }
        for fam in families {
            let mut expr = head.clone();
            if let Some((proto, nets)) = fam {
                expr.push(matches(
                    "==",
                    Key::Payload {
                        protocol: proto,
                        field: "saddr",
                    },
                    nets,
                ));
            }
            expr.push(matches(
                "==",
                Key::Payload {
                    protocol: protocol_name(r.protocol),
                    field: "dport",
                },
                ports_value(&r.ports),
            ));
            b.rule("input", &r.name, expr, Verdict::Accept);
        }
    }

    // Outbound: loopback and replies leave; then the rules, first match wins.
    b.rule(
        "output",
        "builtin-loopback",
        vec![matches("==", meta("oifname"), text("lo"))],
        Verdict::Accept,
    );
    b.rule(
        "output",
        "builtin-replies",
        vec![matches(
            "in",
            ct_state(),
            Value::List(vec![text("established"), text("related")]),
        )],
        Verdict::Accept,
    );
    for r in &fw.outbound {
        let mut head = Vec::new();
        if !r.users.is_empty() {
            let ids = r
                .users
                .iter()
                .map(|u| accounts.uid(u).map(Value::Number))
                .collect::<Result<Vec<_>>>()?;
            head.push(matches("==", meta("skuid"), one_or_set(ids)));
        }
        if !r.groups.is_empty() {
            let ids = r
                .groups
                .iter()
                .map(|g| accounts.gid(g).map(Value::Number))
                .collect::<Result<Vec<_>>>()?;
            head.push(matches("==", meta("skgid"), one_or_set(ids)));
        }
        let families: Vec<Option<(&str, Value)>> = if r.to.is_empty() {
            vec![None]
        } else {
            by_family(&r.to)?.into_iter().map(Some).collect()
        };
        for fam in families {
            let mut expr = head.clone();
            if let Some((proto, nets)) = fam {
                expr.push(matches(
                    "==",
                    Key::Payload {
                        protocol: proto,
                        field: "daddr",
                    },
                    nets,
                ));
            }
            match (r.protocol, r.ports.is_empty()) {
                (Some(p), false) => expr.push(matches(
                    "==",
                    Key::Payload {
                        protocol: protocol_name(p),
                        field: "dport",
                    },
                    ports_value(&r.ports),
                )),
                (Some(p), true) => {
                    expr.push(matches("==", meta("l4proto"), text(protocol_name(p))))
                }
                (None, _) => {}
            }
            b.rule("output", &r.name, expr, r.action);
        }
    }
    if fw.outbound_default == Verdict::Reject {
        b.rule(
            "output",
            "builtin-default-reject",
            Vec::new(),
            Verdict::Reject,
        );
    }
    Ok(NftDocument {
        nftables: b.commands,
    })
}

/// The rule names a firewall's counters are reported under, in order.
pub fn rule_names(fw: &Firewall) -> Vec<String> {
    fw.inbound
        .iter()
        .map(|r| r.name.clone())
        .chain(fw.outbound.iter().map(|r| r.name.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{example, Policy};

    fn accounts() -> Accounts {
        Accounts::parse("www-data:x:33:33::/:/bin/false\n", "dev:x:1001:\n")
    }

    #[test]
    fn the_example_compiles_to_one_owned_table() {
        let p = Policy::parse(&example("web")).unwrap();
        let doc = compile(p.firewall.as_ref().unwrap(), &accounts()).unwrap();
        let json = serde_json::to_value(&doc).unwrap();
        let cmds = json["nftables"].as_array().unwrap();
        // Replaced whole: add, delete, add the table first.
        assert_eq!(cmds[0]["add"]["table"]["name"], "patchday");
        assert_eq!(cmds[1]["delete"]["table"]["name"], "patchday");
        for c in cmds {
            let obj = c.as_object().unwrap().values().next().unwrap();
            let o = obj.as_object().unwrap().values().next().unwrap();
            let table = o.get("table").or_else(|| o.get("name")).unwrap();
            assert_eq!(table, "patchday", "only the Patchday table: {c}");
        }
        let text = json.to_string();
        assert!(
            text.contains(r#"{"meta":{"key":"skgid"}},"op":"==","right":1001"#)
                || text.contains(r#""right":1001"#),
            "{text}"
        );
        assert!(text.contains(r#""right":33"#), "{text}");
        assert!(
            text.contains(r#""comment":"patchday:registry-for-dev""#),
            "{text}"
        );
        assert!(
            text.contains(r#"{"prefix":{"addr":"10.0.0.0","len":8}}"#),
            "{text}"
        );
    }

    #[test]
    fn an_unknown_user_fails_with_what_to_do() {
        let p = Policy::parse(&example("web")).unwrap();
        let e = compile(p.firewall.as_ref().unwrap(), &Accounts::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"dev\"") && e.contains("numeric id"), "{e}");
    }

    #[test]
    fn host_bits_are_cleared() {
        let c = Cidr::parse("10.1.2.3/8").unwrap();
        assert_eq!(network_address(c).to_string(), "10.0.0.0");
        let c = Cidr::parse("2001:db8::1/32").unwrap();
        assert_eq!(network_address(c).to_string(), "2001:db8::");
    }
}
