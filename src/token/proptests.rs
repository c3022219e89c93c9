//! Property tests for token verification: no panic on any input, nothing
//! accepted that breaks the rules, agreement with a strict `jsonwebtoken`
//! validation, and issue → verify round trips.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{json, Map, Value};
use sha2::{Sha256, Sha384};

use super::*;
use crate::secret::Secret;

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const OTHER_SECRET: &str = "fedcba9876543210fedcba9876543210";
const ISSUER: &str = "wxgate";
const AUDIENCE: &str = "test-app";
const LEEWAY: u64 = 30;

fn config() -> ProptestConfig {
    crate::testing::proptest_config()
}

fn jwt_config() -> JwtConfig {
    JwtConfig {
        key: JwtKey::hs256(Secret::from(SECRET), "test"),
        previous_keys: Vec::new(),
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        ttl: Duration::from_secs(2 * 3600),
        leeway: Duration::from_secs(LEEWAY),
        max_token_bytes: 4096,
    }
}

fn keys() -> TokenKeys {
    TokenKeys::new(&jwt_config())
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn hmac_sig(alg: &str, key: &[u8], msg: &[u8]) -> Vec<u8> {
    if alg == "HS384" {
        let mut mac = Hmac::<Sha384>::new_from_slice(key).unwrap();
        mac.update(msg);
        return mac.finalize().into_bytes().to_vec();
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// `header.claims.signature`, the MAC chosen by `sig_alg` under `key`.
fn sign(header: &Value, claims: &Value, sig_alg: &str, key: &str) -> String {
    let input = format!(
        "{}.{}",
        b64(&serde_json::to_vec(header).unwrap()),
        b64(&serde_json::to_vec(claims).unwrap())
    );
    let sig = hmac_sig(sig_alg, key.as_bytes(), input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

/// The strict reference validation, built without looking at `TokenKeys`.
fn strict_validation() -> Validation {
    let mut v = Validation::new(jsonwebtoken::Algorithm::HS256);
    v.algorithms = vec![jsonwebtoken::Algorithm::HS256];
    v.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
    v.set_issuer(&[ISSUER]);
    v.set_audience(&[AUDIENCE]);
    v.leeway = LEEWAY;
    v.validate_exp = true;
    v.validate_nbf = true;
    v.validate_aud = true;
    v
}

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

/// A value for a string claim: ours, someone else's, the wrong type, absent.
fn string_claim(ours: &'static str) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        30 => Just(Some(json!(ours))),
        1 => Just(None),
        1 => Just(Some(json!(""))),
        1 => Just(Some(json!(ours.to_uppercase()))),
        1 => Just(Some(json!(format!("{ours} ")))),
        1 => Just(Some(json!([ours]))),
        1 => Just(Some(json!([ours, "other"]))),
        1 => Just(Some(json!(["other"]))),
        1 => Just(Some(json!([]))),
        1 => Just(Some(json!(null))),
        1 => Just(Some(json!(42))),
        1 => Just(Some(json!({ "v": ours }))),
        1 => "\\PC{0,12}".prop_map(|s| Some(json!(s))),
    ]
}

/// A time claim relative to now: plausible offsets, boundaries and nonsense.
fn time_claim(now: u64) -> impl Strategy<Value = Option<Value>> {
    let max = MAX_TTL.as_secs() as i64;
    let l = LEEWAY as i64;
    let offsets = prop_oneof![
        4 => -100_000i64..(max + 100_000),
        2 => prop::sample::select(vec![
            -l - 2, -l + 2, -1, 0, 1, 60, 3600, max - 2, max + l - 2, max + l + 2, max * 2,
        ]),
    ];
    prop_oneof![
        30 => offsets.prop_map(move |o| Some(json!(now as i64 + o))),
        1 => Just(None),
        1 => Just(Some(json!(null))),
        1 => Just(Some(json!(u64::MAX))),
        1 => Just(Some(json!(i64::MIN))),
        1 => Just(Some(json!(-1))),
        1 => Just(Some(json!(0))),
        1 => Just(Some(json!(now as f64 + 600.5))),
        1 => Just(Some(json!(1e300))),
        1 => Just(Some(json!((now + 600).to_string()))),
        1 => Just(Some(json!([now + 600]))),
    ]
}

fn sub_claim() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        30 => "[a-zA-Z0-9_-]{1,28}".prop_map(|s| Some(json!(s))),
        2 => "\\PC{0,16}".prop_map(|s| Some(json!(s))),
        1 => Just(None),
        1 => Just(Some(json!(""))),
        1 => Just(Some(json!(12345))),
        1 => Just(Some(json!(null))),
        1 => Just(Some(json!(["o"]))),
    ]
}

fn header() -> impl Strategy<Value = Value> {
    let alg = prop_oneof![
        40 => Just(json!("HS256")),
        1 => Just(json!("HS384")),
        1 => Just(json!("HS512")),
        1 => Just(json!("none")),
        1 => Just(json!("None")),
        1 => Just(json!("RS256")),
        1 => Just(json!("hs256")),
        1 => Just(json!("")),
        1 => Just(json!(null)),
        1 => Just(json!(256)),
    ];
    let extra = prop::sample::select(vec![
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        Some(("typ", json!("JWT"))),
        Some(("kid", json!("k1"))),
        Some(("crit", json!(["exp"]))),
        Some(("jku", json!("https://evil.example/jwks"))),
        Some(("x5u", json!("https://evil.example/x5u"))),
        Some(("jwk", json!({"kty": "oct", "k": "AAAA"}))),
        Some(("x5c", json!(["MIIB"]))),
        Some(("cty", json!("JWT"))),
        Some(("b64", json!(false))),
    ]);
    (alg, prop::bool::weighted(0.95), extra).prop_map(|(alg, with_alg, extra)| {
        let mut h = Map::new();
        if with_alg {
            h.insert("alg".into(), alg);
        }
        if let Some((k, v)) = extra {
            h.insert(k.into(), v);
        }
        Value::Object(h)
    })
}

/// A claim set with every field possibly wrong.
fn claims(now: u64) -> impl Strategy<Value = Value> {
    (
        sub_claim(),
        string_claim(ISSUER),
        string_claim(AUDIENCE),
        time_claim(now),
        prop::option::weighted(0.2, time_claim(now)),
        prop::option::of("[a-zA-Z0-9]{0,8}"),
        prop::option::of("[ -~]{0,12}"),
        prop::option::weighted(0.3, extra_claim()),
    )
        .prop_map(|(sub, iss, aud, exp, nbf, jti, appid, extra)| {
            let mut m = Map::new();
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            };
            put("sub", sub);
            put("iss", iss);
            put("aud", aud);
            put("exp", exp);
            put("nbf", nbf.flatten());
            put("jti", jti.map(Value::String));
            put("appid", appid.map(Value::String));
            if let Some((k, v)) = extra {
                m.insert(k.into(), v);
            }
            Value::Object(m)
        })
}

/// One of the optional claims wxgate reads, well or badly typed.
fn extra_claim() -> impl Strategy<Value = (&'static str, Value)> {
    let name = prop::sample::select(vec!["iat", "iat_ms", "fam", "unionid", "jti", "appid"]);
    let value = prop_oneof![
        Just(json!(1_700_000_000u64)),
        Just(json!(1_700_000_000_123u64)),
        Just(json!("fam-1")),
        Just(json!("\u{e9}\"quoted\"")),
        Just(json!(null)),
        Just(json!(-5)),
        Just(json!(1.5)),
        Just(json!(["x"])),
    ];
    (name, value)
}

/// How a token is signed: mostly right, sometimes with the wrong key or MAC.
fn signing() -> impl Strategy<Value = (&'static str, &'static str)> {
    prop_oneof![
        16 => Just(("HS256", SECRET)),
        1 => Just(("HS256", OTHER_SECRET)),
        1 => Just(("HS384", SECRET)),
    ]
}

/// Base64 segments joined with dots: valid base64 of arbitrary bytes, of
/// JSON-ish text, or plain junk.
fn dotted_segments() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..48).prop_map(|b| b64(&b)),
        2 => prop::sample::select(vec![
            r#"{"alg":"HS256"}"#,
            r#"{"alg":"none"}"#,
            r#"{"alg":"HS256","crit":["x"]}"#,
            r#"{"sub":"o","exp":99999999999}"#,
            r#"{"#,
            "null",
            "[]",
            r#"{"alg":"HS256","typ":"JWT","alg":"none"}"#,
            "{\"alg\":\"HS256\u{0}\"}",
        ])
        .prop_map(|s| b64(s.as_bytes())),
        1 => prop::collection::vec(any::<u8>(), 0..32).prop_map(|b| STANDARD.encode(b)),
        1 => "[A-Za-z0-9_=+/ -]{0,24}",
        1 => Just(String::new()),
    ];
    prop::collection::vec(segment, 1..6).prop_map(|s| s.join("."))
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

/// What an accepted token must look like; `before`/`after` bracket the call.
fn check_accepted(
    header: &Value,
    claims: &Value,
    key: &str,
    sig_alg: &str,
    id: &Identity,
    (before, after): (u64, u64),
) -> Result<(), TestCaseError> {
    prop_assert_eq!(key, SECRET, "accepted under the wrong key");
    prop_assert_eq!(sig_alg, "HS256");
    prop_assert_eq!(&header["alg"], &json!("HS256"));
    for forbidden in ["crit", "jku", "x5u", "jwk", "x5c"] {
        prop_assert!(header.get(forbidden).is_none(), "{forbidden} accepted");
    }
    // `iss` and `aud` are ours. jsonwebtoken also reads a list and accepts
    // it when ours is a member (RFC 7519 allows that for `aud`).
    let ours = |v: &Value, want: &str| match v {
        Value::String(s) => s == want,
        Value::Array(a) => a.iter().any(|x| x == want),
        _ => false,
    };
    prop_assert!(ours(&claims["iss"], ISSUER), "iss {}", claims["iss"]);
    prop_assert!(ours(&claims["aud"], AUDIENCE), "aud {}", claims["aud"]);
    let exp = claims["exp"].as_u64();
    prop_assert_eq!(exp, Some(id.exp), "exp {}", claims["exp"]);
    prop_assert!(
        id.exp.saturating_add(LEEWAY) >= before,
        "expired: {}",
        id.exp
    );
    prop_assert!(
        id.exp <= after + MAX_TTL.as_secs() + LEEWAY,
        "too far: {}",
        id.exp
    );
    // `nbf`, when it is a number, has passed (`null` counts as absent).
    if let Some(nbf) = claims.get("nbf").filter(|v| !v.is_null()) {
        let passed = nbf
            .as_f64()
            .is_some_and(|n| n >= 0.0 && n.round() <= (after + LEEWAY) as f64);
        prop_assert!(passed, "nbf {}", nbf);
    }
    prop_assert!(!id.openid.is_empty());
    prop_assert_eq!(&claims["sub"], &json!(id.openid));
    prop_assert_eq!(id.appid.as_deref(), claims["appid"].as_str());
    Ok(())
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn verify_never_panics_on_arbitrary_strings(token in "\\PC{0,200}") {
        let _ = keys().verify(&token);
    }

    #[test]
    fn verify_never_panics_on_arbitrary_bytes_as_text(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let token = String::from_utf8_lossy(&bytes);
        let _ = keys().verify(&token);
        let _ = keys().verify_authorization([bytes.as_slice()].into_iter());
    }

    #[test]
    fn verify_never_panics_on_dotted_base64(token in dotted_segments()) {
        // Nothing here is signed with our key: it must all be refused.
        prop_assert!(keys().verify(&token).is_err());
        let mut bearer = b"Bearer ".to_vec();
        bearer.extend_from_slice(token.as_bytes());
        prop_assert!(keys().verify_authorization([bearer.as_slice()].into_iter()).is_err());
    }

    #[test]
    fn accepted_tokens_follow_every_rule(
        (header, claims) in (header(), claims(unix_now())),
        (sig_alg, key) in signing(),
    ) {
        let token = sign(&header, &claims, sig_alg, key);
        let before = unix_now();
        let result = keys().verify(&token);
        let after = unix_now();
        if let Ok(id) = result {
            check_accepted(&header, &claims, key, sig_alg, &id, (before, after))?;
        }
    }

    /// Differential: whatever wxgate accepts, a strict `jsonwebtoken`
    /// validation with the same key accepts too, with the same `sub`.
    #[test]
    fn accepted_tokens_pass_a_strict_reference_validation(
        (header, claims) in (header(), claims(unix_now())),
        (sig_alg, key) in signing(),
    ) {
        let token = sign(&header, &claims, sig_alg, key);
        if let Ok(id) = keys().verify(&token) {
            let reference = jsonwebtoken::decode::<Value>(
                &token,
                &DecodingKey::from_secret(SECRET.as_bytes()),
                &strict_validation(),
            );
            match reference {
                Ok(data) => prop_assert_eq!(&data.claims["sub"], &json!(id.openid)),
                Err(e) => prop_assert!(false, "wxgate accepted, jsonwebtoken refused: {e:?}"),
            }
        }
    }

    /// Well-formed claims with our key and HS256 are accepted exactly when
    /// their times are in range (away from the boundaries, to stay clear of
    /// a second ticking over).
    #[test]
    fn good_tokens_are_accepted_when_in_range(
        sub in "[a-zA-Z0-9_-]{1,28}",
        exp_offset in -100_000i64..(MAX_TTL.as_secs() as i64 + 100_000),
    ) {
        let now = unix_now() as i64;
        let (l, max) = (LEEWAY as i64, MAX_TTL.as_secs() as i64);
        prop_assume!((exp_offset + l).abs() > 3 && (exp_offset - max - l).abs() > 3);
        let claims = json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": now + exp_offset});
        let token = sign(&json!({"alg": "HS256", "typ": "JWT"}), &claims, "HS256", SECRET);
        let in_range = exp_offset > -l && exp_offset < max + l;
        let result = keys().verify(&token);
        prop_assert_eq!(result.is_ok(), in_range, "{:?}", result);
    }

    #[test]
    fn issue_then_verify_round_trips(
        openid in "[!-~][ -~]{0,40}[!-~]",
        unionid in prop::option::of("[!-~]{1,40}"),
        appid in prop::option::of("wx[0-9a-f]{16}|[!-~]{1,20}"),
        family in prop::option::of("[A-Za-z0-9_-]{1,22}"),
        ttl in prop::option::of(1u64..=MAX_TTL.as_secs()),
        uid in prop::option::of("[!-~]{1,40}"),
        roles in prop::collection::vec("[A-Za-z0-9_.:-]{1,16}", 0..4),
        ext in prop::collection::btree_map("[a-z_]{1,8}", "[ -~]{0,24}", 0..3),
        risk in prop::option::of(0u8..=4),
    ) {
        let keys = keys();
        let user = UserClaims { uid, roles, ext, risk };
        let new = NewToken {
            openid: &openid,
            unionid: unionid.as_deref(),
            appid: appid.as_deref(),
            family: family.as_deref(),
            ttl: ttl.map(Duration::from_secs),
            user: Some(&user),
        };
        let (token, claims) = keys.issue(&new).unwrap();
        let id = keys.verify(&token).unwrap();
        prop_assert_eq!(&id.openid, &openid);
        prop_assert_eq!(id.unionid.as_deref(), unionid.as_deref());
        prop_assert_eq!(id.appid.as_deref(), appid.as_deref());
        prop_assert_eq!(id.family.as_deref(), family.as_deref());
        prop_assert_eq!(id.exp, claims.exp);
        prop_assert_eq!(id.jti.as_deref(), Some(claims.jti.as_str()));
        prop_assert_eq!(id.issued_ms, claims.iat_ms);
        prop_assert_eq!(&id.user, &user);
    }

    /// Any non-empty text round-trips: the token is JSON, not a header.
    #[test]
    fn issue_then_verify_round_trips_unicode_ids(
        openid in "\\PC{1,24}",
        unionid in prop::option::of("\\PC{1,24}"),
    ) {
        let keys = keys();
        let new = NewToken { openid: &openid, unionid: unionid.as_deref(), ..NewToken::default() };
        let (token, _) = keys.issue(&new).unwrap();
        let id = keys.verify(&token).unwrap();
        prop_assert_eq!(id.openid, openid);
        prop_assert_eq!(id.unionid, unionid);
    }

    /// Flipping any character of a good token never yields a token that
    /// verifies to a different identity.
    #[test]
    fn tampered_tokens_never_change_identity(
        openid in "[a-zA-Z0-9_-]{1,28}",
        pos in any::<prop::sample::Index>(),
        with in prop::sample::select(b"AQgw_-=.+/ ".to_vec()),
    ) {
        let keys = keys();
        let (token, _) = keys.issue(&NewToken { openid: &openid, ..NewToken::default() }).unwrap();
        let mut bytes = token.into_bytes();
        let i = pos.index(bytes.len());
        bytes[i] = with;
        let tampered = String::from_utf8(bytes).unwrap();
        if let Ok(id) = keys.verify(&tampered) {
            prop_assert_eq!(id.openid, openid);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: config().cases.saturating_mul(4), ..config() })]

    /// Differential: wherever the fast path decides, it decides exactly as
    /// the reference path (`jsonwebtoken` and wxgate's rules) does. Four
    /// times the usual cases: the fast path decides about one in six.
    #[test]
    fn the_fast_path_decides_as_the_reference_does(
        (header, claims) in (header(), claims(unix_now())),
        (sig_alg, key) in signing(),
    ) {
        let keys = keys();
        let token = sign(&header, &claims, sig_alg, key);
        let fast = keys.verify_fast(&token, unix_now());
        if let Some(decided) = fast {
            prop_assert_eq!(decided, keys.verify_reference(&token));
        }
    }
}

/// `keys()` with a key pair of `alg` (kid `pk-1`) signing instead.
fn public_key_keys(alg: Algorithm) -> (TokenKeys, std::sync::Arc<super::keys::PrivateKey>) {
    let private = std::sync::Arc::new(super::keys::PrivateKey::generate(alg).unwrap());
    let cfg = JwtConfig {
        key: JwtKey {
            algorithm: alg,
            kid: Some("pk-1".into()),
            source: "test".into(),
            material: crate::config::KeyMaterial::Private(std::sync::Arc::clone(&private)),
        },
        ..jwt_config()
    };
    (TokenKeys::new(&cfg), private)
}

proptest! {
    #![proptest_config(config())]

    /// The same differential for EdDSA and ES256 tokens under the header
    /// the gateway issues, asked twice: the second answer may come from the
    /// thread's verified-token cache and must not differ either.
    #[test]
    fn the_fast_path_and_its_cache_decide_as_the_reference_does_for_public_keys(
        claims in claims(unix_now()),
        es256 in any::<bool>(),
    ) {
        let alg = if es256 { Algorithm::ES256 } else { Algorithm::EdDSA };
        let (keys, private) = public_key_keys(alg);
        let message = format!(
            "{}.{}",
            encoded_header(alg, Some("pk-1")),
            b64(&serde_json::to_vec(&claims).unwrap())
        );
        let token = format!("{message}.{}", b64(&private.sign(message.as_bytes())));
        let reference = keys.verify_reference(&token);
        for _ in 0..2 {
            if let Some(decided) = keys.verify_fast(&token, unix_now()) {
                prop_assert_eq!(&decided, &reference);
            }
        }
    }
}

/// The differential test above means something only if the fast path
/// decides a fair share of the generated tokens, accepting some and refusing
/// others.
#[test]
fn the_generated_tokens_exercise_the_fast_path() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let keys = keys();
    let mut runner = TestRunner::deterministic();
    let strategy = ((header(), claims(unix_now())), signing());
    let (mut accepted, mut refused, mut passed_on) = (0, 0, 0);
    for _ in 0..2000 {
        let ((header, claims), (alg, key)) = strategy.new_tree(&mut runner).unwrap().current();
        match keys.verify_fast(&sign(&header, &claims, alg, key), unix_now()) {
            Some(Ok(_)) => accepted += 1,
            Some(Err(_)) => refused += 1,
            None => passed_on += 1,
        }
    }
    // About 7 %, 9 % and 84 %: the generators favour hostile tokens.
    assert!(accepted > 100, "accepted {accepted}");
    assert!(refused > 100, "refused {refused}");
    assert!(passed_on > 100, "passed on {passed_on}");
}

// ---------------------------------------------------------------------------
// Fixed hostile corpus
// ---------------------------------------------------------------------------

fn good_claims() -> Value {
    let now = unix_now();
    json!({"sub": "o", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 600})
}

fn with(key: &str, v: Value) -> Value {
    let mut c = good_claims();
    c[key] = v;
    c
}

#[test]
fn corpus_of_malformed_tokens_is_refused() {
    let hs = b64(br#"{"alg":"HS256"}"#);
    let claims = b64(&serde_json::to_vec(&good_claims()).unwrap());
    for token in [
        String::new(),
        ".".into(),
        "..".into(),
        "...".into(),
        format!("{hs}.{claims}"),
        format!("{hs}.{claims}."),
        format!("{hs}.{claims}.."),
        format!("{hs}..{claims}"),
        format!(".{hs}.{claims}"),
        format!("{hs}.{claims}.%%%"),
        format!("{hs}.{claims}.{}", "A".repeat(5000)),
        format!("{hs}.{claims}.\u{0}"),
        format!("{hs}.{}.sig", b64(b"\xff\xfe")),
        format!("{}.{claims}.sig", b64(b"{\"alg\":\"HS256\"")),
        "eyJhbGciOiJub25lIn0.e30.".into(),
        "Bearer x.y.z".into(),
        "\u{feff}a.b.c".into(),
    ] {
        assert!(keys().verify(&token).is_err(), "{token:?}");
    }
}

#[test]
fn corpus_of_signed_but_wrong_tokens_is_refused() {
    let now = unix_now();
    let hs256 = json!({"alg": "HS256"});
    let cases = [
        (json!({"alg": "none"}), good_claims()),
        (json!({"alg": "HS256", "crit": ["exp"]}), good_claims()),
        (
            json!({"alg": "HS256", "jwk": {"kty": "oct", "k": "AA"}}),
            good_claims(),
        ),
        (hs256.clone(), with("sub", json!(""))),
        (hs256.clone(), with("sub", json!(7))),
        (hs256.clone(), with("iss", json!("WXGATE"))),
        (hs256.clone(), with("aud", json!([]))),
        (hs256.clone(), with("aud", json!(["other"]))),
        (hs256.clone(), with("exp", json!(now - LEEWAY - 5))),
        (hs256.clone(), with("exp", json!(u64::MAX))),
        (hs256.clone(), with("exp", json!(-1))),
        (hs256.clone(), with("exp", json!((now + 600) as f64 + 0.5))),
        (hs256.clone(), with("exp", json!((now + 600).to_string()))),
        (
            hs256.clone(),
            with("exp", json!(now + MAX_TTL.as_secs() + LEEWAY + 10)),
        ),
        (hs256.clone(), with("nbf", json!(now + LEEWAY + 60))),
        (hs256.clone(), with("nbf", json!("soon"))),
    ];
    for (header, claims) in cases {
        let token = sign(&header, &claims, "HS256", SECRET);
        assert!(keys().verify(&token).is_err(), "{header} {claims}");
    }
    // Right claims, wrong MAC or key.
    assert!(keys()
        .verify(&sign(
            &json!({"alg": "HS384"}),
            &good_claims(),
            "HS384",
            SECRET
        ))
        .is_err());
    assert!(keys()
        .verify(&sign(&hs256, &good_claims(), "HS256", OTHER_SECRET))
        .is_err());
    // And the control: the same token, done right, passes.
    assert!(keys()
        .verify(&sign(&hs256, &good_claims(), "HS256", SECRET))
        .is_ok());
}

/// `iss` as a list that contains ours is refused: jsonwebtoken reads `iss`
/// like `aud`, but RFC 7519 makes `iss` a single StringOrURI.
#[test]
fn iss_list_is_refused() {
    let token = sign(
        &json!({"alg": "HS256"}),
        &with("iss", json!([ISSUER, "someone-else"])),
        "HS256",
        SECRET,
    );
    assert!(keys().verify(&token).is_err());
}
