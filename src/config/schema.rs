//! The external schema: the TOML file exactly as an operator writes it.
//!
//! Every field is optional here (defaults and "required" are decided by
//! validation, which can then name the key), every section refuses unknown
//! keys, and nothing is interpreted: durations, addresses and rates are still
//! strings. [`super::resolve`] reads what these fields point to (secrets,
//! files, host names) and [`super::validate`] turns the rest into the model.

use std::path::PathBuf;

use serde::Deserialize;

use super::model::OnError;
use crate::route::AuthMode;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    pub jwt: Option<RawJwt>,
    #[serde(default)]
    pub headers: RawHeaders,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    pub wechat: Option<RawWechat>,
    #[serde(default)]
    pub login: RawLogin,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub sessions: RawSessions,
    #[serde(default)]
    pub audit: RawAudit,
    pub assertion: Option<RawAssertion>,
    #[serde(default)]
    pub metrics: RawMetrics,
    pub traces: Option<RawTraces>,
    #[serde(default)]
    pub log: RawLog,
}

/// `[traces]`
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTraces {
    pub endpoint: Option<String>,
    pub sample_ratio: Option<f64>,
    pub service_name: Option<String>,
    pub max_queue: Option<i64>,
    pub export_interval: Option<String>,
    pub timeout: Option<String>,
}

/// `[audit]`
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    pub openid: Option<bool>,
    pub webhook: Option<RawAuditWebhook>,
}

/// `[audit.webhook]`
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuditWebhook {
    pub url: Option<String>,
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub timeout: Option<String>,
    pub queue: Option<i64>,
    pub retries: Option<i64>,
    pub max_batch: Option<i64>,
}

/// `[sessions]`, and `[sessions.apps.<appid>]` (the same keys, for one app).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSessions {
    pub max_per_user: Option<i64>,
    pub on_limit: Option<String>,
    pub one_per_platform: Option<bool>,
    pub idle_timeout: Option<String>,
    pub max_lifetime: Option<String>,
    #[serde(default)]
    pub apps: std::collections::BTreeMap<String, RawSessionPolicy>,
}

impl RawSessions {
    /// The keys of `[sessions]` itself.
    pub(super) fn policy(&self) -> RawSessionPolicy {
        RawSessionPolicy {
            max_per_user: self.max_per_user,
            on_limit: self.on_limit.clone(),
            one_per_platform: self.one_per_platform,
            idle_timeout: self.idle_timeout.clone(),
            max_lifetime: self.max_lifetime.clone(),
        }
    }
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSessionPolicy {
    pub max_per_user: Option<i64>,
    pub on_limit: Option<String>,
    pub one_per_platform: Option<bool>,
    pub idle_timeout: Option<String>,
    pub max_lifetime: Option<String>,
}

/// `[log]`
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub access: Option<bool>,
    pub level: Option<String>,
}

/// `[metrics]`
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub listen: Option<String>,
    pub access_token_secret: Option<String>,
    pub access_token_secret_env: Option<String>,
    pub access_token_secret_file: Option<PathBuf>,
    pub admin_secret: Option<String>,
    pub admin_secret_env: Option<String>,
    pub admin_secret_file: Option<PathBuf>,
    pub idle_timeout: Option<String>,
    pub header_timeout: Option<String>,
    pub max_connections: Option<i64>,
    pub max_connections_per_ip: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWechat {
    pub appid: Option<String>,
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub api_base: Option<String>,
    pub timeout: Option<String>,
    /// `[[wechat.apps]]`: several mini programs (instead of `appid` and a secret).
    pub apps: Option<Vec<RawWechatApp>>,
    /// `[wechat.relay]`: the OpenAPI relay.
    pub relay: Option<RawRelay>,
}

/// `[wechat.relay]`
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRelay {
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub allow: Option<Vec<String>>,
    pub signed: Option<Vec<String>>,
    pub max_body: Option<i64>,
    pub max_answer: Option<i64>,
}

/// One `[[wechat.apps]]` entry.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWechatApp {
    pub appid: Option<String>,
    pub name: Option<String>,
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogin {
    pub path_prefix: Option<String>,
    pub max_body_bytes: Option<i64>,
    pub session_ttl: Option<String>,
    pub refresh_ttl: Option<String>,
    pub rate_limit_per_ip: Option<String>,
    pub rate_limit_global: Option<String>,
    pub rate_limit_phone_per_user: Option<String>,
    pub rate_limit_phone_global: Option<String>,
    pub rate_limit_decrypt_per_user: Option<String>,
    pub rate_limit_decrypt_global: Option<String>,
    pub hook: Option<RawHook>,
    pub risk: Option<RawRisk>,
}

/// `[login.risk]`
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRisk {
    pub scene: Option<i64>,
    pub refuse_at: Option<i64>,
    pub on_error: Option<String>,
}

/// `[login.hook]`
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHook {
    pub url: Option<String>,
    pub timeout: Option<String>,
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub on_refresh: Option<bool>,
    /// Extra claim name → the header it is injected as.
    pub claims: Option<std::collections::BTreeMap<String, String>>,
    pub max_claims_bytes: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub kind: Option<String>,
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub key_prefix: Option<String>,
    pub on_error: Option<OnError>,
    pub timeout: Option<String>,
    pub memory: Option<RawMemoryLimits>,
    pub sentinel: Option<RawSentinel>,
    pub cluster: Option<RawCluster>,
    pub max_staleness: Option<String>,
    pub replica_acks: Option<i64>,
    pub replica_ack_timeout: Option<String>,
    pub max_revocations: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSentinel {
    pub master_name: Option<String>,
    pub nodes: Option<Vec<String>>,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub sentinel_password_env: Option<String>,
    pub tls: Option<bool>,
    pub db: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub nodes: Option<Vec<String>>,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub tls: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMemoryLimits {
    pub max_sessions: Option<i64>,
    pub max_refresh_tokens: Option<i64>,
    pub max_revocations: Option<i64>,
    pub max_login_codes: Option<i64>,
    pub max_counters: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub listen: Option<String>,
    pub tls_listen: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub threads: Option<i64>,
    pub grace_period: Option<String>,
    pub health_path_prefix: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub idle_timeout: Option<String>,
    pub header_timeout: Option<String>,
    pub body_timeout: Option<String>,
    pub max_connections: Option<i64>,
    pub max_connections_per_ip: Option<i64>,
    pub http1: Option<String>,
    pub http2: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwt {
    pub algorithm: Option<String>,
    pub kid: Option<String>,
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub private_key_file: Option<PathBuf>,
    pub private_key_env: Option<String>,
    pub previous_keys: Option<Vec<RawJwtKey>>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub ttl: Option<String>,
    pub leeway: Option<String>,
    pub max_token_bytes: Option<i64>,
}

/// A `[[jwt.previous_keys]]` entry: a verify-only key.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwtKey {
    pub algorithm: Option<String>,
    pub kid: Option<String>,
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub public_key_file: Option<PathBuf>,
    pub public_key_env: Option<String>,
    pub private_key_file: Option<PathBuf>,
    pub private_key_env: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeaders {
    pub openid: Option<String>,
    pub unionid: Option<String>,
    pub appid: Option<String>,
    pub user_id: Option<String>,
    pub user_roles: Option<String>,
    pub forward_authorization: Option<bool>,
    pub strip: Option<Vec<String>>,
    pub cloud_run: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub prefix: Option<String>,
    pub upstreams: Option<Vec<String>>,
    pub auth: Option<AuthMode>,
    pub connect_timeout: Option<String>,
    pub read_timeout: Option<String>,
    pub health_check_interval: Option<String>,
    pub allow_path_params: Option<bool>,
    pub roles: Option<Vec<String>>,
    pub apps: Option<Vec<String>>,
    pub close_on_token_expiry: Option<bool>,
    pub revocation_check: Option<String>,
}

/// `[assertion]`
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAssertion {
    pub algorithm: Option<String>,
    pub private_key: Option<String>,
    pub private_key_env: Option<String>,
    pub private_key_file: Option<PathBuf>,
    pub kid: Option<String>,
    pub ttl: Option<String>,
}
