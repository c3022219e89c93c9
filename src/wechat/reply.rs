//! What WeChat answers, for every API wxgate calls: errcodes, [`WechatError`]
//! and the parsing of each reply (`jscode2session`, `stable_token`,
//! `getuserphonenumber`). Plain functions over bytes; the calls themselves
//! are [`super::client::WechatClient`]'s. Adding an API means a reply type
//! and a parser here, and one call there.
//!
//! WeChat's replies may come as `text/plain`, so a body is parsed as JSON
//! whatever its content type; a missing `errcode` or `0` means success.

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::secret::Secret;

/// Longest `errmsg` kept (WeChat appends a request id; the rest is noise).
const MAX_ERRMSG_CHARS: usize = 200;

/// WeChat errcode: system busy, retry later.
pub(super) const ERRCODE_BUSY: i64 = -1;

/// What `jscode2session` returns on success.
#[derive(Debug, Clone)]
pub struct Code2Session {
    /// The user's id within this mini program.
    pub openid: String,
    /// The key for WXBizDataCrypt and `rawData` signatures; never sent to clients.
    pub session_key: Secret,
    /// The user's id across the Open Platform account, when the app is bound to one.
    pub unionid: Option<String>,
}

/// Why a `jscode2session` call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WechatError {
    /// WeChat answered with a non-zero `errcode`.
    #[error("WeChat errcode {errcode}: {errmsg}")]
    Api { errcode: i64, errmsg: String },
    /// No complete answer within the timeout.
    #[error("WeChat did not answer in time")]
    Timeout,
    /// Connecting, sending or reading failed (the message has no URL in it).
    #[error("could not talk to WeChat: {0}")]
    Transport(String),
    /// WeChat answered with a non-2xx HTTP status.
    #[error("WeChat answered with HTTP status {0}")]
    HttpStatus(u16),
    /// The body is not the JSON object expected.
    #[error("WeChat sent an unreadable reply: {0}")]
    BadReply(&'static str),
    /// The client could not be built (bad `api_base`, TLS set-up).
    #[error("the WeChat client cannot be set up: {0}")]
    Setup(String),
}

impl WechatError {
    /// How a call ended, as the `outcome` label of its metric.
    pub fn outcome(&self) -> &'static str {
        match self {
            WechatError::Api { .. } => "errcode",
            WechatError::Timeout => "timeout",
            WechatError::Transport(_) => "transport",
            WechatError::HttpStatus(_) => "http_status",
            WechatError::BadReply(_) => "bad_reply",
            WechatError::Setup(_) => "setup",
        }
    }

    /// WeChat's `errcode`, when it sent one.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            WechatError::Api { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }
}

impl From<&WechatError> for ApiError {
    fn from(e: &WechatError) -> Self {
        match e {
            WechatError::Api { errcode, .. } => match *errcode {
                40029 | 40163 => ApiError::InvalidCode {
                    wechat_errcode: *errcode,
                },
                40226 => ApiError::CodeBlocked {
                    wechat_errcode: 40226,
                },
                45011 => ApiError::RateLimited {
                    retry_after_secs: 60,
                    wechat_errcode: Some(45011),
                },
                ERRCODE_BUSY => ApiError::WechatUnavailable {
                    wechat_errcode: Some(ERRCODE_BUSY),
                },
                other => ApiError::WechatError {
                    wechat_errcode: Some(other),
                },
            },
            WechatError::Timeout => ApiError::WechatTimeout,
            WechatError::Transport(_) | WechatError::HttpStatus(_) | WechatError::BadReply(_) => {
                ApiError::WechatError {
                    wechat_errcode: None,
                }
            }
            WechatError::Setup(_) => ApiError::Internal,
        }
    }
}

impl From<WechatError> for ApiError {
    fn from(e: WechatError) -> Self {
        ApiError::from(&e)
    }
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    errcode: Option<i64>,
    #[serde(default)]
    errmsg: Option<String>,
    #[serde(default)]
    openid: Option<String>,
    #[serde(default)]
    session_key: Option<String>,
    #[serde(default)]
    unionid: Option<String>,
}

/// Longest openid or unionid accepted (WeChat's are 28 or 29 characters).
pub const MAX_ID_BYTES: usize = 64;

/// Whether an openid or unionid can become a token claim and a header
/// value: 1 to [`MAX_ID_BYTES`] visible ASCII characters (WeChat's use
/// letters, digits, `-` and `_`). Anything else would give a token that can
/// never be forwarded, or a header that splits.
pub fn is_plausible_id(id: &str) -> bool {
    (1..=MAX_ID_BYTES).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    errcode: Option<i64>,
    #[serde(default)]
    errmsg: Option<String>,
}

/// The error a WeChat reply carries, if any: a body that is not a JSON
/// object, or a non-zero `errcode` (a missing one is success).
pub(crate) fn errcode_of(body: &[u8]) -> Result<(), WechatError> {
    let status: Status =
        serde_json::from_slice(body).map_err(|_| WechatError::BadReply("not a JSON object"))?;
    status_error(status.errcode, status.errmsg)
}

/// A non-zero `errcode` as an error (a missing one is success).
fn status_error(errcode: Option<i64>, errmsg: Option<String>) -> Result<(), WechatError> {
    match errcode {
        None | Some(0) => Ok(()),
        Some(errcode) => Err(WechatError::Api {
            errcode,
            errmsg: errmsg
                .unwrap_or_default()
                .chars()
                .take(MAX_ERRMSG_CHARS)
                .collect(),
        }),
    }
}

/// Parse a `jscode2session` reply body, whatever its content type.
pub fn parse_reply(body: &[u8]) -> Result<Code2Session, WechatError> {
    let reply: Reply =
        serde_json::from_slice(body).map_err(|_| WechatError::BadReply("not a JSON object"))?;
    status_error(reply.errcode, reply.errmsg)?;
    let openid = reply
        .openid
        .filter(|s| !s.is_empty())
        .ok_or(WechatError::BadReply("openid missing"))?;
    if !is_plausible_id(&openid) {
        return Err(WechatError::BadReply("openid is not a plausible id"));
    }
    let session_key = reply
        .session_key
        .filter(|s| !s.is_empty())
        .ok_or(WechatError::BadReply("session_key missing"))?;
    let unionid = reply.unionid.filter(|s| !s.is_empty());
    if unionid.as_deref().is_some_and(|u| !is_plausible_id(u)) {
        return Err(WechatError::BadReply("unionid is not a plausible id"));
    }
    Ok(Code2Session {
        openid,
        session_key: Secret::from(session_key),
        unionid,
    })
}

/// Errcodes that say the access token itself is bad: expired (42001),
/// invalid or replaced (40001), not an access token (40014).
pub const TOKEN_ERRCODES: [i64; 3] = [40001, 42001, 40014];

/// Longest access token accepted (WeChat's are about 150 characters).
const MAX_TOKEN_BYTES: usize = 1024;
/// Longest phone number field accepted.
const MAX_PHONE_BYTES: usize = 32;

/// An access token and how long WeChat says it lives.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub token: Secret,
    /// Seconds, from WeChat's answer.
    pub expires_in: u64,
}

/// A user's phone number, as `/wx/phone` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneNumber {
    /// With the country code for numbers outside mainland China.
    #[serde(rename = "phoneNumber")]
    pub phone_number: String,
    /// Without the country code.
    #[serde(rename = "purePhoneNumber")]
    pub pure_phone_number: String,
    /// As a string (WeChat sends a string or a number).
    #[serde(rename = "countryCode")]
    pub country_code: String,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// Parse a `stable_token` reply.
pub fn parse_stable_token(body: &[u8]) -> Result<AccessToken, WechatError> {
    errcode_of(body)?;
    let reply: TokenReply =
        serde_json::from_slice(body).map_err(|_| WechatError::BadReply("not a token reply"))?;
    let token = reply
        .access_token
        .filter(|t| {
            !t.is_empty() && t.len() <= MAX_TOKEN_BYTES && t.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or(WechatError::BadReply("access_token missing or malformed"))?;
    let expires_in = reply
        .expires_in
        .filter(|&s| s > 0)
        .ok_or(WechatError::BadReply("expires_in missing"))?;
    Ok(AccessToken {
        token: Secret::from(token),
        expires_in,
    })
}

#[derive(Deserialize)]
struct PhoneReply {
    phone_info: Option<PhoneInfo>,
}

#[derive(Deserialize)]
struct PhoneInfo {
    #[serde(rename = "phoneNumber")]
    phone_number: Option<String>,
    #[serde(rename = "purePhoneNumber")]
    pure_phone_number: Option<String>,
    #[serde(rename = "countryCode")]
    country_code: Option<serde_json::Value>,
    watermark: Option<Watermark>,
}

#[derive(Deserialize)]
struct Watermark {
    appid: Option<String>,
}

/// Parse a `getuserphonenumber` reply for the mini program `appid` (the
/// watermark must name it).
pub fn parse_phone(body: &[u8], appid: &str) -> Result<PhoneNumber, WechatError> {
    errcode_of(body)?;
    let reply: PhoneReply =
        serde_json::from_slice(body).map_err(|_| WechatError::BadReply("not a phone reply"))?;
    let info = reply
        .phone_info
        .ok_or(WechatError::BadReply("phone_info missing"))?;
    if info.watermark.and_then(|w| w.appid).as_deref() != Some(appid) {
        return Err(WechatError::BadReply("the watermark names another appid"));
    }
    let field = |v: Option<String>| {
        v.filter(|s| plausible_phone_field(s))
            .ok_or(WechatError::BadReply("a phone number field is malformed"))
    };
    let country_code = match info.country_code {
        Some(serde_json::Value::String(s)) => s,
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    Ok(PhoneNumber {
        phone_number: field(info.phone_number)?,
        pure_phone_number: field(info.pure_phone_number)?,
        country_code: field(Some(country_code))?,
    })
}

/// 1-32 characters of digits, `+`, `-` and spaces: what a phone number is
/// made of, and never anything that could break a header or a log line.
fn plausible_phone_field(s: &str) -> bool {
    (1..=MAX_PHONE_BYTES).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b' '))
}

#[cfg(test)]
mod tests;
