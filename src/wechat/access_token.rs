//! The app's WeChat access token, held once for all instances.
//!
//! Every server API but login needs an access token, and a new token from
//! `/cgi-bin/token` invalidates the previous one: instances fetching their
//! own would knock each other out (40001 loops). So wxgate uses
//! `stable_token` and shares one token per app through the store:
//!
//! * each process keeps the token it last saw until its refresh time, a
//!   safety margin ([`REFRESH_MARGIN`]) before WeChat's expiry, but looks at
//!   the store again after [`LOCAL_TTL`]: a token another instance replaced
//!   is not handed out for long;
//! * past it, one task per process looks in the store; if the store has no
//!   usable token either, the instance that takes the store's lease for the
//!   app fetches one and stores it, and the others poll the store for it:
//!   **one `stable_token` call per expiry** across all instances;
//! * when an API answers 40001/42001/40014 with a token, [`AccessTokens::replace`]
//!   gets another one: the same path, except that the fetch uses
//!   `force_refresh` (WeChat limits it: at most once per
//!   [`FORCE_INTERVAL`] per app, across instances, through a second lease)
//!   and a token equal to the refused one is never handed out again;
//! * in one process, callers wanting the token while it is being looked for
//!   wait for that one flight and share its outcome, failure included: a
//!   `stable_token` that hangs costs each of them at most one flight (about
//!   one `[wechat] timeout`), not one each, one after another. A failed
//!   flight is answered again to new callers for [`FAILURE_BACKOFF`]
//!   instead of asking WeChat again per caller.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::reply::AccessToken;
use crate::clock::{random_id, unix_now_ms};
use crate::error::ApiError;
use crate::secret::Secret;
use crate::store::{AccessTokenRecord, Store};
use crate::wechat::WechatApi;

/// A token is replaced this long before WeChat's expiry. `stable_token`
/// returns the current token until its last five minutes and a new one in
/// them, so refreshing inside that window never invalidates the old token
/// early.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// `force_refresh` at most this often per app (WeChat: 30 s apart, 20 a day).
pub const FORCE_INTERVAL: Duration = Duration::from_secs(30);
/// How often an instance looks for the token another instance is fetching.
const POLL: Duration = Duration::from_millis(25);
/// How long this process trusts its own copy before looking at the store again.
pub const LOCAL_TTL: Duration = Duration::from_secs(10);
/// How long a failed look for the token is answered again before the next.
pub const FAILURE_BACKOFF: Duration = Duration::from_secs(2);

/// The outcome of one look for the token, shared by everyone waiting on it.
type Outcome = Result<AccessTokenRecord, ApiError>;

/// A look for the token under way in this process: for a token other than
/// `refused` (or any), with its outcome once known.
struct Flight {
    refused: Option<Secret>,
    done: tokio::sync::watch::Receiver<Option<Outcome>>,
}

/// The access token of one mini program.
pub struct AccessTokens {
    wechat: Arc<dyn WechatApi>,
    store: Arc<dyn Store>,
    appid: String,
    /// This process's copy, and when it was read or fetched.
    cached: Mutex<Option<(AccessTokenRecord, Instant)>>,
    /// The look at the store (and at WeChat) under way in this process.
    flight: Mutex<Option<Flight>>,
    /// The last flight's failure, answered again until its instant.
    failed: Mutex<Option<(ApiError, Instant)>>,
    /// [`FAILURE_BACKOFF`] (shorter in tests).
    backoff: Duration,
    /// How long the fetching instance holds the lease (a fetch's budget).
    lease_ttl: Duration,
    /// This process, as the lease's holder.
    holder: String,
    lease: String,
    force_lease: String,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens")
            .field("appid", &self.appid)
            .finish_non_exhaustive()
    }
}

/// When a token WeChat gave for `expires_in` seconds should be replaced:
/// [`REFRESH_MARGIN`] before its expiry, or half-way for a short-lived one.
pub fn usable_for(expires_in: u64) -> u64 {
    let margin = REFRESH_MARGIN.as_secs();
    if expires_in > margin.saturating_mul(2) {
        expires_in.saturating_sub(margin)
    } else {
        expires_in / 2
    }
}

impl AccessTokens {
    /// The token of `appid`, fetched through `wechat` (a call takes at most
    /// `wechat_timeout`) and shared through `store`.
    pub fn new(
        wechat: Arc<dyn WechatApi>,
        store: Arc<dyn Store>,
        appid: &str,
        wechat_timeout: Duration,
    ) -> Self {
        Self {
            wechat,
            store,
            appid: appid.to_string(),
            cached: Mutex::new(None),
            flight: Mutex::new(None),
            failed: Mutex::new(None),
            backoff: FAILURE_BACKOFF,
            lease_ttl: wechat_timeout
                .saturating_mul(2)
                .saturating_add(Duration::from_secs(1)),
            holder: random_id(),
            lease: format!("access-token:{appid}"),
            force_lease: format!("access-token-force:{appid}"),
        }
    }

    /// The same, answering a failed look again for `backoff` (tests).
    #[cfg(test)]
    pub(crate) fn with_backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// A usable token.
    pub async fn get(self: &Arc<Self>) -> Result<AccessTokenRecord, ApiError> {
        self.current(None).await
    }

    /// A usable token as the store holds it now (for the backends, which
    /// cannot tell this process that a token was replaced elsewhere): one
    /// store read, then [`Self::get`] if the store has none.
    pub async fn shared(self: &Arc<Self>) -> Result<AccessTokenRecord, ApiError> {
        match self.stored(None).await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => self.get().await,
            Err(e) => self.cached_any(None).ok_or(e),
        }
    }

    /// A token other than `refused`, which WeChat just called invalid.
    pub async fn replace(
        self: &Arc<Self>,
        refused: &Secret,
    ) -> Result<AccessTokenRecord, ApiError> {
        self.current(Some(refused)).await
    }

    async fn current(
        self: &Arc<Self>,
        refused: Option<&Secret>,
    ) -> Result<AccessTokenRecord, ApiError> {
        if let Some(r) = self.cached(refused) {
            return Ok(r);
        }
        if let Some(e) = self.recent_failure() {
            return Err(e);
        }
        let mut done = self.join_or_start(refused);
        loop {
            if let Some(outcome) = done.borrow_and_update().as_ref() {
                return outcome.clone();
            }
            if done.changed().await.is_err() {
                // The flight's task ended without an outcome (it panicked).
                return Err(ApiError::Internal);
            }
        }
    }

    /// For the status page: when this process's copy expires (Unix ms;
    /// `None`: it holds none), and the code of a failure to get one that is
    /// still answered again.
    pub fn held(&self) -> (Option<u64>, Option<&'static str>) {
        let expires = self.lock().as_ref().map(|(r, _)| r.expires_at_ms);
        (expires, self.recent_failure().map(|e| e.code()))
    }

    /// The failure of a flight that ended less than the back-off ago.
    fn recent_failure(&self) -> Option<ApiError> {
        let failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        failed
            .as_ref()
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(e, _)| e.clone())
    }

    /// The outcome of the flight under way for the same question, or of a
    /// new one, in a task of its own: a caller that gives up (a client
    /// hanging up) neither stops it nor leaves a lease held and a token
    /// WeChat already issued unstored.
    fn join_or_start(
        self: &Arc<Self>,
        refused: Option<&Secret>,
    ) -> tokio::sync::watch::Receiver<Option<Outcome>> {
        let mut flight = self.flight.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = flight.as_ref().filter(|f| f.refused.as_ref() == refused) {
            return f.done.clone();
        }
        let (tx, rx) = tokio::sync::watch::channel(None);
        *flight = Some(Flight {
            refused: refused.cloned(),
            done: rx.clone(),
        });
        let this = Arc::clone(self);
        let refused = refused.cloned();
        let mine = rx.clone();
        // A request's trace, if any, follows the look it started.
        tokio::spawn(opentelemetry::context::FutureExt::with_current_context(
            async move {
                let outcome = this.look(refused.as_ref()).await;
                if let Err(e) = &outcome {
                    *this.failed.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some((e.clone(), Instant::now() + this.backoff));
                }
                {
                    let mut flight = this.flight.lock().unwrap_or_else(PoisonError::into_inner);
                    if flight.as_ref().is_some_and(|f| f.done.same_channel(&mine)) {
                        *flight = None;
                    }
                }
                let _ = tx.send(Some(outcome));
            },
        ));
        rx
    }

    /// One look for a usable token: this process's copy, the store, the
    /// lease and WeChat, or the instance holding the lease.
    async fn look(&self, refused: Option<&Secret>) -> Outcome {
        if let Some(r) = self.cached(refused) {
            return Ok(r);
        }
        let deadline = tokio::time::Instant::now() + self.lease_ttl;
        loop {
            match self.stored(refused).await {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {}
                // The store is down: this process's copy, however old, is
                // better than nothing while it lasts.
                Err(e) => return self.cached_any(refused).ok_or(e),
            }
            if self
                .store
                .take_lease(&self.lease, &self.holder, self.lease_ttl)
                .await?
            {
                let fetched = self.fetch(refused).await;
                if let Err(e) = self.store.release_lease(&self.lease, &self.holder).await {
                    tracing::warn!(error = %crate::error::chain(&e), "cannot release the access token lease");
                }
                return fetched;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::WechatTimeout);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(AccessTokenRecord, Instant)>> {
        self.cached.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// This process's copy, if usable and recent.
    fn cached(&self, refused: Option<&Secret>) -> Option<AccessTokenRecord> {
        let now = unix_now_ms();
        self.lock()
            .as_ref()
            .filter(|(r, seen)| seen.elapsed() < LOCAL_TTL && usable(r, now, refused))
            .map(|(r, _)| r.clone())
    }

    /// This process's copy, if usable, however long ago it was read.
    fn cached_any(&self, refused: Option<&Secret>) -> Option<AccessTokenRecord> {
        let now = unix_now_ms();
        self.lock()
            .as_ref()
            .filter(|(r, _)| usable(r, now, refused))
            .map(|(r, _)| r.clone())
    }

    fn keep(&self, record: &AccessTokenRecord) {
        *self.lock() = Some((record.clone(), Instant::now()));
    }

    /// The store's token, if usable; kept as this process's copy.
    async fn stored(
        &self,
        refused: Option<&Secret>,
    ) -> Result<Option<AccessTokenRecord>, ApiError> {
        let found = self.store.get_access_token(&self.appid).await?;
        let now = unix_now_ms();
        Ok(found
            .filter(|r| usable(r, now, refused))
            .inspect(|r| self.keep(r)))
    }

    /// Under the lease: the store once more (another instance may have just
    /// stored one), then WeChat.
    async fn fetch(&self, refused: Option<&Secret>) -> Result<AccessTokenRecord, ApiError> {
        if let Some(r) = self.stored(refused).await? {
            return Ok(r);
        }
        let force = match refused {
            Some(_) => {
                self.store
                    .take_lease(&self.force_lease, &self.holder, FORCE_INTERVAL)
                    .await?
            }
            None => false,
        };
        let AccessToken { token, expires_in } = self.wechat.stable_token(force).await?;
        if refused.is_some_and(|bad| *bad == token) {
            // Without force_refresh (used up), WeChat hands out the refused token again.
            tracing::warn!(
                appid = %self.appid,
                "WeChat refused the access token and force_refresh is rate-limited; try again in 30 s"
            );
            return Err(ApiError::WechatUnavailable {
                wechat_errcode: Some(40001),
            });
        }
        let now = unix_now_ms();
        let record = AccessTokenRecord {
            token,
            expires_at_ms: now.saturating_add(expires_in.saturating_mul(1000)),
            refresh_at_ms: now.saturating_add(usable_for(expires_in).saturating_mul(1000)),
        };
        let ttl = Duration::from_millis(record.refresh_at_ms.saturating_sub(now));
        if let Err(e) = self.store.put_access_token(&self.appid, &record, ttl).await {
            // This process still has it; other instances will fetch their own.
            tracing::warn!(error = %crate::error::chain(&e), "cannot share the access token");
        }
        tracing::info!(appid = %self.appid, force, expires_in, "new WeChat access token");
        self.keep(&record);
        Ok(record)
    }
}

/// Whether `r` may be handed out at `now` (not due for refresh, not refused).
fn usable(r: &AccessTokenRecord, now: u64, refused: Option<&Secret>) -> bool {
    now < r.refresh_at_ms && refused.is_none_or(|bad| *bad != r.token)
}

#[cfg(test)]
mod tests;
