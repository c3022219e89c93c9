//! WeChat's server APIs done for the backends, where the secrets live: the
//! OpenAPI relay (the app's access token added) and the user-state
//! signature (the user's `session_key` never leaves wxgate).

use super::LoginService;
use crate::error::ApiError;
use crate::wechat::openapi::{RelayAnswer, RelayRequest};
use crate::wechat::reply::TOKEN_ERRCODES;
use crate::wechat::signature::{user_signature, SIG_METHOD};

impl LoginService {
    /// The user-state signature of `message` for `openid` of this app, with
    /// the `session_key` of their latest login.
    pub async fn user_signature(&self, openid: &str, message: &[u8]) -> Result<String, ApiError> {
        let session = self
            .store()
            .get_session(openid)
            .await?
            .filter(|s| s.appid == self.appid)
            .ok_or(ApiError::SessionExpired)?;
        Ok(user_signature(session.session_key.expose(), message))
    }

    /// Relay `req` to WeChat with the app's access token; with `signer`,
    /// as that user (their `openid`, `signature` over the body and
    /// `sig_method` added). A token WeChat refuses (40001, 42001, 40014) is
    /// replaced once (at most once per 30 s per app across instances) and
    /// the call made once more.
    pub async fn relay(
        &self,
        mut req: RelayRequest,
        signer: Option<&str>,
        max_answer: usize,
    ) -> Result<RelayAnswer, ApiError> {
        if let Some(openid) = signer {
            let signature = self.user_signature(openid, &req.body).await?;
            req.query.retain(|(k, _)| k != "openid");
            req.query.push(("openid".into(), openid.into()));
            req.query.push(("signature".into(), signature));
            req.query.push(("sig_method".into(), SIG_METHOD.into()));
        }
        let token = self.access_tokens.get().await?;
        let first = self
            .wechat
            .relay(
                token.token.expose_str().unwrap_or_default(),
                &req,
                max_answer,
            )
            .await?;
        if !first.errcode().is_some_and(|c| TOKEN_ERRCODES.contains(&c)) {
            return Ok(first);
        }
        let fresh = self.access_tokens.replace(&token.token).await?;
        Ok(self
            .wechat
            .relay(
                fresh.token.expose_str().unwrap_or_default(),
                &req,
                max_answer,
            )
            .await?)
    }
}
