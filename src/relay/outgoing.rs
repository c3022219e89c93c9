//! The request head the upstream gets, written straight from the parsed
//! request: the client's fields less what header hygiene removes, then
//! what wxgate sets (the client's address, the identity, its assertion,
//! the request id).

use super::head::{self, Head};
use super::{Relay, RequestId};
use crate::headers::raw::line;
use crate::headers::{Client, ClientInfo};
use crate::proxy::Forward;
use crate::state::GatewayState;
use crate::traces::{Propagated, TRACEPARENT, TRACESTATE};

/// What the assertion and `X-Forwarded-Host` are made of: the request's
/// `Host`, method and target (as sent upstream); and, with `[traces]`, what
/// the upstream is told of the trace.
pub(super) struct RequestLine<'a> {
    pub(super) host: Option<&'a [u8]>,
    pub(super) method: &'a [u8],
    pub(super) target: &'a [u8],
    pub(super) trace: Option<&'a Propagated>,
}

/// Whether a client's field is one wxgate writes itself with `[traces]`:
/// the W3C trace context.
pub(super) fn is_trace_field(traced: bool, name: &[u8]) -> bool {
    traced
        && (name.eq_ignore_ascii_case(TRACEPARENT.as_bytes())
            || name.eq_ignore_ascii_case(TRACESTATE.as_bytes()))
}

impl Relay {
    /// The request head the upstream gets: the client's fields less what
    /// header hygiene removes, then what wxgate sets.
    pub(super) fn upstream_head(
        &self,
        state: &GatewayState,
        head: &Head<'_>,
        client: Client,
        request_id: &RequestId,
        forward: &Forward,
        trace: Option<&Propagated>,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(head.len.saturating_add(256));
        out.extend_from_slice(head.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(forward.target.as_deref().unwrap_or(head.target));
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let connection = head::values(head.fields, b"connection");
        let policy = &state.headers;
        let traced = state.metrics().traces().is_some();
        for f in head.fields {
            let name = f.name.as_bytes();
            let keep = policy.keeps(name, connection.clone());
            let stale_id = !request_id.kept && name.eq_ignore_ascii_case(b"x-request-id");
            if keep && !stale_id && !is_trace_field(traced, name) {
                line(&mut out, name, f.value);
            }
        }
        let at = RequestLine {
            host: head.host,
            method: head.method.as_bytes(),
            target: forward.target.as_deref().unwrap_or(head.target),
            trace,
        };
        self.end_head(state, client, at, request_id, forward, &mut out);
        out
    }

    /// The end of an upstream request head: what wxgate sets (client
    /// address, protocol and host; the identity and its assertion for the
    /// request line's method and target; the request id, unless the
    /// client's is kept), then the blank line.
    pub(super) fn end_head(
        &self,
        state: &GatewayState,
        client: Client,
        line_of: RequestLine<'_>,
        request_id: &RequestId,
        forward: &Forward,
        out: &mut Vec<u8>,
    ) {
        let policy = &state.headers;
        let info = ClientInfo {
            ip: client.ip,
            https: self.tls,
        };
        policy.write_set(info, line_of.host, out);
        if let Some(v) = &forward.identity {
            policy.write_identity(&v.values, out);
            if let Some(a) = &state.assertions {
                let RequestLine { method, target, .. } = line_of;
                let jwt = a.sign(
                    &v.id,
                    &forward.route.prefix,
                    method,
                    target,
                    request_id.as_bytes(),
                );
                line(out, crate::assertion::HEADER.as_bytes(), jwt.as_bytes());
            }
        }
        if !request_id.kept {
            line(out, b"X-Request-ID", request_id.as_bytes());
        }
        if let Some(t) = line_of.trace {
            line(out, TRACEPARENT.as_bytes(), t.traceparent.as_bytes());
            if let Some(state) = &t.tracestate {
                line(out, TRACESTATE.as_bytes(), state.as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}
