//! What the admin API does to a user, over the store: their sessions in
//! every app, ending one or all of them, and bans.
//!
//! A ban ends every session of the user at once: each indexed session with
//! the reason `banned` (its client is told), then everything of the openid
//! issued until now, as a logout of everything does (tokens from `wxgate
//! token issue` included). While it holds, a login stops as soon as WeChat
//! has named the openid (`LoginService`), before the login hook is asked and
//! before any token exists.

use std::time::Duration;

use super::Sessions;
use crate::error::ApiError;
use crate::store::{Ban, EndReason, SessionEntry};

/// Longest reason an operator may give a ban, in characters.
pub(crate) const MAX_BAN_REASON: usize = 256;

impl Sessions {
    /// Every live session of `openid`, in all apps, oldest first.
    pub async fn sessions_of(&self, openid: &str) -> Result<Vec<SessionEntry>, ApiError> {
        let mut live = self.live(openid).await?;
        live.sort_by_key(|e| e.created_ms);
        Ok(live)
    }

    /// The openids the login hook gave `uid` to (one per app, usually), and
    /// the live sessions of each, oldest first.
    pub async fn sessions_of_uid(
        &self,
        uid: &str,
    ) -> Result<(Vec<String>, Vec<(String, SessionEntry)>), ApiError> {
        let openids = self.store.uid_openids(uid).await?;
        let mut all = Vec::new();
        for openid in &openids {
            for e in self.live(openid).await? {
                all.push((openid.clone(), e));
            }
        }
        all.sort_by_key(|(_, e)| e.created_ms);
        Ok((openids, all))
    }

    /// End session `id` of `openid` (`None`: all of them), reason `admin`.
    /// Returns the ids ended; `session_not_found` for an unknown id.
    pub async fn end_for_admin(
        &self,
        openid: &str,
        id: Option<&str>,
    ) -> Result<Vec<String>, ApiError> {
        let ids: Vec<String> = self
            .live(openid)
            .await?
            .into_iter()
            .map(|e| e.id)
            .filter(|e| id.is_none_or(|id| id == e))
            .collect();
        if id.is_some() && ids.is_empty() {
            return Err(ApiError::SessionNotFound);
        }
        self.end_families(openid, &ids, EndReason::Admin).await?;
        if id.is_none() {
            // Sessions the index does not hold (opened by a version before
            // it, and not refreshed since) end too.
            self.revoke_subject(openid).await?;
        }
        Ok(ids)
    }

    /// Ban `openid` for `duration` (`None`: until unbanned), ending every
    /// session of theirs. Returns the ban and how many indexed sessions ended.
    pub async fn ban(
        &self,
        openid: &str,
        duration: Option<Duration>,
        reason: Option<String>,
    ) -> Result<(Ban, usize), ApiError> {
        let now = self.clock.now_ms();
        let until_ms =
            duration.map(|d| now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)));
        let ban = Ban {
            at_ms: now,
            until_ms,
            reason,
        };
        // The ban first: a login racing with it is refused from here on.
        self.store.put_ban(openid, &ban, duration).await?;
        let ids: Vec<String> = self.live(openid).await?.into_iter().map(|e| e.id).collect();
        self.end_families(openid, &ids, EndReason::Banned).await?;
        // Anything else of this openid: tokens outside the index too.
        self.revoke_subject(openid).await?;
        Ok((ban, ids.len()))
    }

    /// Lift the ban of `openid`; `false` if there was none in force.
    pub async fn unban(&self, openid: &str) -> Result<bool, ApiError> {
        Ok(self.store.remove_ban(openid).await?)
    }

    /// The ban in force on `openid`, if any.
    pub async fn ban_of(&self, openid: &str) -> Result<Option<Ban>, ApiError> {
        let now = self.clock.now_ms();
        Ok(self.store.get_ban(openid).await?.filter(|b| b.holds(now)))
    }

    /// Refuse a login of a banned user (403 `user_banned`).
    pub async fn refuse_banned(&self, openid: &str) -> Result<(), ApiError> {
        match self.ban_of(openid).await? {
            Some(_) => Err(ApiError::UserBanned),
            None => Ok(()),
        }
    }
}
