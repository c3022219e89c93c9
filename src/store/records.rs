//! What the store keeps: the records and the facts a revocation is checked
//! against, and the longest time anything is kept.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::token::UserClaims;

/// The longest an entry is kept. Longer times to live are clamped to it, so
/// no caller can make a store compute a deadline that overflows; it exceeds
/// every lifetime the config allows.
pub const MAX_TTL: Duration = Duration::from_secs(400 * 24 * 3600);

/// The most openids one login hook `uid` is linked to (one per app, with
/// room to spare).
pub const MAX_UID_OPENIDS: usize = 16;

/// `ttl`, at most [`MAX_TTL`].
pub(crate) fn clamp_ttl(ttl: Duration) -> Duration {
    ttl.min(MAX_TTL)
}

/// What wxgate keeps per openid after a login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WxSession {
    /// WeChat's `session_key` (base64), never sent to a client or upstream.
    #[serde(with = "secret_serde")]
    pub session_key: Secret,
    pub unionid: Option<String>,
    pub appid: String,
    /// Unix seconds of the login.
    pub login_at: u64,
}

/// A refresh token's record, stored under the token's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    pub openid: String,
    pub unionid: Option<String>,
    pub appid: Option<String>,
    /// Every token descending from one login shares a family id.
    pub family: String,
    /// What the login hook said, carried into the tokens of each rotation.
    #[serde(default, skip_serializing_if = "UserClaims::is_empty")]
    pub user: UserClaims,
    /// Unix milliseconds.
    pub issued_ms: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// Unix milliseconds of the login that began the family (0: written by
    /// a version before sessions had lifetimes).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub created_ms: u64,
    /// Unix milliseconds of this rotation by the sessions' clock (0: as for
    /// `created_ms`); what `idle_timeout` counts from.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refreshed_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// An app's WeChat access token, shared by every instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenRecord {
    #[serde(with = "secret_serde")]
    pub token: Secret,
    /// When WeChat says it expires, Unix milliseconds.
    pub expires_at_ms: u64,
    /// When instances should get a new one, Unix milliseconds.
    pub refresh_at_ms: u64,
}

/// What presenting a refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshTake {
    /// Unknown or expired.
    Unknown,
    /// First use: the caller may rotate it.
    Fresh(RefreshRecord),
    /// Used before: reuse, the family must be revoked.
    Reused(RefreshRecord),
}

/// One session of a user as the user may see it: a login and its refresh
/// family (`id`), with what the login said of itself. Kept in a per-user
/// index (see [`crate::store::Store::add_session`]); the family's refresh
/// token and revocations stay what decide whether it lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEntry {
    /// The refresh family's id: random, unguessable.
    pub id: String,
    pub appid: Option<String>,
    /// Unix milliseconds of the login.
    pub created_ms: u64,
    /// Unix milliseconds of the last refresh (the login's, before one).
    #[serde(default)]
    pub refreshed_ms: u64,
    /// Unix milliseconds (system clock) when its latest tokens were issued:
    /// what revocations are compared with (0: as `refreshed_ms`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub issued_ms: u64,
    /// The client's address at login, as the access log shows it (a
    /// string in JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<std::net::IpAddr>,
    /// What the mini program said of its device at login (never trusted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
}

/// A device label (from `wx.getDeviceInfo`): length-bounded, printable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
}

/// A banned user: no login until `until_ms` (never, when `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    /// Unix milliseconds of the ban.
    pub at_ms: u64,
    /// Unix milliseconds it ends at (`None`: until unbanned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
    /// The operator's words, for the record (never shown to the user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Ban {
    /// Whether it holds at `now_ms`.
    pub fn holds(&self, now_ms: u64) -> bool {
        self.until_ms.is_none_or(|u| now_ms < u)
    }
}

/// Why a session ended, told to its client (401 `session_ended`, `reason`)
/// so that it does not log in again behind the user's back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// The user ended it from another session.
    Ended,
    /// A newer login took its place (a bound on sessions per user).
    Replaced,
    /// Not refreshed within the app's `idle_timeout`.
    Idle,
    /// Older than the app's `max_lifetime`.
    Lifetime,
    /// Ended through the admin API.
    Admin,
    /// The user was banned.
    Banned,
}

impl EndReason {
    /// Every reason.
    pub const ALL: [EndReason; 6] = [
        EndReason::Ended,
        EndReason::Replaced,
        EndReason::Idle,
        EndReason::Lifetime,
        EndReason::Admin,
        EndReason::Banned,
    ];

    /// The reason's name, on the wire and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Ended => "ended",
            EndReason::Replaced => "replaced",
            EndReason::Idle => "idle",
            EndReason::Lifetime => "lifetime",
            EndReason::Admin => "admin",
            EndReason::Banned => "banned",
        }
    }

    /// The reason named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// What claiming a login code found, in one store call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeClaim {
    /// Nobody held the code: the caller exchanges it.
    Claimed,
    /// Another request holds it (exchanging now): wait for its outcome.
    Pending,
    /// What came of it (sealed), saved by whoever exchanged it.
    Outcome(String),
}

/// The facts of a token that revocation is checked against.
#[derive(Debug, Clone, Copy)]
pub struct RevocationCheck<'a> {
    pub jti: Option<&'a str>,
    pub openid: &'a str,
    pub family: Option<&'a str>,
    /// Issued-at, unix milliseconds.
    pub issued_ms: u64,
}

pub(crate) mod secret_serde {
    use crate::secret::Secret;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(s: &Secret, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.expose_str().unwrap_or_default())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Secret, D::Error> {
        String::deserialize(de).map(Secret::from)
    }
}

/// Is a token revoked, given what was found under its three keys?
pub(crate) fn revoked_by(
    check: &RevocationCheck<'_>,
    jti_revoked: bool,
    subject_before: Option<u64>,
    family_revoked: bool,
) -> bool {
    jti_revoked || family_revoked || subject_before.is_some_and(|before| check.issued_ms <= before)
}
