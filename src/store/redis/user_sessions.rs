//! Each user's sessions: one hash per user (one key, so any topology holds
//! it whole), a field per session with its entry as JSON, and a field
//! `<id>:r` with the time of its last refresh (written alone on a refresh).

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use super::{json, millis, parse, RedisStore};
use crate::store::error::StoreError;
use crate::store::records::SessionEntry;

const USER_SESSIONS: &str = "user-sessions";

/// Record a refresh of session ARGV[1]: `<refreshed_ms>,<issued_ms>` (ARGV[2])
/// in its `:r` field, its entry (ARGV[4], JSON) first if the index lacks
/// it; the index then lives ARGV[3] ms.
static TOUCH: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then \
           redis.call('HSET', KEYS[1], ARGV[1], ARGV[4]) \
         end \
         redis.call('HSET', KEYS[1], ARGV[1] .. ':r', ARGV[2]) \
         redis.call('PEXPIRE', KEYS[1], ARGV[3]) \
         return 1",
    )
});

impl RedisStore {
    pub(super) async fn add_user_session(
        &self,
        openid: &str,
        entry: &SessionEntry,
        ttl: Duration,
    ) -> Result<usize, StoreError> {
        let key = self.key(USER_SESSIONS, openid);
        let mut c = self.conn.clone();
        let (n,): (usize,) = self
            .call(
                redis::pipe()
                    .atomic()
                    .hset(&key, &entry.id, json(entry)?)
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&key)
                    .arg(millis(ttl))
                    .ignore()
                    .cmd("HLEN")
                    .arg(&key)
                    .query_async(&mut c),
            )
            .await?;
        // Sessions once refreshed have two fields: count the entries.
        Ok(n)
    }

    pub(super) async fn touch_user_session(
        &self,
        openid: &str,
        entry: &SessionEntry,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: i64 = self
            .call(
                TOUCH
                    .key(self.key(USER_SESSIONS, openid))
                    .arg(&entry.id)
                    .arg(format!("{},{}", entry.refreshed_ms, entry.issued_ms))
                    .arg(millis(ttl))
                    .arg(json(entry)?)
                    .invoke_async(&mut c),
            )
            .await?;
        Ok(())
    }

    pub(super) async fn user_sessions(
        &self,
        openid: &str,
    ) -> Result<Vec<SessionEntry>, StoreError> {
        let mut c = self.conn.clone();
        let fields: HashMap<String, String> = self
            .call(
                redis::cmd("HGETALL")
                    .arg(self.key(USER_SESSIONS, openid))
                    .query_async(&mut c),
            )
            .await?;
        let mut out = Vec::new();
        for (field, value) in &fields {
            if field.ends_with(":r") {
                continue;
            }
            let mut entry: SessionEntry = parse(value)?;
            if let Some(r) = fields.get(&format!("{field}:r")) {
                let (at, issued) = r.split_once(',').unwrap_or((r, "0"));
                let at = at.parse::<u64>().unwrap_or(0);
                let issued = issued.parse::<u64>().unwrap_or(0);
                entry.refreshed_ms = entry.refreshed_ms.max(at);
                entry.issued_ms = entry.issued_ms.max(issued);
            }
            out.push(entry);
        }
        out.sort_by_key(|e| e.created_ms);
        Ok(out)
    }

    pub(super) async fn remove_user_sessions(
        &self,
        openid: &str,
        ids: &[String],
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("HDEL");
        cmd.arg(self.key(USER_SESSIONS, openid));
        for id in ids {
            cmd.arg(id).arg(format!("{id}:r"));
        }
        let mut c = self.conn.clone();
        self.call(cmd.query_async::<i64>(&mut c)).await.map(|_| ())
    }
}
