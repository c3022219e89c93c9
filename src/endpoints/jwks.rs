//! `GET /.well-known/jwks.json`: the public keys tokens are checked with, for
//! backends that verify tokens themselves (RFC 7517).
//!
//! The signing key and the previous keys, by `kid`; never a secret or a
//! private key, so nothing for HS256 (`{"keys": []}`). The document is built
//! once per config ([`crate::token::TokenKeys::jwks`]).

use bytes::Bytes;
use http::Method;

use crate::error::ApiError;
use crate::state::GatewayState;

/// How long a client may keep the key set: a rotation publishes a new key
/// as a previous key for at least this long before it signs (README).
pub(crate) const MAX_AGE_SECS: u32 = 300;

/// The key set, for GET and HEAD.
pub(crate) fn handle(state: &GatewayState, method: &Method) -> Result<Bytes, ApiError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" });
    }
    Ok(state.jwks())
}

/// Cacheable, unlike every other answer of the gateway.
pub(crate) fn headers() -> [(&'static str, String); 1] {
    [("cache-control", format!("public, max-age={MAX_AGE_SECS}"))]
}
