//! Writing the responses wxgate makes itself: JSON bodies and [`ApiError`]s.
//!
//! Gateway endpoints and every refusal of the proxy path end here, so that
//! all of them carry the same headers: `Content-Type: application/json`, an
//! exact `Content-Length`, `Cache-Control: no-store` (tokens and errors
//! must not be cached by anything in between) and the request's
//! `X-Request-ID`.

use bytes::Bytes;
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use crate::access::X_REQUEST_ID;
use crate::error::ApiError;

/// Write a complete JSON response.
pub(crate) async fn respond(
    session: &mut Session,
    status: u16,
    headers: &[(&'static str, String)],
    body: Bytes,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(5 + headers.len()))?;
    let mut len = itoa::Buffer::new();
    let id = session.req_header().headers.get(X_REQUEST_ID);
    let fields = json_fields(len.format(body.len()), id.map(|v| v.as_bytes()), headers);
    for (name, value) in fields {
        resp.insert_header(name, value)?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

/// The fields of every JSON answer wxgate writes, on either HTTP/1 path:
/// type, exact length, no caching, the request id, then `extra`.
pub(crate) fn json_fields<'a>(
    body_len: &'a str,
    request_id: Option<&'a [u8]>,
    extra: &'a [(&'static str, String)],
) -> impl Iterator<Item = (&'static str, &'a [u8])> {
    [
        ("Content-Type", &b"application/json"[..]),
        ("Content-Length", body_len.as_bytes()),
        ("Cache-Control", b"no-store"),
    ]
    .into_iter()
    .chain(request_id.map(|id| ("X-Request-ID", id)))
    .chain(extra.iter().map(|(n, v)| (*n, v.as_bytes())))
}

/// Write an [`ApiError`] as its JSON response.
pub(crate) async fn respond_error(session: &mut Session, e: &ApiError) -> Result<()> {
    let r = e.to_response();
    respond(session, r.status, &r.headers, r.body).await
}
