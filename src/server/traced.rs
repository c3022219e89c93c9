//! A span for a call a backend makes on the internal listener (the WeChat
//! relay, the session-key services, the access token), with `[traces]`.
//! A caller that has shown the endpoint's Bearer secret may name its trace
//! (`traceparent`); any other starts one of its own.

use std::future::Future;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response};
use opentelemetry::context::FutureExt as _;

use crate::state::GatewayState;
use crate::traces::{Finish, RequestSpan, TRACEPARENT, TRACESTATE};

/// A traced call: its span, and what names it.
pub(super) struct Call {
    span: RequestSpan,
    method: Method,
    path: String,
}

/// The span of `req` when traces are on (nothing is copied otherwise);
/// `trusted`: the caller showed the secret.
pub(super) fn start<B>(state: &GatewayState, trusted: bool, req: &Request<B>) -> Option<Call> {
    let traces = state.metrics().traces()?;
    let headers = req.headers();
    let field = |name| headers.get_all(name).into_iter().map(HeaderValue::as_bytes);
    Some(Call {
        span: traces.request_from(
            trusted,
            field(TRACEPARENT),
            field(TRACESTATE),
            Instant::now(),
        ),
        method: req.method().clone(),
        path: req.uri().path().to_string(),
    })
}

/// `answer`, in `call`'s span if there is one (the WeChat calls it makes
/// hang under it).
pub(super) async fn traced(
    call: Option<Call>,
    answer: impl Future<Output = Response<Full<Bytes>>>,
) -> Response<Full<Bytes>> {
    let Some(call) = call else {
        return answer.await;
    };
    let r = answer.with_context(call.span.context()).await;
    call.span.finish(&Finish {
        method: call.method.as_str(),
        route: &call.path,
        status: r.status().as_u16(),
        ..Finish::default()
    });
    r
}
