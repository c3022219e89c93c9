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

/// Revoke for the caller, whose token was checked.
pub(crate) async fn handle(
    sessions: &Sessions,
    caller: &Identity,
    req: LogoutRequest,
) -> Result<LogoutResponse, ApiError> {
    sessions.logout(caller, req.all).await?;
    Ok(LogoutResponse {
        revoked: if req.all { "all" } else { "token" },
    })
}
