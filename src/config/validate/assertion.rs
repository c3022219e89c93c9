//! `[assertion]`: the key that signs `X-WXGate-Assertion`, its `kid` and
//! the assertions' lifetime.

use super::super::error::ConfigError;
use super::super::model::{AssertionConfig, JwtConfig, KeyMaterial, RouteConfig};
use super::super::resolve::Sourced;
use super::super::schema::RawAssertion;
use super::Validator;
use crate::assertion::MAX_TTL;
use crate::token::keys::is_valid_kid;
use crate::token::{Algorithm, PrivateKey};

impl Validator<'_> {
    /// An EdDSA or ES256 key (backends check it with the public half from
    /// the key set), neither the key nor the `kid` of a token key, at most
    /// 60 s of life; no route's prefix (an assertion's `aud`) may be the
    /// tokens' audience, or an assertion would read as an access token.
    pub(super) fn assertion(
        &self,
        raw: Option<RawAssertion>,
        key: Option<Sourced>,
        jwt: &JwtConfig,
        routes: &[RouteConfig],
    ) -> Result<Option<AssertionConfig>, ConfigError> {
        let (Some(raw), Some(key)) = (raw, key) else {
            return Ok(None);
        };
        let alg = match raw.algorithm.as_deref().and_then(Algorithm::parse) {
            Some(a) if a.is_asymmetric() => a,
            _ => {
                return Err(self.err(
                    "assertion.algorithm",
                    "\"EdDSA\" or \"ES256\": backends check assertions with the public key from the key set",
                ))
            }
        };
        let pem = key.value.expose_str().unwrap_or_default();
        let private = PrivateKey::from_pem(alg, pem)
            .map_err(|e| self.err("assertion.private_key", format!("{}: {e}", key.source)))?;
        let kid = match raw.kid {
            Some(k) if !is_valid_kid(&k) => {
                return Err(self.err("assertion.kid", "1 to 64 characters of A-Z a-z 0-9 - _ ."))
            }
            Some(k) => k,
            None => private.public().thumbprint(),
        };
        let taken = std::iter::once(&jwt.key)
            .chain(&jwt.previous_keys)
            .any(|k| k.kid.as_deref() == Some(kid.as_str()));
        if taken {
            return Err(self.err(
                "assertion.kid",
                format!("{kid:?} is a token key's kid: the assertion key needs its own (and its own key)"),
            ));
        }
        let thumbprint = private.public().thumbprint();
        let same_key = std::iter::once(&jwt.key)
            .chain(&jwt.previous_keys)
            .any(|k| match &k.material {
                KeyMaterial::Private(p) => p.public().thumbprint() == thumbprint,
                KeyMaterial::Public(p) => p.thumbprint() == thumbprint,
                KeyMaterial::Secret(_) => false,
            });
        if same_key {
            return Err(self.err(
                "assertion.private_key",
                "is a token key: assertions need a key of their own",
            ));
        }
        if let Some(i) = routes.iter().position(|r| r.prefix == jwt.audience) {
            return Err(self.err(
                format!("routes[{i}].prefix"),
                format!(
                    "{:?} is also [jwt] audience: its assertions (aud = the route's prefix) would read as access tokens; give [jwt] audience another value",
                    jwt.audience
                ),
            ));
        }
        let ttl = self.bounded_duration("assertion.ttl", raw.ttl, "60s", (MAX_TTL, "60s"))?;
        Ok(Some(AssertionConfig {
            key: private,
            kid,
            ttl,
        }))
    }
}
