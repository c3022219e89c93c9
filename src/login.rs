//! The `/wx/*` endpoints: typed request in, typed response out.
//!
//! `POST /wx/login` trades a `wx.login` code for a JWT and a refresh token.
//! The code goes to WeChat's `jscode2session` once: codes are single-use and
//! mini programs double-tap, so concurrent or repeated requests with the same
//! code share one call and get the same answer for five minutes, on every
//! instance. Within a process, concurrent requests wait on one task; across
//! instances, the store holds a claim on the code and then its outcome,
//! sealed with a key derived from the code (see [`crate::seal`]): the store
//! knows neither the code nor the tokens. The exchange runs in its own task,
//! so a client that hangs up does not waste the code.
//!
//! `session_key` is saved in the [`Store`] under the openid and never leaves
//! the gateway. With `rawData` + `signature` the signature is checked; with
//! `encryptedData` + `iv` the user data is decrypted (watermark checked) and
//! returned as `user`.
//!
//! `POST /wx/decrypt` decrypts more data later with the stored `session_key`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::{LoginConfig, Rate, WechatConfig};
use crate::error::ApiError;
use crate::seal;
use crate::secret::Secret;
use crate::sessions::Sessions;
use crate::store::{Store, WxSession};
use crate::token::unix_now;
use crate::wechat::client::{code_fingerprint, WechatClient};
use crate::wechat::crypto;

/// How long the result of a code exchange is shared with repeated requests.
pub const CODE_CACHE_TTL: Duration = Duration::from_secs(300);
/// Longest accepted login code (WeChat's are 32 characters).
pub const MAX_CODE_BYTES: usize = 128;
/// How often an instance looks for the outcome of a code another instance is exchanging.
const CLAIM_POLL: Duration = Duration::from_millis(50);

/// The fields of a login request (JSON or form-encoded).
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub struct LoginRequest {
    #[serde(default, alias = "jsCode", alias = "js_code")]
    pub code: Option<String>,
    #[serde(default, rename = "encryptedData")]
    pub encrypted_data: Option<String>,
    #[serde(default)]
    pub iv: Option<String>,
    #[serde(default, rename = "rawData")]
    pub raw_data: Option<String>,
    #[serde(default)]
    pub signature: Option<String>,
}

/// The body of `/wx/decrypt`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub struct DecryptRequest {
    #[serde(default, rename = "encryptedData")]
    pub encrypted_data: Option<String>,
    #[serde(default)]
    pub iv: Option<String>,
}

/// The body of a successful login.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoginResponse {
    pub token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub refresh_token: String,
    pub openid: String,
    pub unionid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<serde_json::Value>,
}

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Form,
}

/// Decide the body encoding from `Content-Type` (missing: JSON, what `wx.request` sends).
pub fn body_kind(content_type: Option<&[u8]>) -> Result<BodyKind, ApiError> {
    let Some(ct) = content_type else {
        return Ok(BodyKind::Json);
    };
    let ct = std::str::from_utf8(ct).map_err(|_| ApiError::UnsupportedMediaType)?;
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" | "" => Ok(BodyKind::Json),
        m if m.starts_with("application/") && m.ends_with("+json") => Ok(BodyKind::Json),
        "application/x-www-form-urlencoded" => Ok(BodyKind::Form),
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

/// Parse a JSON or form body into `T` (all fields optional strings).
pub fn parse_body<T: for<'de> Deserialize<'de>>(
    kind: BodyKind,
    body: &[u8],
) -> Result<T, ApiError> {
    match kind {
        BodyKind::Json => {
            // serde would also read a JSON array into a struct, field by field.
            if body.trim_ascii_start().first() != Some(&b'{') {
                return Err(ApiError::InvalidRequest(
                    "the body is not a JSON object with string fields",
                ));
            }
            serde_json::from_slice(body).map_err(|_| {
                ApiError::InvalidRequest("the body is not a JSON object with string fields")
            })
        }
        BodyKind::Form => {
            let map: serde_json::Map<String, serde_json::Value> = form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
                .collect();
            serde_json::from_value(serde_json::Value::Object(map))
                .map_err(|_| ApiError::InvalidRequest("the form body is malformed"))
        }
    }
}

/// A login request with its fields checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidLogin {
    pub code: String,
    pub encrypted: Option<(String, String)>,
    pub signed: Option<(String, String)>,
}

impl LoginRequest {
    /// Check the fields before anything reaches WeChat (a bad request must not consume a code).
    pub fn validate(self) -> Result<ValidLogin, ApiError> {
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

fn pair(
    a: Option<String>,
    b: Option<String>,
    message: &'static str,
) -> Result<Option<(String, String)>, ApiError> {
    let a = a.filter(|s| !s.is_empty());
    let b = b.filter(|s| !s.is_empty());
    match (a, b) {
        (Some(a), Some(b)) => Ok(Some((a, b))),
        (None, None) => Ok(None),
        _ => Err(ApiError::InvalidRequest(message)),
    }
}

/// The outcome of one `jscode2session` exchange, shared by every request with that code.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Exchanged {
    openid: String,
    unionid: Option<String>,
    #[serde(with = "crate::store::secret_serde")]
    session_key: Secret,
    token: String,
    exp: u64,
    refresh_token: String,
}

/// What is shared through the store (sealed): the definitive outcomes.
#[derive(Serialize, Deserialize)]
enum Shared {
    Ok(Exchanged),
    InvalidCode(i64),
    CodeBlocked(i64),
}

type Outcome = Result<Arc<Exchanged>, ApiError>;

/// Serves `/wx/login` and `/wx/decrypt`.
pub struct LoginService {
    wechat: WechatClient,
    wechat_timeout: Duration,
    appid: String,
    sessions: Arc<Sessions>,
    session_ttl: Duration,
    rate_per_ip: Option<Rate>,
    rate_global: Option<Rate>,
    /// Exchanges in flight in this process, by code id.
    flights: Mutex<HashMap<String, watch::Receiver<Option<Outcome>>>>,
}

impl LoginService {
    /// Build the service; the WeChat client (and its connection pool) is made here, once.
    pub fn new(
        wechat: &WechatConfig,
        login: &LoginConfig,
        sessions: Arc<Sessions>,
    ) -> Result<Self, String> {
        let client = WechatClient::new(
            &wechat.api_base,
            &wechat.appid,
            wechat.secret.clone(),
            wechat.timeout,
        )
        .map_err(|e| e.to_string())?;
        Ok(Self {
            wechat: client,
            wechat_timeout: wechat.timeout,
            appid: wechat.appid.clone(),
            sessions,
            session_ttl: login.session_ttl,
            rate_per_ip: login.rate_limit_per_ip,
            rate_global: login.rate_limit_global,
            flights: Mutex::new(HashMap::new()),
        })
    }

    fn store(&self) -> &Arc<dyn Store> {
        self.sessions.store()
    }

    /// `POST /wx/login` from the client at `client_ip`.
    pub async fn login(
        self: &Arc<Self>,
        req: LoginRequest,
        client_ip: Option<IpAddr>,
    ) -> Result<LoginResponse, ApiError> {
        let req = req.validate()?;
        self.check_rate(client_ip).await?;
        let ex = self.exchange_once(&req.code).await?;
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
        Ok(LoginResponse {
            token: ex.token.clone(),
            token_type: "Bearer",
            expires_in: ex.exp.saturating_sub(unix_now()),
            refresh_token: ex.refresh_token.clone(),
            openid: ex.openid.clone(),
            unionid: ex.unionid.clone(),
            user,
        })
    }

    /// Count this login against the per-IP and global limits.
    async fn check_rate(&self, client_ip: Option<IpAddr>) -> Result<(), ApiError> {
        let limits = [
            (
                self.rate_per_ip,
                client_ip.map(|ip| format!("login-ip:{ip}")),
            ),
            (self.rate_global, Some("login-global".to_string())),
        ];
        for (rate, key) in limits {
            let (Some(rate), Some(key)) = (rate, key) else {
                continue;
            };
            let hit = self.store().hit(&key, rate.window).await?;
            if hit.count > rate.limit {
                return Err(ApiError::RateLimited {
                    retry_after_secs: hit.reset_in.as_secs_f64().ceil() as u64,
                    wechat_errcode: None,
                });
            }
        }
        Ok(())
    }

    /// `POST /wx/decrypt` for the user `openid` (from a verified token).
    pub async fn decrypt(
        &self,
        openid: &str,
        req: DecryptRequest,
    ) -> Result<serde_json::Value, ApiError> {
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
        let session = self
            .store()
            .get_session(openid)
            .await?
            .ok_or(ApiError::SessionExpired)?;
        let key = session.session_key.expose_str().unwrap_or_default();
        Ok(crypto::decrypt_user_data(key, &data, &iv, &self.appid)?)
    }

    /// Run the exchange for `code` once in this process, however many requests carry it.
    async fn exchange_once(self: &Arc<Self>, code: &str) -> Outcome {
        let id = seal::code_id(code);
        let mut rx = {
            let mut flights = self.lock_flights();
            match flights.get(&id) {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    flights.insert(id.clone(), rx.clone());
                    let this = self.clone();
                    let code = code.to_string();
                    tokio::spawn(async move {
                        // Whatever happens, the flight is over when this task ends.
                        let _guard = FlightGuard {
                            service: &this,
                            id: id.clone(),
                        };
                        let outcome = this.exchange_shared(&code, &id).await;
                        let _ = tx.send(Some(outcome));
                    });
                    rx
                }
            }
        };
        loop {
            if let Some(outcome) = rx.borrow_and_update().clone() {
                return outcome;
            }
            if rx.changed().await.is_err() {
                return Err(ApiError::Internal);
            }
        }
    }

    fn lock_flights(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, watch::Receiver<Option<Outcome>>>> {
        self.flights.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The exchange as all instances see it: a stored outcome, or a claim and
    /// a call to WeChat, or waiting for the instance that holds the claim.
    async fn exchange_shared(&self, code: &str, id: &str) -> Outcome {
        let deadline =
            tokio::time::Instant::now() + self.wechat_timeout * 2 + Duration::from_secs(1);
        loop {
            if let Some(sealed) = self.store().get_code_outcome(id).await? {
                return open_outcome(code, &sealed);
            }
            if self
                .store()
                .claim_code(id, self.wechat_timeout * 2 + Duration::from_secs(1))
                .await?
            {
                let outcome = self.exchange(code).await;
                let shared = match &outcome {
                    Ok(ex) => Some(Shared::Ok((**ex).clone())),
                    Err(ApiError::InvalidCode { wechat_errcode }) => {
                        Some(Shared::InvalidCode(*wechat_errcode))
                    }
                    Err(ApiError::CodeBlocked { wechat_errcode }) => {
                        Some(Shared::CodeBlocked(*wechat_errcode))
                    }
                    // Transient: busy, timeout, store down. A retry asks again
                    // (WeChat then says whether the code was used).
                    Err(_) => None,
                };
                let saved = match shared {
                    Some(shared) => match serde_json::to_vec(&shared) {
                        Ok(plain) => {
                            self.store()
                                .put_code_outcome(id, &seal::seal(code, &plain), CODE_CACHE_TTL)
                                .await
                        }
                        Err(_) => Ok(()),
                    },
                    None => self.store().release_code(id).await,
                };
                if let Err(e) = saved {
                    tracing::warn!(error = %e, "cannot share a login outcome; a repeated code may fail");
                }
                return outcome;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::WechatTimeout);
            }
            tokio::time::sleep(CLAIM_POLL).await;
        }
    }

    /// `jscode2session`, save the session, issue the token pair.
    async fn exchange(&self, code: &str) -> Outcome {
        let s = self.wechat.code2session(code).await?;
        let session = WxSession {
            session_key: s.session_key.clone(),
            unionid: s.unionid.clone(),
            appid: self.appid.clone(),
            login_at: unix_now(),
        };
        self.store()
            .put_session(&s.openid, &session, self.session_ttl)
            .await?;
        let pair = self
            .sessions
            .issue_pair(&s.openid, s.unionid.as_deref(), Some(&self.appid), None)
            .await?;
        tracing::info!(code = %code_fingerprint(code), "login succeeded");
        Ok(Arc::new(Exchanged {
            openid: s.openid,
            unionid: s.unionid,
            session_key: s.session_key,
            token: pair.token,
            exp: pair.exp,
            refresh_token: pair.refresh_token,
        }))
    }
}

fn open_outcome(code: &str, sealed: &str) -> Outcome {
    let shared = seal::open(code, sealed)
        .and_then(|plain| serde_json::from_slice::<Shared>(&plain).ok())
        .ok_or(ApiError::Internal)?;
    match shared {
        Shared::Ok(ex) => Ok(Arc::new(ex)),
        Shared::InvalidCode(wechat_errcode) => Err(ApiError::InvalidCode { wechat_errcode }),
        Shared::CodeBlocked(wechat_errcode) => Err(ApiError::CodeBlocked { wechat_errcode }),
    }
}

/// Ends a flight when its task ends, even by panic.
struct FlightGuard<'a> {
    service: &'a LoginService,
    id: String,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        self.service.lock_flights().remove(&self.id);
    }
}

#[cfg(test)]
mod tests;
