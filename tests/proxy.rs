//! The proxy pipeline through the real gateway: what the upstream sees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{Gateway, Upstream};

async fn setup() -> (Upstream, Gateway) {
    let up = Upstream::start("a").await;
    let gw = Gateway::start(&support::standard_config(up.addr)).await;
    (up, gw)
}

#[tokio::test]
async fn valid_token_reaches_upstream_with_identity() {
    let (up, gw) = setup().await;
    let token = gw.token("o-user-1", Some("u-union-1"), Some("wxappid"));
    let r = gw.get_auth("/orders?page=2", &token, &[]).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.upstream_values("x-openid"), vec!["o-user-1"]);
    assert_eq!(r.upstream_values("x-unionid"), vec!["u-union-1"]);
    assert_eq!(r.upstream_values("x-wx-appid"), vec!["wxappid"]);
    // The token stays at the gateway by default.
    assert!(r.upstream_values("authorization").is_empty());
    assert_eq!(r.upstream_path(), "/orders?page=2");
    assert_eq!(r.upstream_values("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(r.upstream_values("x-forwarded-proto"), vec!["http"]);
    assert_eq!(r.upstream_values("x-forwarded-host"), vec!["gw.test"]);
    assert_eq!(up.echo.requests(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn token_without_unionid_injects_only_openid() {
    let (_up, gw) = setup().await;
    let token = gw.token("o-user-2", None, None);
    let r = gw
        .get_auth("/x", &token, &["X-UnionID: spoofed", "X-WX-AppID: spoofed"])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_values("x-openid"), vec!["o-user-2"]);
    assert!(r.upstream_values("x-unionid").is_empty());
    assert!(r.upstream_values("x-wx-appid").is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn spoofed_identity_headers_never_arrive() {
    let (_up, gw) = setup().await;
    let token = gw.token("o-real", Some("u-real"), None);
    let spoofs = [
        "X-OpenID: o-evil",
        "x-openid: o-evil2",
        "X_OpenID: o-evil3",
        "x_openid: o-evil4",
        "X-OPENID: o-evil5",
        "X_UnionID: u-evil",
        "x-wx_appid: a-evil",
    ];
    let r = gw.get_auth("/x", &token, &spoofs).await;
    assert_eq!(r.status, 200);
    let headers = r.upstream_headers();
    let openids: Vec<_> = headers
        .iter()
        .filter(|(n, _)| n.replace('_', "-") == "x-openid")
        .collect();
    assert_eq!(openids.len(), 1, "{headers:?}");
    assert_eq!(openids[0].1, "o-real");
    let unionids: Vec<_> = headers
        .iter()
        .filter(|(n, _)| n.replace('_', "-") == "x-unionid")
        .collect();
    assert_eq!(unionids.len(), 1, "{headers:?}");
    assert_eq!(unionids[0].1, "u-real");
    assert!(
        !headers.iter().any(|(_, v)| v.contains("evil")),
        "{headers:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn connection_header_cannot_remove_injected_identity() {
    let (_up, gw) = setup().await;
    let token = gw.token("o-conn", None, None);
    // `Connection` names the identity header.
    let req = format!(
        "GET /x HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {token}\r\nConnection: close, X-OpenID, X-Custom\r\nX-Custom: 1\r\nX-OpenID: o-evil\r\n\r\n"
    );
    let r = support::raw_request(gw.addr, req.as_bytes()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_values("x-openid"), vec!["o-conn"]);
    assert!(r.upstream_values("x-custom").is_empty());
    assert!(r
        .upstream_values("connection")
        .iter()
        .all(|v| !v.to_ascii_lowercase().contains("openid")));
    gw.stop().await;
}

#[tokio::test]
async fn hop_by_hop_and_forwarded_headers_are_replaced() {
    let (_up, gw) = setup().await;
    let token = gw.token("o-hop", None, None);
    let r = gw
        .get_auth(
            "/x",
            &token,
            &[
                "Proxy-Authorization: Basic abc",
                "Keep-Alive: timeout=5",
                "TE: trailers",
                "Upgrade: h2c",
                "X-Forwarded-For: 6.6.6.6",
                "X-Forwarded-Proto: https",
                "X-Forwarded-Host: evil.example",
                "Forwarded: for=6.6.6.6",
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    for h in [
        "proxy-authorization",
        "keep-alive",
        "te",
        "upgrade",
        "forwarded",
    ] {
        assert!(r.upstream_values(h).is_empty(), "{h} arrived");
    }
    assert_eq!(r.upstream_values("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(r.upstream_values("x-forwarded-proto"), vec!["http"]);
    assert_eq!(r.upstream_values("x-forwarded-host"), vec!["gw.test"]);
    gw.stop().await;
}

#[tokio::test]
async fn public_route_carries_no_identity() {
    let (_up, gw) = setup().await;
    let token = gw.token("o-pub", Some("u-pub"), Some("app"));
    // No token at all.
    let r = gw
        .get("/public/page", &["X-OpenID: o-evil", "X_UnionID: u-evil"])
        .await;
    assert_eq!(r.status, 200);
    assert!(r.upstream_values("x-openid").is_empty());
    assert!(r.upstream_values("x-unionid").is_empty());
    // Even with a valid token, a public route injects nothing.
    let r = gw
        .get_auth("/public/page", &token, &["X-OpenID: o-evil"])
        .await;
    assert_eq!(r.status, 200);
    assert!(r.upstream_values("x-openid").is_empty());
    assert!(r.upstream_values("x-unionid").is_empty());
    // A broken token does not matter on a public route.
    let r = gw.get_auth("/public/page", "garbage", &[]).await;
    assert_eq!(r.status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn optional_route() {
    let (_up, gw) = setup().await;
    let r = gw.get("/opt/feed", &["X-OpenID: o-evil"]).await;
    assert_eq!(r.status, 200);
    assert!(r.upstream_values("x-openid").is_empty());

    let token = gw.token("o-opt", None, None);
    let r = gw
        .get_auth("/opt/feed", &token, &["X-OpenID: o-evil"])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_values("x-openid"), vec!["o-opt"]);

    let r = gw.get_auth("/opt/feed", &format!("{token}x"), &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "token_invalid");
    gw.stop().await;
}

#[tokio::test]
async fn refused_tokens_get_401_and_never_reach_upstream() {
    let (up, gw) = setup().await;
    let token = gw.token("o-x", None, None);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![], "token_missing"),
        (
            vec!["Authorization: Basic dXNlcjpwYXNz".into()],
            "token_missing",
        ),
        (vec!["Authorization: Bearer ".into()], "token_invalid"),
        (
            vec![format!("Authorization: Bearer {token}x")],
            "token_invalid",
        ),
        (
            vec![
                format!("Authorization: Bearer {token}"),
                format!("Authorization: Bearer {token}"),
            ],
            "token_invalid",
        ),
        (
            vec![format!("Authorization: Bearer {}", "a".repeat(5000))],
            "token_invalid",
        ),
    ];
    for (headers, code) in cases {
        let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
        let r = gw.get("/private", &refs).await;
        assert_eq!(r.status, 401, "{headers:?}");
        assert_eq!(r.error(), code, "{headers:?}");
        let challenge = if code == "token_missing" {
            r#"Bearer realm="wxgate""#
        } else {
            r#"Bearer realm="wxgate", error="invalid_token", error_description="the token is not valid""#
        };
        assert_eq!(r.header("www-authenticate"), Some(challenge), "{headers:?}");
        assert_eq!(r.json().as_object().map(|o| o.len()), Some(2));
    }
    // Scheme is case-insensitive.
    let r = gw
        .get("/private", &[&format!("Authorization: bEaReR {token}")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(up.echo.requests(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn expired_token_is_token_expired() {
    let (_up, gw) = setup().await;
    // Signed with the right key, expired an hour ago (beyond the 30 s leeway).
    let now = wxgate::clock::unix_now();
    let claims = serde_json::json!({
        "sub": "o-old", "iss": "wxgate", "aud": "test-app",
        "iat": now - 7200, "exp": now - 3600, "jti": "j1"
    });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(support::JWT_SECRET.as_bytes()),
    )
    .expect("encode");
    let r = gw.get_auth("/x", &token, &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "token_expired");
    gw.stop().await;
}

#[tokio::test]
async fn forwarded_path_is_the_decided_path() {
    let (_up, gw) = setup().await;
    let token = gw.token("o-path", None, None);
    let cases = [
        ("/a/b?x=1&y=%2F", "/a/b?x=1&y=%2F"),
        ("/%61pi/v1", "/api/v1"),
        ("//api///v1", "/api/v1"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/a%20b", "/a%20b"),
    ];
    for (sent, expected) in cases {
        let r = gw.get_auth(sent, &token, &[]).await;
        assert_eq!(r.status, 200, "{sent}");
        assert_eq!(r.upstream_path(), expected, "{sent}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn decoded_prefix_cannot_bypass_a_protected_route() {
    // `/public/` is public, `/` protected. `/%70ublic/` is `/public/`: public, and
    // forwarded as `/public/`. `/public%2f..` is refused outright.
    let (_up, gw) = setup().await;
    let r = gw.get("/%70ublic/x", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_path(), "/public/x");
    for bad in [
        "/public/../private",
        "/public/%2e%2e/private",
        "/public/%2E%2e/private",
        "/public%2fprivate",
        "/public%5cprivate",
        "/public/.%2e/private",
        "/public/./x",
        "/x%00y",
        "/caf%ff",
    ] {
        let r = gw.get(bad, &[]).await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.error(), "invalid_path", "{bad}");
    }
    let r = gw
        .raw(b"GET /public\\..\\x HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(r.status, 400);
    gw.stop().await;
}

#[tokio::test]
async fn absolute_form_target_is_refused() {
    let (_up, gw) = setup().await;
    let r = gw
        .raw(b"GET http://other.example/x HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
        .await;
    // Pingora's request parser refuses it before the pipeline runs: a plain 400.
    assert_eq!(r.status, 400);
    gw.stop().await;
}

#[tokio::test]
async fn no_route_is_404() {
    let up = Upstream::start("a").await;
    let cfg = format!(
        "{}\n[[routes]]\nprefix = \"/api/\"\nupstreams = [\"{}\"]\n",
        support::base_config(),
        up.addr
    );
    let gw = Gateway::start(&cfg).await;
    let r = gw.get("/other", &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "no_route");
    gw.stop().await;
}

#[tokio::test]
async fn health_endpoints_are_answered_by_the_gateway() {
    let (up, gw) = setup().await;
    let r = gw.get("/healthz", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    let r = gw.get("/readyz", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ready");
    assert_eq!(up.echo.requests(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn health_endpoints_move_under_a_prefix() {
    let up = Upstream::start("a").await;
    let cfg = support::standard_config(up.addr).replace(
        "grace_period = \"1s\"",
        "grace_period = \"1s\"\nhealth_path_prefix = \"/_wxgate\"",
    );
    let gw = Gateway::start(&cfg).await;
    let r = gw.get("/_wxgate/healthz", &[]).await;
    assert_eq!(r.status, 200);
    // `/healthz` is now an ordinary protected path.
    let r = gw.get("/healthz", &[]).await;
    assert_eq!(r.status, 401);
    gw.stop().await;
}

#[tokio::test]
async fn authorization_is_forwarded_when_configured() {
    let up = Upstream::start("a").await;
    let cfg = support::standard_config(up.addr).replacen(
        "[[routes]]",
        "[headers]\nforward_authorization = true\n\n[[routes]]",
        1,
    );
    let gw = Gateway::start(&cfg).await;
    let token = gw.token("o-fwd", None, None);
    let r = gw.get_auth("/x", &token, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.upstream_values("authorization"),
        vec![format!("Bearer {token}")]
    );
    gw.stop().await;
}

#[tokio::test]
async fn keep_alive_connection_serves_several_requests() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (up, gw) = setup().await;
    let token = gw.token("o-ka", None, None);
    let mut s = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    for i in 0..3 {
        let req = format!(
            "GET /ka/{i} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.expect("write");
        // Read one response: headers, then Content-Length bytes.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let r = loop {
            let n = s.read(&mut chunk).await.expect("read");
            assert!(n > 0, "connection closed after {i} responses");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = support::parse_response(&buf[..end + 4]);
                let len: usize = head
                    .header("content-length")
                    .and_then(|v| v.parse().ok())
                    .expect("content-length");
                if buf.len() >= end + 4 + len {
                    break support::parse_response(&buf);
                }
            }
        };
        assert_eq!(r.status, 200);
        assert_eq!(r.upstream_path(), format!("/ka/{i}"));
    }
    assert_eq!(up.echo.requests(), 3);
    gw.stop().await;
}

/// `/api/` protected and `/` public: paths that an upstream reading case
/// loosely (Express) or dropping `;params` (Tomcat, Spring) would serve as
/// `/api/secret` are refused, never sent to the public route.
#[tokio::test]
async fn case_and_path_parameter_tricks_cannot_reach_a_protected_prefix() {
    let up = Upstream::start("tricks").await;
    let text = support::base_config()
        + &support::routes_toml(&[("/api/", "required"), ("/", "public")], up.addr);
    let gw = Gateway::start(&text).await;
    for bad in [
        "/API/secret",
        "/Api/secret",
        "/%41PI/secret",
        "/api;x/secret",
        "/API;x/secret",
        "/api/secret;jsessionid=1",
        "/public;x/y",
    ] {
        let r = gw.get(bad, &[]).await;
        assert_eq!(
            (r.status, r.error().as_str()),
            (400, "invalid_path"),
            "{bad}"
        );
    }
    assert_eq!(up.echo.requests(), 0);
    let r = gw.get("/apiary/x", &[]).await;
    assert_eq!(r.status, 200);
    gw.stop().await;
}

/// A route can allow `;` path parameters; a path whose parameters hide
/// another route's prefix is still refused.
#[tokio::test]
async fn path_parameters_are_allowed_where_configured() {
    let up = Upstream::start("params").await;
    let text = support::base_config()
        + &format!(
            "\n[[routes]]\nprefix = \"/api/\"\nupstreams = [\"{0}\"]\n\n[[routes]]\nprefix = \"/\"\nupstreams = [\"{0}\"]\nauth = \"public\"\nallow_path_params = true\n",
            up.addr
        );
    let gw = Gateway::start(&text).await;
    let r = gw.get("/files;v=2/a", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_path(), "/files;v=2/a");
    let r = gw.get("/api;x/secret", &[]).await;
    assert_eq!((r.status, r.error().as_str()), (400, "invalid_path"));
    gw.stop().await;
}

/// Client-IP and URL-rewrite headers are the client's word: stripped, and
/// `X-Real-IP` is the address wxgate believes.
#[tokio::test]
async fn cloud_run_and_gateway_namespaces_never_arrive_from_clients() {
    // WeChat Cloud Run's identity headers (a backend written for Cloud Run
    // trusts X-WX-OPENID as ours trusts X-OpenID) and wxgate's own namespace.
    let (_up, gw) = setup().await;
    let token = gw.token("o-real", None, Some("wxappid"));
    let spoofs = [
        "X-WX-OPENID: evil-1",
        "x_wx_unionid: evil-2",
        "X-WX-SOURCE: evil-3",
        "X-WX-FROM-OPENID: evil-4",
        "X-WX-Risk-Rank: evil-5",
        "X-WXGate-Assertion: evil-6",
        "x_wxgate_signature: evil-7",
        "X-Original-Forwarded-For: evil-8",
        "X-WX-AppID: evil-9",
    ];
    for path in ["/x", "/public/x"] {
        let r = gw.get_auth(path, &token, &spoofs).await;
        assert_eq!(r.status, 200, "{path}");
        let headers = r.upstream_headers();
        assert!(
            !headers.iter().any(|(_, v)| v.contains("evil")),
            "{path}: {headers:?}"
        );
    }
    // The one X-WX- header that arrives is the one wxgate sets.
    let r = gw.get_auth("/x", &token, &spoofs).await;
    assert_eq!(r.upstream_values("x-wx-appid"), vec!["wxappid"]);
    gw.stop().await;
}

#[tokio::test]
async fn spoofable_client_ip_and_rewrite_headers_never_arrive() {
    let (_up, gw) = setup().await;
    let r = gw
        .get(
            "/public/ip",
            &[
                "X-Real-IP: 6.6.6.1",
                "X_Real_IP: 6.6.6.2",
                "True-Client-IP: 6.6.6.3",
                "X-Client-IP: 6.6.6.4",
                "CF-Connecting-IP: 6.6.6.5",
                "X-Original-URL: /admin/delete",
                "X-Rewrite-URL: /admin/delete",
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_values("x-real-ip"), vec!["127.0.0.1"]);
    for (name, value) in r.upstream_headers() {
        assert!(
            !value.contains("6.6.6.") && !value.contains("/admin"),
            "{name}: {value}"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn every_response_carries_a_request_id_that_went_upstream_with_the_request() {
    let (up, gw) = setup().await;
    let token = gw.token("o-rid", None, None);
    let auth = format!("Authorization: Bearer {token}");

    // None sent: a fresh one, the same upstream and back.
    let r = gw.get("/private", &[&auth]).await;
    assert_eq!(r.status, 200);
    let id = r.header("x-request-id").expect("request id").to_string();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert_eq!(r.upstream_values("x-request-id"), vec![id.clone()]);

    // Sent by a peer that is not a trusted proxy: replaced, upstream too.
    let r = gw
        .get("/private", &[&auth, "X-Request-ID: client-chosen"])
        .await;
    let replaced = r.header("x-request-id").expect("request id").to_string();
    assert_ne!(replaced, "client-chosen");
    assert_ne!(replaced, id);
    assert_eq!(r.upstream_values("x-request-id"), vec![replaced]);

    // wxgate's own answers carry one as well.
    let r = gw.get("/private", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("x-request-id").map(str::len), Some(32));
    gw.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn a_trusted_proxy_s_sane_request_id_is_kept() {
    let up = Upstream::start("rid-trusted").await;
    let toml = support::base_config().replace(
        "grace_period = \"1s\"\n",
        "grace_period = \"1s\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
    ) + &support::routes_toml(&[("/", "public")], up.addr);
    let gw = Gateway::start(&toml).await;
    let r = gw.get("/x", &["X-Request-ID: lb-7f3a.1"]).await;
    assert_eq!(r.header("x-request-id"), Some("lb-7f3a.1"));
    assert_eq!(r.upstream_values("x-request-id"), vec!["lb-7f3a.1"]);
    for bad in ["X-Request-ID: has space", "X-Request-ID: <script>"] {
        let r = gw.get("/x", &[bad]).await;
        let got = r.header("x-request-id").unwrap_or_default().to_string();
        assert_eq!(got.len(), 32, "{bad}: {got}");
    }
    let r = gw.get("/x", &["X-Request-ID: a", "X-Request-ID: b"]).await;
    assert_eq!(r.header("x-request-id").map(str::len), Some(32));
    gw.stop().await;
    up.stop().await;
}
