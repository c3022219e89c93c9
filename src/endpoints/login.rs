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
use crate::store::Device;

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
    /// A label for the session list (`platform`, `model`, `system` from
    /// `wx.getDeviceInfo`): each at most [`MAX_DEVICE_FIELD`] printable
    /// characters. Shown to the user, never trusted.
    #[serde(default)]
    pub device: Option<Device>,
}

/// Longest `device` field, in characters.
pub(crate) const MAX_DEVICE_FIELD: usize = 64;

/// A device label as sent; `None` when it says nothing.
fn device_label(device: Option<Device>) -> Result<Option<Device>, ApiError> {
    let Some(d) = device else {
        return Ok(None);
    };
    for f in [&d.platform, &d.model, &d.system].into_iter().flatten() {
        if f.chars().count() > MAX_DEVICE_FIELD {
            return Err(ApiError::InvalidRequest(
                "a `device` field is longer than 64 characters",
            ));
        }
        if f.chars().any(char::is_control) {
            return Err(ApiError::InvalidRequest(
                "a `device` field has a control character",
            ));
        }
    }
    let empty = [&d.platform, &d.model, &d.system]
        .into_iter()
        .all(|f| f.as_deref().is_none_or(str::is_empty));
    Ok((!empty).then_some(d))
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
        let device = device_label(self.device)?;
        Ok(ValidLogin {
            code,
            device,
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
