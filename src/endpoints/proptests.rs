//! Property tests for request-body decoding of the `/wx/*` endpoints: the
//! content type, JSON and form bodies into [`LoginRequest`], and its checks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

use super::body::{body_kind, pair, parse_body, BodyKind};
use super::login::LoginRequest;
use crate::error::ApiError;
use crate::login::{ValidLogin, MAX_CODE_BYTES};

fn config() -> ProptestConfig {
    crate::testing::proptest_config()
}

/// Decode and validate as `/wx/login` does; never panics.
fn decode(kind: BodyKind, body: &[u8]) -> Result<ValidLogin, ApiError> {
    parse_body::<LoginRequest>(kind, body)?.validate()
}

/// What a validated login must look like.
fn check_valid(v: &ValidLogin) -> Result<(), TestCaseError> {
    prop_assert!(!v.code.is_empty());
    prop_assert!(v.code.len() <= MAX_CODE_BYTES, "{} bytes", v.code.len());
    prop_assert!(v.code.bytes().all(|b| b.is_ascii_graphic()), "{:?}", v.code);
    for (a, b) in v.encrypted.iter().chain(&v.signed) {
        prop_assert!(!a.is_empty() && !b.is_empty());
    }
    Ok(())
}

fn kind() -> impl Strategy<Value = BodyKind> {
    prop::sample::select(vec![BodyKind::Json, BodyKind::Form])
}

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

/// JSON-ish text built from the pieces a parser trips over.
fn json_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        3 => prop::sample::select(vec![
            "{", "}", "[", "]", ":", ",", "\"", " ", "\n", "\t", "\u{feff}",
            "\"code\"", "\"jsCode\"", "\"js_code\"", "\"encryptedData\"", "\"iv\"",
            "\"rawData\"", "\"signature\"", "\"x\"", "\"\"", "\"abc\"", "\"0a1B-_\"",
            "null", "true", "1", "-0", "1e999", "\"\\u0000\"", "\"\\ud800\"",
            "\"\\uD83D\\uDE00\"", "\"\\\"\"", "\"\\x\"", "\"a\\nb\"", "\"é\"",
            "\"\u{7f}\"", "{}", "[]",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..4),
        1 => "\"[ -~]{0,140}\"".prop_map(String::into_bytes),
    ];
    prop::collection::vec(piece, 0..16).prop_map(|p| p.concat())
}

/// Form-ish bytes: keys, `=`, `&`, `+`, good and broken escapes.
fn form_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        3 => prop::sample::select(vec![
            "code", "jsCode", "js_code", "encryptedData", "iv", "rawData", "signature",
            "=", "&", "+", "%", "%0", "%00", "%20", "%ff", "%C3%A9", "%3D", "%26", "a", "0",
            "&&", "==", ";", "%E2%80%8B", "%7F",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..4),
        1 => "[!-~]{0,140}".prop_map(String::into_bytes),
    ];
    prop::collection::vec(piece, 0..16).prop_map(|p| p.concat())
}

/// A login request as a client might write it.
#[derive(Debug, Clone)]
struct Fields {
    code_key: &'static str,
    code: Option<String>,
    encrypted: Option<(String, String)>,
    signed: Option<(String, String)>,
}

fn fields() -> impl Strategy<Value = Fields> {
    let text = || prop_oneof![3 => "[A-Za-z0-9+/=]{1,40}", 1 => "\\PC{0,8}"];
    (
        prop::sample::select(vec!["code", "jsCode", "js_code"]),
        prop::option::of(prop_oneof![
            4 => "[!-~]{1,128}",
            1 => "[!-~]{129,140}",
            1 => "\\PC{0,10}",
            1 => Just(String::new()),
        ]),
        prop::option::of((text(), text())),
        prop::option::of((text(), text())),
    )
        .prop_map(|(code_key, code, encrypted, signed)| Fields {
            code_key,
            code,
            encrypted,
            signed,
        })
}

impl Fields {
    fn pairs(&self) -> Vec<(&str, &str)> {
        let mut v = Vec::new();
        if let Some(c) = &self.code {
            v.push((self.code_key, c.as_str()));
        }
        if let Some((d, iv)) = &self.encrypted {
            v.push(("encryptedData", d.as_str()));
            v.push(("iv", iv.as_str()));
        }
        if let Some((r, s)) = &self.signed {
            v.push(("rawData", r.as_str()));
            v.push(("signature", s.as_str()));
        }
        v
    }

    fn json(&self) -> Vec<u8> {
        let map: serde_json::Map<String, serde_json::Value> = self
            .pairs()
            .into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect();
        serde_json::to_vec(&map).unwrap()
    }

    fn form(&self) -> Vec<u8> {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.pairs())
            .finish()
            .into_bytes()
    }

    /// Whether `validate` should accept these fields.
    fn valid(&self) -> bool {
        let code_ok = self.code.as_ref().is_some_and(|c| {
            !c.is_empty() && c.len() <= MAX_CODE_BYTES && c.bytes().all(|b| b.is_ascii_graphic())
        });
        let pair_ok = |p: &Option<(String, String)>| {
            p.as_ref().is_none_or(|(a, b)| a.is_empty() == b.is_empty())
        };
        code_ok && pair_ok(&self.encrypted) && pair_ok(&self.signed)
    }
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn body_kind_never_panics(ct in prop::option::of(prop::collection::vec(any::<u8>(), 0..48))) {
        let _ = body_kind(ct.as_deref());
    }

    #[test]
    fn body_kind_reads_known_types_in_any_case_with_parameters(
        mime in prop::sample::select(vec![
            ("application/json", BodyKind::Json),
            ("application/problem+json", BodyKind::Json),
            ("application/x-www-form-urlencoded", BodyKind::Form),
        ]),
        upper in any::<u64>(),
        params in "(; *[a-z]{1,8}=[a-z0-9-]{0,8}){0,2}",
        pad in " {0,2}",
    ) {
        let spelled: String = mime.0.chars().enumerate()
            .map(|(i, c)| if (upper >> (i % 64)) & 1 == 1 { c.to_ascii_uppercase() } else { c })
            .collect();
        let ct = format!("{pad}{spelled}{pad}{params}");
        prop_assert_eq!(body_kind(Some(ct.as_bytes())), Ok(mime.1));
    }

    #[test]
    fn arbitrary_bytes_never_panic(kind in kind(), body in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(v) = decode(kind, &body) {
            check_valid(&v)?;
        }
    }

    #[test]
    fn json_like_bodies_never_panic(body in json_like()) {
        for kind in [BodyKind::Json, BodyKind::Form] {
            if let Ok(v) = decode(kind, &body) {
                check_valid(&v)?;
            }
        }
    }

    #[test]
    fn form_like_bodies_never_panic(body in form_like()) {
        for kind in [BodyKind::Form, BodyKind::Json] {
            if let Ok(v) = decode(kind, &body) {
                check_valid(&v)?;
            }
        }
    }

    /// A well-formed body in either encoding decodes to the same request,
    /// accepted exactly when its fields are acceptable.
    #[test]
    fn json_and_form_agree(f in fields()) {
        let from_json = decode(BodyKind::Json, &f.json());
        let from_form = decode(BodyKind::Form, &f.form());
        prop_assert_eq!(from_json.is_ok(), f.valid(), "{:?}: {:?}", f, from_json);
        prop_assert_eq!(from_form.is_ok(), f.valid(), "{:?}: {:?}", f, from_form);
        if let (Ok(a), Ok(b)) = (from_json, from_form) {
            check_valid(&a)?;
            prop_assert_eq!(&a.code, f.code.as_ref().unwrap());
            prop_assert_eq!(a.code, b.code);
            prop_assert_eq!(a.encrypted, b.encrypted);
            prop_assert_eq!(a.signed, b.signed);
        }
    }

    #[test]
    fn pair_is_both_or_neither(a in prop::option::of("[a-z]{0,2}"), b in prop::option::of("[a-z]{0,2}")) {
        let some = |x: &Option<String>| x.as_ref().is_some_and(|s| !s.is_empty());
        match pair(a.clone(), b.clone(), "m") {
            Ok(Some((x, y))) => prop_assert!(!x.is_empty() && !y.is_empty()),
            Ok(None) => prop_assert!(!some(&a) && !some(&b)),
            Err(e) => {
                prop_assert_eq!(e, ApiError::InvalidRequest("m"));
                prop_assert!(some(&a) != some(&b));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Fixed hostile corpus
// ---------------------------------------------------------------------------

#[test]
fn corpus_of_hostile_bodies_is_refused_cleanly() {
    let long = format!(r#"{{"code":"{}"}}"#, "a".repeat(MAX_CODE_BYTES + 1));
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_obj = format!("{}{}", r#"{"code":"#.repeat(5_000), "}".repeat(5_000));
    let cases: Vec<(BodyKind, Vec<u8>)> = vec![
        (BodyKind::Json, b"".to_vec()),
        (BodyKind::Json, b"   ".to_vec()),
        (BodyKind::Json, b"null".to_vec()),
        (BodyKind::Json, br#"["abc"]"#.to_vec()),
        (BodyKind::Json, br#"{"code":"a","code":"b"}"#.to_vec()),
        (BodyKind::Json, br#"{"code":"a","jsCode":"b"}"#.to_vec()),
        (BodyKind::Json, br#"{"code":1}"#.to_vec()),
        (BodyKind::Json, br#"{"code":null}"#.to_vec()),
        (BodyKind::Json, br#"{"code":""}"#.to_vec()),
        (BodyKind::Json, br#"{"code":"a b"}"#.to_vec()),
        (BodyKind::Json, br#"{"code":"a\u0000"}"#.to_vec()),
        (BodyKind::Json, br#"{"code":"\ud800"}"#.to_vec()),
        (
            BodyKind::Json,
            "{\"code\":\"caf\u{e9}\"}".as_bytes().to_vec(),
        ),
        (BodyKind::Json, b"{\"code\":\"\xff\"}".to_vec()),
        (BodyKind::Json, br#"{"code":"a","iv":"x"}"#.to_vec()),
        (
            BodyKind::Json,
            br#"{"code":"a","rawData":"r","signature":""}"#.to_vec(),
        ),
        (BodyKind::Json, br#"{"code":"a"} trailing"#.to_vec()),
        (
            BodyKind::Json,
            "\u{feff}{\"code\":\"a\"}".as_bytes().to_vec(),
        ),
        (BodyKind::Json, long.into_bytes()),
        (BodyKind::Json, deep.into_bytes()),
        (BodyKind::Json, deep_obj.into_bytes()),
        (BodyKind::Form, b"".to_vec()),
        (BodyKind::Form, b"code".to_vec()),
        (BodyKind::Form, b"code=".to_vec()),
        (BodyKind::Form, b"code=a&jsCode=b".to_vec()),
        (BodyKind::Form, b"code=a+b".to_vec()),
        (BodyKind::Form, b"code=%00".to_vec()),
        (BodyKind::Form, b"code=%ff".to_vec()),
        (BodyKind::Form, b"code=a&iv=x".to_vec()),
        (BodyKind::Form, b"code=a&encryptedData=&iv=x".to_vec()),
        (BodyKind::Form, b"\xff\xfe=\x00".to_vec()),
    ];
    for (kind, body) in cases {
        let got = decode(kind, &body);
        assert!(
            matches!(got, Err(ApiError::InvalidRequest(_))),
            "{kind:?} {:?}: {got:?}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[test]
fn corpus_of_edge_bodies_that_are_accepted() {
    let at_limit = format!(r#"{{"code":"{}"}}"#, "a".repeat(MAX_CODE_BYTES));
    for (kind, body, code) in [
        (
            BodyKind::Json,
            at_limit.as_bytes(),
            "a".repeat(MAX_CODE_BYTES),
        ),
        (BodyKind::Json, br#" {"js_code":"x"}"#, "x".into()),
        (
            BodyKind::Json,
            br#"{"code":"x","unknown":[1,{}]}"#,
            "x".into(),
        ),
        (
            BodyKind::Json,
            br#"{"code":"x","iv":"","encryptedData":null}"#,
            "x".into(),
        ),
        (BodyKind::Form, b"jsCode=%21~&other=1", "!~".into()),
        (BodyKind::Form, b"code=y&code=x", "x".into()),
        // A lone `%` is not an escape: form decoding keeps it.
        (BodyKind::Form, b"code=%", "%".into()),
    ] {
        let v = decode(kind, body).unwrap_or_else(|e| panic!("{body:?}: {e:?}"));
        assert_eq!(v.code, code);
    }
}
