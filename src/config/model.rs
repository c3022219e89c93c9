//! The validated model: what the rest of wxgate reads, typed values only.
//!
//! Addresses are socket addresses, durations are [`Duration`]s, secrets are
//! [`Secret`]s (printed as `***`), header names are [`HeaderName`]s, upstreams
//! are resolved addresses. Nothing downstream re-parses a string. The model
//! serialises back to TOML for `wxgate check`, with every secret masked.
//!
//! [`HeaderName`]: http::HeaderName

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::headers::{HeadersConfig, IdentityHeaderName};
pub use crate::route::AuthMode;
use crate::secret::Secret;
use crate::token::{Algorithm, PrivateKey, PublicKey};

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
    pub metrics: MetricsConfig,
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
}

/// How long a client connection may idle or take to send a request, and
/// how many connections the gateway and one client address may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ConnLimits {
    /// A keep-alive connection waiting for its next request is closed after this.
    #[serde(serialize_with = "ser_duration")]
    pub idle_timeout: Duration,
    /// Request headers must arrive whole within this, from their first byte.
    #[serde(serialize_with = "ser_duration")]
    pub header_timeout: Duration,
    /// A request body must arrive whole within this, from the end of its headers.
    #[serde(serialize_with = "ser_duration")]
    pub body_timeout: Duration,
    /// Open client connections, all listeners together.
    pub max_connections: usize,
    /// Open client connections from one IP address (the TCP peer).
    pub max_connections_per_ip: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            max_connections: 16_384,
            max_connections_per_ip: 1_024,
        }
    }
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

/// The longest lifetime of an access token: `[jwt] ttl` and
/// `wxgate token issue --ttl` may not exceed it, and a token whose `exp` lies
/// further ahead (plus the leeway) is refused. Revocations are kept at least
/// this long, so no token outlives its revocation.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The longest `[login] session_ttl` and `refresh_ttl`, with its spelling for errors.
pub const MAX_STATE_TTL: (Duration, &str) = (Duration::from_secs(366 * 24 * 3600), "366d");

/// `[jwt]`
#[derive(Debug, Clone, Serialize)]
pub struct JwtConfig {
    /// The key new tokens are signed with (shown in `[jwt]` itself).
    #[serde(flatten)]
    pub key: JwtKey,
    /// Keys tokens are still checked with, never signed with (rotation).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub previous_keys: Vec<JwtKey>,
    pub issuer: String,
    pub audience: String,
    #[serde(serialize_with = "ser_duration")]
    pub ttl: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub leeway: Duration,
    pub max_token_bytes: usize,
}

/// A token key: `[jwt]`'s own or a `[[jwt.previous_keys]]` entry.
#[derive(Debug, Clone)]
pub struct JwtKey {
    pub algorithm: Algorithm,
    /// The `kid` of its tokens; `None` only for an HS256 signing key
    /// without one (its tokens carry no `kid`).
    pub kid: Option<String>,
    /// Where the key came from, for `wxgate check`.
    pub source: String,
    pub material: KeyMaterial,
}

/// As `wxgate check` shows it: secrets and private keys as `***`, a
/// public key by its thumbprint.
impl Serialize for JwtKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("algorithm", self.algorithm.name())?;
        if let Some(kid) = &self.kid {
            m.serialize_entry("kid", kid)?;
        }
        match &self.material {
            KeyMaterial::Secret(_) => m.serialize_entry("secret", "***")?,
            KeyMaterial::Private(_) => m.serialize_entry("private_key", "***")?,
            KeyMaterial::Public(k) => m.serialize_entry("public_key", &k.thumbprint())?,
        }
        m.serialize_entry("key_source", &self.source)?;
        m.end()
    }
}

impl JwtKey {
    /// An HS256 key without `kid` (a gateway with one secret).
    pub fn hs256(secret: Secret, source: &str) -> Self {
        Self {
            algorithm: Algorithm::HS256,
            kid: None,
            source: source.to_string(),
            material: KeyMaterial::Secret(secret),
        }
    }

    /// A secret for keyed hashes (`purpose` separates uses): the HS256
    /// secret itself, or bytes derived from the private key.
    pub fn hash_secret(&self, purpose: &str) -> Vec<u8> {
        match &self.material {
            KeyMaterial::Secret(s) => s.expose().to_vec(),
            KeyMaterial::Private(k) => k.derived_secret(purpose).to_vec(),
            KeyMaterial::Public(k) => k.thumbprint().into_bytes(),
        }
    }

    /// The HS256 secret, if that is what the key is.
    pub fn secret(&self) -> Option<&Secret> {
        match &self.material {
            KeyMaterial::Secret(s) => Some(s),
            _ => None,
        }
    }
}

/// What a token key is made of.
#[derive(Debug, Clone)]
pub enum KeyMaterial {
    /// An HS256 secret (at least 32 bytes).
    Secret(Secret),
    /// An EdDSA or ES256 private key: the signing key.
    Private(Arc<PrivateKey>),
    /// An EdDSA or ES256 public key: a previous key.
    Public(PublicKey),
}

/// `[wechat]`: the mini programs' credentials and WeChat's API.
#[derive(Debug, Clone, Serialize)]
pub struct WechatConfig {
    /// One per mini program (the single form `appid` + secret is one app).
    pub apps: Vec<WechatApp>,
    /// Without a trailing `/`.
    pub api_base: String,
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
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
        serialize_with = "ser_rate_opt"
    )]
    pub rate_limit_per_ip: Option<Rate>,
    /// Logins per window across all clients and instances.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_rate_opt"
    )]
    pub rate_limit_global: Option<Rate>,
    /// `[login.hook]`: the backend's say on each login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook: Option<HookConfig>,
}

/// `[login.hook]`: where wxgate asks the backend about a user before issuing tokens.
#[derive(Debug, Clone, Serialize)]
pub struct HookConfig {
    /// The backend's internal endpoint (http or https).
    pub url: String,
    /// One call, connect to last byte.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Signs each call (`X-WXGate-Signature`).
    #[serde(serialize_with = "ser_secret")]
    pub secret: Secret,
    pub secret_source: String,
    /// Ask the hook again on every refresh (a banned user stops refreshing).
    pub on_refresh: bool,
    /// The extra claims the hook may set, and the headers they travel in.
    #[serde(serialize_with = "ser_claims")]
    pub claims: Vec<ClaimHeader>,
    /// The most the extra claims (names and values) may take, in bytes.
    pub max_claims_bytes: usize,
}

/// An extra claim the login hook may set, and the header it is injected as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimHeader {
    pub claim: String,
    pub header: IdentityHeaderName,
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

/// `[store]`: where sessions, revocations, refresh tokens and counters live.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StoreConfig {
    #[serde(flatten)]
    pub kind: StoreKind,
    pub key_prefix: String,
    pub on_error: OnError,
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
}

/// Which store.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoreKind {
    /// In-process, bounded, lost on restart (the default).
    Memory {
        /// `[store.memory]`.
        memory: MemoryLimits,
    },
    /// Redis, shared by several instances.
    Redis {
        #[serde(serialize_with = "ser_secret")]
        url: Secret,
        url_source: String,
    },
}

/// `[store.memory]`: how many entries of each kind the memory store holds.
///
/// Revocations are never dropped to make room: when their bound is reached,
/// a logout fails with 503 `store_full`. Sessions, refresh tokens and
/// counters drop their least recently used entry; login codes drop freely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemoryLimits {
    /// WeChat sessions, one per openid.
    pub max_sessions: usize,
    /// Refresh tokens (one per login or rotation, until spent and expired).
    pub max_refresh_tokens: usize,
    /// Revocations of each kind: token ids, subjects, refresh families.
    pub max_revocations: usize,
    /// Login codes being exchanged or recently exchanged.
    pub max_login_codes: usize,
    /// Rate-limit counters.
    pub max_counters: usize,
}

impl Default for MemoryLimits {
    fn default() -> Self {
        Self {
            max_sessions: 100_000,
            max_refresh_tokens: 100_000,
            max_revocations: 1_000_000,
            max_login_codes: 20_000,
            max_counters: 100_000,
        }
    }
}

/// What to do with a request that needs the store while the store is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Refuse with 503 `store_unavailable` (the default).
    FailClosed,
    /// Validate tokens without the revocation check (logged, counted).
    FailOpen,
}

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

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

fn ser_display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn ser_opt_display<T: std::fmt::Display, S: serde::Serializer>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

fn ser_display_list<T: std::fmt::Display, S: serde::Serializer>(
    v: &[T],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|x| x.to_string()))
}

fn ser_rate_opt<S: serde::Serializer>(r: &Option<Rate>, s: S) -> Result<S::Ok, S::Error> {
    match r {
        Some(r) => s.collect_str(r),
        None => s.serialize_none(),
    }
}

pub(crate) fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

fn ser_secret<S: serde::Serializer>(_: &Secret, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("***")
}

/// `claims` as written: a table of claim name to header.
fn ser_claims<S: serde::Serializer>(v: &[ClaimHeader], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(v.iter().map(|c| (&c.claim, &c.header.spelling)))
}

fn ser_secret_opt<S: serde::Serializer>(v: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("***"),
        None => s.serialize_none(),
    }
}
