//! The `wxgate` binary: `--version`, `--help`, `keygen`, `check`, `token issue`,
//! `token verify` and `run` end to end (start, serve, SIGTERM, log hygiene).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;

use support::{ChildGuard, TempDir, Upstream};

/// The key the CLI tests give the child through `WXGATE_JWT_SECRET`.
const SECRET: &str = "cli-test-secret-0123456789-abcdefghijkl";
/// Another valid key, for tokens that must not verify under [`SECRET`].
const OTHER_SECRET: &str = "another-cli-secret-9876543210-zyxwvutsr";
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml.example");

/// The binary with a clean environment for the variables it reads.
fn wxgate() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wxgate"));
    cmd.env_remove("WXGATE_CONFIG")
        .env_remove("WXGATE_JWT_SECRET")
        .env_remove("WXGATE_WECHAT_SECRET")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

/// The binary with `WXGATE_JWT_SECRET` = [`SECRET`].
fn wxgate_with_secret() -> Command {
    let mut cmd = wxgate();
    cmd.env("WXGATE_JWT_SECRET", SECRET)
        .env("WXGATE_WECHAT_SECRET", "wechat-app-secret-for-tests");
    cmd
}

#[derive(Debug)]
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn output(cmd: &mut Command) -> Out {
    let out = cmd.output().expect("run wxgate");
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn run(args: &[&str]) -> Out {
    output(wxgate().args(args))
}

fn run_with_secret(args: &[&str]) -> Out {
    output(wxgate_with_secret().args(args))
}

/// A small valid config: the secret from `WXGATE_JWT_SECRET`, one route.
fn small_config() -> String {
    format!(
        "{}\n[[routes]]\nprefix = \"/\"\nupstreams = [\"127.0.0.1:9\"]\n",
        support::base_config()
    )
}

// ---------------------------------------------------------------------------
// --version, --help, keygen
// ---------------------------------------------------------------------------

#[test]
fn version_prints_name_and_crate_version() {
    let out = run(&["--version"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout.trim_end(),
        format!("wxgate {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(out.stdout.trim_end(), "wxgate 0.1.0");
}

#[test]
fn help_on_every_command_exits_0_and_lists_its_options() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--help"],
            &[
                "run",
                "check",
                "token",
                "keygen",
                "--log-format",
                "--version",
            ],
        ),
        (&["run", "--help"], &["--config", "-c", "WXGATE_CONFIG"]),
        (&["check", "--help"], &["--config", "-c", "WXGATE_CONFIG"]),
        (&["token", "--help"], &["issue", "verify"]),
        (
            &["token", "issue", "--help"],
            &["--config", "--openid", "--unionid", "--appid", "--ttl"],
        ),
        (
            &["token", "verify", "--help"],
            &["--config", "<TOKEN>", "Bearer"],
        ),
        (
            &["keygen", "--help"],
            &["Usage: wxgate keygen", "32-byte", "--alg", "--out", "EdDSA"],
        ),
    ];
    for (args, words) in cases {
        let out = run(args);
        assert_eq!(out.code, Some(0), "{args:?}: {out:?}");
        for w in *words {
            assert!(
                out.stdout.contains(w),
                "`wxgate {}` does not mention {w}:\n{}",
                args.join(" "),
                out.stdout
            );
        }
    }
}

#[test]
fn missing_config_argument_is_a_usage_error() {
    let out = run(&["check"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("--config"), "{}", out.stderr);
}

#[test]
fn keygen_prints_a_fresh_32_byte_base64_key() {
    let decode = |out: &Out| {
        assert_eq!(out.code, Some(0), "{out:?}");
        assert!(out.stdout.ends_with('\n'));
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "{:?}", out.stdout);
        let key = base64::engine::general_purpose::STANDARD
            .decode(lines[0])
            .unwrap_or_else(|e| panic!("not standard base64 ({e}): {:?}", lines[0]));
        assert_eq!(key.len(), 32);
        lines[0].to_string()
    };
    let a = decode(&run(&["keygen"]));
    let b = decode(&run(&["keygen"]));
    assert_ne!(a, b, "two keygen runs must differ");
}

#[test]
fn keygen_writes_a_key_pair_that_signs_and_verifies_tokens() {
    let dir = TempDir::new("cli-keygen");
    for alg in ["EdDSA", "ES256"] {
        let key = format!("{}/jwt-{alg}.pem", dir.path().display());
        let out = run(&["keygen", "--alg", alg, "--out", &key]);
        assert_eq!(out.code, Some(0), "{out:?}");
        let kid = out.stdout.trim().to_string();
        assert_eq!(kid.len(), 43, "the kid is a thumbprint: {out:?}");
        assert!(out.stderr.contains("private_key_file"), "{}", out.stderr);
        let private = std::fs::read_to_string(&key).unwrap();
        assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(!out.stdout.contains("PRIVATE") && !out.stderr.contains(&private[30..60]));
        let public = format!("{}/jwt-{alg}.pub.pem", dir.path().display());
        assert!(std::fs::read_to_string(&public)
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----"));
        // Never overwritten.
        let again = run(&["keygen", "--alg", alg, "--out", &key]);
        assert_eq!(again.code, Some(1), "{again:?}");
        assert!(again.stderr.contains("already exists"), "{again:?}");
        assert_eq!(std::fs::read_to_string(&key).unwrap(), private);

        // A config on that key: check, issue, verify.
        let config = dir.write(
            &format!("{alg}.toml"),
            &format!(
                "[jwt]\nalgorithm = \"{alg}\"\nprivate_key_file = \"{key}\"\naudience = \"cli\"\n\n[[routes]]\nprefix = \"/\"\nupstreams = [\"127.0.0.1:9\"]\n"
            ),
        );
        let checked = run(&["check", "--config", config.to_str().unwrap()]);
        assert_eq!(checked.code, Some(0), "{checked:?}");
        assert!(checked.stdout.contains(&kid), "{}", checked.stdout);
        assert!(
            checked.stdout.contains("private_key = \"***\""),
            "{}",
            checked.stdout
        );
        let token = issue(&config, "unused", &["--openid", "o-cli"]);
        let header: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], alg);
        assert_eq!(header["kid"], kid.as_str());
        let out = verify(&config, &token);
        assert_eq!(out.code, Some(0), "{out:?}");
        assert!(out.stdout.contains("o-cli"), "{}", out.stdout);
    }
    let out = run(&["keygen", "--alg", "RS256"]);
    assert_eq!(out.code, Some(2), "{out:?}");
}

// ---------------------------------------------------------------------------
// check
// ---------------------------------------------------------------------------

#[test]
fn a_config_that_does_not_parse_is_told_without_its_text() {
    // A broken line may hold a secret: `check` and `run` name the key, line
    // and column and what went wrong, never the line itself.
    let dir = support::TempDir::new("cli-broken");
    let secret = "S3cretRedisPassw0rd";
    let broken = [
        (
            format!(
                "{}\n[store]\nkind = \"redis\"\nurl = \"redis://:{secret}@127.0.0.1:6379/0\n",
                small_config()
            ),
            "store.url",
        ),
        (
            format!("{}\n[store]\nsecert = \"{secret}\"\n", small_config()),
            "secert",
        ),
        (
            format!("{}\n[store]\non_error = \"{secret}\"\n", small_config()),
            "fail_closed",
        ),
        (
            format!(
                "{}\n[login]\nmax_body_bytes = \"{secret}\"\n",
                small_config()
            ),
            "login.max_body_bytes",
        ),
    ];
    for (i, (text, named)) in broken.iter().enumerate() {
        let config = dir.write(&format!("broken-{i}.toml"), text);
        for verb in ["check", "run"] {
            let out = run_with_secret(&[verb, "--config", config.to_str().unwrap()]);
            assert_ne!(out.code, Some(0), "{verb} {i}: {out:?}");
            assert!(
                !out.stderr.contains(secret) && !out.stdout.contains(secret),
                "{verb} {i} quotes the secret: {out:?}"
            );
            assert!(out.stderr.contains(named), "{verb} {i}: {}", out.stderr);
            assert!(out.stderr.contains("line "), "{verb} {i}: {}", out.stderr);
        }
    }
}

#[test]
fn check_example_config_prints_effective_config_with_secret_masked() {
    let out = run_with_secret(&["check", "--config", EXAMPLE]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("secret = \"***\""), "{}", out.stdout);
    assert!(
        !out.stdout.contains(SECRET),
        "secret leaked: {}",
        out.stdout
    );
    assert!(
        !out.stderr.contains(SECRET),
        "secret leaked: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("warning:"), "{}", out.stderr);
    // The effective config is TOML with the example's values.
    let v: toml::Value = toml::from_str(&out.stdout).expect("check prints TOML");
    assert_eq!(v["jwt"]["audience"].as_str(), Some("my-miniprogram"));
    assert_eq!(v["jwt"]["secret"].as_str(), Some("***"));
    assert_eq!(v["server"]["listen"].as_str(), Some("0.0.0.0:8080"));
    assert_eq!(v["routes"].as_array().map(Vec::len), Some(2));

    // Same result with -c and with WXGATE_CONFIG.
    let short = run_with_secret(&["check", "-c", EXAMPLE]);
    assert_eq!(short.code, Some(0), "{short:?}");
    assert_eq!(short.stdout, out.stdout);
    let env = output(
        wxgate_with_secret()
            .env("WXGATE_CONFIG", EXAMPLE)
            .arg("check"),
    );
    assert_eq!(env.code, Some(0), "{env:?}");
    assert_eq!(env.stdout, out.stdout);
}

#[test]
fn check_flag_wins_over_wxgate_config_env() {
    let dir = TempDir::new("cli");
    let bad = dir.write("bad.toml", "[server]\nlistn = \"x\"\n");
    let out = output(
        wxgate_with_secret()
            .env("WXGATE_CONFIG", &bad)
            .args(["check", "-c", EXAMPLE]),
    );
    assert_eq!(out.code, Some(0), "{out:?}");
}

#[test]
fn check_bad_configs_exit_2_naming_the_key() {
    let dir = TempDir::new("cli");

    // Unknown key.
    let f = dir.write("unknown.toml", "[server]\nlistn = \"x\"\n");
    let out = run_with_secret(&["check", "--config", f.to_str().unwrap()]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("listn"), "{}", out.stderr);
    assert!(out.stderr.contains("unknown.toml"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);

    // A secret shorter than 32 bytes.
    let short = "only-20-bytes-secret";
    let f = dir.write("short.toml", &small_config());
    let out = output(wxgate().env("WXGATE_JWT_SECRET", short).args([
        "check",
        "--config",
        f.to_str().unwrap(),
    ]));
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("jwt.secret"), "{}", out.stderr);
    assert!(!out.stderr.contains(short), "secret leaked: {}", out.stderr);

    // The named environment variable is not set.
    let var = "WXGATE_TEST_UNSET_SECRET_VAR";
    let f = dir.write(
        "noenv.toml",
        &small_config().replace("\"WXGATE_JWT_SECRET\"", &format!("\"{var}\"")),
    );
    let out = output(wxgate_with_secret().env_remove(var).args([
        "check",
        "--config",
        f.to_str().unwrap(),
    ]));
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains(var), "{}", out.stderr);
    assert!(out.stderr.contains("jwt.secret_env"), "{}", out.stderr);

    // The config file does not exist.
    let missing = dir.path().join("does-not-exist.toml");
    let out = run_with_secret(&["check", "--config", missing.to_str().unwrap()]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains(missing.to_str().unwrap()),
        "{}",
        out.stderr
    );

    // A secret_file that does not exist.
    let missing_secret = dir.path().join("no-secret-file");
    let f = dir.write(
        "nosecretfile.toml",
        &small_config().replace(
            "secret_env = \"WXGATE_JWT_SECRET\"",
            &format!("secret_file = '{}'", missing_secret.display()),
        ),
    );
    let out = run_with_secret(&["check", "--config", f.to_str().unwrap()]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("jwt.secret_file"), "{}", out.stderr);
    assert!(
        out.stderr.contains(missing_secret.to_str().unwrap()),
        "{}",
        out.stderr
    );

    // A bad duration.
    let f = dir.write(
        "duration.toml",
        &small_config().replace("grace_period = \"1s\"", "grace_period = \"soon\""),
    );
    let out = run_with_secret(&["check", "--config", f.to_str().unwrap()]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("server.grace_period"), "{}", out.stderr);
}

#[test]
fn check_inline_secret_warns_and_masks_it() {
    let dir = TempDir::new("cli");
    let inline = "inline-secret-inline-secret-0123456789";
    let f = dir.write(
        "inline.toml",
        &small_config().replace(
            "secret_env = \"WXGATE_JWT_SECRET\"",
            &format!("secret = \"{inline}\""),
        ),
    );
    let out = run(&["check", "--config", f.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let warning = out
        .stderr
        .lines()
        .find(|l| l.starts_with("warning:"))
        .unwrap_or_else(|| panic!("no warning: {}", out.stderr));
    assert!(warning.contains("jwt.secret"), "{warning}");
    assert!(out.stdout.contains("secret = \"***\""), "{}", out.stdout);
    assert!(
        !out.stdout.contains(inline),
        "secret leaked: {}",
        out.stdout
    );
    assert!(
        !out.stderr.contains(inline),
        "secret leaked: {}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------
// token issue / verify
// ---------------------------------------------------------------------------

fn issue(config: &Path, secret: &str, extra: &[&str]) -> String {
    let mut args = vec!["token", "issue", "--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = output(wxgate().env("WXGATE_JWT_SECRET", secret).args(&args));
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{:?}", out.stdout);
    let token = lines[0].to_string();
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token}");
    assert!(
        !out.stderr.contains(secret),
        "secret leaked: {}",
        out.stderr
    );
    token
}

fn verify(config: &Path, token: &str) -> Out {
    run_with_secret(&[
        "token",
        "verify",
        "--config",
        config.to_str().unwrap(),
        token,
    ])
}

#[test]
fn token_issue_takes_the_hooks_uid_and_roles() {
    let dir = TempDir::new("cli");
    let f = dir.write("c.toml", &small_config());
    let token = issue(
        &f,
        SECRET,
        &[
            "--openid", "o1", "--uid", "u-7", "--role", "admin", "--role", "ops",
        ],
    );
    let out = verify(&f, &token);
    assert_eq!(out.code, Some(0), "{out:?}");
    let v: Value = serde_json::from_str(&out.stdout).expect("verify prints JSON");
    assert_eq!(v["uid"], "u-7", "{v}");
    assert_eq!(v["roles"], serde_json::json!(["admin", "ops"]), "{v}");
    // A role that could not travel in X-User-Roles is refused before anything is issued.
    let out = output(wxgate().env("WXGATE_JWT_SECRET", SECRET).args([
        "token",
        "issue",
        "--config",
        f.to_str().unwrap(),
        "--openid",
        "o1",
        "--role",
        "a,b",
    ]));
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("role"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn token_issue_then_verify_roundtrip() {
    let dir = TempDir::new("cli");
    let f = dir.write("c.toml", &small_config());
    let token = issue(
        &f,
        SECRET,
        &["--openid", "o123", "--unionid", "u9", "--ttl", "5m"],
    );
    let out = verify(&f, &token);
    assert_eq!(out.code, Some(0), "{out:?}");
    let v: Value = serde_json::from_str(&out.stdout).expect("verify prints JSON");
    assert_eq!(v["sub"], "o123", "{v}");
    assert_eq!(v["unionid"], "u9", "{v}");
    let iat = v["iat"].as_i64().expect("iat");
    let exp = v["exp"].as_i64().expect("exp");
    assert_eq!(exp - iat, 300, "{v}");
    let now = wxgate::clock::unix_now() as i64;
    assert!((iat - now).abs() < 60, "iat {iat} is not now ({now})");

    // Default ttl comes from [jwt] ttl (2h by default), and -c works here too.
    let token = issue(&f, SECRET, &["--openid", "o-default"]);
    let out = run_with_secret(&["token", "verify", "-c", f.to_str().unwrap(), &token]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["sub"], "o-default");
    assert_eq!(
        v["exp"].as_i64().unwrap() - v["iat"].as_i64().unwrap(),
        7200
    );
    assert!(v["unionid"].is_null(), "{v}");
}

#[test]
fn token_verify_accepts_a_bearer_prefix() {
    let dir = TempDir::new("cli");
    let f = dir.write("c.toml", &small_config());
    let token = issue(&f, SECRET, &["--openid", "o-bearer"]);
    let out = verify(&f, &format!("Bearer {token}"));
    assert_eq!(out.code, Some(0), "{out:?}");
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["sub"], "o-bearer");
}

#[test]
fn token_verify_refuses_a_tampered_signature() {
    let dir = TempDir::new("cli");
    let f = dir.write("c.toml", &small_config());
    let token = issue(&f, SECRET, &["--openid", "o-tamper"]);
    // Flip the first character of the signature (the last one may only carry
    // padding bits).
    let sig_start = token.rfind('.').unwrap() + 1;
    let mut bytes = token.clone().into_bytes();
    bytes[sig_start] = if bytes[sig_start] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    assert_ne!(tampered, token);
    let out = verify(&f, &tampered);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("invalid: signature does not match"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

#[test]
fn token_verify_refuses_a_token_from_another_key() {
    let dir = TempDir::new("cli");
    let f = dir.write("c.toml", &small_config());
    let foreign = issue(&f, OTHER_SECRET, &["--openid", "o-foreign"]);
    let out = verify(&f, &foreign);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("invalid: signature does not match"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

#[test]
fn token_verify_refuses_garbage_and_wrong_audience() {
    let dir = TempDir::new("cli");
    let f = dir.write("c.toml", &small_config());
    let out = verify(&f, "not-a-token");
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.starts_with("invalid: "), "{}", out.stderr);

    // Same key, another audience: refused.
    let other_aud = dir.write(
        "aud.toml",
        &small_config().replace("audience = \"test-app\"", "audience = \"other-app\""),
    );
    let token = issue(&other_aud, SECRET, &["--openid", "o-aud"]);
    let out = verify(&f, &token);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("invalid: wrong audience"),
        "{}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------
// run
// ---------------------------------------------------------------------------

/// `wxgate --log-format json run --ready-file READY -c CONFIG`, stderr to a
/// file; `rust_log` `None` runs it without `RUST_LOG` (the config's level).
fn spawn_run(config: &Path, ready: &Path, stderr: &Path, rust_log: Option<&str>) -> ChildGuard {
    let mut cmd = wxgate_with_secret();
    match rust_log {
        Some(level) => cmd.env("RUST_LOG", level),
        None => cmd.env_remove("RUST_LOG"),
    };
    let child = cmd
        .args(["--log-format", "json", "run", "--ready-file"])
        .arg(ready)
        .arg("-c")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).expect("stderr file"))
        .spawn()
        .expect("spawn wxgate run");
    ChildGuard(child)
}

/// Wait for `wxgate run --ready-file` to name its address, then for
/// `/healthz`; panics with the child's log if it exits first.
async fn wait_ready(
    child: &mut ChildGuard,
    ready: &Path,
    stderr: &Path,
    client: &reqwest::Client,
) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            panic!(
                "wxgate exited ({status:?}) before it was ready:\n{}",
                std::fs::read_to_string(stderr).unwrap_or_default()
            );
        }
        if let Ok(text) = std::fs::read_to_string(ready) {
            let addr: SocketAddr = text
                .lines()
                .next()
                .and_then(|l| l.parse().ok())
                .unwrap_or_else(|| panic!("ready file {text:?} does not start with an address"));
            let res = client
                .get(format!("http://{addr}/healthz"))
                .send()
                .await
                .expect("the address in the ready file answers");
            assert_eq!(res.status(), 200);
            return addr;
        }
        assert!(Instant::now() < deadline, "no ready file within 10s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_then_stops_gracefully_on_sigterm_without_logging_secrets() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let up = Upstream::start("cli-up").await;
    let dir = TempDir::new("cli");
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let stderr_path = dir.path().join("stderr.log");

    // listen = "127.0.0.1:0": the kernel picks the port, the ready file names it.
    // With [traces] (nothing sampled, nothing exported): a trace id per
    // access line.
    let text = format!(
        "{}\n[traces]\nendpoint = \"http://127.0.0.1:9/v1/traces\"\nsample_ratio = 0.0\n",
        support::standard_config(up.addr)
    );
    let config = dir.write("run.toml", &text);
    let ready = dir.path().join("ready");
    let mut child = spawn_run(&config, &ready, &stderr_path, Some("debug"));
    let addr = wait_ready(&mut child, &ready, &stderr_path, &client).await;

    let res = client
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // A token from `wxgate token issue` opens the protected route.
    let cfg = config.clone();
    let token = tokio::task::spawn_blocking(move || {
        issue(&cfg, SECRET, &["--openid", "o-run", "--unionid", "u-run"])
    })
    .await
    .unwrap();
    let req = format!(
        "GET /orders?x=1 HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nX-OpenID: o-evil\r\n\r\n"
    );
    let r = support::raw_request(addr, req.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.upstream_values("x-openid"), vec!["o-run"]);
    assert_eq!(r.upstream_values("x-unionid"), vec!["u-run"]);
    assert!(r.upstream_values("authorization").is_empty());
    assert_eq!(r.upstream_path(), "/orders?x=1");
    let request_id = r.header("x-request-id").expect("a request id").to_string();
    assert_eq!(r.upstream_values("x-request-id"), vec![request_id.clone()]);

    // Refusals, so the refusal paths get a chance to log.
    let r = support::raw_request(
        addr,
        b"GET /orders HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "token_missing");
    let sig_start = token.rfind('.').unwrap() + 1;
    let mut bad = token.clone().into_bytes();
    bad[sig_start] = if bad[sig_start] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).unwrap();
    let req = format!(
        "GET /orders HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\
         Authorization: Bearer {bad}\r\n\r\n"
    );
    let r = support::raw_request(addr, req.as_bytes()).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "token_invalid");
    assert_eq!(up.echo.requests(), 1);

    // An idle client connection must not hold the process past the grace period.
    let idle = tokio::net::TcpStream::connect(addr)
        .await
        .expect("idle connection");

    // SIGTERM: exits successfully within grace period (1s) + 5s.
    let status = stop_gracefully(&mut child, Duration::from_secs(1 + 5)).await;
    assert!(status.success(), "exit status {status:?}");
    drop(idle);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed after exit"
    );
    assert!(!ready.exists(), "the ready file outlived the process");

    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        stderr.contains(&addr.to_string()),
        "the bound address is not in the log:\n{stderr}"
    );
    assert!(
        !stderr.contains(SECRET),
        "JWT secret in the logs:\n{stderr}"
    );
    assert!(!stderr.contains(&token), "token in the logs:\n{stderr}");
    assert!(!stderr.contains(&bad), "bad token in the logs:\n{stderr}");
    let signature = &token[sig_start..];
    assert!(
        !stderr.contains(signature),
        "token signature in the logs:\n{stderr}"
    );
    // --log-format json: one JSON object per line.
    let mut access = Vec::new();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
        if v["target"] == "wxgate::access" {
            assert_eq!(v["level"], "INFO", "{line}");
            assert!(
                !line.contains("o-run"),
                "an openid in the access log: {line}"
            );
            access.push(v["fields"].clone());
        }
    }
    // One access line per request (the health checks of `wait_ready` included).
    let orders: Vec<&Value> = access.iter().filter(|f| f["path"] == "/orders").collect();
    assert_eq!(orders.len(), 3, "{access:?}");
    let ok = orders[0];
    assert_eq!(ok["request_id"], request_id.as_str(), "{ok}");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["route"], "/");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["auth"], "ok");
    assert_eq!(ok["upstream"], up.addr.to_string().as_str());
    assert!(ok["bytes"].as_u64().is_some_and(|b| b > 0), "{ok}");
    assert!(ok["total_ms"].as_f64().is_some(), "{ok}");
    assert!(ok["upstream_ms"].as_f64().is_some(), "{ok}");
    let user = ok["user"].as_str().expect("the user's hash");
    assert_eq!(user.len(), 16);
    assert!(user.bytes().all(|b| b.is_ascii_hexdigit()), "{user}");
    assert_eq!(orders[1]["auth"], "missing");
    assert_eq!(orders[1]["status"], 401);
    assert!(orders[1].get("user").is_none(), "{}", orders[1]);
    assert_eq!(orders[2]["auth"], "invalid");
    assert_ne!(orders[1]["request_id"], orders[2]["request_id"]);
    let traces: Vec<&str> = orders
        .iter()
        .map(|f| f["trace_id"].as_str().expect("a trace id"))
        .collect();
    assert!(
        traces
            .iter()
            .all(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit())),
        "{traces:?}"
    );
    assert_ne!(traces[0], traces[1]);
    assert!(access
        .iter()
        .any(|f| f["path"] == "/healthz" && f["route"] == "/healthz"));
}

#[test]
fn run_with_a_bad_config_exits_2() {
    let dir = TempDir::new("cli");
    let f = dir.write("bad.toml", "[server]\nlistn = \"x\"\n");
    let out = run_with_secret(&["run", "-c", f.to_str().unwrap()]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("listn"), "{}", out.stderr);
}

#[test]
fn run_on_a_taken_port_fails_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().unwrap();
    let dir = TempDir::new("cli");
    let f = dir.write(
        "taken.toml",
        &support::standard_config_on(&addr.to_string(), addr),
    );
    let stderr_path = dir.path().join("stderr.log");
    let child = wxgate_with_secret()
        .args(["run", "-c", f.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("spawn");
    let mut child = ChildGuard(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "wxgate kept running on a taken port"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "{status:?}");
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(stderr.contains(&addr.to_string()), "{stderr}");
    drop(taken);
}

/// `--ttl` is capped like `[jwt] ttl`: an endless token is never minted.
#[test]
fn token_issue_refuses_a_lifetime_over_30_days() {
    let dir = TempDir::new("cli");
    let f = dir.write("c.toml", &small_config());
    for ttl in ["31d", "400000000000y"] {
        let out = run_with_secret(&[
            "token",
            "issue",
            "--config",
            f.to_str().unwrap(),
            "--openid",
            "o1",
            "--ttl",
            ttl,
        ]);
        assert_ne!(out.code, Some(0), "{ttl}: {out:?}");
        assert!(out.stdout.is_empty(), "{ttl}: {out:?}");
        assert!(
            out.stderr.contains("30 days") || out.stderr.contains(ttl),
            "{ttl}: {out:?}"
        );
    }
    issue(&f, SECRET, &["--openid", "o1", "--ttl", "30d"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_routes_and_the_log_level() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let up = Upstream::start("cli-hup").await;
    let dir = TempDir::new("cli-hup");
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let stderr_path = dir.path().join("stderr.log");
    let routes = |auth: &str| support::routes_toml(&[("/", auth)], up.addr);
    let quiet = format!(
        "{}\n[log]\nlevel = \"warn\"\n{}",
        support::base_config(),
        routes("required")
    );
    let config = dir.write("run.toml", &quiet);
    let ready = dir.path().join("ready");
    let mut child = spawn_run(&config, &ready, &stderr_path, None);
    let addr = wait_ready(&mut child, &ready, &stderr_path, &client).await;
    let status = || async {
        client
            .get(format!("http://{addr}/a"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(status().await, 401);

    // The route turns public and the level to info, by SIGHUP.
    // Also a [server] change, which waits for a restart and is named in the log.
    let server = support::base_config().replace("grace_period = \"1s\"", "grace_period = \"2s\"");
    let loud = format!("{server}\n[log]\nlevel = \"info\"\n{}", routes("public"));
    std::fs::write(&config, loud).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while status().await != 200 {
        assert!(Instant::now() < deadline, "the reload did not apply");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Access lines (info) were filtered out before the reload, and are written now.
    let access_lines = || {
        std::fs::read_to_string(&stderr_path)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"target\":\"wxgate::access\""))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while access_lines() == 0 {
        assert!(
            Instant::now() < deadline,
            "no access line after the level became info"
        );
        assert_eq!(status().await, 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A broken file is refused and changes nothing.
    std::fs::write(&config, "[server]\nlisten = 1\n").unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&stderr_path)
        .unwrap_or_default()
        .contains("config reload refused")
    {
        assert!(Instant::now() < deadline, "no refusal logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status().await, 200);
    let before = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(before.contains("\"level\":\"INFO\""), "{before}");
    assert!(
        before
            .lines()
            .any(|l| l.contains("until a restart") && l.contains("[server]")),
        "{before}"
    );
    // The first 401 was answered under `warn`: no access line before the
    // reload's warning (a request in flight across the reload is logged at
    // its end, under the new level, and may show its old-route 401).
    assert!(
        !before
            .lines()
            .take_while(|l| !l.contains("until a restart"))
            .any(|l| l.contains("wxgate::access")),
        "{before}"
    );
    drop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_trace_level_nothing_secret_is_logged() {
    // The gateway at its most verbose (RUST_LOG=trace) through a login, a
    // refresh, proxied requests, a phone number, a decrypt and a logout: no
    // token, refresh token, code, session_key or secret in any line.
    use wxgate::dev::mock_wechat::MockWechat;
    const APPID: &str = "wxtracetest00001";
    const APP_SECRET: &str = "trace-app-secret-0123456789";
    let (mock_addr, served) = mock_wechat(APPID, APP_SECRET).await;
    let up = Upstream::start("trace-up").await;
    let dir = TempDir::new("cli-trace");
    let config = dir.write(
        "trace.toml",
        &format!(
            "{}\n[wechat]\nappid = \"{APPID}\"\nsecret_env = \"TRACE_APP_SECRET\"\napi_base = \"http://{mock_addr}\"\n",
            support::standard_config(up.addr)
        ),
    );
    let (mut child, addr, _, stderr_path) = run_ready(
        &dir,
        &config,
        &[("RUST_LOG", "trace"), ("TRACE_APP_SECRET", APP_SECRET)],
    )
    .await;

    let code = "trace-user.1";
    let login = support::login(addr, code).await;
    assert_eq!(login.status, 200, "{}", login.text());
    let token = login.token();
    let refresh = login.json()["refresh_token"].as_str().unwrap().to_string();
    let auth = format!("Authorization: Bearer {token}");
    let r = support::get(addr, "/orders", &[&auth, "Cookie: sid=trace-cookie-value"]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let phone = support::post_json(
        addr,
        "/wx/phone",
        &serde_json::json!({"code": "trace-phone-code"}),
        &[&auth],
    )
    .await;
    assert_eq!(phone.status, 200, "{}", phone.text());
    let rotated = support::refresh(addr, &refresh).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let new_token = rotated.token();
    let new_refresh = rotated.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = support::post_json(
        addr,
        "/wx/logout",
        &serde_json::json!({}),
        &[&format!("Authorization: Bearer {new_token}")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A graceful stop, so that every line is written out.
    stop_gracefully(&mut child, Duration::from_secs(10)).await;
    served.abort();

    let log = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(log.lines().count() > 10, "trace level logs: {log}");
    let session_key = MockWechat::session_key_for(code);
    let signature = |t: &str| t[t.rfind('.').unwrap() + 1..].to_string();
    for (what, secret) in [
        ("JWT secret", SECRET.to_string()),
        ("app secret", APP_SECRET.to_string()),
        ("login code", code.to_string()),
        ("phone code", "trace-phone-code".to_string()),
        ("session_key", session_key),
        ("token", token.clone()),
        ("token signature", signature(&token)),
        ("rotated token signature", signature(&new_token)),
        ("refresh token", refresh),
        ("rotated refresh token", new_refresh),
        ("cookie", "trace-cookie-value".to_string()),
    ] {
        assert!(!log.contains(&secret), "{what} in the trace log");
    }
}

/// A TLS ClientHello naming `sni` as its host name (an IP address, as many
/// clients send when given `https://1.2.3.4/`: rustls warns about it).
fn client_hello_with_sni(sni: &[u8]) -> Vec<u8> {
    let name_len = u16::try_from(sni.len()).unwrap();
    let mut server_name = vec![0u8];
    server_name.extend_from_slice(&name_len.to_be_bytes());
    server_name.extend_from_slice(sni);
    let mut list = u16::try_from(server_name.len())
        .unwrap()
        .to_be_bytes()
        .to_vec();
    list.extend_from_slice(&server_name);
    let mut extensions = vec![0, 0];
    extensions.extend_from_slice(&u16::try_from(list.len()).unwrap().to_be_bytes());
    extensions.extend_from_slice(&list);
    extensions.extend_from_slice(&[0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04]);
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[7u8; 32]);
    body.extend_from_slice(&[0x00, 0x00, 0x02, 0x13, 0x01, 0x01, 0x00]);
    body.extend_from_slice(&u16::try_from(extensions.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&extensions);
    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16::try_from(handshake.len()).unwrap().to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_requests_leaves_a_bounded_log() {
    // Lines a client can trigger at will: rustls' warning about an IP address
    // as SNI, and the gateway's own about a replayed refresh token.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const APPID: &str = "wxfloodtest00001";
    let (mock_addr, served) = mock_wechat(APPID, "flood-app-secret").await;
    let up = Upstream::start("flood-up").await;
    let dir = TempDir::new("cli-flood");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.write("cert.pem", &ck.cert.pem());
    let key = dir.write("key.pem", &ck.signing_key.serialize_pem());
    let config = support::standard_config(up.addr).replacen(
        "listen = \"127.0.0.1:0\"\n",
        &format!(
            "listen = \"127.0.0.1:0\"\ntls_listen = \"127.0.0.1:0\"\ntls_cert = '{}'\ntls_key = '{}'\n",
            cert.display(),
            key.display()
        ),
        1,
    );
    let config = dir.write(
        "flood.toml",
        &format!(
            "{config}\n[wechat]\nappid = \"{APPID}\"\nsecret_env = \"FLOOD_APP_SECRET\"\napi_base = \"http://{mock_addr}\"\n"
        ),
    );
    let (mut child, addr, tls, stderr_path) =
        run_ready(&dir, &config, &[("FLOOD_APP_SECRET", "flood-app-secret")]).await;
    let tls = tls.expect("a TLS address");

    let hello = client_hello_with_sni(b"1.2.3.4");
    for _ in 0..200 {
        let mut s = tokio::net::TcpStream::connect(tls).await.unwrap();
        s.write_all(&hello).await.unwrap();
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink)).await;
    }
    let login = support::login(addr, "flood.1").await;
    let spent = login.json()["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(support::refresh(addr, &spent).await.status, 200);
    for _ in 0..100 {
        let r = support::refresh(addr, &spent).await;
        assert_eq!(r.status, 401, "{}", r.text());
    }
    stop_gracefully(&mut child, Duration::from_secs(10)).await;
    served.abort();

    let log = std::fs::read_to_string(&stderr_path).unwrap();
    let sni = log.lines().filter(|l| l.contains("Illegal SNI")).count();
    assert!(sni >= 1, "the warning is still seen:\n{log}");
    assert!(
        sni <= wxgate::logs::BURST as usize,
        "{sni} SNI warnings for 200 handshakes"
    );
    let reuse = log
        .lines()
        .filter(|l| l.contains("a used refresh token was presented again"))
        .count();
    assert!(
        reuse >= 1 && reuse <= wxgate::logs::BURST as usize,
        "{reuse} reuse warnings"
    );
    // One access line per request is the access log's business ([log]
    // access); the warnings and errors stay few.
    let loud = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .count();
    assert!(
        loud <= 3 * wxgate::logs::BURST as usize,
        "{loud} warnings:\n{log}"
    );
}

/// The mock WeChat of one app, served on a free port until the handle is aborted.
async fn mock_wechat(
    appid: &str,
    secret: &str,
) -> (SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>) {
    let mock = wxgate::dev::mock_wechat::MockWechat::new(appid, secret);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, tokio::spawn(mock.serve(listener)))
}

/// `wxgate run -c config` with `env` (text logs into a file of `dir`),
/// once ready: the process, its plain and TLS addresses, its log file.
async fn run_ready(
    dir: &TempDir,
    config: &Path,
    env: &[(&str, &str)],
) -> (
    ChildGuard,
    SocketAddr,
    Option<SocketAddr>,
    std::path::PathBuf,
) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ready = dir.path().join("ready");
    let stderr_path = dir.path().join("stderr.log");
    let mut cmd = wxgate_with_secret();
    for (name, value) in env {
        cmd.env(name, value);
    }
    let child = cmd
        .args(["run", "--ready-file"])
        .arg(&ready)
        .arg("-c")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("spawn wxgate");
    let mut child = ChildGuard(child);
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let addr = wait_ready(&mut child, &ready, &stderr_path, &client).await;
    let text = std::fs::read_to_string(&ready).unwrap();
    let tls = text
        .lines()
        .nth(1)
        .map(|l| l.parse().expect("a TLS address"));
    (child, addr, tls, stderr_path)
}

/// SIGTERM, then wait for the exit (at most `within`).
async fn stop_gracefully(child: &mut ChildGuard, within: Duration) -> std::process::ExitStatus {
    let kill = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success());
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "wxgate did not exit within {within:?} of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
