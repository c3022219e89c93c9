//! Each user's sessions: one hash per user (one key, so any topology holds
//! it whole), a field per session with its entry as JSON, and a field
//! `<id>:r` with the time of its last refresh (written alone on a refresh).
//! The same hash keeps the user's WeChat session (`session_key`): field
//! [`WX_SESSION`] with its JSON and [`WX_SESSION_UNTIL`] with its end (unix
//! ms, checked on read), so that a new user costs one key, not two. The
//! hash lives as long as the longer of the two (`PEXPIRE NX`, then `GT`).
//! A session an earlier version wrote under `session:<openid>` is still read.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use redis::AsyncCommands;

use super::{json, millis, parse, RedisStore};
use crate::clock::unix_now_ms;
use crate::store::error::StoreError;
use crate::store::records::{SessionEntry, WxSession};

const USER_SESSIONS: &str = "user-sessions";

/// The field holding the user's WeChat session; `~` is no session id's.
const WX_SESSION: &str = "~wx";
/// The field holding when it ends (unix ms).
const WX_SESSION_UNTIL: &str = "~wx:until";

/// Record a refresh of session ARGV[1]: `<refreshed_ms>,<issued_ms>` (ARGV[2])
/// in its `:r` field, its entry (ARGV[4], JSON) first if the index lacks
/// it; the index then lives at least ARGV[3] ms (as [`lengthen`]).
static TOUCH: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then \
           redis.call('HSET', KEYS[1], ARGV[1], ARGV[4]) \
         end \
         redis.call('HSET', KEYS[1], ARGV[1] .. ':r', ARGV[2]) \
         redis.call('PEXPIRE', KEYS[1], ARGV[3], 'NX') \
         redis.call('PEXPIRE', KEYS[1], ARGV[3], 'GT') \
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
        let mut pipe = redis::pipe();
        pipe.atomic().hset(&key, &entry.id, json(entry)?).ignore();
        lengthen(&mut pipe, &key, ttl);
        let (n,): (usize,) = self
            .call(pipe.cmd("HLEN").arg(&key).query_async(&mut c))
            .await?;
        // Fields, not sessions (a refreshed one has two, the WeChat session
        // two more): an upper bound of the sessions held.
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
            if field.ends_with(":r") || field.starts_with('~') {
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

    /// Save the WeChat session of `openid` for `ttl`, in the user's hash.
    pub(super) async fn put_wx_session(
        &self,
        openid: &str,
        session: &WxSession,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let key = self.key(USER_SESSIONS, openid);
        let until = unix_now_ms().saturating_add(millis(ttl));
        let mut c = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_multiple(
                &key,
                &[
                    (WX_SESSION, json(session)?),
                    (WX_SESSION_UNTIL, until.to_string()),
                ],
            )
            .ignore();
        lengthen(&mut pipe, &key, ttl);
        self.call(pipe.query_async::<()>(&mut c)).await
    }

    /// The WeChat session of `openid`, unless it ended; one an earlier
    /// version wrote (`session:<openid>`) when the hash holds none.
    pub(super) async fn wx_session(&self, openid: &str) -> Result<Option<WxSession>, StoreError> {
        let key = self.key(USER_SESSIONS, openid);
        let mut c = self.conn.clone();
        let (value, until): (Option<String>, Option<u64>) = self
            .call(
                redis::cmd("HMGET")
                    .arg(&key)
                    .arg(WX_SESSION)
                    .arg(WX_SESSION_UNTIL)
                    .query_async(&mut c),
            )
            .await?;
        match value {
            Some(v) if until.is_some_and(|u| u > unix_now_ms()) => parse(&v).map(Some),
            Some(_) => {
                // Ended: its key leaves the store now rather than with the hash.
                let _: Result<i64, _> = self
                    .call(
                        redis::cmd("HDEL")
                            .arg(&key)
                            .arg(WX_SESSION)
                            .arg(WX_SESSION_UNTIL)
                            .query_async(&mut c),
                    )
                    .await;
                Ok(None)
            }
            None => {
                let v: Option<String> = self.call(c.get(self.key("session", openid))).await?;
                v.as_deref().map(parse).transpose()
            }
        }
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

/// Add to `pipe` what makes `key` live at least `ttl` from now, never less
/// than it already does: `PEXPIRE NX` gives a fresh key its time, `PEXPIRE
/// GT` lengthens a shorter one (the hash serves the session index and the
/// WeChat session, whichever lives longer).
fn lengthen(pipe: &mut redis::Pipeline, key: &str, ttl: Duration) {
    for option in ["NX", "GT"] {
        pipe.cmd("PEXPIRE")
            .arg(key)
            .arg(millis(ttl))
            .arg(option)
            .ignore();
    }
}
