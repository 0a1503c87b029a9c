//! `patchday milter`: mail attachment filtering for Postfix (issue 14, point 4). The work
//! is `patchday-milter`'s; this module reads flags, opens the log, and prints.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use patchday_clamd::{Clamd, ClamdAddress};
use patchday_milter::inspect::{inspect_message, Limits};
use patchday_milter::policy::Policy;
use patchday_milter::quarantine::{self, Reinject};
use patchday_milter::record::VerdictLog;
use patchday_milter::record::VerdictRecord;
use patchday_milter::verdict::content_verdict;
use patchday_milter::{Engine, Report};

use crate::api::Conn;

/// Milter commands.
#[derive(clap::Subcommand)]
pub enum MilterCmd {
    /// Runs the milter for Postfix: each message is checked against the tenant's policy
    /// (blocked types by content, archives within bounds, Office macros, encrypted
    /// archives), then scanned by clamd; rejected (5xx with the reason), quarantined,
    /// delivered, or tempfailed (4xx) when clamd cannot answer. Every verdict is one JSON
    /// line in --log.
    ///
    /// Example: patchday milter run --policy /etc/patchday/milter.toml --listen 127.0.0.1:8893 --clamd unix:/run/clamav/clamd.ctl --quarantine /var/lib/patchday/quarantine --log /var/log/patchday/milter.jsonl
    ///
    /// Postfix main.cf: smtpd_milters = inet:127.0.0.1:8893 and milter_default_action = tempfail
    ///
    /// Policy file (one [[tenant]] per customer, chosen by recipient domain):
    ///   [[tenant]]
    ///   name = "acme"
    ///   domains = ["acme.example"]
    ///   block_types = ["elf", "pe", "mach-o", "script", "java-class", "shortcut"]
    ///   macros = "quarantine"            # accept | quarantine | reject
    ///   encrypted_archives = "reject"
    ///   virus = "reject"                 # or quarantine
    ///   max_depth = 3
    ///   max_expanded_bytes = 104857600
    Run(RunArgs),
    /// Checks one message file against a policy's content rules (no clamd), as the milter
    /// would before scanning, and prints what it saw.
    ///
    /// Example: patchday milter check --policy milter.toml --recipient bob@acme.example message.eml
    Check {
        /// The policy file.
        #[arg(long)]
        policy: PathBuf,
        /// The recipient whose tenant's policy applies.
        #[arg(long)]
        recipient: String,
        /// The message (RFC 5322, e.g. a saved .eml).
        message: PathBuf,
    },
    /// Lists quarantined messages.
    ///
    /// Example: patchday milter list --quarantine /var/lib/patchday/quarantine
    List {
        /// The quarantine directory.
        #[arg(long)]
        quarantine: PathBuf,
    },
    /// Releases a quarantined message to its recipients through Postfix's sendmail (which
    /// enters through pickup, so smtpd_milters do not hold it again); --print only shows
    /// the command.
    ///
    /// Example: patchday milter release --quarantine /var/lib/patchday/quarantine 20261202T041100Z-0a1b2c3d
    Release {
        /// The quarantine ID (from `patchday milter list`).
        id: String,
        /// The quarantine directory.
        #[arg(long)]
        quarantine: PathBuf,
        /// Postfix's sendmail.
        #[arg(long, default_value = "/usr/sbin/sendmail")]
        sendmail: PathBuf,
        /// Postfix's configuration directory, when not /etc/postfix (sendmail -C).
        #[arg(long)]
        postfix_config: Option<PathBuf>,
        /// Print the command that would re-inject it instead of running it.
        #[arg(long)]
        print: bool,
    },
}

/// `patchday milter run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The policy file (TOML, one [[tenant]] table per customer).
    #[arg(long)]
    policy: PathBuf,
    /// Where Postfix reaches the milter (smtpd_milters = inet:ADDRESS).
    #[arg(long, default_value = "127.0.0.1:8893")]
    listen: String,
    /// clamd's socket: unix:PATH or tcp:HOST:PORT.
    #[arg(long, default_value = "unix:/run/clamav/clamd.ctl")]
    clamd: String,
    /// Seconds clamd has for one message; beyond that the message is tempfailed.
    #[arg(long, default_value_t = 60)]
    clamd_timeout: u64,
    /// The quarantine directory (created 0700).
    #[arg(long, default_value = "/var/lib/patchday/quarantine")]
    quarantine: PathBuf,
    /// Append verdicts here as JSON lines (default: standard output).
    #[arg(long)]
    log: Option<PathBuf>,
    /// With --server and a tenant-admin --token, every verdict is also reported to the
    /// Patchday server (`GET /v1/tenants/T/mail/verdicts` lists them).
    #[command(flatten)]
    conn: Conn,
}

/// Runs a milter command.
pub async fn run(cmd: MilterCmd, now: fn() -> jiff::Timestamp) -> anyhow::Result<i32> {
    match cmd {
        MilterCmd::Run(a) => serve(a, now).await,
        MilterCmd::Check {
            policy,
            recipient,
            message,
        } => {
            let policy = Policy::load(&policy)?;
            let tenant = policy.tenant_for(&recipient).with_context(|| {
                format!("no tenant's domains include {recipient:?} and no tenant has \"*\"")
            })?;
            let raw = std::fs::read(&message)
                .with_context(|| format!("cannot read {}", message.display()))?;
            let seen = inspect_message(&raw, &Limits::from(tenant));
            let verdict = content_verdict(tenant, &seen);
            let out = serde_json::json!({
                "tenant": tenant.name,
                "verdict": verdict.kind,
                "reasons": verdict.reasons,
                "files": seen.files,
                "problems": seen.problems,
                "note": "content rules only; the running milter also asks clamd",
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(0)
        }
        MilterCmd::List { quarantine } => {
            for r in quarantine::list(&quarantine)? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    r.quarantine_id.as_deref().unwrap_or("-"),
                    r.time,
                    patchday_text::terminal(&r.sender),
                    patchday_text::terminal(&r.recipients.join(",")),
                    patchday_text::terminal(&r.reasons.join("; ")),
                );
            }
            Ok(0)
        }
        MilterCmd::Release {
            id,
            quarantine,
            sendmail,
            postfix_config,
            print,
        } => {
            let how = Reinject {
                sendmail,
                postfix_config,
            };
            if print {
                let record = quarantine::list(&quarantine)?
                    .into_iter()
                    .find(|r| r.quarantine_id.as_deref() == Some(id.as_str()))
                    .with_context(|| {
                        format!("no quarantined message {id} in {}", quarantine.display())
                    })?;
                println!(
                    "{}",
                    how.by_hand(&record, &quarantine.join(format!("{id}.eml")))
                );
                return Ok(0);
            }
            let record = quarantine::release(&quarantine, &id, &how)?;
            println!(
                "released {id} to {}",
                patchday_text::terminal(&record.recipients.join(", "))
            );
            Ok(0)
        }
    }
}

async fn serve(a: RunArgs, now: fn() -> jiff::Timestamp) -> anyhow::Result<i32> {
    let policy = Policy::load(&a.policy)?;
    let address: ClamdAddress = a
        .clamd
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--clamd {e}"))?;
    let clamd = Clamd {
        address,
        timeout: Duration::from_secs(a.clamd_timeout.max(1)),
    };
    // Not fatal: the milter tempfails until clamd answers, which Postfix retries.
    if let Err(e) = clamd.ping().await {
        tracing::warn!("{e}; messages are tempfailed until it answers");
    }
    let log = VerdictLog::open(a.log.as_deref())
        .with_context(|| format!("cannot open the verdict log {:?}", a.log))?;
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("cannot listen on {} (is another milter there?)", a.listen))?;
    tracing::info!(
        "milter listening on {} (Postfix: smtpd_milters = inet:{})",
        listener.local_addr()?,
        listener.local_addr()?
    );
    let engine = Arc::new(Engine {
        policy,
        clamd,
        quarantine_dir: a.quarantine,
        log,
        now,
        report: reporter(&a.conn)?,
    });
    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return std::future::pending::<()>().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    patchday_milter::serve(listener, engine, shutdown)
        .await
        .context("the milter stopped")?;
    Ok(0)
}

/// Reports each verdict to the server in the background, once per tenant it concerns; a
/// failed report is logged and does not change the verdict.
fn reporter(conn: &Conn) -> anyhow::Result<Option<Report>> {
    if conn.server.is_none() {
        return Ok(None);
    }
    let api = Arc::new(conn.api()?);
    Ok(Some(Box::new(move |record: VerdictRecord| {
        let api = api.clone();
        tokio::spawn(async move {
            let verdict = patchday_types::api::MailVerdict {
                time: record.time,
                verdict: serde_json::to_value(record.verdict)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                queue_id: record.queue_id,
                sender: record.sender,
                recipients: record.recipients,
                reasons: record.reasons,
                size: record.size,
                quarantine_id: record.quarantine_id,
            };
            for tenant in &record.tenants {
                let result = match patchday_types::TenantId::new(tenant.as_str()) {
                    Ok(t) => api.report_mail_verdict(&t, &verdict).await,
                    Err(e) => Err(anyhow::anyhow!("tenant name {tenant:?} in the policy: {e}")),
                };
                if let Err(e) = result {
                    tracing::warn!("the verdict was not reported to the server: {e:#}");
                }
            }
        });
    })))
}
