//! The verification hot path: tokens shaped like the ones wxgate issues.
//!
//! Almost every token a gateway sees was issued by itself: one of a few
//! header encodings (each tied to one key by [`super::TokenKeys`]), a
//! signature of the key's length, string `sub`/`iss`/`aud` and a whole
//! number `exp`. For those, [`FastVerifier::verify`] does what the reference
//! path ([`super::reference`], `jsonwebtoken`) does, with the keys (the HMAC
//! state, the public keys) built once at start-up, the header compared as
//! bytes instead of parsed, and one parse of the claims instead of two.
//! Anything else — another header, another signature length, claims of an
//! unusual shape — is not decided here: the caller hands it to the reference
//! path, so both give the same answer for every token (`super::proptests`
//! checks it over generated good and bad tokens of each algorithm, the
//! public-key ones also through the verified-token cache).

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;

use super::claims::{Identity, TokenError, UserClaims};
use super::config::MAX_TTL;
use super::keys::{Algorithm, SignatureCheck};

/// Base64url (unpadded) length of a signature of `alg`: 32 bytes for
/// HMAC-SHA256, 64 for Ed25519 and for ES256's `r||s`.
fn signature_chars(alg: Algorithm) -> usize {
    match alg {
        Algorithm::HS256 => 43,
        Algorithm::EdDSA | Algorithm::ES256 => 86,
    }
}

/// Claims as this path reads them: every field typed as wxgate issues it, so
/// anything else fails to parse and goes to the reference path.
#[derive(Deserialize)]
struct Claims<'a> {
    #[serde(borrow)]
    sub: Option<Cow<'a, str>>,
    #[serde(borrow)]
    iss: Option<Cow<'a, str>>,
    #[serde(borrow)]
    aud: Option<Cow<'a, str>>,
    exp: Option<u64>,
    /// `null` is not "absent" here: jsonwebtoken calls it malformed.
    #[serde(default, deserialize_with = "whole_number")]
    nbf: Option<u64>,
    iat: Option<u64>,
    iat_ms: Option<u64>,
    jti: Option<String>,
    fam: Option<String>,
    appid: Option<String>,
    unionid: Option<String>,
    uid: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    ext: BTreeMap<String, String>,
    risk: Option<u8>,
}

fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    u64::deserialize(d).map(Some)
}

/// The claims rules of `[jwt]`, built once.
#[derive(Clone)]
pub(super) struct FastVerifier {
    issuer: String,
    audience: String,
    leeway: u64,
}

impl FastVerifier {
    pub(super) fn new(issuer: &str, audience: &str, leeway: u64) -> Self {
        Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway,
        }
    }

    /// Verify `token` at `now` (Unix seconds) with `key`, the key its
    /// header names, of algorithm `alg`; or `None`: not a shape this path
    /// decides.
    pub(super) fn verify(
        &self,
        key: &SignatureCheck,
        alg: Algorithm,
        token: &str,
        now: u64,
    ) -> Option<Result<Identity, TokenError>> {
        // Split as jsonwebtoken does: the signature after the last dot, the
        // claims after the dot before it.
        let (message, signature) = token.rsplit_once('.')?;
        let (_, payload) = message.rsplit_once('.')?;
        if signature.len() != signature_chars(alg) {
            return None;
        }
        let mut sig = [0u8; 66];
        let Ok(n) = URL_SAFE_NO_PAD.decode_slice(signature, &mut sig) else {
            return Some(Err(TokenError::Malformed));
        };
        if !key.verify(message.as_bytes(), sig.get(..n)?) {
            return Some(Err(TokenError::Signature));
        }
        // Signed with our key from here on: whatever is unusual below was
        // signed by us (or by someone holding the key), and is rare.
        let mut buf = [0u8; 3072];
        let n = URL_SAFE_NO_PAD.decode_slice(payload, &mut buf).ok()?;
        let claims: Claims<'_> = serde_json::from_slice(buf.get(..n)?).ok()?;
        self.validate(claims, now)
    }

    /// jsonwebtoken's validation (exp, nbf, iss, aud, in that order), then
    /// wxgate's own rules, for claims of the usual shape.
    fn validate(&self, c: Claims<'_>, now: u64) -> Option<Result<Identity, TokenError>> {
        let (Some(exp), Some(sub), Some(iss), Some(aud)) = (c.exp, c.sub, c.iss, c.aud) else {
            // A required claim is missing: the reference path names it.
            return None;
        };
        let refused = if exp < now.saturating_sub(self.leeway) {
            Some(TokenError::Expired)
        } else if c
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(self.leeway))
        {
            Some(TokenError::NotYetValid)
        } else if iss != self.issuer {
            Some(TokenError::Issuer)
        } else if aud != self.audience {
            Some(TokenError::Audience)
        } else if sub.is_empty() {
            Some(TokenError::Claim("sub".into()))
        } else if exp
            > now
                .saturating_add(MAX_TTL.as_secs())
                .saturating_add(self.leeway)
        {
            Some(TokenError::Claim("exp (too far in the future)".into()))
        } else {
            None
        };
        if let Some(e) = refused {
            return Some(Err(e));
        }
        Some(Ok(Identity {
            openid: sub.into_owned(),
            unionid: c.unionid,
            appid: c.appid,
            jti: c.jti,
            family: c.fam,
            exp,
            iat: c.iat,
            issued_ms: c
                .iat_ms
                .or_else(|| c.iat.map(|s| s.saturating_mul(1000)))
                .unwrap_or(0),
            user: UserClaims {
                uid: c.uid,
                roles: c.roles,
                ext: c.ext,
                risk: c.risk,
            },
        }))
    }
}
