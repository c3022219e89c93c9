#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use super::*;
use serde_json::Value;
use std::time::Instant;

use crate::error::ApiError;
use crate::secret::Secret;
use crate::wechat::client::WechatClient;
use crate::wechat::reply::WechatError;

const APPID: &str = "wxmock0000000001";
const SECRET: &str = "mock secret+&=";

async fn start() -> (MockWechat, String, tokio::task::JoinHandle<io::Result<()>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mock = MockWechat::new(APPID, SECRET);
    let task = tokio::spawn(mock.clone().serve(listener));
    (mock, format!("http://{addr}"), task)
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn url(base: &str, appid: &str, secret: &str, grant: &str, code: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("appid", appid)
        .append_pair("secret", secret)
        .append_pair("js_code", code)
        .append_pair("grant_type", grant)
        .finish();
    format!("{base}/sns/jscode2session?{query}")
}

async fn raw_call(
    base: &str,
    appid: &str,
    secret: &str,
    grant: &str,
    code: &str,
) -> (u16, Option<String>, String) {
    let res = http()
        .get(url(base, appid, secret, grant, code))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, ct, res.text().await.unwrap())
}

async fn call(base: &str, code: &str) -> Value {
    let (status, _, body) = raw_call(base, APPID, SECRET, "authorization_code", code).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn client(base: &str, timeout: Duration) -> WechatClient {
    WechatClient::new(base, APPID, Secret::from(SECRET), timeout).unwrap()
}

#[test]
fn identities_are_deterministic() {
    let o = MockWechat::openid_for("alice.1");
    assert_eq!(o.len(), 28);
    assert!(o.starts_with('o'));
    assert_eq!(o, MockWechat::openid_for("alice.2"));
    assert_ne!(o, MockWechat::openid_for("bob.1"));
    assert_eq!(
        MockWechat::unionid_for("alice.1"),
        MockWechat::unionid_for("alice")
    );
    assert_eq!(MockWechat::unionid_for("nounion-x.1"), None);
    assert_ne!(
        MockWechat::session_key_for("alice.1"),
        MockWechat::session_key_for("alice.2")
    );
    let key = STANDARD.decode(MockWechat::session_key_for("c")).unwrap();
    assert_eq!(key.len(), 16);
}

#[tokio::test]
async fn a_code_works_once_then_40163() {
    let (mock, base, _task) = start().await;
    let (status, ct, body) = raw_call(&base, APPID, SECRET, "authorization_code", "code-1").await;
    assert_eq!(status, 200);
    assert_eq!(ct.as_deref(), Some("text/plain"));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["openid"], MockWechat::openid_for("code-1"));
    assert_eq!(v["session_key"], MockWechat::session_key_for("code-1"));
    assert_eq!(v["unionid"], MockWechat::unionid_for("code-1").unwrap());
    assert!(v.get("errcode").is_none());
    assert_eq!(call(&base, "code-1").await["errcode"], 40163);
    assert_eq!(call(&base, "code-1").await["errcode"], 40163);
    let v = call(&base, "nounion.1").await;
    assert!(v.get("unionid").is_none() && v["openid"].is_string());
    assert_eq!(mock.calls(), 4);
    assert_eq!(mock.calls_for("code-1"), 3);
    assert_eq!(mock.calls_for("nounion.1"), 1);
    assert_eq!(mock.calls_for("never"), 0);
    assert_eq!(mock.appid(), APPID);
}

#[tokio::test]
async fn special_codes() {
    let (mock, base, _task) = start().await;
    for (code, errcode) in [
        ("invalid", 40029),
        ("blocked", 40226),
        ("busy", -1),
        ("busy", -1),
        ("ratelimited", 45011),
        ("error", 48001),
        ("", 41008),
    ] {
        let v = call(&base, code).await;
        assert_eq!(v["errcode"], errcode, "{code}");
        assert!(v["errmsg"].is_string());
    }
    let (status, _, body) = raw_call(&base, APPID, SECRET, "authorization_code", "notjson").await;
    assert_eq!((status, body.as_str()), (200, "<html>oops</html>"));
    let (status, _, _) = raw_call(&base, APPID, SECRET, "authorization_code", "http500").await;
    assert_eq!(status, 500);
    assert_eq!(mock.calls(), 9);
    assert_eq!(mock.calls_for("busy"), 2);
}

#[tokio::test]
async fn checks_appid_secret_grant_type_and_path() {
    let (mock, base, _task) = start().await;
    let errcode = |(_, _, body): (u16, Option<String>, String)| {
        serde_json::from_str::<Value>(&body).unwrap()["errcode"].clone()
    };
    let r = raw_call(&base, "wxother", SECRET, "authorization_code", "c1").await;
    assert_eq!(errcode(r), 40013);
    let r = raw_call(&base, APPID, "wrong", "authorization_code", "c2").await;
    assert_eq!(errcode(r), 40125);
    let r = raw_call(&base, APPID, SECRET, "client_credential", "c3").await;
    assert_eq!(errcode(r), 40002);
    // A refused call did not use up the code.
    assert!(call(&base, "c1").await["openid"].is_string());
    let res = http()
        .get(format!("{base}/cgi-bin/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(mock.calls(), 4);
}

#[tokio::test]
async fn slow_does_not_block_other_connections() {
    let (_mock, base, _task) = start().await;
    let slow = http()
        .get(url(&base, APPID, SECRET, "authorization_code", "slow"))
        .timeout(Duration::from_millis(300))
        .send();
    let other = call(&base, "invalid");
    let (slow, other) = tokio::join!(slow, other);
    assert!(slow.unwrap_err().is_timeout());
    assert_eq!(other["errcode"], 40029);
}

// --- WechatClient against the mock, end to end ---

#[tokio::test]
async fn client_success_then_code_used() {
    let (mock, base, _task) = start().await;
    let c = client(&format!("{base}/"), Duration::from_secs(5));
    let s = c.code2session("alice.1").await.unwrap();
    assert_eq!(s.openid, MockWechat::openid_for("alice.1"));
    assert_eq!(s.unionid, MockWechat::unionid_for("alice.1"));
    assert_eq!(
        s.session_key.expose_str(),
        Some(MockWechat::session_key_for("alice.1").as_str())
    );
    let e = c.code2session("alice.1").await.unwrap_err();
    assert_eq!(
        ApiError::from(&e),
        ApiError::InvalidCode {
            wechat_errcode: 40163
        }
    );
    let s = c.code2session("nounion.1").await.unwrap();
    assert_eq!(s.unionid, None);
    assert_eq!(mock.calls(), 3);
}

#[tokio::test]
async fn client_error_codes() {
    let (mock, base, _task) = start().await;
    let c = client(&base, Duration::from_secs(5));
    let cases = [
        (
            "invalid",
            ApiError::InvalidCode {
                wechat_errcode: 40029,
            },
        ),
        (
            "blocked",
            ApiError::CodeBlocked {
                wechat_errcode: 40226,
            },
        ),
        (
            "ratelimited",
            ApiError::RateLimited {
                retry_after_secs: 60,
                wechat_errcode: Some(45011),
            },
        ),
        (
            "error",
            ApiError::WechatError {
                wechat_errcode: Some(48001),
            },
        ),
        (
            "notjson",
            ApiError::WechatError {
                wechat_errcode: None,
            },
        ),
        (
            "http500",
            ApiError::WechatError {
                wechat_errcode: None,
            },
        ),
    ];
    for (code, expected) in cases {
        let e = c.code2session(code).await.unwrap_err();
        assert_eq!(ApiError::from(&e), expected, "{code}: {e:?}");
        assert_eq!(mock.calls_for(code), 1, "{code} must not be retried");
    }
    let e = c.code2session("http500").await.unwrap_err();
    assert_eq!(e, WechatError::HttpStatus(500));
    let wrong =
        WechatClient::new(&base, APPID, Secret::from("nope"), Duration::from_secs(5)).unwrap();
    let e = wrong.code2session("fresh").await.unwrap_err();
    assert!(
        matches!(e, WechatError::Api { errcode: 40125, .. }),
        "{e:?}"
    );
}

#[tokio::test]
async fn client_retries_busy_exactly_once() {
    let (mock, base, _task) = start().await;
    let c = client(&base, Duration::from_secs(5));
    let started = Instant::now();
    let e = c.code2session("busy").await.unwrap_err();
    assert!(started.elapsed() >= crate::wechat::client::RETRY_BACKOFF);
    assert_eq!(
        ApiError::from(&e),
        ApiError::WechatUnavailable {
            wechat_errcode: Some(-1)
        }
    );
    assert_eq!(mock.calls_for("busy"), 2);
}

#[tokio::test]
async fn client_skips_the_retry_without_time_left() {
    let (mock, base, _task) = start().await;
    // 400 ms leaves less than back-off + minimum budget.
    let c = client(&base, Duration::from_millis(400));
    let e = c.code2session("busy").await.unwrap_err();
    assert!(matches!(e, WechatError::Api { errcode: -1, .. }), "{e:?}");
    assert_eq!(mock.calls_for("busy"), 1);
}

#[tokio::test]
async fn client_times_out_and_does_not_retry() {
    let (mock, base, _task) = start().await;
    let timeout = Duration::from_millis(500);
    let c = client(&base, timeout);
    let started = Instant::now();
    let e = c.code2session("slow").await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(e, WechatError::Timeout);
    assert_eq!(ApiError::from(&e), ApiError::WechatTimeout);
    assert!(
        elapsed >= timeout && elapsed < timeout + Duration::from_secs(1),
        "{elapsed:?}"
    );
    assert_eq!(mock.calls_for("slow"), 1);
}
