//! The audit webhook: every audit event, delivered to the backend in the
//! background, signed as the login hook's calls are (`X-WXGate-Timestamp`,
//! `X-WXGate-Signature`). A request only puts its event in a bounded queue
//! (never waiting: a full queue leaves the event out of the webhook and
//! counts it; the audit line is written all the same). One task delivers
//! the queue in order, up to `max_batch` events per POST
//! (`{"events": [...]}`), and retries a failed delivery `retries` times,
//! backing off from 250 ms to 30 s, before giving its events up (counted,
//! and logged as a warning). A delivery is retried whole, so a backend may
//! see an event twice: each has a unique `id`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::config::WebhookConfig;
use super::record::{Batch, Record};
use crate::clock::unix_now;
use crate::hook::{sign, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::metrics::Metrics;
use crate::secret::Secret;

/// The wait before the first retry of a delivery; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between two attempts at one delivery.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Puts events in the webhook's queue; cheap to clone. The delivering task
/// ends once every sender is gone and the queue is delivered.
#[derive(Debug, Clone)]
pub(crate) struct Webhook {
    queue: mpsc::Sender<Record>,
    metrics: Option<Arc<Metrics>>,
}

/// Why the webhook cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("the audit webhook URL does not parse")]
    Url,
    #[error("cannot build the audit webhook's HTTP client: {0}")]
    Client(String),
    #[error("the audit webhook needs a running Tokio runtime")]
    NoRuntime,
}

impl Webhook {
    /// Start delivering to `cfg.url`.
    pub(crate) fn start(
        cfg: &WebhookConfig,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Self, WebhookError> {
        let url = reqwest::Url::parse(&cfg.url).map_err(|_| WebhookError::Url)?;
        let http = crate::outbound::client(cfg.timeout, cfg.timeout)
            .map_err(|e| WebhookError::Client(crate::error::chain(&e.without_url())))?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| WebhookError::NoRuntime)?;
        let (queue, events) = mpsc::channel(cfg.queue.max(1));
        let delivery = Delivery {
            http,
            url,
            secret: cfg.secret.clone(),
            retries: cfg.retries,
            max_batch: cfg.max_batch.max(1),
            metrics: metrics.clone(),
        };
        runtime.spawn(delivery.run(events));
        Ok(Self { queue, metrics })
    }

    /// Queue `record` for delivery, never waiting.
    pub(crate) fn send(&self, record: Record) {
        if self.queue.try_send(record).is_err() {
            if let Some(m) = &self.metrics {
                m.audit_webhook("dropped", 1);
            }
        }
    }
}

/// The delivering task's part.
struct Delivery {
    http: reqwest::Client,
    url: reqwest::Url,
    secret: Secret,
    retries: u32,
    max_batch: usize,
    metrics: Option<Arc<Metrics>>,
}

impl Delivery {
    async fn run(self, mut events: mpsc::Receiver<Record>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while events.recv_many(&mut batch, self.max_batch).await > 0 {
            let outcome = self.deliver(&batch).await;
            if let Some(m) = &self.metrics {
                m.audit_webhook(outcome, batch.len());
            }
            batch.clear();
        }
    }

    /// Deliver `batch`, retrying: `delivered` or `failed`.
    async fn deliver(&self, batch: &[Record]) -> &'static str {
        let body = match serde_json::to_vec(&Batch { events: batch }) {
            Ok(b) => bytes::Bytes::from(b),
            Err(_) => return "failed",
        };
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0u32;
        loop {
            match self.post(&body).await {
                Ok(()) => return "delivered",
                Err(e) if attempt >= self.retries => {
                    tracing::warn!(events = batch.len(), attempts = attempt.saturating_add(1), error = %e, "the audit webhook gave up on a delivery (its audit lines are in the log)");
                    return "failed";
                }
                Err(e) => {
                    if attempt == 0 {
                        tracing::info!(events = batch.len(), error = %e, "an audit webhook delivery failed: retrying");
                    }
                    attempt = attempt.saturating_add(1);
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One attempt, signed afresh.
    async fn post(&self, body: &bytes::Bytes) -> Result<(), String> {
        let timestamp = unix_now();
        let signature = sign(self.secret.expose(), timestamp, body);
        let response = self
            .http
            .post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp)
            .header(SIGNATURE_HEADER, signature)
            .body(body.clone())
            .send()
            .await
            .map_err(|e| crate::error::chain(&e.without_url()))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP status {}", status.as_u16()))
        }
    }
}
