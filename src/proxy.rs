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

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

mod after;
mod ctx;
mod decide;
mod failure;

use after::{access_line, watch_socket};
pub(crate) use ctx::RequestCtx;
pub(crate) use decide::{admit, auth_outcome, decide, Decision, Forward};
use failure::classify;

use crate::access::{kept_request_id, new_request_id, X_REQUEST_ID};
use crate::conn::deadline::{Deadlined, Phase};
use crate::endpoints;
use crate::error::ApiError;
use crate::framing::{self, expects_body};
use crate::headers::{is_websocket_upgrade, Client, ClientInfo, X_FORWARDED_FOR};
use crate::metrics::{RequestDone, RouteLabel};
use crate::respond::respond_error;
use crate::route::AuthMode;
use crate::state::GatewayState;
use crate::traces::{self, TRACEPARENT, TRACESTATE};

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
        RequestCtx::new(self.state.load_full())
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
        if let Some(t) = ctx.state.metrics().traces() {
            let h = &session.req_header().headers;
            let (tp, ts) = (h.get_all(TRACEPARENT).iter(), h.get_all(TRACESTATE).iter());
            let (tp, ts) = (tp.map(|v| v.as_bytes()), ts.map(|v| v.as_bytes()));
            let since = ctx.started.unwrap_or_else(Instant::now);
            ctx.span = Some(t.request_from(ctx.client.peer_trusted, tp, ts, since));
        }
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
                let answer = endpoints::answer(&state, session, ep, ctx.client.ip);
                match ctx.span.as_ref().map(traces::RequestSpan::context) {
                    Some(cx) => opentelemetry::context::FutureExt::with_context(answer, cx).await?,
                    None => answer.await?,
                }
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
        // With traces on, the upstream hears of the request's trace, never
        // of one a client that is not a trusted proxy made up.
        if let (Some(t), Some(span)) = (ctx.state.metrics().traces(), ctx.span.as_mut()) {
            upstream_request.remove_header(TRACESTATE);
            let told = span.upstream(t, ctx.peer);
            upstream_request.insert_header(TRACEPARENT, told.traceparent.as_bytes())?;
            if let Some(state) = told.tracestate {
                upstream_request.insert_header(TRACESTATE, state)?;
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
        upstream_response: &mut pingora_http::ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let (Some(at), Some(started)) = (ctx.upstream_at, ctx.started) {
            let now = Instant::now();
            let to_header = now.saturating_duration_since(started);
            ctx.upstream_took = Some((now.saturating_duration_since(at), to_header));
            if let Some(span) = ctx.span.as_mut() {
                span.upstream_answered(to_header, upstream_response.status.as_u16());
            }
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
        let trace_id = ctx.span.as_ref().map(traces::RequestSpan::trace_id);
        if let Some(span) = ctx.span.take() {
            after::finish_span(span, session, ctx, status);
        }
        // Checked first: nothing of the line is built when the level is filtered out.
        if ctx.state.access_log()
            && tracing::enabled!(target: "wxgate::access", tracing::Level::INFO)
        {
            access_line(&ctx.state, session, ctx, status, trace_id);
        }
    }
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
