//! Sessions a user can see and end, through real gateways on the memory
//! store and on a `redis-server` the test spawns: two devices of one user,
//! the list (the current one marked, the device label and address each
//! login sent), ending the other device (its token and refresh token refused
//! at once), `logout {"others": true}`, another user's session (404, never
//! 403), and device labels checked before the code reaches WeChat.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::net::TcpListener;

use support::redis::RedisServer;
use support::{Gateway, Preamble, Response, Upstream};
use wxgate::clock::{unix_now_ms, Clock, ManualClock, SystemClock};
use wxgate::dev::mock_wechat::MockWechat;
use wxgate::server::Deps;

const APPID: &str = "wxdevicestest0001";
const WECHAT_SECRET: &str = "devices wechat secret";
const JSON: Option<&str> = Some("application/json");
const ADMIN_SECRET: &str = "devices admin secret 0123456789";
const HOOK_SECRET: &str = "devices hook secret 0123456789";

struct Env {
    mock: MockWechat,
    mock_addr: SocketAddr,
    mock_task: tokio::task::JoinHandle<std::io::Result<()>>,
    upstream: Upstream,
    redis: RedisServer,
}

impl Env {
    async fn start() -> Self {
        let mock = MockWechat::new(APPID, WECHAT_SECRET);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mock_addr = listener.local_addr().unwrap();
        let mock_task = tokio::spawn(mock.clone().serve(listener));
        Self {
            mock,
            mock_addr,
            mock_task,
            upstream: Upstream::start("backend").await,
            redis: RedisServer::start(),
        }
    }

    async fn gateway(&self, store: &str) -> Gateway {
        self.gateway_with(store, "", Arc::new(SystemClock)).await
    }

    /// A gateway with `[sessions]` lines (after the rest) and this clock.
    async fn gateway_with(&self, store: &str, sessions: &str, clock: Arc<dyn Clock>) -> Gateway {
        // Access tokens of 10 minutes: idle timeouts from an hour are allowed.
        let preamble = Preamble::new("devices-test").jwt("ttl = \"10m\"");
        let text = format!(
            r#"{preamble}
[wechat]
appid = "{APPID}"
secret_env = "WXGATE_TEST_WECHAT"
api_base = "http://{mock}"
timeout = "2s"

[store]
{store}

[metrics]
listen = "127.0.0.1:0"
admin_secret_env = "WXGATE_TEST_ADMIN"

[[routes]]
prefix = "/"
upstreams = ["{upstream}"]

{sessions}
"#,
            mock = self.mock_addr,
            upstream = self.upstream.addr,
        );
        let url = self.redis.url();
        let config = support::config_with(
            &text,
            &[
                ("WXGATE_TEST_WECHAT", WECHAT_SECRET),
                ("WXGATE_TEST_REDIS", &url),
                ("WXGATE_TEST_ADMIN", ADMIN_SECRET),
                ("WXGATE_TEST_HOOK", HOOK_SECRET),
            ],
        );
        let deps = Deps {
            store: wxgate::store::build(&config.store).expect("store"),
            clock,
            traces: None,
        };
        let running = wxgate::server::start_with(&config, deps)
            .await
            .expect("gateway starts");
        let addr = running.addr();
        Gateway {
            running: Some(running),
            addr,
        }
    }

    /// One gateway on each store, with these `[sessions]` lines and clock.
    async fn each_store_with(
        &self,
        sessions: &str,
        clock: Arc<dyn Clock>,
    ) -> Vec<(&'static str, Gateway)> {
        vec![
            (
                "memory",
                self.gateway_with("", sessions, clock.clone()).await,
            ),
            (
                "redis",
                self.gateway_with(
                    "kind = \"redis\"\nurl_env = \"WXGATE_TEST_REDIS\"",
                    sessions,
                    clock,
                )
                .await,
            ),
        ]
    }

    /// One gateway on each store.
    async fn on_each_store(&self) -> Vec<(&'static str, Gateway)> {
        vec![
            ("memory", self.gateway("").await),
            (
                "redis",
                self.gateway("kind = \"redis\"\nurl_env = \"WXGATE_TEST_REDIS\"")
                    .await,
            ),
        ]
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.mock_task.abort();
    }
}

/// A login with this body: (token, refresh token).
async fn login(gw: &Gateway, body: Value) -> (String, String) {
    let r = support::post_json(gw.addr, "/wx/login", &body, &[]).await;
    assert_eq!(r.status, 200, "login {body}: {}", r.text());
    let v = r.json();
    (
        v["token"].as_str().unwrap().to_string(),
        v["refresh_token"].as_str().unwrap().to_string(),
    )
}

async fn sessions(gw: &Gateway, token: &str) -> Vec<Value> {
    let r = support::get_auth(gw.addr, "/wx/sessions", token, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["sessions"].as_array().unwrap().clone()
}

async fn end(gw: &Gateway, token: &str, id: &str) -> Response {
    let req = format!(
        "DELETE /wx/sessions/{id} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    support::raw_request(gw.addr, req.as_bytes()).await
}

async fn logout(gw: &Gateway, token: &str, body: &str) -> Response {
    let auth = format!("Authorization: Bearer {token}");
    support::post(gw.addr, "/wx/logout", JSON, body.as_bytes(), &[&auth]).await
}

fn assert_error(r: &Response, status: u16, code: &str) {
    assert_eq!(
        (r.status, r.error().as_str()),
        (status, code),
        "{}",
        r.text()
    );
}

/// The session of `list` marked current, and the others.
fn split(list: &[Value]) -> (Value, Vec<Value>) {
    let current: Vec<&Value> = list.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1, "{list:?}");
    let others = list
        .iter()
        .filter(|s| s["current"] != true)
        .cloned()
        .collect();
    (current[0].clone(), others)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_list_each_other_and_one_ends_the_other() {
    let env = Env::start().await;
    for (store, gw) in env.on_each_store().await {
        let phone = json!({"code": format!("alice-{store}.1"),
            "device": {"platform": "ios", "model": "iPhone 15", "system": "iOS 17.4"}});
        let (t_phone, r_phone) = login(&gw, phone).await;
        let pad = json!({"code": format!("alice-{store}.2"), "device": {"platform": "android"}});
        let (t_pad, r_pad) = login(&gw, pad).await;
        let (t_bob, _) = login(&gw, json!({"code": format!("bob-{store}.1")})).await;

        let list = sessions(&gw, &t_phone).await;
        assert_eq!(list.len(), 2, "{store}: {list:?}");
        let (me, others) = split(&list);
        assert_eq!(me["device"]["model"], "iPhone 15", "{store}");
        assert_eq!(me["device"]["system"], "iOS 17.4", "{store}");
        assert_eq!(me["ip"], "127.0.0.1", "{store}");
        assert_eq!(me["appid"], APPID, "{store}");
        assert!(me["created_at"].as_u64().unwrap() > 1_700_000_000_000);
        assert_eq!(others[0]["device"], json!({"platform": "android"}));
        let pad_id = others[0]["id"].as_str().unwrap().to_string();
        // The same list from the other device, marked the other way.
        let (me_pad, _) = split(&sessions(&gw, &t_pad).await);
        assert_eq!(me_pad["id"], pad_id.as_str(), "{store}");
        // Bob sees only his own, and cannot end Alice's: not found, not forbidden.
        assert_eq!(sessions(&gw, &t_bob).await.len(), 1, "{store}");
        assert_error(&end(&gw, &t_bob, &pad_id).await, 404, "session_not_found");
        assert_error(
            &end(&gw, &t_bob, "AAAAAAAAAAAAAAAAAAAAAA").await,
            404,
            "session_not_found",
        );
        assert_eq!(gw.get_auth("/api/me", &t_pad, &[]).await.status, 200);

        // Alice ends the tablet from the phone.
        let r = end(&gw, &t_phone, &pad_id).await;
        assert_eq!(r.status, 200, "{store}: {}", r.text());
        assert_eq!(r.json()["ended"], pad_id.as_str());
        // Its client is told why, so that it does not log in again by itself.
        let r = gw.get_auth("/api/me", &t_pad, &[]).await;
        assert_error(&r, 401, "session_ended");
        assert_eq!(r.json()["reason"], "ended", "{store}");
        let r = support::refresh(gw.addr, &r_pad).await;
        assert_error(&r, 401, "session_ended");
        assert_eq!(r.json()["reason"], "ended", "{store}");
        let list = sessions(&gw, &t_phone).await;
        assert_eq!(list.len(), 1, "{store}: {list:?}");
        // Ended twice: there is no such session any more.
        assert_error(&end(&gw, &t_phone, &pad_id).await, 404, "session_not_found");

        // A refresh keeps the session (same id) and says when it happened.
        let r = support::refresh(gw.addr, &r_phone).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let t_phone2 = r.json()["token"].as_str().unwrap().to_string();
        let (me2, others) = split(&sessions(&gw, &t_phone2).await);
        assert!(others.is_empty(), "{store}: {others:?}");
        assert_eq!(me2["id"], me["id"], "{store}");
        assert!(me2["refreshed_at"].as_u64() >= me["refreshed_at"].as_u64());
        gw.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_others_keeps_the_current_session_only() {
    let env = Env::start().await;
    for (store, gw) in env.on_each_store().await {
        let mut tokens = Vec::new();
        for i in 0..3 {
            tokens.push(
                login(&gw, json!({"code": format!("carol-{store}.{i}")}))
                    .await
                    .0,
            );
        }
        let (t_dave, _) = login(&gw, json!({"code": format!("dave-{store}.1")})).await;
        let r = logout(&gw, &tokens[0], r#"{"others": true}"#).await;
        assert_eq!(r.status, 200, "{store}: {}", r.text());
        assert_eq!(r.json()["revoked"], "others");
        assert_eq!(gw.get_auth("/api/me", &tokens[0], &[]).await.status, 200);
        for t in &tokens[1..] {
            let r = gw.get_auth("/api/me", t, &[]).await;
            assert_error(&r, 401, "session_ended");
            assert_eq!(r.json()["reason"], "ended", "{store}");
        }
        assert_eq!(sessions(&gw, &tokens[0]).await.len(), 1, "{store}");
        // Another user is untouched.
        assert_eq!(gw.get_auth("/api/me", &t_dave, &[]).await.status, 200);
        // `all` and `others` together say two things.
        assert_error(
            &logout(&gw, &tokens[0], r#"{"all": true, "others": true}"#).await,
            400,
            "invalid_request",
        );
        // A logged-out token cannot end other sessions.
        assert_eq!(logout(&gw, &tokens[0], "").await.status, 200);
        assert_error(
            &logout(&gw, &tokens[0], r#"{"others": true}"#).await,
            401,
            "token_revoked",
        );
        gw.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_device_label_is_refused_before_the_code_is_spent() {
    let env = Env::start().await;
    let gw = env.gateway("").await;
    let long = "x".repeat(65);
    for (i, device) in [
        json!({"model": long}),
        json!({"platform": "ios\nX-OpenID: victim"}),
        json!({"system": "a\u{0}b"}),
    ]
    .into_iter()
    .enumerate()
    {
        let code = format!("erin.{i}");
        let body = json!({"code": code, "device": device});
        let r = support::post_json(gw.addr, "/wx/login", &body, &[]).await;
        assert_error(&r, 400, "invalid_request");
        assert_eq!(env.mock.calls_for(&code), 0, "{device}");
    }
    // Unicode within the bound is a label like any other; an empty one is none.
    let (t, _) = login(
        &gw,
        json!({"code": "erin.9", "device": {"model": "华为 Mate 60 Pro", "platform": ""}}),
    )
    .await;
    let list = sessions(&gw, &t).await;
    assert_eq!(list[0]["device"]["model"], "华为 Mate 60 Pro");
    let (t2, _) = login(&gw, json!({"code": "frank.1", "device": {}})).await;
    assert_eq!(sessions(&gw, &t2).await[0].get("device"), None);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_endpoints_take_their_method_and_a_token() {
    let env = Env::start().await;
    let gw = env.gateway("").await;
    let (t, _) = login(&gw, json!({"code": "gina.1"})).await;
    assert_error(
        &support::get(gw.addr, "/wx/sessions", &[]).await,
        401,
        "token_missing",
    );
    let auth = format!("Authorization: Bearer {t}");
    assert_error(
        &support::post(gw.addr, "/wx/sessions", JSON, b"{}", &[&auth]).await,
        405,
        "method_not_allowed",
    );
    let id = sessions(&gw, &t).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_error(
        &support::get_auth(gw.addr, &format!("/wx/sessions/{id}"), &t, &[]).await,
        405,
        "method_not_allowed",
    );
    let r = support::get_auth(gw.addr, &format!("/wx/sessions/{id}"), &t, &[]).await;
    assert_eq!(r.header("allow"), Some("DELETE"));
    // Not a session id at all: no such endpoint.
    assert_error(&end(&gw, &t, "a.b").await, 404, "no_route");
    gw.stop().await;
}

/// `{"code", "device": {"platform"}}`.
fn on(code: String, platform: &str) -> Value {
    json!({"code": code, "device": {"platform": platform}})
}

fn assert_ended(r: &Response, reason: &str) {
    assert_error(r, 401, "session_ended");
    assert_eq!(r.json()["reason"], reason, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_per_user_ends_the_oldest_and_tells_it_why() {
    let env = Env::start().await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sessions = "[sessions]\nmax_per_user = 1";
    for (store, gw) in env.each_store_with(sessions, clock).await {
        let (t_phone, r_phone) = login(&gw, on(format!("hank-{store}.1"), "ios")).await;
        let (t_other, _) = login(&gw, on(format!("ivy-{store}.1"), "ios")).await;
        let (t_pad, _) = login(&gw, on(format!("hank-{store}.2"), "android")).await;
        // The phone signed in elsewhere: its client can say so.
        assert_ended(&gw.get_auth("/api/me", &t_phone, &[]).await, "replaced");
        assert_ended(&support::refresh(gw.addr, &r_phone).await, "replaced");
        assert_eq!(sessions_of(&gw, &t_pad).await.len(), 1, "{store}");
        assert_eq!(gw.get_auth("/api/me", &t_pad, &[]).await.status, 200);
        // Another user is untouched.
        assert_eq!(gw.get_auth("/api/me", &t_other, &[]).await.status, 200);
        gw.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuse_new_keeps_the_sessions_and_refuses_the_login() {
    let env = Env::start().await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sessions = "[sessions]\nmax_per_user = 1\non_limit = \"refuse_new\"";
    for (store, gw) in env.each_store_with(sessions, clock).await {
        let (t_phone, _) = login(&gw, on(format!("jack-{store}.1"), "ios")).await;
        let r = support::post_json(
            gw.addr,
            "/wx/login",
            &on(format!("jack-{store}.2"), "android"),
            &[],
        )
        .await;
        assert_error(&r, 403, "session_limit");
        assert_eq!(gw.get_auth("/api/me", &t_phone, &[]).await.status, 200);
        // Once the phone logs out, the tablet may log in (with a new code).
        assert_eq!(logout(&gw, &t_phone, "").await.status, 200);
        let (t_pad, _) = login(&gw, on(format!("jack-{store}.3"), "android")).await;
        assert_eq!(sessions_of(&gw, &t_pad).await.len(), 1, "{store}");
        gw.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_per_platform_replaces_the_same_platform_only() {
    let env = Env::start().await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sessions = "[sessions]\none_per_platform = true";
    for (store, gw) in env.each_store_with(sessions, clock).await {
        let (t_ios, _) = login(&gw, on(format!("kim-{store}.1"), "ios")).await;
        let (t_android, _) = login(&gw, on(format!("kim-{store}.2"), "android")).await;
        let (t_ios2, _) = login(&gw, on(format!("kim-{store}.3"), "ios")).await;
        assert_ended(&gw.get_auth("/api/me", &t_ios, &[]).await, "replaced");
        assert_eq!(gw.get_auth("/api/me", &t_android, &[]).await.status, 200);
        assert_eq!(sessions_of(&gw, &t_ios2).await.len(), 2, "{store}");
        gw.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_absolute_lifetimes_end_sessions_on_the_sessions_clock() {
    let env = Env::start().await;
    let manual = Arc::new(ManualClock::new(unix_now_ms()));
    let clock: Arc<dyn Clock> = manual.clone();
    let sessions = "[sessions]\nidle_timeout = \"1h\"\nmax_lifetime = \"1d\"";
    for (store, gw) in env.each_store_with(sessions, clock).await {
        // Idle: not refreshed for more than an hour.
        let (_, r_idle) = login(&gw, json!({"code": format!("lou-{store}.1")})).await;
        let (t_busy, mut r_busy) = login(&gw, json!({"code": format!("lou-{store}.2")})).await;
        manual.advance(Duration::from_secs(50 * 60));
        r_busy = refresh_token_of(&support::refresh(gw.addr, &r_busy).await);
        manual.advance(Duration::from_secs(20 * 60));
        assert_ended(&support::refresh(gw.addr, &r_idle).await, "idle");
        // The busy one lives on, and the idle one is gone from the list.
        let r = support::refresh(gw.addr, &r_busy).await;
        assert_eq!(r.status, 200, "{store}: {}", r.text());
        let t_busy2 = r.json()["token"].as_str().unwrap().to_string();
        r_busy = refresh_token_of(&r);
        assert_eq!(sessions_of(&gw, &t_busy2).await.len(), 1, "{store}");
        let _ = t_busy;
        // Absolute: refreshed every 50 minutes, it still ends after a day.
        let mut ended = None;
        for _ in 0..40 {
            manual.advance(Duration::from_secs(50 * 60));
            let r = support::refresh(gw.addr, &r_busy).await;
            if r.status != 200 {
                ended = Some(r);
                break;
            }
            r_busy = refresh_token_of(&r);
        }
        let r = ended.expect("the session outlived max_lifetime");
        assert_ended(&r, "lifetime");
        gw.stop().await;
    }
}

fn refresh_token_of(r: &Response) -> String {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["refresh_token"].as_str().unwrap().to_string()
}

async fn sessions_of(gw: &Gateway, token: &str) -> Vec<Value> {
    sessions(gw, token).await
}

/// `method path` on the gateway's internal listener, with the admin secret
/// (`secret: None`: without one) and this body.
async fn admin(
    gw: &Gateway,
    method: &str,
    path: &str,
    body: &str,
    secret: Option<&str>,
) -> Response {
    let addr = gw.running().metrics_addr().expect("internal listener");
    let auth = secret.map_or_else(String::new, |s| format!("Authorization: Bearer {s}\r\n"));
    let req = format!(
        "{method} /internal/admin/users/{path} HTTP/1.1\r\nHost: internal\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    support::raw_request(addr, req.as_bytes()).await
}

async fn admin_ok(gw: &Gateway, method: &str, path: &str, body: &str) -> Value {
    let r = admin(gw, method, path, body, Some(ADMIN_SECRET)).await;
    assert_eq!(r.status, 200, "{method} {path}: {}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_ends_every_session_on_every_instance_and_stops_logins() {
    let env = Env::start().await;
    let redis = "kind = \"redis\"\nurl_env = \"WXGATE_TEST_REDIS\"";
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let fleets = vec![
        (
            "memory",
            vec![env.gateway_with("", "", clock.clone()).await],
        ),
        (
            "redis",
            vec![
                env.gateway_with(redis, "", clock.clone()).await,
                env.gateway_with(redis, "", clock.clone()).await,
            ],
        ),
    ];
    for (store, gws) in fleets {
        let a = &gws[0];
        let b = gws.last().unwrap();
        let (t_phone, r_phone) = login(a, on(format!("mia-{store}.1"), "ios")).await;
        let (t_pad, _) = login(b, on(format!("mia-{store}.2"), "android")).await;
        let (t_other, _) = login(b, json!({"code": format!("ned-{store}.1")})).await;
        let openid = MockWechat::openid_for(&format!("mia-{store}.1"));

        let listed = admin_ok(a, "GET", &format!("{openid}/sessions"), "").await;
        assert_eq!(listed["total"], 2, "{store}: {listed}");
        assert_eq!(listed["sessions"][0]["device"]["platform"], "ios");
        let page = admin_ok(a, "GET", &format!("{openid}/sessions?limit=1"), "").await;
        assert_eq!(page["sessions"].as_array().unwrap().len(), 1);
        assert_eq!(page["next_offset"], 1);

        let banned = admin_ok(
            a,
            "PUT",
            &format!("{openid}/ban"),
            r#"{"duration": "7d", "reason": "chargeback fraud"}"#,
        )
        .await;
        assert_eq!(banned["sessions_ended"], 2, "{store}: {banned}");
        assert_eq!(banned["ban"]["reason"], "chargeback fraud");
        // Every session, on every instance, is told why.
        for gw in &gws {
            for t in [&t_phone, &t_pad] {
                let ended = support::eventually(Duration::from_secs(2), || async {
                    let r = gw.get_auth("/api/me", t, &[]).await;
                    r.status == 401
                        && r.error() == "session_ended"
                        && r.json()["reason"] == "banned"
                })
                .await;
                assert!(ended, "{store}: a banned user's token still works");
            }
            assert_eq!(gw.get_auth("/api/me", &t_other, &[]).await.status, 200);
        }
        assert_ended(&support::refresh(a.addr, &r_phone).await, "banned");
        // No login while banned: refused once WeChat named the user, and the
        // same code again is refused without asking WeChat again.
        let code = format!("mia-{store}.3");
        for gw in &gws {
            let r = support::post_json(gw.addr, "/wx/login", &json!({"code": code}), &[]).await;
            assert_error(&r, 403, "user_banned");
        }
        assert_eq!(env.mock.calls_for(&code), 1, "{store}");
        let ban = admin_ok(b, "GET", &format!("{openid}/ban"), "").await;
        assert_eq!(ban["ban"]["reason"], "chargeback fraud", "{store}");

        // Lifted: a new login works.
        assert_eq!(
            admin_ok(b, "DELETE", &format!("{openid}/ban"), "").await["unbanned"],
            true
        );
        assert_eq!(
            admin_ok(a, "GET", &format!("{openid}/ban"), "").await["ban"],
            Value::Null
        );
        let (t_back, _) = login(a, json!({"code": format!("mia-{store}.4")})).await;
        assert_eq!(a.get_auth("/api/me", &t_back, &[]).await.status, 200);
        for gw in gws {
            gw.stop().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_ends_sessions_and_takes_only_its_own_secret() {
    let env = Env::start().await;
    let gw = env.gateway("").await;
    let (t1, _) = login(&gw, json!({"code": "olga.1"})).await;
    let (t2, _) = login(&gw, json!({"code": "olga.2"})).await;
    let openid = MockWechat::openid_for("olga.1");
    let path = format!("{openid}/sessions");
    // Without the secret, or with another one: refused, and nothing ends.
    for secret in [None, Some("devices admin secret 012345678X")] {
        let r = admin(&gw, "DELETE", &path, "", secret).await;
        assert_error(&r, 401, "token_invalid");
    }
    assert_eq!(gw.get_auth("/api/me", &t1, &[]).await.status, 200);
    // The admin API is on the internal listener only.
    let public = support::raw_request(
        gw.addr,
        format!(
            "DELETE /internal/admin/users/{path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nAuthorization: Bearer {ADMIN_SECRET}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_ne!(public.status, 200, "{}", public.text());
    assert_eq!(gw.get_auth("/api/me", &t1, &[]).await.status, 200);

    let id = sessions(&gw, &t2)
        .await
        .into_iter()
        .find(|s| s["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = admin_ok(&gw, "DELETE", &format!("{path}/{id}"), "").await;
    assert_eq!(r["ended"], json!([id]));
    assert_ended(&gw.get_auth("/api/me", &t2, &[]).await, "admin");
    assert_eq!(gw.get_auth("/api/me", &t1, &[]).await.status, 200);
    let r = admin(
        &gw,
        "DELETE",
        &format!("{path}/{id}"),
        "",
        Some(ADMIN_SECRET),
    )
    .await;
    assert_error(&r, 404, "session_not_found");
    assert_eq!(
        admin_ok(&gw, "DELETE", &path, "").await["ended"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_ended(&gw.get_auth("/api/me", &t1, &[]).await, "admin");
    // Bad requests change nothing.
    for body in [r#"{"duration": "soon"}"#, r#"{"until": 1}"#, "not json"] {
        let r = admin(
            &gw,
            "PUT",
            &format!("{openid}/ban"),
            body,
            Some(ADMIN_SECRET),
        )
        .await;
        assert_error(&r, 400, "invalid_request");
    }
    assert_eq!(
        admin_ok(&gw, "GET", &format!("{openid}/ban"), "").await["ban"],
        Value::Null
    );
    let r = admin(
        &gw,
        "POST",
        &format!("{openid}/ban"),
        "",
        Some(ADMIN_SECRET),
    )
    .await;
    assert_error(&r, 405, "method_not_allowed");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_finds_a_users_sessions_by_the_hooks_uid() {
    let env = Env::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = listener.local_addr().unwrap();
    let hook = wxgate::dev::example_hook::ExampleHook::new(HOOK_SECRET.as_bytes());
    let hook_task = tokio::spawn(hook.clone().serve(listener));
    let lines =
        format!("[login.hook]\nurl = \"http://{hook_addr}/internal/wxgate\"\nsecret_env = \"WXGATE_TEST_HOOK\"");
    for (store, gw) in env.each_store_with(&lines, Arc::new(SystemClock)).await {
        let code = format!("uma-{store}");
        let (t1, _) = login(&gw, json!({"code": format!("{code}.1")})).await;
        let (_t2, _) = login(&gw, json!({"code": format!("{code}.2")})).await;
        let openid = MockWechat::openid_for(&format!("{code}.1"));
        let uid = wxgate::dev::example_hook::uid_for(&openid);
        let internal = gw.running().metrics_addr().unwrap();
        let by_uid = |uid: String, secret: &'static str| async move {
            let req = format!(
                "GET /internal/admin/sessions?uid={uid} HTTP/1.1\r\nHost: internal\r\nConnection: close\r\nAuthorization: Bearer {secret}\r\n\r\n"
            );
            support::raw_request(internal, req.as_bytes()).await
        };
        let r = by_uid(uid.clone(), ADMIN_SECRET).await;
        assert_eq!(r.status, 200, "{store}: {}", r.text());
        let v = r.json();
        assert_eq!(v["uid"], uid.as_str(), "{store}");
        assert_eq!(v["users"], json!([openid]), "{store}");
        assert_eq!(v["total"], 2, "{store}: {v}");
        let listed = v["sessions"].as_array().unwrap();
        assert!(
            listed.iter().all(|s| s["openid"] == openid.as_str()),
            "{store}: {v}"
        );
        let own: Vec<Value> = sessions(&gw, &t1).await;
        let ids = |l: &[Value]| {
            let mut ids: Vec<String> = l
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_string())
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(ids(listed), ids(&own), "{store}");
        // Another uid knows nobody; no uid, or the wrong secret: refused.
        let v = by_uid("user-000000000000".into(), ADMIN_SECRET)
            .await
            .json();
        assert_eq!(
            (v["users"].clone(), v["total"].clone()),
            (json!([]), json!(0)),
            "{store}"
        );
        let r = support::raw_request(
            internal,
            format!("GET /internal/admin/sessions HTTP/1.1\r\nHost: internal\r\nConnection: close\r\nAuthorization: Bearer {ADMIN_SECRET}\r\n\r\n").as_bytes(),
        )
        .await;
        assert_error(&r, 400, "invalid_request");
        let r = by_uid(uid.clone(), "devices admin secret 012345678X").await;
        assert_error(&r, 401, "token_invalid");
    }
    hook_task.abort();
}
