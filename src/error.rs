//! The client-facing error surface: one enum, one mapping to HTTP.
//!
//! Every refusal wxgate sends is an [`ApiError`]. Each variant has a stable
//! `snake_case` code (part of the public interface, see README), an HTTP status
//! and a short message that names the problem without revealing internals.
//! Details that help an operator (which check failed, upstream addresses,
//! WeChat messages) go to the logs, never into the response.

use bytes::Bytes;
use serde::Serialize;

/// A refusal or failure reported to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request target is not a canonical origin-form path.
    #[error("the request path is not acceptable")]
    InvalidPath,
    /// No configured route matches the path.
    #[error("no route matches this path")]
    NoRoute,
    /// The endpoint exists but not for this method.
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed {
        /// The methods it takes (the `Allow` header).
        allow: &'static str,
    },
    /// A protected route was called without a Bearer token.
    #[error("a Bearer token is required")]
    TokenMissing,
    /// The token was valid once but its `exp` has passed.
    #[error("the token has expired")]
    TokenExpired,
    /// The token is malformed, forged, or not meant for this gateway.
    #[error("the token is not valid")]
    TokenInvalid,
    /// The token was revoked by a logout.
    #[error("the token has been revoked")]
    TokenRevoked,
    /// The request body or its fields are malformed.
    #[error("{0}")]
    InvalidRequest(&'static str),
    /// The request body is larger than allowed.
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// The request body has a content type the endpoint does not read.
    #[error("the body must be application/json or application/x-www-form-urlencoded")]
    UnsupportedMediaType,
    /// WeChat refused the login code (40029 invalid, 40163 already used).
    #[error("the login code is invalid or was already used")]
    InvalidCode { wechat_errcode: i64 },
    /// The request or the token names a mini program this gateway does not serve.
    #[error("this gateway serves no mini program with that appid")]
    UnknownApp,
    /// WeChat refused the `getPhoneNumber` code (40029 invalid, 40163 used).
    #[error("the phone number code is invalid or was already used")]
    InvalidPhoneCode { wechat_errcode: i64 },
    /// WeChat blocked the user as high-risk (40226).
    #[error("WeChat blocked this login as high-risk")]
    CodeBlocked { wechat_errcode: i64 },
    /// Too many requests; retry after the given number of seconds.
    #[error("too many requests, retry later")]
    RateLimited {
        retry_after_secs: u64,
        wechat_errcode: Option<i64>,
    },
    /// WeChat is busy (-1) even after a retry.
    #[error("WeChat is temporarily unavailable")]
    WechatUnavailable { wechat_errcode: Option<i64> },
    /// WeChat answered with an unexpected error or an unreadable reply.
    #[error("WeChat returned an error")]
    WechatError { wechat_errcode: Option<i64> },
    /// WeChat did not answer in time.
    #[error("WeChat did not answer in time")]
    WechatTimeout,
    /// `encryptedData` could not be decrypted or verified (one error for every cause).
    #[error("the encrypted data could not be decrypted")]
    InvalidEncryptedData,
    /// `signature` does not match `sha1(rawData + session_key)`.
    #[error("the rawData signature does not match")]
    InvalidSignature,
    /// No server-side session for this user: log in again.
    #[error("no active WeChat session, log in again")]
    SessionExpired,
    /// The caller has no live session of that id.
    #[error("no such session")]
    SessionNotFound,
    /// The user is banned (by the admin API).
    #[error("this user is banned")]
    UserBanned,
    /// The user holds the app's `max_per_user` sessions and the app refuses
    /// new ones (`on_limit = "refuse_new"`).
    #[error("too many sessions: end one before logging in again")]
    SessionLimit,
    /// The token's session was ended (`reason`: `ended`, `replaced`,
    /// `idle`, `lifetime`, `admin`, `banned`): a client must not log in
    /// again by itself.
    #[error("this session has ended")]
    SessionEnded { reason: &'static str },
    /// The refresh token is unknown, expired or malformed.
    #[error("the refresh token is not valid")]
    RefreshTokenInvalid,
    /// A refresh token was presented twice: its whole family is revoked.
    #[error("the refresh token was already used; log in again")]
    RefreshTokenReused,
    /// The state store (Redis) cannot be reached.
    #[error("the session store is unavailable")]
    StoreUnavailable,
    /// The store has no room for a revocation, and dropping one to make room
    /// is never done: the operator must raise its bound (or Redis' memory).
    #[error("the session store is full; try again later")]
    StoreFull,
    /// No upstream could be reached.
    #[error("the upstream service is unavailable")]
    UpstreamUnavailable,
    /// The upstream did not answer in time.
    #[error("the upstream service did not answer in time")]
    UpstreamTimeout,
    /// The backend's login hook refused the user (403 from the hook),
    /// with the hook's message when it sent one.
    #[error("{}", message.as_deref().unwrap_or("the backend refused this login"))]
    LoginRefused { message: Option<String> },
    /// The login hook failed, answered garbage, or (`timed_out`) did not
    /// answer in time: no token without its answer.
    #[error("the backend's login hook is unavailable; retry with the same code")]
    HookUnavailable { timed_out: bool },
    /// The token is valid but not for this route: none of the roles it
    /// requires, or another mini program than it admits.
    #[error("this token is not allowed on this route (role or mini program)")]
    Forbidden,
    /// The OpenAPI relay does not relay this path: it is not in
    /// `[wechat.relay] allow` or `signed`.
    #[error("this WeChat API is not in [wechat.relay] allow")]
    RelayNotAllowed,
    /// A bug or an unexpected state inside wxgate.
    #[error("internal error")]
    Internal,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    wechat_errcode: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

/// An [`ApiError`] rendered for the wire, independent of any HTTP library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// HTTP status code.
    pub status: u16,
    /// Extra headers (`WWW-Authenticate`, `Retry-After`, `Allow`).
    pub headers: Vec<(&'static str, String)>,
    /// JSON body `{"error", "message", "wechat_errcode"?, "reason"?}`.
    pub body: Bytes,
}

impl ApiError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidPath => "invalid_path",
            ApiError::NoRoute => "no_route",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::TokenMissing => "token_missing",
            ApiError::TokenExpired => "token_expired",
            ApiError::TokenInvalid => "token_invalid",
            ApiError::TokenRevoked => "token_revoked",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::InvalidCode { .. } => "invalid_code",
            ApiError::CodeBlocked { .. } => "code_blocked",
            ApiError::InvalidPhoneCode { .. } => "invalid_phone_code",
            ApiError::UnknownApp => "unknown_app",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::WechatUnavailable { .. } => "wechat_unavailable",
            ApiError::WechatError { .. } => "wechat_error",
            ApiError::WechatTimeout => "wechat_timeout",
            ApiError::InvalidEncryptedData => "invalid_encrypted_data",
            ApiError::InvalidSignature => "invalid_signature",
            ApiError::SessionExpired => "session_expired",
            ApiError::SessionNotFound => "session_not_found",
            ApiError::SessionLimit => "session_limit",
            ApiError::UserBanned => "user_banned",
            ApiError::SessionEnded { .. } => "session_ended",
            ApiError::RefreshTokenInvalid => "refresh_token_invalid",
            ApiError::RefreshTokenReused => "refresh_token_reused",
            ApiError::StoreUnavailable => "store_unavailable",
            ApiError::StoreFull => "store_full",
            ApiError::UpstreamUnavailable => "upstream_unavailable",
            ApiError::UpstreamTimeout => "upstream_timeout",
            ApiError::LoginRefused { .. } => "login_refused",
            ApiError::HookUnavailable { .. } => "hook_unavailable",
            ApiError::Forbidden => "forbidden",
            ApiError::RelayNotAllowed => "relay_not_allowed",
            ApiError::Internal => "internal_error",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::InvalidPath
            | ApiError::InvalidRequest(_)
            | ApiError::InvalidEncryptedData
            | ApiError::InvalidSignature
            | ApiError::InvalidPhoneCode { .. }
            | ApiError::UnknownApp => 400,
            ApiError::TokenMissing
            | ApiError::TokenExpired
            | ApiError::TokenInvalid
            | ApiError::TokenRevoked
            | ApiError::InvalidCode { .. }
            | ApiError::RefreshTokenInvalid
            | ApiError::RefreshTokenReused => 401,
            ApiError::CodeBlocked { .. }
            | ApiError::LoginRefused { .. }
            | ApiError::Forbidden
            | ApiError::RelayNotAllowed => 403,
            ApiError::NoRoute => 404,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::SessionExpired => 409,
            ApiError::SessionNotFound => 404,
            ApiError::SessionLimit => 403,
            ApiError::UserBanned => 403,
            ApiError::SessionEnded { .. } => 401,
            ApiError::PayloadTooLarge => 413,
            ApiError::UnsupportedMediaType => 415,
            ApiError::RateLimited { .. } => 429,
            ApiError::Internal => 500,
            ApiError::WechatUnavailable { .. }
            | ApiError::WechatError { .. }
            | ApiError::UpstreamUnavailable
            | ApiError::HookUnavailable { timed_out: false } => 502,
            ApiError::StoreUnavailable | ApiError::StoreFull => 503,
            ApiError::WechatTimeout
            | ApiError::UpstreamTimeout
            | ApiError::HookUnavailable { timed_out: true } => 504,
        }
    }

    fn wechat_errcode(&self) -> Option<i64> {
        match self {
            ApiError::InvalidCode { wechat_errcode }
            | ApiError::CodeBlocked { wechat_errcode }
            | ApiError::InvalidPhoneCode { wechat_errcode } => Some(*wechat_errcode),
            ApiError::RateLimited { wechat_errcode, .. }
            | ApiError::WechatUnavailable { wechat_errcode }
            | ApiError::WechatError { wechat_errcode } => *wechat_errcode,
            _ => None,
        }
    }

    /// Render status, headers and JSON body.
    pub fn to_response(&self) -> ErrorResponse {
        let message = self.to_string();
        let body = Body {
            error: self.code(),
            message: &message,
            wechat_errcode: self.wechat_errcode(),
            reason: match self {
                ApiError::SessionEnded { reason } => Some(reason),
                _ => None,
            },
        };
        // Serialising a struct of strings and integers cannot fail; fall back to
        // a fixed body rather than panic all the same.
        let body = serde_json::to_vec(&body)
            .map(Bytes::from)
            .unwrap_or_else(|_| Bytes::from_static(br#"{"error":"internal_error"}"#));
        let mut headers = Vec::new();
        match self {
            // RFC 6750 §3: no token, no error attribute; a bad one says why.
            // (Literals: no formatting on the 401 path; a unit test holds
            // each description to the error's message.)
            ApiError::TokenMissing => {
                headers.push(("WWW-Authenticate", r#"Bearer realm="wxgate""#.into()));
            }
            ApiError::TokenExpired => headers.push((
                "WWW-Authenticate",
                r#"Bearer realm="wxgate", error="invalid_token", error_description="the token has expired""#.into(),
            )),
            ApiError::TokenInvalid => headers.push((
                "WWW-Authenticate",
                r#"Bearer realm="wxgate", error="invalid_token", error_description="the token is not valid""#.into(),
            )),
            ApiError::TokenRevoked => headers.push((
                "WWW-Authenticate",
                r#"Bearer realm="wxgate", error="invalid_token", error_description="the token has been revoked""#.into(),
            )),
            ApiError::RateLimited {
                retry_after_secs, ..
            } => headers.push(("Retry-After", retry_after_secs.max(&1).to_string())),
            ApiError::MethodNotAllowed { allow } => headers.push(("Allow", (*allow).into())),
            ApiError::SessionEnded { .. } => headers.push((
                "WWW-Authenticate",
                r#"Bearer realm="wxgate", error="invalid_token", error_description="this session has ended""#.into(),
            )),
            _ => {}
        }
        ErrorResponse {
            status: self.status(),
            headers,
            body,
        }
    }
}

/// An error and its causes, `outer: cause: cause`, for log lines (never for
/// clients: internal errors reach them only as an [`ApiError`]).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(e: &ApiError) -> serde_json::Value {
        serde_json::from_slice(&e.to_response().body).unwrap_or_default()
    }

    #[test]
    fn token_errors_carry_www_authenticate_and_nothing_more() {
        for (e, challenge) in [
            (ApiError::TokenMissing, r#"Bearer realm="wxgate""#),
            (
                ApiError::TokenExpired,
                r#"Bearer realm="wxgate", error="invalid_token", error_description="the token has expired""#,
            ),
            (
                ApiError::TokenInvalid,
                r#"Bearer realm="wxgate", error="invalid_token", error_description="the token is not valid""#,
            ),
            (
                ApiError::TokenRevoked,
                r#"Bearer realm="wxgate", error="invalid_token", error_description="the token has been revoked""#,
            ),
        ] {
            let r = e.to_response();
            assert_eq!(r.status, 401);
            assert_eq!(r.headers, vec![("WWW-Authenticate", challenge.to_string())]);
            if e != ApiError::TokenMissing {
                assert!(challenge.ends_with(&format!(r#"error_description="{e}""#)));
            }
            let v = json(&e);
            assert_eq!(v["error"], e.code());
            assert!(v["message"].is_string());
            assert_eq!(v.as_object().map(|o| o.len()), Some(2));
        }
    }

    #[test]
    fn rate_limited_has_retry_after_and_errcode() {
        let e = ApiError::RateLimited {
            retry_after_secs: 0,
            wechat_errcode: Some(45011),
        };
        let r = e.to_response();
        assert_eq!(r.status, 429);
        assert_eq!(r.headers, vec![("Retry-After", "1".to_string())]);
        assert_eq!(json(&e)["wechat_errcode"], 45011);
    }

    #[test]
    fn chain_names_every_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(chain(&e), "outer: inner");
    }

    #[test]
    fn statuses_and_codes() {
        let cases = [
            (ApiError::InvalidPath, 400, "invalid_path"),
            (ApiError::NoRoute, 404, "no_route"),
            (ApiError::UpstreamUnavailable, 502, "upstream_unavailable"),
            (ApiError::UpstreamTimeout, 504, "upstream_timeout"),
            (ApiError::StoreUnavailable, 503, "store_unavailable"),
            (ApiError::StoreFull, 503, "store_full"),
            (ApiError::SessionExpired, 409, "session_expired"),
            (ApiError::SessionNotFound, 404, "session_not_found"),
            (ApiError::SessionLimit, 403, "session_limit"),
            (ApiError::UserBanned, 403, "user_banned"),
            (
                ApiError::SessionEnded { reason: "replaced" },
                401,
                "session_ended",
            ),
            (ApiError::PayloadTooLarge, 413, "payload_too_large"),
        ];
        for (e, status, code) in cases {
            assert_eq!(e.status(), status);
            assert_eq!(e.code(), code);
            assert_eq!(json(&e)["error"], code);
        }
    }
}
