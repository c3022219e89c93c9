//! The validated model: what the rest of wxgate reads, typed values only.
//!
//! Each section's type lives with the module that owns it (`[jwt]` in
//! [`crate::token`], `[store]` in [`crate::store`], ...), which never imports
//! this module; here they are assembled into [`Config`], with the sections
//! of the process itself (`[server]`, `[metrics]`, `[log]`).
//!
//! Addresses are socket addresses, durations are [`Duration`]s, secrets are
//! [`Secret`]s (printed as `***`), header names are [`HeaderName`]s, upstreams
//! are resolved addresses. Nothing downstream re-parses a string. The model
//! serialises back to TOML for `wxgate check`, with every secret masked.
//!
//! [`HeaderName`]: http::HeaderName

pub use crate::assertion::AssertionConfig;
pub use crate::audit::{AuditConfig, WebhookConfig};
use crate::sessions::policy::SessionPolicies;
pub use crate::traces::TracesConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub use crate::conn::{ConnLimits, InternalLimits};
pub use crate::headers::{ClaimHeader, HeadersConfig, IdentityHeaderName};
pub use crate::hook::HookConfig;
pub use crate::login::{LoginConfig, Rate, RiskConfig, RiskOnError, MAX_STATE_TTL};
pub use crate::route::{AuthMode, RouteConfig};
use crate::secret::Secret;
use crate::ser::{ser_display, ser_display_list, ser_duration, ser_opt_display, ser_secret_opt};
pub use crate::store::{
    MemoryLimits, NodeAuth, OnError, RedisConfig, StoreConfig, StoreKind, Topology,
};
pub use crate::token::{JwtConfig, JwtKey, KeyMaterial, MAX_TTL as MAX_TOKEN_TTL};
pub use crate::wechat::{RelayConfig, WechatApp, WechatConfig};

/// The validated configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub server: ServerConfig,
    pub jwt: JwtConfig,
    pub headers: HeadersConfig,
    pub routes: Vec<RouteConfig>,
    /// `[wechat]`: present when the login endpoints are enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wechat: Option<WechatConfig>,
    pub login: LoginConfig,
    pub store: StoreConfig,
    /// `[sessions]`: bounds on each user's sessions, per app.
    pub sessions: SessionPolicies,
    /// `[audit]`: the openid in audit events or not, and the webhook.
    pub audit: AuditConfig,
    /// `[assertion]`: `X-WXGate-Assertion` on forwarded requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assertion: Option<AssertionConfig>,
    pub metrics: MetricsConfig,
    /// `[traces]`: OpenTelemetry traces, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traces: Option<TracesConfig>,
    pub log: LogConfig,
    /// Non-fatal findings, printed by `wxgate check` and logged at start-up.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// `[log]`
#[derive(Debug, Clone, Serialize)]
pub struct LogConfig {
    /// One `info` line per request (target `wxgate::access`).
    pub access: bool,
    /// What is logged, as `RUST_LOG` writes it (`info`, `warn,wxgate::access=off`);
    /// `RUST_LOG`, when set, wins. Applied again on a reload.
    pub level: String,
}

/// `[metrics]`
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MetricsConfig {
    /// Where Prometheus scrapes `GET /metrics`; `None`: no metrics listener.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_display"
    )]
    pub listen: Option<SocketAddr>,
    /// The Bearer secret of `GET /internal/wechat/access_token` on this
    /// listener; `None`: that path is not served.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_secret_opt"
    )]
    pub access_token_secret: Option<Secret>,
    /// The Bearer secret of the admin API (`/internal/admin/...`) on this
    /// listener; `None`: it is not served.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_secret_opt"
    )]
    pub admin_secret: Option<Secret>,
    /// The listener's connection caps and deadlines.
    #[serde(flatten)]
    pub limits: InternalLimits,
}

/// `[server]`
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServerConfig {
    #[serde(serialize_with = "ser_display")]
    pub listen: SocketAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    pub threads: usize,
    #[serde(serialize_with = "ser_duration")]
    pub grace_period: Duration,
    /// Prefix for `/healthz` and `/readyz` (empty: at the root).
    pub health_path_prefix: String,
    /// Peers whose `X-Forwarded-For` is believed (for the client IP of rate limits).
    #[serde(serialize_with = "ser_display_list")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Connection limits and read deadlines.
    #[serde(flatten)]
    pub limits: ConnLimits,
    /// Who serves plain HTTP/1.1 requests: wxgate's own path or Pingora's.
    pub http1: ServedBy,
    /// Who serves plain HTTP/2 streams: wxgate's own path or Pingora's.
    pub http2: ServedBy,
}

/// `[server] http1` and `http2`: who serves the common HTTP/1.1 request, or
/// HTTP/2 stream (upgrades, gateway endpoints and unusual framing are
/// Pingora's either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ServedBy {
    /// wxgate's own path (`relay`), the default.
    #[default]
    Wxgate,
    /// Pingora's proxy, for every request.
    Pingora,
}

/// The optional HTTPS listener.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TlsConfig {
    #[serde(rename = "tls_listen", serialize_with = "ser_display")]
    pub listen: SocketAddr,
    #[serde(rename = "tls_cert")]
    pub cert: PathBuf,
    #[serde(rename = "tls_key")]
    pub key: PathBuf,
}
