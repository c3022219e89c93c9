//! The verification hot path: tokens shaped like the ones wxgate issues.
//!
//! Almost every token a gateway sees was issued by itself: one of a few
//! header encodings, an HS256 signature, string `sub`/`iss`/`aud` and a whole
//! number `exp`. For those, [`FastVerifier::verify`] does what the reference
//! path ([`super::reference`], `jsonwebtoken`) does, with the HMAC state keyed
//! once at start-up, the header compared as bytes instead of parsed, and one
//! parse of the claims instead of two. Anything else — another header,
//! another signature length, claims of an unusual shape — is not decided
//! here: the caller hands it to the reference path, so both give the same
//! answer for every token (`super::proptests` checks it over generated good
//! and bad tokens).

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::{Identity, TokenError, UserClaims, MAX_TTL};

/// Base64url (unpadded) length of an HMAC-SHA256 signature.
const SIGNATURE_CHARS: usize = 43;

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
}

fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    u64::deserialize(d).map(Some)
}

/// The verification state built once from `[jwt]`.
#[derive(Clone)]
pub(super) struct FastVerifier {
    /// HMAC-SHA256 with the key already absorbed: cloned per token.
    mac: Hmac<Sha256>,
    /// Encoded headers decided here (HS256, nothing else of note).
    headers: Vec<String>,
    issuer: String,
    audience: String,
    leeway: u64,
}

impl FastVerifier {
    /// `None` if the secret cannot key an HMAC (it always can: HMAC takes
    /// keys of any length), in which case every token goes the reference way.
    pub(super) fn new(secret: &[u8], issuer: &str, audience: &str, leeway: u64) -> Option<Self> {
        let mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
        let ours =
            serde_json::to_vec(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)).ok()?;
        let headers = [
            ours.as_slice(),
            br#"{"alg":"HS256","typ":"JWT"}"#,
            br#"{"alg":"HS256"}"#,
        ]
        .iter()
        .map(|h| URL_SAFE_NO_PAD.encode(h))
        .collect();
        Some(Self {
            mac,
            headers,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway,
        })
    }

    /// Verify `token` at `now` (Unix seconds), or `None`: not a shape this
    /// path decides.
    pub(super) fn verify(&self, token: &str, now: u64) -> Option<Result<Identity, TokenError>> {
        // Split as jsonwebtoken does: the signature after the last dot, the
        // claims after the dot before it.
        let (message, signature) = token.rsplit_once('.')?;
        let (header, payload) = message.rsplit_once('.')?;
        if signature.len() != SIGNATURE_CHARS || !self.headers.iter().any(|h| h == header) {
            return None;
        }
        let mut sig = [0u8; 36];
        let Ok(n) = URL_SAFE_NO_PAD.decode_slice(signature, &mut sig) else {
            return Some(Err(TokenError::Malformed));
        };
        if self
            .mac
            .clone()
            .chain_update(message.as_bytes())
            .verify_slice(sig.get(..n)?)
            .is_err()
        {
            return Some(Err(TokenError::Signature));
        }
        // Signed with our key from here on: whatever is unusual below was
        // signed by us (or by someone holding the secret), and is rare.
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
            },
        }))
    }
}
