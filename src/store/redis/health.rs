//! What the Redis store says of itself: whether every master keeps every
//! key, whether the live revocations are loaded, how the topology and the
//! revocation feed stand.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::feed::StreamPos;
use super::keys::POSITION_SCRIPT;
use super::{node, RedisStore};
use crate::store::error::{Eviction, RedisFault, StoreError};
use crate::store::interface::StoreStatus;

impl RedisStore {
    /// Wait, within the timeout, until the feed has applied every revocation
    /// the store holds so far: until it has read up to the stream's last
    /// entry. (Entry ids only grow, whatever happens to the numbering: a
    /// sequence key that expired and started again, a failover that lost
    /// entries. A feed that read entries the store no longer has finds the
    /// next new one out of order and loads everything again.)
    pub(super) async fn caught_up_with_store(&self) -> Result<(), StoreError> {
        // One timeout for the whole: the read and the wait for the feed.
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut c = self.conn.clone();
        let (_, last): (String, String) = self
            .call(
                POSITION_SCRIPT
                    .key(self.keys.seq())
                    .key(self.keys.feed())
                    .invoke_async(&mut c),
            )
            .await?;
        let Some(target) = StreamPos::parse(&last) else {
            return Err(StoreError::UnexpectedReply {
                command: "XREVRANGE",
            });
        };
        let mut events = self.revocations.subscribe();
        loop {
            let at = *self
                .feed
                .last_id
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if at >= target {
                return Ok(());
            }
            // Woken when revocations arrive; checked again at least every 5 ms
            // (an entry that adds nothing new wakes no one).
            let wake = tokio::time::Instant::now() + Duration::from_millis(5);
            if tokio::time::timeout_at(wake.min(deadline), events.changed())
                .await
                .is_err()
                && tokio::time::Instant::now() >= deadline
            {
                return Err(StoreError::Stale {
                    since: self.revocations.staleness(),
                });
            }
        }
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
