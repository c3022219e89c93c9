//! The login hook through the real gateway: the mock WeChat over HTTP and the
//! example hook as a real HTTP server that checks every call's signature.
//! Tokens carry the hook's `uid`, `roles` and claims; the upstream sees them
//! (and never a client's copy); routes require roles; a refusal, a failure,
//! garbage or a timeout from the hook never yields a token, and a retry with
//! the same code does not spend it at WeChat again; refreshes ask the hook
//! when `on_refresh` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::json;
use tokio::net::TcpListener;

use support::{dev, Preamble, Upstream};
use wxgate::dev::example_hook::{uid_for, ExampleHook, Mode};
use wxgate::dev::mock_wechat::MockWechat;
use wxgate::dev::{DevEnv, DEV_APPID};

const HOOK_SECRET: &str = "hook-test-secret-0123456789";

/// A gateway whose `[login.hook]` (with `hook_lines` added) calls a hook of
/// the test's own; returns the environment, that hook and the upstream.
async fn custom(hook_lines: &str) -> (DevEnv, ExampleHook, Upstream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/internal/wxgate", listener.local_addr().unwrap());
    let hook = ExampleHook::new(HOOK_SECRET.as_bytes());
    tokio::spawn(hook.clone().serve(listener));
    let (env, up) = with_hook_url(&hook_url, hook_lines).await;
    (env, hook, up)
}

/// A gateway whose `[login.hook]` calls `url`.
async fn with_hook_url(url: &str, hook_lines: &str) -> (DevEnv, Upstream) {
    let up = Upstream::start("hooked").await;
    let preamble = Preamble::new("hook-test");
    let text = format!(
        r#"{preamble}
[wechat]
appid = "wxhooktest0000001"
secret_env = "HOOK_TEST_WECHAT"

[login.hook]
url = "{url}"
secret_env = "HOOK_TEST_SECRET"
claims = {{ plan = "X-Plan" }}
{hook_lines}

[[routes]]
prefix = "/"
upstreams = ["{}"]
"#,
        up.addr
    );
    let env = dev::with_config(
        &text,
        &[
            ("HOOK_TEST_WECHAT", "wechat-secret"),
            ("HOOK_TEST_SECRET", HOOK_SECRET),
        ],
    )
    .await;
    (env, up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hooks_answer_is_in_the_token_and_reaches_the_upstream() {
    let env = dev::embedded().await;
    let r = support::login(env.gateway.addr(), "alice.1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let openid = MockWechat::openid_for("alice.1");
    assert_eq!(v["uid"], uid_for(&openid));
    assert_eq!(v["roles"], json!(["user"]));
    assert!(!r.text().contains("session_key"));

    // The hook heard of the login, signed, without session_key.
    let calls = env.hook.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0],
        json!({
            "event": "login",
            "appid": DEV_APPID,
            "openid": openid,
            "unionid": MockWechat::unionid_for("alice.1"),
        })
    );
    assert_eq!(env.hook.bad_signatures(), 0);

    // Upstream: the hook's values, never the client's.
    let t = r.token();
    let up = support::get_auth(
        env.gateway.addr(),
        "/api/me",
        &t,
        &[
            "X-User-ID: admin-spoof",
            "x_user_roles: admin",
            "X-User-Plan: pro",
        ],
    )
    .await;
    assert_eq!(up.status, 200, "{}", up.text());
    assert_eq!(up.upstream_values("x-user-id"), [uid_for(&openid)]);
    assert_eq!(up.upstream_values("x-user-roles"), ["user"]);
    assert_eq!(up.upstream_values("x-user-plan"), ["free"]);
    assert!(up.upstream_values("x_user_roles").is_empty());
    assert!(!up.text().contains("spoof"));
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_with_roles_lets_only_those_roles_in() {
    let env = dev::embedded().await;
    let user = support::login(env.gateway.addr(), "bob.1").await.token();
    let admin = support::login(env.gateway.addr(), "admin.1").await.token();

    let r = support::get_auth(env.gateway.addr(), "/admin/panel", &user, &[]).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.error(), "forbidden");
    assert_eq!(
        env.echo.requests(),
        0,
        "a refused request never reaches the upstream"
    );

    let r = support::get_auth(env.gateway.addr(), "/admin/panel", &admin, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_values("x-user-roles"), ["admin,user"]);
    assert_eq!(r.upstream_values("x-user-plan"), ["pro"]);

    // No token at all is still a 401, not a 403.
    let r = support::raw_request(
        env.gateway.addr(),
        b"GET /admin/panel HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 401);
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_user_gets_no_token() {
    let env = dev::embedded().await;
    let r = support::login(env.gateway.addr(), "banned.1").await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.error(), "login_refused");
    assert_eq!(r.json()["message"], "this account is suspended");
    assert!(r.json().get("token").is_none());
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_hook_fails_the_login_and_a_retry_does_not_spend_the_code_again() {
    let (env, hook, _up) = custom("timeout = \"300ms\"").await;
    for (mode, status) in [
        (Mode::Down, 502),
        (Mode::Garbage, 502),
        (Mode::Slow(Duration::from_secs(2)), 504),
    ] {
        hook.set_mode(mode);
        let code =
            format!("carol-{status}-{:?}", mode).replace(|c: char| !c.is_ascii_alphanumeric(), "");
        let r = support::login(env.gateway.addr(), &code).await;
        assert_eq!(r.status, status, "{mode:?}: {}", r.text());
        assert_eq!(r.error(), "hook_unavailable", "{mode:?}");
        assert!(r.json().get("token").is_none());

        // The backend is back: the same code logs in, WeChat asked once.
        hook.set_mode(Mode::Normal);
        let r = support::login(env.gateway.addr(), &code).await;
        assert_eq!(r.status, 200, "{mode:?} retry: {}", r.text());
        assert_eq!(r.json()["roles"], json!(["user"]));
        assert_eq!(env.mock.calls_for(&code), 1, "{mode:?}");
        // And a double tap after that gets the same tokens.
        let again = support::login(env.gateway.addr(), &code).await;
        assert_eq!(again.json()["token"], r.json()["token"]);
    }
    assert_eq!(hook.bad_signatures(), 0);
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_asks_the_hook_when_on_refresh_is_set() {
    let (env, hook, _up) = custom("on_refresh = true").await;
    let first = support::login(env.gateway.addr(), "dave.1").await;
    let access = first.token();
    let refresh = first.json()["refresh_token"].as_str().unwrap().to_string();

    // The hook is down: the refresh fails, and the refresh token stays usable.
    hook.set_mode(Mode::Down);
    let r = support::refresh(env.gateway.addr(), &refresh).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.error(), "hook_unavailable");

    hook.set_mode(Mode::Normal);
    let r = support::refresh(env.gateway.addr(), &refresh).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["roles"], json!(["user"]));
    let refresh = r.json()["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(hook.calls_for("refresh"), 2);

    // The backend bans the user: the refresh is refused and the session ends.
    hook.set_mode(Mode::Refuse);
    let r = support::refresh(env.gateway.addr(), &refresh).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.error(), "login_refused");
    let r = support::get_auth(env.gateway.addr(), "/api/x", &access, &[]).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.error(), "token_revoked");
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_refresh_token_is_reuse_before_the_hook_is_asked() {
    let (env, hook, _up) = custom("on_refresh = true").await;
    let addr = env.gateway.addr();
    let first = support::login(addr, "gus.1").await;
    let spent = first.json()["refresh_token"].as_str().unwrap().to_string();
    let rotated = support::refresh(addr, &spent).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let access = rotated.token();
    assert_eq!(hook.calls_for("refresh"), 1);

    // A replay of the spent token, while the backend is down: reuse all the
    // same (the session ends), and the backend never hears of it.
    hook.set_mode(Mode::Down);
    let replay = support::refresh(addr, &spent).await;
    assert_eq!(replay.status, 401, "{}", replay.text());
    assert_eq!(replay.error(), "refresh_token_reused");
    assert_eq!(hook.calls_for("refresh"), 1);
    let r = support::get_auth(addr, "/api/x", &access, &[]).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.error(), "token_revoked");
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_on_refresh_a_refresh_keeps_the_logins_answer() {
    let (env, hook, _up) = custom("").await;
    let first = support::login(env.gateway.addr(), "admin.7").await;
    let refresh = first.json()["refresh_token"].as_str().unwrap().to_string();
    hook.set_mode(Mode::Down);
    let r = support::refresh(env.gateway.addr(), &refresh).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["roles"], json!(["admin", "user"]));
    assert_eq!(hook.calls_for("refresh"), 0);
    let up = support::get_auth(env.gateway.addr(), "/api/x", &r.token(), &[]).await;
    assert_eq!(up.status, 200, "{}", up.text());
    assert_eq!(up.upstream_values("x-plan"), ["pro"]);
    assert_eq!(
        up.upstream_values("x-user-id"),
        [uid_for(&MockWechat::openid_for("admin"))]
    );
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_that_cannot_be_reached_fails_the_login() {
    let dead = support::dead_addr().await;
    let (env, _up) = with_hook_url(&format!("http://{dead}/hook"), "timeout = \"1s\"").await;
    let r = support::login(env.gateway.addr(), "erin.1").await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.error(), "hook_unavailable");
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_presented_again_while_the_hook_is_slow_is_still_reuse() {
    let (env, hook, _up) = custom("on_refresh = true\ntimeout = \"5s\"").await;
    let first = support::login(env.gateway.addr(), "fay.1").await;
    let refresh = first.json()["refresh_token"].as_str().unwrap().to_string();
    hook.set_mode(Mode::Slow(Duration::from_millis(2500)));
    let one = {
        let addr = env.gateway.addr();
        let refresh = refresh.clone();
        tokio::spawn(async move { support::refresh(addr, &refresh).await })
    };
    // The second presentation comes while the first one's hook call is
    // still under way, later than a store would take a rotation for
    // abandoned (1 s in memory): it must not rotate the token a second time.
    let asked = support::eventually(Duration::from_secs(5), || async {
        hook.calls_for("refresh") == 1
    })
    .await;
    assert!(asked);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let two = support::refresh(env.gateway.addr(), &refresh).await;
    let one = one.await.unwrap();
    let mut statuses = [one.status, two.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 401], "{} / {}", one.text(), two.text());
    let refused = if one.status == 401 { &one } else { &two };
    assert_eq!(refused.error(), "refresh_token_reused");
    dev::stop(env).await;
}
