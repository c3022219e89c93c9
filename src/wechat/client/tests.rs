#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

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
fn url_encodes_every_parameter() {
    let base = base_url("https://api.example/", "wx a&b", "s=e+c r/t").unwrap();
    let url = url_for(&base, "c+o=d&e f%");
    assert_eq!(
        url.as_str(),
        "https://api.example/sns/jscode2session?appid=wx+a%26b&secret=s%3De%2Bc+r%2Ft\
         &js_code=c%2Bo%3Dd%26e+f%25&grant_type=authorization_code"
    );
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(
        pairs,
        [
            ("appid", "wx a&b"),
            ("secret", "s=e+c r/t"),
            ("js_code", "c+o=d&e f%"),
            ("grant_type", "authorization_code"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    assert_eq!(
        url_for(&base_url("http://127.0.0.1:1", "a", "b").unwrap(), "c").as_str(),
        "http://127.0.0.1:1/sns/jscode2session?appid=a&secret=b&js_code=c&grant_type=authorization_code"
    );
    // The base is checked once, when the client is built.
    for bad in [
        "not a url",
        "ftp://example.com",
        "mailto:x@example.com",
        "http://[::1",
    ] {
        assert!(
            matches!(base_url(bad, "a", "b"), Err(WechatError::Setup(_))),
            "{bad}"
        );
    }
}

#[test]
fn fingerprint_is_short_and_stable() {
    let f = code_fingerprint("081abcDEF");
    assert_eq!(f.len(), 8);
    assert_eq!(f, code_fingerprint("081abcDEF"));
    assert_ne!(f, code_fingerprint("081abcDEG"));
}

#[test]
fn new_rejects_bad_base_and_hides_secret() {
    let bad = WechatClient::new("not a url", "wx", Secret::from("s"), Duration::from_secs(1));
    assert!(matches!(bad, Err(WechatError::Setup(_))));
    let c = WechatClient::new(
        "http://127.0.0.1:1",
        "wx",
        Secret::from("topsecret"),
        Duration::from_secs(1),
    )
    .unwrap();
    assert!(!format!("{c:?}").contains("topsecret"));
}

#[tokio::test]
async fn transport_errors_do_not_leak_the_secret() {
    // Port 1 on loopback: connection refused.
    let c = WechatClient::new(
        "http://127.0.0.1:1",
        "wx",
        Secret::from("topsecret"),
        Duration::from_secs(2),
    )
    .unwrap();
    let e = c.code2session("abc").await.unwrap_err();
    assert!(matches!(e, WechatError::Transport(_)), "{e:?}");
    assert!(!e.to_string().contains("topsecret"), "{e}");
    assert!(!format!("{e:?}").contains("topsecret"));
}
