//! `[sessions]`: per-app bounds on a user's sessions and their lifetimes.

use std::time::Duration;

use super::super::error::ConfigError;
use super::super::schema::{RawSessionPolicy, RawSessions};
use super::Validator;
use crate::sessions::index::MAX_SESSIONS_PER_USER;
use crate::sessions::policy::{OnLimit, SessionPolicies, SessionPolicy};

/// The shortest `idle_timeout` or `max_lifetime`.
const MIN_LIFETIME: Duration = Duration::from_secs(60);

impl Validator<'_> {
    /// `[sessions]`, each `[sessions.apps.<appid>]` over it; `apps` are the
    /// served appids; `lives` the access tokens' lifetime (with the leeway)
    /// and the refresh tokens'.
    pub(super) fn sessions(
        &mut self,
        raw: RawSessions,
        apps: &[String],
        lives: (Duration, Duration),
    ) -> Result<SessionPolicies, ConfigError> {
        let base = raw.policy();
        let default = self.session_policy("sessions", &base, None, lives)?;
        let mut out = SessionPolicies {
            default: default.clone(),
            apps: Default::default(),
        };
        for (appid, over) in raw.apps {
            let key = format!("sessions.apps.{appid}");
            if !apps.contains(&appid) {
                return Err(self.err(key, "names no mini program of [wechat]"));
            }
            let policy = self.session_policy(&key, &over, Some(&base), lives)?;
            out.apps.insert(appid, policy);
        }
        Ok(out)
    }

    /// One app's rules: its own keys, else `base`'s.
    fn session_policy(
        &mut self,
        key: &str,
        raw: &RawSessionPolicy,
        base: Option<&RawSessionPolicy>,
        (token_ttl, refresh_ttl): (Duration, Duration),
    ) -> Result<SessionPolicy, ConfigError> {
        let pick = |f: fn(&RawSessionPolicy) -> bool| raw_or(raw, base, f);
        let src =
            |f: fn(&RawSessionPolicy) -> bool| if pick(f) { raw } else { base.unwrap_or(raw) };
        let max_per_user = match src(|r| r.max_per_user.is_some()).max_per_user {
            None => None,
            Some(n) => match usize::try_from(n) {
                Ok(n) if (1..=MAX_SESSIONS_PER_USER).contains(&n) => Some(n),
                _ => {
                    return Err(self.err(
                        format!("{key}.max_per_user"),
                        format!("must be between 1 and {MAX_SESSIONS_PER_USER}"),
                    ))
                }
            },
        };
        let on_limit = match src(|r| r.on_limit.is_some()).on_limit.as_deref() {
            None | Some("end_oldest") => OnLimit::EndOldest,
            Some("refuse_new") => OnLimit::RefuseNew,
            Some(_) => {
                return Err(self.err(
                    format!("{key}.on_limit"),
                    "must be \"end_oldest\" or \"refuse_new\"",
                ))
            }
        };
        let one_per_platform = src(|r| r.one_per_platform.is_some())
            .one_per_platform
            .unwrap_or(false);
        let mut lifetime = |name: &str, v: Option<String>| -> Result<_, ConfigError> {
            let Some(text) = v else { return Ok(None) };
            let k = format!("{key}.{name}");
            let d = self.positive_duration(&k, Some(text), "1m")?;
            if d < MIN_LIFETIME {
                return Err(self.err(k, "must be at least 1m"));
            }
            // A client refreshes when its access token runs out: an idle
            // timeout within that would end every session at its first refresh.
            if name == "idle_timeout" && d <= token_ttl {
                return Err(self.err(
                    k,
                    "must be longer than [jwt] ttl (and its leeway): clients refresh only when their token runs out",
                ));
            }
            if name == "idle_timeout" && d >= refresh_ttl {
                self.warnings.push(format!(
                    "{}: [{key}] {name} is not shorter than [login] refresh_ttl: sessions end with their refresh token first",
                    self.file
                ));
            }
            Ok(Some(d))
        };
        let idle_timeout = lifetime(
            "idle_timeout",
            src(|r| r.idle_timeout.is_some()).idle_timeout.clone(),
        )?;
        let max_lifetime = lifetime(
            "max_lifetime",
            src(|r| r.max_lifetime.is_some()).max_lifetime.clone(),
        )?;
        Ok(SessionPolicy {
            max_per_user,
            on_limit,
            one_per_platform,
            idle_timeout,
            max_lifetime,
        })
    }
}

/// Whether `raw` sets the key `set` looks at (else `base` decides).
fn raw_or(
    raw: &RawSessionPolicy,
    base: Option<&RawSessionPolicy>,
    set: fn(&RawSessionPolicy) -> bool,
) -> bool {
    set(raw) || base.is_none()
}
