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
    let (report, reports) = match reporter(&a.conn)? {
        Some((r, q)) => (Some(r), Some(q)),
        None => (None, None),
    };
    let engine = Arc::new(Engine {
        policy,
        clamd,
        quarantine_dir: a.quarantine,
        log,
        now,
        report,
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
    let served = patchday_milter::serve(listener, engine, shutdown).await;
    if let Some(q) = reports {
        q.drain(REPORT_DRAIN).await;
    }
    served.context("the milter stopped")?;
    Ok(0)
}

/// Verdict reports waiting for the server, at most this many (a server down for long:
/// newer verdicts beyond it are in the verdict log only, and the milter says so).
const REPORT_QUEUE: usize = 10_000;
/// Longest wait between two tries of a report the server could not take.
const REPORT_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How long a stopping milter keeps handing over the verdict reports still queued.
const REPORT_DRAIN: Duration = Duration::from_secs(10);

enum Job {
    Report(patchday_types::TenantId, patchday_types::api::MailVerdict),
    Stop,
}

/// The background sender of verdict reports: one at a time, in order, each tried again
/// with back-off while the server is unreachable or busy (a verdict decided while the
/// server restarts still reaches it), dropped with a warning when the server refuses it.
/// The verdict itself never waits for the server, and every verdict is in the log.
struct Reports {
    tx: tokio::sync::mpsc::Sender<Job>,
    pending: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

fn reporter(conn: &Conn) -> anyhow::Result<Option<(Report, Reports)>> {
    if conn.server.is_none() {
        return Ok(None);
    }
    Ok(Some(report_queue(conn.api()?, Duration::from_secs(1))))
}

/// Whether a failed report may succeed later: the server unreachable, or busy or failing
/// (5xx, 408, 429); not when it refused the report itself.
fn worth_retrying(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<crate::api::Refused>() {
        Some(r) => r.is_transient(),
        None => e.chain().any(|c| c.is::<reqwest::Error>()),
    }
}

fn report_queue(api: crate::api::Api, first_wait: Duration) -> (Report, Reports) {
    use std::sync::atomic::Ordering;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Job>(REPORT_QUEUE);
    let pending = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let left = pending.clone();
    let task = tokio::spawn(async move {
        while let Some(Job::Report(tenant, verdict)) = rx.recv().await {
            let mut wait = first_wait;
            loop {
                match api.report_mail_verdict(&tenant, &verdict).await {
                    Ok(()) => break,
                    Err(e) if worth_retrying(&e) => {
                        tracing::warn!(
                            "a verdict was not reported to the server yet ({e:#}); trying again in {} s",
                            wait.as_secs_f64()
                        );
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(REPORT_BACKOFF_MAX);
                    }
                    Err(e) => {
                        tracing::warn!("the server refused a verdict report ({e:#}); the verdict is in the verdict log only");
                        break;
                    }
                }
            }
            left.fetch_sub(1, Ordering::AcqRel);
        }
    });
    let queue = tx.clone();
    let counted = pending.clone();
    let report: Report = Box::new(move |record: VerdictRecord| {
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
            let t = match patchday_types::TenantId::new(tenant.as_str()) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(
                        "tenant name {tenant:?} in the policy: {e}; the verdict is not reported"
                    );
                    continue;
                }
            };
            counted.fetch_add(1, Ordering::AcqRel);
            if queue.try_send(Job::Report(t, verdict.clone())).is_err() {
                counted.fetch_sub(1, Ordering::AcqRel);
                tracing::error!("{REPORT_QUEUE} verdict reports are waiting for the server; this one (tenant {tenant}) is in the verdict log only");
            }
        }
    });
    (report, Reports { tx, pending, task })
}

impl Reports {
    /// Hands over what is queued, for at most `within`; says how many were not.
    async fn drain(self, within: Duration) -> usize {
        let Reports { tx, pending, task } = self;
        let finished = tokio::time::timeout(within, async {
            let _ = tx.send(Job::Stop).await;
            let _ = task.await;
        })
        .await;
        let left = pending.load(std::sync::atomic::Ordering::Acquire);
        if finished.is_err() && left > 0 {
            tracing::error!("{left} verdict report(s) not delivered to the server before stopping; the verdicts are in the verdict log");
        }
        left
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::io::{Read, Write};
    use std::sync::Mutex;

    /// A real HTTP listener on loopback answering the statuses in `script` in turn (then
    /// 200); the request bodies it received.
    fn server(script: Vec<u16>) -> (String, Arc<Mutex<Vec<String>>>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let got = seen.clone();
        std::thread::spawn(move || {
            let mut script = script.into_iter();
            for conn in l.incoming() {
                let Ok(mut c) = conn else { continue };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body = loop {
                    let n = c.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            break Some(body.to_string());
                        }
                    }
                };
                let Some(body) = body else { continue };
                got.lock().unwrap().push(body);
                let status = script.next().unwrap_or(200);
                let answer = if status == 200 { "null" } else { "{}" };
                let _ = write!(
                    c,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        (url, seen)
    }

    fn verdict(queue_id: &str) -> VerdictRecord {
        VerdictRecord {
            time: jiff::Timestamp::UNIX_EPOCH,
            queue_id: Some(queue_id.into()),
            tenants: vec!["acme".into()],
            sender: "a@outside.example".into(),
            recipients: vec!["b@acme.example".into()],
            verdict: patchday_milter::verdict::VerdictKind::Accept,
            reasons: Vec::new(),
            files: Vec::new(),
            size: 10,
            quarantine_id: None,
        }
    }

    #[tokio::test]
    async fn a_report_the_server_cannot_take_yet_is_sent_again_until_it_can() {
        let (url, seen) = server(vec![503, 502, 200]);
        let (report, queue) = report_queue(
            crate::api::Api::new(&url, "t", None).unwrap(),
            Duration::from_millis(10),
        );
        report(verdict("Q1"));
        report(verdict("Q2"));
        assert_eq!(
            queue.drain(Duration::from_secs(10)).await,
            0,
            "all handed over"
        );
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.len(),
            4,
            "Q1 three times (503, 502, 200), then Q2: {seen:?}"
        );
        assert!(seen[..3].iter().all(|b| b.contains("Q1")), "{seen:?}");
        assert!(seen[3].contains("Q2"), "in order: {seen:?}");
    }

    #[tokio::test]
    async fn a_report_the_server_refuses_is_not_sent_again() {
        let (url, seen) = server(vec![400, 200]);
        let (report, queue) = report_queue(
            crate::api::Api::new(&url, "t", None).unwrap(),
            Duration::from_millis(10),
        );
        report(verdict("Q1"));
        report(verdict("Q2"));
        assert_eq!(queue.drain(Duration::from_secs(10)).await, 0);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen[0].contains("Q1") && seen[1].contains("Q2"), "{seen:?}");
    }

    #[tokio::test]
    async fn a_stopping_milter_says_how_many_reports_the_unreachable_server_did_not_get() {
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let api = crate::api::Api::new(&format!("http://127.0.0.1:{port}"), "t", None).unwrap();
        let (report, queue) = report_queue(api, Duration::from_millis(10));
        report(verdict("Q1"));
        report(verdict("Q2"));
        assert_eq!(queue.drain(Duration::from_millis(300)).await, 2);
    }
}
