//! The raw version of header hygiene against the map version: for any
//! request, the upstream sees the same headers (names compared lower-cased,
//! values and counts exact; the order may differ).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::HeaderValue;
use pingora_http::RequestHeader;
use proptest::prelude::*;

use super::super::tests::{headers_config, ident};
use super::*;

/// Names a client might send: hop-by-hop, look-alikes in several
/// spellings, framing, owned namespaces and plain ones.
const NAMES: &[&str] = &[
    "Host",
    "host",
    "Content-Length",
    "Connection",
    "connection",
    "Keep-Alive",
    "Proxy-Connection",
    "TE",
    "Trailer",
    "Upgrade",
    "Proxy-Authorization",
    "Forwarded",
    "Authorization",
    "X-OpenID",
    "x_openid",
    "X-OPENID",
    "X-UnionID",
    "X-WX-AppID",
    "X-WX-Source",
    "x_wx_openid",
    "X-WXGate-Anything",
    "X-Forwarded-For",
    "X_Forwarded_Host",
    "X-Forwarded-Proto",
    "X-Real-IP",
    "True-Client-IP",
    "CF-Connecting-IP",
    "X-Original-Forwarded-For",
    "X-User-ID",
    "X-User-Roles",
    "Accept",
    "User-Agent",
    "X-Custom",
    "x-custom",
    "X-A-Very-Long-Header-Name-That-Is-Longer-Than-Sixty-Four-Bytes-In-All-Of-It",
];

/// Values, including `Connection` lists naming other headers.
const VALUES: &[&str] = &[
    "",
    "1",
    "close",
    "keep-alive",
    "Upgrade",
    "x-custom",
    "X-Custom, Accept",
    "close, x-openid",
    " , host,Content-Length , te",
    "User-Agent,,Authorization",
    "Bearer abc",
    "203.0.113.9",
    "example.com",
];

fn fields() -> impl Strategy<Value = Vec<(usize, usize)>> {
    prop::collection::vec((0..NAMES.len(), 0..VALUES.len()), 0..14)
}

fn client_info() -> impl Strategy<Value = ClientInfo> {
    (
        prop_oneof![
            Just(None),
            Just(Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)))),
            Just(Some(IpAddr::V6(Ipv6Addr::new(
                0x2001, 0xdb8, 0, 0, 0, 0, 0, 1
            )))),
            Just(Some(IpAddr::V6(Ipv6Addr::new(
                0, 0, 0, 0, 0, 0xffff, 0xffff, 0xffff
            )))),
        ],
        any::<bool>(),
    )
        .prop_map(|(ip, https)| ClientInfo { ip, https })
}

/// What the map version leaves, lower-cased and sorted.
fn by_map(
    policy: &HeaderPolicy,
    f: &[(usize, usize)],
    client: ClientInfo,
    id: Option<&IdentityValues>,
) -> Vec<(String, Vec<u8>)> {
    let mut req = RequestHeader::build("GET", b"/", None).unwrap();
    for &(n, v) in f {
        req.append_header(NAMES[n], HeaderValue::from_static(VALUES[v]))
            .unwrap();
    }
    policy.sanitize(&mut req, client);
    if let Some(id) = id {
        policy.inject(&mut req, id);
    }
    let mut out: Vec<(String, Vec<u8>)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    out.sort();
    out
}

/// What the raw version writes, read back the same way.
fn by_raw(
    policy: &HeaderPolicy,
    f: &[(usize, usize)],
    client: ClientInfo,
    id: Option<&IdentityValues>,
) -> Vec<(String, Vec<u8>)> {
    let connection: Vec<&[u8]> = f
        .iter()
        .filter(|&&(n, _)| NAMES[n].eq_ignore_ascii_case("connection"))
        .map(|&(_, v)| VALUES[v].as_bytes())
        .collect();
    let host = f
        .iter()
        .find(|&&(n, _)| NAMES[n].eq_ignore_ascii_case("host"))
        .map(|&(_, v)| VALUES[v].as_bytes());
    let mut out = Vec::new();
    for &(n, v) in f {
        if policy.keeps(NAMES[n].as_bytes(), connection.iter().copied()) {
            line(&mut out, NAMES[n].as_bytes(), VALUES[v].as_bytes());
        }
    }
    policy.write_set(client, host, &mut out);
    if let Some(id) = id {
        policy.write_identity(id, &mut out);
    }
    let text = String::from_utf8(out).unwrap();
    let mut read: Vec<(String, Vec<u8>)> = text
        .split_terminator("\r\n")
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap();
            (k.to_ascii_lowercase(), v.as_bytes().to_vec())
        })
        .collect();
    read.sort();
    read
}

proptest! {
    #![proptest_config(crate::testing::proptest_config())]

    #[test]
    fn raw_and_map_hygiene_leave_the_same_headers(
        f in fields(),
        client in client_info(),
        forward_authorization in any::<bool>(),
        with_identity in any::<bool>(),
    ) {
        let policy = HeaderPolicy::new(&headers_config(forward_authorization));
        let values = policy
            .identity_values(&ident("o-1", Some("u-1"), Some("wx-app")))
            .unwrap();
        let id = with_identity.then_some(&values);
        prop_assert_eq!(by_map(&policy, &f, client, id), by_raw(&policy, &f, client, id));
    }
}

#[test]
fn ip_text_is_written_without_allocating() {
    let mut t = IpText::default();
    assert_eq!(t.of("203.0.113.7".parse().unwrap()), b"203.0.113.7");
    assert_eq!(
        t.of("::ffff:255.255.255.255".parse().unwrap()),
        b"::ffff:255.255.255.255"
    );
}
