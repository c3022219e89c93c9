//! [`Store`]: the one interface for everything wxgate remembers, which the
//! memory and Redis stores implement.

use std::time::Duration;

use async_trait::async_trait;

use super::error::{Eviction, StoreError};
use super::records::{
    AccessTokenRecord, Ban, CodeClaim, EndReason, RefreshRecord, RefreshTake, RevocationCheck,
    SessionEntry, WxSession,
};

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

    /// Add a session to the index of `openid`'s sessions, which lives `ttl`
    /// from now (the longest a session can). Returns how many it holds now,
    /// expired ones included until they are removed.
    async fn add_session(
        &self,
        openid: &str,
        entry: &SessionEntry,
        ttl: Duration,
    ) -> Result<usize, StoreError>;

    /// Record a refresh of `entry` (its `refreshed_ms` and `issued_ms`); a
    /// session the index lacks (opened by a version before it) is added whole.
    async fn touch_session(
        &self,
        openid: &str,
        entry: &SessionEntry,
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// Every session the index of `openid` holds, ended ones included.
    async fn list_sessions(&self, openid: &str) -> Result<Vec<SessionEntry>, StoreError>;

    /// Take sessions out of the index of `openid`.
    async fn remove_sessions(&self, openid: &str, ids: &[String]) -> Result<(), StoreError>;

    /// Claim the exchange of a login code (by hash) for `ttl`, or learn
    /// that another request holds it, or read its outcome: one call. A
    /// claim and an outcome are one entry, the outcome replacing the claim.
    async fn claim_code(&self, code_hash: &str, ttl: Duration) -> Result<CodeClaim, StoreError>;

    /// Claim a code whose outcome is still `seen` (a login WeChat accepted
    /// that did not finish), for `ttl`; `false`: it changed meanwhile.
    async fn take_over_code(
        &self,
        code_hash: &str,
        seen: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// Give up a claim without an outcome (a transient failure: let a retry
    /// try); an outcome saved meanwhile stays.
    async fn release_code(&self, code_hash: &str) -> Result<(), StoreError>;

    /// Save the (sealed) outcome of a code exchange, in place of its claim.
    async fn put_code_outcome(
        &self,
        code_hash: &str,
        sealed: &str,
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// The (sealed) outcome of a code exchange, if one was saved.
    async fn get_code_outcome(&self, code_hash: &str) -> Result<Option<String>, StoreError>;

    /// End a session: revoke its refresh family for `ttl` (as
    /// [`Store::revoke_family`]), then record why.
    async fn end_family(
        &self,
        family: &str,
        reason: EndReason,
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// Why the session of `family` ended, when it was ended with a reason.
    /// Asked only of a token already refused (Redis: from memory, no call).
    async fn ended_reason(&self, family: &str) -> Result<Option<EndReason>, StoreError>;

    /// Ban `openid` for `ttl` (`None`: until unbanned). Never dropped to
    /// make room: a full store refuses (`Full`).
    async fn put_ban(
        &self,
        openid: &str,
        ban: &Ban,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError>;

    /// The ban of `openid`, if one is stored (it may have ended: see [`Ban::holds`]).
    async fn get_ban(&self, openid: &str) -> Result<Option<Ban>, StoreError>;

    /// Lift the ban of `openid`; `false` if there was none.
    async fn remove_ban(&self, openid: &str) -> Result<bool, StoreError>;

    /// Link the login hook's `uid` to `openid` for `ttl` (as long as the
    /// user's session index); a uid keeps at most [`super::MAX_UID_OPENIDS`].
    async fn link_uid(&self, uid: &str, openid: &str, ttl: Duration) -> Result<(), StoreError>;

    /// The openids `uid` was given to, while their links live.
    async fn uid_openids(&self, uid: &str) -> Result<Vec<String>, StoreError>;

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

    /// Whether a token is revoked, from what this instance holds (the Redis
    /// store: every revocation the feed brought so far, no I/O).
    async fn is_revoked(&self, check: &RevocationCheck<'_>) -> Result<bool, StoreError>;

    /// Whether a token is revoked, counting every revocation written
    /// anywhere before this call (the Redis store waits, within its timeout,
    /// until its feed has caught up with the store). For refreshes, which
    /// must not mint tokens for a session ended a moment ago elsewhere.
    async fn is_revoked_now(&self, check: &RevocationCheck<'_>) -> Result<bool, StoreError> {
        self.is_revoked(check).await
    }

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
    /// (nothing is marked): the login hook is asked before a rotation, and
    /// only about a token that is not spent. `Reused`: a rotation of it
    /// completed ([`Store::complete_refresh`]); `Fresh`: not (yet).
    async fn get_refresh(&self, hash: &str) -> Result<RefreshTake, StoreError>;

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

    /// Wait up to `limit` until the store can answer revocation checks (the
    /// Redis store's first load of the live revocations); `false`: it cannot yet.
    async fn settle(&self, limit: Duration) -> bool {
        let _ = limit;
        true
    }

    /// Changes whenever revocations arrive, so that open sockets look again
    /// at once (`None`: the store cannot tell).
    fn revocation_events(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// The topology and the revocation feed, for metrics and `/readyz`
    /// (`None`: an embedded store, nothing to report).
    fn status(&self) -> Option<StoreStatus> {
        None
    }
}

/// How a shared store and its revocation feed stand.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreStatus {
    /// `standalone`, `sentinel` or `cluster`.
    pub topology: &'static str,
    /// The master written to, when one is named (Sentinel).
    pub master: Option<String>,
    /// Whether calls go through (not failing fast after a failure).
    pub up: bool,
    /// Whether the feed follows the stream now.
    pub feed_following: bool,
    /// Full loads of the live revocations so far.
    pub feed_loads: u64,
    /// Gaps found in the feed's numbering so far.
    pub feed_gaps: u64,
    /// Revocations held in memory.
    pub revocations_live: usize,
    /// Revocations received so far.
    pub revocations_received: u64,
    /// Time since the held revocations were last known complete (`None`: never).
    pub staleness: Option<Duration>,
    /// Whether that is past `max_staleness`: revocation checks fail.
    pub stale: bool,
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
