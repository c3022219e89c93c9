//! Writing the responses wxgate makes itself: JSON bodies and [`ApiError`]s.
//!
//! Gateway endpoints and every refusal of the proxy path end here, so that
//! all of them carry the same headers: `Content-Type: application/json`, an
//! exact `Content-Length`, `Cache-Control: no-store` (tokens and errors
//! must not be cached by anything in between) and the request's
//! `X-Request-ID`.

use bytes::Bytes;
use http::header;
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
    resp.insert_header(header::CONTENT_TYPE, "application/json")?;
    resp.insert_header(header::CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header(header::CACHE_CONTROL, "no-store")?;
    if let Some(id) = session.req_header().headers.get(X_REQUEST_ID) {
        resp.insert_header(X_REQUEST_ID, id.clone())?;
    }
    for (name, value) in headers {
        resp.insert_header(*name, value.as_str())?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

/// Write an [`ApiError`] as its JSON response.
pub(crate) async fn respond_error(session: &mut Session, e: &ApiError) -> Result<()> {
    let r = e.to_response();
    respond(session, r.status, &r.headers, r.body).await
}
