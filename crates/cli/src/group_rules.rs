//! Issue 10, point 2: `patchday group rule` (groups joined by rules on host facts: OS
//! release, hostname pattern, labels), with a preview of which hosts would join or leave.

use crate::api::Conn;
use crate::render::{Format, Table};
use patchday_types::api::{GroupRule, GroupRuleInfo, MembershipChange, RulePreviewRequest};
use patchday_types::{GroupId, TenantId};
use std::collections::BTreeMap;

/// The conditions of one rule (every one given must match).
#[derive(clap::Args, Clone, Debug)]
pub struct RuleArgs {
    /// OS release, glob: debian-12, debian-bookworm, bookworm, debian-*.
    #[arg(long)]
    release: Option<String>,
    /// Hostname glob (`*` any run, `?` one character; case-insensitive): 'web-*'.
    #[arg(long)]
    hostname: Option<String>,
    /// A label the host's agent reports (`patchday-agent --label` or
    /// /etc/patchday/labels), KEY=VALUE (repeatable; all must match).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    patchday_core::membership::parse_label(s).map_err(|e| e.to_string())
}

impl RuleArgs {
    fn rule(&self) -> Option<GroupRule> {
        let rule = GroupRule {
            release: self.release.clone(),
            hostname: self.hostname.clone(),
            labels: self.labels.iter().cloned().collect::<BTreeMap<_, _>>(),
        };
        (rule != GroupRule::default()).then_some(rule)
    }
}

/// `patchday group rule ...`.
#[derive(clap::Subcommand)]
pub enum GroupRuleCmd {
    /// Adds a membership rule to a group: hosts matching every condition join it at their
    /// next check-in (those already known at once); a group with several rules takes
    /// hosts matching any. Manual memberships are never removed by a rule.
    ///
    /// Example: patchday group rule set --tenant acme web --release debian-12 --hostname 'web-*' --label env=prod
    Set {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        /// The group.
        group: GroupId,
        #[command(flatten)]
        rule: RuleArgs,
        #[command(flatten)]
        conn: Conn,
    },
    /// Lists the tenant's group rules.
    ///
    /// Example: patchday group rule list --tenant acme
    List {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        #[command(flatten)]
        conn: Conn,
    },
    /// Removes a rule (by its id from `group rule list`); the hosts only it put in the
    /// group leave it.
    ///
    /// Example: patchday group rule remove --tenant acme web 3
    Remove {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        /// The group.
        group: GroupId,
        /// The rule's id.
        id: u64,
        #[command(flatten)]
        conn: Conn,
    },
    /// Shows which hosts would join (or, with --remove, leave) the group, before
    /// anything takes effect.
    ///
    /// Example: patchday group rule preview --tenant acme web --label env=prod
    Preview {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        /// The group.
        group: GroupId,
        #[command(flatten)]
        rule: RuleArgs,
        /// Preview removing this rule instead.
        #[arg(long)]
        remove: Option<u64>,
        #[command(flatten)]
        conn: Conn,
    },
}

fn rules_table(rules: &[GroupRuleInfo]) -> Table {
    let mut t = Table::new(&["id", "group", "release", "hostname", "labels"]).numbers(&["id"]);
    for r in rules {
        t.rows.push(vec![
            r.id.to_string(),
            r.group.to_string(),
            r.rule.release.clone().unwrap_or_else(|| "any".into()),
            r.rule.hostname.clone().unwrap_or_else(|| "any".into()),
            if r.rule.labels.is_empty() {
                "any".into()
            } else {
                r.rule
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            },
        ]);
    }
    t
}

fn changes_table(changes: &[MembershipChange]) -> Table {
    let mut t = Table::new(&["host", "group", "change"]);
    for c in changes {
        t.rows.push(vec![
            c.host.to_string(),
            c.group.to_string(),
            if c.join { "joins" } else { "leaves" }.into(),
        ]);
    }
    t
}

fn print_changes(format: Format, changes: &[MembershipChange], none: &str) {
    if changes.is_empty() && format == Format::Table {
        println!("{none}");
    } else {
        print!("{}", changes_table(changes).render(format));
    }
}

/// Runs `patchday group rule ...`.
pub async fn group_rule_cmd(cmd: GroupRuleCmd) -> anyhow::Result<i32> {
    match cmd {
        GroupRuleCmd::Set {
            tenant,
            group,
            rule,
            conn,
        } => {
            let rule = rule.rule().ok_or_else(|| {
                anyhow::anyhow!("give at least one condition: --release, --hostname or --label")
            })?;
            let a = conn.api()?.add_group_rule(&tenant, &group, &rule).await?;
            if conn.format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&a)?);
                return Ok(0);
            }
            if let Some(r) = &a.rule {
                println!("rule {} added to group {group} in {tenant}", r.id);
            }
            print_changes(conn.format, &a.changes, "no host joins now");
            Ok(0)
        }
        GroupRuleCmd::List { tenant, conn } => {
            let rules = conn.api()?.group_rules(&tenant).await?;
            if conn.format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&rules)?);
                return Ok(0);
            }
            print!("{}", rules_table(&rules).render(conn.format));
            Ok(0)
        }
        GroupRuleCmd::Remove {
            tenant,
            group,
            id,
            conn,
        } => {
            let a = conn.api()?.remove_group_rule(&tenant, &group, id).await?;
            if conn.format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&a)?);
                return Ok(0);
            }
            println!("rule {id} of group {group} removed");
            print_changes(conn.format, &a.changes, "no host leaves");
            Ok(0)
        }
        GroupRuleCmd::Preview {
            tenant,
            group,
            rule,
            remove,
            conn,
        } => {
            let req = RulePreviewRequest {
                add: rule.rule(),
                remove,
            };
            anyhow::ensure!(
                req.add.is_some() || req.remove.is_some(),
                "say what to preview: a rule to add (--release, --hostname, --label) or --remove ID"
            );
            let a = conn
                .api()?
                .preview_group_rule(&tenant, &group, &req)
                .await?;
            if conn.format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&a)?);
                return Ok(0);
            }
            print_changes(
                conn.format,
                &a.changes,
                &format!("no host would join or leave group {group}"),
            );
            Ok(0)
        }
    }
}
