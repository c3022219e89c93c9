//! `POST /wx/login`: a `wx.login()` code in, tokens out.
//!
//! The body is checked completely before anything reaches WeChat, because a
//! code is single-use: a malformed request must not consume it. The work
//! itself (rate limits, one `jscode2session` per code, session, tokens) is
//! [`LoginService::login`].

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::body::pair;
use super::refresh::TokenResponse;
use crate::error::ApiError;
use crate::login::apps::Apps;
use crate::login::{ValidLogin, MAX_CODE_BYTES};

/// The fields of a login request (JSON or form-encoded).
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct LoginRequest {
    #[serde(default, alias = "jsCode", alias = "js_code")]
    pub code: Option<String>,
    /// Which mini program (required when the gateway serves several).
    #[serde(default, alias = "appId")]
    pub appid: Option<String>,
    #[serde(default, rename = "encryptedData")]
    pub encrypted_data: Option<String>,
    #[serde(default)]
    pub iv: Option<String>,
    #[serde(default, rename = "rawData")]
    pub raw_data: Option<String>,
    #[serde(default)]
    pub signature: Option<String>,
}

/// The body of a successful login: the tokens, and the decrypted
/// `encryptedData` when the request carried it. Never `session_key`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct LoginResponse {
    #[serde(flatten)]
    pub tokens: TokenResponse,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<serde_json::Value>,
}

impl LoginRequest {
    /// Check the fields before anything reaches WeChat (a bad request must not consume a code).
    pub(crate) fn validate(self) -> Result<ValidLogin, ApiError> {
        let code = self.code.unwrap_or_default();
        if code.is_empty() {
            return Err(ApiError::InvalidRequest("`code` is required"));
        }
        if code.len() > MAX_CODE_BYTES {
            return Err(ApiError::InvalidRequest("`code` is longer than 128 bytes"));
        }
        if !code.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::InvalidRequest(
                "`code` has characters a login code never has",
            ));
        }
        let encrypted = pair(
            self.encrypted_data,
            self.iv,
            "`encryptedData` and `iv` go together",
        )?;
        let signed = pair(
            self.raw_data,
            self.signature,
            "`rawData` and `signature` go together",
        )?;
        Ok(ValidLogin {
            code,
            encrypted,
            signed,
        })
    }
}

/// Log in the client at `client_ip` to the app the request names.
pub(crate) async fn handle(
    apps: &Apps,
    mut req: LoginRequest,
    client_ip: Option<IpAddr>,
) -> Result<LoginResponse, ApiError> {
    let appid = req.appid.take().filter(|a| !a.is_empty());
    let login = apps.get(appid.as_deref())?;
    let done = login.login(req.validate()?, client_ip).await?;
    Ok(LoginResponse {
        tokens: TokenResponse::from(done.grant),
        user: done.user,
    })
}
