//! Delivering due notifications: webhooks and SMTP, each try logged, retries with
//! exponential back-off and jitter.

use super::{EmailTarget, RetryPolicy, SmtpTls, Target, TargetKind};
use crate::state::AppState;
use hmac::{Hmac, Mac};
use jiff::{SignedDuration, Timestamp};
use patchday_store::{DueDelivery, OutboxEvent};
use patchday_types::notify::{DeliveryAttempt, DeliveryStatus};
use rand::Rng;
use sha2::Sha256;

/// The `X-Patchday-Signature-256` header value: `sha256=` and the hex HMAC-SHA256 of
/// [`signed_payload`] under the shared secret.
pub fn signature(secret: &[u8], payload: &[u8]) -> String {
    // HMAC takes keys of any length; the error case cannot happen.
    match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(payload);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => String::new(),
    }
}

/// What a webhook signature covers: the `X-Patchday-Timestamp` value (Unix seconds), a
/// dot, and the body. A receiver that refuses old timestamps (five minutes, say) and
/// remembers `X-Patchday-Delivery` keys cannot be fed a replayed body.
pub fn signed_payload(timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut p = format!("{timestamp}.").into_bytes();
    p.extend_from_slice(body);
    p
}

/// How long to wait after `attempts` failed tries: `base · 2^(attempts-1)`, at most
/// `max_delay`, of which the upper half is scaled by `jitter` (0 to 1, random), so a
/// fleet of deliveries failing together does not retry together.
pub fn retry_delay(policy: &RetryPolicy, attempts: u32, jitter: f64) -> SignedDuration {
    let base = policy.base.as_secs_f64().max(0.0);
    let exp = attempts.saturating_sub(1).min(30);
    let full = (base * f64::from(1u32 << exp)).min(policy.max_delay.as_secs_f64().max(0.0));
    let jitter = jitter.clamp(0.0, 1.0);
    SignedDuration::try_from_secs_f64(full / 2.0 + full / 2.0 * jitter).unwrap_or(policy.max_delay)
}

/// The JSON a receiver gets: the event's envelope and its own fields.
fn body(e: &OutboxEvent) -> String {
    let mut v = serde_json::json!({
        "id": e.key,
        "event": e.event.as_str(),
        "tenant": e.tenant,
        "subject": e.subject,
        "at": e.at,
    });
    if let (Some(obj), Some(fields)) = (v.as_object_mut(), e.body.as_object()) {
        for (k, val) in fields {
            obj.entry(k.clone()).or_insert_with(|| val.clone());
        }
    }
    v.to_string()
}

/// Delivers every due delivery once, and records each try.
pub async fn due(state: &AppState) -> anyhow::Result<()> {
    let now = state.clock.now();
    let due = state.store.due_deliveries(now, 100).await?;
    if due.is_empty() {
        return Ok(());
    }
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    for d in due {
        let target = state
            .config
            .notify
            .targets
            .iter()
            .find(|t| t.name == d.target);
        let at = state.clock.now();
        let result = match target {
            Some(t) => send(&client, t, &d.event, at).await,
            // The target left the configuration: give up at once, said so in the log.
            None => Err(format!(
                "no target named {} is configured any more",
                d.target
            )),
        };
        record(state, &d, target.is_some(), result, at).await?;
    }
    Ok(())
}

async fn record(
    state: &AppState,
    d: &DueDelivery,
    retriable: bool,
    result: Result<String, String>,
    at: Timestamp,
) -> anyhow::Result<()> {
    let n = d.attempts.saturating_add(1);
    let policy = &state.config.notify.retry;
    let (ok, detail) = match result {
        Ok(s) => (true, s),
        Err(s) => (false, s),
    };
    let (status, next_at) = if ok {
        tracing::info!(key = %d.event.key, target = %d.target, attempt = n, "notification delivered");
        (DeliveryStatus::Delivered, at)
    } else if !retriable || n >= policy.max_attempts {
        tracing::warn!(key = %d.event.key, target = %d.target, attempt = n, error = %detail, "notification given up");
        (DeliveryStatus::Failed, at)
    } else {
        let jitter: f64 = rand::thread_rng().gen();
        let next = at.checked_add(retry_delay(policy, n, jitter)).unwrap_or(at);
        tracing::warn!(key = %d.event.key, target = %d.target, attempt = n, error = %detail, next = %next, "notification failed; will retry");
        (DeliveryStatus::Pending, next)
    };
    let attempt = DeliveryAttempt {
        attempt: n,
        at,
        ok,
        detail: patchday_text::terminal(&detail).chars().take(500).collect(),
    };
    state
        .store
        .record_delivery(d.id, &attempt, status, next_at)
        .await?;
    Ok(())
}

/// One try; `Ok` with the receiver's answer, `Err` with why it failed.
async fn send(
    client: &reqwest::Client,
    target: &Target,
    e: &OutboxEvent,
    now: Timestamp,
) -> Result<String, String> {
    match &target.kind {
        TargetKind::Webhook { url, secret } => {
            let body = body(e);
            let ts = now.as_second();
            let sig = signature(
                secret.expose().as_bytes(),
                &signed_payload(ts, body.as_bytes()),
            );
            let r = client
                .post(url)
                .header("content-type", "application/json")
                .header("x-patchday-event", e.event.as_str())
                .header("x-patchday-delivery", &e.key)
                .header("x-patchday-timestamp", ts.to_string())
                .header("x-patchday-signature-256", sig)
                .body(body)
                .send()
                .await
                .map_err(|err| format!("cannot reach {url}: {err}"))?;
            let s = r.status();
            if s.is_success() {
                Ok(format!("HTTP {}", s.as_u16()))
            } else {
                Err(format!("HTTP {}", s.as_u16()))
            }
        }
        TargetKind::Email(m) => mail(m, e).await,
    }
}

async fn mail(m: &EmailTarget, e: &OutboxEvent) -> Result<String, String> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let mut b = Message::builder()
        .from(m.from.parse().map_err(|err| format!("from: {err}"))?)
        .subject(format!("[patchday] {}", e.subject));
    for to in &m.to {
        b = b.to(to.parse().map_err(|err| format!("to {to}: {err}"))?);
    }
    let text = format!(
        "{}\n\nevent: {}\ntenant: {}\nat: {}\nid: {}\n\n{}\n",
        e.subject,
        e.event,
        e.tenant
            .as_ref()
            .map_or("(the whole server)", |t| t.as_str()),
        e.at,
        e.key,
        serde_json::to_string_pretty(&e.body).unwrap_or_default()
    );
    let msg = b
        .header(ContentType::TEXT_PLAIN)
        .body(text)
        .map_err(|err| format!("cannot build the message: {err}"))?;
    let builder = match m.tls {
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&m.host)
            .map_err(|err| format!("smtp {}: {err}", m.host))?,
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&m.host)
            .map_err(|err| format!("smtp {}: {err}", m.host))?,
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&m.host),
    };
    let mut builder = builder
        .port(m.port)
        .timeout(Some(std::time::Duration::from_secs(20)));
    if let Some((user, pass)) = &m.login {
        builder = builder.credentials(Credentials::new(user.clone(), pass.expose().to_string()));
    }
    let r = builder
        .build()
        .send(msg)
        .await
        .map_err(|err| format!("smtp {}:{}: {err}", m.host, m.port))?;
    Ok(format!(
        "SMTP {} {}",
        r.code(),
        r.message().collect::<Vec<_>>().join(" ")
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn back_off_doubles_stays_under_its_cap_and_jitters_the_upper_half() {
        let p = RetryPolicy {
            base: SignedDuration::from_secs(10),
            max_delay: SignedDuration::from_secs(60),
            max_attempts: 8,
        };
        let s = |n, j| retry_delay(&p, n, j).as_secs_f64();
        assert_eq!(s(1, 1.0), 10.0);
        assert_eq!(s(1, 0.0), 5.0);
        assert_eq!(s(2, 1.0), 20.0);
        assert_eq!(s(3, 1.0), 40.0);
        assert_eq!(s(4, 1.0), 60.0, "capped");
        assert_eq!(s(40, 0.0), 30.0, "no overflow, capped");
        assert!((s(2, 0.5) - 15.0).abs() < 1e-9);
    }

    #[test]
    fn the_signature_covers_the_timestamp_so_a_replay_under_a_new_one_fails() {
        let body = br#"{"event":"rollout.halted"}"#;
        let a = signature(b"k", &signed_payload(1_700_000_000, body));
        let b = signature(b"k", &signed_payload(1_700_000_301, body));
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
        assert_ne!(a, b);
        assert_ne!(a, signature(b"other", &signed_payload(1_700_000_000, body)));
    }
}
