//! WeChat's server side done by the gateway, through the real gateway and
//! the mock WeChat over HTTP: the OpenAPI relay on the internal listener
//! (the token added, WeChat's answer byte for byte, the allow-list, a
//! refused token replaced once), the user-state signature (computed by the
//! gateway, checked by the mock), and Cloud Run's identity headers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;

use serde_json::json;

use support::{dev, Response, Upstream};
use wxgate::dev::mock_wechat::MockWechat;
use wxgate::dev::DevEnv;
use wxgate::wechat::signature::user_signature;

const RELAY_SECRET: &str = "relay-secret-0123456789";
const ADMIN_SECRET: &str = "admin-secret-0123456789";

fn config(http1: &str, up: SocketAddr) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
grace_period = "1s"
http1 = "{http1}"

[jwt]
secret_env = "WXGATE_JWT_SECRET"
audience = "openapi-test"

[headers]
cloud_run = true

[wechat]
appid = "wxrelaytest000001"
secret_env = "W"
timeout = "2s"

[wechat.relay]
secret_env = "RELAY"
allow = ["/wxa/msg_sec_check", "/wxa/getwxacodeunlimit"]
signed = ["/xpay/query_user_balance"]
max_body = 4096

[metrics]
listen = "127.0.0.1:0"
admin_secret_env = "ADMIN"

[[routes]]
prefix = "/"
upstreams = ["{up}"]
"#
    )
}

/// The gateway in front of the mock WeChat and an upstream of its own.
async fn start_with(http1: &str) -> (DevEnv, Upstream) {
    let up = Upstream::start("cloud-run-backend").await;
    let env = dev::with_config(
        &config(http1, up.addr),
        &[
            ("W", "relay test secret"),
            ("RELAY", RELAY_SECRET),
            ("ADMIN", ADMIN_SECRET),
        ],
    )
    .await;
    (env, up)
}

async fn start(http1: &str) -> DevEnv {
    start_with(http1).await.0
}

fn internal(env: &DevEnv) -> SocketAddr {
    env.gateway.metrics_addr().expect("internal listener")
}

/// A call on the internal listener with the relay's secret (`secret`).
async fn call(
    addr: SocketAddr,
    method: &str,
    target: &str,
    secret: &str,
    body: &[u8],
    extra: &[&str],
) -> Response {
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: internal\r\nConnection: close\r\n\
         Authorization: Bearer {secret}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in extra {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    support::raw_request(addr, &bytes).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_call_carries_the_token_and_comes_back_as_wechat_sent_it() {
    let env = start("wxgate").await;
    let at = internal(&env);
    let json_ct = "Content-Type: application/json";

    let r = call(
        at,
        "POST",
        "/wxa/msg_sec_check",
        RELAY_SECRET,
        br#"{"content":"hello"}"#,
        &[json_ct],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(
        r.json(),
        json!({"errcode": 0, "errmsg": "ok", "result": {"suggest": "pass", "label": 100}, "trace_id": "mock-wxrelaytest000001"})
    );
    // WeChat's verdict, whatever it is, is the backend's to read.
    let r = call(
        at,
        "POST",
        "/wxa/msg_sec_check",
        RELAY_SECRET,
        br#"{"content":"a badword"}"#,
        &[json_ct],
    )
    .await;
    assert_eq!(r.json()["result"]["suggest"], "risky");

    // A binary answer, byte for byte.
    let body = br#"{"scene":"id=42","page":"pages/index/index"}"#;
    let r = call(
        at,
        "POST",
        "/wxa/getwxacodeunlimit?env_version=release",
        RELAY_SECRET,
        body,
        &[json_ct],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    assert_eq!(r.body, MockWechat::qr_image(body));
    assert_eq!(env.mock.token_calls(), (1, 0), "one token for every call");
    assert!(!r.text().contains("mock-at-"));
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_listed_paths_with_the_relay_secret_reach_wechat() {
    let env = start("wxgate").await;
    let at = internal(&env);
    // Off the list: refused before WeChat hears of it.
    for target in [
        "/wxa/checksession?openid=o",
        "/cgi-bin/token",
        "/wxa/msg_sec_check/",
        "/wxa/../wxa/msg_sec_check",
    ] {
        let r = call(at, "GET", target, RELAY_SECRET, b"", &[]).await;
        assert_eq!(
            (r.status, r.error()),
            (403, "relay_not_allowed".into()),
            "{target}"
        );
    }
    assert_eq!(env.mock.api_calls("/wxa/checksession"), 0);
    assert_eq!(env.mock.token_calls(), (0, 0));
    // Without the relay's own secret: 401, whatever the path.
    for secret in ["", "wrong-secret-0123456789", ADMIN_SECRET] {
        let r = call(at, "POST", "/wxa/msg_sec_check", secret, b"{}", &[]).await;
        assert_eq!(r.status, 401, "{secret:?}");
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Bearer realm="wxgate-relay""#)
        );
    }
    assert_eq!(env.mock.api_calls("/wxa/msg_sec_check"), 0);
    // Never on the public listener.
    let r = call(
        env.gateway.addr(),
        "POST",
        "/wxa/msg_sec_check",
        RELAY_SECRET,
        b"{}",
        &[],
    )
    .await;
    assert_ne!(r.status, 200);
    assert_eq!(env.mock.api_calls("/wxa/msg_sec_check"), 0);
    // Bounded: a body over max_body is refused here.
    let big = vec![b'x'; 5000];
    let r = call(at, "POST", "/wxa/msg_sec_check", RELAY_SECRET, &big, &[]).await;
    assert_eq!((r.status, r.error()), (413, "payload_too_large".into()));
    // Only GET and POST.
    let r = call(at, "DELETE", "/wxa/msg_sec_check", RELAY_SECRET, b"", &[]).await;
    assert_eq!(r.status, 405);
    assert_eq!(env.mock.api_calls("/wxa/msg_sec_check"), 0);
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_replaced_once_and_the_call_made_again() {
    let env = start("wxgate").await;
    let at = internal(&env);
    let r = call(at, "POST", "/wxa/msg_sec_check", RELAY_SECRET, b"{}", &[]).await;
    assert_eq!(r.status, 200);
    // Someone else forced a refresh: WeChat answers 40001 to the kept token.
    env.mock.rotate_token_elsewhere();
    let r = call(at, "POST", "/wxa/msg_sec_check", RELAY_SECRET, b"{}", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["errcode"], 0);
    assert_eq!(env.mock.token_calls(), (2, 1), "one forced refresh");
    assert_eq!(env.mock.api_calls("/wxa/msg_sec_check"), 3, "one retry");
    // Within 30 s a second refusal gets no second forced refresh: WeChat's
    // answer goes back as it is.
    env.mock.rotate_token_elsewhere();
    let r = call(at, "POST", "/wxa/msg_sec_check", RELAY_SECRET, b"{}", &[]).await;
    assert_eq!(env.mock.token_calls().1, 1, "{}", r.text());
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_signs_as_the_user_and_wechat_accepts_it() {
    let env = start("wxgate").await;
    let at = internal(&env);
    let gw = env.gateway.addr();
    assert_eq!(support::login(gw, "uma.1").await.status, 200);
    let openid = MockWechat::openid_for("uma.1");
    let body = br#"{"offer_id":"123","ts":1700000000,"zone_id":"1","env":0}"#;

    let target = format!("/xpay/query_user_balance?openid={openid}");
    let r = call(
        at,
        "POST",
        &target,
        RELAY_SECRET,
        body,
        &["Content-Type: application/json"],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["errcode"], 0, "{}", r.text());
    assert_eq!(r.json()["balance"], 100);

    // A later login replaced the key: the gateway signs with the new one.
    assert_eq!(support::login(gw, "uma.2").await.status, 200);
    let r = call(at, "POST", &target, RELAY_SECRET, body, &[]).await;
    assert_eq!(r.json()["errcode"], 0, "{}", r.text());

    // The signature endpoint: WeChat's scheme, with the stored key.
    let ask = json!({ "openid": openid, "body": "{\"foo\":\"bar\"}" });
    let r = call(
        at,
        "POST",
        "/internal/wechat/user_signature",
        RELAY_SECRET,
        ask.to_string().as_bytes(),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let key = MockWechat::session_key_for("uma.2");
    assert_eq!(
        r.json(),
        json!({ "signature": user_signature(key.as_bytes(), br#"{"foo":"bar"}"#), "sig_method": "hmac_sha256" })
    );
    assert!(!r.text().contains(&key));

    // No user, or one the gateway never saw: nothing is signed.
    let r = call(
        at,
        "POST",
        "/xpay/query_user_balance",
        RELAY_SECRET,
        body,
        &[],
    )
    .await;
    assert_eq!((r.status, r.error()), (400, "invalid_request".into()));
    let r = call(
        at,
        "POST",
        "/xpay/query_user_balance?openid=o-unknown",
        RELAY_SECRET,
        body,
        &[],
    )
    .await;
    assert_eq!((r.status, r.error()), (409, "session_expired".into()));
    let ask = json!({ "openid": "o-unknown", "body": "" });
    let r = call(
        at,
        "POST",
        "/internal/wechat/user_signature",
        RELAY_SECRET,
        ask.to_string().as_bytes(),
        &[],
    )
    .await;
    assert_eq!((r.status, r.error()), (409, "session_expired".into()));
    let r = call(
        at,
        "POST",
        "/internal/wechat/user_signature",
        ADMIN_SECRET,
        ask.to_string().as_bytes(),
        &[],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(env.mock.api_calls("/xpay/query_user_balance"), 2);
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_written_for_cloud_run_sees_the_gateways_identity_only() {
    for http1 in support::HTTP1_PATHS {
        let (env, _up) = start_with(http1).await;
        let gw = env.gateway.addr();
        let token = support::login(gw, "vic.1").await.token();
        let openid = MockWechat::openid_for("vic.1");
        let auth = format!("Authorization: Bearer {token}");
        let r = support::get(
            gw,
            "/orders",
            &[
                &auth,
                "X-WX-OPENID: victim",
                "x_wx_openid: victim",
                "X-WX-UNIONID: victim",
                "X-WX-SOURCE: victim",
                "X-WX-FROM-OPENID: victim",
                "X-WX-ENV: victim",
                "X-Original-Forwarded-For: 10.9.8.7",
            ],
        )
        .await;
        assert_eq!(r.status, 200, "{http1}: {}", r.text());
        assert_eq!(
            r.upstream_values("x-wx-openid"),
            vec![openid.clone()],
            "{http1}"
        );
        assert_eq!(
            r.upstream_values("x-wx-unionid"),
            vec![MockWechat::unionid_for("vic.1").unwrap()],
            "{http1}"
        );
        assert_eq!(
            r.upstream_values("x-wx-appid"),
            vec!["wxrelaytest000001"],
            "{http1}"
        );
        assert_eq!(r.upstream_values("x-wx-source"), vec!["wxgate"], "{http1}");
        assert_eq!(r.upstream_values("x-openid"), vec![openid], "{http1}");
        for gone in [
            "x_wx_openid",
            "x-wx-from-openid",
            "x-wx-env",
            "x-original-forwarded-for",
        ] {
            assert!(r.upstream_values(gone).is_empty(), "{http1}: {gone}");
        }
        let seen = format!("{:?}", r.upstream_headers());
        assert!(!seen.contains("victim"), "{http1}: {seen}");
        dev::stop(env).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relays_own_parameters_cannot_be_smuggled() {
    let env = start("wxgate").await;
    let at = internal(&env);
    for target in [
        "/wxa/msg_sec_check?ACCESS_TOKEN=mine",
        "/wxa/msg_sec_check?Signature=x",
        "/wxa/msg_sec_check?access_token%00=x",
        "/wxa/msg_sec_check?a-b=1",
        "/xpay/query_user_balance?openid=o&SIG_METHOD=md5",
    ] {
        let r = call(at, "POST", target, RELAY_SECRET, b"{}", &[]).await;
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_request".into()),
            "{target}"
        );
    }
    assert_eq!(env.mock.api_calls("/wxa/msg_sec_check"), 0);
    assert_eq!(env.mock.token_calls(), (0, 0));
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_replacement_wechats_refusal_goes_back_as_it_is() {
    let env = start("wxgate").await;
    let at = internal(&env);
    let r = call(at, "POST", "/wxa/msg_sec_check", RELAY_SECRET, b"{}", &[]).await;
    assert_eq!(r.status, 200);
    // The token is refused and no other can be had (stable_token hangs past
    // [wechat] timeout): WeChat's own answer goes back.
    env.mock.rotate_token_elsewhere();
    env.mock
        .hang_tokens(Some(std::time::Duration::from_secs(30)));
    let r = call(at, "POST", "/wxa/msg_sec_check", RELAY_SECRET, b"{}", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["errcode"], 40001, "{}", r.text());
    assert_eq!(
        env.mock.api_calls("/wxa/msg_sec_check"),
        2,
        "no retry without a new token"
    );
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_session_key_is_a_clear_session_expired_and_a_key_can_be_reset() {
    use base64::Engine as _;
    let env = start("wxgate").await;
    let at = internal(&env);
    let gw = env.gateway.addr();
    let token = support::login(gw, "wes.1").await.token();
    let openid = MockWechat::openid_for("wes.1");
    let iv = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
    let data = |key: &str| {
        let plain = json!({ "nickName": "wes", "watermark": { "appid": "wxrelaytest000001", "timestamp": 1 } });
        let enc = wxgate::wechat::crypto::encrypt_user_data(key, &iv, plain.to_string().as_bytes())
            .unwrap();
        json!({ "encryptedData": enc, "iv": iv })
    };
    let decrypt = |token: String, body: serde_json::Value| async move {
        let auth = format!("Authorization: Bearer {token}");
        support::post_json(gw, "/wx/decrypt", &body, &[&auth]).await
    };
    let ask = json!({ "openid": openid }).to_string();
    let check = || {
        call(
            at,
            "POST",
            "/internal/wechat/check_session_key",
            RELAY_SECRET,
            ask.as_bytes(),
            &[],
        )
    };
    assert_eq!(check().await.json(), json!({ "valid": true }));

    // WeChat moved on to a key the gateway never saw (a wx.login whose code
    // went elsewhere): the data the client gets now is encrypted with it.
    let elsewhere = env.mock.rotate_session_key(&openid);
    assert_eq!(check().await.json(), json!({ "valid": false }));
    // Not the garbage of a wrong key (400 invalid_encrypted_data): 409
    // session_expired, the client logs in again. A stale key cannot sign
    // resetusersessionkey (WeChat answers 87009), so none is tried.
    let r = decrypt(token.clone(), data(&elsewhere)).await;
    assert_eq!(
        (r.status, r.error()),
        (409, "session_expired".into()),
        "{}",
        r.text()
    );
    assert_eq!(env.mock.api_calls("/wxa/resetusersessionkey"), 0);
    let token = support::login(gw, "wes.2").await.token();
    let now = MockWechat::session_key_for("wes.2");
    let r = decrypt(token.clone(), data(&now)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["data"]["nickName"], "wes");
    // Bad data with a key WeChat holds stays the uniform 400.
    let r = decrypt(token.clone(), data(&elsewhere)).await;
    assert_eq!(
        (r.status, r.error()),
        (400, "invalid_encrypted_data".into())
    );

    // The reset, signed with the current key: the key changes at WeChat and
    // the gateway keeps the new one, which never leaves it.
    let r = call(
        at,
        "POST",
        "/internal/wechat/reset_session_key",
        RELAY_SECRET,
        ask.as_bytes(),
        &[],
    )
    .await;
    assert_eq!(r.json(), json!({ "reset": true }), "{}", r.text());
    assert_eq!(env.mock.api_calls("/wxa/resetusersessionkey"), 1);
    let newest = env.mock.current_key(&openid).unwrap();
    assert_ne!(newest, now);
    assert!(!r.text().contains(&newest));
    assert_eq!(decrypt(token.clone(), data(&newest)).await.status, 200);
    assert_eq!(check().await.json(), json!({ "valid": true }));
    // Only with the relay's secret.
    let r = call(
        at,
        "POST",
        "/internal/wechat/reset_session_key",
        ADMIN_SECRET,
        ask.as_bytes(),
        &[],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(env.mock.api_calls("/wxa/resetusersessionkey"), 1);
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_app_relays_with_its_own_token_and_answers_are_bounded() {
    let up = Upstream::start("apps").await;
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
grace_period = "1s"

[jwt]
secret_env = "WXGATE_JWT_SECRET"
audience = "openapi-test"

[wechat]
timeout = "2s"

[[wechat.apps]]
appid = "wxrelayshop000001"
secret_env = "SHOP"

[[wechat.apps]]
appid = "wxrelayclub000001"
secret_env = "CLUB"

[wechat.relay]
secret_env = "RELAY"
allow = ["/wxa/msg_sec_check", "/wxa/getwxacodeunlimit"]
max_answer = 200

[metrics]
listen = "127.0.0.1:0"

[[routes]]
prefix = "/"
upstreams = ["{}"]
"#,
        up.addr
    );
    let env = dev::with_config(
        &text,
        &[
            ("SHOP", "shop secret"),
            ("CLUB", "club secret"),
            ("RELAY", RELAY_SECRET),
        ],
    )
    .await;
    let at = internal(&env);
    let app_of = |r: &Response| {
        r.json()["trace_id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let r = call(
        at,
        "POST",
        "/wxa/msg_sec_check",
        RELAY_SECRET,
        b"{}",
        &["X-WXGate-AppID: wxrelayclub000001"],
    )
    .await;
    assert_eq!(app_of(&r), "mock-wxrelayclub000001", "{}", r.text());
    let r = call(
        at,
        "POST",
        "/wxa/msg_sec_check?appid=wxrelayshop000001",
        RELAY_SECRET,
        b"{}",
        &[],
    )
    .await;
    assert_eq!(app_of(&r), "mock-wxrelayshop000001", "{}", r.text());
    // Several apps: which one must be said, and be one of them.
    let r = call(at, "POST", "/wxa/msg_sec_check", RELAY_SECRET, b"{}", &[]).await;
    assert_eq!((r.status, r.error()), (400, "invalid_request".into()));
    let r = call(
        at,
        "POST",
        "/wxa/msg_sec_check?appid=wxnope",
        RELAY_SECRET,
        b"{}",
        &[],
    )
    .await;
    assert_eq!((r.status, r.error()), (400, "unknown_app".into()));
    let r = call(
        at,
        "POST",
        "/wxa/msg_sec_check",
        RELAY_SECRET,
        b"{}",
        &["X-WXGate-AppID: wxnope"],
    )
    .await;
    assert_eq!((r.status, r.error()), (400, "unknown_app".into()));
    // An answer over max_answer is not relayed back.
    let r = call(
        at,
        "POST",
        "/wxa/getwxacodeunlimit",
        RELAY_SECRET,
        b"{}",
        &["X-WXGate-AppID: wxrelayshop000001"],
    )
    .await;
    assert_eq!(
        (r.status, r.error()),
        (502, "wechat_error".into()),
        "{}",
        r.text()
    );
    assert_eq!(env.mock.api_calls("/wxa/getwxacodeunlimit"), 1);
    // Each call is counted under its path.
    let m = support::raw_request(
        at,
        b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
    )
    .await;
    let text = m.text();
    assert!(
        text.contains(
            r#"wxgate_wechat_requests_total{api="/wxa/msg_sec_check",errcode="",outcome="ok"} 2"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"wxgate_wechat_requests_total{api="/wxa/getwxacodeunlimit",errcode="",outcome="bad_reply"} 1"#),
        "{text}"
    );
    assert!(!text.contains("mock-at-"), "no token in the metrics");
    dev::stop(env).await;
}
