//! The mini program client (`client/wxgate.js`) against the real gateway:
//! node runs `client/test/e2e.test.js` with `fetch` standing in for
//! `wx.request`, against a gateway (with the mock WeChat, tokens living 2 s)
//! started here. Among its checks: 20 concurrent requests with an expired
//! token cause exactly one refresh.
//!
//! `cargo test` also runs the client's own tests (a fake `wx`) from here.
//! Skipped when `node` is missing, except where `WXGATE_REQUIRE_NODE` is set
//! (CI sets it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Command, Stdio};

use support::{dev, Preamble, Upstream};

/// The access token lifetime the e2e test is told about.
const TTL_MS: u64 = 2000;

fn node_or_skip() -> bool {
    let ok = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("WXGATE_REQUIRE_NODE").is_none(),
            "node is required here (apt-get install nodejs)"
        );
        eprintln!("skipped: no node");
    }
    ok
}

/// The client's own tests (`node --test client/test/`, a fake `wx`), so that
/// `cargo test` runs them too. The end-to-end file skips itself here.
#[test]
fn the_client_unit_tests_pass() {
    if !node_or_skip() {
        return;
    }
    let out = Command::new("node")
        .args(["--test", "--test-reporter=tap", "client/test/"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("WXGATE_URL")
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("# fail 0"), "{stdout}");
    assert!(!stdout.contains("# pass 0\n"), "no test ran: {stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mini_program_client_drives_the_real_gateway() {
    if !node_or_skip() {
        return;
    }
    let up = Upstream::start("client").await;
    let jwt = format!("ttl = \"{TTL_MS}ms\"\nleeway = \"0s\"");
    let preamble = Preamble::new("client-test").jwt(&jwt);
    let text = format!(
        r#"{preamble}
[wechat]
appid = "wxc11e47000000001"
secret_env = "CLIENT_WECHAT"
timeout = "2s"

[metrics]
listen = "127.0.0.1:0"

[[routes]]
prefix = "/api/"
upstreams = ["{}"]
"#,
        up.addr
    );
    let env = dev::with_config(&text, &[("CLIENT_WECHAT", "client test app secret")]).await;
    let url = format!("http://{}", env.gateway.addr());

    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args(["--test", "--test-reporter=tap", "client/test/e2e.test.js"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("WXGATE_URL", url)
            .env("WXGATE_TOKEN_TTL_MS", TTL_MS.to_string())
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // Both e2e tests ran (none skipped) and passed.
    assert!(stdout.contains("# pass 2"), "{stdout}");
    assert!(stdout.contains("# skipped 0"), "{stdout}");

    // What the gateway itself counted, not only what the client sent: one
    // refresh per burst (two tests), three logins (one after the logout),
    // no refresh token presented twice.
    let metrics = env.gateway.metrics_addr().expect("metrics listener");
    let scrape = support::raw_request(
        metrics,
        b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n",
    )
    .await;
    let text = String::from_utf8(scrape.body).unwrap();
    let outcome = |endpoint: &str, outcome: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("wxgate_endpoint_outcomes_total{"))
            .filter(|l| l.contains(&format!(r#"endpoint="{endpoint}""#)))
            .filter(|l| l.contains(&format!(r#"outcome="{outcome}""#)))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(outcome("refresh", "rotated"), 2.0, "{text}");
    assert_eq!(outcome("refresh", "reused"), 0.0, "{text}");
    assert_eq!(outcome("refresh", "invalid"), 0.0, "{text}");
    assert_eq!(outcome("login", "ok"), 3.0, "{text}");
    assert_eq!(outcome("logout", "ok"), 1.0, "{text}");
    dev::stop(env).await;
}
