use super::health::eviction_of;
use super::refresh::refresh_is_fresh;
use super::Eviction;

#[test]
fn only_noeviction_keeps_every_key() {
    let pair = |p: &str| vec!["maxmemory-policy".to_string(), p.to_string()];
    assert_eq!(eviction_of(&pair("noeviction")), Eviction::Never);
    for p in [
        "allkeys-lru",
        "volatile-ttl",
        "allkeys-random",
        "volatile-lfu",
    ] {
        assert_eq!(eviction_of(&pair(p)), Eviction::Evicts { policy: p.into() });
    }
    assert_eq!(eviction_of(&[]), Eviction::Unknown);
}
use std::time::Duration;

const T: Duration = Duration::from_millis(200);

#[test]
fn only_my_own_mark_is_fresh() {
    let mine = "pending:1000:00000000000000aa";
    assert!(refresh_is_fresh(Some(mine), mine, 1000, T));
    // Another presentation in the same millisecond is reuse.
    assert!(!refresh_is_fresh(
        Some("pending:1000:00000000000000bb"),
        mine,
        1000,
        T
    ));
    assert!(!refresh_is_fresh(Some("spent"), mine, 1000, T));
    assert!(!refresh_is_fresh(None, mine, 1000, T));
}

#[test]
fn an_abandoned_rotation_can_be_retried() {
    let mine = "pending:5000:00000000000000aa";
    let old = "pending:4700:00000000000000bb";
    assert!(refresh_is_fresh(Some(old), mine, 5000, T));
    assert!(!refresh_is_fresh(Some(old), mine, 4800, T));
    assert!(!refresh_is_fresh(Some("pending:junk"), mine, 5000, T));
}
