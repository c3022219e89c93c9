use super::*;
use crate::config::{OnError, StoreKind, Topology};
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};

const FILE: &str = "test.toml";
const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// The environment the tests see: only `WXGATE_JWT_SECRET` is set.
fn env(name: &str) -> Option<String> {
    (name == "WXGATE_JWT_SECRET").then(|| SECRET.to_string())
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, FILE, &env)
}

fn parse_ok(text: &str) -> Config {
    parse(text).unwrap_or_else(|e| panic!("should parse: {e}\n---\n{text}"))
}

/// Parse, expect a failure, and return its message.
fn parse_err(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("should be refused:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// The message must name the file and every one of `needles`.
fn assert_mentions(message: &str, needles: &[&str]) {
    assert!(message.contains(FILE), "no file name in: {message}");
    for n in needles {
        assert!(message.contains(n), "{n:?} missing from: {message}");
    }
}

/// An `Invalid` error for exactly `key`; returns the message.
fn invalid_key(text: &str, key: &str) -> String {
    match parse(text) {
        Err(ConfigError::Invalid {
            file,
            key: k,
            message,
        }) => {
            assert_eq!(file, FILE);
            assert_eq!(k, key, "message: {message}");
            let shown = parse_err(text);
            assert!(shown.contains(FILE) && shown.contains(key), "{shown}");
            message
        }
        Err(other) => panic!("expected an Invalid error for {key}, got {other}"),
        Ok(_) => panic!("should be refused:\n{text}"),
    }
}

/// A `Parse` error (TOML or schema); returns the displayed message.
fn parse_error(text: &str) -> String {
    match parse(text) {
        Err(e @ ConfigError::Parse { .. }) => e.to_string(),
        Err(other) => panic!("expected a parse error, got {other}"),
        Ok(_) => panic!("should be refused:\n{text}"),
    }
}

const JWT: &str = r#"
[jwt]
secret_env = "WXGATE_JWT_SECRET"
audience = "test-app"
"#;

const ROUTE: &str = r#"
[[routes]]
prefix = "/"
upstreams = ["127.0.0.1:9000"]
"#;

/// A minimal valid config: a `[jwt]` section and one route.
fn minimal() -> String {
    format!("{JWT}{ROUTE}")
}

/// `[jwt]` with the given extra lines, plus one route.
fn with_jwt(lines: &str) -> String {
    format!("[jwt]\naudience = \"test-app\"\n{lines}\n{ROUTE}")
}

/// `[server]` with the given lines, plus a valid jwt and route.
fn with_server(lines: &str) -> String {
    format!("[server]\n{lines}\n{JWT}{ROUTE}")
}

/// `[headers]` with the given lines, plus a valid jwt and route.
fn with_headers(lines: &str) -> String {
    format!("[headers]\n{lines}\n{JWT}{ROUTE}")
}

/// A valid jwt section and the given routes.
fn with_routes(routes: &str) -> String {
    format!("{JWT}\n{routes}")
}

/// A temp file removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, contents: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "wxgate-config-test-{}-{n}-{tag}",
            std::process::id()
        ));
        std::fs::write(&path, contents).unwrap();
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A path that does not exist.
fn missing_path(tag: &str) -> String {
    std::env::temp_dir()
        .join(format!(
            "wxgate-config-test-{}-missing-{tag}",
            std::process::id()
        ))
        .to_str()
        .unwrap()
        .to_string()
}

// ---------------------------------------------------------------------------
// Valid configs
// ---------------------------------------------------------------------------

const FULL: &str = r#"
[server]
listen = "127.0.0.1:8080"
threads = 4
grace_period = "15s"
health_path_prefix = "/_wxgate/"

[jwt]
secret_env = "WXGATE_JWT_SECRET"
issuer = "my-gate"
audience = "my-miniprogram"
ttl = "1h 30m"
leeway = "45s"
max_token_bytes = 8192

[headers]
openid = "X-User-OpenID"
unionid = "X-User-UnionID"
appid = "X-User-AppID"
forward_authorization = true

[[routes]]
prefix = "/public/"
upstreams = ["127.0.0.1:9000"]
auth = "public"
connect_timeout = "2s"
read_timeout = "30s"
health_check_interval = "10s"

[[routes]]
prefix = "/maybe"
upstreams = ["127.0.0.1:9002"]
auth = "optional"

[[routes]]
prefix = "/"
upstreams = ["127.0.0.1:9000", "127.0.0.1:9001", "[::1]:9003"]
auth = "required"
"#;

#[test]
fn full_config_parses() {
    let c = parse_ok(FULL);
    assert_eq!(c.server.listen, "127.0.0.1:8080".parse().unwrap());
    assert!(c.server.tls.is_none());
    assert_eq!(c.server.threads, 4);
    assert_eq!(c.server.grace_period, Duration::from_secs(15));
    assert_eq!(c.server.health_path_prefix, "/_wxgate");

    assert_eq!(c.jwt.key.secret().unwrap().expose(), SECRET.as_bytes());
    assert_eq!(c.jwt.key.source, "env WXGATE_JWT_SECRET");
    assert_eq!(c.jwt.issuer, "my-gate");
    assert_eq!(c.jwt.audience, "my-miniprogram");
    assert_eq!(c.jwt.ttl, Duration::from_secs(5400));
    assert_eq!(c.jwt.leeway, Duration::from_secs(45));
    assert_eq!(c.jwt.max_token_bytes, 8192);

    assert_eq!(c.headers.openid.spelling, "X-User-OpenID");
    assert_eq!(c.headers.openid.name.as_str(), "x-user-openid");
    assert_eq!(c.headers.unionid.spelling, "X-User-UnionID");
    assert_eq!(c.headers.appid.spelling, "X-User-AppID");
    assert!(c.headers.forward_authorization);

    assert_eq!(c.routes.len(), 3);
    let r = &c.routes[0];
    assert_eq!(r.prefix, "/public/");
    assert_eq!(r.auth, AuthMode::Public);
    assert_eq!(r.upstreams, ["127.0.0.1:9000"]);
    assert_eq!(r.upstream_addrs, ["127.0.0.1:9000".parse().unwrap()]);
    assert_eq!(r.connect_timeout, Duration::from_secs(2));
    assert_eq!(r.read_timeout, Duration::from_secs(30));
    assert_eq!(r.health_check_interval, Duration::from_secs(10));
    assert_eq!(c.routes[1].auth, AuthMode::Optional);
    assert_eq!(c.routes[1].prefix, "/maybe");
    let r = &c.routes[2];
    assert_eq!(r.auth, AuthMode::Required);
    assert_eq!(
        r.upstream_addrs,
        [
            "127.0.0.1:9000".parse().unwrap(),
            "127.0.0.1:9001".parse().unwrap(),
            "[::1]:9003".parse().unwrap(),
        ]
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn minimal_config_gets_the_defaults() {
    let c = parse_ok(&minimal());
    assert_eq!(c.server.listen, "0.0.0.0:8080".parse().unwrap());
    assert!(c.server.tls.is_none());
    assert_eq!(c.server.threads, 2);
    assert_eq!(c.server.http1, ServedBy::Wxgate);
    assert_eq!(c.server.http2, ServedBy::Wxgate);
    assert_eq!(c.server.grace_period, Duration::from_secs(10));
    assert_eq!(c.server.health_path_prefix, "");
    assert_eq!(c.jwt.issuer, "wxgate");
    assert_eq!(c.jwt.ttl, Duration::from_secs(7200));
    assert_eq!(c.jwt.leeway, Duration::from_secs(30));
    assert_eq!(c.jwt.max_token_bytes, 4096);
    assert_eq!(c.headers.openid.spelling, "X-OpenID");
    assert_eq!(c.headers.unionid.spelling, "X-UnionID");
    assert_eq!(c.headers.appid.spelling, "X-WX-AppID");
    assert!(!c.headers.forward_authorization);
    let r = &c.routes[0];
    assert_eq!(r.auth, AuthMode::Required);
    assert_eq!(r.connect_timeout, Duration::from_secs(3));
    assert_eq!(r.read_timeout, Duration::from_secs(60));
    assert_eq!(r.health_check_interval, Duration::from_secs(5));
    assert!(c.warnings.is_empty());
}

#[test]
fn config_toml_example_parses() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml.example"));
    let c = Config::load(path, &|n| match n {
        "WXGATE_JWT_SECRET" => Some("x".repeat(32)),
        "WXGATE_WECHAT_SECRET" => Some("wechat-secret".into()),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let w = c.wechat.as_ref().expect("[wechat] in the example");
    assert_eq!(w.apps.len(), 1);
    assert_eq!(w.apps[0].appid, "wx4f4bc4dec97d474b");
    assert_eq!(c.login.path_prefix, "/wx");
    assert_eq!(c.login.refresh_ttl, Duration::from_secs(30 * 86400));
    assert!(matches!(
        c.store.kind,
        crate::config::StoreKind::Memory { .. }
    ));
    assert_eq!(c.store.on_error, crate::config::OnError::FailClosed);
    assert_eq!(c.store.timeout, Duration::from_millis(200));
    assert_eq!(
        c.jwt.key.secret().unwrap().expose(),
        "x".repeat(32).as_bytes()
    );
    assert_eq!(c.jwt.audience, "my-miniprogram");
    assert_eq!(c.routes.len(), 2);
    assert_eq!(c.routes[0].prefix, "/public/");
    assert_eq!(c.routes[0].auth, AuthMode::Public);
    assert_eq!(c.routes[1].prefix, "/");
    assert_eq!(c.routes[1].auth, AuthMode::Required);
    assert_eq!(c.routes[1].upstream_addrs.len(), 2);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn config_toml_example_hook_parses_once_uncommented() {
    let example = include_str!("../../config.toml.example");
    let mut text = String::new();
    let mut in_hook = false;
    for line in example.lines() {
        in_hook = (in_hook && line.starts_with('#')) || line == "# [login.hook]";
        let line = match line.strip_prefix("# ") {
            Some(rest) if in_hook && !rest.starts_with('#') => rest,
            _ if in_hook => "",
            _ => line,
        };
        text.push_str(line);
        text.push('\n');
    }
    let c = Config::parse(&text, FILE, &|n| match n {
        "WXGATE_JWT_SECRET" => Some("x".repeat(32)),
        "WXGATE_WECHAT_SECRET" => Some("wechat-secret".into()),
        "WXGATE_HOOK_SECRET" => Some("hook-secret-0123456789".into()),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let h = c.login.hook.as_ref().expect("the example's [login.hook]");
    assert_eq!(h.url, "http://127.0.0.1:9000/internal/wxgate");
    assert_eq!(h.timeout, Duration::from_secs(2));
    assert_eq!(h.claims.len(), 1);
    assert_eq!(h.max_claims_bytes, 1024);
    assert!(!h.on_refresh);
}

#[test]
fn config_toml_example_needs_its_secret() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml.example"));
    let err = Config::load(path, &|_| None).unwrap_err().to_string();
    assert!(err.contains("config.toml.example"), "{err}");
    assert!(err.contains("jwt.secret_env"), "{err}");
    assert!(err.contains("WXGATE_JWT_SECRET"), "{err}");
}

#[test]
fn load_of_a_missing_file_names_it() {
    let path = missing_path("load");
    let err = Config::load(Path::new(&path), &env).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    assert!(err.to_string().contains(&path), "{err}");
}

#[test]
fn durations_accept_the_documented_forms() {
    for (text, secs) in [("30s", 30), ("5m", 300), ("2h", 7200), ("1h 30m", 5400)] {
        let c = parse_ok(&with_jwt(&format!(
            "secret_env = \"WXGATE_JWT_SECRET\"\nttl = \"{text}\""
        )));
        assert_eq!(c.jwt.ttl, Duration::from_secs(secs), "{text}");
    }
    let c = parse_ok(&with_routes(
        "[[routes]]\nprefix = \"/\"\nupstreams = [\"127.0.0.1:9000\"]\nconnect_timeout = \"250ms\"",
    ));
    assert_eq!(c.routes[0].connect_timeout, Duration::from_millis(250));
}

#[test]
fn duplicate_upstreams_are_resolved_once() {
    let c = parse_ok(&with_routes(
        "[[routes]]\nprefix = \"/\"\nupstreams = [\"127.0.0.1:9000\", \"127.0.0.1:9000\"]",
    ));
    assert_eq!(c.routes[0].upstreams.len(), 2);
    assert_eq!(
        c.routes[0].upstream_addrs,
        ["127.0.0.1:9000".parse().unwrap()]
    );
}

// ---------------------------------------------------------------------------
// Unknown keys and schema errors
// ---------------------------------------------------------------------------

#[test]
fn unknown_top_level_key_is_refused() {
    let m = parse_error(&format!("bogus_key = 1\n{}", minimal()));
    assert_mentions(&m, &["bogus_key"]);
}

#[test]
fn unknown_top_level_section_is_refused() {
    let m = parse_error(&format!("{}\n[no_such_section]\nurl = \"x\"\n", minimal()));
    assert_mentions(&m, &["no_such_section"]);
}

#[test]
fn unknown_key_in_server_is_refused() {
    let m = parse_error(&with_server("listn = \"0.0.0.0:8080\""));
    assert_mentions(&m, &["listn"]);
}

#[test]
fn unknown_key_in_jwt_is_refused() {
    let m = parse_error(&with_jwt(
        "secret_env = \"WXGATE_JWT_SECRET\"\nalgorithms = [\"HS512\"]",
    ));
    assert_mentions(&m, &["algorithms"]);
}

#[test]
fn unknown_key_in_headers_is_refused() {
    let m = parse_error(&with_headers("openId = \"X-OpenID\""));
    assert_mentions(&m, &["openId"]);
}

#[test]
fn unknown_key_in_routes_is_refused() {
    let m = parse_error(&with_routes(
        "[[routes]]\nprefix = \"/\"\nupstream = [\"127.0.0.1:9000\"]",
    ));
    assert_mentions(&m, &["upstream"]);
}

#[test]
fn wrong_type_is_refused() {
    let m = parse_error(&with_server("threads = \"two\""));
    assert_mentions(&m, &["threads"]);
}

#[test]
fn invalid_toml_is_refused() {
    let m = parse_error("[server\nlisten = ");
    assert_mentions(&m, &[]);
}

#[test]
fn bad_auth_mode_is_refused() {
    let m = parse_error(&with_routes(
        "[[routes]]\nprefix = \"/\"\nupstreams = [\"127.0.0.1:9000\"]\nauth = \"maybe\"",
    ));
    // The allowed values, not the one written (it could be anything).
    assert_mentions(&m, &["routes.auth", "required", "public"]);
    assert!(!m.contains("maybe"), "{m}");
}

// ---------------------------------------------------------------------------
// [server]
// ---------------------------------------------------------------------------

#[test]
fn bad_listen_address_is_refused() {
    let m = invalid_key(&with_server("listen = \"localhost:8080\""), "server.listen");
    assert!(m.contains("localhost:8080"), "{m}");
    invalid_key(&with_server("listen = \"0.0.0.0\""), "server.listen");
    invalid_key(&with_server("listen = \"0.0.0.0:99999\""), "server.listen");
}

#[test]
fn http1_names_who_serves_http1() {
    let c = parse_ok(&with_server("http1 = \"pingora\""));
    assert_eq!(c.server.http1, ServedBy::Pingora);
    let c = parse_ok(&with_server("http1 = \"wxgate\""));
    assert_eq!(c.server.http1, ServedBy::Wxgate);
    invalid_key(&with_server("http1 = \"hyper\""), "server.http1");
    invalid_key(&with_server("http1 = \"Pingora\""), "server.http1");
}

#[test]
fn http2_names_who_serves_http2() {
    let c = parse_ok(&with_server("http2 = \"pingora\""));
    assert_eq!(c.server.http2, ServedBy::Pingora);
    assert_eq!(c.server.http1, ServedBy::Wxgate);
    let c = parse_ok(&with_server("http2 = \"wxgate\""));
    assert_eq!(c.server.http2, ServedBy::Wxgate);
    invalid_key(&with_server("http2 = \"h2\""), "server.http2");
}

#[test]
fn threads_out_of_range_are_refused() {
    invalid_key(&with_server("threads = 0"), "server.threads");
    invalid_key(&with_server("threads = -1"), "server.threads");
    invalid_key(&with_server("threads = 100000"), "server.threads");
}

#[test]
fn bad_grace_period_is_refused() {
    let m = invalid_key(
        &with_server("grace_period = \"soon\""),
        "server.grace_period",
    );
    assert!(m.contains("soon"), "{m}");
}

#[test]
fn tls_with_only_tls_listen_names_the_missing_keys() {
    let m = invalid_key(
        &with_server("tls_listen = \"0.0.0.0:8443\""),
        "server.tls_listen",
    );
    assert!(m.contains("tls_cert"), "{m}");
    assert!(m.contains("tls_key"), "{m}");
    assert!(!m.contains("missing: tls_listen"), "{m}");
}

#[test]
fn tls_without_tls_listen_names_it() {
    let pem = TempFile::new("pem-only", "-----BEGIN CERTIFICATE-----\n");
    let m = invalid_key(
        &with_server(&format!("tls_cert = '{0}'\ntls_key = '{0}'", pem.path())),
        "server.tls_listen",
    );
    assert!(m.contains("missing: tls_listen"), "{m}");
}

#[test]
fn tls_cert_file_missing_is_refused() {
    let key = TempFile::new("key.pem", "-----BEGIN PRIVATE KEY-----\n");
    let cert = missing_path("cert.pem");
    let m = invalid_key(
        &with_server(&format!(
            "tls_listen = \"0.0.0.0:8443\"\ntls_cert = '{cert}'\ntls_key = '{}'",
            key.path()
        )),
        "server.tls_cert",
    );
    assert!(m.contains(&cert), "{m}");
}

#[test]
fn tls_key_file_missing_is_refused() {
    let cert = TempFile::new("cert.pem", "-----BEGIN CERTIFICATE-----\n");
    let key = missing_path("key.pem");
    let m = invalid_key(
        &with_server(&format!(
            "tls_listen = \"0.0.0.0:8443\"\ntls_cert = '{}'\ntls_key = '{key}'",
            cert.path()
        )),
        "server.tls_key",
    );
    assert!(m.contains(&key), "{m}");
}

#[test]
fn tls_cert_that_is_not_pem_is_refused() {
    let cert = TempFile::new("cert.der", "not a certificate");
    let key = TempFile::new("key2.pem", "-----BEGIN PRIVATE KEY-----\n");
    let m = invalid_key(
        &with_server(&format!(
            "tls_listen = \"0.0.0.0:8443\"\ntls_cert = '{}'\ntls_key = '{}'",
            cert.path(),
            key.path()
        )),
        "server.tls_cert",
    );
    assert!(m.contains("PEM"), "{m}");
}

#[test]
fn tls_with_all_three_keys_is_accepted() {
    let cert = TempFile::new("ok-cert.pem", "-----BEGIN CERTIFICATE-----\n");
    let key = TempFile::new("ok-key.pem", "-----BEGIN PRIVATE KEY-----\n");
    let c = parse_ok(&with_server(&format!(
        "tls_listen = \"127.0.0.1:8443\"\ntls_cert = '{}'\ntls_key = '{}'",
        cert.path(),
        key.path()
    )));
    let tls = c.server.tls.unwrap();
    assert_eq!(tls.listen, "127.0.0.1:8443".parse().unwrap());
    assert_eq!(tls.cert, cert.0);
    assert_eq!(tls.key, key.0);
}

#[test]
fn bad_health_path_prefix_is_refused() {
    // `/%61` is `/a` once canonical: its /healthz could never be matched.
    for bad in ["_wxgate", "/a/../b", "/a%2fb", "/%61", "/a//b", "/a?x"] {
        invalid_key(
            &with_server(&format!("health_path_prefix = \"{bad}\"")),
            "server.health_path_prefix",
        );
    }
}

#[test]
fn health_path_prefix_slash_means_root() {
    let c = parse_ok(&with_server("health_path_prefix = \"/\""));
    assert_eq!(c.server.health_path_prefix, "");
}

#[test]
fn route_colliding_with_healthz_is_refused() {
    let m = invalid_key(
        &with_routes(
            "[[routes]]\nprefix = \"/healthz\"\nupstreams = [\"127.0.0.1:9000\"]\n\
             [[routes]]\nprefix = \"/\"\nupstreams = [\"127.0.0.1:9000\"]",
        ),
        "routes[0].prefix",
    );
    assert!(m.contains("/healthz"), "{m}");
    assert!(m.contains("health_path_prefix"), "{m}");
}

#[test]
fn route_colliding_with_readyz_is_refused() {
    let m = invalid_key(
        &with_routes(
            "[[routes]]\nprefix = \"/\"\nupstreams = [\"127.0.0.1:9000\"]\n\
             [[routes]]\nprefix = \"/readyz\"\nupstreams = [\"127.0.0.1:9000\"]",
        ),
        "routes[1].prefix",
    );
    assert!(m.contains("/readyz"), "{m}");
}

#[test]
fn moved_health_endpoints_free_the_path() {
    let text = format!(
        "[server]\nhealth_path_prefix = \"/_wxgate\"\n{JWT}\n\
         [[routes]]\nprefix = \"/healthz\"\nupstreams = [\"127.0.0.1:9000\"]"
    );
    let c = parse_ok(&text);
    assert_eq!(c.routes[0].prefix, "/healthz");
    let text = format!(
        "[server]\nhealth_path_prefix = \"/_wxgate\"\n{JWT}\n\
         [[routes]]\nprefix = \"/_wxgate/healthz\"\nupstreams = [\"127.0.0.1:9000\"]"
    );
    invalid_key(&text, "routes[0].prefix");
}

// ---------------------------------------------------------------------------
// [jwt]
// ---------------------------------------------------------------------------

#[test]
fn missing_jwt_section_is_refused() {
    invalid_key(ROUTE, "jwt");
}

#[test]
fn bad_ttl_is_refused() {
    let m = invalid_key(
        &with_jwt("secret_env = \"WXGATE_JWT_SECRET\"\nttl = \"2 parsecs\""),
        "jwt.ttl",
    );
    assert!(m.contains("2 parsecs"), "{m}");
}

#[test]
fn zero_ttl_is_refused() {
    let m = invalid_key(
        &with_jwt("secret_env = \"WXGATE_JWT_SECRET\"\nttl = \"0s\""),
        "jwt.ttl",
    );
    assert!(m.contains("greater than zero"), "{m}");
}

#[test]
fn lifetimes_are_capped() {
    let m = invalid_key(
        &with_jwt("secret_env = \"WXGATE_JWT_SECRET\"\nttl = \"31d\""),
        "jwt.ttl",
    );
    assert!(m.contains("at most 30d"), "{m}");
    let m = invalid_key(
        &with_jwt("secret_env = \"WXGATE_JWT_SECRET\"\nttl = \"400000000000y\""),
        "jwt.ttl",
    );
    assert!(
        m.contains("at most 30d") || m.contains("400000000000y"),
        "{m}"
    );
    let c = parse_ok(&with_jwt(
        "secret_env = \"WXGATE_JWT_SECRET\"\nttl = \"30d\"",
    ));
    assert_eq!(c.jwt.ttl, MAX_TOKEN_TTL);
}

#[test]
fn bare_number_duration_is_refused() {
    invalid_key(
        &with_jwt("secret_env = \"WXGATE_JWT_SECRET\"\nttl = \"7200\""),
        "jwt.ttl",
    );
}

#[test]
fn leeway_over_five_minutes_is_refused() {
    invalid_key(
        &with_jwt("secret_env = \"WXGATE_JWT_SECRET\"\nleeway = \"6m\""),
        "jwt.leeway",
    );
    let c = parse_ok(&with_jwt(
        "secret_env = \"WXGATE_JWT_SECRET\"\nleeway = \"5m\"",
    ));
    assert_eq!(c.jwt.leeway, Duration::from_secs(300));
}

#[test]
fn max_token_bytes_out_of_range_is_refused() {
    for n in [0, 255, 65537] {
        invalid_key(
            &with_jwt(&format!(
                "secret_env = \"WXGATE_JWT_SECRET\"\nmax_token_bytes = {n}"
            )),
            "jwt.max_token_bytes",
        );
    }
}

#[test]
fn empty_issuer_is_refused() {
    invalid_key(
        &with_jwt("secret_env = \"WXGATE_JWT_SECRET\"\nissuer = \"\""),
        "jwt.issuer",
    );
}

#[test]
fn missing_audience_is_refused() {
    let text = format!("[jwt]\nsecret_env = \"WXGATE_JWT_SECRET\"\n{ROUTE}");
    invalid_key(&text, "jwt.audience");
}

#[test]
fn empty_audience_is_refused() {
    let text = format!("[jwt]\nsecret_env = \"WXGATE_JWT_SECRET\"\naudience = \"\"\n{ROUTE}");
    invalid_key(&text, "jwt.audience");
}

#[test]
fn short_secret_is_refused() {
    let m = invalid_key(
        &with_jwt(&format!("secret = \"{}\"", "s".repeat(31))),
        "jwt.secret",
    );
    assert!(m.contains("32"), "{m}");
    assert!(m.contains("31"), "{m}");
    assert!(!m.contains(&"s".repeat(31)), "the secret leaked: {m}");
}

#[test]
fn short_secret_from_env_is_refused() {
    let text = with_jwt("secret_env = \"SHORT\"");
    let err = Config::parse(&text, FILE, &|n| {
        (n == "SHORT").then(|| "short-secret".to_string())
    })
    .unwrap_err()
    .to_string();
    assert_mentions(&err, &["jwt.secret", "32"]);
    assert!(!err.contains("short-secret"), "the secret leaked: {err}");
}

#[test]
fn secret_of_exactly_32_bytes_is_accepted() {
    let c = parse_ok(&with_jwt(&format!("secret = \"{}\"", "s".repeat(32))));
    assert_eq!(c.jwt.key.secret().unwrap().len(), 32);
}

#[test]
fn secret_env_pointing_to_an_unset_variable_names_it() {
    let m = invalid_key(
        &with_jwt("secret_env = \"MY_UNSET_SECRET_VAR\""),
        "jwt.secret_env",
    );
    assert!(m.contains("MY_UNSET_SECRET_VAR"), "{m}");
}

#[test]
fn secret_env_pointing_to_an_empty_variable_is_refused() {
    let text = with_jwt("secret_env = \"EMPTY\"");
    let err = Config::parse(&text, FILE, &|n| (n == "EMPTY").then(String::new)).unwrap_err();
    match err {
        ConfigError::Invalid { key, message, .. } => {
            assert_eq!(key, "jwt.secret_env");
            assert!(message.contains("EMPTY"), "{message}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn two_secret_sources_are_refused() {
    let m = invalid_key(
        &with_jwt(&format!(
            "secret_env = \"WXGATE_JWT_SECRET\"\nsecret = \"{SECRET}\""
        )),
        "jwt.secret_env",
    );
    assert!(m.contains("only one"), "{m}");
    let file = TempFile::new("two-sources", SECRET);
    let m = invalid_key(
        &with_jwt(&format!(
            "secret_env = \"WXGATE_JWT_SECRET\"\nsecret_file = '{}'",
            file.path()
        )),
        "jwt.secret_env",
    );
    assert!(m.contains("only one"), "{m}");
}

#[test]
fn no_secret_is_refused() {
    let m = invalid_key(&with_jwt(""), "jwt.secret_env");
    assert!(m.contains("secret_file"), "{m}");
}

#[test]
fn inline_secret_is_accepted_with_a_warning() {
    let c = parse_ok(&with_jwt(&format!("secret = \"{SECRET}\"")));
    assert_eq!(c.jwt.key.secret().unwrap().expose(), SECRET.as_bytes());
    assert_eq!(c.jwt.key.source, "inline");
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.warnings[0].contains(FILE), "{}", c.warnings[0]);
    assert!(c.warnings[0].contains("jwt.secret"), "{}", c.warnings[0]);
    assert!(!c.warnings[0].contains(SECRET), "the secret leaked");
}

#[test]
fn secret_file_is_read_without_its_trailing_newline() {
    let file = TempFile::new("secret", &format!("{SECRET}\n"));
    let c = parse_ok(&with_jwt(&format!("secret_file = '{}'", file.path())));
    assert_eq!(c.jwt.key.secret().unwrap().expose(), SECRET.as_bytes());
    assert_eq!(c.jwt.key.source, format!("file {}", file.path()));
    assert!(c.warnings.is_empty());
}

#[test]
fn secret_file_crlf_is_stripped() {
    let file = TempFile::new("secret-crlf", &format!("{SECRET}\r\n"));
    let c = parse_ok(&with_jwt(&format!("secret_file = '{}'", file.path())));
    assert_eq!(c.jwt.key.secret().unwrap().expose(), SECRET.as_bytes());
}

#[test]
fn missing_secret_file_is_refused() {
    let path = missing_path("secret");
    let m = invalid_key(
        &with_jwt(&format!("secret_file = '{path}'")),
        "jwt.secret_file",
    );
    assert!(m.contains(&path), "{m}");
}

#[test]
fn empty_secret_file_is_refused() {
    let file = TempFile::new("secret-empty", "\n");
    invalid_key(
        &with_jwt(&format!("secret_file = '{}'", file.path())),
        "jwt.secret_file",
    );
}

#[test]
fn short_secret_file_is_refused() {
    let file = TempFile::new("secret-short", "too-short\n");
    let m = invalid_key(
        &with_jwt(&format!("secret_file = '{}'", file.path())),
        "jwt.secret",
    );
    assert!(m.contains("32"), "{m}");
}

// ---------------------------------------------------------------------------
// [headers]
// ---------------------------------------------------------------------------

#[test]
fn invalid_header_name_is_refused() {
    let m = invalid_key(&with_headers("openid = \"X OpenID\""), "headers.openid");
    assert!(m.contains("X OpenID"), "{m}");
    invalid_key(&with_headers("unionid = \"\""), "headers.unionid");
    invalid_key(&with_headers("appid = \"X-App:ID\""), "headers.appid");
}

#[test]
fn reserved_identity_header_is_refused() {
    let m = invalid_key(
        &with_headers("openid = \"Authorization\""),
        "headers.openid",
    );
    assert!(m.contains("Authorization"), "{m}");
    for reserved in ["Host", "Connection", "X-Forwarded-For", "Content-Length"] {
        invalid_key(
            &with_headers(&format!("unionid = \"{reserved}\"")),
            "headers.unionid",
        );
    }
}

#[test]
fn two_identity_headers_the_same_are_refused() {
    let m = invalid_key(
        &with_headers("openid = \"X-OpenID\"\nunionid = \"x_openid\""),
        "headers",
    );
    assert!(m.contains("same header"), "{m}");
    invalid_key(
        &with_headers("openid = \"X-Id\"\nappid = \"x-id\""),
        "headers",
    );
    invalid_key(&with_headers("unionid = \"X-WX-AppID\""), "headers");
}

#[test]
fn header_spelling_is_kept() {
    let c = parse_ok(&with_headers("openid = \"x_OpenId\""));
    assert_eq!(c.headers.openid.spelling, "x_OpenId");
    assert_eq!(c.headers.openid.name.as_str(), "x_openid");
}

// ---------------------------------------------------------------------------
// [[routes]]
// ---------------------------------------------------------------------------

#[test]
fn no_routes_is_refused() {
    let m = invalid_key(JWT, "routes");
    assert!(m.contains("[[routes]]"), "{m}");
}

#[test]
fn missing_prefix_is_refused() {
    invalid_key(
        &with_routes("[[routes]]\nupstreams = [\"127.0.0.1:9000\"]"),
        "routes[0].prefix",
    );
}

#[test]
fn duplicate_prefix_is_refused() {
    let m = invalid_key(
        &with_routes(
            "[[routes]]\nprefix = \"/api/\"\nupstreams = [\"127.0.0.1:9000\"]\n\
             [[routes]]\nprefix = \"/api/\"\nupstreams = [\"127.0.0.1:9001\"]",
        ),
        "routes[1].prefix",
    );
    assert!(m.contains("/api/"), "{m}");
}

#[test]
fn non_canonical_prefix_is_refused() {
    for bad in [
        "/a/../b", "api", "", "//a", "/a//b", "/%61pi", "/a?x=1", "/./", "/a\\\\b", "/a%2fb",
        "/%e4",
    ] {
        let m = invalid_key(
            &with_routes(&format!(
                "[[routes]]\nprefix = \"{bad}\"\nupstreams = [\"127.0.0.1:9000\"]"
            )),
            "routes[0].prefix",
        );
        assert!(m.contains("canonical"), "{bad}: {m}");
    }
}

#[test]
fn canonical_escaped_prefix_is_accepted() {
    let c = parse_ok(&with_routes(
        "[[routes]]\nprefix = \"/%E4%B8%AD/\"\nupstreams = [\"127.0.0.1:9000\"]",
    ));
    assert_eq!(c.routes[0].prefix, "/%E4%B8%AD/");
}

#[test]
fn upstream_without_port_is_refused() {
    let m = invalid_key(
        &with_routes("[[routes]]\nprefix = \"/\"\nupstreams = [\"127.0.0.1\"]"),
        "routes[0].upstreams",
    );
    assert!(m.contains("127.0.0.1"), "{m}");
    assert!(m.contains("port"), "{m}");
    invalid_key(
        &with_routes("[[routes]]\nprefix = \"/\"\nupstreams = [\"backend\"]"),
        "routes[0].upstreams",
    );
}

#[test]
fn upstream_url_or_bad_port_is_refused() {
    for bad in [
        "http://127.0.0.1:9000",
        "127.0.0.1:99999",
        "127.0.0.1:http",
        ":9000",
        "backend:9000/x",
    ] {
        let m = invalid_key(
            &with_routes(&format!(
                "[[routes]]\nprefix = \"/\"\nupstreams = [\"{bad}\"]"
            )),
            "routes[0].upstreams",
        );
        assert!(m.contains(bad), "{bad}: {m}");
    }
}

#[test]
fn empty_upstreams_are_refused() {
    invalid_key(
        &with_routes("[[routes]]\nprefix = \"/\"\nupstreams = []"),
        "routes[0].upstreams",
    );
    invalid_key(
        &with_routes("[[routes]]\nprefix = \"/\""),
        "routes[0].upstreams",
    );
}

#[test]
fn error_in_second_route_names_its_index() {
    invalid_key(
        &with_routes(
            "[[routes]]\nprefix = \"/a/\"\nupstreams = [\"127.0.0.1:9000\"]\n\
             [[routes]]\nprefix = \"/b/\"\nupstreams = [\"127.0.0.1:9000\"]\nread_timeout = \"0s\"",
        ),
        "routes[1].read_timeout",
    );
}

#[test]
fn zero_route_timeouts_are_refused() {
    for key in ["connect_timeout", "read_timeout", "health_check_interval"] {
        invalid_key(
            &with_routes(&format!(
                "[[routes]]\nprefix = \"/\"\nupstreams = [\"127.0.0.1:9000\"]\n{key} = \"0s\""
            )),
            &format!("routes[0].{key}"),
        );
    }
}

// ---------------------------------------------------------------------------
// render()
// ---------------------------------------------------------------------------

#[test]
fn render_hides_the_secret() {
    let c = parse_ok(&with_jwt(&format!("secret = \"{SECRET}\"")));
    let text = c.render();
    assert!(text.contains("secret = \"***\""), "{text}");
    assert!(!text.contains(SECRET), "{text}");
    assert!(!text.contains("0123456789"), "{text}");
}

#[test]
fn render_hides_a_secret_from_env() {
    let text = parse_ok(FULL).render();
    assert!(text.contains("secret = \"***\""), "{text}");
    assert!(!text.contains(SECRET), "{text}");
}

#[test]
fn render_shows_durations_like_the_input() {
    let text = parse_ok(&minimal()).render();
    assert!(text.contains("ttl = \"2h\""), "{text}");
    assert!(text.contains("leeway = \"30s\""), "{text}");
    assert!(text.contains("grace_period = \"10s\""), "{text}");
    assert!(text.contains("read_timeout = \"1m\""), "{text}");
    assert!(text.contains("listen = \"0.0.0.0:8080\""), "{text}");
    assert!(text.contains("openid = \"X-OpenID\""), "{text}");
    assert!(text.contains("auth = \"required\""), "{text}");
}

#[test]
fn render_output_is_valid_toml() {
    let text = parse_ok(FULL).render();
    let v: toml::Value = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(v["jwt"]["secret"].as_str(), Some("***"));
    assert_eq!(v["jwt"]["ttl"].as_str(), Some("1h 30m"));
    assert_eq!(v["routes"].as_array().map(Vec::len), Some(3));
}

#[test]
fn debug_hides_the_secret() {
    let c = parse_ok(&with_jwt(&format!("secret = \"{SECRET}\"")));
    let text = format!("{c:?}");
    assert!(!text.contains(SECRET), "{text}");
}

// --- [store], [login] limits, trusted proxies ---

#[test]
fn store_defaults_to_memory_fail_closed() {
    let c = parse_ok(&minimal());
    assert!(matches!(c.store.kind, StoreKind::Memory { .. }));
    assert_eq!(c.store.on_error, OnError::FailClosed);
    assert_eq!(c.store.key_prefix, "wxgate:");
    assert_eq!(c.login.rate_limit_per_ip, None);
}

#[test]
fn memory_store_bounds_are_read_per_kind_and_checked() {
    let c = parse_ok(&minimal());
    assert!(
        matches!(c.store.kind, StoreKind::Memory { memory } if memory == MemoryLimits::default())
    );
    let text = format!(
        "{}\n[store]\nkind = \"memory\"\n[store.memory]\nmax_sessions = 10\nmax_revocations = 5000000\n",
        minimal()
    );
    let StoreKind::Memory { memory: limits } = parse_ok(&text).store.kind else {
        panic!("not the memory store");
    };
    assert_eq!(
        (limits.max_sessions, limits.max_revocations),
        (10, 5_000_000)
    );
    assert_eq!(limits.max_counters, MemoryLimits::default().max_counters);
    for bad in [
        "max_sessions = 0",
        "max_login_codes = -1",
        "max_revocations = 100000001",
    ] {
        let key = format!("store.memory.{}", bad.split(' ').next().unwrap_or_default());
        invalid_key(&format!("{}\n[store.memory]\n{bad}\n", minimal()), &key);
    }
    // Unknown keys are refused, and Redis has no such bounds.
    assert!(parse(&format!(
        "{}\n[store.memory]\nmax_everything = 1\n",
        minimal()
    ))
    .is_err());
    let redis =
        "[store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1/\"\n[store.memory]\nmax_sessions = 1";
    invalid_key(&format!("{}\n{redis}\n", minimal()), "store.memory");
}

#[test]
fn redis_store_reads_its_url_from_the_environment() {
    let text = format!(
        "{}\n[store]\nkind = \"redis\"\nurl_env = \"WXGATE_JWT_SECRET\"\n",
        minimal()
    );
    // The variable holds no redis URL here: refused, naming the key, not the value.
    let m = invalid_key(&text, "store.url_env");
    assert!(!m.contains(SECRET), "{m}");
    let text = format!("{}\n[store]\nkind = \"redis\"\nurl = \"redis://:pw@127.0.0.1:6390/1\"\non_error = \"fail_open\"\ntimeout = \"50ms\"\n", minimal());
    let c = parse_ok(&text);
    assert!(
        matches!(&c.store.kind, StoreKind::Redis { redis } if matches!(&redis.topology, Topology::Standalone { url, .. } if url.expose() == b"redis://:pw@127.0.0.1:6390/1"))
    );
    assert_eq!(c.store.on_error, OnError::FailOpen);
    assert_eq!(c.store.timeout, Duration::from_millis(50));
    assert!(!c.render().contains(":pw@"), "{}", c.render());
}

#[test]
fn store_errors_name_the_key() {
    let base = minimal();
    invalid_key(&format!("{base}\n[store]\nkind = \"etcd\"\n"), "store.kind");
    invalid_key(
        &format!("{base}\n[store]\nkind = \"redis\"\n"),
        "store.url_env",
    );
    invalid_key(
        &format!("{base}\n[store]\nkind = \"redis\"\nurl_env = \"NOPE\"\n"),
        "store.url_env",
    );
    invalid_key(
        &format!("{base}\n[store]\nurl = \"redis://x\"\n"),
        "store.url",
    );
    invalid_key(
        &format!("{base}\n[store]\ntimeout = \"0s\"\n"),
        "store.timeout",
    );
    invalid_key(
        &format!("{base}\n[store]\nkey_prefix = \"a b\"\n"),
        "store.key_prefix",
    );
    assert_mentions(
        &parse_error(&format!("{base}\n[store]\non_error = \"maybe\"\n")),
        &["on_error"],
    );
}

#[test]
fn rates_parse_and_bad_rates_are_refused() {
    assert_eq!(
        parse_rate("20/min"),
        Ok(Rate {
            limit: 20,
            window: Duration::from_secs(60)
        })
    );
    assert_eq!(
        parse_rate(" 5 / s ").map(|r| r.window),
        Ok(Duration::from_secs(1))
    );
    assert_eq!(parse_rate("100/h").map(|r| r.limit), Ok(100));
    for bad in ["20", "x/min", "20/day", "0/min", "-1/min", ""] {
        assert!(parse_rate(bad).is_err(), "{bad}");
    }
    let text = format!("{}\n[login]\nrate_limit_per_ip = \"lots\"\n", minimal());
    invalid_key(&text, "login.rate_limit_per_ip");
    let text = format!("{}\n[login]\nrate_limit_global = \"2000/min\"\n", minimal());
    assert_eq!(
        parse_ok(&text).login.rate_limit_global.map(|r| r.limit),
        Some(2000)
    );
}

#[test]
fn trusted_proxies_accept_ips_and_cidrs() {
    let c = parse_ok(&with_server(
        "trusted_proxies = [\"10.0.0.0/8\", \"192.0.2.1\", \"::1\"]",
    ));
    assert_eq!(c.server.trusted_proxies.len(), 3);
    assert!(c.server.trusted_proxies[1].contains(&"192.0.2.1".parse::<std::net::IpAddr>().unwrap()));
    invalid_key(
        &with_server("trusted_proxies = [\"10.0.0.0/8\", \"nope\"]"),
        "server.trusted_proxies[1]",
    );
}

#[test]
fn strip_list_defaults_and_is_checked() {
    let c = parse_ok(&format!("{JWT}{ROUTE}"));
    let names: Vec<&str> = c
        .headers
        .strip
        .iter()
        .map(|h| h.spelling.as_str())
        .collect();
    assert_eq!(names, crate::headers::DEFAULT_STRIP);
    let c = parse_ok(&format!("[headers]\nstrip = [\"X-Tenant\"]\n{JWT}{ROUTE}"));
    assert_eq!(c.headers.strip.len(), 1);
    for (bad, why) in [
        ("Host", "cannot be stripped"),
        ("Authorization", "cannot be stripped"),
        ("bad name", "not a valid header name"),
    ] {
        let m = invalid_key(
            &format!("[headers]\nstrip = [\"X-Ok\", {bad:?}]\n{JWT}{ROUTE}"),
            "headers.strip[1]",
        );
        assert!(m.contains(why), "{bad}: {m}");
    }
}

#[test]
fn prefixes_differing_only_in_case_are_refused() {
    let text = format!(
        "{JWT}{ROUTE}\n[[routes]]\nprefix = \"/api/\"\nupstreams = [\"127.0.0.1:9000\"]\n\n[[routes]]\nprefix = \"/API/\"\nupstreams = [\"127.0.0.1:9000\"]\n"
    );
    let m = invalid_key(&text, "routes[2].prefix");
    assert!(m.contains("ignoring case"), "{m}");
}

#[test]
fn path_params_are_off_unless_allowed() {
    let c = parse_ok(&format!("{JWT}{ROUTE}"));
    assert!(!c.routes[0].allow_path_params);
    let c = parse_ok(&format!("{JWT}{ROUTE}allow_path_params = true\n"));
    assert!(c.routes[0].allow_path_params);
}

#[test]
fn sockets_close_with_their_token_only_where_asked() {
    let c = parse_ok(&format!("{JWT}{ROUTE}"));
    assert!(!c.routes[0].close_on_token_expiry);
    assert_eq!(c.routes[0].revocation_check, None);
    let c = parse_ok(&format!("{JWT}{ROUTE}close_on_token_expiry = true\n"));
    assert!(c.routes[0].close_on_token_expiry);
    assert_eq!(c.routes[0].revocation_check, Some(Duration::from_secs(10)));
    let c = parse_ok(&format!(
        "{JWT}{ROUTE}close_on_token_expiry = true\nrevocation_check = \"500ms\"\nauth = \"optional\"\n"
    ));
    assert_eq!(
        c.routes[0].revocation_check,
        Some(Duration::from_millis(500))
    );

    let m = invalid_key(
        &format!("{JWT}{ROUTE}revocation_check = \"5s\"\n"),
        "routes[0].revocation_check",
    );
    assert!(m.contains("close_on_token_expiry = true"), "{m}");
    let m = invalid_key(
        &format!("{JWT}{ROUTE}close_on_token_expiry = true\nauth = \"public\"\n"),
        "routes[0].close_on_token_expiry",
    );
    assert!(m.contains("without a token"), "{m}");
    for bad in ["0s", "99ms", "2h"] {
        invalid_key(
            &format!("{JWT}{ROUTE}close_on_token_expiry = true\nrevocation_check = \"{bad}\"\n"),
            "routes[0].revocation_check",
        );
    }
}

#[test]
fn metrics_are_off_unless_a_listener_of_their_own_is_given() {
    assert_eq!(parse_ok(&minimal()).metrics.listen, None);
    let on = parse_ok(&format!(
        "{}\n[metrics]\nlisten = \"127.0.0.1:9091\"\n",
        minimal()
    ));
    assert_eq!(
        on.metrics.listen,
        Some("127.0.0.1:9091".parse().unwrap_or_else(|e| panic!("{e}")))
    );
    assert!(
        on.render()
            .contains("[metrics]\nlisten = \"127.0.0.1:9091\""),
        "{}",
        on.render()
    );

    let msg = invalid_key(
        &format!(
            "{}\n[server]\nlisten = \"0.0.0.0:8080\"\n[metrics]\nlisten = \"127.0.0.1:8080\"\n",
            minimal()
        ),
        "metrics.listen",
    );
    assert!(msg.contains("public listener (0.0.0.0:8080)"), "{msg}");
    let msg = invalid_key(
        &format!("{}\n[metrics]\nlisten = \"localhost\"\n", minimal()),
        "metrics.listen",
    );
    assert!(msg.contains("not an IP address with a port"), "{msg}");
    let msg = parse_err(&format!("{}\n[metrics]\nport = 9091\n", minimal()));
    assert_mentions(&msg, &["port"]);
}

#[test]
fn the_internal_listener_has_limits_of_its_own() {
    let metrics = |lines: &str| {
        format!(
            "{}\n[metrics]\nlisten = \"127.0.0.1:9091\"\n{lines}\n",
            minimal()
        )
    };
    let d = parse_ok(&metrics("")).metrics.limits;
    assert_eq!(d, InternalLimits::default());
    assert_eq!(
        (d.max_connections, d.max_connections_per_ip),
        (64, 16),
        "smaller than [server]'s"
    );
    assert_eq!(
        (d.header_timeout, d.idle_timeout),
        (Duration::from_secs(5), Duration::from_secs(30))
    );
    let set = parse_ok(&metrics(
        "max_connections = 8\nmax_connections_per_ip = 2\nidle_timeout = \"90s\"\nheader_timeout = \"2s\"",
    ));
    assert_eq!(
        set.metrics.limits,
        InternalLimits {
            idle_timeout: Duration::from_secs(90),
            header_timeout: Duration::from_secs(2),
            max_connections: 8,
            max_connections_per_ip: 2,
        }
    );
    let shown = set.render();
    for line in [
        "max_connections = 8",
        "max_connections_per_ip = 2",
        "idle_timeout = \"1m 30s\"",
        "header_timeout = \"2s\"",
    ] {
        assert!(shown.contains(line), "{line:?} not in:\n{shown}");
    }

    for (lines, key) in [
        ("max_connections = 0", "metrics.max_connections"),
        ("max_connections = -1", "metrics.max_connections"),
        ("max_connections = 10001", "metrics.max_connections"),
        (
            "max_connections_per_ip = 0",
            "metrics.max_connections_per_ip",
        ),
        ("idle_timeout = \"0s\"", "metrics.idle_timeout"),
        ("idle_timeout = \"2h\"", "metrics.idle_timeout"),
        ("header_timeout = \"0s\"", "metrics.header_timeout"),
        ("header_timeout = \"soon\"", "metrics.header_timeout"),
    ] {
        invalid_key(&metrics(lines), key);
    }
    let msg = parse_err(&metrics("max_connections = \"64\""));
    assert_mentions(&msg, &["max_connections"]);
}

#[test]
fn internal_limits_without_the_internal_listener_are_a_warning() {
    let c = parse_ok(&format!("{}\n[metrics]\nmax_connections = 8\n", minimal()));
    assert_eq!(c.metrics.listen, None);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("max_connections") && w.contains("without [metrics] listen")),
        "{:?}",
        c.warnings
    );
    assert!(parse_ok(&minimal()).warnings.is_empty());
}

#[test]
fn the_access_log_is_on_unless_turned_off() {
    assert!(parse_ok(&minimal()).log.access);
    let off = parse_ok(&format!("{}\n[log]\naccess = false\n", minimal()));
    assert!(!off.log.access);
    let msg = parse_err(&format!("{}\n[log]\naccess = \"yes\"\n", minimal()));
    assert!(msg.contains("access"), "{msg}");
}

#[test]
fn the_log_level_is_a_filter_rust_log_would_take() {
    assert_eq!(parse_ok(&minimal()).log.level, "info");
    let quiet = parse_ok(&format!(
        "{}\n[log]\nlevel = \"warn,wxgate::access=off\"\n",
        minimal()
    ));
    assert_eq!(quiet.log.level, "warn,wxgate::access=off");
    let msg = invalid_key(
        &format!("{}\n[log]\nlevel = \"wxgate=loud\"\n", minimal()),
        "log.level",
    );
    assert!(msg.contains("is not a log filter"), "{msg}");
}

#[test]
fn a_reload_names_the_sections_it_does_not_apply() {
    let redis = |url: &str, grace: &str| {
        let env = |name: &str| match name {
            "WXGATE_JWT_SECRET" => Some(SECRET.to_string()),
            "REDIS_URL" => Some(url.to_string()),
            _ => None,
        };
        let text = format!(
            "[server]\ngrace_period = \"{grace}\"\n{JWT}{ROUTE}\n[store]\nkind = \"redis\"\nurl_env = \"REDIS_URL\"\n"
        );
        Config::parse(&text, FILE, &env).unwrap_or_else(|e| panic!("{e}"))
    };
    let running = redis("redis://10.0.0.1:6379/0", "5s");
    assert!(running.restart_only_changes(&running.clone()).is_empty());
    // A new Redis URL is a secret (rendered `***`), and still seen as a change.
    assert_eq!(
        running.restart_only_changes(&redis("redis://10.0.0.2:6379/0", "5s")),
        ["[store]"]
    );
    assert_eq!(
        running.restart_only_changes(&redis("redis://10.0.0.1:6379/0", "9s")),
        ["[server]"]
    );
    let mut metrics = running.clone();
    metrics.metrics.listen = Some("127.0.0.1:9091".parse().unwrap_or_else(|e| panic!("{e}")));
    let mut routes = running.clone();
    routes.routes.clear();
    assert_eq!(running.restart_only_changes(&metrics), ["[metrics]"]);
    assert!(running.restart_only_changes(&routes).is_empty());
}

// --- [login.hook], route roles ---

/// A config with `[wechat]`, the given `[login.hook]` lines and routes.
fn with_hook(hook: &str, routes: &str) -> String {
    format!(
        r#"{JWT}
[wechat]
appid = "wx0123456789abcdef"
secret = "app-secret"

[login.hook]
{hook}

{routes}"#
    )
}

const HOOK: &str = r#"url = "http://127.0.0.1:5000/internal/wxgate"
secret = "hook-secret-0123456789""#;

#[test]
fn a_hook_gets_its_defaults() {
    let c = parse_ok(&with_hook(HOOK, ROUTE));
    let h = c.login.hook.as_ref().expect("hook");
    assert_eq!(h.url, "http://127.0.0.1:5000/internal/wxgate");
    assert_eq!(h.timeout, Duration::from_secs(2));
    assert!(!h.on_refresh);
    assert!(h.claims.is_empty());
    assert_eq!(h.max_claims_bytes, 1024);
    assert_eq!(c.headers.user_id.spelling, "X-User-ID");
    assert_eq!(c.headers.user_roles.spelling, "X-User-Roles");
    // The secret is never shown.
    let shown = c.render();
    assert!(!shown.contains("hook-secret"), "{shown}");
    assert!(shown.contains("[login.hook]"), "{shown}");
}

#[test]
fn hook_claims_become_identity_headers() {
    let c = parse_ok(&with_hook(
        &format!("{HOOK}\non_refresh = true\nclaims = {{ plan = \"X-User-Plan\", tenant_id = \"X-Tenant\" }}"),
        ROUTE,
    ));
    let names: Vec<(&str, &str)> = c
        .headers
        .claims
        .iter()
        .map(|c| (c.claim.as_str(), c.header.spelling.as_str()))
        .collect();
    assert_eq!(names, [("plan", "X-User-Plan"), ("tenant_id", "X-Tenant")]);
    assert!(c.login.hook.as_ref().is_some_and(|h| h.on_refresh));
    // `wxgate check` shows them as written.
    let shown = c.render();
    assert!(shown.contains("plan = \"X-User-Plan\""), "{shown}");
}

#[test]
fn a_bad_hook_is_refused_by_key() {
    invalid_key(
        &with_hook("secret = \"hook-secret-0123456789\"", ROUTE),
        "login.hook.url",
    );
    invalid_key(
        &with_hook(
            "url = \"ftp://x/y\"\nsecret = \"hook-secret-0123456789\"",
            ROUTE,
        ),
        "login.hook.url",
    );
    invalid_key(
        &with_hook("url = \"http://127.0.0.1:5000/h\"", ROUTE),
        "login.hook.secret_env",
    );
    let m = invalid_key(
        &with_hook(
            "url = \"http://127.0.0.1:5000/h\"\nsecret = \"short\"",
            ROUTE,
        ),
        "login.hook.secret_env",
    );
    assert!(m.contains("16 bytes"), "{m}");
    invalid_key(
        &with_hook(&format!("{HOOK}\ntimeout = \"31s\""), ROUTE),
        "login.hook.timeout",
    );
    invalid_key(
        &with_hook(&format!("{HOOK}\nclaims = {{ \"a-b\" = \"X-A\" }}"), ROUTE),
        "login.hook.claims.a-b",
    );
    invalid_key(
        &with_hook(
            &format!("{HOOK}\nclaims = {{ plan = \"Authorization\" }}"),
            ROUTE,
        ),
        "login.hook.claims.plan",
    );
    invalid_key(
        &with_hook(&format!("{HOOK}\nmax_claims_bytes = 0"), ROUTE),
        "login.hook.max_claims_bytes",
    );
    parse_error(&with_hook(&format!("{HOOK}\nsurprise = 1"), ROUTE));
}

#[test]
fn a_hook_needs_wechat() {
    let text = format!("{JWT}\n[login.hook]\n{HOOK}\n{ROUTE}");
    let m = invalid_key(&text, "login.hook");
    assert!(m.contains("[wechat]"), "{m}");
}

#[test]
fn a_claim_header_may_not_double_another_identity_header() {
    let m = invalid_key(
        &with_hook(
            &format!("{HOOK}\nclaims = {{ plan = \"x_user_id\" }}"),
            ROUTE,
        ),
        "headers",
    );
    assert!(m.contains("same header"), "{m}");
    invalid_key(
        &with_hook(
            &format!("{HOOK}\nclaims = {{ a = \"X-Plan\", b = \"X-Plan\" }}"),
            ROUTE,
        ),
        "headers",
    );
    invalid_key(&with_headers("user_roles = \"X-OpenID\""), "headers");
}

#[test]
fn route_roles_are_checked() {
    let route = |extra: &str| {
        format!(
            "[[routes]]\nprefix = \"/admin/\"\nupstreams = [\"127.0.0.1:9000\"]\n{extra}\n{ROUTE}"
        )
    };
    let c = parse_ok(&with_hook(
        HOOK,
        &route("roles = [\"admin\", \"ops:on-call\"]"),
    ));
    assert_eq!(c.routes[0].roles, ["admin", "ops:on-call"]);
    assert!(c.routes[1].roles.is_empty());
    assert!(!c.warnings.iter().any(|w| w.contains("roles")));
    invalid_key(&with_hook(HOOK, &route("roles = []")), "routes[0].roles");
    invalid_key(
        &with_hook(HOOK, &route("roles = [\"a b\"]")),
        "routes[0].roles",
    );
    let m = invalid_key(
        &with_hook(HOOK, &route("roles = [\"admin\"]\nauth = \"optional\"")),
        "routes[0].roles",
    );
    assert!(m.contains("required"), "{m}");
    invalid_key(
        &with_hook(HOOK, &route("roles = [\"admin\"]\nauth = \"public\"")),
        "routes[0].roles",
    );
    // Roles without a hook to grant them: allowed, but said.
    let c = parse_ok(&with_routes(&route("roles = [\"admin\"]")));
    assert!(
        c.warnings.iter().any(|w| w.contains("[login.hook]")),
        "{:?}",
        c.warnings
    );
}

// --- [[wechat.apps]], route apps ---

fn with_apps(apps: &str, routes: &str) -> String {
    format!("{JWT}\n[wechat]\ntimeout = \"2s\"\n{apps}\n{routes}")
}

const TWO_APPS: &str = r#"
[[wechat.apps]]
appid = "wxaaaaaaaaaaaaaaaa"
name = "shop"
secret = "secret-a"

[[wechat.apps]]
appid = "wxbbbbbbbbbbbbbbbb"
secret = "secret-b"
"#;

#[test]
fn several_mini_programs_parse() {
    let c = parse_ok(&with_apps(TWO_APPS, ROUTE));
    let w = c.wechat.as_ref().unwrap();
    let ids: Vec<&str> = w.apps.iter().map(|a| a.appid.as_str()).collect();
    assert_eq!(ids, ["wxaaaaaaaaaaaaaaaa", "wxbbbbbbbbbbbbbbbb"]);
    assert_eq!(w.apps[0].name.as_deref(), Some("shop"));
    assert_eq!(w.apps[1].secret.expose_str(), Some("secret-b"));
    assert_eq!(w.timeout, Duration::from_secs(2));
    let shown = c.render();
    assert!(
        !shown.contains("secret-a") && !shown.contains("secret-b"),
        "{shown}"
    );
}

#[test]
fn the_single_form_is_one_app() {
    let c = parse_ok(&format!(
        "{JWT}\n[wechat]\nappid = \"wx0123456789abcdef\"\nsecret = \"s\"\n{ROUTE}"
    ));
    let w = c.wechat.as_ref().unwrap();
    assert_eq!(w.apps.len(), 1);
    assert_eq!(w.apps[0].appid, "wx0123456789abcdef");
}

#[test]
fn bad_app_lists_are_refused_by_key() {
    let mixed = format!("{JWT}\n[wechat]\nappid = \"wx0123456789abcdef\"\nsecret = \"s\"\n[[wechat.apps]]\nappid = \"wxb\"\nsecret = \"s\"\n{ROUTE}");
    let m = invalid_key(&mixed, "wechat.apps");
    assert!(m.contains("not both"), "{m}");
    let twice = with_apps(
        "[[wechat.apps]]\nappid = \"wxa\"\nsecret = \"s\"\n[[wechat.apps]]\nappid = \"wxa\"\nsecret = \"t\"",
        ROUTE,
    );
    invalid_key(&twice, "wechat.apps[1].appid");
    let no_secret = with_apps(
        "[[wechat.apps]]\nappid = \"wxa\"\nsecret = \"s\"\n[[wechat.apps]]\nappid = \"wxb\"",
        ROUTE,
    );
    invalid_key(&no_secret, "wechat.apps[1].secret_env");
    let no_appid = with_apps("[[wechat.apps]]\nsecret = \"s\"", ROUTE);
    invalid_key(&no_appid, "wechat.apps[0].appid");
    invalid_key(
        &format!("{JWT}\n[wechat]\napps = []\n{ROUTE}"),
        "wechat.apps",
    );
    parse_error(&with_apps(
        "[[wechat.apps]]\nappid = \"wxa\"\nsecret = \"s\"\nsurprise = 1",
        ROUTE,
    ));
}

#[test]
fn route_apps_are_checked() {
    let route = |extra: &str| {
        format!(
            "[[routes]]\nprefix = \"/shop/\"\nupstreams = [\"127.0.0.1:9000\"]\n{extra}\n{ROUTE}"
        )
    };
    let c = parse_ok(&with_apps(
        TWO_APPS,
        &route("apps = [\"wxaaaaaaaaaaaaaaaa\"]"),
    ));
    assert_eq!(c.routes[0].apps, ["wxaaaaaaaaaaaaaaaa"]);
    let m = invalid_key(
        &with_apps(TWO_APPS, &route("apps = [\"wxcccccccccccccccc\"]")),
        "routes[0].apps",
    );
    assert!(m.contains("wxcccccccccccccccc"), "{m}");
    invalid_key(&with_apps(TWO_APPS, &route("apps = []")), "routes[0].apps");
    invalid_key(
        &with_apps(
            TWO_APPS,
            &route("apps = [\"wxaaaaaaaaaaaaaaaa\"]\nauth = \"public\""),
        ),
        "routes[0].apps",
    );
    // Without [wechat] (tokens minted elsewhere), any appid may be named.
    parse_ok(&with_routes(&route("apps = [\"wxanything\"]")));
}

// ---------------------------------------------------------------------------
// [jwt] algorithm, kid, previous keys
// ---------------------------------------------------------------------------

/// A fresh private key of `alg`, in a PEM file.
fn pem_key(alg: crate::token::Algorithm) -> (TempFile, crate::token::PrivateKey) {
    let key = crate::token::PrivateKey::generate(alg).unwrap();
    (TempFile::new("key.pem", &key.to_pem().unwrap()), key)
}

#[test]
fn an_asymmetric_signing_key_comes_from_a_pem_file_and_gets_its_thumbprint_as_kid() {
    use crate::token::Algorithm;
    for alg in [Algorithm::EdDSA, Algorithm::ES256] {
        let (file, key) = pem_key(alg);
        let c = parse_ok(&with_jwt(&format!(
            "algorithm = \"{alg}\"\nprivate_key_file = '{}'",
            file.path()
        )));
        assert_eq!(c.jwt.key.algorithm, alg);
        assert_eq!(
            c.jwt.key.kid.as_deref(),
            Some(key.public().thumbprint().as_str())
        );
        assert!(matches!(c.jwt.key.material, KeyMaterial::Private(_)));
        let text = c.render();
        assert!(text.contains("private_key = \"***\""), "{text}");
        assert!(!text.contains("BEGIN"), "{text}");
        // A kid of one's own.
        let c = parse_ok(&with_jwt(&format!(
            "algorithm = \"{alg}\"\nprivate_key_file = '{}'\nkid = \"2026-11\"",
            file.path()
        )));
        assert_eq!(c.jwt.key.kid.as_deref(), Some("2026-11"));
    }
}

#[test]
fn a_key_of_the_wrong_kind_is_refused_naming_it() {
    let (ed, _) = pem_key(crate::token::Algorithm::EdDSA);
    // A PEM key without its algorithm: HS256 wants a secret.
    let m = invalid_key(
        &with_jwt(&format!("private_key_file = '{}'", ed.path())),
        "jwt.algorithm",
    );
    assert!(m.contains("EdDSA"), "{m}");
    // A secret for EdDSA.
    let m = invalid_key(
        &with_jwt("algorithm = \"EdDSA\"\nsecret_env = \"WXGATE_JWT_SECRET\""),
        "jwt.algorithm",
    );
    assert!(m.contains("PEM"), "{m}");
    // An Ed25519 key read as ES256.
    let m = invalid_key(
        &with_jwt(&format!(
            "algorithm = \"ES256\"\nprivate_key_file = '{}'",
            ed.path()
        )),
        "jwt.private_key",
    );
    assert!(m.contains("P-256"), "{m}");
    // No key at all.
    let m = invalid_key(&with_jwt("algorithm = \"EdDSA\""), "jwt.private_key_file");
    assert!(m.contains("keygen"), "{m}");
    // Not PEM.
    let junk = TempFile::new("junk.pem", "not a key");
    let m = invalid_key(
        &with_jwt(&format!(
            "algorithm = \"EdDSA\"\nprivate_key_file = '{}'",
            junk.path()
        )),
        "jwt.private_key_file",
    );
    assert!(m.contains("not PEM"), "{m}");
    for bad in ["HS512", "RS256", "none", "eddsa"] {
        let m = invalid_key(
            &with_jwt(&format!(
                "algorithm = \"{bad}\"\nsecret_env = \"WXGATE_JWT_SECRET\""
            )),
            "jwt.algorithm",
        );
        assert!(m.contains("HS256"), "{m}");
    }
    let m = invalid_key(
        &with_jwt("secret_env = \"WXGATE_JWT_SECRET\"\nkid = \"../../etc\""),
        "jwt.kid",
    );
    assert!(m.contains("A-Z"), "{m}");
}

#[test]
fn previous_keys_pin_their_algorithm_and_need_distinct_kids() {
    use crate::token::Algorithm;
    let (ed, ed_key) = pem_key(Algorithm::EdDSA);
    let (ec, ec_key) = pem_key(Algorithm::ES256);
    let public = TempFile::new("pub.pem", &ec_key.public().to_pem().unwrap());
    let text = with_jwt(&format!(
        "algorithm = \"EdDSA\"\nprivate_key_file = '{}'\n\n\
         [[jwt.previous_keys]]\nalgorithm = \"ES256\"\npublic_key_file = '{}'\n\n\
         [[jwt.previous_keys]]\nalgorithm = \"ES256\"\nkid = \"old-ec\"\nprivate_key_file = '{}'\n\n\
         [[jwt.previous_keys]]\nalgorithm = \"HS256\"\nkid = \"hs-2025\"\nsecret_env = \"WXGATE_JWT_SECRET\"",
        ed.path(),
        public.path(),
        ec.path()
    ));
    // `with_jwt` puts the route after the previous keys: still one route.
    let c = parse_ok(&text);
    assert_eq!(c.jwt.key.kid, Some(ed_key.public().thumbprint()));
    let p = &c.jwt.previous_keys;
    assert_eq!(p.len(), 3);
    assert_eq!(p[0].kid, Some(ec_key.public().thumbprint()));
    assert!(
        matches!(&p[1].material, KeyMaterial::Public(k) if *k == ec_key.public()),
        "only the public half is kept"
    );
    assert_eq!(p[2].kid.as_deref(), Some("hs-2025"));
    let rendered = c.render();
    assert!(!rendered.contains(SECRET), "{rendered}");

    let m = invalid_key(
        &with_jwt(&format!(
            "secret_env = \"WXGATE_JWT_SECRET\"\n\n[[jwt.previous_keys]]\npublic_key_file = '{}'",
            public.path()
        )),
        "jwt.previous_keys[0].algorithm",
    );
    assert!(m.contains("required"), "{m}");
    let m = invalid_key(
        &with_jwt("secret_env = \"WXGATE_JWT_SECRET\"\n\n[[jwt.previous_keys]]\nalgorithm = \"HS256\"\nsecret_env = \"WXGATE_JWT_SECRET\""),
        "jwt.previous_keys[0].kid",
    );
    assert!(m.contains("required"), "{m}");
    let m = invalid_key(
        &with_jwt(&format!(
            "secret_env = \"WXGATE_JWT_SECRET\"\nkid = \"k\"\n\n[[jwt.previous_keys]]\nalgorithm = \"ES256\"\nkid = \"k\"\npublic_key_file = '{}'",
            public.path()
        )),
        "jwt.previous_keys[0].kid",
    );
    assert!(m.contains("another key"), "{m}");
}

#[test]
fn a_broken_line_is_told_by_key_line_and_kind_never_by_its_text() {
    let secret = "hunter2-Passw0rd";
    let cases = [
        (
            format!(
                "{}\n[store]\nkind = \"redis\"\nurl = \"redis://:{secret}@x:6379\n",
                minimal()
            ),
            &["store.url", "not valid TOML"][..],
        ),
        (
            format!("{}\n[store]\nsecert = \"{secret}\"\n", minimal()),
            &["store.secert", "unknown field `secert`"][..],
        ),
        (
            format!("{}\n[store]\non_error = \"{secret}\"\n", minimal()),
            &[
                "store.on_error",
                "not one of the values allowed",
                "fail_open",
            ][..],
        ),
        (
            format!("{}\n[login]\nmax_body_bytes = \"{secret}\"\n", minimal()),
            &["login.max_body_bytes", "wrong type"][..],
        ),
        (
            format!("{}\n[store]\nurl = {secret}\n", minimal()),
            &["store.url"][..],
        ),
        (format!("{secret} \n{}", minimal()), &["line 1, column"][..]),
    ];
    for (text, named) in &cases {
        let m = parse_error(text);
        assert!(!m.contains(secret), "quotes the line: {m}");
        assert!(!m.contains("Passw0rd"), "quotes the line: {m}");
        assert_mentions(&m, named);
        assert!(m.contains("line "), "{m}");
    }
}

#[test]
fn phone_and_decrypt_limits_are_on_per_user_by_default_and_can_be_set_or_turned_off() {
    let c = parse_ok(&minimal());
    let limit = |r: Option<Rate>| r.map(|r| (r.limit, r.window.as_secs()));
    assert_eq!(limit(c.login.rate_limit_phone_per_user), Some((10, 60)));
    assert_eq!(limit(c.login.rate_limit_decrypt_per_user), Some((60, 60)));
    assert_eq!(c.login.rate_limit_phone_global, None);
    assert_eq!(c.login.rate_limit_decrypt_global, None);
    let text = format!(
        "{}\n[login]\nrate_limit_phone_per_user = \"off\"\nrate_limit_phone_global = \"100/s\"\nrate_limit_decrypt_global = \"5/h\"\n",
        minimal()
    );
    let c = parse_ok(&text);
    assert_eq!(c.login.rate_limit_phone_per_user, None);
    assert_eq!(limit(c.login.rate_limit_phone_global), Some((100, 1)));
    assert_eq!(limit(c.login.rate_limit_decrypt_global), Some((5, 3600)));
    for key in [
        "rate_limit_phone_per_user",
        "rate_limit_phone_global",
        "rate_limit_decrypt_per_user",
        "rate_limit_decrypt_global",
    ] {
        let text = format!("{}\n[login]\n{key} = \"lots\"\n", minimal());
        invalid_key(&text, &format!("login.{key}"));
    }
}

fn redis_of(c: &Config) -> &crate::store::RedisConfig {
    match &c.store.kind {
        StoreKind::Redis { redis } => redis,
        other => panic!("not redis: {other:?}"),
    }
}

#[test]
fn sentinel_topology_is_read_with_its_passwords_from_the_environment() {
    let text = format!(
        "{}\n[store]\nkind = \"redis\"\nmax_staleness = \"2s\"\n[store.sentinel]\nmaster_name = \"wx\"\nnodes = [\"10.0.0.1:26379\", \"sentinel-2:26379\"]\npassword_env = \"WXGATE_JWT_SECRET\"\nsentinel_password_env = \"WXGATE_JWT_SECRET\"\nusername = \"gw\"\n",
        minimal()
    );
    let c = parse_ok(&text);
    let r = redis_of(&c);
    assert_eq!(r.max_staleness, Duration::from_secs(2));
    assert_eq!(
        r.replica_acks, 1,
        "a replicated topology waits for one replica by default"
    );
    match &r.topology {
        Topology::Sentinel {
            master_name,
            nodes,
            auth,
            sentinel_password,
            db,
        } => {
            assert_eq!(master_name, "wx");
            assert_eq!(nodes.len(), 2);
            assert_eq!(auth.username.as_deref(), Some("gw"));
            assert_eq!(
                auth.password.as_ref().map(|p| p.expose()),
                Some(SECRET.as_bytes())
            );
            assert!(sentinel_password.is_some());
            assert_eq!(*db, 0);
        }
        other => panic!("{other:?}"),
    }
    let shown = c.render();
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("sentinel"), "{shown}");
}

#[test]
fn cluster_topology_is_read() {
    let text = format!(
        "{}\n[store]\nkind = \"redis\"\nreplica_acks = 2\nmax_revocations = 5000\n[store.cluster]\nnodes = [\"10.0.0.1:6379\"]\ntls = true\n",
        minimal()
    );
    let c = parse_ok(&text);
    let r = redis_of(&c);
    assert_eq!((r.replica_acks, r.max_revocations), (2, 5000));
    assert!(
        matches!(&r.topology, Topology::Cluster { nodes, auth } if nodes.len() == 1 && auth.tls)
    );
    // Standalone keeps today's behaviour: no replica to wait for.
    let text = format!(
        "{}\n[store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n",
        minimal()
    );
    assert_eq!(redis_of(&parse_ok(&text)).replica_acks, 0);
}

#[test]
fn topology_errors_name_the_key() {
    let base = |store: &str| format!("{}\n[store]\nkind = \"redis\"\n{store}", minimal());
    let cases = [
        (
            "[store.sentinel]\nmaster_name = \"m\"\nnodes = [\"a:1\"]\n[store.cluster]\nnodes = [\"a:1\"]\n",
            "store.cluster",
        ),
        (
            "url = \"redis://a:1\"\n[store.cluster]\nnodes = [\"a:1\"]\n",
            "store.url",
        ),
        ("[store.cluster]\nnodes = []\n", "store.cluster.nodes"),
        ("[store.cluster]\nnodes = [\"nohost\"]\n", "store.cluster.nodes"),
        ("[store.cluster]\nnodes = [\"redis://a:1\"]\n", "store.cluster.nodes"),
        ("[store.sentinel]\nnodes = [\"a:1\"]\n", "store.sentinel.master_name"),
        (
            "[store.sentinel]\nmaster_name = \"m\"\nnodes = [\"a:1\"]\npassword_env = \"NOPE\"\n",
            "store.sentinel.password_env",
        ),
        (
            "max_staleness = \"10ms\"\n[store.cluster]\nnodes = [\"a:1\"]\n",
            "store.max_staleness",
        ),
        (
            "replica_acks = 6\n[store.cluster]\nnodes = [\"a:1\"]\n",
            "store.replica_acks",
        ),
        (
            "key_prefix = \"a{b}:\"\n[store.cluster]\nnodes = [\"a:1\"]\n",
            "store.key_prefix",
        ),
    ];
    for (store, key) in cases {
        invalid_key(&base(store), key);
    }
    // Redis-only keys are refused with the memory store.
    invalid_key(
        &format!("{}\n[store]\nmax_staleness = \"1s\"\n", minimal()),
        "store.max_staleness",
    );
}

// --- [sessions] ---

fn with_sessions(lines: &str) -> String {
    with_apps(&format!("{TWO_APPS}\n{lines}"), ROUTE)
}

#[test]
fn sessions_default_to_todays_behaviour() {
    let c = parse_ok(&with_sessions(""));
    let p = c.sessions.of(Some("wxaaaaaaaaaaaaaaaa"));
    assert_eq!(p, &crate::sessions::policy::SessionPolicy::default());
    assert!(!p.bounds_logins());
}

#[test]
fn sessions_per_app_override_the_defaults() {
    let c = parse_ok(&with_sessions(
        "[sessions]\nmax_per_user = 3\nidle_timeout = \"7d\"\nmax_lifetime = \"90d\"\n\n[sessions.apps.wxbbbbbbbbbbbbbbbb]\nmax_per_user = 1\non_limit = \"refuse_new\"\none_per_platform = true\n",
    ));
    let a = c.sessions.of(Some("wxaaaaaaaaaaaaaaaa"));
    assert_eq!(a.max_per_user, Some(3));
    assert_eq!(a.on_limit, crate::sessions::policy::OnLimit::EndOldest);
    assert_eq!(a.idle_timeout, Some(Duration::from_secs(7 * 86400)));
    let b = c.sessions.of(Some("wxbbbbbbbbbbbbbbbb"));
    assert_eq!(b.max_per_user, Some(1));
    assert_eq!(b.on_limit, crate::sessions::policy::OnLimit::RefuseNew);
    assert!(b.one_per_platform);
    // What the app does not set, it takes from [sessions].
    assert_eq!(b.max_lifetime, Some(Duration::from_secs(90 * 86400)));
    assert_eq!(b.idle_timeout, a.idle_timeout);
}

#[test]
fn sessions_refuse_what_cannot_be_meant() {
    for (lines, key) in [
        ("[sessions]\nmax_per_user = 0", "sessions.max_per_user"),
        ("[sessions]\nmax_per_user = 101", "sessions.max_per_user"),
        ("[sessions]\non_limit = \"kick\"", "sessions.on_limit"),
        (
            "[sessions]\nidle_timeout = \"10s\"",
            "sessions.idle_timeout",
        ),
        // Not longer than the access token's lifetime (2h by default).
        ("[sessions]\nidle_timeout = \"2h\"", "sessions.idle_timeout"),
        (
            "[sessions]\nmax_lifetime = \"soon\"",
            "sessions.max_lifetime",
        ),
        (
            "[sessions.apps.wxcccccccccccccccc]\nmax_per_user = 1",
            "sessions.apps.wxcccccccccccccccc",
        ),
        (
            "[sessions.apps.wxaaaaaaaaaaaaaaaa]\nmax_per_user = -1",
            "sessions.apps.wxaaaaaaaaaaaaaaaa.max_per_user",
        ),
    ] {
        invalid_key(&with_sessions(lines), key);
    }
    assert!(parse_error(&with_sessions("[sessions]\nmax_devices = 1")).contains("max_devices"));
    // An idle timeout the refresh token outlives anyway is pointless: said.
    let c = parse_ok(&with_sessions("[sessions]\nidle_timeout = \"60d\""));
    assert!(
        c.warnings.iter().any(|w| w.contains("idle_timeout")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn audit_defaults_and_the_webhook_are_checked_by_key() {
    let base = format!("{JWT}{ROUTE}");
    let c = parse_ok(&base);
    assert!(!c.audit.openid);
    assert!(c.audit.webhook.is_none());
    let hook = "[audit.webhook]\nurl = \"http://127.0.0.1:5000/internal/wxgate/audit\"\nsecret = \"audit-secret-0123456789\"";
    let c = parse_ok(&format!("{base}\n[audit]\nopenid = true\n{hook}\n"));
    assert!(c.audit.openid);
    let w = c.audit.webhook.as_ref().unwrap();
    assert_eq!(
        (w.timeout, w.queue, w.retries, w.max_batch),
        (std::time::Duration::from_secs(5), 10_000, 8, 100)
    );
    // `wxgate check` never shows the secret.
    assert!(!c.render().contains("audit-secret-0123456789"));
    for (lines, key) in [
        (
            "[audit.webhook]\nsecret = \"audit-secret-0123456789\"",
            "audit.webhook.url",
        ),
        (
            "[audit.webhook]\nurl = \"ftp://x/y\"\nsecret = \"audit-secret-0123456789\"",
            "audit.webhook.url",
        ),
        (
            "[audit.webhook]\nurl = \"http://x/y\"",
            "audit.webhook.secret_env",
        ),
        (
            "[audit.webhook]\nurl = \"http://x/y\"\nsecret = \"short\"",
            "audit.webhook.secret_env",
        ),
        (
            &format!("{hook}\ntimeout = \"31s\""),
            "audit.webhook.timeout",
        ),
        (&format!("{hook}\nqueue = 0"), "audit.webhook.queue"),
        (&format!("{hook}\nretries = 21"), "audit.webhook.retries"),
        (&format!("{hook}\nretries = -1"), "audit.webhook.retries"),
        (
            &format!("{hook}\nmax_batch = 1001"),
            "audit.webhook.max_batch",
        ),
    ] {
        invalid_key(&format!("{base}\n{lines}\n"), key);
    }
    parse_error(&format!("{base}\n[audit]\nopen_id = true\n"));
}

#[test]
fn an_audit_webhook_sharing_the_hooks_secret_is_warned_of() {
    let webhook = |secret: &str| {
        format!(
            "{}\n[audit.webhook]\nurl = \"http://127.0.0.1:5000/audit\"\nsecret = \"{secret}\"\n",
            with_hook(HOOK, ROUTE)
        )
    };
    let shared = parse_ok(&webhook("hook-secret-0123456789"));
    assert!(
        shared.warnings.iter().any(|w| w.contains("share a secret")),
        "{:?}",
        shared.warnings
    );
    let own = parse_ok(&webhook("audit-secret-0123456789"));
    assert!(
        !own.warnings.iter().any(|w| w.contains("share a secret")),
        "{:?}",
        own.warnings
    );
}

mod server_side;
mod telemetry;
