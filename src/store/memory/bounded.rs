//! A sharded map with a time to live per entry and a hard bound on its size.
//!
//! Each shard is a [`LinkedHashMap`] kept in least-recently-used order, beside
//! a min-heap of deadlines. Every operation is amortised O(log n) in the size
//! of its shard and never scans the map:
//!
//! * an insert first pops at most [`SWEEP_PER_INSERT`] expired entries off the
//!   heap, so expired entries leave at the pace new ones arrive;
//! * a replaced deadline leaves a stale heap item behind, recognised when it
//!   is popped; once stale items outnumber live entries the heap is rebuilt
//!   from the map, which costs no more than the pushes that made it stale;
//! * a full map first sweeps what has expired, then follows its
//!   [`WhenFull`]: drop the least recently used entry of the shard, or refuse
//!   the insert and keep everything.
//!
//! The shards (and their locks) are chosen by a keyed hash of the key, so
//! threads rarely wait for each other.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use shard::{Shard, Slot};

use crate::store::records::clamp_ttl;

mod shard;

/// Most shards a map has; a small map has fewer (one per [`SHARD_MIN`]
/// entries of capacity), so its least-recently-used order stays exact.
const SHARDS: usize = 16;

/// Capacity per shard below which a map is not split further.
const SHARD_MIN: usize = 1024;

/// Expired entries an insert removes, at most, on its way.
const SWEEP_PER_INSERT: usize = 2;

/// `ttl` after `now`, with `ttl` clamped to [`crate::store::MAX_TTL`]: a
/// deadline that cannot overflow.
pub(crate) fn deadline(now: Instant, ttl: Duration) -> Instant {
    // An Instant reaches centuries past now + 400 days: the fallback is never taken.
    now.checked_add(clamp_ttl(ttl)).unwrap_or(now)
}

/// What a full map does with a new key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Make room by dropping the least recently used entry (sessions, refresh
    /// tokens, caches): reads count as use.
    DropLeastRecent,
    /// Keep every entry until it expires and refuse the new one (revocations).
    Refuse,
}

/// The map is full of live entries and its [`WhenFull`] is `Refuse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the map is full")]
pub struct Full;

/// A bounded map from string keys to `V`, each entry with its own deadline.
#[derive(Debug)]
pub struct BoundedMap<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    hasher: RandomState,
    capacity: usize,
    when_full: WhenFull,
    /// Entries held, expired ones included until swept.
    len: AtomicUsize,
    /// Live entries dropped to make room.
    dropped: AtomicU64,
    /// New entries refused for want of room.
    refused: AtomicU64,
    /// What the map holds, for log lines.
    name: &'static str,
}

impl<V: Clone> BoundedMap<V> {
    /// An empty map of at most `capacity` entries (at least 1).
    pub fn new(name: &'static str, capacity: usize, when_full: WhenFull) -> Self {
        let shards = (capacity / SHARD_MIN).clamp(1, SHARDS);
        Self {
            shards: (0..shards).map(|_| Mutex::new(Shard::new())).collect(),
            hasher: RandomState::new(),
            capacity: capacity.max(1),
            when_full,
            len: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            name,
        }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard<V>> {
        let i = (self.hasher.hash_one(key) as usize) % self.shards.len();
        Self::lock(&self.shards[i])
    }

    fn lock(shard: &Mutex<Shard<V>>) -> MutexGuard<'_, Shard<V>> {
        // Every operation leaves the shard consistent between two calls into
        // `LinkedHashMap`/`BinaryHeap`, which do not panic midway: poisoning is ignored.
        shard.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn forget(&self, n: usize) {
        if n > 0 {
            self.len.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// The value for `key` unless it has expired; for `DropLeastRecent`, a read is a use.
    pub fn get(&self, key: &str) -> Option<V> {
        let now = Instant::now();
        let mut shard = self.shard(key);
        let live = match shard.map.get(key) {
            None => return None,
            Some(slot) => slot.deadline > now,
        };
        if !live {
            shard.map.remove(key);
            drop(shard);
            self.forget(1);
            return None;
        }
        match self.when_full {
            WhenFull::DropLeastRecent => shard.map.to_back(key).map(|s| s.value.clone()),
            WhenFull::Refuse => shard.map.get(key).map(|s| s.value.clone()),
        }
    }

    /// Insert or replace, expiring after `ttl`.
    pub fn insert(&self, key: &str, value: V, ttl: Duration) -> Result<(), Full> {
        self.write(key, ttl, false, |_| Some(value)).map(|_| ())
    }

    /// Insert unless a live entry exists; `true` if inserted.
    pub fn insert_new(&self, key: &str, value: V, ttl: Duration) -> Result<bool, Full> {
        let mut value = Some(value);
        let mut inserted = false;
        self.write(key, ttl, true, |old| match old {
            Some(_) => None,
            None => {
                inserted = true;
                value.take()
            }
        })?;
        Ok(inserted)
    }

    /// The live value, or (`None`) `value` inserted for `ttl`: one step.
    pub fn get_or_insert(&self, key: &str, value: V, ttl: Duration) -> Result<Option<V>, Full> {
        let mut value = Some(value);
        let mut found = None;
        self.write(key, ttl, true, |old| match old {
            Some(v) => {
                found = Some(v.clone());
                None
            }
            None => value.take(),
        })?;
        Ok(found)
    }

    /// Replace a live value for which `is` holds with `value`, for `ttl`
    /// from now; `true` if replaced.
    pub fn replace_if(
        &self,
        key: &str,
        is: impl Fn(&V) -> bool,
        value: V,
        ttl: Duration,
    ) -> Result<bool, Full> {
        self.write(key, ttl, false, |old| match old {
            Some(v) if is(v) => Some(value),
            _ => None,
        })
    }

    /// Replace the live value (or `None`) with `f(value)`, keeping the
    /// deadline of a live entry; a new entry lives `ttl`. Returns the new value.
    pub fn update(
        &self,
        key: &str,
        ttl: Duration,
        f: impl FnOnce(Option<&V>) -> V,
    ) -> Result<V, Full> {
        self.replace_with(key, ttl, true, f, V::clone)
    }

    /// Replace the live value (or `None`) with `f(value)`, which then lives
    /// `ttl` from now, whether new or not. Returns the new value.
    pub fn renew(
        &self,
        key: &str,
        ttl: Duration,
        f: impl FnOnce(Option<&V>) -> V,
    ) -> Result<V, Full> {
        self.replace_with(key, ttl, false, f, V::clone)
    }

    /// [`BoundedMap::renew`], returning `then(new value)` instead of a copy.
    pub fn renew_then<R>(
        &self,
        key: &str,
        ttl: Duration,
        f: impl FnOnce(Option<&V>) -> V,
        then: impl FnOnce(&V) -> R,
    ) -> Result<R, Full> {
        self.replace_with(key, ttl, false, f, then)
    }

    /// [`BoundedMap::update`] or, without `keep_deadline`, [`BoundedMap::renew`].
    fn replace_with<R>(
        &self,
        key: &str,
        ttl: Duration,
        keep_deadline: bool,
        f: impl FnOnce(Option<&V>) -> V,
        then: impl FnOnce(&V) -> R,
    ) -> Result<R, Full> {
        let mut f = Some(f);
        let mut then = Some(then);
        let mut out = None;
        self.write(key, ttl, keep_deadline, |old| {
            let v = f.take().map(|f| f(old))?;
            out = then.take().map(|then| then(&v));
            Some(v)
        })?;
        // `f` always runs: the callback above is called exactly once.
        out.ok_or(Full)
    }

    /// Change a live entry in place, keeping its deadline and its place in
    /// the use order; `None` if there is no live entry.
    pub fn modify<R>(&self, key: &str, f: impl FnOnce(&mut V) -> R) -> Option<R> {
        let now = Instant::now();
        let mut shard = self.shard(key);
        let slot = shard.map.get_mut(key).filter(|s| s.deadline > now)?;
        Some(f(&mut slot.value))
    }

    /// Remove `key`, returning its value if it had not expired.
    pub fn remove(&self, key: &str) -> Option<V> {
        let now = Instant::now();
        let slot = self.shard(key).map.remove(key)?;
        self.forget(1);
        (slot.deadline > now).then_some(slot.value)
    }

    /// Remove `key` if its live value is one `is` holds for; `true` if removed.
    pub fn remove_if(&self, key: &str, is: impl Fn(&V) -> bool) -> bool {
        let now = Instant::now();
        let mut shard = self.shard(key);
        let hit = shard
            .map
            .get(key)
            .is_some_and(|s| s.deadline > now && is(&s.value));
        if hit && shard.map.remove(key).is_some() {
            drop(shard);
            self.forget(1);
        }
        hit
    }

    /// Entries held, expired ones included until swept.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether the map holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the map holds, as named in log lines and errors.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The configured bound.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// New entries refused for want of room, so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Live entries dropped to make room, so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Heap items and entries visited so far (the work done; for tests).
    pub fn steps(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| Self::lock(s).steps)
            .fold(0, u64::saturating_add)
    }

    /// Insert or replace with `f(old)` (nothing is written if it returns
    /// `None`; `old` is `None` when there is no live entry). A written entry
    /// lives `ttl` from now, or keeps its deadline with `keep_deadline` if it
    /// was live. `true` if something was written.
    fn write(
        &self,
        key: &str,
        ttl: Duration,
        keep_deadline: bool,
        f: impl FnOnce(Option<&V>) -> Option<V>,
    ) -> Result<bool, Full> {
        let now = Instant::now();
        let mut shard = self.shard(key);
        let swept = shard.sweep(now, SWEEP_PER_INSERT);
        self.forget(swept);

        if let Some(slot) = shard.map.get_mut(key) {
            let live = slot.deadline > now;
            let Some(value) = f(live.then_some(&slot.value)) else {
                return Ok(false);
            };
            let at = if live && keep_deadline {
                slot.deadline
            } else {
                deadline(now, ttl)
            };
            let moved = at != slot.deadline;
            slot.value = value;
            slot.deadline = at;
            if self.when_full == WhenFull::DropLeastRecent {
                shard.map.to_back(key);
            }
            if moved {
                if let Some(k) = shard.map.get_key_value(key).map(|(k, _)| Arc::clone(k)) {
                    shard.schedule(k, at);
                }
            }
            return Ok(true);
        }

        let Some(value) = f(None) else {
            return Ok(false);
        };
        let mut shard = self.make_room(shard, key, now)?;
        let k: Arc<str> = Arc::from(key);
        let at = deadline(now, ttl);
        if shard
            .map
            .insert(
                Arc::clone(&k),
                Slot {
                    value,
                    deadline: at,
                },
            )
            .is_some()
        {
            // Inserted by another caller while the lock was let go: replaced, not added.
            self.forget(1);
        }
        shard.schedule(k, at);
        Ok(true)
    }

    /// Count one more entry, making room first if the map is full; returns
    /// the (possibly re-taken) lock of `key`'s shard.
    fn make_room<'a>(
        &'a self,
        mut shard: MutexGuard<'a, Shard<V>>,
        key: &str,
        now: Instant,
    ) -> Result<MutexGuard<'a, Shard<V>>, Full> {
        match self.when_full {
            WhenFull::DropLeastRecent => {
                let len = self.len.fetch_add(1, Ordering::Relaxed).saturating_add(1);
                if len > self.capacity {
                    let swept = shard.sweep(now, usize::MAX);
                    self.forget(swept);
                    if self.len() > self.capacity && shard.map.pop_front().is_some() {
                        shard.steps = shard.steps.saturating_add(1);
                        self.forget(1);
                        let n = self
                            .dropped
                            .fetch_add(1, Ordering::Relaxed)
                            .saturating_add(1);
                        if n.is_power_of_two() {
                            tracing::warn!(
                                map = self.name,
                                capacity = self.capacity,
                                dropped_so_far = n,
                                "memory store full: dropped the least recently used entry"
                            );
                        }
                    }
                }
                Ok(shard)
            }
            WhenFull::Refuse => {
                if self.try_reserve() {
                    return Ok(shard);
                }
                let swept = shard.sweep(now, usize::MAX);
                self.forget(swept);
                if self.try_reserve() {
                    return Ok(shard);
                }
                drop(shard);
                for other in self.shards.iter() {
                    let swept = Self::lock(other).sweep(now, usize::MAX);
                    self.forget(swept);
                }
                if self.try_reserve() {
                    return Ok(self.shard(key));
                }
                let n = self
                    .refused
                    .fetch_add(1, Ordering::Relaxed)
                    .saturating_add(1);
                if n.is_power_of_two() {
                    tracing::error!(
                        map = self.name,
                        capacity = self.capacity,
                        refused_so_far = n,
                        "memory store full of live entries: refusing new ones (raise the bound or use Redis)"
                    );
                }
                Err(Full)
            }
        }
    }

    /// Count one more entry if that stays within the bound.
    fn try_reserve(&self) -> bool {
        self.len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.capacity).then(|| n.saturating_add(1))
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests;
