//! Key names and the scripts that write several keys at once.
//!
//! Keys that one script or transaction touches carry one hash tag, so they
//! sit in one Redis Cluster slot and nothing fails with `CROSSSLOT`:
//!
//! | what | keys | tag |
//! |---|---|---|
//! | a refresh token and its rotation state | `refresh:{r:<hash>}`, `refresh-used:{r:<hash>}` | `{r:<hash>}` |
//! | every revocation: the index of live ones, the sequence, the feed | `{rev}:live`, `{rev}:seq`, `{rev}:feed` | `{rev}` |
//!
//! Every other key is used alone (one command). The prefix may not hold
//! braces (the config refuses them), so it never changes a tag.

use std::sync::LazyLock;

/// Names the store's keys under one prefix.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    /// `<prefix><kind>:<id>`: a key used alone.
    pub(super) fn plain(&self, kind: &str, id: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + kind.len() + id.len() + 1);
        k.push_str(&self.prefix);
        k.push_str(kind);
        k.push(':');
        k.push_str(id);
        k
    }

    /// A refresh token's record.
    pub(super) fn refresh(&self, hash: &str) -> String {
        format!("{}refresh:{{r:{hash}}}", self.prefix)
    }

    /// A refresh token's rotation state (same slot as its record).
    pub(super) fn refresh_used(&self, hash: &str) -> String {
        format!("{}refresh-used:{{r:{hash}}}", self.prefix)
    }

    /// Where a version before hash tags kept a refresh token's record and state.
    pub(super) fn legacy_refresh(&self, hash: &str) -> (String, String) {
        (
            self.plain("refresh", hash),
            self.plain("refresh-used", hash),
        )
    }

    /// The index of live revocations: member → expiry (unix ms) as score.
    pub(super) fn live(&self) -> String {
        format!("{}{{rev}}:live", self.prefix)
    }

    /// The number of the last revocation written.
    pub(super) fn seq(&self) -> String {
        format!("{}{{rev}}:seq", self.prefix)
    }

    /// The stream every instance reads new revocations from.
    pub(super) fn feed(&self) -> String {
        format!("{}{{rev}}:feed", self.prefix)
    }

    /// The three revocation keys, in the order the scripts take them.
    pub(super) fn revocation_keys(&self) -> [String; 3] {
        [self.live(), self.seq(), self.feed()]
    }

    /// What a version before hash tags matched its revocations with.
    pub(super) fn legacy_revocation_pattern(&self) -> String {
        format!("{}revoked-*", glob_escape(&self.prefix))
    }

    /// The prefix's length (to take a legacy key's kind and id apart).
    pub(super) fn prefix_len(&self) -> usize {
        self.prefix.len()
    }
}

/// `s` with glob metacharacters escaped, for `SCAN MATCH`.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Entries the revocation stream keeps (about; a reader further behind loads again).
pub(super) const FEED_LENGTH: u64 = 10_000;

/// Write one revocation: drop expired entries from the index, refuse a new
/// entry when the index is at its bound, number it and append it to the
/// feed. Every key outlives the entries it holds.
///
/// An entry written again (a logout retried after a 503, or sent twice)
/// keeps its expiry, which already outlives every token it covers, and adds
/// nothing to the feed, however often it is sent: it only rewrites the
/// counter with its own value, a write that the caller's `WAIT` then counts,
/// and replicas apply writes in order, so the confirmation covers the
/// entry's first write too, whichever instance made it.
///
/// KEYS: live, seq, feed. ARGV: member, expiry (unix ms), now (unix ms),
/// the bound, the feed's length, and `1` to import (write only what the
/// index lacks). Returns the revocation's number (0: held already).
///
/// The shebang (Redis 7) makes Redis refuse the whole script up front when
/// it is at `maxmemory`, so a write is never left half done (in the index
/// but not in the feed).
pub(super) const REVOKE: &str = r"#!lua
local live, seq, feed = KEYS[1], KEYS[2], KEYS[3]
local member, expires, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', live, '-inf', now)
local current = redis.call('ZSCORE', live, member)
if current then
  local n = redis.call('GET', seq)
  if n and ARGV[6] ~= '1' then
    redis.call('SET', seq, n, 'KEEPTTL')
  end
  return 0
end
if redis.call('ZCARD', live) >= tonumber(ARGV[4]) then
  return redis.error_reply('WXFULL the live revocations are at their bound')
end
redis.call('ZADD', live, expires, member)
local n = redis.call('INCR', seq)
redis.call('XADD', feed, 'MAXLEN', '~', ARGV[5], '*', 'n', n, 'm', member, 'x', expires)
for _, k in ipairs(KEYS) do
  local ttl = redis.call('PTTL', k)
  if ttl == -1 or ttl < expires - now then
    redis.call('PEXPIREAT', k, expires)
  end
end
return n
";

/// Where the feed stands: the last revocation's number and the feed's last
/// entry id, read together. KEYS: seq, feed.
pub(super) const POSITION: &str = r"
local n = redis.call('GET', KEYS[1]) or '0'
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local id = '0-0'
if #last > 0 then id = last[1][1] end
return {n, id}
";

/// [`POSITION`] as a script (loaded once per server, then called by hash).
pub(super) static POSITION_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(POSITION));

/// Delete a lease only if its holder gives it back.
pub(super) static RELEASE_LEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end \
         return 1",
    )
});

#[cfg(test)]
mod tests {
    use super::*;
    use redis::cluster_routing::Slot;

    fn slot(key: &str) -> String {
        format!("{:?}", Slot::for_key(key))
    }

    /// Every group of keys one script or transaction touches maps to one slot.
    #[test]
    fn keys_written_together_share_a_slot() {
        for prefix in ["wxgate:", "app-1:", "x"] {
            let k = Keys::new(prefix);
            let [live, seq, feed] = k.revocation_keys();
            assert_eq!(slot(&live), slot(&seq), "{prefix}");
            assert_eq!(slot(&live), slot(&feed), "{prefix}");
            for hash in ["00ff", "a1b2c3", &"e".repeat(64)] {
                assert_eq!(slot(&k.refresh(hash)), slot(&k.refresh_used(hash)));
            }
        }
        // Different refresh tokens spread over the cluster.
        let k = Keys::new("wxgate:");
        let slots: std::collections::HashSet<String> = (0..64)
            .map(|i| slot(&k.refresh(&format!("{i:064x}"))))
            .collect();
        assert!(slots.len() > 32, "{}", slots.len());
    }

    #[test]
    fn legacy_names_are_the_untagged_ones() {
        let k = Keys::new("p:");
        assert_eq!(
            k.legacy_refresh("ab"),
            ("p:refresh:ab".to_string(), "p:refresh-used:ab".to_string())
        );
        assert_eq!(k.refresh("ab"), "p:refresh:{r:ab}");
        assert_eq!(
            Keys::new("a*b:").legacy_revocation_pattern(),
            "a\\*b:revoked-*"
        );
    }
}
