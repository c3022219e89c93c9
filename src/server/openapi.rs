//! The OpenAPI relay and the user-state signature, on the internal listener
//! with the relay's own Bearer secret (`[wechat.relay]`).
//!
//! * `GET|POST <WeChat's path>[?query]`, for a path in `allow` or `signed`:
//!   relayed to `[wechat] api_base` with the app's access token; WeChat's
//!   answer comes back as it is. Any other path: 403 `relay_not_allowed`,
//!   and WeChat never hears of it. On a `signed` path the backend names the
//!   user with `?openid=` and wxgate adds `signature` and `sig_method`.
//! * `POST /internal/wechat/user_signature` `{"appid"?, "openid", "body"}`:
//!   `{"signature", "sig_method": "hmac_sha256"}` over `body`.
//! * `POST /internal/wechat/check_session_key` and `.../reset_session_key`
//!   `{"appid"?, "openid"}`: `{"valid": bool}` (`checksession`) and
//!   `{"reset": true}` (`resetusersessionkey`, the new key kept by wxgate).
//!
//! The app is named by the `X-WXGate-AppID` header, or by `?appid=` when it
//! is one of the apps served (WeChat's own `appid` parameters pass
//! through); a single app needs neither. The token is never logged.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response};
use serde::Deserialize;

use super::bearer::{error_response, refused};
use super::traced;
use crate::error::ApiError;
use crate::http1::response;
use crate::login::apps::Apps;
use crate::state::GatewayState;
use crate::wechat::openapi::{RelayRequest, SET_BY_RELAY};
use crate::wechat::signature::SIG_METHOD;
use crate::wechat::RelayConfig;

/// Where a backend gets a user-state signature.
pub(super) const SIGNATURE_PATH: &str = "/internal/wechat/user_signature";

/// A request body must arrive within this: a backend that stalls holds one
/// of the listener's few connections no longer.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether WeChat still holds a user's stored `session_key`.
pub(super) const CHECK_KEY_PATH: &str = "/internal/wechat/check_session_key";
/// Have WeChat replace a user's `session_key`; wxgate keeps the new one.
pub(super) const RESET_KEY_PATH: &str = "/internal/wechat/reset_session_key";

/// The header naming the app of a relayed call.
const APP_HEADER: &str = "x-wxgate-appid";

/// Largest message a signature is asked for (a virtual payment's `signData`
/// is a few hundred bytes).
const MAX_SIGNED_MESSAGE: usize = 64 * 1024;

/// Serve a request on the internal listener that no other endpoint took,
/// when the relay is configured: `None` otherwise.
pub(super) async fn handle(
    state: &GatewayState,
    req: Request<hyper::body::Incoming>,
) -> Option<Response<Full<Bytes>>> {
    let (relay, apps) = (state.relay()?, state.login()?);
    if let Some(r) = refused(
        req.headers(),
        &relay.secret,
        r#"Bearer realm="wxgate-relay""#,
    ) {
        return Some(r);
    }
    // The caller showed the relay's secret above.
    let call = traced::start(state, true, &req);
    let answer = async {
        match req.uri().path() {
            SIGNATURE_PATH => signature(apps, req).await,
            CHECK_KEY_PATH | RESET_KEY_PATH => session_key(apps, req).await,
            _ => forward(relay, apps, req).await,
        }
        .unwrap_or_else(|e| error_response(&e))
    };
    let mut r = traced::traced(call, answer).await;
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureAsk {
    #[serde(default)]
    appid: Option<String>,
    openid: String,
    body: String,
}

async fn signature(
    apps: &Apps,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    if req.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed { allow: "POST" });
    }
    // JSON may escape each byte of the message in six.
    let body = read_body(
        req,
        MAX_SIGNED_MESSAGE.saturating_mul(6).saturating_add(4096),
    )
    .await?;
    let ask: SignatureAsk = serde_json::from_slice(&body)
        .map_err(|_| ApiError::InvalidRequest("expected {\"openid\", \"body\", \"appid\"?}"))?;
    if ask.openid.is_empty() || ask.body.len() > MAX_SIGNED_MESSAGE {
        return Err(ApiError::InvalidRequest(
            "openid is required and body at most 64 KiB",
        ));
    }
    let app = apps.get(ask.appid.as_deref())?;
    let signature = app.user_signature(&ask.openid, ask.body.as_bytes()).await?;
    let answer = serde_json::json!({ "signature": signature, "sig_method": SIG_METHOD });
    Ok(response(200, "application/json", answer.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyAsk {
    #[serde(default)]
    appid: Option<String>,
    openid: String,
}

/// `checksession` (`{"valid"}`) or `resetusersessionkey` (`{"reset": true}`)
/// for a user; the key itself never leaves wxgate.
async fn session_key(
    apps: &Apps,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    if req.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed { allow: "POST" });
    }
    let reset = req.uri().path() == RESET_KEY_PATH;
    let body = read_body(req, 4096).await?;
    let ask: KeyAsk = serde_json::from_slice(&body)
        .map_err(|_| ApiError::InvalidRequest("expected {\"openid\", \"appid\"?}"))?;
    if ask.openid.is_empty() {
        return Err(ApiError::InvalidRequest("openid is required"));
    }
    let app = apps.get(ask.appid.as_deref())?;
    let answer = if reset {
        app.reset_session_key(&ask.openid).await?;
        serde_json::json!({ "reset": true })
    } else {
        serde_json::json!({ "valid": app.check_session_key(&ask.openid).await? })
    };
    Ok(response(200, "application/json", answer.to_string()))
}

async fn forward(
    relay: &RelayConfig,
    apps: &Apps,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let path = req.uri().path();
    let Some(api) = relay.label(path).map(str::to_string) else {
        return Err(ApiError::RelayNotAllowed);
    };
    let post = match *req.method() {
        Method::POST => true,
        Method::GET => false,
        _ => return Err(ApiError::MethodNotAllowed { allow: "GET, POST" }),
    };
    let mut query: Vec<(String, String)> = Vec::new();
    for (k, v) in req
        .uri()
        .query()
        .into_iter()
        .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
    {
        // A name WeChat could read as one the relay sets is refused, not
        // dropped: it would not reach WeChat as the backend meant it.
        let plain = !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !plain || SET_BY_RELAY.iter().any(|s| s.eq_ignore_ascii_case(&k)) {
            return Err(ApiError::InvalidRequest(
                "query parameters are names of letters, digits and _; access_token, signature and sig_method are the relay's",
            ));
        }
        query.push((k.into_owned(), v.into_owned()));
    }
    let named = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let header_app = req
        .headers()
        .get(APP_HEADER)
        .map(|v| v.to_str().map(str::to_string))
        .transpose()
        .map_err(|_| ApiError::UnknownApp)?;
    let app = match header_app {
        Some(appid) => apps.get(Some(&appid))?,
        None => match named("appid") {
            Some(appid) if apps.get(Some(&appid)).is_ok() => apps.get(Some(&appid))?,
            // One of WeChat's own `appid` parameters, with a single app.
            Some(_) if apps.get(None).is_ok() => apps.get(None)?,
            Some(_) => return Err(ApiError::UnknownApp),
            None => apps.get(None)?,
        },
    };
    let signer = if relay.signs(&api) {
        let openid = named("openid")
            .filter(|o| !o.is_empty())
            .ok_or(ApiError::InvalidRequest(
                "a signed WeChat API needs ?openid= (the user)",
            ))?;
        query.retain(|(k, _)| k != "openid");
        Some(openid)
    } else {
        None
    };
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = if post {
        read_body(req, relay.max_body).await?
    } else {
        Bytes::new()
    };
    let call = RelayRequest {
        api,
        post,
        query,
        content_type,
        body,
    };
    let answer = app.relay(call, signer.as_deref(), relay.max_answer).await?;
    let mut r = Response::new(Full::new(answer.body));
    *r.status_mut() =
        hyper::StatusCode::from_u16(answer.status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    if let Some(v) = answer
        .content_type
        .and_then(|ct| HeaderValue::from_str(&ct).ok())
    {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    Ok(r)
}

/// The whole body, at most `max` bytes (413 past it), within [`BODY_TIMEOUT`].
async fn read_body(req: Request<hyper::body::Incoming>, max: usize) -> Result<Bytes, ApiError> {
    let read = Limited::new(req.into_body(), max).collect();
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::PayloadTooLarge),
        Ok(Err(_)) => Err(ApiError::InvalidRequest("the request body was cut short")),
        Err(_) => Err(ApiError::InvalidRequest(
            "the request body did not arrive in time",
        )),
    }
}
