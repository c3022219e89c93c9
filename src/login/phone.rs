//! `/wx/phone`: the phone number behind a `getPhoneNumber` code.
//!
//! `getuserphonenumber` with the app's shared access token
//! ([`crate::wechat::access_token`]) and the caller's openid (WeChat checks
//! the code belongs to that user); a token WeChat calls invalid (40001,
//! 42001, 40014) is replaced once and the call made once more. With a login
//! hook, the backend hears of the number (`"event": "phone"`) before the
//! mini program does; should the hook fail, the number is kept for a retry
//! with the same code (sealed under it, like a login outcome), so the code
//! is not spent at WeChat for nothing.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::flight::CODE_CACHE_TTL;
use super::LoginService;
use crate::error::ApiError;
use crate::hook::{Call, Event};
use crate::seal;
use crate::token::Identity;
use crate::wechat::reply::{PhoneNumber, WechatError, TOKEN_ERRCODES};

/// A phone number WeChat gave for a code, kept while the hook has not heard of it.
#[derive(Serialize, Deserialize)]
struct Kept {
    openid: String,
    phone: PhoneNumber,
}

impl LoginService {
    /// The phone number behind `code`, for the caller (a verified token).
    ///
    /// Runs in a task of its own: a client that hangs up once WeChat has
    /// spent the code does not keep the backend from hearing of the number.
    pub async fn phone(
        self: &Arc<Self>,
        caller: &Identity,
        code: &str,
    ) -> Result<PhoneNumber, ApiError> {
        // Each call may spend the app's getuserphonenumber quota: counted
        // first, per user and in all.
        self.limits.check_phone(&caller.openid).await?;
        let this = Arc::clone(self);
        let caller = caller.clone();
        let code = code.to_string();
        tokio::spawn(opentelemetry::context::FutureExt::with_current_context(
            async move { this.phone_now(&caller, &code).await },
        ))
        .await
        .map_err(|_| ApiError::Internal)?
    }

    async fn phone_now(&self, caller: &Identity, code: &str) -> Result<PhoneNumber, ApiError> {
        let key = format!("phone\0{}\0{code}", self.appid);
        let id = seal::code_id(&key);
        let kept = match self.store().get_code_outcome(&id).await? {
            Some(sealed) => seal::open(&key, &sealed)
                .and_then(|plain| serde_json::from_slice::<Kept>(&plain).ok()),
            None => None,
        };
        let phone = match kept {
            // Only the user WeChat gave it for may have it back.
            Some(k) if k.openid == caller.openid => k.phone,
            Some(_) => {
                return Err(ApiError::InvalidPhoneCode {
                    wechat_errcode: 40163,
                })
            }
            None => self.ask_wechat(&caller.openid, code).await?,
        };
        let Some(hook) = &self.hook else {
            return Ok(phone);
        };
        let number = serde_json::to_value(&phone).map_err(|_| ApiError::Internal)?;
        let call = Call {
            event: Event::Phone,
            appid: &self.appid,
            openid: &caller.openid,
            unionid: caller.unionid.as_deref(),
            phone: Some(&number),
            risk_rank: caller.user.risk,
        };
        if let Err(e) = hook.call(&call).await {
            let kept = Kept {
                openid: caller.openid.clone(),
                phone,
            };
            if let Ok(plain) = serde_json::to_vec(&kept) {
                let sealed = seal::seal(&key, &plain);
                if let Err(e) = self
                    .store()
                    .put_code_outcome(&id, &sealed, CODE_CACHE_TTL)
                    .await
                {
                    tracing::warn!(error = %crate::error::chain(&e), "cannot keep a phone number for a retry");
                }
            }
            return Err(e.into());
        }
        Ok(phone)
    }

    /// `getuserphonenumber`, once more with a new access token if WeChat
    /// refused the one it was given.
    async fn ask_wechat(&self, openid: &str, code: &str) -> Result<PhoneNumber, ApiError> {
        let token = self.access_tokens.get().await?;
        let first = self
            .wechat
            .phone_number(token.token.expose_str().unwrap_or_default(), code, openid)
            .await;
        let result = match first {
            Err(e) if e.errcode().is_some_and(|c| TOKEN_ERRCODES.contains(&c)) => {
                let fresh = self.access_tokens.replace(&token.token).await?;
                self.wechat
                    .phone_number(fresh.token.expose_str().unwrap_or_default(), code, openid)
                    .await
            }
            other => other,
        };
        result.map_err(|e| phone_error(&e))
    }
}

/// How a failed `getuserphonenumber` reaches the mini program.
fn phone_error(e: &WechatError) -> ApiError {
    match e.errcode() {
        Some(c @ (40029 | 40163)) => ApiError::InvalidPhoneCode { wechat_errcode: c },
        _ => ApiError::from(e),
    }
}
