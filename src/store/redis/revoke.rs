//! Writing a revocation (once, for the whole fleet), and refresh tokens
//! stored by a version before hash tags.

use std::time::Duration;

use redis::AsyncCommands;

use super::keys::{FEED_LENGTH, REVOKE};
use super::{millis, secs, RedisStore};
use crate::clock::unix_now_ms;
use crate::store::error::StoreError;
use crate::store::revocations::Revocation;

impl RedisStore {
    /// Write one revocation for `ttl`, wait for the replicas asked for, and
    /// hold it at once (the feed brings it to the other instances).
    pub(super) async fn revoke(
        &self,
        r: Revocation,
        ttl: Duration,
        legacy: (String, String),
    ) -> Result<(), StoreError> {
        let now = unix_now_ms();
        let expires = now.saturating_add(millis(ttl));
        let member = r.member();
        let mut p = redis::pipe();
        p.cmd("EVAL").arg(REVOKE).arg(3);
        for k in self.keys.revocation_keys() {
            p.arg(k);
        }
        p.arg(&member)
            .arg(expires)
            .arg(now)
            .arg(self.max_revocations)
            .arg(FEED_LENGTH)
            .ignore();
        if self.replica_acks > 0 {
            p.cmd("WAIT")
                .arg(self.replica_acks)
                .arg(millis(self.replica_ack_timeout));
        }
        // `WAIT` holds its connection (Redis answers nothing else on it
        // meanwhile): revocations have a connection of their own, so that
        // missing replicas slow logouts only, never logins or refreshes.
        // The wait is allowed on top of the timeout.
        let mut c = self.revoke_conn.clone();
        let limit = self.timeout.saturating_add(self.replica_ack_timeout);
        let acked: Vec<u64> = self
            .call_within(limit, self.replica_acks == 0, p.query_async(&mut c))
            .await?;
        self.revocations.apply([(r, expires)], now);
        if self.legacy {
            // Instances of a version before the feed still read these.
            let (key, value) = legacy;
            // On the calls' connection: never behind another logout's WAIT.
            let mut c = self.conn.clone();
            if let Err(e) = self.call(c.set_ex::<_, _, ()>(key, value, secs(ttl))).await {
                tracing::debug!(error = %e, "cannot write a revocation's legacy key");
            }
        }
        match acked.first() {
            Some(&n) if n < u64::from(self.replica_acks) => {
                tracing::warn!(acked = n, wanted = self.replica_acks, "a revocation was not confirmed by the replicas in time; the caller is told to retry");
                Err(StoreError::NotReplicated {
                    acked: n,
                    wanted: self.replica_acks,
                })
            }
            _ => Ok(()),
        }
    }

    /// On a standalone server, move a refresh token stored by a version
    /// before hash tags to its new names (on first use).
    pub(super) async fn adopt_legacy_refresh(&self, hash: &str) -> Result<(), StoreError> {
        if !self.legacy {
            return Ok(());
        }
        let (old, old_used) = self.keys.legacy_refresh(hash);
        let mut c = self.conn.clone();
        self.call(
            ADOPT_REFRESH
                .key(self.keys.refresh(hash))
                .key(self.keys.refresh_used(hash))
                .key(old)
                .key(old_used)
                .invoke_async::<i64>(&mut c),
        )
        .await
        .map(|_| ())
    }
}

/// Rename a refresh token's legacy keys (KEYS[3], KEYS[4]) to its tagged
/// ones (KEYS[1], KEYS[2]), unless the tagged record exists. Standalone only.
static ADOPT_REFRESH: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('EXISTS', KEYS[3]) == 1 then \
           redis.call('RENAME', KEYS[3], KEYS[1]) \
           if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('RENAME', KEYS[4], KEYS[2]) end \
         end return 1",
    )
});
