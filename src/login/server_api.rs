//! WeChat's server APIs done for the backends, where the secrets live: the
//! OpenAPI relay (the app's access token added) and the user-state
//! signature (the user's `session_key` never leaves wxgate).

use std::net::IpAddr;

use super::{LoginService, RiskOnError};
use crate::error::ApiError;
use crate::wechat::openapi::{RelayAnswer, RelayRequest};
use crate::wechat::reply::TOKEN_ERRCODES;
use crate::wechat::signature::{user_signature, SIG_METHOD};

impl LoginService {
    /// The user-state signature of `message` for `openid` of this app, with
    /// the `session_key` of their latest login.
    pub async fn user_signature(&self, openid: &str, message: &[u8]) -> Result<String, ApiError> {
        let session = self.stored_session(openid).await?;
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
        // No replacement (the 30 s rule, WeChat down): WeChat's answer goes back.
        let Ok(fresh) = self.access_tokens.replace(&token.token).await else {
            return Ok(first);
        };
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

/// Largest answer of `checksession` or `resetusersessionkey` read.
const MAX_KEY_ANSWER: usize = 64 * 1024;

/// WeChat's errcode for a user-state signature made with a stale key.
const ERRCODE_BAD_SIGNATURE: i64 = 87009;

/// `resetusersessionkey`'s answer.
#[derive(serde::Deserialize)]
struct NewKey {
    openid: String,
    session_key: String,
}

impl LoginService {
    /// Whether WeChat still holds the stored `session_key` of `openid`
    /// (`checksession`, signed with it over the empty body).
    pub async fn check_session_key(&self, openid: &str) -> Result<bool, ApiError> {
        let answer = self
            .relay(key_call("/wxa/checksession"), Some(openid), MAX_KEY_ANSWER)
            .await?;
        match answer.errcode() {
            None => Ok(true),
            Some(ERRCODE_BAD_SIGNATURE) => Ok(false),
            Some(c) => Err(wechat_refused(c)),
        }
    }

    /// Have WeChat replace `openid`'s `session_key` (`resetusersessionkey`,
    /// signed with the stored one) and keep the new one in its place: the
    /// session's lifetime is unchanged, the key never leaves wxgate.
    pub async fn reset_session_key(&self, openid: &str) -> Result<(), ApiError> {
        let answer = self
            .relay(
                key_call("/wxa/resetusersessionkey"),
                Some(openid),
                MAX_KEY_ANSWER,
            )
            .await?;
        if let Some(c) = answer.errcode() {
            return Err(wechat_refused(c));
        }
        let new: NewKey =
            serde_json::from_slice(&answer.body).map_err(|_| ApiError::WechatError {
                wechat_errcode: None,
            })?;
        if new.openid != openid || !is_session_key(&new.session_key) {
            return Err(ApiError::WechatError {
                wechat_errcode: None,
            });
        }
        let mut session = self.stored_session(openid).await?;
        session.session_key = new.session_key.into();
        self.store()
            .put_session(openid, &session, self.session_ttl)
            .await?;
        tracing::info!("a session_key was reset at WeChat");
        Ok(())
    }
}

/// A signed `GET` of WeChat's key APIs.
fn key_call(api: &str) -> RelayRequest {
    RelayRequest {
        api: api.to_string(),
        post: false,
        query: Vec::new(),
        content_type: None,
        body: bytes::Bytes::new(),
    }
}

/// A WeChat errcode as the caller's error.
fn wechat_refused(errcode: i64) -> ApiError {
    ApiError::from(&crate::wechat::reply::WechatError::Api {
        errcode,
        errmsg: String::new(),
    })
}

/// A `session_key` as WeChat gives them: base64 of 16 bytes.
fn is_session_key(text: &str) -> bool {
    use base64::Engine as _;
    text.len() <= 64
        && base64::engine::general_purpose::STANDARD
            .decode(text)
            .is_ok_and(|k| k.len() == 16)
}

/// `getuserriskrank`'s answer.
#[derive(serde::Deserialize)]
struct RiskRank {
    risk_rank: u8,
}

/// The highest rank WeChat gives.
const MAX_RISK_RANK: u8 = 4;

impl LoginService {
    /// WeChat's risk rank of a login of `openid` from `ip`, with
    /// `[login.risk]` (`None` without it); without a rank from WeChat, as
    /// `on_error` says: none, or WeChat's error (counted).
    pub(super) async fn risk_rank_of(
        &self,
        openid: &str,
        ip: Option<IpAddr>,
    ) -> Result<Option<u8>, ApiError> {
        let Some((cfg, metrics)) = &self.risk else {
            return Ok(None);
        };
        // The token, the call and a retry: one `[wechat] timeout` in all.
        let rank = tokio::time::timeout(self.wechat_timeout, self.risk_rank(openid, ip, cfg.scene));
        match rank.await.unwrap_or(Err(ApiError::WechatTimeout)) {
            Ok(r) => Ok(Some(r)),
            Err(e) if cfg.on_error == RiskOnError::Allow => {
                tracing::warn!(error = %e, "no risk rank from WeChat: the login goes on without one");
                Ok(None)
            }
            Err(e) => {
                metrics.login_risk(None, true);
                Err(e)
            }
        }
    }

    /// A login ranked `rank` at `refuse_at` or above is refused (403
    /// `login_refused`); counted either way.
    pub(super) fn refuse_risky(&self, rank: Option<u8>) -> Result<(), ApiError> {
        let Some((cfg, metrics)) = &self.risk else {
            return Ok(());
        };
        let refused = matches!((rank, cfg.refuse_at), (Some(r), Some(at)) if r >= at);
        metrics.login_risk(rank, refused);
        if refused {
            return Err(ApiError::LoginRefused {
                message: Some("WeChat rates this login as too risky".into()),
            });
        }
        Ok(())
    }

    /// `getuserriskrank` for `openid` from `ip` in `scene`.
    async fn risk_rank(&self, openid: &str, ip: Option<IpAddr>, scene: u8) -> Result<u8, ApiError> {
        let body = serde_json::json!({
            "appid": self.appid,
            "openid": openid,
            "scene": scene,
            "client_ip": ip.map(|i| i.to_canonical().to_string()).unwrap_or_default(),
        });
        let call = RelayRequest {
            api: "/wxa/getuserriskrank".into(),
            post: true,
            query: Vec::new(),
            content_type: Some("application/json".into()),
            body: body.to_string().into(),
        };
        let answer = self.relay(call, None, MAX_KEY_ANSWER).await?;
        if let Some(c) = answer.errcode() {
            return Err(wechat_refused(c));
        }
        match serde_json::from_slice::<RiskRank>(&answer.body) {
            Ok(r) if r.risk_rank <= MAX_RISK_RANK => Ok(r.risk_rank),
            _ => Err(ApiError::WechatError {
                wechat_errcode: None,
            }),
        }
    }
}
