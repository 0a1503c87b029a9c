//! Issue 10, points 2 and 3: `patchday ring` (a tenant's rings, their rules and gates,
//! and the preview of what an approval touches) and `patchday rollout` (an update's
//! evidence per ring, halt and resume).

use crate::api::Conn;
use crate::render::{Format, Table};
use patchday_core::rollout::{RingsSpec, DEFAULT_FAILURE_PERMILLE, DEFAULT_SUCCESS_PERMILLE};
use patchday_types::api::{AutoRule, Ring, RingsRequest};
use patchday_types::{Classification, Severity, TenantId, UpdateId};

/// `patchday ring ...`.
#[derive(clap::Subcommand)]
pub enum RingCmd {
    /// Replaces the tenant's rings, first to last: GROUP:DEFERRAL[:DEADLINE[:GRACE]]
    /// (durations like 0d, 12h, 1d). The rule options make every ring approve matching
    /// updates by itself once its turn has come and the ring before it passed its gate.
    ///
    /// Example: patchday ring set --tenant acme pilot:0d early:1d broad:5d:3d:1d last:9d --auto --severity critical,important
    Set {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        /// The rings, pilot first.
        #[arg(required = true)]
        rings: Vec<String>,
        /// Approve matching updates by rule (implied by any of the match options).
        #[arg(long)]
        auto: bool,
        /// Rule: these severities only (comma-separated).
        #[arg(long, value_delimiter = ',')]
        severity: Vec<Severity>,
        /// Rule: these classifications only (comma-separated).
        #[arg(long, value_delimiter = ',')]
        classification: Vec<Classification>,
        /// Rule: updates of these source packages only (comma-separated).
        #[arg(long, value_delimiter = ',')]
        source_package: Vec<String>,
        /// Rule: only updates fixing a CVE in the server's KEV catalog (`server --kev`).
        #[arg(long)]
        known_exploited: bool,
        /// How long a ring's evidence must stand before the next ring follows.
        #[arg(long, default_value = "1h")]
        soak: String,
        /// Per cent of a ring's applicable hosts that must be installed.
        #[arg(long, default_value_t = DEFAULT_SUCCESS_PERMILLE as f64 / 10.0)]
        success: f64,
        /// Per cent of failed hosts above which the update halts everywhere.
        #[arg(long, default_value_t = DEFAULT_FAILURE_PERMILLE as f64 / 10.0)]
        failure: f64,
        /// Number of failed hosts at which the update halts, whatever the share.
        #[arg(long)]
        failure_count: Option<u32>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Lists the tenant's rings.
    ///
    /// Example: patchday ring list --tenant acme
    List {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        #[command(flatten)]
        conn: Conn,
    },
    /// Shows which hosts each ring's approval of an update would touch, and what the
    /// rollout does next, before anything takes effect.
    ///
    /// Example: patchday ring preview --tenant acme DEB-openssl-3.0.15-1~deb12u1
    Preview {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        /// The update.
        update: UpdateId,
        #[command(flatten)]
        conn: Conn,
    },
}

/// `patchday rollout ...`.
#[derive(clap::Subcommand)]
pub enum RolloutCmd {
    /// Every ring's evidence for an update, and its halt if any.
    ///
    /// Example: patchday rollout status --update PD-2026-0001
    Status {
        /// The update.
        #[arg(long)]
        update: UpdateId,
        #[command(flatten)]
        conn: Conn,
    },
    /// Halts an update's rollout for every tenant (provider admins): no further ring is
    /// approved, no host not yet started gets it.
    ///
    /// Example: patchday rollout halt --update PD-2026-0001 --reason "postinst fails on arm64"
    Halt {
        /// The update.
        #[arg(long)]
        update: UpdateId,
        /// Why.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Resumes a halted rollout; failures recorded before now no longer count.
    ///
    /// Example: patchday rollout resume --update PD-2026-0001
    Resume {
        /// The update.
        #[arg(long)]
        update: UpdateId,
        #[command(flatten)]
        conn: Conn,
    },
}

/// `GROUP:DEFERRAL[:DEADLINE[:GRACE]]` as a ring with the defaults.
pub fn parse_ring(spec: &str) -> anyhow::Result<Ring> {
    patchday_core::rollout::parse_ring(spec).map_err(anyhow::Error::msg)
}

fn days(secs: i64) -> String {
    patchday_core::rollout::duration_text(secs)
}

fn rule_text(rule: &Option<AutoRule>) -> String {
    let Some(r) = rule else {
        return "by hand".into();
    };
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "any".to_string()
        } else {
            v.join(",")
        }
    };
    format!(
        "auto: severity {} / classification {} / source {}{}",
        list(r.severities.iter().map(ToString::to_string).collect()),
        list(r.classifications.iter().map(ToString::to_string).collect()),
        list(r.source_packages.clone()),
        if r.known_exploited {
            " / known-exploited only"
        } else {
            ""
        }
    )
}

fn rings_table(rings: &[Ring]) -> Table {
    let mut t = Table::new(&[
        "ring", "group", "deferral", "deadline", "grace", "soak", "success", "failure", "approval",
    ]);
    for (i, r) in rings.iter().enumerate() {
        t.rows.push(vec![
            (i + 1).to_string(),
            r.group.to_string(),
            days(r.deferral_seconds),
            r.deadline_seconds.map(days).unwrap_or_default(),
            days(r.grace_seconds),
            days(r.soak_seconds),
            format!("{}%", f64::from(r.success_permille) / 10.0),
            format!(
                "{}%{}",
                f64::from(r.failure_permille) / 10.0,
                r.failure_count
                    .map(|n| format!(" or {n} hosts"))
                    .unwrap_or_default()
            ),
            rule_text(&r.rule),
        ]);
    }
    t
}

/// Runs `patchday ring ...`.
pub async fn ring_cmd(cmd: RingCmd) -> anyhow::Result<i32> {
    match cmd {
        RingCmd::Set {
            tenant,
            rings,
            auto,
            severity,
            classification,
            source_package,
            known_exploited,
            soak,
            success,
            failure,
            failure_count,
            conn,
        } => {
            let out = RingsSpec {
                rings,
                auto,
                severities: severity,
                classifications: classification,
                source_packages: source_package,
                known_exploited,
                soak,
                success_percent: success,
                failure_percent: failure,
                failure_count,
            }
            .build()
            .map_err(anyhow::Error::msg)?;
            let set = conn
                .api()?
                .set_rings(&tenant, &RingsRequest { rings: out })
                .await?;
            print!("{}", rings_table(&set).render(conn.format));
            Ok(0)
        }
        RingCmd::List { tenant, conn } => {
            let rings = conn.api()?.rings(&tenant).await?;
            print!("{}", rings_table(&rings).render(conn.format));
            Ok(0)
        }
        RingCmd::Preview {
            tenant,
            update,
            conn,
        } => {
            let p = conn.api()?.ring_preview(&tenant, &update).await?;
            if conn.format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&p)?);
                return Ok(0);
            }
            let mut t =
                Table::new(&["group", "rule matches", "hosts", "would touch"]).numbers(&["hosts"]);
            for r in &p {
                t.rows.push(vec![
                    r.group.to_string(),
                    if r.rule_matches { "yes" } else { "no" }.into(),
                    r.hosts.len().to_string(),
                    r.hosts
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" "),
                ]);
            }
            print!("{}", t.render(conn.format));
            if let Some(r) = p.first() {
                println!("next: {}", r.next);
            }
            Ok(0)
        }
    }
}

/// Runs `patchday rollout ...`.
pub async fn rollout_cmd(cmd: RolloutCmd) -> anyhow::Result<i32> {
    match cmd {
        RolloutCmd::Status { update, conn } => {
            let s = conn.api()?.rollout(&update).await?;
            if conn.format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&s)?);
                return Ok(0);
            }
            match &s.halt {
                Some(h) if h.active() => println!("HALTED at {} by {}: {}", h.at, h.by, h.reason),
                Some(h) => println!("resumed (halted at {} by {}: {})", h.at, h.by, h.reason),
                None => println!("not halted"),
            }
            let mut t = Table::new(&[
                "tenant",
                "group",
                "approved",
                "applicable",
                "installed",
                "failed",
                "wave",
                "gate",
            ])
            .numbers(&["applicable", "installed", "failed", "wave"]);
            for r in &s.rings {
                t.rows.push(vec![
                    r.tenant.to_string(),
                    r.group.to_string(),
                    r.approved_at.map(|a| a.to_string()).unwrap_or_default(),
                    r.applicable.to_string(),
                    r.installed.to_string(),
                    r.failed.to_string(),
                    r.wave_admitted.to_string(),
                    r.verdict.clone(),
                ]);
            }
            print!("{}", t.render(conn.format));
            Ok(0)
        }
        RolloutCmd::Halt {
            update,
            reason,
            conn,
        } => {
            let h = conn.api()?.halt_rollout(&update, &reason).await?;
            println!("rollout of {} halted at {}: {}", h.update, h.at, h.reason);
            Ok(0)
        }
        RolloutCmd::Resume { update, conn } => {
            conn.api()?.resume_rollout(&update).await?;
            println!("rollout of {update} resumed");
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_specs_parse_with_defaults() {
        let r = parse_ring("broad:5d:3d:1d").unwrap();
        assert_eq!(r.group.as_str(), "broad");
        assert_eq!(r.deferral_seconds, 5 * 86_400);
        assert_eq!(r.deadline_seconds, Some(3 * 86_400));
        assert_eq!(r.grace_seconds, 86_400);
        assert_eq!(r.success_permille, 950);
        let e = parse_ring("pilot:soon").unwrap_err().to_string();
        assert!(e.contains("not a duration"), "{e}");
    }
}
