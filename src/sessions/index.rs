//! Sessions a user can see and end: each login (a refresh family) is
//! recorded in its user's index with when it began, when it was last
//! refreshed, the client's address and the device label the login sent.
//!
//! The index only makes sessions visible; what ends one is what ended it
//! before: its family revoked (every instance refuses its tokens at once,
//! its refresh token dies, its sockets close). An entry whose family is
//! revoked, or whose refresh token has expired, is dropped when the index
//! is next read.

use std::net::IpAddr;

use serde::Serialize;

use super::policy::{OnLimit, SessionPolicy};
use super::{short, Sessions};
use crate::audit::EndedBy;
use crate::clock::{random_id, unix_now_ms};
use crate::error::ApiError;
use crate::store::{Device, EndReason, RefreshRecord, RevocationCheck, SessionEntry};
use crate::token::{Identity, UserClaims};

use super::Grant;

/// Most sessions one user's index holds. Past it the oldest session is
/// ended: a bound on what one user can make the store hold.
pub(crate) const MAX_SESSIONS_PER_USER: usize = 100;

/// What a login says of itself, for its session's entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LoginMeta {
    pub ip: Option<IpAddr>,
    pub device: Option<Device>,
}

/// One session as `GET /wx/sessions` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct SessionView {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    /// Unix milliseconds.
    pub created_at: u64,
    /// Unix milliseconds of the last refresh (the login's, before one).
    pub refreshed_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    /// The session of the token that asked.
    pub current: bool,
}

impl Sessions {
    /// A login's token pair, its session (a new refresh family) recorded in
    /// the user's index.
    pub(crate) async fn open(
        &self,
        openid: &str,
        unionid: Option<&str>,
        appid: Option<&str>,
        user: &UserClaims,
        meta: &LoginMeta,
        replaced: &[String],
    ) -> Result<Grant, ApiError> {
        let family = random_id();
        let grant = self
            .issue_pair(openid, unionid, appid, Some(&family), user)
            .await?;
        if !replaced.is_empty() {
            self.end_families(openid, replaced, EndReason::Replaced)
                .await?;
        }
        let now = self.clock.now_ms();
        let entry = SessionEntry {
            id: family,
            appid: appid.map(str::to_string),
            created_ms: now,
            refreshed_ms: now,
            issued_ms: unix_now_ms(),
            ip: meta.ip,
            device: meta.device.clone(),
        };
        let held = self
            .store
            .add_session(openid, &entry, self.index_ttl())
            .await?;
        // Refreshed sessions have two fields in Redis: the count is an upper bound.
        if held > MAX_SESSIONS_PER_USER {
            self.keep_newest(openid).await?;
        }
        // The admin API finds the user by the backend's own id too (a
        // failed link costs only that lookup: the login goes on).
        if let Some(uid) = &user.uid {
            if let Err(e) = self.store.link_uid(uid, openid, self.index_ttl()).await {
                tracing::warn!(error = %e, "cannot link a login hook uid to its user");
            }
        }
        // A ban that came while this login was under way (after its first
        // check, say while the login hook answered) may have missed this
        // session, and its tokens may postdate the ban's revocation: look
        // again now that the index holds it.
        if self.ban_of(openid).await?.is_some() {
            self.end_families(openid, std::slice::from_ref(&entry.id), EndReason::Banned)
                .await?;
            return Err(ApiError::UserBanned);
        }
        if let Some(a) = &self.audit {
            a.login(openid, appid, &entry.id, meta.ip);
        }
        Ok(grant)
    }

    /// The sessions a new login of `openid` in `appid` ends under the app's
    /// rules: the others on its device platform (`one_per_platform`), then
    /// the oldest past `max_per_user`; or 403 `session_limit` (`refuse_new`).
    /// Asked before the login hook and before anything is issued; the
    /// sessions are ended by [`Sessions::open`], once the new one exists.
    /// Two logins of one user at the same moment may both pass: the bound
    /// holds again from the next login.
    pub(crate) async fn make_room(
        &self,
        openid: &str,
        appid: Option<&str>,
        meta: &LoginMeta,
    ) -> Result<Vec<String>, ApiError> {
        let policy = self.policies.of(appid);
        if !policy.bounds_logins() {
            return Ok(Vec::new());
        }
        let mut live: Vec<SessionEntry> = self
            .live(openid)
            .await?
            .into_iter()
            .filter(|e| e.appid.as_deref() == appid)
            .collect();
        let mut ended = Vec::new();
        let platform = meta.device.as_ref().and_then(|d| d.platform.as_deref());
        if let (true, Some(platform)) = (policy.one_per_platform, platform) {
            let same = |e: &SessionEntry| {
                e.device.as_ref().and_then(|d| d.platform.as_deref()) == Some(platform)
            };
            ended.extend(live.iter().filter(|e| same(e)).map(|e| e.id.clone()));
            live.retain(|e| !same(e));
        }
        if let Some(max) = policy.max_per_user {
            // Room for the new one: at most `max - 1` may stay.
            if let Some(excess) = live.len().checked_sub(max.saturating_sub(1)) {
                if excess > 0 {
                    if policy.on_limit == OnLimit::RefuseNew {
                        return Err(ApiError::SessionLimit);
                    }
                    live.sort_by_key(|e| e.created_ms);
                    ended.extend(live.iter().take(excess).map(|e| e.id.clone()));
                }
            }
        }
        Ok(ended)
    }

    /// A refresh within the app's `idle_timeout` and `max_lifetime`; past
    /// either the session ends, and its client hears why.
    pub(super) async fn within_lifetimes(&self, record: &RefreshRecord) -> Result<(), ApiError> {
        let policy = self.policies.of(record.appid.as_deref());
        let now = self.clock.now_ms();
        let refreshed = match record.refreshed_ms {
            0 => record.issued_ms,
            t => t,
        };
        let Some(reason) = past_lifetime(policy, record.created_ms, refreshed, now) else {
            return Ok(());
        };
        self.end_families(&record.openid, std::slice::from_ref(&record.family), reason)
            .await?;
        Err(ApiError::SessionEnded {
            reason: reason.as_str(),
        })
    }

    /// A refresh of `family`: its entry says when.
    pub(super) async fn refreshed(&self, record: &RefreshRecord, since: u64) {
        let at = self.clock.now_ms();
        // A session opened by a version before the index joins it here.
        let entry = SessionEntry {
            id: record.family.clone(),
            appid: record.appid.clone(),
            created_ms: since,
            refreshed_ms: at,
            issued_ms: unix_now_ms(),
            ip: None,
            device: None,
        };
        if let Err(e) = self
            .store
            .touch_session(&record.openid, &entry, self.index_ttl())
            .await
        {
            tracing::warn!(error = %e, session = %short(&record.family), "cannot record a session's refresh in its user's index");
        }
        if let Some(uid) = &record.user.uid {
            if let Err(e) = self
                .store
                .link_uid(uid, &record.openid, self.index_ttl())
                .await
            {
                tracing::warn!(error = %e, "cannot renew the link of a login hook uid to its user");
            }
        }
    }

    /// The live sessions of the caller's user in the caller's app, oldest
    /// first; ended ones leave the index on the way.
    pub(crate) async fn list(&self, caller: &Identity) -> Result<Vec<SessionView>, ApiError> {
        let live = self.live(&caller.openid).await?;
        Ok(live
            .into_iter()
            .filter(|e| e.appid == caller.appid)
            .map(|e| SessionView {
                current: caller.family.as_deref() == Some(e.id.as_str()),
                id: e.id,
                appid: e.appid,
                created_at: e.created_ms,
                refreshed_at: e.refreshed_ms,
                ip: e.ip,
                device: e.device,
            })
            .collect())
    }

    /// End one of the caller's sessions. Another user's session, or one of
    /// another app, is not found (404), never forbidden: nothing tells
    /// whether it exists.
    pub(crate) async fn end(&self, caller: &Identity, id: &str) -> Result<(), ApiError> {
        let found = self
            .live(&caller.openid)
            .await?
            .into_iter()
            .any(|e| e.id == id && e.appid == caller.appid);
        if !found {
            return Err(ApiError::SessionNotFound);
        }
        self.end_families(&caller.openid, &[id.to_string()], EndReason::Ended)
            .await
    }

    /// End every session of the caller's user in the caller's app but the
    /// caller's own.
    pub(crate) async fn end_others(&self, caller: &Identity) -> Result<(), ApiError> {
        let others: Vec<String> = self
            .live(&caller.openid)
            .await?
            .into_iter()
            .filter(|e| e.appid == caller.appid && caller.family.as_deref() != Some(&e.id))
            .map(|e| e.id)
            .collect();
        self.end_families(&caller.openid, &others, EndReason::Ended)
            .await?;
        if let Some(a) = &self.audit {
            a.logout(&caller.openid, caller.family.as_deref(), "others");
        }
        Ok(())
    }

    /// End each session (its family refused at once everywhere, with
    /// `reason` for its client), then drop the entries.
    pub(crate) async fn end_families(
        &self,
        openid: &str,
        ids: &[String],
        reason: EndReason,
    ) -> Result<(), ApiError> {
        for id in ids {
            self.store
                .end_family(id, reason, self.family_revocation_ttl())
                .await?;
            if let Some(a) = &self.audit {
                a.session_ended(openid, id, EndedBy::Reason(reason));
            }
            if let Some(m) = &self.metrics {
                m.session_ended(reason.as_str());
            }
        }
        self.store.remove_sessions(openid, ids).await?;
        Ok(())
    }

    /// The index's entries still alive: refreshed within `refresh_ttl` and
    /// not revoked. The others are dropped from the index.
    pub(super) async fn live(&self, openid: &str) -> Result<Vec<SessionEntry>, ApiError> {
        let now = self.clock.now_ms();
        let ttl_ms = u64::try_from(self.refresh_ttl.as_millis()).unwrap_or(u64::MAX);
        let mut live = Vec::new();
        let mut gone = Vec::new();
        let mut overdue: Vec<(String, EndReason)> = Vec::new();
        for e in self.store.list_sessions(openid).await? {
            // Revocations are compared with the system clock's issue time.
            let issued_ms = match e.issued_ms {
                0 => e.refreshed_ms,
                t => t,
            };
            let check = RevocationCheck {
                jti: None,
                openid,
                family: Some(&e.id),
                issued_ms,
            };
            let expired = e.refreshed_ms.saturating_add(ttl_ms) <= now;
            if expired || self.store.is_revoked(&check).await? {
                gone.push(e.id);
                continue;
            }
            let policy = self.policies.of(e.appid.as_deref());
            match past_lifetime(policy, e.created_ms, e.refreshed_ms, now) {
                Some(reason) => overdue.push((e.id, reason)),
                None => live.push(e),
            }
        }
        if !gone.is_empty() {
            self.store.remove_sessions(openid, &gone).await?;
        }
        // Past the app's lifetimes: ended now rather than at their next refresh.
        for (id, reason) in overdue {
            self.end_families(openid, &[id], reason).await?;
        }
        Ok(live)
    }

    /// Past [`MAX_SESSIONS_PER_USER`], end the oldest sessions.
    async fn keep_newest(&self, openid: &str) -> Result<(), ApiError> {
        let mut live = self.live(openid).await?;
        let Some(excess) = live.len().checked_sub(MAX_SESSIONS_PER_USER) else {
            return Ok(());
        };
        live.sort_by_key(|e| e.created_ms);
        let oldest: Vec<String> = live.into_iter().take(excess).map(|e| e.id).collect();
        self.end_families(openid, &oldest, EndReason::Replaced)
            .await
    }

    /// The index lives as long as its longest-lived session can.
    fn index_ttl(&self) -> std::time::Duration {
        self.refresh_ttl
    }
}

/// Which of `policy`'s lifetimes a session begun at `created_ms` and last
/// refreshed at `refreshed_ms` is past at `now` (unix ms). A session of a
/// version before lifetimes (`created_ms` 0) has no known beginning.
fn past_lifetime(
    policy: &SessionPolicy,
    created_ms: u64,
    refreshed_ms: u64,
    now: u64,
) -> Option<EndReason> {
    let over = |since: u64, limit: Option<std::time::Duration>| {
        limit.is_some_and(|d| {
            let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            since > 0 && now.saturating_sub(since) > ms
        })
    };
    if over(created_ms, policy.max_lifetime) {
        Some(EndReason::Lifetime)
    } else if over(refreshed_ms, policy.idle_timeout) {
        Some(EndReason::Idle)
    } else {
        None
    }
}
