//! Several mini programs in one gateway (`[[wechat.apps]]`), through the real
//! gateway and the mock WeChat over HTTP: `/wx/login` picks the app by
//! `appid` (required, checked before WeChat is asked), each app's codes,
//! rate limits, sessions and access tokens are its own, the token and
//! `X-WX-AppID` say which app, and a route may admit only some apps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};

use support::{Response, Upstream};
use wxgate::dev::mock_wechat::MockWechat;
use wxgate::dev::DevEnv;

const SHOP: &str = "wxshop00000000001";
const CLUB: &str = "wxclub00000000002";

async fn two_apps() -> (DevEnv, Upstream) {
    let up = Upstream::start("apps").await;
    let dir = support::TempDir::new("apps");
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
grace_period = "1s"

[jwt]
secret_env = "APPS_JWT"
audience = "apps-test"

[wechat]
timeout = "2s"

[[wechat.apps]]
appid = "{SHOP}"
name = "shop"
secret_env = "APPS_SHOP"

[[wechat.apps]]
appid = "{CLUB}"
secret_env = "APPS_CLUB"

[login]
rate_limit_global = "3/min"

[[routes]]
prefix = "/shop/"
upstreams = ["{up}"]
apps = ["{SHOP}"]

[[routes]]
prefix = "/"
upstreams = ["{up}"]
"#,
        up = up.addr
    );
    let path = dir.write("wxgate.toml", &text);
    let env = wxgate::dev::start("127.0.0.1:0".parse().unwrap(), Some(&path), &|n| match n {
        "APPS_JWT" => Some(support::JWT_SECRET.to_string()),
        "APPS_SHOP" => Some("shop secret".to_string()),
        "APPS_CLUB" => Some("club secret".to_string()),
        _ => None,
    })
    .await
    .expect("gateway with two apps starts");
    (env, up)
}

fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

async fn post(gw: SocketAddr, path: &str, body: &Value, token: Option<&str>) -> Response {
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
    support::post(
        gw,
        path,
        Some("application/json"),
        body.to_string().as_bytes(),
        &headers,
    )
    .await
}

async fn get(gw: SocketAddr, path: &str, token: &str) -> Response {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    support::raw_request(gw, req.as_bytes()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_app_logs_in_its_own_users() {
    let (env, _up) = two_apps().await;
    let gw = env.gateway.addr();

    // Which app? Required here, and checked before WeChat hears of the code.
    let r = post(gw, "/wx/login", &json!({ "code": "c1" }), None).await;
    assert_eq!(
        (r.status, r.error()),
        (400, "invalid_request".into()),
        "{}",
        text(&r)
    );
    let r = post(
        gw,
        "/wx/login",
        &json!({ "code": "c1", "appid": "wxnope" }),
        None,
    )
    .await;
    assert_eq!((r.status, r.error()), (400, "unknown_app".into()));
    assert_eq!(env.mock.calls(), 0);

    // The same code string in two apps is two codes (`appId` is an alias).
    let shop = post(
        gw,
        "/wx/login",
        &json!({ "code": "c1", "appid": SHOP }),
        None,
    )
    .await;
    assert_eq!(shop.status, 200, "{}", text(&shop));
    let club = post(
        gw,
        "/wx/login",
        &json!({ "code": "c1", "appId": CLUB }),
        None,
    )
    .await;
    assert_eq!(club.status, 200, "{}", text(&club));
    assert_eq!(env.mock.calls_for("c1"), 2);
    let shop_token = shop.json()["token"].as_str().unwrap().to_string();
    let club_token = club.json()["token"].as_str().unwrap().to_string();

    // The token says which app, and so does the header upstream.
    let r = get(gw, "/api/x", &club_token).await;
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(r.upstream_values("x-wx-appid"), [CLUB]);
    let r = get(gw, "/shop/cart", &shop_token).await;
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(r.upstream_values("x-wx-appid"), [SHOP]);
    // A route for one app only.
    let r = get(gw, "/shop/cart", &club_token).await;
    assert_eq!((r.status, r.error()), (403, "forbidden".into()));

    // /wx/phone goes to the token's app: its own access token, its watermark.
    let r = post(
        gw,
        "/wx/phone",
        &json!({ "code": "p-shop" }),
        Some(&shop_token),
    )
    .await;
    assert_eq!(r.status, 200, "{}", text(&r));
    let r = post(
        gw,
        "/wx/phone",
        &json!({ "code": "p-club" }),
        Some(&club_token),
    )
    .await;
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(
        r.json()["phoneNumber"],
        MockWechat::phone_for(&MockWechat::openid_for("c1"))
    );
    assert_eq!(env.mock.token_calls(), (2, 0), "one access token per app");
    env.gateway.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_per_app() {
    let (env, _up) = two_apps().await;
    let gw = env.gateway.addr();
    for i in 0..3 {
        let r = post(
            gw,
            "/wx/login",
            &json!({ "code": format!("s{i}"), "appid": SHOP }),
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{}", text(&r));
    }
    let r = post(
        gw,
        "/wx/login",
        &json!({ "code": "s3", "appid": SHOP }),
        None,
    )
    .await;
    assert_eq!((r.status, r.error()), (429, "rate_limited".into()));
    // The other app has its own budget.
    let r = post(
        gw,
        "/wx/login",
        &json!({ "code": "k0", "appid": CLUB }),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", text(&r));
    env.gateway.shutdown(Duration::from_secs(1)).await;
}
