//! `[[routes]]`, validated: one entry as the config gives it.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ser::{ser_duration, ser_opt_duration};

/// One `[[routes]]` entry.
#[derive(Debug, Clone, Serialize)]
pub struct RouteConfig {
    pub prefix: String,
    /// The upstreams as written, for display.
    pub upstreams: Vec<String>,
    /// The resolved upstream addresses (resolved once, at start-up).
    #[serde(skip)]
    pub upstream_addrs: Vec<SocketAddr>,
    pub auth: AuthMode,
    #[serde(serialize_with = "ser_duration")]
    pub connect_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub read_timeout: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub health_check_interval: Duration,
    /// `;` path parameters are allowed on this route (refused by default).
    pub allow_path_params: bool,
    /// The token must carry at least one of these roles (empty: any token).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The token's `appid` must be one of these (empty: any app).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub apps: Vec<String>,
    /// A WebSocket opened with a token closes when the token expires or is
    /// revoked (otherwise it may outlive its token).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub close_on_token_expiry: bool,
    /// How often an open socket's token is checked against revocations;
    /// set exactly when `close_on_token_expiry` is.
    #[serde(
        serialize_with = "ser_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub revocation_check: Option<Duration>,
}

/// How a route treats the Bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// A valid token is required (the default).
    Required,
    /// A valid token adds identity; no token is fine; an invalid one is refused.
    Optional,
    /// No token needed, no identity injected.
    Public,
}
