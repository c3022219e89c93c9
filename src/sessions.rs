//! The life of a login after it succeeded: token pairs, refresh, logout, revocation.
//!
//! A login opens a *family*: an access token (JWT, carrying `fam`) and an
//! opaque refresh token (32 random bytes, stored only as a SHA-256). Refreshing
//! rotates: the old refresh token is marked used and a new pair of the same
//! family is issued. Presenting a used refresh token again means it leaked:
//! the whole family is revoked, access tokens included.
//!
//! Logout ends the session the token belongs to: its family (so its refresh
//! token dies with it) and the token's own `jti`; with `all`, everything of
//! that openid issued up to now. Every authenticated
//! request asks [`Sessions::check_revocation`]: one store call; when the
//! store cannot answer, `[store] on_error` decides.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audit::{Audit, EndedBy};
use crate::clock::{random_id, unix_now, unix_now_ms, Clock, SystemClock};
use crate::error::{chain, ApiError};
use crate::hook::{Call, Event, HookError, LoginHook};
use crate::metrics::Metrics;
use crate::store::{OnError, RefreshRecord, RefreshTake, RevocationCheck, Store, StoreError};
use crate::token::{Identity, NewToken, TokenError, TokenKeys, UserClaims, MAX_TTL};

pub(crate) mod admin;
pub(crate) mod index;
pub(crate) mod policy;

use self::policy::SessionPolicies;

/// What a client is handed after a login or a refresh: an access token, a
/// refresh token of the same family, and whose they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub token: String,
    /// Expiry of `token`, unix seconds.
    pub exp: u64,
    pub refresh_token: String,
    pub openid: String,
    pub unionid: Option<String>,
    /// What the login hook said (`uid`, `roles` are shown to the client).
    #[serde(default, skip_serializing_if = "UserClaims::is_empty")]
    pub user: UserClaims,
}

/// Token issuance and revocation over the store.
pub struct Sessions {
    store: Arc<dyn Store>,
    tokens: Arc<TokenKeys>,
    refresh_ttl: Duration,
    leeway: Duration,
    on_error: OnError,
    /// Requests let through without a revocation check (`on_error = "fail_open"`).
    fail_open_count: AtomicU64,
    /// The login hook, asked again on each refresh when `on_refresh` is set.
    refresh_hook: Option<Arc<LoginHook>>,
    /// `[sessions]`: bounds on each user's sessions, per app.
    policies: SessionPolicies,
    /// Where ended sessions are counted.
    metrics: Option<Arc<Metrics>>,
    /// Audit lines (`wxgate::audit`), when the gateway writes them.
    audit: Option<Audit>,
    /// When sessions begin, are refreshed and run out (tests inject one).
    /// Revocations and token times stay on the system clock.
    clock: Arc<dyn Clock>,
    /// The sessions of the config a reload put in place of this one: open
    /// sockets follow it, so that their tokens meet the keys in force.
    successor: tokio::sync::watch::Sender<Option<Arc<Sessions>>>,
}

impl Sessions {
    /// `refresh_ttl` bounds refresh tokens; `leeway` is the JWT clock leeway;
    /// `on_error` says what a revocation check does when the store is down.
    pub fn new(
        store: Arc<dyn Store>,
        tokens: Arc<TokenKeys>,
        refresh_ttl: Duration,
        leeway: Duration,
        on_error: OnError,
    ) -> Self {
        Self {
            store,
            tokens,
            refresh_ttl,
            leeway,
            on_error,
            fail_open_count: AtomicU64::new(0),
            refresh_hook: None,
            policies: SessionPolicies::default(),
            clock: Arc::new(SystemClock),
            metrics: None,
            audit: None,
            successor: tokio::sync::watch::channel(None).0,
        }
    }

    /// A reload put `next` in place of these sessions.
    pub(crate) fn succeeded_by(&self, next: Arc<Sessions>) {
        self.successor.send_replace(Some(next));
    }

    /// The sessions that replace these, once a reload has put them in place.
    pub(crate) fn successor(&self) -> tokio::sync::watch::Receiver<Option<Arc<Sessions>>> {
        self.successor.subscribe()
    }

    /// How long past its `exp` a token is still accepted.
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// Write audit lines with `audit`.
    pub(crate) fn with_audit(mut self, audit: Audit) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Count ended sessions in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Count session times on `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Apply `[sessions]`.
    pub fn with_policies(mut self, policies: SessionPolicies) -> Self {
        self.policies = policies;
        self
    }

    /// Ask `hook` on every refresh, if its `on_refresh` is set.
    pub fn with_hook(mut self, hook: Option<Arc<LoginHook>>) -> Self {
        self.refresh_hook = hook.filter(|h| h.on_refresh());
        self
    }

    /// The store behind the sessions.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The keys tokens are issued and verified with.
    pub fn tokens(&self) -> &TokenKeys {
        &self.tokens
    }

    /// What `[store] on_error` says.
    pub fn on_error(&self) -> OnError {
        self.on_error
    }

    /// Issue an access token and a refresh token. `family: None` opens a new family.
    pub async fn issue_pair(
        &self,
        openid: &str,
        unionid: Option<&str>,
        appid: Option<&str>,
        family: Option<&str>,
        user: &UserClaims,
    ) -> Result<Grant, ApiError> {
        let since = self.clock.now_ms();
        self.issue(openid, unionid, appid, family, user, since)
            .await
    }

    /// [`Sessions::issue_pair`] for a session that began at `since` (unix ms).
    async fn issue(
        &self,
        openid: &str,
        unionid: Option<&str>,
        appid: Option<&str>,
        family: Option<&str>,
        user: &UserClaims,
        since: u64,
    ) -> Result<Grant, ApiError> {
        let family = family.map_or_else(random_id, str::to_string);
        let (token, claims) = self
            .tokens
            .issue(&NewToken {
                openid,
                unionid,
                appid,
                family: Some(&family),
                ttl: None,
                user: Some(user),
            })
            .map_err(|e| match e {
                TokenError::TooLong(max) => {
                    tracing::warn!(max_token_bytes = max, "the login hook's answer makes a token longer than [jwt] max_token_bytes: raise it, or have the hook send fewer roles or claims");
                    ApiError::HookUnavailable { timed_out: false }
                }
                _ => ApiError::Internal,
            })?;
        let refresh_token = new_refresh_token();
        let now = unix_now();
        let record = RefreshRecord {
            openid: openid.to_string(),
            unionid: unionid.map(str::to_string),
            appid: appid.map(str::to_string),
            family,
            user: user.clone(),
            issued_ms: unix_now_ms(),
            expires_at: now.saturating_add(self.refresh_ttl.as_secs()),
            created_ms: since,
            refreshed_ms: self.clock.now_ms(),
        };
        self.store
            .put_refresh(&refresh_hash(&refresh_token), &record, self.refresh_ttl)
            .await?;
        Ok(Grant {
            token,
            exp: claims.exp,
            refresh_token,
            openid: openid.to_string(),
            unionid: unionid.map(str::to_string),
            user: user.clone(),
        })
    }

    /// `POST /wx/refresh`: rotate a refresh token.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Grant, ApiError> {
        if !plausible_refresh_token(refresh_token) {
            return Err(ApiError::RefreshTokenInvalid);
        }
        let hash = refresh_hash(refresh_token);
        // The hook is asked before the token is taken: its answer may take
        // seconds, and a token marked for rotation that long would look
        // abandoned, weakening reuse detection. Without an answer nothing
        // was taken, and the token stays as it was.
        let asked = match &self.refresh_hook {
            Some(hook) => Some(self.ask_hook(hook, &hash).await?),
            None => None,
        };
        let record = match self.store.take_refresh(&hash, self.refresh_ttl).await? {
            RefreshTake::Unknown => return Err(ApiError::RefreshTokenInvalid),
            RefreshTake::Reused(record) => return Err(self.reused(&record).await),
            RefreshTake::Fresh(record) => record,
        };
        self.check_live(&record).await?;
        self.within_lifetimes(&record).await?;
        let user = asked.unwrap_or_else(|| record.user.clone());
        // A session of a version before lifetimes counts from now.
        let since = match record.created_ms {
            0 => self.clock.now_ms(),
            t => t,
        };
        let grant = self
            .issue(
                &record.openid,
                record.unionid.as_deref(),
                record.appid.as_deref(),
                Some(&record.family),
                &user,
                since,
            )
            .await?;
        // From now on the old token is spent. Until this is recorded, a retry
        // (say after a store timeout) may rotate it again instead of being
        // taken for reuse.
        if let Err(e) = self.store.complete_refresh(&hash, self.refresh_ttl).await {
            tracing::warn!(error = %chain(&e), "cannot mark a refresh token spent");
        }
        self.refreshed(&record, since).await;
        if let Some(a) = &self.audit {
            a.refresh(&record.openid, &record.family);
        }
        Ok(grant)
    }

    /// A spent refresh token was presented again: its family is revoked
    /// (every token of the session), and the answer is `refresh_token_reused`.
    async fn reused(&self, record: &RefreshRecord) -> ApiError {
        tracing::warn!(
            family = %short(&record.family),
            "a used refresh token was presented again: revoking its family"
        );
        match self
            .store
            .revoke_family(&record.family, self.family_revocation_ttl())
            .await
        {
            Ok(()) => {
                if let Some(a) = &self.audit {
                    a.session_ended(&record.openid, &record.family, EndedBy::ReuseDetected);
                }
                ApiError::RefreshTokenReused
            }
            Err(e) => e.into(),
        }
    }

    /// A refresh token's record that has not expired and whose session was
    /// not revoked.
    async fn check_live(&self, record: &RefreshRecord) -> Result<(), ApiError> {
        if record.expires_at <= unix_now() {
            return Err(ApiError::RefreshTokenInvalid);
        }
        let check = RevocationCheck {
            jti: None,
            openid: &record.openid,
            family: Some(&record.family),
            issued_ms: record.issued_ms,
        };
        // Counting revocations made elsewhere a moment ago: a refresh must
        // not outlive a logout that another instance just acknowledged.
        if self.store.is_revoked_now(&check).await? {
            let refused = ApiError::RefreshTokenInvalid;
            return Err(self.refusal(Some(&record.family), refused).await);
        }
        Ok(())
    }

    /// How to refuse a revoked token of `family`: 401 `session_ended` with
    /// the reason when its session was ended with one (the client must not
    /// log in again by itself), `otherwise`.
    async fn refusal(&self, family: Option<&str>, otherwise: ApiError) -> ApiError {
        let Some(family) = family else {
            return otherwise;
        };
        match self.store.ended_reason(family).await {
            Ok(Some(reason)) => ApiError::SessionEnded {
                reason: reason.as_str(),
            },
            _ => otherwise,
        }
    }

    /// What the hook says on a refresh of the token stored under `hash`
    /// (looked at, not taken). A spent token is reuse, decided before the
    /// hook hears of it (the backend never sees a replay as a refresh, and a
    /// hook that is down cannot spare the family). A refusal ends the
    /// session: the family is revoked, its access token with it.
    async fn ask_hook(&self, hook: &LoginHook, hash: &str) -> Result<UserClaims, ApiError> {
        let record = match self.store.get_refresh(hash).await? {
            RefreshTake::Unknown => return Err(ApiError::RefreshTokenInvalid),
            RefreshTake::Reused(record) => return Err(self.reused(&record).await),
            RefreshTake::Fresh(record) => record,
        };
        self.check_live(&record).await?;
        let call = Call {
            event: Event::Refresh,
            appid: record.appid.as_deref().unwrap_or_default(),
            openid: &record.openid,
            unionid: record.unionid.as_deref(),
            phone: None,
            risk_rank: record.user.risk,
        };
        match hook.call(&call).await {
            // The login's risk rank stays the login's: WeChat's, not the hook's.
            Ok(user) => Ok(UserClaims {
                risk: record.user.risk,
                ..user
            }),
            Err(e @ HookError::Refused { .. }) => {
                tracing::info!(family = %short(&record.family), "the login hook refused a refresh: revoking its family");
                self.store
                    .revoke_family(&record.family, self.family_revocation_ttl())
                    .await?;
                if let Some(a) = &self.audit {
                    a.session_ended(&record.openid, &record.family, EndedBy::HookRefused);
                }
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `POST /wx/logout`: end the session this token belongs to (its refresh
    /// family, and the token itself), or (`all`) everything of its openid.
    pub async fn logout(&self, id: &Identity, all: bool) -> Result<(), ApiError> {
        if all || (id.family.is_none() && id.jti.is_none()) {
            // Without a family or a jti, neither the session nor the token
            // can be named: revoke everything of this openid.
            self.revoke_subject(&id.openid).await?;
            if let Some(a) = &self.audit {
                a.logout(&id.openid, id.family.as_deref(), "all");
            }
            return Ok(());
        }
        if let Some(family) = &id.family {
            self.store
                .revoke_family(family, self.family_revocation_ttl())
                .await?;
        }
        if let Some(jti) = &id.jti {
            self.store
                .revoke_token(jti, self.token_revocation_ttl(id.exp))
                .await?;
        }
        if let Some(a) = &self.audit {
            a.logout(&id.openid, id.family.as_deref(), "token");
        }
        Ok(())
    }

    async fn revoke_subject(&self, openid: &str) -> Result<(), StoreError> {
        // Any token of this openid may be out there, `wxgate token issue` ones included.
        let ttl = self.refresh_ttl.max(MAX_TTL) + self.leeway + Duration::from_secs(1);
        self.store.revoke_subject(openid, unix_now_ms(), ttl).await
    }

    /// Whether a verified token was revoked.
    pub async fn is_revoked(&self, id: &Identity) -> Result<bool, StoreError> {
        let check = RevocationCheck {
            jti: id.jti.as_deref(),
            openid: &id.openid,
            family: id.family.as_deref(),
            issued_ms: id.issued_ms,
        };
        self.store.is_revoked(&check).await
    }

    /// Refuse a revoked token. When the store cannot answer, `on_error` decides.
    pub async fn check_revocation(&self, id: &Identity) -> Result<(), ApiError> {
        match self.is_revoked(id).await {
            Ok(false) => Ok(()),
            Ok(true) => Err(self
                .refusal(id.family.as_deref(), ApiError::TokenRevoked)
                .await),
            Err(e) => match self.on_error {
                OnError::FailClosed => Err(ApiError::StoreUnavailable),
                OnError::FailOpen => {
                    let n = self
                        .fail_open_count
                        .fetch_add(1, Ordering::Relaxed)
                        .saturating_add(1);
                    if n.is_power_of_two() {
                        tracing::warn!(error = %chain(&e), skipped_checks = n, "store unavailable: token accepted without the revocation check (fail_open)");
                    }
                    Ok(())
                }
            },
        }
    }

    /// How many revocation checks `fail_open` has skipped so far.
    pub fn fail_open_count(&self) -> u64 {
        self.fail_open_count.load(Ordering::Relaxed)
    }

    /// A family revocation outlives every token of the family: refresh tokens
    /// and the access tokens issued from them.
    fn family_revocation_ttl(&self) -> Duration {
        self.refresh_ttl.max(self.tokens.ttl()) + self.leeway + Duration::from_secs(1)
    }

    /// A token revocation outlives the token. `exp` comes from a verified
    /// token, but is clamped all the same: no arithmetic on it can overflow.
    fn token_revocation_ttl(&self, exp: u64) -> Duration {
        Duration::from_secs(exp.saturating_sub(unix_now()))
            .min(MAX_TTL)
            .saturating_add(self.leeway)
            .saturating_add(Duration::from_secs(1))
    }
}

fn new_refresh_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The store key of a refresh token.
pub(crate) fn refresh_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn plausible_refresh_token(t: &str) -> bool {
    (32..=256).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A short prefix of an id for logs.
fn short(id: &str) -> &str {
    id.get(..6).unwrap_or(id)
}

#[cfg(test)]
mod tests;
