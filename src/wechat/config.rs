//! `[wechat]`, validated: the mini programs' credentials and WeChat's API.

use std::time::Duration;

use serde::Serialize;

use crate::secret::Secret;
use crate::ser::{ser_duration, ser_secret};

/// `[wechat]`: the mini programs' credentials and WeChat's API.
#[derive(Debug, Clone, Serialize)]
pub struct WechatConfig {
    /// One per mini program (the single form `appid` + secret is one app).
    pub apps: Vec<WechatApp>,
    /// Without a trailing `/`.
    pub api_base: String,
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// `[wechat.relay]`: the OpenAPI relay on the internal listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay: Option<super::openapi::RelayConfig>,
}

/// One mini program: `[wechat] appid` and its secret, or a `[[wechat.apps]]` entry.
#[derive(Debug, Clone, Serialize)]
pub struct WechatApp {
    pub appid: String,
    /// A name for logs and `wxgate check`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(serialize_with = "ser_secret")]
    pub secret: Secret,
    pub secret_source: String,
}
