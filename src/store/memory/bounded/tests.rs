use super::*;

const MINUTE: Duration = Duration::from_secs(60);

fn lru(capacity: usize) -> BoundedMap<u64> {
    BoundedMap::new("test", capacity, WhenFull::DropLeastRecent)
}

fn keeper(capacity: usize) -> BoundedMap<u64> {
    BoundedMap::new("test", capacity, WhenFull::Refuse)
}

#[test]
fn entries_expire() {
    let m = lru(10);
    m.insert("a", 1, MINUTE).unwrap();
    m.insert("b", 2, Duration::ZERO).unwrap();
    assert_eq!(m.get("a"), Some(1));
    assert_eq!(m.get("b"), None);
    assert_eq!(m.remove("b"), None);
    assert_eq!(m.remove("a"), Some(1));
    assert!(m.is_empty());
}

#[test]
fn capacity_is_a_hard_bound_and_the_least_recently_used_goes_first() {
    let m = lru(3);
    m.insert("a", 0, MINUTE).unwrap();
    m.insert("b", 1, MINUTE).unwrap();
    m.insert("c", 2, MINUTE).unwrap();
    assert_eq!(m.get("a"), Some(0)); // a is now the most recent
    m.insert("d", 3, MINUTE).unwrap();
    assert_eq!(m.len(), 3);
    assert_eq!(m.get("b"), None, "b was the least recently used");
    assert_eq!(m.get("a"), Some(0));
    assert_eq!(m.dropped(), 1);
    for i in 0..100u64 {
        m.insert(&format!("k{i}"), i, MINUTE).unwrap();
        assert!(m.len() <= 3);
    }
    assert_eq!(m.get("k99"), Some(99));
}

#[test]
fn a_full_map_sweeps_expired_entries_before_dropping_live_ones() {
    let m = lru(2);
    m.insert("dead", 0, Duration::ZERO).unwrap();
    m.insert("live", 1, MINUTE).unwrap();
    m.insert("new", 2, MINUTE).unwrap();
    assert_eq!(m.get("live"), Some(1));
    assert_eq!(m.get("new"), Some(2));
    assert_eq!(m.dropped(), 0);
}

#[test]
fn refuse_keeps_every_live_entry_and_takes_room_freed_by_expiry() {
    let m = keeper(4);
    m.insert("short", 0, Duration::ZERO).unwrap();
    for k in ["a", "b", "c"] {
        m.insert(k, 1, MINUTE).unwrap();
    }
    // "short" has expired: its room is taken back.
    m.insert("d", 1, MINUTE).unwrap();
    assert_eq!(m.insert("e", 1, MINUTE), Err(Full));
    assert_eq!(m.insert_new("e", 1, MINUTE), Err(Full));
    assert_eq!(m.update("e", MINUTE, |_| 1), Err(Full));
    for k in ["a", "b", "c", "d"] {
        assert_eq!(m.get(k), Some(1), "{k} was lost");
    }
    // Replacing a held key needs no room.
    m.insert("a", 2, MINUTE).unwrap();
    assert_eq!(m.get("a"), Some(2));
    assert_eq!(m.refused(), 3);
    assert_eq!(m.dropped(), 0);
}

#[test]
fn refuse_finds_room_expired_in_another_shard() {
    // Large enough to be sharded.
    let cap = SHARD_MIN * 4;
    let m = keeper(cap);
    assert!(m.shards.len() > 1);
    for i in 0..cap {
        m.insert(&format!("old{i}"), 0, Duration::ZERO).unwrap();
    }
    // Each new key lands in one shard; the expired entries of every shard make room.
    for i in 0..cap {
        m.insert(&format!("new{i}"), 1, MINUTE).unwrap();
    }
    assert_eq!(m.len(), cap);
    assert_eq!(m.insert("more", 1, MINUTE), Err(Full));
}

#[test]
fn insert_new_and_update_keep_a_live_deadline() {
    let m = lru(10);
    assert_eq!(m.insert_new("k", 1, MINUTE), Ok(true));
    assert_eq!(m.insert_new("k", 2, MINUTE), Ok(false));
    assert_eq!(m.get("k"), Some(1));
    assert_eq!(
        m.update("n", Duration::ZERO, |v| v.copied().unwrap_or(0) + 1),
        Ok(1)
    );
    // The first update's entry expired at once: a new one starts.
    assert_eq!(
        m.update("n", MINUTE, |v| v.copied().unwrap_or(0) + 1),
        Ok(1)
    );
    assert_eq!(
        m.update("n", Duration::ZERO, |v| v.copied().unwrap_or(0) + 1),
        Ok(2)
    );
    assert_eq!(m.get("n"), Some(2), "a live entry kept its deadline");
    assert_eq!(m.modify("n", |v| std::mem::replace(v, 9)), Some(2));
    assert_eq!(m.get("n"), Some(9));
    assert_eq!(m.modify("absent", |v| *v), None);
}

#[test]
fn replacing_one_key_forever_does_not_grow_the_heap() {
    let m = keeper(10);
    for i in 0..10_000u64 {
        m.insert("same", i, MINUTE + Duration::from_millis(i))
            .unwrap();
    }
    let heap = m
        .shards
        .iter()
        .map(|s| BoundedMap::lock(s).expiry.len())
        .sum::<usize>();
    assert!(heap <= 2 + 16 + 1, "heap holds {heap} items for one entry");
    assert_eq!(m.get("same"), Some(9_999));
}

/// Work (heap items and entries visited) per operation, averaged over
/// 20,000 inserts (and reads) into a map already filled to `capacity`.
fn work_per_insert(capacity: usize, when_full: WhenFull, ttl: impl Fn(usize) -> Duration) -> f64 {
    let m: BoundedMap<u64> = BoundedMap::new("test", capacity, when_full);
    for i in 0..capacity {
        let _ = m.insert(&format!("fill{i}"), 0, ttl(i));
    }
    let before = m.steps();
    let ops = 20_000;
    for i in 0..ops {
        let _ = m.insert(&format!("op{i}"), 0, ttl(i));
        let _ = m.get(&format!("fill{i}"));
    }
    (m.steps() - before) as f64 / ops as f64
}

#[test]
fn the_work_of_an_insert_does_not_grow_with_the_map() {
    // Counted in heap items and entries visited, not in wall time.
    for when_full in [WhenFull::DropLeastRecent, WhenFull::Refuse] {
        // Live entries only: a full LRU map drops one per insert, a full
        // keeping map refuses.
        let small = work_per_insert(1_000, when_full, |_| MINUTE);
        let large = work_per_insert(200_000, when_full, |_| MINUTE);
        assert!(
            small <= 3.0 && large <= 3.0,
            "{when_full:?}: {small} vs {large} steps per insert"
        );
        // Half the entries expire at once: sweeping them is shared out.
        let expiring = |i: usize| if i % 2 == 0 { Duration::ZERO } else { MINUTE };
        let small = work_per_insert(1_000, when_full, expiring);
        let large = work_per_insert(200_000, when_full, expiring);
        assert!(
            small <= 4.0 && large <= 4.0,
            "{when_full:?}: {small} vs {large} steps per insert"
        );
    }
}

#[test]
fn concurrent_writers_keep_the_count_and_the_bound() {
    let m = std::sync::Arc::new(keeper(SHARD_MIN * 8));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let m = std::sync::Arc::clone(&m);
            std::thread::spawn(move || {
                let mut refused = 0;
                for i in 0..4_000 {
                    if m.insert(&format!("t{t}-{i}"), 0, MINUTE).is_err() {
                        refused += 1;
                    }
                }
                refused
            })
        })
        .collect();
    let refused: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(m.len(), SHARD_MIN * 8);
    assert_eq!(refused, 16_000 - SHARD_MIN * 8);
    let held: usize = m.shards.iter().map(|s| BoundedMap::lock(s).map.len()).sum();
    assert_eq!(held, m.len());
}
