use super::*;

fn allowed() -> Vec<String> {
    vec!["plan".to_string(), "tenant".to_string()]
}

#[test]
fn signature_is_hmac_sha256_of_timestamp_dot_body() {
    // Python: hmac.new(b"hook-secret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert_eq!(
        sign(b"hook-secret", 1_700_000_000, br#"{"event":"login"}"#),
        "sha256=7d2562ee2e5ed263f4fb3788edd3fec550898198dd9fab9262b513e624e6edb1"
    );
    assert_ne!(
        sign(b"hook-secret", 1_700_000_001, br#"{"event":"login"}"#),
        sign(b"hook-secret", 1_700_000_000, br#"{"event":"login"}"#)
    );
}

#[test]
fn a_full_answer_becomes_user_claims() {
    let u = parse_answer(
        br#"{"uid":"u-42","roles":["admin","user","admin"],"claims":{"plan":"pro","tenant":7,"secret":"x"}}"#,
        &allowed(),
        1024,
    )
    .unwrap();
    assert_eq!(u.uid.as_deref(), Some("u-42"));
    // Duplicates collapse, order is kept.
    assert_eq!(u.roles, ["admin", "user"]);
    // Only allowed claims are kept; numbers become strings.
    assert_eq!(u.ext.len(), 2);
    assert_eq!(u.ext["plan"], "pro");
    assert_eq!(u.ext["tenant"], "7");
}

#[test]
fn everything_is_optional() {
    assert_eq!(
        parse_answer(b"{}", &allowed(), 1024),
        Ok(UserClaims::default())
    );
    let u = parse_answer(
        br#"{"uid":12345,"roles":null,"claims":null}"#,
        &allowed(),
        1024,
    )
    .unwrap();
    assert_eq!(u.uid.as_deref(), Some("12345"));
}

#[test]
fn malformed_answers_are_refused() {
    for body in [
        &b"not json"[..],
        b"[]",
        b"\"uid\"",
        br#"{"uid":""}"#,
        br#"{"uid":"has space"}"#,
        br#"{"uid":"line\nbreak"}"#,
        br#"{"uid":1.5}"#,
        br#"{"uid":["a"]}"#,
        br#"{"roles":"admin"}"#,
        br#"{"roles":["a,b"]}"#,
        br#"{"roles":[""]}"#,
        br#"{"roles":[1]}"#,
        br#"{"claims":[]}"#,
        br#"{"claims":{"plan":{"nested":1}}}"#,
        br#"{"claims":{"plan":"new\r\nline"}}"#,
    ] {
        assert!(
            parse_answer(body, &allowed(), 1024).is_err(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let long_uid = format!(r#"{{"uid":"{}"}}"#, "u".repeat(MAX_UID_BYTES + 1));
    assert!(parse_answer(long_uid.as_bytes(), &allowed(), 1024).is_err());
    let many_roles: Vec<String> = (0..=MAX_ROLES).map(|i| format!("r{i}")).collect();
    let body = serde_json::json!({ "roles": many_roles }).to_string();
    assert!(parse_answer(body.as_bytes(), &allowed(), 1024).is_err());
}

#[test]
fn claims_are_bounded_in_size() {
    let body = serde_json::json!({ "claims": { "plan": "p".repeat(20) } }).to_string();
    assert!(parse_answer(body.as_bytes(), &allowed(), 24).is_ok());
    assert_eq!(
        parse_answer(body.as_bytes(), &allowed(), 23),
        Err("the claims are larger than max_claims_bytes")
    );
}

#[test]
fn a_refusal_message_is_kept_clean_and_short() {
    assert_eq!(
        refusal_message(br#"{"message":"account suspended"}"#).as_deref(),
        Some("account suspended")
    );
    assert_eq!(
        refusal_message(br#"{"message":"a\u0000b\nc"}"#).as_deref(),
        Some("abc")
    );
    let long = serde_json::json!({ "message": "x".repeat(500) }).to_string();
    assert_eq!(refusal_message(long.as_bytes()).map(|m| m.len()), Some(200));
    assert_eq!(refusal_message(b"banned"), None);
    assert_eq!(refusal_message(br#"{"message":"  "}"#), None);
    assert_eq!(refusal_message(br#"{"message":3}"#), None);
}

#[test]
fn role_names() {
    assert!(is_role_name("admin"));
    assert!(is_role_name("org:42.editor-x_y"));
    assert!(!is_role_name(""));
    assert!(!is_role_name("a b"));
    assert!(!is_role_name("a,b"));
    assert!(!is_role_name(&"r".repeat(65)));
}

#[test]
fn the_call_never_names_session_key() {
    let call = Call {
        event: Event::Login,
        appid: "wxapp",
        openid: "o-1",
        unionid: None,
        phone: None,
        risk_rank: None,
    };
    let json = serde_json::to_value(&call).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"event": "login", "appid": "wxapp", "openid": "o-1", "unionid": null})
    );
}

#[test]
fn errors_map_to_stable_codes() {
    let refused = ApiError::from(HookError::Refused {
        message: Some("banned".into()),
    });
    assert_eq!((refused.status(), refused.code()), (403, "login_refused"));
    assert_eq!(refused.to_string(), "banned");
    let plain = ApiError::from(HookError::Refused { message: None });
    assert_eq!(plain.to_string(), "the backend refused this login");
    let down = ApiError::from(HookError::Unavailable("x".into()));
    assert_eq!((down.status(), down.code()), (502, "hook_unavailable"));
    let slow = ApiError::from(HookError::Timeout);
    assert_eq!((slow.status(), slow.code()), (504, "hook_unavailable"));
}
