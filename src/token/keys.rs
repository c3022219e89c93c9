//! Token keys: HS256 secrets, Ed25519 (`EdDSA`) and P-256 (`ES256`) key
//! pairs, parsed once when the config is loaded.
//!
//! Each key has one algorithm, pinned: a token is checked only with the key
//! its `kid` names, and only with that key's algorithm, so a public key is
//! never used as an HMAC secret (algorithm confusion) and no key is tried in
//! turn. Signatures are checked strictly: Ed25519 with `verify_strict`
//! (canonical `S`, no small-order points), ES256 only as the 64-byte `r||s`
//! of RFC 7518 with a low `S` (a DER signature, or the high-`S` twin of a
//! valid one, is refused). ES256 signatures made here are low-`S`.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Signer as _;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// A token signing algorithm wxgate supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum Algorithm {
    HS256,
    EdDSA,
    ES256,
}

impl Algorithm {
    /// The `alg` header value.
    pub fn name(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
        }
    }

    /// `HS256`, `EdDSA` or `ES256` (exactly, as in a JWT header).
    pub fn parse(text: &str) -> Option<Self> {
        [Self::HS256, Self::EdDSA, Self::ES256]
            .into_iter()
            .find(|a| a.name() == text)
    }

    /// Whether keys of this algorithm are public/private pairs.
    pub fn is_asymmetric(self) -> bool {
        self != Self::HS256
    }

    pub(super) fn jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::HS256 => jsonwebtoken::Algorithm::HS256,
            Self::EdDSA => jsonwebtoken::Algorithm::EdDSA,
            Self::ES256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why key material was refused (it never quotes the key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// A private key of an asymmetric algorithm.
#[derive(Clone)]
pub enum PrivateKey {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

/// Never the key itself.
impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({})", self.algorithm())
    }
}

/// A public key of an asymmetric algorithm.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}, {})", self.algorithm(), self.thumbprint())
    }
}

impl PrivateKey {
    /// A new random key.
    pub fn generate(alg: Algorithm) -> Result<Self, KeyError> {
        match alg {
            Algorithm::HS256 => Err(KeyError("HS256 keys are secrets, not key pairs".into())),
            Algorithm::EdDSA => Ok(Self::Ed25519(ed25519_dalek::SigningKey::from_bytes(
                &rand::random(),
            ))),
            Algorithm::ES256 => {
                // A random 32-byte string is a valid scalar but for a
                // vanishing few (zero, or not below the group order).
                for _ in 0..16 {
                    let bytes: [u8; 32] = rand::random();
                    if let Ok(k) = p256::ecdsa::SigningKey::from_bytes(&bytes.into()) {
                        return Ok(Self::P256(k));
                    }
                }
                Err(KeyError("could not draw a P-256 key".into()))
            }
        }
    }

    /// A PEM private key (PKCS#8 `PRIVATE KEY`; for ES256 also SEC1 `EC
    /// PRIVATE KEY`, as `openssl ecparam -genkey` writes) for `alg`.
    pub fn from_pem(alg: Algorithm, pem: &str) -> Result<Self, KeyError> {
        let pem = pem.trim();
        match alg {
            Algorithm::HS256 => Err(KeyError("HS256 takes a secret, not a PEM key".into())),
            Algorithm::EdDSA => ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
                .map(Self::Ed25519)
                .map_err(|_| KeyError("not a PEM Ed25519 private key (PKCS#8 \"PRIVATE KEY\", as `wxgate keygen --alg EdDSA` or `openssl genpkey -algorithm ed25519` writes)".into())),
            Algorithm::ES256 => p256::ecdsa::SigningKey::from_pkcs8_pem(pem)
                .or_else(|_| {
                    p256::SecretKey::from_sec1_pem(pem).map(p256::ecdsa::SigningKey::from)
                })
                .map(Self::P256)
                .map_err(|_| KeyError("not a PEM P-256 private key (PKCS#8 \"PRIVATE KEY\" or SEC1 \"EC PRIVATE KEY\", as `wxgate keygen --alg ES256` writes)".into())),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Ed25519(_) => Algorithm::EdDSA,
            Self::P256(_) => Algorithm::ES256,
        }
    }

    pub fn public(&self) -> PublicKey {
        match self {
            Self::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
            Self::P256(k) => PublicKey::P256(*k.verifying_key()),
        }
    }

    /// The JWS signature of `message`: 64 bytes (Ed25519, or ES256's low-S `r||s`).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::Ed25519(k) => {
                let sig: ed25519_dalek::Signature = k.sign(message);
                sig.to_bytes().to_vec()
            }
            Self::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(message);
                sig.normalize_s().unwrap_or(sig).to_bytes().to_vec()
            }
        }
    }

    /// 32 bytes derived from the private key (never the key itself), for
    /// keyed hashes that need a gateway secret.
    pub fn derived_secret(&self, purpose: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"wxgate derived secret\0");
        h.update(purpose.as_bytes());
        h.update([0]);
        match self {
            Self::Ed25519(k) => h.update(k.to_bytes()),
            Self::P256(k) => h.update(k.to_bytes()),
        }
        h.finalize().into()
    }

    /// PKCS#8 PEM.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        let pem = match self {
            Self::Ed25519(k) => k.to_pkcs8_pem(LineEnding::LF),
            Self::P256(k) => k.to_pkcs8_pem(LineEnding::LF),
        };
        pem.map(|p| p.to_string())
            .map_err(|_| KeyError("cannot encode the private key".into()))
    }
}

impl PublicKey {
    /// A PEM public key (SPKI `PUBLIC KEY`) for `alg`; a private key's PEM
    /// is taken too (its public half is used).
    pub fn from_pem(alg: Algorithm, pem: &str) -> Result<Self, KeyError> {
        let trimmed = pem.trim();
        let public = match alg {
            Algorithm::HS256 => {
                return Err(KeyError("HS256 takes a secret, not a PEM key".into()));
            }
            Algorithm::EdDSA => ed25519_dalek::VerifyingKey::from_public_key_pem(trimmed)
                .map(Self::Ed25519)
                .ok(),
            Algorithm::ES256 => p256::ecdsa::VerifyingKey::from_public_key_pem(trimmed)
                .map(Self::P256)
                .ok(),
        };
        match public {
            Some(k) => Ok(k),
            None => PrivateKey::from_pem(alg, pem)
                .map(|k| k.public())
                .map_err(|_| {
                    KeyError(format!(
                        "not a PEM {alg} public key (\"PUBLIC KEY\") nor private key"
                    ))
                }),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Ed25519(_) => Algorithm::EdDSA,
            Self::P256(_) => Algorithm::ES256,
        }
    }

    /// Whether `signature` is this key's strict signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Self::Ed25519(k) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|sig| k.verify_strict(message, &sig).is_ok()),
            Self::P256(k) => {
                // Exactly r||s (a DER signature is longer), with a low S: a
                // signature and its high-S twin must not both pass.
                let low_s = signature.len() == 64
                    && p256::ecdsa::Signature::from_slice(signature)
                        .is_ok_and(|sig| sig.normalize_s().is_none());
                // The check itself by ring (the same math, in assembly).
                let point = k.to_encoded_point(false);
                low_s
                    && ring::signature::UnparsedPublicKey::new(
                        &ring::signature::ECDSA_P256_SHA256_FIXED,
                        point.as_bytes(),
                    )
                    .verify(message, signature)
                    .is_ok()
            }
        }
    }

    /// SPKI PEM.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        match self {
            Self::Ed25519(k) => k.to_public_key_pem(LineEnding::LF),
            Self::P256(k) => k.to_public_key_pem(LineEnding::LF),
        }
        .map_err(|_| KeyError("cannot encode the public key".into()))
    }

    /// The RFC 7638 members of the JWK, in their canonical order.
    fn jwk_members(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Ed25519(k) => vec![
                ("crv", "Ed25519".into()),
                ("kty", "OKP".into()),
                ("x", URL_SAFE_NO_PAD.encode(k.as_bytes())),
            ],
            Self::P256(k) => {
                let point = k.to_encoded_point(false);
                let coord = |c: Option<&p256::FieldBytes>| {
                    URL_SAFE_NO_PAD.encode(c.map(|c| &c[..]).unwrap_or_default())
                };
                vec![
                    ("crv", "P-256".into()),
                    ("kty", "EC".into()),
                    ("x", coord(point.x())),
                    ("y", coord(point.y())),
                ]
            }
        }
    }

    /// The key's RFC 7638 JWK thumbprint (SHA-256, base64url): its default `kid`.
    pub fn thumbprint(&self) -> String {
        let members: Vec<String> = self
            .jwk_members()
            .into_iter()
            .map(|(k, v)| format!("\"{k}\":\"{v}\""))
            .collect();
        let canonical = format!("{{{}}}", members.join(","));
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// The public JWK, as `/.well-known/jwks.json` lists it.
    pub fn jwk(&self, kid: &str) -> serde_json::Value {
        let mut jwk = serde_json::Map::new();
        for (k, v) in self.jwk_members() {
            jwk.insert(k.into(), v.into());
        }
        jwk.insert("kid".into(), kid.into());
        jwk.insert("alg".into(), self.algorithm().name().into());
        jwk.insert("use".into(), "sig".into());
        serde_json::Value::Object(jwk)
    }

    /// The key as jsonwebtoken takes it (the reference verification path):
    /// the raw Ed25519 key, or the uncompressed SEC1 point.
    pub(super) fn decoding_key(&self) -> jsonwebtoken::DecodingKey {
        match self {
            Self::Ed25519(k) => jsonwebtoken::DecodingKey::from_ed_der(k.as_bytes()),
            Self::P256(k) => {
                jsonwebtoken::DecodingKey::from_ec_der(k.to_encoded_point(false).as_bytes())
            }
        }
    }
}

/// What checks a signature: a keyed HMAC or a public key.
#[derive(Clone)]
pub(super) enum SignatureCheck {
    /// HMAC-SHA256 with the key already absorbed: cloned per token.
    Hmac(Hmac<Sha256>),
    Public(PublicKey),
}

impl SignatureCheck {
    /// Whether `signature` signs `message`.
    pub(super) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Self::Hmac(mac) => mac
                .clone()
                .chain_update(message)
                .verify_slice(signature)
                .is_ok(),
            Self::Public(k) => k.verify(message, signature),
        }
    }
}

/// What signs new tokens.
#[derive(Clone)]
pub(super) enum Signer {
    Hmac(Hmac<Sha256>),
    Private(Arc<PrivateKey>),
}

impl Signer {
    pub(super) fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::Hmac(mac) => mac
                .clone()
                .chain_update(message)
                .finalize()
                .into_bytes()
                .to_vec(),
            Self::Private(k) => k.sign(message),
        }
    }
}

/// An HMAC-SHA256 keyed with `secret`. HMAC takes keys of any length (a
/// long one is hashed first), so the fallback is never reached.
pub(super) fn hmac(secret: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&rand::random::<[u8; 64]>().into()))
}

/// Whether `kid` is a key id wxgate accepts in its config: 1–64 characters
/// of `A-Z a-z 0-9 - _ .` (a thumbprint is 43 of them).
pub fn is_valid_kid(kid: &str) -> bool {
    (1..=64).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier as _;

    #[test]
    fn generated_keys_round_trip_through_pem_and_sign_strictly() {
        for alg in [Algorithm::EdDSA, Algorithm::ES256] {
            let key = PrivateKey::generate(alg).unwrap();
            let pem = key.to_pem().unwrap();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
            let again = PrivateKey::from_pem(alg, &pem).unwrap();
            assert_eq!(again.public(), key.public());
            let public_pem = key.public().to_pem().unwrap();
            assert_eq!(PublicKey::from_pem(alg, &public_pem).unwrap(), key.public());
            // A private key PEM stands for its public half.
            assert_eq!(PublicKey::from_pem(alg, &pem).unwrap(), key.public());

            let sig = key.sign(b"message");
            assert_eq!(sig.len(), 64);
            assert!(key.public().verify(b"message", &sig));
            assert!(!key.public().verify(b"other", &sig));
            let mut bad = sig.clone();
            bad[10] ^= 1;
            assert!(!key.public().verify(b"message", &bad));
            // Another algorithm's parser refuses the key.
            let other = if alg == Algorithm::EdDSA {
                Algorithm::ES256
            } else {
                Algorithm::EdDSA
            };
            assert!(PrivateKey::from_pem(other, &pem).is_err());
            assert!(PublicKey::from_pem(other, &public_pem).is_err());
        }
    }

    #[test]
    fn es256_refuses_der_and_high_s_signatures() {
        let key = PrivateKey::generate(Algorithm::ES256).unwrap();
        let PublicKey::P256(vk) = key.public() else {
            unreachable!()
        };
        for i in 0..20u8 {
            let msg = [i; 7];
            let sig = key.sign(&msg);
            let parsed = p256::ecdsa::Signature::from_slice(&sig).unwrap();
            assert!(
                parsed.normalize_s().is_none(),
                "signatures made here are low-S"
            );
            // The high-S twin verifies mathematically, but is refused.
            let (r, s) = parsed.split_scalars();
            let twin = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
            assert!(
                vk.verify(&msg, &twin).is_ok(),
                "the twin is a valid ECDSA signature"
            );
            assert!(!key.public().verify(&msg, &twin.to_bytes()));
            // The same signature in DER.
            let der = parsed.to_der();
            assert!(vk.verify(&msg, &parsed).is_ok());
            assert!(!key.public().verify(&msg, der.as_bytes()));
        }
    }

    #[test]
    fn thumbprints_follow_rfc_7638() {
        // RFC 8037 appendix A.3: the thumbprint of its Ed25519 example key.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
        assert_eq!(
            PublicKey::Ed25519(vk).thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
        let key = PrivateKey::generate(Algorithm::ES256).unwrap();
        let jwk = key.public().jwk("k1");
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["alg"], "ES256");
        assert_eq!(jwk["kid"], "k1");
        assert_eq!(jwk["x"].as_str().unwrap().len(), 43);
        assert!(jwk.get("d").is_none(), "never the private part");
    }

    #[test]
    fn key_ids_are_plain() {
        assert!(is_valid_kid("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"));
        assert!(is_valid_kid("2026-11.a"));
        for bad in [
            "",
            "../../etc/passwd",
            "a/b",
            "k id",
            "ключ",
            &"k".repeat(65),
        ] {
            assert!(!is_valid_kid(bad), "{bad:?}");
        }
    }

    #[test]
    fn hs256_is_not_a_key_pair() {
        assert!(PrivateKey::generate(Algorithm::HS256).is_err());
        assert!(PrivateKey::from_pem(Algorithm::HS256, "x").is_err());
        assert_eq!(Algorithm::parse("EdDSA"), Some(Algorithm::EdDSA));
        assert_eq!(Algorithm::parse("eddsa"), None);
        assert_eq!(Algorithm::parse("none"), None);
    }
}
