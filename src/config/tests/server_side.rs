//! WeChat's server side and what backends check: `[wechat.relay]`,
//! `[headers] cloud_run`, `[assertion]`.

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

// --- [assertion] ---

/// A minimal config with `[assertion]` lines.
fn with_assertion(lines: &str) -> String {
    format!("{JWT}\n[assertion]\n{lines}\n{ROUTE}")
}

fn key_file(alg: crate::token::Algorithm) -> (tempfile_dir::Dir, String) {
    let dir = tempfile_dir::Dir::new();
    let key = crate::token::PrivateKey::generate(alg).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.0.join("assertion.pem");
    std::fs::write(&path, key.to_pem().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
    (dir, path.display().to_string())
}

/// A directory removed when dropped.
mod tempfile_dir {
    pub(super) struct Dir(pub(super) std::path::PathBuf);
    impl Dir {
        pub(super) fn new() -> Self {
            let p = std::env::temp_dir()
                .join(format!("wxgate-assertion-{}", crate::clock::random_id()));
            std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{e}"));
            Self(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[test]
fn an_assertion_key_gets_its_defaults() {
    use crate::token::Algorithm;
    assert!(parse_ok(&minimal()).assertion.is_none());
    for (alg, name) in [(Algorithm::EdDSA, "EdDSA"), (Algorithm::ES256, "ES256")] {
        let (_dir, path) = key_file(alg);
        let c = parse_ok(&with_assertion(&format!(
            "algorithm = \"{name}\"\nprivate_key_file = \"{path}\""
        )));
        let a = c.assertion.as_ref().expect("assertion");
        assert_eq!(a.ttl, Duration::from_secs(60));
        assert_eq!(a.kid, a.key.public().thumbprint());
        let shown = toml::to_string(&c).unwrap_or_default();
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    }
}

#[test]
fn an_assertion_key_is_asymmetric_its_own_and_short_lived() {
    use crate::token::Algorithm;
    let (_dir, path) = key_file(Algorithm::EdDSA);
    let file = format!("private_key_file = \"{path}\"");
    let m = invalid_key(&with_assertion(&file), "assertion.algorithm");
    assert!(m.contains("EdDSA"), "{m}");
    invalid_key(
        &with_assertion(&format!("algorithm = \"HS256\"\n{file}")),
        "assertion.algorithm",
    );
    // An Ed25519 key read as ES256.
    let m = invalid_key(
        &with_assertion(&format!("algorithm = \"ES256\"\n{file}")),
        "assertion.private_key",
    );
    assert!(m.contains("not a PEM P-256 private key"), "{m}");
    invalid_key(
        &with_assertion("algorithm = \"EdDSA\""),
        "assertion.private_key_env",
    );
    let long = format!("algorithm = \"EdDSA\"\n{file}\nttl = \"61s\"");
    let m = invalid_key(&with_assertion(&long), "assertion.ttl");
    assert!(m.contains("60s"), "{m}");
    let bad_kid = format!("algorithm = \"EdDSA\"\n{file}\nkid = \"a b\"");
    invalid_key(&with_assertion(&bad_kid), "assertion.kid");
}

#[test]
fn an_assertion_kid_is_no_token_keys() {
    use crate::token::Algorithm;
    let (_dir, path) = key_file(Algorithm::EdDSA);
    let text = format!(
        "[jwt]\nsecret_env = \"WXGATE_JWT_SECRET\"\naudience = \"test-app\"\n\n\
         [[jwt.previous_keys]]\nalgorithm = \"HS256\"\nkid = \"hs-2025\"\nsecret_env = \"WXGATE_JWT_SECRET\"\n\n\
         [assertion]\nalgorithm = \"EdDSA\"\nprivate_key_file = \"{path}\"\nkid = \"hs-2025\"\n{ROUTE}"
    );
    let m = invalid_key(&text, "assertion.kid");
    assert!(m.contains("its own"), "{m}");
}

// --- [login.risk] ---

fn with_risk(lines: &str) -> String {
    format!(
        "{JWT}\n[wechat]\nappid = \"wx0123456789abcdef\"\nsecret = \"app-secret\"\n\n[login.risk]\n{lines}\n{ROUTE}"
    )
}

#[test]
fn risk_gets_its_defaults_and_its_bounds() {
    use crate::config::RiskOnError;
    assert!(parse_ok(&minimal()).login.risk.is_none());
    let r = parse_ok(&with_risk("")).login.risk.expect("risk");
    assert_eq!(
        (r.scene, r.refuse_at, r.on_error),
        (0, None, RiskOnError::Allow)
    );
    let r = parse_ok(&with_risk(
        "scene = 1\nrefuse_at = 4\non_error = \"refuse\"",
    ))
    .login
    .risk
    .expect("risk");
    assert_eq!(
        (r.scene, r.refuse_at, r.on_error),
        (1, Some(4), RiskOnError::Refuse)
    );
    for (line, key) in [
        ("scene = 2", "login.risk.scene"),
        ("refuse_at = 0", "login.risk.refuse_at"),
        ("refuse_at = 5", "login.risk.refuse_at"),
        ("on_error = \"ignore\"", "login.risk.on_error"),
    ] {
        invalid_key(&with_risk(line), key);
    }
    let m = invalid_key(
        &format!("{JWT}\n[login.risk]\nrefuse_at = 3\n{ROUTE}"),
        "login.risk",
    );
    assert!(m.contains("[wechat]"), "{m}");
}

#[test]
fn an_assertion_is_never_an_access_token() {
    use crate::token::Algorithm;
    let (_dir, path) = key_file(Algorithm::EdDSA);
    let lines = format!("algorithm = \"EdDSA\"\nprivate_key_file = \"{path}\"");
    // A route whose prefix is the tokens' audience.
    let text = format!(
        "[jwt]\nsecret_env = \"WXGATE_JWT_SECRET\"\naudience = \"/api/\"\n\n[assertion]\n{lines}\n\n\
         [[routes]]\nprefix = \"/api/\"\nupstreams = [\"127.0.0.1:9000\"]\n"
    );
    let m = invalid_key(&text, "routes[0].prefix");
    assert!(m.contains("[jwt] audience"), "{m}");
    // The token key itself.
    let text = format!(
        "[jwt]\nalgorithm = \"EdDSA\"\nprivate_key_file = \"{path}\"\naudience = \"test-app\"\n\n\
         [assertion]\n{lines}\nkid = \"assert-1\"\n{ROUTE}"
    );
    let m = invalid_key(&text, "assertion.private_key");
    assert!(m.contains("a key of their own"), "{m}");
}
