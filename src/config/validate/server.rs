//! `[server]`: listeners, TLS, threads, health paths, trusted proxies,
//! connection limits and read deadlines.

use std::time::Duration;

use super::super::error::ConfigError;
use super::super::model::{ConnLimits, ServedBy, ServerConfig, TlsConfig};
use super::super::schema::RawServer;
use super::Validator;
use crate::route::is_canonical_prefix;

impl Validator<'_> {
    fn conn_limits(&self, raw: &RawServer) -> Result<ConnLimits, ConfigError> {
        let d = ConnLimits::default();
        let count =
            |key: &str, v: Option<i64>, default: usize| self.count(key, v, default, 10_000_000);
        let max_connections = count(
            "server.max_connections",
            raw.max_connections,
            d.max_connections,
        )?;
        let max_connections_per_ip = count(
            "server.max_connections_per_ip",
            raw.max_connections_per_ip,
            d.max_connections_per_ip,
        )?;
        let hour = (Duration::from_secs(3600), "1h");
        Ok(ConnLimits {
            idle_timeout: self.bounded_duration(
                "server.idle_timeout",
                raw.idle_timeout.clone(),
                &humantime::format_duration(d.idle_timeout).to_string(),
                hour,
            )?,
            header_timeout: self.bounded_duration(
                "server.header_timeout",
                raw.header_timeout.clone(),
                &humantime::format_duration(d.header_timeout).to_string(),
                hour,
            )?,
            body_timeout: self.bounded_duration(
                "server.body_timeout",
                raw.body_timeout.clone(),
                &humantime::format_duration(d.body_timeout).to_string(),
                hour,
            )?,
            max_connections,
            max_connections_per_ip,
        })
    }

    pub(super) fn server(&mut self, raw: RawServer) -> Result<ServerConfig, ConfigError> {
        let limits = self.conn_limits(&raw)?;
        let listen = self.socket_addr(
            "server.listen",
            raw.listen.as_deref().unwrap_or("0.0.0.0:8080"),
        )?;
        let tls = match (raw.tls_listen, raw.tls_cert, raw.tls_key) {
            (None, None, None) => None,
            (Some(l), Some(cert), Some(key)) => {
                let listen = self.socket_addr("server.tls_listen", &l)?;
                Some(TlsConfig { listen, cert, key })
            }
            (l, c, k) => {
                let missing = [
                    ("tls_listen", l.is_none()),
                    ("tls_cert", c.is_none()),
                    ("tls_key", k.is_none()),
                ]
                .iter()
                .filter(|(_, m)| *m)
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ");
                return Err(self.err(
                    "server.tls_listen",
                    format!(
                        "HTTPS needs tls_listen, tls_cert and tls_key together; missing: {missing}"
                    ),
                ));
            }
        };
        let threads = raw.threads.unwrap_or(2);
        if !(1..=1024).contains(&threads) {
            return Err(self.err("server.threads", "must be between 1 and 1024"));
        }
        let grace_period = self.duration("server.grace_period", raw.grace_period, "10s")?;
        let health_path_prefix = raw.health_path_prefix.unwrap_or_default();
        let health_path_prefix = health_path_prefix.trim_end_matches('/').to_string();
        if !health_path_prefix.is_empty() && !is_canonical_prefix(&health_path_prefix) {
            return Err(self.err(
                "server.health_path_prefix",
                "must be empty or a plain path starting with '/', like \"/_wxgate\"",
            ));
        }
        let mut trusted_proxies = Vec::new();
        for (i, p) in raw.trusted_proxies.unwrap_or_default().iter().enumerate() {
            let net = p
                .parse::<ipnet::IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    self.err(
                        format!("server.trusted_proxies[{i}]"),
                        format!("{p:?} is not an IP address or CIDR block like \"10.0.0.0/8\""),
                    )
                })?;
            trusted_proxies.push(net);
        }
        let served_by = |key: &str, value: Option<&str>| match value {
            None | Some("wxgate") => Ok(ServedBy::Wxgate),
            Some("pingora") => Ok(ServedBy::Pingora),
            Some(_) => Err(self.err(key, "must be \"wxgate\" or \"pingora\"")),
        };
        let http1 = served_by("server.http1", raw.http1.as_deref())?;
        let http2 = served_by("server.http2", raw.http2.as_deref())?;
        Ok(ServerConfig {
            http1,
            http2,
            limits,
            listen,
            tls,
            threads: threads as usize,
            grace_period,
            health_path_prefix,
            trusted_proxies,
        })
    }
}
