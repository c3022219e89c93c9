//! Resolution: everything the file only points to, read once, before validation.
//!
//! A config names things outside itself: secrets in environment variables or
//! files, TLS certificates, upstream host names, a Redis URL. This module reads
//! them (environment, files, DNS) and hands validation plain values, so that
//! [`super::validate`] never does I/O. Environment lookups go through an
//! injected function so tests never touch the process environment.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use super::error::ConfigError;
use super::schema::{RawConfig, RawJwtKey};
use crate::secret::Secret;

/// A secret and where it came from (`env NAME`, `file PATH`, `inline`), for `wxgate check`.
pub(super) struct Sourced {
    pub value: Secret,
    pub source: String,
}

/// The Redis passwords a Sentinel or Cluster set-up names.
#[derive(Default)]
pub(super) struct RedisPasswords {
    /// The data nodes' (`password_env`).
    pub nodes: Option<Secret>,
    /// The sentinels' own (`sentinel_password_env`).
    pub sentinels: Option<Secret>,
}

/// What a token key is given as, read but not parsed yet.
pub(super) enum KeyText {
    /// An HS256 secret.
    Secret(Sourced),
    /// A PEM private key.
    Private(Sourced),
    /// A PEM public key.
    Public(Sourced),
}

impl KeyText {
    pub(super) fn sourced(&self) -> &Sourced {
        match self {
            Self::Secret(s) | Self::Private(s) | Self::Public(s) => s,
        }
    }
}

/// What the file points to, read.
pub(super) struct Resolved {
    /// `[jwt]`'s key, when the section is present.
    pub jwt_key: Option<KeyText>,
    /// Each `[[jwt.previous_keys]]` entry's key.
    pub jwt_previous: Vec<KeyText>,
    /// The app secret of each mini program of `[wechat]` (one for the single
    /// form, one per `[[wechat.apps]]` entry), when the section is present.
    pub wechat_secrets: Vec<Sourced>,
    /// `[metrics] access_token_secret`, when set.
    pub access_token_secret: Option<Sourced>,
    /// `[metrics] admin_secret`, when set.
    pub admin_secret: Option<Sourced>,
    /// `[wechat.relay]`'s Bearer secret, when the section is present.
    pub relay_secret: Option<Sourced>,
    /// `[assertion]`'s private key (PEM), when the section is present.
    pub assertion_key: Option<Sourced>,
    /// `[login.hook]`'s signing secret, when the section is present.
    pub hook_secret: Option<Sourced>,
    /// `[audit.webhook]`'s signing secret, when the section is present.
    pub audit_secret: Option<Sourced>,
    /// `[store]`'s URL, when `kind = "redis"`; already checked to parse.
    pub redis_url: Option<Sourced>,
    /// The passwords of `[store.sentinel]` or `[store.cluster]`, from the environment.
    pub redis_passwords: RedisPasswords,
    /// Each route's upstream addresses, in config order, without duplicates.
    pub upstreams: Vec<Vec<SocketAddr>>,
    /// Findings that are not errors (a secret written inline).
    pub warnings: Vec<String>,
}

/// Read what `raw` points to. `file` names the config in errors.
pub(super) fn resolve(
    raw: &RawConfig,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Resolved, ConfigError> {
    let mut r = Resolver {
        file,
        env,
        warnings: Vec::new(),
    };
    let s = &raw.server;
    if let (Some(_), Some(cert), Some(key)) = (&s.tls_listen, &s.tls_cert, &s.tls_key) {
        r.pem_file("server.tls_cert", cert)?;
        r.pem_file("server.tls_key", key)?;
    }
    let mut jwt_previous = Vec::new();
    let jwt_key = match &raw.jwt {
        Some(j) => {
            let signing = RawJwtKey {
                algorithm: j.algorithm.clone(),
                secret: j.secret.clone(),
                secret_env: j.secret_env.clone(),
                secret_file: j.secret_file.clone(),
                private_key_file: j.private_key_file.clone(),
                private_key_env: j.private_key_env.clone(),
                ..RawJwtKey::default()
            };
            for (i, k) in j.previous_keys.iter().flatten().enumerate() {
                jwt_previous.push(r.key_text(&format!("jwt.previous_keys[{i}]"), k)?);
            }
            Some(r.key_text("jwt", &signing)?)
        }
        None => None,
    };
    let mut upstreams = Vec::with_capacity(raw.routes.len());
    for (i, route) in raw.routes.iter().enumerate() {
        let mut addrs = Vec::new();
        for u in route.upstreams.iter().flatten() {
            let found = lookup(u).map_err(|m| r.err(format!("routes[{i}].upstreams"), m))?;
            for a in found {
                if !addrs.contains(&a) {
                    addrs.push(a);
                }
            }
        }
        upstreams.push(addrs);
    }
    let mut wechat_secrets = Vec::new();
    if let Some(w) = &raw.wechat {
        let single = w.appid.is_some()
            || w.secret.is_some()
            || w.secret_env.is_some()
            || w.secret_file.is_some();
        match &w.apps {
            // Validation refuses the mix of the two forms, by name.
            Some(_) if single => {}
            Some(apps) => {
                for (i, app) in apps.iter().enumerate() {
                    wechat_secrets.push(r.secret(
                        &format!("wechat.apps[{i}]"),
                        &app.secret,
                        &app.secret_env,
                        &app.secret_file,
                    )?);
                }
            }
            None => {
                wechat_secrets.push(r.secret("wechat", &w.secret, &w.secret_env, &w.secret_file)?)
            }
        }
    }
    let relay_secret = match raw.wechat.as_ref().and_then(|w| w.relay.as_ref()) {
        Some(rl) => Some(r.secret_keyed(
            "wechat.relay.secret",
            &rl.secret,
            &rl.secret_env,
            &rl.secret_file,
        )?),
        None => None,
    };
    let assertion_key = match &raw.assertion {
        Some(a) => Some(r.secret_keyed(
            "assertion.private_key",
            &a.private_key,
            &a.private_key_env,
            &a.private_key_file,
        )?),
        None => None,
    };
    let hook_secret = match &raw.login.hook {
        Some(h) => Some(r.secret("login.hook", &h.secret, &h.secret_env, &h.secret_file)?),
        None => None,
    };
    let audit_secret = match &raw.audit.webhook {
        Some(w) => Some(r.secret("audit.webhook", &w.secret, &w.secret_env, &w.secret_file)?),
        None => None,
    };
    let m = &raw.metrics;
    let access_token_secret = match (
        &m.access_token_secret,
        &m.access_token_secret_env,
        &m.access_token_secret_file,
    ) {
        (None, None, None) => None,
        (inline, env, file) => {
            Some(r.secret_keyed("metrics.access_token_secret", inline, env, file)?)
        }
    };
    let admin_secret = match (&m.admin_secret, &m.admin_secret_env, &m.admin_secret_file) {
        (None, None, None) => None,
        (inline, env, file) => Some(r.secret_keyed("metrics.admin_secret", inline, env, file)?),
    };
    let st = &raw.store;
    let redis_url = match st.kind.as_deref() {
        Some("redis") if st.sentinel.is_none() && st.cluster.is_none() => {
            Some(r.redis_url(&st.url, &st.url_env)?)
        }
        _ => None,
    };
    let env_secret = |key: &str, name: &Option<String>| -> Result<Option<Secret>, ConfigError> {
        name.as_ref()
            .map(|n| r.env_var(key, n).map(Secret::from))
            .transpose()
    };
    let redis_passwords = match (&st.sentinel, &st.cluster) {
        (Some(s), _) => RedisPasswords {
            nodes: env_secret("store.sentinel.password_env", &s.password_env)?,
            sentinels: env_secret(
                "store.sentinel.sentinel_password_env",
                &s.sentinel_password_env,
            )?,
        },
        (None, Some(c)) => RedisPasswords {
            nodes: env_secret("store.cluster.password_env", &c.password_env)?,
            sentinels: None,
        },
        (None, None) => RedisPasswords::default(),
    };
    Ok(Resolved {
        jwt_key,
        jwt_previous,
        wechat_secrets,
        hook_secret,
        audit_secret,
        access_token_secret,
        admin_secret,
        relay_secret,
        assertion_key,
        redis_url,
        redis_passwords,
        upstreams,
        warnings: r.warnings,
    })
}

struct Resolver<'a> {
    file: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    warnings: Vec<String>,
}

impl Resolver<'_> {
    fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_string(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// A non-empty environment variable, or an error naming `key`.
    fn env_var(&self, key: &str, name: &str) -> Result<String, ConfigError> {
        match (self.env)(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(self.err(
                key,
                format!("environment variable {name} is not set or empty"),
            )),
        }
    }

    /// The secret of `section` from exactly one of `secret`, `secret_env`, `secret_file`.
    fn secret(
        &mut self,
        section: &str,
        inline: &Option<String>,
        env_name: &Option<String>,
        file: &Option<PathBuf>,
    ) -> Result<Sourced, ConfigError> {
        self.secret_keyed(&format!("{section}.secret"), inline, env_name, file)
    }

    /// A secret from exactly one of the keys `base`, `{base}_env`, `{base}_file`.
    fn secret_keyed(
        &mut self,
        base: &str,
        inline: &Option<String>,
        env_name: &Option<String>,
        file: &Option<PathBuf>,
    ) -> Result<Sourced, ConfigError> {
        let leaf = base.rsplit('.').next().unwrap_or(base);
        match (inline, env_name, file) {
            (Some(s), None, None) => {
                self.warnings.push(format!(
                    "{}: `{base}` is written inline; prefer {leaf}_env or {leaf}_file",
                    self.file
                ));
                Ok(Sourced {
                    value: Secret::from(s.clone()),
                    source: "inline".into(),
                })
            }
            (None, Some(name), None) => Ok(Sourced {
                value: Secret::from(self.env_var(&format!("{base}_env"), name)?),
                source: format!("env {name}"),
            }),
            (None, None, Some(path)) => {
                let key = format!("{base}_file");
                let text = std::fs::read_to_string(path)
                    .map_err(|e| self.err(&key, format!("cannot read {}: {e}", path.display())))?;
                // A trailing newline from `echo ... > file` is not part of the secret.
                let value = text.trim_end_matches(['\r', '\n']).to_string();
                if value.is_empty() {
                    return Err(self.err(key, format!("{} is empty", path.display())));
                }
                Ok(Sourced {
                    value: Secret::from(value),
                    source: format!("file {}", path.display()),
                })
            }
            (None, None, None) => Err(self.err(
                format!("{base}_env"),
                format!("a secret is required: set {leaf}_env or {leaf}_file"),
            )),
            _ => Err(self.err(
                format!("{base}_env"),
                format!("set only one of {leaf}, {leaf}_env, {leaf}_file"),
            )),
        }
    }

    /// The key of `[jwt]` (`base` = "jwt") or of a previous key: exactly
    /// one of a secret, a private key or a public key.
    fn key_text(&mut self, base: &str, k: &RawJwtKey) -> Result<KeyText, ConfigError> {
        let secret = k.secret.is_some() || k.secret_env.is_some() || k.secret_file.is_some();
        let private = k.private_key_file.is_some() || k.private_key_env.is_some();
        let public = k.public_key_file.is_some() || k.public_key_env.is_some();
        let asymmetric = matches!(k.algorithm.as_deref(), Some("EdDSA" | "ES256"));
        match (secret, private, public) {
            (false, false, false) if asymmetric => Err(self.err(
                format!("{base}.private_key_file"),
                if base == "jwt" {
                    "a key is required: set private_key_file or private_key_env (make one with `wxgate keygen --alg EdDSA`)"
                } else {
                    "a key is required: set public_key_file or public_key_env (or the private key's file)"
                },
            )),
            (_, false, false) => Ok(KeyText::Secret(self.secret_keyed(
                &format!("{base}.secret"),
                &k.secret,
                &k.secret_env,
                &k.secret_file,
            )?)),
            (false, true, false) => Ok(KeyText::Private(self.pem_text(
                &format!("{base}.private_key"),
                &k.private_key_file,
                &k.private_key_env,
            )?)),
            (false, false, true) => Ok(KeyText::Public(self.pem_text(
                &format!("{base}.public_key"),
                &k.public_key_file,
                &k.public_key_env,
            )?)),
            _ => Err(self.err(
                base,
                "set only one key: a secret (HS256), a private key or a public key",
            )),
        }
    }

    /// PEM text from exactly one of `{base}_file` and `{base}_env`.
    fn pem_text(
        &self,
        base: &str,
        file: &Option<PathBuf>,
        env_name: &Option<String>,
    ) -> Result<Sourced, ConfigError> {
        let (key, text, source) = match (file, env_name) {
            (Some(path), None) => {
                let key = format!("{base}_file");
                let text = std::fs::read_to_string(path)
                    .map_err(|e| self.err(&key, format!("cannot read {}: {e}", path.display())))?;
                (key, text, format!("file {}", path.display()))
            }
            (None, Some(name)) => {
                let key = format!("{base}_env");
                let text = self.env_var(&key, name)?;
                (key, text, format!("env {name}"))
            }
            _ => {
                return Err(self.err(
                    format!("{base}_file"),
                    format!("set only one of {base}_file, {base}_env"),
                ))
            }
        };
        if !text.contains("-----BEGIN ") {
            return Err(self.err(key, format!("{source} is not PEM (\"-----BEGIN ...\")")));
        }
        Ok(Sourced {
            value: Secret::from(text),
            source,
        })
    }

    /// A readable file that holds PEM data.
    fn pem_file(&self, key: &str, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| self.err(key, format!("cannot read {}: {e}", path.display())))?;
        if !text.contains("-----BEGIN ") {
            return Err(self.err(key, format!("{} is not a PEM file", path.display())));
        }
        Ok(())
    }

    /// The Redis URL from `url` or `url_env`, checked to parse.
    fn redis_url(
        &self,
        inline: &Option<String>,
        env_name: &Option<String>,
    ) -> Result<Sourced, ConfigError> {
        let (url, source) =
            match (inline, env_name) {
                (Some(u), None) => (u.clone(), "inline".to_string()),
                (None, Some(name)) => (self.env_var("store.url_env", name)?, format!("env {name}")),
                (None, None) => return Err(self.err(
                    "store.url_env",
                    "kind = \"redis\" needs url_env (or url), like \"redis://127.0.0.1:6379/0\"",
                )),
                _ => return Err(self.err("store.url", "set only one of url, url_env")),
            };
        if redis::Client::open(url.as_str()).is_err() {
            // The parser's message may quote the URL: name the key, not the password.
            let key = if source == "inline" {
                "store.url"
            } else {
                "store.url_env"
            };
            return Err(self.err(key, "not a valid redis:// or rediss:// URL"));
        }
        Ok(Sourced {
            value: Secret::from(url),
            source,
        })
    }
}

/// Resolve `host:port` once. A bare IP must carry a port; a name is looked up now.
fn lookup(u: &str) -> Result<Vec<SocketAddr>, String> {
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
