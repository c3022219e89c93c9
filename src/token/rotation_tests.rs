//! Asymmetric keys, `kid`, previous keys and the refused-token catalogue,
//! for each algorithm.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::*;
use crate::secret::Secret;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// One key of a test gateway, with what is needed to forge tokens with it.
#[derive(Clone)]
struct TestKey {
    alg: Algorithm,
    kid: Option<String>,
    private: Option<Arc<PrivateKey>>,
    secret: Option<&'static str>,
}

impl TestKey {
    fn hs256(secret: &'static str, kid: Option<&str>) -> Self {
        Self {
            alg: Algorithm::HS256,
            kid: kid.map(str::to_owned),
            private: None,
            secret: Some(secret),
        }
    }

    fn pair(alg: Algorithm, kid: &str) -> Self {
        Self {
            alg,
            kid: Some(kid.to_owned()),
            private: Some(Arc::new(PrivateKey::generate(alg).unwrap())),
            secret: None,
        }
    }

    /// The key as `[jwt]` (signing) or `[[jwt.previous_keys]]` holds it.
    fn config(&self, signing: bool) -> JwtKey {
        let material = match (&self.private, self.secret) {
            (Some(p), _) if signing => KeyMaterial::Private(Arc::clone(p)),
            (Some(p), _) => KeyMaterial::Public(p.public()),
            (None, Some(s)) => KeyMaterial::Secret(Secret::from(s)),
            (None, None) => unreachable!(),
        };
        JwtKey {
            algorithm: self.alg,
            kid: self.kid.clone(),
            source: "test".into(),
            material,
        }
    }

    /// A signature of `input` by this key, as its algorithm makes it.
    fn signature(&self, input: &str) -> Vec<u8> {
        match (&self.private, self.secret) {
            (Some(p), _) => p.sign(input.as_bytes()),
            (None, Some(s)) => hmac_sha256(s.as_bytes(), input.as_bytes()),
            (None, None) => unreachable!(),
        }
    }

    /// The header this key's tokens carry, changed by `edit`.
    fn header(&self) -> Value {
        let mut h = json!({"typ": "JWT", "alg": self.alg.name()});
        if let Some(kid) = &self.kid {
            h["kid"] = json!(kid);
        }
        h
    }

    fn public_pem(&self) -> String {
        self.private
            .as_ref()
            .map(|p| p.public().to_pem().unwrap())
            .unwrap_or_default()
    }
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(&serde_json::to_vec(header).unwrap()),
        b64(&serde_json::to_vec(claims).unwrap())
    )
}

/// `header.claims.signature` with `signature` made over the first two.
fn token(header: &Value, claims: &Value, signature: impl Fn(&str) -> Vec<u8>) -> String {
    let input = input(header, claims);
    let sig = signature(&input);
    format!("{input}.{}", b64(&sig))
}

fn good_claims() -> Value {
    let now = unix_now();
    json!({"sub": "o-rot", "iss": "wxgate", "aud": "test-app", "iat": now, "exp": now + 600, "jti": "j"})
}

fn keys_of(signing: &TestKey, previous: &[&TestKey]) -> TokenKeys {
    TokenKeys::new(&JwtConfig {
        key: signing.config(true),
        previous_keys: previous.iter().map(|k| k.config(false)).collect(),
        issuer: "wxgate".into(),
        audience: "test-app".into(),
        ttl: Duration::from_secs(600),
        leeway: Duration::from_secs(0),
        max_token_bytes: 4096,
    })
}

fn issue(keys: &TokenKeys) -> String {
    keys.issue(&NewToken {
        openid: "o-rot",
        ..Default::default()
    })
    .unwrap()
    .0
}

fn header_of(token: &str) -> Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
}

/// The three signing algorithms, each with a kid.
fn every_kind() -> Vec<TestKey> {
    vec![
        TestKey::hs256(SECRET, Some("hs-1")),
        TestKey::pair(Algorithm::EdDSA, "ed-1"),
        TestKey::pair(Algorithm::ES256, "ec-1"),
    ]
}

#[test]
fn each_algorithm_signs_with_its_kid_and_verifies_both_ways() {
    for key in every_kind() {
        let keys = keys_of(&key, &[]);
        let t = issue(&keys);
        let h = header_of(&t);
        assert_eq!(h["alg"], key.alg.name());
        assert_eq!(h["kid"], json!(key.kid));
        assert_eq!(keys.verify(&t).unwrap().openid, "o-rot", "{}", key.alg);
        // The fast path decided it, and the reference path agrees.
        assert!(keys.verify_fast(&t, unix_now()).unwrap().is_ok());
        assert!(keys.verify_reference(&t).is_ok());
        // A token made by hand like the gateway's is just as good.
        let by_hand = token(&key.header(), &good_claims(), |i| key.signature(i));
        assert!(keys.verify(&by_hand).is_ok(), "{}", key.alg);
    }
}

#[test]
fn a_rotation_keeps_old_tokens_until_their_key_is_removed() {
    let kinds = every_kind();
    for old in &kinds {
        for new in &kinds {
            if old.kid == new.kid {
                continue;
            }
            let before = issue(&keys_of(old, &[]));
            let during = keys_of(new, &[old]);
            let fresh = issue(&during);
            assert_eq!(header_of(&fresh)["kid"], json!(new.kid));
            assert!(during.verify(&before).is_ok(), "{} → {}", old.alg, new.alg);
            assert!(during.verify(&fresh).is_ok());
            let after = keys_of(new, &[]);
            assert_eq!(after.verify(&before), Err(TokenError::UnknownKey));
            assert!(after.verify(&fresh).is_ok());
            // A previous key never signs.
            assert_eq!(header_of(&issue(&during))["alg"], new.alg.name());
        }
    }
}

#[test]
fn tokens_without_a_kid_are_checked_only_with_an_hs256_signing_key() {
    let claims = good_claims();
    let kidless = token(&json!({"typ": "JWT", "alg": "HS256"}), &claims, |i| {
        hmac_sha256(SECRET.as_bytes(), i.as_bytes())
    });
    // Today's gateway: one secret, no kid.
    assert!(keys_of(&TestKey::hs256(SECRET, None), &[])
        .verify(&kidless)
        .is_ok());
    // The same secret given a kid: old tokens still pass.
    assert!(keys_of(&TestKey::hs256(SECRET, Some("hs-1")), &[])
        .verify(&kidless)
        .is_ok());
    // Once it is only a previous key, a token must name it.
    for signing in [
        TestKey::pair(Algorithm::EdDSA, "ed"),
        TestKey::hs256("another secret, also 32 bytes long", Some("hs-2")),
    ] {
        let keys = keys_of(&signing, &[&TestKey::hs256(SECRET, Some("hs-1"))]);
        let want = if signing.alg == Algorithm::HS256 {
            TokenError::Signature
        } else {
            TokenError::MissingKid
        };
        assert_eq!(keys.verify(&kidless), Err(want), "signing {}", signing.alg);
    }
    // An asymmetric token without kid is refused, not tried against keys.
    let ed = TestKey::pair(Algorithm::EdDSA, "ed");
    let keys = keys_of(&ed, &[]);
    let no_kid = token(&json!({"typ": "JWT", "alg": "EdDSA"}), &claims, |i| {
        ed.signature(i)
    });
    assert_eq!(keys.verify(&no_kid), Err(TokenError::MissingKid));
}

/// The refused-token catalogue, for a gateway signing with each algorithm
/// and holding a previous key of each other one.
#[test]
fn the_refused_token_catalogue_holds_for_each_algorithm() {
    let kinds = every_kind();
    for signing in &kinds {
        let others: Vec<&TestKey> = kinds.iter().filter(|k| k.kid != signing.kid).collect();
        let keys = keys_of(signing, &others);
        let claims = good_claims();
        let alg = signing.alg;
        let ours = |h: &Value| token(h, &claims, |i| signing.signature(i));
        let refused = |t: &str, want: TokenError, case: &str| {
            assert_eq!(keys.verify(t), Err(want.clone()), "{alg}: {case}");
            assert_eq!(
                keys.verify_reference(t),
                Err(want),
                "{alg}: {case} (reference)"
            );
        };

        // alg none, with and without a signature.
        let mut h = signing.header();
        h["alg"] = json!("none");
        refused(
            &format!("{}.", input(&h, &claims)),
            TokenError::Algorithm,
            "alg none",
        );
        refused(&ours(&h), TokenError::Algorithm, "alg none, signed");
        // Another algorithm under this key's kid, signed by its own rules.
        for other in [
            "HS256", "HS384", "HS512", "EdDSA", "ES256", "ES384", "RS256", "PS256",
        ] {
            if other == alg.name() {
                continue;
            }
            let mut h = signing.header();
            h["alg"] = json!(other);
            refused(
                &ours(&h),
                TokenError::Algorithm,
                &format!("alg {other} under kid of {alg}"),
            );
        }
        // Algorithm confusion: HS256 under an asymmetric key's kid, the MAC
        // keyed with its public key (PEM text, DER-ish raw bytes).
        for other in kinds.iter().filter(|k| k.private.is_some()) {
            let mut h = other.header();
            h["alg"] = json!("HS256");
            let pem = other.public_pem();
            for mac_key in [pem.as_bytes().to_vec(), pem.trim().as_bytes().to_vec()] {
                let t = token(&h, &claims, |i| hmac_sha256(&mac_key, i.as_bytes()));
                refused(&t, TokenError::Algorithm, "HS256 keyed with a public key");
            }
        }
        // Forbidden header parameters, on tokens this key really signed.
        for (name, value) in [
            ("crit", json!(["exp"])),
            ("jku", json!("https://evil.example/jwks.json")),
            ("x5u", json!("https://evil.example/cert.pem")),
            ("jwk", json!({"kty": "oct", "k": "AAAA"})),
            ("x5c", json!(["MIIB"])),
        ] {
            let mut h = signing.header();
            h[name] = value;
            let name: &'static str = match name {
                "crit" => "crit",
                "jku" => "jku",
                "x5u" => "x5u",
                "jwk" => "jwk",
                _ => "x5c",
            };
            refused(&ours(&h), TokenError::ForbiddenHeader(name), name);
        }
        // Unknown kids, path tricks included: looked up, never opened.
        for kid in [
            json!("nobody"),
            json!("../../../../dev/null"),
            json!("/etc/passwd"),
            json!("ed-1/../hs-1"),
            json!("hs-1\u{0}"),
            json!(""),
            json!(" hs-1"),
            json!("HS-1"),
        ] {
            let mut h = signing.header();
            h["kid"] = kid.clone();
            refused(&ours(&h), TokenError::UnknownKey, &format!("kid {kid}"));
        }
        // A kid that is not a string is not a header jsonwebtoken reads.
        let mut h = signing.header();
        h["kid"] = json!(1);
        refused(&ours(&h), TokenError::Algorithm, "numeric kid");
        // Signed by another key of the gateway, under this key's kid.
        for other in &others {
            if other.alg != alg {
                continue;
            }
            let t = token(&signing.header(), &claims, |i| other.signature(i));
            refused(&t, TokenError::Signature, "another key's signature");
        }
        // A flipped bit in the signature.
        let good = ours(&signing.header());
        let (head, sig) = good.rsplit_once('.').unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
        raw[3] ^= 0x40;
        refused(
            &format!("{head}.{}", b64(&raw)),
            TokenError::Signature,
            "flipped signature bit",
        );
        // A truncated signature.
        refused(
            &format!("{head}.{}", b64(&raw[..raw.len() - 1])),
            TokenError::Signature,
            "truncated signature",
        );
    }
}

#[test]
fn es256_signatures_must_be_raw_and_low_s() {
    let key = TestKey::pair(Algorithm::ES256, "ec-1");
    let keys = keys_of(&key, &[]);
    let claims = good_claims();
    let good = token(&key.header(), &claims, |i| key.signature(i));
    assert!(keys.verify(&good).is_ok());
    let (head, sig) = good.rsplit_once('.').unwrap();
    let parsed = p256::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(sig).unwrap()).unwrap();
    // The same signature in DER (as OpenSSL writes ECDSA signatures).
    let der = format!("{head}.{}", b64(parsed.to_der().as_bytes()));
    assert_eq!(keys.verify(&der), Err(TokenError::Signature));
    assert_eq!(keys.verify_reference(&der), Err(TokenError::Signature));
    // Its high-S twin: valid ECDSA, refused as malleable.
    let (r, s) = parsed.split_scalars();
    let twin = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
    let high = format!("{head}.{}", b64(&twin.to_bytes()));
    assert_eq!(keys.verify(&high), Err(TokenError::Signature));
    assert_eq!(keys.verify_reference(&high), Err(TokenError::Signature));
}

#[test]
fn eddsa_refuses_a_non_canonical_signature() {
    let key = TestKey::pair(Algorithm::EdDSA, "ed-1");
    let keys = keys_of(&key, &[]);
    let good = token(&key.header(), &good_claims(), |i| key.signature(i));
    let (head, sig) = good.rsplit_once('.').unwrap();
    let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
    // S + L (the group order) is the same S to a lax verifier.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for (b, l) in raw[32..].iter_mut().zip(L) {
        let sum = u16::from(*b) + u16::from(l) + carry;
        *b = sum as u8;
        carry = sum >> 8;
    }
    let t = format!("{head}.{}", b64(&raw));
    assert_eq!(keys.verify(&t), Err(TokenError::Signature));
}

#[test]
fn the_jwks_lists_public_keys_only() {
    let ed = TestKey::pair(Algorithm::EdDSA, "ed-1");
    let ec = TestKey::pair(Algorithm::ES256, "ec-1");
    let hs = TestKey::hs256(SECRET, Some("hs-1"));
    let keys = keys_of(&ed, &[&ec, &hs]);
    let v: Value = serde_json::from_slice(&keys.jwks()).unwrap();
    let listed = v["keys"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{v}");
    assert_eq!(listed[0]["kid"], "ed-1");
    assert_eq!(listed[0]["kty"], "OKP");
    assert_eq!(listed[0]["alg"], "EdDSA");
    assert_eq!(listed[1]["kid"], "ec-1");
    assert_eq!(listed[1]["kty"], "EC");
    let text = String::from_utf8(keys.jwks().to_vec()).unwrap();
    assert!(!text.contains("\"d\"") && !text.contains("\"k\""), "{text}");
    assert!(!text.contains(&b64(SECRET.as_bytes())));
    let hs_only = keys_of(&TestKey::hs256(SECRET, None), &[]);
    assert_eq!(&hs_only.jwks()[..], br#"{"keys":[]}"#);
}

#[test]
fn a_token_verified_with_a_public_key_is_kept_and_still_expires() {
    for key in every_kind() {
        let keys = keys_of(&key, &[]);
        let t = issue(&keys);
        let now = unix_now();
        let first = keys.verify_fast(&t, now).unwrap().unwrap();
        let kept = verified::len(keys.id);
        if key.alg == Algorithm::HS256 {
            assert_eq!(kept, 0, "HS256 tokens are not kept");
            continue;
        }
        assert_eq!(kept, 1);
        assert_eq!(keys.verify_fast(&t, now).unwrap().unwrap(), first);
        // Past exp (no leeway here), a kept token is expired like any other.
        assert_eq!(
            keys.verify_fast(&t, first.exp + 1),
            Some(Err(TokenError::Expired))
        );
        // One byte off is not the kept token: its signature is checked.
        let mut other = t.clone();
        let at = other.len() - 3;
        let c = if &other[at..at + 1] == "A" { "B" } else { "A" };
        other.replace_range(at..at + 1, c);
        assert!(keys.verify(&other).is_err());
        // A reload that keeps the kid but replaces the key does not see it:
        // the new key checks the signature, which fails.
        let kid = key.kid.as_deref().unwrap();
        let replaced = keys_of(&TestKey::pair(key.alg, kid), &[]);
        assert_eq!(replaced.verify(&t), Err(TokenError::Signature));
        assert_eq!(verified::len(replaced.id), 0);
        // A reload with the same key verifies it afresh and keeps it anew.
        let same = keys_of(&key, &[]);
        assert_eq!(same.verify_fast(&t, now).unwrap().unwrap(), first);
        assert_eq!(verified::len(same.id), 1);
    }
}
