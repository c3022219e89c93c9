//! The Redis store: state shared by several wxgate instances, on one
//! server, a master found through Sentinel, or a Cluster ([`conn`]).
//!
//! Every call runs under the configured timeout; every key carries the prefix
//! and a TTL. Operations that must be atomic are single commands, a
//! `MULTI`/`EXEC` pipeline or a script, over keys of one hash tag
//! ([`keys`]): claiming a code is `SET NX`, taking a refresh token is `GET` +
//! `SET NX` + `GET` in one transaction, a rate-limit count is `INCR` +
//! `PEXPIRE NX`, a revocation is one script (then `WAIT` for the replicas
//! `replica_acks` asks for).
//!
//! The revocation check does no I/O: every instance holds the live
//! revocations in memory, kept complete by the revocation [`feed`].
//!
//! When Redis cannot be reached (I/O error, dropped or refused connection,
//! timeout), calls fail fast for a short while (half a second) instead of
//! each waiting out the timeout; the first call after that tries again, so
//! wxgate recovers by itself when Redis is back. An error about one command
//! (say, a value Redis refuses) fails that call only.

mod call;
mod codes;
mod conn;
mod feed;
mod health;
mod keys;
mod node;
mod refresh;
mod revoke;
mod sentinel;
mod user_sessions;
mod users;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::AsyncCommands;
use tokio::task::AbortHandle;

use self::conn::Conn;
use self::feed::{Feed, FeedStatus};
use self::keys::{Keys, RELEASE_LEASE};
use self::node::Timeouts;
use super::config::{RedisConfig, Topology};
use super::error::{Eviction, StoreError};
use super::interface::{Store, StoreStatus};
use super::records::{
    clamp_ttl, AccessTokenRecord, Ban, CodeClaim, EndReason, RefreshRecord, RefreshTake,
    RevocationCheck, SessionEntry, WxSession,
};
use super::revocations::{Revocation, RevocationSet};
use crate::clock::unix_now_ms;

/// The Redis-backed store.
pub struct RedisStore {
    conn: Conn,
    /// Where revocations are written (`conn` unless they wait for replicas).
    revoke_conn: Conn,
    keys: Keys,
    topology: &'static str,
    timeout: Duration,
    /// Milliseconds since `epoch` until which calls fail fast (0: healthy).
    down_until: AtomicU64,
    epoch: Instant,
    revocations: Arc<RevocationSet>,
    feed: Arc<FeedStatus>,
    feed_task: AbortHandle,
    replica_acks: u32,
    replica_ack_timeout: Duration,
    max_revocations: usize,
    /// A standalone server may hold keys of a version before hash tags.
    legacy: bool,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("keys", &self.keys)
            .field("topology", &self.topology)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.feed_task.abort();
    }
}

impl RedisStore {
    /// A standalone Redis at `url` (`redis://`, `rediss://`, with a password
    /// if any), with the defaults. Must be called inside a tokio runtime.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, StoreError> {
        Self::from_config(&RedisConfig::standalone(url), prefix, timeout)
    }

    /// The store `cfg` describes. Connects lazily; starts the revocation
    /// feed on the current tokio runtime.
    pub fn from_config(
        cfg: &RedisConfig,
        prefix: &str,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let conn = Conn::open(
            &cfg.topology,
            Timeouts {
                connect: timeout,
                response: timeout,
            },
        )?;
        // Revocations wait for their replicas (`WAIT`, which holds its
        // connection): on a connection of their own when they do.
        let revoke_conn = if cfg.replica_acks > 0 {
            Conn::open(
                &cfg.topology,
                Timeouts {
                    connect: timeout,
                    response: timeout.saturating_add(cfg.replica_ack_timeout),
                },
            )?
        } else {
            conn.clone()
        };
        // Its own connection: a blocking read must not hold up other calls.
        let feed_conn = Conn::open(
            &cfg.topology,
            Timeouts {
                connect: timeout,
                response: feed::pace(cfg.max_staleness).saturating_add(timeout),
            },
        )?;
        let keys = Keys::new(prefix);
        let legacy = matches!(cfg.topology, Topology::Standalone { .. });
        let revocations = Arc::new(RevocationSet::new(cfg.max_staleness));
        let status = Arc::new(FeedStatus::default());
        let feed = Feed {
            conn: feed_conn,
            keys: keys.clone(),
            set: revocations.clone(),
            status: status.clone(),
            timeout,
            import_legacy: legacy,
            confirms: matches!(cfg.topology, Topology::Sentinel { .. }),
            pace: feed::pace(cfg.max_staleness),
        };
        let feed_task = tokio::spawn(feed.run()).abort_handle();
        Ok(Self {
            conn,
            revoke_conn,
            keys,
            topology: cfg.topology.name(),
            timeout,
            down_until: AtomicU64::new(0),
            epoch: Instant::now(),
            revocations,
            feed: status,
            feed_task,
            replica_acks: cfg.replica_acks,
            replica_ack_timeout: cfg.replica_ack_timeout,
            max_revocations: cfg.max_revocations,
            legacy,
        })
    }

    /// The live revocations this instance holds.
    pub fn revocations(&self) -> &RevocationSet {
        &self.revocations
    }

    /// `SET key value NX PX ttl`: `true` if the key was new and is now set.
    async fn set_new(&self, key: String, value: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let ok: Option<String> = self
            .call(
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(ttl))
                    .query_async(&mut c),
            )
            .await?;
        Ok(ok.is_some())
    }

    fn key(&self, kind: &str, id: &str) -> String {
        self.keys.plain(kind, id)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// A time to live in whole seconds for `SET … EX`: clamped, at least 1.
fn secs(d: Duration) -> u64 {
    clamp_ttl(d).as_secs().max(1)
}

/// A time to live in milliseconds for `PX`/`PEXPIRE`: clamped, at least 1.
fn millis(d: Duration) -> u64 {
    u64::try_from(clamp_ttl(d).as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(StoreError::Encode)
}

fn parse<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(StoreError::Decode)
}

#[async_trait]
impl Store for RedisStore {
    async fn put_session(
        &self,
        openid: &str,
        session: &WxSession,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.put_wx_session(openid, session, ttl).await
    }

    async fn get_session(&self, openid: &str) -> Result<Option<WxSession>, StoreError> {
        self.wx_session(openid).await
    }

    async fn add_session(
        &self,
        openid: &str,
        entry: &SessionEntry,
        ttl: Duration,
    ) -> Result<usize, StoreError> {
        self.add_user_session(openid, entry, ttl).await
    }

    async fn touch_session(
        &self,
        openid: &str,
        entry: &SessionEntry,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.touch_user_session(openid, entry, ttl).await
    }

    async fn list_sessions(&self, openid: &str) -> Result<Vec<SessionEntry>, StoreError> {
        self.user_sessions(openid).await
    }

    async fn remove_sessions(&self, openid: &str, ids: &[String]) -> Result<(), StoreError> {
        self.remove_user_sessions(openid, ids).await
    }

    async fn claim_code(&self, code_hash: &str, ttl: Duration) -> Result<CodeClaim, StoreError> {
        self.claim(code_hash, ttl).await
    }

    async fn take_over_code(
        &self,
        code_hash: &str,
        seen: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.take_over(code_hash, seen, ttl).await
    }

    async fn release_code(&self, code_hash: &str) -> Result<(), StoreError> {
        self.release(code_hash).await
    }

    async fn put_code_outcome(
        &self,
        code_hash: &str,
        sealed: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.put_outcome(code_hash, sealed, ttl).await
    }

    async fn get_code_outcome(&self, code_hash: &str) -> Result<Option<String>, StoreError> {
        self.outcome(code_hash).await
    }

    async fn end_family(
        &self,
        family: &str,
        reason: EndReason,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        // The reason first: on this version it refuses the family itself,
        // so an open socket learns why it closes with the refusal; then the
        // family's own entry, which versions before reasons read.
        let r = Revocation::Ended {
            family: family.to_string(),
            reason,
        };
        let legacy = (self.key("revoked-fam", family), "1".to_string());
        let ended = self.revoke(r, ttl, legacy).await;
        // Tried whatever the first write did: versions before reasons
        // refuse the family only from this entry.
        let refused = self.revoke_family(family, ttl).await;
        ended.and(refused)
    }

    async fn ended_reason(&self, family: &str) -> Result<Option<EndReason>, StoreError> {
        Ok(self.revocations.reason(family, unix_now_ms()))
    }

    async fn put_ban(
        &self,
        openid: &str,
        ban: &Ban,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        self.put_ban_key(openid, ban, ttl).await
    }

    async fn get_ban(&self, openid: &str) -> Result<Option<Ban>, StoreError> {
        self.ban_key(openid).await
    }

    async fn remove_ban(&self, openid: &str) -> Result<bool, StoreError> {
        self.remove_ban_key(openid).await
    }

    async fn link_uid(&self, uid: &str, openid: &str, ttl: Duration) -> Result<(), StoreError> {
        self.link_uid_key(uid, openid, ttl).await
    }

    async fn uid_openids(&self, uid: &str) -> Result<Vec<String>, StoreError> {
        self.uid_key(uid).await
    }

    async fn revoke_token(&self, jti: &str, ttl: Duration) -> Result<(), StoreError> {
        let legacy = (self.key("revoked-jti", jti), "1".to_string());
        self.revoke(Revocation::Token(jti.to_string()), ttl, legacy)
            .await
    }

    async fn revoke_subject(
        &self,
        openid: &str,
        before: u64,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let legacy = (self.key("revoked-sub", openid), before.to_string());
        let r = Revocation::Subject {
            openid: openid.to_string(),
            before,
        };
        self.revoke(r, ttl, legacy).await
    }

    async fn revoke_family(&self, family: &str, ttl: Duration) -> Result<(), StoreError> {
        let legacy = (self.key("revoked-fam", family), "1".to_string());
        self.revoke(Revocation::Family(family.to_string()), ttl, legacy)
            .await
    }

    async fn is_revoked(&self, check: &RevocationCheck<'_>) -> Result<bool, StoreError> {
        // From memory: the feed keeps the set complete, or says it is not.
        self.revocations.check(check, unix_now_ms())
    }

    async fn is_revoked_now(&self, check: &RevocationCheck<'_>) -> Result<bool, StoreError> {
        self.caught_up_with_store().await?;
        self.revocations.check(check, unix_now_ms())
    }

    async fn put_refresh(
        &self,
        hash: &str,
        record: &RefreshRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let value = json(record)?;
        let mut c = self.conn.clone();
        self.call(c.set_ex::<_, _, ()>(self.keys.refresh(hash), value, secs(ttl)))
            .await
    }

    async fn take_refresh(&self, hash: &str, ttl: Duration) -> Result<RefreshTake, StoreError> {
        self.take(hash, ttl).await
    }

    async fn complete_refresh(&self, hash: &str, ttl: Duration) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        self.call(c.set_ex::<_, _, ()>(self.keys.refresh_used(hash), "spent", secs(ttl)))
            .await
    }

    async fn get_refresh(&self, hash: &str) -> Result<RefreshTake, StoreError> {
        self.look(hash).await
    }

    async fn get_access_token(&self, appid: &str) -> Result<Option<AccessTokenRecord>, StoreError> {
        let mut c = self.conn.clone();
        let raw: Option<String> = self.call(c.get(self.key("access-token", appid))).await?;
        raw.map(|r| parse(&r)).transpose()
    }

    async fn put_access_token(
        &self,
        appid: &str,
        record: &AccessTokenRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let value = json(record)?;
        let mut c = self.conn.clone();
        self.call(c.pset_ex::<_, _, ()>(self.key("access-token", appid), value, millis(ttl)))
            .await
    }

    async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.set_new(self.key("lease", name), holder, ttl).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        self.call(
            RELEASE_LEASE
                .key(self.key("lease", name))
                .arg(holder)
                .invoke_async::<i64>(&mut c),
        )
        .await
        .map(|_| ())
    }

    async fn count(&self, key: &str, ttl: Duration) -> Result<u64, StoreError> {
        let key = self.key("rate", key);
        let mut c = self.conn.clone();
        let (count, _): (u64, i64) = self
            .call(
                redis::pipe()
                    .atomic()
                    .incr(&key, 1)
                    .cmd("PEXPIRE")
                    .arg(&key)
                    .arg(millis(ttl))
                    .arg("NX")
                    .query_async(&mut c),
            )
            .await?;
        Ok(count)
    }

    async fn eviction(&self) -> Result<Eviction, StoreError> {
        self.masters_eviction().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let pong: String = self.call(redis::cmd("PING").query_async(&mut c)).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(StoreError::UnexpectedReply { command: "PING" })
        }
    }

    async fn settle(&self, limit: Duration) -> bool {
        self.settle_feed(limit).await
    }

    fn revocation_events(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.revocations.subscribe())
    }

    fn status(&self) -> Option<StoreStatus> {
        Some(self.report())
    }
}

#[cfg(test)]
mod tests;
