//! A span for a call a backend makes on the internal listener (the WeChat
//! relay, the session-key services, the access token), with `[traces]`.
//! A caller that has shown the endpoint's Bearer secret may name its trace
//! (`traceparent`); any other starts one of its own.

use std::future::Future;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Response};
use opentelemetry::context::FutureExt as _;

use crate::state::GatewayState;
use crate::traces::{Finish, RequestSpan, TRACEPARENT, TRACESTATE};

/// `answer` to the call `(headers, method, path)`, in a span of its own
/// when traces are on (the WeChat calls it makes hang under it); `trusted`:
/// the caller showed the secret.
pub(super) async fn traced(
    state: &GatewayState,
    trusted: bool,
    (headers, method, path): (&HeaderMap, &Method, &str),
    answer: impl Future<Output = Response<Full<Bytes>>>,
) -> Response<Full<Bytes>> {
    let Some(traces) = state.metrics().traces() else {
        return answer.await;
    };
    let field = |name| headers.get_all(name).into_iter().map(HeaderValue::as_bytes);
    let span = traces.request_from(
        trusted,
        field(TRACEPARENT),
        field(TRACESTATE),
        Instant::now(),
    );
    let r = answer.with_context(span.context()).await;
    finish(span, method, path, r.status().as_u16());
    r
}

fn finish(span: RequestSpan, method: &Method, path: &str, status: u16) {
    span.finish(&Finish {
        method: method.as_str(),
        route: path,
        status,
        ..Finish::default()
    });
}
