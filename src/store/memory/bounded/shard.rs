//! One shard of a [`super::BoundedMap`]: its entries in least-recently-used
//! order, and the heap of their deadlines.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Instant;

use hashlink::LinkedHashMap;

#[derive(Debug)]
pub(super) struct Slot<V> {
    pub(super) value: V,
    pub(super) deadline: Instant,
}

#[derive(Debug)]
pub(super) struct Shard<V> {
    /// Front: least recently used.
    pub(super) map: LinkedHashMap<Arc<str>, Slot<V>>,
    /// Deadlines, earliest on top; may hold stale items (see the module docs).
    pub(super) expiry: BinaryHeap<Reverse<(Instant, Arc<str>)>>,
    /// Heap items and entries visited so far: the work done, for tests.
    pub(super) steps: u64,
}

impl<V> Shard<V> {
    pub(super) fn new() -> Self {
        Self {
            map: LinkedHashMap::new(),
            expiry: BinaryHeap::new(),
            steps: 0,
        }
    }

    /// Remove up to `limit` expired entries, in deadline order; the number removed.
    pub(super) fn sweep(&mut self, now: Instant, limit: usize) -> usize {
        let mut removed = 0;
        while removed < limit {
            let Some(Reverse((at, _))) = self.expiry.peek() else {
                break;
            };
            if *at > now {
                break;
            }
            let Some(Reverse((at, key))) = self.expiry.pop() else {
                break;
            };
            self.steps = self.steps.saturating_add(1);
            // A stale item (the entry's deadline moved, or it left) is dropped.
            if self.map.get(&key).is_some_and(|s| s.deadline == at) {
                self.map.remove(&key);
                removed += 1;
            }
        }
        removed
    }

    /// Record `key`'s deadline; rebuild the heap once stale items outnumber entries.
    pub(super) fn schedule(&mut self, key: Arc<str>, at: Instant) {
        self.expiry.push(Reverse((at, key)));
        self.steps = self.steps.saturating_add(1);
        let live = self.map.len();
        if self.expiry.len() > live.saturating_mul(2).saturating_add(16) {
            self.steps = self.steps.saturating_add(live as u64);
            self.expiry = self
                .map
                .iter()
                .map(|(k, s)| Reverse((s.deadline, Arc::clone(k))))
                .collect();
        }
    }
}
