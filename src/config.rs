//! Configuration: the TOML schema and the validated model built from it.
//!
//! The file is parsed once, at start-up, into [`Config`]: addresses are socket
//! addresses, durations are [`Duration`]s, secrets are [`Secret`]s, header names
//! are [`HeaderName`]s. Nothing downstream re-parses a string. Every error names
//! the file, the key and what is wrong; unknown keys are errors.
//!
//! Secrets come from an environment variable (`secret_env`) or a file
//! (`secret_file`). Writing a secret inline is allowed only under the key
//! `secret`, and `wxgate check` warns about it. Environment lookups go through
//! an injected function so tests never touch the process environment.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// Minimum length of the JWT signing key, in bytes (HS256 wants 256 bits).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// A configuration error. Its message names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read the file: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema (unknown key, wrong type).
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    /// A key has a value that is not acceptable.
    #[error("{file}: `{key}`: {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
}

// ---------------------------------------------------------------------------
// The validated model
// ---------------------------------------------------------------------------

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
    /// Non-fatal findings, printed by `wxgate check` and logged at start-up.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// `[server]`
#[derive(Debug, Clone, Serialize)]
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
}

/// The optional HTTPS listener.
#[derive(Debug, Clone, Serialize)]
pub struct TlsConfig {
    #[serde(rename = "tls_listen", serialize_with = "ser_display")]
    pub listen: SocketAddr,
    #[serde(rename = "tls_cert")]
    pub cert: PathBuf,
    #[serde(rename = "tls_key")]
    pub key: PathBuf,
}

/// `[jwt]`
#[derive(Debug, Clone, Serialize)]
pub struct JwtConfig {
    /// The HS256 key (at least 32 bytes).
    #[serde(serialize_with = "ser_secret")]
    pub secret: Secret,
    /// Where the secret came from, for `wxgate check`.
    pub secret_source: String,
    pub issuer: String,
    pub audience: String,
    #[serde(serialize_with = "ser_duration")]
    pub ttl: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub leeway: Duration,
    pub max_token_bytes: usize,
}

/// `[headers]`: the identity headers wxgate owns.
#[derive(Debug, Clone, Serialize)]
pub struct HeadersConfig {
    pub openid: IdentityHeaderName,
    pub unionid: IdentityHeaderName,
    pub appid: IdentityHeaderName,
    pub forward_authorization: bool,
}

/// A header name as configured: the lookup name and the spelling sent upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeaderName {
    /// Lower-case name for matching.
    pub name: HeaderName,
    /// The configured spelling, e.g. `X-OpenID`.
    pub spelling: String,
}

impl IdentityHeaderName {
    /// Parse a header name, keeping its spelling.
    pub fn parse(text: &str) -> Option<Self> {
        let name = HeaderName::from_bytes(text.as_bytes()).ok()?;
        Some(Self {
            name,
            spelling: text.to_string(),
        })
    }
}

impl Serialize for IdentityHeaderName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.spelling)
    }
}

/// `[wechat]`: the mini program's credentials and WeChat's API.
#[derive(Debug, Clone, Serialize)]
pub struct WechatConfig {
    pub appid: String,
    #[serde(serialize_with = "ser_secret")]
    pub secret: Secret,
    pub secret_source: String,
    /// Without a trailing `/`.
    pub api_base: String,
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
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

/// Parse `N/s`, `N/sec`, `N/min`, `N/m`, `N/h`, `N/hour`.
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let bad = || format!("{text:?} is not a rate; write it like \"20/min\" (units: s, min, h)");
    let (n, unit) = text.trim().split_once('/').ok_or_else(bad)?;
    let limit: u64 = n.trim().parse().map_err(|_| bad())?;
    let window = match unit.trim() {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        _ => return Err(bad()),
    };
    if limit == 0 {
        return Err(format!("{text:?}: the limit must be at least 1"));
    }
    Ok(Rate {
        limit,
        window: Duration::from_secs(window),
    })
}

/// `[store]`: where sessions, revocations, refresh tokens and counters live.
#[derive(Debug, Clone, Serialize)]
pub struct StoreConfig {
    #[serde(flatten)]
    pub kind: StoreKind,
    pub key_prefix: String,
    pub on_error: OnError,
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
}

/// Which store.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoreKind {
    /// In-process, bounded, lost on restart (the default).
    Memory,
    /// Redis, shared by several instances.
    Redis {
        #[serde(serialize_with = "ser_secret")]
        url: Secret,
        url_source: String,
    },
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
}

impl Config {
    /// Read and validate a config file; environment variables come from `env`.
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, &file, base, env)
    }

    /// Parse and validate TOML text. `file` names it in errors; relative
    /// `secret_file`/`tls_*` paths are taken as they are (relative to the
    /// working directory), `_base` is kept for future use.
    pub fn parse(
        text: &str,
        file: &str,
        _base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        Validator {
            file,
            env,
            warnings: Vec::new(),
        }
        .config(raw)
    }

    /// The effective configuration as TOML, with every secret shown as `***`.
    pub fn render(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

// ---------------------------------------------------------------------------
// The external schema
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    jwt: Option<RawJwt>,
    #[serde(default)]
    headers: RawHeaders,
    #[serde(default)]
    routes: Vec<RawRoute>,
    wechat: Option<RawWechat>,
    #[serde(default)]
    login: RawLogin,
    #[serde(default)]
    store: RawStore,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWechat {
    appid: Option<String>,
    secret: Option<String>,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    api_base: Option<String>,
    timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLogin {
    path_prefix: Option<String>,
    max_body_bytes: Option<i64>,
    session_ttl: Option<String>,
    refresh_ttl: Option<String>,
    rate_limit_per_ip: Option<String>,
    rate_limit_global: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    kind: Option<String>,
    url: Option<String>,
    url_env: Option<String>,
    key_prefix: Option<String>,
    on_error: Option<OnError>,
    timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    tls_listen: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    threads: Option<i64>,
    grace_period: Option<String>,
    health_path_prefix: Option<String>,
    trusted_proxies: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    secret: Option<String>,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    issuer: Option<String>,
    audience: Option<String>,
    ttl: Option<String>,
    leeway: Option<String>,
    max_token_bytes: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHeaders {
    openid: Option<String>,
    unionid: Option<String>,
    appid: Option<String>,
    forward_authorization: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: Option<String>,
    upstreams: Option<Vec<String>>,
    auth: Option<AuthMode>,
    connect_timeout: Option<String>,
    read_timeout: Option<String>,
    health_check_interval: Option<String>,
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

struct Validator<'a> {
    file: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    warnings: Vec<String>,
}

impl Validator<'_> {
    fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_string(),
            key: key.into(),
            message: message.into(),
        }
    }

    fn config(mut self, raw: RawConfig) -> Result<Config, ConfigError> {
        let server = self.server(raw.server)?;
        let jwt = self.jwt(raw.jwt)?;
        let headers = self.headers(raw.headers)?;
        if raw.routes.is_empty() {
            return Err(self.err("routes", "at least one [[routes]] entry is required"));
        }
        let mut routes = Vec::with_capacity(raw.routes.len());
        for (i, r) in raw.routes.into_iter().enumerate() {
            let route = self.route(i, r)?;
            if routes
                .iter()
                .any(|o: &RouteConfig| o.prefix == route.prefix)
            {
                return Err(self.err(
                    format!("routes[{i}].prefix"),
                    format!("prefix {:?} is already used by another route", route.prefix),
                ));
            }
            routes.push(route);
        }
        let wechat = raw.wechat.map(|w| self.wechat(w)).transpose()?;
        let login = self.login(raw.login)?;
        let store = self.store(raw.store)?;
        let health = &server.health_path_prefix;
        for (i, r) in routes.iter().enumerate() {
            for endpoint in ["healthz", "readyz"] {
                let path = format!("{health}/{endpoint}");
                if r.prefix == path {
                    return Err(self.err(
                        format!("routes[{i}].prefix"),
                        format!(
                            "{path} is answered by wxgate itself; set [server] health_path_prefix to move it"
                        ),
                    ));
                }
            }
        }
        if wechat.is_some() {
            let owned = format!("{}/", login.path_prefix);
            if let Some(i) = routes
                .iter()
                .position(|r| r.prefix.starts_with(&owned) || r.prefix == login.path_prefix)
            {
                self.warnings.push(format!(
                    "{}: routes[{i}] lies under [login] path_prefix {:?}; its {}/login and {}/decrypt paths are answered by wxgate",
                    self.file, login.path_prefix, login.path_prefix, login.path_prefix
                ));
            }
        }
        Ok(Config {
            server,
            jwt,
            headers,
            routes,
            wechat,
            login,
            store,
            warnings: self.warnings,
        })
    }

    fn duration(
        &self,
        key: &str,
        value: Option<String>,
        default: &str,
    ) -> Result<Duration, ConfigError> {
        let text = value.as_deref().unwrap_or(default);
        parse_duration(text).map_err(|m| self.err(key, m))
    }

    fn positive_duration(
        &self,
        key: &str,
        value: Option<String>,
        default: &str,
    ) -> Result<Duration, ConfigError> {
        let d = self.duration(key, value, default)?;
        if d.is_zero() {
            return Err(self.err(key, "must be greater than zero"));
        }
        Ok(d)
    }

    fn socket_addr(&self, key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
        value.parse().map_err(|_| {
            self.err(
                key,
                format!("{value:?} is not an IP address with a port, like \"0.0.0.0:8080\""),
            )
        })
    }

    fn server(&mut self, raw: RawServer) -> Result<ServerConfig, ConfigError> {
        let listen = self.socket_addr(
            "server.listen",
            raw.listen.as_deref().unwrap_or("0.0.0.0:8080"),
        )?;
        let tls = match (raw.tls_listen, raw.tls_cert, raw.tls_key) {
            (None, None, None) => None,
            (Some(l), Some(cert), Some(key)) => {
                let listen = self.socket_addr("server.tls_listen", &l)?;
                self.pem_file("server.tls_cert", &cert)?;
                self.pem_file("server.tls_key", &key)?;
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
        if !health_path_prefix.is_empty()
            && (!health_path_prefix.starts_with('/')
                || crate::route::canonicalize(health_path_prefix.as_bytes()).is_err())
        {
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
        Ok(ServerConfig {
            listen,
            tls,
            threads: threads as usize,
            grace_period,
            health_path_prefix,
            trusted_proxies,
        })
    }

    fn pem_file(&self, key: &str, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| self.err(key, format!("cannot read {}: {e}", path.display())))?;
        if !text.contains("-----BEGIN ") {
            return Err(self.err(key, format!("{} is not a PEM file", path.display())));
        }
        Ok(())
    }

    /// Resolve a secret from exactly one of `secret`, `secret_env`, `secret_file`.
    fn secret(
        &mut self,
        section: &str,
        inline: Option<String>,
        env_name: Option<String>,
        file: Option<PathBuf>,
    ) -> Result<(Secret, String), ConfigError> {
        match (inline, env_name, file) {
            (Some(s), None, None) => {
                self.warnings.push(format!(
                    "{}: `{section}.secret` is written inline; prefer secret_env or secret_file",
                    self.file
                ));
                Ok((Secret::from(s), "inline".into()))
            }
            (None, Some(name), None) => match (self.env)(&name) {
                Some(v) if !v.is_empty() => Ok((Secret::from(v), format!("env {name}"))),
                _ => Err(self.err(
                    format!("{section}.secret_env"),
                    format!("environment variable {name} is not set or empty"),
                )),
            },
            (None, None, Some(path)) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    self.err(
                        format!("{section}.secret_file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                // A trailing newline from `echo ... > file` is not part of the secret.
                let value = text.trim_end_matches(['\r', '\n']).to_string();
                if value.is_empty() {
                    return Err(self.err(
                        format!("{section}.secret_file"),
                        format!("{} is empty", path.display()),
                    ));
                }
                Ok((Secret::from(value), format!("file {}", path.display())))
            }
            (None, None, None) => Err(self.err(
                format!("{section}.secret_env"),
                "a secret is required: set secret_env or secret_file",
            )),
            _ => Err(self.err(
                format!("{section}.secret_env"),
                "set only one of secret, secret_env, secret_file",
            )),
        }
    }

    fn jwt(&mut self, raw: Option<RawJwt>) -> Result<JwtConfig, ConfigError> {
        let Some(raw) = raw else {
            return Err(self.err("jwt", "the [jwt] section is required"));
        };
        let (secret, secret_source) =
            self.secret("jwt", raw.secret, raw.secret_env, raw.secret_file)?;
        if secret.len() < MIN_JWT_SECRET_BYTES {
            return Err(self.err(
                "jwt.secret",
                format!(
                    "the key ({secret_source}) is {} bytes; HS256 needs at least {MIN_JWT_SECRET_BYTES} (generate one with `wxgate keygen`)",
                    secret.len()
                ),
            ));
        }
        let issuer = raw.issuer.unwrap_or_else(|| "wxgate".into());
        if issuer.is_empty() {
            return Err(self.err("jwt.issuer", "must not be empty"));
        }
        let Some(audience) = raw.audience.filter(|a| !a.is_empty()) else {
            return Err(self.err(
                "jwt.audience",
                "required: name the mini program the tokens are for, like \"my-miniprogram\"",
            ));
        };
        let ttl = self.positive_duration("jwt.ttl", raw.ttl, "2h")?;
        let leeway = self.duration("jwt.leeway", raw.leeway, "30s")?;
        if leeway > Duration::from_secs(300) {
            return Err(self.err("jwt.leeway", "must be at most 5m"));
        }
        let max_token_bytes = raw.max_token_bytes.unwrap_or(4096);
        if !(256..=65536).contains(&max_token_bytes) {
            return Err(self.err("jwt.max_token_bytes", "must be between 256 and 65536"));
        }
        Ok(JwtConfig {
            secret,
            secret_source,
            issuer,
            audience,
            ttl,
            leeway,
            max_token_bytes: max_token_bytes as usize,
        })
    }

    fn wechat(&mut self, raw: RawWechat) -> Result<WechatConfig, ConfigError> {
        let appid = raw.appid.unwrap_or_default();
        if appid.is_empty()
            || !appid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(self.err(
                "wechat.appid",
                "required: the mini program's AppID, like \"wx4f4bc4dec97d474b\"",
            ));
        }
        let (secret, secret_source) =
            self.secret("wechat", raw.secret, raw.secret_env, raw.secret_file)?;
        let api_base = raw
            .api_base
            .unwrap_or_else(|| "https://api.weixin.qq.com".into())
            .trim_end_matches('/')
            .to_string();
        if !(api_base.starts_with("https://") || api_base.starts_with("http://"))
            || api_base.len() <= "https://".len()
        {
            return Err(self.err(
                "wechat.api_base",
                format!("{api_base:?} is not an http(s) URL"),
            ));
        }
        let timeout = self.positive_duration("wechat.timeout", raw.timeout, "3s")?;
        Ok(WechatConfig {
            appid,
            secret,
            secret_source,
            api_base,
            timeout,
        })
    }

    fn login(&self, raw: RawLogin) -> Result<LoginConfig, ConfigError> {
        let path_prefix = raw.path_prefix.unwrap_or_else(|| "/wx".into());
        let path_prefix = path_prefix.trim_end_matches('/').to_string();
        let canonical = crate::route::canonicalize(path_prefix.as_bytes())
            .map(|c| c.path() == path_prefix)
            .unwrap_or(false);
        if path_prefix.is_empty() || !canonical || path_prefix.contains('?') {
            return Err(self.err(
                "login.path_prefix",
                "must be a plain path starting with '/', like \"/wx\"",
            ));
        }
        let max_body_bytes = raw.max_body_bytes.unwrap_or(16384);
        if !(1024..=1_048_576).contains(&max_body_bytes) {
            return Err(self.err("login.max_body_bytes", "must be between 1024 and 1048576"));
        }
        let session_ttl = self.positive_duration("login.session_ttl", raw.session_ttl, "3d")?;
        let refresh_ttl = self.positive_duration("login.refresh_ttl", raw.refresh_ttl, "30d")?;
        let rate = |key: &str, v: Option<String>| {
            v.map(|t| parse_rate(&t).map_err(|m| self.err(key, m)))
                .transpose()
        };
        let rate_limit_per_ip = rate("login.rate_limit_per_ip", raw.rate_limit_per_ip)?;
        let rate_limit_global = rate("login.rate_limit_global", raw.rate_limit_global)?;
        Ok(LoginConfig {
            path_prefix,
            max_body_bytes: max_body_bytes as usize,
            session_ttl,
            refresh_ttl,
            rate_limit_per_ip,
            rate_limit_global,
        })
    }

    fn store(&mut self, raw: RawStore) -> Result<StoreConfig, ConfigError> {
        let kind = match raw.kind.as_deref().unwrap_or("memory") {
            "memory" => {
                if raw.url.is_some() || raw.url_env.is_some() {
                    return Err(self.err("store.url", "a URL is only used with kind = \"redis\""));
                }
                StoreKind::Memory
            }
            "redis" => {
                let (url, url_source) = match (raw.url, raw.url_env) {
                    (Some(u), None) => (u, "inline".to_string()),
                    (None, Some(name)) => match (self.env)(&name) {
                        Some(v) if !v.is_empty() => (v, format!("env {name}")),
                        _ => {
                            return Err(self.err(
                                "store.url_env",
                                format!("environment variable {name} is not set or empty"),
                            ))
                        }
                    },
                    (None, None) => {
                        return Err(self.err(
                            "store.url_env",
                            "kind = \"redis\" needs url_env (or url), like \"redis://127.0.0.1:6379/0\"",
                        ))
                    }
                    _ => return Err(self.err("store.url", "set only one of url, url_env")),
                };
                if let Err(e) = redis::Client::open(url.as_str()) {
                    // The message may quote the URL; name the key, not the password.
                    let _ = e;
                    return Err(self.err(
                        if url_source == "inline" {
                            "store.url"
                        } else {
                            "store.url_env"
                        },
                        "not a valid redis:// or rediss:// URL",
                    ));
                }
                StoreKind::Redis {
                    url: Secret::from(url),
                    url_source,
                }
            }
            other => {
                return Err(self.err(
                    "store.kind",
                    format!("{other:?} is not a store; use \"memory\" or \"redis\""),
                ))
            }
        };
        let key_prefix = raw.key_prefix.unwrap_or_else(|| "wxgate:".into());
        if key_prefix.is_empty()
            || key_prefix
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(self.err(
                "store.key_prefix",
                "must be non-empty, without spaces or control characters",
            ));
        }
        let timeout = self.positive_duration("store.timeout", raw.timeout, "200ms")?;
        Ok(StoreConfig {
            kind,
            key_prefix,
            on_error: raw.on_error.unwrap_or(OnError::FailClosed),
            timeout,
        })
    }

    fn header_name(
        &self,
        key: &str,
        value: Option<String>,
        default: &str,
    ) -> Result<IdentityHeaderName, ConfigError> {
        let text = value.as_deref().unwrap_or(default);
        let name = IdentityHeaderName::parse(text)
            .ok_or_else(|| self.err(key, format!("{text:?} is not a valid header name")))?;
        if crate::headers::is_reserved(&name.name) {
            return Err(self.err(key, format!("{text:?} is a header wxgate cannot own")));
        }
        Ok(name)
    }

    fn headers(&self, raw: RawHeaders) -> Result<HeadersConfig, ConfigError> {
        let openid = self.header_name("headers.openid", raw.openid, "X-OpenID")?;
        let unionid = self.header_name("headers.unionid", raw.unionid, "X-UnionID")?;
        let appid = self.header_name("headers.appid", raw.appid, "X-WX-AppID")?;
        let norm = |h: &IdentityHeaderName| h.name.as_str().replace('_', "-");
        if norm(&openid) == norm(&unionid)
            || norm(&openid) == norm(&appid)
            || norm(&unionid) == norm(&appid)
        {
            return Err(self.err(
                "headers",
                "openid, unionid and appid must be three different headers",
            ));
        }
        Ok(HeadersConfig {
            openid,
            unionid,
            appid,
            forward_authorization: raw.forward_authorization.unwrap_or(false),
        })
    }

    fn route(&self, i: usize, raw: RawRoute) -> Result<RouteConfig, ConfigError> {
        let key = |k: &str| format!("routes[{i}].{k}");
        let Some(prefix) = raw.prefix else {
            return Err(self.err(key("prefix"), "required, like \"/\" or \"/api/\""));
        };
        match crate::route::canonicalize(prefix.as_bytes()) {
            Ok(c) if c.path() == prefix && !prefix.contains('?') => {}
            _ => {
                return Err(self.err(
                    key("prefix"),
                    format!("{prefix:?} is not a canonical path starting with '/' (no dot segments, '//', '%' escapes of unreserved characters or '?')"),
                ))
            }
        }
        let upstreams = raw.upstreams.unwrap_or_default();
        if upstreams.is_empty() {
            return Err(self.err(
                key("upstreams"),
                "at least one upstream \"host:port\" is required",
            ));
        }
        let mut upstream_addrs = Vec::new();
        for u in &upstreams {
            let addrs = resolve(u).map_err(|m| self.err(key("upstreams"), m))?;
            for a in addrs {
                if !upstream_addrs.contains(&a) {
                    upstream_addrs.push(a);
                }
            }
        }
        Ok(RouteConfig {
            prefix,
            upstreams,
            upstream_addrs,
            auth: raw.auth.unwrap_or(AuthMode::Required),
            connect_timeout: self.positive_duration(
                &key("connect_timeout"),
                raw.connect_timeout,
                "3s",
            )?,
            read_timeout: self.positive_duration(&key("read_timeout"), raw.read_timeout, "60s")?,
            health_check_interval: self.positive_duration(
                &key("health_check_interval"),
                raw.health_check_interval,
                "5s",
            )?,
        })
    }
}

/// Resolve `host:port` once. A bare IP must carry a port; a name is looked up now.
fn resolve(u: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(a) = u.parse::<SocketAddr>() {
        return Ok(vec![a]);
    }
    let Some((host, port)) = u.rsplit_once(':') else {
        return Err(format!("{u:?} needs a port, like \"127.0.0.1:9000\""));
    };
    if host.is_empty() || port.parse::<u16>().is_err() || u.contains("://") || u.contains('/') {
        return Err(format!("{u:?} is not \"host:port\""));
    }
    let addrs: Vec<SocketAddr> = u
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {u:?}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{u:?} resolves to no address"));
    }
    Ok(addrs)
}

/// Parse a duration like `30s`, `5m`, `2h`, `1h 30m`, `250ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|_| format!("{text:?} is not a duration; write it like \"30s\", \"5m\" or \"2h\""))
}

fn ser_display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
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

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

fn ser_secret<S: serde::Serializer>(_: &Secret, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("***")
}

#[cfg(test)]
mod tests;
