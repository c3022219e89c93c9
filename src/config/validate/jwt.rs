//! `[jwt]`: the signing key, the previous keys, and the token rules.

use std::sync::Arc;
use std::time::Duration;

use super::super::error::ConfigError;
use super::super::model::{JwtConfig, JwtKey, KeyMaterial, MAX_TOKEN_TTL};
use super::super::resolve::KeyText;
use super::super::schema::RawJwt;
use super::{Validator, MIN_JWT_SECRET_BYTES};
use crate::token::keys::is_valid_kid;
use crate::token::{Algorithm, PrivateKey, PublicKey};

/// Most previous keys: a rotation needs one or two.
const MAX_PREVIOUS_KEYS: usize = 16;

impl Validator<'_> {
    pub(super) fn jwt(
        &self,
        raw: Option<RawJwt>,
        key: Option<KeyText>,
        previous: Vec<KeyText>,
    ) -> Result<JwtConfig, ConfigError> {
        let (Some(raw), Some(key)) = (raw, key) else {
            return Err(self.err("jwt", "the [jwt] section is required"));
        };
        let algorithm = self.algorithm("jwt.algorithm", raw.algorithm.as_deref(), true)?;
        let key = self.jwt_key("jwt", algorithm, raw.kid, key, true)?;
        let raws = raw.previous_keys.unwrap_or_default();
        if raws.len() > MAX_PREVIOUS_KEYS {
            return Err(self.err(
                "jwt.previous_keys",
                format!("at most {MAX_PREVIOUS_KEYS} keys; remove those whose tokens have expired"),
            ));
        }
        let mut previous_keys: Vec<JwtKey> = Vec::with_capacity(raws.len());
        for (i, (r, text)) in raws.into_iter().zip(previous).enumerate() {
            let base = format!("jwt.previous_keys[{i}]");
            let alg =
                self.algorithm(&format!("{base}.algorithm"), r.algorithm.as_deref(), false)?;
            let k = self.jwt_key(&base, alg, r.kid, text, false)?;
            let taken = std::iter::once(&key)
                .chain(&previous_keys)
                .any(|other| other.kid.is_some() && other.kid == k.kid);
            if taken {
                return Err(self.err(
                    format!("{base}.kid"),
                    format!(
                        "{:?} is the kid of another key: each key needs its own",
                        k.kid.as_deref().unwrap_or_default()
                    ),
                ));
            }
            previous_keys.push(k);
        }
        let issuer = raw.issuer.unwrap_or_else(|| "wxgate".into());
        if issuer.is_empty() {
            return Err(self.err("jwt.issuer", "must not be empty"));
        }
        let Some(audience) = raw.audience.filter(|a| !a.is_empty()) else {
            return Err(self.err(
                "jwt.audience",
                "required: name the mini program the tokens are for, like \"my-miniprogram\"",
            ));
        };
        let ttl = self.bounded_duration("jwt.ttl", raw.ttl, "2h", (MAX_TOKEN_TTL, "30d"))?;
        let leeway = self.duration("jwt.leeway", raw.leeway, "30s")?;
        if leeway > Duration::from_secs(300) {
            return Err(self.err("jwt.leeway", "must be at most 5m"));
        }
        let max_token_bytes = raw.max_token_bytes.unwrap_or(4096);
        if !(256..=65536).contains(&max_token_bytes) {
            return Err(self.err("jwt.max_token_bytes", "must be between 256 and 65536"));
        }
        Ok(JwtConfig {
            key,
            previous_keys,
            issuer,
            audience,
            ttl,
            leeway,
            max_token_bytes: max_token_bytes as usize,
        })
    }

    /// `HS256`, `EdDSA` or `ES256`; HS256 when absent and `default_hs256`
    /// (the signing key), required otherwise (a previous key's algorithm is
    /// pinned by name).
    fn algorithm(
        &self,
        key: &str,
        value: Option<&str>,
        default_hs256: bool,
    ) -> Result<Algorithm, ConfigError> {
        match value {
            None if default_hs256 => Ok(Algorithm::HS256),
            None => Err(self.err(
                key,
                "required: the algorithm of this key's tokens, \"HS256\", \"EdDSA\" or \"ES256\"",
            )),
            Some(v) => Algorithm::parse(v).ok_or_else(|| {
                self.err(
                    key,
                    format!("{v:?} is not supported: use \"HS256\", \"EdDSA\" or \"ES256\""),
                )
            }),
        }
    }

    /// A key of `alg` from what was read for it; `signing`: `[jwt]`'s own
    /// (a secret or a private key), otherwise a previous key (a secret or a
    /// public key, or a private key of which only the public half is kept).
    fn jwt_key(
        &self,
        base: &str,
        alg: Algorithm,
        kid: Option<String>,
        text: KeyText,
        signing: bool,
    ) -> Result<JwtKey, ConfigError> {
        let source = text.sourced().source.clone();
        let material = match (alg, text) {
            (Algorithm::HS256, KeyText::Secret(s)) => {
                if s.value.len() < MIN_JWT_SECRET_BYTES {
                    return Err(self.err(
                        format!("{base}.secret"),
                        format!(
                            "the key ({source}) is {} bytes; HS256 needs at least {MIN_JWT_SECRET_BYTES} (generate one with `wxgate keygen`)",
                            s.value.len()
                        ),
                    ));
                }
                KeyMaterial::Secret(s.value)
            }
            (Algorithm::HS256, _) => {
                return Err(self.err(
                    format!("{base}.algorithm"),
                    "an HS256 key is a secret (secret_env or secret_file); a PEM key needs algorithm = \"EdDSA\" or \"ES256\"",
                ));
            }
            (_, KeyText::Secret(_)) => {
                return Err(self.err(
                    format!("{base}.algorithm"),
                    format!(
                        "an {alg} key is a PEM file: set {} (a secret is for HS256)",
                        if signing {
                            "private_key_file or private_key_env"
                        } else {
                            "public_key_file or public_key_env"
                        }
                    ),
                ));
            }
            (_, KeyText::Private(s)) => {
                let pem = s.value.expose_str().unwrap_or_default();
                let private = PrivateKey::from_pem(alg, pem).map_err(|e| {
                    self.err(format!("{base}.private_key"), format!("{source}: {e}"))
                })?;
                if signing {
                    KeyMaterial::Private(Arc::new(private))
                } else {
                    KeyMaterial::Public(private.public())
                }
            }
            (_, KeyText::Public(s)) => {
                let pem = s.value.expose_str().unwrap_or_default();
                let public = PublicKey::from_pem(alg, pem).map_err(|e| {
                    self.err(format!("{base}.public_key"), format!("{source}: {e}"))
                })?;
                KeyMaterial::Public(public)
            }
        };
        let kid = match kid {
            Some(k) if !is_valid_kid(&k) => {
                return Err(self.err(
                    format!("{base}.kid"),
                    "1 to 64 characters of A-Z a-z 0-9 - _ .",
                ));
            }
            Some(k) => Some(k),
            None => match &material {
                // By default, the key's RFC 7638 thumbprint (what `wxgate keygen` prints).
                KeyMaterial::Private(p) => Some(p.public().thumbprint()),
                KeyMaterial::Public(p) => Some(p.thumbprint()),
                KeyMaterial::Secret(_) if signing => None,
                KeyMaterial::Secret(_) => {
                    return Err(self.err(
                        format!("{base}.kid"),
                        "required for an HS256 previous key: the kid its tokens carry (only an HS256 signing key checks tokens without one)",
                    ));
                }
            },
        };
        Ok(JwtKey {
            algorithm: alg,
            kid,
            source,
            material,
        })
    }
}
