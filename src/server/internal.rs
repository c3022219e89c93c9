//! The metrics listener: `GET /metrics` in Prometheus' text format, on an
//! address of its own (`[metrics] listen`), never on a public listener; and,
//! with `[metrics] access_token_secret`, `GET /internal/wechat/access_token`:
//! the app's WeChat access token for the backends, so that wxgate is the
//! one place that calls `stable_token` (README, "Phone numbers and the
//! access token"); `?refused=<token>` reports a token WeChat refused. With
//! `[metrics] admin_secret`, the admin API under `/internal/admin/`
//! ([`admin`]); with `[wechat.relay]`, the OpenAPI relay and the
//! user-state signature ([`openapi`]).
//!
//! Whoever reaches the listener gets no more than its own limits
//! (`[metrics]`: [`InternalLimits`]): connections capped in total and per
//! IP, closed at once over a cap, and deadlines for idling and for request
//! headers (`http1::serve_bounded`). The caps are counted in the
//! descriptors kept aside from the public listeners (`descriptors`).

use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL};
use hyper::{Method, Request, Response};
use tokio::net::TcpListener;

use super::admin::{self, ADMIN_PREFIX};
use super::admission::{Connections, Refused};
use super::bearer::{error_response, refused};
use super::openapi;
use super::traced;
use crate::clock::unix_now_ms;
use crate::conn::InternalLimits;
use crate::http1::{response, serve_bounded, Deadlines};
use crate::state::GatewayState;
use crate::status::Status;

/// Where the backends get the WeChat access token.
pub(super) const ACCESS_TOKEN_PATH: &str = "/internal/wechat/access_token";

/// The Bearer realm of the access token.
const REALM: &str = r#"Bearer realm="wxgate-internal""#;

/// The content type of Prometheus' text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serve `/metrics` (and the access token) until the task is aborted,
/// admitting connections through `connections` and under `limits`' deadlines.
pub(super) async fn serve(
    listener: TcpListener,
    state: Arc<ArcSwap<GatewayState>>,
    status: Arc<Status>,
    connections: Arc<Connections>,
    public: Arc<Connections>,
    limits: InternalLimits,
) {
    let listeners = Arc::new([("public", public), ("metrics", Arc::clone(&connections))]);
    let deadlines = Deadlines {
        idle: limits.idle_timeout,
        header: limits.header_timeout,
    };
    let handler = move |req: Request<hyper::body::Incoming>| {
        let state = state.clone();
        let listeners = Arc::clone(&listeners);
        let status = Arc::clone(&status);
        async move {
            match (req.method(), req.uri().path()) {
                (&Method::GET | &Method::HEAD, "/") => {
                    let rows = listeners
                        .iter()
                        .map(|(name, c)| {
                            let refused = c
                                .refused(Refused::Total)
                                .saturating_add(c.refused(Refused::PerIp));
                            (*name, c.open(), refused)
                        })
                        .collect();
                    status_page(status.page(&state.load(), rows))
                }
                (&Method::GET, "/metrics") => {
                    let text = state.load().render_metrics_with(|g| {
                        for (name, c) in listeners.iter() {
                            g.connections_refused(name, "total", c.refused(Refused::Total));
                            g.connections_refused(name, "per_ip", c.refused(Refused::PerIp));
                        }
                    });
                    response(200, TEXT_FORMAT, text)
                }
                (_, "/metrics") => response(405, "text/plain", "GET only\n"),
                (&Method::GET, ACCESS_TOKEN_PATH) => {
                    let state = state.load_full();
                    // A caller with the secret may name its trace.
                    let trusted = state
                        .access_token_secret()
                        .is_some_and(|s| refused(req.headers(), s, REALM).is_none());
                    let call = traced::start(&state, trusted, &req);
                    traced::traced(call, access_token(&state, &req)).await
                }
                (_, path) if path.starts_with(ADMIN_PREFIX) => {
                    let state = state.load_full();
                    admin::handle(&state, req).await
                }
                _ => {
                    let state = state.load_full();
                    match openapi::handle(&state, req).await {
                        Some(r) => r,
                        None => response(404, "text/plain", "metrics are at /metrics\n"),
                    }
                }
            }
        }
    };
    serve_bounded(listener, handler, connections, deadlines).await;
}

/// The status page: not cached, not framed, nothing loaded from elsewhere.
fn status_page(html: String) -> Response<Full<Bytes>> {
    let mut r = response(200, "text/html; charset=utf-8", html);
    let h = r.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    r
}

/// `GET /internal/wechat/access_token` with `Authorization: Bearer <secret>`:
/// `{"access_token", "expires_in"}`, never cached by anyone on the way.
async fn access_token(
    state: &GatewayState,
    req: &Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let (Some(secret), Some(login)) = (state.access_token_secret(), state.login()) else {
        return response(404, "text/plain", "metrics are at /metrics\n");
    };
    if let Some(r) = refused(req.headers(), secret, REALM) {
        return r;
    }
    let param = |name: &str| {
        req.uri()
            .query()
            .into_iter()
            .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let app = match login.get(param("appid").as_deref()) {
        Ok(app) => app,
        Err(e) => return error_response(&e),
    };
    // `refused=<token>`: WeChat just answered 40001/42001 to the backend
    // with that token; if it is still the current one, it is replaced.
    let tokens = app.access_tokens();
    let answer = match param("refused") {
        Some(refused) => tokens.replace(&refused.into()).await,
        None => tokens.shared().await,
    };
    let mut r = match answer {
        Ok(t) => {
            let body = serde_json::json!({
                "access_token": t.token.expose_str().unwrap_or_default(),
                "expires_in": t.expires_at_ms.saturating_sub(unix_now_ms()) / 1000,
            });
            response(200, "application/json", body.to_string())
        }
        Err(e) => error_response(&e),
    };
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
