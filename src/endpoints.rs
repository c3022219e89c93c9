//! The paths wxgate answers itself: health, readiness and the `/wx/*` endpoints.
//!
//! [`answer`] is the one entry from the proxy: it checks the method, runs
//! [`authenticate`] for the endpoints that need a token (before reading any
//! body), reads and decodes the body ([`body`]), calls the endpoint's handler
//! with a typed request and writes its typed response, or the [`ApiError`].
//! Each endpoint lives in its own file with its request and response types.

pub(crate) mod body;
pub(crate) mod decrypt;
pub(crate) mod health;
pub(crate) mod jwks;
pub(crate) mod login;
pub(crate) mod logout;
pub(crate) mod phone;
pub(crate) mod refresh;
pub(crate) mod sessions;

use std::net::IpAddr;

use bytes::Bytes;
use pingora_error::Result;
use pingora_proxy::Session;
use serde::Serialize;

use crate::auth::{authenticate, authenticate_logout};
use crate::error::ApiError;
use crate::respond::{respond, respond_error};
use crate::route::Endpoint;
use crate::state::GatewayState;

use self::body::Body;

/// Answer an endpoint request completely.
pub(crate) async fn answer(
    state: &GatewayState,
    session: &mut Session,
    ep: Endpoint,
    client_ip: Option<IpAddr>,
) -> Result<()> {
    let result = match ep {
        Endpoint::Healthz => Ok(health::healthz()),
        Endpoint::Readyz => Ok(health::readyz(state).await),
        Endpoint::Jwks => {
            return match jwks::handle(state, &session.req_header().method) {
                Ok(body) => respond(session, 200, &jwks::headers(), body).await,
                Err(e) => respond_error(session, &e).await,
            };
        }
        Endpoint::Login
        | Endpoint::Decrypt
        | Endpoint::Logout
        | Endpoint::Refresh
        | Endpoint::Phone
        | Endpoint::Sessions
        | Endpoint::EndSession => {
            let result = wx(state, session, ep, client_ip).await;
            state.metrics().endpoint(ep, result.as_ref().map(|_| ()));
            result
        }
    };
    match result {
        Ok((status, body)) => respond(session, status, &[], body).await,
        Err(e) => {
            if !session.is_body_done() {
                // The rest of the body is not worth reading: close after answering.
                session.set_keepalive(None);
            }
            respond_error(session, &e).await
        }
    }
}

/// The `/wx/*` endpoints: each its one method, a token first where one is needed.
async fn wx(
    state: &GatewayState,
    session: &mut Session,
    ep: Endpoint,
    client_ip: Option<IpAddr>,
) -> Result<(u16, Bytes), ApiError> {
    let Some(login) = state.login() else {
        return Err(ApiError::NoRoute);
    };
    if session.req_header().method != ep.method() {
        return Err(ApiError::MethodNotAllowed { allow: ep.allow() });
    }
    // Decrypt, logout and phone need a valid token before any body is read
    // (logout's may be revoked already: see `logout::handle`).
    let headers = &session.req_header().headers;
    let (caller, revoked) = match ep {
        Endpoint::Decrypt | Endpoint::Phone | Endpoint::Sessions | Endpoint::EndSession => {
            (Some(authenticate(state.sessions(), headers).await?), false)
        }
        Endpoint::Logout => {
            let (id, revoked) = authenticate_logout(state.sessions(), headers).await?;
            (Some(id), revoked)
        }
        _ => (None, false),
    };
    let body = Body::read(session, state.max_body_bytes()).await?;
    match (ep, caller) {
        (Endpoint::Login | Endpoint::Refresh, _) => answer_body(state, ep, &body, client_ip).await,
        (Endpoint::Decrypt, Some(caller)) => {
            let app = login.get(caller.appid.as_deref())?;
            json(&decrypt::handle(app, &caller, body.parse()?).await?)
        }
        (Endpoint::Logout, Some(caller)) => {
            let req = body.parse_or_default()?;
            json(&logout::handle(state.sessions(), &caller, revoked, req).await?)
        }
        (Endpoint::Phone, Some(caller)) => {
            let app = login.get(caller.appid.as_deref())?;
            json(&phone::handle(app, &caller, body.parse()?).await?)
        }
        (Endpoint::Sessions, Some(caller)) => {
            json(&sessions::list(state.sessions(), &caller).await?)
        }
        (Endpoint::EndSession, Some(caller)) => {
            let path = session.req_header().uri.path();
            let id = state
                .endpoints
                .session_id(path)
                .ok_or(ApiError::SessionNotFound)?;
            json(&sessions::end(state.sessions(), &caller, id).await?)
        }
        _ => Err(ApiError::Internal),
    }
}

/// Answer `POST /wx/login` or `/wx/refresh` from its body, read whole (on
/// either HTTP/1 path: neither needs a token before its body).
pub(crate) async fn answer_body(
    state: &GatewayState,
    ep: Endpoint,
    body: &Body,
    client_ip: Option<IpAddr>,
) -> Result<(u16, Bytes), ApiError> {
    let Some(login) = state.login() else {
        return Err(ApiError::NoRoute);
    };
    match ep {
        Endpoint::Login => json(&login::handle(login, body.parse()?, client_ip).await?),
        Endpoint::Refresh => json(&refresh::handle(state.sessions(), body.parse()?).await?),
        _ => Err(ApiError::Internal),
    }
}

/// A 200 with `value` as JSON.
fn json<T: Serialize>(value: &T) -> Result<(u16, Bytes), ApiError> {
    serde_json::to_vec(value)
        .map(|v| (200, Bytes::from(v)))
        .map_err(|_| ApiError::Internal)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
