//! An example login hook, for `wxgate dev` and the tests: what a backend's
//! hook endpoint does, in a few lines.
//!
//! It checks the signature and the timestamp of every call (a bad one gets
//! 401 and is counted), then answers like a small user table would:
//!
//! * every user gets `uid` `user-` and 12 hex digits derived from the openid,
//!   the role `user` and the claim `plan = "free"`;
//! * the mock WeChat's user `admin` (codes `admin`, `admin.1`, ...) also has
//!   the role `admin` and `plan = "pro"`;
//! * the user `banned` (codes `banned`, `banned.1`, ...) is refused with 403.
//!
//! Phone events are recorded ([`ExampleHook::phones`]). At
//! [`AUDIT_PATH`] it takes the audit webhook's deliveries, checked the same
//! way ([`ExampleHook::audit_events`]). Tests can make it fail ([`Mode`])
//! and read what it received.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use super::mock_wechat::MockWechat;
use crate::clock::unix_now;
use crate::hook::{sign, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::http1::{response, serve_http1};

/// Where the example hook takes audit webhook deliveries.
pub const AUDIT_PATH: &str = "/internal/wxgate/audit";

/// How far a call's timestamp may be from now.
pub const MAX_SKEW_SECS: u64 = 300;

/// How the example hook answers (tests switch it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// As described in the module docs.
    Normal,
    /// HTTP 500 to everything.
    Down,
    /// 200 with a body that is not the expected JSON.
    Garbage,
    /// Waits this long, then answers normally.
    Slow(Duration),
    /// 403 to everyone (every user banned).
    Refuse,
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<serde_json::Value>,
    bad_signatures: usize,
    /// The audit events delivered, in order (a retried delivery twice).
    audit: Vec<serde_json::Value>,
    /// The `traceparent` of each well-signed call that carried one.
    traceparents: Vec<String>,
}

struct Inner {
    secret: Vec<u8>,
    /// Checks the audit webhook's deliveries.
    audit_secret: Vec<u8>,
    mode: Mutex<Mode>,
    state: Mutex<State>,
}

/// The example hook. Cloning gives another handle on the same state.
#[derive(Clone)]
pub struct ExampleHook {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ExampleHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExampleHook").finish_non_exhaustive()
    }
}

/// The uid the example hook gives `openid`.
pub fn uid_for(openid: &str) -> String {
    let digest = Sha256::digest(openid.as_bytes());
    format!("user-{}", &hex::encode(digest)[..12])
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ExampleHook {
    /// A hook that checks calls (and audit deliveries) against `secret`.
    pub fn new(secret: &[u8]) -> Self {
        Self::with_audit_secret(secret, secret)
    }

    /// A hook that checks its calls against `secret` and audit deliveries
    /// against `audit_secret`.
    pub fn with_audit_secret(secret: &[u8], audit_secret: &[u8]) -> Self {
        Self {
            inner: Arc::new(Inner {
                secret: secret.to_vec(),
                audit_secret: audit_secret.to_vec(),
                mode: Mutex::new(Mode::Normal),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Serve on an already-bound listener until this future is dropped.
    pub async fn serve(self, listener: TcpListener) -> io::Result<()> {
        serve_http1(listener, move |req| {
            let this = self.clone();
            async move { this.handle(req).await }
        })
        .await
    }

    /// Answer from now on as `mode` says.
    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.inner.mode) = mode;
    }

    /// Every well-signed call received, in order.
    pub fn calls(&self) -> Vec<serde_json::Value> {
        lock(&self.inner.state).calls.clone()
    }

    /// The W3C `traceparent` of each well-signed call that had one, in order.
    pub fn traceparents(&self) -> Vec<String> {
        lock(&self.inner.state).traceparents.clone()
    }

    /// Well-signed calls received for `event`.
    pub fn calls_for(&self, event: &str) -> usize {
        self.calls().iter().filter(|c| c["event"] == event).count()
    }

    /// Calls refused for a missing, stale or wrong signature.
    pub fn bad_signatures(&self) -> usize {
        lock(&self.inner.state).bad_signatures
    }

    /// The audit events delivered to [`AUDIT_PATH`] with a good signature
    /// (a delivery that was answered 500 and retried counts twice).
    pub fn audit_events(&self) -> Vec<serde_json::Value> {
        lock(&self.inner.state).audit.clone()
    }

    /// The phone events received.
    pub fn phones(&self) -> Vec<serde_json::Value> {
        self.calls()
            .into_iter()
            .filter(|c| c["event"] == "phone")
            .collect()
    }

    /// Whether `timestamp` and `signature` are wxgate's for `body`.
    pub fn verify(&self, timestamp: &str, signature: &str, body: &[u8]) -> bool {
        verify_with(&self.inner.secret, timestamp, signature, body)
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::POST {
            return response(405, "text/plain", "method not allowed");
        }
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let (timestamp, signature) = (header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER));
        let traceparent = header("traceparent");
        let audit = req.uri().path() == AUDIT_PATH;
        // An audit delivery may carry up to 1000 events.
        let Ok(body) = Limited::new(req.into_body(), 1024 * 1024).collect().await else {
            return response(400, "text/plain", "unreadable body");
        };
        let body = body.to_bytes();
        let secret = if audit {
            &self.inner.audit_secret
        } else {
            &self.inner.secret
        };
        if !verify_with(secret, &timestamp, &signature, &body) {
            lock(&self.inner.state).bad_signatures += 1;
            return response(401, "application/json", r#"{"message":"bad signature"}"#);
        }
        let Ok(call) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return response(400, "text/plain", "not JSON");
        };
        let mode = *lock(&self.inner.mode);
        if audit {
            let Some(events) = call["events"].as_array() else {
                return response(400, "text/plain", "no events");
            };
            lock(&self.inner.state).audit.extend(events.iter().cloned());
            return match mode {
                Mode::Down => response(500, "text/plain", "backend down"),
                _ => response(204, "text/plain", ""),
            };
        }
        {
            let mut state = lock(&self.inner.state);
            state.calls.push(call.clone());
            if !traceparent.is_empty() {
                state.traceparents.push(traceparent);
            }
        }
        match mode {
            Mode::Normal => {}
            Mode::Down => return response(500, "text/plain", "backend down"),
            Mode::Garbage => return response(200, "application/json", r#"{"uid": ["x"]}"#),
            Mode::Slow(delay) => tokio::time::sleep(delay).await,
            Mode::Refuse => {}
        }
        let openid = call["openid"].as_str().unwrap_or_default();
        if mode == Mode::Refuse || openid == MockWechat::openid_for("banned") {
            return response(
                403,
                "application/json",
                r#"{"message":"this account is suspended"}"#,
            );
        }
        if call["event"] == "phone" {
            return response(200, "application/json", "{}");
        }
        let admin = openid == MockWechat::openid_for("admin");
        let answer = serde_json::json!({
            "uid": uid_for(openid),
            "roles": if admin { vec!["admin", "user"] } else { vec!["user"] },
            "claims": { "plan": if admin { "pro" } else { "free" } },
        });
        response(200, "application/json", answer.to_string())
    }
}

/// Whether `timestamp` and `signature` are wxgate's for `body` under `secret`.
fn verify_with(secret: &[u8], timestamp: &str, signature: &str, body: &[u8]) -> bool {
    let Ok(ts) = timestamp.parse::<u64>() else {
        return false;
    };
    if unix_now().abs_diff(ts) > MAX_SKEW_SECS {
        return false;
    }
    let expected = sign(secret, ts, body);
    expected.as_bytes().ct_eq(signature.as_bytes()).into()
}
