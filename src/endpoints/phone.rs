//! `POST /wx/phone`: the user's phone number, from the code of
//! `<button open-type="getPhoneNumber">` (Bearer token required). The work
//! is [`LoginService::phone`].

use std::sync::Arc;

use serde::Deserialize;

use crate::error::ApiError;
use crate::login::{LoginService, MAX_CODE_BYTES};
use crate::token::Identity;
use crate::wechat::reply::PhoneNumber;

/// The body of `/wx/phone`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct PhoneRequest {
    #[serde(default)]
    pub code: Option<String>,
}

/// The phone number behind the caller's code.
pub(crate) async fn handle(
    login: &Arc<LoginService>,
    caller: &Identity,
    req: PhoneRequest,
) -> Result<PhoneNumber, ApiError> {
    let code = req.code.unwrap_or_default();
    if code.is_empty() {
        return Err(ApiError::InvalidRequest("`code` is required"));
    }
    if code.len() > MAX_CODE_BYTES || !code.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::InvalidRequest(
            "`code` is not a getPhoneNumber code",
        ));
    }
    login.phone(caller, &code).await
}
