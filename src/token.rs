//! JWTs: issuing and verifying the gateway's access tokens.
//!
//! Tokens are signed with one key (`[jwt]`: HS256, EdDSA or ES256) and
//! checked with it or with a previous one (`[[jwt.previous_keys]]`). A token
//! is checked only with the key its `kid` names, with that key's algorithm
//! and nothing else ([`keys`]); a token without `kid` only with an HS256
//! signing key (the tokens of a gateway without key ids). `alg: none`, any
//! other algorithm, an unknown `kid` and any header carrying `crit`, `jku`,
//! `x5u`, `jwk` or `x5c` are refused. `exp`, `iss`, `aud` and `sub` are
//! required; `nbf` is checked when present. Everything needed to verify
//! (keys, encoded headers, validation rules, the JWKS) is built once in
//! [`TokenKeys::new`].
//!
//! A refusal tells the client only *expired* or *invalid*; the precise reason
//! is a [`TokenError`] for logs and `wxgate token verify`.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{DecodingKey, Header, Validation};

use crate::clock::{random_id, unix_now, unix_now_ms};
pub use claims::{Claims, Identity, TokenError, UserClaims};
pub use config::{JwtConfig, JwtKey, KeyMaterial, MAX_TTL};
use fast::FastVerifier;
pub use keys::{Algorithm, KeyError, PrivateKey, PublicKey};
use keys::{SignatureCheck, Signer};

mod claims;
mod config;
mod fast;
pub mod keys;
mod reference;
mod verified;

/// Signing and verification keys plus the validation rules, built once.
pub struct TokenKeys {
    /// Tells this set of keys from the one before a reload (the verified
    /// tokens cache, [`verified`], is per set).
    id: u64,
    /// Signs new tokens.
    signer: Signer,
    /// The encoded header of the tokens it signs.
    header: String,
    /// Every key tokens are checked with, the signing key first.
    keys: Vec<VerifyKey>,
    /// Encoded headers decided on the fast path, with the index of their key.
    fast_headers: Vec<(String, usize)>,
    /// The hot path's claims rules.
    fast: FastVerifier,
    /// `/.well-known/jwks.json`: the public keys, serialised once.
    jwks: bytes::Bytes,
    issuer: String,
    audience: String,
    ttl: Duration,
    leeway: u64,
    max_token_bytes: usize,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// What to put in a new token besides the configured defaults.
#[derive(Debug, Clone, Default)]
pub struct NewToken<'a> {
    pub openid: &'a str,
    pub unionid: Option<&'a str>,
    pub appid: Option<&'a str>,
    /// The refresh-token family (set by login and refresh).
    pub family: Option<&'a str>,
    /// Overrides the configured `ttl`.
    pub ttl: Option<Duration>,
    /// What the login hook said about the user.
    pub user: Option<&'a UserClaims>,
}

/// One key tokens are checked with.
struct VerifyKey {
    kid: Option<String>,
    alg: Algorithm,
    check: SignatureCheck,
    /// The reference path's key and rules (jsonwebtoken).
    decoding: DecodingKey,
    validation: Validation,
    /// Tokens without a `kid` are checked with this key (an HS256 signing key).
    takes_kidless: bool,
}

impl TokenKeys {
    /// Build keys and rules from the validated `[jwt]` config.
    pub fn new(cfg: &JwtConfig) -> Self {
        let signing = &cfg.key;
        let keys: Vec<VerifyKey> = std::iter::once((signing, true))
            .chain(cfg.previous_keys.iter().map(|k| (k, false)))
            .map(|(k, is_signing)| VerifyKey::new(cfg, k, is_signing))
            .collect();
        let mut fast_headers = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            fast_headers.push((encoded_header(key.alg, key.kid.as_deref()), i));
            if key.takes_kidless {
                // Kid-less HS256 headers as other libraries write them.
                for h in [r#"{"alg":"HS256","typ":"JWT"}"#, r#"{"alg":"HS256"}"#] {
                    fast_headers.push((URL_SAFE_NO_PAD.encode(h), i));
                }
                fast_headers.push((encoded_header(key.alg, None), i));
            }
        }
        fast_headers.dedup();
        let signer = match &signing.material {
            KeyMaterial::Secret(s) => Signer::Hmac(keys::hmac(s.expose())),
            KeyMaterial::Private(k) => Signer::Private(k.clone()),
            // Validation gives the signing key a secret or a private key.
            KeyMaterial::Public(_) => Signer::Hmac(keys::hmac(&rand::random::<[u8; 32]>())),
        };
        let jwks = jwks(std::iter::once(signing).chain(&cfg.previous_keys));
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Self {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            signer,
            header: encoded_header(signing.algorithm, signing.kid.as_deref()),
            keys,
            fast_headers,
            fast: FastVerifier::new(&cfg.issuer, &cfg.audience, cfg.leeway.as_secs()),
            jwks: bytes::Bytes::from(jwks),
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            ttl: cfg.ttl,
            leeway: cfg.leeway.as_secs(),
            max_token_bytes: cfg.max_token_bytes,
        }
    }

    /// The configured token lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// `{"keys": [...]}`: the public keys tokens may be checked with (none
    /// for HS256), for `/.well-known/jwks.json`.
    pub fn jwks(&self) -> bytes::Bytes {
        self.jwks.clone()
    }

    /// Issue a signed token. Returns the token and its claims.
    pub fn issue(&self, new: &NewToken<'_>) -> Result<(String, Claims), TokenError> {
        let ttl = new.ttl.unwrap_or(self.ttl);
        if ttl > MAX_TTL {
            return Err(TokenError::TtlTooLong);
        }
        let now_ms = unix_now_ms();
        let now = now_ms / 1000;
        let claims = Claims {
            sub: new.openid.to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            exp: now.saturating_add(ttl.as_secs()),
            jti: random_id(),
            fam: new.family.map(str::to_string),
            iat_ms: now_ms,
            appid: new.appid.map(str::to_string),
            unionid: new.unionid.map(str::to_string),
            uid: new.user.and_then(|u| u.uid.clone()),
            roles: new.user.map(|u| u.roles.clone()).unwrap_or_default(),
            ext: new.user.map(|u| u.ext.clone()).unwrap_or_default(),
            risk: new.user.and_then(|u| u.risk),
        };
        let payload = serde_json::to_vec(&claims).map_err(|_| TokenError::Malformed)?;
        let mut token = String::with_capacity(
            self.header
                .len()
                .saturating_add(payload.len().saturating_mul(4) / 3)
                .saturating_add(92),
        );
        token.push_str(&self.header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature = self.signer.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        if token.len() > self.max_token_bytes {
            // One it would refuse itself (the login hook's claims can make it large).
            return Err(TokenError::TooLong(self.max_token_bytes));
        }
        Ok((token, claims))
    }

    /// Verify a bare token (no `Bearer ` prefix).
    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        if token.len() > self.max_token_bytes {
            return Err(TokenError::TooLong(self.max_token_bytes));
        }
        match self.verify_fast(token, unix_now()) {
            Some(decided) => decided,
            None => self.verify_reference(token),
        }
    }

    /// The fast path: a token whose header is exactly one a key of ours
    /// writes, checked with that key; `None` for anything else.
    fn verify_fast(&self, token: &str, now: u64) -> Option<Result<Identity, TokenError>> {
        // The header as jsonwebtoken splits it: before the claims, which are
        // before the last dot.
        let header = token
            .rsplit_once('.')
            .and_then(|(message, _)| message.rsplit_once('.'))
            .map_or("", |(h, _)| h);
        let (_, i) = self.fast_headers.iter().find(|(h, _)| h == header)?;
        let key = self.keys.get(*i)?;
        if !key.alg.is_asymmetric() {
            return self.fast.verify(&key.check, key.alg, token, now);
        }
        if let Some(id) = verified::get(self.id, token) {
            // Verified before: only time can have changed the answer.
            return Some(if id.exp < now.saturating_sub(self.leeway) {
                Err(TokenError::Expired)
            } else {
                Ok(id)
            });
        }
        let decided = self.fast.verify(&key.check, key.alg, token, now);
        if let Some(Ok(id)) = &decided {
            verified::put(self.id, token, id);
        }
        decided
    }

    /// Verify the token from the `Authorization` header values of a request.
    ///
    /// `values` are every `Authorization` header the request carried. A
    /// non-Bearer scheme counts as no token.
    pub fn verify_authorization<'v>(
        &self,
        mut values: impl Iterator<Item = &'v [u8]>,
    ) -> Result<Identity, TokenError> {
        let Some(first) = values.next() else {
            return Err(TokenError::Missing);
        };
        if values.next().is_some() {
            return Err(TokenError::Duplicate);
        }
        let token = bearer_token(first)?;
        let token = std::str::from_utf8(token).map_err(|_| TokenError::Malformed)?;
        self.verify(token)
    }
}

impl VerifyKey {
    fn new(cfg: &JwtConfig, key: &JwtKey, is_signing: bool) -> Self {
        let (check, decoding) = match &key.material {
            KeyMaterial::Secret(s) => (
                SignatureCheck::Hmac(keys::hmac(s.expose())),
                DecodingKey::from_secret(s.expose()),
            ),
            KeyMaterial::Private(k) => {
                let public = k.public();
                let decoding = public.decoding_key();
                (SignatureCheck::Public(public), decoding)
            }
            KeyMaterial::Public(public) => (
                SignatureCheck::Public(public.clone()),
                public.decoding_key(),
            ),
        };
        let mut validation = Validation::new(key.algorithm.jsonwebtoken());
        validation.algorithms = vec![key.algorithm.jsonwebtoken()];
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.set_issuer(&[&cfg.issuer]);
        validation.set_audience(&[&cfg.audience]);
        validation.leeway = cfg.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        Self {
            kid: key.kid.clone(),
            alg: key.algorithm,
            check,
            decoding,
            validation,
            takes_kidless: is_signing && key.algorithm == Algorithm::HS256,
        }
    }
}

/// `base64url(header)` of the tokens a key signs: `{"typ":"JWT","alg":..}`
/// and the `kid` when it has one (jsonwebtoken's field order).
fn encoded_header(alg: Algorithm, kid: Option<&str>) -> String {
    let mut header = Header::new(alg.jsonwebtoken());
    header.kid = kid.map(str::to_owned);
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap_or_default())
}

/// `{"keys": [...]}` with the public JWK of each asymmetric key.
fn jwks<'a>(keys: impl Iterator<Item = &'a JwtKey>) -> String {
    let listed: Vec<serde_json::Value> = keys
        .filter_map(|k| {
            let public = match &k.material {
                KeyMaterial::Private(p) => p.public(),
                KeyMaterial::Public(p) => p.clone(),
                KeyMaterial::Secret(_) => return None,
            };
            Some(public.jwk(k.kid.as_deref().unwrap_or_default()))
        })
        .collect();
    serde_json::json!({ "keys": listed }).to_string()
}

/// Extract the token from `Bearer <token>` (scheme case-insensitive).
pub(crate) fn bearer_token(value: &[u8]) -> Result<&[u8], TokenError> {
    let value = value.trim_ascii();
    if value.len() < 6 || !value[..6].eq_ignore_ascii_case(b"bearer") {
        return Err(TokenError::Missing);
    }
    let rest = &value[6..];
    if rest.is_empty() {
        return Err(TokenError::Empty);
    }
    if !matches!(rest[0], b' ' | b'\t') {
        // `Bearerxyz` is another scheme, not a Bearer token.
        return Err(TokenError::Missing);
    }
    let token = rest.trim_ascii_start();
    if token.is_empty() {
        return Err(TokenError::Empty);
    }
    if token.iter().any(|b| b.is_ascii_whitespace()) {
        return Err(TokenError::Malformed);
    }
    Ok(token)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod rotation_tests;
