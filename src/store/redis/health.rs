//! What the Redis store says of itself: whether every master keeps every
//! key, whether the live revocations are loaded, how the topology and the
//! revocation feed stand.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{node, RedisStore};
use crate::store::error::{Eviction, RedisFault, StoreError};
use crate::store::interface::StoreStatus;

impl RedisStore {
    /// Wait, within the timeout, until the feed has applied every revocation
    /// the store has numbered so far.
    pub(super) async fn caught_up_with_store(&self) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let written: Option<u64> = self
            .call(redis::AsyncCommands::get(&mut c, self.keys.seq()))
            .await?;
        let written = written.unwrap_or(0);
        let deadline = Instant::now() + self.timeout;
        while self.feed.seq.load(Ordering::Acquire) < written {
            if Instant::now() >= deadline {
                return Err(StoreError::Stale {
                    since: self.revocations.staleness(),
                });
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    pub(super) async fn masters_eviction(&self) -> Result<Eviction, StoreError> {
        // Every master must keep every key: a cluster's each, the one of Sentinel.
        let replies = tokio::time::timeout(
            self.timeout,
            self.conn
                .each_master(redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy")),
        )
        .await
        .map_err(|_| StoreError::Timeout(self.timeout))?;
        let replies = match replies {
            Ok(r) => r,
            Err(e) if node::needs_new_master(&e) => {
                return Err(StoreError::Redis(RedisFault::from(&e)))
            }
            // Managed Redis often disables or renames CONFIG.
            Err(_) => return Ok(Eviction::Unknown),
        };
        let mut worst = Eviction::Never;
        for (node, reply) in replies {
            let pair: Vec<String> = match reply {
                Ok(v) => redis::from_redis_value(v).unwrap_or_default(),
                Err(_) => Vec::new(),
            };
            match eviction_of(&pair) {
                Eviction::Never => {}
                Eviction::Evicts { policy } => {
                    tracing::warn!(%node, %policy, "a Redis master evicts keys");
                    return Ok(Eviction::Evicts { policy });
                }
                Eviction::Unknown => worst = Eviction::Unknown,
            }
        }
        Ok(worst)
    }

    pub(super) async fn settle_feed(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.revocations.is_stale() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    pub(super) fn report(&self) -> StoreStatus {
        StoreStatus {
            topology: self.topology,
            master: self.conn.master(),
            up: self.now_ms() >= self.down_until.load(Ordering::Acquire),
            feed_following: self.feed.following.load(Ordering::Acquire),
            feed_loads: self.feed.loads.load(Ordering::Relaxed),
            feed_gaps: self.feed.gaps.load(Ordering::Relaxed),
            revocations_live: self.revocations.len(),
            revocations_received: self.revocations.received(),
            staleness: self.revocations.staleness(),
            stale: self.revocations.is_stale(),
        }
    }
}

/// What `CONFIG GET maxmemory-policy` answered (`[name, value]`) means.
pub(super) fn eviction_of(pair: &[String]) -> Eviction {
    match pair {
        [_, policy] if policy.eq_ignore_ascii_case("noeviction") => Eviction::Never,
        [_, policy] => Eviction::Evicts {
            policy: policy.clone(),
        },
        _ => Eviction::Unknown,
    }
}
