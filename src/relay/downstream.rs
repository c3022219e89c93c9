//! The client's end of an exchange ([`super::exchange`]): an HTTP/1
//! connection, whose response head and body are written as bytes, or an
//! HTTP/2 stream, which gets a head of fields and the body decoded.

use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{HeaderName, HeaderValue};
use pingora_core::protocols::http::v2::server::HttpSession;
use pingora_core::protocols::Stream;
use pingora_http::ResponseHeader;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::response::Response;
use crate::conn::deadline::{Deadlined, Phase};

/// Where an exchange reads the request body from and writes the response to.
pub(super) enum Downstream<'a> {
    /// An HTTP/1 connection: the head and body written as bytes (buffered,
    /// sent at [`Downstream::finish`] or when the buffer fills).
    H1(&'a mut Stream),
    /// An HTTP/2 stream: a head of fields, the body decoded into frames.
    H2(H2Stream<'a>),
}

/// The response head as the client gets it.
pub(super) enum Head {
    H1(Vec<u8>),
    H2(Box<ResponseHeader>),
}

impl Downstream<'_> {
    /// Chunked response bodies are written decoded (HTTP/2 frames its own
    /// data); HTTP/1 relays them as they are.
    pub(super) fn decodes_chunked(&self) -> bool {
        matches!(self, Self::H2(_))
    }

    /// Read more of the request body into `into`: the bytes read, `None`
    /// when the client is gone (or its body ended early).
    pub(super) async fn read_body(&mut self, into: &mut [u8]) -> Option<usize> {
        match self {
            Self::H1(s) => match s.read(into).await {
                Ok(0) | Err(_) => None,
                Ok(n) => Some(n),
            },
            Self::H2(s) => s.read_body(into).await,
        }
    }

    /// The client's head from the upstream's: its status and the fields
    /// that [`Response::passes`], then wxgate's request id. `None`: a field
    /// this client cannot carry (the upstream's answer is refused, 502).
    pub(super) fn head(
        &self,
        r: &Response<'_>,
        request_id: &[u8],
        keep_alive: bool,
    ) -> Option<Head> {
        match self {
            Self::H1(_) => {
                let mut out = Vec::with_capacity(r.len.saturating_add(128));
                r.write_head(request_id, date().as_bytes(), keep_alive, &mut out);
                Some(Head::H1(out))
            }
            Self::H2(_) => h2_head(r, request_id).map(Head::H2),
        }
    }

    /// Write the head and the first body bytes; `end`: no body follows.
    pub(super) async fn write_head(&mut self, head: Head, body: &[u8], end: bool) -> bool {
        match (self, head) {
            (Self::H1(s), Head::H1(out)) => write_all(s, &out).await && write_all(s, body).await,
            (Self::H2(s), Head::H2(out)) => s.write_head(out, body, end).await,
            _ => false,
        }
    }

    /// Write body bytes; `end`: the body is complete with them.
    pub(super) async fn write_body(&mut self, body: &[u8], end: bool) -> bool {
        match self {
            Self::H1(s) => write_all(s, body).await,
            Self::H2(s) => s.write_body(body, end).await,
        }
    }

    /// The response is complete: send what is buffered, end the stream.
    pub(super) async fn finish(&mut self) -> bool {
        match self {
            Self::H1(s) => s.flush().await.is_ok(),
            Self::H2(s) => s.session.finish().is_ok(),
        }
    }

    /// Tell the connection's read deadlines where the request stands
    /// (HTTP/2 connections have none).
    pub(super) fn enter(&self, phase: Phase) {
        if let Self::H1(s) = self {
            if let Some(d) = Deadlined::of(s) {
                d.enter(phase);
            }
        }
    }
}

/// Write to an HTTP/1 client (buffered).
async fn write_all(s: &mut Stream, bytes: &[u8]) -> bool {
    bytes.is_empty() || s.write_all(bytes).await.is_ok()
}

/// One HTTP/2 stream, with what it sent of its body and not yet read.
pub(super) struct H2Stream<'a> {
    pub(super) session: &'a mut HttpSession,
    pending: Bytes,
    /// The longest wait for the next piece of the body (`body_timeout`, as
    /// the read deadline of an HTTP/1 body).
    body_timeout: Duration,
}

impl<'a> H2Stream<'a> {
    pub(super) fn new(session: &'a mut HttpSession, body_timeout: Duration) -> Self {
        Self {
            session,
            pending: Bytes::new(),
            body_timeout,
        }
    }

    async fn read_body(&mut self, into: &mut [u8]) -> Option<usize> {
        while self.pending.is_empty() {
            // The body ended before its `Content-Length` (h2 refuses that
            // itself), the stream was reset, or the client went quiet.
            let next = self.session.read_body_bytes();
            let read = tokio::time::timeout(self.body_timeout, next).await;
            self.pending = read.ok()?.ok().flatten()?;
        }
        let n = into.len().min(self.pending.len());
        into.get_mut(..n)?
            .copy_from_slice(self.pending.get(..n).unwrap_or(&[]));
        self.pending.advance(n);
        Some(n)
    }

    async fn write_head(&mut self, head: Box<ResponseHeader>, body: &[u8], end: bool) -> bool {
        if self
            .session
            .write_response_header(head, end && body.is_empty())
            .is_err()
        {
            return false;
        }
        body.is_empty() || self.write_body(body, end).await
    }

    async fn write_body(&mut self, body: &[u8], end: bool) -> bool {
        if body.is_empty() && !end {
            return true;
        }
        let data = Bytes::copy_from_slice(body);
        self.session.write_body(data, end).await.is_ok()
    }
}

/// An HTTP/2 client's head. Pingora's HTTP/2 session sets `Date` and drops
/// the fields HTTP/2 has no place for (`Transfer-Encoding`, `Upgrade`, ...).
fn h2_head(r: &Response<'_>, request_id: &[u8]) -> Option<Box<ResponseHeader>> {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = http::StatusCode::from_u16(r.status).ok()?;
    parts.headers.reserve(r.fields.len().saturating_add(2));
    for f in r.fields {
        let name = f.name.as_bytes();
        if r.passes(name) {
            let name = HeaderName::from_bytes(name).ok()?;
            parts
                .headers
                .append(name, HeaderValue::from_bytes(f.value).ok()?);
        }
    }
    parts.headers.insert(
        crate::access::X_REQUEST_ID,
        HeaderValue::from_bytes(request_id).ok()?,
    );
    Some(Box::new(ResponseHeader::from(parts)))
}

/// The `Date` value, cached per second (Pingora's).
pub(super) fn date() -> http::HeaderValue {
    pingora_core::protocols::http::date::get_cached_date()
}
