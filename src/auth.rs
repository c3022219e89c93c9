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
    let id = verify(sessions, authorization)?;
    sessions.check_revocation(&id).await?;
    Ok(id)
}

/// [`authenticate`] for `POST /wx/logout`, which also takes a token already
/// revoked (`true`): a logout is sent again after a 503, and must then
/// confirm the revocation fleet-wide rather than answer from what this
/// instance holds.
pub(crate) async fn authenticate_logout(
    sessions: &Sessions,
    headers: &HeaderMap,
) -> Result<(Identity, bool), ApiError> {
    let authorization = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .map(|v| v.as_bytes());
    let id = verify(sessions, authorization)?;
    match sessions.check_revocation(&id).await {
        Ok(()) => Ok((id, false)),
        Err(ApiError::TokenRevoked | ApiError::SessionEnded { .. }) => Ok((id, true)),
        Err(e) => Err(e),
    }
}

/// The token's signature and claims, without the revocation check.
fn verify<'a>(
    sessions: &Sessions,
    authorization: impl Iterator<Item = &'a [u8]>,
) -> Result<Identity, ApiError> {
    sessions
        .tokens()
        .verify_authorization(authorization)
        .map_err(|e| {
            if e != TokenError::Missing {
                tracing::debug!(reason = %e, "token refused");
            }
            ApiError::from(&e)
        })
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
