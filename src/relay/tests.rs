#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

/// A gateway state from `extra` config sections, one required route.
fn state(extra: &str) -> GatewayState {
    let config = crate::testing::config(extra, &[("/", "required")]);
    let deps = crate::state::Deps::from_config(&config).unwrap();
    GatewayState::new(&config, deps).unwrap()
}

const WECHAT: &str = "[wechat]\nappid = \"wxtestapp0000001\"\nsecret_env = \"WECHAT\"\n\n[login]\nmax_body_bytes = 2048\n";

/// The relay's decision for `head` to `ep`: `Some(true)` answered here,
/// `Some(false)` refused here, `None` left to Pingora.
fn served(state: &GatewayState, ep: Endpoint, head: &[u8]) -> Option<bool> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let Parsed::Relay(head) = head::parse(head, &mut fields) else {
        panic!("not a head the relay takes");
    };
    match endpoint_action(state, ep, &head, None)? {
        Action::Endpoint(e, kind, _) => {
            assert_eq!(e, ep);
            Some(kind.is_ok())
        }
        _ => panic!("not an endpoint action"),
    }
}

#[test]
fn login_and_refresh_posts_within_the_limit_are_answered_here() {
    let s = state(WECHAT);
    let post = |len: usize, ct: &str| {
        format!("POST /wx/login HTTP/1.1\r\nHost: a\r\n{ct}Content-Length: {len}\r\n\r\n")
    };
    let json = "Content-Type: application/json\r\n";
    assert_eq!(
        served(&s, Endpoint::Login, post(20, json).as_bytes()),
        Some(true)
    );
    assert_eq!(
        served(&s, Endpoint::Login, post(20, "").as_bytes()),
        Some(true)
    );
    assert_eq!(
        served(&s, Endpoint::Refresh, post(2048, json).as_bytes()),
        Some(true)
    );
    // A content type no endpoint reads: refused here (415).
    let text = post(20, "Content-Type: text/plain\r\n");
    assert_eq!(served(&s, Endpoint::Login, text.as_bytes()), Some(false));
    // Over the limit, another method, another endpoint: Pingora's.
    assert_eq!(
        served(&s, Endpoint::Login, post(2049, json).as_bytes()),
        None
    );
    let get = b"GET /wx/login HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(served(&s, Endpoint::Login, get), None);
    assert_eq!(
        served(&s, Endpoint::Logout, post(20, json).as_bytes()),
        None
    );
    assert_eq!(
        served(&s, Endpoint::Decrypt, post(20, json).as_bytes()),
        None
    );
}

#[test]
fn without_logins_every_endpoint_is_pingoras() {
    let s = state("");
    let post = b"POST /wx/login HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n";
    assert_eq!(served(&s, Endpoint::Login, post), None);
}
