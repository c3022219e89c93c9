//! Property tests for WXBizDataCrypt: no panic on any input, one opaque
//! error for every failure, and encrypt → decrypt round trips.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{json, Value};

use super::*;

const APPID: &str = "wx0123456789abcdef";

fn config() -> ProptestConfig {
    crate::testing::proptest_config()
}

/// Every failure must be this one value, shown the same way.
fn check_failure(result: &Result<Value, DecryptError>, appid: &str) -> Result<(), TestCaseError> {
    match result {
        Err(e) => {
            prop_assert_eq!(*e, DecryptError);
            prop_assert_eq!(e.to_string(), DecryptError.to_string());
            prop_assert_eq!(format!("{e:?}"), "DecryptError");
            prop_assert_eq!(ApiError::from(*e), ApiError::InvalidEncryptedData);
        }
        // Success is only ever a JSON object carrying our watermark.
        Ok(v) => {
            prop_assert!(v.is_object());
            prop_assert_eq!(v["watermark"]["appid"].as_str(), Some(appid));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

/// Base64 of some bytes, biased to the lengths that pass the size checks,
/// sometimes with `+` form-decoded into a space or padding dropped.
fn b64_of_len(lens: Vec<usize>) -> impl Strategy<Value = String> {
    let len = prop_oneof![3 => prop::sample::select(lens), 1 => 0usize..40];
    (
        len.prop_flat_map(|n| prop::collection::vec(any::<u8>(), n)),
        prop::sample::select(vec!["plain", "plain", "space", "unpadded", "junk"]),
    )
        .prop_map(|(bytes, how)| {
            let s = STANDARD.encode(bytes);
            match how {
                "space" => s.replace('+', " "),
                "unpadded" => s.trim_end_matches('=').to_string(),
                "junk" => format!("{s}!"),
                _ => s,
            }
        })
}

/// Any text, or valid-looking base64.
fn input(lens: Vec<usize>) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => b64_of_len(lens),
        1 => "[A-Za-z0-9+/= ]{0,48}",
        1 => "\\PC{0,24}",
    ]
}

/// A random JSON payload with our (or, sometimes, another) watermark.
fn payload() -> impl Strategy<Value = Value> {
    let scalar = prop_oneof![
        "\\PC{0,16}".prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ];
    let leaf = scalar.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    (
        prop::collection::btree_map("[a-zA-Z]{1,10}", leaf, 0..6),
        any::<u32>(),
    )
        .prop_map(|(fields, ts)| {
            let mut m: serde_json::Map<String, Value> = fields.into_iter().collect();
            m.insert("watermark".into(), json!({"timestamp": ts, "appid": APPID}));
            Value::Object(m)
        })
}

fn key16() -> impl Strategy<Value = String> {
    any::<[u8; 16]>().prop_map(|k| STANDARD.encode(k))
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_strings_never_panic_and_fail_alike(
        key in "\\PC{0,32}",
        data in "\\PC{0,64}",
        iv in "\\PC{0,32}",
        appid in "\\PC{0,20}",
    ) {
        check_failure(&decrypt_user_data(&key, &data, &iv, &appid), &appid)?;
    }

    #[test]
    fn wrong_but_valid_base64_never_panics_and_fails_alike(
        key in input(vec![16, 16, 15, 17, 24, 32]),
        data in input(vec![16, 32, 48, 64, 15, 17, 0]),
        iv in input(vec![16, 16, 8, 15]),
    ) {
        check_failure(&decrypt_user_data(&key, &data, &iv, APPID), APPID)?;
        // Encryption holds up to the same inputs.
        if let Err(e) = encrypt_user_data(&key, &iv, data.as_bytes()) {
            prop_assert_eq!(e, DecryptError);
        }
    }

    /// Right key and IV, random plaintext (mostly not JSON, wrong padding
    /// impossible here, watermarks wrong): one error or our watermark.
    #[test]
    fn random_plaintext_under_the_right_key_fails_alike(
        key in key16(),
        iv in key16(),
        plain in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            Just(br#"{"watermark":{"appid":"wx0123456789abcdef"}}"#.to_vec()),
            Just(br#"{"watermark":{"appid":"wxffffffffffffffff"}}"#.to_vec()),
            Just(br#"[{"watermark":{"appid":"wx0123456789abcdef"}}]"#.to_vec()),
            Just(br#"{"watermark":"wx0123456789abcdef"}"#.to_vec()),
        ],
    ) {
        let ct = encrypt_user_data(&key, &iv, &plain).unwrap();
        check_failure(&decrypt_user_data(&key, &ct, &iv, APPID), APPID)?;
    }

    #[test]
    fn round_trip_of_random_payloads(key in key16(), iv in key16(), value in payload()) {
        let plain = serde_json::to_vec(&value).unwrap();
        let ct = encrypt_user_data(&key, &iv, &plain).unwrap();
        prop_assert_eq!(decrypt_user_data(&key, &ct, &iv, APPID), Ok(value.clone()));
        // A form-decoded `+` (now a space) anywhere still decrypts.
        let spaced = |s: &str| s.replace('+', " ");
        prop_assert_eq!(
            decrypt_user_data(&spaced(&key), &spaced(&ct), &spaced(&iv), APPID),
            Ok(value)
        );
        // Someone else's app id: the same opaque error.
        prop_assert_eq!(
            decrypt_user_data(&key, &ct, &iv, "wxffffffffffffffff"),
            Err(DecryptError)
        );
    }

    /// CBC is malleable: a changed byte may still decrypt. Whatever comes
    /// out must then carry our watermark; everything else is the one error.
    #[test]
    fn tampered_ciphertext_iv_or_key_fail_alike(
        key in key16(),
        iv in key16(),
        value in payload(),
        which in 0usize..3,
        pos in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let ct = encrypt_user_data(&key, &iv, &serde_json::to_vec(&value).unwrap()).unwrap();
        let mut parts = [
            STANDARD.decode(&key).unwrap(),
            STANDARD.decode(&ct).unwrap(),
            STANDARD.decode(&iv).unwrap(),
        ];
        let i = pos.index(parts[which].len());
        parts[which][i] ^= flip;
        let [k, c, v] = parts.map(|p| STANDARD.encode(p));
        check_failure(&decrypt_user_data(&k, &c, &v, APPID), APPID)?;
    }
}

// ---------------------------------------------------------------------------
// Fixed hostile corpus
// ---------------------------------------------------------------------------

#[test]
fn corpus_of_hostile_inputs_fails_alike() {
    let key = STANDARD.encode([1u8; 16]);
    let iv = STANDARD.encode([2u8; 16]);
    let good = encrypt_user_data(
        &key,
        &iv,
        br#"{"watermark":{"appid":"wx0123456789abcdef"}}"#,
    )
    .unwrap();
    let huge = "A".repeat(1 << 16);
    let cases: Vec<(String, String, String, &str)> = vec![
        (String::new(), String::new(), String::new(), ""),
        (key.clone(), good.clone(), iv.clone(), ""),
        (key.clone(), good.clone(), iv.clone(), "wx0123456789abcdef "),
        (key.clone(), good.clone(), iv.clone(), "WX0123456789ABCDEF"),
        (key.clone(), format!("{good}="), iv.clone(), APPID),
        (key.clone(), format!("{good}\n"), iv.clone(), APPID),
        (key.clone(), format!(" {good}"), iv.clone(), APPID),
        (
            key.clone(),
            good[..good.len() - 4].to_string(),
            iv.clone(),
            APPID,
        ),
        (key.clone(), huge.clone(), iv.clone(), APPID),
        (huge.clone(), good.clone(), iv.clone(), APPID),
        (key.clone(), good.clone(), huge, APPID),
        (key.clone(), "====".into(), iv.clone(), APPID),
        (key.clone(), "\u{0}".repeat(24), iv.clone(), APPID),
        (key.clone(), "Ａ".repeat(24), iv.clone(), APPID),
        (STANDARD.encode([0u8; 16]), good.clone(), iv.clone(), APPID),
        (key.clone(), good.clone(), STANDARD.encode([0u8; 16]), APPID),
        (iv.clone(), good.clone(), key.clone(), APPID),
        // The URL-safe alphabet is not WeChat's.
        (
            key.clone(),
            format!("{}-", &good[..good.len() - 1]),
            iv.clone(),
            APPID,
        ),
        (key.clone(), format!("_{}", &good[1..]), iv.clone(), APPID),
    ];
    for (k, d, v, appid) in cases {
        let got = decrypt_user_data(&k, &d, &v, appid);
        assert_eq!(
            got,
            Err(DecryptError),
            "{k:?} {:?} {v:?} {appid:?}",
            &d[..d.len().min(40)]
        );
    }
    // The control: the untouched inputs decrypt.
    assert!(decrypt_user_data(&key, &good, &iv, APPID).is_ok());
}
