//! The reference verification: the key the header names, a strict
//! signature check, `jsonwebtoken` with a strict `Validation`, then wxgate's
//! own rules. [`super::fast`] decides the tokens shaped like wxgate's own;
//! this path decides every other one, and is the oracle the fast path is
//! tested against.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use serde::Deserialize;

use super::{Identity, TokenError, TokenKeys, UserClaims, VerifyKey, MAX_TTL};
use crate::clock::unix_now;

/// The claims as read before validation. `sub` and `exp` are optional here so
/// that a missing one is reported by the validation step, by name.
#[derive(Deserialize)]
struct RawIdentity {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    unionid: Option<String>,
    #[serde(default)]
    appid: Option<String>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    fam: Option<String>,
    #[serde(default)]
    exp: Option<serde_json::Value>,
    /// Only its shape is checked here (validation compared the value).
    #[serde(default)]
    iss: Option<serde_json::Value>,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    iat_ms: Option<u64>,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    ext: BTreeMap<String, String>,
    #[serde(default)]
    risk: Option<u8>,
}

impl TokenKeys {
    /// Verify a bare token the reference way (length already checked).
    pub(super) fn verify_reference(&self, token: &str) -> Result<Identity, TokenError> {
        let h = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            // An unreadable header (e.g. `alg: none`, which jsonwebtoken
            // has no name for) is an algorithm refusal, not a claims problem.
            ErrorKind::Json(_) => TokenError::Algorithm,
            kind => map_jwt_error(kind),
        })?;
        let forbidden = [
            ("crit", h.crit.is_some()),
            ("jku", h.jku.is_some()),
            ("x5u", h.x5u.is_some()),
            ("jwk", h.jwk.is_some()),
            ("x5c", h.x5c.is_some()),
        ];
        if let Some((name, _)) = forbidden.iter().find(|(_, present)| *present) {
            return Err(TokenError::ForbiddenHeader(name));
        }
        // The one key the token names, with its algorithm and no other.
        let key = self.key_for(h.kid.as_deref())?;
        if h.alg != key.alg.jsonwebtoken() {
            return Err(TokenError::Algorithm);
        }
        // The strict check (ES256: r||s with a low S; Ed25519: strict), then
        // jsonwebtoken's own with the claims rules.
        let (message, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?;
        if !key.check.verify(message.as_bytes(), &signature) {
            return Err(TokenError::Signature);
        }
        let data = jsonwebtoken::decode::<RawIdentity>(token, &key.decoding, &key.validation)
            .map_err(|e| map_jwt_error(e.kind()))?;
        let raw = data.claims;
        // RFC 7519: `iss` is one StringOrURI. jsonwebtoken also takes a list
        // containing the configured issuer, as it does for `aud`.
        if !raw.iss.as_ref().is_some_and(serde_json::Value::is_string) {
            return Err(TokenError::Issuer);
        }
        let openid = raw
            .sub
            .filter(|s| !s.is_empty())
            .ok_or_else(|| TokenError::Claim("sub".into()))?;
        // Validation has checked `exp` is a number in the future; wxgate
        // issues whole seconds and accepts nothing else.
        let exp = raw
            .exp
            .as_ref()
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| TokenError::Claim("exp".into()))?;
        // No token wxgate issues lives longer than MAX_TTL; one that claims to
        // would outlive its revocation.
        let latest = unix_now()
            .saturating_add(MAX_TTL.as_secs())
            .saturating_add(self.leeway);
        if exp > latest {
            return Err(TokenError::Claim("exp (too far in the future)".into()));
        }
        Ok(Identity {
            openid,
            unionid: raw.unionid,
            appid: raw.appid,
            jti: raw.jti,
            family: raw.fam,
            exp,
            iat: raw.iat,
            issued_ms: raw
                .iat_ms
                .or_else(|| raw.iat.map(|s| s.saturating_mul(1000)))
                .unwrap_or(0),
            user: UserClaims {
                uid: raw.uid,
                roles: raw.roles,
                ext: raw.ext,
                risk: raw.risk,
            },
        })
    }
}

impl TokenKeys {
    /// The key a token's `kid` names; without one, an HS256 signing key.
    fn key_for(&self, kid: Option<&str>) -> Result<&VerifyKey, TokenError> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .ok_or(TokenError::UnknownKey),
            None => self
                .keys
                .first()
                .filter(|k| k.takes_kidless)
                .ok_or(TokenError::MissingKid),
        }
    }
}

fn map_jwt_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName => TokenError::Algorithm,
        ErrorKind::InvalidSignature => TokenError::Signature,
        ErrorKind::InvalidIssuer => TokenError::Issuer,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::MissingRequiredClaim(c) => TokenError::Claim(c.clone()),
        ErrorKind::InvalidClaimFormat(c) => TokenError::Claim(c.clone()),
        ErrorKind::InvalidSubject => TokenError::Claim("sub".into()),
        ErrorKind::Json(_) => TokenError::Claim("claims are not the expected JSON".into()),
        _ => TokenError::Malformed,
    }
}
