//! Refresh tokens: taking one for rotation (marked pending, so that a
//! second presentation is told apart as reuse), and looking at one.

use std::time::Duration;

use super::{parse, secs, RedisStore};
use crate::store::error::StoreError;
use crate::store::records::{RefreshRecord, RefreshTake};

impl RedisStore {
    pub(super) async fn take(&self, hash: &str, ttl: Duration) -> Result<RefreshTake, StoreError> {
        self.adopt_legacy_refresh(hash).await?;
        let used = self.keys.refresh_used(hash);
        let now = crate::clock::unix_now_ms();
        // Unique per presentation: two takes in the same millisecond must not
        // both recognise the mark as their own.
        let mine = format!("pending:{now}:{:016x}", rand::random::<u64>());
        let mut c = self.conn.clone();
        let (record, state): (Option<String>, Option<String>) = self
            .call(
                redis::pipe()
                    .atomic()
                    .get(self.keys.refresh(hash))
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

    pub(super) async fn look(&self, hash: &str) -> Result<RefreshTake, StoreError> {
        self.adopt_legacy_refresh(hash).await?;
        let mut c = self.conn.clone();
        let (raw, state): (Option<String>, Option<String>) = self
            .call(
                redis::pipe()
                    .get(self.keys.refresh(hash))
                    .get(self.keys.refresh_used(hash))
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
}

/// Whether a presentation may rotate: it marked the token itself, or the
/// rotation it found pending was abandoned (older than one store timeout: the
/// call that started it has failed by now, e.g. a take that timed out and was
/// carried out by Redis later). A concurrent presentation of a token being
/// rotated right now is reuse.
pub(super) fn refresh_is_fresh(
    state: Option<&str>,
    mine: &str,
    now_ms: u64,
    timeout: Duration,
) -> bool {
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
