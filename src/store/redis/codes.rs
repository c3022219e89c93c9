//! Login codes: one key per code, the claim (empty) until the sealed
//! outcome replaces it, so that a login reads and claims its code in one
//! round trip and leaves one key behind, not two.

use std::sync::LazyLock;
use std::time::Duration;

use redis::AsyncCommands;

use super::{millis, secs, RedisStore};
use crate::store::error::StoreError;
use crate::store::records::CodeClaim;

/// The key kind of a login code (`code` and `code-claim` before: a version
/// before this one does not see these, so a code sent to both during a
/// rolling upgrade may be exchanged twice, the second time refused by WeChat).
const LOGIN_CODE: &str = "login-code";

/// Claim a code whose outcome is still ARGV[1], for ARGV[2] ms (0: drop
/// the entry instead: a claim, ARGV[1] empty, given up).
static TAKE_OVER: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then \
           if tonumber(ARGV[2]) == 0 then redis.call('DEL', KEYS[1]) return 1 end \
           redis.call('SET', KEYS[1], '', 'PX', ARGV[2]) return 1 \
         end return 0",
    )
});

impl RedisStore {
    /// `SET key "" NX GET PX ttl` (Redis 7): claimed, held, or the outcome.
    pub(super) async fn claim(&self, id: &str, ttl: Duration) -> Result<CodeClaim, StoreError> {
        let mut c = self.conn.clone();
        let found: Option<String> = self
            .call(
                redis::cmd("SET")
                    .arg(self.key(LOGIN_CODE, id))
                    .arg("")
                    .arg("NX")
                    .arg("GET")
                    .arg("PX")
                    .arg(millis(ttl))
                    .query_async(&mut c),
            )
            .await?;
        Ok(match found {
            None => CodeClaim::Claimed,
            Some(v) if v.is_empty() => CodeClaim::Pending,
            Some(v) => CodeClaim::Outcome(v),
        })
    }

    pub(super) async fn take_over(
        &self,
        id: &str,
        seen: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let n: i64 = self
            .call(
                TAKE_OVER
                    .key(self.key(LOGIN_CODE, id))
                    .arg(seen)
                    .arg(millis(ttl))
                    .invoke_async(&mut c),
            )
            .await?;
        Ok(n == 1)
    }

    /// Drop a claim (never an outcome another request saved meanwhile).
    pub(super) async fn release(&self, id: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        self.call(
            TAKE_OVER
                .key(self.key(LOGIN_CODE, id))
                .arg("")
                .arg(0)
                .invoke_async::<i64>(&mut c),
        )
        .await
        .map(|_| ())
    }

    pub(super) async fn put_outcome(
        &self,
        id: &str,
        sealed: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        self.call(c.set_ex::<_, _, ()>(self.key(LOGIN_CODE, id), sealed, secs(ttl)))
            .await
    }

    /// The outcome saved for a code (a claim alone is none).
    pub(super) async fn outcome(&self, id: &str) -> Result<Option<String>, StoreError> {
        let mut c = self.conn.clone();
        let v: Option<String> = self.call(c.get(self.key(LOGIN_CODE, id))).await?;
        Ok(v.filter(|v| !v.is_empty()))
    }
}
