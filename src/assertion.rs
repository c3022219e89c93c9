//! `X-WXGate-Assertion`: proof, for a backend that must not trust the
//! network, that a request came through wxgate (`[assertion]`).
//!
//! Each request forwarded with a verified token carries a short JWT signed
//! with the gateway's assertion key (EdDSA or ES256, published in
//! `/.well-known/jwks.json` under its own `kid`):
//!
//! * header `{"alg", "kid", "typ": "wxgate-assertion+jwt"}`;
//! * claims `iss` (`[jwt] issuer`), `sub` (the openid), `aud` (the route's
//!   prefix), `iat`, `exp` (at most 60 s later), `appid`, `uid`, `roles`
//!   when the token has them, and the request it was made for: `htm` (the
//!   method), `htu` (the path, without the query, as sent upstream) and
//!   `rid` (the request id, `X-Request-ID`).
//!
//! A backend checks the signature with the key set, `aud` and `exp`, and
//! that `htm`, `htu` and `rid` are the request's own: an assertion copied
//! onto another request, path or route, or kept past a minute, is refused.
//! Its `aud` is never `[jwt] audience`, so an assertion is not an access
//! token, and an access token is not an assertion.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Serialize;

use crate::clock::unix_now;
use crate::token::{Identity, PrivateKey};

/// The header it travels in.
pub const HEADER: &str = "X-WXGate-Assertion";

/// The longest an assertion lives.
pub const MAX_TTL: Duration = Duration::from_secs(60);

/// Its JWT `typ`, which no access token has.
pub const TYP: &str = "wxgate-assertion+jwt";

/// `[assertion]`, validated.
#[derive(Debug, Clone, Serialize)]
pub struct AssertionConfig {
    /// The signing key (never serialised).
    #[serde(skip)]
    pub key: PrivateKey,
    pub kid: String,
    #[serde(serialize_with = "crate::ser::ser_duration")]
    pub ttl: Duration,
}

/// What signs: ring's Ed25519 (assembly, about twice as fast as
/// ed25519-dalek's) or the key itself (ES256).
enum Signer {
    Ring(ring::signature::Ed25519KeyPair),
    Key(PrivateKey),
}

impl Signer {
    fn of(key: &PrivateKey) -> Self {
        if let PrivateKey::Ed25519(k) = key {
            let public = k.verifying_key();
            if let Ok(pair) = ring::signature::Ed25519KeyPair::from_seed_and_public_key(
                &k.to_bytes(),
                public.as_bytes(),
            ) {
                return Self::Ring(pair);
            }
        }
        Self::Key(key.clone())
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::Ring(pair) => pair.sign(message).as_ref().to_vec(),
            Self::Key(k) => k.sign(message),
        }
    }
}

/// Signs assertions; everything but the claims built once.
pub struct Assertions {
    signer: Signer,
    /// The encoded JWT header.
    header: String,
    issuer: String,
    ttl: u64,
    /// The public key, as the key set lists it.
    jwk: serde_json::Value,
}

impl std::fmt::Debug for Assertions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assertions").finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    appid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    roles: &'a [String],
    htm: &'a str,
    htu: &'a str,
    rid: &'a str,
}

impl Assertions {
    /// The signer of `cfg`, naming `issuer`.
    pub fn new(cfg: &AssertionConfig, issuer: &str) -> Self {
        let alg = cfg.key.algorithm();
        let header = serde_json::json!({ "alg": alg.name(), "kid": cfg.kid, "typ": TYP });
        Self {
            signer: Signer::of(&cfg.key),
            header: URL_SAFE_NO_PAD.encode(header.to_string()),
            issuer: issuer.to_string(),
            ttl: cfg.ttl.as_secs().max(1),
            jwk: cfg.key.public().jwk(&cfg.kid),
        }
    }

    /// The public key, for the key set.
    pub fn jwk(&self) -> &serde_json::Value {
        &self.jwk
    }

    /// [`Self::sign`] for an upstream request head as Pingora sends it.
    pub(crate) fn sign_header(
        &self,
        id: &Identity,
        aud: &str,
        req: &pingora_http::RequestHeader,
    ) -> String {
        let rid = req.headers.get("x-request-id").map(|v| v.as_bytes());
        let method = req.method.as_str().as_bytes();
        self.sign(id, aud, method, req.raw_path(), rid.unwrap_or_default())
    }

    /// The assertion for a request of `id` on the route `aud`: `method`,
    /// `target` (its query is left out) and request id `rid`.
    pub fn sign(
        &self,
        id: &Identity,
        aud: &str,
        method: &[u8],
        target: &[u8],
        rid: &[u8],
    ) -> String {
        let path = target.split(|&b| b == b'?').next().unwrap_or_default();
        let (htm, htu, rid) = (
            String::from_utf8_lossy(method),
            String::from_utf8_lossy(path),
            String::from_utf8_lossy(rid),
        );
        let iat = unix_now();
        let claims = Claims {
            iss: &self.issuer,
            sub: &id.openid,
            aud,
            iat,
            exp: iat.saturating_add(self.ttl),
            appid: id.appid.as_deref(),
            uid: id.user.uid.as_deref(),
            roles: &id.user.roles,
            htm: &htm,
            htu: &htu,
            rid: &rid,
        };
        let payload = serde_json::to_vec(&claims).unwrap_or_default();
        let mut jwt = String::with_capacity(
            self.header
                .len()
                .saturating_add(payload.len().saturating_mul(2)),
        );
        jwt.push_str(&self.header);
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut jwt);
        let signature = self.signer.sign(jwt.as_bytes());
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut jwt);
        jwt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{Algorithm, UserClaims};

    fn identity() -> Identity {
        Identity {
            openid: "o-1".into(),
            unionid: None,
            appid: Some("wx1".into()),
            jti: None,
            family: None,
            exp: 0,
            iat: None,
            issued_ms: 0,
            user: UserClaims {
                uid: Some("u-7".into()),
                roles: vec!["admin".into()],
                ..UserClaims::default()
            },
        }
    }

    #[test]
    fn an_assertion_names_the_request_and_verifies_with_the_published_key() {
        for alg in [Algorithm::EdDSA, Algorithm::ES256] {
            let key = PrivateKey::generate(alg).unwrap();
            let cfg = AssertionConfig {
                kid: "assert-1".into(),
                key: key.clone(),
                ttl: MAX_TTL,
            };
            let a = Assertions::new(&cfg, "wxgate");
            let jwt = a.sign(&identity(), "/api/", b"POST", b"/api/orders?x=1", b"rid-1");
            let parts: Vec<&str> = jwt.split('.').collect();
            assert_eq!(parts.len(), 3);
            let header: serde_json::Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
            assert_eq!(header["typ"], TYP);
            assert_eq!(header["kid"], "assert-1");
            assert_eq!(header["alg"], alg.name());
            let claims: serde_json::Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
            assert_eq!(claims["sub"], "o-1");
            assert_eq!(claims["aud"], "/api/");
            assert_eq!(claims["htm"], "POST");
            assert_eq!(claims["htu"], "/api/orders");
            assert_eq!(claims["rid"], "rid-1");
            assert_eq!(claims["uid"], "u-7");
            assert_eq!(claims["roles"], serde_json::json!(["admin"]));
            assert_eq!(claims["appid"], "wx1");
            let life = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
            assert_eq!(life, 60);
            let signed = format!("{}.{}", parts[0], parts[1]);
            let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
            assert!(key.public().verify(signed.as_bytes(), &sig));
            assert_eq!(a.jwk()["kid"], "assert-1");
        }
    }
}
