//! Issue 11, point 5: notifications. Events (a halted rollout, a broken host, an
//! overdue update, a catalog role about to expire, a known-exploited vulnerability in a
//! tenant's fleet) go into the store's outbox once each (deduplicated by a key), with
//! one delivery per target that wants them; a background task delivers what is due to
//! webhooks (HMAC-signed over a timestamp and the body) and SMTP, retries with
//! exponential back-off and jitter, and gives up after the last try. Every try is in the
//! delivery log (`GET /v1/notifications`, `patchday notify log`).
//!
//! Targets come from the server's configuration: `--webhook` (one global webhook) and a
//! targets file (`--notify-targets`, TOML, [`TargetsFile`]), global or per tenant.

mod deliver;
mod detect;

pub use deliver::{retry_delay, signature, signed_payload};

use crate::state::AppState;
use anyhow::Context;
use jiff::{SignedDuration, Timestamp};
use patchday_store::OutboxEvent;
use patchday_types::notify::{NotifyEvent, TargetInfo};
use patchday_types::{Secret, TenantId};
use std::path::{Path, PathBuf};

/// Where notifications go and how hard the server tries.
#[derive(Clone, Debug)]
pub struct NotifyConfig {
    /// Configured targets.
    pub targets: Vec<Target>,
    /// How often the task delivers what is due (and retries).
    pub every: std::time::Duration,
    /// How often it reads every tenant's hosts for broken hosts, overdue updates and
    /// known-exploited vulnerabilities (a read of every host: slower than deliveries).
    pub scan_every: std::time::Duration,
    /// Retries of a failed delivery.
    pub retry: RetryPolicy,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            targets: Vec::new(),
            every: std::time::Duration::from_secs(10),
            scan_every: std::time::Duration::from_secs(60),
            retry: RetryPolicy::default(),
        }
    }
}

/// Exponential back-off with jitter: the n-th retry waits about `base · 2^(n-1)`
/// (at most `max_delay`), half of it random; after `max_attempts` tries it gives up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first retry's delay.
    pub base: SignedDuration,
    /// The longest delay.
    pub max_delay: SignedDuration,
    /// Tries in all (the first one included).
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: SignedDuration::from_secs(30),
            max_delay: SignedDuration::from_hours(1),
            max_attempts: 8,
        }
    }
}

/// One configured target.
#[derive(Clone, Debug)]
pub struct Target {
    /// Its name in the delivery log (unique).
    pub name: String,
    /// Only this tenant's events; `None`: every event, the server's own included.
    pub tenant: Option<TenantId>,
    /// Only these events; empty: every event.
    pub events: Vec<NotifyEvent>,
    /// How it is reached.
    pub kind: TargetKind,
}

/// How a target is reached.
#[derive(Clone, Debug)]
pub enum TargetKind {
    /// An HTTP POST of the JSON body, signed.
    Webhook {
        /// The receiver.
        url: String,
        /// The shared HMAC secret (never logged: `Secret` redacts itself).
        secret: Secret,
    },
    /// An e-mail over SMTP.
    Email(EmailTarget),
}

/// An SMTP target.
#[derive(Clone, Debug)]
pub struct EmailTarget {
    /// SMTP server host.
    pub host: String,
    /// SMTP server port.
    pub port: u16,
    /// Transport security.
    pub tls: SmtpTls,
    /// The From address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// SMTP login, with its password.
    pub login: Option<(String, Secret)>,
}

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required; port 587). The default.
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: allowed only to a loopback address (a local relay, a test).
    None,
}

impl Target {
    /// Whether this target gets `event` about `tenant`.
    pub fn wants(&self, event: NotifyEvent, tenant: Option<&TenantId>) -> bool {
        let tenant_ok = match &self.tenant {
            None => true,
            Some(t) => tenant == Some(t),
        };
        tenant_ok && (self.events.is_empty() || self.events.contains(&event))
    }

    /// What `GET /v1/notifications` shows (no secret).
    pub fn info(&self) -> TargetInfo {
        let (kind, destination) = match &self.kind {
            TargetKind::Webhook { url, .. } => ("webhook", url.clone()),
            TargetKind::Email(e) => (
                "email",
                format!("smtp://{}:{} to {}", e.host, e.port, e.to.join(", ")),
            ),
        };
        TargetInfo {
            name: self.name.clone(),
            kind: kind.into(),
            destination,
            tenant: self.tenant.clone(),
            events: self.events.clone(),
        }
    }
}

// ---- The targets file ----

/// The targets file (`--notify-targets`, TOML): `[[webhook]]` and `[[email]]` tables.
/// Unknown keys are an error; secrets are in files of mode 0600.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetsFile {
    /// Webhooks.
    #[serde(default)]
    pub webhook: Vec<WebhookEntry>,
    /// E-mail targets.
    #[serde(default)]
    pub email: Vec<EmailEntry>,
}

/// `[[webhook]]` in the targets file.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEntry {
    /// Name in the delivery log.
    pub name: String,
    /// Receiver URL (http or https).
    pub url: String,
    /// File with the shared HMAC secret (mode 0600).
    pub secret_file: PathBuf,
    /// Only this tenant's events.
    pub tenant: Option<TenantId>,
    /// Only these events.
    #[serde(default)]
    pub events: Vec<String>,
}

/// `[[email]]` in the targets file.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailEntry {
    /// Name in the delivery log.
    pub name: String,
    /// SMTP server, `host:port`.
    pub smtp: String,
    /// `starttls` (default), `tls`, or `none` (loopback only).
    pub tls: Option<SmtpTls>,
    /// From address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// SMTP login name (needs `password_file`).
    pub username: Option<String>,
    /// File with the SMTP password (mode 0600).
    pub password_file: Option<PathBuf>,
    /// Only this tenant's events.
    pub tenant: Option<TenantId>,
    /// Only these events.
    #[serde(default)]
    pub events: Vec<String>,
}

/// Reads a secret from a file that only its owner may read (mode 0600 or stricter).
pub fn read_secret_file(path: &Path, what: &str) -> anyhow::Result<Secret> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .with_context(|| format!("reading the {what} {}", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        anyhow::ensure!(
            mode & 0o077 == 0,
            "the {what} {} is readable by others (mode {mode:o}): chmod 600 {}",
            path.display(),
            path.display()
        );
    }
    let s = std::fs::read_to_string(path)
        .with_context(|| format!("reading the {what} {}", path.display()))?;
    let s = s.trim();
    anyhow::ensure!(
        !s.is_empty(),
        "the {what} {} is empty: put a long random secret in it",
        path.display()
    );
    Ok(Secret::new(s))
}

fn events(names: &[String], target: &str) -> anyhow::Result<Vec<NotifyEvent>> {
    names
        .iter()
        .map(|n| {
            n.parse()
                .map_err(|e: String| anyhow::anyhow!("target {target}: {e}"))
        })
        .collect()
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl TargetsFile {
    /// Reads and checks a targets file: names unique, events known, URLs http(s),
    /// secrets readable by their owner only, plain SMTP only to loopback.
    pub fn load(path: &Path) -> anyhow::Result<Vec<Target>> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the notification targets {}", path.display()))?;
        let file: TargetsFile = toml::from_str(&text).with_context(|| {
            format!(
                "{} is not a valid targets file ([[webhook]] name, url, secret_file; [[email]] name, smtp, from, to; both may have tenant and events)",
                path.display()
            )
        })?;
        file.targets()
    }

    /// The targets this file describes.
    pub fn targets(self) -> anyhow::Result<Vec<Target>> {
        let mut out = Vec::new();
        for w in self.webhook {
            anyhow::ensure!(
                w.url.starts_with("https://") || w.url.starts_with("http://"),
                "webhook {}: {:?} is not an http(s) URL",
                w.name,
                w.url
            );
            out.push(Target {
                events: events(&w.events, &w.name)?,
                kind: TargetKind::Webhook {
                    url: w.url,
                    secret: read_secret_file(&w.secret_file, "webhook secret")?,
                },
                tenant: w.tenant,
                name: w.name,
            });
        }
        for e in self.email {
            let (host, port) = e
                .smtp
                .rsplit_once(':')
                .with_context(|| format!("email {}: smtp {:?} is not host:port", e.name, e.smtp))?;
            let port: u16 = port
                .parse()
                .with_context(|| format!("email {}: {port:?} is not a port", e.name))?;
            let tls = e.tls.unwrap_or(SmtpTls::Starttls);
            anyhow::ensure!(
                tls != SmtpTls::None || is_loopback(host),
                "email {}: tls = \"none\" sends mail in the clear and is allowed only to a loopback relay; use starttls or tls for {host}",
                e.name
            );
            anyhow::ensure!(!e.to.is_empty(), "email {}: `to` is empty", e.name);
            for a in e.to.iter().chain(std::iter::once(&e.from)) {
                a.parse::<lettre::Address>()
                    .with_context(|| format!("email {}: {a:?} is not an e-mail address", e.name))?;
            }
            let login = match (e.username, e.password_file) {
                (Some(u), Some(p)) => Some((u, read_secret_file(&p, "SMTP password")?)),
                (None, None) => None,
                _ => anyhow::bail!("email {}: username and password_file go together", e.name),
            };
            out.push(Target {
                events: events(&e.events, &e.name)?,
                kind: TargetKind::Email(EmailTarget {
                    host: host.trim_start_matches('[').trim_end_matches(']').into(),
                    port,
                    tls,
                    from: e.from,
                    to: e.to,
                    login,
                }),
                tenant: e.tenant,
                name: e.name,
            });
        }
        Ok(out)
    }
}

/// Checks that target names are unique (the delivery log keys deliveries by them).
pub fn check_names(targets: &[Target]) -> anyhow::Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for t in targets {
        anyhow::ensure!(
            seen.insert(t.name.as_str()),
            "two notification targets are named {:?}: give each its own name",
            t.name
        );
    }
    Ok(())
}

// ---- Enqueueing and the task ----

/// Puts an event into the outbox for every target that wants it; false when its key
/// was seen before or no target wants it. Failures go to the log (the caller's work
/// stands).
pub async fn enqueue(state: &AppState, event: OutboxEvent) -> bool {
    let targets: Vec<String> = state
        .config
        .notify
        .targets
        .iter()
        .filter(|t| t.wants(event.event, event.tenant.as_ref()))
        .map(|t| t.name.clone())
        .collect();
    if targets.is_empty() {
        return false;
    }
    match state.store.enqueue_notification(&event, &targets).await {
        Ok(new) => {
            if new {
                tracing::info!(event = %event.event, key = %event.key, "notification queued");
                state.notify_wake.notify_one();
            }
            new
        }
        Err(e) => {
            tracing::warn!(error = %e, key = %event.key, "cannot queue the notification");
            false
        }
    }
}

/// An event at `at` with a key, a tenant, a subject and its body.
pub fn event(
    event: NotifyEvent,
    key: String,
    tenant: Option<TenantId>,
    subject: String,
    body: serde_json::Value,
    at: Timestamp,
) -> OutboxEvent {
    OutboxEvent {
        key: format!("{}:{key}", event.as_str()),
        tenant,
        event,
        subject,
        body,
        at,
    }
}

/// Runs forever: every `every` (or sooner when an event is queued) delivers what is
/// due; every `scan_every` first looks for new events.
pub async fn run(state: AppState) {
    let every = state.config.notify.every;
    let mut watch = detect::Watch::default();
    let mut last_scan: Option<tokio::time::Instant> = None;
    loop {
        if last_scan.is_none_or(|t| t.elapsed() >= state.config.notify.scan_every) {
            last_scan = Some(tokio::time::Instant::now());
            if let Err(e) = detect::scan(&state, &mut watch, state.clock.now()).await {
                tracing::warn!(error = %e.message, "cannot look for notification events this time");
            }
        }
        if let Err(e) = deliver::due(&state).await {
            tracing::warn!(error = %e, "cannot deliver notifications this time");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = state.notify_wake.notified() => {}
        }
    }
}
