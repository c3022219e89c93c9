//! Several mini programs in one gateway (`[[wechat.apps]]`), through the real
//! gateway and the mock WeChat over HTTP: `/wx/login` picks the app by
//! `appid` (required, checked before WeChat is asked), each app's codes,
//! rate limits, sessions and access tokens are its own, the token and
//! `X-WX-AppID` say which app, and a route may admit only some apps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;

use support::{dev, Preamble, Upstream};
use wxgate::dev::mock_wechat::MockWechat;
use wxgate::dev::DevEnv;

const SHOP: &str = "wxshop00000000001";
const CLUB: &str = "wxclub00000000002";

async fn two_apps() -> (DevEnv, Upstream) {
    let up = Upstream::start("apps").await;
    let preamble = Preamble::new("apps-test");
    let text = format!(
        r#"{preamble}
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
    let env = dev::with_config(
        &text,
        &[("APPS_SHOP", "shop secret"), ("APPS_CLUB", "club secret")],
    )
    .await;
    (env, up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_app_logs_in_its_own_users() {
    let (env, _up) = two_apps().await;
    let gw = env.gateway.addr();

    // Which app? Required here, and checked before WeChat hears of the code.
    let r = support::login(gw, "c1").await;
    assert_eq!(
        (r.status, r.error()),
        (400, "invalid_request".into()),
        "{}",
        r.text()
    );
    let r = support::post_json(
        gw,
        "/wx/login",
        &json!({ "code": "c1", "appid": "wxnope" }),
        &[],
    )
    .await;
    assert_eq!((r.status, r.error()), (400, "unknown_app".into()));
    assert_eq!(env.mock.calls(), 0);

    // The same code string in two apps is two codes (`appId` is an alias).
    let shop = support::post_json(
        gw,
        "/wx/login",
        &json!({ "code": "c1", "appid": SHOP }),
        &[],
    )
    .await;
    assert_eq!(shop.status, 200, "{}", shop.text());
    let club = support::post_json(
        gw,
        "/wx/login",
        &json!({ "code": "c1", "appId": CLUB }),
        &[],
    )
    .await;
    assert_eq!(club.status, 200, "{}", club.text());
    assert_eq!(env.mock.calls_for("c1"), 2);
    let shop_token = shop.json()["token"].as_str().unwrap().to_string();
    let club_token = club.json()["token"].as_str().unwrap().to_string();

    // The token says which app, and so does the header upstream.
    let r = support::get_auth(gw, "/api/x", &club_token, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_values("x-wx-appid"), [CLUB]);
    let r = support::get_auth(gw, "/shop/cart", &shop_token, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_values("x-wx-appid"), [SHOP]);
    // A route for one app only.
    let r = support::get_auth(gw, "/shop/cart", &club_token, &[]).await;
    assert_eq!((r.status, r.error()), (403, "forbidden".into()));

    // /wx/phone goes to the token's app: its own access token, its watermark.
    let shop_auth = format!("Authorization: Bearer {shop_token}");
    let r = support::post_json(gw, "/wx/phone", &json!({ "code": "p-shop" }), &[&shop_auth]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let club_auth = format!("Authorization: Bearer {club_token}");
    let r = support::post_json(gw, "/wx/phone", &json!({ "code": "p-club" }), &[&club_auth]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["phoneNumber"],
        MockWechat::phone_for(&MockWechat::openid_for("c1"))
    );
    assert_eq!(env.mock.token_calls(), (2, 0), "one access token per app");
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_per_app() {
    let (env, _up) = two_apps().await;
    let gw = env.gateway.addr();
    for i in 0..3 {
        let body = json!({ "code": format!("s{i}"), "appid": SHOP });
        let r = support::post_json(gw, "/wx/login", &body, &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = support::post_json(
        gw,
        "/wx/login",
        &json!({ "code": "s3", "appid": SHOP }),
        &[],
    )
    .await;
    assert_eq!((r.status, r.error()), (429, "rate_limited".into()));
    // The other app has its own budget.
    let r = support::post_json(
        gw,
        "/wx/login",
        &json!({ "code": "k0", "appid": CLUB }),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    dev::stop(env).await;
}
