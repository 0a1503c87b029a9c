//! Issue 11, point 5: `patchday notify`: the server's notification targets and their
//! delivery log. Targets are server configuration (`patchday server --webhook` and
//! `--notify-targets FILE`), like Alertmanager's receivers: secrets stay in files on the
//! server, never in the API.

use crate::api::Conn;
use crate::render::{Format, Table};
use patchday_types::TenantId;

/// `patchday notify ...`.
#[derive(clap::Subcommand)]
pub enum NotifyCmd {
    /// Lists the notification targets in scope (a tenant's token: its tenant's targets).
    /// They are configured on the server: `--webhook URL --webhook-secret-file F` for one
    /// global webhook, `--notify-targets FILE` for more, global or per tenant:
    ///
    ///   [[webhook]]
    ///   name = "acme-ops"
    ///   url = "https://hooks.acme.example/patchday"
    ///   secret_file = "/etc/patchday/acme-hook.secret"   # mode 0600
    ///   tenant = "acme"                                   # optional
    ///   events = ["rollout.halted", "host.broken"]        # optional: all
    ///
    ///   [[email]]
    ///   name = "noc-mail"
    ///   smtp = "smtp.example.com:587"
    ///   tls = "starttls"        # or "tls" (465), "none" (loopback relay only)
    ///   from = "patchday@example.com"
    ///   to = ["noc@example.com"]
    ///   username = "patchday"   # optional, with password_file (mode 0600)
    ///   password_file = "/etc/patchday/smtp.password"
    ///
    /// Events: rollout.halted, host.broken, update.overdue, catalog.expiring,
    /// vulnerability.known-exploited.
    ///
    /// Example: patchday notify targets
    Targets {
        #[command(flatten)]
        conn: Conn,
    },
    /// The delivery log: each event once, per target its tries (newest first).
    ///
    /// Example: patchday notify log --tenant acme --limit 50
    Log {
        /// Only this tenant's events (a provider admin sees every event by default).
        #[arg(long)]
        tenant: Option<TenantId>,
        /// Most deliveries shown.
        #[arg(long, default_value_t = 200)]
        limit: u32,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Runs `patchday notify ...`.
pub async fn run(cmd: NotifyCmd) -> anyhow::Result<i32> {
    match cmd {
        NotifyCmd::Targets { conn } => {
            let v = conn.api()?.notifications(None, 1).await?;
            if conn.format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&v.targets)?);
                return Ok(0);
            }
            let mut t = Table::new(&["name", "kind", "destination", "tenant", "events"]);
            for x in v.targets {
                let events: Vec<&str> = x.events.iter().map(|e| e.as_str()).collect();
                t.rows.push(vec![
                    x.name,
                    x.kind,
                    x.destination,
                    x.tenant
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "(all)".into()),
                    if events.is_empty() {
                        "(all)".into()
                    } else {
                        events.join(",")
                    },
                ]);
            }
            print!("{}", t.render(conn.format));
            Ok(0)
        }
        NotifyCmd::Log {
            tenant,
            limit,
            conn,
        } => {
            let v = conn.api()?.notifications(tenant.as_ref(), limit).await?;
            if conn.format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&v.deliveries)?);
                return Ok(0);
            }
            let mut t = Table::new(&[
                "at", "event", "tenant", "target", "status", "tries", "last", "subject",
            ])
            .numbers(&["tries"]);
            for d in v.deliveries {
                t.rows.push(vec![
                    d.created_at.to_string(),
                    d.event.to_string(),
                    d.tenant.map(|t| t.to_string()).unwrap_or_default(),
                    d.target,
                    d.status.as_str().into(),
                    d.attempts.len().to_string(),
                    d.attempts
                        .last()
                        .map(|a| a.detail.clone())
                        .unwrap_or_default(),
                    d.subject,
                ]);
            }
            print!("{}", t.render(conn.format));
            Ok(0)
        }
    }
}
