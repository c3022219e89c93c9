//! The revocation feed: how every instance learns of every revocation
//! without a store read per request.
//!
//! A revocation is written by one script ([`super::keys::REVOKE`]) into an
//! index of the live ones (a sorted set, scored by expiry), numbered by a
//! counter, and appended to a Redis Stream with its number. Each instance
//! runs one [`Feed`] task on a connection of its own (a blocking read must
//! not hold up other calls):
//!
//! 1. **load**: read the counter and the stream's last id together, then
//!    every live entry of the index (`ZSCAN`: whatever was there for the
//!    whole scan is seen; whatever is newer comes from the stream);
//! 2. **follow**: `XREAD BLOCK` from that id; each entry must carry the
//!    next number. A number out of order (the stream was trimmed past this
//!    instance's position, or a failover lost entries) is a gap: load again.
//!    An error (connection lost, failover) also means load again.
//!
//! Each read that succeeds proves the set complete as of when it was sent
//! ([`RevocationSet::caught_up`]); past `max_staleness` without one, checks
//! fail and `on_error` applies, until the feed is back.
//!
//! A Stream rather than pub/sub: a message published while an instance is
//! disconnected is lost to it, while a stream is read from where the reader
//! stopped (and a gap is detected, not missed). Client-side tracking would
//! need RESP3 push handling on every connection and says nothing of what
//! was missed during a disconnect either.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::streams::StreamReadReply;
use redis::{RedisResult, Value};

use super::conn::Conn;
use super::keys::{Keys, FEED_LENGTH, POSITION_SCRIPT, REVOKE};
use crate::clock::unix_now_ms;
use crate::store::revocations::{Revocation, RevocationSet};

/// How long one `XREAD` waits for new entries, and how often (under
/// Sentinel) the sentinels are asked whether the node read from is still
/// the master: a quarter of `max_staleness`, within these bounds. An idle
/// feed proves itself caught up that often, well within `max_staleness`.
pub(super) fn pace(max_staleness: Duration) -> Duration {
    (max_staleness / 4).clamp(Duration::from_millis(20), Duration::from_millis(250))
}

/// Entries read at most per `XREAD`.
const BATCH: usize = 1000;

/// How often expired revocations leave memory.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// What the feed reports to metrics and `/readyz`.
#[derive(Debug, Default)]
pub(super) struct FeedStatus {
    /// Whether the feed is following the stream now.
    pub(super) following: AtomicBool,
    /// Full loads of the live revocations (start, reconnects, gaps).
    pub(super) loads: AtomicU64,
    /// Gaps found in the numbering.
    pub(super) gaps: AtomicU64,
    /// The number of the last revocation applied from the feed.
    pub(super) seq: AtomicU64,
    /// The stream id of the last entry applied (or of the position loaded).
    pub(super) last_id: std::sync::Mutex<StreamPos>,
}

/// A stream entry id, `<ms>-<n>`, ordered as Redis orders them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct StreamPos(pub(super) u64, pub(super) u64);

impl StreamPos {
    /// `<ms>-<n>` (`None`: not an entry id).
    pub(super) fn parse(id: &str) -> Option<Self> {
        let (ms, n) = id.split_once('-')?;
        Some(Self(ms.parse().ok()?, n.parse().ok()?))
    }
}

/// One instance's reader of the revocation feed.
pub(super) struct Feed {
    pub conn: Conn,
    pub keys: Keys,
    pub set: Arc<RevocationSet>,
    pub status: Arc<FeedStatus>,
    pub timeout: Duration,
    /// Import the revocations of a version before the feed, once (standalone).
    pub import_legacy: bool,
    /// Whether the node read from must be confirmed the master (Sentinel).
    pub confirms: bool,
    /// [`pace`] of the configured `max_staleness`.
    pub pace: Duration,
}

/// Why following stopped.
enum Stop {
    Gap {
        expected: u64,
        got: u64,
    },
    /// The sentinels no longer name the node read from.
    NotMaster,
    Error(redis::RedisError),
    Timeout,
}

impl Feed {
    /// Load, follow, and load again whenever following stops; for ever.
    pub(super) async fn run(mut self) {
        let mut backoff = Duration::from_millis(50);
        let mut last_sweep = Instant::now();
        loop {
            let sent = Instant::now();
            match tokio::time::timeout(self.load_limit(), self.load()).await {
                Ok(Ok(_)) if !self.conn.still_master().await => {
                    tracing::warn!("revocation feed: the sentinels do not confirm the node read from as the master");
                }
                Ok(Ok((seq, id))) => {
                    // Confirmed (if need be) after `sent`: the load counts from `sent`.
                    self.set.caught_up(sent);
                    self.status.seq.store(seq, Ordering::Release);
                    self.applied(&id);
                    self.status.loads.fetch_add(1, Ordering::Relaxed);
                    self.status.following.store(true, Ordering::Release);
                    backoff = Duration::from_millis(50);
                    let stop = self.follow(seq, id, sent, &mut last_sweep).await;
                    self.status.following.store(false, Ordering::Release);
                    match stop {
                        Stop::Gap { expected, got } => {
                            self.status.gaps.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(expected, got, "revocation feed: a gap in the numbering; loading every live revocation again");
                            continue;
                        }
                        Stop::NotMaster => tracing::warn!("revocation feed: the sentinels no longer name the node read from as the master; loading again"),
                        Stop::Error(e) => {
                            tracing::warn!(code = e.code().unwrap_or("-"), kind = ?e.kind(), "revocation feed: reading failed; loading again")
                        }
                        Stop::Timeout => tracing::warn!(
                            "revocation feed: the store did not answer; loading again"
                        ),
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(code = e.code().unwrap_or("-"), kind = ?e.kind(), "revocation feed: cannot load the live revocations")
                }
                Err(_) => tracing::warn!("revocation feed: loading the live revocations timed out"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Loading a large index takes many calls: allow each its timeout.
    fn load_limit(&self) -> Duration {
        self.timeout.saturating_mul(50).max(Duration::from_secs(10))
    }

    /// Where the feed stands, and every live revocation into the set.
    async fn load(&mut self) -> RedisResult<(u64, String)> {
        let (seq, id): (String, String) = POSITION_SCRIPT
            .key(self.keys.seq())
            .key(self.keys.feed())
            .invoke_async(&mut self.conn)
            .await?;
        let seq = seq.parse::<u64>().unwrap_or(0);
        let live = self.keys.live();
        let mut cursor: u64 = 0;
        loop {
            let (next, flat): (u64, Vec<String>) = redis::cmd("ZSCAN")
                .arg(&live)
                .arg(cursor)
                .arg("COUNT")
                .arg(BATCH)
                .query_async(&mut self.conn)
                .await?;
            let items = flat.chunks_exact(2).filter_map(|pair| match pair {
                [member, score] => Some((
                    Revocation::parse(member)?,
                    score.parse::<f64>().ok().map(|s| s as u64)?,
                )),
                _ => None,
            });
            self.set.apply(items.collect::<Vec<_>>(), unix_now_ms());
            if next == 0 {
                break;
            }
            cursor = next;
        }
        if self.import_legacy {
            self.import_legacy().await?;
            self.import_legacy = false;
        }
        Ok((seq, id))
    }

    /// Revocations a version before the feed wrote as one key each
    /// (`revoked-jti:`, `revoked-fam:`, `revoked-sub:`), into the index and
    /// the feed (what the index already holds is skipped), so that every
    /// instance gets them.
    async fn import_legacy(&mut self) -> RedisResult<()> {
        let pattern = self.keys.legacy_revocation_pattern();
        let mut cursor: u64 = 0;
        let mut found = 0usize;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(BATCH)
                .query_async(&mut self.conn)
                .await?;
            for key in keys {
                let mut p = redis::pipe();
                p.get(&key).cmd("PTTL").arg(&key);
                let (value, ttl): (Option<String>, i64) = p.query_async(&mut self.conn).await?;
                let (Some(value), Ok(ttl)) = (value, u64::try_from(ttl)) else {
                    continue;
                };
                let Some(r) = legacy(key.get(self.keys.prefix_len()..).unwrap_or(""), &value)
                else {
                    continue;
                };
                let now = unix_now_ms();
                let expires = now.saturating_add(ttl);
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(REVOKE).arg(3);
                for k in self.keys.revocation_keys() {
                    cmd.arg(k);
                }
                cmd.arg(r.member())
                    .arg(expires)
                    .arg(now)
                    .arg(u64::MAX)
                    .arg(FEED_LENGTH)
                    .arg(1);
                let n: u64 = cmd.query_async(&mut self.conn).await?;
                self.set.apply([(r, expires)], now);
                if n > 0 {
                    found = found.saturating_add(1);
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        if found > 0 {
            tracing::info!(
                found,
                "revocation feed: imported revocations written by an earlier version"
            );
        }
        Ok(())
    }

    /// Where the feed stands now (read by refreshes, see `health.rs`).
    fn applied(&self, id: &str) {
        if let Some(pos) = StreamPos::parse(id) {
            *self
                .status
                .last_id
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = pos;
        }
    }

    /// Follow the stream from `id` (the entry numbered `seq`); the node
    /// read from was last confirmed the master when `confirmed` began.
    async fn follow(
        &mut self,
        mut seq: u64,
        mut id: String,
        mut confirmed: Instant,
        last_sweep: &mut Instant,
    ) -> Stop {
        let feed = self.keys.feed();
        let limit = self.pace.saturating_add(self.timeout);
        loop {
            if self.confirms && confirmed.elapsed() >= self.pace {
                let asked = Instant::now();
                if !self.conn.still_master().await {
                    return Stop::NotMaster;
                }
                confirmed = asked;
            }
            if last_sweep.elapsed() >= SWEEP_EVERY {
                self.set.sweep(unix_now_ms());
                *last_sweep = Instant::now();
            }
            let sent = Instant::now();
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT")
                .arg(BATCH)
                .arg("BLOCK")
                .arg(u64::try_from(self.pace.as_millis()).unwrap_or(250))
                .arg("STREAMS")
                .arg(&feed)
                .arg(&id);
            let read = cmd.query_async::<Option<StreamReadReply>>(&mut self.conn);
            let reply = match tokio::time::timeout(limit, read).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Stop::Error(e),
                Err(_) => return Stop::Timeout,
            };
            let mut items = Vec::new();
            let mut read = 0usize;
            for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                let n = field_u64(entry.map.get("n"));
                let expected = seq.saturating_add(1);
                if n != Some(expected) {
                    // Apply what came before the gap; the load brings the rest.
                    self.set.apply(items, unix_now_ms());
                    return Stop::Gap {
                        expected,
                        got: n.unwrap_or(0),
                    };
                }
                seq = expected;
                read = read.saturating_add(1);
                id = entry.id.clone();
                let member = field_string(entry.map.get("m"));
                let expires = field_u64(entry.map.get("x"));
                if let (Some(r), Some(x)) = (member.as_deref().and_then(Revocation::parse), expires)
                {
                    items.push((r, x));
                }
            }
            self.set.apply(items, unix_now_ms());
            self.status.seq.store(seq, Ordering::Release);
            self.applied(&id);
            // A full batch may have left more behind: not caught up yet.
            if read < BATCH {
                self.set.caught_up(if self.confirms {
                    sent.min(confirmed)
                } else {
                    sent
                });
            }
        }
    }
}

/// The revocation a legacy key (without the prefix) and its value name.
fn legacy(key: &str, value: &str) -> Option<Revocation> {
    let (kind, id) = key.split_once(':')?;
    match kind {
        "revoked-jti" => Some(Revocation::Token(id.to_string())),
        "revoked-fam" => Some(Revocation::Family(id.to_string())),
        "revoked-sub" => Some(Revocation::Subject {
            openid: id.to_string(),
            before: value.parse().ok()?,
        }),
        _ => None,
    }
}

fn field_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn field_u64(v: Option<&Value>) -> Option<u64> {
    field_string(v)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_keys_name_their_revocation() {
        assert_eq!(
            legacy("revoked-jti:abc", "1"),
            Some(Revocation::Token("abc".into()))
        );
        assert_eq!(
            legacy("revoked-fam:f1", "1"),
            Some(Revocation::Family("f1".into()))
        );
        assert_eq!(
            legacy("revoked-sub:o1", "1700000000000"),
            Some(Revocation::Subject {
                openid: "o1".into(),
                before: 1_700_000_000_000
            })
        );
        assert_eq!(legacy("revoked-sub:o1", "x"), None);
        assert_eq!(legacy("session:o1", "1"), None);
    }

    #[test]
    fn stream_positions_order_as_redis_orders_ids() {
        let p = |s| StreamPos::parse(s).unwrap();
        assert!(p("1700000000000-0") < p("1700000000000-1"));
        assert!(p("1700000000000-9") < p("1700000000001-0"));
        assert!(p("0-0") < p("1-0"));
        assert_eq!(StreamPos::parse("nope"), None);
    }

    #[test]
    fn the_pace_is_a_quarter_of_max_staleness_within_bounds() {
        assert_eq!(
            pace(Duration::from_millis(1500)),
            Duration::from_millis(250)
        );
        assert_eq!(pace(Duration::from_millis(400)), Duration::from_millis(100));
        assert_eq!(pace(Duration::from_millis(100)), Duration::from_millis(25));
        assert_eq!(pace(Duration::from_secs(60)), Duration::from_millis(250));
    }

    #[test]
    fn stream_fields_are_read_whatever_their_type() {
        assert_eq!(
            field_u64(Some(&Value::BulkString(b"12".to_vec()))),
            Some(12)
        );
        assert_eq!(field_u64(Some(&Value::Int(7))), Some(7));
        assert_eq!(field_u64(Some(&Value::Nil)), None);
        assert_eq!(field_u64(None), None);
    }
}
