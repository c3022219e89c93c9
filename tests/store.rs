//! The shared store suite: every case runs against [`MemoryStore`] and
//! against [`RedisStore`] on a real `redis-server` spawned for the test
//! (`support::redis`): sessions, the login-code claim and outcome,
//! revocations, refresh-token rotation, rate-limit counters and `ping`.
//!
//! Redis only: every key carries the prefix and a TTL, the atomic operations
//! stay atomic under 20 concurrent callers, and when the server is killed or
//! hangs every call fails within the timeout and the same store recovers once
//! the server is back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::redis::RedisServer;
use wxgate::config::MemoryLimits;
use wxgate::secret::Secret;
use wxgate::store::memory::MemoryStore;
use wxgate::store::redis::RedisStore;
use wxgate::store::{
    AccessTokenRecord, CodeClaim, Device, Eviction, RefreshRecord, RefreshTake, RevocationCheck,
    SessionEntry, Store, StoreError, WxSession,
};
use wxgate::token::UserClaims;

/// The key prefix of every Redis store in this file.
const PREFIX: &str = "wxgate-test:";
/// The Redis store's call timeout.
const TIMEOUT: Duration = Duration::from_millis(500);
/// A TTL no test outlives.
const LONG: Duration = Duration::from_secs(600);
/// How long an entry with a 1 s TTL may take to disappear (Redis TTLs are whole seconds).
const EXPIRY_LIMIT: Duration = Duration::from_millis(2500);

fn memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::default())
}

/// A Redis store on `server`, once it has loaded the live revocations.
async fn redis_store(server: &RedisServer) -> Arc<dyn Store> {
    let store: Arc<dyn Store> =
        Arc::new(RedisStore::new(&server.url(), PREFIX, TIMEOUT).expect("redis store"));
    assert!(
        store.settle(Duration::from_secs(10)).await,
        "the live revocations did not load"
    );
    store
}

/// Run each case once per store: `memory::case` and `redis::case`.
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::memory()).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let server = super::RedisServer::start();
                    super::$case(super::redis_store(&server).await).await;
                }
            )*
        }
    };
}

suite!(
    leases_have_one_holder_until_given_back,
    access_tokens_are_kept_per_app_until_their_ttl,
    get_refresh_looks_without_taking,
    sessions_put_get_replace,
    sessions_expire,
    claim_code_once_until_released,
    claim_code_expires,
    an_unfinished_outcome_is_taken_over_once,
    a_users_sessions_are_listed_touched_and_removed,
    code_outcome_put_get,
    revoke_token_names_one_jti,
    revoke_subject_covers_tokens_issued_up_to_before,
    revoke_family_names_one_family,
    nothing_is_revoked_in_a_fresh_store,
    refresh_fresh_then_reused,
    count_counts_per_key,
    count_expires_after_its_ttl,
    ping_answers,
    concurrent_take_refresh_has_one_winner,
    concurrent_claim_code_has_one_winner,
    endless_ttls_are_clamped_not_refused,
    a_uid_is_linked_to_its_openids_within_a_bound,
);

async fn a_uid_is_linked_to_its_openids_within_a_bound(store: Arc<dyn Store>) {
    assert!(store.uid_openids("u-1").await.unwrap().is_empty());
    store.link_uid("u-1", "o-b", LONG).await.unwrap();
    store.link_uid("u-1", "o-a", LONG).await.unwrap();
    store.link_uid("u-1", "o-a", LONG).await.unwrap();
    assert_eq!(store.uid_openids("u-1").await.unwrap(), ["o-a", "o-b"]);
    assert!(store.uid_openids("u-2").await.unwrap().is_empty());
    // More openids than the bound: it holds, and the newest link is kept.
    let bound = wxgate::store::MAX_UID_OPENIDS;
    for i in 0..bound + 3 {
        store
            .link_uid("u-3", &format!("o-{i:02}"), LONG)
            .await
            .unwrap();
    }
    let held = store.uid_openids("u-3").await.unwrap();
    assert!(held.len() <= bound, "{held:?}");
    assert!(held.contains(&format!("o-{:02}", bound + 2)), "{held:?}");
    // A link lives as long as it was given.
    store
        .link_uid("u-4", "o-x", Duration::from_millis(50))
        .await
        .unwrap();
    let gone = support::eventually(Duration::from_secs(5), || async {
        store.uid_openids("u-4").await.unwrap().is_empty()
    })
    .await;
    assert!(gone);
}

fn session(key: &str, unionid: Option<&str>) -> WxSession {
    WxSession {
        session_key: Secret::from(key),
        unionid: unionid.map(str::to_string),
        appid: "wxstoretest000001".into(),
        login_at: 1_700_000_000,
    }
}

fn record(openid: &str, family: &str) -> RefreshRecord {
    RefreshRecord {
        openid: openid.into(),
        unionid: Some("u-1".into()),
        appid: Some("wxstoretest000001".into()),
        family: family.into(),
        user: UserClaims {
            uid: Some("u-7".into()),
            roles: vec!["admin".into()],
            ext: Default::default(),
            risk: Some(1),
        },
        issued_ms: 1_700_000_000_000,
        expires_at: 1_700_000_000 + 86_400,
        created_ms: 0,
        refreshed_ms: 0,
    }
}

fn check<'a>(
    jti: Option<&'a str>,
    openid: &'a str,
    family: Option<&'a str>,
    iat: u64,
) -> RevocationCheck<'a> {
    RevocationCheck {
        jti,
        openid,
        family,
        issued_ms: iat,
    }
}

// ---------------------------------------------------------------------------
// The shared cases
// ---------------------------------------------------------------------------

async fn sessions_put_get_replace(store: Arc<dyn Store>) {
    let first = session("key-1", Some("u-1"));
    store.put_session("o-1", &first, LONG).await.unwrap();
    assert_eq!(store.get_session("o-1").await.unwrap(), Some(first));

    let second = session("key-2", None);
    store.put_session("o-1", &second, LONG).await.unwrap();
    let got = store.get_session("o-1").await.unwrap().expect("replaced");
    assert!(got.session_key.ct_eq(b"key-2"), "the session was replaced");
    assert_eq!(got, second);

    assert_eq!(store.get_session("o-2").await.unwrap(), None);
}

async fn sessions_expire(store: Arc<dyn Store>) {
    store
        .put_session("short", &session("k", None), Duration::from_secs(1))
        .await
        .unwrap();
    store
        .put_session("long", &session("k", None), LONG)
        .await
        .unwrap();
    assert!(store.get_session("short").await.unwrap().is_some());
    let started = Instant::now();
    let gone = support::eventually(EXPIRY_LIMIT, || async {
        store.get_session("short").await.unwrap().is_none()
    })
    .await;
    assert!(gone, "a 1 s session still there after {EXPIRY_LIMIT:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "a 1 s session expired after {:?}",
        started.elapsed()
    );
    assert!(store.get_session("long").await.unwrap().is_some());
}

/// Whether `claim_code` claimed.
async fn claimed(store: &Arc<dyn Store>, id: &str, ttl: Duration) -> bool {
    store.claim_code(id, ttl).await.unwrap() == CodeClaim::Claimed
}

async fn claim_code_once_until_released(store: Arc<dyn Store>) {
    assert!(claimed(&store, "c-1", LONG).await);
    assert_eq!(
        store.claim_code("c-1", LONG).await.unwrap(),
        CodeClaim::Pending
    );
    assert!(claimed(&store, "c-2", LONG).await, "codes are independent");
    // A claim alone is no outcome.
    assert_eq!(store.get_code_outcome("c-1").await.unwrap(), None);
    store.release_code("c-1").await.unwrap();
    assert!(claimed(&store, "c-1", LONG).await);
    assert!(!claimed(&store, "c-1", LONG).await);
    assert!(!claimed(&store, "c-2", LONG).await);
    // Releasing what was never claimed is fine.
    store.release_code("never").await.unwrap();
    // A release never drops an outcome (saved meanwhile by another request).
    store
        .put_code_outcome("c-2", "sealed-2", LONG)
        .await
        .unwrap();
    store.release_code("c-2").await.unwrap();
    assert_eq!(
        store.get_code_outcome("c-2").await.unwrap().as_deref(),
        Some("sealed-2")
    );
    // The outcome replaces the claim, and claiming then reads it.
    store
        .put_code_outcome("c-1", "sealed-1", LONG)
        .await
        .unwrap();
    assert_eq!(
        store.claim_code("c-1", LONG).await.unwrap(),
        CodeClaim::Outcome("sealed-1".into())
    );
    assert_eq!(
        store.get_code_outcome("c-1").await.unwrap().as_deref(),
        Some("sealed-1")
    );
}

fn entry(id: &str, created_ms: u64) -> SessionEntry {
    SessionEntry {
        id: id.into(),
        appid: Some("wxapp".into()),
        created_ms,
        refreshed_ms: created_ms,
        issued_ms: 0,
        ip: Some("203.0.113.9".parse().unwrap()),
        device: Some(Device {
            platform: Some("ios".into()),
            model: None,
            system: None,
        }),
    }
}

async fn a_users_sessions_are_listed_touched_and_removed(store: Arc<dyn Store>) {
    assert!(store.list_sessions("o-s").await.unwrap().is_empty());
    assert!(
        store
            .add_session("o-s", &entry("s1", 1000), LONG)
            .await
            .unwrap()
            >= 1
    );
    assert!(
        store
            .add_session("o-s", &entry("s2", 2000), LONG)
            .await
            .unwrap()
            >= 2
    );
    store
        .add_session("o-other", &entry("s3", 3000), LONG)
        .await
        .unwrap();
    let mut listed = store.list_sessions("o-s").await.unwrap();
    listed.sort_by_key(|e| e.created_ms);
    assert_eq!(listed, vec![entry("s1", 1000), entry("s2", 2000)]);
    // A refresh is recorded; one of a session the index lacks adds it.
    let mut touched = entry("s1", 1000);
    (touched.refreshed_ms, touched.issued_ms) = (5000, 5001);
    store.touch_session("o-s", &touched, LONG).await.unwrap();
    store
        .touch_session("o-s", &entry("older", 500), LONG)
        .await
        .unwrap();
    let s1 = store
        .list_sessions("o-s")
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.id == "s1")
        .unwrap();
    assert_eq!(
        (s1.created_ms, s1.refreshed_ms, s1.issued_ms),
        (1000, 5000, 5001)
    );
    assert_eq!(store.list_sessions("o-s").await.unwrap().len(), 3);
    store
        .remove_sessions("o-s", &["s1".into(), "older".into()])
        .await
        .unwrap();
    let left: Vec<String> = store
        .list_sessions("o-s")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, vec!["s2".to_string()]);
    assert_eq!(store.list_sessions("o-other").await.unwrap().len(), 1);
}

/// An outcome saying the login did not finish is taken over by one retry:
/// only while it is still the outcome seen, and then it is a claim again.
async fn an_unfinished_outcome_is_taken_over_once(store: Arc<dyn Store>) {
    assert!(claimed(&store, "c-u", LONG).await);
    store
        .put_code_outcome("c-u", "unfinished", LONG)
        .await
        .unwrap();
    assert!(!store.take_over_code("c-u", "another", LONG).await.unwrap());
    let takers: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .take_over_code("c-u", "unfinished", LONG)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for t in takers {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
    assert_eq!(
        store.claim_code("c-u", LONG).await.unwrap(),
        CodeClaim::Pending
    );
    assert_eq!(store.get_code_outcome("c-u").await.unwrap(), None);
    // Nothing to take over where nothing was stored.
    assert!(!store.take_over_code("c-none", "", LONG).await.unwrap());
}

async fn claim_code_expires(store: Arc<dyn Store>) {
    assert!(claimed(&store, "c-short", Duration::from_millis(300)).await);
    let free = support::eventually(EXPIRY_LIMIT, || async {
        claimed(&store, "c-short", Duration::from_millis(300)).await
    })
    .await;
    assert!(free, "an expired claim still blocks the code");
}

async fn code_outcome_put_get(store: Arc<dyn Store>) {
    assert_eq!(store.get_code_outcome("c-1").await.unwrap(), None);
    store
        .put_code_outcome("c-1", "sealed-1", LONG)
        .await
        .unwrap();
    assert_eq!(
        store.get_code_outcome("c-1").await.unwrap().as_deref(),
        Some("sealed-1")
    );
    assert_eq!(store.get_code_outcome("c-2").await.unwrap(), None);
    store
        .put_code_outcome("c-1", "sealed-2", LONG)
        .await
        .unwrap();
    assert_eq!(
        store.get_code_outcome("c-1").await.unwrap().as_deref(),
        Some("sealed-2")
    );
}

async fn revoke_token_names_one_jti(store: Arc<dyn Store>) {
    store.revoke_token("jti-1", LONG).await.unwrap();
    assert!(store
        .is_revoked(&check(Some("jti-1"), "o-1", None, 10))
        .await
        .unwrap());
    assert!(store
        .is_revoked(&check(Some("jti-1"), "o-other", Some("f-1"), 10))
        .await
        .unwrap());
    assert!(!store
        .is_revoked(&check(Some("jti-2"), "o-1", None, 10))
        .await
        .unwrap());
    assert!(!store
        .is_revoked(&check(None, "o-1", None, 10))
        .await
        .unwrap());
}

/// A time to live no store can represent (say, from a token claiming
/// `exp = i64::MAX`) is clamped: the call succeeds and the entry lives.
async fn endless_ttls_are_clamped_not_refused(store: Arc<dyn Store>) {
    for ttl in [Duration::MAX, Duration::from_secs(i64::MAX as u64)] {
        store.revoke_token("jti-endless", ttl).await.unwrap();
        store.revoke_family("f-endless", ttl).await.unwrap();
        store.revoke_subject("o-endless", 10, ttl).await.unwrap();
        store.claim_code("c-endless", ttl).await.unwrap();
        store.count("k-endless", ttl).await.unwrap();
        store
            .put_session("o-endless", &session("k", None), ttl)
            .await
            .unwrap();
    }
    assert!(store
        .is_revoked(&check(Some("jti-endless"), "o-x", None, 10))
        .await
        .unwrap());
    assert!(store
        .is_revoked(&check(None, "o-endless", None, 10))
        .await
        .unwrap());
    assert!(store.get_session("o-endless").await.unwrap().is_some());
}

/// Fill a store with revocations until it refuses one; every revocation it
/// took must still hold, the refusal must be `store_full` (not "down"), and
/// the store must go on answering everything else.
async fn a_full_store_refuses_revocations_and_forgets_none(store: Arc<dyn Store>) {
    let mut held = Vec::new();
    let refused = loop {
        let jti = format!("jti-{}-{}", held.len(), "x".repeat(64));
        match store.revoke_token(&jti, LONG).await {
            Ok(()) => held.push(jti),
            Err(e) => break e,
        }
        assert!(held.len() < 1_000_000, "the store never filled up");
    };
    assert!(matches!(refused, StoreError::Full { .. }), "{refused:?}");
    assert_eq!(wxgate::error::ApiError::from(refused).code(), "store_full");
    assert!(
        held.len() >= 100,
        "full after only {} revocations",
        held.len()
    );
    for jti in &held {
        assert!(
            store
                .is_revoked(&check(Some(jti), "o", None, 1))
                .await
                .unwrap(),
            "{jti} was forgotten"
        );
    }
    // Full is not down: no fail-fast, reads and pings answer.
    store.ping().await.unwrap();
    assert_eq!(store.get_session("nobody").await.unwrap(), None);
    // Full stays full, not down. (At Redis's `maxmemory` the edge moves a
    // little as Redis frees buffers: one more may fit, and is then held.)
    match store.revoke_token("jti-one-more", LONG).await {
        Err(StoreError::Full { .. }) => {}
        Ok(()) => assert!(store
            .is_revoked(&check(Some("jti-one-more"), "o", None, 1))
            .await
            .unwrap()),
        Err(e) => panic!("a full store answered {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_a_full_store_refuses_revocations_and_forgets_none() {
    let limits = MemoryLimits {
        max_revocations: 2_000,
        ..MemoryLimits::default()
    };
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(&limits));
    a_full_store_refuses_revocations_and_forgets_none(Arc::clone(&store)).await;
    // Other kinds of revocation have their own room.
    store.revoke_family("f", LONG).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_full_store_refuses_revocations_and_forgets_none() {
    let server =
        RedisServer::start_with(&["--maxmemory", "3mb", "--maxmemory-policy", "noeviction"]);
    let store = redis_store(&server).await;
    assert_eq!(store.eviction().await.unwrap(), Eviction::Never);
    a_full_store_refuses_revocations_and_forgets_none(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_an_evicting_policy_is_reported() {
    let server = RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru"]);
    let store = redis_store(&server).await;
    assert_eq!(
        store.eviction().await.unwrap(),
        Eviction::Evicts {
            policy: "allkeys-lru".into()
        }
    );
    assert_eq!(memory().eviction().await.unwrap(), Eviction::Never);
}

async fn revoke_subject_covers_tokens_issued_up_to_before(store: Arc<dyn Store>) {
    store.revoke_subject("o-1", 1000, LONG).await.unwrap();
    for iat in [0, 999, 1000] {
        assert!(
            store
                .is_revoked(&check(Some("j"), "o-1", Some("f"), iat))
                .await
                .unwrap(),
            "iat {iat} <= 1000 must be revoked"
        );
    }
    for iat in [1001, 5000] {
        assert!(
            !store
                .is_revoked(&check(Some("j"), "o-1", Some("f"), iat))
                .await
                .unwrap(),
            "iat {iat} > 1000 must not be revoked"
        );
    }
    assert!(!store
        .is_revoked(&check(Some("j"), "o-2", Some("f"), 0))
        .await
        .unwrap());
    // A later logout moves the line.
    store.revoke_subject("o-1", 2000, LONG).await.unwrap();
    assert!(store
        .is_revoked(&check(None, "o-1", None, 1500))
        .await
        .unwrap());
}

async fn revoke_family_names_one_family(store: Arc<dyn Store>) {
    store.revoke_family("f-1", LONG).await.unwrap();
    assert!(store
        .is_revoked(&check(Some("j-1"), "o-1", Some("f-1"), 10))
        .await
        .unwrap());
    assert!(store
        .is_revoked(&check(None, "o-2", Some("f-1"), u64::MAX))
        .await
        .unwrap());
    assert!(!store
        .is_revoked(&check(Some("j-1"), "o-1", Some("f-2"), 10))
        .await
        .unwrap());
    assert!(!store
        .is_revoked(&check(Some("j-1"), "o-1", None, 10))
        .await
        .unwrap());
}

async fn nothing_is_revoked_in_a_fresh_store(store: Arc<dyn Store>) {
    assert!(!store
        .is_revoked(&check(Some("j"), "o", Some("f"), 0))
        .await
        .unwrap());
    // Revoking one thing does not revoke unknown tokens either.
    store.revoke_token("other", LONG).await.unwrap();
    assert!(!store
        .is_revoked(&check(Some("j"), "o", Some("f"), 0))
        .await
        .unwrap());
}

async fn refresh_fresh_then_reused(store: Arc<dyn Store>) {
    let rec = record("o-1", "f-1");
    store.put_refresh("h-1", &rec, LONG).await.unwrap();
    store
        .put_refresh("h-2", &record("o-1", "f-1"), LONG)
        .await
        .unwrap();
    assert_eq!(
        store.take_refresh("h-1", LONG).await.unwrap(),
        RefreshTake::Fresh(rec.clone())
    );
    assert_eq!(
        store.take_refresh("h-1", LONG).await.unwrap(),
        RefreshTake::Reused(rec.clone())
    );
    assert_eq!(
        store.take_refresh("h-1", LONG).await.unwrap(),
        RefreshTake::Reused(rec.clone())
    );
    assert!(matches!(
        store.take_refresh("h-2", LONG).await.unwrap(),
        RefreshTake::Fresh(_)
    ));
    assert_eq!(
        store.take_refresh("h-unknown", LONG).await.unwrap(),
        RefreshTake::Unknown
    );
    assert_eq!(
        store.take_refresh("h-unknown", LONG).await.unwrap(),
        RefreshTake::Unknown
    );
}

async fn count_counts_per_key(store: Arc<dyn Store>) {
    let ttl = Duration::from_secs(3600);
    for expected in 1..=3 {
        assert_eq!(store.count("ip:1", ttl).await.unwrap(), expected);
    }
    assert_eq!(store.count("ip:2", ttl).await.unwrap(), 1);
    assert_eq!(store.count("ip:1", ttl).await.unwrap(), 4);
}

async fn count_expires_after_its_ttl(store: Arc<dyn Store>) {
    let ttl = Duration::from_secs(1);
    let first = store.count("burst", ttl).await.unwrap();
    assert_eq!(first, 1);
    // Keep counting: the counter must start again at 1 once it expired.
    let deadline = Instant::now() + EXPIRY_LIMIT;
    let mut max = first;
    loop {
        let c = store.count("burst", ttl).await.unwrap();
        if c < max {
            assert_eq!(c, 1, "an expired counter starts again at 1");
            break;
        }
        max = c;
        assert!(
            Instant::now() < deadline,
            "a counter with a 1 s ttl never expired (count reached {max})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(max >= 2, "counts within the ttl were counted together");
}

async fn ping_answers(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
}

async fn concurrent_take_refresh_has_one_winner(store: Arc<dyn Store>) {
    store
        .put_refresh("h-race", &record("o-1", "f-1"), LONG)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.take_refresh("h-race", LONG).await.unwrap() })
        })
        .collect();
    let (mut fresh, mut reused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            RefreshTake::Fresh(_) => fresh += 1,
            RefreshTake::Reused(_) => reused += 1,
            RefreshTake::Unknown => panic!("a stored refresh token was unknown"),
        }
    }
    assert_eq!((fresh, reused), (1, 19));
}

async fn concurrent_claim_code_has_one_winner(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { claimed(&store, "c-race", LONG).await })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
}

// ---------------------------------------------------------------------------
// Redis only
// ---------------------------------------------------------------------------

/// One call of every store method, timed; `ok` says whether it succeeded.
async fn leases_have_one_holder_until_given_back(store: Arc<dyn Store>) {
    assert!(store.take_lease("l", "a", LONG).await.unwrap());
    assert!(!store.take_lease("l", "b", LONG).await.unwrap());
    assert!(
        !store.take_lease("l", "a", LONG).await.unwrap(),
        "not re-entrant"
    );
    // Only the holder gives it back.
    store.release_lease("l", "b").await.unwrap();
    assert!(!store.take_lease("l", "b", LONG).await.unwrap());
    store.release_lease("l", "a").await.unwrap();
    assert!(store.take_lease("l", "b", LONG).await.unwrap());
    // Another name is another lease; a lease ends with its ttl.
    assert!(store
        .take_lease("short", "a", Duration::from_millis(100))
        .await
        .unwrap());
    let freed = support::eventually(Duration::from_secs(3), || {
        let store = store.clone();
        async move { store.take_lease("short", "c", LONG).await.unwrap() }
    })
    .await;
    assert!(freed, "a lease ends with its ttl");
}

async fn access_tokens_are_kept_per_app_until_their_ttl(store: Arc<dyn Store>) {
    let record = AccessTokenRecord {
        token: Secret::from("AT-store-test"),
        expires_at_ms: 1_700_000_720_000,
        refresh_at_ms: 1_700_000_690_000,
    };
    assert_eq!(store.get_access_token("wxa").await.unwrap(), None);
    store
        .put_access_token("wxa", &record, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(store.get_access_token("wxa").await.unwrap(), Some(record));
    assert_eq!(store.get_access_token("wxb").await.unwrap(), None);
    let gone = support::eventually(Duration::from_secs(3), || {
        let store = store.clone();
        async move { store.get_access_token("wxa").await.unwrap().is_none() }
    })
    .await;
    assert!(gone, "an access token leaves with its ttl");
}

async fn get_refresh_looks_without_taking(store: Arc<dyn Store>) {
    let rec = record("o-1", "f-1");
    assert_eq!(
        store.get_refresh("h-1").await.unwrap(),
        RefreshTake::Unknown
    );
    store.put_refresh("h-1", &rec, LONG).await.unwrap();
    assert_eq!(
        store.get_refresh("h-1").await.unwrap(),
        RefreshTake::Fresh(rec.clone())
    );
    // Looking marks nothing: the first presentation is still fresh.
    assert_eq!(
        store.take_refresh("h-1", LONG).await.unwrap(),
        RefreshTake::Fresh(rec.clone())
    );
    // Pending a rotation, a look still says fresh (the take decides).
    assert_eq!(
        store.get_refresh("h-1").await.unwrap(),
        RefreshTake::Fresh(rec.clone())
    );
    store.complete_refresh("h-1", LONG).await.unwrap();
    // A spent token is seen as reused by a look too (before the hook is asked).
    assert_eq!(
        store.get_refresh("h-1").await.unwrap(),
        RefreshTake::Reused(rec.clone())
    );
    assert_eq!(
        store.take_refresh("h-1", LONG).await.unwrap(),
        RefreshTake::Reused(rec)
    );
}

async fn call_everything(store: &Arc<dyn Store>) -> Vec<(&'static str, Duration, bool)> {
    let mut out = Vec::new();
    macro_rules! timed {
        ($name:literal, $call:expr) => {{
            let started = Instant::now();
            let ok = $call.await.is_ok();
            out.push(($name, started.elapsed(), ok));
        }};
    }
    timed!(
        "put_session",
        store.put_session("o", &session("k", None), LONG)
    );
    timed!("get_session", store.get_session("o"));
    timed!("claim_code", store.claim_code("c", LONG));
    timed!("take_over_code", store.take_over_code("c", "", LONG));
    timed!("add_session", store.add_session("o", &entry("s", 1), LONG));
    timed!(
        "touch_session",
        store.touch_session("o", &entry("s", 2), LONG)
    );
    timed!("list_sessions", store.list_sessions("o"));
    timed!("link_uid", store.link_uid("u", "o", LONG));
    timed!("uid_openids", store.uid_openids("u"));
    timed!("release_code", store.release_code("c"));
    timed!("put_code_outcome", store.put_code_outcome("c", "s", LONG));
    timed!("get_code_outcome", store.get_code_outcome("c"));
    timed!("revoke_token", store.revoke_token("j", LONG));
    timed!("revoke_subject", store.revoke_subject("o", 1, LONG));
    timed!("revoke_family", store.revoke_family("f", LONG));
    timed!(
        "put_refresh",
        store.put_refresh("h", &record("o", "f"), LONG)
    );
    timed!("take_refresh", store.take_refresh("h", LONG));
    timed!("get_refresh", store.get_refresh("h"));
    timed!("get_access_token", store.get_access_token("a"));
    timed!("take_lease", store.take_lease("l", "h", LONG));
    timed!("release_lease", store.release_lease("l", "h"));
    timed!("count", store.count("k", Duration::from_secs(60)));
    timed!("ping", store.ping());
    out
}

/// A raw connection to the test's Redis, to look behind the store's back.
async fn raw_connection(server: &RedisServer) -> ::redis::aio::MultiplexedConnection {
    ::redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection to the test redis")
}

/// An error about one key (here a key of the wrong type) fails that call
/// only: the store does not start failing fast for everyone else.
#[tokio::test]
async fn redis_a_command_error_does_not_fail_other_calls() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let mut raw = raw_connection(&server).await;
    let key = format!("{PREFIX}rate:poisoned");
    let _: () = ::redis::cmd("HSET")
        .arg(&key)
        .arg("f")
        .arg("v")
        .query_async(&mut raw)
        .await
        .unwrap();
    let err = store.count("poisoned", LONG).await.unwrap_err();
    assert!(
        matches!(err, wxgate::store::StoreError::Redis(_)),
        "{err:?}"
    );
    // Right away, without waiting out a fail-fast window:
    assert_eq!(store.count("healthy", LONG).await.unwrap(), 1);
    store.ping().await.unwrap();
    store.revoke_token("jti-after", LONG).await.unwrap();
}

#[tokio::test]
async fn redis_every_key_has_the_prefix_and_a_ttl() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let calls = call_everything(&store).await;
    assert!(calls.iter().all(|(_, _, ok)| *ok), "{calls:?}");
    // What call_everything leaves out: a claim that stays, an unknown refresh token.
    store.claim_code("c-kept", LONG).await.unwrap();
    store.take_refresh("h-unknown", LONG).await.unwrap();

    let mut con = raw_connection(&server).await;
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut con)
        .await
        .unwrap();
    let kinds = [
        "login-code:",
        "revoked-jti:",
        "revoked-sub:",
        "revoked-fam:",
        "refresh:",
        "refresh-used:",
        "user-sessions:",
        "rate:",
        "{rev}:live",
        "{rev}:seq",
        "{rev}:feed",
    ];
    for kind in kinds {
        assert!(
            keys.iter()
                .any(|k| k.starts_with(&format!("{PREFIX}{kind}"))),
            "no {kind} key in {keys:?}"
        );
    }
    for key in &keys {
        assert!(
            key.starts_with(PREFIX),
            "{key:?} lacks the prefix {PREFIX:?}"
        );
        let ttl: i64 = ::redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(ttl > 0, "{key:?} has no TTL (PTTL {ttl})");
    }
}

/// A token `call_everything` revokes (its `jti`).
fn revoked_j() -> RevocationCheck<'static> {
    check(Some("j"), "o", Some("f"), 5)
}

/// With Redis gone, revocation checks answer from memory (no store call),
/// until `max_staleness` passes without the feed: then they fail, and
/// `on_error` decides.
async fn revocations_held_then_stale(store: &Arc<dyn Store>) {
    let started = Instant::now();
    assert!(
        store.is_revoked(&revoked_j()).await.unwrap(),
        "a revocation held in memory was not honoured"
    );
    assert!(started.elapsed() < Duration::from_millis(50));
    let stale = support::eventually(Duration::from_secs(5), || async {
        matches!(
            store.is_revoked(&revoked_j()).await,
            Err(StoreError::Stale { .. })
        )
    })
    .await;
    assert!(stale, "revocation checks never went stale without Redis");
}

/// Kill the server: every call fails within the timeout; restart it: the
/// same store works again.
async fn survives_a_crash(mut server: RedisServer) {
    let store = redis_store(&server).await;
    assert!(call_everything(&store).await.iter().all(|c| c.2));

    server.kill();
    assert!(!server.is_up());
    revocations_held_then_stale(&store).await;
    let limit = TIMEOUT + Duration::from_millis(300);
    let calls = call_everything(&store).await;
    let slowest = calls.iter().map(|c| c.1).max().unwrap();
    println!("with redis-server killed: slowest failing call {slowest:?} (timeout {TIMEOUT:?})");
    for (name, took, ok) in &calls {
        assert!(!ok, "{name} succeeded with redis-server killed");
        assert!(
            *took <= limit,
            "{name} took {took:?} to fail (limit {limit:?})"
        );
    }
    // Calls keep failing promptly after the fail-fast window, too.
    let later = Instant::now() + Duration::from_millis(600);
    while Instant::now() < later {
        let started = Instant::now();
        assert!(store.ping().await.is_err());
        assert!(started.elapsed() <= limit);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    server.restart();
    let back = support::eventually(Duration::from_secs(5), || async {
        store.ping().await.is_ok()
    })
    .await;
    assert!(
        back,
        "the store did not reconnect within 5 s of the restart"
    );
    let calls = call_everything(&store).await;
    assert!(calls.iter().all(|c| c.2), "after the restart: {calls:?}");
    assert!(
        store.settle(Duration::from_secs(5)).await,
        "the revocation feed did not catch up after the restart"
    );
    assert!(store.is_revoked(&revoked_j()).await.unwrap());
    assert_eq!(
        store.get_session("o").await.unwrap(),
        Some(session("k", None))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unix_socket_down_then_back() {
    survives_a_crash(RedisServer::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_tcp_down_then_back() {
    let server = RedisServer::start_tcp();
    assert!(server.url().starts_with("redis://127.0.0.1:"));
    // The whole round trip over TCP, then the crash.
    let store = redis_store(&server).await;
    refresh_fresh_then_reused(store.clone()).await;
    revoke_subject_covers_tokens_issued_up_to_before(store).await;
    survives_a_crash(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_hung_server_times_out_then_recovers() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    store.ping().await.unwrap();

    server.pause();
    let limit = TIMEOUT + Duration::from_millis(300);
    let calls = call_everything(&store).await;
    let slowest = calls.iter().map(|c| c.1).max().unwrap();
    println!("with redis-server stopped: slowest failing call {slowest:?} (timeout {TIMEOUT:?})");
    for (name, took, ok) in &calls {
        assert!(!ok, "{name} succeeded with redis-server stopped");
        assert!(
            *took <= limit,
            "{name} took {took:?} to fail (limit {limit:?})"
        );
    }

    server.resume();
    let back = support::eventually(Duration::from_secs(5), || async {
        store.ping().await.is_ok()
    })
    .await;
    assert!(back, "the store did not recover within 5 s of the resume");
    store
        .put_session("o-2", &session("k2", None), LONG)
        .await
        .unwrap();
    assert!(store.get_session("o-2").await.unwrap().is_some());
}

/// A Redis written by a version before the revocation feed and hash tags:
/// its revocations (one key each) are honoured, its refresh tokens (under
/// untagged names) still refresh once and are then spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_state_of_the_previous_version_is_taken_over() {
    let server = RedisServer::start();
    let mut con = raw_connection(&server).await;
    let set = |k: String, v: String| {
        ::redis::cmd("SET")
            .arg(format!("{PREFIX}{k}"))
            .arg(v)
            .arg("EX")
            .arg(600)
            .clone()
    };
    for (k, v) in [
        ("revoked-jti:old-jti".to_string(), "1".to_string()),
        ("revoked-fam:old-fam".to_string(), "1".to_string()),
        ("revoked-sub:old-user".to_string(), "5000".to_string()),
        (
            "refresh:old-hash".to_string(),
            serde_json::to_string(&record("o-old", "f-old")).unwrap(),
        ),
    ] {
        let _: () = set(k, v).query_async(&mut con).await.unwrap();
    }
    let store = redis_store(&server).await;
    for c in [
        check(Some("old-jti"), "o", None, 1),
        check(None, "o", Some("old-fam"), 1),
        check(None, "old-user", None, 5000),
    ] {
        assert!(store.is_revoked(&c).await.unwrap(), "{c:?}");
    }
    assert!(!store
        .is_revoked(&check(None, "old-user", None, 5001))
        .await
        .unwrap());
    assert!(matches!(
        store.take_refresh("old-hash", LONG).await.unwrap(),
        RefreshTake::Fresh(r) if r.openid == "o-old"
    ));
    store.complete_refresh("old-hash", LONG).await.unwrap();
    assert!(matches!(
        store.take_refresh("old-hash", LONG).await.unwrap(),
        RefreshTake::Reused(_)
    ));
    // The old name is gone: the token moved to its tagged keys.
    let old: Option<String> = ::redis::cmd("GET")
        .arg(format!("{PREFIX}refresh:old-hash"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(old, None);
    // And a revocation made now is still written the old way for instances
    // of the previous version.
    store.revoke_token("new-jti", LONG).await.unwrap();
    let legacy: Option<String> = ::redis::cmd("GET")
        .arg(format!("{PREFIX}revoked-jti:new-jti"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(legacy.as_deref(), Some("1"));
}

/// Revocations written through one store reach another store on the same
/// Redis (another instance) through the feed, with no call per check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_revocations_reach_another_instance_through_the_feed() {
    let server = RedisServer::start();
    let a = redis_store(&server).await;
    let b = redis_store(&server).await;
    let mut events = b
        .revocation_events()
        .expect("the Redis store signals revocations");
    a.revoke_family("fam-pushed", LONG).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), events.changed())
        .await
        .expect("the revocation arrived")
        .unwrap();
    assert!(b
        .is_revoked(&check(None, "o", Some("fam-pushed"), 1))
        .await
        .unwrap());
    // A store started later loads what is live.
    let c = redis_store(&server).await;
    assert!(c
        .is_revoked(&check(None, "o", Some("fam-pushed"), 1))
        .await
        .unwrap());
    // Written again (a logout retried), a revocation adds nothing to the
    // feed, however often: the feed is not a client's to fill.
    let mut con = raw_connection(&server).await;
    let feed = format!("{PREFIX}{{rev}}:feed");
    let before: u64 = ::redis::cmd("XLEN")
        .arg(&feed)
        .query_async(&mut con)
        .await
        .unwrap();
    for _ in 0..20 {
        b.revoke_family("fam-pushed", LONG).await.unwrap();
    }
    let after: u64 = ::redis::cmd("XLEN")
        .arg(&feed)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!((before, after), (1, 1));
    assert!(a
        .is_revoked(&check(None, "o", Some("fam-pushed"), 1))
        .await
        .unwrap());
}

/// Redis keeps a user's WeChat session in their sessions' hash (one key per
/// new user fewer); the list ignores it; a session an earlier version wrote
/// under `session:<openid>` is still read; an ended one leaves the hash.
#[tokio::test]
async fn redis_the_session_key_lives_in_the_users_hash() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let mut con = raw_connection(&server).await;
    store
        .put_session("o-1", &session("key-1", None), LONG)
        .await
        .unwrap();
    store
        .add_session("o-1", &entry("s-1", 1), Duration::from_secs(5))
        .await
        .unwrap();
    let legacy: bool = ::redis::cmd("EXISTS")
        .arg(format!("{PREFIX}session:o-1"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(!legacy, "no key of its own");
    let hash = format!("{PREFIX}user-sessions:o-1");
    let held: bool = ::redis::cmd("HEXISTS")
        .arg(&hash)
        .arg("~wx")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(held);
    // The hash lives as long as the longer of the two (the session's 600 s).
    let ttl: i64 = ::redis::cmd("PTTL")
        .arg(&hash)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(ttl > 500_000, "PTTL {ttl}");
    let listed = store.list_sessions("o-1").await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        store.get_session("o-1").await.unwrap().unwrap().session_key,
        Secret::from("key-1")
    );

    // Written by an earlier version.
    let old = serde_json::to_string(&session("key-2", Some("u-2"))).unwrap();
    let _: () = ::redis::cmd("SET")
        .arg(format!("{PREFIX}session:o-2"))
        .arg(old)
        .arg("EX")
        .arg(60)
        .query_async(&mut con)
        .await
        .unwrap();
    let got = store.get_session("o-2").await.unwrap().unwrap();
    assert_eq!(got.session_key, Secret::from("key-2"));
    assert_eq!(got.unionid.as_deref(), Some("u-2"));

    // Ended, while the hash lives on (a session index): gone on read.
    store
        .put_session("o-3", &session("key-3", None), Duration::from_millis(50))
        .await
        .unwrap();
    store
        .add_session("o-3", &entry("s-3", 1), LONG)
        .await
        .unwrap();
    let ended = support::eventually(Duration::from_secs(5), || async {
        store.get_session("o-3").await.unwrap().is_none()
    })
    .await;
    assert!(ended);
    let held: bool = ::redis::cmd("HEXISTS")
        .arg(format!("{PREFIX}user-sessions:o-3"))
        .arg("~wx")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(!held, "the ended session_key left the hash");
    assert_eq!(store.list_sessions("o-3").await.unwrap().len(), 1);
}
