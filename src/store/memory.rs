//! The embedded store: bounded maps with expiry, one per kind of entry.
//!
//! Each kind has its own bound (`[store.memory]`) and its own policy when
//! full (see [`BoundedMap`]):
//!
//! * revocations (token ids, subjects, refresh families) are never dropped
//!   before they expire: a revocation that finds its map full of live ones
//!   fails with [`StoreError::Full`] (503 `store_full`), and nothing already
//!   stored is lost;
//! * sessions, refresh tokens and rate-limit counters make room by dropping
//!   the least recently used entry (counted, logged): a user at worst logs in
//!   again;
//! * the login-code cache is an optimisation and drops freely.
//!
//! A refresh token's record and its rotation state live in one entry, so
//! neither can be dropped without the other.

mod bounded;

use std::time::{Duration, Instant};

use async_trait::async_trait;

use std::sync::atomic::{AtomicBool, Ordering};

pub use bounded::{BoundedMap, Full, WhenFull};

use super::config::MemoryLimits;
use super::error::StoreError;
use super::interface::{MapStats, Store};
use super::records::{
    revoked_by, AccessTokenRecord, Ban, CodeClaim, EndReason, RefreshRecord, RefreshTake,
    RevocationCheck, SessionEntry, WxSession, MAX_UID_OPENIDS,
};

/// Access tokens and leases kept: a few per mini program.
const MAX_APPS: usize = 1024;

/// A refresh rotation pending this long was abandoned (its request failed).
const ABANDONED_ROTATION: Duration = Duration::from_secs(1);

/// A refresh token's record and where its rotation stands.
#[derive(Debug, Clone)]
struct RefreshEntry {
    record: RefreshRecord,
    rotation: Rotation,
}

#[derive(Debug, Clone, Copy)]
enum Rotation {
    /// Never presented.
    Unused,
    /// Presented; rotation under way since then.
    Pending(Instant),
    /// Rotated: any later presentation is reuse.
    Spent,
}

/// The in-process store (the default): one instance, lost on restart.
#[derive(Debug)]
pub struct MemoryStore {
    sessions: BoundedMap<WxSession>,
    /// Login codes: a claim (empty) until the outcome (sealed) replaces it.
    codes: BoundedMap<String>,
    revoked_jti: BoundedMap<()>,
    revoked_subject: BoundedMap<u64>,
    revoked_family: BoundedMap<()>,
    refresh: BoundedMap<RefreshEntry>,
    /// Banned users, by openid (never dropped to make room).
    bans: BoundedMap<Ban>,
    /// Why ended sessions ended, by family (the family itself is in
    /// `revoked_family`; losing a reason only makes it `token_revoked`).
    ended: BoundedMap<EndReason>,
    /// Each user's sessions, by openid.
    user_sessions: BoundedMap<Vec<SessionEntry>>,
    /// The openids each login hook `uid` was given to.
    uids: BoundedMap<Vec<String>>,
    counters: BoundedMap<u64>,
    access_tokens: BoundedMap<AccessTokenRecord>,
    leases: BoundedMap<String>,
    /// Whether anything was ever revoked: lets the per-request check skip the maps.
    any_revoked: AtomicBool,
    /// Whether anyone was ever banned: a login's ban checks skip the map.
    any_ban: AtomicBool,
    /// Bumped on every revocation: open sockets look again at once.
    revoked: tokio::sync::watch::Sender<u64>,
}

impl MemoryStore {
    /// A store with the given bounds.
    pub fn new(limits: &MemoryLimits) -> Self {
        use WhenFull::{DropLeastRecent, Refuse};
        Self {
            sessions: BoundedMap::new("sessions", limits.max_sessions, DropLeastRecent),
            codes: BoundedMap::new("login_codes", limits.max_login_codes, DropLeastRecent),
            revoked_jti: BoundedMap::new("revoked_tokens", limits.max_revocations, Refuse),
            revoked_subject: BoundedMap::new("revoked_subjects", limits.max_revocations, Refuse),
            revoked_family: BoundedMap::new("revoked_families", limits.max_revocations, Refuse),
            refresh: BoundedMap::new("refresh_tokens", limits.max_refresh_tokens, DropLeastRecent),
            user_sessions: BoundedMap::new("user_sessions", limits.max_sessions, DropLeastRecent),
            uids: BoundedMap::new("uids", limits.max_sessions, DropLeastRecent),
            ended: BoundedMap::new("ended_sessions", limits.max_revocations, DropLeastRecent),
            bans: BoundedMap::new("bans", limits.max_revocations, Refuse),
            counters: BoundedMap::new("rate_limit_counters", limits.max_counters, DropLeastRecent),
            // One per mini program; a handful.
            access_tokens: BoundedMap::new("access_tokens", MAX_APPS, DropLeastRecent),
            leases: BoundedMap::new("leases", MAX_APPS.saturating_mul(4), DropLeastRecent),
            any_revoked: AtomicBool::new(false),
            any_ban: AtomicBool::new(false),
            revoked: tokio::sync::watch::channel(0).0,
        }
    }

    /// Record a revocation; a full map refuses it and keeps what it holds.
    fn revoke<V: Clone>(
        &self,
        map: &BoundedMap<V>,
        key: &str,
        value: V,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.any_revoked.store(true, Ordering::Release);
        map.insert(key, value, ttl)
            .map_err(|Full| StoreError::Full { what: map.name() })?;
        self.revoked.send_modify(|g| *g = g.wrapping_add(1));
        Ok(())
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(&MemoryLimits::default())
    }
}

/// A full map that drops entries never refuses; should it, nothing is lost
/// but the entry itself (a cache entry, a session: the user logs in again).
fn dropped<T>(r: Result<T, Full>, what: &'static str) -> Result<T, StoreError> {
    r.map_err(|Full| StoreError::Full { what })
}

#[async_trait]
impl Store for MemoryStore {
    async fn put_session(
        &self,
        openid: &str,
        session: &WxSession,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        dropped(
            self.sessions.insert(openid, session.clone(), ttl),
            "sessions",
        )
    }

    async fn get_session(&self, openid: &str) -> Result<Option<WxSession>, StoreError> {
        Ok(self.sessions.get(openid))
    }

    async fn add_session(
        &self,
        openid: &str,
        entry: &SessionEntry,
        ttl: Duration,
    ) -> Result<usize, StoreError> {
        dropped(
            self.user_sessions.renew_then(
                openid,
                ttl,
                |old| {
                    let mut all: Vec<SessionEntry> = old
                        .map(|v| v.iter().filter(|e| e.id != entry.id).cloned().collect())
                        .unwrap_or_default();
                    all.push(entry.clone());
                    all
                },
                Vec::len,
            ),
            "user_sessions",
        )
    }

    async fn touch_session(
        &self,
        openid: &str,
        entry: &SessionEntry,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        dropped(
            self.user_sessions.renew_then(
                openid,
                ttl,
                |old| {
                    let mut all = old.cloned().unwrap_or_default();
                    match all.iter_mut().find(|e| e.id == entry.id) {
                        Some(e) => {
                            e.refreshed_ms = e.refreshed_ms.max(entry.refreshed_ms);
                            e.issued_ms = e.issued_ms.max(entry.issued_ms);
                        }
                        None => all.push(entry.clone()),
                    }
                    all
                },
                |_| (),
            ),
            "user_sessions",
        )
    }

    async fn list_sessions(&self, openid: &str) -> Result<Vec<SessionEntry>, StoreError> {
        Ok(self.user_sessions.get(openid).unwrap_or_default())
    }

    async fn remove_sessions(&self, openid: &str, ids: &[String]) -> Result<(), StoreError> {
        self.user_sessions
            .modify(openid, |all| all.retain(|e| !ids.contains(&e.id)));
        Ok(())
    }

    async fn claim_code(&self, code_hash: &str, ttl: Duration) -> Result<CodeClaim, StoreError> {
        let found = dropped(
            self.codes.get_or_insert(code_hash, String::new(), ttl),
            "login_codes",
        )?;
        Ok(match found {
            None => CodeClaim::Claimed,
            Some(v) if v.is_empty() => CodeClaim::Pending,
            Some(v) => CodeClaim::Outcome(v),
        })
    }

    async fn take_over_code(
        &self,
        code_hash: &str,
        seen: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        dropped(
            self.codes
                .replace_if(code_hash, |v| v == seen, String::new(), ttl),
            "login_codes",
        )
    }

    async fn release_code(&self, code_hash: &str) -> Result<(), StoreError> {
        // A claim only: never an outcome another request saved meanwhile.
        self.codes.remove_if(code_hash, String::is_empty);
        Ok(())
    }

    async fn put_code_outcome(
        &self,
        code_hash: &str,
        sealed: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        dropped(
            self.codes.insert(code_hash, sealed.to_string(), ttl),
            "login_codes",
        )
    }

    async fn get_code_outcome(&self, code_hash: &str) -> Result<Option<String>, StoreError> {
        Ok(self.codes.get(code_hash).filter(|v| !v.is_empty()))
    }

    async fn end_family(
        &self,
        family: &str,
        reason: EndReason,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        // The reason before the refusal: an open socket woken by the
        // revocation finds why.
        dropped(self.ended.insert(family, reason, ttl), "ended_sessions")?;
        self.revoke(&self.revoked_family, family, (), ttl)
    }

    async fn ended_reason(&self, family: &str) -> Result<Option<EndReason>, StoreError> {
        Ok(self.ended.get(family))
    }

    async fn put_ban(
        &self,
        openid: &str,
        ban: &Ban,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        // Without an end: as long as this store can hold anything.
        let ttl = ttl.unwrap_or(super::records::MAX_TTL);
        // Before the entry: a check that sees no flag cannot see the ban.
        self.any_ban.store(true, Ordering::Release);
        self.bans
            .insert(openid, ban.clone(), ttl)
            .map_err(|Full| StoreError::Full { what: "bans" })
    }

    async fn get_ban(&self, openid: &str) -> Result<Option<Ban>, StoreError> {
        if !self.any_ban.load(Ordering::Acquire) {
            return Ok(None);
        }
        Ok(self.bans.get(openid))
    }

    async fn remove_ban(&self, openid: &str) -> Result<bool, StoreError> {
        Ok(self.bans.remove(openid).is_some())
    }

    async fn link_uid(&self, uid: &str, openid: &str, ttl: Duration) -> Result<(), StoreError> {
        dropped(
            self.uids.renew_then(
                uid,
                ttl,
                |old| {
                    let mut all: Vec<String> = old
                        .map(|v| v.iter().filter(|o| *o != openid).cloned().collect())
                        .unwrap_or_default();
                    let extra = all.len().saturating_add(1).saturating_sub(MAX_UID_OPENIDS);
                    all.drain(..extra);
                    all.push(openid.to_string());
                    all
                },
                |_| (),
            ),
            "uids",
        )
    }

    async fn uid_openids(&self, uid: &str) -> Result<Vec<String>, StoreError> {
        let mut all = self.uids.get(uid).unwrap_or_default();
        all.sort();
        Ok(all)
    }

    async fn revoke_token(&self, jti: &str, ttl: Duration) -> Result<(), StoreError> {
        self.revoke(&self.revoked_jti, jti, (), ttl)
    }

    async fn revoke_subject(
        &self,
        openid: &str,
        before: u64,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.revoke(&self.revoked_subject, openid, before, ttl)
    }

    async fn revoke_family(&self, family: &str, ttl: Duration) -> Result<(), StoreError> {
        self.revoke(&self.revoked_family, family, (), ttl)
    }

    async fn is_revoked(&self, check: &RevocationCheck<'_>) -> Result<bool, StoreError> {
        if !self.any_revoked.load(Ordering::Acquire) {
            return Ok(false);
        }
        let jti = check.jti.is_some_and(|j| self.revoked_jti.get(j).is_some());
        let family = check
            .family
            .is_some_and(|f| self.revoked_family.get(f).is_some());
        let before = self.revoked_subject.get(check.openid);
        Ok(revoked_by(check, jti, before, family))
    }

    async fn put_refresh(
        &self,
        hash: &str,
        record: &RefreshRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let entry = RefreshEntry {
            record: record.clone(),
            rotation: Rotation::Unused,
        };
        dropped(self.refresh.insert(hash, entry, ttl), "refresh_tokens")
    }

    async fn take_refresh(&self, hash: &str, _ttl: Duration) -> Result<RefreshTake, StoreError> {
        // First use, or a rotation pending for longer than it could take
        // (abandoned) may rotate; a concurrent or later presentation is reuse.
        let now = Instant::now();
        let taken = self.refresh.modify(hash, |entry| {
            let fresh = match entry.rotation {
                Rotation::Unused => true,
                Rotation::Pending(start) => now.duration_since(start) > ABANDONED_ROTATION,
                Rotation::Spent => false,
            };
            if fresh {
                entry.rotation = Rotation::Pending(now);
                RefreshTake::Fresh(entry.record.clone())
            } else {
                RefreshTake::Reused(entry.record.clone())
            }
        });
        Ok(taken.unwrap_or(RefreshTake::Unknown))
    }

    async fn complete_refresh(&self, hash: &str, _ttl: Duration) -> Result<(), StoreError> {
        // The entry lives until the token's own expiry: past it, the token is unknown anyway.
        self.refresh
            .modify(hash, |entry| entry.rotation = Rotation::Spent);
        Ok(())
    }

    async fn get_refresh(&self, hash: &str) -> Result<RefreshTake, StoreError> {
        Ok(match self.refresh.get(hash) {
            None => RefreshTake::Unknown,
            Some(entry) if matches!(entry.rotation, Rotation::Spent) => {
                RefreshTake::Reused(entry.record)
            }
            Some(entry) => RefreshTake::Fresh(entry.record),
        })
    }

    async fn get_access_token(&self, appid: &str) -> Result<Option<AccessTokenRecord>, StoreError> {
        Ok(self.access_tokens.get(appid))
    }

    async fn put_access_token(
        &self,
        appid: &str,
        record: &AccessTokenRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        dropped(
            self.access_tokens.insert(appid, record.clone(), ttl),
            "access_tokens",
        )
    }

    async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        dropped(
            self.leases.insert_new(name, holder.to_string(), ttl),
            "leases",
        )
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        if self.leases.get(name).is_some_and(|h| h == holder) {
            self.leases.remove(name);
        }
        Ok(())
    }

    async fn count(&self, key: &str, ttl: Duration) -> Result<u64, StoreError> {
        dropped(
            self.counters
                .update(key, ttl, |c| c.copied().unwrap_or(0).saturating_add(1)),
            "rate_limit_counters",
        )
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn revocation_events(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.revoked.subscribe())
    }

    fn map_stats(&self) -> Vec<MapStats> {
        vec![
            stats(&self.sessions),
            stats(&self.codes),
            stats(&self.revoked_jti),
            stats(&self.revoked_subject),
            stats(&self.revoked_family),
            stats(&self.refresh),
            stats(&self.user_sessions),
            stats(&self.uids),
            stats(&self.ended),
            stats(&self.bans),
            stats(&self.counters),
        ]
    }
}

fn stats<V: Clone>(map: &BoundedMap<V>) -> MapStats {
    MapStats {
        kind: map.name(),
        entries: map.len(),
        capacity: map.capacity(),
        dropped: map.dropped(),
        refused: map.refused(),
    }
}

#[cfg(test)]
mod tests;
