//! WeChat's server APIs: `jscode2session`, `stable_token` (held once for all
//! instances by [`access_token`]), `getuserphonenumber`, and the
//! WXBizDataCrypt rules.
//!
//! The login service talks to WeChat through [`WechatApi`], so its unit
//! tests can stand in a fake WeChat without a socket; [`client::WechatClient`]
//! is the real one.

pub mod access_token;
pub mod client;
mod config;
pub mod crypto;
mod lean;
pub mod openapi;
pub mod reply;
pub mod signature;

use async_trait::async_trait;

pub use self::config::{WechatApp, WechatConfig};
pub use self::openapi::RelayConfig;
use self::openapi::{RelayAnswer, RelayRequest};
use self::reply::{AccessToken, Code2Session, PhoneNumber, WechatError};

/// The WeChat calls wxgate makes.
#[async_trait]
pub trait WechatApi: Send + Sync + 'static {
    /// Exchange a `wx.login` code for the user's openid and `session_key`.
    async fn code2session(&self, code: &str) -> Result<Code2Session, WechatError>;

    /// The app's access token (`stable_token`).
    async fn stable_token(&self, force_refresh: bool) -> Result<AccessToken, WechatError>;

    /// The phone number behind a `getPhoneNumber` code of `openid`.
    async fn phone_number(
        &self,
        access_token: &str,
        code: &str,
        openid: &str,
    ) -> Result<PhoneNumber, WechatError>;

    /// One call of the OpenAPI relay with `access_token`: WeChat's answer as
    /// it came, of at most `max_answer` bytes.
    async fn relay(
        &self,
        _access_token: &str,
        _req: &RelayRequest,
        _max_answer: usize,
    ) -> Result<RelayAnswer, WechatError> {
        Err(WechatError::Setup("this WeChat does not relay".into()))
    }
}

#[async_trait]
impl WechatApi for client::WechatClient {
    async fn code2session(&self, code: &str) -> Result<Code2Session, WechatError> {
        client::WechatClient::code2session(self, code).await
    }

    async fn stable_token(&self, force_refresh: bool) -> Result<AccessToken, WechatError> {
        client::WechatClient::stable_token(self, force_refresh).await
    }

    async fn phone_number(
        &self,
        access_token: &str,
        code: &str,
        openid: &str,
    ) -> Result<PhoneNumber, WechatError> {
        client::WechatClient::phone_number(self, access_token, code, openid).await
    }

    async fn relay(
        &self,
        access_token: &str,
        req: &RelayRequest,
        max_answer: usize,
    ) -> Result<RelayAnswer, WechatError> {
        client::WechatClient::relay(self, access_token, req, max_answer).await
    }
}
