//! Asymmetric token keys through the real gateway: `/.well-known/jwks.json`
//! serves the public keys, an independent library (PyJWT with
//! `cryptography`, as a Python backend would use it) verifies the gateway's
//! tokens with nothing but that document, and a key rotation by live reload
//! keeps every token valid that should be.
//!
//! The PyJWT check is skipped when Python lacks `jwt` or `cryptography`,
//! except where `WXGATE_REQUIRE_PYJWT` is set (CI sets it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use support::{Gateway, Preamble, TempDir, Upstream};
use wxgate::token::{Algorithm, NewToken, PrivateKey, TokenKeys};

const VERIFY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/tools/verify_with_jwks.py"
);

/// What PyJWT says of each token, given the key set.
fn pyjwt_verdicts(jwks: &Value, tokens: &[&str]) -> Vec<String> {
    let mut child = Command::new(support::PYTHON)
        .arg(VERIFY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let input =
        json!({"jwks": jwks, "issuer": "wxgate", "audience": "keys-test", "tokens": tokens});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A fresh key of `alg` in `dir`: the private key's file, the public
/// key's file, and the key.
fn key_files(dir: &TempDir, name: &str, alg: Algorithm) -> (PathBuf, PathBuf, PrivateKey) {
    let key = PrivateKey::generate(alg).unwrap();
    let private = dir.write(&format!("{name}.pem"), &key.to_pem().unwrap());
    let public = dir.write(&format!("{name}.pub.pem"), &key.public().to_pem().unwrap());
    (private, public, key)
}

/// A gateway config: `jwt` is the lines of `[jwt]` that name the key(s).
fn config(jwt: &str, upstream: std::net::SocketAddr) -> String {
    Preamble::new("keys-test")
        .key_env(None)
        .jwt(jwt)
        .to_string()
        + &support::routes_toml(&[("/", "required")], upstream)
}

fn issue(keys: &TokenKeys, openid: &str) -> String {
    keys.issue(&NewToken {
        openid,
        ..Default::default()
    })
    .unwrap()
    .0
}

fn kid_of(token: &str) -> Option<String> {
    use base64::Engine;
    let h = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').next().unwrap())
        .unwrap();
    let v: Value = serde_json::from_slice(&h).unwrap();
    v["kid"].as_str().map(str::to_owned)
}

async fn reload(gw: &Gateway, jwt: &str, upstream: std::net::SocketAddr) {
    let text = config(jwt, upstream);
    gw.running().reload(&support::config(&text)).await.unwrap();
}

async fn status(gw: &Gateway, token: &str) -> u16 {
    gw.get_auth("/orders", token, &[]).await.status
}

async fn jwks(gw: &Gateway) -> Value {
    let r = gw.get("/.well-known/jwks.json", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("public, max-age=300"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    serde_json::from_slice(&r.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwks_lets_an_independent_library_verify_the_gateways_tokens() {
    let up = Upstream::start("keys").await;
    let dir = TempDir::new("keys-jwks");
    let (ed_file, _, ed) = key_files(&dir, "ed", Algorithm::EdDSA);
    let (ec_file, ec_public, ec) = key_files(&dir, "ec", Algorithm::ES256);
    let text = config(
        &format!(
            "algorithm = \"EdDSA\"\nprivate_key_file = '{}'\n\n[[jwt.previous_keys]]\nalgorithm = \"ES256\"\npublic_key_file = '{}'",
            ed_file.display(),
            ec_public.display()
        ),
        up.addr,
    );
    let gw = Gateway::start(&text).await;

    let set = jwks(&gw).await;
    let listed = set["keys"].as_array().unwrap();
    let kids: Vec<&str> = listed.iter().map(|k| k["kid"].as_str().unwrap()).collect();
    let (ed_kid, ec_kid) = (ed.public().thumbprint(), ec.public().thumbprint());
    assert_eq!(kids, [ed_kid.as_str(), ec_kid.as_str()]);
    assert!(listed.iter().all(|k| k.get("d").is_none()), "{set}");

    // A token of the gateway's signing key, one of the previous key (as the
    // gateway signed it before the rotation), and two it must refuse.
    let fresh = gw.token("o-ed", None, None);
    let old_keys = TokenKeys::new(
        &support::config(&config(
            &format!(
                "algorithm = \"ES256\"\nprivate_key_file = '{}'",
                ec_file.display()
            ),
            up.addr,
        ))
        .jwt,
    );
    let old = issue(&old_keys, "o-ec");
    let stranger = PrivateKey::generate(Algorithm::EdDSA).unwrap();
    let stranger_file = dir.write("stranger.pem", &stranger.to_pem().unwrap());
    let forged = issue(
        &TokenKeys::new(
            &support::config(&config(
                &format!(
                    "algorithm = \"EdDSA\"\nkid = \"{ed_kid}\"\nprivate_key_file = '{}'",
                    stranger_file.display()
                ),
                up.addr,
            ))
            .jwt,
        ),
        "o-forged",
    );
    let mut tampered = fresh.clone();
    let dot = tampered.find('.').unwrap();
    tampered.replace_range(dot + 2..dot + 3, "X");

    assert_eq!(kid_of(&fresh).as_deref(), Some(ed_kid.as_str()));
    assert_eq!(kid_of(&old).as_deref(), Some(ec_kid.as_str()));
    assert_eq!(status(&gw, &fresh).await, 200);
    assert_eq!(status(&gw, &old).await, 200);
    assert_eq!(status(&gw, &forged).await, 401);
    assert_eq!(status(&gw, &tampered).await, 401);

    if support::pyjwt_or_skip() {
        let verdicts = pyjwt_verdicts(&set, &[&fresh, &old, &forged, &tampered]);
        assert_eq!(verdicts[0], format!("ok o-ed {ed_kid}"), "{verdicts:?}");
        assert_eq!(verdicts[1], format!("ok o-ec {ec_kid}"), "{verdicts:?}");
        assert!(verdicts[2].starts_with("refused"), "{verdicts:?}");
        assert!(verdicts[3].starts_with("refused"), "{verdicts:?}");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hs256_gateway_publishes_no_key() {
    let up = Upstream::start("keys").await;
    let gw = Gateway::start(&config("secret_env = \"WXGATE_JWT_SECRET\"", up.addr)).await;
    assert_eq!(jwks(&gw).await, json!({"keys": []}));
    let r = gw.raw(b"POST /.well-known/jwks.json HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
    assert_eq!(r.status, 405);
    gw.stop().await;
}

/// The README's rotation, from today's kid-less HS256 secret to an EdDSA
/// key, by live reload: at each step the tokens of the step before still
/// pass (a real rotation waits `ttl` between steps 1 and 2, so that no
/// kid-less token is left by then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_by_reload_keeps_the_tokens_of_the_step_before() {
    let up = Upstream::start("keys").await;
    let dir = TempDir::new("keys-rotation");
    let (ed_file, _, ed) = key_files(&dir, "ed", Algorithm::EdDSA);
    let hs = "secret_env = \"WXGATE_JWT_SECRET\"";
    let gw = Gateway::start(&config(hs, up.addr)).await;
    let t0 = gw.token("o-0", None, None);
    assert_eq!(kid_of(&t0), None);

    // 1. The secret gets a kid: its tokens carry it; kid-less ones still pass.
    reload(&gw, &format!("{hs}\nkid = \"hs-1\""), up.addr).await;
    let t1 = gw.token("o-1", None, None);
    assert_eq!(kid_of(&t1).as_deref(), Some("hs-1"));
    assert_eq!(status(&gw, &t0).await, 200);
    assert_eq!(status(&gw, &t1).await, 200);

    // 2. The new key signs, the secret only verifies (by its kid).
    let step2 = format!(
        "algorithm = \"EdDSA\"\nprivate_key_file = '{}'\n\n[[jwt.previous_keys]]\nalgorithm = \"HS256\"\nkid = \"hs-1\"\n{hs}",
        ed_file.display()
    );
    reload(&gw, &step2, up.addr).await;
    let t2 = gw.token("o-2", None, None);
    assert_eq!(kid_of(&t2), Some(ed.public().thumbprint()));
    assert_eq!(status(&gw, &t1).await, 200);
    assert_eq!(status(&gw, &t2).await, 200);
    assert_eq!(
        status(&gw, &t0).await,
        401,
        "kid-less: expired by now in a real rotation"
    );
    assert_eq!(jwks(&gw).await["keys"].as_array().unwrap().len(), 1);

    // 3. The secret goes.
    let step3 = format!(
        "algorithm = \"EdDSA\"\nprivate_key_file = '{}'",
        ed_file.display()
    );
    reload(&gw, &step3, up.addr).await;
    assert_eq!(status(&gw, &t1).await, 401);
    assert_eq!(status(&gw, &t2).await, 200);
    gw.stop().await;
}
