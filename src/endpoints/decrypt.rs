//! `POST /wx/decrypt`: decrypt more `encryptedData` later, with the
//! `session_key` stored at login (Bearer token required).

use serde::{Deserialize, Serialize};

use super::body::pair;
use crate::error::ApiError;
use crate::login::LoginService;
use crate::token::Identity;

/// The body of `/wx/decrypt`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct DecryptRequest {
    #[serde(default, rename = "encryptedData")]
    pub encrypted_data: Option<String>,
    #[serde(default)]
    pub iv: Option<String>,
}

/// The decrypted object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct DecryptResponse {
    pub data: serde_json::Value,
}

/// Decrypt for the caller, whose token was checked.
pub(crate) async fn handle(
    login: &LoginService,
    caller: &Identity,
    req: DecryptRequest,
) -> Result<DecryptResponse, ApiError> {
    let Some((data, iv)) = pair(
        req.encrypted_data,
        req.iv,
        "`encryptedData` and `iv` are required",
    )?
    else {
        return Err(ApiError::InvalidRequest(
            "`encryptedData` and `iv` are required",
        ));
    };
    let data = login.decrypt(&caller.openid, &data, &iv).await?;
    Ok(DecryptResponse { data })
}
