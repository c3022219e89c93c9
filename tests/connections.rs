//! Connections through the real gateway: pipelined requests, idle and read
//! deadlines, connection limits per client IP and in total.
//!
//! The deadlines are configured short (hundreds of milliseconds) so that the
//! slow clients here (one byte at a time) are cut off quickly; each test
//! asserts both that the connection is closed and that it was not closed
//! before its deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{Gateway, Preamble, Upstream};
use wxgate::server::admission::Refused;

/// A gateway with a public `/public/` route and these `[server]` lines.
async fn gateway(server: &str) -> (Upstream, Gateway) {
    let up = Upstream::start("conn").await;
    let text = Preamble::new("test-app").server(server).to_string()
        + &support::routes_toml(&[("/public/", "public"), ("/", "required")], up.addr);
    let gw = Gateway::start(&text).await;
    (up, gw)
}

/// Read until the gateway closes the connection (or `limit` passes: a
/// failure). Returns what was read and when the close came.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, Instant) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let read = async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let closed = tokio::time::timeout(limit, read)
        .await
        .unwrap_or_else(|_| panic!("the connection is still open after {limit:?}"));
    (buf, closed)
}

async fn connect(gw: &Gateway) -> TcpStream {
    let s = TcpStream::connect(gw.addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// One request on `s`, answered.
async fn one_request(s: &mut TcpStream, path: &str) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let r = support::read_response(s, Duration::from_secs(5)).await;
    assert_eq!(r.status, 200, "{path}");
}

// ---------------------------------------------------------------------------
// Pipelining
// ---------------------------------------------------------------------------

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (up, gw) = gateway("").await;
    let mut s = connect(&gw).await;
    let both = "GET /public/one HTTP/1.1\r\nHost: gw.test\r\n\r\n\
                GET /public/two HTTP/1.1\r\nHost: gw.test\r\n\r\n\
                GET /public/three HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n";
    s.write_all(both.as_bytes()).await.unwrap();
    let (buf, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&buf);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 3, "{text}");
    let at = |p: &str| {
        text.find(p)
            .unwrap_or_else(|| panic!("{p} missing: {text}"))
    };
    assert!(at("/public/one") < at("/public/two") && at("/public/two") < at("/public/three"));
    assert_eq!(up.echo.requests(), 3);
    gw.stop().await;
}

#[tokio::test]
async fn a_pipelined_request_after_a_gateway_answer_is_answered_too() {
    let (_up, gw) = gateway("").await;
    let mut s = connect(&gw).await;
    let both = "GET /healthz HTTP/1.1\r\nHost: gw.test\r\n\r\n\
                GET /public/after HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n";
    s.write_all(both.as_bytes()).await.unwrap();
    let (buf, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&buf);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    assert!(text.contains("/public/after"), "{text}");
    gw.stop().await;
}

#[tokio::test]
async fn a_pipelined_request_read_whole_with_the_one_before_is_answered() {
    let (_up, gw) = gateway("").await;
    let mut s = connect(&gw).await;
    // Short enough to arrive in one read: the gateway holds all of the
    // second request while answering the first, and no byte is left to
    // wait for.
    let both = "GET /public/1 HTTP/1.1\r\nHost: g\r\n\r\nGET /public/2 HTTP/1.1\r\n\r\n";
    s.write_all(both.as_bytes()).await.unwrap();
    let first = support::read_response(&mut s, Duration::from_secs(5)).await;
    let second = support::read_response(&mut s, Duration::from_secs(5)).await;
    assert_eq!((first.status, second.status), (200, 200));
    assert!(String::from_utf8_lossy(&second.body).contains("/public/2"));
    gw.stop().await;
}

// ---------------------------------------------------------------------------
// Deadlines
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let (_up, gw) = gateway("idle_timeout = \"600ms\"").await;
    let mut s = connect(&gw).await;
    one_request(&mut s, "/public/a").await;
    let answered = Instant::now();
    let (buf, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(buf.is_empty());
    let idle = closed - answered;
    assert!(idle >= Duration::from_millis(500), "closed after {idle:?}");
    gw.stop().await;
}

/// Past its linger (200 ms) an idle connection is parked without a task;
/// its next request gets one again, on both HTTP/1 paths, as often as it
/// comes back.
#[tokio::test]
async fn a_connection_idle_past_its_linger_is_served_again() {
    for path in support::HTTP1_PATHS {
        let (_up, gw) = gateway(&format!("http1 = \"{path}\"")).await;
        let conns = gw.running().connections();
        let mut s = connect(&gw).await;
        one_request(&mut s, "/public/a").await;
        for round in 0..3 {
            // Idle longer than the linger: the scenario, not a wait for readiness.
            tokio::time::sleep(Duration::from_millis(450)).await;
            let parked = || async { conns.parked() == 1 };
            assert!(
                support::eventually(Duration::from_secs(2), parked).await,
                "{path}"
            );
            one_request(&mut s, &format!("/public/again-{round}")).await;
            assert_eq!(conns.parked(), 0, "{path}: served, so no longer parked");
        }
        assert_eq!(conns.open(), 1, "{path}");
        gw.stop().await;
    }
}

/// A parked connection is closed at shutdown, as an idle one always was:
/// the gateway does not wait out its grace period for it.
#[tokio::test]
async fn shutdown_closes_a_parked_connection() {
    let (_up, gw) = gateway("idle_timeout = \"60s\"").await;
    let mut s = connect(&gw).await;
    one_request(&mut s, "/public/a").await;
    let conns = gw.running().connections();
    let parked = || async { conns.parked() == 1 };
    assert!(support::eventually(Duration::from_secs(2), parked).await);
    let stopping = Instant::now();
    gw.stop().await;
    // The tests' grace period is 1 s: a connection still counted as open
    // would have held the shutdown that long.
    let took = stopping.elapsed();
    assert!(took < Duration::from_millis(900), "shutdown took {took:?}");
    let (buf, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(buf.is_empty());
}

#[tokio::test]
async fn a_connection_that_never_sends_is_closed_after_the_idle_timeout() {
    let (_up, gw) = gateway("idle_timeout = \"600ms\"").await;
    let started = Instant::now();
    let mut s = connect(&gw).await;
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(closed - started >= Duration::from_millis(500));
    gw.stop().await;
}

/// An HTTP/2 (h2c) connection with no stream is closed after `idle_timeout`.
#[tokio::test]
async fn an_idle_h2c_connection_is_closed() {
    let (_up, gw) = gateway("idle_timeout = \"600ms\"").await;
    let mut s = connect(&gw).await;
    // The client preface and an empty SETTINGS frame, then nothing.
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    s.write_all(&preface).await.unwrap();
    let sent = Instant::now();
    let (buf, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    // The server spoke HTTP/2 (its SETTINGS frame: type 4 on stream 0).
    assert!(buf.len() >= 9 && buf[3] == 4, "{buf:?}");
    let idle = closed - sent;
    assert!(idle >= Duration::from_millis(500), "closed after {idle:?}");
    gw.stop().await;
}

/// One byte every 100 ms never makes a request: the header deadline is a
/// total, not per byte.
#[tokio::test]
async fn headers_trickled_byte_by_byte_are_cut_off() {
    let (up, gw) = gateway("header_timeout = \"700ms\"\nidle_timeout = \"30s\"").await;
    let mut s = connect(&gw).await;
    let started = Instant::now();
    let request = b"GET /public/slow HTTP/1.1\r\nHost: gw.test\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let cut_after = trickle(&mut s, request, started).await;
    let cut = match cut_after {
        Some(t) => t,
        None => {
            let (_, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
            closed - started
        }
    };
    assert!(cut >= Duration::from_millis(600), "cut after {cut:?}");
    assert!(cut < Duration::from_secs(3), "cut after {cut:?}");
    assert_eq!(up.echo.requests(), 0);
    gw.stop().await;
}

/// The second request on a connection gets the same header deadline.
#[tokio::test]
async fn a_second_request_whose_headers_never_finish_is_cut_off() {
    let (_up, gw) = gateway("header_timeout = \"600ms\"\nidle_timeout = \"30s\"").await;
    let mut s = connect(&gw).await;
    one_request(&mut s, "/public/first").await;
    s.write_all(b"GET /public/second HTTP/1.1\r\nHost: gw")
        .await
        .unwrap();
    let sent = Instant::now();
    let (buf, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(buf.is_empty(), "{}", String::from_utf8_lossy(&buf));
    let waited = closed - sent;
    assert!(
        waited >= Duration::from_millis(500),
        "closed after {waited:?}"
    );
    gw.stop().await;
}

/// A body that trickles in is cut off at `body_timeout`, on a proxied route
/// and on the gateway's own endpoints alike.
#[tokio::test]
async fn a_body_trickled_byte_by_byte_is_cut_off() {
    // With [wechat], so that /wx/login is the gateway's own (WeChat is never
    // called: the body never completes).
    let (up, gw) = gateway(
        "body_timeout = \"700ms\"\nidle_timeout = \"30s\"\n\n[wechat]\nappid = \"wxconntest\"\nsecret_env = \"WXGATE_JWT_SECRET\"\napi_base = \"http://127.0.0.1:9\"",
    )
    .await;
    for path in ["/public/upload", "/wx/login"] {
        let mut s = connect(&gw).await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: gw.test\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        let mut cut = None;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if s.write_all(b"a").await.is_err() {
                cut = Some(started.elapsed());
                break;
            }
            if let Ok(Ok(0)) =
                tokio::time::timeout(Duration::from_millis(1), s.read(&mut [0u8; 1024])).await
            {
                cut = Some(started.elapsed());
                break;
            }
        }
        let cut = cut.unwrap_or_else(|| panic!("{path}: still open after 5 s"));
        assert!(
            cut >= Duration::from_millis(600),
            "{path}: cut after {cut:?}"
        );
        assert!(cut < Duration::from_secs(3), "{path}: cut after {cut:?}");
    }
    assert_eq!(up.echo.requests(), 0);
    gw.stop().await;
}

/// An upstream that answers every request after `delay`, keep-alive.
async fn slow_upstream(delay: Duration) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request: headers, then Content-Length bytes.
                    let (end, len) = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (end + 4, len);
                        }
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    while buf.len() < end + len {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..end + len);
                    tokio::time::sleep(delay).await;
                    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    if s.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A deadline never cuts off a request that is being answered: the
/// upstream takes longer than every deadline here.
#[tokio::test]
async fn deadlines_do_not_cut_off_a_slow_upstream_answer() {
    let slow = slow_upstream(Duration::from_millis(1000)).await;
    let server = "header_timeout = \"300ms\"\nbody_timeout = \"300ms\"\nidle_timeout = \"300ms\"";
    let text = Preamble::new("test-app").server(server).to_string()
        + &support::routes_toml(&[("/", "public")], slow);
    let gw = Gateway::start(&text).await;
    let mut s = connect(&gw).await;
    let body = "x".repeat(100);
    let req = format!(
        "POST /slow HTTP/1.1\r\nHost: gw.test\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let r = support::read_response(&mut s, Duration::from_secs(5)).await;
    assert_eq!(r.status, 200);
    // And the connection still serves the next request.
    one_request(&mut s, "/next").await;
    gw.stop().await;
}

// ---------------------------------------------------------------------------
// Connection limits
// ---------------------------------------------------------------------------

/// Open `n` connections, each proven admitted by one answered request.
async fn admitted(gw: &Gateway, n: usize) -> Vec<TcpStream> {
    let mut open = Vec::new();
    for i in 0..n {
        let mut s = connect(gw).await;
        one_request(&mut s, &format!("/public/{i}")).await;
        open.push(s);
    }
    open
}

/// A connection over a limit is closed before anything is read.
async fn assert_turned_away(gw: &Gateway) {
    let mut s = connect(gw).await;
    let _ = s
        .write_all(b"GET /public/x HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        .await;
    let (buf, _) = read_until_closed(&mut s, Duration::from_secs(2)).await;
    assert!(buf.is_empty(), "{}", String::from_utf8_lossy(&buf));
}

#[tokio::test]
async fn connections_per_client_ip_are_capped_and_counted() {
    let (_up, gw) = gateway("max_connections_per_ip = 3").await;
    let mut open = admitted(&gw, 3).await;
    assert_turned_away(&gw).await;
    let conns = gw.running().connections();
    assert_eq!(conns.refused(Refused::PerIp), 1);
    assert_eq!(conns.refused(Refused::Total), 0);
    // A place that frees up can be taken again.
    drop(open.pop());
    assert!(support::eventually(Duration::from_secs(2), || async { conns.open() == 2 }).await);
    let mut s = connect(&gw).await;
    one_request(&mut s, "/public/again").await;
    gw.stop().await;
}

#[tokio::test]
async fn connections_in_total_are_capped_and_counted() {
    let (_up, gw) = gateway("max_connections = 2").await;
    let _open = admitted(&gw, 2).await;
    assert_turned_away(&gw).await;
    assert_eq!(gw.running().connections().refused(Refused::Total), 1);
    gw.stop().await;
}

#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit() {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    let raised = wxgate::server::raise_fd_limit().expect("raised");
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    assert_eq!(raised, soft);
    assert!(soft == hard || soft >= 1 << 20, "soft {soft}, hard {hard}");
}

// ---------------------------------------------------------------------------
// The internal listener (metrics, the access token)
// ---------------------------------------------------------------------------

/// A gateway with a metrics listener and these `[metrics]` lines; its
/// metrics address.
async fn internal(metrics: &str) -> (Upstream, Gateway, std::net::SocketAddr) {
    let up = Upstream::start("internal").await;
    let text = Preamble::new("test-app").to_string()
        + &support::routes_toml(&[("/public/", "public")], up.addr)
        + &format!("\n[metrics]\nlisten = \"127.0.0.1:0\"\n{metrics}\n");
    let gw = Gateway::start(&text).await;
    let addr = gw.running().metrics_addr().expect("metrics listener");
    (up, gw, addr)
}

/// A connection to `addr` from the loopback address `from` (127.0.0.x:
/// another client as far as the gateway can tell).
async fn connect_from(from: [u8; 4], addr: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind((std::net::Ipv4Addr::from(from), 0).into())
        .unwrap();
    let s = socket.connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// `GET /metrics` on `s`, answered 200, the connection kept.
async fn scrape_on(s: &mut TcpStream) {
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n")
        .await
        .unwrap();
    let r = support::read_response(s, Duration::from_secs(5)).await;
    assert_eq!(r.status, 200);
}

/// `n` connections to the internal listener from `from`, each proven
/// admitted by one answered request and kept open.
async fn internal_admitted(from: [u8; 4], addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut open = Vec::new();
    for _ in 0..n {
        let mut s = connect_from(from, addr).await;
        scrape_on(&mut s).await;
        open.push(s);
    }
    open
}

/// A connection over a limit is accepted and closed at once, before any request is read.
async fn internal_turned_away(from: [u8; 4], addr: std::net::SocketAddr) {
    let mut s = connect_from(from, addr).await;
    let _ = s
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n")
        .await;
    let (buf, _) = read_until_closed(&mut s, Duration::from_secs(2)).await;
    assert!(buf.is_empty(), "{}", String::from_utf8_lossy(&buf));
}

/// With the defaults: request headers that never end are cut off after
/// 5 s (they were still open after 30 s).
#[tokio::test]
async fn the_internal_listener_cuts_off_headers_that_never_end() {
    let (_up, gw, metrics) = internal("").await;
    let mut s = connect_from([127, 0, 0, 1], metrics).await;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: m")
        .await
        .unwrap();
    let sent = Instant::now();
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    let waited = closed - sent;
    assert!(
        waited >= Duration::from_millis(4500),
        "closed after {waited:?}"
    );
    gw.stop().await;
}

/// With the defaults: 16 connections from one address, 64 in all; over
/// either, a new connection is closed at once, and other clients are
/// still answered.
#[tokio::test]
async fn connections_to_the_internal_listener_are_capped_per_ip_and_in_total() {
    let (_up, gw, metrics) = internal("").await;
    let mut open = internal_admitted([127, 0, 0, 1], metrics, 16).await;
    internal_turned_away([127, 0, 0, 1], metrics).await;
    // Another address is still answered, up to the total.
    for last in 2..=4 {
        open.extend(internal_admitted([127, 0, 0, last], metrics, 16).await);
    }
    internal_turned_away([127, 0, 0, 5], metrics).await;
    let conns = gw.running().internal_connections().unwrap();
    assert_eq!(conns.caps(), (64, 16));
    assert_eq!(conns.refused(Refused::PerIp), 1);
    assert_eq!(conns.refused(Refused::Total), 1);
    // A place that frees up can be taken again.
    drop(open.pop());
    assert!(support::eventually(Duration::from_secs(2), || async { conns.open() == 63 }).await);
    let mut again = internal_admitted([127, 0, 0, 5], metrics, 1).await;
    // The refusals are counted in /metrics, by listener and reason.
    again[0]
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n")
        .await
        .unwrap();
    let r = support::read_response(&mut again[0], Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    for line in [
        r#"wxgate_connections_refused_total{listener="metrics",reason="per_ip"} 1"#,
        r#"wxgate_connections_refused_total{listener="metrics",reason="total"} 1"#,
        r#"wxgate_connections_refused_total{listener="public",reason="total"} 0"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
    // The public listener never noticed.
    let mut s = connect(&gw).await;
    one_request(&mut s, "/public/after").await;
    assert_eq!(gw.running().connections().refused(Refused::Total), 0);
    gw.stop().await;
}

/// `[metrics] max_connections` and `max_connections_per_ip` set the caps.
#[tokio::test]
async fn the_internal_listeners_caps_are_configured() {
    let (_up, gw, metrics) = internal("max_connections = 3\nmax_connections_per_ip = 2").await;
    let _a = internal_admitted([127, 0, 0, 1], metrics, 2).await;
    internal_turned_away([127, 0, 0, 1], metrics).await;
    let _b = internal_admitted([127, 0, 0, 2], metrics, 1).await;
    internal_turned_away([127, 0, 0, 3], metrics).await;
    let conns = gw.running().internal_connections().unwrap();
    assert_eq!(
        (conns.refused(Refused::PerIp), conns.refused(Refused::Total)),
        (1, 1)
    );
    gw.stop().await;
}

/// A keep-alive connection to the internal listener is closed after
/// `[metrics] idle_timeout`, and so is one that never sends a byte.
#[tokio::test]
async fn an_idle_connection_to_the_internal_listener_is_closed() {
    let (_up, gw, metrics) = internal("idle_timeout = \"600ms\"\nheader_timeout = \"5s\"").await;
    let started = Instant::now();
    let mut silent = connect_from([127, 0, 0, 1], metrics).await;
    let mut s = connect_from([127, 0, 0, 1], metrics).await;
    scrape_on(&mut s).await;
    let answered = Instant::now();
    let (buf, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(buf.is_empty());
    let idle = closed - answered;
    assert!(idle >= Duration::from_millis(500), "closed after {idle:?}");
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    let idle = closed - started;
    assert!(idle >= Duration::from_millis(500), "closed after {idle:?}");
    gw.stop().await;
}

/// One byte every 100 ms never makes a request: the header deadline runs
/// from the first byte, and the idle deadline (long here) does not help.
#[tokio::test]
async fn headers_trickled_to_the_internal_listener_are_cut_off() {
    let (_up, gw, metrics) = internal("header_timeout = \"700ms\"\nidle_timeout = \"30s\"").await;
    let mut s = connect_from([127, 0, 0, 1], metrics).await;
    // A first request is answered; the deadline applies to the next one too.
    scrape_on(&mut s).await;
    let request = b"GET /metrics HTTP/1.1\r\nHost: m\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let cut_after = trickle(&mut s, request, started).await;
    let cut = match cut_after {
        Some(t) => t,
        None => {
            let (buf, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
            assert!(
                !String::from_utf8_lossy(&buf).contains("200 OK"),
                "answered"
            );
            closed - started
        }
    };
    assert!(cut >= Duration::from_millis(600), "cut after {cut:?}");
    assert!(cut < Duration::from_secs(3), "cut after {cut:?}");
    gw.stop().await;
}

/// A request head over 16 KiB is refused (431), not buffered.
#[tokio::test]
async fn an_oversized_request_head_to_the_internal_listener_is_refused() {
    let (_up, gw, metrics) = internal("").await;
    let big = format!(
        "GET /metrics HTTP/1.1\r\nHost: m\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let mut s = connect_from([127, 0, 0, 1], metrics).await;
    let _ = s.write_all(big.as_bytes()).await;
    let (buf, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(
        buf.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    gw.stop().await;
}

/// Send `request` one byte every 100 ms (for at most 5 s): how long after
/// `started` the gateway cut the connection off, if it did while writing.
async fn trickle(s: &mut TcpStream, request: &[u8], started: Instant) -> Option<Duration> {
    for b in request {
        if s.write_all(&[*b]).await.is_err() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    None
}
