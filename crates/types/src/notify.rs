//! Issue 11, point 5: notifications on the wire: the events the server announces, the
//! targets an operator configured (never their secrets) and the delivery log.

use crate::TenantId;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// What happened. The event name is in the webhook's `X-Patchday-Event` header and in
/// the body's `event` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum NotifyEvent {
    /// A rollout was halted (by the rings' gate or an operator).
    #[serde(rename = "rollout.halted")]
    RolloutHalted,
    /// A host's install or removal failed, its dpkg database is broken, or its runs
    /// keep failing with the same error.
    #[serde(rename = "host.broken")]
    HostBroken,
    /// An approved update is not installed past its deadline (and the ring's grace).
    #[serde(rename = "update.overdue")]
    UpdateOverdue,
    /// A catalog role expires soon or expired.
    #[serde(rename = "catalog.expiring")]
    CatalogExpiring,
    /// A vulnerability the KEV catalog lists as exploited is open in a tenant's fleet.
    #[serde(rename = "vulnerability.known-exploited")]
    KnownExploited,
}

impl NotifyEvent {
    /// Every event, in a stable order.
    pub const ALL: [NotifyEvent; 5] = [
        Self::RolloutHalted,
        Self::HostBroken,
        Self::UpdateOverdue,
        Self::CatalogExpiring,
        Self::KnownExploited,
    ];

    /// The name on the wire (`rollout.halted`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RolloutHalted => "rollout.halted",
            Self::HostBroken => "host.broken",
            Self::UpdateOverdue => "update.overdue",
            Self::CatalogExpiring => "catalog.expiring",
            Self::KnownExploited => "vulnerability.known-exploited",
        }
    }
}

impl std::fmt::Display for NotifyEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for NotifyEvent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|e| e.as_str()).collect();
                format!("{s:?} is not an event: use one of {}", names.join(", "))
            })
    }
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryStatus {
    /// Not delivered yet; the next try is due at `next_at`.
    Pending,
    /// The target accepted it.
    Delivered,
    /// Given up after the last try.
    Failed,
}

impl DeliveryStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

impl std::str::FromStr for DeliveryStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "delivered" => Ok(Self::Delivered),
            "failed" => Ok(Self::Failed),
            _ => Err(format!("{s:?} is not a delivery status")),
        }
    }
}

/// One try at one delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryAttempt {
    /// 1 for the first try.
    pub attempt: u32,
    /// When it was made.
    pub at: Timestamp,
    /// Whether the target accepted it.
    pub ok: bool,
    /// The answer (`HTTP 200`, `HTTP 503`, the SMTP reply, the connection error).
    pub detail: String,
}

/// One event's delivery to one target, with its tries (the delivery log).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotificationDelivery {
    /// The event's deduplication key (also the webhook's `X-Patchday-Delivery`).
    pub key: String,
    /// The tenant it is about; `None` for the whole server.
    pub tenant: Option<TenantId>,
    /// What happened.
    pub event: NotifyEvent,
    /// One line for people (the e-mail subject).
    pub subject: String,
    /// When the event was enqueued.
    pub created_at: Timestamp,
    /// The target's name.
    pub target: String,
    /// Where the delivery stands.
    pub status: DeliveryStatus,
    /// When the next try is due (pending ones).
    pub next_at: Timestamp,
    /// The tries so far, oldest first.
    pub attempts: Vec<DeliveryAttempt>,
}

/// A configured target as `GET /v1/notifications` shows it (no secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TargetInfo {
    /// Its name.
    pub name: String,
    /// `webhook` or `email`.
    pub kind: String,
    /// The URL, or the SMTP server and recipients.
    pub destination: String,
    /// The tenant whose events it gets; `None`: every tenant and the server's own.
    pub tenant: Option<TenantId>,
    /// The events it gets (every event when empty).
    pub events: Vec<NotifyEvent>,
}

/// `GET /v1/notifications`: the targets the caller may see and their delivery log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotificationsView {
    /// Configured targets.
    pub targets: Vec<TargetInfo>,
    /// Deliveries, newest first.
    pub deliveries: Vec<NotificationDelivery>,
}
