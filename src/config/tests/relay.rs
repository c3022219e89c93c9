//! `[wechat.relay]` and `[headers] cloud_run`.

use super::*;

/// `[wechat]` with `[wechat.relay]` lines, on the internal listener.
fn with_relay(relay: &str, metrics: &str) -> String {
    format!(
        r#"{JWT}
[wechat]
appid = "wx0123456789abcdef"
secret = "app-secret"

[wechat.relay]
{relay}

[metrics]
{metrics}
{ROUTE}"#
    )
}

const RELAY: &str = r#"secret = "relay-secret-0123456789"
allow = ["/wxa/msg_sec_check", "/wxa/getwxacodeunlimit"]"#;

const LISTEN: &str = r#"listen = "127.0.0.1:9100""#;

#[test]
fn a_relay_gets_its_defaults() {
    let c = parse_ok(&with_relay(RELAY, LISTEN));
    let r = c
        .wechat
        .as_ref()
        .and_then(|w| w.relay.as_ref())
        .expect("relay");
    assert_eq!(r.allow, ["/wxa/msg_sec_check", "/wxa/getwxacodeunlimit"]);
    assert!(r.signed.is_empty());
    assert_eq!(r.max_body, 1024 * 1024);
    assert_eq!(r.max_answer, 8 * 1024 * 1024);
    assert_eq!(r.secret.expose(), b"relay-secret-0123456789");
    // Written back by `wxgate check` without the secret.
    let shown = toml::to_string(&c).unwrap_or_default();
    assert!(shown.contains("/wxa/msg_sec_check"), "{shown}");
    assert!(!shown.contains("relay-secret-0123456789"), "{shown}");
}

#[test]
fn a_relay_needs_the_internal_listener_a_secret_and_paths() {
    let m = invalid_key(&with_relay(RELAY, ""), "wechat.relay");
    assert!(m.contains("[metrics] listen"), "{m}");
    let m = invalid_key(
        &with_relay(r#"allow = ["/wxa/msg_sec_check"]"#, LISTEN),
        "wechat.relay.secret_env",
    );
    assert!(m.contains("secret is required"), "{m}");
    let short = "secret = \"short\"\nallow = [\"/wxa/msg_sec_check\"]";
    let m = invalid_key(&with_relay(short, LISTEN), "wechat.relay.secret_env");
    assert!(m.contains("16 bytes"), "{m}");
    let none = "secret = \"relay-secret-0123456789\"";
    let m = invalid_key(&with_relay(none, LISTEN), "wechat.relay.allow");
    assert!(m.contains("list the WeChat paths"), "{m}");
}

#[test]
fn relayed_paths_are_plain_wechat_paths() {
    for (bad, key) in [
        ("wxa/msg_sec_check", "allow[0]"),
        ("/wxa/msg_sec_check?x=1", "allow[0]"),
        ("/wxa/../cgi-bin/token", "allow[0]"),
        ("/wxa//x", "allow[0]"),
        ("/", "allow[0]"),
        ("/internal/admin/users", "allow[0]"),
        ("/metrics", "allow[0]"),
    ] {
        let relay = format!("secret = \"relay-secret-0123456789\"\nallow = [{bad:?}]");
        invalid_key(&with_relay(&relay, LISTEN), &format!("wechat.relay.{key}"));
    }
    let relay =
        "secret = \"relay-secret-0123456789\"\nsigned = [\"/xpay/query_user_balance\", \"x\"]";
    invalid_key(&with_relay(relay, LISTEN), "wechat.relay.signed[1]");
}

#[test]
fn the_relay_has_a_secret_of_its_own() {
    let admin = format!("{LISTEN}\nadmin_secret = \"relay-secret-0123456789\"");
    let m = invalid_key(&with_relay(RELAY, &admin), "wechat.relay.secret_env");
    assert!(m.contains("must differ"), "{m}");
    let tokens = format!("{LISTEN}\naccess_token_secret = \"relay-secret-0123456789\"");
    invalid_key(&with_relay(RELAY, &tokens), "wechat.relay.secret_env");
}

#[test]
fn relay_sizes_are_bounded() {
    for (key, value) in [
        ("max_body", "0"),
        ("max_body", "16777217"),
        ("max_answer", "67108865"),
    ] {
        let relay = format!("{RELAY}\n{key} = {value}");
        invalid_key(&with_relay(&relay, LISTEN), &format!("wechat.relay.{key}"));
    }
}

#[test]
fn cloud_run_headers_are_off_by_default_and_clash_with_no_other_field() {
    assert!(!parse_ok(&minimal()).headers.cloud_run);
    assert!(
        parse_ok(&with_headers("cloud_run = true"))
            .headers
            .cloud_run
    );
    // Ours under Cloud Run's name for the same field: fine, sent once.
    parse_ok(&with_headers("cloud_run = true\nopenid = \"X-WX-OPENID\""));
    let m = invalid_key(
        &with_headers("cloud_run = true\nunionid = \"X-WX-OPENID\""),
        "headers.cloud_run",
    );
    assert!(m.contains("unionid"), "{m}");
    // Without the option nothing is checked against Cloud Run's names.
    parse_ok(&with_headers("unionid = \"X-WX-OPENID\""));
}

#[test]
fn some_wechat_paths_are_never_relayed() {
    for p in [
        "/wxa/resetusersessionkey",
        "/cgi-bin/token",
        "/cgi-bin/stable_token",
        "/sns/jscode2session",
    ] {
        let relay = format!("secret = \"relay-secret-0123456789\"\nsigned = [{p:?}]");
        let m = invalid_key(&with_relay(&relay, LISTEN), "wechat.relay.signed[0]");
        assert!(m.contains("not relayed"), "{m}");
    }
}
