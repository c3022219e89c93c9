#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use super::*;
use crate::store::memory::MemoryStore;
use crate::testing::FakeWechat;

const APP: &str = "wxapp";
const TIMEOUT: Duration = Duration::from_secs(1);

fn instance(wechat: &Arc<FakeWechat>, store: &Arc<dyn Store>) -> Arc<AccessTokens> {
    Arc::new(AccessTokens::new(
        wechat.clone(),
        store.clone(),
        APP,
        TIMEOUT,
    ))
}

#[test]
fn tokens_are_replaced_before_the_last_five_minutes() {
    assert_eq!(usable_for(7200), 6900);
    assert_eq!(usable_for(601), 301);
    assert_eq!(usable_for(600), 300);
    assert_eq!(usable_for(2), 1);
    assert_eq!(usable_for(1), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_demand_on_three_instances_makes_one_call() {
    let wechat = Arc::new(FakeWechat::default());
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let instances: Vec<_> = (0..3).map(|_| instance(&wechat, &store)).collect();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let t = instances[i % 3].clone();
        tasks.push(tokio::spawn(async move { t.get().await }));
    }
    for task in tasks {
        let r = task.await.unwrap().unwrap();
        assert_eq!(r.token.expose_str(), Some("AT-1"));
    }
    assert_eq!(wechat.token_calls(), (1, 0));
}

#[tokio::test]
async fn an_expired_token_is_fetched_once_more() {
    let wechat = Arc::new(FakeWechat::default());
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let a = instance(&wechat, &store);
    // A token due for refresh at once (WeChat gave it 1 s: usable for 0 s).
    wechat.set_expires_in(1);
    let first = a.get().await.unwrap();
    assert!(first.refresh_at_ms <= unix_now_ms());
    wechat.set_expires_in(7200);
    let b = instance(&wechat, &store);
    let second = b.get().await.unwrap();
    assert_eq!(wechat.token_calls().0, 2);
    // Normal mode: WeChat gave the same token again; now it is good for a while.
    assert_eq!(second.token, first.token);
    assert!(second.refresh_at_ms > unix_now_ms() + 6_000_000);
    assert_eq!(a.get().await.unwrap().token, second.token);
    assert_eq!(wechat.token_calls().0, 2);
}

#[tokio::test]
async fn a_refused_token_is_replaced_with_force_refresh_at_most_every_30_s() {
    let wechat = Arc::new(FakeWechat::default());
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    // No back-off after a failure here: each step asks again.
    let a = Arc::new(
        AccessTokens::new(wechat.clone(), store.clone(), APP, TIMEOUT).with_backoff(Duration::ZERO),
    );
    let b = instance(&wechat, &store);
    let old = a.get().await.unwrap().token;
    let new = a.replace(&old).await.unwrap().token;
    assert_ne!(new, old);
    assert_eq!(wechat.token_calls(), (2, 1));
    // The other instance, refused the old token too, finds the new one stored.
    assert_eq!(b.replace(&old).await.unwrap().token, new);
    assert_eq!(wechat.token_calls(), (2, 1));
    // Refused again within 30 s: no second force_refresh; WeChat's normal
    // mode hands back the refused token, which is never handed out.
    assert_eq!(
        a.replace(&new).await.unwrap_err(),
        ApiError::WechatUnavailable {
            wechat_errcode: Some(40001)
        }
    );
    assert_eq!(wechat.token_calls(), (3, 1));
    // Unless WeChat has another one by then (someone else refreshed it).
    wechat.rotate_elsewhere();
    let other = a.replace(&new).await.unwrap().token;
    assert_ne!(other, new);
    assert_eq!(wechat.token_calls(), (4, 1));
}

#[tokio::test]
async fn a_lease_held_elsewhere_is_waited_for() {
    let wechat = Arc::new(FakeWechat::default());
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    // Another instance is fetching (it holds the lease) and stores its token.
    assert!(store
        .take_lease("access-token:wxapp", "elsewhere", Duration::from_secs(5))
        .await
        .unwrap());
    let a = instance(&wechat, &store);
    let waiting = tokio::spawn({
        let a = a.clone();
        async move { a.get().await }
    });
    tokio::task::yield_now().await;
    let record = AccessTokenRecord {
        token: Secret::from("AT-from-elsewhere"),
        expires_at_ms: unix_now_ms() + 7_200_000,
        refresh_at_ms: unix_now_ms() + 6_900_000,
    };
    store
        .put_access_token("wxapp", &record, Duration::from_secs(60))
        .await
        .unwrap();
    let got = waiting.await.unwrap().unwrap();
    assert_eq!(got.token.expose_str(), Some("AT-from-elsewhere"));
    assert_eq!(wechat.token_calls().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_share_one_hung_fetch_and_its_failure() {
    // stable_token hangs, then times out: six callers wait for that one call
    // (not six calls one after another), and hear its failure.
    let wechat = Arc::new(FakeWechat::default());
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let a = instance(&wechat, &store);
    let hang = Duration::from_millis(400);
    wechat.hang_tokens(Some(hang));
    let started = Instant::now();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move { a.get().await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap_err(), ApiError::WechatTimeout);
    }
    assert!(started.elapsed() < hang * 2, "{:?}", started.elapsed());
    assert_eq!(wechat.failed_token_calls(), 1);
    // Within the back-off, the failure is answered again without a call.
    wechat.hang_tokens(None);
    assert_eq!(a.get().await.unwrap_err(), ApiError::WechatTimeout);
    assert_eq!(wechat.token_calls().0, 0);
    // After it, WeChat is asked again.
    let b = Arc::new(
        AccessTokens::new(wechat.clone(), store.clone(), APP, TIMEOUT).with_backoff(Duration::ZERO),
    );
    assert!(b.get().await.is_ok());
    assert_eq!(wechat.token_calls().0, 1);
}
