//! `/metrics` on its own listener: after real traffic through the gateway,
//! the counters moved by exactly the requests sent, and Prometheus' own
//! checker accepts the output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use support::{dev, Preamble, Upstream};
use wxgate::dev::DevEnv;

async fn start() -> (DevEnv, Upstream) {
    let up = Upstream::start("metrics").await;
    let preamble = Preamble::new("metrics-test");
    let text = format!(
        r#"{preamble}
[wechat]
appid = "wxmetricstest0001"
secret_env = "METRICS_TEST_WECHAT"

[metrics]
listen = "127.0.0.1:0"

[[routes]]
prefix = "/public/"
upstreams = ["{up}"]
auth = "public"

[[routes]]
prefix = "/"
upstreams = ["{up}"]
"#,
        up = up.addr
    );
    let env = dev::with_config(&text, &[("METRICS_TEST_WECHAT", "metrics wechat secret")]).await;
    (env, up)
}

async fn scrape(addr: SocketAddr) -> String {
    let r = support::raw_request(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        r.header("content-type")
    );
    String::from_utf8(r.body).expect("UTF-8")
}

/// Every sample line as `name{labels}` → value; labels as the encoder writes them.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, series: &str) -> f64 {
    after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn the_counters_move_by_exactly_the_requests_sent() {
    let (env, up) = start().await;
    let gw = env.gateway.addr();
    let metrics = env.gateway.metrics_addr().expect("metrics listener");
    let before = samples(&scrape(metrics).await);

    let login = support::login(gw, "m-1").await;
    assert_eq!(login.status, 200);
    let token = login.json()["token"].as_str().unwrap().to_string();
    let bad = support::login(gw, "invalid").await;
    assert_eq!(bad.status, 401, "{}", bad.error());
    let auth = format!("Authorization: Bearer {token}");
    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let forged = format!("Authorization: Bearer {forged}");
    for _ in 0..5 {
        assert_eq!(support::get(gw, "/api/x", &[&auth]).await.status, 200);
    }
    for _ in 0..3 {
        assert_eq!(support::get(gw, "/api/x", &[]).await.status, 401);
    }
    for _ in 0..2 {
        assert_eq!(support::get(gw, "/api/x", &[&forged]).await.status, 401);
    }
    for _ in 0..4 {
        assert_eq!(support::get(gw, "/public/y", &[]).await.status, 200);
    }

    // Requests are counted once their response is out: poll for the last one.
    let expect = |after: &HashMap<String, f64>| {
        let d = |s: &str| delta(&before, after, s);
        [
            (
                r#"wxgate_requests_total{method="GET",route="/",status="2xx"}"#,
                d(r#"wxgate_requests_total{method="GET",route="/",status="2xx"}"#),
                5.0,
            ),
            (
                r#"wxgate_requests_total{method="GET",route="/",status="4xx"}"#,
                d(r#"wxgate_requests_total{method="GET",route="/",status="4xx"}"#),
                5.0,
            ),
            (
                r#"wxgate_requests_total{method="GET",route="/public/",status="2xx"}"#,
                d(r#"wxgate_requests_total{method="GET",route="/public/",status="2xx"}"#),
                4.0,
            ),
            (
                r#"wxgate_requests_total{method="POST",route="/wx/login",status="2xx"}"#,
                d(r#"wxgate_requests_total{method="POST",route="/wx/login",status="2xx"}"#),
                1.0,
            ),
            (
                r#"wxgate_requests_total{method="POST",route="/wx/login",status="4xx"}"#,
                d(r#"wxgate_requests_total{method="POST",route="/wx/login",status="4xx"}"#),
                1.0,
            ),
            ("auth ok", d(r#"wxgate_auth_total{outcome="ok"}"#), 5.0),
            (
                "auth missing",
                d(r#"wxgate_auth_total{outcome="missing"}"#),
                3.0,
            ),
            (
                "auth invalid",
                d(r#"wxgate_auth_total{outcome="invalid"}"#),
                2.0,
            ),
            (
                "auth public",
                d(r#"wxgate_auth_total{outcome="public"}"#),
                4.0,
            ),
            (
                "upstream histogram",
                d("wxgate_upstream_duration_seconds_count"),
                9.0,
            ),
            (
                "added histogram",
                d("wxgate_added_duration_seconds_count"),
                9.0,
            ),
            (
                "all requests",
                d("wxgate_request_duration_seconds_count"),
                16.0,
            ),
            (
                "login ok",
                d(r#"wxgate_endpoint_outcomes_total{endpoint="login",outcome="ok"}"#),
                1.0,
            ),
            (
                "login invalid_code",
                d(r#"wxgate_endpoint_outcomes_total{endpoint="login",outcome="invalid_code"}"#),
                1.0,
            ),
            (
                "wechat ok",
                d(r#"wxgate_wechat_requests_total{api="jscode2session",errcode="",outcome="ok"}"#),
                1.0,
            ),
            (
                "wechat 40029",
                d(
                    r#"wxgate_wechat_requests_total{api="jscode2session",errcode="40029",outcome="errcode"}"#,
                ),
                1.0,
            ),
            (
                "put_session",
                d(r#"wxgate_store_operations_total{op="put_session",outcome="ok"}"#),
                1.0,
            ),
            // Five proxied requests (a login's own fresh tokens are not
            // checked: only a code sent again is).
            (
                "is_revoked",
                d(r#"wxgate_store_operations_total{op="is_revoked",outcome="ok"}"#),
                5.0,
            ),
        ]
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut last = scrape(metrics).await;
    while !expect(&samples(&last))
        .iter()
        .all(|(_, got, want)| got == want)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        last = scrape(metrics).await;
    }
    let after = samples(&last);
    for (what, got, want) in expect(&after) {
        assert_eq!(got, want, "{what}");
    }
    assert_eq!(
        after.get(&format!(
            r#"wxgate_upstream_up{{peer="{}",route="/"}}"#,
            up.addr
        )),
        Some(&1.0),
        "{last}"
    );
    assert_eq!(
        after.get(r#"wxgate_store_entries{kind="sessions"}"#),
        Some(&1.0),
        "{last}"
    );
    assert!(after.contains_key(&format!(
        r#"wxgate_build_info{{version="{}"}}"#,
        env!("CARGO_PKG_VERSION")
    )));
    assert!(after
        .get("process_resident_memory_bytes")
        .is_some_and(|v| *v > 0.0));
    // Nothing secret is in the output: no token, no openid of a user.
    assert!(!last.contains(&token));
    assert!(!last.contains("m-1"));

    promtool_accepts(&last);
    up.stop().await;
    dev::stop(env).await;
}

#[tokio::test]
async fn metrics_are_never_served_on_the_public_listener() {
    let (env, up) = start().await;
    let public = support::raw_request(
        env.gateway.addr(),
        b"GET /metrics HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        public.status, 401,
        "the required route answers, not the metrics"
    );
    let metrics = env.gateway.metrics_addr().unwrap();
    let other = support::raw_request(
        metrics,
        b"GET /other HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(other.status, 404);
    // `/` is the status page (tests/status_page.rs).
    let page = support::raw_request(
        metrics,
        b"GET / HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(page.status, 200);
    let post = support::raw_request(
        metrics,
        b"POST /metrics HTTP/1.1\r\nHost: m\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(post.status, 405);
    up.stop().await;
    dev::stop(env).await;
}

/// `promtool check metrics` (Debian package `prometheus`), when installed;
/// `.ci/run` installs it and sets `WXGATE_REQUIRE_PROMTOOL=1` so it cannot be skipped there.
fn promtool_accepts(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var_os("WXGATE_REQUIRE_PROMTOOL").is_none(),
                "promtool is required here but cannot run: {e}"
            );
            eprintln!("promtool not installed: the exposition was not checked by it");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
