//! `[metrics]`: the internal listener's address (never a public one's), and
//! its own connection caps and deadlines.

use std::time::Duration;

use super::super::error::ConfigError;
use super::super::model::{InternalLimits, MetricsConfig, ServerConfig};
use super::super::resolve::Sourced;
use super::super::schema::RawMetrics;
use super::Validator;

impl Validator<'_> {
    /// `[metrics]` without the access token secret (validated with `[wechat]`).
    pub(super) fn metrics(
        &mut self,
        raw: RawMetrics,
        server: &ServerConfig,
    ) -> Result<MetricsConfig, ConfigError> {
        let limits = self.internal_limits(&raw)?;
        let Some(listen) = raw.listen else {
            let set = [
                ("max_connections", raw.max_connections.is_some()),
                (
                    "max_connections_per_ip",
                    raw.max_connections_per_ip.is_some(),
                ),
                ("idle_timeout", raw.idle_timeout.is_some()),
                ("header_timeout", raw.header_timeout.is_some()),
            ];
            if let Some((key, _)) = set.iter().find(|(_, set)| *set) {
                self.warnings.push(format!(
                    "{}: [metrics] {key} has no effect without [metrics] listen",
                    self.file
                ));
            }
            return Ok(MetricsConfig {
                limits,
                ..MetricsConfig::default()
            });
        };
        let addr = self.socket_addr("metrics.listen", &listen)?;
        let public = std::iter::once(server.listen).chain(server.tls.as_ref().map(|t| t.listen));
        for p in public {
            let same_ip =
                p.ip() == addr.ip() || p.ip().is_unspecified() || addr.ip().is_unspecified();
            if p.port() == addr.port() && p.port() != 0 && same_ip {
                return Err(self.err(
                    "metrics.listen",
                    format!(
                        "{addr} is a public listener ({p}); metrics need an address of their own"
                    ),
                ));
            }
        }
        Ok(MetricsConfig {
            listen: Some(addr),
            access_token_secret: None,
            admin_secret: None,
            limits,
        })
    }

    fn internal_limits(&self, raw: &RawMetrics) -> Result<InternalLimits, ConfigError> {
        let d = InternalLimits::default();
        let count = |key: &str, v: Option<i64>, default: usize| self.count(key, v, default, 10_000);
        let hour = (Duration::from_secs(3600), "1h");
        let duration = |key: &str, v: &Option<String>, default: Duration| {
            let default = humantime::format_duration(default).to_string();
            self.bounded_duration(key, v.clone(), &default, hour)
        };
        Ok(InternalLimits {
            idle_timeout: duration("metrics.idle_timeout", &raw.idle_timeout, d.idle_timeout)?,
            header_timeout: duration(
                "metrics.header_timeout",
                &raw.header_timeout,
                d.header_timeout,
            )?,
            max_connections: count(
                "metrics.max_connections",
                raw.max_connections,
                d.max_connections,
            )?,
            max_connections_per_ip: count(
                "metrics.max_connections_per_ip",
                raw.max_connections_per_ip,
                d.max_connections_per_ip,
            )?,
        })
    }
}

impl Validator<'_> {
    /// The Bearer secrets of the internal listener's endpoints: each needs
    /// the listener and `[wechat]`, 16 bytes at least, and the two differ.
    pub(super) fn internal_secrets(
        &self,
        metrics: &mut MetricsConfig,
        access_token_secret: Option<Sourced>,
        admin_secret: Option<Sourced>,
        wechat: bool,
    ) -> Result<(), ConfigError> {
        if let Some(secret) = access_token_secret {
            if metrics.listen.is_none() {
                return Err(self.err(
                    "metrics.access_token_secret_env",
                    "the access token is served on the metrics listener: set [metrics] listen",
                ));
            }
            if !wechat {
                return Err(self.err(
                    "metrics.access_token_secret_env",
                    "the access token is WeChat's: it needs [wechat]",
                ));
            }
            if secret.value.len() < 16 {
                return Err(self.err(
                    "metrics.access_token_secret_env",
                    "must be at least 16 bytes",
                ));
            }
            metrics.access_token_secret = Some(secret.value);
        }
        if let Some(secret) = admin_secret {
            let key = "metrics.admin_secret_env";
            if metrics.listen.is_none() {
                return Err(self.err(
                    key,
                    "the admin API is served on the metrics listener: set [metrics] listen",
                ));
            }
            if !wechat {
                return Err(self.err(key, "the admin API acts on logins: it needs [wechat]"));
            }
            if secret.value.len() < 16 {
                return Err(self.err(key, "must be at least 16 bytes"));
            }
            if metrics
                .access_token_secret
                .as_ref()
                .is_some_and(|a| a.ct_eq(secret.value.expose()))
            {
                return Err(self.err(
                    key,
                    "must differ from access_token_secret: a backend that reads the access token must not end sessions",
                ));
            }
            metrics.admin_secret = Some(secret.value);
        }
        Ok(())
    }
}
