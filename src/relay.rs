//! wxgate's own HTTP/1.1 path for the common request: one head parsed once
//! into a fixed array, the upstream request written straight from its
//! slices, upstream connections kept per route without Pingora's checks
//! and per-request task, and the response relayed as it comes.
//!
//! ```text
//! head ─▶ plain framing? ──no──▶ Pingora (from the bytes read, as before)
//!   │yes
//!   ▼
//! decide (path) ─▶ endpoint? ──▶ Pingora
//!   │route
//!   ▼
//! admit (token) ─▶ refused ─▶ JSON error (same body and headers as Pingora's path)
//!   │
//!   ▼
//! upstream: idle connection or a new one (another upstream if a connect fails)
//!   ─▶ head + body ─▶ response head ─▶ body (length, chunked or until close)
//! ```
//!
//! The decisions are the pipeline's own ([`crate::proxy::decide`],
//! [`crate::proxy::admit`], header hygiene in [`crate::headers::raw`]); this
//! module only moves bytes. `[server] http1 = "pingora"` turns it off.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::{Buf, BytesMut};
use pingora_core::protocols::Stream;
use tokio::io::AsyncReadExt;

mod answer;
pub(crate) mod chunked;
mod downstream;
mod exchange;
mod h2;
mod head;
mod outgoing;
mod response;

use crate::access::is_sane_request_id;
use crate::conn::deadline::Phase;
use crate::endpoints::{self, body::body_kind, body::Body, body::BodyKind};
use crate::error::ApiError;
use crate::headers::Client;
use crate::metrics::{AuthOutcome, RequestDone, RouteLabel};
use crate::proxy::{admit, auth_outcome, decide, Decision, Forward};
use crate::route::Endpoint;
use crate::state::GatewayState;
use crate::traces::{Finish, Propagated, RequestSpan};
use answer::{read_body, refuse, respond};
use downstream::Downstream;
use exchange::{enter, Done};
use head::{Head, Parsed, MAX_FIELDS};
use opentelemetry::context::FutureExt as _;

/// A head not whole within this many bytes is left to Pingora.
const MAX_HEAD: usize = 8 * 1024;

/// What a read of the head asks for at least.
const READ_CHUNK: usize = 4096;

/// The own HTTP/1 path of one listener.
pub(crate) struct Relay {
    state: Arc<ArcSwap<GatewayState>>,
    tls: bool,
}

/// What the connection does after a request.
pub(crate) enum Next {
    /// Wait for the next request (whose first bytes may already be in `carry`).
    KeepAlive,
    /// Close it.
    Close,
    /// Not a request for this path: Pingora reads it from these bytes on.
    Pingora(BytesMut),
}

/// A request id as it goes out: the client's (trusted, sane) or a new one.
struct RequestId {
    bytes: [u8; crate::access::MAX_REQUEST_ID],
    len: usize,
    /// The client's was kept: it is already among the forwarded fields.
    kept: bool,
}

impl RequestId {
    fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("-")
    }
}

/// Everything the I/O needs from a head, owned (the head borrows the buffer).
struct Plan {
    state: Arc<GatewayState>,
    started: Instant,
    method: http::Method,
    /// Where the target's path (no query) lies in the buffer.
    path: std::ops::Range<usize>,
    head_len: usize,
    body: u64,
    close: bool,
    label: RouteLabel,
    auth: Option<AuthOutcome>,
    request_id: RequestId,
    action: Action,
    /// With `[traces]`: the request's span (a traced one is boxed).
    span: Option<RequestSpan>,
}

// Held once per request in its future: boxing the large variant would cost
// an allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
enum Action {
    Refuse(ApiError),
    /// Forward, with the upstream request head written.
    Forward(Forward, Vec<u8>),
    /// Answer `/wx/login` or `/wx/refresh` from the body, of this encoding
    /// (or refuse its content type), for the client at this address.
    Endpoint(Endpoint, Result<BodyKind, ApiError>, Option<IpAddr>),
}

impl Relay {
    pub(crate) fn new(state: Arc<ArcSwap<GatewayState>>, tls: bool) -> Self {
        Self { state, tls }
    }

    /// Serve the request whose bytes start in `carry` (or arrive next).
    pub(crate) async fn serve(
        &self,
        stream: &mut Stream,
        peer: Option<IpAddr>,
        carry: &mut BytesMut,
        closing: bool,
    ) -> Next {
        let mut buf = std::mem::take(carry);
        let mut plan = loop {
            if head::may_be_complete(&buf) {
                let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
                match head::parse(&buf, &mut fields) {
                    Parsed::Partial => {}
                    Parsed::Pingora(why) => {
                        tracing::trace!(why, "left to Pingora");
                        return Next::Pingora(buf);
                    }
                    Parsed::Relay(head) => match self.plan(&head, &buf, peer).await {
                        Some(plan) => break plan,
                        None => return Next::Pingora(buf),
                    },
                }
            }
            if buf.len() >= MAX_HEAD {
                return Next::Pingora(buf);
            }
            buf.reserve(READ_CHUNK);
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return Next::Close,
                Ok(_) => {}
            }
        };
        let done = self.execute(stream, &plan, &mut buf, closing).await;
        let path = plan.path.clone();
        finish(&mut plan, buf.get(path).unwrap_or(&[]), &done);
        if !done.keep_alive {
            return Next::Close;
        }
        // What follows this request's body is the next request.
        let used = plan
            .head_len
            .saturating_add(usize::try_from(plan.body).unwrap_or(usize::MAX));
        if buf.len() > used {
            buf.advance(used);
            *carry = buf;
        }
        Next::KeepAlive
    }

    /// Decide and admit, and write the upstream request head. `None`: an
    /// endpoint of the gateway, for Pingora to answer.
    async fn plan(&self, head: &Head<'_>, buf: &[u8], peer: Option<IpAddr>) -> Option<Plan> {
        let state = self.state.load_full();
        let started = Instant::now();
        let client = || {
            let sent = head::values(head.fields, b"x-forwarded-for");
            Client::of(peer, sent, &state.trusted_proxies)
        };
        let sent_id = || head::values(head.fields, b"x-request-id");
        let span = |trusted: bool| {
            state.metrics().traces().map(|t| {
                let (tp, ts) = (b"traceparent", b"tracestate");
                let fields = |name| head::values(head.fields, name);
                t.request_from(trusted, fields(tp), fields(ts), started)
            })
        };
        let decision = decide(&state, head.target);
        let (label, auth, action, request_id, span) = if let Ok(Decision::Endpoint(ep)) = decision {
            let client = client();
            let action = endpoint_action(&state, ep, head, client.ip)?;
            let request_id = request_id(sent_id(), client.peer_trusted);
            let span = span(client.peer_trusted);
            (RouteLabel::Endpoint(ep), None, action, request_id, span)
        } else {
            let authorization = head::values(head.fields, b"authorization");
            let (label, auth, admitted) = admit_decided(&state, decision, authorization).await?;
            let client = client();
            let request_id = request_id(sent_id(), client.peer_trusted);
            let mut span = span(client.peer_trusted);
            let action = match admitted {
                Ok(forward) => {
                    let told = upstream_told(&state, span.as_mut());
                    let out = self.upstream_head(
                        &state,
                        head,
                        client,
                        &request_id,
                        &forward,
                        told.as_ref(),
                    );
                    Action::Forward(forward, out)
                }
                Err(e) => Action::Refuse(e),
            };
            (label, auth, action, request_id, span)
        };
        let base = buf.as_ptr() as usize;
        let target_at = (head.target.as_ptr() as usize).saturating_sub(base);
        let path_len = head
            .target
            .iter()
            .position(|&b| b == b'?')
            .unwrap_or(head.target.len());
        Some(Plan {
            state,
            started,
            method: method(head.method),
            path: target_at..target_at.saturating_add(path_len),
            head_len: head.len,
            body: head.body,
            close: head.close,
            label,
            auth,
            request_id,
            action,
            span,
        })
    }

    /// Answer the plan: refuse, or forward and relay the response.
    async fn execute(
        &self,
        stream: &mut Stream,
        plan: &Plan,
        buf: &mut BytesMut,
        closing: bool,
    ) -> Done {
        let body_left = plan.body;
        // A request refused with its body unread closes the connection, as
        // on Pingora's path: the body is not read as a next request.
        let keep = !plan.close && !closing;
        match &plan.action {
            Action::Refuse(e) => {
                let keep_alive = keep && body_left == 0;
                refuse(stream, e, plan.request_id.as_bytes(), keep_alive).await
            }
            Action::Endpoint(ep, kind, client_ip) => {
                let result = match kind {
                    Ok(kind) => {
                        let Some(body) = read_body(stream, buf, plan.head_len, plan.body).await
                        else {
                            return Done::default();
                        };
                        let body = Body::of(*kind, body);
                        let answer = endpoints::answer_body(&plan.state, *ep, &body, *client_ip);
                        match plan.span.as_ref().map(RequestSpan::context) {
                            Some(cx) => answer.with_context(cx).await,
                            None => answer.await,
                        }
                    }
                    Err(e) => Err(e.clone()),
                };
                plan.state
                    .metrics()
                    .endpoint(*ep, result.as_ref().map(|_| ()));
                // A body left unread (a refused content type) closes the
                // connection, as on Pingora's path.
                let keep_alive = keep && (kind.is_ok() || body_left == 0);
                let id = plan.request_id.as_bytes();
                match result {
                    Ok((status, body)) => respond(stream, status, &[], &body, id, keep_alive).await,
                    Err(e) => refuse(stream, &e, id, keep_alive).await,
                }
            }
            Action::Forward(forward, out) => {
                enter(
                    stream,
                    if body_left > 0 {
                        Phase::Body
                    } else {
                        Phase::Open
                    },
                );
                let preread = buf.len().saturating_sub(plan.head_len);
                let preread = usize::try_from(body_left).map_or(preread, |b| b.min(preread));
                let body = buf
                    .get(plan.head_len..plan.head_len.saturating_add(preread))
                    .unwrap_or(&[]);
                let to_stream = body_left.saturating_sub(preread as u64);
                let mut done = exchange::forward(
                    &mut Downstream::H1(stream),
                    &plan.state,
                    forward,
                    exchange::Request {
                        head: out,
                        body,
                        to_stream,
                        head_request: plan.method == http::Method::HEAD,
                        request_id: plan.request_id.as_bytes(),
                        keep_alive: keep,
                        started: plan.started,
                    },
                )
                .await;
                if let Some(e) = done.refused.take() {
                    let keep_alive = done.done.keep_alive;
                    let mut d = refuse(stream, &e, plan.request_id.as_bytes(), keep_alive).await;
                    d.peer = done.done.peer;
                    d.took = done.done.took;
                    return d;
                }
                done.done
            }
        }
    }
}

/// What the relay does with a request for one of the gateway's endpoints:
/// `POST /wx/login` and `/wx/refresh` with a body within `[login]
/// max_body_bytes`, when logins are served, are answered here. `None`:
/// any other is Pingora's, which answers it as before.
fn endpoint_action(
    state: &GatewayState,
    ep: Endpoint,
    head: &Head<'_>,
    client_ip: Option<IpAddr>,
) -> Option<Action> {
    let max = u64::try_from(state.max_body_bytes()).unwrap_or(u64::MAX);
    let served = matches!(ep, Endpoint::Login | Endpoint::Refresh)
        && head.method == "POST"
        && head.body <= max
        && state.login().is_some();
    if !served {
        return None;
    }
    let kind = body_kind(head::values(head.fields, b"content-type").next());
    Some(Action::Endpoint(ep, kind, client_ip))
}

/// Metrics and the access line of a request served here (`path`: its
/// target without the query).
fn finish(plan: &mut Plan, path: &[u8], done: &Done) {
    let state = &plan.state;
    let total = plan.started.elapsed();
    let span = plan.span.take();
    let trace_id = span.as_ref().map(RequestSpan::trace_id);
    if let Some(mut span) = span {
        if let Some((_, to_header)) = done.took {
            span.upstream_answered(to_header, done.status);
        }
        finish_span(span, plan, done.status);
    }
    state.count_request(&RequestDone {
        route: plan.label,
        method: &plan.method,
        status: done.status,
        auth: plan.auth,
        total,
        upstream: done.took.map(|(u, _)| u),
        to_header: done.took.map(|(_, h)| h),
    });
    if !(state.access_log() && tracing::enabled!(target: "wxgate::access", tracing::Level::INFO)) {
        return;
    }
    let path = std::str::from_utf8(path).unwrap_or("-");
    let user = match &plan.action {
        Action::Forward(f, _) => f.identity.as_ref().map(|v| state.user_hash(&v.id.openid)),
        Action::Refuse(_) | Action::Endpoint(..) => None,
    };
    crate::access::Line {
        request_id: plan.request_id.as_str(),
        method: plan.method.as_str(),
        route: state.route_name(plan.label),
        path,
        status: done.status,
        auth: plan.auth.map_or("-", AuthOutcome::label),
        upstream: done.peer,
        bytes: done.bytes,
        total,
        upstream_took: done.took.map(|(u, _)| u),
        user: user.as_deref(),
        trace_id,
    }
    .write();
}

/// End the request's span, with what the access log says of it.
fn finish_span(span: RequestSpan, plan: &Plan, status: u16) {
    if !span.sampled() {
        return span.finish(&Finish::default());
    }
    let state = &plan.state;
    let user = match &plan.action {
        Action::Forward(f, _) => f.identity.as_ref().map(|v| state.user_hash(&v.id.openid)),
        Action::Refuse(_) | Action::Endpoint(..) => None,
    };
    span.finish(&Finish {
        method: plan.method.as_str(),
        route: state.route_name(plan.label),
        status,
        auth: plan.auth.map(AuthOutcome::label),
        user: user.as_deref(),
        request_id: plan.request_id.as_str(),
    });
}

/// With `[traces]`, what the upstream is told of the request's trace (its
/// span for the upstream call starts now).
fn upstream_told(state: &GatewayState, span: Option<&mut RequestSpan>) -> Option<Propagated> {
    Some(span?.upstream(state.metrics().traces()?, None))
}

/// Decide and admit a request to `target`. `None`: an endpoint of the
/// gateway, for Pingora to answer.
async fn decide_and_admit<'a>(
    state: &GatewayState,
    target: &[u8],
    authorization: impl Iterator<Item = &'a [u8]>,
) -> Option<(RouteLabel, Option<AuthOutcome>, Result<Forward, ApiError>)> {
    admit_decided(state, decide(state, target), authorization).await
}

/// Admit a request as decided. `None`: an endpoint of the gateway.
async fn admit_decided<'a>(
    state: &GatewayState,
    decision: Result<Decision, ApiError>,
    authorization: impl Iterator<Item = &'a [u8]>,
) -> Option<(RouteLabel, Option<AuthOutcome>, Result<Forward, ApiError>)> {
    Some(match decision {
        Ok(Decision::Endpoint(_)) => return None,
        Ok(Decision::Route(routed)) => {
            let label = RouteLabel::Route(routed.route.index);
            let public = routed.route.auth == crate::route::AuthMode::Public;
            let admitted = admit(state, authorization, routed).await;
            (label, Some(auth_outcome(public, &admitted)), admitted)
        }
        Err(e) => (RouteLabel::None, None, Err(e)),
    })
}

/// The request id: the client's when the peer is trusted, exactly one was
/// sent and it is sane; a fresh one otherwise.
fn request_id<'a>(mut sent: impl Iterator<Item = &'a [u8]>, peer_trusted: bool) -> RequestId {
    let mut id = RequestId {
        bytes: [0; crate::access::MAX_REQUEST_ID],
        len: 0,
        kept: false,
    };
    if peer_trusted {
        if let (Some(v), None) = (sent.next(), sent.next()) {
            if is_sane_request_id(v) {
                if let Some(slot) = id.bytes.get_mut(..v.len()) {
                    slot.copy_from_slice(v);
                    id.len = v.len();
                    id.kept = true;
                    return id;
                }
            }
        }
    }
    let raw: [u8; 16] = rand::random();
    if let Some(slot) = id.bytes.get_mut(..32) {
        if hex::encode_to_slice(raw, slot).is_ok() {
            id.len = 32;
        }
    }
    id
}

/// The method as `http` names it (one of the head's standard methods:
/// no allocation).
fn method(m: &str) -> http::Method {
    http::Method::from_bytes(m.as_bytes()).unwrap_or_default()
}

#[cfg(test)]
mod tests;
