//! The labels of per-request series: what a request matched, how its token
//! check ended, its method and status classes.

use crate::error::ApiError;
use crate::route::Endpoint;

/// Method classes: the common methods by name, the rest as `other`.
pub(super) const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
];

/// Status classes; `none` when no response was written (the client left).
pub(super) const STATUSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

/// What a request was matched to, as a label: a route (by index), one of the
/// gateway's endpoints, or nothing (no route, malformed path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouteLabel {
    /// Not matched (yet): `route="none"`.
    #[default]
    None,
    /// A configured route, by index: `route="<prefix>"`.
    Route(usize),
    /// A gateway endpoint: `route="<its path>"`.
    Endpoint(Endpoint),
}

/// How a request's token check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    /// A valid, unrevoked token.
    Ok,
    /// No token (refused on required routes, let through on optional ones).
    Missing,
    /// The token has expired.
    Expired,
    /// Any other bad token: signature, algorithm, claims, shape.
    Invalid,
    /// The token was revoked (logout, refresh reuse).
    Revoked,
    /// A public route: no check.
    Public,
    /// A valid token without a role or app the route requires.
    Forbidden,
    /// The revocation check could not be made (store down, fail-closed).
    Error,
}

impl AuthOutcome {
    pub(super) const ALL: [AuthOutcome; 8] = [
        AuthOutcome::Ok,
        AuthOutcome::Missing,
        AuthOutcome::Expired,
        AuthOutcome::Invalid,
        AuthOutcome::Revoked,
        AuthOutcome::Public,
        AuthOutcome::Forbidden,
        AuthOutcome::Error,
    ];

    /// The outcome as metrics and logs name it.
    pub fn label(self) -> &'static str {
        match self {
            AuthOutcome::Ok => "ok",
            AuthOutcome::Missing => "missing",
            AuthOutcome::Expired => "expired",
            AuthOutcome::Invalid => "invalid",
            AuthOutcome::Revoked => "revoked",
            AuthOutcome::Public => "public",
            AuthOutcome::Forbidden => "forbidden",
            AuthOutcome::Error => "error",
        }
    }

    /// The outcome of a refused token check.
    pub fn of_error(e: &ApiError) -> Self {
        match e {
            ApiError::TokenMissing => AuthOutcome::Missing,
            ApiError::TokenExpired => AuthOutcome::Expired,
            ApiError::TokenRevoked | ApiError::SessionEnded { .. } => AuthOutcome::Revoked,
            ApiError::TokenInvalid => AuthOutcome::Invalid,
            ApiError::Forbidden => AuthOutcome::Forbidden,
            _ => AuthOutcome::Error,
        }
    }
}

/// The method class of a request, as an index into [`METHODS`].
pub(super) fn method_index(method: &http::Method) -> usize {
    METHODS
        .iter()
        .position(|m| *m == method.as_str())
        .unwrap_or(METHODS.len() - 1)
}

/// The status class of a response (0: none written), as an index into [`STATUSES`].
pub(super) fn status_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        500..=599 => 4,
        _ => 5,
    }
}
