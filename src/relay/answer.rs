//! The answers wxgate writes itself on its own HTTP/1 path: JSON errors
//! and the `/wx/*` endpoints' answers, with the fields of `respond`'s
//! answers on Pingora's path; and the body of an endpoint's request.

use bytes::BytesMut;
use pingora_core::protocols::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::downstream::date;
use super::exchange::{enter, Done};
use crate::conn::deadline::Phase;
use crate::error::ApiError;
use crate::headers::raw::line;
use crate::respond::json_fields;

/// Write an error as its JSON response.
pub(super) async fn refuse(
    stream: &mut Stream,
    e: &ApiError,
    request_id: &[u8],
    keep_alive: bool,
) -> Done {
    let r = e.to_response();
    respond(
        stream, r.status, &r.headers, &r.body, request_id, keep_alive,
    )
    .await
}

/// Write a JSON response (the fields of `respond`'s answers on Pingora's
/// path, and Pingora's `Date` and `Connection`).
pub(super) async fn respond(
    stream: &mut Stream,
    status: u16,
    headers: &[(&'static str, String)],
    body: &[u8],
    request_id: &[u8],
    keep_alive: bool,
) -> Done {
    let mut out = Vec::with_capacity(256usize.saturating_add(body.len()));
    status_line(&mut out, status);
    let mut len = itoa::Buffer::new();
    for (name, value) in json_fields(len.format(body.len()), Some(request_id), headers) {
        line(&mut out, name.as_bytes(), value);
    }
    line(&mut out, b"Date", date().as_bytes());
    let connection: &[u8] = if keep_alive { b"keep-alive" } else { b"close" };
    line(&mut out, b"Connection", connection);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    let sent = stream.write_all(&out).await.is_ok() && stream.flush().await.is_ok();
    enter(stream, Phase::AwaitRequest);
    Done {
        status,
        bytes: body.len(),
        keep_alive: keep_alive && sent,
        ..Done::default()
    }
}

/// The request's body, `len` bytes after its head of `head_len` (some
/// already in `buf`, the rest read into it). `None`: the client left.
pub(super) async fn read_body(
    stream: &mut Stream,
    buf: &mut BytesMut,
    head_len: usize,
    len: u64,
) -> Option<bytes::Bytes> {
    let end = head_len.checked_add(usize::try_from(len).ok()?)?;
    if buf.len() < end {
        enter(stream, Phase::Body);
        while buf.len() < end {
            buf.reserve(end.saturating_sub(buf.len()));
            match stream.read_buf(buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
    enter(stream, Phase::Open);
    buf.get(head_len..end).map(bytes::Bytes::copy_from_slice)
}

/// `HTTP/1.1 <status> <reason>\r\n`.
fn status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(n.format(status).as_bytes());
    out.push(b' ');
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}
