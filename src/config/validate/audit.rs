//! `[audit]` and `[audit.webhook]`.

use super::super::error::ConfigError;
use super::super::model::{AuditConfig, WebhookConfig};
use super::super::resolve::Sourced;
use super::super::schema::RawAudit;
use super::Validator;
use crate::audit::{MAX_BATCH, MAX_QUEUE, MAX_RETRIES, MAX_TIMEOUT};

impl Validator<'_> {
    pub(super) fn audit(
        &self,
        raw: RawAudit,
        secret: Option<Sourced>,
    ) -> Result<AuditConfig, ConfigError> {
        let webhook = match raw.webhook {
            None => None,
            Some(w) => {
                let (url, secret, secret_source) = self.signed_endpoint(
                    "audit.webhook",
                    w.url,
                    secret,
                    "http://127.0.0.1:5000/internal/wxgate/audit",
                )?;
                let timeout = self.bounded_duration(
                    "audit.webhook.timeout",
                    w.timeout,
                    "5s",
                    (MAX_TIMEOUT, "30s"),
                )?;
                let retries = match w.retries.map_or(Ok(8), u32::try_from) {
                    Ok(n) if n <= MAX_RETRIES => n,
                    _ => {
                        return Err(self.err(
                            "audit.webhook.retries",
                            format!("must be between 0 and {MAX_RETRIES}"),
                        ))
                    }
                };
                Some(WebhookConfig {
                    url,
                    secret,
                    secret_source,
                    timeout,
                    queue: self.count("audit.webhook.queue", w.queue, 10_000, MAX_QUEUE)?,
                    retries,
                    max_batch: self.count(
                        "audit.webhook.max_batch",
                        w.max_batch,
                        100,
                        MAX_BATCH,
                    )?,
                })
            }
        };
        Ok(AuditConfig {
            openid: raw.openid.unwrap_or(false),
            webhook,
        })
    }
}
