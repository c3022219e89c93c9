//! `[sessions]`, validated: how many sessions a user may hold in an app and
//! for how long. The defaults keep every session until its refresh token
//! expires, however many there are (up to the index's bound).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::ser::ser_opt_duration;

/// What a login does when its user already holds `max_per_user` sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnLimit {
    /// End the oldest (its client hears 401 `session_ended`, `replaced`).
    #[default]
    EndOldest,
    /// Refuse the new login (403 `session_limit`): the user ends one first.
    RefuseNew,
}

/// The session rules of one app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SessionPolicy {
    /// Live sessions a user may hold in the app (`None`: no bound but the index's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_per_user: Option<usize>,
    pub on_limit: OnLimit,
    /// A login from a device platform ends the user's other sessions on
    /// that platform (the login must send `device.platform`).
    pub one_per_platform: bool,
    /// A session not refreshed within it ends (a sliding lifetime).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_duration"
    )]
    pub idle_timeout: Option<Duration>,
    /// A session older than this ends, however often it is refreshed.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_duration"
    )]
    pub max_lifetime: Option<Duration>,
}

impl SessionPolicy {
    /// Whether a login must read the user's sessions first.
    pub fn bounds_logins(&self) -> bool {
        self.max_per_user.is_some() || self.one_per_platform
    }
}

/// `[sessions]`: the rules, and each app's own where `[sessions.apps.<appid>]` sets them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SessionPolicies {
    #[serde(flatten)]
    pub default: SessionPolicy,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub apps: BTreeMap<String, SessionPolicy>,
}

impl SessionPolicies {
    /// The rules of `appid` (the default for tokens without one).
    pub fn of(&self, appid: Option<&str>) -> &SessionPolicy {
        appid
            .and_then(|a| self.apps.get(a))
            .unwrap_or(&self.default)
    }
}
