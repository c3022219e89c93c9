//! The HTTPS listener (rustls, HTTP/2 via ALPN) and h2c on the plain listener,
//! with a certificate generated at test time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;

use reqwest::Version;
use serde_json::Value;

use support::{Gateway, TempDir, Upstream};

/// A self-signed certificate for `localhost` and `127.0.0.1`, written as PEM files.
struct TestCert {
    dir: TempDir,
    cert_pem: String,
    cert_path: PathBuf,
    key_path: PathBuf,
}

impl TestCert {
    fn generate() -> Self {
        let ck = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .expect("generate certificate");
        let cert_pem = ck.cert.pem();
        let key_pem = ck.signing_key.serialize_pem();
        let dir = TempDir::new("tls");
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, &cert_pem).expect("write cert");
        std::fs::write(&key_path, key_pem).expect("write key");
        Self {
            dir,
            cert_pem,
            cert_path,
            key_path,
        }
    }
}

/// `config` with an HTTPS listener on `127.0.0.1:0` using `cert`.
fn with_tls(config: &str, cert: &TestCert) -> String {
    let listen = "listen = \"127.0.0.1:0\"\n";
    assert!(config.contains(listen), "config has no plain listen line");
    config.replacen(
        listen,
        &format!(
            "{listen}tls_listen = \"127.0.0.1:0\"\ntls_cert = '{}'\ntls_key = '{}'\n",
            cert.cert_path.display(),
            cert.key_path.display()
        ),
        1,
    )
}

fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client that trusts exactly `cert_pem` and resolves `localhost` to `addr`.
fn trusting_client(cert_pem: &str, addr: SocketAddr) -> reqwest::ClientBuilder {
    install_crypto_provider();
    let cert = reqwest::Certificate::from_pem(cert_pem.as_bytes()).expect("parse cert PEM");
    reqwest::Client::builder()
        .tls_certs_only([cert])
        .resolve("localhost", addr)
        .no_proxy()
}

/// A gateway with the standard routes to an echo upstream, plus HTTPS.
async fn setup() -> (Upstream, Gateway, TestCert, SocketAddr) {
    let up = Upstream::start("tls-up").await;
    let cert = TestCert::generate();
    let gw = Gateway::start(&with_tls(&support::standard_config(up.addr), &cert)).await;
    let tls_addr = gw.running().tls_addr().expect("TLS listener bound");
    assert_ne!(tls_addr.port(), 0);
    assert_ne!(tls_addr, gw.addr, "TLS and plain listeners are distinct");
    (up, gw, cert, tls_addr)
}

/// Every value the echo upstream saw for `name` (lower-case).
fn upstream_values(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .expect("echo headers")
        .iter()
        .filter(|p| p[0].as_str().unwrap_or_default().eq_ignore_ascii_case(name))
        .map(|p| p[1].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn https_h2_with_valid_token_reaches_upstream_with_identity() {
    let (up, gw, cert, tls_addr) = setup().await;
    let client = trusting_client(&cert.cert_pem, tls_addr).build().unwrap();
    let token = gw.token("o-tls-1", Some("u-tls-1"), None);
    let url = format!("https://localhost:{}/orders?page=3", tls_addr.port());
    let res = client
        .get(&url)
        .bearer_auth(&token)
        .header("X-OpenID", "o-evil")
        .send()
        .await
        .expect("HTTPS request");
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), Version::HTTP_2, "ALPN should pick h2");
    let echo: Value = res.json().await.expect("echo JSON");
    assert_eq!(upstream_values(&echo, "x-openid"), vec!["o-tls-1"]);
    assert_eq!(upstream_values(&echo, "x-unionid"), vec!["u-tls-1"]);
    assert_eq!(upstream_values(&echo, "x-forwarded-proto"), vec!["https"]);
    assert_eq!(
        upstream_values(&echo, "x-forwarded-host"),
        vec![format!("localhost:{}", tls_addr.port())]
    );
    assert!(upstream_values(&echo, "authorization").is_empty());
    assert_eq!(echo["path"], "/orders?page=3");
    assert_eq!(up.echo.requests(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn https_http1_only_works() {
    let (up, gw, cert, tls_addr) = setup().await;
    let client = trusting_client(&cert.cert_pem, tls_addr)
        .http1_only()
        .build()
        .unwrap();
    let token = gw.token("o-tls-h1", None, None);
    let res = client
        .get(format!("https://localhost:{}/h1", tls_addr.port()))
        .bearer_auth(&token)
        .send()
        .await
        .expect("HTTPS request");
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), Version::HTTP_11);
    let echo: Value = res.json().await.expect("echo JSON");
    assert_eq!(upstream_values(&echo, "x-openid"), vec!["o-tls-h1"]);
    assert_eq!(upstream_values(&echo, "x-forwarded-proto"), vec!["https"]);
    assert_eq!(echo["path"], "/h1");
    assert_eq!(up.echo.requests(), 1);
    gw.stop().await;
}

/// A TLS keep-alive connection idle past its linger is parked, and its next
/// request (decrypted by the same session) is served on it.
#[tokio::test]
async fn a_parked_tls_connection_is_served_again() {
    let (up, gw, cert, tls_addr) = setup().await;
    let client = trusting_client(&cert.cert_pem, tls_addr)
        .http1_only()
        .build()
        .unwrap();
    let token = gw.token("o-tls-park", None, None);
    let url = format!("https://localhost:{}/parked", tls_addr.port());
    let conns = gw.running().connections();
    for _ in 0..2 {
        let res = client.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let echo: Value = res.json().await.expect("echo JSON");
        assert_eq!(upstream_values(&echo, "x-openid"), vec!["o-tls-park"]);
        let parked = || async { conns.parked() == 1 };
        assert!(support::eventually(std::time::Duration::from_secs(3), parked).await);
    }
    assert_eq!(conns.open(), 1, "one connection, reused");
    assert_eq!(up.echo.requests(), 2);
    gw.stop().await;
}

#[tokio::test]
async fn https_by_ip_address_uses_the_ip_san() {
    let (_up, gw, cert, tls_addr) = setup().await;
    let client = trusting_client(&cert.cert_pem, tls_addr).build().unwrap();
    let token = gw.token("o-tls-ip", None, None);
    let res = client
        .get(format!("https://{tls_addr}/ip"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("HTTPS request to the IP");
    assert_eq!(res.status(), 200);
    let echo: Value = res.json().await.expect("echo JSON");
    assert_eq!(upstream_values(&echo, "x-openid"), vec!["o-tls-ip"]);
    gw.stop().await;
}

#[tokio::test]
async fn https_without_token_is_401_token_missing() {
    let (up, gw, cert, tls_addr) = setup().await;
    for http1 in [false, true] {
        let mut builder = trusting_client(&cert.cert_pem, tls_addr);
        if http1 {
            builder = builder.http1_only();
        }
        let client = builder.build().unwrap();
        let res = client
            .get(format!("https://localhost:{}/secret", tls_addr.port()))
            .send()
            .await
            .expect("HTTPS request");
        assert_eq!(res.status(), 401, "http1_only={http1}");
        let www = res
            .headers()
            .get("www-authenticate")
            .expect("WWW-Authenticate")
            .to_str()
            .unwrap()
            .to_string();
        assert!(www.starts_with("Bearer"), "{www}");
        let body: Value = res.json().await.expect("JSON error body");
        assert_eq!(body["error"], "token_missing", "{body}");
        assert!(body["message"].is_string(), "{body}");
    }
    assert_eq!(up.echo.requests(), 0, "nothing reaches the upstream");
    gw.stop().await;
}

#[tokio::test]
async fn plain_listener_works_alongside_tls() {
    let (_up, gw, cert, tls_addr) = setup().await;
    let token = gw.token("o-plain", None, None);
    let r = gw.get_auth("/plain", &token, &[]).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.upstream_values("x-openid"), vec!["o-plain"]);
    assert_eq!(r.upstream_values("x-forwarded-proto"), vec!["http"]);
    let r = gw.get("/plain", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "token_missing");

    // And HTTPS still answers on its own port at the same time.
    let client = trusting_client(&cert.cert_pem, tls_addr).build().unwrap();
    let res = client
        .get(format!("https://localhost:{}/healthz", tls_addr.port()))
        .send()
        .await
        .expect("HTTPS healthz");
    assert_eq!(res.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn client_that_does_not_trust_the_certificate_fails_the_handshake() {
    let (up, gw, cert, tls_addr) = setup().await;
    let token = gw.token("o-untrusted", None, None);
    let url = format!("https://localhost:{}/x", tls_addr.port());

    // Trusts only some other self-signed certificate for the same names.
    let other = TestCert::generate();
    let client = trusting_client(&other.cert_pem, tls_addr).build().unwrap();
    let err = client
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect_err("an untrusted certificate must fail the handshake");
    assert!(err.is_connect(), "expected a connect (TLS) error: {err:?}");

    // Trusts the right certificate but for a name it does not cover.
    let client = trusting_client(&cert.cert_pem, tls_addr)
        .resolve("not-in-cert.test", tls_addr)
        .build()
        .unwrap();
    let err = client
        .get(format!("https://not-in-cert.test:{}/x", tls_addr.port()))
        .bearer_auth(&token)
        .send()
        .await
        .expect_err("a name mismatch must fail the handshake");
    assert!(err.is_connect(), "expected a connect (TLS) error: {err:?}");
    assert_eq!(up.echo.requests(), 0);

    // The listener itself is fine: a trusting client gets through.
    let client = trusting_client(&cert.cert_pem, tls_addr).build().unwrap();
    let res = client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(up.echo.requests(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn plain_http_to_the_tls_listener_gets_no_response() {
    let (up, gw, _cert, tls_addr) = setup().await;
    install_crypto_provider();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let token = gw.token("o-plaintext", None, None);
    let res = client
        .get(format!("http://{tls_addr}/x"))
        .bearer_auth(&token)
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await;
    assert!(
        res.is_err(),
        "plain HTTP on the TLS port must not be served: {res:?}"
    );
    assert_eq!(up.echo.requests(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn h2c_prior_knowledge_on_the_plain_listener() {
    let up = Upstream::start("h2c-up").await;
    let gw = Gateway::start(&support::standard_config(up.addr)).await;
    install_crypto_provider();
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .build()
        .unwrap();
    let token = gw.token("o-h2c", Some("u-h2c"), Some("wx-h2c"));
    let res = client
        .get(format!("http://{}/h2c/path?q=1", gw.addr))
        .bearer_auth(&token)
        .header("x_openid", "o-evil")
        .send()
        .await
        .expect("h2c request");
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), Version::HTTP_2);
    let echo: Value = res.json().await.expect("echo JSON");
    assert_eq!(upstream_values(&echo, "x-openid"), vec!["o-h2c"]);
    assert!(upstream_values(&echo, "x_openid").is_empty(), "{echo}");
    assert_eq!(upstream_values(&echo, "x-unionid"), vec!["u-h2c"]);
    assert_eq!(upstream_values(&echo, "x-wx-appid"), vec!["wx-h2c"]);
    assert_eq!(upstream_values(&echo, "x-forwarded-proto"), vec!["http"]);
    assert_eq!(echo["path"], "/h2c/path?q=1");

    // Refusals are the same JSON over h2c.
    let res = client
        .get(format!("http://{}/h2c/path", gw.addr))
        .send()
        .await
        .expect("h2c request");
    assert_eq!(res.status(), 401);
    assert_eq!(res.version(), Version::HTTP_2);
    let body: Value = res.json().await.expect("JSON error body");
    assert_eq!(body["error"], "token_missing");
    assert_eq!(up.echo.requests(), 1);
    gw.stop().await;
}

fn parse_with_secret(toml: &str) -> Result<wxgate::config::Config, wxgate::config::ConfigError> {
    wxgate::config::Config::parse(toml, "test.toml", &|n| {
        (n == "WXGATE_JWT_SECRET").then(|| support::JWT_SECRET.to_string())
    })
}

#[test]
fn tls_files_are_checked_when_the_config_is_parsed() {
    let cert = TestCert::generate();
    let good = with_tls(&support::standard_config(support_addr()), &cert);
    let parsed = parse_with_secret(&good).expect("config with readable TLS files parses");
    let tls = parsed.server.tls.expect("tls section");
    assert_eq!(tls.cert, cert.cert_path);
    assert_eq!(tls.key, cert.key_path);

    // The certificate file does not exist.
    let missing = cert.dir.path().join("no-such-cert.pem");
    let text = good.replace(
        &format!("tls_cert = '{}'", cert.cert_path.display()),
        &format!("tls_cert = '{}'", missing.display()),
    );
    assert_ne!(text, good);
    let err = parse_with_secret(&text)
        .expect_err("a missing tls_cert file is a config error")
        .to_string();
    assert!(err.contains("server.tls_cert"), "{err}");
    assert!(err.contains("test.toml"), "{err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");

    // The key file does not exist.
    let missing_key = cert.dir.path().join("no-such-key.pem");
    let text = good.replace(
        &format!("tls_key = '{}'", cert.key_path.display()),
        &format!("tls_key = '{}'", missing_key.display()),
    );
    let err = parse_with_secret(&text)
        .expect_err("a missing tls_key file is a config error")
        .to_string();
    assert!(err.contains("server.tls_key"), "{err}");

    // The certificate file is not PEM.
    let not_pem = cert.dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let text = good.replace(
        &format!("tls_cert = '{}'", cert.cert_path.display()),
        &format!("tls_cert = '{}'", not_pem.display()),
    );
    let err = parse_with_secret(&text)
        .expect_err("a non-PEM tls_cert is a config error")
        .to_string();
    assert!(err.contains("server.tls_cert"), "{err}");

    // tls_listen without the files.
    let text = support::standard_config(support_addr()).replacen(
        "listen = \"127.0.0.1:0\"\n",
        "listen = \"127.0.0.1:0\"\ntls_listen = \"127.0.0.1:0\"\n",
        1,
    );
    let err = parse_with_secret(&text)
        .expect_err("tls_listen alone is a config error")
        .to_string();
    assert!(err.contains("tls_cert") && err.contains("tls_key"), "{err}");
}

/// Any upstream address: parsing does not connect.
fn support_addr() -> SocketAddr {
    "127.0.0.1:9".parse().unwrap()
}

/// A client that opens the TLS port and never starts the handshake is cut
/// off after `header_timeout`.
#[tokio::test]
async fn a_stalled_tls_handshake_is_cut_off_at_the_header_timeout() {
    use tokio::io::AsyncReadExt;
    let up = Upstream::start("tls-stall").await;
    let cert = TestCert::generate();
    let config = support::standard_config(up.addr).replacen(
        "grace_period = \"1s\"",
        "grace_period = \"1s\"\nheader_timeout = \"500ms\"\nidle_timeout = \"30s\"",
        1,
    );
    let gw = Gateway::start(&with_tls(&config, &cert)).await;
    let tls_addr = gw.running().tls_addr().expect("TLS listener bound");
    let started = std::time::Instant::now();
    let mut s = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut [0u8; 64]))
        .await
        .expect("still open after 5 s");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(400),
        "closed after {waited:?}"
    );
    gw.stop().await;
}
