//! `[wechat]`: one mini program (`appid` and a secret) or several
//! (`[[wechat.apps]]`), and WeChat's API address and timeout.

use super::super::error::ConfigError;
use super::super::model::{MetricsConfig, RelayConfig, WechatApp, WechatConfig};
use super::super::resolve::Sourced;
use super::super::schema::{RawRelay, RawWechat};
use super::Validator;

/// WeChat paths the relay never takes, and why.
const NOT_RELAYED: [(&str, &str); 4] = [
    ("/sns/jscode2session", "logins are wxgate's (/wx/login)"),
    ("/cgi-bin/token", "a new token invalidates the one every instance uses"),
    ("/cgi-bin/stable_token", "wxgate holds the token (GET /internal/wechat/access_token)"),
    ("/wxa/resetusersessionkey", "its answer holds the new session_key, which stays in wxgate (POST /internal/wechat/reset_session_key)"),
];

impl Validator<'_> {
    pub(super) fn wechat(
        &self,
        raw: RawWechat,
        secrets: Vec<Sourced>,
        relay_secret: Option<Sourced>,
    ) -> Result<WechatConfig, ConfigError> {
        let single = raw.appid.is_some()
            || raw.secret.is_some()
            || raw.secret_env.is_some()
            || raw.secret_file.is_some();
        let apps = match raw.apps {
            Some(_) if single => {
                return Err(self.err(
                    "wechat.apps",
                    "use either appid and a secret in [wechat] or [[wechat.apps]], not both",
                ))
            }
            Some(list) if list.is_empty() => {
                return Err(self.err(
                    "wechat.apps",
                    "at least one [[wechat.apps]] entry is required",
                ))
            }
            Some(list) => list
                .into_iter()
                .zip(secrets)
                .enumerate()
                .map(|(i, (app, secret))| {
                    self.wechat_app(&format!("wechat.apps[{i}]"), app.appid, app.name, secret)
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => {
                let Some(secret) = secrets.into_iter().next() else {
                    return Err(self.err("wechat.secret_env", "a secret is required"));
                };
                vec![self.wechat_app("wechat", raw.appid, None, secret)?]
            }
        };
        for (i, app) in apps.iter().enumerate() {
            if apps[..i].iter().any(|a| a.appid == app.appid) {
                return Err(self.err(
                    format!("wechat.apps[{i}].appid"),
                    format!("{:?} is listed twice", app.appid),
                ));
            }
        }
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
        let relay = match (raw.relay, relay_secret) {
            (Some(r), Some(secret)) => Some(self.relay(r, secret)?),
            _ => None,
        };
        Ok(WechatConfig {
            apps,
            api_base,
            timeout,
            relay,
        })
    }

    /// `[wechat.relay]`: its secret, and WeChat paths only, written out.
    fn relay(&self, raw: RawRelay, secret: Sourced) -> Result<RelayConfig, ConfigError> {
        if secret.value.len() < 16 {
            return Err(self.err("wechat.relay.secret_env", "must be at least 16 bytes"));
        }
        let paths = |key: &str, list: Option<Vec<String>>| -> Result<Vec<String>, ConfigError> {
            let list = list.unwrap_or_default();
            for (i, p) in list.iter().enumerate() {
                let plain = p.starts_with('/')
                    && p.len() > 1
                    && p.len() <= 256
                    && !p.contains("//")
                    && !p.split('/').any(|seg| seg == "." || seg == "..")
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"/_-.".contains(&b));
                if !plain {
                    return Err(self.err(
                        format!("wechat.relay.{key}[{i}]"),
                        format!("{p:?} is not a WeChat API path like \"/wxa/msg_sec_check\" (no query, no ..)"),
                    ));
                }
                if let Some(why) = NOT_RELAYED
                    .iter()
                    .find(|(path, _)| path == p)
                    .map(|(_, why)| why)
                {
                    return Err(self.err(
                        format!("wechat.relay.{key}[{i}]"),
                        format!("{p} is not relayed: {why}"),
                    ));
                }
                if p.starts_with("/internal/") || p == "/metrics" {
                    return Err(self.err(
                        format!("wechat.relay.{key}[{i}]"),
                        format!("{p} is the internal listener's own"),
                    ));
                }
            }
            Ok(list)
        };
        let allow = paths("allow", raw.allow)?;
        let signed = paths("signed", raw.signed)?;
        if allow.is_empty() && signed.is_empty() {
            return Err(self.err(
                "wechat.relay.allow",
                "list the WeChat paths backends may call through the relay",
            ));
        }
        const MIB: usize = 1024 * 1024;
        Ok(RelayConfig {
            secret: secret.value,
            allow,
            signed,
            max_body: self.count("wechat.relay.max_body", raw.max_body, MIB, 16 * MIB)?,
            max_answer: self.count("wechat.relay.max_answer", raw.max_answer, 8 * MIB, 64 * MIB)?,
        })
    }

    /// The relay is served on the internal listener, with a secret of its own.
    pub(super) fn relay_listener(
        &self,
        relay: &RelayConfig,
        metrics: &MetricsConfig,
    ) -> Result<(), ConfigError> {
        if metrics.listen.is_none() {
            return Err(self.err(
                "wechat.relay",
                "the relay is served on the internal listener: set [metrics] listen",
            ));
        }
        let shared = [&metrics.access_token_secret, &metrics.admin_secret]
            .into_iter()
            .flatten()
            .any(|s| s.ct_eq(relay.secret.expose()));
        if shared {
            return Err(self.err(
                "wechat.relay.secret_env",
                "must differ from [metrics] access_token_secret and admin_secret",
            ));
        }
        Ok(())
    }

    /// One mini program; `section` names it in errors (`wechat`, `wechat.apps[1]`).
    fn wechat_app(
        &self,
        section: &str,
        appid: Option<String>,
        name: Option<String>,
        secret: Sourced,
    ) -> Result<WechatApp, ConfigError> {
        let appid = appid.unwrap_or_default();
        if appid.is_empty()
            || appid.len() > 64
            || !appid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(self.err(
                format!("{section}.appid"),
                "required: the mini program's AppID, like \"wx4f4bc4dec97d474b\"",
            ));
        }
        if name
            .as_deref()
            .is_some_and(|n| n.is_empty() || n.len() > 64 || n.chars().any(char::is_control))
        {
            return Err(self.err(
                format!("{section}.name"),
                "a name is 1-64 characters without control characters",
            ));
        }
        Ok(WechatApp {
            appid,
            name,
            secret: secret.value,
            secret_source: secret.source,
        })
    }
}
