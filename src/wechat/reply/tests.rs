#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

#[test]
fn errcode_mapping_table() {
    let api = |errcode| WechatError::Api {
        errcode,
        errmsg: "x".into(),
    };
    let cases = [
        (
            api(40029),
            ApiError::InvalidCode {
                wechat_errcode: 40029,
            },
        ),
        (
            api(40163),
            ApiError::InvalidCode {
                wechat_errcode: 40163,
            },
        ),
        (
            api(40226),
            ApiError::CodeBlocked {
                wechat_errcode: 40226,
            },
        ),
        (
            api(45011),
            ApiError::RateLimited {
                retry_after_secs: 60,
                wechat_errcode: Some(45011),
            },
        ),
        (
            api(-1),
            ApiError::WechatUnavailable {
                wechat_errcode: Some(-1),
            },
        ),
        (
            api(40013),
            ApiError::WechatError {
                wechat_errcode: Some(40013),
            },
        ),
        (
            api(48001),
            ApiError::WechatError {
                wechat_errcode: Some(48001),
            },
        ),
        (WechatError::Timeout, ApiError::WechatTimeout),
        (
            WechatError::Transport("refused".into()),
            ApiError::WechatError {
                wechat_errcode: None,
            },
        ),
        (
            WechatError::HttpStatus(502),
            ApiError::WechatError {
                wechat_errcode: None,
            },
        ),
        (
            WechatError::BadReply("x"),
            ApiError::WechatError {
                wechat_errcode: None,
            },
        ),
        (WechatError::Setup("x".into()), ApiError::Internal),
    ];
    for (wechat, api) in cases {
        assert_eq!(ApiError::from(&wechat), api, "{wechat:?}");
        assert_eq!(ApiError::from(wechat), api);
    }
}

#[test]
fn parse_success() {
    let r = parse_reply(br#"{"openid":"oA","session_key":"c2s=","unionid":"uA"}"#).unwrap();
    assert_eq!(r.openid, "oA");
    assert_eq!(r.session_key.expose(), b"c2s=");
    assert_eq!(r.unionid.as_deref(), Some("uA"));
    assert!(!format!("{r:?}").contains("c2s="));
}

#[test]
fn parse_success_without_unionid_and_with_errcode_zero() {
    let r = parse_reply(br#"{"session_key":"k","openid":"oB"}"#).unwrap();
    assert_eq!(r.unionid, None);
    let r = parse_reply(
        br#"{"errcode":0,"errmsg":"ok","session_key":"k","openid":"oC","unionid":"","extra":[1]}"#,
    )
    .unwrap();
    assert_eq!(r.openid, "oC");
    assert_eq!(r.unionid, None);
}

#[test]
fn parse_failures() {
    assert_eq!(
        parse_reply(br#"{"session_key":"k"}"#).unwrap_err(),
        WechatError::BadReply("openid missing")
    );
    assert_eq!(
        parse_reply(br#"{"openid":"o","session_key":""}"#).unwrap_err(),
        WechatError::BadReply("session_key missing")
    );
    assert_eq!(
        parse_reply(br#"{"errcode":0}"#).unwrap_err(),
        WechatError::BadReply("openid missing")
    );
    for body in [
        &b"<html>oops</html>"[..],
        b"",
        b"[]",
        b"null",
        br#"{"errcode":"x"}"#,
    ] {
        assert!(matches!(parse_reply(body), Err(WechatError::BadReply(_))));
    }
    assert_eq!(
        parse_reply(br#"{"errcode":40029,"errmsg":"invalid code, rid: 1"}"#).unwrap_err(),
        WechatError::Api {
            errcode: 40029,
            errmsg: "invalid code, rid: 1".into()
        }
    );
    assert_eq!(
        parse_reply(br#"{"errcode":-1}"#).unwrap_err(),
        WechatError::Api {
            errcode: -1,
            errmsg: String::new()
        }
    );
}

#[test]
fn ids_that_cannot_be_header_values_are_refused() {
    let ok = "o".repeat(MAX_ID_BYTES);
    // JSON string literals, as WeChat would send them.
    let long = format!("\"{}\"", "o".repeat(MAX_ID_BYTES + 1));
    for (openid, unionid) in [
        (r#""o\r\nX-Admin: 1""#, r#""u""#),
        (r#""o\n""#, r#""u""#),
        (r#""o p""#, r#""u""#),
        (r#""o\u0000""#, r#""u""#),
        (r#""o\u00e9""#, r#""u""#),
        (long.as_str(), r#""u""#),
        (r#""o""#, r#""u\r\n""#),
        (r#""o""#, r#""u\u007f""#),
    ] {
        let body = format!(r#"{{"openid":{openid},"session_key":"k","unionid":{unionid}}}"#);
        let err = parse_reply(body.as_bytes()).unwrap_err();
        assert!(
            matches!(err, WechatError::BadReply(m) if m.contains("plausible")),
            "{body}: {err:?}"
        );
        assert_eq!(
            ApiError::from(&err),
            ApiError::WechatError {
                wechat_errcode: None
            }
        );
    }
    let body = format!(r#"{{"openid":"{ok}","session_key":"k","unionid":"{ok}"}}"#);
    let r = parse_reply(body.as_bytes()).unwrap();
    assert_eq!(r.openid, ok);
}

#[test]
fn a_stable_token_reply() {
    let t = parse_stable_token(br#"{"access_token":"AT-1","expires_in":7200}"#).unwrap();
    assert_eq!(t.token.expose_str(), Some("AT-1"));
    assert_eq!(t.expires_in, 7200);
    let e = parse_stable_token(br#"{"errcode":40013,"errmsg":"invalid appid"}"#).unwrap_err();
    assert_eq!(e.errcode(), Some(40013));
    for bad in [
        &br#"{"expires_in":7200}"#[..],
        br#"{"access_token":"","expires_in":7200}"#,
        br#"{"access_token":"a b","expires_in":7200}"#,
        br#"{"access_token":"AT","expires_in":0}"#,
        br#"{"access_token":"AT"}"#,
        b"<html>",
    ] {
        assert!(
            parse_stable_token(bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn a_phone_reply_with_a_string_or_numeric_country_code() {
    for cc in [r#""86""#, "86"] {
        let body = format!(
            r#"{{"errcode":0,"errmsg":"ok","phone_info":{{"phoneNumber":"13800138000","purePhoneNumber":"13800138000","countryCode":{cc},"watermark":{{"timestamp":1700000000,"appid":"wxapp"}}}}}}"#
        );
        let p = parse_phone(body.as_bytes(), "wxapp").unwrap();
        assert_eq!(
            p,
            PhoneNumber {
                phone_number: "13800138000".into(),
                pure_phone_number: "13800138000".into(),
                country_code: "86".into(),
            }
        );
    }
}

#[test]
fn a_phone_reply_for_another_app_or_malformed_is_refused() {
    let ok = |appid: &str, number: &str| {
        format!(
            r#"{{"phone_info":{{"phoneNumber":"{number}","purePhoneNumber":"138","countryCode":"86","watermark":{{"appid":"{appid}"}}}}}}"#
        )
    };
    assert!(parse_phone(ok("wxother", "138").as_bytes(), "wxapp").is_err());
    assert!(parse_phone(ok("wxapp", "138\\r\\nX: y").as_bytes(), "wxapp").is_err());
    assert!(parse_phone(ok("wxapp", "").as_bytes(), "wxapp").is_err());
    assert!(parse_phone(br#"{"errcode":0}"#, "wxapp").is_err());
    let used = parse_phone(br#"{"errcode":40029,"errmsg":"invalid code"}"#, "wxapp");
    assert_eq!(used.unwrap_err().errcode(), Some(40029));
}
