//! `POST /wx/refresh`: rotate a refresh token into a new token pair.

use serde::{Deserialize, Serialize};

use crate::clock::unix_now;
use crate::error::ApiError;
use crate::sessions::{Grant, Sessions};

/// The body of `/wx/refresh`; a field it does not know is refused.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefreshRequest {
    #[serde(default)]
    pub refresh_token: Option<String>,
}

/// Rotate the presented refresh token (see [`Sessions::refresh`]).
pub(crate) async fn handle(
    sessions: &Sessions,
    req: RefreshRequest,
) -> Result<TokenResponse, ApiError> {
    let token = req
        .refresh_token
        .ok_or(ApiError::InvalidRequest("`refresh_token` is required"))?;
    Ok(TokenResponse::from(sessions.refresh(&token).await?))
}

/// The tokens a login or a refresh hands out (`/wx/refresh`'s whole answer;
/// `/wx/login` adds `user`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct TokenResponse {
    pub token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until `token` expires.
    pub expires_in: u64,
    pub refresh_token: String,
    pub openid: String,
    pub unionid: Option<String>,
    /// The backend's user id, from the login hook.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The backend's roles for the user, from the login hook.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

impl From<Grant> for TokenResponse {
    fn from(g: Grant) -> Self {
        Self {
            token: g.token,
            token_type: "Bearer",
            expires_in: g.exp.saturating_sub(unix_now()),
            refresh_token: g.refresh_token,
            openid: g.openid,
            unionid: g.unionid,
            uid: g.user.uid,
            roles: g.user.roles,
        }
    }
}
