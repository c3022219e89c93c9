//! Live reload: routes and the JWT key change under a running gateway while
//! a client keeps sending requests; none of them fails, old-key tokens are
//! refused after the reload, and a bad file leaves the running config alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{Preamble, Upstream};
use wxgate::config::Config;

const KEY_A: &str = "reload test key A, at least 32 bytes long";
const KEY_B: &str = "reload test key B, at least 32 bytes long";

fn env(name: &str) -> Option<String> {
    match name {
        "RELOAD_KEY_A" => Some(KEY_A.to_string()),
        "RELOAD_KEY_B" => Some(KEY_B.to_string()),
        _ => None,
    }
}

fn config_text(
    key_env: &str,
    listen: &str,
    routes: &[(&str, &str)],
    up: std::net::SocketAddr,
) -> String {
    let preamble = Preamble::new("reload-test")
        .listen(listen)
        .key_env(Some(key_env));
    preamble.to_string() + &support::routes_toml(routes, up)
}

async fn get(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> u16 {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n{auth}\r\n");
    support::raw_request(addr, req.as_bytes()).await.status
}

fn token(running: &wxgate::server::Running, openid: &str) -> String {
    let new = wxgate::token::NewToken {
        openid,
        ..Default::default()
    };
    running.state().tokens().issue(&new).expect("token").0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_and_keys_change_under_load_and_no_request_fails() {
    let up = Upstream::start("reload").await;
    let dir = support::TempDir::new("reload");
    let text_a = config_text(
        "RELOAD_KEY_A",
        "127.0.0.1:0",
        &[("/pub/", "public"), ("/", "required")],
        up.addr,
    );
    let path = dir.write("wxgate.toml", &text_a);
    let config = Config::load(&path, &env).unwrap();
    let running = Arc::new(wxgate::server::start(&config).await.unwrap());
    let addr = running.addr();
    let old_token = token(&running, "o-before");
    assert_eq!(get(addr, "/x", Some(&old_token)).await, 200);
    assert_eq!(
        get(addr, "/v2/y", None).await,
        401,
        "no /v2/ route yet: the required one answers"
    );

    // A client loop on the public route, before, during and after the reload.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let client = {
        let (stop, sent) = (stop.clone(), sent.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let status = get(addr, "/pub/z", None).await;
                if status != 200 {
                    failures.push(status);
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            failures
        })
    };
    assert!(
        support::eventually(Duration::from_secs(5), || async {
            sent.load(Ordering::Relaxed) >= 20
        })
        .await
    );

    // New key, a new public route, and a [server] change that waits for a restart.
    let text_b = config_text(
        "RELOAD_KEY_B",
        "127.0.0.1:1",
        &[("/pub/", "public"), ("/v2/", "public"), ("/", "required")],
        up.addr,
    );
    std::fs::write(&path, text_b).unwrap();
    let at_reload = sent.load(Ordering::Relaxed);
    running
        .reload_file(&path, &env)
        .await
        .expect("the new file is applied");
    assert!(
        support::eventually(Duration::from_secs(5), || async {
            sent.load(Ordering::Relaxed) >= at_reload + 20
        })
        .await
    );

    assert_eq!(
        get(addr, "/x", Some(&old_token)).await,
        401,
        "a token of the old key"
    );
    let new_token = token(&running, "o-after");
    assert_eq!(get(addr, "/x", Some(&new_token)).await, 200);
    assert_eq!(get(addr, "/v2/y", None).await, 200, "the new public route");
    assert_eq!(running.addr(), addr, "[server] listen waits for a restart");

    // A file that does not validate is refused; the running config stays.
    std::fs::write(&path, "[server]\nlisten = \"nonsense\"\n").unwrap();
    let refused = running.reload_file(&path, &env).await;
    assert!(refused.is_err());
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("server.listen"), "{message}");
    // A file that does not even parse is told without its text (what a
    // refused reload logs): a broken line may hold a secret.
    std::fs::write(
        &path,
        "[store]\nkind = \"redis\"\nurl = \"redis://:Reload-S3cret@x:6379\n",
    )
    .unwrap();
    let refused = running.reload_file(&path, &env).await;
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("store.url"), "{message}");
    assert!(!message.contains("Reload-S3cret"), "{message}");
    assert_eq!(get(addr, "/x", Some(&new_token)).await, 200);
    assert_eq!(get(addr, "/v2/y", None).await, 200);

    stop.store(true, Ordering::Relaxed);
    let failures = client.await.unwrap();
    assert!(
        failures.is_empty(),
        "requests failed around the reload: {failures:?}"
    );

    // The public route counted on across the reload, in one series (a request
    // is counted once its response is out: poll for the last ones).
    let pub_ok = |metrics: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(
                    "wxgate_requests_total{method=\"GET\",route=\"/pub/\",status=\"2xx\"}",
                )
            })
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0)
    };
    let total = sent.load(Ordering::Relaxed);
    let counted = support::eventually(Duration::from_secs(5), || {
        let running = running.clone();
        async move { pub_ok(&running.state().render_metrics()) >= total }
    })
    .await;
    let metrics = running.state().render_metrics();
    assert!(counted, "{total} sent, {} counted", pub_ok(&metrics));
    assert!(
        metrics.contains("wxgate_config_reloads_total{outcome=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wxgate_config_reloads_total{outcome=\"refused\"} 2"),
        "{metrics}"
    );

    Arc::try_unwrap(running)
        .ok()
        .expect("sole owner")
        .shutdown(Duration::from_secs(1))
        .await;
    up.stop().await;
}
