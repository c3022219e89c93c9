//! A mock of WeChat's `jscode2session`, for `wxgate dev` and the tests.
//!
//! Real login codes only come from a phone, so without a mock nobody could
//! try the gateway locally or test its login path. The mock behaves like
//! WeChat where it matters to wxgate: codes are single-use (a second call
//! answers 40163), replies are JSON sent as `text/plain`, and a few magic
//! codes produce each failure wxgate must handle. It counts every call, so
//! tests can assert that a login made exactly one upstream call.
//!
//! Codes (`js_code`):
//!
//! | code          | answer                                                   |
//! |---------------|----------------------------------------------------------|
//! | `invalid`     | errcode 40029 (invalid code)                             |
//! | `blocked`     | errcode 40226 (high-risk user)                           |
//! | `busy`        | errcode -1 (system busy), every time                     |
//! | `ratelimited` | errcode 45011 (frequency limit)                          |
//! | `error`       | errcode 48001 (api unauthorized): an errcode wxgate has no special meaning for |
//! | `notjson`     | HTTP 200, `<html>oops</html>`                             |
//! | `http500`     | HTTP 500                                                  |
//! | `slow`        | waits 60 s, then answers like any other code              |
//! | anything else | success the first time, 40163 (code been used) afterwards |

//!
//! Identity: a code's *user part* is everything before its first `.`. Codes
//! with the same user part log in the same user (same openid and unionid),
//! which lets a test log one user in twice; `session_key` differs per code,
//! as a fresh `wx.login` may replace it. A user part starting with `nounion`
//! has no unionid (an app not bound to an Open Platform account).
//!
//! Request checks come first: wrong `appid` → 40013, wrong `secret` → 40125,
//! `grant_type` other than `authorization_code` → 40002, empty `js_code` →
//! 41008; such a refused call does not use up its code. Any other path is a
//! 404, any other method on the path a 405.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use super::echo::{response, serve_http1};

/// How long the `slow` code waits before answering.
const SLOW_DELAY: Duration = Duration::from_secs(60);
/// Length of a generated openid, like WeChat's.
const OPENID_LEN: usize = 28;

struct Inner {
    appid: String,
    secret: String,
    calls: AtomicUsize,
    codes: Mutex<Codes>,
}

/// Per-code bookkeeping.
#[derive(Default)]
struct Codes {
    /// Calls received per `js_code`, refused ones included.
    calls: HashMap<String, usize>,
    /// Codes already exchanged successfully.
    used: HashSet<String>,
}

/// The mock WeChat. Cloning gives another handle on the same state.
#[derive(Clone)]
pub struct MockWechat {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MockWechat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockWechat")
            .field("appid", &self.inner.appid)
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

fn sha256(label: &str, input: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label.as_bytes());
    h.update(input.as_bytes());
    h.finalize().into()
}

/// The part of a code that names the user (before the first `.`).
fn user_part(code: &str) -> &str {
    code.split('.').next().unwrap_or(code)
}

fn errcode(code: i64, msg: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "errcode": code,
        "errmsg": format!("{msg}, rid: 6553f1a2-mock"),
    });
    response(200, "text/plain", body.to_string())
}

impl MockWechat {
    /// A mock that accepts only this appid and secret.
    pub fn new(appid: &str, secret: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                appid: appid.to_owned(),
                secret: secret.to_owned(),
                calls: AtomicUsize::new(0),
                codes: Mutex::new(Codes::default()),
            }),
        }
    }

    /// Serve on an already-bound listener until this future is dropped or
    /// its task aborted (open connections, `slow` ones included, stop too).
    pub async fn serve(self, listener: TcpListener) -> io::Result<()> {
        serve_http1(listener, move |req| {
            let this = self.clone();
            async move { this.handle(req).await }
        })
        .await
    }

    /// The appid this mock accepts.
    pub fn appid(&self) -> &str {
        &self.inner.appid
    }

    /// Total `jscode2session` calls received, valid or not.
    pub fn calls(&self) -> usize {
        self.inner.calls.load(Ordering::SeqCst)
    }

    /// `jscode2session` calls received with this `js_code`.
    pub fn calls_for(&self, code: &str) -> usize {
        self.codes().calls.get(code).copied().unwrap_or(0)
    }

    /// The openid a successful login with `code` returns: `o` + 27 base64url characters.
    pub fn openid_for(code: &str) -> String {
        let mut id = String::from("o");
        id.push_str(&URL_SAFE_NO_PAD.encode(sha256("openid:", user_part(code))));
        id.truncate(OPENID_LEN);
        id
    }

    /// The unionid for `code`, unless its user part starts with `nounion`.
    pub fn unionid_for(code: &str) -> Option<String> {
        let user = user_part(code);
        if user.starts_with("nounion") {
            return None;
        }
        let mut id = String::from("u");
        id.push_str(&URL_SAFE_NO_PAD.encode(sha256("unionid:", user)));
        id.truncate(OPENID_LEN);
        Some(id)
    }

    /// The `session_key` for `code`: base64 of 16 bytes, different for every code.
    pub fn session_key_for(code: &str) -> String {
        STANDARD.encode(&sha256("session_key:", code)[..16])
    }

    fn codes(&self) -> std::sync::MutexGuard<'_, Codes> {
        // A panic while holding this lock cannot leave the maps inconsistent.
        self.inner
            .codes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Count a call for `code`.
    fn count(&self, code: &str) {
        self.inner.calls.fetch_add(1, Ordering::SeqCst);
        *self.codes().calls.entry(code.to_owned()).or_insert(0) += 1;
    }

    /// Mark `code` used; false if it already was.
    fn redeem(&self, code: &str) -> bool {
        self.codes().used.insert(code.to_owned())
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.uri().path() != "/sns/jscode2session" {
            return response(404, "text/plain", "not found");
        }
        if req.method() != Method::GET {
            return response(405, "text/plain", "method not allowed");
        }
        let mut params: HashMap<String, String> = HashMap::new();
        for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
            params
                .entry(k.into_owned())
                .or_insert_with(|| v.into_owned());
        }
        let param = |name: &str| params.get(name).cloned().unwrap_or_default();
        let code = param("js_code");
        self.count(&code);

        if param("appid") != self.inner.appid {
            return errcode(40013, "invalid appid");
        }
        if param("secret") != self.inner.secret {
            return errcode(40125, "invalid appsecret");
        }
        if param("grant_type") != "authorization_code" {
            return errcode(40002, "invalid grant_type");
        }
        match code.as_str() {
            "" => return errcode(41008, "missing code"),
            "invalid" => return errcode(40029, "invalid code"),
            "blocked" => return errcode(40226, "invalid code, high risk user"),
            "busy" => return errcode(-1, "system error"),
            "ratelimited" => {
                return errcode(
                    45011,
                    "api minute-quota reach limit mustslower retry next minute",
                )
            }
            "error" => return errcode(48001, "api unauthorized"),
            "notjson" => return response(200, "text/html", "<html>oops</html>"),
            "http500" => return response(500, "text/plain", "internal server error"),
            "slow" => tokio::time::sleep(SLOW_DELAY).await,
            _ => {}
        }
        if !self.redeem(&code) {
            return errcode(40163, "code been used");
        }
        let mut body = serde_json::json!({
            "session_key": Self::session_key_for(&code),
            "openid": Self::openid_for(&code),
        });
        if let Some(unionid) = Self::unionid_for(&code) {
            body["unionid"] = unionid.into();
        }
        response(200, "text/plain", body.to_string())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use serde_json::Value;
    use std::time::Instant;

    use crate::error::ApiError;
    use crate::secret::Secret;
    use crate::wechat::client::{WechatClient, WechatError};

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
        let (status, ct, body) =
            raw_call(&base, APPID, SECRET, "authorization_code", "code-1").await;
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
        let (status, _, body) =
            raw_call(&base, APPID, SECRET, "authorization_code", "notjson").await;
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
}
