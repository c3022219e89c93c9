//! Upstream selection, failures and health checks through the real gateway.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::{Gateway, Upstream};

fn two_upstream_config(a: std::net::SocketAddr, b: std::net::SocketAddr) -> String {
    format!(
        r#"{}
[[routes]]
prefix = "/"
upstreams = ["{a}", "{b}"]
auth = "public"
connect_timeout = "1s"
health_check_interval = "100ms"
"#,
        support::base_config()
    )
}

#[tokio::test]
async fn upstream_down_is_502() {
    let dead = support::dead_addr().await;
    let cfg = format!(
        "{}\n[[routes]]\nprefix = \"/\"\nupstreams = [\"{dead}\"]\nauth = \"public\"\n",
        support::base_config()
    );
    let gw = Gateway::start(&cfg).await;
    let r = gw.get("/x", &[]).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.error(), "upstream_unavailable");
    assert!(r.json()["message"].is_string());
    gw.stop().await;
}

#[tokio::test]
async fn round_robin_spreads_requests() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let gw = Gateway::start(&two_upstream_config(a.addr, b.addr)).await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        let r = gw.get("/x", &[]).await;
        assert_eq!(r.status, 200);
        seen.insert(
            r.json()["upstream"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(a.echo.requests() + b.echo.requests(), 6);
    gw.stop().await;
}

#[tokio::test]
async fn one_dead_upstream_is_skipped() {
    let a = Upstream::start("a").await;
    let dead = support::dead_addr().await;
    let gw = Gateway::start(&two_upstream_config(a.addr, dead)).await;
    // Before and after the health check notices: a refused connection is
    // retried on the other upstream, so every request succeeds.
    for _ in 0..10 {
        let r = gw.get("/x", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["upstream"], "a");
    }
    gw.stop().await;
}

#[tokio::test]
async fn health_check_takes_a_dead_upstream_out_and_puts_it_back() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let b_addr = b.addr;
    let gw = Gateway::start(&two_upstream_config(a.addr, b_addr)).await;
    b.stop().await;
    // Once the health check has noticed, requests go to `a` without a failed
    // connect first; all of them succeed in any case.
    let lb = gw
        .running()
        .state()
        .routes
        .get(0)
        .expect("route")
        .upstream
        .lb
        .clone();
    let backend = pingora_load_balancing::Backend::new(&b_addr.to_string()).expect("backend");
    assert!(
        support::eventually(Duration::from_secs(5), || {
            let lb = lb.clone();
            let backend = backend.clone();
            async move { !lb.backends().ready(&backend) }
        })
        .await,
        "health check did not mark the dead upstream unhealthy"
    );
    for _ in 0..6 {
        let r = gw.get("/x", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["upstream"], "a");
    }
    // Bring `b` back on the same port: it returns to the rotation.
    let listener = tokio::net::TcpListener::bind(b_addr)
        .await
        .expect("rebind b");
    let echo = wxgate::dev::echo::EchoUpstream::new("b2");
    let task = tokio::spawn(echo.clone().serve(listener));
    assert!(
        support::eventually(Duration::from_secs(5), || {
            let lb = lb.clone();
            let backend = backend.clone();
            async move { lb.backends().ready(&backend) }
        })
        .await,
        "health check did not bring the upstream back"
    );
    let mut saw_b = false;
    for _ in 0..6 {
        let r = gw.get("/x", &[]).await;
        assert_eq!(r.status, 200);
        saw_b |= r.json()["upstream"] == "b2";
    }
    assert!(saw_b);
    task.abort();
    gw.stop().await;
}

#[tokio::test]
async fn slow_upstream_is_504() {
    // Accepts connections and reads, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let cfg = format!(
        "{}\n[[routes]]\nprefix = \"/\"\nupstreams = [\"{addr}\"]\nauth = \"public\"\nread_timeout = \"300ms\"\n",
        support::base_config()
    );
    let gw = Gateway::start(&cfg).await;
    let started = std::time::Instant::now();
    let r = gw.get("/x", &[]).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.error(), "upstream_timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
    task.abort();
    gw.stop().await;
}

#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An upstream that answers only when told to.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel::<()>();
    let r = release.clone();
    let upstream = tokio::spawn(async move {
        // Health-check probes connect and close; wait for a real request.
        let mut s = loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            let complete = loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break false,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    break true;
                }
            };
            if complete {
                break s;
            }
        };
        let _ = seen_tx.send(());
        r.notified().await;
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
            .await
            .unwrap();
    });
    let cfg = format!(
        "{}\n[[routes]]\nprefix = \"/\"\nupstreams = [\"{addr}\"]\nauth = \"public\"\n",
        support::base_config()
    );
    let mut gw = Gateway::start(&cfg).await;
    let gw_addr = gw.addr;
    let in_flight = tokio::spawn(async move {
        support::raw_request(
            gw_addr,
            b"GET /slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await
    });
    seen_rx.await.expect("the request reached the upstream");

    let running = gw.running.take().unwrap();
    let shared = running.state().clone();
    let shutdown = tokio::spawn(running.shutdown(Duration::from_secs(10)));
    // Not ready any more, and new connections are refused once accepting stopped.
    assert!(
        support::eventually(Duration::from_secs(5), || {
            let s = shared.clone();
            async move { !s.is_ready() }
        })
        .await
    );
    assert!(
        support::eventually(Duration::from_secs(5), || async move {
            tokio::net::TcpStream::connect(gw_addr).await.is_err()
        })
        .await,
        "the listener still accepts after shutdown began"
    );
    assert!(
        !shutdown.is_finished(),
        "shutdown did not wait for the request in flight"
    );
    release.notify_one();
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"done");
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("shutdown ends once the request is done")
        .unwrap();
    upstream.await.unwrap();
}

/// An upstream that answers one request per connection, then closes it
/// without saying so (no `Connection: close`): every idle connection the
/// gateway keeps is dead by its next use. On both HTTP/1 paths, each
/// request is still answered: the dead connection is noticed and a new
/// one opened, the request never lost.
#[tokio::test]
async fn an_upstream_closing_idle_connections_loses_no_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    let server = tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                // Closed at once, the response read or not.
            });
        }
    });
    for path in support::HTTP1_PATHS {
        let cfg = format!(
            "{}\n[[routes]]\nprefix = \"/\"\nupstreams = [\"{addr}\"]\nauth = \"public\"\n",
            support::base_config()
        );
        let gw = Gateway::start(&support::with_http1(&cfg, path)).await;
        let mut client = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        for i in 0..20 {
            let req = format!("GET /r{i} HTTP/1.1\r\nHost: gw.test\r\n\r\n");
            client.write_all(req.as_bytes()).await.unwrap();
            let r = support::read_response(&mut client, Duration::from_secs(5)).await;
            assert_eq!(r.status, 200, "{path}: request {i}: {}", r.text());
            assert_eq!(r.text(), "ok", "{path}: request {i}");
        }
        gw.stop().await;
    }
    assert!(accepted.load(std::sync::atomic::Ordering::SeqCst) >= 40);
    server.abort();
}
