//! What the internal listener's endpoints share: the check of their own
//! Bearer secret, and errors rendered as the public listener renders them.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::{HeaderMap, Response};

use crate::error::ApiError;
use crate::http1::response;
use crate::secret::Secret;

/// `None` when `headers` carry `Authorization: Bearer <secret>` (compared
/// in constant time); else the 401 to answer, naming `realm`.
pub(super) fn refused(
    headers: &HeaderMap,
    secret: &Secret,
    realm: &'static str,
) -> Option<Response<Full<Bytes>>> {
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if secret.ct_eq(presented.as_bytes()) {
        return None;
    }
    let mut r = error_response(&ApiError::TokenInvalid);
    r.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(realm));
    Some(r)
}

/// `e` as JSON, with its headers (`Allow`, `Retry-After`, ...).
pub(super) fn error_response(e: &ApiError) -> Response<Full<Bytes>> {
    let rendered = e.to_response();
    let mut r = response(rendered.status, "application/json", rendered.body);
    for (name, value) in rendered.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            r.headers_mut().insert(name, v);
        }
    }
    r
}
