//! `[jwt]`, validated: the key tokens are signed with, the keys they are
//! still checked with, and the limits of their claims.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::keys::{Algorithm, PrivateKey, PublicKey};
use crate::secret::Secret;
use crate::ser::ser_duration;

/// The longest lifetime of an access token: `[jwt] ttl` and
/// `wxgate token issue --ttl` may not exceed it, and a token whose `exp` lies
/// further ahead (plus the leeway) is refused. Revocations are kept at least
/// this long, so no token outlives its revocation.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// `[jwt]`
#[derive(Debug, Clone, Serialize)]
pub struct JwtConfig {
    /// The key new tokens are signed with (shown in `[jwt]` itself).
    #[serde(flatten)]
    pub key: JwtKey,
    /// Keys tokens are still checked with, never signed with (rotation).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub previous_keys: Vec<JwtKey>,
    pub issuer: String,
    pub audience: String,
    #[serde(serialize_with = "ser_duration")]
    pub ttl: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub leeway: Duration,
    pub max_token_bytes: usize,
}

/// A token key: `[jwt]`'s own or a `[[jwt.previous_keys]]` entry.
#[derive(Debug, Clone)]
pub struct JwtKey {
    pub algorithm: Algorithm,
    /// The `kid` of its tokens; `None` only for an HS256 signing key
    /// without one (its tokens carry no `kid`).
    pub kid: Option<String>,
    /// Where the key came from, for `wxgate check`.
    pub source: String,
    pub material: KeyMaterial,
}

/// As `wxgate check` shows it: secrets and private keys as `***`, a
/// public key by its thumbprint.
impl Serialize for JwtKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("algorithm", self.algorithm.name())?;
        if let Some(kid) = &self.kid {
            m.serialize_entry("kid", kid)?;
        }
        match &self.material {
            KeyMaterial::Secret(_) => m.serialize_entry("secret", "***")?,
            KeyMaterial::Private(_) => m.serialize_entry("private_key", "***")?,
            KeyMaterial::Public(k) => m.serialize_entry("public_key", &k.thumbprint())?,
        }
        m.serialize_entry("key_source", &self.source)?;
        m.end()
    }
}

impl JwtKey {
    /// An HS256 key without `kid` (a gateway with one secret).
    pub fn hs256(secret: Secret, source: &str) -> Self {
        Self {
            algorithm: Algorithm::HS256,
            kid: None,
            source: source.to_string(),
            material: KeyMaterial::Secret(secret),
        }
    }

    /// A secret for keyed hashes (`purpose` separates uses): the HS256
    /// secret itself, or bytes derived from the private key.
    pub fn hash_secret(&self, purpose: &str) -> Vec<u8> {
        match &self.material {
            KeyMaterial::Secret(s) => s.expose().to_vec(),
            KeyMaterial::Private(k) => k.derived_secret(purpose).to_vec(),
            KeyMaterial::Public(k) => k.thumbprint().into_bytes(),
        }
    }

    /// The HS256 secret, if that is what the key is.
    pub fn secret(&self) -> Option<&Secret> {
        match &self.material {
            KeyMaterial::Secret(s) => Some(s),
            _ => None,
        }
    }
}

/// What a token key is made of.
#[derive(Debug, Clone)]
pub enum KeyMaterial {
    /// An HS256 secret (at least 32 bytes).
    Secret(Secret),
    /// An EdDSA or ES256 private key: the signing key.
    Private(Arc<PrivateKey>),
    /// An EdDSA or ES256 public key: a previous key.
    Public(PublicKey),
}
