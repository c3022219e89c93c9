//! WeChat's server APIs through the real gateway: `/wx/phone` against the
//! mock WeChat over HTTP (errcodes, a token refused and replaced, the hook
//! told of the number and a retry after the hook failed), and the shared
//! access token: three instances on one Redis (spawned by the test) serve
//! `/internal/wechat/access_token` under concurrent demand with exactly one
//! `stable_token` call per expiry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::net::TcpListener;

use support::redis::RedisServer;
use support::{dev, Preamble, Response, Upstream};
use wxgate::dev::example_hook::Mode;
use wxgate::dev::mock_wechat::MockWechat;
use wxgate::server::{Deps, Running};

const INTERNAL_SECRET: &str = "internal-secret-0123456789";
const RELAY_SECRET: &str = "relay-secret-0123456789";

async fn phone(gw: SocketAddr, token: &str, code: &str) -> Response {
    let auth = format!("Authorization: Bearer {token}");
    support::post_json(gw, "/wx/phone", &json!({ "code": code }), &[&auth]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phone_number_reaches_the_mini_program_and_the_backend() {
    let env = dev::embedded().await;
    let gw = env.gateway.addr();
    let token = support::login(gw, "pat.1").await.token();
    let openid = MockWechat::openid_for("pat.1");
    let number = MockWechat::phone_for(&openid);

    let r = phone(gw, &token, "p-1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({ "phoneNumber": number, "purePhoneNumber": number, "countryCode": "86" })
    );
    assert_eq!(env.mock.token_calls(), (1, 0));
    let phones = env.hook.phones();
    assert_eq!(phones.len(), 1);
    assert_eq!(phones[0]["openid"], openid);
    assert_eq!(phones[0]["phone"]["phoneNumber"], number);

    // Errcodes, each with its stable code.
    let r = phone(gw, &token, "p-1").await;
    assert_eq!((r.status, r.error()), (400, "invalid_phone_code".into()));
    assert_eq!(r.json()["wechat_errcode"], 40163);
    let r = phone(gw, &token, "phone-invalid").await;
    assert_eq!((r.status, r.error()), (400, "invalid_phone_code".into()));
    assert_eq!(r.json()["wechat_errcode"], 40029);
    let r = phone(gw, &token, "phone-limit").await;
    assert_eq!((r.status, r.error()), (429, "rate_limited".into()));
    let r = phone(gw, &token, "").await;
    assert_eq!((r.status, r.error()), (400, "invalid_request".into()));

    // A token is required before anything else.
    let r = support::post(gw, "/wx/phone", None, br#"{"code":"p-2"}"#, &[]).await;
    assert_eq!((r.status, r.error()), (401, "token_missing".into()));
    // One access token served every call.
    assert_eq!(env.mock.token_calls(), (1, 0));
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_access_token_is_replaced_and_the_call_made_again() {
    let env = dev::embedded().await;
    let gw = env.gateway.addr();
    let token = support::login(gw, "quinn.1").await.token();
    assert_eq!(phone(gw, &token, "q-1").await.status, 200);
    // Someone else forced a refresh: WeChat answers 40001 to wxgate's token.
    env.mock.rotate_token_elsewhere();
    let r = phone(gw, &token, "q-2").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(env.mock.token_calls(), (2, 1), "one forced refresh");
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_number_the_hook_missed_is_kept_for_a_retry() {
    let env = dev::embedded().await;
    let gw = env.gateway.addr();
    let token = support::login(gw, "rae.1").await.token();
    env.hook.set_mode(Mode::Down);
    let r = phone(gw, &token, "r-1").await;
    assert_eq!((r.status, r.error()), (502, "hook_unavailable".into()));
    env.hook.set_mode(Mode::Normal);
    let r = phone(gw, &token, "r-1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        env.hook.phones().len(),
        2,
        "told twice, the second time answered"
    );
    // Another user cannot pick up the kept number with the same code.
    let other = support::login(gw, "sam.1").await.token();
    env.hook.set_mode(Mode::Down);
    let _ = phone(gw, &token, "r-2").await;
    env.hook.set_mode(Mode::Normal);
    let r = phone(gw, &other, "r-2").await;
    assert_eq!((r.status, r.error()), (400, "invalid_phone_code".into()));
    dev::stop(env).await;
}

/// Three gateways on one Redis, each with a metrics listener serving the access token.
struct Cluster {
    mock: MockWechat,
    _mock_task: tokio::task::JoinHandle<std::io::Result<()>>,
    _upstream: Upstream,
    _redis: RedisServer,
    gateways: Vec<Running>,
}

impl Cluster {
    async fn start(lifetime: Duration) -> Self {
        let mock = MockWechat::new("wxtokentest000001", "token test secret");
        mock.set_token_lifetime(lifetime);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mock_addr = listener.local_addr().unwrap();
        let mock_task = tokio::spawn(mock.clone().serve(listener));
        let upstream = Upstream::start("tokens").await;
        let redis = RedisServer::start();
        let mut gateways = Vec::new();
        for _ in 0..3 {
            let preamble = Preamble::new("token-test");
            let text = format!(
                r#"{preamble}
[wechat]
appid = "wxtokentest000001"
secret_env = "W"
api_base = "http://{mock_addr}"
timeout = "2s"

[wechat.relay]
secret_env = "RELAY"
allow = ["/wxa/msg_sec_check"]

[store]
kind = "redis"
url_env = "R"

[metrics]
listen = "127.0.0.1:0"
access_token_secret_env = "S"

[[routes]]
prefix = "/"
upstreams = ["{}"]
"#,
                upstream.addr
            );
            let url = redis.url();
            let config = support::config_with(
                &text,
                &[
                    ("W", "token test secret"),
                    ("R", &url),
                    ("S", INTERNAL_SECRET),
                    ("RELAY", RELAY_SECRET),
                ],
            );
            let deps = Deps::with_store(wxgate::store::build(&config.store).unwrap());
            gateways.push(wxgate::server::start_with(&config, deps).await.unwrap());
        }
        Self {
            mock,
            _mock_task: mock_task,
            _upstream: upstream,
            _redis: redis,
            gateways,
        }
    }

    fn internal(&self, i: usize) -> SocketAddr {
        self.gateways[i].metrics_addr().expect("metrics listener")
    }

    async fn stop(self) {
        for g in self.gateways {
            g.shutdown(Duration::from_secs(1)).await;
        }
    }
}

async fn get_token(addr: SocketAddr, secret: &str) -> Response {
    get_token_at(addr, secret, "/internal/wechat/access_token").await
}

async fn get_token_at(addr: SocketAddr, secret: &str, target: &str) -> Response {
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: internal\r\nConnection: close\r\n\
         Authorization: Bearer {secret}\r\n\r\n"
    );
    support::raw_request(addr, req.as_bytes()).await
}

/// Every instance asks `per_instance` times at once; the tokens handed out.
async fn burst(cluster: &Cluster, per_instance: usize) -> Vec<String> {
    let mut tasks = Vec::new();
    for _ in 0..per_instance {
        for i in 0..3 {
            let addr = cluster.internal(i);
            tasks.push(tokio::spawn(async move {
                get_token(addr, INTERNAL_SECRET).await
            }));
        }
    }
    let mut tokens = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("cache-control"), Some("no-store"));
        tokens.push(r.json()["access_token"].as_str().unwrap().to_string());
    }
    tokens
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_make_one_stable_token_call() {
    let cluster = Cluster::start(Duration::from_secs(7200)).await;
    let tokens = burst(&cluster, 10).await;
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
    assert_eq!(cluster.mock.token_calls(), (1, 0));
    let r = get_token(cluster.internal(0), INTERNAL_SECRET).await;
    let expires_in = r.json()["expires_in"].as_u64().unwrap();
    assert!((7100..=7200).contains(&expires_in), "{expires_in}");

    // Only with the secret.
    for secret in ["", "wrong-secret-0123456789"] {
        let r = get_token(cluster.internal(1), secret).await;
        assert_eq!(r.status, 401, "{secret:?}");
        assert!(!r.text().contains(&tokens[0]));
    }
    // Never on the public listener.
    let r = get_token(cluster.gateways[2].addr(), INTERNAL_SECRET).await;
    assert_ne!(r.status, 200);
    assert!(!r.text().contains(&tokens[0]));
    assert_eq!(cluster.mock.token_calls(), (1, 0));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stable_token_call_per_expiry_under_load() {
    // Tokens live 2 s and are replaced after 1 s: several expiries in 3.5 s.
    let cluster = Cluster::start(Duration::from_secs(2)).await;
    let started = Instant::now();
    let mut seen = HashSet::new();
    while started.elapsed() < Duration::from_millis(3500) {
        seen.extend(burst(&cluster, 4).await);
    }
    let (calls, forced) = cluster.mock.token_calls();
    assert_eq!(forced, 0);
    assert!(seen.len() >= 3, "expected several expiries, saw {seen:?}");
    // Every call gave a new token: no instance fetched what another had.
    assert_eq!(calls, seen.len(), "tokens seen: {seen:?}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_a_backend_reports_refused_is_replaced_for_every_instance() {
    let cluster = Cluster::start(Duration::from_secs(7200)).await;
    let first = burst(&cluster, 2).await[0].clone();
    // A backend got 40001 with it and says so to instance 0.
    let target = format!("/internal/wechat/access_token?refused={first}");
    let r = get_token_at(cluster.internal(0), INTERNAL_SECRET, &target).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let second = r.json()["access_token"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert_eq!(cluster.mock.token_calls(), (2, 1), "one forced refresh");
    // Every other instance hands out the new one at once, and a second
    // report of the same old token changes nothing.
    for i in [1, 2] {
        let r = get_token(cluster.internal(i), INTERNAL_SECRET).await;
        assert_eq!(r.json()["access_token"], second.as_str(), "instance {i}");
    }
    let r = get_token_at(cluster.internal(2), INTERNAL_SECRET, &target).await;
    assert_eq!(r.json()["access_token"], second.as_str());
    assert_eq!(cluster.mock.token_calls(), (2, 1));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_calls_refused_on_three_instances_make_one_replacement() {
    let cluster = Cluster::start(Duration::from_secs(7200)).await;
    let relay = |i: usize| {
        let addr = cluster.internal(i);
        async move {
            let req = format!(
                "POST /wxa/msg_sec_check HTTP/1.1\r\nHost: internal\r\nConnection: close\r\n\
                 Authorization: Bearer {RELAY_SECRET}\r\nContent-Length: 2\r\n\r\n{{}}"
            );
            support::raw_request(addr, req.as_bytes()).await
        }
    };
    for i in 0..3 {
        assert_eq!(relay(i).await.json()["errcode"], 0);
    }
    assert_eq!(cluster.mock.token_calls(), (1, 0));
    // Someone else forced a refresh: every instance's token is refused at
    // once, and each relays calls at the same time.
    cluster.mock.rotate_token_elsewhere();
    let mut calls = Vec::new();
    for _ in 0..3 {
        for i in 0..3 {
            calls.push(tokio::spawn(relay(i)));
        }
    }
    for c in calls {
        let r = c.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["errcode"], 0, "{}", r.text());
    }
    let (_, forced) = cluster.mock.token_calls();
    assert_eq!(forced, 1, "one forced refresh for the whole fleet");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_stable_token_costs_each_caller_one_timeout_not_a_staircase() {
    // WeChat's stable_token does not answer; [wechat] timeout = "1s". Six
    // concurrent /wx/phone share one stable_token call and each hears 504
    // within about one timeout (before: after 1, 2, ... 6 s, with 6 calls).
    let env = dev::with_config(
        &format!(
            "{}\n[wechat]\nappid = \"{}\"\nsecret = \"unused\"\napi_base = \"http://127.0.0.1:9\"\ntimeout = \"1s\"\n\n[[routes]]\nprefix = \"/\"\nupstreams = [\"127.0.0.1:9\"]\n",
            Preamble::new("hung-token"),
            wxgate::dev::DEV_APPID
        ),
        &[],
    )
    .await;
    let gw = env.gateway.addr();
    let token = support::login(gw, "hank.1").await.token();
    env.mock.hang_tokens(Some(Duration::from_secs(30)));
    let started = Instant::now();
    let calls: Vec<_> = (0..6)
        .map(|i| {
            let token = token.clone();
            tokio::spawn(async move {
                let r = phone(gw, &token, &format!("p-hung-{i}")).await;
                (r, started.elapsed())
            })
        })
        .collect();
    for call in calls {
        let (r, took) = call.await.unwrap();
        assert_eq!(r.status, 504, "{}", r.text());
        assert_eq!(r.error(), "wechat_timeout");
        assert!(
            took < Duration::from_millis(2500),
            "answered after {took:?}"
        );
    }
    assert_eq!(env.mock.token_requests(), 1, "one stable_token call");
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_and_decrypt_are_rate_limited_per_user_and_in_all() {
    // Without limits any logged-in user could spend the app's
    // getuserphonenumber quota with junk codes.
    const APPID: &str = "wxlimitstest0001";
    let mock = MockWechat::new(APPID, "limits secret");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mock_addr = listener.local_addr().unwrap();
    let served = tokio::spawn(mock.clone().serve(listener));
    let upstream = Upstream::start("limits").await;
    let text = format!(
        "{}\n[wechat]\nappid = \"{APPID}\"\nsecret_env = \"W\"\napi_base = \"http://{mock_addr}\"\n\n\
         [login]\nrate_limit_phone_per_user = \"3/min\"\nrate_limit_phone_global = \"5/min\"\n\
         rate_limit_decrypt_per_user = \"2/min\"\n\n\
         [[routes]]\nprefix = \"/\"\nupstreams = [\"{}\"]\n",
        Preamble::new("limits-test"),
        upstream.addr
    );
    let config = support::config_with(&text, &[("W", "limits secret")]);
    // Counted in windows of the wall clock: the test sets the clock.
    let clock = std::sync::Arc::new(wxgate::clock::ManualClock::new(29_000_000 * 60_000));
    let deps = Deps {
        store: wxgate::store::build(&config.store).unwrap(),
        clock: clock.clone(),
        traces: None,
    };
    let running: Running = wxgate::server::start_with(&config, deps).await.unwrap();
    let gw = running.addr();
    let ann = support::login(gw, "ann.1").await.token();
    let bob = support::login(gw, "bob.1").await.token();

    for i in 0..3 {
        let r = phone(gw, &ann, &format!("ann-p-{i}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = phone(gw, &ann, "ann-p-3").await;
    assert_eq!(
        (r.status, r.error()),
        (429, "rate_limited".into()),
        "{}",
        r.text()
    );
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // The global limit: five in all.
    for i in 0..2 {
        let r = phone(gw, &bob, &format!("bob-p-{i}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = phone(gw, &bob, "bob-p-2").await;
    assert_eq!(
        (r.status, r.error()),
        (429, "rate_limited".into()),
        "{}",
        r.text()
    );
    // Nothing refused reached WeChat; the next window opens them again.
    clock.advance(Duration::from_secs(60));
    let r = phone(gw, &ann, "ann-p-4").await;
    assert_eq!(r.status, 200, "{}", r.text());

    // /wx/decrypt, per user.
    let auth = format!("Authorization: Bearer {bob}");
    let body = json!({"encryptedData": "AAAA", "iv": "AAAAAAAAAAAAAAAAAAAAAA=="});
    for _ in 0..2 {
        let r = support::post_json(gw, "/wx/decrypt", &body, &[&auth]).await;
        assert_ne!(r.status, 429, "{}", r.text());
    }
    let r = support::post_json(gw, "/wx/decrypt", &body, &[&auth]).await;
    assert_eq!(
        (r.status, r.error()),
        (429, "rate_limited".into()),
        "{}",
        r.text()
    );
    running.shutdown(Duration::from_secs(1)).await;
    served.abort();
}
