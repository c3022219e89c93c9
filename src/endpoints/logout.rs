//! `POST /wx/logout`: revoke the presented token, or with `{"all": true}`
//! everything of its user (Bearer token required; an empty body means "this token").

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::sessions::Sessions;
use crate::token::Identity;

/// The body of `/wx/logout`. A field it does not know is refused, not
/// ignored: `{"others": true}` from a client written for a newer gateway
/// must not end the current session instead.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogoutRequest {
    #[serde(default)]
    pub all: bool,
}

/// What was revoked: `"token"` or `"all"`.
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
    if revoked && (req.all || (caller.family.is_none() && caller.jti.is_none())) {
        return Err(ApiError::TokenRevoked);
    }
    sessions.logout(caller, req.all).await?;
    Ok(LogoutResponse {
        revoked: if req.all { "all" } else { "token" },
    })
}
