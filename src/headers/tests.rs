use super::*;

use std::net::Ipv4Addr;

pub(super) fn headers_config(forward_authorization: bool) -> HeadersConfig {
    HeadersConfig {
        openid: IdentityHeaderName::parse("X-OpenID").unwrap(),
        unionid: IdentityHeaderName::parse("X-UnionID").unwrap(),
        appid: IdentityHeaderName::parse("X-WX-AppID").unwrap(),
        user_id: IdentityHeaderName::parse("X-User-ID").unwrap(),
        user_roles: IdentityHeaderName::parse("X-User-Roles").unwrap(),
        forward_authorization,
        strip: DEFAULT_STRIP
            .iter()
            .map(|n| IdentityHeaderName::parse(n).unwrap())
            .collect(),
        claims: Vec::new(),
        cloud_run: false,
    }
}

/// A verified identity with these ids and nothing from a login hook.
pub(super) fn ident(openid: &str, unionid: Option<&str>, appid: Option<&str>) -> Identity {
    Identity {
        openid: openid.to_string(),
        unionid: unionid.map(str::to_string),
        appid: appid.map(str::to_string),
        jti: None,
        family: None,
        exp: 0,
        iat: None,
        issued_ms: 0,
        user: crate::token::UserClaims::default(),
    }
}

fn policy() -> HeaderPolicy {
    HeaderPolicy::new(&headers_config(false))
}

const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));

fn client() -> ClientInfo {
    ClientInfo {
        ip: Some(CLIENT_IP),
        https: false,
    }
}

fn request(method: &str, headers: &[(&'static str, &str)]) -> RequestHeader {
    let mut req = RequestHeader::build(method, b"/x", None).unwrap();
    for (name, value) in headers {
        req.append_header(*name, *value).unwrap();
    }
    req
}

fn get(headers: &[(&'static str, &str)]) -> RequestHeader {
    request("GET", headers)
}

fn sanitized(headers: &[(&'static str, &str)]) -> RequestHeader {
    let mut req = get(headers);
    policy().sanitize(&mut req, client());
    req
}

/// Every value of a header, as strings.
fn values(req: &RequestHeader, name: &str) -> Vec<String> {
    req.headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

fn has(req: &RequestHeader, name: &str) -> bool {
    req.headers.contains_key(name)
}

/// The headers as an HTTP/1 upstream would receive them.
fn wire(req: &RequestHeader) -> String {
    let mut buf = Vec::new();
    req.header_to_h1_wire(&mut buf);
    String::from_utf8(buf).unwrap()
}

// ---------------------------------------------------------------------------
// Spoofed identity headers
// ---------------------------------------------------------------------------

#[test]
fn openid_spellings_are_all_removed() {
    for name in [
        "X-OpenID", "x-openid", "X_OpenID", "x_openid", "X-Openid", "X_OPENID",
    ] {
        let req = sanitized(&[(name, "o-spoofed"), ("Accept", "*/*")]);
        assert!(!has(&req, "x-openid"), "{name}");
        assert!(!has(&req, "x_openid"), "{name}");
        assert!(
            !wire(&req).to_ascii_lowercase().contains("openid"),
            "{name}"
        );
        assert_eq!(values(&req, "accept"), ["*/*"], "{name}");
    }
}

#[test]
fn all_openid_spellings_at_once_are_removed() {
    let req = sanitized(&[
        ("X-OpenID", "a"),
        ("x-openid", "b"),
        ("X_OpenID", "c"),
        ("x_openid", "d"),
        ("X-Openid", "e"),
    ]);
    assert!(!wire(&req).to_ascii_lowercase().contains("openid"));
}

#[test]
fn unionid_spellings_are_all_removed() {
    for name in [
        "X-UnionID",
        "x-unionid",
        "X_UnionID",
        "x_unionid",
        "X-Unionid",
    ] {
        let req = sanitized(&[(name, "u-spoofed")]);
        assert!(!has(&req, "x-unionid"), "{name}");
        assert!(!has(&req, "x_unionid"), "{name}");
        assert!(
            !wire(&req).to_ascii_lowercase().contains("unionid"),
            "{name}"
        );
    }
}

#[test]
fn appid_spellings_are_all_removed() {
    for name in [
        "X-WX-AppID",
        "x-wx-appid",
        "X_WX_AppID",
        "x_wx_appid",
        "X-Wx-Appid",
        "X_WX-AppID",
        "x-wx_appid",
    ] {
        let req = sanitized(&[(name, "wx-spoofed")]);
        assert!(!wire(&req).to_ascii_lowercase().contains("appid"), "{name}");
    }
}

#[test]
fn similar_but_different_names_are_kept() {
    let req = sanitized(&[
        ("X-OpenIDs", "1"),
        ("X-Open-ID", "2"),
        ("X-OpenID-Hint", "3"),
        ("OpenID", "4"),
        ("X-WXApp-ID", "5"),
        ("X-WX", "6"),
    ]);
    assert_eq!(values(&req, "x-openids"), ["1"]);
    assert_eq!(values(&req, "x-open-id"), ["2"]);
    assert_eq!(values(&req, "x-openid-hint"), ["3"]);
    assert_eq!(values(&req, "openid"), ["4"]);
    // Next to the X-WX- namespace, not in it.
    assert_eq!(values(&req, "x-wxapp-id"), ["5"]);
    assert_eq!(values(&req, "x-wx"), ["6"]);
}

#[test]
fn the_x_wx_and_x_wxgate_namespaces_are_the_gateways() {
    let req = sanitized(&[
        ("X-WX-App-ID", "1"),
        ("X-WX-OPENID", "2"),
        ("x_wx_source", "3"),
        ("X-WXGate-Assertion", "4"),
        ("X-Original-Forwarded-For", "5"),
    ]);
    for name in [
        "x-wx-app-id",
        "x-wx-openid",
        "x_wx_source",
        "x-wxgate-assertion",
        "x-original-forwarded-for",
    ] {
        assert!(values(&req, name).is_empty(), "{name}");
    }
}

#[test]
fn configured_names_are_the_ones_stripped() {
    let cfg = HeadersConfig {
        openid: IdentityHeaderName::parse("X-User-Id").unwrap(),
        unionid: IdentityHeaderName::parse("X-Union").unwrap(),
        appid: IdentityHeaderName::parse("X-App").unwrap(),
        user_id: IdentityHeaderName::parse("X-Backend-User").unwrap(),
        user_roles: IdentityHeaderName::parse("X-Backend-Roles").unwrap(),
        forward_authorization: false,
        strip: Vec::new(),
        claims: Vec::new(),
        cloud_run: false,
    };
    let mut req = get(&[
        ("x_user_id", "spoof"),
        ("X-App", "spoof"),
        ("X-OpenID", "kept"),
    ]);
    HeaderPolicy::new(&cfg).sanitize(&mut req, client());
    assert!(!has(&req, "x_user_id"));
    assert!(!has(&req, "x-app"));
    // Not an identity header under this config.
    assert_eq!(values(&req, "x-openid"), ["kept"]);
}

#[test]
fn configured_underscore_name_strips_dash_spelling() {
    let cfg = HeadersConfig {
        openid: IdentityHeaderName::parse("X_User_Id").unwrap(),
        ..headers_config(false)
    };
    let mut req = get(&[("X-User-Id", "spoof"), ("x_user_id", "spoof")]);
    HeaderPolicy::new(&cfg).sanitize(&mut req, client());
    assert!(!wire(&req).to_ascii_lowercase().contains("user"));
}

// ---------------------------------------------------------------------------
// Hop-by-hop headers
// ---------------------------------------------------------------------------

#[test]
fn hop_by_hop_headers_are_removed() {
    let req = sanitized(&[
        ("Connection", "keep-alive"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("Trailer", "X-Checksum"),
        ("Upgrade", "h2c"),
        ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
        ("Forwarded", "for=1.2.3.4;proto=https"),
        ("Accept", "text/plain"),
    ]);
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "forwarded",
    ] {
        assert!(!has(&req, name), "{name} should be removed");
    }
    assert_eq!(values(&req, "accept"), ["text/plain"]);
}

#[test]
fn each_hop_by_hop_header_alone_is_removed() {
    for name in [
        "Connection",
        "Keep-Alive",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Upgrade",
        "Proxy-Authorization",
        "Forwarded",
    ] {
        let req = sanitized(&[(name, "x")]);
        assert!(!has(&req, name), "{name}");
        assert!(
            !wire(&req)
                .to_ascii_lowercase()
                .contains(&format!("\n{}:", name.to_ascii_lowercase())),
            "{name}"
        );
    }
}

#[test]
fn headers_named_by_connection_are_removed() {
    let req = sanitized(&[
        ("Connection", "X-Custom, X-OpenID"),
        ("X-Custom", "1"),
        ("X-OpenID", "spoof"),
        ("X-Other", "kept"),
    ]);
    assert!(!has(&req, "x-custom"));
    assert!(!has(&req, "x-openid"));
    assert!(!has(&req, "connection"));
    assert_eq!(values(&req, "x-other"), ["kept"]);
}

#[test]
fn connection_tokens_from_several_headers_are_honoured() {
    let req = sanitized(&[
        ("Connection", "X-A"),
        ("Connection", " x-b ,, close "),
        ("X-A", "1"),
        ("X-B", "2"),
        ("X-C", "3"),
    ]);
    assert!(!has(&req, "x-a"));
    assert!(!has(&req, "x-b"));
    assert_eq!(values(&req, "x-c"), ["3"]);
}

#[test]
fn connection_cannot_remove_framing_headers() {
    let mut req = request(
        "POST",
        &[
            ("Host", "api.example"),
            ("Content-Length", "5"),
            ("Connection", "host, content-length, transfer-encoding"),
        ],
    );
    policy().sanitize(&mut req, client());
    assert_eq!(values(&req, "host"), ["api.example"]);
    assert_eq!(values(&req, "content-length"), ["5"]);
    assert!(!has(&req, "connection"));
}

#[test]
fn connection_naming_transfer_encoding_keeps_it() {
    let mut req = request(
        "POST",
        &[
            ("Transfer-Encoding", "chunked"),
            ("Connection", "Transfer-Encoding"),
        ],
    );
    policy().sanitize(&mut req, client());
    assert_eq!(values(&req, "transfer-encoding"), ["chunked"]);
}

#[test]
fn connection_cannot_remove_the_injected_identity() {
    let p = policy();
    let mut req = get(&[("Connection", "X-OpenID, X-UnionID, X-WX-AppID")]);
    p.sanitize(&mut req, client());
    let ids = p
        .identity_values(&ident("o-real", Some("u-real"), Some("wx-real")))
        .unwrap();
    p.inject(&mut req, &ids);
    assert_eq!(values(&req, "x-openid"), ["o-real"]);
    assert_eq!(values(&req, "x-unionid"), ["u-real"]);
    assert_eq!(values(&req, "x-wx-appid"), ["wx-real"]);
}

#[test]
fn connection_cannot_remove_x_forwarded_headers_set_by_wxgate() {
    let req = sanitized(&[
        ("Host", "h.example"),
        (
            "Connection",
            "X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host",
        ),
    ]);
    assert_eq!(values(&req, "x-forwarded-for"), [CLIENT_IP.to_string()]);
    assert_eq!(values(&req, "x-forwarded-proto"), ["http"]);
    assert_eq!(values(&req, "x-forwarded-host"), ["h.example"]);
}

// ---------------------------------------------------------------------------
// WebSocket upgrades
// ---------------------------------------------------------------------------

#[test]
fn websocket_upgrade_keeps_upgrade_and_sets_connection() {
    let req = sanitized(&[
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ]);
    assert_eq!(values(&req, "upgrade"), ["websocket"]);
    assert_eq!(values(&req, "connection"), ["upgrade"]);
    assert_eq!(
        values(&req, "sec-websocket-key"),
        ["dGhlIHNhbXBsZSBub25jZQ=="]
    );
}

#[test]
fn websocket_upgrade_with_keep_alive_and_extra_tokens() {
    let req = sanitized(&[
        ("Upgrade", "WebSocket"),
        ("Connection", "keep-alive, Upgrade, X-Custom"),
        ("X-Custom", "1"),
        ("Keep-Alive", "timeout=5"),
    ]);
    assert_eq!(values(&req, "upgrade"), ["WebSocket"]);
    assert_eq!(values(&req, "connection"), ["upgrade"]);
    assert!(!has(&req, "x-custom"));
    assert!(!has(&req, "keep-alive"));
}

#[test]
fn post_with_websocket_upgrade_is_not_an_upgrade() {
    let mut req = request(
        "POST",
        &[("Upgrade", "websocket"), ("Connection", "Upgrade")],
    );
    policy().sanitize(&mut req, client());
    assert!(!has(&req, "upgrade"));
    assert!(!has(&req, "connection"));
}

#[test]
fn upgrade_without_connection_upgrade_is_not_an_upgrade() {
    let req = sanitized(&[("Upgrade", "websocket"), ("Connection", "keep-alive")]);
    assert!(!has(&req, "upgrade"));
    assert!(!has(&req, "connection"));
    let req = sanitized(&[("Upgrade", "websocket")]);
    assert!(!has(&req, "upgrade"));
    assert!(!has(&req, "connection"));
}

#[test]
fn non_websocket_upgrade_is_removed() {
    let req = sanitized(&[
        ("Upgrade", "h2c"),
        ("Connection", "Upgrade, HTTP2-Settings"),
    ]);
    assert!(!has(&req, "upgrade"));
    assert!(!has(&req, "connection"));
    assert!(!has(&req, "http2-settings"));
}

// ---------------------------------------------------------------------------
// X-Forwarded-*
// ---------------------------------------------------------------------------

#[test]
fn x_forwarded_for_from_the_client_is_replaced() {
    let req = sanitized(&[("X-Forwarded-For", "1.2.3.4")]);
    assert_eq!(values(&req, "x-forwarded-for"), ["203.0.113.7"]);
}

#[test]
fn several_x_forwarded_for_values_are_replaced_by_one() {
    let req = sanitized(&[
        ("X-Forwarded-For", "1.2.3.4"),
        ("x-forwarded-for", "5.6.7.8, 9.9.9.9"),
    ]);
    assert_eq!(values(&req, "x-forwarded-for"), ["203.0.113.7"]);
    // Once in X-Forwarded-For, once in X-Real-IP.
    assert_eq!(wire(&req).matches("203.0.113.7").count(), 2);
    assert!(!wire(&req).contains("1.2.3.4"));
}

#[test]
fn client_ip_and_url_rewrite_headers_are_stripped_in_any_spelling() {
    let req = sanitized(&[
        ("X-Real-IP", "1.1.1.1"),
        ("x_real_ip", "1.1.1.2"),
        ("True-Client-IP", "1.1.1.3"),
        ("X-Client-IP", "1.1.1.4"),
        ("CF-Connecting-IP", "1.1.1.5"),
        ("cf_connecting_ip", "1.1.1.6"),
        ("X-Original-URL", "/admin"),
        ("X-Rewrite-URL", "/admin"),
    ]);
    assert_eq!(values(&req, "x-real-ip"), ["203.0.113.7"]);
    let w = wire(&req);
    assert!(!w.contains("1.1.1."), "{w}");
    assert!(!w.contains("/admin"), "{w}");
    for gone in [
        "true-client-ip",
        "x-client-ip",
        "cf-connecting-ip",
        "x-original-url",
        "x-rewrite-url",
    ] {
        assert!(!has(&req, gone), "{gone}");
    }
}

#[test]
fn the_strip_list_is_configurable() {
    let mut cfg = headers_config(false);
    cfg.strip = vec![IdentityHeaderName::parse("X-Tenant").unwrap()];
    let mut req = get(&[
        ("x_tenant", "evil"),
        ("CF-Connecting-IP", "1.1.1.1"),
        ("X-Real-IP", "2.2.2.2"),
    ]);
    HeaderPolicy::new(&cfg).sanitize(&mut req, client());
    assert!(!has(&req, "x-tenant"));
    // No longer in the list: passed on as the client sent it.
    assert_eq!(values(&req, "cf-connecting-ip"), ["1.1.1.1"]);
    // X-Real-IP is wxgate's own, whatever the list says.
    assert_eq!(values(&req, "x-real-ip"), ["203.0.113.7"]);
}

#[test]
fn x_forwarded_for_is_set_without_client_header() {
    let req = sanitized(&[]);
    assert_eq!(values(&req, "x-forwarded-for"), ["203.0.113.7"]);
}

#[test]
fn x_forwarded_for_for_ipv6_client() {
    let mut req = get(&[]);
    let info = ClientInfo {
        ip: Some("2001:db8::1".parse().unwrap()),
        https: true,
    };
    policy().sanitize(&mut req, info);
    assert_eq!(values(&req, "x-forwarded-for"), ["2001:db8::1"]);
}

#[test]
fn x_forwarded_for_is_removed_without_client_ip() {
    let mut req = get(&[("X-Forwarded-For", "1.2.3.4")]);
    policy().sanitize(
        &mut req,
        ClientInfo {
            ip: None,
            https: false,
        },
    );
    assert!(!has(&req, "x-forwarded-for"));
    assert!(!has(&req, "x-real-ip"));
    assert!(!wire(&req).contains("1.2.3.4"));
}

#[test]
fn x_forwarded_proto_http() {
    let req = sanitized(&[("X-Forwarded-Proto", "https")]);
    assert_eq!(values(&req, "x-forwarded-proto"), ["http"]);
}

#[test]
fn x_forwarded_proto_https() {
    let mut req = get(&[("X-Forwarded-Proto", "http"), ("X-Forwarded-Proto", "ftp")]);
    policy().sanitize(
        &mut req,
        ClientInfo {
            ip: Some(CLIENT_IP),
            https: true,
        },
    );
    assert_eq!(values(&req, "x-forwarded-proto"), ["https"]);
}

#[test]
fn x_forwarded_host_is_the_host_header() {
    let req = sanitized(&[
        ("Host", "api.example:8443"),
        ("X-Forwarded-Host", "evil.example"),
    ]);
    assert_eq!(values(&req, "x-forwarded-host"), ["api.example:8443"]);
    assert_eq!(values(&req, "host"), ["api.example:8443"]);
}

#[test]
fn x_forwarded_host_comes_from_the_uri_authority_without_host() {
    // HTTP/2 requests carry `:authority` in the URI and often no Host header.
    let mut req = get(&[]);
    req.set_uri("https://abs.example/x".parse().unwrap());
    policy().sanitize(&mut req, client());
    assert_eq!(values(&req, "x-forwarded-host"), ["abs.example"]);
}

#[test]
fn x_forwarded_host_is_removed_without_host() {
    let req = sanitized(&[("X-Forwarded-Host", "evil.example")]);
    assert!(!has(&req, "x-forwarded-host"));
}

// ---------------------------------------------------------------------------
// Authorization
// ---------------------------------------------------------------------------

#[test]
fn authorization_is_dropped_by_default() {
    let req = sanitized(&[("Authorization", "Bearer abc.def.ghi")]);
    assert!(!has(&req, "authorization"));
    assert!(!wire(&req).contains("abc.def.ghi"));
}

#[test]
fn authorization_is_kept_when_forwarding_is_on() {
    let mut req = get(&[("Authorization", "Bearer abc.def.ghi")]);
    HeaderPolicy::new(&headers_config(true)).sanitize(&mut req, client());
    assert_eq!(values(&req, "authorization"), ["Bearer abc.def.ghi"]);
}

#[test]
fn proxy_authorization_is_dropped_even_when_forwarding_authorization() {
    let mut req = get(&[("Proxy-Authorization", "Basic eA==")]);
    HeaderPolicy::new(&headers_config(true)).sanitize(&mut req, client());
    assert!(!has(&req, "proxy-authorization"));
}

// ---------------------------------------------------------------------------
// identity_values + inject
// ---------------------------------------------------------------------------

#[test]
fn sanitize_then_inject_without_unionid_or_appid_leaves_none() {
    let p = policy();
    let mut req = get(&[("X-UnionID", "spoof"), ("x_wx_appid", "spoof")]);
    p.sanitize(&mut req, client());
    p.inject(
        &mut req,
        &p.identity_values(&ident("o-1", None, None)).unwrap(),
    );
    assert_eq!(values(&req, "x-openid"), ["o-1"]);
    assert!(!has(&req, "x-unionid"));
    assert!(!has(&req, "x_wx_appid"));
    assert!(!has(&req, "x-wx-appid"));
}

#[test]
fn inject_after_sanitize_sets_exactly_one_openid() {
    let p = policy();
    let mut req = get(&[
        ("X-OpenID", "spoof-1"),
        ("x_openid", "spoof-2"),
        ("X-Openid", "spoof-3"),
    ]);
    p.sanitize(&mut req, client());
    let ids = p.identity_values(&ident("o-real", None, None)).unwrap();
    p.inject(&mut req, &ids);
    assert_eq!(values(&req, "x-openid"), ["o-real"]);
    let w = wire(&req);
    assert!(!w.contains("spoof"), "{w}");
    assert_eq!(w.to_ascii_lowercase().matches("openid").count(), 1, "{w}");
}

#[test]
fn unionid_and_appid_are_injected_only_when_present() {
    let p = policy();
    let mut req = get(&[("Accept", "*/*")]);
    let ids = p.identity_values(&ident("o-1", None, None)).unwrap();
    assert_eq!(ids.unionid, None);
    assert_eq!(ids.appid, None);
    p.inject(&mut req, &ids);
    assert_eq!(values(&req, "x-openid"), ["o-1"]);
    assert!(!has(&req, "x-unionid"));
    assert!(!has(&req, "x-wx-appid"));
    assert_eq!(values(&req, "accept"), ["*/*"]);
}

#[test]
fn unionid_and_appid_are_injected_when_present() {
    // inject sets: a client copy under the exact name is replaced, not appended to.
    let p = policy();
    let mut req = get(&[("X-UnionID", "spoof"), ("X-WX-AppID", "spoof")]);
    let ids = p
        .identity_values(&ident("o-1", Some("u-1"), Some("wx123")))
        .unwrap();
    p.inject(&mut req, &ids);
    assert_eq!(values(&req, "x-openid"), ["o-1"]);
    assert_eq!(values(&req, "x-unionid"), ["u-1"]);
    assert_eq!(values(&req, "x-wx-appid"), ["wx123"]);
    assert!(!wire(&req).contains("spoof"));
}

#[test]
fn only_unionid_present() {
    let p = policy();
    let mut req = get(&[]);
    let ids = p.identity_values(&ident("o", Some("u"), None)).unwrap();
    p.inject(&mut req, &ids);
    assert_eq!(values(&req, "x-unionid"), ["u"]);
    assert!(!has(&req, "x-wx-appid"));
}

#[test]
fn injected_headers_use_the_configured_spelling_on_the_wire() {
    let p = policy();
    let mut req = get(&[("x-openid", "spoof"), ("Accept", "*/*")]);
    let ids = p
        .identity_values(&ident("o-wire", Some("u-wire"), Some("wx-wire")))
        .unwrap();
    p.inject(&mut req, &ids);
    let w = wire(&req);
    assert!(w.contains("X-OpenID: o-wire\r\n"), "{w}");
    assert!(w.contains("X-UnionID: u-wire\r\n"), "{w}");
    assert!(w.contains("X-WX-AppID: wx-wire\r\n"), "{w}");
    assert!(!w.contains("x-openid"), "{w}");
    assert!(!w.contains("spoof"), "{w}");
}

#[test]
fn inject_replaces_an_existing_identity_header() {
    // Even without sanitize, inject sets rather than appends.
    let p = policy();
    let mut req = get(&[("X-OpenID", "spoof")]);
    let ids = p.identity_values(&ident("o-real", None, None)).unwrap();
    p.inject(&mut req, &ids);
    assert_eq!(values(&req, "x-openid"), ["o-real"]);
}

#[test]
fn identity_values_carry_the_identity() {
    let ids = policy()
        .identity_values(&ident("o-1", Some("u-1"), Some("wx-1")))
        .unwrap();
    assert_eq!(
        ids,
        IdentityValues {
            openid: HeaderValue::from_static("o-1"),
            unionid: Some(HeaderValue::from_static("u-1")),
            appid: Some(HeaderValue::from_static("wx-1")),
            uid: None,
            roles: None,
            claims: Vec::new(),
            risk: None,
        }
    );
}

fn hook_policy() -> HeaderPolicy {
    let mut cfg = headers_config(false);
    cfg.claims = vec![
        crate::config::ClaimHeader {
            claim: "plan".into(),
            header: IdentityHeaderName::parse("X-User-Plan").unwrap(),
        },
        crate::config::ClaimHeader {
            claim: "tenant".into(),
            header: IdentityHeaderName::parse("X-Tenant").unwrap(),
        },
    ];
    HeaderPolicy::new(&cfg)
}

#[test]
fn the_hooks_claims_travel_in_their_headers_and_spoofs_are_stripped() {
    let p = hook_policy();
    let mut req = get(&[
        ("X-User-ID", "spoof"),
        ("x_user_roles", "admin"),
        ("X-User-Plan", "gold"),
        ("x-tenant", "spoof"),
    ]);
    p.sanitize(&mut req, client());
    let mut id = ident("o-1", None, None);
    id.user.uid = Some("u-42".into());
    id.user.roles = vec!["editor".into(), "user".into()];
    id.user.ext.insert("plan".into(), "pro".into());
    id.user.ext.insert("unlisted".into(), "x".into());
    p.inject(&mut req, &p.identity_values(&id).unwrap());
    assert_eq!(values(&req, "x-user-id"), ["u-42"]);
    assert_eq!(values(&req, "x-user-roles"), ["editor,user"]);
    assert_eq!(values(&req, "x-user-plan"), ["pro"]);
    // No claim, no header: the spoofed one is gone all the same.
    assert!(!has(&req, "x-tenant"));
    assert!(!has(&req, "x_user_roles"));
    assert!(!wire(&req).contains("unlisted"));
    assert!(!wire(&req).contains("spoof"));
}

#[test]
fn without_hook_claims_the_user_headers_are_still_stripped() {
    let p = policy();
    let mut req = get(&[("X-User-ID", "spoof"), ("X-User-Roles", "admin")]);
    p.sanitize(&mut req, client());
    p.inject(
        &mut req,
        &p.identity_values(&ident("o", None, None)).unwrap(),
    );
    assert!(!has(&req, "x-user-id"));
    assert!(!has(&req, "x-user-roles"));
}

#[test]
fn a_claim_that_cannot_be_a_header_value_is_refused() {
    let p = hook_policy();
    let mut id = ident("o", None, None);
    id.user.ext.insert("plan".into(), "a\nb".into());
    assert_eq!(p.identity_values(&id), Err(ApiError::TokenInvalid));
    let mut id = ident("o", None, None);
    id.user.uid = Some("u\r\nX-OpenID: admin".into());
    assert_eq!(p.identity_values(&id), Err(ApiError::TokenInvalid));
}

#[test]
fn identity_values_refuse_control_chars_in_openid() {
    for openid in ["o\nx", "o\rx", "o\0x", "o\x7fx"] {
        assert_eq!(
            policy().identity_values(&ident(openid, None, None)),
            Err(ApiError::TokenInvalid),
            "{openid:?}"
        );
    }
}

#[test]
fn identity_values_refuse_control_chars_in_unionid_and_appid() {
    assert_eq!(
        policy().identity_values(&ident("o", Some("u\r\nX-OpenID: admin"), None)),
        Err(ApiError::TokenInvalid)
    );
    assert_eq!(
        policy().identity_values(&ident("o", None, Some("a\nb"))),
        Err(ApiError::TokenInvalid)
    );
}

// ---------------------------------------------------------------------------
// is_reserved
// ---------------------------------------------------------------------------

#[test]
fn reserved_names() {
    for name in [
        "authorization",
        "connection",
        "upgrade",
        "host",
        "content-length",
        "transfer-encoding",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "forwarded",
        "proxy-authorization",
    ] {
        assert!(is_reserved(&HeaderName::from_static(name)), "{name}");
    }
    for name in ["x-openid", "x-unionid", "x-wx-appid", "accept"] {
        assert!(!is_reserved(&HeaderName::from_static(name)), "{name}");
    }
}

#[test]
fn forwarded_look_alikes_with_underscores_are_removed() {
    let req = sanitized(&[
        ("X_Forwarded_For", "6.6.6.6"),
        ("x_forwarded-proto", "https"),
        ("X-Forwarded_Host", "evil.example"),
        ("Host", "gw.test"),
    ]);
    assert!(!has(&req, "x_forwarded_for"));
    assert!(!has(&req, "x_forwarded-proto"));
    assert!(!has(&req, "x-forwarded_host"));
    assert_eq!(
        values(&req, "x-forwarded-for"),
        vec!["203.0.113.7".to_string()]
    );
    assert_eq!(
        values(&req, "x-forwarded-host"),
        vec!["gw.test".to_string()]
    );
}

// ---------------------------------------------------------------------------
// [headers] cloud_run
// ---------------------------------------------------------------------------

#[test]
fn cloud_run_names_are_added_once_and_client_copies_never_pass() {
    let p = HeaderPolicy::new(&HeadersConfig {
        cloud_run: true,
        ..headers_config(false)
    });
    let mut req = get(&[
        ("X-WX-OPENID", "victim"),
        ("x_wx_unionid", "victim"),
        ("X-WX-SOURCE", "spoof"),
        ("X-WX-FROM-OPENID", "victim"),
        ("X-Original-Forwarded-For", "1.2.3.4"),
    ]);
    p.sanitize(&mut req, client());
    assert!(!wire(&req).contains("victim"));
    assert!(!wire(&req).contains("spoof"));
    assert!(!has(&req, "x-original-forwarded-for"));
    let ids = p
        .identity_values(&ident("o-real", Some("u-real"), Some("wx-real")))
        .unwrap();
    p.inject(&mut req, &ids);
    assert_eq!(values(&req, "x-wx-openid"), ["o-real"]);
    assert_eq!(values(&req, "x-wx-unionid"), ["u-real"]);
    // X-WX-AppID is ours already: the same header, sent once.
    assert_eq!(values(&req, "x-wx-appid"), ["wx-real"]);
    assert_eq!(values(&req, "x-wx-source"), [CLOUD_RUN_SOURCE]);
    assert_eq!(values(&req, "x-openid"), ["o-real"]);

    let mut raw = Vec::new();
    p.write_identity(&ids, &mut raw);
    let raw = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert_eq!(raw.matches("x-wx-appid:").count(), 1, "{raw}");
    assert_eq!(raw.matches("x-wx-openid: o-real\r\n").count(), 1, "{raw}");
}

#[test]
fn without_cloud_run_no_cloud_run_name_is_sent() {
    let p = policy();
    let mut req = get(&[("X-WX-OPENID", "victim")]);
    p.sanitize(&mut req, client());
    let ids = p
        .identity_values(&ident("o-real", Some("u-real"), Some("wx-real")))
        .unwrap();
    p.inject(&mut req, &ids);
    assert!(!has(&req, "x-wx-openid"));
    assert!(!has(&req, "x-wx-source"));
    assert!(!wire(&req).contains("victim"));
}
