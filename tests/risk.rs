//! Risk-aware login (`[login.risk]`) through the real gateway and the mock
//! WeChat: `getuserriskrank` asked once per login with the client's address,
//! the rank told to the login hook, carried in the token (`risk`) and
//! injected upstream (`X-WX-Risk-Rank`), kept across a refresh; a rank at
//! `refuse_at` or above refused with 403 `login_refused` before the hook
//! hears of it, counted; WeChat failing as `on_error` says.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use tokio::net::TcpListener;

use support::{dev, Preamble, Upstream};
use wxgate::dev::example_hook::ExampleHook;
use wxgate::dev::mock_wechat::MockWechat;
use wxgate::dev::DevEnv;

const HOOK_SECRET: &str = "risk-hook-secret-0123456789";

async fn start(risk: &str) -> (DevEnv, ExampleHook, Upstream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/internal/wxgate", listener.local_addr().unwrap());
    let hook = ExampleHook::new(HOOK_SECRET.as_bytes());
    tokio::spawn(hook.clone().serve(listener));
    let up = Upstream::start("risk").await;
    let preamble = Preamble::new("risk-test");
    let text = format!(
        r#"{preamble}
[wechat]
appid = "wxrisktest0000001"
secret_env = "W"
timeout = "1s"

[login.hook]
url = "{hook_url}"
secret_env = "H"
on_refresh = true

[login.risk]
{risk}

[metrics]
listen = "127.0.0.1:0"

[[routes]]
prefix = "/"
upstreams = ["{}"]
"#,
        up.addr
    );
    let env = dev::with_config(&text, &[("W", "risk wechat secret"), ("H", HOOK_SECRET)]).await;
    (env, hook, up)
}

fn metric(text: &str, rank: &str, outcome: &str) -> f64 {
    let series = format!("wxgate_login_risk_total{{outcome=\"{outcome}\",rank=\"{rank}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str())?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rank_reaches_the_hook_the_token_and_the_upstream() {
    let (env, hook, _up) = start("refuse_at = 3").await;
    let gw = env.gateway.addr();
    let r = support::login(gw, "risk2-ann.1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.token();
    let refresh = r.json()["refresh_token"].as_str().unwrap().to_string();
    let openid = MockWechat::openid_for("risk2-ann.1");

    // WeChat was asked with the user and the client's address.
    let asks = env.mock.risk_asks();
    assert_eq!(asks.len(), 1);
    assert_eq!(asks[0]["openid"], openid);
    assert_eq!(asks[0]["appid"], "wxrisktest0000001");
    assert_eq!(asks[0]["scene"], 0);
    assert_eq!(asks[0]["client_ip"], "127.0.0.1");
    // The hook heard the rank.
    let calls = hook.calls();
    assert_eq!(calls[0]["risk_rank"], 2, "{calls:?}");
    // The token carries it, the upstream sees it, a client's copy never.
    let r = support::get(
        gw,
        "/x",
        &[
            &format!("Authorization: Bearer {token}"),
            "X-WX-Risk-Rank: 0",
        ],
    )
    .await;
    assert_eq!(r.upstream_values("x-wx-risk-rank"), vec!["2"]);
    // A refreshed token keeps the login's rank (the hook cannot change it).
    let r = support::post_json(gw, "/wx/refresh", &json!({ "refresh_token": refresh }), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.token();
    assert_eq!(hook.calls().last().unwrap()["risk_rank"], 2);
    let r = support::get(gw, "/x", &[&format!("Authorization: Bearer {token}")]).await;
    assert_eq!(r.upstream_values("x-wx-risk-rank"), vec!["2"]);
    assert_eq!(env.mock.risk_asks().len(), 1, "asked at login only");

    // A user WeChat ranks low: rank 0.
    let r = support::login(gw, "bea.1").await;
    let r = support::get(gw, "/x", &[&format!("Authorization: Bearer {}", r.token())]).await;
    assert_eq!(r.upstream_values("x-wx-risk-rank"), vec!["0"]);
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_risky_login_is_refused_before_the_hook_and_counted() {
    let (env, hook, _up) = start("refuse_at = 3").await;
    let gw = env.gateway.addr();
    let r = support::login(gw, "risk3-cal.1").await;
    assert_eq!(
        (r.status, r.error()),
        (403, "login_refused".into()),
        "{}",
        r.text()
    );
    assert!(r.text().contains("risky"), "{}", r.text());
    assert!(!r.text().contains("token"), "{}", r.text());
    assert!(hook.calls().is_empty(), "the hook never heard of it");
    // The same code again: judged by the same rank, WeChat not asked again.
    let r = support::login(gw, "risk3-cal.1").await;
    assert_eq!(
        (r.status, r.error()),
        (403, "login_refused".into()),
        "{}",
        r.text()
    );
    assert_eq!(env.mock.risk_asks().len(), 1);
    assert_eq!(env.mock.calls_for("risk3-cal.1"), 1);
    let r = support::login(gw, "risk4-cal.2").await;
    assert_eq!(r.status, 403);
    let metrics = env.gateway.metrics_addr().unwrap();
    let text = support::get(metrics, "/metrics", &[]).await.text();
    assert_eq!(metric(&text, "3", "refused"), 2.0, "{text}");
    assert_eq!(metric(&text, "4", "refused"), 1.0, "{text}");
    let r = support::login(gw, "risk1-cal.3").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = support::get(metrics, "/metrics", &[]).await.text();
    assert_eq!(metric(&text, "1", "allowed"), 1.0, "{text}");
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_rank_the_login_goes_on_or_not_as_configured() {
    // `allow` (the default): no rank, no header, counted.
    let (env, _hook, _up) = start("refuse_at = 3").await;
    let gw = env.gateway.addr();
    let r = support::login(gw, "riskdenied-dan.1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = support::get(gw, "/x", &[&format!("Authorization: Bearer {}", r.token())]).await;
    assert!(r.upstream_values("x-wx-risk-rank").is_empty());
    let text = support::get(env.gateway.metrics_addr().unwrap(), "/metrics", &[])
        .await
        .text();
    assert_eq!(metric(&text, "none", "allowed"), 1.0, "{text}");
    dev::stop(env).await;

    // `refuse`: WeChat's error, and no token.
    let (env, hook, _up) = start("on_error = \"refuse\"").await;
    let r = support::login(env.gateway.addr(), "riskdenied-dan.2").await;
    assert_eq!(
        (r.status, r.error()),
        (502, "wechat_error".into()),
        "{}",
        r.text()
    );
    assert_eq!(r.json()["wechat_errcode"], 48001);
    assert!(hook.calls().is_empty());
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_access_token_costs_a_login_one_timeout_for_its_rank() {
    // [wechat] timeout = "1s"; the access token the rank needs never comes.
    let (env, hook, _up) = start("refuse_at = 3").await;
    env.mock
        .hang_tokens(Some(std::time::Duration::from_secs(30)));
    let started = std::time::Instant::now();
    let r = support::login(env.gateway.addr(), "risk4-eve.1").await;
    let took = started.elapsed();
    // No rank: `allow` lets the login through, without one.
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        hook.calls()[0].get("risk_rank").is_none(),
        "{:?}",
        hook.calls()
    );
    // jscode2session answers at once; the rank's token and call are one
    // timeout in all, not one each.
    assert!(took < std::time::Duration::from_millis(1900), "{took:?}");
    dev::stop(env).await;
}
