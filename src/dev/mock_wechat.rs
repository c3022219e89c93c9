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
//! | `badid-crlf`, `badid-long`, `badid-union` | success, with an openid holding CR LF, a 65-character openid, a unionid holding LF |
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
//!
//! It also serves `POST /cgi-bin/stable_token` and
//! `POST /wxa/business/getuserphonenumber` (`token_api`): one current
//! access token, as WeChat's normal mode returns it, and phone numbers for
//! `getPhoneNumber` codes, with magic codes for the failures; and the
//! server APIs of `server_api` (content check, QR code, a signed payment
//! API, `checksession`), for the OpenAPI relay.

mod server_api;
mod token_api;

use token_api::{errcode, sha256, TokenApi};

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
use tokio::net::TcpListener;

use crate::http1::{response, serve_http1};

/// How long the `slow` code waits before answering.
const SLOW_DELAY: Duration = Duration::from_secs(60);
/// Length of a generated openid, like WeChat's.
const OPENID_LEN: usize = 28;

struct Inner {
    /// The apps it accepts: appid and secret, in order.
    apps: Vec<(String, String)>,
    calls: AtomicUsize,
    codes: Mutex<Codes>,
    token_api: TokenApi,
}

/// Per-code bookkeeping.
#[derive(Default)]
struct Codes {
    /// Calls received per `js_code`, refused ones included.
    calls: HashMap<String, usize>,
    /// Codes already exchanged successfully.
    used: HashSet<String>,
    /// Each user's latest `session_key`, by openid.
    keys: HashMap<String, String>,
    /// Calls of the server APIs, by path.
    api_calls: HashMap<String, usize>,
    /// Each openid's user part (of the code that logged it in).
    users: HashMap<String, String>,
    /// `getuserriskrank` bodies.
    risk_asks: Vec<serde_json::Value>,
}

/// The mock WeChat. Cloning gives another handle on the same state.
#[derive(Clone)]
pub struct MockWechat {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MockWechat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockWechat")
            .field("appid", &self.appid())
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

/// The part of a code that names the user (before the first `.`).
fn user_part(code: &str) -> &str {
    code.split('.').next().unwrap_or(code)
}

impl MockWechat {
    /// A mock that accepts only this appid and secret.
    pub fn new(appid: &str, secret: &str) -> Self {
        Self::with_apps(&[(appid, secret)])
    }

    /// A mock that accepts these mini programs (appid, secret).
    pub fn with_apps(apps: &[(&str, &str)]) -> Self {
        Self {
            inner: Arc::new(Inner {
                apps: apps
                    .iter()
                    .map(|(a, s)| ((*a).to_owned(), (*s).to_owned()))
                    .collect(),
                calls: AtomicUsize::new(0),
                codes: Mutex::new(Codes::default()),
                token_api: TokenApi::new(
                    apps.iter()
                        .map(|(a, s)| ((*a).to_owned(), (*s).to_owned()))
                        .collect(),
                ),
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

    /// The (first) appid this mock accepts.
    pub fn appid(&self) -> &str {
        self.inner.apps.first().map_or("", |(a, _)| a.as_str())
    }

    /// The secret of `appid`, if the mock knows that app.
    fn secret_of(&self, appid: &str) -> Option<&str> {
        self.inner
            .apps
            .iter()
            .find(|(a, _)| a == appid)
            .map(|(_, s)| s.as_str())
    }

    /// `stable_token` calls that returned a token, and how many forced a refresh.
    pub fn token_calls(&self) -> (usize, usize) {
        self.inner.token_api.token_calls()
    }

    /// Lifetime (`expires_in`) of tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.inner.token_api.set_token_lifetime(lifetime);
    }

    /// `stable_token` requests received, answered or not.
    pub fn token_requests(&self) -> usize {
        self.inner.token_api.token_requests()
    }

    /// `stable_token` does not answer for `d` (`None`: at once), as when
    /// WeChat hangs.
    pub fn hang_tokens(&self, d: Option<Duration>) {
        self.inner.token_api.hang_tokens(d);
    }

    /// Someone else forced a refresh: every app's current token stops working.
    pub fn rotate_token_elsewhere(&self) {
        self.inner.token_api.rotate_token_elsewhere();
    }

    /// The phone number the mock gives `openid`: `138` and 8 digits.
    pub fn phone_for(openid: &str) -> String {
        TokenApi::phone_for(openid)
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

    /// Mark `code` of `appid` used; false if it already was (codes are per app).
    fn redeem(&self, appid: &str, code: &str) -> bool {
        self.codes().used.insert(format!("{appid}\0{code}"))
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        match req.uri().path() {
            "/sns/jscode2session" => {}
            "/cgi-bin/stable_token" => return self.inner.token_api.stable_token(req).await,
            "/wxa/business/getuserphonenumber" => {
                return self.inner.token_api.phone_number(req).await
            }
            // The server APIs, or 404.
            _ => return self.server_api(req).await,
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

        let Some(secret) = self.secret_of(&param("appid")) else {
            return errcode(40013, "invalid appid");
        };
        if param("secret") != secret {
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
            // Identities no header can carry: the gateway must refuse them.
            "badid-crlf" => return bad_identity("o-evil\r\nX-Admin: 1", None),
            "badid-long" => return bad_identity(&"o".repeat(65), None),
            "badid-union" => return bad_identity("o-fine", Some("u-evil\n")),
            _ => {}
        }
        if !self.redeem(&param("appid"), &code) {
            return errcode(40163, "code been used");
        }
        {
            let mut codes = self.codes();
            let openid = Self::openid_for(&code);
            codes
                .keys
                .insert(openid.clone(), Self::session_key_for(&code));
            codes.users.insert(openid, user_part(&code).to_string());
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

/// A successful reply carrying an openid or unionid that is not a plausible id.
fn bad_identity(openid: &str, unionid: Option<&str>) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "session_key": STANDARD.encode([7u8; 16]),
        "openid": openid,
        "unionid": unionid,
    });
    response(200, "text/plain", body.to_string())
}

#[cfg(test)]
mod tests;
