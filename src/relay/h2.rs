//! HTTP/2 streams on wxgate's own path: a stream Pingora's HTTP/2 session
//! has accepted (and checked: forbidden bytes in the target, ambiguous
//! lengths, conflicting authorities) is served like an HTTP/1.1 request of
//! the plain kind: the same decisions, the upstream request written as
//! HTTP/1.1 bytes on the relay's idle upstream connections, the response
//! relayed into the stream. Pingora's proxy serves every other stream.

use std::net::IpAddr;
use std::time::Instant;

use http::header::{AUTHORIZATION, CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING};
use http::{HeaderName, HeaderValue, StatusCode};
use pingora_core::protocols::http::v2::server::HttpSession;
use pingora_http::{RequestHeader, ResponseHeader};

use super::downstream::{Downstream, H2Stream};
use super::exchange::{self, Done};
use super::head::{length, METHODS};
use super::outgoing::is_trace_field;
use super::{decide_and_admit, finish, request_id, upstream_told, Action, Plan, Relay, RequestId};
use crate::access::X_REQUEST_ID;
use crate::error::ApiError;
use crate::headers::raw::line;
use crate::headers::{Client, X_FORWARDED_FOR};
use crate::proxy::Forward;
use crate::respond::json_fields;
use crate::state::GatewayState;
use crate::traces::{Propagated, TRACEPARENT, TRACESTATE};

impl Relay {
    /// Serve one HTTP/2 stream, if it is the plain kind ([`plain`]) and for
    /// a route; any other is given back, untouched, for Pingora.
    pub(crate) async fn serve_stream(
        &self,
        mut session: HttpSession,
        peer: Option<IpAddr>,
    ) -> Option<HttpSession> {
        let req = session.req_header();
        let Some(body) = plain(req, session.is_body_empty()) else {
            return Some(session);
        };
        let Some(mut plan) = self.plan_stream(req, body, peer).await else {
            return Some(session);
        };
        let done = match &plan.action {
            Action::Refuse(e) => refuse(&mut session, e, plan.request_id.as_bytes()).await,
            // Not planned here: endpoints are Pingora's on HTTP/2.
            Action::Endpoint(..) => {
                refuse(
                    &mut session,
                    &ApiError::Internal,
                    plan.request_id.as_bytes(),
                )
                .await
            }
            Action::Forward(forward, out) => {
                forward_stream(&mut session, &plan, forward, out).await
            }
        };
        let target = session.req_header().raw_path();
        let path = target.split(|&b| b == b'?').next().unwrap_or(target);
        finish(&mut plan, path, &done);
        None
    }

    /// Decide and admit, and write the upstream request head. `None`: an
    /// endpoint of the gateway, for Pingora to answer.
    async fn plan_stream(
        &self,
        req: &RequestHeader,
        body: u64,
        peer: Option<IpAddr>,
    ) -> Option<Plan> {
        let state = self.state.load_full();
        let started = Instant::now();
        let values = |name| req.headers.get_all(name).into_iter().map(|v| v.as_bytes());
        let target = req.raw_path();
        let (label, auth, admitted) =
            decide_and_admit(&state, target, values(AUTHORIZATION)).await?;
        let client = Client::of(peer, values(X_FORWARDED_FOR), &state.trusted_proxies);
        let request_id = request_id(values(X_REQUEST_ID), client.peer_trusted);
        let mut span = state.metrics().traces().map(|t| {
            let (tp, ts) = (
                HeaderName::from_static(TRACEPARENT),
                HeaderName::from_static(TRACESTATE),
            );
            t.request_from(client.peer_trusted, values(tp), values(ts), started)
        });
        let action = match admitted {
            Ok(forward) => {
                let told = upstream_told(&state, span.as_mut());
                let out = self.upstream_head_h2(
                    &state,
                    req,
                    client,
                    &request_id,
                    &forward,
                    told.as_ref(),
                );
                Action::Forward(forward, out)
            }
            Err(e) => Action::Refuse(e),
        };
        Some(Plan {
            state,
            started,
            method: req.method.clone(),
            path: 0..0,
            head_len: 0,
            body,
            close: false,
            label,
            auth,
            request_id,
            action,
            span,
        })
    }

    /// The HTTP/1.1 request head the upstream gets, as Pingora's proxy
    /// writes one for an HTTP/2 request: `Host` from the authority, the
    /// client's fields less what header hygiene removes, then what wxgate
    /// sets.
    fn upstream_head_h2(
        &self,
        state: &GatewayState,
        req: &RequestHeader,
        client: Client,
        request_id: &RequestId,
        forward: &Forward,
        trace: Option<&Propagated>,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(req.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(forward.target.as_deref().unwrap_or(req.raw_path()));
        out.extend_from_slice(b" HTTP/1.1\r\n");
        // Pingora's session has refused an authority and a `Host` that differ.
        let host = req
            .uri
            .authority()
            .map(|a| a.as_str().as_bytes())
            .or_else(|| req.headers.get(HOST).map(HeaderValue::as_bytes));
        line(&mut out, b"host", host.unwrap_or(b""));
        let policy = &state.headers;
        let connection = || {
            req.headers
                .get_all(http::header::CONNECTION)
                .into_iter()
                .map(HeaderValue::as_bytes)
        };
        let traced = state.metrics().traces().is_some();
        for (name, value) in &req.headers {
            let stale_id = !request_id.kept && *name == X_REQUEST_ID;
            if *name == HOST || stale_id || is_trace_field(traced, name.as_str().as_bytes()) {
                continue;
            }
            if policy.keeps(name.as_str().as_bytes(), connection()) {
                line(&mut out, name.as_str().as_bytes(), value.as_bytes());
            }
        }
        let target = forward.target.as_deref().unwrap_or(req.raw_path());
        let at = super::outgoing::RequestLine {
            host,
            method: req.method.as_str().as_bytes(),
            target,
            trace,
        };
        self.end_head(state, client, at, request_id, forward, &mut out);
        out
    }
}

/// Forward the stream's request and relay the answer.
async fn forward_stream(
    session: &mut HttpSession,
    plan: &Plan,
    forward: &Forward,
    out: &[u8],
) -> Done {
    let body_timeout = plan.state.limits.body_timeout;
    let mut client = Downstream::H2(H2Stream::new(session, body_timeout));
    let mut done = exchange::forward(
        &mut client,
        &plan.state,
        forward,
        exchange::Request {
            head: out,
            body: &[],
            to_stream: plan.body,
            head_request: plan.method == http::Method::HEAD,
            request_id: plan.request_id.as_bytes(),
            keep_alive: true,
            started: plan.started,
        },
    )
    .await;
    match done.refused.take() {
        Some(e) => {
            let mut d = refuse(session, &e, plan.request_id.as_bytes()).await;
            d.peer = done.done.peer;
            d.took = done.done.took;
            d
        }
        None => done.done,
    }
}

/// The body length of a stream this path serves: a usual method, an
/// origin-form target of RFC 3986 characters, framing Pingora's path
/// would take (see [`crate::framing`]), no `Expect`, and no body or one
/// of a `Content-Length`. `None`: Pingora's.
fn plain(req: &RequestHeader, no_body: bool) -> Option<u64> {
    if !METHODS.contains(&req.method.as_str()) {
        return None;
    }
    let target = req.raw_path();
    if target.first() != Some(&b'/') || !target.iter().all(|&b| crate::route::is_target_byte(b)) {
        return None;
    }
    let headers = &req.headers;
    if crate::framing::check(req, || None::<&[u8]>).is_err()
        || headers.contains_key(TRANSFER_ENCODING)
        || headers.contains_key(EXPECT)
    {
        return None;
    }
    let declared = match headers.get(CONTENT_LENGTH) {
        Some(v) => Some(length(v.as_bytes())?),
        None => None,
    };
    match (no_body, declared) {
        (true, _) => Some(0),
        (false, Some(n)) => Some(n),
        // A body of unknown length (HTTP/2 frames it): Pingora's.
        (false, None) => None,
    }
}

/// Answer a stream with an error's JSON response (the fields of
/// `respond`'s answers on Pingora's path).
async fn refuse(session: &mut HttpSession, e: &ApiError, request_id: &[u8]) -> Done {
    let r = e.to_response();
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut len = itoa::Buffer::new();
    for (name, value) in json_fields(len.format(r.body.len()), Some(request_id), &r.headers) {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            parts.headers.insert(n, v);
        }
    }
    let head = Box::new(ResponseHeader::from(parts));
    let sent = session.write_response_header(head, false).is_ok()
        && session.write_body(r.body.clone(), true).await.is_ok();
    Done {
        status: r.status,
        bytes: r.body.len(),
        keep_alive: sent,
        ..Done::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, target: &str, fields: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build_no_case(method, target.as_bytes(), None)
            .unwrap_or_else(|e| panic!("{e}"));
        req.set_version(http::Version::HTTP_2);
        for (n, v) in fields {
            req.append_header(n.to_string(), *v)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        req
    }

    #[test]
    fn the_plain_kind_is_taken_and_the_rest_left_to_pingora() {
        assert_eq!(plain(&request("GET", "/a?b=1", &[]), true), Some(0));
        let sized = request("POST", "/a", &[("content-length", "12")]);
        assert_eq!(plain(&sized, false), Some(12));
        // A body HTTP/2 frames without a length, an unusual method or
        // target, `Expect`, ambiguous or odd lengths, padded values.
        assert_eq!(plain(&request("POST", "/a", &[]), false), None);
        assert_eq!(plain(&request("CONNECT", "/a", &[]), true), None);
        assert_eq!(plain(&request("PROPFIND", "/a", &[]), true), None);
        assert_eq!(plain(&request("GET", "*", &[]), true), None);
        let expect = request(
            "PUT",
            "/a",
            &[("content-length", "1"), ("expect", "100-continue")],
        );
        assert_eq!(plain(&expect, false), None);
        let twice = request(
            "PUT",
            "/a",
            &[("content-length", "1"), ("content-length", "1")],
        );
        assert_eq!(plain(&twice, false), None);
        assert_eq!(
            plain(&request("PUT", "/a", &[("content-length", "+1")]), false),
            None
        );
        assert_eq!(
            plain(&request("GET", "/a", &[("x-a", " padded")]), true),
            None
        );
        let te = request("POST", "/a", &[("transfer-encoding", "chunked")]);
        assert_eq!(plain(&te, false), None);
    }
}
