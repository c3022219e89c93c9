//! WeChat's server APIs: `jscode2session` over HTTP and the WXBizDataCrypt rules.
//!
//! The login service talks to WeChat through [`WechatApi`], so its unit
//! tests can stand in a fake WeChat without a socket; [`client::WechatClient`]
//! is the real one.

pub mod client;
pub mod crypto;

use async_trait::async_trait;

use self::client::{Code2Session, WechatError};

/// The WeChat calls wxgate makes.
#[async_trait]
pub trait WechatApi: Send + Sync + 'static {
    /// Exchange a `wx.login` code for the user's openid and `session_key`.
    async fn code2session(&self, code: &str) -> Result<Code2Session, WechatError>;
}

#[async_trait]
impl WechatApi for client::WechatClient {
    async fn code2session(&self, code: &str) -> Result<Code2Session, WechatError> {
        client::WechatClient::code2session(self, code).await
    }
}
