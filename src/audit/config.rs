//! `[audit]`, validated: whether audit events carry the openid, and where
//! the webhook delivers them.

use std::time::Duration;

use serde::Serialize;

use crate::secret::Secret;
use crate::ser::{ser_duration, ser_secret};

/// `[audit]`
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditConfig {
    /// Put the openid in audit lines and webhook events, next to the user
    /// hash (off: the hash only, as in the access log).
    pub openid: bool,
    /// `[audit.webhook]`: deliver each event to the backend too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookConfig>,
}

/// `[audit.webhook]`: the backend endpoint that hears of every audit event,
/// signed as the login hook's calls are.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookConfig {
    /// The backend's endpoint (http or https).
    pub url: String,
    /// Signs each delivery (`X-WXGate-Signature`).
    #[serde(serialize_with = "ser_secret")]
    pub secret: Secret,
    pub secret_source: String,
    /// One delivery, connect to last byte.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Events waiting for delivery, at most; beyond it an event is left out
    /// of the webhook (its audit line is written all the same) and counted.
    pub queue: usize,
    /// Further attempts at a delivery that failed, backing off from 250 ms
    /// to 30 s between them; then its events are given up and counted.
    pub retries: u32,
    /// Most events one delivery carries.
    pub max_batch: usize,
}

/// The longest one delivery may take (`[audit.webhook] timeout`).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30);
/// The most events that may wait (`[audit.webhook] queue`).
pub const MAX_QUEUE: usize = 1_000_000;
/// The most retries of one delivery (`[audit.webhook] retries`).
pub const MAX_RETRIES: u32 = 20;
/// The most events in one delivery (`[audit.webhook] max_batch`).
pub const MAX_BATCH: usize = 1000;
