//! The Redis store: state shared by several wxgate instances.
//!
//! One [`ConnectionManager`] (multiplexed, reconnects by itself) per process.
//! Every call runs under the configured timeout; every key carries the prefix
//! and a TTL. Operations that must be atomic are single commands or a
//! `MULTI`/`EXEC` pipeline: claiming a code is `SET NX`, taking a refresh token
//! is `GET` + `SET NX` + `GET` in one transaction, a rate-limit count is `INCR` +
//! `PEXPIRE NX`. The revocation check is one `MGET`.
//!
//! When Redis cannot be reached (I/O error, dropped or refused connection,
//! timeout), calls fail fast for a short while (half a second) instead of
//! each waiting out the timeout; the first call after that tries again, so
//! wxgate recovers by itself when Redis is back. An error about one command
//! (say, a value Redis refuses) fails that call only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;

use super::error::{Eviction, RedisFault, StoreError};
use super::interface::Store;
use super::records::{
    clamp_ttl, revoked_by, AccessTokenRecord, RefreshRecord, RefreshTake, RevocationCheck,
    WxSession,
};

/// How long calls fail fast after a failure.
const BACKOFF: Duration = Duration::from_millis(500);

/// The Redis-backed store.
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    /// Milliseconds since `epoch` until which calls fail fast (0: healthy).
    down_until: AtomicU64,
    epoch: Instant,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connect lazily to `url` (`redis://`, `rediss://`, with a password if any).
    /// Must be called inside a tokio runtime.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, StoreError> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = redis::Client::open(url).map_err(|_| StoreError::InvalidUrl)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| StoreError::Setup(RedisFault::from(&e)))?;
        Ok(Self {
            conn,
            prefix: prefix.to_string(),
            timeout,
            down_until: AtomicU64::new(0),
            epoch: Instant::now(),
        })
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
        let mut k = String::with_capacity(self.prefix.len() + kind.len() + id.len() + 1);
        k.push_str(&self.prefix);
        k.push_str(kind);
        k.push(':');
        k.push_str(id);
        k
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Run one Redis call with the timeout and the fail-fast window.
    async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if self.now_ms() < self.down_until.load(Ordering::Acquire) {
            return Err(StoreError::FailingFast);
        }
        let (error, connection_lost) = match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => return Ok(v),
            // Redis at `maxmemory` under `noeviction` refuses writes: full, not down.
            Ok(Err(e)) if e.code() == Some("OOM") => {
                tracing::error!("Redis is at its maxmemory and refuses writes: raise maxmemory (keys are never evicted under noeviction)");
                return Err(StoreError::Full {
                    what: "Redis maxmemory",
                });
            }
            Ok(Err(e)) => (
                StoreError::Redis(RedisFault::from(&e)),
                is_connection_failure(&e),
            ),
            Err(_) => (StoreError::Timeout(self.timeout), true),
        };
        if connection_lost {
            // Everyone's calls would fail the same way: fail fast for a while.
            self.down_until.store(
                self.now_ms().saturating_add(BACKOFF.as_millis() as u64),
                Ordering::Release,
            );
        }
        tracing::warn!(error = %crate::error::chain(&error), "store call failed");
        Err(error)
    }
}

/// What `CONFIG GET maxmemory-policy` answered (`[name, value]`) means.
fn eviction_of(pair: &[String]) -> Eviction {
    match pair {
        [_, policy] if policy.eq_ignore_ascii_case("noeviction") => Eviction::Never,
        [_, policy] => Eviction::Evicts {
            policy: policy.clone(),
        },
        _ => Eviction::Unknown,
    }
}

/// Whether `e` means Redis cannot be reached (I/O, a dropped or refused
/// connection, one that must be replaced), as opposed to an error about one
/// command or key, which says nothing about other callers' calls.
fn is_connection_failure(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

/// Delete a lease only if its holder gives it back (`release_lease`).
static RELEASE_LEASE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end \
         return 1",
    )
});

/// Whether a presentation may rotate: it marked the token itself, or the
/// rotation it found pending was abandoned (older than one store timeout: the
/// call that started it has failed by now, e.g. a take that timed out and was
/// carried out by Redis later). A concurrent presentation of a token being
/// rotated right now is reuse.
fn refresh_is_fresh(state: Option<&str>, mine: &str, now_ms: u64, timeout: Duration) -> bool {
    match state {
        Some(s) if s == mine => true,
        Some(s) => s
            .strip_prefix("pending:")
            .and_then(|t| t.split(':').next())
            .and_then(|t| t.parse::<u64>().ok())
            .is_some_and(|t| now_ms.saturating_sub(t) > timeout.as_millis() as u64),
        None => false,
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
        let value = json(session)?;
        let mut c = self.conn.clone();
        let key = self.key("session", openid);
        self.call(c.set_ex::<_, _, ()>(key, value, secs(ttl))).await
    }

    async fn get_session(&self, openid: &str) -> Result<Option<WxSession>, StoreError> {
        let mut c = self.conn.clone();
        let v: Option<String> = self.call(c.get(self.key("session", openid))).await?;
        v.as_deref().map(parse).transpose()
    }

    async fn claim_code(&self, code_hash: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.set_new(self.key("code-claim", code_hash), "1", ttl)
            .await
    }

    async fn release_code(&self, code_hash: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        self.call(c.del::<_, ()>(self.key("code-claim", code_hash)))
            .await
    }

    async fn put_code_outcome(
        &self,
        code_hash: &str,
        sealed: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        self.call(c.set_ex::<_, _, ()>(self.key("code", code_hash), sealed, secs(ttl)))
            .await
    }

    async fn get_code_outcome(&self, code_hash: &str) -> Result<Option<String>, StoreError> {
        let mut c = self.conn.clone();
        self.call(c.get(self.key("code", code_hash))).await
    }

    async fn revoke_token(&self, jti: &str, ttl: Duration) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        self.call(c.set_ex::<_, _, ()>(self.key("revoked-jti", jti), 1, secs(ttl)))
            .await
    }

    async fn revoke_subject(
        &self,
        openid: &str,
        before: u64,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        self.call(c.set_ex::<_, _, ()>(self.key("revoked-sub", openid), before, secs(ttl)))
            .await
    }

    async fn revoke_family(&self, family: &str, ttl: Duration) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        self.call(c.set_ex::<_, _, ()>(self.key("revoked-fam", family), 1, secs(ttl)))
            .await
    }

    async fn is_revoked(&self, check: &RevocationCheck<'_>) -> Result<bool, StoreError> {
        // Absent parts get a key that never exists, so the reply always has three slots.
        let keys = [
            self.key("revoked-jti", check.jti.unwrap_or("-")),
            self.key("revoked-sub", check.openid),
            self.key("revoked-fam", check.family.unwrap_or("-")),
        ];
        let mut c = self.conn.clone();
        let found: Vec<Option<String>> = self
            .call(redis::cmd("MGET").arg(&keys[..]).query_async(&mut c))
            .await?;
        let get = |i: usize| found.get(i).cloned().flatten();
        let jti = check.jti.is_some() && get(0).is_some();
        let before = get(1).and_then(|v| v.parse::<u64>().ok());
        let family = check.family.is_some() && get(2).is_some();
        Ok(revoked_by(check, jti, before, family))
    }

    async fn put_refresh(
        &self,
        hash: &str,
        record: &RefreshRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let value = json(record)?;
        let mut c = self.conn.clone();
        self.call(c.set_ex::<_, _, ()>(self.key("refresh", hash), value, secs(ttl)))
            .await
    }

    async fn take_refresh(&self, hash: &str, ttl: Duration) -> Result<RefreshTake, StoreError> {
        let used = self.key("refresh-used", hash);
        let now = crate::clock::unix_now_ms();
        // Unique per presentation: two takes in the same millisecond must not
        // both recognise the mark as their own.
        let mine = format!("pending:{now}:{:016x}", rand::random::<u64>());
        let mut c = self.conn.clone();
        let (record, state): (Option<String>, Option<String>) = self
            .call(
                redis::pipe()
                    .atomic()
                    .get(self.key("refresh", hash))
                    .cmd("SET")
                    .arg(&used)
                    .arg(&mine)
                    .arg("NX")
                    .arg("EX")
                    .arg(secs(ttl))
                    .ignore()
                    .get(&used)
                    .query_async(&mut c),
            )
            .await?;
        let Some(record) = record else {
            return Ok(RefreshTake::Unknown);
        };
        let record: RefreshRecord = parse(&record)?;
        Ok(
            if refresh_is_fresh(state.as_deref(), &mine, now, self.timeout) {
                RefreshTake::Fresh(record)
            } else {
                RefreshTake::Reused(record)
            },
        )
    }

    async fn complete_refresh(&self, hash: &str, ttl: Duration) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        self.call(c.set_ex::<_, _, ()>(self.key("refresh-used", hash), "spent", secs(ttl)))
            .await
    }

    async fn get_refresh(&self, hash: &str) -> Result<RefreshTake, StoreError> {
        let mut c = self.conn.clone();
        let (raw, state): (Option<String>, Option<String>) = self
            .call(
                redis::pipe()
                    .get(self.key("refresh", hash))
                    .get(self.key("refresh-used", hash))
                    .query_async(&mut c),
            )
            .await?;
        let Some(raw) = raw else {
            return Ok(RefreshTake::Unknown);
        };
        let record: RefreshRecord = parse(&raw)?;
        Ok(if state.as_deref() == Some("spent") {
            RefreshTake::Reused(record)
        } else {
            RefreshTake::Fresh(record)
        })
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
        let mut c = self.conn.clone();
        let reply: redis::RedisResult<Vec<String>> = tokio::time::timeout(
            self.timeout,
            redis::cmd("CONFIG")
                .arg("GET")
                .arg("maxmemory-policy")
                .query_async(&mut c),
        )
        .await
        .map_err(|_| StoreError::Timeout(self.timeout))?;
        match reply {
            Ok(pair) => Ok(eviction_of(&pair)),
            // Managed Redis often disables or renames CONFIG.
            Err(e) if !is_connection_failure(&e) => Ok(Eviction::Unknown),
            Err(e) => Err(StoreError::Redis(RedisFault::from(&e))),
        }
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
}

#[cfg(test)]
mod tests;
