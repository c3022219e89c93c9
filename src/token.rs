//! JWTs: issuing and verifying the gateway's access tokens.
//!
//! Tokens are HS256 only. The algorithm is pinned: `alg: none`, HS384/HS512
//! (even with the right key), asymmetric algorithms and any token whose header
//! carries `crit`, `jku`, `x5u`, `jwk` or `x5c` are refused. `exp`, `iss`,
//! `aud` and `sub` are required; `nbf` is checked when present. Everything
//! needed to verify (key, validation rules) is built once in [`TokenKeys::new`].
//!
//! A refusal tells the client only *expired* or *invalid*; the precise reason
//! is a [`TokenError`] for logs and `wxgate token verify`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::JwtConfig;
pub use crate::config::MAX_TOKEN_TTL as MAX_TTL;
use crate::error::ApiError;
use fast::FastVerifier;

mod fast;
mod reference;

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
}

impl UserClaims {
    /// Nothing from a hook.
    pub fn is_empty(&self) -> bool {
        self.uid.is_none() && self.roles.is_empty() && self.ext.is_empty()
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
    #[error("algorithm not allowed (only HS256)")]
    Algorithm,
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

/// Signing and verification keys plus the validation rules, built once.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// The hot path; `None` only if the key could not be set up for it.
    fast: Option<FastVerifier>,
    issuer: String,
    audience: String,
    ttl: Duration,
    leeway: u64,
    max_token_bytes: usize,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// What to put in a new token besides the configured defaults.
#[derive(Debug, Clone, Default)]
pub struct NewToken<'a> {
    pub openid: &'a str,
    pub unionid: Option<&'a str>,
    pub appid: Option<&'a str>,
    /// The refresh-token family (set by login and refresh).
    pub family: Option<&'a str>,
    /// Overrides the configured `ttl`.
    pub ttl: Option<Duration>,
    /// What the login hook said about the user.
    pub user: Option<&'a UserClaims>,
}

impl TokenKeys {
    /// Build keys and rules from the validated `[jwt]` config.
    pub fn new(cfg: &JwtConfig) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.set_issuer(&[&cfg.issuer]);
        validation.set_audience(&[&cfg.audience]);
        validation.leeway = cfg.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        Self {
            encoding: EncodingKey::from_secret(cfg.secret.expose()),
            decoding: DecodingKey::from_secret(cfg.secret.expose()),
            validation,
            fast: FastVerifier::new(
                cfg.secret.expose(),
                &cfg.issuer,
                &cfg.audience,
                cfg.leeway.as_secs(),
            ),
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            ttl: cfg.ttl,
            leeway: cfg.leeway.as_secs(),
            max_token_bytes: cfg.max_token_bytes,
        }
    }

    /// The configured token lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issue a signed token. Returns the token and its claims.
    pub fn issue(&self, new: &NewToken<'_>) -> Result<(String, Claims), TokenError> {
        let ttl = new.ttl.unwrap_or(self.ttl);
        if ttl > MAX_TTL {
            return Err(TokenError::TtlTooLong);
        }
        let now_ms = unix_now_ms();
        let now = now_ms / 1000;
        let claims = Claims {
            sub: new.openid.to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            exp: now.saturating_add(ttl.as_secs()),
            jti: random_id(),
            fam: new.family.map(str::to_string),
            iat_ms: now_ms,
            appid: new.appid.map(str::to_string),
            unionid: new.unionid.map(str::to_string),
            uid: new.user.and_then(|u| u.uid.clone()),
            roles: new.user.map(|u| u.roles.clone()).unwrap_or_default(),
            ext: new.user.map(|u| u.ext.clone()).unwrap_or_default(),
        };
        let header = Header::new(Algorithm::HS256);
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|_| TokenError::Malformed)?;
        if token.len() > self.max_token_bytes {
            // One it would refuse itself (the login hook's claims can make it large).
            return Err(TokenError::TooLong(self.max_token_bytes));
        }
        Ok((token, claims))
    }

    /// Verify a bare token (no `Bearer ` prefix).
    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        if token.len() > self.max_token_bytes {
            return Err(TokenError::TooLong(self.max_token_bytes));
        }
        let fast = self.fast.as_ref();
        match fast.and_then(|f| f.verify(token, unix_now())) {
            Some(decided) => decided,
            None => self.verify_reference(token),
        }
    }

    /// Verify the token from the `Authorization` header values of a request.
    ///
    /// `values` are every `Authorization` header the request carried. A
    /// non-Bearer scheme counts as no token.
    pub fn verify_authorization<'v>(
        &self,
        mut values: impl Iterator<Item = &'v [u8]>,
    ) -> Result<Identity, TokenError> {
        let Some(first) = values.next() else {
            return Err(TokenError::Missing);
        };
        if values.next().is_some() {
            return Err(TokenError::Duplicate);
        }
        let token = bearer_token(first)?;
        let token = std::str::from_utf8(token).map_err(|_| TokenError::Malformed)?;
        self.verify(token)
    }
}

/// Extract the token from `Bearer <token>` (scheme case-insensitive).
fn bearer_token(value: &[u8]) -> Result<&[u8], TokenError> {
    let value = value.trim_ascii();
    if value.len() < 6 || !value[..6].eq_ignore_ascii_case(b"bearer") {
        return Err(TokenError::Missing);
    }
    let rest = &value[6..];
    if rest.is_empty() {
        return Err(TokenError::Empty);
    }
    if !matches!(rest[0], b' ' | b'\t') {
        // `Bearerxyz` is another scheme, not a Bearer token.
        return Err(TokenError::Missing);
    }
    let token = rest.trim_ascii_start();
    if token.is_empty() {
        return Err(TokenError::Empty);
    }
    if token.iter().any(|b| b.is_ascii_whitespace()) {
        return Err(TokenError::Malformed);
    }
    Ok(token)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A random 128-bit id, base64url without padding.
pub fn random_id() -> String {
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
