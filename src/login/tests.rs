//! LoginService over the memory store with a fake WeChat and a set clock.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::net::IpAddr;
use std::time::Duration;

use super::*;
use crate::testing::{FakeWechat, LoginHarness, APPID};

fn code(c: &str) -> ValidLogin {
    ValidLogin {
        device: None,
        code: c.to_string(),
        encrypted: None,
        signed: None,
    }
}

fn ip(last: u8) -> Option<IpAddr> {
    Some(IpAddr::from([203, 0, 113, last]))
}

#[tokio::test]
async fn login_issues_tokens_for_the_wechat_identity_and_keeps_the_session() {
    let h = LoginHarness::new("");
    let done = h.service.login(code("c1"), ip(1)).await.unwrap();
    assert_eq!(done.grant.openid, "o-c1");
    assert_eq!(done.grant.unionid.as_deref(), Some("u-c1"));
    assert_eq!(done.user, None);
    let id = h.sessions.tokens().verify(&done.grant.token).unwrap();
    assert_eq!(id.openid, "o-c1");
    assert_eq!(id.appid.as_deref(), Some(APPID));
    let session = h.store.get_session("o-c1").await.unwrap().unwrap();
    assert_eq!(
        session.session_key.expose_str(),
        Some(FakeWechat::session_key("c1").as_str())
    );
    assert_eq!(h.wechat.calls("c1"), 1);
}

#[tokio::test]
async fn a_double_tap_makes_one_wechat_call_and_gets_the_same_tokens() {
    let h = LoginHarness::new("");
    let first = h.service.login(code("c2"), ip(1)).await.unwrap();
    let second = h.service.login(code("c2"), ip(1)).await.unwrap();
    assert_eq!(first.grant, second.grant);
    assert_eq!(h.wechat.calls("c2"), 1);
}

#[tokio::test]
async fn a_code_replayed_after_logout_does_not_bring_the_session_back() {
    for all in [false, true] {
        let h = LoginHarness::new("");
        let first = h.service.login(code("c9"), ip(1)).await.unwrap();
        let id = h.sessions.tokens().verify(&first.grant.token).unwrap();
        h.sessions.logout(&id, all).await.unwrap();
        assert_eq!(
            h.service.login(code("c9"), ip(1)).await.unwrap_err(),
            ApiError::InvalidCode {
                wechat_errcode: 40163
            }
        );
        assert_eq!(h.wechat.calls("c9"), 1);
        // A new code is a new session.
        h.service.login(code("c10"), ip(1)).await.unwrap();
    }
}

#[tokio::test]
async fn concurrent_requests_with_one_code_share_one_call() {
    let h = LoginHarness::new("");
    let (a, b, c) = tokio::join!(
        h.service.login(code("c3"), ip(1)),
        h.service.login(code("c3"), ip(2)),
        h.service.login(code("c3"), ip(3)),
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert_eq!(a.grant, b.grant);
    assert_eq!(a.grant, c.grant);
    assert_eq!(h.wechat.calls("c3"), 1);
}

#[tokio::test]
async fn a_refused_code_is_remembered_and_not_sent_again() {
    let h = LoginHarness::new("");
    for _ in 0..2 {
        assert_eq!(
            h.service.login(code("invalid"), ip(1)).await.unwrap_err(),
            ApiError::InvalidCode {
                wechat_errcode: 40029
            }
        );
        assert_eq!(
            h.service.login(code("blocked"), ip(1)).await.unwrap_err(),
            ApiError::CodeBlocked {
                wechat_errcode: 40226
            }
        );
    }
    assert_eq!(h.wechat.calls("invalid"), 1);
    assert_eq!(h.wechat.calls("blocked"), 1);
}

#[tokio::test]
async fn a_transient_failure_is_not_remembered() {
    let h = LoginHarness::new("");
    for _ in 0..2 {
        assert_eq!(
            h.service.login(code("busy"), ip(1)).await.unwrap_err(),
            ApiError::WechatUnavailable {
                wechat_errcode: Some(-1)
            }
        );
        assert_eq!(
            h.service.login(code("timeout"), ip(1)).await.unwrap_err(),
            ApiError::WechatTimeout
        );
    }
    assert_eq!(h.wechat.calls("busy"), 2);
    assert_eq!(h.wechat.calls("timeout"), 2);
}

#[tokio::test]
async fn per_ip_limit_counts_in_windows_of_the_clock() {
    let h = LoginHarness::new(r#"rate_limit_per_ip = "2/min""#);
    // 10 s into a minute: the window ends in 50 s.
    h.clock.set(1_700_000_040_000 + 10_000);
    assert!(h.service.login(code("r1"), ip(1)).await.is_ok());
    assert!(h.service.login(code("r2"), ip(1)).await.is_ok());
    assert_eq!(
        h.service.login(code("r3"), ip(1)).await.unwrap_err(),
        ApiError::RateLimited {
            retry_after_secs: 50,
            wechat_errcode: None
        }
    );
    assert_eq!(h.wechat.calls("r3"), 0, "a refused login reached WeChat");
    // Another client is counted on its own.
    assert!(h.service.login(code("r4"), ip(2)).await.is_ok());
    // The next window starts afresh.
    h.clock.advance(Duration::from_secs(50));
    assert!(h.service.login(code("r3"), ip(1)).await.is_ok());
}

#[tokio::test]
async fn global_limit_counts_every_client() {
    let h = LoginHarness::new(r#"rate_limit_global = "2/h""#);
    h.clock.set(1_699_999_200_000); // the start of an hour
    assert!(h.service.login(code("g1"), ip(1)).await.is_ok());
    assert!(h.service.login(code("g2"), ip(2)).await.is_ok());
    assert_eq!(
        h.service.login(code("g3"), ip(3)).await.unwrap_err(),
        ApiError::RateLimited {
            retry_after_secs: 3600,
            wechat_errcode: None
        }
    );
    assert!(h.service.login(code("g4"), None).await.is_err());
}

#[tokio::test]
async fn a_bad_signature_is_refused_but_the_session_is_kept() {
    let h = LoginHarness::new("");
    let req = ValidLogin {
        signed: Some((r#"{"nickName":"n"}"#.into(), "00".repeat(20))),
        ..code("s1")
    };
    assert_eq!(
        h.service.login(req, ip(1)).await.unwrap_err(),
        ApiError::InvalidSignature
    );
    assert!(h.store.get_session("o-s1").await.unwrap().is_some());
}

#[tokio::test]
async fn decrypt_needs_the_stored_session() {
    let h = LoginHarness::new("");
    let key = FakeWechat::session_key("d1");
    let iv = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [1u8; 16]);
    let plain = format!(r#"{{"phone":"1","watermark":{{"appid":"{APPID}"}}}}"#);
    let data = crypto::encrypt_user_data(&key, &iv, plain.as_bytes()).unwrap();
    assert_eq!(
        h.service.decrypt("o-d1", &data, &iv).await.unwrap_err(),
        ApiError::SessionExpired
    );
    h.service.login(code("d1"), ip(1)).await.unwrap();
    let v = h.service.decrypt("o-d1", &data, &iv).await.unwrap();
    assert_eq!(v["phone"], "1");
    // Someone else's session key does not open it.
    h.service.login(code("d2"), ip(1)).await.unwrap();
    assert_eq!(
        h.service.decrypt("o-d2", &data, &iv).await.unwrap_err(),
        ApiError::InvalidEncryptedData
    );
}

/// Code flights of the app `wxapp` over a memory store.
fn memory_flights() -> Arc<CodeFlights> {
    let store: Arc<dyn Store> = Arc::new(crate::store::memory::MemoryStore::default());
    Arc::new(CodeFlights::new(
        store,
        "wxapp",
        Duration::from_secs(1),
        Duration::ZERO,
    ))
}

#[tokio::test]
async fn a_login_that_fails_after_wechat_resumes_without_spending_the_code_again() {
    let flights = memory_flights();
    let wx = WxLogin {
        openid: "o-1".into(),
        unionid: None,
        session_key: crate::secret::Secret::from("a2V5a2V5a2V5a2V5a2V5aw=="),
        risk: Some(3),
    };
    // First attempt: WeChat accepted the code, then the hook did not answer.
    let given = wx.clone();
    let first = flights
        .once("code-1", move |spent| async move {
            assert!(spent.is_none(), "a new code starts with nothing");
            Attempt {
                outcome: Err(ApiError::HookUnavailable { timed_out: false }),
                spent: Some(given),
            }
        })
        .await;
    assert_eq!(
        first.unwrap_err(),
        ApiError::HookUnavailable { timed_out: false }
    );
    // The retry is handed what WeChat said, and its failure is not final.
    let seen = Arc::new(std::sync::Mutex::new(None));
    let record = seen.clone();
    let second = flights
        .once("code-1", move |spent| async move {
            *record.lock().unwrap() = spent.map(|w| w.openid);
            Attempt::from(Err(ApiError::StoreUnavailable))
        })
        .await;
    assert_eq!(second.unwrap_err(), ApiError::StoreUnavailable);
    assert_eq!(seen.lock().unwrap().as_deref(), Some("o-1"));
    // What WeChat said stays stored until a login finishes: a third attempt gets it too.
    let third = flights
        .once("code-1", |spent| async move {
            Attempt::from(Err(if spent.is_some() {
                ApiError::Internal
            } else {
                ApiError::WechatTimeout
            }))
        })
        .await;
    assert_eq!(third.unwrap_err(), ApiError::Internal);
}

/// A retry prompted by a failed flight's answer starts a new flight: it is
/// never handed the answer it is retrying. (The flight used to end just
/// after its answer was out, and a quick retry on another thread could join
/// it; several rounds give that window many chances.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_right_after_a_failure_is_a_new_attempt() {
    let flights = memory_flights();
    for round in 0..300 {
        let code = format!("code-{round}");
        let first = flights
            .once(&code, |_| async {
                Attempt::from(Err(ApiError::HookUnavailable { timed_out: false }))
            })
            .await;
        assert_eq!(
            first.unwrap_err(),
            ApiError::HookUnavailable { timed_out: false }
        );
        let retry = flights
            .once(&code, |_| async {
                Attempt::from(Err(ApiError::StoreUnavailable))
            })
            .await;
        assert_eq!(
            retry.unwrap_err(),
            ApiError::StoreUnavailable,
            "round {round}"
        );
    }
}
