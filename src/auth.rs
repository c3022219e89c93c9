//! Who is calling: the one check behind every token-protected path.
//!
//! A protected route, `/wx/decrypt` and `/wx/logout` all ask the same two
//! questions, in this order, and only here: is the Bearer token valid
//! ([`crate::token`]: signature, algorithm, claims, size, exactly one
//! `Authorization` header), and was it revoked ([`Sessions::check_revocation`]:
//! one store lookup, `[store] on_error` deciding when the store is down)?

use http::{header, HeaderMap};

use crate::error::ApiError;
use crate::route::AuthMode;
use crate::sessions::Sessions;
use crate::token::{Identity, TokenError};

/// The identity behind a request that must carry a valid, unrevoked token.
pub(crate) async fn authenticate(
    sessions: &Sessions,
    headers: &HeaderMap,
) -> Result<Identity, ApiError> {
    let authorization = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .map(|v| v.as_bytes());
    authenticate_values(sessions, authorization).await
}

/// [`authenticate`] from the request's `Authorization` values, however the
/// request was parsed.
async fn authenticate_values<'a>(
    sessions: &Sessions,
    authorization: impl Iterator<Item = &'a [u8]>,
) -> Result<Identity, ApiError> {
    let id = sessions
        .tokens()
        .verify_authorization(authorization)
        .map_err(|e| {
            if e != TokenError::Missing {
                tracing::debug!(reason = %e, "token refused");
            }
            ApiError::from(&e)
        })?;
    sessions.check_revocation(&id).await?;
    Ok(id)
}

/// [`authenticate`] as a route's auth mode asks: `public` routes take no
/// identity, `optional` ones none when no token is sent (a bad one is refused).
pub(crate) async fn authenticate_for<'a>(
    mode: AuthMode,
    sessions: &Sessions,
    authorization: impl Iterator<Item = &'a [u8]>,
) -> Result<Option<Identity>, ApiError> {
    match mode {
        AuthMode::Public => Ok(None),
        AuthMode::Required => authenticate_values(sessions, authorization).await.map(Some),
        AuthMode::Optional => match authenticate_values(sessions, authorization).await {
            Err(ApiError::TokenMissing) => Ok(None),
            other => other.map(Some),
        },
    }
}
