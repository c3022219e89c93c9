//! What a token says and how a token can be refused: [`Claims`] as wxgate
//! writes them, the [`Identity`] a verified token yields, [`TokenError`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::MAX_TTL;
use crate::error::ApiError;

/// Claims wxgate puts in its tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The openid.
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    /// Random token id (used for revocation).
    pub jti: String,
    /// Refresh-token family: every token descending from one login shares it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fam: Option<String>,
    /// Issue time in milliseconds: "log out everywhere" must not refuse a
    /// token issued later in the same second.
    pub iat_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unionid: Option<String>,
    /// What the login hook said: the backend's user id, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// ... its roles, ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// ... and the allowed extra claims, as strings. (Three fields rather
    /// than a flattened [`UserClaims`]: serde serialises a flattened struct
    /// through a map, some 6,000 instructions more per token issued.)
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ext: BTreeMap<String, String>,
    /// WeChat's risk rank of the login (`[login.risk]`), 0 to 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<u8>,
}

/// What the backend's login hook said about a user: carried in the token
/// (`uid`, `roles`, `ext`) and injected upstream. Empty without a hook.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserClaims {
    /// The backend's own id for the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Role names, e.g. `["admin"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Allowed extra claims, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ext: BTreeMap<String, String>,
    /// WeChat's risk rank of the login (`[login.risk]`; not the hook's to say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<u8>,
}

impl UserClaims {
    /// Nothing from a hook.
    pub fn is_empty(&self) -> bool {
        self.uid.is_none() && self.roles.is_empty() && self.ext.is_empty() && self.risk.is_none()
    }

    /// Whether the user holds at least one of `wanted`.
    pub fn has_any_role(&self, wanted: &[String]) -> bool {
        self.roles.iter().any(|r| wanted.contains(r))
    }
}

/// The identity a verified token carries: what wxgate injects upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The openid (`sub`).
    pub openid: String,
    pub unionid: Option<String>,
    pub appid: Option<String>,
    pub jti: Option<String>,
    /// The login this token descends from (`fam`).
    pub family: Option<String>,
    pub exp: u64,
    pub iat: Option<u64>,
    /// Issue time in milliseconds (`iat_ms`, or the start of `iat`'s second).
    pub issued_ms: u64,
    /// What the login hook said (`uid`, `roles`, `ext`).
    pub user: UserClaims,
}

/// Why a token was refused (for logs and the CLI; clients see only the [`ApiError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no Bearer token")]
    Missing,
    #[error("empty Bearer token")]
    Empty,
    #[error("more than one Authorization header")]
    Duplicate,
    #[error("token longer than {0} bytes")]
    TooLong(usize),
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet (nbf)")]
    NotYetValid,
    #[error("algorithm not allowed (not the one of the key the token names)")]
    Algorithm,
    #[error("the kid names no key of this gateway")]
    UnknownKey,
    #[error("no kid, and the signing key is not HS256")]
    MissingKid,
    #[error("signature does not match")]
    Signature,
    #[error("header carries a forbidden parameter ({0})")]
    ForbiddenHeader(&'static str),
    #[error("wrong issuer")]
    Issuer,
    #[error("wrong audience")]
    Audience,
    #[error("missing or malformed claim: {0}")]
    Claim(String),
    #[error("malformed token")]
    Malformed,
    #[error("a token may live at most {} days", MAX_TTL.as_secs() / 86400)]
    TtlTooLong,
}

impl From<&TokenError> for ApiError {
    fn from(e: &TokenError) -> Self {
        match e {
            TokenError::Missing => ApiError::TokenMissing,
            TokenError::Expired => ApiError::TokenExpired,
            _ => ApiError::TokenInvalid,
        }
    }
}
