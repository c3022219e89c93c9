//! The audit webhook, through a real gateway: every audit event reaches the
//! backend signed as the login hook's calls are (a receiver of the test's
//! own checks each signature), a delivery the backend fails is retried with
//! the same event ids, the openid travels only where the operator opts in,
//! no token or `session_key` is ever in an event, and a backend that never
//! answers neither delays a login nor grows the queue past its bound.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use support::{dev, Preamble};
use tokio::net::TcpListener;
use wxgate::dev::example_hook::{ExampleHook, Mode, AUDIT_PATH};
use wxgate::dev::mock_wechat::MockWechat;
use wxgate::dev::DevEnv;

const SECRET: &str = "audit-webhook-secret-0123456789";
const JSON: Option<&str> = Some("application/json");
const ADMIN: &str = "audit-admin-secret-0123456789";

/// A gateway whose `[audit.webhook]` (with `lines` added, and `[audit]`
/// lines `audit`) delivers to `url`.
async fn gateway(url: &str, audit: &str, lines: &str) -> DevEnv {
    let preamble = Preamble::new("audit-test");
    let text = format!(
        r#"{preamble}
[wechat]
appid = "wxaudittest000001"
secret_env = "AUDIT_TEST_WECHAT"

[metrics]
listen = "127.0.0.1:0"
admin_secret_env = "AUDIT_TEST_ADMIN"

[audit]
{audit}

[audit.webhook]
url = "{url}"
secret_env = "AUDIT_TEST_SECRET"
{lines}

[[routes]]
prefix = "/"
upstreams = ["127.0.0.1:9"]
"#
    );
    dev::with_config(
        &text,
        &[
            ("AUDIT_TEST_WECHAT", "audit wechat secret"),
            ("AUDIT_TEST_SECRET", SECRET),
            ("AUDIT_TEST_ADMIN", ADMIN),
        ],
    )
    .await
}

/// A receiver checking signatures with [`SECRET`], and its URL.
async fn receiver() -> (ExampleHook, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{AUDIT_PATH}", listener.local_addr().unwrap());
    let hook = ExampleHook::new(SECRET.as_bytes());
    tokio::spawn(hook.clone().serve(listener));
    (hook, url)
}

async fn scrape(addr: SocketAddr) -> String {
    let r = support::get(addr, "/metrics", &[]).await;
    assert_eq!(r.status, 200);
    r.text()
}

fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Wait until `hook` holds events of each kind in `events`.
async fn delivered(hook: &ExampleHook, events: &[&str]) -> Vec<Value> {
    let ok = support::eventually(Duration::from_secs(20), || async {
        let got = hook.audit_events();
        events.iter().all(|e| got.iter().any(|v| v["event"] == *e))
    })
    .await;
    let got = hook.audit_events();
    assert!(ok, "waiting for {events:?}, delivered: {got:?}");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_the_backend_signed_and_without_secrets() {
    let (hook, url) = receiver().await;
    let env = gateway(&url, "", "").await;
    let gw = env.gateway.addr();
    let login = support::login(gw, "audit-user.1").await;
    assert_eq!(login.status, 200, "{}", login.text());
    let token = login.json()["token"].as_str().unwrap().to_string();
    let refresh_token = login.json()["refresh_token"].as_str().unwrap().to_string();
    let r = support::refresh(gw, &refresh_token).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let token2 = r.json()["token"].as_str().unwrap().to_string();
    let auth = format!("Authorization: Bearer {token2}");
    let r = support::post(gw, "/wx/logout", JSON, b"{}", &[&auth]).await;
    assert_eq!(r.status, 200, "{}", r.text());

    let events = delivered(&hook, &["login", "refresh", "logout"]).await;
    assert_eq!(hook.bad_signatures(), 0, "every delivery is signed");
    let openid = MockWechat::openid_for("audit-user.1");
    let user = env.gateway.state().user_hash(&openid);
    let text = serde_json::to_string(&events).unwrap();
    for secret in [
        openid.as_str(),
        token.as_str(),
        token2.as_str(),
        refresh_token.as_str(),
        &MockWechat::session_key_for("audit-user.1"),
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    for e in &events {
        assert_eq!(e["user"], user.as_str(), "{e}");
        assert!(e["time_ms"].as_u64().unwrap() > 0, "{e}");
        assert!(e.get("openid").is_none(), "{e}");
    }
    let ids: HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "each event has its own id");
    let login_event = events.iter().find(|e| e["event"] == "login").unwrap();
    assert_eq!(login_event["app"], "wxaudittest000001");
    assert_eq!(login_event["ip"], "127.0.0.1");
    assert_eq!(login_event["session"].as_str().unwrap().len(), 6);
    let logout = events.iter().find(|e| e["event"] == "logout").unwrap();
    assert_eq!(logout["what"], "token");

    // An admin bans the user (their session ends), then lifts the ban.
    let second = support::login(gw, "audit-user.2").await;
    assert_eq!(second.status, 200, "{}", second.text());
    let internal = env.gateway.metrics_addr().unwrap();
    for (method, body) in [
        ("PUT", r#"{"duration": "1h", "reason": "test"}"#),
        ("DELETE", ""),
    ] {
        let req = format!(
            "{method} /internal/admin/users/{openid}/ban HTTP/1.1\r\nHost: internal\r\nConnection: close\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let r = support::raw_request(internal, req.as_bytes()).await;
        assert_eq!(r.status, 200, "{method}: {}", r.text());
    }
    let events = delivered(&hook, &["admin_ban", "admin_unban", "session_ended"]).await;
    let ended = events
        .iter()
        .find(|e| e["event"] == "session_ended")
        .unwrap();
    assert_eq!(
        (ended["by"].as_str(), ended["reason"].as_str()),
        (Some("admin"), Some("banned"))
    );
    let ban = events.iter().find(|e| e["event"] == "admin_ban").unwrap();
    assert_eq!(ban["outcome"], "ok");
    assert_eq!(ban["user"], user.as_str());
    assert!(!serde_json::to_string(&events).unwrap().contains(ADMIN));

    let metrics = scrape(env.gateway.metrics_addr().unwrap()).await;
    assert_eq!(
        sample(&metrics, r#"wxgate_bans_total{action="ban"}"#),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, r#"wxgate_bans_total{action="unban"}"#),
        1.0,
        "{metrics}"
    );
    let series = r#"wxgate_audit_webhook_events_total{outcome="delivered"}"#;
    assert!(
        support::eventually(Duration::from_secs(10), || async {
            sample(&scrape(env.gateway.metrics_addr().unwrap()).await, series) >= 3.0
        })
        .await,
        "{metrics}"
    );
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_is_retried_with_the_same_ids_and_the_openid_where_opted_in() {
    let (hook, url) = receiver().await;
    hook.set_mode(Mode::Down);
    let env = gateway(&url, "openid = true", "retries = 20").await;
    let gw = env.gateway.addr();
    let login = support::login(gw, "audit-retry.1").await;
    assert_eq!(
        login.status, 200,
        "a backend that fails does not fail the login"
    );
    // The backend saw the event and answered 500: it comes again.
    delivered(&hook, &["login"]).await;
    hook.set_mode(Mode::Normal);
    let metrics = env.gateway.metrics_addr().unwrap();
    let series = r#"wxgate_audit_webhook_events_total{outcome="delivered"}"#;
    assert!(
        support::eventually(Duration::from_secs(20), || async {
            sample(&scrape(metrics).await, series) >= 1.0
        })
        .await
    );
    let events = hook.audit_events();
    let logins: Vec<&Value> = events.iter().filter(|e| e["event"] == "login").collect();
    assert!(logins.len() >= 2, "delivered again after a 500: {events:?}");
    assert!(
        logins.iter().all(|e| e["id"] == logins[0]["id"]),
        "{logins:?}"
    );
    let openid = MockWechat::openid_for("audit-retry.1");
    assert_eq!(
        logins[0]["openid"],
        openid.as_str(),
        "[audit] openid = true"
    );
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_never_answers_delays_no_login_and_the_queue_stays_bounded() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{AUDIT_PATH}", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            open.push(s);
        }
    });
    let env = gateway(
        &url,
        "",
        "timeout = \"30s\"\nqueue = 2\nmax_batch = 1\nretries = 0",
    )
    .await;
    let gw = env.gateway.addr();
    let logins = async {
        for i in 0..6 {
            let r = support::login(gw, &format!("audit-stuck.{i}")).await;
            assert_eq!(r.status, 200, "{}", r.text());
        }
    };
    // Each login would wait 30 s if it waited for the webhook.
    tokio::time::timeout(Duration::from_secs(20), logins)
        .await
        .expect("logins are not delayed by the webhook");
    let text = scrape(env.gateway.metrics_addr().unwrap()).await;
    // One event in the delivery under way, two queued: the others are dropped.
    let dropped = sample(
        &text,
        r#"wxgate_audit_webhook_events_total{outcome="dropped"}"#,
    );
    assert!(dropped >= 3.0, "{text}");
    hold.abort();
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wxgate_dev_delivers_audit_events_to_the_example_hook() {
    let env = dev::embedded().await;
    let login = support::login(env.gateway.addr(), "dev-audit.1").await;
    assert_eq!(login.status, 200, "{}", login.text());
    delivered(&env.hook, &["login"]).await;
    assert_eq!(env.hook.bad_signatures(), 0);
    dev::stop(env).await;
}
