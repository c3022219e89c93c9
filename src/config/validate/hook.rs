//! `[login.hook]`, route roles, and the identity headers the hook's claims
//! travel in.

use super::super::error::ConfigError;
use super::super::model::{ClaimHeader, HookConfig, IdentityHeaderName, RouteConfig, WechatConfig};
use super::super::resolve::Sourced;
use super::super::schema::RawHook;
use super::Validator;
use crate::headers::HeadersConfig;
use crate::hook::{is_role_name, MAX_TIMEOUT};
use crate::route::AuthMode;

/// Longest extra claim name.
const MAX_CLAIM_NAME: usize = 32;

impl Validator<'_> {
    /// The `url` and the signing secret of an endpoint wxgate calls with a
    /// signature (`[login.hook]`, `[audit.webhook]`): an http(s) URL with a
    /// host, and a secret of at least 16 bytes. Returns the URL, the secret
    /// and where the secret came from.
    pub(super) fn signed_endpoint(
        &self,
        section: &str,
        url: Option<String>,
        secret: Option<Sourced>,
        example: &str,
    ) -> Result<(String, crate::secret::Secret, String), ConfigError> {
        let url = url.unwrap_or_default();
        let parsed = reqwest::Url::parse(&url).ok();
        if !parsed
            .as_ref()
            .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        {
            return Err(self.err(
                format!("{section}.url"),
                format!("required: the backend's http(s) endpoint, like \"{example}\""),
            ));
        }
        let Some(Sourced { value, source }) = secret else {
            return Err(self.err(
                format!("{section}.secret_env"),
                "a secret is required: set secret_env or secret_file",
            ));
        };
        if value.expose().len() < 16 {
            return Err(self.err(
                format!("{section}.secret_env"),
                "the secret must be at least 16 bytes",
            ));
        }
        Ok((url, value, source))
    }

    pub(super) fn hook(
        &self,
        raw: RawHook,
        secret: Option<Sourced>,
    ) -> Result<HookConfig, ConfigError> {
        let (url, secret, secret_source) = self.signed_endpoint(
            "login.hook",
            raw.url,
            secret,
            "http://127.0.0.1:5000/internal/wxgate",
        )?;
        let timeout = self.positive_duration("login.hook.timeout", raw.timeout, "2s")?;
        if timeout > MAX_TIMEOUT {
            return Err(self.err("login.hook.timeout", "must be at most 30s"));
        }
        let mut claims = Vec::new();
        for (claim, header) in raw.claims.unwrap_or_default() {
            let key = format!("login.hook.claims.{claim}");
            if claim.is_empty()
                || claim.len() > MAX_CLAIM_NAME
                || !claim
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(self.err(key, "a claim name is 1-32 of A-Z a-z 0-9 _"));
            }
            let header = self.header_name(&key, Some(header), "")?;
            claims.push(ClaimHeader { claim, header });
        }
        let max_claims_bytes = raw.max_claims_bytes.unwrap_or(1024);
        if !(1..=4096).contains(&max_claims_bytes) {
            return Err(self.err("login.hook.max_claims_bytes", "must be between 1 and 4096"));
        }
        Ok(HookConfig {
            url,
            timeout,
            secret,
            secret_source,
            on_refresh: raw.on_refresh.unwrap_or(false),
            claims,
            max_claims_bytes: max_claims_bytes as usize,
        })
    }

    /// Every header wxgate injects is a different header (compared as
    /// wxgate strips them: lower-case, `_` read as `-`).
    pub(super) fn distinct_identity_headers(&self, h: &HeadersConfig) -> Result<(), ConfigError> {
        let mut seen: Vec<(String, &IdentityHeaderName)> = Vec::new();
        let named = [&h.openid, &h.unionid, &h.appid, &h.user_id, &h.user_roles]
            .into_iter()
            .chain(h.claims.iter().map(|c| &c.header));
        for name in named {
            let norm = name.name.as_str().replace('_', "-");
            if let Some((_, other)) = seen.iter().find(|(n, _)| *n == norm) {
                return Err(self.err(
                    "headers",
                    format!(
                        "{:?} and {:?} are the same header: every identity header (openid, unionid, appid, user_id, user_roles, [login.hook] claims) must be its own",
                        other.spelling, name.spelling
                    ),
                ));
            }
            seen.push((norm, name));
        }
        if h.cloud_run {
            // Cloud Run's names may repeat one of ours only for the same field.
            let ours = [
                (&h.openid, "openid"),
                (&h.unionid, "unionid"),
                (&h.appid, "appid"),
                (&h.user_id, "user_id"),
                (&h.user_roles, "user_roles"),
            ]
            .into_iter()
            .chain(h.claims.iter().map(|c| (&c.header, "claims")));
            for (name, field) in ours {
                let norm = name.name.as_str().replace('_', "-");
                let clash = crate::headers::CLOUD_RUN
                    .iter()
                    .any(|(cloud, f)| cloud.eq_ignore_ascii_case(&norm) && *f != field);
                if clash {
                    return Err(self.err(
                        "headers.cloud_run",
                        format!(
                            "{:?} is one of WeChat Cloud Run's identity headers for another field: rename [headers] {field}",
                            name.spelling
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `[[routes]] roles`: role names, on routes that require a token.
    pub(super) fn route_roles(
        &self,
        i: usize,
        roles: Option<Vec<String>>,
        auth: AuthMode,
    ) -> Result<Vec<String>, ConfigError> {
        let key = format!("routes[{i}].roles");
        let Some(roles) = roles else {
            return Ok(Vec::new());
        };
        if roles.is_empty() {
            return Err(self.err(
                key,
                "an empty list lets no one in; leave `roles` out instead",
            ));
        }
        if auth != AuthMode::Required {
            return Err(self.err(key, "roles need auth = \"required\""));
        }
        if let Some(bad) = roles.iter().find(|r| !is_role_name(r)) {
            return Err(self.err(
                key,
                format!("{bad:?} is not a role name (1-64 of A-Z a-z 0-9 _ . : -)"),
            ));
        }
        Ok(roles)
    }

    /// `[[routes]] apps`: AppIDs, on routes that require a token.
    pub(super) fn route_app_list(
        &self,
        i: usize,
        apps: Option<Vec<String>>,
        auth: AuthMode,
    ) -> Result<Vec<String>, ConfigError> {
        let key = format!("routes[{i}].apps");
        let Some(apps) = apps else {
            return Ok(Vec::new());
        };
        if apps.is_empty() {
            return Err(self.err(
                key,
                "an empty list lets no one in; leave `apps` out instead",
            ));
        }
        if auth != AuthMode::Required {
            return Err(self.err(key, "apps need auth = \"required\""));
        }
        Ok(apps)
    }

    /// With `[wechat]`, the apps a route names must be configured ones.
    pub(super) fn route_apps(
        &self,
        routes: &[RouteConfig],
        wechat: Option<&WechatConfig>,
    ) -> Result<(), ConfigError> {
        let Some(w) = wechat else {
            return Ok(());
        };
        for (i, r) in routes.iter().enumerate() {
            if let Some(unknown) = r
                .apps
                .iter()
                .find(|a| !w.apps.iter().any(|x| x.appid == **a))
            {
                return Err(self.err(
                    format!("routes[{i}].apps"),
                    format!("{unknown:?} is not one of [wechat]'s apps"),
                ));
            }
        }
        Ok(())
    }

    /// Roles only come from the login hook: warn when routes need some and
    /// no hook can hand them out.
    pub(super) fn warn_roles_without_hook(&mut self, routes: &[RouteConfig], hook: bool) {
        if hook {
            return;
        }
        if let Some(i) = routes.iter().position(|r| !r.roles.is_empty()) {
            self.warnings.push(format!(
                "{}: routes[{i}] requires roles but there is no [login.hook] to grant them; only tokens from `wxgate token issue --role` can pass",
                self.file
            ));
        }
    }
}
