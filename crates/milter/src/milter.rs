//! The milter itself: collects one message per SMTP transaction (bounded), then judges it
//! at end of message.

use crate::inspect::{inspect_message, Limits};
use crate::policy::{Policy, TenantPolicy};
use crate::quarantine;
use crate::record::{FileSummary, VerdictLog, VerdictRecord};
use crate::verdict::{content_verdict, decide, Scan, Verdict, VerdictKind};
use indymilter::{Callbacks, Config, Context, EomContext, SetErrorReply, Status};
use patchday_clamd::Clamd;
use std::ffi::CString;
use std::path::PathBuf;
use std::sync::Arc;

/// What is called with every verdict after it was logged (the server report).
pub type Report = Box<dyn Fn(VerdictRecord) + Send + Sync>;

/// Everything the milter needs to judge a message.
pub struct Engine {
    /// The attachment policy.
    pub policy: Policy,
    /// The virus scanner.
    pub clamd: Clamd,
    /// Where quarantined messages are kept.
    pub quarantine_dir: PathBuf,
    /// Where verdicts are written.
    pub log: VerdictLog,
    /// The clock (read only at the binary's edge).
    pub now: fn() -> jiff::Timestamp,
    /// Called with every verdict after it was logged (the server report).
    pub report: Option<Report>,
}

/// One SMTP transaction's envelope and message.
#[derive(Default)]
pub struct Transaction {
    sender: String,
    recipients: Vec<String>,
    raw: Vec<u8>,
}

/// The outcome of judging one message, before it is answered.
pub struct Judgement {
    /// The verdict record (logged and reported).
    pub record: VerdictRecord,
    /// The first reason, for the SMTP reply.
    pub reply: String,
}

fn text(c: &CString) -> String {
    String::from_utf8_lossy(c.as_bytes()).into_owned()
}

/// SMTP reply text: printable ASCII only (names in it come from the sender), bounded.
fn reply_text(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    out.truncate(400);
    out
}

impl Engine {
    /// The tenants whose policy applies to these recipients (each once).
    fn tenants(&self, recipients: &[String]) -> Vec<&TenantPolicy> {
        let mut out: Vec<&TenantPolicy> = Vec::new();
        for r in recipients {
            if let Some(t) = self.policy.tenant_for(r) {
                if !out.iter().any(|o| o.name == t.name) {
                    out.push(t);
                }
            }
        }
        out
    }

    /// Judges one whole message: every applicable tenant's policy, the strictest wins.
    pub async fn judge(&self, tx: &Transaction, queue_id: Option<String>) -> Judgement {
        let now = (self.now)();
        let tenants = self.tenants(&tx.recipients);
        let mut verdict = Verdict {
            kind: VerdictKind::Accept,
            reasons: vec![],
        };
        let mut files = Vec::new();
        let mut scan: Option<Scan> = None;
        for tenant in &tenants {
            let seen = inspect_message(&tx.raw, &Limits::from(*tenant));
            if files.is_empty() {
                files = seen.files.iter().map(FileSummary::from).collect();
            }
            let this = if content_verdict(tenant, &seen).kind == VerdictKind::Reject {
                decide(tenant, &seen, &Scan::NotNeeded)
            } else {
                if scan.is_none() {
                    scan = Some(match self.clamd.scan(&tx.raw).await {
                        Ok(result) => Scan::Done(result),
                        Err(e) => Scan::Failed(e.to_string()),
                    });
                }
                decide(tenant, &seen, scan.as_ref().unwrap_or(&Scan::NotNeeded))
            };
            verdict.kind = verdict.kind.max(this.kind);
            for r in this.reasons {
                if !verdict.reasons.contains(&r) {
                    verdict.reasons.push(r);
                }
            }
        }
        if tenants.is_empty() {
            verdict
                .reasons
                .push("no tenant policy for these recipients".into());
        }
        let mut record = VerdictRecord {
            time: now,
            queue_id,
            tenants: tenants.iter().map(|t| t.name.clone()).collect(),
            sender: tx.sender.clone(),
            recipients: tx.recipients.clone(),
            verdict: verdict.kind,
            reasons: verdict.reasons,
            files,
            size: tx.raw.len() as u64,
            quarantine_id: None,
        };
        if record.verdict == VerdictKind::Quarantine {
            let id = quarantine::new_id(now);
            record.quarantine_id = Some(id.clone());
            if let Err(e) = quarantine::store(&self.quarantine_dir, &id, &tx.raw, &record) {
                // Not kept, so not discarded either: the sender's MTA tries again.
                tracing::error!("quarantine failed, answering tempfail: {e}");
                record.verdict = VerdictKind::Tempfail;
                record.quarantine_id = None;
                record
                    .reasons
                    .push("quarantine unavailable, try again later".into());
            }
        }
        let reply = reply_text(&record.reasons.join("; "));
        Judgement { record, reply }
    }

    fn finish(&self, record: VerdictRecord) {
        self.log.write(&record);
        tracing::info!(
            verdict = ?record.verdict,
            queue_id = record.queue_id.as_deref().unwrap_or("-"),
            reasons = %record.reasons.join("; "),
            "milter verdict"
        );
        if let Some(report) = &self.report {
            report(record);
        }
    }
}

async fn on_eom(engine: &Engine, cx: &mut EomContext<Transaction>) -> Status {
    let Some(tx) = cx.data.take() else {
        return Status::Continue;
    };
    let queue_id = cx
        .macros
        .get(c"i")
        .map(|v| v.to_string_lossy().into_owned());
    let judgement = engine.judge(&tx, queue_id).await;
    let status = match judgement.record.verdict {
        VerdictKind::Accept => Status::Continue,
        VerdictKind::Quarantine => Status::Discard,
        VerdictKind::Reject => {
            reply(
                cx,
                "550",
                "5.7.1",
                &format!("message refused: {}", judgement.reply),
            );
            Status::Reject
        }
        VerdictKind::Tempfail => {
            reply(
                cx,
                "451",
                "4.7.1",
                &format!("message not accepted now: {}", judgement.reply),
            );
            Status::Tempfail
        }
    };
    engine.finish(judgement.record);
    status
}

fn reply(cx: &mut EomContext<Transaction>, code: &str, enhanced: &str, text: &str) {
    if let Err(e) = cx
        .reply
        .set_error_reply(code, Some(enhanced), [reply_text(text)])
    {
        tracing::warn!("cannot set the SMTP reply text: {e}");
    }
}

fn too_big(engine: &Engine, cx: &mut Context<Transaction>, limit: u64) -> Status {
    let tx = cx.data.take().unwrap_or_default();
    let reason = format!("message larger than {limit} bytes cannot be inspected");
    if let Err(e) =
        cx.reply
            .set_error_reply("552", Some("5.3.4"), [format!("message refused: {reason}")])
    {
        tracing::warn!("cannot set the SMTP reply text: {e}");
    }
    engine.finish(VerdictRecord {
        time: (engine.now)(),
        queue_id: cx
            .macros
            .get(c"i")
            .map(|v| v.to_string_lossy().into_owned()),
        tenants: engine
            .tenants(&tx.recipients)
            .iter()
            .map(|t| t.name.clone())
            .collect(),
        sender: tx.sender,
        recipients: tx.recipients,
        verdict: VerdictKind::Reject,
        reasons: vec![reason],
        files: vec![],
        size: tx.raw.len() as u64,
        quarantine_id: None,
    });
    Status::Reject
}

/// The milter callbacks over a shared engine.
pub fn callbacks(engine: Arc<Engine>) -> Callbacks<Transaction> {
    let limit = engine.policy.max_message_bytes();
    let (e_body, e_eom, e_hdr) = (engine.clone(), engine.clone(), engine);
    Callbacks::new()
        .on_mail(|cx, args| {
            Box::pin(async move {
                cx.data = Some(Transaction {
                    sender: args
                        .first()
                        .map(text)
                        .unwrap_or_default()
                        .trim_matches(|c| c == '<' || c == '>')
                        .to_string(),
                    ..Default::default()
                });
                Status::Continue
            })
        })
        .on_rcpt(|cx, args| {
            Box::pin(async move {
                if let (Some(tx), Some(r)) = (cx.data.as_mut(), args.first()) {
                    tx.recipients
                        .push(text(r).trim_matches(|c| c == '<' || c == '>').to_string());
                }
                Status::Continue
            })
        })
        .on_header(move |cx, name, value| {
            let engine = e_hdr.clone();
            Box::pin(async move {
                let Some(tx) = cx.data.as_mut() else {
                    return Status::Continue;
                };
                tx.raw.extend_from_slice(name.as_bytes());
                tx.raw.extend_from_slice(b": ");
                tx.raw.extend_from_slice(value.as_bytes());
                tx.raw.extend_from_slice(b"\r\n");
                if tx.raw.len() as u64 > limit {
                    return too_big(&engine, cx, limit);
                }
                Status::Continue
            })
        })
        .on_eoh(|cx| {
            Box::pin(async move {
                if let Some(tx) = cx.data.as_mut() {
                    tx.raw.extend_from_slice(b"\r\n");
                }
                Status::Continue
            })
        })
        .on_body(move |cx, chunk| {
            let engine = e_body.clone();
            Box::pin(async move {
                let Some(tx) = cx.data.as_mut() else {
                    return Status::Continue;
                };
                tx.raw.extend_from_slice(&chunk);
                if tx.raw.len() as u64 > limit {
                    return too_big(&engine, cx, limit);
                }
                Status::Continue
            })
        })
        .on_eom(move |cx| {
            let engine = e_eom.clone();
            Box::pin(async move { on_eom(&engine, cx).await })
        })
        .on_abort(|cx| {
            Box::pin(async move {
                cx.data = None;
                Status::Continue
            })
        })
}

/// Serves the milter on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: Arc<Engine>,
    shutdown: impl std::future::Future,
) -> std::io::Result<()> {
    indymilter::run(listener, callbacks(engine), Config::default(), shutdown).await
}
