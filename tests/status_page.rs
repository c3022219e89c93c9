//! The status page on the internal listener, loaded in a real browser:
//! headless Chromium renders it after real traffic (logins, a refused code,
//! proxied and refused requests, an access token fetch, a refused reload) on
//! a gateway on Redis with one upstream up and one down; the test reads the
//! rendered DOM and takes a screenshot. Nothing on the page may be a
//! secret, a token, an openid or an access token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::redis::RedisServer;
use support::{dev, Preamble, Upstream};

/// Chromium's rendering of `url`: the DOM after load, and a screenshot
/// written to `png`. `None` when no Chromium runs here (and none is required).
fn chromium(url: &str, png: &Path, profile: &Path) -> Option<String> {
    let browser = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok());
    let Some(browser) = browser else {
        assert!(
            std::env::var_os("WXGATE_REQUIRE_CHROMIUM").is_none(),
            "Chromium is required here but none runs"
        );
        eprintln!("skipped: Chromium is not installed");
        return None;
    };
    let run = |extra: &[String]| {
        let out = Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--no-first-run",
                "--window-size=1100,1700",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{browser}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(&[format!("--screenshot={}", png.display())]);
    Some(run(&["--dump-dom".to_string()]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_renders_in_a_browser_with_live_state_and_no_secret() {
    let redis = RedisServer::start();
    let up = Upstream::start("status").await;
    let dead = support::dead_addr().await;
    let preamble = Preamble::new("status-test");
    let text = format!(
        r#"{preamble}
[wechat]
appid = "wxstatuspage00001"
secret_env = "W"

[store]
kind = "redis"
url_env = "R"

[metrics]
listen = "127.0.0.1:0"
access_token_secret_env = "S"

[[routes]]
prefix = "/gone/"
upstreams = ["{dead}"]
health_check_interval = "1s"

[[routes]]
prefix = "/"
upstreams = ["{}"]
health_check_interval = "1s"
"#,
        up.addr
    );
    let url = redis.url();
    let secrets = [
        ("W", "status page wechat secret"),
        ("R", url.as_str()),
        ("S", "status-page-token-secret"),
    ];
    let env = dev::with_config(&text, &secrets).await;
    let gw = env.gateway.addr();
    let internal = env.gateway.metrics_addr().unwrap();

    // Traffic: two logins, a refused code, proxied and refused requests.
    let first = support::login(gw, "status.1").await;
    assert_eq!(first.status, 200);
    let token = support::login(gw, "status.2").await.token();
    assert_eq!(support::login(gw, "invalid").await.status, 401);
    for _ in 0..3 {
        let r = support::get(gw, "/x", &[&format!("Authorization: Bearer {token}")]).await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(support::get(gw, "/x", &[]).await.status, 401);
    let r = support::get(
        internal,
        "/internal/wechat/access_token",
        &["Authorization: Bearer status-page-token-secret"],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let access_token: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    let access_token = access_token["access_token"].as_str().unwrap().to_string();
    // A reload the file refuses.
    let dir = support::TempDir::new("status-reload");
    let bad = dir.write("wxgate.toml", "[server\n");
    let vars = support::vars(&secrets);
    assert!(env.gateway.reload_file(&bad, &vars).await.is_err());

    // The health check has found the dead upstream.
    let page_url = format!("http://{internal}/");
    assert!(
        support::eventually(Duration::from_secs(10), || async {
            support::get(internal, "/", &[])
                .await
                .text()
                .contains(&format!(r#"{dead} <span class="down">down</span>"#))
        })
        .await,
        "the dead upstream is never shown down"
    );

    let r = support::get(internal, "/", &[]).await;
    assert_eq!(r.status, 200);
    let csp = r.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(r.header("cache-control"), Some("no-store"));

    let png = dir.path().join("status.png");
    let Some(dom) = chromium(&page_url, &png, &dir.path().join("profile")) else {
        return;
    };
    let screenshot = std::fs::read(&png).unwrap();
    assert!(
        screenshot.starts_with(b"\x89PNG") && screenshot.len() > 10_000,
        "a screenshot of {} bytes",
        screenshot.len()
    );

    for shown in [
        "wxgate ".to_string(),
        format!("{} <span class=\"up\">up</span>", up.addr),
        format!("{dead} <span class=\"down\">down</span>"),
        // The config's file, and the refused reload.
        "wxgate.toml".to_string(),
        "refused</span> at".to_string(),
        // Redis and its revocation feed.
        "Redis, standalone".to_string(),
        "revocation feed".to_string(),
        // WeChat: the logins' calls, the refused code's errcode, the token.
        "jscode2session".to_string(),
        "40029 ×1".to_string(),
        "stable_token".to_string(),
        "wxstatuspage00001".to_string(),
        "held</span>, expires in".to_string(),
        // Counters: 2 logins and 1 failed, 3 + 1 proxied requests.
        "logins: <b>2</b>".to_string(),
        "logins failed: <b>1</b>".to_string(),
        "tokens refused: <b>1</b>".to_string(),
        "<svg class=\"spark\"".to_string(),
    ] {
        assert!(dom.contains(&shown), "the page lacks {shown:?}:\n{dom}");
    }
    let route_row = dom
        .split("<tr>")
        .find(|row| row.contains("<td>/</td>"))
        .unwrap();
    assert!(route_row.contains(r#"<td class="n">4</td>"#), "{route_row}");
    assert!(!dom.contains("<script"), "no script on the page");

    let mut never = vec![
        token.clone(),
        first.token(),
        access_token,
        "status page wechat secret".to_string(),
        "status-page-token-secret".to_string(),
        support::JWT_SECRET.to_string(),
        "eyJ".to_string(),
    ];
    for r in [&first] {
        let body: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
        for key in ["openid", "unionid", "refresh_token"] {
            if let Some(v) = body[key].as_str() {
                never.push(v.to_string());
            }
        }
    }
    for secret in never {
        assert!(!dom.contains(&secret), "the page shows {secret:?}");
    }
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wxgate_dev_opens_the_internal_listener_and_prints_only_its_own_secrets() {
    let env = dev::embedded().await;
    let internal = env
        .gateway
        .metrics_addr()
        .expect("dev opens the internal listener");
    let walkthrough = env.walkthrough();
    assert!(
        walkthrough.contains(&format!("http://{internal}/ (the status page")),
        "{walkthrough}"
    );
    // The printed command for the backends' access token works as printed.
    let line = walkthrough
        .lines()
        .find(|l| l.contains("/internal/wechat/access_token"))
        .expect("the access token command");
    let secret = line
        .split("Bearer ")
        .nth(1)
        .and_then(|s| s.strip_suffix('\''))
        .expect("its secret");
    let r = support::get(
        internal,
        "/internal/wechat/access_token",
        &[&format!("Authorization: Bearer {secret}")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let page = support::get(internal, "/", &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("&lt;embedded dev config&gt;"));
    assert!(!page.text().contains(secret), "no secret on the page");
    dev::stop(env).await;

    // A file's secrets may be real ones: never printed.
    let text = format!(
        "{}\n[wechat]\nappid = \"wxdevsecrets00001\"\nsecret = \"dev file secret\"\n\n[metrics]\nlisten = \"127.0.0.1:0\"\nadmin_secret = \"file-admin-secret-0123456\"\n\n[[routes]]\nprefix = \"/\"\nupstreams = [\"127.0.0.1:9\"]\n",
        Preamble::new("dev-secrets")
    );
    let env = dev::with_config(&text, &[]).await;
    let walkthrough = env.walkthrough();
    assert!(walkthrough.contains(&env.gateway.metrics_addr().unwrap().to_string()));
    assert!(
        !walkthrough.contains("file-admin-secret-0123456"),
        "{walkthrough}"
    );
    dev::stop(env).await;
}
