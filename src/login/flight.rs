//! One `jscode2session` per login code, however many requests and instances carry it.
//!
//! Codes are single-use at WeChat and mini programs double-tap, so every
//! request with the same code within [`CODE_CACHE_TTL`] must share one
//! exchange and get the same answer. Two layers:
//!
//! * within this process, the first request starts the exchange in a task of
//!   its own (a client that hangs up does not waste the code) and the others
//!   wait on a watch channel;
//! * across instances, the store holds a claim on the code (by hash) while one
//!   instance exchanges it, then the outcome, sealed with a key derived from
//!   the code ([`crate::seal`]): the store knows neither the code nor the
//!   tokens. An instance that finds the code claimed polls for the outcome.
//!
//! The claim and the outcome are one store entry: a login reads and claims
//! its code in one call ([`Store::claim_code`]), and the outcome replaces
//! the claim. Definitive outcomes are shared (success, an invalid or blocked
//! code). A failure after WeChat accepted the code (the login hook or the
//! store could not answer) shares what WeChat said ([`WxLogin`]): one retry
//! with the same code takes it over and finishes the login without spending
//! the code at WeChat again. Any other failure (busy, timeout) releases the
//! claim so a retry asks WeChat again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::{chain, ApiError};
use crate::seal;
use crate::secret::Secret;
use crate::sessions::Grant;
use crate::store::{CodeClaim, Store};
use crate::token::UserClaims;

/// How long the result of a code exchange is shared with repeated requests.
pub(crate) const CODE_CACHE_TTL: Duration = Duration::from_secs(300);
/// How often an instance looks for the outcome of a code another instance is exchanging.
const CLAIM_POLL: Duration = Duration::from_millis(50);

/// The outcome of one `jscode2session` exchange, shared by every request with that code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Exchanged {
    pub openid: String,
    pub unionid: Option<String>,
    #[serde(with = "crate::store::secret_serde")]
    pub session_key: Secret,
    pub token: String,
    pub exp: u64,
    pub refresh_token: String,
    #[serde(default, skip_serializing_if = "UserClaims::is_empty")]
    pub user: UserClaims,
    /// Issued by the flight that answers with it (not an outcome read back
    /// from the store for a code sent again): no logout can have ended it.
    #[serde(skip)]
    pub fresh: bool,
}

impl Exchanged {
    /// The outcome of an exchange that issued `grant` with `session_key`.
    pub(crate) fn new(grant: Grant, session_key: Secret) -> Self {
        Self {
            openid: grant.openid,
            unionid: grant.unionid,
            session_key,
            token: grant.token,
            exp: grant.exp,
            refresh_token: grant.refresh_token,
            user: grant.user,
            fresh: true,
        }
    }

    /// The tokens and identity handed to the client.
    pub(crate) fn grant(&self) -> Grant {
        Grant {
            token: self.token.clone(),
            exp: self.exp,
            refresh_token: self.refresh_token.clone(),
            openid: self.openid.clone(),
            unionid: self.unionid.clone(),
            user: self.user.clone(),
        }
    }
}

/// What an exchange gives every request that carries its code.
pub(crate) type Outcome = Result<Arc<Exchanged>, ApiError>;

/// What `jscode2session` said for a code: kept when the rest of the login
/// failed, so that a retry finishes it without asking WeChat again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WxLogin {
    pub openid: String,
    pub unionid: Option<String>,
    #[serde(with = "crate::store::secret_serde")]
    pub session_key: Secret,
    /// WeChat's risk rank of this login, once asked (`[login.risk]`): a
    /// retry with the same code is judged by it again, not asked anew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<u8>,
}

/// One run of an exchange: its outcome, and on failure what WeChat had
/// already said, if it had.
pub(crate) struct Attempt {
    pub outcome: Outcome,
    pub spent: Option<WxLogin>,
}

impl From<Outcome> for Attempt {
    fn from(outcome: Outcome) -> Self {
        Self {
            outcome,
            spent: None,
        }
    }
}

/// An outcome as it is kept in the store (sealed): definitive ones, and a
/// code WeChat accepted whose login did not finish.
#[derive(Serialize, Deserialize)]
enum StoredOutcome {
    Ok(Exchanged),
    InvalidCode(i64),
    CodeBlocked(i64),
    Spent(WxLogin),
}

impl StoredOutcome {
    /// The part of an attempt worth sharing; `None` for a transient failure.
    fn of(attempt: &Attempt) -> Option<Self> {
        match &attempt.outcome {
            Ok(ex) => Some(Self::Ok((**ex).clone())),
            Err(_) if attempt.spent.is_some() => attempt.spent.clone().map(Self::Spent),
            Err(ApiError::InvalidCode { wechat_errcode }) => {
                Some(Self::InvalidCode(*wechat_errcode))
            }
            Err(ApiError::CodeBlocked { wechat_errcode }) => {
                Some(Self::CodeBlocked(*wechat_errcode))
            }
            Err(_) => None,
        }
    }

    /// A definitive outcome, or (`Err`) the code's unfinished login.
    fn into_outcome(self) -> Result<Outcome, WxLogin> {
        match self {
            Self::Ok(ex) => Ok(Ok(Arc::new(ex))),
            Self::InvalidCode(wechat_errcode) => Ok(Err(ApiError::InvalidCode { wechat_errcode })),
            Self::CodeBlocked(wechat_errcode) => Ok(Err(ApiError::CodeBlocked { wechat_errcode })),
            Self::Spent(wx) => Err(wx),
        }
    }
}

type Flights = HashMap<String, watch::Receiver<Option<Outcome>>>;

/// Exchanges in flight, in this process and (through the store) across instances.
pub(crate) struct CodeFlights {
    store: Arc<dyn Store>,
    /// The mini program: codes of different apps never meet.
    appid: String,
    /// How long a claim is held, and how long others wait for its outcome.
    claim_ttl: Duration,
    /// Exchanges in flight in this process, by code id.
    local: Mutex<Flights>,
}

impl CodeFlights {
    /// Flights of `appid`'s codes over `store`; an exchange takes at most
    /// `wechat_timeout` per WeChat call (two with the retry of a busy answer)
    /// and `hook_timeout` for the login hook, plus five seconds for the
    /// store (its reads and writes, sessions a limit ends, their replicas).
    pub(crate) fn new(
        store: Arc<dyn Store>,
        appid: &str,
        wechat_timeout: Duration,
        hook_timeout: Duration,
    ) -> Self {
        Self {
            store,
            appid: appid.to_string(),
            claim_ttl: wechat_timeout
                .saturating_mul(2)
                .saturating_add(hook_timeout)
                .saturating_add(Duration::from_secs(5)),
            local: Mutex::new(HashMap::new()),
        }
    }

    /// The outcome for `code`: `exchange` runs at most once for it at a
    /// time, here or on another instance, and not again once it succeeded,
    /// while [`CODE_CACHE_TTL`] lasts. It is handed what WeChat said for the
    /// code when an earlier run got that far but failed after.
    pub(crate) async fn once<F, Fut>(self: &Arc<Self>, code: &str, exchange: F) -> Outcome
    where
        F: FnOnce(Option<WxLogin>) -> Fut + Send + 'static,
        Fut: Future<Output = Attempt> + Send + 'static,
    {
        let id = seal::code_id(&format!("{}\0{code}", self.appid));
        let mut rx = {
            let mut flights = self.lock();
            match flights.get(&id) {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    flights.insert(id.clone(), rx.clone());
                    let this = self.clone();
                    let code = code.to_string();
                    tokio::spawn(opentelemetry::context::FutureExt::with_current_context(
                        async move {
                            // Whatever happens, the flight is over when this task ends.
                            let guard = FlightGuard {
                                flights: &this,
                                id: id.clone(),
                            };
                            let outcome = this.shared(&code, &id, exchange).await;
                            // Over before its outcome is out: a retry that outcome
                            // prompts starts afresh (from the store), never joins
                            // this finished flight and gets its answer again.
                            drop(guard);
                            let _ = tx.send(Some(outcome));
                        },
                    ));
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

    fn lock(&self) -> MutexGuard<'_, Flights> {
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The exchange as all instances see it: a stored outcome, or a claim and
    /// the exchange, or waiting for the instance that holds the claim.
    async fn shared<F, Fut>(&self, code: &str, id: &str, exchange: F) -> Outcome
    where
        F: FnOnce(Option<WxLogin>) -> Fut,
        Fut: Future<Output = Attempt>,
    {
        let deadline = tokio::time::Instant::now() + self.claim_ttl;
        loop {
            match self.store.claim_code(id, self.claim_ttl).await? {
                CodeClaim::Claimed => {
                    let attempt = exchange(None).await;
                    self.publish(code, id, &attempt).await;
                    return attempt.outcome;
                }
                CodeClaim::Outcome(sealed) => match open(code, &sealed)? {
                    Ok(outcome) => return outcome,
                    // WeChat accepted the code, the login did not finish:
                    // finish it, unless another request took it over first.
                    Err(spent) => {
                        if self
                            .store
                            .take_over_code(id, &sealed, self.claim_ttl)
                            .await?
                        {
                            let mut attempt = exchange(Some(spent.clone())).await;
                            // Failed again: the code stays spent at WeChat.
                            attempt.spent.get_or_insert(spent);
                            self.publish(code, id, &attempt).await;
                            return attempt.outcome;
                        }
                    }
                },
                CodeClaim::Pending => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::WechatTimeout);
            }
            tokio::time::sleep(CLAIM_POLL).await;
        }
    }

    /// Share a definitive outcome, or what WeChat said for an unfinished
    /// login (either replaces the claim); with nothing to share, release the
    /// claim so a retry asks WeChat again.
    async fn publish(&self, code: &str, id: &str, attempt: &Attempt) {
        let saved = match StoredOutcome::of(attempt).map(|s| serde_json::to_vec(&s)) {
            Some(Ok(plain)) => {
                let sealed = seal::seal(code, &plain);
                match self
                    .store
                    .put_code_outcome(id, &sealed, CODE_CACHE_TTL)
                    .await
                {
                    Ok(()) => Ok(()),
                    // Not shared: at least let a retry try rather than wait.
                    Err(e) => self.store.release_code(id).await.and(Err(e)),
                }
            }
            Some(Err(_)) | None => self.store.release_code(id).await,
        };
        if let Err(e) = saved {
            tracing::warn!(error = %chain(&e), "cannot share a login outcome; a repeated code may fail");
        }
    }
}

/// A stored outcome: definitive, or (`Ok(Err)`) a login WeChat accepted but that did not finish.
fn open(code: &str, sealed: &str) -> Result<Result<Outcome, WxLogin>, ApiError> {
    Ok(seal::open(code, sealed)
        .and_then(|plain| serde_json::from_slice::<StoredOutcome>(&plain).ok())
        .ok_or(ApiError::Internal)?
        .into_outcome())
}

/// Ends a flight when its task ends, even by panic.
struct FlightGuard<'a> {
    flights: &'a CodeFlights,
    id: String,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        self.flights.lock().remove(&self.id);
    }
}
