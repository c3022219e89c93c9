//! Several gateway instances sharing one Redis, as in a real deployment
//! behind a load balancer: two gateways (`wxgate::server::start`, each with
//! its own `RedisStore`, like two processes) in front of one echo upstream,
//! one mock WeChat and one `redis-server` spawned by the test.
//!
//! Covered: a token from A works on B; logout on one instance is honoured by
//! the other within 1 s; logout of everything; refresh rotation and reuse
//! detection across instances; one WeChat call for a code sent to both;
//! login rate limits shared by the instances (per IP, global, behind trusted
//! proxies); Redis killed mid-test with `fail_closed` and `fail_open`, and
//! recovery without a restart; the memory store through one gateway; and
//! (ignored, a measurement) what the revocation check costs per request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use support::redis::RedisServer;
use support::{Gateway, Preamble, Response, Upstream};
use wxgate::clock::ManualClock;
use wxgate::dev::mock_wechat::MockWechat;
use wxgate::server::Deps;

const APPID: &str = "wxinstancestest01";
const WECHAT_SECRET: &str = "instances wechat secret";
const JSON: Option<&str> = Some("application/json");
/// Revocations must reach every instance within this.
const PROPAGATION: Duration = Duration::from_secs(1);
/// How long revocation checks may answer from memory without Redis
/// (`max_staleness`, 1.5 s by default, and a margin).
const STALENESS_LIMIT: Duration = Duration::from_secs(4);
/// How long a gateway may take to notice that Redis is back.
const RECOVERY: Duration = Duration::from_secs(5);

/// What the gateways of one test share: WeChat, the upstream, Redis.
struct Env {
    mock: MockWechat,
    mock_addr: SocketAddr,
    mock_task: tokio::task::JoinHandle<std::io::Result<()>>,
    upstream: Upstream,
    redis: RedisServer,
    /// The gateways' clock: it stands one second into a minute, so a burst
    /// of logins falls in one rate-limit window.
    clock: Arc<ManualClock>,
}

impl Env {
    async fn start() -> Self {
        Self::with_redis(RedisServer::start()).await
    }

    async fn with_redis(redis: RedisServer) -> Self {
        let mock = MockWechat::new(APPID, WECHAT_SECRET);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mock_addr = listener.local_addr().unwrap();
        let mock_task = tokio::spawn(mock.clone().serve(listener));
        Self {
            mock,
            mock_addr,
            mock_task,
            upstream: Upstream::start("backend").await,
            redis,
            clock: Arc::new(ManualClock::new(1_700_000_041_000)),
        }
    }

    /// A gateway config: `server`, `login` and `store` are extra lines of those sections.
    fn toml(&self, server: &str, login: &str, store: &str) -> String {
        let preamble = Preamble::new("instances-test").server(server);
        format!(
            r#"{preamble}
[wechat]
appid = "{APPID}"
secret_env = "WXGATE_TEST_WECHAT"
api_base = "http://{mock}"
timeout = "2s"

[login]
{login}

[store]
{store}

[[routes]]
prefix = "/"
upstreams = ["{upstream}"]
"#,
            mock = self.mock_addr,
            upstream = self.upstream.addr,
        )
    }

    /// A gateway on the shared Redis; `server` and `login` are extra lines,
    /// `on_error` is `fail_closed` or `fail_open`.
    async fn redis_gateway(&self, server: &str, login: &str, on_error: &str) -> Gateway {
        let store = format!(
            "kind = \"redis\"\nurl_env = \"WXGATE_TEST_REDIS\"\nkey_prefix = \"wxgate-it:\"\non_error = \"{on_error}\""
        );
        self.gateway(&self.toml(server, login, &store)).await
    }

    async fn gateway(&self, text: &str) -> Gateway {
        self.try_gateway(text).await.expect("gateway starts")
    }

    async fn try_gateway(&self, text: &str) -> Result<Gateway, wxgate::server::StartError> {
        let url = self.redis.url();
        let config = support::config_with(
            text,
            &[
                ("WXGATE_TEST_WECHAT", WECHAT_SECRET),
                ("WXGATE_TEST_REDIS", &url),
            ],
        );
        let deps = Deps {
            store: wxgate::store::build(&config.store).expect("store"),
            clock: self.clock.clone(),
            traces: None,
        };
        let running = wxgate::server::start_with(&config, deps).await?;
        let addr = running.addr();
        Ok(Gateway {
            running: Some(running),
            addr,
        })
    }

    /// Gateways A and B, same config, same Redis.
    async fn pair(&self, server: &str, login: &str) -> (Gateway, Gateway) {
        (
            self.redis_gateway(server, login, "fail_closed").await,
            self.redis_gateway(server, login, "fail_closed").await,
        )
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.mock_task.abort();
    }
}

/// A successful login: (token, refresh token, whole body).
async fn login(gw: &Gateway, code: &str) -> (String, String, Value) {
    let r = support::login(gw.addr, code).await;
    assert_eq!(r.status, 200, "login {code}: {}", r.text());
    let v = r.json();
    let token = v["token"].as_str().expect("token").to_string();
    let refresh = v["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_string();
    (token, refresh, v)
}

async fn logout(gw: &Gateway, token: &str, body: &str) -> Response {
    let auth = format!("Authorization: Bearer {token}");
    support::post(gw.addr, "/wx/logout", JSON, body.as_bytes(), &[&auth]).await
}

/// A successful refresh: (token, refresh token).
async fn refresh(gw: &Gateway, refresh_token: &str) -> (String, String) {
    let r = support::refresh(gw.addr, refresh_token).await;
    assert_eq!(r.status, 200, "refresh: {}", r.text());
    let v = r.json();
    (
        v["token"].as_str().expect("token").to_string(),
        v["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .to_string(),
    )
}

async fn protected(gw: &Gateway, token: &str) -> Response {
    gw.get_auth("/api/me", token, &[]).await
}

/// The token is accepted and the upstream saw `openid`.
async fn assert_accepted(gw: &Gateway, token: &str, openid: &str) {
    let r = protected(gw, token).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_values("x-openid"), vec![openid.to_string()]);
}

/// The token is refused with 401 `token_revoked` within [`PROPAGATION`].
async fn assert_revoked_soon(gw: &Gateway, token: &str) {
    let started = Instant::now();
    let refused = support::eventually(PROPAGATION, || async {
        let r = protected(gw, token).await;
        r.status == 401 && r.error() == "token_revoked"
    })
    .await;
    let last = protected(gw, token).await;
    assert!(
        refused,
        "not refused within {PROPAGATION:?} ({:?}); now {} {}",
        started.elapsed(),
        last.status,
        last.text()
    );
}

/// `/readyz`'s body without the shared store's report, which must be there.
fn readyz_body(r: &Response) -> Value {
    let mut v = r.json();
    let shared = v.as_object_mut().and_then(|o| o.remove("shared_store"));
    assert!(
        shared
            .as_ref()
            .is_some_and(|s| s["topology"] == "standalone"),
        "no shared store report in {}",
        r.text()
    );
    v
}

fn assert_error(r: &Response, status: u16, code: &str) {
    assert_eq!(
        (r.status, r.error().as_str()),
        (status, code),
        "{}",
        r.text()
    );
}

async fn stop(gateways: impl IntoIterator<Item = Gateway>) {
    for g in gateways {
        g.stop().await;
    }
}

// ---------------------------------------------------------------------------
// Tokens and logout across instances
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_one_instance_is_honoured_by_the_other() {
    let env = Env::start().await;
    let (a, b) = env.pair("", "").await;
    let alice = MockWechat::openid_for("alice.1");

    let (t1, r1, _) = login(&a, "alice.1").await;
    let (t2, r2, _) = login(&b, "alice.2").await;
    assert_accepted(&b, &t1, &alice).await;
    assert_accepted(&a, &t2, &alice).await;

    // Logout of one token on B: A refuses it, the other token lives on.
    let r = logout(&b, &t1, "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["revoked"], "token");
    assert_revoked_soon(&a, &t1).await;
    assert_revoked_soon(&b, &t1).await;
    assert_accepted(&a, &t2, &alice).await;
    assert_accepted(&b, &t2, &alice).await;

    // Another user is untouched by what follows.
    let (bob, _, _) = login(&a, "bob.1").await;

    // Logout of everything, on A: every token and refresh token of alice, on both.
    let r = logout(&a, &t2, r#"{"all": true}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["revoked"], "all");
    for gw in [&a, &b] {
        assert_revoked_soon(gw, &t1).await;
        assert_revoked_soon(gw, &t2).await;
        assert_accepted(gw, &bob, &MockWechat::openid_for("bob.1")).await;
    }
    for (gw, r) in [(&b, &r1), (&a, &r2)] {
        assert_error(
            &support::refresh(gw.addr, r).await,
            401,
            "refresh_token_invalid",
        );
    }
    stop([a, b]).await;
}

/// Logging out everything must not refuse a login made right after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn login_right_after_logout_all_is_accepted() {
    let env = Env::start().await;
    let (a, b) = env.pair("", "").await;
    let alice = MockWechat::openid_for("alice.1");
    let (t1, _, _) = login(&a, "alice.1").await;
    let r = logout(&a, &t1, r#"{"all": true}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The user logs in again at once (the usual "log out everywhere, log in here").
    let (t2, r2, _) = login(&b, "alice.2").await;
    assert_accepted(&a, &t2, &alice).await;
    let r = support::refresh(b.addr, &r2).await;
    assert_eq!(r.status, 200, "{}", r.text());
    stop([a, b]).await;
}

// ---------------------------------------------------------------------------
// Refresh tokens across instances
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotates_and_reuse_revokes_the_family_everywhere() {
    let env = Env::start().await;
    let (a, b) = env.pair("", "").await;
    let alice = MockWechat::openid_for("alice.1");

    let (t1, r1, body) = login(&a, "alice.1").await;
    assert!(
        r1.len() >= 43,
        "refresh token {r1:?} is shorter than 32 bytes"
    );
    assert_ne!(r1, t1);
    assert_eq!(body["openid"], alice.as_str());

    // Rotation on A; the new token works on B.
    let r = support::refresh(a.addr, &r1).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["openid"], alice.as_str());
    assert!(v["expires_in"].as_u64().unwrap() > 0);
    let t2 = v["token"].as_str().unwrap().to_string();
    let r2 = v["refresh_token"].as_str().unwrap().to_string();
    assert!(t2 != t1 && r2 != r1 && r2 != t2 && r2.len() >= 43);
    assert_accepted(&b, &t2, &alice).await;
    assert_accepted(&a, &t1, &alice).await;

    // A second, independent login (another family) of the same user.
    let (other, other_refresh, _) = login(&b, "alice.2").await;

    // The old refresh token again, on B: reuse.
    let reused = support::refresh(b.addr, &r1).await;
    assert_error(&reused, 401, "refresh_token_reused");
    // The family is revoked: the newest refresh token and every access token of it.
    let r = support::refresh(a.addr, &r2).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.error().starts_with("refresh_token_"), "{}", r.text());
    for gw in [&a, &b] {
        assert_revoked_soon(gw, &t1).await;
        assert_revoked_soon(gw, &t2).await;
        assert_accepted(gw, &other, &alice).await;
    }
    // The other family still rotates.
    let (t3, _) = refresh(&a, &other_refresh).await;
    assert_accepted(&b, &t3, &alice).await;
    stop([a, b]).await;
}

/// A refresh that failed with 503 because Redis was slow must be retryable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn refresh_that_timed_out_can_be_retried() {
    let env = Env::start().await;
    let a = env.redis_gateway("", "", "fail_closed").await;
    let (_, r1, _) = login(&a, "alice.1").await;

    env.redis.pause();
    assert_error(
        &support::refresh(a.addr, &r1).await,
        503,
        "store_unavailable",
    );
    env.redis.resume();
    let ready = support::eventually(RECOVERY, || async {
        a.get("/readyz", &[]).await.status == 200
    })
    .await;
    assert!(ready, "not ready after the resume");

    // The client was told the refresh did not happen: it tries again.
    let r = support::refresh(a.addr, &r1).await;
    assert_eq!(r.status, 200, "{}", r.text());
    a.stop().await;
}

// ---------------------------------------------------------------------------
// One WeChat call per code, across instances
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_code_on_both_instances_makes_one_wechat_call() {
    let env = Env::start().await;
    let (a, b) = env.pair("", "").await;
    for i in 0..5 {
        let code = format!("twin{i}.code");
        let (ra, rb) = tokio::join!(support::login(a.addr, &code), support::login(b.addr, &code));
        assert_eq!(ra.status, 200, "A: {}", ra.text());
        assert_eq!(rb.status, 200, "B: {}", rb.text());
        let (va, vb) = (ra.json(), rb.json());
        assert_eq!(va["token"], vb["token"], "{code}: the same token");
        assert_eq!(va["refresh_token"], vb["refresh_token"]);
        assert_eq!(env.mock.calls_for(&code), 1, "{code}: one jscode2session");
        // Once more, later, on the other instance: the shared outcome again.
        let again = support::login(b.addr, &code).await;
        assert_eq!(again.json()["token"], va["token"]);
        assert_eq!(env.mock.calls_for(&code), 1);
    }
    stop([a, b]).await;
}

// ---------------------------------------------------------------------------
// Login rate limits across instances
// ---------------------------------------------------------------------------

/// 429 `rate_limited` with `Retry-After` the 59 s left of the clock's minute.
fn assert_rate_limited(r: &Response) {
    assert_error(r, 429, "rate_limited");
    let retry = r.header("Retry-After").expect("Retry-After");
    let secs: u64 = retry
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After {retry:?} is not whole seconds"));
    assert_eq!(secs, 59, "Retry-After {secs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_rate_limit_holds_across_instances() {
    let env = Env::start().await;
    let (a, b) = env.pair("", r#"rate_limit_per_ip = "3/min""#).await;
    // No trusted proxies: X-Forwarded-For is not believed, all come from 127.0.0.1.
    let mut statuses = Vec::new();
    for (i, gw) in [&a, &b, &a].into_iter().enumerate() {
        let xff = format!("X-Forwarded-For: 203.0.113.{i}");
        statuses.push(
            support::login_with(gw.addr, &format!("u{i}.rate"), &[&xff])
                .await
                .status,
        );
    }
    assert_eq!(statuses, [200, 200, 200]);
    let fourth = support::login_with(b.addr, "u3.rate", &["X-Forwarded-For: 203.0.113.9"]).await;
    assert_rate_limited(&fourth);
    assert_eq!(
        env.mock.calls_for("u3.rate"),
        0,
        "a refused login reached WeChat"
    );
    // And on A too.
    assert_rate_limited(&support::login(a.addr, "u4.rate").await);
    stop([a, b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_rate_limit_holds_across_instances_and_clients() {
    let env = Env::start().await;
    let (a, b) = env
        .pair(
            r#"trusted_proxies = ["127.0.0.1/32"]"#,
            r#"rate_limit_global = "3/min""#,
        )
        .await;
    // Four different clients (behind a trusted proxy), two instances.
    for (i, gw) in [&a, &b, &a].into_iter().enumerate() {
        let xff = format!("X-Forwarded-For: 198.51.100.{}", i + 1);
        let r = support::login_with(gw.addr, &format!("g{i}.rate"), &[&xff]).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let fourth = support::login_with(b.addr, "g3.rate", &["X-Forwarded-For: 198.51.100.4"]).await;
    assert_rate_limited(&fourth);
    stop([a, b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_clients_are_limited_separately() {
    let env = Env::start().await;
    let (a, b) = env
        .pair(
            r#"trusted_proxies = ["127.0.0.1/32"]"#,
            r#"rate_limit_per_ip = "3/min""#,
        )
        .await;
    for client in ["198.51.100.7", "198.51.100.8"] {
        let xff = format!("X-Forwarded-For: {client}");
        for (i, gw) in [&a, &b, &a].into_iter().enumerate() {
            let r = support::login_with(gw.addr, &format!("{client}.{i}"), &[&xff]).await;
            assert_eq!(r.status, 200, "{client} login {i}: {}", r.text());
        }
        assert_rate_limited(&support::login_with(b.addr, &format!("{client}.3"), &[&xff]).await);
    }
    // The proxy itself (no X-Forwarded-For) is a client of its own.
    let r = support::login(a.addr, "proxy.1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    stop([a, b]).await;
}

// ---------------------------------------------------------------------------
// A full store, a store that evicts
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_store_full_of_revocations_refuses_logout_and_forgets_none() {
    let env = Env::start().await;
    let store = "kind = \"memory\"\n[store.memory]\nmax_revocations = 3";
    let gw = env.gateway(&env.toml("", "", store)).await;
    let mut ended = Vec::new();
    for i in 0..3 {
        let (token, refresh_token, _) = login(&gw, &format!("user{i}.1")).await;
        assert_eq!(logout(&gw, &token, "").await.status, 200);
        ended.push((token, refresh_token));
    }
    let (token, _, _) = login(&gw, "late.1").await;
    let (bystander, _, _) = login(&gw, "bystander.1").await;
    // No room for one more revocation: refused, clearly, and nothing is dropped.
    assert_error(&logout(&gw, &token, "").await, 503, "store_full");
    for (token, refresh_token) in &ended {
        assert_error(&protected(&gw, token).await, 401, "token_revoked");
        assert_eq!(support::refresh(gw.addr, refresh_token).await.status, 401);
    }
    // Nobody else is hurt; the refused logout can be retried later.
    assert_accepted(&gw, &bystander, &MockWechat::openid_for("bystander.1")).await;
    assert_accepted(&gw, &token, &MockWechat::openid_for("late.1")).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_evicts_keys_is_refused_at_start_or_reported_by_readyz() {
    let env = Env::with_redis(RedisServer::start_with(&[
        "--maxmemory-policy",
        "allkeys-lru",
    ]))
    .await;
    let store = |on_error: &str| {
        format!("kind = \"redis\"\nurl_env = \"WXGATE_TEST_REDIS\"\non_error = \"{on_error}\"")
    };
    let refused = env
        .try_gateway(&env.toml("", "", &store("fail_closed")))
        .await;
    let Err(e) = refused else {
        panic!("started on a Redis that evicts keys");
    };
    let text = e.to_string();
    assert!(
        text.contains("allkeys-lru") && text.contains("noeviction"),
        "{text}"
    );

    // fail_open accepts the risk, and /readyz names it.
    let open = env.gateway(&env.toml("", "", &store("fail_open"))).await;
    let r = open.get("/readyz", &[]).await;
    assert_eq!(
        (r.status, readyz_body(&r)),
        (200, json!({"status": "ready", "store": "store_evicts"}))
    );

    // Fixed at run time: ready. Broken again: a fail_closed gateway is not ready.
    let mut redis = ::redis::Client::open(env.redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let set = |policy: &'static str| {
        ::redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg(policy)
            .clone()
    };
    let _: () = set("noeviction").query_async(&mut redis).await.unwrap();
    let closed = env.gateway(&env.toml("", "", &store("fail_closed"))).await;
    assert_eq!(
        readyz_body(&closed.get("/readyz", &[]).await),
        json!({"status": "ready"})
    );
    let _: () = set("volatile-lru").query_async(&mut redis).await.unwrap();
    let r = closed.get("/readyz", &[]).await;
    assert_eq!(
        (r.status, readyz_body(&r)),
        (
            503,
            json!({"status": "not_ready", "reason": "store_evicts"})
        )
    );
    stop([open, closed]).await;
}

/// Redis commands run so far, but the revocation feed's reads (`XREAD`,
/// a few per second whatever the traffic) and `INFO` itself (on `con`,
/// one connection for every reading: opening one sends commands too).
async fn redis_commands(con: &mut ::redis::aio::MultiplexedConnection) -> u64 {
    let text: String = ::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(con)
        .await
        .unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter(|l| !l.starts_with("xread:") && !l.starts_with("info:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// The revocation check is answered from memory: authenticated requests
/// send Redis no command at all, with revocations held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_requests_send_redis_no_command() {
    let env = Env::start().await;
    let (a, b) = env.pair("", "").await;
    let (token, _, _) = login(&a, "alice.1").await;
    let (other, _, _) = login(&a, "bob.1").await;
    assert_eq!(logout(&a, &other, "").await.status, 200);
    assert_revoked_soon(&b, &other).await;
    let mut con = ::redis::Client::open(env.redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let before = redis_commands(&mut con).await;
    assert!(before > 0, "the logins and the logout are counted");
    for _ in 0..100 {
        for gw in [&a, &b] {
            assert_eq!(protected(gw, &token).await.status, 200);
            assert_eq!(protected(gw, &other).await.status, 401);
        }
    }
    let after = redis_commands(&mut con).await;
    assert_eq!(
        after - before,
        0,
        "Redis commands for 400 authenticated requests"
    );
    // The feed and the revocations held are in the metrics.
    let text = a.running().state().render_metrics_with(|_| {});
    for line in [
        "wxgate_store_up{topology=\"standalone\"} 1",
        "wxgate_revocations_live{topology=\"standalone\"} 2",
        "wxgate_revocation_feed_loads_total{topology=\"standalone\"} 1",
        "wxgate_revocation_feed_staleness_seconds{topology=\"standalone\"} 0.",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    stop([a, b]).await;
}

/// `replica_acks` with no replica to answer: a logout waits
/// `replica_ack_timeout`, then answers 503 (recorded, but not known to be
/// safe), and meanwhile logins and refreshes go on unhindered (the wait
/// holds a connection of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_waiting_for_replicas_holds_up_nobody_else() {
    let env = Env::start().await;
    let store = "kind = \"redis\"\nurl_env = \"WXGATE_TEST_REDIS\"\nreplica_acks = 1\nreplica_ack_timeout = \"1500ms\"";
    let gw = env.gateway(&env.toml("", "", store)).await;
    let mut tokens = Vec::new();
    for i in 0..3 {
        tokens.push(login(&gw, &format!("waiting.{i}")).await.0);
    }
    let logouts: Vec<_> = tokens
        .iter()
        .map(|t| {
            let (addr, t) = (gw.addr, t.clone());
            tokio::spawn(async move {
                let auth = format!("Authorization: Bearer {t}");
                support::post(addr, "/wx/logout", JSON, b"{}", &[&auth]).await
            })
        })
        .collect();
    // While three logouts wait for a replica that never answers:
    for i in 0..5 {
        let started = Instant::now();
        let (_, refresh_token, _) = login(&gw, &format!("meanwhile.{i}")).await;
        refresh(&gw, &refresh_token).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    for l in logouts {
        assert_error(&l.await.unwrap(), 503, "store_unavailable");
    }
    // Recorded all the same (the waits queue behind each other on their
    // connection, so the last ones land after their callers gave up).
    for token in &tokens {
        let revoked = support::eventually(Duration::from_secs(10), || async {
            let r = protected(&gw, token).await;
            r.status == 401 && r.error() == "token_revoked"
        })
        .await;
        assert!(revoked, "a logout answered 503 was not recorded");
    }
    gw.stop().await;
}

// ---------------------------------------------------------------------------
// Redis down
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fail_closed_and_fail_open_then_recover() {
    let mut env = Env::start().await;
    let closed = env.redis_gateway("", "", "fail_closed").await;
    let open = env.redis_gateway("", "", "fail_open").await;
    let alice = MockWechat::openid_for("alice.1");
    let (token, refresh_token, _) = login(&closed, "alice.1").await;
    assert_accepted(&open, &token, &alice).await;
    assert_eq!(closed.get("/readyz", &[]).await.status, 200);

    env.redis.kill();

    // Revocation checks answer from memory for `max_staleness` (1.5 s by
    // default) without the store, then fail_closed refuses with 503.
    let stale = support::eventually(STALENESS_LIMIT, || async {
        let r = protected(&closed, &token).await;
        r.status == 503 && r.error() == "store_unavailable"
    })
    .await;
    assert!(stale, "authenticated requests never went 503 without Redis");
    // fail_closed: everything that needs the store is 503, health is fine.
    assert_error(&protected(&closed, &token).await, 503, "store_unavailable");
    let r = closed.get("/readyz", &[]).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(
        readyz_body(&r),
        json!({"status": "not_ready", "reason": "store_unavailable"}),
        "the body is a stable code, not the store's error text"
    );
    assert_error(
        &support::login(closed.addr, "carol.1").await,
        503,
        "store_unavailable",
    );
    assert_eq!(env.mock.calls_for("carol.1"), 0, "the code was spent");
    assert_error(
        &support::refresh(closed.addr, &refresh_token).await,
        503,
        "store_unavailable",
    );
    assert_error(&logout(&closed, &token, "").await, 503, "store_unavailable");
    assert_eq!(closed.get("/healthz", &[]).await.status, 200);

    // fail_open: tokens are validated without the revocation check, counted.
    // (Each instance's feed proved itself last at its own moment: this
    // one may go stale up to a read's wait later than the other.)
    let skipped = open.running().state().fail_open_count();
    let counted = support::eventually(STALENESS_LIMIT, || async {
        protected(&open, &token).await.status == 200
            && open.running().state().fail_open_count() > skipped
    })
    .await;
    assert!(counted, "{}", open.get("/readyz", &[]).await.text());
    assert_accepted(&open, &token, &alice).await;
    let r = open.get("/readyz", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        readyz_body(&r),
        json!({"status": "ready", "store": "store_unavailable"}),
        "{}",
        r.text()
    );
    // A bad token is still refused.
    assert_eq!(protected(&open, "not-a-token").await.status, 401);
    // Login always needs the store.
    assert_error(
        &support::login(open.addr, "dave.1").await,
        503,
        "store_unavailable",
    );

    env.redis.restart();

    // Both recover without a restart.
    let back = support::eventually(RECOVERY, || async {
        protected(&closed, &token).await.status == 200
    })
    .await;
    assert!(
        back,
        "fail_closed gateway did not recover within {RECOVERY:?}"
    );
    assert_accepted(&closed, &token, &alice).await;
    // Proxying recovers with the revocation feed; /readyz with the calls'
    // own connection, which reconnects on its next use.
    let ready = support::eventually(RECOVERY, || async {
        closed.get("/readyz", &[]).await.status == 200
    })
    .await;
    assert!(ready, "{}", closed.get("/readyz", &[]).await.text());
    // Each instance has its own store, failing fast for a moment after its last failure.
    let open_back = support::eventually(RECOVERY, || async {
        let r = open.get("/readyz", &[]).await;
        r.status == 200 && r.json().get("store").is_none()
    })
    .await;
    assert!(open_back, "fail_open gateway still reports the store down");
    // The code refused during the outage still logs in.
    let (carol, _, _) = login(&closed, "carol.1").await;
    assert_accepted(&open, &carol, &MockWechat::openid_for("carol.1")).await;
    // Revocation works again, on both.
    let r = logout(&open, &token, "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_revoked_soon(&closed, &token).await;
    assert_revoked_soon(&open, &token).await;
    stop([closed, open]).await;
}

// ---------------------------------------------------------------------------
// Hardening: a logout ends its session; one bad token hurts nobody else
// ---------------------------------------------------------------------------

/// A gateway on each store: Redis (shared with other gateways) and memory.
async fn on_each_store(env: &Env) -> Vec<(&'static str, Gateway)> {
    vec![
        ("redis", env.redis_gateway("", "", "fail_closed").await),
        ("memory", env.gateway(&env.toml("", "", "")).await),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_the_session_its_refresh_token_and_its_login_code() {
    let env = Env::start().await;
    for (store, gw) in on_each_store(&env).await {
        let code = format!("dave-{store}.1");
        let (t, r, v) = login(&gw, &code).await;
        let dave = v["openid"].as_str().unwrap().to_string();
        let (t_other, r_other, _) = login(&gw, &format!("dave-{store}.2")).await;

        let resp = logout(&gw, &t, "").await;
        assert_eq!(resp.status, 200, "{store}: {}", resp.text());
        assert_revoked_soon(&gw, &t).await;
        // A logout is idempotent (a client retries one that answered 503):
        // sent again it is confirmed again; but a revoked token cannot end
        // every session of its user.
        let again = logout(&gw, &t, "").await;
        assert_eq!(again.status, 200, "{store}: {}", again.text());
        assert_error(
            &logout(&gw, &t, r#"{"all": true}"#).await,
            401,
            "token_revoked",
        );
        // The refresh token of that session is dead too: a thief holding
        // both tokens does not outlive the user's logout.
        assert_error(
            &support::refresh(gw.addr, &r).await,
            401,
            "refresh_token_invalid",
        );
        // Replaying the login code does not bring the session back.
        let replay = support::login(gw.addr, &code).await;
        assert_error(&replay, 401, "invalid_code");
        assert_eq!(replay.json()["wechat_errcode"], 40163, "{store}");
        assert_eq!(env.mock.calls_for(&code), 1, "{store}");
        // The user's other session lives on.
        assert_accepted(&gw, &t_other, &dave).await;
        let (t_next, _) = refresh(&gw, &r_other).await;
        assert_accepted(&gw, &t_next, &dave).await;
        gw.stop().await;
    }
}

/// A correctly signed token whose `exp` is the end of time (what
/// `wxgate token issue --ttl 400000000000y` made before lifetimes were
/// capped) is refused; it neither panics the logout nor trips the store's
/// fail-fast window for other users.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_never_expires_is_refused_and_hurts_nobody() {
    let env = Env::start().await;
    for (store, gw) in on_each_store(&env).await {
        let (bystander, _, v) = login(&gw, &format!("erin-{store}.1")).await;
        let erin = v["openid"].as_str().unwrap().to_string();
        for exp in [i64::MAX as u64, u64::MAX] {
            let endless = jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &json!({
                    "sub": "o-endless", "iss": "wxgate", "aud": "instances-test",
                    "iat": 1_700_000_000u64, "iat_ms": 1_700_000_000_000u64, "exp": exp,
                    "jti": "endless", "fam": "endless",
                }),
                &jsonwebtoken::EncodingKey::from_secret(support::JWT_SECRET.as_bytes()),
            )
            .unwrap();
            for body in ["", r#"{"all": true}"#] {
                let r = logout(&gw, &endless, body).await;
                assert_error(&r, 401, "token_invalid");
            }
            assert_error(&protected(&gw, &endless).await, 401, "token_invalid");
            // Right after, with no pause: everyone else is served.
            assert_accepted(&gw, &bystander, &erin).await;
        }
        gw.stop().await;
    }
}

// ---------------------------------------------------------------------------
// The memory store, one instance
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_logout_and_refresh() {
    let env = Env::start().await;
    let gw = env.gateway(&env.toml("", "", "")).await;
    let alice = MockWechat::openid_for("alice.1");

    let (t1, r1, _) = login(&gw, "alice.1").await;
    assert!(r1.len() >= 43 && r1 != t1);
    assert_accepted(&gw, &t1, &alice).await;
    let (t2, r2) = refresh(&gw, &r1).await;
    assert!(t2 != t1 && r2 != r1);
    assert_accepted(&gw, &t2, &alice).await;
    let reused = support::refresh(gw.addr, &r1).await;
    assert_error(&reused, 401, "refresh_token_reused");
    let r = support::refresh(gw.addr, &r2).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_revoked_soon(&gw, &t1).await;
    assert_revoked_soon(&gw, &t2).await;

    let (t3, _, _) = login(&gw, "alice.2").await;
    assert_accepted(&gw, &t3, &alice).await;
    let (t4, _, _) = login(&gw, "alice.3").await;
    let r = logout(&gw, &t3, "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_revoked_soon(&gw, &t3).await;
    assert_accepted(&gw, &t4, &alice).await;
    assert_error(
        &support::refresh(gw.addr, "x").await,
        401,
        "refresh_token_invalid",
    );
    gw.stop().await;
}

// ---------------------------------------------------------------------------
// Measurement: what the revocation check costs
// ---------------------------------------------------------------------------

/// Mean time of `n` sequential authenticated requests over one keep-alive connection.
async fn per_request(addr: SocketAddr, token: &str, n: usize) -> Duration {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let req = format!(
        "GET /api/bench HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    let started = Instant::now();
    for _ in 0..n {
        s.write_all(req.as_bytes()).await.unwrap();
        let r = support::read_response(&mut s, Duration::from_secs(5)).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    started.elapsed() / n as u32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run with --ignored --nocapture"]
async fn measure_revocation_check_cost() {
    const N: usize = 2000;
    let env = Env::start().await;
    let tcp = RedisServer::start_tcp();
    let memory = env.gateway(&env.toml("", "", "")).await;
    let unix = env.redis_gateway("", "", "fail_closed").await;
    let tcp_toml = env.toml(
        "",
        "",
        &format!("kind = \"redis\"\nurl = \"{}\"", tcp.url()),
    );
    let over_tcp = env.gateway(&tcp_toml).await;
    let gateways = [
        ("memory (nothing revoked yet)", &memory),
        ("redis, unix socket", &unix),
        ("redis, TCP loopback", &over_tcp),
    ];
    let mut tokens = Vec::new();
    for (i, (_, gw)) in gateways.iter().enumerate() {
        let (token, _, _) = login(gw, &format!("bench{i}.1")).await;
        per_request(gw.addr, &token, 200).await; // warm-up
        tokens.push(token);
    }
    // The memory store skips its maps until something was revoked: a fourth
    // series runs on the memory gateway after revoking another token.
    let memory_revoked = env.gateway(&env.toml("", "", "")).await;
    let (t, _, _) = login(&memory_revoked, "bench3.1").await;
    let (o, _, _) = login(&memory_revoked, "bench-other.2").await;
    assert_eq!(logout(&memory_revoked, &o, "").await.status, 200);
    per_request(memory_revoked.addr, &t, 200).await;
    let series = [
        (gateways[0].0, gateways[0].1, &tokens[0]),
        (gateways[1].0, gateways[1].1, &tokens[1]),
        (gateways[2].0, gateways[2].1, &tokens[2]),
        ("memory (after a revocation)", &memory_revoked, &t),
    ];
    // Interleaved rounds, so that noise from the machine spreads over all series.
    const ROUNDS: usize = 4;
    let mut totals = [Duration::ZERO; 4];
    for _ in 0..ROUNDS {
        for (i, (_, gw, token)) in series.iter().enumerate() {
            totals[i] += per_request(gw.addr, token, N / ROUNDS).await;
        }
    }
    let results: Vec<(String, Duration)> = series
        .iter()
        .zip(totals)
        .map(|((name, _, _), total)| (name.to_string(), total / ROUNDS as u32))
        .collect();

    let base = results[0].1;
    println!("revocation check cost, {N} sequential keep-alive requests each:");
    for (name, mean) in &results {
        let diff = mean.as_secs_f64() * 1e6 - base.as_secs_f64() * 1e6;
        println!(
            "  {name:<30} {:>8.1} µs/request ({diff:+.1} µs vs memory)",
            mean.as_secs_f64() * 1e6
        );
    }

    // The check alone: `Store::is_revoked` (one MGET for Redis), sequentially.
    use wxgate::store::{memory::MemoryStore, redis::RedisStore, RevocationCheck, Store};
    let stores: [(&str, Box<dyn Store>); 3] = [
        ("MemoryStore", Box::new(MemoryStore::default())),
        (
            "RedisStore, unix socket",
            Box::new(
                RedisStore::new(&env.redis.url(), "bench:", Duration::from_millis(200)).unwrap(),
            ),
        ),
        (
            "RedisStore, TCP loopback",
            Box::new(RedisStore::new(&tcp.url(), "bench:", Duration::from_millis(200)).unwrap()),
        ),
    ];
    let check = RevocationCheck {
        jti: Some("j"),
        openid: "o",
        family: Some("f"),
        issued_ms: 1,
    };
    println!("Store::is_revoked alone, {N} sequential calls:");
    for (name, store) in &stores {
        store
            .revoke_token("other", Duration::from_secs(60))
            .await
            .unwrap();
        let started = Instant::now();
        for _ in 0..N {
            assert!(!store.is_revoked(&check).await.unwrap());
        }
        let mean = started.elapsed() / N as u32;
        println!("  {name:<30} {:>8.1} µs/call", mean.as_secs_f64() * 1e6);
    }
    stop([memory, unix, over_tcp, memory_revoked]).await;
}
