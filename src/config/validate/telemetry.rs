//! `[log]` and `[traces]`: what the gateway tells about itself.

use super::super::error::ConfigError;
use super::super::model::{LogConfig, TracesConfig};
use super::super::schema::{RawLog, RawTraces};
use super::Validator;
use crate::traces::config::{MAX_QUEUE, MIN_EXPORT_INTERVAL};

impl Validator<'_> {
    /// `[log]`: the level must be a filter `RUST_LOG` would accept.
    pub(super) fn log(&self, raw: RawLog) -> Result<LogConfig, ConfigError> {
        let level = raw.level.unwrap_or_else(|| "info".to_string());
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&level) {
            return Err(self.err(
                "log.level",
                format!("{level:?} is not a log filter like \"info\" or \"warn,wxgate::access=off\": {e}"),
            ));
        }
        Ok(LogConfig {
            access: raw.access.unwrap_or(true),
            level,
        })
    }

    /// `[traces]`: an `http(s)://` OTLP/HTTP endpoint, a ratio between 0
    /// and 1, a bounded queue.
    pub(super) fn traces(
        &self,
        raw: Option<RawTraces>,
    ) -> Result<Option<TracesConfig>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        let endpoint = raw.endpoint.unwrap_or_default();
        // Read as the exporter reads it (no spaces trimmed, no escapes
        // added), and as a URL.
        let exact = endpoint.parse::<http::Uri>().is_ok();
        let url = reqwest::Url::parse(&endpoint).ok().filter(|_| exact);
        if !url.as_ref().is_some_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.query().is_none()
                && u.username().is_empty()
                && u.password().is_none()
        }) {
            return Err(self.err(
                "traces.endpoint",
                "the collector's OTLP/HTTP traces URL, like \"http://127.0.0.1:4318/v1/traces\"",
            ));
        }
        let sample_ratio = raw.sample_ratio.unwrap_or(0.01);
        if !(0.0..=1.0).contains(&sample_ratio) {
            return Err(self.err("traces.sample_ratio", "must be between 0 and 1"));
        }
        let service_name = raw.service_name.unwrap_or_else(|| "wxgate".into());
        if service_name.is_empty() || service_name.len() > 128 {
            return Err(self.err("traces.service_name", "1 to 128 characters"));
        }
        let ten_minutes = (std::time::Duration::from_secs(600), "10min");
        let export_interval = self.bounded_duration(
            "traces.export_interval",
            raw.export_interval,
            "1s",
            ten_minutes,
        )?;
        if export_interval < MIN_EXPORT_INTERVAL {
            return Err(self.err("traces.export_interval", "must be at least 100ms"));
        }
        Ok(Some(TracesConfig {
            endpoint,
            sample_ratio,
            service_name,
            max_queue: self.count("traces.max_queue", raw.max_queue, 2048, MAX_QUEUE)?,
            export_interval,
            timeout: self.bounded_duration("traces.timeout", raw.timeout, "5s", ten_minutes)?,
        }))
    }
}
