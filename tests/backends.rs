//! The backends of the README, run for real behind the gateway: a mini
//! program logs in through the mock WeChat (the backend's login hook, which
//! checks wxgate's signature, hands out its uid and roles), calls the backend
//! through wxgate with spoofed identity headers, and the backend reads the
//! verified ones. The backend takes the audit webhook's events, each
//! delivery checked against its own secret. A call to the hook or the
//! webhook that wxgate did not sign is refused. The backend checks each
//! request's `X-WXGate-Assertion` with the gateway's key set, and refuses a
//! request that reaches it without one. A backend written for WeChat Cloud
//! Run reads `X-WX-OPENID` behind the gateway, never a client's copy.
//!
//! Flask comes from Debian's `python3-flask` (or pip), Express from npm
//! (`npm install --prefix examples express@4`); `.ci/run` installs both and
//! sets `WXGATE_REQUIRE_BACKENDS=1`, so that there they cannot be skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::{dev, Preamble};
use wxgate::dev::mock_wechat::MockWechat;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
const HOOK_SECRET: &str = "backends-hook-secret-0123456789";
const AUDIT_SECRET: &str = "backends-audit-secret-012345678";

/// Kills the backend when the test ends.
struct Backend(Child);

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn skip_or_fail(why: &str) {
    assert!(
        std::env::var_os("WXGATE_REQUIRE_BACKENDS").is_none(),
        "backend test required here: {why}"
    );
    eprintln!("skipped: {why}");
}

fn works(program: &str, args: &[&str], dir: &str) -> bool {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Where the gateway will listen: the backend learns the key set's address
/// before the gateway starts.
async fn gateway_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port().await).parse().unwrap()
}

async fn free_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// The backend, which checks assertions with the key set of the gateway
/// that will listen on `gateway`.
async fn start_backend(program: &str, script: &str, gateway: SocketAddr) -> (Backend, SocketAddr) {
    let port = free_port().await;
    let child = Command::new(program)
        .arg(script)
        .current_dir(EXAMPLES)
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env("WXGATE_HOOK_SECRET", HOOK_SECRET)
        .env("WXGATE_AUDIT_SECRET", AUDIT_SECRET)
        .env(
            "WXGATE_JWKS_URL",
            format!("http://{gateway}/.well-known/jwks.json"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} {script}: {e}"));
    let mut backend = Backend(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let up = support::eventually(Duration::from_secs(20), || async {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    assert!(
        up,
        "{script} did not listen on {addr}: {:?}",
        backend.0.try_wait()
    );
    (backend, addr)
}

async fn through_the_gateway(backend: SocketAddr, gateway: SocketAddr, name: &str) {
    let listen = gateway.to_string();
    let preamble = Preamble::new("backends-test").listen(&listen);
    let dir = support::TempDir::new("backends");
    let key = wxgate::token::PrivateKey::generate(wxgate::token::Algorithm::EdDSA).unwrap();
    let key_file = dir.write("assertion.pem", &key.to_pem().unwrap());
    let key_file = key_file.display();
    let text = format!(
        r#"{preamble}
[assertion]
algorithm = "EdDSA"
private_key_file = "{key_file}"

[wechat]
appid = "wxbackendstest001"
secret_env = "BACKENDS_WECHAT"

[login.hook]
url = "http://{backend}/internal/wxgate"
secret_env = "BACKENDS_HOOK"

[metrics]
listen = "127.0.0.1:0"

[audit.webhook]
url = "http://{backend}/internal/wxgate/audit"
secret_env = "BACKENDS_AUDIT"
retries = 0

[[routes]]
prefix = "/api/"
upstreams = ["{backend}"]
"#
    );
    let env = dev::with_config(
        &text,
        &[
            ("BACKENDS_WECHAT", "backends wechat secret"),
            ("BACKENDS_HOOK", HOOK_SECRET),
            ("BACKENDS_AUDIT", AUDIT_SECRET),
        ],
    )
    .await;
    let gw = env.gateway.addr();

    // A mock user with a unionid, and one without.
    for code in ["code-1", "nounion-1"] {
        let login = support::login(gw, code).await;
        assert_eq!(login.status, 200, "{name}: {}", login.text());
        let openid = MockWechat::openid_for(code);
        let uid = format!("u-{}", &openid[openid.len() - 8..]);
        assert_eq!(login.json()["uid"], uid, "{name}: the hook's answer");
        assert_eq!(login.json()["roles"], json!(["user"]), "{name}");
        let token = login.json()["token"].as_str().unwrap().to_string();
        let req = format!(
            "GET /api/me HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\
             X-OpenID: o-spoofed\r\nX-UnionID: u-spoofed\r\nX-User-ID: u-spoofed\r\nX_User_Roles: admin\r\n\r\n"
        );
        let r = support::raw_request(gw, req.as_bytes()).await;
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let v = r.json();
        assert_eq!(v["openid"], MockWechat::openid_for(code), "{name}: {v}");
        match MockWechat::unionid_for(code) {
            Some(u) => assert_eq!(v["unionid"], u, "{name}: {v}"),
            None => assert!(v["unionid"].is_null(), "{name}: {v}"),
        }
        assert_eq!(v["uid"], uid, "{name}: {v}");
        assert_eq!(v["roles"], "user", "{name}: {v}");
    }
    // The hook itself refuses a call wxgate did not sign, and a stale or forged one.
    let call = json!({"event": "login", "appid": "wxbackendstest001", "openid": "o-forged", "unionid": null})
        .to_string();
    let now = wxgate::clock::unix_now();
    let stale = now - 600;
    for headers in [
        vec![],
        vec![
            format!("X-WXGate-Timestamp: {now}"),
            "X-WXGate-Signature: sha256=00".to_string(),
        ],
        vec![
            format!("X-WXGate-Timestamp: {stale}"),
            format!(
                "X-WXGate-Signature: {}",
                wxgate::hook::sign(HOOK_SECRET.as_bytes(), stale, call.as_bytes())
            ),
        ],
    ] {
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let r = support::post(
            backend,
            "/internal/wxgate",
            Some("application/json"),
            call.as_bytes(),
            &headers,
        )
        .await;
        assert_eq!(r.status, 401, "{name}: {headers:?}");
    }
    // A correctly signed call is answered (the same check wxgate's calls pass).
    let signed = format!(
        "X-WXGate-Signature: {}",
        wxgate::hook::sign(HOOK_SECRET.as_bytes(), now, call.as_bytes())
    );
    let ts = format!("X-WXGate-Timestamp: {now}");
    let r = support::post(
        backend,
        "/internal/wxgate",
        Some("application/json"),
        call.as_bytes(),
        &[&ts, &signed],
    )
    .await;
    assert_eq!(r.status, 200, "{name}: {}", r.text());
    // The two logins' audit events were delivered, each accepted by the
    // backend's signature check (a refused one counts as failed at once).
    let metrics = env.gateway.metrics_addr().unwrap();
    let outcome = |text: &str, outcome: &str| -> f64 {
        let series = format!("wxgate_audit_webhook_events_total{{outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str())?.parse().ok())
            .unwrap_or(0.0)
    };
    let settled = support::eventually(Duration::from_secs(20), || async {
        let text = support::get(metrics, "/metrics", &[]).await.text();
        outcome(&text, "delivered") + outcome(&text, "failed") >= 2.0
    })
    .await;
    let text = support::get(metrics, "/metrics", &[]).await.text();
    assert!(settled, "{name}: {text}");
    assert_eq!(outcome(&text, "failed"), 0.0, "{name}: {text}");
    assert!(outcome(&text, "delivered") >= 2.0, "{name}: {text}");
    // A delivery wxgate did not sign, or signed with another secret, is refused.
    let events = json!({"events": [{"id": "x", "event": "login", "user": "-"}]}).to_string();
    for secret in [HOOK_SECRET, "not-the-audit-secret-0123456789"] {
        let r = support::post(
            backend,
            "/internal/wxgate/audit",
            Some("application/json"),
            events.as_bytes(),
            &[
                &format!("X-WXGate-Timestamp: {now}"),
                &format!(
                    "X-WXGate-Signature: {}",
                    wxgate::hook::sign(secret.as_bytes(), now, events.as_bytes())
                ),
            ],
        )
        .await;
        assert_eq!(
            r.status, 401,
            "{name}: an audit delivery signed with {secret}"
        );
    }
    let signed = format!(
        "X-WXGate-Signature: {}",
        wxgate::hook::sign(AUDIT_SECRET.as_bytes(), now, events.as_bytes())
    );
    let r = support::post(
        backend,
        "/internal/wxgate/audit",
        Some("application/json"),
        events.as_bytes(),
        &[&format!("X-WXGate-Timestamp: {now}"), &signed],
    )
    .await;
    assert_eq!(r.status, 204, "{name}: {}", r.text());
    // Reached without wxgate (by mistake), the backend refuses what carries
    // no assertion, or a forged one, whatever the identity headers say.
    for assertion in ["", "X-WXGate-Assertion: eyJhbGciOiJFZERTQSJ9.e30.AAAA"] {
        let mut req = "GET /api/me HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\
            X-OpenID: o-spoofed\r\nX-Request-ID: r-1\r\n"
            .to_string();
        if !assertion.is_empty() {
            req.push_str(assertion);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        let r = support::raw_request(backend, req.as_bytes()).await;
        assert_eq!(r.status, 401, "{name}: {assertion:?}");
    }
    // No token: wxgate answers; the backend never sees the spoofed header.
    let r = support::raw_request(
        gw,
        b"GET /api/me HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\nX-OpenID: o-spoofed\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "token_missing");
    dev::stop(env).await;
}

#[test]
fn the_readme_shows_the_example_files() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for file in ["flask_backend.py", "express_backend.js"] {
        let text = std::fs::read_to_string(Path::new(EXAMPLES).join(file)).unwrap();
        assert!(
            readme.contains(&text),
            "README does not show examples/{file} as it is"
        );
    }
}

#[tokio::test]
async fn the_flask_backend_reads_the_verified_openid() {
    let python = ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| works(p, &["-c", "import flask"], EXAMPLES));
    let Some(python) = python else {
        return skip_or_fail("no python3 with Flask (apt-get install python3-flask)");
    };
    let gateway = gateway_addr().await;
    let (_backend, addr) = start_backend(python, "flask_backend.py", gateway).await;
    through_the_gateway(addr, gateway, "flask").await;
}

#[tokio::test]
async fn the_express_backend_reads_the_verified_openid() {
    if !works("node", &["-e", "require('express')"], EXAMPLES) {
        return skip_or_fail("no node with express (npm install --prefix examples express@4)");
    }
    let gateway = gateway_addr().await;
    let (_backend, addr) = start_backend("node", "express_backend.js", gateway).await;
    through_the_gateway(addr, gateway, "express").await;
}

#[tokio::test]
async fn a_backend_written_for_cloud_run_runs_unchanged_behind_the_gateway() {
    let python = ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| works(p, &["-c", "import flask"], EXAMPLES));
    let Some(python) = python else {
        return skip_or_fail("no python3 with Flask (apt-get install python3-flask)");
    };
    let gateway = gateway_addr().await;
    let (_backend, backend) = start_backend(python, "cloudrun_backend.py", gateway).await;
    let listen = gateway.to_string();
    let preamble = Preamble::new("cloudrun-test").listen(&listen);
    let text = format!(
        r#"{preamble}
[headers]
cloud_run = true

[wechat]
appid = "wxcloudrunbackend"
secret_env = "CLOUDRUN_WECHAT"

[[routes]]
prefix = "/api/"
upstreams = ["{backend}"]
"#
    );
    let env = dev::with_config(&text, &[("CLOUDRUN_WECHAT", "cloud run wechat secret")]).await;
    let gw = env.gateway.addr();
    let token = support::login(gw, "cloud-1").await.token();
    let req = format!(
        "GET /api/whoami HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\
         X-WX-OPENID: o-victim\r\nx_wx_openid: o-victim\r\nX-WX-SOURCE: forged\r\nX-WX-UNIONID: u-victim\r\n\r\n"
    );
    let r = support::raw_request(gw, req.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({
            "openid": MockWechat::openid_for("cloud-1"),
            "appid": "wxcloudrunbackend",
            "unionid": MockWechat::unionid_for("cloud-1"),
            "source": "wxgate",
        })
    );
    // Without a token the client's copy never reaches it: wxgate answers.
    let r = support::raw_request(
        gw,
        b"GET /api/whoami HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\nX-WX-OPENID: o-victim\r\n\r\n",
    )
    .await;
    assert_eq!((r.status, r.error()), (401, "token_missing".into()));
    dev::stop(env).await;
}
