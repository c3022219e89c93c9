//! What follows a request on Pingora's path: its access log line, and the
//! watch on a socket it upgraded.

use std::sync::Arc;
use std::time::Duration;

use pingora_proxy::Session;

use super::ctx::RequestCtx;
use crate::access::X_REQUEST_ID;
use crate::clock::unix_now_ms;
use crate::conn::deadline::Deadlined;
use crate::conn::token_watch::{RevocationCheck, TokenWatch};
use crate::metrics::AuthOutcome;
use crate::secret::Secret;
use crate::state::GatewayState;
use crate::token::bearer_token;
use crate::traces::{Finish, RequestSpan};
use opentelemetry::trace::TraceId;

/// The access log line of a request (see [`crate::access`]).
pub(super) fn access_line(
    state: &GatewayState,
    session: &Session,
    ctx: &RequestCtx,
    status: u16,
    trace_id: Option<TraceId>,
) {
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
        trace_id,
    }
    .write();
}

/// End the request's span, with what the access log says of it.
pub(super) fn finish_span(span: RequestSpan, session: &Session, ctx: &RequestCtx, status: u16) {
    if !span.sampled() {
        return span.finish(&Finish::default());
    }
    let state = &ctx.state;
    let req = session.req_header();
    let user = ctx
        .forward
        .as_ref()
        .and_then(|f| f.identity.as_ref())
        .map(|v| state.user_hash(&v.id.openid));
    span.finish(&Finish {
        method: req.method.as_str(),
        route: state.route_name(ctx.label),
        status,
        auth: ctx.auth.map(AuthOutcome::label),
        user: user.as_deref(),
        request_id: req
            .headers
            .get(X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-"),
    });
}

/// Close the socket being upgraded when its token expires or is revoked, if
/// its route says so and it was opened with a token.
pub(super) fn watch_socket(session: &Session, ctx: &RequestCtx) {
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
