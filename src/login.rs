//! The login: a `wx.login` code becomes a WeChat session and a token pair.
//!
//! [`LoginService::login`] reads top to bottom: rate limits ([`limits`]),
//! then one `jscode2session` per code however many requests and instances
//! carry it ([`flight`]), which saves the session and issues the token pair;
//! after WeChat accepted the code, the session is saved, the backend's login
//! hook is asked ([`crate::hook`], when configured) and the token pair is
//! issued with its answer; a failure after WeChat accepted the code keeps
//! what WeChat said, so a retry with the same code finishes the login without
//! spending the code again. Then the optional `rawData` signature check and
//! `encryptedData` decryption with the `session_key` of that exchange. A repeated code gets the same
//! tokens, unless their session has ended since (then the code counts as used).
//!
//! `session_key` is saved in the [`Store`] under the openid and never leaves
//! the gateway. [`LoginService::decrypt`] uses it again for `/wx/decrypt`.

pub(crate) mod apps;
mod config;
pub(crate) mod flight;
pub(crate) mod limits;
mod phone;
mod server_api;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::unix_now;
use crate::clock::Clock;
use crate::error::ApiError;
use crate::hook::{Call, Event, LoginHook};
use crate::metrics::Metrics;
use crate::sessions::index::LoginMeta;
use crate::sessions::{Grant, Sessions};
use crate::store::{Device, Store, WxSession};
use crate::token::UserClaims;
use crate::wechat::access_token::AccessTokens;
use crate::wechat::client::{code_fingerprint, WechatClient};
use crate::wechat::reply::WechatError;
use crate::wechat::{crypto, WechatApi, WechatApp, WechatConfig};

pub use self::config::{LoginConfig, Rate, RiskConfig, RiskOnError, MAX_STATE_TTL};
use self::flight::{Attempt, CodeFlights, Exchanged, WxLogin};
use self::limits::{LoginLimits, Rates};

/// WeChat's errcode for a login code that was already used.
const CODE_USED: i64 = 40163;

/// Longest accepted login code (WeChat's are 32 characters).
pub(crate) const MAX_CODE_BYTES: usize = 128;

/// A login request with its fields checked (see `endpoints::login`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidLogin {
    pub code: String,
    /// What the mini program said of its device (checked, never trusted).
    pub device: Option<Device>,
    /// `encryptedData` and `iv`.
    pub encrypted: Option<(String, String)>,
    /// `rawData` and `signature`.
    pub signed: Option<(String, String)>,
}

/// A successful login.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedIn {
    /// The tokens of this login (the same for every request with its code).
    pub grant: Grant,
    /// The decrypted `encryptedData`, when the request carried it.
    pub user: Option<serde_json::Value>,
}

/// Serves `/wx/login` and `/wx/decrypt`.
pub struct LoginService {
    wechat: Arc<dyn WechatApi>,
    appid: String,
    sessions: Arc<Sessions>,
    session_ttl: Duration,
    limits: LoginLimits,
    flights: Arc<CodeFlights>,
    /// One `jscode2session` call's budget (the flights' claims outlast it).
    wechat_timeout: Duration,
    hook: Option<Arc<LoginHook>>,
    /// The app's WeChat access token, shared by every instance.
    access_tokens: Arc<AccessTokens>,
    /// `[login.risk]`, and where its ranks are counted.
    risk: Option<(RiskConfig, Arc<Metrics>)>,
}

impl LoginService {
    /// Build the service of the mini program `app` with a WeChat client
    /// (and its connection pool) made here, once.
    pub fn new(
        wechat: &WechatConfig,
        app: &WechatApp,
        login: &LoginConfig,
        sessions: Arc<Sessions>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, WechatError> {
        let client = WechatClient::new(
            &wechat.api_base,
            &app.appid,
            app.secret.clone(),
            wechat.timeout,
        )?
        .with_metrics(metrics);
        Ok(Self::with_wechat(
            Arc::new(client),
            &app.appid,
            wechat.timeout,
            login,
            sessions,
            clock,
        ))
    }

    /// Build the service over any [`WechatApi`]; `wechat_timeout` bounds one call.
    pub fn with_wechat(
        wechat: Arc<dyn WechatApi>,
        appid: &str,
        wechat_timeout: Duration,
        login: &LoginConfig,
        sessions: Arc<Sessions>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let store = sessions.store().clone();
        Self {
            access_tokens: Arc::new(AccessTokens::new(
                wechat.clone(),
                store.clone(),
                appid,
                wechat_timeout,
            )),
            wechat,
            appid: appid.to_string(),
            session_ttl: login.session_ttl,
            limits: LoginLimits::new(
                store.clone(),
                clock,
                appid,
                login.rate_limit_per_ip,
                login.rate_limit_global,
            )
            .with_user_limits(
                Rates {
                    each: login.rate_limit_phone_per_user,
                    global: login.rate_limit_phone_global,
                },
                Rates {
                    each: login.rate_limit_decrypt_per_user,
                    global: login.rate_limit_decrypt_global,
                },
            ),
            flights: Arc::new(CodeFlights::new(
                store,
                appid,
                wechat_timeout,
                Duration::ZERO,
            )),
            wechat_timeout,
            sessions,
            hook: None,
            risk: None,
        }
    }

    /// Ask WeChat's risk rank of each login (`[login.risk]`), counted in `metrics`.
    /// An exchange then waits one more `[wechat] timeout` at most (the rank,
    /// with its access token and a retry, as one bounded step).
    pub fn with_risk(mut self, risk: Option<RiskConfig>, metrics: Arc<Metrics>) -> Self {
        self.risk = risk.map(|r| (r, metrics));
        self.size_flights();
        self
    }

    /// A code's claim outlasts everything an exchange may wait for: WeChat,
    /// the login hook, the risk rank's calls.
    fn size_flights(&mut self) {
        let hook = self.hook.as_ref().map_or(Duration::ZERO, |h| h.timeout());
        let rank = match self.risk {
            Some(_) => self.wechat_timeout,
            None => Duration::ZERO,
        };
        self.flights = Arc::new(CodeFlights::new(
            self.store().clone(),
            &self.appid,
            self.wechat_timeout,
            hook.saturating_add(rank),
        ));
    }

    /// Ask `hook` before issuing tokens. An exchange then takes the hook's
    /// time too, and a code's claim must outlast it.
    pub fn with_hook(mut self, hook: Option<Arc<LoginHook>>) -> Self {
        self.hook = hook;
        self.size_flights();
        self
    }

    /// The app's WeChat access token.
    pub fn access_tokens(&self) -> &Arc<AccessTokens> {
        &self.access_tokens
    }

    /// The mini program's AppID.
    pub fn appid(&self) -> &str {
        &self.appid
    }

    fn store(&self) -> &Arc<dyn Store> {
        self.sessions.store()
    }

    /// `POST /wx/login` from the client at `client_ip`.
    pub async fn login(
        self: &Arc<Self>,
        req: ValidLogin,
        client_ip: Option<IpAddr>,
    ) -> Result<LoggedIn, ApiError> {
        self.limits.check(client_ip).await?;
        let this = self.clone();
        let code = req.code.clone();
        let meta = LoginMeta {
            ip: client_ip,
            device: req.device.clone(),
        };
        let ex = self
            .flights
            .once(&req.code, move |spent| async move {
                this.exchange(&code, spent, &meta).await
            })
            .await?;
        self.ensure_live(&ex).await?;
        let session_key = ex.session_key.expose_str().unwrap_or_default();
        if let Some((raw, sig)) = &req.signed {
            if !crypto::verify_signature(raw, session_key, sig) {
                return Err(ApiError::InvalidSignature);
            }
        }
        let user = match &req.encrypted {
            Some((data, iv)) => Some(crypto::decrypt_user_data(
                session_key,
                data,
                iv,
                &self.appid,
            )?),
            None => None,
        };
        Ok(LoggedIn {
            grant: ex.grant(),
            user,
        })
    }

    /// The session of `openid`'s latest login in this app (its `session_key`):
    /// `session_expired` without one.
    async fn stored_session(&self, openid: &str) -> Result<WxSession, ApiError> {
        self.store()
            .get_session(openid)
            .await?
            .filter(|s| s.appid == self.appid)
            .ok_or(ApiError::SessionExpired)
    }

    /// `POST /wx/decrypt` for the user `openid` (from a verified token).
    pub async fn decrypt(
        &self,
        openid: &str,
        data: &str,
        iv: &str,
    ) -> Result<serde_json::Value, ApiError> {
        self.limits.check_decrypt(openid).await?;
        let session = self.stored_session(openid).await?;
        let key = session.session_key.expose_str().unwrap_or_default();
        match crypto::decrypt_user_data(key, data, iv, &self.appid) {
            Ok(v) => Ok(v),
            Err(e) => Err(self.stale_key_or(openid, e.into()).await),
        }
    }

    /// `failed` (a decryption that failed), unless WeChat no longer holds
    /// the stored key (`checksession`): then `session_expired`, and the
    /// client logs in again for the current key (a stale key cannot sign
    /// `resetusersessionkey`). The answer depends on the key only, never on
    /// the data.
    /// All of it (the token, the call, a retry) within one `[wechat] timeout`.
    async fn stale_key_or(&self, openid: &str, failed: ApiError) -> ApiError {
        let check = tokio::time::timeout(self.wechat_timeout, self.check_session_key(openid));
        match check.await {
            Ok(Ok(false)) => ApiError::SessionExpired,
            Ok(Ok(true)) => failed,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "checksession failed; the decryption's error stands");
                failed
            }
            Err(_) => {
                tracing::debug!(
                    "checksession did not answer in time; the decryption's error stands"
                );
                failed
            }
        }
    }

    /// A code is answered with the tokens of its exchange for a while (a
    /// double tap gets the same pair), but never once that session has ended:
    /// replaying the code after a logout must not bring the session back. The
    /// code then counts as used, as WeChat would say (40163). The tokens of
    /// the flight that answers (`fresh`) were issued just now: not checked.
    async fn ensure_live(&self, ex: &Exchanged) -> Result<(), ApiError> {
        if ex.fresh {
            return Ok(());
        }
        let used = ApiError::InvalidCode {
            wechat_errcode: CODE_USED,
        };
        let Ok(id) = self.sessions.tokens().verify(&ex.token) else {
            // Expired since (a short `[jwt] ttl`), or issued under another key.
            return Err(used);
        };
        match self.sessions.check_revocation(&id).await {
            Err(ApiError::TokenRevoked | ApiError::SessionEnded { .. }) => Err(used),
            other => other,
        }
    }

    /// `jscode2session` (unless an earlier attempt got that far: `spent`),
    /// then [`Self::finish`]. A failure after WeChat accepted the code hands
    /// back what WeChat said.
    async fn exchange(&self, code: &str, spent: Option<WxLogin>, meta: &LoginMeta) -> Attempt {
        let mut wx = match spent {
            Some(wx) => wx,
            None => match self.wechat.code2session(code).await {
                Ok(s) => WxLogin {
                    openid: s.openid,
                    unionid: s.unionid,
                    session_key: s.session_key,
                    risk: None,
                },
                Err(e) => return Attempt::from(Err(e.into())),
            },
        };
        match self.finish(&mut wx, meta).await {
            Ok(ex) => {
                tracing::info!(code = %code_fingerprint(code), "login succeeded");
                Attempt::from(Ok(Arc::new(ex)))
            }
            Err(e) => Attempt {
                outcome: Err(e),
                spent: Some(wx),
            },
        }
    }

    /// Save the session, ask the login hook, issue the token pair.
    async fn finish(&self, wx: &mut WxLogin, meta: &LoginMeta) -> Result<Exchanged, ApiError> {
        // WeChat has named the user: a banned one goes no further (no
        // session, no hook, no token). A retry with the same code is asked
        // again from what WeChat said, without WeChat.
        self.sessions.refuse_banned(&wx.openid).await?;
        // `[login.risk]`: WeChat's rank (kept for a retry of the code), and
        // a refusal before anything is kept.
        if wx.risk.is_none() {
            wx.risk = self.risk_rank_of(&wx.openid, meta.ip).await?;
        }
        let risk = wx.risk;
        self.refuse_risky(risk)?;
        // `[sessions]` bounds: a refusal before the hook hears of the login.
        let replaced = self
            .sessions
            .make_room(&wx.openid, Some(&self.appid), meta)
            .await?;
        let session = WxSession {
            session_key: wx.session_key.clone(),
            unionid: wx.unionid.clone(),
            appid: self.appid.clone(),
            login_at: unix_now(),
        };
        self.store()
            .put_session(&wx.openid, &session, self.session_ttl)
            .await?;
        let user = match &self.hook {
            Some(hook) => {
                let call = Call {
                    event: Event::Login,
                    appid: &self.appid,
                    openid: &wx.openid,
                    unionid: wx.unionid.as_deref(),
                    phone: None,
                    risk_rank: risk,
                };
                hook.call(&call).await?
            }
            None => UserClaims::default(),
        };
        let user = UserClaims { risk, ..user };
        let grant = self
            .sessions
            .open(
                &wx.openid,
                wx.unionid.as_deref(),
                Some(&self.appid),
                &user,
                meta,
                &replaced,
            )
            .await?;
        Ok(Exchanged::new(grant, wx.session_key.clone()))
    }
}

#[cfg(test)]
mod tests;
