//! Validation: the schema's strings become the model's typed values.
//!
//! Pure: no file, environment or network access (that is [`super::resolve`],
//! which ran before and hands over what it read). Defaults are applied here,
//! every value is checked, and every error names the file and the key.

use std::net::SocketAddr;
use std::time::Duration;

use super::error::ConfigError;
use super::model::*;
use super::resolve::Resolved;
use super::schema::*;
use crate::headers::{is_framing, is_reserved, DEFAULT_STRIP};
use crate::route::is_canonical_prefix;

/// Minimum length of the JWT signing key, in bytes (HS256 wants 256 bits).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// The shortest `[[routes]] revocation_check`.
const MIN_REVOCATION_CHECK: Duration = Duration::from_millis(100);

mod assertion;
mod audit;
mod hook;
mod jwt;
mod metrics;
mod risk;
mod server;
mod sessions;
mod store;
mod telemetry;
mod wechat;

/// Turn the raw file and what it points to into the model.
pub(super) fn validate(
    raw: RawConfig,
    mut resolved: Resolved,
    file: &str,
) -> Result<Config, ConfigError> {
    let warnings = std::mem::take(&mut resolved.warnings);
    Validator { file, warnings }.config(raw, resolved)
}

struct Validator<'a> {
    file: &'a str,
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

    fn config(mut self, raw: RawConfig, resolved: Resolved) -> Result<Config, ConfigError> {
        let server = self.server(raw.server)?;
        let jwt = self.jwt(raw.jwt, resolved.jwt_key, resolved.jwt_previous)?;
        let mut headers = self.headers(raw.headers)?;
        if raw.routes.is_empty() {
            return Err(self.err("routes", "at least one [[routes]] entry is required"));
        }
        let mut routes = Vec::with_capacity(raw.routes.len());
        let addrs = resolved
            .upstreams
            .into_iter()
            .chain(std::iter::repeat(Vec::new()));
        for ((i, r), upstream_addrs) in raw.routes.into_iter().enumerate().zip(addrs) {
            let route = self.route(i, r, upstream_addrs)?;
            // Prefixes that differ only in case would make every path under
            // them ambiguous (see `route`): refused like duplicates.
            if let Some(o) = routes
                .iter()
                .find(|o: &&RouteConfig| o.prefix.eq_ignore_ascii_case(&route.prefix))
            {
                let how = if o.prefix == route.prefix {
                    String::new()
                } else {
                    format!(" (as {:?}: prefixes are compared ignoring case)", o.prefix)
                };
                return Err(self.err(
                    format!("routes[{i}].prefix"),
                    format!(
                        "prefix {:?} is already used by another route{how}",
                        route.prefix
                    ),
                ));
            }
            routes.push(route);
        }
        let wechat = match raw.wechat {
            Some(w) => Some(self.wechat(w, resolved.wechat_secrets, resolved.relay_secret)?),
            None => None,
        };
        self.route_apps(&routes, wechat.as_ref())?;
        let mut raw_login = raw.login;
        let hook = match (raw_login.hook.take(), resolved.hook_secret) {
            (Some(_), _) if wechat.is_none() => {
                return Err(self.err(
                    "login.hook",
                    "the login hook is called on /wx/login, which needs [wechat]",
                ))
            }
            (Some(h), secret) => Some(self.hook(h, secret)?),
            (None, _) => None,
        };
        let risk = self.risk(raw_login.risk.take(), wechat.is_some())?;
        let mut login = self.login(raw_login)?;
        login.risk = risk;
        if let Some(h) = &hook {
            headers.claims = h.claims.clone();
        }
        self.distinct_identity_headers(&headers)?;
        self.warn_roles_without_hook(&routes, hook.is_some());
        login.hook = hook;
        let store = self.store(raw.store, resolved.redis_url, resolved.redis_passwords)?;
        let appids: Vec<String> = wechat
            .iter()
            .flat_map(|w| w.apps.iter().map(|a| a.appid.clone()))
            .collect();
        let token_life = jwt.ttl.saturating_add(jwt.leeway);
        let sessions = self.sessions(raw.sessions, &appids, (token_life, login.refresh_ttl))?;
        let audit = self.audit(raw.audit, resolved.audit_secret)?;
        if let (Some(h), Some(w)) = (&login.hook, &audit.webhook) {
            if h.secret == w.secret {
                self.warnings.push(format!(
                    "{}: [audit.webhook] and [login.hook] share a secret: a delivery signed for one is good for the other; give each its own",
                    self.file
                ));
            }
        }
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
                    "{}: routes[{i}] lies under [login] path_prefix {:?}: every path there is answered by wxgate ({}/login, ...; 404 no_route for the others), so the route is never used there",
                    self.file, login.path_prefix, login.path_prefix
                ));
            }
        }
        let assertion = self.assertion(raw.assertion, resolved.assertion_key, &jwt, &routes)?;
        let mut metrics = self.metrics(raw.metrics, &server)?;
        self.internal_secrets(
            &mut metrics,
            resolved.access_token_secret,
            resolved.admin_secret,
            wechat.is_some(),
        )?;
        if let Some(relay) = wechat.as_ref().and_then(|w| w.relay.as_ref()) {
            self.relay_listener(relay, &metrics)?;
        }
        Ok(Config {
            server,
            jwt,
            headers,
            routes,
            wechat,
            login,
            store,
            sessions,
            audit,
            assertion,
            metrics,
            traces: self.traces(raw.traces)?,
            log: self.log(raw.log)?,
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

    /// A count between 1 and `max`, `default` if absent.
    fn count(
        &self,
        key: &str,
        value: Option<i64>,
        default: usize,
        max: usize,
    ) -> Result<usize, ConfigError> {
        match value.map_or(Ok(default), usize::try_from) {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(self.err(key, format!("must be between 1 and {max}"))),
        }
    }

    /// A positive duration no longer than `max` (named `max_text` in the error).
    fn bounded_duration(
        &self,
        key: &str,
        value: Option<String>,
        default: &str,
        (max, max_text): (Duration, &str),
    ) -> Result<Duration, ConfigError> {
        let d = self.positive_duration(key, value, default)?;
        if d > max {
            return Err(self.err(key, format!("must be at most {max_text}")));
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

    fn login(&self, raw: RawLogin) -> Result<LoginConfig, ConfigError> {
        let path_prefix = raw.path_prefix.unwrap_or_else(|| "/wx".into());
        let path_prefix = path_prefix.trim_end_matches('/').to_string();
        if path_prefix.is_empty() || !is_canonical_prefix(&path_prefix) {
            return Err(self.err(
                "login.path_prefix",
                "must be a plain path starting with '/', like \"/wx\"",
            ));
        }
        let max_body_bytes = raw.max_body_bytes.unwrap_or(16384);
        if !(1024..=1_048_576).contains(&max_body_bytes) {
            return Err(self.err("login.max_body_bytes", "must be between 1024 and 1048576"));
        }
        let session_ttl =
            self.bounded_duration("login.session_ttl", raw.session_ttl, "3d", MAX_STATE_TTL)?;
        let refresh_ttl =
            self.bounded_duration("login.refresh_ttl", raw.refresh_ttl, "30d", MAX_STATE_TTL)?;
        let rate = |key: &str, v: Option<String>| {
            v.map(|t| parse_rate(&t).map_err(|m| self.err(key, m)))
                .transpose()
        };
        let rate_limit_per_ip = rate("login.rate_limit_per_ip", raw.rate_limit_per_ip)?;
        let rate_limit_global = rate("login.rate_limit_global", raw.rate_limit_global)?;
        // On by default per user (each call may spend the app's WeChat
        // quota or the gateway's work); "off" turns a limit off.
        let user_rate =
            |key: &str, v: Option<String>, default: Option<&str>| match v.as_deref().or(default) {
                None | Some("off") => Ok(None),
                Some(t) => parse_rate(t).map(Some).map_err(|m| self.err(key, m)),
            };
        let rate_limit_phone_per_user = user_rate(
            "login.rate_limit_phone_per_user",
            raw.rate_limit_phone_per_user,
            Some("10/min"),
        )?;
        let rate_limit_phone_global = user_rate(
            "login.rate_limit_phone_global",
            raw.rate_limit_phone_global,
            None,
        )?;
        let rate_limit_decrypt_per_user = user_rate(
            "login.rate_limit_decrypt_per_user",
            raw.rate_limit_decrypt_per_user,
            Some("60/min"),
        )?;
        let rate_limit_decrypt_global = user_rate(
            "login.rate_limit_decrypt_global",
            raw.rate_limit_decrypt_global,
            None,
        )?;
        Ok(LoginConfig {
            path_prefix,
            max_body_bytes: max_body_bytes as usize,
            session_ttl,
            refresh_ttl,
            rate_limit_per_ip,
            rate_limit_global,
            rate_limit_phone_per_user,
            rate_limit_phone_global,
            rate_limit_decrypt_per_user,
            rate_limit_decrypt_global,
            hook: None,
            risk: None,
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
        if is_reserved(&name.name) {
            return Err(self.err(key, format!("{text:?} is a header wxgate cannot own")));
        }
        Ok(name)
    }

    fn headers(&self, raw: RawHeaders) -> Result<HeadersConfig, ConfigError> {
        let openid = self.header_name("headers.openid", raw.openid, "X-OpenID")?;
        let unionid = self.header_name("headers.unionid", raw.unionid, "X-UnionID")?;
        let appid = self.header_name("headers.appid", raw.appid, "X-WX-AppID")?;
        let user_id = self.header_name("headers.user_id", raw.user_id, "X-User-ID")?;
        let user_roles = self.header_name("headers.user_roles", raw.user_roles, "X-User-Roles")?;
        let strip = match raw.strip {
            Some(names) => names,
            None => DEFAULT_STRIP.iter().map(|n| n.to_string()).collect(),
        };
        let strip = strip
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let key = format!("headers.strip[{i}]");
                let name = IdentityHeaderName::parse(text).ok_or_else(|| {
                    self.err(&key, format!("{text:?} is not a valid header name"))
                })?;
                if is_framing(&name.name) || name.name == http::header::AUTHORIZATION {
                    return Err(self.err(&key, format!("{text:?} cannot be stripped")));
                }
                Ok(name)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HeadersConfig {
            openid,
            unionid,
            appid,
            user_id,
            user_roles,
            forward_authorization: raw.forward_authorization.unwrap_or(false),
            strip,
            cloud_run: raw.cloud_run.unwrap_or(false),
            claims: Vec::new(),
        })
    }

    fn route(
        &self,
        i: usize,
        raw: RawRoute,
        upstream_addrs: Vec<SocketAddr>,
    ) -> Result<RouteConfig, ConfigError> {
        let key = |k: &str| format!("routes[{i}].{k}");
        let Some(prefix) = raw.prefix else {
            return Err(self.err(key("prefix"), "required, like \"/\" or \"/api/\""));
        };
        if !is_canonical_prefix(&prefix) {
            return Err(self.err(
                key("prefix"),
                format!("{prefix:?} is not a canonical path starting with '/' (no dot segments, '//', '%' escapes of unreserved characters or '?')"),
            ));
        }
        let upstreams = raw.upstreams.unwrap_or_default();
        if upstreams.is_empty() {
            return Err(self.err(
                key("upstreams"),
                "at least one upstream \"host:port\" is required",
            ));
        }
        let auth = raw.auth.unwrap_or(AuthMode::Required);
        Ok(RouteConfig {
            roles: self.route_roles(i, raw.roles, auth)?,
            apps: self.route_app_list(i, raw.apps, auth)?,
            prefix,
            upstreams,
            upstream_addrs,
            auth,
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
            allow_path_params: raw.allow_path_params.unwrap_or(false),
            revocation_check: self.socket_close(
                i,
                raw.close_on_token_expiry,
                raw.revocation_check,
                auth,
            )?,
            close_on_token_expiry: raw.close_on_token_expiry == Some(true),
        })
    }

    /// `close_on_token_expiry` and its `revocation_check` (the returned
    /// interval, `None` when sockets are not closed): only where a socket
    /// can carry a token.
    fn socket_close(
        &self,
        i: usize,
        close: Option<bool>,
        check: Option<String>,
        auth: AuthMode,
    ) -> Result<Option<Duration>, ConfigError> {
        let key = |k: &str| format!("routes[{i}].{k}");
        if close != Some(true) {
            if check.is_some() {
                return Err(self.err(
                    key("revocation_check"),
                    "only used with close_on_token_expiry = true",
                ));
            }
            return Ok(None);
        }
        if auth == AuthMode::Public {
            return Err(self.err(
                key("close_on_token_expiry"),
                "a public route admits sockets without a token: it needs auth = \"required\" or \"optional\"",
            ));
        }
        let every = self.bounded_duration(
            &key("revocation_check"),
            check,
            "10s",
            (Duration::from_secs(3600), "1h"),
        )?;
        // One store read per socket each time: a floor keeps a typo ("1ms")
        // from turning 10,000 sockets into 10 million reads a second.
        if every < MIN_REVOCATION_CHECK {
            return Err(self.err(key("revocation_check"), "must be at least 100ms"));
        }
        Ok(Some(every))
    }
}

/// Parse a duration like `30s`, `5m`, `2h`, `1h 30m`, `250ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|_| format!("{text:?} is not a duration; write it like \"30s\", \"5m\" or \"2h\""))
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
