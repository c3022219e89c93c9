//! `[login]`, validated: the gateway's own endpoints, their limits and rates.

use std::time::Duration;

use serde::Serialize;

use crate::hook::HookConfig;
use crate::ser::{ser_duration, ser_opt_display};

/// The longest `[login] session_ttl` and `refresh_ttl`, with its spelling for errors.
pub const MAX_STATE_TTL: (Duration, &str) = (Duration::from_secs(366 * 24 * 3600), "366d");

/// `[login]`: the gateway's own endpoints.
#[derive(Debug, Clone, Serialize)]
pub struct LoginConfig {
    /// Endpoints live under it: `{path_prefix}/login`, `{path_prefix}/decrypt`.
    pub path_prefix: String,
    pub max_body_bytes: usize,
    /// How long a server-side session (`session_key`) is kept after login.
    #[serde(serialize_with = "ser_duration")]
    pub session_ttl: Duration,
    /// Lifetime of refresh tokens.
    #[serde(serialize_with = "ser_duration")]
    pub refresh_ttl: Duration,
    /// Logins per client IP per window (`None`: unlimited).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_display"
    )]
    pub rate_limit_per_ip: Option<Rate>,
    /// Logins per window across all clients and instances.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_display"
    )]
    pub rate_limit_global: Option<Rate>,
    /// `/wx/phone` calls per user (openid) per window (default 10/min).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_display"
    )]
    pub rate_limit_phone_per_user: Option<Rate>,
    /// `/wx/phone` calls per window across all users and instances.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_display"
    )]
    pub rate_limit_phone_global: Option<Rate>,
    /// `/wx/decrypt` calls per user per window (default 60/min).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_display"
    )]
    pub rate_limit_decrypt_per_user: Option<Rate>,
    /// `/wx/decrypt` calls per window across all users and instances.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_display"
    )]
    pub rate_limit_decrypt_global: Option<Rate>,
    /// `[login.hook]`: the backend's say on each login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook: Option<HookConfig>,
    /// `[login.risk]`: WeChat's risk rank of each login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<RiskConfig>,
}

/// `[login.risk]`: each login asks WeChat's `getuserriskrank` (0, least
/// risky, to 4) after `jscode2session`; the rank goes to the login hook, the
/// token (`risk`) and upstream (`X-WX-Risk-Rank`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RiskConfig {
    /// WeChat's `scene`: 0 registration or login, 1 marketing.
    pub scene: u8,
    /// A rank at or above it refuses the login (403 `login_refused`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refuse_at: Option<u8>,
    /// When WeChat gives no rank: log in without one, or refuse.
    pub on_error: RiskOnError,
}

/// What a login does when WeChat gives no rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskOnError {
    /// Go on without a rank (counted).
    Allow,
    /// Refuse the login with WeChat's error (502 `wechat_error`, 504
    /// `wechat_timeout`, 429 `rate_limited`, ... as for any WeChat call).
    Refuse,
}

/// A rate like `20/min`: at most `limit` events per fixed `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub limit: u64,
    pub window: Duration,
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.window.as_secs() {
            1 => "s",
            60 => "min",
            3600 => "h",
            _ => "?",
        };
        write!(f, "{}/{unit}", self.limit)
    }
}
