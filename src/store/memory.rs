//! The embedded store: a bounded map with expiry.
//!
//! Every entry carries a deadline. Reads ignore expired entries; writes sweep
//! them when the map is full, and if it is still full the entry closest to its
//! deadline is evicted, so memory stays bounded under any load.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use std::sync::atomic::{AtomicBool, Ordering};

use super::{
    clamp_ttl, revoked_by, RefreshRecord, RefreshTake, RevocationCheck, Store, StoreError,
    WxSession,
};

/// A refresh rotation pending this long was abandoned (its request failed).
const ABANDONED_ROTATION: Duration = Duration::from_secs(1);

/// Default capacity of each map.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// `ttl` after `now`, with `ttl` clamped to [`super::MAX_TTL`]: a deadline
/// that cannot overflow.
fn deadline(now: Instant, ttl: Duration) -> Instant {
    // An Instant reaches centuries past now + 400 days: the fallback is never taken.
    now.checked_add(clamp_ttl(ttl)).unwrap_or(now)
}

/// A map whose entries expire, with a hard capacity.
#[derive(Debug)]
pub struct TtlMap<K, V> {
    inner: Mutex<HashMap<K, (V, Instant)>>,
    capacity: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlMap<K, V> {
    /// An empty map holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, Instant)>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (every operation is a single HashMap call), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value for `key` unless it has expired.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = Instant::now();
        let map = self.lock();
        map.get(key)
            .filter(|(_, exp)| *exp > now)
            .map(|(v, _)| v.clone())
    }

    /// Insert or replace, expiring after `ttl`.
    pub fn insert(&self, key: K, value: V, ttl: Duration) {
        let now = Instant::now();
        let mut map = self.lock();
        self.insert_locked(&mut map, key, value, deadline(now, ttl), now);
    }

    /// Make room if the map is full, then insert.
    fn insert_locked(
        &self,
        map: &mut HashMap<K, (V, Instant)>,
        key: K,
        value: V,
        exp: Instant,
        now: Instant,
    ) {
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.retain(|_, (_, e)| *e > now);
            if map.len() >= self.capacity {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, (_, e))| *e)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    map.remove(&k);
                }
            }
        }
        map.insert(key, (value, exp));
    }

    /// Insert unless a live entry exists; `true` if inserted.
    pub fn insert_new(&self, key: K, value: V, ttl: Duration) -> bool {
        let now = Instant::now();
        let mut map = self.lock();
        if map.get(&key).is_some_and(|(_, exp)| *exp > now) {
            return false;
        }
        self.insert_locked(&mut map, key, value, deadline(now, ttl), now);
        true
    }

    /// Replace the live value (or `None`) with `f(value)`, keeping the
    /// deadline of a live entry; a new entry lives `ttl`. Returns the new value.
    pub fn update(&self, key: K, ttl: Duration, f: impl FnOnce(Option<V>) -> V) -> V {
        let now = Instant::now();
        let mut map = self.lock();
        let live = map.get(&key).filter(|(_, exp)| *exp > now).cloned();
        let (value, exp) = match live {
            Some((v, exp)) => (f(Some(v)), exp),
            None => (f(None), deadline(now, ttl)),
        };
        self.insert_locked(&mut map, key, value.clone(), exp, now);
        value
    }

    /// Remove `key`, returning its value if it had not expired.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = Instant::now();
        self.lock()
            .remove(key)
            .filter(|(_, exp)| *exp > now)
            .map(|(v, _)| v)
    }

    /// Number of entries, expired ones included until swept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The in-process store (the default): one instance, lost on restart.
#[derive(Debug)]
pub struct MemoryStore {
    sessions: TtlMap<String, WxSession>,
    codes: TtlMap<String, String>,
    claims: TtlMap<String, ()>,
    revoked_jti: TtlMap<String, ()>,
    revoked_subject: TtlMap<String, u64>,
    revoked_family: TtlMap<String, ()>,
    refresh: TtlMap<String, RefreshRecord>,
    /// `Some(start)`: rotation pending since `start`; `None`: spent.
    refresh_used: TtlMap<String, Option<Instant>>,
    counters: TtlMap<String, u64>,
    /// Whether anything was ever revoked: lets the per-request check skip the maps.
    any_revoked: AtomicBool,
}

impl MemoryStore {
    /// A store whose maps hold at most `capacity` entries each.
    pub fn new(capacity: usize) -> Self {
        Self {
            sessions: TtlMap::new(capacity),
            codes: TtlMap::new(capacity),
            claims: TtlMap::new(capacity),
            revoked_jti: TtlMap::new(capacity),
            revoked_subject: TtlMap::new(capacity),
            revoked_family: TtlMap::new(capacity),
            refresh: TtlMap::new(capacity),
            refresh_used: TtlMap::new(capacity),
            counters: TtlMap::new(capacity),
            any_revoked: AtomicBool::new(false),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn put_session(
        &self,
        openid: &str,
        session: &WxSession,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.sessions
            .insert(openid.to_string(), session.clone(), ttl);
        Ok(())
    }

    async fn get_session(&self, openid: &str) -> Result<Option<WxSession>, StoreError> {
        Ok(self.sessions.get(openid))
    }

    async fn claim_code(&self, code_hash: &str, ttl: Duration) -> Result<bool, StoreError> {
        Ok(self.claims.insert_new(code_hash.to_string(), (), ttl))
    }

    async fn release_code(&self, code_hash: &str) -> Result<(), StoreError> {
        self.claims.remove(code_hash);
        Ok(())
    }

    async fn put_code_outcome(
        &self,
        code_hash: &str,
        sealed: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.codes
            .insert(code_hash.to_string(), sealed.to_string(), ttl);
        Ok(())
    }

    async fn get_code_outcome(&self, code_hash: &str) -> Result<Option<String>, StoreError> {
        Ok(self.codes.get(code_hash))
    }

    async fn revoke_token(&self, jti: &str, ttl: Duration) -> Result<(), StoreError> {
        self.any_revoked.store(true, Ordering::Release);
        self.revoked_jti.insert(jti.to_string(), (), ttl);
        Ok(())
    }

    async fn revoke_subject(
        &self,
        openid: &str,
        before: u64,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.any_revoked.store(true, Ordering::Release);
        self.revoked_subject.insert(openid.to_string(), before, ttl);
        Ok(())
    }

    async fn revoke_family(&self, family: &str, ttl: Duration) -> Result<(), StoreError> {
        self.any_revoked.store(true, Ordering::Release);
        self.revoked_family.insert(family.to_string(), (), ttl);
        Ok(())
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
        self.refresh.insert(hash.to_string(), record.clone(), ttl);
        Ok(())
    }

    async fn take_refresh(&self, hash: &str, ttl: Duration) -> Result<RefreshTake, StoreError> {
        let Some(record) = self.refresh.get(hash) else {
            return Ok(RefreshTake::Unknown);
        };
        // First use, or a rotation pending for longer than it could take
        // (abandoned) may rotate; a concurrent or later presentation is reuse.
        let now = Instant::now();
        let mut fresh = false;
        self.refresh_used
            .update(hash.to_string(), ttl, |state| match state {
                None => {
                    fresh = true;
                    Some(now)
                }
                Some(Some(start)) if now.duration_since(start) > ABANDONED_ROTATION => {
                    fresh = true;
                    Some(now)
                }
                Some(other) => other,
            });
        Ok(if fresh {
            RefreshTake::Fresh(record)
        } else {
            RefreshTake::Reused(record)
        })
    }

    async fn complete_refresh(&self, hash: &str, ttl: Duration) -> Result<(), StoreError> {
        self.refresh_used.insert(hash.to_string(), None, ttl);
        Ok(())
    }

    async fn count(&self, key: &str, ttl: Duration) -> Result<u64, StoreError> {
        Ok(self
            .counters
            .update(key.to_string(), ttl, |c| c.unwrap_or(0).saturating_add(1)))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn session(key: &str) -> WxSession {
        WxSession {
            session_key: Secret::from(key),
            unionid: None,
            appid: "wxapp".into(),
            login_at: 1,
        }
    }

    #[test]
    fn entries_expire() {
        let m = TtlMap::new(10);
        m.insert("a", 1, Duration::from_secs(60));
        m.insert("b", 2, Duration::ZERO);
        assert_eq!(m.get(&"a"), Some(1));
        assert_eq!(m.get(&"b"), None);
        assert_eq!(m.remove(&"b"), None);
    }

    #[test]
    fn capacity_is_a_hard_bound() {
        let m = TtlMap::new(3);
        for i in 0..100 {
            m.insert(i, i, Duration::from_secs(60 + i as u64));
            assert!(m.len() <= 3);
        }
        // The newest entries survive; the one nearest its deadline went first.
        assert_eq!(m.get(&99), Some(99));
        assert_eq!(m.get(&0), None);
    }

    #[test]
    fn full_map_sweeps_expired_entries_first() {
        let m = TtlMap::new(2);
        m.insert("dead", 0, Duration::ZERO);
        m.insert("live", 1, Duration::from_secs(60));
        m.insert("new", 2, Duration::from_secs(60));
        assert_eq!(m.get(&"live"), Some(1));
        assert_eq!(m.get(&"new"), Some(2));
    }

    #[tokio::test]
    async fn sessions_are_replaced_per_openid() {
        let s = MemoryStore::new(10);
        s.put_session("o1", &session("k1"), Duration::from_secs(60))
            .await
            .unwrap();
        s.put_session("o1", &session("k2"), Duration::from_secs(60))
            .await
            .unwrap();
        let got = s.get_session("o1").await.unwrap().unwrap();
        assert!(got.session_key.ct_eq(b"k2"));
        assert_eq!(s.get_session("o2").await.unwrap(), None);
    }
}
