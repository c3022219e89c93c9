//! The Pingora glue: the request pipeline, and nothing else.
//!
//! ```text
//! early_request_filter    ambiguous framing refused (framing), keep-alive, pipelining,
//!                         read deadline of the body (conn::deadline)
//! request_filter          canonical path ─▶ gateway endpoint? ─▶ route ─▶ auth
//! upstream_peer           round-robin over healthy upstreams (skip ones that failed)
//! upstream_request_filter sanitize headers ─▶ inject identity ─▶ set decided path
//! fail_to_connect         retry another upstream when a connect fails
//! fail_to_proxy           map the failure to a JSON error (502/504/...)
//! request_body_filter     body complete: no more read deadline
//! response_filter         request id; a 101 on a route that closes sockets with their token: watch it
//! logging                 the connection waits for its next request
//! ```
//!
//! Every decision is made by a plain function in [`crate::route`],
//! [`crate::auth`] or [`crate::headers`]; gateway endpoints are answered by
//! [`crate::endpoints`]. This file only moves data between them and Pingora's
//! session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

mod decide;
mod failure;

pub(crate) use decide::{admit, auth_outcome, decide, Decision, Forward};
use failure::classify;

use crate::access::{kept_request_id, new_request_id, X_REQUEST_ID};
use crate::clock::unix_now_ms;
use crate::conn::deadline::{Deadlined, Phase};
use crate::conn::token_watch::{RevocationCheck, TokenWatch};
use crate::endpoints;
use crate::error::ApiError;
use crate::framing::{self, expects_body};
use crate::headers::{is_websocket_upgrade, Client, ClientInfo, X_FORWARDED_FOR};
use crate::metrics::{AuthOutcome, RequestDone, RouteLabel};
use crate::respond::respond_error;
use crate::route::AuthMode;
use crate::secret::Secret;
use crate::state::GatewayState;
use crate::token::bearer_token;

/// Per-request state.
pub(crate) struct RequestCtx {
    /// The gateway's state when the request arrived: a reload in the middle
    /// of it does not change its route, upstreams or keys.
    state: Arc<GatewayState>,
    forward: Option<Forward>,
    /// Who sent the request (worked out once, in `early_request_filter`).
    client: Client,
    /// When the request header was read.
    started: Option<Instant>,
    /// What the request matched, for metrics.
    label: RouteLabel,
    /// How its token check ended, on routes.
    auth: Option<AuthOutcome>,
    /// When the first upstream was chosen.
    upstream_at: Option<Instant>,
    /// From `upstream_at`, and from `started`, to the upstream's response header.
    upstream_took: Option<(Duration, Duration)>,
    /// The upstream the request went to.
    peer: Option<SocketAddr>,
    /// Upstreams that refused a connection for this request.
    failed: Vec<SocketAddr>,
    /// A failure decided by wxgate (rather than reported by Pingora).
    failure: Option<ApiError>,
    /// A WebSocket handshake: no read deadline once it is upgraded.
    websocket: bool,
}

/// The `ProxyHttp` implementation: one per listener (plain or TLS).
pub(crate) struct Gateway {
    /// The current state; a reload swaps it (see `server::Running::reload`).
    state: Arc<ArcSwap<GatewayState>>,
    tls: bool,
}

impl Gateway {
    /// A gateway for a listener; `tls` tells upstreams the client used HTTPS.
    pub(crate) fn new(state: Arc<ArcSwap<GatewayState>>, tls: bool) -> Self {
        Self { state, tls }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            state: self.state.load_full(),
            forward: None,
            client: Client::default(),
            started: None,
            label: RouteLabel::None,
            auth: None,
            upstream_at: None,
            upstream_took: None,
            peer: None,
            failed: Vec::new(),
            failure: None,
            websocket: false,
        }
    }

    /// Before anything else, per request: a request whose length or fields
    /// could be read two ways is refused and its connection closed (see
    /// `framing`); keep-alive and body read limits, pipelining (requests
    /// sent back to back are answered in order), and the read deadline of
    /// what comes next (see `conn::deadline`).
    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.started = Some(Instant::now());
        ctx.client = client_of(session, &ctx.state.trusted_proxies);
        // One request id per request, set on the request itself: it goes
        // upstream with it, and every response echoes it (`respond`,
        // `response_filter`).
        let req = session.req_header();
        let kept = kept_request_id(
            req.headers.get_all(X_REQUEST_ID).iter(),
            ctx.client.peer_trusted,
        )
        .is_some();
        if !kept {
            session
                .req_header_mut()
                .insert_header(X_REQUEST_ID, new_request_id())?;
        }
        let raw_h1 = || Some(session.as_downstream().as_http1()?.get_headers_raw_bytes());
        if let Err(refused) = framing::check(session.req_header(), raw_h1) {
            // Nothing after this request is read as another one.
            session.set_keepalive(None);
            ctx.failure = Some(refused);
            return Error::e_explain(ErrorType::InvalidHTTPHeader, "refused by framing::check");
        }
        let limits = &ctx.state.limits;
        // Only a connection Pingora would keep (not HTTP/1.0 unless asked,
        // nor after `Connection: close`) gets wxgate's idle timeout.
        if session.get_keepalive().is_some() {
            session.set_keepalive(Some(limits.idle_timeout.as_secs().max(1)));
        }
        // A WebSocket may stay quiet for as long as its ends like once it is
        // upgraded: no per-read timeout on it (its handshake has no body).
        ctx.websocket = is_websocket_upgrade(session.req_header());
        session.set_read_timeout((!ctx.websocket).then_some(limits.body_timeout));
        session.set_pipelining_enabled(true);
        let phase = if expects_body(session.req_header()) {
            Phase::Body
        } else {
            Phase::Open
        };
        enter(session, phase);
        Ok(())
    }

    /// The body is complete: no read deadline while the upstream answers.
    async fn request_body_filter(
        &self,
        session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        if end_of_stream {
            enter(session, Phase::Open);
        }
        Ok(())
    }

    /// Decide: canonical path, gateway endpoint or route, then auth.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let state = Arc::clone(&ctx.state);
        let decided = match decide(&state, session.req_header().raw_path()) {
            Ok(Decision::Route(routed)) => {
                ctx.label = RouteLabel::Route(routed.route.index);
                let public = routed.route.auth == AuthMode::Public;
                let authorization = session
                    .req_header()
                    .headers
                    .get_all(http::header::AUTHORIZATION)
                    .iter()
                    .map(|v| v.as_bytes());
                let admitted = admit(&state, authorization, routed).await;
                ctx.auth = Some(auth_outcome(public, &admitted));
                admitted
            }
            Ok(Decision::Endpoint(ep)) => {
                ctx.label = RouteLabel::Endpoint(ep);
                endpoints::answer(&state, session, ep, ctx.client.ip).await?;
                return Ok(true);
            }
            Err(e) => Err(e),
        };
        match decided {
            Ok(forward) => {
                ctx.forward = Some(forward);
                Ok(false)
            }
            Err(e) => {
                respond_error(session, &e).await?;
                Ok(true)
            }
        }
    }

    /// Pick a healthy upstream of the route, skipping any that already failed.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        if ctx.upstream_at.is_none() {
            ctx.upstream_at = Some(Instant::now());
        }
        let Some(forward) = &ctx.forward else {
            ctx.failure = Some(ApiError::Internal);
            return Err(Error::explain(ErrorType::InternalError, "no route decided"));
        };
        let picked = forward.route.upstream.pick(&ctx.failed);
        match picked {
            Some(peer) => {
                // A WebSocket's upstream end may be quiet for long: the
                // route's read_timeout bounds the wait for its 101 only
                // (vendor/pingora-proxy, PATCHED.md).
                ctx.peer = peer._address.as_inet().copied();
                Ok(peer)
            }
            None => {
                ctx.failure = Some(ApiError::UpstreamUnavailable);
                Err(Error::explain(
                    ErrorType::ConnectNoRoute,
                    "no healthy upstream",
                ))
            }
        }
    }

    /// Sanitize headers, inject identity, set the decided path.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let client = ClientInfo {
            ip: ctx.client.ip,
            https: self.tls,
        };
        // Pingora drops what `Connection` names from this copy: the id goes all the same.
        if let Some(id) = session.req_header().headers.get(X_REQUEST_ID).cloned() {
            upstream_request.insert_header(X_REQUEST_ID, id)?;
        }
        ctx.state.headers.sanitize(upstream_request, client);
        if let Some(f) = &ctx.forward {
            if let Some(target) = &f.target {
                upstream_request.set_raw_path(target)?;
            }
            if let Some(v) = &f.identity {
                ctx.state.headers.inject(upstream_request, &v.values);
                if let Some(a) = &ctx.state.assertions {
                    let jwt = a.sign_header(&v.id, &f.route.prefix, upstream_request);
                    upstream_request.insert_header(crate::assertion::HEADER, jwt)?;
                }
            }
        }
        Ok(())
    }

    /// A refused connection is retried on another upstream, once per upstream.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.peer = None;
        if let Some(addr) = peer._address.as_inet() {
            ctx.failed.push(*addr);
            ctx.state.metrics().connect_failed(&addr.to_string());
        }
        let count = ctx.forward.as_ref().map_or(0, |f| f.route.upstream.count);
        e.set_retry(ctx.failed.len() < count);
        e
    }

    /// Map a failure to one of our JSON errors.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let api = ctx.failure.take().or_else(|| classify(e));
        let error_code = match api {
            Some(api) if session.response_written().is_none() => {
                if let Err(we) = respond_error(session, &api).await {
                    tracing::debug!(error = %we, "cannot write the error response");
                }
                api.status()
            }
            Some(api) => api.status(),
            None => 0,
        };
        if error_code >= 500 {
            tracing::warn!(error = %e, code = error_code, "proxying failed");
        }
        FailToProxy {
            error_code,
            can_reuse_downstream: false,
        }
    }

    /// wxgate logs failures itself (without query strings, which may carry secrets).
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        true
    }

    /// Pingora's own request summary, used in its logs: method and path, no query.
    fn request_summary(&self, session: &Session, _ctx: &RequestCtx) -> String {
        let req = session.req_header();
        format!("{} {}", req.method, req.uri.path())
    }

    /// The upstream's response header: its time is known.
    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut pingora_http::ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let (Some(at), Some(started)) = (ctx.upstream_at, ctx.started) {
            let now = Instant::now();
            ctx.upstream_took = Some((
                now.saturating_duration_since(at),
                now.saturating_duration_since(started),
            ));
        }
        Ok(())
    }

    /// The response goes back with the request's id. A WebSocket accepted
    /// on a route that closes sockets with their token is watched from its
    /// 101 on.
    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut pingora_http::ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(id) = session.req_header().headers.get(X_REQUEST_ID) {
            upstream_response.insert_header(X_REQUEST_ID, id.clone())?;
        }
        if ctx.websocket && upstream_response.status == http::StatusCode::SWITCHING_PROTOCOLS {
            watch_socket(session, ctx);
        }
        Ok(())
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        // The response is out: the connection now waits for its next request.
        enter(session, Phase::AwaitRequest);
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        ctx.state.count_request(&RequestDone {
            route: ctx.label,
            method: &session.req_header().method,
            status,
            auth: ctx.auth,
            total: ctx.started.map_or(Duration::ZERO, |s| s.elapsed()),
            upstream: ctx.upstream_took.map(|(u, _)| u),
            to_header: ctx.upstream_took.map(|(_, h)| h),
        });
        // Checked first: nothing of the line is built when the level is filtered out.
        if ctx.state.access_log()
            && tracing::enabled!(target: "wxgate::access", tracing::Level::INFO)
        {
            access_line(&ctx.state, session, ctx, status);
        }
    }
}

/// The access log line of a request (see [`crate::access`]).
fn access_line(state: &GatewayState, session: &Session, ctx: &RequestCtx, status: u16) {
    let req = session.req_header();
    let request_id = req
        .headers
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let user = ctx
        .forward
        .as_ref()
        .and_then(|f| f.identity.as_ref())
        .map(|v| state.user_hash(&v.id.openid));
    crate::access::Line {
        request_id,
        method: req.method.as_str(),
        route: state.route_name(ctx.label),
        path: req.uri.path(),
        status,
        auth: ctx.auth.map_or("-", AuthOutcome::label),
        upstream: ctx.peer,
        bytes: session.body_bytes_sent(),
        total: ctx.started.map_or(Duration::ZERO, |s| s.elapsed()),
        upstream_took: ctx.upstream_took.map(|(u, _)| u),
        user: user.as_deref(),
    }
    .write();
}

/// Close the socket being upgraded when its token expires or is revoked, if
/// its route says so and it was opened with a token.
fn watch_socket(session: &Session, ctx: &RequestCtx) {
    let Some(forward) = &ctx.forward else { return };
    let Some(verified) = &forward.identity else {
        return;
    };
    let Some(every) = forward.route.socket_check else {
        return;
    };
    let Some(stream) = session.stream().and_then(Deadlined::of) else {
        return;
    };
    // The token that opened the socket, checked again after each reload.
    let Some(token) = session
        .req_header()
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| bearer_token(v.as_bytes()).ok())
        .and_then(|t| std::str::from_utf8(t).ok())
        .map(str::to_string)
    else {
        return;
    };
    let sessions = ctx.state.sessions();
    let ends_ms = verified
        .id
        .exp
        .saturating_add(sessions.leeway().as_secs())
        .saturating_mul(1000);
    let expires_in = Duration::from_millis(ends_ms.saturating_sub(unix_now_ms()));
    stream.watch_token(TokenWatch::new(
        expires_in,
        Some(RevocationCheck {
            sessions: Arc::clone(sessions),
            identity: verified.id.clone(),
            token: Secret::from(token),
            every,
        }),
    ));
}

/// Who sent the request: the TCP peer, and the client it stands for when it
/// is a trusted proxy (`X-Forwarded-For`). Worked out once per request.
fn client_of(session: &Session, trusted_proxies: &[ipnet::IpNet]) -> Client {
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    let xff = session
        .req_header()
        .headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .map(|v| v.as_bytes());
    Client::of(peer, xff, trusted_proxies)
}

/// Tell the connection's read deadlines where the request stands (HTTP/1;
/// HTTP/2 connections have none).
fn enter(session: &Session, phase: Phase) {
    if let Some(d) = session.stream().and_then(Deadlined::of) {
        d.enter(phase);
    }
}

#[cfg(test)]
mod tests;
