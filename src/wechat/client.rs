//! The `jscode2session` client: trade a `wx.login` code for openid and `session_key`.
//!
//! One pooled [`reqwest::Client`] is built at start-up; the request URL up to
//! the code (including the URL-encoded app secret) is built once as well.
//!
//! This file is the transport; what WeChat answers (errcodes, errors, reply
//! parsing) is [`super::reply`]. WeChat's quirk handled here: errcode `-1`
//! (system busy) is retried exactly once. Nothing
//! else is retried: a login code is single-use, and a request that timed out
//! or broke mid-way may already have consumed it (WeChat would then answer
//! 40163 to a retry, hiding the real cause).
//!
//! Time budget: the whole call — first attempt, back-off and retry — runs
//! under one deadline, `timeout` after the call starts. The retry is only
//! made if at least [`RETRY_MIN_BUDGET`] is left after the back-off;
//! otherwise the `-1` is reported as it is.
//!
//! The app secret sits in the request URL, so errors from reqwest are stripped
//! of their URL before they are kept, and nothing here logs the URL, the
//! secret, `session_key` or a code (only a short hash of it).

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::secret::Secret;

use super::openapi::{RelayAnswer, RelayRequest};
use super::reply::{
    parse_phone, parse_reply, parse_stable_token, AccessToken, Code2Session, PhoneNumber,
    WechatError, ERRCODE_BUSY,
};

/// Pause before the single retry of a `-1` (system busy) answer.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// The retry is skipped unless this much of the deadline remains after the back-off.
pub const RETRY_MIN_BUDGET: Duration = Duration::from_millis(300);
/// Largest reply body read from WeChat; a real reply is a few hundred bytes.
const MAX_REPLY_BYTES: usize = 64 * 1024;
/// A short, non-reversible tag for a login code, for log lines.
pub fn code_fingerprint(code: &str) -> String {
    let digest = Sha256::digest(code.as_bytes());
    hex::encode(&digest[..4])
}

/// The `jscode2session` URL with `appid` and `secret`, parsed once: each
/// call adds `js_code` and `grant_type` to a copy ([`url_for`]).
fn base_url(api_base: &str, appid: &str, secret: &str) -> Result<reqwest::Url, WechatError> {
    let endpoint = format!("{}/sns/jscode2session", api_base.trim_end_matches('/'));
    let mut url = reqwest::Url::parse(&endpoint).map_err(|_| {
        WechatError::Setup(format!("api_base {api_base:?} does not make a valid URL"))
    })?;
    if url.cannot_be_a_base() || !matches!(url.scheme(), "http" | "https") {
        return Err(WechatError::Setup(format!(
            "api_base {api_base:?} is not an http(s) URL"
        )));
    }
    url.query_pairs_mut()
        .append_pair("appid", appid)
        .append_pair("secret", secret);
    Ok(url)
}

/// The full request URL for `code`, given the URL from [`base_url`].
fn url_for(base: &reqwest::Url, code: &str) -> reqwest::Url {
    let mut url = base.clone();
    url.query_pairs_mut()
        .append_pair("js_code", code)
        .append_pair("grant_type", "authorization_code");
    url
}

/// Turn a reqwest error into ours, dropping the URL (it holds the secret).
fn transport_error(e: reqwest::Error) -> WechatError {
    if e.is_timeout() {
        return WechatError::Timeout;
    }
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    WechatError::Transport(msg)
}

/// A `jscode2session` client with one connection pool for the process.
pub struct WechatClient {
    http: reqwest::Client,
    /// `jscode2session` without reqwest, unless a proxy is set.
    lean: Option<super::lean::Lean>,
    /// The URL with `appid` and `secret` (never logged: see `Debug`).
    base_url: reqwest::Url,
    /// `{api_base}/cgi-bin/stable_token`.
    stable_token_url: reqwest::Url,
    /// `{api_base}/wxa/business/getuserphonenumber`.
    phone_url: reqwest::Url,
    /// `{api_base}` with no query: the relay's paths go under it.
    api_root: reqwest::Url,
    appid: String,
    secret: Secret,
    timeout: Duration,
    /// Where each call is counted and timed.
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for WechatClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl WechatClient {
    /// Build the client. `api_base` is e.g. `https://api.weixin.qq.com`
    /// (a trailing `/` is ignored); `timeout` bounds a whole
    /// [`code2session`](Self::code2session) call, retry included.
    pub fn new(
        api_base: &str,
        appid: &str,
        secret: Secret,
        timeout: Duration,
    ) -> Result<Self, WechatError> {
        let secret_text = secret
            .expose_str()
            .ok_or_else(|| WechatError::Setup("the app secret is not UTF-8".into()))?;
        // A malformed base is refused now rather than on the first login.
        let base_url = base_url(api_base, appid, secret_text)?;
        let api_url = |path: &str| {
            let mut url = base_url.clone();
            url.set_path(path);
            url.set_query(None);
            url
        };
        let base_path = base_url
            .path()
            .trim_end_matches("/sns/jscode2session")
            .to_string();
        let stable_token_url = api_url(&format!("{base_path}/cgi-bin/stable_token"));
        let phone_url = api_url(&format!("{base_path}/wxa/business/getuserphonenumber"));
        let api_root = api_url(&base_path);
        let connect_timeout = timeout.min(Duration::from_secs(3));
        let http = crate::outbound::client(timeout, connect_timeout)
            .map_err(|e| WechatError::Setup(e.without_url().to_string()))?;
        let lean = super::lean::Lean::for_url(&base_url, connect_timeout)?;
        Ok(Self {
            http,
            lean,
            base_url,
            stable_token_url,
            phone_url,
            api_root,
            appid: appid.to_string(),
            secret,
            timeout,
            metrics: None,
        })
    }

    /// Count and time every call in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Exchange a `wx.login` code. See the module docs for retry and timeout rules.
    pub async fn code2session(&self, code: &str) -> Result<Code2Session, WechatError> {
        let deadline = Instant::now() + self.timeout;
        let result = match self.attempt(code, deadline).await {
            Err(WechatError::Api {
                errcode: ERRCODE_BUSY,
                errmsg,
            }) => {
                let retry_at = Instant::now() + RETRY_BACKOFF;
                if deadline.saturating_duration_since(retry_at) < RETRY_MIN_BUDGET {
                    Err(WechatError::Api {
                        errcode: ERRCODE_BUSY,
                        errmsg,
                    })
                } else {
                    tracing::info!(
                        code = %code_fingerprint(code),
                        "WeChat is busy (errcode -1), retrying once"
                    );
                    tokio::time::sleep_until(retry_at).await;
                    self.attempt(code, deadline).await
                }
            }
            other => other,
        };
        match &result {
            // The user's code, not WeChat or us: worth a trace, not an alert.
            Err(
                e @ WechatError::Api {
                    errcode: 40029 | 40163 | 40226,
                    ..
                },
            ) => {
                tracing::info!(code = %code_fingerprint(code), error = %e, "jscode2session refused the code");
            }
            Err(e) => {
                tracing::warn!(code = %code_fingerprint(code), error = %e, "jscode2session failed");
            }
            Ok(_) => {}
        }
        result
    }

    /// One request, bounded by `deadline`.
    async fn attempt(&self, code: &str, deadline: Instant) -> Result<Code2Session, WechatError> {
        let start = std::time::Instant::now();
        let result = match tokio::time::timeout_at(deadline, self.fetch(code)).await {
            Ok(body) => body.and_then(|b| parse_reply(&b)),
            Err(_) => Err(WechatError::Timeout),
        };
        if let Some(m) = &self.metrics {
            let (outcome, errcode) = match &result {
                Ok(_) => ("ok", None),
                Err(e) => (e.outcome(), e.errcode()),
            };
            m.wechat_call("jscode2session", outcome, errcode, start.elapsed());
        }
        result
    }

    /// `stable_token`: the app's access token. `force_refresh` asks for a new
    /// one even if the current one is still valid (WeChat limits this).
    pub async fn stable_token(&self, force_refresh: bool) -> Result<AccessToken, WechatError> {
        let body = serde_json::json!({
            "grant_type": "client_credential",
            "appid": self.appid,
            "secret": self.secret.expose_str().unwrap_or_default(),
            "force_refresh": force_refresh,
        });
        let request = self.http.post(self.stable_token_url.clone()).json(&body);
        self.call("stable_token", request, parse_stable_token).await
    }

    /// `getuserphonenumber`: the phone number behind a `getPhoneNumber` code,
    /// which WeChat checks belongs to `openid`.
    pub async fn phone_number(
        &self,
        access_token: &str,
        code: &str,
        openid: &str,
    ) -> Result<PhoneNumber, WechatError> {
        let mut url = self.phone_url.clone();
        url.query_pairs_mut()
            .append_pair("access_token", access_token);
        let request = self
            .http
            .post(url)
            .json(&serde_json::json!({ "code": code, "openid": openid }));
        let appid = self.appid.as_str();
        self.call("getuserphonenumber", request, |b| parse_phone(b, appid))
            .await
    }

    /// One relayed call with `access_token` (no retry): WeChat's answer as
    /// it came, whatever its status, of at most `max_answer` bytes;
    /// counted under the allow-listed path.
    pub async fn relay(
        &self,
        access_token: &str,
        req: &RelayRequest,
        max_answer: usize,
    ) -> Result<RelayAnswer, WechatError> {
        let mut url = self.api_root.clone();
        let path = format!("{}{}", self.api_root.path().trim_end_matches('/'), req.api);
        url.set_path(&path);
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in &req.query {
                q.append_pair(k, v);
            }
            q.append_pair("access_token", access_token);
        }
        let mut request = if req.post {
            self.http.post(url).body(req.body.clone())
        } else {
            self.http.get(url)
        };
        if let Some(ct) = &req.content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, ct.as_str());
        }
        let start = std::time::Instant::now();
        let result = match tokio::time::timeout(self.timeout, answer(request, max_answer)).await {
            Ok(r) => r,
            Err(_) => Err(WechatError::Timeout),
        };
        if let Some(m) = &self.metrics {
            let (outcome, errcode) = match &result {
                Ok(a) => match a.errcode() {
                    Some(c) => ("errcode", Some(c)),
                    None => ("ok", None),
                },
                Err(e) => (e.outcome(), e.errcode()),
            };
            m.wechat_call(&req.api, outcome, errcode, start.elapsed());
        }
        if let Err(e) = &result {
            tracing::warn!(api = %req.api, error = %e, "relayed WeChat call failed");
        }
        result
    }

    /// Send `request` (no retry), read the reply and parse it; counted as `api`.
    async fn call<T>(
        &self,
        api: &str,
        request: reqwest::RequestBuilder,
        parse: impl FnOnce(&[u8]) -> Result<T, WechatError>,
    ) -> Result<T, WechatError> {
        let start = std::time::Instant::now();
        let result = match tokio::time::timeout(self.timeout, self.read(request)).await {
            Ok(body) => body.and_then(|b| parse(&b)),
            Err(_) => Err(WechatError::Timeout),
        };
        if let Some(m) = &self.metrics {
            let (outcome, errcode) = match &result {
                Ok(_) => ("ok", None),
                Err(e) => (e.outcome(), e.errcode()),
            };
            m.wechat_call(api, outcome, errcode, start.elapsed());
        }
        if let Err(e) = &result {
            tracing::warn!(api, error = %e, "WeChat call failed");
        }
        result
    }

    /// GET the URL for `code` and read at most [`MAX_REPLY_BYTES`] of a 2xx body.
    async fn fetch(&self, code: &str) -> Result<Vec<u8>, WechatError> {
        if let Some(lean) = &self.lean {
            return lean.fetch(code, MAX_REPLY_BYTES).await;
        }
        let url = url_for(&self.base_url, code);
        self.read(self.http.get(url)).await
    }

    /// Send a request and read at most [`MAX_REPLY_BYTES`] of a 2xx body.
    async fn read(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>, WechatError> {
        let mut response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        if !status.is_success() {
            return Err(WechatError::HttpStatus(status.as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(WechatError::BadReply("reply too large"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Send a relayed request and read its whole answer, at most `max` bytes.
async fn answer(request: reqwest::RequestBuilder, max: usize) -> Result<RelayAnswer, WechatError> {
    let mut response = request.send().await.map_err(transport_error)?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(WechatError::BadReply(
            "answer larger than [wechat.relay] max_answer",
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len().saturating_add(chunk.len()) > max {
            return Err(WechatError::BadReply(
                "answer larger than [wechat.relay] max_answer",
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(RelayAnswer {
        status,
        content_type,
        body: body.into(),
    })
}

#[cfg(test)]
mod tests;
