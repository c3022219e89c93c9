//! `POST /wx/logout`: revoke the presented token, or with `{"all": true}`
//! everything of its user (Bearer token required; an empty body means "this token").

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::sessions::Sessions;
use crate::token::Identity;

/// The body of `/wx/logout`. A field it does not know is refused, not
/// ignored: a field from a client written for a newer gateway must not end
/// another set of sessions than the one it meant.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogoutRequest {
    #[serde(default)]
    pub all: bool,
    /// End every other session of the user in this app, keep this one.
    #[serde(default)]
    pub others: bool,
}

/// What was revoked: `"token"`, `"all"` or `"others"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct LogoutResponse {
    pub revoked: &'static str,
}

/// Revoke for the caller, whose token was verified.
///
/// A logout is idempotent: a token already `revoked` (a logout retried
/// after a 503 `store_unavailable`, or sent twice) has its revocation
/// written again, and the answer is 200 only once the store confirms it as
/// for the first (`replica_acks`). What this instance holds is no proof
/// that the fleet does: the first write may not have survived a failover.
/// A revoked token cannot end every session of its user, though (`all`, or
/// a token naming neither its session nor itself): 401 `token_revoked`.
pub(crate) async fn handle(
    sessions: &Sessions,
    caller: &Identity,
    revoked: bool,
    req: LogoutRequest,
) -> Result<LogoutResponse, ApiError> {
    if revoked && (req.all || req.others || (caller.family.is_none() && caller.jti.is_none())) {
        return Err(ApiError::TokenRevoked);
    }
    if req.all && req.others {
        return Err(ApiError::InvalidRequest(
            "`all` and `others` cannot go together",
        ));
    }
    if req.others {
        sessions.end_others(caller).await?;
        return Ok(LogoutResponse { revoked: "others" });
    }
    sessions.logout(caller, req.all).await?;
    Ok(LogoutResponse {
        revoked: if req.all { "all" } else { "token" },
    })
}
