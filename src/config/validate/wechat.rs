//! `[wechat]`: one mini program (`appid` and a secret) or several
//! (`[[wechat.apps]]`), and WeChat's API address and timeout.

use super::super::error::ConfigError;
use super::super::model::{WechatApp, WechatConfig};
use super::super::resolve::Sourced;
use super::super::schema::RawWechat;
use super::Validator;

impl Validator<'_> {
    pub(super) fn wechat(
        &self,
        raw: RawWechat,
        secrets: Vec<Sourced>,
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
        Ok(WechatConfig {
            apps,
            api_base,
            timeout,
        })
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
