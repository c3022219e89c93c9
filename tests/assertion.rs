//! `X-WXGate-Assertion` through the real gateway: on both HTTP/1 paths and
//! over HTTP/2, each forwarded request carries an assertion that PyJWT
//! verifies with the gateway's key set, bound to that request (method, path,
//! request id) and route, refused when replayed on another path or route or
//! after a minute; never on a public route, never a client's copy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use support::{Gateway, Preamble, Upstream};
use wxgate::token::{Algorithm, PrivateKey};

const VERIFY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/tools/verify_assertion.py"
);

/// PyJWT's verdict on each case.
fn verdicts(jwks: &Value, cases: &[Value]) -> Vec<String> {
    let mut child = Command::new(support::PYTHON)
        .arg(VERIFY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let input = json!({ "jwks": jwks, "issuer": "wxgate", "cases": cases });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// An assertion's claims, unverified.
fn payload(jwt: &str) -> Value {
    use base64::Engine as _;
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

fn config(http1: &str, key_file: &std::path::Path, up: std::net::SocketAddr) -> String {
    let preamble = Preamble::new("assertion-test");
    let server = format!("{preamble}").replacen(
        "[server]\n",
        &format!("[server]\nhttp1 = \"{http1}\"\n"),
        1,
    );
    format!(
        r#"{server}
[assertion]
algorithm = "EdDSA"
private_key_file = "{}"
kid = "assert-2026"

[[routes]]
prefix = "/public/"
upstreams = ["{up}"]
auth = "public"

[[routes]]
prefix = "/api/"
upstreams = ["{up}"]

[[routes]]
prefix = "/"
upstreams = ["{up}"]
"#,
        key_file.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_carries_an_assertion_bound_to_it() {
    if !support::pyjwt_or_skip() {
        return;
    }
    let dir = support::TempDir::new("assertion");
    let key = PrivateKey::generate(Algorithm::EdDSA).unwrap();
    let key_file = dir.write("assertion.pem", &key.to_pem().unwrap());
    let up = Upstream::start("assertion").await;
    for http1 in support::HTTP1_PATHS {
        let gw = Gateway::start(&config(http1, &key_file, up.addr)).await;
        let token = gw.token("o-alice", None, Some("wxassert0000001"));
        let jwks = gw.get("/.well-known/jwks.json", &[]).await.json();
        assert!(
            jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kid"] == "assert-2026"),
            "{jwks}"
        );
        let r = gw
            .get_auth(
                "/api/orders/7?page=2",
                &token,
                &["X-WXGate-Assertion: forged"],
            )
            .await;
        assert_eq!(r.status, 200, "{http1}: {}", r.text());
        let sent = r.upstream_values("x-wxgate-assertion");
        assert_eq!(
            sent.len(),
            1,
            "{http1}: exactly one, never the client's: {sent:?}"
        );
        let assertion = sent[0].clone();
        assert_ne!(assertion, "forged");
        let rid = r.upstream_values("x-request-id")[0].clone();
        // The request id the upstream got (a client's own is kept only from trusted proxies).
        assert!(!rid.is_empty());
        let now = wxgate::clock::unix_now();
        let case = |aud: &str, htm: &str, htu: &str, rid: &str, now: u64| json!({ "assertion": assertion, "aud": aud, "htm": htm, "htu": htu, "rid": rid, "now": now });
        let got = verdicts(
            &jwks,
            &[
                case("/api/", "GET", "/api/orders/7", &rid, now),
                // Replayed on another path, method, request or route.
                case("/api/", "GET", "/api/orders/8", &rid, now),
                case("/api/", "DELETE", "/api/orders/7", &rid, now),
                case("/api/", "GET", "/api/orders/7", "req-other", now),
                case("/", "GET", "/api/orders/7", &rid, now),
                // Kept past a minute.
                case("/api/", "GET", "/api/orders/7", &rid, now + 61),
            ],
        );
        assert_eq!(got[0], "ok o-alice", "{http1}: {got:?}");
        for (i, v) in got.iter().enumerate().skip(1) {
            assert!(v.starts_with("refused"), "{http1}: case {i}: {v}");
        }
        assert!(got[5].contains("ExpiredSignatureError"), "{got:?}");

        // A path wxgate rewrites (an escaped unreserved character) is signed
        // as sent upstream; `Connection` cannot take the request id away.
        let r = gw
            .get_auth("/api/%6Frders/9?x=1", &token, &["Connection: X-Request-ID"])
            .await;
        assert_eq!(r.status, 200, "{http1}: {}", r.text());
        let claims = payload(&r.upstream_values("x-wxgate-assertion")[0]);
        assert_eq!(claims["htu"], "/api/orders/9", "{http1}");
        let rid = r.upstream_values("x-request-id");
        assert_eq!(rid.len(), 1, "{http1}: {rid:?}");
        assert_eq!(claims["rid"], rid[0].as_str(), "{http1}");

        // A public route carries none, and no client's copy.
        let r = gw.get("/public/x", &["X-WXGate-Assertion: forged"]).await;
        assert_eq!(r.status, 200);
        assert!(
            r.upstream_values("x-wxgate-assertion").is_empty(),
            "{http1}"
        );

        // An access token is not an assertion, for PyJWT either.
        let got = verdicts(
            &jwks,
            &[
                json!({ "assertion": token, "aud": "/api/", "htm": "GET", "htu": "/api/orders/7", "rid": rid, "now": now }),
            ],
        );
        assert!(got[0].starts_with("refused"), "{got:?}");
        gw.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assertion_is_not_a_token_the_gateway_takes() {
    let dir = support::TempDir::new("assertion-token");
    let key = PrivateKey::generate(Algorithm::ES256).unwrap();
    let key_file = dir.write("assertion.pem", &key.to_pem().unwrap());
    let up = Upstream::start("assertion-token").await;
    let text = config("wxgate", &key_file, up.addr).replace("\"EdDSA\"", "\"ES256\"");
    let gw = Gateway::start(&text).await;
    let token = gw.token("o-bob", None, None);
    let r = gw.get_auth("/x", &token, &[]).await;
    let assertion = r.upstream_values("x-wxgate-assertion")[0].clone();
    // Presented as a Bearer token, it is refused: its kid is no token key's.
    let r = gw.get_auth("/x", &assertion, &[]).await;
    assert_eq!((r.status, r.error()), (401, "token_invalid".into()));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_carry_their_own_assertion() {
    let dir = support::TempDir::new("assertion-h2");
    let key = PrivateKey::generate(Algorithm::EdDSA).unwrap();
    let key_file = dir.write("assertion.pem", &key.to_pem().unwrap());
    let up = Upstream::start("assertion-h2").await;
    for path in support::HTTP2_PATHS {
        let text = support::with_http2(&config("wxgate", &key_file, up.addr), path);
        let gw = Gateway::start(&text).await;
        let token = gw.token("o-carol", None, None);
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut client = client.ready().await.unwrap();
        let req = http::Request::builder()
            .method("POST")
            .uri("http://gw.test/api/%69tems?q=1")
            .header("authorization", format!("Bearer {token}"))
            .header("x-wxgate-assertion", "forged")
            .body(())
            .unwrap();
        let (response, _) = client.send_request(req, true).unwrap();
        let response = response.await.unwrap();
        let status = response.status().as_u16();
        let mut recv = response.into_body();
        let mut body = Vec::new();
        while let Some(data) = recv.data().await {
            let data = data.unwrap();
            let _ = recv.flow_control().release_capacity(data.len());
            body.extend_from_slice(&data);
        }
        let r = support::Response {
            status,
            headers: Vec::new(),
            body,
        };
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let sent = r.upstream_values("x-wxgate-assertion");
        assert_eq!(sent.len(), 1, "{path}: {sent:?}");
        let payload = sent[0].split('.').nth(1).unwrap();
        use base64::Engine as _;
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["htm"], "POST", "{path}");
        assert_eq!(claims["htu"], "/api/items", "{path}");
        assert_eq!(claims["aud"], "/api/", "{path}");
        assert_eq!(claims["sub"], "o-carol", "{path}");
        assert_eq!(
            claims["rid"].as_str(),
            r.upstream_values("x-request-id")
                .first()
                .map(String::as_str),
            "{path}"
        );
        gw.stop().await;
    }
}
