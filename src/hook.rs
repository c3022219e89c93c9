//! The login hook: the backend's own say on a WeChat user.
//!
//! With `[login.hook]`, wxgate POSTs an event to the backend after WeChat
//! has vouched for the user and before it issues a token:
//! `{"event": "login", "appid", "openid", "unionid"}` (never `session_key`;
//! `"refresh"` with `on_refresh`, `"phone"` after `/wx/phone`). Each call is
//! signed: `X-WXGate-Timestamp` (Unix seconds) and `X-WXGate-Signature`
//! (`sha256=` and the hex HMAC-SHA256, keyed with the hook secret, of the
//! timestamp, a `.` and the body), so the backend can tell wxgate's calls
//! from anyone else's.
//!
//! The backend answers 200 `{"uid", "roles", "claims"}` (each optional), which
//! become the token's `uid`, `roles` and `ext` claims ([`UserClaims`]), or
//! 403 `{"message"}` to refuse the user. Anything else — another status, a
//! body that is not that shape, no answer within `timeout` — is
//! [`HookError::Unavailable`] or [`HookError::Timeout`]: the login fails, it
//! never goes on without the hook's answer.
//!
//! [`parse_answer`] and [`sign`] are plain functions, tested without a socket.

mod config;

pub use config::HookConfig;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::clock::unix_now;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::token::UserClaims;

/// The header with the Unix time of the call.
pub const TIMESTAMP_HEADER: &str = "X-WXGate-Timestamp";
/// The header with `sha256=<hex HMAC-SHA256(secret, timestamp "." body)>`.
pub const SIGNATURE_HEADER: &str = "X-WXGate-Signature";

/// Longest answer read from the hook.
const MAX_ANSWER_BYTES: usize = 16 * 1024;
/// Longest `uid`.
pub const MAX_UID_BYTES: usize = 128;
/// Most roles one user may hold.
pub const MAX_ROLES: usize = 32;
/// Longest role name.
pub const MAX_ROLE_BYTES: usize = 64;
/// Longest refusal message passed on to the mini program.
const MAX_MESSAGE_CHARS: usize = 200;

/// What happened to the user, as the backend hears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A `wx.login` code was exchanged; tokens follow the answer.
    Login,
    /// A refresh token is being rotated (`on_refresh = true`).
    Refresh,
    /// The user shared a phone number (`/wx/phone`); the answer is not used.
    Phone,
}

impl Event {
    fn name(self) -> &'static str {
        match self {
            Event::Login => "login",
            Event::Refresh => "refresh",
            Event::Phone => "phone",
        }
    }
}

/// The body of one hook call.
#[derive(Debug, Clone, Serialize)]
pub struct Call<'a> {
    pub event: Event,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub appid: &'a str,
    pub openid: &'a str,
    pub unionid: Option<&'a str>,
    /// The phone number, for [`Event::Phone`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<&'a serde_json::Value>,
    /// WeChat's risk rank of the login (`[login.risk]`), 0 to 4.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk_rank: Option<u8>,
}

/// Why the hook gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// The backend refused the user (403), with its message if it sent one.
    #[error("the backend refused the user")]
    Refused { message: Option<String> },
    /// No complete answer within `timeout`.
    #[error("the login hook did not answer in time")]
    Timeout,
    /// Could not connect, another status, or an answer of the wrong shape.
    #[error("the login hook failed: {0}")]
    Unavailable(String),
}

impl HookError {
    /// The `outcome` label of the hook metric.
    fn outcome(&self) -> &'static str {
        match self {
            HookError::Refused { .. } => "refused",
            HookError::Timeout => "timeout",
            HookError::Unavailable(_) => "failed",
        }
    }
}

impl From<HookError> for ApiError {
    fn from(e: HookError) -> Self {
        match e {
            HookError::Refused { message } => ApiError::LoginRefused { message },
            HookError::Timeout => ApiError::HookUnavailable { timed_out: true },
            HookError::Unavailable(_) => ApiError::HookUnavailable { timed_out: false },
        }
    }
}

/// `sha256=` and the hex HMAC-SHA256 of `timestamp "." body` under `secret`.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    // HMAC takes keys of any length: `new_from_slice` cannot fail.
    let mac = Hmac::<Sha256>::new_from_slice(secret).map(|mac| {
        mac.chain_update(timestamp.to_string().as_bytes())
            .chain_update(b".")
            .chain_update(body)
            .finalize()
            .into_bytes()
    });
    match mac {
        Ok(bytes) => format!("sha256={}", hex::encode(bytes)),
        Err(_) => String::new(),
    }
}

/// Read a 200 answer: `{"uid", "roles", "claims"}`, each optional. Only the
/// claims named in `allowed` are kept; together (names and values) they take
/// at most `max_claims_bytes`.
pub fn parse_answer(
    body: &[u8],
    allowed: &[String],
    max_claims_bytes: usize,
) -> Result<UserClaims, &'static str> {
    let serde_json::Value::Object(answer) =
        serde_json::from_slice(body).map_err(|_| "the answer is not JSON")?
    else {
        return Err("the answer is not a JSON object");
    };
    let uid = match answer.get("uid") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        Some(_) => return Err("`uid` is not a string"),
    };
    if let Some(uid) = &uid {
        if uid.is_empty() || uid.len() > MAX_UID_BYTES || !uid.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err("`uid` is not 1-128 visible ASCII characters");
        }
    }
    let mut roles: Vec<String> = Vec::new();
    match answer.get("roles") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Array(list)) => {
            if list.len() > MAX_ROLES {
                return Err("more than 32 `roles`");
            }
            for role in list {
                let Some(role) = role.as_str().filter(|r| is_role_name(r)) else {
                    return Err("a role is not 1-64 of A-Z a-z 0-9 _ . : -");
                };
                if !roles.iter().any(|r| r == role) {
                    roles.push(role.to_string());
                }
            }
        }
        Some(_) => return Err("`roles` is not a list"),
    }
    let mut ext = BTreeMap::new();
    let mut size = 0usize;
    match answer.get("claims") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(claims)) => {
            for (name, value) in claims {
                if !allowed.contains(name) {
                    continue;
                }
                let text = match value {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Bool(b) => b.to_string(),
                    serde_json::Value::Null => continue,
                    _ => return Err("a claim is not a string, number or boolean"),
                };
                if !text.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
                    return Err("a claim is not printable ASCII");
                }
                size = size.saturating_add(name.len()).saturating_add(text.len());
                if size > max_claims_bytes {
                    return Err("the claims are larger than max_claims_bytes");
                }
                ext.insert(name.clone(), text);
            }
        }
        Some(_) => return Err("`claims` is not an object"),
    }
    Ok(UserClaims {
        uid,
        roles,
        ext,
        risk: None,
    })
}

/// A role name: 1 to 64 of `A-Z a-z 0-9 _ . : -` (no `,`: roles travel
/// upstream comma-separated).
pub fn is_role_name(role: &str) -> bool {
    (1..=MAX_ROLE_BYTES).contains(&role.len())
        && role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// The message of a 403 answer, if it has a usable one.
fn refusal_message(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let text: String = value
        .get("message")?
        .as_str()?
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE_CHARS)
        .collect();
    (!text.trim().is_empty()).then_some(text)
}

/// The hook client: one connection pool, the URL parsed once.
pub struct LoginHook {
    http: reqwest::Client,
    url: reqwest::Url,
    secret: Secret,
    on_refresh: bool,
    timeout: Duration,
    allowed_claims: Vec<String>,
    max_claims_bytes: usize,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for LoginHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginHook")
            .field("on_refresh", &self.on_refresh)
            .finish_non_exhaustive()
    }
}

impl LoginHook {
    /// Build the client for `[login.hook]`.
    pub fn new(cfg: &HookConfig) -> Result<Self, HookError> {
        let url = reqwest::Url::parse(&cfg.url)
            .map_err(|_| HookError::Unavailable("the hook URL does not parse".into()))?;
        let http = crate::outbound::client(cfg.timeout, cfg.timeout)
            .map_err(|e| HookError::Unavailable(e.without_url().to_string()))?;
        Ok(Self {
            http,
            url,
            secret: cfg.secret.clone(),
            on_refresh: cfg.on_refresh,
            timeout: cfg.timeout,
            allowed_claims: cfg.claims.iter().map(|c| c.claim.clone()).collect(),
            max_claims_bytes: cfg.max_claims_bytes,
            metrics: None,
        })
    }

    /// Count and time every call in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The longest one call takes.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether refreshes ask the hook again.
    pub fn on_refresh(&self) -> bool {
        self.on_refresh
    }

    /// Tell the backend about `call` and read its answer.
    pub async fn call(&self, call: &Call<'_>) -> Result<UserClaims, HookError> {
        let start = Instant::now();
        let result = self.send(call).await;
        if let Some(m) = &self.metrics {
            let outcome = result.as_ref().map_or_else(HookError::outcome, |_| "ok");
            m.hook_call(call.event.name(), outcome, start.elapsed());
        }
        match &result {
            Err(HookError::Refused { .. }) | Ok(_) => {}
            Err(e) => tracing::warn!(event = call.event.name(), error = %e, "login hook failed"),
        }
        result
    }

    async fn send(&self, call: &Call<'_>) -> Result<UserClaims, HookError> {
        let body = serde_json::to_vec(call)
            .map_err(|_| HookError::Unavailable("cannot encode the call".into()))?;
        let timestamp = unix_now();
        let signature = sign(self.secret.expose(), timestamp, &body);
        let mut request = self
            .http
            .post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp)
            .header(SIGNATURE_HEADER, signature);
        // With `[traces]`, the backend's spans join the request's trace.
        if let Some(told) = crate::traces::current() {
            request = request.header(crate::traces::TRACEPARENT, told.traceparent.as_bytes());
            if let Some(state) = told.tracestate {
                request = request.header(crate::traces::TRACESTATE, state);
            }
        }
        let mut response = request.body(body).send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let mut answer = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if answer.len().saturating_add(chunk.len()) > MAX_ANSWER_BYTES {
                return Err(HookError::Unavailable("the answer is too large".into()));
            }
            answer.extend_from_slice(&chunk);
        }
        match status {
            // A phone event's answer is not used: any success will do.
            200..=299 if call.event == Event::Phone => Ok(UserClaims::default()),
            200 => parse_answer(&answer, &self.allowed_claims, self.max_claims_bytes)
                .map_err(|m| HookError::Unavailable(m.to_string())),
            403 => Err(HookError::Refused {
                message: refusal_message(&answer),
            }),
            other => Err(HookError::Unavailable(format!("HTTP status {other}"))),
        }
    }
}

fn transport_error(e: reqwest::Error) -> HookError {
    if e.is_timeout() {
        return HookError::Timeout;
    }
    HookError::Unavailable(crate::error::chain(&e.without_url()))
}

/// How long a hook call may take at most (`[login.hook] timeout`).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests;
