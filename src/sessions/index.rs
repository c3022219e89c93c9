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

use super::{short, Sessions};
use crate::clock::{random_id, unix_now_ms};
use crate::error::ApiError;
use crate::store::{Device, EndReason, RevocationCheck, SessionEntry};
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
    pub ip: Option<String>,
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
    ) -> Result<Grant, ApiError> {
        let family = random_id();
        let grant = self
            .issue_pair(openid, unionid, appid, Some(&family), user)
            .await?;
        let now = unix_now_ms();
        let entry = SessionEntry {
            id: family,
            appid: appid.map(str::to_string),
            created_ms: now,
            refreshed_ms: now,
            ip: meta.ip.map(|ip| ip.to_string()),
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
        Ok(grant)
    }

    /// A refresh of `family`: its entry says when.
    pub(super) async fn refreshed(&self, openid: &str, family: &str) {
        let at = unix_now_ms();
        if let Err(e) = self
            .store
            .touch_session(openid, family, at, self.index_ttl())
            .await
        {
            tracing::debug!(error = %e, "cannot record a session's refresh");
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
            .await
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
            tracing::info!(session = %short(id), reason = reason.as_str(), "session ended");
        }
        self.store.remove_sessions(openid, ids).await?;
        Ok(())
    }

    /// The index's entries still alive: refreshed within `refresh_ttl` and
    /// not revoked. The others are dropped from the index.
    async fn live(&self, openid: &str) -> Result<Vec<SessionEntry>, ApiError> {
        let now = unix_now_ms();
        let ttl_ms = u64::try_from(self.refresh_ttl.as_millis()).unwrap_or(u64::MAX);
        let mut live = Vec::new();
        let mut gone = Vec::new();
        for e in self.store.list_sessions(openid).await? {
            let check = RevocationCheck {
                jti: None,
                openid,
                family: Some(&e.id),
                issued_ms: e.refreshed_ms,
            };
            let expired = e.refreshed_ms.saturating_add(ttl_ms) <= now;
            if expired || self.store.is_revoked(&check).await? {
                gone.push(e.id);
            } else {
                live.push(e);
            }
        }
        if !gone.is_empty() {
            self.store.remove_sessions(openid, &gone).await?;
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
