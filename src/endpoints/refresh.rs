//! `POST /wx/refresh`: rotate a refresh token into a new token pair.

use serde::Deserialize;

use super::TokenResponse;
use crate::error::ApiError;
use crate::sessions::Sessions;

/// The body of `/wx/refresh`.
#[derive(Debug, Deserialize, Default)]
pub struct RefreshRequest {
    #[serde(default)]
    pub refresh_token: Option<String>,
}

/// Rotate the presented refresh token (see [`Sessions::refresh`]).
pub async fn handle(sessions: &Sessions, req: RefreshRequest) -> Result<TokenResponse, ApiError> {
    let token = req
        .refresh_token
        .ok_or(ApiError::InvalidRequest("`refresh_token` is required"))?;
    Ok(TokenResponse::from(sessions.refresh(&token).await?))
}
