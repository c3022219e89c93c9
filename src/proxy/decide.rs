//! The pipeline's decisions, as plain functions over the request header:
//! where a request goes ([`decide`]) and who may send it there ([`admit`]).
//! The Pingora glue in [`super`] only calls them.

use std::sync::Arc;

use crate::auth::authenticate_for;
use crate::error::ApiError;
use crate::headers::IdentityValues;
use crate::metrics::AuthOutcome;
use crate::route::{canonicalize, Endpoint, Route};
use crate::state::GatewayState;
use crate::token::Identity;

/// Steps 1 and 2 of the pipeline: where a request goes, by its canonical
/// path (`raw_path`: the request target as sent).
pub(crate) fn decide(state: &GatewayState, raw_path: &[u8]) -> Result<Decision, ApiError> {
    let canonical = canonicalize(raw_path)?;
    if let Some(ep) = state.endpoints.find(canonical.path()) {
        return Ok(Decision::Endpoint(ep));
    }
    if state.endpoints.owns(canonical.path()) {
        return Err(ApiError::NoRoute);
    }
    let route = state
        .routes
        .route(canonical.path())?
        .ok_or(ApiError::NoRoute)?;
    Ok(Decision::Route(Routed {
        route: Arc::clone(route),
        target: canonical
            .is_rewritten()
            .then(|| canonical.target().to_vec()),
    }))
}

/// Step 3: the caller's identity, as the route's auth mode asks (from the
/// request's `Authorization` values), and the header values it yields.
pub(crate) async fn admit<'a>(
    state: &GatewayState,
    authorization: impl Iterator<Item = &'a [u8]>,
    routed: Routed,
) -> Result<Forward, ApiError> {
    let route = routed.route;
    let identity = match authenticate_for(route.auth, state.sessions(), authorization).await? {
        Some(id) => {
            if !route.admits(&id) {
                return Err(ApiError::Forbidden);
            }
            let values = state.headers.identity_values(&id)?;
            Some(Verified { id, values })
        }
        None => None,
    };
    Ok(Forward {
        route,
        identity,
        target: routed.target,
    })
}

/// How the token check of an admitted (or refused) request ended, for
/// metrics and the access log.
pub(crate) fn auth_outcome(public: bool, admitted: &Result<Forward, ApiError>) -> AuthOutcome {
    match admitted {
        _ if public => AuthOutcome::Public,
        Ok(f) if f.identity.is_some() => AuthOutcome::Ok,
        Ok(_) => AuthOutcome::Missing,
        Err(e) => AuthOutcome::of_error(e),
    }
}

/// What the pipeline decided for a request.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Answer it here.
    Endpoint(Endpoint),
    /// Forward it on this route, once admitted.
    Route(Routed),
}

/// A request matched to a route, not yet authenticated.
#[derive(Debug)]
pub(crate) struct Routed {
    /// The route: its policy and upstream group.
    pub route: Arc<Route>,
    /// The canonical target, when it differs from what the client sent.
    pub target: Option<Vec<u8>>,
}

/// A request on its way upstream.
#[derive(Debug)]
pub(crate) struct Forward {
    /// The route: its policy and upstream group.
    pub route: Arc<Route>,
    /// The verified token (`None` on public routes and anonymous optional ones).
    pub identity: Option<Verified>,
    /// The canonical target, when it differs from what the client sent.
    pub target: Option<Vec<u8>>,
}

/// A verified token and the header values it yields.
#[derive(Debug)]
pub(crate) struct Verified {
    pub id: Identity,
    pub values: IdentityValues,
}
