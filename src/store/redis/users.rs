//! What the admin API keeps per user: bans (`ban:<openid>`, JSON; the one
//! kind of key without a TTL when a ban has no end) and the login hook's
//! `uid` linked to the openids it was given to (`uid:<uid>`, a set living
//! as long as the sessions' index).

use std::time::Duration;

use redis::AsyncCommands;

use super::{json, millis, parse, RedisStore};
use crate::store::error::StoreError;
use crate::store::records::{Ban, MAX_UID_OPENIDS};

impl RedisStore {
    pub(super) async fn put_ban_key(
        &self,
        openid: &str,
        ban: &Ban,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let key = self.key("ban", openid);
        let value = json(ban)?;
        match ttl {
            Some(ttl) => {
                self.call(c.pset_ex::<_, _, ()>(key, value, millis(ttl)))
                    .await
            }
            // Until unbanned: the one kind of key without a TTL.
            None => self.call(c.set::<_, _, ()>(key, value)).await,
        }
    }

    pub(super) async fn ban_key(&self, openid: &str) -> Result<Option<Ban>, StoreError> {
        let mut c = self.conn.clone();
        let v: Option<String> = self.call(c.get(self.key("ban", openid))).await?;
        v.as_deref().map(parse).transpose()
    }

    pub(super) async fn remove_ban_key(&self, openid: &str) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let n: i64 = self.call(c.del(self.key("ban", openid))).await?;
        Ok(n > 0)
    }

    pub(super) async fn link_uid_key(
        &self,
        uid: &str,
        openid: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let key = self.key("uid", uid);
        let mut c = self.conn.clone();
        let (n,): (usize,) = self
            .call(
                redis::pipe()
                    .atomic()
                    .sadd(&key, openid)
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&key)
                    .arg(millis(ttl))
                    .ignore()
                    .scard(&key)
                    .query_async(&mut c),
            )
            .await?;
        if n > MAX_UID_OPENIDS {
            // A uid handed to more openids than apps could explain: back
            // within the bound, this openid kept (which others stay does
            // not matter for a lookup).
            let extra = n.saturating_sub(MAX_UID_OPENIDS).saturating_add(1);
            let _: () = self
                .call(
                    redis::pipe()
                        .atomic()
                        .cmd("SPOP")
                        .arg(&key)
                        .arg(extra)
                        .ignore()
                        .sadd(&key, openid)
                        .ignore()
                        .query_async(&mut c),
                )
                .await?;
        }
        Ok(())
    }

    pub(super) async fn uid_key(&self, uid: &str) -> Result<Vec<String>, StoreError> {
        let mut c = self.conn.clone();
        let mut openids: Vec<String> = self.call(c.smembers(self.key("uid", uid))).await?;
        openids.sort();
        Ok(openids)
    }
}
