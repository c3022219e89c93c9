#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use super::body::{body_kind, parse_body, BodyKind};
use super::decrypt::DecryptRequest;
use super::login::{self, LoginRequest, LoginResponse};
use super::refresh::TokenResponse;
use crate::error::ApiError;
use crate::login::{ValidLogin, MAX_CODE_BYTES};
use crate::testing::{FakeWechat, LoginHarness, APPID};
use crate::wechat::crypto;
use base64::Engine;
use sha1::Digest;

fn invalid_request(e: &ApiError) -> bool {
    matches!(e, ApiError::InvalidRequest(_))
}

// --- body_kind ---

#[test]
fn body_kind_defaults_to_json_without_content_type() {
    assert_eq!(body_kind(None), Ok(BodyKind::Json));
}

#[test]
fn body_kind_reads_json_types() {
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/vnd.api+json",
    ] {
        assert_eq!(body_kind(Some(ct.as_bytes())), Ok(BodyKind::Json), "{ct}");
    }
}

#[test]
fn body_kind_reads_form() {
    for ct in [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=utf-8",
    ] {
        assert_eq!(body_kind(Some(ct.as_bytes())), Ok(BodyKind::Form), "{ct}");
    }
}

#[test]
fn body_kind_refuses_other_types() {
    for ct in [
        &b"text/plain"[..],
        b"multipart/form-data; boundary=x",
        b"text/json",
        b"\xff\xfe",
    ] {
        assert_eq!(
            body_kind(Some(ct)),
            Err(ApiError::UnsupportedMediaType),
            "{}",
            String::from_utf8_lossy(ct)
        );
    }
}

// --- parse_body ---

fn json(body: &str) -> Result<LoginRequest, ApiError> {
    parse_body(BodyKind::Json, body.as_bytes())
}

fn form(body: &str) -> Result<LoginRequest, ApiError> {
    parse_body(BodyKind::Form, body.as_bytes())
}

#[test]
fn parse_json_code_and_aliases() {
    for body in [
        r#"{"code":"abc"}"#,
        r#"{"jsCode":"abc"}"#,
        r#"{"js_code":"abc"}"#,
    ] {
        let r = json(body).unwrap();
        assert_eq!(r.code.as_deref(), Some("abc"), "{body}");
        assert_eq!(r.encrypted_data, None);
        assert_eq!(r.iv, None);
    }
}

#[test]
fn parse_json_all_fields() {
    let r = json(
        r#"{"code":"c","encryptedData":"e+/=","iv":"i","rawData":"{\"a\":1}","signature":"s","extra":1}"#,
    )
    .unwrap();
    assert_eq!(
        r,
        LoginRequest {
            code: Some("c".into()),
            encrypted_data: Some("e+/=".into()),
            iv: Some("i".into()),
            raw_data: Some(r#"{"a":1}"#.into()),
            signature: Some("s".into()),
            appid: None,
            device: None,
        }
    );
}

#[test]
fn parse_form_with_escaped_plus() {
    let r = form("code=abc&encryptedData=ab%2Bcd%2F%3D%3D&iv=AAAA%2BBBBB").unwrap();
    assert_eq!(r.code.as_deref(), Some("abc"));
    assert_eq!(r.encrypted_data.as_deref(), Some("ab+cd/=="));
    assert_eq!(r.iv.as_deref(), Some("AAAA+BBBB"));
}

#[test]
fn parse_form_with_raw_plus_becomes_space() {
    // An unescaped `+` is form-decoded to a space; decryption reads it back as `+`.
    let r = form("code=abc&encryptedData=ab+cd/==&iv=xy+z").unwrap();
    assert_eq!(r.code.as_deref(), Some("abc"));
    assert_eq!(r.encrypted_data.as_deref(), Some("ab cd/=="));
    assert_eq!(r.iv.as_deref(), Some("xy z"));
}

#[test]
fn parse_form_aliases() {
    assert_eq!(form("js_code=x1").unwrap().code.as_deref(), Some("x1"));
    assert_eq!(form("jsCode=x2").unwrap().code.as_deref(), Some("x2"));
}

#[test]
fn parse_json_refuses_malformed_bodies() {
    for body in [
        r#"{"code":"abc""#,
        "",
        "not json",
        r#"{"code":123}"#,
        r#"{"code":["a"]}"#,
        r#"{"code":null,"iv":5}"#,
        "\"abc\"",
    ] {
        let e = json(body).unwrap_err();
        assert!(invalid_request(&e), "{body}: {e:?}");
    }
}

#[test]
fn parse_json_refuses_arrays() {
    for body in [r#"["abc"]"#, r#"["code","abc"]"#, "[]"] {
        let r = json(body);
        assert!(
            matches!(r, Err(ApiError::InvalidRequest(_))),
            "{body}: {r:?}"
        );
    }
}

#[test]
fn parse_json_null_code_is_absent() {
    assert_eq!(json(r#"{"code":null}"#).unwrap().code, None);
}

#[test]
fn parse_decrypt_request() {
    let r: DecryptRequest =
        parse_body(BodyKind::Json, br#"{"encryptedData":"e","iv":"i"}"#).unwrap();
    assert_eq!(r.encrypted_data.as_deref(), Some("e"));
    assert_eq!(r.iv.as_deref(), Some("i"));
}

// --- LoginRequest::validate ---

fn req(code: Option<&str>) -> LoginRequest {
    LoginRequest {
        code: code.map(str::to_owned),
        ..LoginRequest::default()
    }
}

#[test]
fn validate_requires_a_code() {
    for r in [req(None), req(Some(""))] {
        let e = r.clone().validate().unwrap_err();
        assert!(invalid_request(&e), "{r:?}: {e:?}");
    }
}

#[test]
fn validate_code_length() {
    let ok = "a".repeat(MAX_CODE_BYTES);
    assert_eq!(MAX_CODE_BYTES, 128);
    assert_eq!(req(Some(&ok)).validate().unwrap().code, ok);
    let long = "a".repeat(MAX_CODE_BYTES + 1);
    assert!(invalid_request(&req(Some(&long)).validate().unwrap_err()));
    // Bytes, not characters: 43 three-byte characters are 129 bytes.
    let wide = "码".repeat(43);
    assert!(invalid_request(&req(Some(&wide)).validate().unwrap_err()));
}

#[test]
fn validate_code_characters() {
    for code in ["a b", "ab\n", "a\tb", "\u{7f}ab", "a\0b", "码"] {
        let e = req(Some(code)).validate().unwrap_err();
        assert!(invalid_request(&e), "{code:?}: {e:?}");
    }
    let fine = "081aBc-._~+/=xyz";
    assert_eq!(req(Some(fine)).validate().unwrap().code, fine);
}

#[test]
fn validate_pairs_go_together() {
    let base = req(Some("c"));
    let cases = [
        LoginRequest {
            encrypted_data: Some("e".into()),
            ..base.clone()
        },
        LoginRequest {
            iv: Some("i".into()),
            ..base.clone()
        },
        LoginRequest {
            encrypted_data: Some("e".into()),
            iv: Some(String::new()),
            ..base.clone()
        },
        LoginRequest {
            raw_data: Some("r".into()),
            ..base.clone()
        },
        LoginRequest {
            signature: Some("s".into()),
            ..base.clone()
        },
    ];
    for r in cases {
        let e = r.clone().validate().unwrap_err();
        assert!(invalid_request(&e), "{r:?}: {e:?}");
    }
}

#[test]
fn validate_all_present() {
    let r = LoginRequest {
        code: Some("c".into()),
        encrypted_data: Some("e".into()),
        iv: Some("i".into()),
        raw_data: Some("r".into()),
        signature: Some("s".into()),
        appid: None,
        device: None,
    };
    assert_eq!(
        r.validate().unwrap(),
        ValidLogin {
            device: None,
            code: "c".into(),
            encrypted: Some(("e".into(), "i".into())),
            signed: Some(("r".into(), "s".into())),
        }
    );
    let plain = req(Some("c")).validate().unwrap();
    assert_eq!(plain.encrypted, None);
    assert_eq!(plain.signed, None);
}

// --- LoginResponse ---

fn response(unionid: Option<&str>, user: Option<serde_json::Value>) -> serde_json::Value {
    let r = LoginResponse {
        tokens: TokenResponse {
            refresh_token: "r".into(),
            token: "t.o.k".into(),
            token_type: "Bearer",
            expires_in: 7200,
            openid: "o-1".into(),
            unionid: unionid.map(str::to_owned),
            uid: None,
            roles: Vec::new(),
        },
        user,
    };
    serde_json::to_value(&r).unwrap()
}

#[test]
fn response_without_user_or_unionid() {
    let v = response(None, None);
    let o = v.as_object().unwrap();
    assert!(!o.contains_key("user"), "{v}");
    assert!(o.contains_key("unionid"), "{v}");
    assert!(v["unionid"].is_null());
    assert_eq!(v["token"], "t.o.k");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 7200);
    assert_eq!(v["openid"], "o-1");
    let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "expires_in",
            "openid",
            "refresh_token",
            "token",
            "token_type",
            "unionid"
        ]
    );
}

#[test]
fn response_with_user_and_unionid() {
    let v = response(Some("u-1"), Some(serde_json::json!({"nickName": "n"})));
    assert_eq!(v["unionid"], "u-1");
    assert_eq!(v["user"]["nickName"], "n");
}

/// The real login path, with `encryptedData` and `rawData` so that the
/// session key is used: what goes on the wire must not contain it.
#[tokio::test]
async fn login_response_never_carries_the_session_key() {
    let h = LoginHarness::new("");
    let key = FakeWechat::session_key("c1");
    let iv = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
    let plain = format!(r#"{{"nickName":"n","watermark":{{"appid":"{APPID}"}}}}"#);
    let encrypted = crypto::encrypt_user_data(&key, &iv, plain.as_bytes()).unwrap();
    let raw = r#"{"nickName":"n"}"#;
    let digest = sha1::Sha1::digest(format!("{raw}{key}").as_bytes());
    let signature: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let req = LoginRequest {
        code: Some("c1".into()),
        encrypted_data: Some(encrypted),
        iv: Some(iv),
        raw_data: Some(raw.into()),
        signature: Some(signature),
        appid: Some(APPID.into()),
        device: None,
    };
    let apps = crate::login::apps::Apps::new(vec![h.service.clone()]);
    let resp = login::handle(&apps, req, None).await.unwrap();
    let wire = serde_json::to_string(&resp).unwrap();
    assert_eq!(resp.user.as_ref().unwrap()["nickName"], "n", "{wire}");
    assert_eq!(resp.tokens.openid, "o-c1");
    assert!(!wire.contains(&key), "{wire}");
    assert!(!wire.contains("session_key"), "{wire}");
    assert!(!wire.contains("sessionKey"), "{wire}");
}

// --- /readyz ---

#[tokio::test]
async fn readyz_says_why_it_is_not_ready_with_a_stable_code() {
    use crate::state::{Deps, GatewayState};
    let config = crate::testing::config("", &[("/", "required")]);
    let store = std::sync::Arc::new(crate::store::memory::MemoryStore::default());
    let state = GatewayState::new(&config, Deps::with_store(store)).unwrap();
    let (status, body) = super::health::readyz(&state).await;
    assert_eq!(status, 503);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"status": "not_ready", "reason": "shutting_down"})
    );
    state.set_ready(true);
    let (status, body) = super::health::readyz(&state).await;
    assert_eq!((status, &body[..]), (200, &br#"{"status":"ready"}"#[..]));
}
