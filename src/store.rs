//! Server-side state, in memory or in Redis.
//!
//! [`Store`] is the one interface for everything wxgate remembers:
//!
//! * WeChat sessions per openid (`session_key` lives here and nowhere else);
//! * login codes being exchanged and their sealed outcome, so that two
//!   instances given the same code make one `jscode2session` call;
//! * revocations: a token id until its `exp`, "everything of this openid
//!   issued before t", a whole refresh-token family;
//! * refresh tokens, stored under a SHA-256 of the token, never in clear;
//! * rate-limit counters.
//!
//! [`memory::MemoryStore`] (the default) is embedded and bounded per kind of
//! entry, and never drops a revocation to make room;
//! [`redis::RedisStore`] lets several instances share it all. Both pass the
//! same test suite (`tests/store.rs`). Every entry has a time to live.

mod config;
pub mod memory;
pub mod redis;

pub use config::{MemoryLimits, OnError, StoreConfig, StoreKind};

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::secret::Secret;
use crate::token::UserClaims;

/// The longest an entry is kept. Longer times to live are clamped to it, so
/// no caller can make a store compute a deadline that overflows; it exceeds
/// every lifetime the config allows.
pub const MAX_TTL: Duration = Duration::from_secs(400 * 24 * 3600);

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

    pub fn serialize<S: Serializer>(s: &Secret, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.expose_str().unwrap_or_default())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Secret, D::Error> {
        String::deserialize(de).map(Secret::from)
    }
}

/// The store could not be reached, timed out or answered nonsense.
///
/// Messages never carry the store URL (it may hold a password); the client
/// only ever hears `store_unavailable` (see [`ApiError::StoreUnavailable`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The Redis URL does not parse.
    #[error("not a valid redis:// or rediss:// URL")]
    InvalidUrl,
    /// The Redis client could not be built.
    #[error("cannot set up the Redis client")]
    Setup(#[source] RedisFault),
    /// Redis answered a call with an error, or the connection failed.
    #[error("Redis error")]
    Redis(#[source] RedisFault),
    /// Redis did not answer within the configured timeout.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    /// A call failed a moment ago: calls fail fast for a short while.
    #[error("Redis failed a moment ago; failing fast")]
    FailingFast,
    /// Redis answered, but not what the command returns.
    #[error("Redis answered {command} unexpectedly")]
    UnexpectedReply { command: &'static str },
    /// A record could not be written as JSON.
    #[error("cannot encode a record")]
    Encode(#[source] serde_json::Error),
    /// A stored record is not what wxgate wrote.
    #[error("a stored record is unreadable")]
    Decode(#[source] serde_json::Error),
    /// No room for a new entry that must not push out others (a revocation):
    /// the memory store's bound for `what` is reached, or Redis is at its
    /// `maxmemory` under `noeviction`.
    #[error("the store is full ({what}); nothing stored was dropped")]
    Full { what: &'static str },
}

/// A Redis error, described by its kind and code only: its full text may
/// quote connection details.
#[derive(Debug, thiserror::Error)]
#[error("{kind:?}{}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
pub struct RedisFault {
    kind: ::redis::ErrorKind,
    code: Option<String>,
}

impl From<&::redis::RedisError> for RedisFault {
    fn from(e: &::redis::RedisError) -> Self {
        Self {
            kind: e.kind(),
            code: e.code().map(str::to_string),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Full { .. } => ApiError::StoreFull,
            _ => ApiError::StoreUnavailable,
        }
    }
}

/// Whether a store may drop entries on its own to free memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eviction {
    /// Entries leave only when they expire or wxgate removes them.
    Never,
    /// Redis evicts keys under memory pressure (`maxmemory-policy` names
    /// how): a revocation could vanish and its token become valid again.
    Evicts { policy: String },
    /// The policy cannot be read (`CONFIG` is disabled on this server).
    Unknown,
}

/// Where wxgate's state lives. Keys are plain strings; implementations add their prefix.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Save the session of `openid`, replacing the previous one.
    async fn put_session(
        &self,
        openid: &str,
        session: &WxSession,
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// The current session of `openid`, if it has not expired.
    async fn get_session(&self, openid: &str) -> Result<Option<WxSession>, StoreError>;

    /// Claim the exchange of a login code (by hash). `true`: the caller does it.
    async fn claim_code(&self, code_hash: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Give up a claim without an outcome (a transient failure: let a retry try).
    async fn release_code(&self, code_hash: &str) -> Result<(), StoreError>;

    /// Save the (sealed) outcome of a code exchange.
    async fn put_code_outcome(
        &self,
        code_hash: &str,
        sealed: &str,
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// The (sealed) outcome of a code exchange, if one was saved.
    async fn get_code_outcome(&self, code_hash: &str) -> Result<Option<String>, StoreError>;

    /// Revoke one token id for `ttl` (until its `exp`).
    async fn revoke_token(&self, jti: &str, ttl: Duration) -> Result<(), StoreError>;

    /// Revoke every token and refresh token of `openid` issued at or before
    /// `before` (unix milliseconds).
    async fn revoke_subject(
        &self,
        openid: &str,
        before: u64,
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// Revoke a refresh-token family and the access tokens issued from it.
    async fn revoke_family(&self, family: &str, ttl: Duration) -> Result<(), StoreError>;

    /// Whether a token is revoked. One round trip.
    async fn is_revoked(&self, check: &RevocationCheck<'_>) -> Result<bool, StoreError>;

    /// Save a refresh token's record under its hash.
    async fn put_refresh(
        &self,
        hash: &str,
        record: &RefreshRecord,
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// Present a refresh token, atomically: the first presentation (or one
    /// after a rotation that never completed) is `Fresh` and marks it pending;
    /// a presentation after [`Store::complete_refresh`] is `Reused`.
    async fn take_refresh(&self, hash: &str, ttl: Duration) -> Result<RefreshTake, StoreError>;

    /// The rotation of a refresh token succeeded: any later presentation is reuse.
    async fn complete_refresh(&self, hash: &str, ttl: Duration) -> Result<(), StoreError>;

    /// A refresh token's record, looked at without presenting the token
    /// (nothing is marked): the login hook is asked before a rotation.
    async fn get_refresh(&self, hash: &str) -> Result<Option<RefreshRecord>, StoreError>;

    /// The shared WeChat access token of `appid`, if one is stored.
    async fn get_access_token(&self, appid: &str) -> Result<Option<AccessTokenRecord>, StoreError>;

    /// Save the WeChat access token of `appid` for `ttl`.
    async fn put_access_token(
        &self,
        appid: &str,
        record: &AccessTokenRecord,
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// Take the lease `name` for `holder` for `ttl`, unless another holder
    /// has it: `true` if taken. One instance at a time does what it guards.
    async fn take_lease(&self, name: &str, holder: &str, ttl: Duration)
        -> Result<bool, StoreError>;

    /// Give the lease `name` back, if `holder` still holds it.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;

    /// Add one to the counter `key` and return its value; a new counter
    /// expires `ttl` after its first hit (rate-limit windows).
    async fn count(&self, key: &str, ttl: Duration) -> Result<u64, StoreError>;

    /// Whether the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Whether the store may drop entries on its own (see [`Eviction`]).
    async fn eviction(&self) -> Result<Eviction, StoreError> {
        Ok(Eviction::Never)
    }

    /// The fill of each bounded map, for metrics (the memory store; Redis has none).
    fn map_stats(&self) -> Vec<MapStats> {
        Vec::new()
    }
}

/// How full one bounded map of the memory store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapStats {
    /// What the map holds, as in log lines (`sessions`, `revoked_tokens`, ...).
    pub kind: &'static str,
    /// Entries held, expired ones included until swept.
    pub entries: usize,
    /// The configured bound.
    pub capacity: usize,
    /// Live entries dropped to make room so far.
    pub dropped: u64,
    /// New entries refused for want of room so far.
    pub refused: u64,
}

/// Build the configured store.
pub fn build(cfg: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match &cfg.kind {
        StoreKind::Memory { memory } => Arc::new(memory::MemoryStore::new(memory)),
        StoreKind::Redis { url, .. } => Arc::new(redis::RedisStore::new(
            url.expose_str().unwrap_or_default(),
            &cfg.key_prefix,
            cfg.timeout,
        )?),
    })
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
