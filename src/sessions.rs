//! The life of a login after it succeeded: token pairs, refresh, logout, revocation.
//!
//! A login opens a *family*: an access token (JWT, carrying `fam`) and an
//! opaque refresh token (32 random bytes, stored only as a SHA-256). Refreshing
//! rotates: the old refresh token is marked used and a new pair of the same
//! family is issued. Presenting a used refresh token again means it leaked:
//! the whole family is revoked, access tokens included.
//!
//! Logout revokes one access token (its `jti`, until its `exp`) or, with
//! `all`, everything of that openid issued up to now. The proxy asks
//! [`Sessions::is_revoked`] on every authenticated request: one store call.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::store::{RefreshRecord, RefreshTake, RevocationCheck, Store, StoreError};
use crate::token::{random_id, unix_now, unix_now_ms, Identity, NewToken, TokenKeys};

/// A freshly issued access + refresh token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TokenPair {
    pub token: String,
    /// Unix seconds.
    pub exp: u64,
    pub refresh_token: String,
}

/// The answer to `POST /wx/refresh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefreshResponse {
    pub token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub refresh_token: String,
    pub openid: String,
    pub unionid: Option<String>,
}

/// Token issuance and revocation over the store.
pub struct Sessions {
    store: Arc<dyn Store>,
    tokens: Arc<TokenKeys>,
    refresh_ttl: Duration,
    leeway: Duration,
}

impl Sessions {
    /// `refresh_ttl` bounds refresh tokens; `leeway` is the JWT clock leeway.
    pub fn new(
        store: Arc<dyn Store>,
        tokens: Arc<TokenKeys>,
        refresh_ttl: Duration,
        leeway: Duration,
    ) -> Self {
        Self {
            store,
            tokens,
            refresh_ttl,
            leeway,
        }
    }

    /// The store behind the sessions.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Issue an access token and a refresh token. `family: None` opens a new family.
    pub async fn issue_pair(
        &self,
        openid: &str,
        unionid: Option<&str>,
        appid: Option<&str>,
        family: Option<&str>,
    ) -> Result<TokenPair, ApiError> {
        let family = family.map_or_else(random_id, str::to_string);
        let (token, claims) = self
            .tokens
            .issue(&NewToken {
                openid,
                unionid,
                appid,
                family: Some(&family),
                ttl: None,
            })
            .map_err(|_| ApiError::Internal)?;
        let refresh_token = new_refresh_token();
        let now = unix_now();
        let record = RefreshRecord {
            openid: openid.to_string(),
            unionid: unionid.map(str::to_string),
            appid: appid.map(str::to_string),
            family,
            issued_ms: unix_now_ms(),
            expires_at: now + self.refresh_ttl.as_secs(),
        };
        self.store
            .put_refresh(&refresh_hash(&refresh_token), &record, self.refresh_ttl)
            .await?;
        Ok(TokenPair {
            token,
            exp: claims.exp,
            refresh_token,
        })
    }

    /// `POST /wx/refresh`: rotate a refresh token.
    pub async fn refresh(&self, refresh_token: &str) -> Result<RefreshResponse, ApiError> {
        if !plausible_refresh_token(refresh_token) {
            return Err(ApiError::RefreshTokenInvalid);
        }
        let hash = refresh_hash(refresh_token);
        let record = match self.store.take_refresh(&hash, self.refresh_ttl).await? {
            RefreshTake::Unknown => return Err(ApiError::RefreshTokenInvalid),
            RefreshTake::Reused(record) => {
                tracing::warn!(
                    family = %short(&record.family),
                    "a used refresh token was presented again: revoking its family"
                );
                self.store
                    .revoke_family(&record.family, self.revocation_ttl())
                    .await?;
                return Err(ApiError::RefreshTokenReused);
            }
            RefreshTake::Fresh(record) => record,
        };
        let now = unix_now();
        if record.expires_at <= now {
            return Err(ApiError::RefreshTokenInvalid);
        }
        let check = RevocationCheck {
            jti: None,
            openid: &record.openid,
            family: Some(&record.family),
            issued_ms: record.issued_ms,
        };
        if self.store.is_revoked(&check).await? {
            return Err(ApiError::RefreshTokenInvalid);
        }
        let pair = self
            .issue_pair(
                &record.openid,
                record.unionid.as_deref(),
                record.appid.as_deref(),
                Some(&record.family),
            )
            .await?;
        // From now on the old token is spent. Until this is recorded, a retry
        // (say after a store timeout) may rotate it again instead of being
        // taken for reuse.
        if let Err(e) = self.store.complete_refresh(&hash, self.refresh_ttl).await {
            tracing::warn!(error = %e, "cannot mark a refresh token spent");
        }
        Ok(RefreshResponse {
            token: pair.token,
            token_type: "Bearer",
            expires_in: pair.exp.saturating_sub(now),
            refresh_token: pair.refresh_token,
            openid: record.openid,
            unionid: record.unionid,
        })
    }

    /// `POST /wx/logout`: revoke this token, or (`all`) everything of its openid.
    pub async fn logout(&self, id: &Identity, all: bool) -> Result<(), ApiError> {
        if all {
            self.store
                .revoke_subject(&id.openid, unix_now_ms(), self.revocation_ttl())
                .await?;
        } else if let Some(jti) = &id.jti {
            let left = id.exp.saturating_sub(unix_now()) + self.leeway.as_secs() + 1;
            self.store
                .revoke_token(jti, Duration::from_secs(left))
                .await?;
        } else {
            // Without a jti a single token cannot be named: revoke them all.
            self.store
                .revoke_subject(&id.openid, unix_now_ms(), self.revocation_ttl())
                .await?;
        }
        Ok(())
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

    /// Revocations must outlive everything they revoke.
    fn revocation_ttl(&self) -> Duration {
        self.refresh_ttl.max(self.tokens.ttl()) + self.leeway + Duration::from_secs(1)
    }
}

fn new_refresh_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The store key of a refresh token.
pub fn refresh_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
