//! Property tests for header hygiene: whatever a client sends, after
//! `sanitize` + `inject` the upstream sees exactly the headers a small,
//! independent model of the rules predicts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

use super::*;

fn config() -> ProptestConfig {
    crate::testing::proptest_config()
}

use super::tests::{headers_config, ident};

/// Identity headers: lower-case name, wire spelling.
const IDENTITY: [(&str, &str); 3] = [
    ("x-openid", "X-OpenID"),
    ("x-unionid", "X-UnionID"),
    ("x-wx-appid", "X-WX-AppID"),
];

/// Names whose client copies never survive, in any `_`/`-` spelling.
const SPOOFABLE: &[&str] = &[
    "x-openid",
    "x-unionid",
    "x-wx-appid",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "forwarded",
    "true-client-ip",
    "x-client-ip",
    "cf-connecting-ip",
    "x-original-url",
    "x-rewrite-url",
    "x-original-forwarded-for",
];

/// Namespaces whose client headers never survive, in any spelling.
const OWNED: &[&str] = &["x-wx-", "x-wxgate-"];

const HOP_BY_HOP_NAMES: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "forwarded",
];

const FRAMING_NAMES: &[&str] = &["host", "content-length", "transfer-encoding"];

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

const NAMES: &[&str] = &[
    "X-OpenID",
    "X-UnionID",
    "X-WX-AppID",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Real-IP",
    "Forwarded",
    "True-Client-IP",
    "X-Client-IP",
    "CF-Connecting-IP",
    "X-Original-URL",
    "X-Rewrite-URL",
    "Connection",
    "Connection",
    "Keep-Alive",
    "Proxy-Connection",
    "TE",
    "Trailer",
    "Upgrade",
    "Upgrade",
    "Proxy-Authorization",
    "Authorization",
    "Host",
    "Content-Length",
    "Transfer-Encoding",
    "Accept",
    "X-Custom",
    "Cookie",
    "X-OpenID-Hint",
    "X-Open-ID",
    "OpenID",
    "X-OpenIDs",
    "X-WX-App-ID",
    "X-WX-OPENID",
    "X-WXGate-Assertion",
    "X-WXApp",
    "X-WX",
    "X-Original-Forwarded-For",
    "Sec-WebSocket-Key",
    "HTTP2-Settings",
];

/// A header name, often a known one in a mangled spelling.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (prop::sample::select(NAMES), any::<u32>(), any::<u32>(), any::<bool>()).prop_map(
            |(base, case_bits, dash_bits, mangle)| {
                base.chars()
                    .enumerate()
                    .map(|(i, c)| {
                        let bit = |bits: u32| mangle && ((bits >> (i % 32)) & 1) == 1;
                        match c {
                            '-' if bit(dash_bits) => '_',
                            c if bit(case_bits) && c.is_ascii_uppercase() => c.to_ascii_lowercase(),
                            c if bit(case_bits) => c.to_ascii_uppercase(),
                            c => c,
                        }
                    })
                    .collect()
            }
        ),
        1 => "[a-zA-Z0-9_-]{1,12}",
    ]
}

/// A header value: `Connection`-style token lists naming other headers,
/// upgrade words, addresses, or printable junk.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "websocket",
            "WebSocket",
            "upgrade",
            "Upgrade",
            "close",
            "keep-alive",
            "Keep-Alive, Upgrade",
            "upgrade, X-OpenID",
            "Upgrade, x_openid, X-Custom",
            "X-Forwarded-For, x-real-ip",
            "host, content-length, transfer-encoding",
            "TE, Trailer, Cookie",
            "authorization",
            "X-WX-AppID,X-UnionID",
            "x_wx_appid",
            "accept",
            "SPOOF",
            "1.2.3.4",
            "for=1.2.3.4;proto=https",
            "chunked",
            "10",
            "",
            " , ,",
            "h2c",
            "Bearer x.y.z",
        ])
        .prop_map(str::to_string),
        1 => "[ -~]{0,16}",
    ]
}

fn client() -> impl Strategy<Value = ClientInfo> {
    let ip = prop_oneof![
        3 => any::<u32>().prop_map(|v| Some(IpAddr::V4(Ipv4Addr::from(v)))),
        1 => any::<u128>().prop_map(|v| Some(IpAddr::V6(Ipv6Addr::from(v)))),
        1 => Just(None),
    ];
    (ip, any::<bool>()).prop_map(|(ip, https)| ClientInfo { ip, https })
}

#[derive(Debug, Clone)]
struct Case {
    method: &'static str,
    headers: Vec<(String, String)>,
    client: ClientInfo,
    forward_authorization: bool,
    openid: String,
    unionid: Option<String>,
    appid: Option<String>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::sample::select(vec!["GET", "GET", "POST", "PUT"]),
        prop::collection::vec((name(), value()), 0..14),
        client(),
        any::<bool>(),
        "[A-Za-z0-9_-]{1,28}",
        prop::option::of("[A-Za-z0-9_-]{1,28}"),
        prop::option::of("wx[0-9a-f]{16}"),
    )
        .prop_map(
            |(method, headers, client, forward_authorization, openid, unionid, appid)| Case {
                method,
                headers,
                client,
                forward_authorization,
                openid,
                unionid,
                appid,
            },
        )
}

// ---------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------

/// Lower-case, `_` read as `-`.
fn norm(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

fn values_of<'a>(headers: &'a [(String, String)], lname: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(lname))
        .map(|(_, v)| v.as_str())
        .collect()
}

fn tokens(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim)
}

fn is_websocket(case: &Case) -> bool {
    case.method == "GET"
        && values_of(&case.headers, "upgrade")
            .first()
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
        && values_of(&case.headers, "connection")
            .iter()
            .any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case("upgrade")))
}

/// Lower-case names the client's `Connection` headers ask to remove.
fn connection_named(case: &Case) -> BTreeSet<String> {
    values_of(&case.headers, "connection")
        .iter()
        .flat_map(|v| tokens(v))
        .filter(|t| {
            !t.is_empty()
                && !["close", "keep-alive", "upgrade"]
                    .iter()
                    .any(|k| t.eq_ignore_ascii_case(k))
        })
        .filter(|t| HeaderName::from_bytes(t.as_bytes()).is_ok())
        .map(str::to_ascii_lowercase)
        .filter(|t| !FRAMING_NAMES.contains(&t.as_str()))
        .collect()
}

type Headers = BTreeMap<String, Vec<String>>;

/// What the upstream should see: lower-case name → values in order.
fn expected(case: &Case) -> Headers {
    let websocket = is_websocket(case);
    let named = connection_named(case);
    let mut out = Headers::new();
    for (name, value) in &case.headers {
        let lname = name.to_ascii_lowercase();
        let dropped = SPOOFABLE.contains(&norm(name).as_str())
            || OWNED.iter().any(|p| norm(name).starts_with(p))
            || named.contains(&lname)
            || (HOP_BY_HOP_NAMES.contains(&lname.as_str()) && !(websocket && lname == "upgrade"))
            || (lname == "authorization" && !case.forward_authorization);
        if !dropped {
            out.entry(lname).or_default().push(value.clone());
        }
    }
    let mut set = |name: &str, value: String| {
        out.insert(name.to_string(), vec![value]);
    };
    if websocket {
        set("connection", "upgrade".into());
    }
    if let Some(ip) = case.client.ip {
        set("x-real-ip", ip.to_string());
        set("x-forwarded-for", ip.to_string());
    }
    set(
        "x-forwarded-proto",
        if case.client.https { "https" } else { "http" }.into(),
    );
    if let Some(host) = values_of(&case.headers, "host").first() {
        set("x-forwarded-host", host.to_string());
    }
    set("x-openid", case.openid.clone());
    if let Some(u) = &case.unionid {
        set("x-unionid", u.clone());
    }
    if let Some(a) = &case.appid {
        set("x-wx-appid", a.clone());
    }
    out
}

/// Build the request, run `sanitize` and `inject`.
fn run(case: &Case) -> RequestHeader {
    let mut req = RequestHeader::build(case.method, b"/x", None).unwrap();
    for (name, value) in &case.headers {
        req.append_header(name.clone(), value.as_str()).unwrap();
    }
    let policy = HeaderPolicy::new(&headers_config(case.forward_authorization));
    policy.sanitize(&mut req, case.client);
    let id = policy
        .identity_values(&ident(
            &case.openid,
            case.unionid.as_deref(),
            case.appid.as_deref(),
        ))
        .unwrap();
    policy.inject(&mut req, &id);
    req
}

fn actual(req: &RequestHeader) -> Headers {
    let mut out = Headers::new();
    for (name, value) in &req.headers {
        out.entry(name.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    out
}

/// The HTTP/1 wire form: (name as spelled, value) per line.
fn wire(req: &RequestHeader) -> Vec<(String, String)> {
    let mut buf = Vec::new();
    req.header_to_h1_wire(&mut buf);
    String::from_utf8(buf)
        .unwrap()
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(": ").unwrap_or((l, ""));
            (n.to_string(), v.to_string())
        })
        .collect()
}

/// Every property, checked one by one (the full model comparison last, so
/// a failure names the rule that broke).
fn check(case: &Case) -> Result<(), TestCaseError> {
    let req = run(case);
    let got = actual(&req);
    let websocket = is_websocket(case);

    // No hop-by-hop header survives, except a WebSocket upgrade's.
    for hop in HOP_BY_HOP_NAMES {
        let allowed = websocket && (*hop == "upgrade" || *hop == "connection");
        prop_assert!(allowed || !got.contains_key(*hop), "{hop} survived");
    }
    if websocket {
        prop_assert_eq!(got.get("connection"), Some(&vec!["upgrade".to_string()]));
    }
    // No client header that could pass for one wxgate sets survives, in any
    // spelling: the only ones left are exactly wxgate's.
    for (name, values) in &got {
        if SPOOFABLE.contains(&norm(name).as_str()) {
            prop_assert!(
                SPOOFABLE.contains(&name.as_str()),
                "look-alike {name} survived"
            );
            prop_assert_eq!(values.len(), 1, "{} has {:?}", name, values);
        }
    }
    for strip in DEFAULT_STRIP {
        prop_assert!(!got.contains_key(&norm(strip)), "{strip} survived");
    }
    prop_assert!(!got.contains_key("forwarded"));
    // X-Forwarded-For and X-Real-IP are exactly the client address.
    match case.client.ip {
        Some(ip) => {
            for h in ["x-forwarded-for", "x-real-ip"] {
                prop_assert_eq!(got.get(h), Some(&vec![ip.to_string()]), "{}", h);
            }
        }
        None => {
            prop_assert!(!got.contains_key("x-forwarded-for"));
            prop_assert!(!got.contains_key("x-real-ip"));
        }
    }
    // The identity headers appear once, with the injected values.
    let injected = [
        Some(&case.openid),
        case.unionid.as_ref(),
        case.appid.as_ref(),
    ];
    for ((lname, _), want) in IDENTITY.iter().zip(injected) {
        let want = want.map(|w| vec![w.clone()]);
        prop_assert_eq!(got.get(*lname), want.as_ref(), "{}", lname);
    }
    // Framing headers are untouched.
    for f in FRAMING_NAMES {
        let before: Vec<String> = values_of(&case.headers, f)
            .into_iter()
            .map(str::to_string)
            .collect();
        prop_assert_eq!(got.get(*f).cloned().unwrap_or_default(), before, "{}", f);
    }
    if !case.forward_authorization {
        prop_assert!(!got.contains_key("authorization"));
    }

    // On the wire (header case preserved): the same headers, the identity
    // headers spelled as configured, once each.
    let lines = wire(&req);
    let mut from_wire = Headers::new();
    for (n, v) in &lines {
        from_wire
            .entry(n.to_ascii_lowercase())
            .or_default()
            .push(v.clone());
    }
    prop_assert_eq!(&from_wire, &got, "wire and header map disagree");
    for ((lname, spelling), want) in IDENTITY.iter().zip(injected) {
        let on_wire: Vec<&(String, String)> =
            lines.iter().filter(|(n, _)| norm(n) == *lname).collect();
        match want {
            Some(w) => {
                prop_assert_eq!(on_wire.len(), 1, "{} on the wire: {:?}", lname, on_wire);
                prop_assert_eq!(&on_wire[0].0, spelling);
                prop_assert_eq!(&on_wire[0].1, w);
            }
            None => prop_assert!(on_wire.is_empty(), "{lname} on the wire: {on_wire:?}"),
        }
    }

    // Nothing else is removed or added.
    prop_assert_eq!(got, expected(case));
    Ok(())
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn sanitize_and_inject_leave_exactly_the_model(case in case()) {
        check(&case)?;
    }

    /// Requests that almost are WebSocket upgrades (and some that are).
    #[test]
    fn websocket_lookalikes_follow_the_model(
        upgrade in prop::sample::select(vec!["websocket", "WebSocket", "h2c", "websocket, h2c", ""]),
        connection in prop::sample::select(vec![
            "Upgrade", "upgrade, keep-alive", "keep-alive", "Upgrade, X-OpenID", "close, TE",
        ]),
        method in prop::sample::select(vec!["GET", "POST"]),
        rest in prop::collection::vec((name(), value()), 0..6),
        openid in "[A-Za-z0-9]{1,12}",
    ) {
        let mut headers = vec![
            ("Upgrade".to_string(), upgrade.to_string()),
            ("Connection".to_string(), connection.to_string()),
        ];
        headers.extend(rest);
        check(&Case {
            method,
            headers,
            client: ClientInfo { ip: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))), https: true },
            forward_authorization: false,
            openid,
            unionid: None,
            appid: None,
        })?;
    }
}

// ---------------------------------------------------------------------------
// Fixed hostile corpus
// ---------------------------------------------------------------------------

fn fixed(method: &'static str, headers: &[(&str, &str)]) -> Case {
    Case {
        method,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        client: ClientInfo {
            ip: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))),
            https: false,
        },
        forward_authorization: false,
        openid: "o-real".into(),
        unionid: Some("u-real".into()),
        appid: None,
    }
}

#[test]
fn corpus_of_spoofing_attempts_follows_the_model() {
    let cases = [
        fixed(
            "GET",
            &[
                ("X-OpenID", "o-spoof"),
                ("x_openid", "o-spoof"),
                ("X_OPENID", "o-spoof"),
                ("x-OpenId", "o-spoof"),
            ],
        ),
        fixed("GET", &[("X_WX_AppID", "wx-spoof"), ("x-wx_appid", "wx")]),
        fixed(
            "GET",
            &[
                ("Connection", "X-OpenID, host, content-length"),
                ("Host", "h"),
                ("Content-Length", "3"),
            ],
        ),
        fixed(
            "GET",
            &[
                ("Connection", "x_real_ip, X-Forwarded-For"),
                ("X-Real-IP", "1.1.1.1"),
                ("x_forwarded_for", "2.2.2.2"),
            ],
        ),
        fixed(
            "GET",
            &[
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade, Authorization, Cookie"),
                ("Cookie", "c"),
                ("Authorization", "Bearer t"),
            ],
        ),
        fixed(
            "POST",
            &[("Upgrade", "websocket"), ("Connection", "upgrade")],
        ),
        fixed(
            "GET",
            &[
                ("Upgrade", "h2c"),
                ("Upgrade", "websocket"),
                ("Connection", "upgrade"),
            ],
        ),
        fixed(
            "GET",
            &[
                ("Upgrade", "websocket"),
                ("Upgrade", "h2c"),
                ("Connection", "upgrade"),
            ],
        ),
        fixed(
            "GET",
            &[
                ("Forwarded", "for=1.2.3.4"),
                ("Proxy-Authorization", "Basic x"),
                ("TE", "trailers"),
                ("Trailer", "X-OpenID"),
                ("Keep-Alive", "timeout=5"),
                ("Proxy-Connection", "keep-alive"),
            ],
        ),
        fixed(
            "GET",
            &[
                ("True-Client-IP", "1.1.1.1"),
                ("true_client_ip", "1.1.1.1"),
                ("CF_Connecting_IP", "1.1.1.1"),
                ("X-Original-URL", "/admin"),
                ("x_rewrite_url", "/admin"),
                ("X-Client-IP", "1.1.1.1"),
            ],
        ),
        fixed(
            "GET",
            &[
                ("Transfer-Encoding", "chunked"),
                ("Transfer-Encoding", "identity"),
                ("Connection", "Transfer-Encoding"),
            ],
        ),
        fixed("GET", &[("Connection", ",,, ,"), ("Connection", "close")]),
    ];
    for case in &cases {
        if let Err(e) = check(case) {
            panic!("{case:?}: {e}");
        }
    }
}
