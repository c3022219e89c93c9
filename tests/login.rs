//! `/wx/login` and `/wx/decrypt` through the real gateway, against the mock
//! WeChat over HTTP (`wxgate::dev::start`): tokens that work upstream, every
//! WeChat error row of the mapping table, single-flight code exchange,
//! encrypted user data, body limits, and that login never reaches the upstream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use support::{dev, Preamble, Response, Upstream};
use wxgate::dev::mock_wechat::MockWechat;
use wxgate::dev::{DevEnv, DEV_APPID};
use wxgate::wechat::crypto::{encrypt_user_data, sign_raw_data};

const JSON: Option<&str> = Some("application/json");
const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

/// The appid and secret of configs written by [`custom`].
const CUSTOM_APPID: &str = "wxlogintest000001";
const CUSTOM_SECRET: &str = "custom wechat secret+&=/";

/// A dev environment from a config file with this WeChat `timeout` and
/// `max_body_bytes`. The upstream is returned to keep it alive.
async fn custom(timeout: &str, max_body_bytes: usize) -> (DevEnv, Upstream) {
    let up = Upstream::start("custom").await;
    let preamble = Preamble::new("login-test");
    let text = format!(
        r#"{preamble}
[wechat]
appid = "{CUSTOM_APPID}"
secret_env = "LOGIN_TEST_WECHAT"
api_base = "https://api.weixin.qq.com"
timeout = "{timeout}"

[login]
max_body_bytes = {max_body_bytes}

[[routes]]
prefix = "/"
upstreams = ["{}"]
"#,
        up.addr
    );
    let env = dev::with_config(&text, &[("LOGIN_TEST_WECHAT", CUSTOM_SECRET)]).await;
    assert_eq!(env.mock.appid(), CUSTOM_APPID);
    (env, up)
}

/// `POST /wx/login` with a JSON body.
async fn login_json(env: &DevEnv, body: &Value) -> Response {
    support::post_json(env.gateway.addr(), "/wx/login", body, &[]).await
}

/// Assert a 200 login for `code` and return its body.
fn assert_logged_in(r: &Response, code: &str) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert!(
        v["token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3),
        "{v}"
    );
    assert_eq!(v["token_type"], "Bearer");
    let expires_in = v["expires_in"].as_u64().expect("expires_in");
    assert!((7190..=7200).contains(&expires_in), "{expires_in}");
    assert_eq!(v["openid"], MockWechat::openid_for(code));
    match MockWechat::unionid_for(code) {
        Some(u) => assert_eq!(v["unionid"], u),
        None => assert!(
            v.as_object().unwrap().contains_key("unionid") && v["unionid"].is_null(),
            "{v}"
        ),
    }
    let body = r.text();
    assert!(!body.contains("session_key"), "{body}");
    assert!(!body.contains(&MockWechat::session_key_for(code)), "{body}");
    v
}

/// Assert a wxgate error with this status, code and `wechat_errcode`.
fn assert_error(r: &Response, status: u16, code: &str, wechat_errcode: Option<i64>) {
    assert_eq!(r.status, status, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"], code, "{v}");
    assert!(v["message"].is_string(), "{v}");
    assert_eq!(v["wechat_errcode"].as_i64(), wechat_errcode, "{v}");
    if wechat_errcode.is_none() {
        assert!(v.get("wechat_errcode").is_none(), "{v}");
    }
}

fn token(v: &Value) -> String {
    v["token"].as_str().expect("token").to_string()
}

/// A fixed IV whose base64 has both `+` and `/`.
fn iv_b64() -> String {
    let iv = STANDARD.encode([0xfb_u8; 16]);
    assert!(iv.contains('+') && iv.contains('/'), "{iv}");
    iv
}

/// WeChat-style user data for `appid`, encrypted with `code`'s session key.
fn encrypted_for(code: &str, nick: &str, appid: &str) -> String {
    let plain = json!({
        "nickName": nick,
        "openId": "attacker",
        "unionId": "attacker-union",
        "watermark": { "appid": appid, "timestamp": 1 },
    });
    encrypt_user_data(
        &MockWechat::session_key_for(code),
        &iv_b64(),
        plain.to_string().as_bytes(),
    )
    .unwrap()
}

/// Percent-encode a base64 value for a form body, but leave `+` raw (as a
/// careless client does, so it arrives as a space).
fn form_value_with_raw_plus(b64: &str) -> String {
    b64.replace('/', "%2F").replace('=', "%3D")
}

/// Consume `code` at the mock directly, as an earlier exchange would have.
async fn consume_at_mock(env: &DevEnv, code: &str) {
    let secret = env.config.wechat.as_ref().unwrap().apps[0]
        .secret
        .expose_str();
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("appid", DEV_APPID)
        .append_pair("secret", secret.unwrap())
        .append_pair("js_code", code)
        .append_pair("grant_type", "authorization_code")
        .finish();
    let req = format!(
        "GET /sns/jscode2session?{query} HTTP/1.1\r\nHost: mock\r\nConnection: close\r\n\r\n"
    );
    let r = support::raw_request(env.mock_addr, req.as_bytes()).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["openid"],
        MockWechat::openid_for(code),
        "{}",
        r.text()
    );
}

// --- login → token → upstream ---

#[tokio::test]
async fn login_token_reaches_upstream_with_identity() {
    let env = dev::embedded().await;
    let code = "alice.login-1";
    let r = support::login(env.gateway.addr(), code).await;
    let v = assert_logged_in(&r, code);
    let openid = MockWechat::openid_for(code);
    let unionid = MockWechat::unionid_for(code).unwrap();
    assert_eq!(v["openid"], openid);
    assert_eq!(v["unionid"], unionid);
    assert!(v.get("user").is_none(), "{v}");
    assert_eq!(env.mock.calls_for(code), 1);

    // The token carries no session_key either.
    let tok = token(&v);
    let payload = URL_SAFE_NO_PAD
        .decode(tok.split('.').nth(1).unwrap())
        .unwrap();
    let payload = String::from_utf8(payload).unwrap();
    let session_key = MockWechat::session_key_for(code);
    assert!(!payload.contains("session_key"), "{payload}");
    assert!(!payload.contains(&session_key), "{payload}");
    let claims: Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(claims["sub"], openid);

    let req = format!(
        "GET /api/x HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {tok}\r\nConnection: close\r\n\r\n"
    );
    let up = support::raw_request(env.gateway.addr(), req.as_bytes()).await;
    assert_eq!(up.status, 200, "{}", up.text());
    assert_eq!(up.upstream_path(), "/api/x");
    assert_eq!(up.upstream_values("x-openid"), vec![openid]);
    assert_eq!(up.upstream_values("x-unionid"), vec![unionid]);
    assert_eq!(
        up.upstream_values("x-wx-appid"),
        vec![DEV_APPID.to_string()]
    );
    let headers = up.upstream_headers();
    assert!(
        !headers
            .iter()
            .any(|(n, v)| n.contains("session") || v.contains(&session_key)),
        "{headers:?}"
    );
    assert_eq!(env.echo.requests(), 1);
    dev::stop(env).await;
}

#[tokio::test]
async fn user_without_unionid() {
    let env = dev::embedded().await;
    let code = "nounion-bob.1";
    let v = assert_logged_in(&support::login(env.gateway.addr(), code).await, code);
    assert!(v["unionid"].is_null(), "{v}");
    let req = format!(
        "GET /api/x HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token(&v)
    );
    let up = support::raw_request(env.gateway.addr(), req.as_bytes()).await;
    assert_eq!(up.status, 200, "{}", up.text());
    assert_eq!(
        up.upstream_values("x-openid"),
        vec![MockWechat::openid_for(code)]
    );
    assert!(up.upstream_values("x-unionid").is_empty());
    assert_eq!(
        up.upstream_values("x-wx-appid"),
        vec![DEV_APPID.to_string()]
    );
    dev::stop(env).await;
}

#[tokio::test]
async fn form_body_and_code_aliases() {
    let env = dev::embedded().await;
    let r = support::post(env.gateway.addr(), "/wx/login", FORM, b"code=form-1", &[]).await;
    assert_logged_in(&r, "form-1");
    let r = support::post(
        env.gateway.addr(),
        "/wx/login",
        FORM,
        b"js_code=form-2",
        &[],
    )
    .await;
    assert_logged_in(&r, "form-2");
    let r = login_json(&env, &json!({ "js_code": "json-3" })).await;
    assert_logged_in(&r, "json-3");
    let r = login_json(&env, &json!({ "jsCode": "json-4" })).await;
    assert_logged_in(&r, "json-4");
    // What `wx.request` sends by default: no Content-Type at all, JSON body.
    let r = support::post(
        env.gateway.addr(),
        "/wx/login",
        None,
        br#"{"code":"bare-5"}"#,
        &[],
    )
    .await;
    assert_logged_in(&r, "bare-5");
    let r = support::post(
        env.gateway.addr(),
        "/wx/login",
        Some("application/json; charset=utf-8"),
        br#"{"code":"utf8-6"}"#,
        &[],
    )
    .await;
    assert_logged_in(&r, "utf8-6");
    assert_eq!(env.mock.calls(), 6);
    dev::stop(env).await;
}

#[tokio::test]
async fn spoofed_identity_header_at_login_is_ignored() {
    let env = dev::embedded().await;
    let r = support::post(
        env.gateway.addr(),
        "/wx/login",
        JSON,
        br#"{"code":"carol.1"}"#,
        &[
            "X-OpenID: evil",
            "X-UnionID: evil",
            "Authorization: Bearer evil",
        ],
    )
    .await;
    let v = assert_logged_in(&r, "carol.1");
    assert_ne!(v["openid"], "evil");
    assert!(!r.text().contains("evil"));
    dev::stop(env).await;
}

// --- WeChat error rows ---

#[tokio::test]
async fn invalid_code_is_401() {
    let env = dev::embedded().await;
    assert_error(
        &support::login(env.gateway.addr(), "invalid").await,
        401,
        "invalid_code",
        Some(40029),
    );
    assert_eq!(env.mock.calls_for("invalid"), 1);
    dev::stop(env).await;
}

#[tokio::test]
async fn used_code_is_401() {
    let env = dev::embedded().await;
    consume_at_mock(&env, "used.1").await;
    assert_error(
        &support::login(env.gateway.addr(), "used.1").await,
        401,
        "invalid_code",
        Some(40163),
    );
    assert_eq!(env.mock.calls_for("used.1"), 2);
    dev::stop(env).await;
}

#[tokio::test]
async fn blocked_is_403() {
    let env = dev::embedded().await;
    assert_error(
        &support::login(env.gateway.addr(), "blocked").await,
        403,
        "code_blocked",
        Some(40226),
    );
    dev::stop(env).await;
}

#[tokio::test]
async fn ratelimited_is_429_with_retry_after() {
    let env = dev::embedded().await;
    let r = support::login(env.gateway.addr(), "ratelimited").await;
    assert_error(&r, 429, "rate_limited", Some(45011));
    let retry_after: u64 = r
        .header("Retry-After")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry_after >= 1, "{retry_after}");
    dev::stop(env).await;
}

#[tokio::test]
async fn busy_is_retried_once_then_502() {
    let env = dev::embedded().await;
    let r = support::login(env.gateway.addr(), "busy").await;
    assert_error(&r, 502, "wechat_unavailable", Some(-1));
    assert_eq!(env.mock.calls_for("busy"), 2);
    dev::stop(env).await;
}

#[tokio::test]
async fn other_errcode_is_502_wechat_error() {
    let env = dev::embedded().await;
    assert_error(
        &support::login(env.gateway.addr(), "error").await,
        502,
        "wechat_error",
        Some(48001),
    );
    assert_eq!(env.mock.calls_for("error"), 1);
    dev::stop(env).await;
}

/// An openid or unionid no header can carry would give a token that never
/// works (or, worse, a header that splits): refused at login.
#[tokio::test]
async fn identities_that_cannot_be_header_values_are_502() {
    let env = dev::embedded().await;
    for code in ["badid-crlf", "badid-long", "badid-union"] {
        let r = support::login(env.gateway.addr(), code).await;
        assert_error(&r, 502, "wechat_error", None);
        assert!(r.json().get("token").is_none(), "{code}: {}", r.text());
        assert_eq!(env.mock.calls_for(code), 1, "{code}");
    }
    dev::stop(env).await;
}

#[tokio::test]
async fn non_json_and_http_500_are_502_without_errcode() {
    let env = dev::embedded().await;
    for code in ["notjson", "http500"] {
        assert_error(
            &support::login(env.gateway.addr(), code).await,
            502,
            "wechat_error",
            None,
        );
        assert_eq!(env.mock.calls_for(code), 1, "{code}");
    }
    dev::stop(env).await;
}

#[tokio::test]
async fn slow_wechat_is_504_within_timeout_and_not_retried() {
    let (env, _up) = custom("1s", 16384).await;
    let started = Instant::now();
    let r = support::login(env.gateway.addr(), "slow").await;
    let elapsed = started.elapsed();
    assert_error(&r, 504, "wechat_timeout", None);
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(2500),
        "{elapsed:?}"
    );
    assert_eq!(env.mock.calls_for("slow"), 1);
    dev::stop(env).await;
}

#[tokio::test]
async fn config_file_appid_and_secret_reach_wechat() {
    // The secret has characters that must be URL-encoded in the query.
    let (env, _up) = custom("2s", 16384).await;
    let code = "dave+1/=&x";
    let r = support::login(env.gateway.addr(), code).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["openid"], MockWechat::openid_for(code));
    assert_eq!(env.mock.calls_for(code), 1);
    dev::stop(env).await;
}

// --- single flight ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_submitted_code_makes_one_wechat_call() {
    let env = dev::embedded().await;
    let code = "erin.double";
    let (a, b) = tokio::join!(
        support::login(env.gateway.addr(), code),
        support::login(env.gateway.addr(), code)
    );
    let a = assert_logged_in(&a, code);
    let b = assert_logged_in(&b, code);
    assert_eq!(a["token"], b["token"]);
    assert_eq!(a["openid"], b["openid"]);
    assert_eq!(env.mock.calls_for(code), 1);
    let c = assert_logged_in(&support::login(env.gateway.addr(), code).await, code);
    assert_eq!(c["token"], a["token"]);
    assert_eq!(env.mock.calls_for(code), 1);
    dev::stop(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_logins_with_one_code_share_one_call() {
    let env = dev::embedded().await;
    let code = "frank.burst";
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let gw = env.gateway.addr();
        tasks.spawn(async move {
            support::post(gw, "/wx/login", JSON, br#"{"code":"frank.burst"}"#, &[]).await
        });
    }
    let mut tokens = Vec::new();
    while let Some(r) = tasks.join_next().await {
        tokens.push(token(&assert_logged_in(&r.unwrap(), code)));
    }
    tokens.dedup();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(env.mock.calls_for(code), 1);
    dev::stop(env).await;
}

// --- encryptedData ---

#[tokio::test]
async fn encrypted_data_is_decrypted_but_identity_comes_from_wechat() {
    let env = dev::embedded().await;
    let code = "grace.enc-1";
    let body = json!({
        "code": code,
        "encryptedData": encrypted_for(code, "n", DEV_APPID),
        "iv": iv_b64(),
    });
    let r = login_json(&env, &body).await;
    let v = assert_logged_in(&r, code);
    assert_eq!(v["user"]["nickName"], "n", "{v}");
    assert_eq!(v["user"]["watermark"]["appid"], DEV_APPID);
    assert_eq!(v["openid"], MockWechat::openid_for(code));
    assert_ne!(v["openid"], "attacker");
    assert_eq!(v["unionid"], MockWechat::unionid_for(code).unwrap());
    dev::stop(env).await;
}

#[tokio::test]
async fn encrypted_data_failures_are_identical() {
    let env = dev::embedded().await;
    let wrong_appid = login_json(
        &env,
        &json!({
            "code": "heidi.1",
            "encryptedData": encrypted_for("heidi.1", "n", "wxsomeoneelse0001"),
            "iv": iv_b64(),
        }),
    )
    .await;
    assert_error(&wrong_appid, 400, "invalid_encrypted_data", None);

    let garbage = login_json(
        &env,
        &json!({
            "code": "heidi.2",
            "encryptedData": STANDARD.encode([0x5a_u8; 48]),
            "iv": iv_b64(),
        }),
    )
    .await;
    assert_error(&garbage, 400, "invalid_encrypted_data", None);

    // Encrypted with another user's key: valid base64, wrong key.
    let wrong_key = login_json(
        &env,
        &json!({
            "code": "heidi.3",
            "encryptedData": encrypted_for("someone-else", "n", DEV_APPID),
            "iv": iv_b64(),
        }),
    )
    .await;
    assert_error(&wrong_key, 400, "invalid_encrypted_data", None);

    let not_base64 = login_json(
        &env,
        &json!({ "code": "heidi.4", "encryptedData": "%%%not base64%%%", "iv": iv_b64() }),
    )
    .await;
    assert_error(&not_base64, 400, "invalid_encrypted_data", None);

    assert_eq!(wrong_appid.body, garbage.body);
    assert_eq!(wrong_appid.body, wrong_key.body);
    assert_eq!(wrong_appid.body, not_base64.body);
    dev::stop(env).await;
}

#[tokio::test]
async fn form_encoded_encrypted_data_with_raw_plus_works() {
    let env = dev::embedded().await;
    let code = "ivan.form";
    // Find a nickname whose ciphertext has a `+` (most do).
    let data = (0..100)
        .map(|i| encrypted_for(code, &format!("n{i}"), DEV_APPID))
        .find(|d| d.contains('+'))
        .expect("a ciphertext with '+'");
    let body = format!(
        "code={code}&encryptedData={}&iv={}",
        form_value_with_raw_plus(&data),
        form_value_with_raw_plus(&iv_b64())
    );
    assert!(body.contains('+'));
    let r = support::post(env.gateway.addr(), "/wx/login", FORM, body.as_bytes(), &[]).await;
    let v = assert_logged_in(&r, code);
    assert!(
        v["user"]["nickName"]
            .as_str()
            .is_some_and(|n| n.starts_with('n')),
        "{v}"
    );
    dev::stop(env).await;
}

// --- rawData + signature ---

#[tokio::test]
async fn raw_data_signature_is_checked() {
    let env = dev::embedded().await;
    let raw = r#"{"nickName":"judy","avatarUrl":""}"#;
    let code = "judy.sig-1";
    let good = login_json(
        &env,
        &json!({
            "code": code,
            "rawData": raw,
            "signature": sign_raw_data(raw, &MockWechat::session_key_for(code)),
        }),
    )
    .await;
    assert_logged_in(&good, code);

    let code = "judy.sig-2";
    // Signed with another code's session_key.
    let wrong = login_json(
        &env,
        &json!({
            "code": code,
            "rawData": raw,
            "signature": sign_raw_data(raw, &MockWechat::session_key_for("judy.sig-1")),
        }),
    )
    .await;
    assert_error(&wrong, 400, "invalid_signature", None);

    let code = "judy.sig-3";
    let tampered = login_json(
        &env,
        &json!({
            "code": code,
            "rawData": r#"{"nickName":"mallory","avatarUrl":""}"#,
            "signature": sign_raw_data(raw, &MockWechat::session_key_for(code)),
        }),
    )
    .await;
    assert_error(&tampered, 400, "invalid_signature", None);
    dev::stop(env).await;
}

// --- /wx/decrypt ---

async fn decrypt(env: &DevEnv, bearer: Option<&str>, body: &Value) -> Response {
    let auth = bearer.map(|t| format!("Authorization: Bearer {t}"));
    let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
    support::post_json(env.gateway.addr(), "/wx/decrypt", body, &headers).await
}

fn decrypt_body(code: &str, nick: &str) -> Value {
    json!({ "encryptedData": encrypted_for(code, nick, DEV_APPID), "iv": iv_b64() })
}

#[tokio::test]
async fn decrypt_with_the_stored_session_key() {
    let env = dev::embedded().await;
    let code = "kim.1";
    let tok = token(&assert_logged_in(
        &support::login(env.gateway.addr(), code).await,
        code,
    ));
    let r = decrypt(&env, Some(&tok), &decrypt_body(code, "kim")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["data"]["nickName"], "kim", "{v}");
    assert_eq!(v["data"]["watermark"]["appid"], DEV_APPID);
    assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
    assert!(!r.text().contains(&MockWechat::session_key_for(code)));
    // Wrong appid in the watermark: the uniform error.
    let r = decrypt(
        &env,
        Some(&tok),
        &json!({ "encryptedData": encrypted_for(code, "kim", "wxother"), "iv": iv_b64() }),
    )
    .await;
    assert_error(&r, 400, "invalid_encrypted_data", None);
    // Missing iv.
    let r = decrypt(&env, Some(&tok), &json!({ "encryptedData": "AAAA" })).await;
    assert_error(&r, 400, "invalid_request", None);
    assert_eq!(env.echo.requests(), 0);
    dev::stop(env).await;
}

#[tokio::test]
async fn decrypt_requires_a_token() {
    let env = dev::embedded().await;
    let r = decrypt(&env, None, &decrypt_body("x", "n")).await;
    assert_error(&r, 401, "token_missing", None);
    let r = decrypt(&env, Some("not.a.token"), &decrypt_body("x", "n")).await;
    assert_error(&r, 401, "token_invalid", None);
    assert_eq!(env.mock.calls(), 0);
    dev::stop(env).await;
}

#[tokio::test]
async fn decrypt_without_stored_session_is_409() {
    let env = dev::embedded().await;
    let (tok, _) = env
        .gateway
        .state()
        .tokens()
        .issue(&wxgate::token::NewToken {
            family: None,
            openid: "o-nobody",
            ..Default::default()
        })
        .unwrap();
    let r = decrypt(&env, Some(&tok), &decrypt_body("x", "n")).await;
    assert_error(&r, 409, "session_expired", None);
    dev::stop(env).await;
}

#[tokio::test]
async fn decrypt_uses_the_latest_session_key() {
    let env = dev::embedded().await;
    let first = assert_logged_in(&support::login(env.gateway.addr(), "leo.1").await, "leo.1");
    let second = assert_logged_in(&support::login(env.gateway.addr(), "leo.2").await, "leo.2");
    assert_eq!(first["openid"], second["openid"]);
    assert_ne!(
        MockWechat::session_key_for("leo.1"),
        MockWechat::session_key_for("leo.2")
    );
    for tok in [token(&first), token(&second)] {
        let old = decrypt(&env, Some(&tok), &decrypt_body("leo.1", "old")).await;
        assert_error(&old, 400, "invalid_encrypted_data", None);
        let new = decrypt(&env, Some(&tok), &decrypt_body("leo.2", "new")).await;
        assert_eq!(new.status, 200, "{}", new.text());
        assert_eq!(new.json()["data"]["nickName"], "new");
    }
    dev::stop(env).await;
}

// --- body limits and malformed requests ---

#[tokio::test]
async fn oversized_content_length_is_refused_before_the_body_arrives() {
    let env = dev::embedded().await;
    let mut s = TcpStream::connect(env.gateway.addr()).await.unwrap();
    s.write_all(
        b"POST /wx/login HTTP/1.1\r\nHost: gw.test\r\nContent-Type: application/json\r\nContent-Length: 16385\r\n\r\n{\"code\":",
    )
    .await
    .unwrap();
    // The rest of the body never comes: the answer must not wait for it.
    let r = support::read_response(&mut s, Duration::from_secs(5)).await;
    assert_error(&r, 413, "payload_too_large", None);
    assert_eq!(env.mock.calls(), 0);
    dev::stop(env).await;
}

#[tokio::test]
async fn oversized_chunked_body_is_413() {
    let env = dev::embedded().await;
    let mut s = TcpStream::connect(env.gateway.addr()).await.unwrap();
    let mut req = b"POST /wx/login HTTP/1.1\r\nHost: gw.test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let chunk = format!("{{\"code\":\"big\",\"pad\":\"{}", "x".repeat(4000));
    for _ in 0..5 {
        req.extend_from_slice(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes());
    }
    s.write_all(&req).await.unwrap();
    // No final chunk: the gateway must answer once the limit is passed.
    let r = support::read_response(&mut s, Duration::from_secs(5)).await;
    assert_error(&r, 413, "payload_too_large", None);
    assert_eq!(env.mock.calls(), 0);
    dev::stop(env).await;
}

#[tokio::test]
async fn body_of_exactly_the_limit_is_read() {
    let (env, _up) = custom("2s", 1024).await;
    let mut body = br#"{"code":"mia.fit"}"#.to_vec();
    body.resize(1024, b' ');
    let r = support::post(env.gateway.addr(), "/wx/login", JSON, &body, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    body.push(b' ');
    let r = support::post(env.gateway.addr(), "/wx/login", JSON, &body, &[]).await;
    assert_error(&r, 413, "payload_too_large", None);
    // Chunked, small chunks adding up past the limit.
    let mut req = b"POST /wx/login HTTP/1.1\r\nHost: gw.test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for piece in body.chunks(100) {
        req.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        req.extend_from_slice(piece);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let mut s = TcpStream::connect(env.gateway.addr()).await.unwrap();
    s.write_all(&req).await.unwrap();
    let r = support::read_response(&mut s, Duration::from_secs(5)).await;
    assert_error(&r, 413, "payload_too_large", None);
    assert_eq!(env.mock.calls(), 1);
    dev::stop(env).await;
}

#[tokio::test]
async fn malformed_requests_never_reach_wechat() {
    let env = dev::embedded().await;
    let gw = env.gateway.addr();
    let cases: Vec<(Option<&str>, Vec<u8>, u16, &str)> = vec![
        (JSON, br#"{"code":"abc""#.to_vec(), 400, "invalid_request"),
        (JSON, b"".to_vec(), 400, "invalid_request"),
        (JSON, br#"{"code":123}"#.to_vec(), 400, "invalid_request"),
        (JSON, br#"{}"#.to_vec(), 400, "invalid_request"),
        (JSON, br#"{"code":""}"#.to_vec(), 400, "invalid_request"),
        (FORM, b"iv=abc".to_vec(), 400, "invalid_request"),
        (
            JSON,
            json!({ "code": "a".repeat(200) }).to_string().into_bytes(),
            400,
            "invalid_request",
        ),
        (
            JSON,
            json!({ "code": "a".repeat(129) }).to_string().into_bytes(),
            400,
            "invalid_request",
        ),
        (JSON, br#"{"code":"a b"}"#.to_vec(), 400, "invalid_request"),
        (
            JSON,
            br#"{"code":"ok-code","encryptedData":"AAAA"}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            JSON,
            br#"{"code":"ok-code","rawData":"{}"}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            Some("text/plain"),
            br#"{"code":"abc"}"#.to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            Some("multipart/form-data; boundary=x"),
            b"--x--".to_vec(),
            415,
            "unsupported_media_type",
        ),
    ];
    for (ct, body, status, code) in cases {
        let r = support::post(gw, "/wx/login", ct, &body, &[]).await;
        assert_eq!(
            (r.status, r.error().as_str()),
            (status, code),
            "{ct:?} {}: {}",
            String::from_utf8_lossy(&body),
            r.text()
        );
    }
    let get = b"GET /wx/login HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n";
    let r = support::raw_request(gw, get).await;
    assert_error(&r, 405, "method_not_allowed", None);
    assert_eq!(r.header("Allow"), Some("POST"));
    let r = support::raw_request(
        gw,
        b"PUT /wx/login HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    assert_error(&r, 405, "method_not_allowed", None);
    assert_eq!(r.header("Allow"), Some("POST"));
    // 128 bytes is still a code.
    let r = support::login(env.gateway.addr(), &"b".repeat(128)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(env.mock.calls(), 1);
    assert_eq!(env.echo.requests(), 0);
    dev::stop(env).await;
}

#[tokio::test]
async fn json_array_body_is_invalid_request() {
    let env = dev::embedded().await;
    let r = support::post(
        env.gateway.addr(),
        "/wx/login",
        JSON,
        br#"["array-code"]"#,
        &[],
    )
    .await;
    assert_error(&r, 400, "invalid_request", None);
    assert_eq!(env.mock.calls(), 0);
    dev::stop(env).await;
}

// --- login never forwards ---

#[tokio::test]
async fn login_never_reaches_the_upstream() {
    let env = dev::embedded().await;
    assert_logged_in(
        &support::login(env.gateway.addr(), "nina.1").await,
        "nina.1",
    );
    assert_eq!(
        support::login(env.gateway.addr(), "invalid").await.status,
        401
    );
    assert_eq!(
        support::login(env.gateway.addr(), "error").await.status,
        502
    );
    assert_eq!(
        support::post(env.gateway.addr(), "/wx/login", JSON, b"{", &[])
            .await
            .status,
        400
    );
    assert_eq!(env.echo.requests(), 0);
    dev::stop(env).await;
}

#[tokio::test]
async fn unknown_paths_under_the_login_prefix_are_the_gateways_not_the_backends() {
    // A client written for a newer gateway (`GET /wx/devices`, ...) must not
    // reach a backend with the caller's identity by accident.
    let env = dev::embedded().await;
    let addr = env.gateway.addr();
    let token = support::login(addr, "ursula.1").await.token();
    let before = env.echo.requests();
    for (method, path) in [
        ("GET", "/wx/devices"),
        ("DELETE", "/wx/bans/abc"),
        ("POST", "/wx/anything"),
        ("GET", "/wx"),
        ("GET", "/WX/sessions"),
        ("GET", "/Wx/Login/x"),
    ] {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let r = support::raw_request(addr, request.as_bytes()).await;
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
        assert_eq!(r.error(), "no_route", "{method} {path}");
    }
    assert_eq!(env.echo.requests(), before, "nothing reached the upstream");
    // Paths next to the prefix still route.
    let r = support::get_auth(addr, "/wxapi/x", &token, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    dev::stop(env).await;
}

#[tokio::test]
async fn endpoints_that_end_or_change_something_refuse_fields_they_do_not_know() {
    let env = dev::embedded().await;
    let addr = env.gateway.addr();
    let login = support::login(addr, "victor.1").await;
    let token = login.token();
    let refresh = login.json()["refresh_token"].as_str().unwrap().to_string();
    let auth = format!("Authorization: Bearer {token}");

    // A newer gateway's field (say, end the sessions of one platform) must
    // not end this one instead.
    let r = support::post_json(addr, "/wx/logout", &json!({"platform": "ios"}), &[&auth]).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error(), "invalid_request");
    assert!(r.text().contains("does not know"), "{}", r.text());
    let r = support::get_auth(addr, "/api/x", &token, &[]).await;
    assert_eq!(r.status, 200, "the session goes on: {}", r.text());

    let r = support::post_json(
        addr,
        "/wx/refresh",
        &json!({"refresh_token": refresh, "device": "x"}),
        &[],
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error(), "invalid_request");
    // Refused before anything was taken: the refresh token still rotates.
    let r = support::post_json(addr, "/wx/refresh", &json!({"refresh_token": refresh}), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // The login body keeps ignoring what it does not know.
    let r = support::post_json(
        addr,
        "/wx/login",
        &json!({"code": "victor.2", "device": {"platform": "ios"}}),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    dev::stop(env).await;
}

// --- both HTTP/1 paths ---

/// `/wx/login` and `/wx/refresh` give the same answers whether wxgate's own
/// HTTP/1 path (the default) or Pingora's serves them: successes, refusals
/// of every kind, on one keep-alive connection. (Which requests the own
/// path takes is `relay::tests`.)
#[tokio::test]
async fn login_and_refresh_answer_the_same_on_both_http1_paths() {
    let mut seen = Vec::new();
    for path in support::HTTP1_PATHS {
        let up = Upstream::start("paths").await;
        let server = format!("http1 = \"{path}\"");
        let preamble = Preamble::new("login-test").server(&server);
        let text = format!(
            "{preamble}\n[wechat]\nappid = \"{CUSTOM_APPID}\"\nsecret_env = \"LOGIN_TEST_WECHAT\"\n\
             api_base = \"https://api.weixin.qq.com\"\n\n[login]\nmax_body_bytes = 1024\n\n\
             [[routes]]\nprefix = \"/\"\nupstreams = [\"{}\"]\n",
            up.addr
        );
        let env = dev::with_config(&text, &[("LOGIN_TEST_WECHAT", CUSTOM_SECRET)]).await;
        let addr = env.gateway.addr();
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let mut answers = Vec::new();
        let post = |target: &str, ct: Option<&str>, body: &str| {
            let ct = ct
                .map(|c| format!("Content-Type: {c}\r\n"))
                .unwrap_or_default();
            format!(
                "POST {target} HTTP/1.1\r\nHost: gw\r\n{ct}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };

        let r = send(&mut conn, post("/wx/login", JSON, r#"{"code":"paths-1"}"#)).await;
        let v = assert_logged_in(&r, "paths-1");
        let refresh = v["refresh_token"].as_str().unwrap().to_string();
        answers.push(shape(&r));
        let r = send(&mut conn, post("/wx/login", FORM, "js_code=paths-2&appId=")).await;
        assert_logged_in(&r, "paths-2");
        answers.push(shape(&r));
        for (ct, body) in [
            (JSON, r#"{"code":""}"#),
            (JSON, r#"["paths-3"]"#),
            (JSON, r#"{"code":"paths-3""#),
            (None, r#"{"code":"paths-3","encryptedData":"x"}"#),
            (JSON, r#"{"code":"paths-3","appid":"wx-unknown"}"#),
        ] {
            let r = send(&mut conn, post("/wx/login", ct, body)).await;
            assert_eq!(r.status, 400, "{path} {body}: {}", r.text());
            answers.push(shape(&r));
        }
        let r = send(
            &mut conn,
            post(
                "/wx/refresh",
                JSON,
                &json!({"refresh_token": refresh}).to_string(),
            ),
        )
        .await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert!(r.json()["token"].as_str().is_some());
        answers.push(shape(&r));
        let r = send(
            &mut conn,
            post("/wx/refresh", JSON, r#"{"refresh_token":"nope"}"#),
        )
        .await;
        assert_eq!(r.status, 401, "{path}");
        answers.push(shape(&r));
        // Not the plain kind: answered by Pingora on both paths.
        let r = send(
            &mut conn,
            "GET /wx/login HTTP/1.1\r\nHost: gw\r\n\r\n".to_string(),
        )
        .await;
        assert_eq!(r.status, 405, "{path}");
        answers.push(shape(&r));
        // A content type neither path reads: refused, its body unread, and
        // the connection closed.
        let r = send(
            &mut conn,
            post("/wx/login", Some("text/plain"), "code=paths-4"),
        )
        .await;
        assert_error(&r, 415, "unsupported_media_type", None);
        answers.push(shape(&r));
        // Over the body limit: refused before its body is read.
        let mut again = TcpStream::connect(addr).await.unwrap();
        let big = format!(r#"{{"code":"{}"}}"#, "x".repeat(1100));
        again
            .write_all(post("/wx/login", JSON, &big).as_bytes())
            .await
            .unwrap();
        let r = support::read_response(&mut again, Duration::from_secs(5)).await;
        assert_error(&r, 413, "payload_too_large", None);
        answers.push(shape(&r));
        seen.push(answers);
    }
    assert_eq!(seen[0], seen[1], "wxgate, then pingora");
}

/// What a client compares of an answer: status, error code, the field
/// names (lowercased) with the values that do not change per request.
fn shape(r: &Response) -> (u16, Value, Vec<(String, String)>) {
    let body = r.json();
    let error = body.get("error").cloned().unwrap_or(Value::Null);
    let mut fields: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(n, v)| {
            let n = n.to_ascii_lowercase();
            let v = match n.as_str() {
                "date" | "x-request-id" | "content-length" => "-".to_string(),
                _ => v.clone(),
            };
            (n, v)
        })
        .collect();
    fields.sort();
    (r.status, error, fields)
}

/// Write a request on `conn` and read its answer.
async fn send(conn: &mut TcpStream, req: String) -> Response {
    conn.write_all(req.as_bytes()).await.unwrap();
    support::read_response(conn, Duration::from_secs(5)).await
}
