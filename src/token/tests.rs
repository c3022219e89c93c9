use super::*;

use std::collections::BTreeSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Sha256, Sha384, Sha512};

use crate::error::ApiError;
use crate::secret::Secret;

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const OTHER_SECRET: &str = "fedcba9876543210fedcba9876543210";

fn config() -> JwtConfig {
    JwtConfig {
        key: JwtKey::hs256(Secret::from(SECRET), "test"),
        previous_keys: Vec::new(),
        issuer: "wxgate".into(),
        audience: "test-app".into(),
        ttl: Duration::from_secs(2 * 3600),
        leeway: Duration::from_secs(30),
        max_token_bytes: 4096,
    }
}

fn keys() -> TokenKeys {
    TokenKeys::new(&config())
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64_json(v: &Value) -> String {
    b64(&serde_json::to_vec(v).unwrap())
}

/// `header.claims` without a signature.
fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", b64_json(header), b64_json(claims))
}

fn hs256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

fn hs384(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha384>::new_from_slice(key).unwrap();
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

fn hs512(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha512>::new_from_slice(key).unwrap();
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// A token with the given header and claims, HS256-signed with `key`.
fn sign_with(key: &str, header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let sig = hs256(key.as_bytes(), input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

/// A token HS256-signed with the gateway's own key.
fn sign(header: &Value, claims: &Value) -> String {
    sign_with(SECRET, header, claims)
}

fn hs256_header() -> Value {
    json!({"alg": "HS256", "typ": "JWT"})
}

/// Claims that pass every check.
fn good_claims() -> Value {
    let now = unix_now();
    json!({
        "sub": "o-openid-1",
        "iss": "wxgate",
        "aud": "test-app",
        "iat": now,
        "exp": now + 3600,
        "jti": "jti-1",
    })
}

fn claims_with(key: &str, value: Value) -> Value {
    let mut c = good_claims();
    c[key] = value;
    c
}

fn claims_without(key: &str) -> Value {
    let mut c = good_claims();
    c.as_object_mut().unwrap().remove(key);
    c
}

fn header_with(key: &str, value: Value) -> Value {
    let mut h = hs256_header();
    h[key] = value;
    h
}

/// Verify and expect a refusal with exactly `want`, mapped to `api`.
fn assert_refused(token: &str, want: TokenError, api: ApiError) {
    let err = keys().verify(token).unwrap_err();
    assert_eq!(err, want);
    assert_eq!(ApiError::from(&err), api);
}

fn verify_values(values: &[&[u8]]) -> Result<Identity, TokenError> {
    keys().verify_authorization(values.iter().copied())
}

/// The message jsonwebtoken's JSON errors are reported under.
fn json_claim_error() -> TokenError {
    TokenError::Claim("claims are not the expected JSON".into())
}

// ---------------------------------------------------------------------------
// The hand-made tokens are right: a good one passes
// ---------------------------------------------------------------------------

#[test]
fn hand_signed_good_token_is_accepted() {
    let id = keys()
        .verify(&sign(&hs256_header(), &good_claims()))
        .unwrap();
    assert_eq!(id.openid, "o-openid-1");
    assert_eq!(id.jti.as_deref(), Some("jti-1"));
    assert_eq!(id.unionid, None);
    assert_eq!(id.appid, None);
}

#[test]
fn header_without_typ_is_accepted() {
    let token = sign(&json!({"alg": "HS256"}), &good_claims());
    assert_eq!(keys().verify(&token).unwrap().openid, "o-openid-1");
}

// ---------------------------------------------------------------------------
// Algorithm pinning
// ---------------------------------------------------------------------------

#[test]
fn alg_none_with_empty_signature_is_refused() {
    let token = format!(
        "{}.",
        signing_input(&json!({"alg": "none", "typ": "JWT"}), &good_claims())
    );
    let err = keys().verify(&token).unwrap_err();
    assert_eq!(ApiError::from(&err), ApiError::TokenInvalid);
    // Not `Missing`/`Expired`: the refusal is an invalid-token one.
    assert!(
        matches!(err, TokenError::Algorithm | TokenError::Claim(_)),
        "{err:?}"
    );
}

#[test]
fn alg_none_with_a_signature_is_refused() {
    let input = signing_input(&json!({"alg": "none", "typ": "JWT"}), &good_claims());
    let sig = hs256(SECRET.as_bytes(), input.as_bytes());
    let token = format!("{input}.{}", b64(&sig));
    let err = keys().verify(&token).unwrap_err();
    assert_eq!(ApiError::from(&err), ApiError::TokenInvalid);
    assert!(
        matches!(err, TokenError::Algorithm | TokenError::Claim(_)),
        "{err:?}"
    );
}

#[test]
fn alg_none_is_reported_as_an_algorithm_error() {
    let token = format!(
        "{}.",
        signing_input(&json!({"alg": "none", "typ": "JWT"}), &good_claims())
    );
    assert_refused(&token, TokenError::Algorithm, ApiError::TokenInvalid);
}

#[test]
fn alg_none_variants_are_refused() {
    for alg in ["None", "NONE", "nOnE", ""] {
        let token = format!(
            "{}.",
            signing_input(&json!({"alg": alg, "typ": "JWT"}), &good_claims())
        );
        let err = keys().verify(&token).unwrap_err();
        assert_eq!(ApiError::from(&err), ApiError::TokenInvalid, "alg {alg:?}");
    }
}

#[test]
fn missing_alg_is_refused() {
    let token = sign(&json!({"typ": "JWT"}), &good_claims());
    let err = keys().verify(&token).unwrap_err();
    assert_eq!(ApiError::from(&err), ApiError::TokenInvalid);
}

#[test]
fn hs384_with_the_right_key_is_refused() {
    let input = signing_input(&json!({"alg": "HS384", "typ": "JWT"}), &good_claims());
    let sig = hs384(SECRET.as_bytes(), input.as_bytes());
    let token = format!("{input}.{}", b64(&sig));
    assert_refused(&token, TokenError::Algorithm, ApiError::TokenInvalid);
}

#[test]
fn hs512_with_the_right_key_is_refused() {
    let input = signing_input(&json!({"alg": "HS512", "typ": "JWT"}), &good_claims());
    let sig = hs512(SECRET.as_bytes(), input.as_bytes());
    let token = format!("{input}.{}", b64(&sig));
    assert_refused(&token, TokenError::Algorithm, ApiError::TokenInvalid);
}

#[test]
fn rs256_header_is_refused() {
    // Key confusion: an RS256 header over an HMAC signature with the shared key.
    let token = sign(&json!({"alg": "RS256", "typ": "JWT"}), &good_claims());
    assert_refused(&token, TokenError::Algorithm, ApiError::TokenInvalid);
}

#[test]
fn es256_header_is_refused() {
    let token = sign(&json!({"alg": "ES256", "typ": "JWT"}), &good_claims());
    assert_refused(&token, TokenError::Algorithm, ApiError::TokenInvalid);
}

// ---------------------------------------------------------------------------
// Signature
// ---------------------------------------------------------------------------

#[test]
fn flipped_signature_byte_is_refused() {
    let input = signing_input(&hs256_header(), &good_claims());
    let mut sig = hs256(SECRET.as_bytes(), input.as_bytes());
    sig[0] ^= 0x01;
    let token = format!("{input}.{}", b64(&sig));
    assert_refused(&token, TokenError::Signature, ApiError::TokenInvalid);
}

#[test]
fn flipped_last_signature_byte_is_refused() {
    let input = signing_input(&hs256_header(), &good_claims());
    let mut sig = hs256(SECRET.as_bytes(), input.as_bytes());
    let last = sig.len() - 1;
    sig[last] ^= 0x80;
    let token = format!("{input}.{}", b64(&sig));
    assert_refused(&token, TokenError::Signature, ApiError::TokenInvalid);
}

#[test]
fn truncated_signature_is_refused() {
    let input = signing_input(&hs256_header(), &good_claims());
    let sig = hs256(SECRET.as_bytes(), input.as_bytes());
    let token = format!("{input}.{}", b64(&sig[..31]));
    assert_refused(&token, TokenError::Signature, ApiError::TokenInvalid);
}

#[test]
fn empty_signature_is_refused() {
    let token = format!("{}.", signing_input(&hs256_header(), &good_claims()));
    assert_refused(&token, TokenError::Signature, ApiError::TokenInvalid);
}

#[test]
fn token_signed_with_another_key_is_refused() {
    let token = sign_with(OTHER_SECRET, &hs256_header(), &good_claims());
    assert_refused(&token, TokenError::Signature, ApiError::TokenInvalid);
}

#[test]
fn token_issued_by_other_keys_is_refused() {
    let mut other = config();
    other.key = JwtKey::hs256(Secret::from(OTHER_SECRET), "test");
    let (token, _) = TokenKeys::new(&other)
        .issue(&NewToken {
            family: None,
            openid: "o1",
            ..Default::default()
        })
        .unwrap();
    assert_refused(&token, TokenError::Signature, ApiError::TokenInvalid);
}

#[test]
fn tampered_claims_are_refused() {
    let token = sign(&hs256_header(), &good_claims());
    let sig = token.rsplit('.').next().unwrap();
    let forged = format!(
        "{}.{sig}",
        signing_input(&hs256_header(), &claims_with("sub", json!("o-victim")))
    );
    assert_refused(&forged, TokenError::Signature, ApiError::TokenInvalid);
}

// ---------------------------------------------------------------------------
// exp / nbf
// ---------------------------------------------------------------------------

#[test]
fn missing_exp_is_refused() {
    let token = sign(&hs256_header(), &claims_without("exp"));
    let err = keys().verify(&token).unwrap_err();
    assert!(matches!(err, TokenError::Claim(_)), "{err:?}");
    assert_eq!(ApiError::from(&err), ApiError::TokenInvalid);
}

#[test]
fn missing_exp_reason_names_the_claim() {
    let token = sign(&hs256_header(), &claims_without("exp"));
    assert_refused(
        &token,
        TokenError::Claim("exp".into()),
        ApiError::TokenInvalid,
    );
}

#[test]
fn expired_beyond_leeway_is_refused_as_expired() {
    let token = sign(
        &hs256_header(),
        &claims_with("exp", json!(unix_now() - 120)),
    );
    assert_refused(&token, TokenError::Expired, ApiError::TokenExpired);
}

#[test]
fn expired_long_ago_is_refused_as_expired() {
    let token = sign(&hs256_header(), &claims_with("exp", json!(1_000_000_000)));
    assert_refused(&token, TokenError::Expired, ApiError::TokenExpired);
}

#[test]
fn exp_beyond_the_longest_lifetime_is_refused() {
    for exp in [
        json!(unix_now() + MAX_TTL.as_secs() + 31),
        json!(i64::MAX),
        json!(u64::MAX),
    ] {
        let token = sign(&hs256_header(), &claims_with("exp", exp));
        assert_refused(
            &token,
            TokenError::Claim("exp (too far in the future)".into()),
            ApiError::TokenInvalid,
        );
    }
    // The longest lifetime itself, with the leeway, is fine.
    let exp = unix_now() + MAX_TTL.as_secs() + 20;
    let token = sign(&hs256_header(), &claims_with("exp", json!(exp)));
    assert_eq!(keys().verify(&token).unwrap().exp, exp);
}

#[test]
fn issuing_beyond_the_longest_lifetime_is_refused() {
    let k = keys();
    let new = |ttl| NewToken {
        openid: "o",
        ttl: Some(ttl),
        ..NewToken::default()
    };
    assert_eq!(
        k.issue(&new(MAX_TTL + Duration::from_secs(1))).unwrap_err(),
        TokenError::TtlTooLong
    );
    assert_eq!(
        k.issue(&new(Duration::MAX)).unwrap_err(),
        TokenError::TtlTooLong
    );
    let (_, claims) = k.issue(&new(MAX_TTL)).unwrap();
    assert_eq!(claims.exp - claims.iat, MAX_TTL.as_secs());
}

#[test]
fn exp_within_leeway_is_accepted() {
    let exp = unix_now() - 10;
    let token = sign(&hs256_header(), &claims_with("exp", json!(exp)));
    let id = keys().verify(&token).unwrap();
    assert_eq!(id.exp, exp);
}

#[test]
fn exp_as_a_string_is_refused() {
    let token = sign(&hs256_header(), &claims_with("exp", json!("9999999999")));
    let err = keys().verify(&token).unwrap_err();
    assert!(matches!(err, TokenError::Claim(_)), "{err:?}");
    assert_eq!(ApiError::from(&err), ApiError::TokenInvalid);
}

#[test]
fn exp_as_a_float_or_negative_is_refused() {
    for exp in [json!(9_999_999_999.5), json!(-1), json!(null), json!(true)] {
        let token = sign(&hs256_header(), &claims_with("exp", exp.clone()));
        let err = keys().verify(&token).unwrap_err();
        assert!(matches!(err, TokenError::Claim(_)), "exp {exp}: {err:?}");
        assert_eq!(ApiError::from(&err), ApiError::TokenInvalid);
    }
}

#[test]
fn future_nbf_is_refused() {
    let token = sign(
        &hs256_header(),
        &claims_with("nbf", json!(unix_now() + 600)),
    );
    assert_refused(&token, TokenError::NotYetValid, ApiError::TokenInvalid);
}

#[test]
fn past_nbf_is_accepted() {
    let token = sign(
        &hs256_header(),
        &claims_with("nbf", json!(unix_now() - 600)),
    );
    assert_eq!(keys().verify(&token).unwrap().openid, "o-openid-1");
}

#[test]
fn nbf_within_leeway_is_accepted() {
    let token = sign(&hs256_header(), &claims_with("nbf", json!(unix_now() + 10)));
    assert_eq!(keys().verify(&token).unwrap().openid, "o-openid-1");
}

#[test]
fn nbf_as_a_string_is_refused() {
    let token = sign(&hs256_header(), &claims_with("nbf", json!("0")));
    assert_refused(
        &token,
        TokenError::Claim("nbf".into()),
        ApiError::TokenInvalid,
    );
}

// ---------------------------------------------------------------------------
// iss / aud / sub
// ---------------------------------------------------------------------------

#[test]
fn wrong_iss_is_refused() {
    let token = sign(&hs256_header(), &claims_with("iss", json!("someone-else")));
    assert_refused(&token, TokenError::Issuer, ApiError::TokenInvalid);
}

#[test]
fn missing_iss_is_refused() {
    let token = sign(&hs256_header(), &claims_without("iss"));
    assert_refused(
        &token,
        TokenError::Claim("iss".into()),
        ApiError::TokenInvalid,
    );
}

#[test]
fn wrong_aud_is_refused() {
    let token = sign(&hs256_header(), &claims_with("aud", json!("other-app")));
    assert_refused(&token, TokenError::Audience, ApiError::TokenInvalid);
}

#[test]
fn aud_list_without_ours_is_refused() {
    let token = sign(
        &hs256_header(),
        &claims_with("aud", json!(["other-app", "third-app"])),
    );
    assert_refused(&token, TokenError::Audience, ApiError::TokenInvalid);
}

#[test]
fn missing_aud_is_refused() {
    let token = sign(&hs256_header(), &claims_without("aud"));
    assert_refused(
        &token,
        TokenError::Claim("aud".into()),
        ApiError::TokenInvalid,
    );
}

#[test]
fn missing_sub_is_refused() {
    let token = sign(&hs256_header(), &claims_without("sub"));
    let err = keys().verify(&token).unwrap_err();
    assert!(matches!(err, TokenError::Claim(_)), "{err:?}");
    assert_eq!(ApiError::from(&err), ApiError::TokenInvalid);
}

#[test]
fn empty_sub_is_refused() {
    let token = sign(&hs256_header(), &claims_with("sub", json!("")));
    assert_refused(
        &token,
        TokenError::Claim("sub".into()),
        ApiError::TokenInvalid,
    );
}

#[test]
fn non_string_sub_is_refused() {
    let token = sign(&hs256_header(), &claims_with("sub", json!(12345)));
    assert_refused(&token, json_claim_error(), ApiError::TokenInvalid);
}

// ---------------------------------------------------------------------------
// Forbidden header parameters (even on a correctly signed token)
// ---------------------------------------------------------------------------

#[test]
fn crit_header_is_refused() {
    let token = sign(&header_with("crit", json!(["exp"])), &good_claims());
    assert_refused(
        &token,
        TokenError::ForbiddenHeader("crit"),
        ApiError::TokenInvalid,
    );
}

#[test]
fn jku_header_is_refused() {
    let token = sign(
        &header_with("jku", json!("https://evil.example/jwks.json")),
        &good_claims(),
    );
    assert_refused(
        &token,
        TokenError::ForbiddenHeader("jku"),
        ApiError::TokenInvalid,
    );
}

#[test]
fn x5u_header_is_refused() {
    let token = sign(
        &header_with("x5u", json!("https://evil.example/cert.pem")),
        &good_claims(),
    );
    assert_refused(
        &token,
        TokenError::ForbiddenHeader("x5u"),
        ApiError::TokenInvalid,
    );
}

#[test]
fn jwk_header_is_refused() {
    let token = sign(
        &header_with("jwk", json!({"kty": "oct", "k": b64(SECRET.as_bytes())})),
        &good_claims(),
    );
    assert_refused(
        &token,
        TokenError::ForbiddenHeader("jwk"),
        ApiError::TokenInvalid,
    );
}

#[test]
fn x5c_header_is_refused() {
    let token = sign(
        &header_with("x5c", json!(["MIIBszCCAVmgAwIBAgIU"])),
        &good_claims(),
    );
    assert_refused(
        &token,
        TokenError::ForbiddenHeader("x5c"),
        ApiError::TokenInvalid,
    );
}

// ---------------------------------------------------------------------------
// Shape and size
// ---------------------------------------------------------------------------

#[test]
fn oversize_token_is_refused_before_parsing() {
    // A correctly signed token, made too long by a padding claim.
    let token = sign(
        &hs256_header(),
        &claims_with("pad", json!("x".repeat(4096))),
    );
    assert!(token.len() > 4096);
    assert_refused(&token, TokenError::TooLong(4096), ApiError::TokenInvalid);
}

#[test]
fn oversize_garbage_is_too_long_not_malformed() {
    let token = "a".repeat(4097);
    assert_refused(&token, TokenError::TooLong(4096), ApiError::TokenInvalid);
}

#[test]
fn token_of_exactly_max_bytes_is_parsed() {
    let token = sign(&hs256_header(), &claims_with("pad", json!("x".repeat(300))));
    let mut cfg = config();
    cfg.max_token_bytes = token.len();
    assert_eq!(
        TokenKeys::new(&cfg).verify(&token).unwrap().openid,
        "o-openid-1"
    );
    cfg.max_token_bytes = token.len() - 1;
    assert_eq!(
        TokenKeys::new(&cfg).verify(&token),
        Err(TokenError::TooLong(token.len() - 1))
    );
}

#[test]
fn empty_token_is_refused() {
    assert_refused("", TokenError::Empty, ApiError::TokenInvalid);
}

#[test]
fn garbage_is_refused() {
    assert_refused("garbage", TokenError::Malformed, ApiError::TokenInvalid);
}

#[test]
fn two_part_token_is_refused() {
    assert_refused("a.b", TokenError::Malformed, ApiError::TokenInvalid);
}

#[test]
fn four_part_token_is_refused() {
    assert_refused("a.b.c.d", TokenError::Malformed, ApiError::TokenInvalid);
}

#[test]
fn four_part_token_built_from_a_valid_one_is_refused() {
    let token = sign(&hs256_header(), &good_claims());
    let err = keys().verify(&format!("{token}.extra")).unwrap_err();
    assert_eq!(ApiError::from(&err), ApiError::TokenInvalid);
    let err = keys()
        .verify(&format!("{}.{token}", b64_json(&hs256_header())))
        .unwrap_err();
    assert_eq!(ApiError::from(&err), ApiError::TokenInvalid);
}

#[test]
fn claims_that_are_not_json_are_refused() {
    let input = format!("{}.{}", b64_json(&hs256_header()), b64(b"not json"));
    let sig = hs256(SECRET.as_bytes(), input.as_bytes());
    let token = format!("{input}.{}", b64(&sig));
    let err = keys().verify(&token).unwrap_err();
    assert_eq!(ApiError::from(&err), ApiError::TokenInvalid);
    assert_ne!(err, TokenError::Expired);
}

// ---------------------------------------------------------------------------
// verify_authorization
// ---------------------------------------------------------------------------

fn good_token() -> String {
    keys()
        .issue(&NewToken {
            family: None,
            openid: "o-auth",
            ..Default::default()
        })
        .unwrap()
        .0
}

#[test]
fn bearer_token_is_accepted() {
    let value = format!("Bearer {}", good_token());
    let id = verify_values(&[value.as_bytes()]).unwrap();
    assert_eq!(id.openid, "o-auth");
}

#[test]
fn no_authorization_header_is_missing() {
    let err = verify_values(&[]).unwrap_err();
    assert_eq!(err, TokenError::Missing);
    assert_eq!(ApiError::from(&err), ApiError::TokenMissing);
}

#[test]
fn two_authorization_headers_are_refused() {
    let value = format!("Bearer {}", good_token());
    let err = verify_values(&[value.as_bytes(), value.as_bytes()]).unwrap_err();
    assert_eq!(err, TokenError::Duplicate);
    assert_eq!(ApiError::from(&err), ApiError::TokenInvalid);
}

#[test]
fn a_valid_and_an_empty_authorization_header_are_refused() {
    let value = format!("Bearer {}", good_token());
    let err = verify_values(&[value.as_bytes(), b""]).unwrap_err();
    assert_eq!(err, TokenError::Duplicate);
}

#[test]
fn bearer_alone_is_empty() {
    for value in [
        &b"Bearer"[..],
        b"Bearer ",
        b"Bearer    ",
        b"Bearer\t",
        b"bearer ",
    ] {
        let err = verify_values(&[value]).unwrap_err();
        assert_eq!(
            err,
            TokenError::Empty,
            "{:?}",
            String::from_utf8_lossy(value)
        );
        assert_eq!(ApiError::from(&err), ApiError::TokenInvalid);
    }
}

#[test]
fn scheme_is_case_insensitive() {
    let token = good_token();
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let value = format!("{scheme} {token}");
        let id = verify_values(&[value.as_bytes()]).unwrap();
        assert_eq!(id.openid, "o-auth", "{scheme}");
    }
}

#[test]
fn extra_spaces_around_the_token_are_tolerated() {
    let value = format!("  Bearer   {}  ", good_token());
    assert_eq!(verify_values(&[value.as_bytes()]).unwrap().openid, "o-auth");
}

#[test]
fn basic_scheme_counts_as_missing() {
    let err = verify_values(&[b"Basic dXNlcjpwYXNz"]).unwrap_err();
    assert_eq!(err, TokenError::Missing);
    assert_eq!(ApiError::from(&err), ApiError::TokenMissing);
}

#[test]
fn bearer_glued_to_token_counts_as_missing() {
    let value = format!("Bearer{}", good_token());
    let err = verify_values(&[value.as_bytes()]).unwrap_err();
    assert_eq!(err, TokenError::Missing);
    let err = verify_values(&[b"Bearerxyz"]).unwrap_err();
    assert_eq!(err, TokenError::Missing);
    assert_eq!(ApiError::from(&err), ApiError::TokenMissing);
}

#[test]
fn empty_authorization_value_counts_as_missing() {
    assert_eq!(verify_values(&[b""]).unwrap_err(), TokenError::Missing);
    assert_eq!(verify_values(&[b"   "]).unwrap_err(), TokenError::Missing);
}

#[test]
fn token_containing_a_space_is_malformed() {
    let token = good_token();
    let (a, b) = token.split_at(10);
    let value = format!("Bearer {a} {b}");
    let err = verify_values(&[value.as_bytes()]).unwrap_err();
    assert_eq!(err, TokenError::Malformed);
    assert_eq!(ApiError::from(&err), ApiError::TokenInvalid);
}

#[test]
fn two_tokens_in_one_header_are_malformed() {
    let token = good_token();
    let value = format!("Bearer {token} {token}");
    assert_eq!(
        verify_values(&[value.as_bytes()]).unwrap_err(),
        TokenError::Malformed
    );
}

#[test]
fn non_utf8_token_is_malformed() {
    let err = verify_values(&[b"Bearer a.\xff.c"]).unwrap_err();
    assert_eq!(err, TokenError::Malformed);
    assert_eq!(ApiError::from(&err), ApiError::TokenInvalid);
}

#[test]
fn oversize_bearer_token_is_too_long() {
    let value = format!("Bearer {}", "a".repeat(5000));
    let err = verify_values(&[value.as_bytes()]).unwrap_err();
    assert_eq!(err, TokenError::TooLong(4096));
    assert_eq!(ApiError::from(&err), ApiError::TokenInvalid);
}

#[test]
fn expired_bearer_token_maps_to_token_expired() {
    let token = sign(
        &hs256_header(),
        &claims_with("exp", json!(unix_now() - 3600)),
    );
    let value = format!("Bearer {token}");
    let err = verify_values(&[value.as_bytes()]).unwrap_err();
    assert_eq!(err, TokenError::Expired);
    assert_eq!(ApiError::from(&err), ApiError::TokenExpired);
}

// ---------------------------------------------------------------------------
// issue() round trip
// ---------------------------------------------------------------------------

/// The JSON object in the middle part of a token.
fn claims_json(token: &str) -> serde_json::Map<String, Value> {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let bytes = URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
    match serde_json::from_slice::<Value>(&bytes).unwrap() {
        Value::Object(m) => m,
        other => panic!("claims are not an object: {other}"),
    }
}

fn header_json(token: &str) -> Value {
    let first = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(first).unwrap()).unwrap()
}

fn key_set(m: &serde_json::Map<String, Value>) -> BTreeSet<&str> {
    m.keys().map(String::as_str).collect()
}

#[test]
fn issued_token_round_trips_with_unionid_and_appid() {
    let k = keys();
    let (token, claims) = k
        .issue(&NewToken {
            family: None,
            openid: "o-1",
            unionid: Some("u-1"),
            appid: Some("wx-app"),
            ttl: None,
            user: None,
        })
        .unwrap();
    let id = k.verify(&token).unwrap();
    assert_eq!(id.openid, "o-1");
    assert_eq!(id.unionid.as_deref(), Some("u-1"));
    assert_eq!(id.appid.as_deref(), Some("wx-app"));
    assert_eq!(id.jti.as_deref(), Some(claims.jti.as_str()));
    assert_eq!(id.exp, claims.exp);
    assert_eq!(id.iat, Some(claims.iat));
    assert_eq!(claims.sub, "o-1");
    assert_eq!(claims.iss, "wxgate");
    assert_eq!(claims.aud, "test-app");
}

#[test]
fn issued_token_without_unionid_and_appid() {
    let k = keys();
    let (token, claims) = k
        .issue(&NewToken {
            family: None,
            openid: "o-2",
            ..Default::default()
        })
        .unwrap();
    let id = k.verify(&token).unwrap();
    assert_eq!(id.openid, "o-2");
    assert_eq!(id.unionid, None);
    assert_eq!(id.appid, None);
    assert_eq!(claims.unionid, None);
    assert_eq!(claims.appid, None);
}

#[test]
fn issued_token_is_hs256_with_plain_header() {
    let (token, _) = keys()
        .issue(&NewToken {
            family: None,
            openid: "o",
            ..Default::default()
        })
        .unwrap();
    assert_eq!(header_json(&token), json!({"alg": "HS256", "typ": "JWT"}));
}

#[test]
fn jti_is_set_and_differs_between_tokens() {
    let k = keys();
    let new = NewToken {
        family: None,
        openid: "o-1",
        ..Default::default()
    };
    let (t1, c1) = k.issue(&new).unwrap();
    let (t2, c2) = k.issue(&new).unwrap();
    assert!(!c1.jti.is_empty());
    assert!(!c2.jti.is_empty());
    assert_ne!(c1.jti, c2.jti);
    assert_ne!(t1, t2);
    assert_eq!(k.verify(&t1).unwrap().jti.as_deref(), Some(c1.jti.as_str()));
    assert_eq!(k.verify(&t2).unwrap().jti.as_deref(), Some(c2.jti.as_str()));
}

#[test]
fn exp_minus_iat_is_the_configured_ttl() {
    let k = keys();
    assert_eq!(k.ttl(), Duration::from_secs(7200));
    let before = unix_now();
    let (token, claims) = k
        .issue(&NewToken {
            family: None,
            openid: "o",
            ..Default::default()
        })
        .unwrap();
    let after = unix_now();
    assert_eq!(claims.exp - claims.iat, 7200);
    assert!((before..=after).contains(&claims.iat));
    let m = claims_json(&token);
    assert_eq!(
        m["exp"].as_u64().unwrap() - m["iat"].as_u64().unwrap(),
        7200
    );
}

#[test]
fn ttl_override_is_honoured() {
    let k = keys();
    let (token, claims) = k
        .issue(&NewToken {
            family: None,
            openid: "o",
            ttl: Some(Duration::from_secs(300)),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(claims.exp - claims.iat, 300);
    let id = k.verify(&token).unwrap();
    assert_eq!(id.exp - id.iat.unwrap(), 300);
}

#[test]
fn issued_claims_have_exactly_the_expected_keys() {
    let (token, _) = keys()
        .issue(&NewToken {
            family: None,
            openid: "o",
            ..Default::default()
        })
        .unwrap();
    let m = claims_json(&token);
    assert_eq!(
        key_set(&m),
        BTreeSet::from(["sub", "iss", "aud", "iat", "iat_ms", "exp", "jti"])
    );
    assert!(!m.contains_key("session_key"));
}

#[test]
fn issued_claims_with_ids_have_exactly_the_expected_keys() {
    let (token, _) = keys()
        .issue(&NewToken {
            family: None,
            openid: "o",
            unionid: Some("u"),
            appid: Some("a"),
            ttl: None,
            user: None,
        })
        .unwrap();
    let m = claims_json(&token);
    assert_eq!(
        key_set(&m),
        BTreeSet::from(["sub", "iss", "aud", "iat", "iat_ms", "exp", "jti", "appid", "unionid"])
    );
    assert!(!m.contains_key("session_key"));
    assert_eq!(m["sub"], "o");
    assert_eq!(m["unionid"], "u");
    assert_eq!(m["appid"], "a");
    assert_eq!(m["iss"], "wxgate");
    assert_eq!(m["aud"], "test-app");
}

#[test]
fn token_for_another_audience_config_is_refused() {
    let mut other = config();
    other.audience = "other-app".into();
    let (token, _) = TokenKeys::new(&other)
        .issue(&NewToken {
            family: None,
            openid: "o",
            ..Default::default()
        })
        .unwrap();
    assert_refused(&token, TokenError::Audience, ApiError::TokenInvalid);
}

#[test]
fn token_for_another_issuer_config_is_refused() {
    let mut other = config();
    other.issuer = "not-wxgate".into();
    let (token, _) = TokenKeys::new(&other)
        .issue(&NewToken {
            family: None,
            openid: "o",
            ..Default::default()
        })
        .unwrap();
    assert_refused(&token, TokenError::Issuer, ApiError::TokenInvalid);
}

#[test]
fn debug_does_not_print_the_secret() {
    let text = format!("{:?}", keys());
    assert!(!text.contains(SECRET), "{text}");
    assert!(text.contains("wxgate"));
}
