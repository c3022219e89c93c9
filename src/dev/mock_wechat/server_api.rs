//! The mock's server APIs a backend calls through wxgate's OpenAPI relay,
//! each checking the access token as WeChat does (40001, 42001):
//!
//! | path | answer |
//! |---|---|
//! | `POST /wxa/msg_sec_check` | JSON verdict: `risky` when the body holds `badword`, else `pass`; `trace_id` names the token's app |
//! | `POST /wxa/getwxacodeunlimit` | an image ([`MockWechat::qr_image`] of the body), `image/jpeg` |
//! | `POST /xpay/query_user_balance?openid&signature&sig_method` | the balance, when `signature` is the user-state signature of the body with the user's latest `session_key`; 87009 otherwise |
//! | `GET /wxa/checksession?openid&signature&sig_method` | the same check over the empty body |
//! | `GET /wxa/resetusersessionkey?openid&signature&sig_method` | the same check, then a new key for the user: `{"openid", "session_key"}` |
//! | `POST /wxa/getuserriskrank` `{appid, openid, scene, client_ip}` | `risk_rank` N for a user whose code's user part starts with `riskN` (0 otherwise); 48001 for `riskdenied` |

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};

use super::token_api::{errcode, sha256};
use super::MockWechat;
use crate::http1::response;
use crate::wechat::signature::{user_signature, SIG_METHOD};

/// The paths [`MockWechat::server_api`] serves.
const PATHS: [&str; 6] = [
    "/wxa/getuserriskrank",
    "/wxa/msg_sec_check",
    "/wxa/getwxacodeunlimit",
    "/xpay/query_user_balance",
    "/wxa/checksession",
    "/wxa/resetusersessionkey",
];

impl MockWechat {
    /// The image `getwxacodeunlimit` answers for `body`: binary, every byte
    /// value in it.
    pub fn qr_image(body: &[u8]) -> Vec<u8> {
        let mut img = b"\xff\xd8\xff\xe0\0\x10JFIF\0".to_vec();
        img.extend_from_slice(&sha256("qr:", &String::from_utf8_lossy(body)));
        img.extend((0..=255u8).rev());
        img.extend_from_slice(b"\xff\xd9");
        img
    }

    /// The bodies of `getuserriskrank` calls, in order.
    pub fn risk_asks(&self) -> Vec<serde_json::Value> {
        self.codes().risk_asks.clone()
    }

    /// Calls received on `path` among the server APIs, answered or refused.
    pub fn api_calls(&self, path: &str) -> usize {
        self.codes().api_calls.get(path).copied().unwrap_or(0)
    }

    /// The `session_key` WeChat holds for `openid` (its latest login's, or reset's).
    pub fn current_key(&self, openid: &str) -> Option<String> {
        self.codes().keys.get(openid).cloned()
    }

    /// WeChat gives `openid` a new `session_key` the gateway did not see
    /// (as a `wx.login` whose code went elsewhere would); returns it.
    pub fn rotate_session_key(&self, openid: &str) -> String {
        let mut codes = self.codes();
        let old = codes.keys.get(openid).cloned().unwrap_or_default();
        let new = STANDARD.encode(&sha256("rotated:", &old)[..16]);
        codes.keys.insert(openid.to_string(), new.clone());
        new
    }

    pub(super) async fn server_api(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        if !PATHS.contains(&path.as_str()) {
            return response(404, "text/plain", "not found");
        }
        *self.codes().api_calls.entry(path.clone()).or_insert(0) += 1;
        let get = matches!(
            path.as_str(),
            "/wxa/checksession" | "/wxa/resetusersessionkey"
        );
        if req.method() != if get { Method::GET } else { Method::POST } {
            return response(405, "text/plain", "method not allowed");
        }
        let appid = match self.inner.token_api.app_of(&req) {
            Ok(appid) => appid,
            Err((code, msg)) => return errcode(code, msg),
        };
        let query: HashMap<String, String> =
            form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        let Ok(body) = Limited::new(req.into_body(), 1024 * 1024).collect().await else {
            return errcode(47001, "data format error");
        };
        let body = body.to_bytes();
        match path.as_str() {
            "/wxa/msg_sec_check" => {
                let risky = body.windows(7).any(|w| w == b"badword");
                let (suggest, label) = if risky {
                    ("risky", 20001)
                } else {
                    ("pass", 100)
                };
                let answer = serde_json::json!({
                    "errcode": 0,
                    "errmsg": "ok",
                    "result": { "suggest": suggest, "label": label },
                    // Whose token it was, for tests.
                    "trace_id": format!("mock-{appid}"),
                });
                response(200, "application/json", answer.to_string())
            }
            "/wxa/getuserriskrank" => {
                let ask: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let openid = ask["openid"].as_str().unwrap_or_default().to_string();
                self.codes().risk_asks.push(ask);
                let user = self.codes().users.get(&openid).cloned().unwrap_or_default();
                if user.starts_with("riskdenied") {
                    return errcode(48001, "api unauthorized");
                }
                let rank = user
                    .strip_prefix("risk")
                    .and_then(|r| r.chars().next())
                    .and_then(|c| c.to_digit(10))
                    .unwrap_or(0);
                let answer = serde_json::json!({ "errcode": 0, "errmsg": "ok", "risk_rank": rank, "unoin_id": 0 });
                response(200, "application/json", answer.to_string())
            }
            "/wxa/getwxacodeunlimit" => {
                let mut r = Response::new(Full::new(Bytes::from(Self::qr_image(&body))));
                r.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("image/jpeg"),
                );
                r
            }
            _ => {
                if !self.signed_by_user(&query, &body) {
                    return errcode(87009, "invalid signature");
                }
                let answer = if path == "/wxa/resetusersessionkey" {
                    let openid = query.get("openid").cloned().unwrap_or_default();
                    let key = self.rotate_session_key(&openid);
                    serde_json::json!({ "errcode": 0, "errmsg": "ok", "openid": openid, "session_key": key })
                } else if get {
                    serde_json::json!({ "errcode": 0, "errmsg": "ok" })
                } else {
                    serde_json::json!({ "errcode": 0, "errmsg": "ok", "balance": 100, "present_balance": 0 })
                };
                response(200, "application/json", answer.to_string())
            }
        }
    }

    /// Whether the query carries `openid`'s user-state signature of `body`.
    fn signed_by_user(&self, query: &HashMap<String, String>, body: &[u8]) -> bool {
        let param = |k: &str| query.get(k).map(String::as_str).unwrap_or_default();
        let Some(key) = self.current_key(param("openid")) else {
            return false;
        };
        param("sig_method") == SIG_METHOD
            && param("signature") == user_signature(key.as_bytes(), body)
    }
}
