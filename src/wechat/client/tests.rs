#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use super::*;

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
