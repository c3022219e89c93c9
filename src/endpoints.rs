//! The paths wxgate answers itself: health, readiness and the `/wx/*` endpoints.
//!
//! This is Pingora glue like [`crate::proxy`]: it reads a bounded body from the
//! session, hands typed values to [`crate::login`] and writes the JSON answer.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{header, Method};
use pingora_error::Result;
use pingora_proxy::Session;
use serde::{Deserialize, Serialize};

use crate::config::OnError;
use crate::error::ApiError;
use crate::login::{body_kind, parse_body, DecryptRequest, LoginRequest, LoginService};
use crate::proxy::{respond, Shared};

/// A path wxgate answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /healthz`: the process is alive.
    Healthz,
    /// `GET /readyz`: config loaded, listeners bound.
    Readyz,
    /// `POST {login.path_prefix}/login`.
    Login,
    /// `POST {login.path_prefix}/decrypt` (Bearer token required).
    Decrypt,
    /// `POST {login.path_prefix}/logout` (Bearer token required).
    Logout,
    /// `POST {login.path_prefix}/refresh`.
    Refresh,
}

/// The endpoint paths, fixed at start-up.
#[derive(Debug, Clone)]
pub struct Endpoints {
    healthz: String,
    readyz: String,
    /// Under `[login] path_prefix`, when `[wechat]` is configured.
    wx: Vec<(String, Endpoint)>,
}

impl Endpoints {
    /// Paths for the health prefix and, when login is enabled, the login prefix.
    pub fn new(health_prefix: &str, login_prefix: Option<&str>) -> Self {
        Self {
            healthz: format!("{health_prefix}/healthz"),
            readyz: format!("{health_prefix}/readyz"),
            wx: login_prefix
                .map(|p| {
                    [
                        ("login", Endpoint::Login),
                        ("decrypt", Endpoint::Decrypt),
                        ("logout", Endpoint::Logout),
                        ("refresh", Endpoint::Refresh),
                    ]
                    .into_iter()
                    .map(|(name, ep)| (format!("{p}/{name}"), ep))
                    .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The endpoint at a canonical path, if any.
    pub fn find(&self, path: &str) -> Option<Endpoint> {
        if path == self.healthz {
            return Some(Endpoint::Healthz);
        }
        if path == self.readyz {
            return Some(Endpoint::Readyz);
        }
        self.wx.iter().find(|(p, _)| p == path).map(|(_, ep)| *ep)
    }
}

/// Answer an endpoint request completely.
pub async fn answer(shared: &Shared, session: &mut Session, ep: Endpoint) -> Result<()> {
    let result = match ep {
        Endpoint::Healthz => Ok((200, Bytes::from_static(br#"{"status":"ok"}"#))),
        Endpoint::Readyz => Ok(readyz(shared).await),
        Endpoint::Login | Endpoint::Decrypt | Endpoint::Logout | Endpoint::Refresh => {
            match shared.login() {
                Some(login) => wx(shared, login, session, ep).await,
                None => Err(ApiError::NoRoute),
            }
        }
    };
    match result {
        Ok((status, body)) => respond(session, status, &[], body).await,
        Err(e) => {
            if !session.is_body_done() {
                // The rest of the body is not worth reading: close after answering.
                session.set_keepalive(None);
            }
            let mut r = e.to_response();
            if e == ApiError::MethodNotAllowed {
                r.headers.push(("Allow", "POST".into()));
            }
            respond(session, r.status, &r.headers, r.body).await
        }
    }
}

/// `/readyz`: listeners bound and, unless `fail_open`, the store answering.
async fn readyz(shared: &Shared) -> (u16, Bytes) {
    if !shared.is_ready() {
        return (
            503,
            Bytes::from_static(br#"{"status":"not_ready","reason":"starting or shutting down"}"#),
        );
    }
    match shared.sessions().store().ping().await {
        Ok(()) => (200, Bytes::from_static(br#"{"status":"ready"}"#)),
        Err(e) if shared.on_error() == OnError::FailClosed => {
            let body = serde_json::json!({"status": "not_ready", "reason": e.to_string()});
            (503, Bytes::from(body.to_string()))
        }
        Err(e) => {
            let body = serde_json::json!({"status": "ready", "store": e.to_string()});
            (200, Bytes::from(body.to_string()))
        }
    }
}

#[derive(Deserialize, Default)]
struct LogoutRequest {
    #[serde(default)]
    all: bool,
}

#[derive(Deserialize, Default)]
struct RefreshRequest {
    #[serde(default)]
    refresh_token: Option<String>,
}

async fn wx(
    shared: &Shared,
    login: &Arc<LoginService>,
    session: &mut Session,
    ep: Endpoint,
) -> Result<(u16, Bytes), ApiError> {
    if session.req_header().method != Method::POST {
        return Err(ApiError::MethodNotAllowed);
    }
    // Decrypt and logout need a valid token before any body is read.
    let identity = match ep {
        Endpoint::Decrypt | Endpoint::Logout => {
            let auth = session
                .req_header()
                .headers
                .get_all(header::AUTHORIZATION)
                .iter()
                .map(|v| v.as_bytes());
            let id = shared.tokens().verify_authorization(auth).map_err(|e| {
                tracing::debug!(reason = %e, "token refused");
                ApiError::from(&e)
            })?;
            shared.check_revocation(&id).await?;
            Some(id)
        }
        _ => None,
    };
    let kind = body_kind(
        session
            .req_header()
            .headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.as_bytes()),
    )?;
    let body = read_body(session, shared.max_body_bytes()).await?;
    match (ep, identity) {
        (Endpoint::Login, _) => {
            let req: LoginRequest = parse_body(kind, &body)?;
            let ip = shared.client_ip(session);
            json(&login.login(req, ip).await?)
        }
        (Endpoint::Decrypt, Some(id)) => {
            let req: DecryptRequest = parse_body(kind, &body)?;
            let data = login.decrypt(&id.openid, req).await?;
            json(&serde_json::json!({ "data": data }))
        }
        (Endpoint::Logout, Some(id)) => {
            // An empty body means "this token".
            let req: LogoutRequest = if body.iter().all(u8::is_ascii_whitespace) {
                LogoutRequest::default()
            } else {
                parse_body(kind, &body)?
            };
            shared.sessions().logout(&id, req.all).await?;
            json(&serde_json::json!({ "revoked": if req.all { "all" } else { "token" } }))
        }
        (Endpoint::Refresh, _) => {
            let req: RefreshRequest = parse_body(kind, &body)?;
            let token = req
                .refresh_token
                .ok_or(ApiError::InvalidRequest("`refresh_token` is required"))?;
            json(&shared.sessions().refresh(&token).await?)
        }
        _ => Err(ApiError::Internal),
    }
}

fn json<T: Serialize>(value: &T) -> Result<(u16, Bytes), ApiError> {
    serde_json::to_vec(value)
        .map(|v| (200, Bytes::from(v)))
        .map_err(|_| ApiError::Internal)
}

/// Read the whole body, refusing it (413) as soon as it exceeds `max`.
async fn read_body(session: &mut Session, max: usize) -> Result<Bytes, ApiError> {
    let declared = session
        .req_header()
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut buf = BytesMut::new();
    loop {
        let chunk = session
            .read_request_body()
            .await
            .map_err(|_| ApiError::InvalidRequest("the request body could not be read"))?;
        let Some(chunk) = chunk else {
            return Ok(buf.freeze());
        };
        if buf.len() + chunk.len() > max {
            return Err(ApiError::PayloadTooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
}
