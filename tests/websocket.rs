//! WebSockets through the real gateway (`wx.connectSocket({url, header})`
//! sends `Authorization`): a handshake without a valid token gets the usual
//! 401 JSON and never reaches the upstream; an accepted one carries the
//! verified identity, then messages go both ways, for as long as the socket
//! lives. The upstream is a real WebSocket echo server (tokio-tungstenite).
#![allow(clippy::unwrap_used, clippy::expect_used)]
// tungstenite's handshake callback returns its (large) error response by value.
#![allow(clippy::result_large_err)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
use tokio_tungstenite::WebSocketStream;

use support::Gateway;

type Seen = Arc<Mutex<Vec<Vec<(String, String)>>>>;
/// The close frames the echo server received: code and reason.
type Closes = Arc<Mutex<Vec<(u16, String)>>>;

/// The echo server's first message on every socket.
const GREETING: &str = "welcome";

/// A WebSocket echo server that keeps the headers of every handshake.
async fn echo_server() -> (SocketAddr, Seen) {
    let (addr, seen, _) = echo_server_pushing(None).await;
    (addr, seen)
}

/// [`echo_server`]; with `push`, it also sends `"later"` that long after its
/// greeting, before echoing anything.
async fn echo_server_pushing(push: Option<Duration>) -> (SocketAddr, Seen, Closes) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let closes: Closes = Arc::default();
    let keep = seen.clone();
    let closed = closes.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let keep = keep.clone();
            let closed = closed.clone();
            tokio::spawn(async move {
                let callback = |req: &Request, res: Response| {
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(n, v)| {
                            (n.as_str().to_string(), v.to_str().unwrap_or("").to_string())
                        })
                        .collect();
                    keep.lock().unwrap().push(headers);
                    Ok(res)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                // The server speaks first, as many do (the client waits for it).
                if ws.send(Message::text(GREETING)).await.is_err() {
                    return;
                }
                if let Some(after) = push {
                    tokio::time::sleep(after).await;
                    if ws.send(Message::text("later")).await.is_err() {
                        return;
                    }
                }
                while let Some(Ok(msg)) = ws.next().await {
                    if let Message::Close(frame) = &msg {
                        let frame = frame
                            .as_ref()
                            .map(|f| (u16::from(f.code), f.reason.to_string()));
                        closed
                            .lock()
                            .unwrap()
                            .push(frame.unwrap_or((0, String::new())));
                    }
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen, closes)
}

fn values(headers: &[(String, String)], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .collect()
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;
type WsError = tokio_tungstenite::tungstenite::Error;

/// A WebSocket through the gateway, once the server's greeting came through.
async fn connect(gw: SocketAddr, headers: &[(&str, &str)]) -> Result<Ws, WsError> {
    let mut ws = open(gw, headers).await?;
    let greeting = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("the server's greeting in time")
        .expect("the socket is open")?;
    assert_eq!(greeting, Message::text(GREETING));
    Ok(ws)
}

/// [`support::standard_config`] with `line` added to the `/` route (the
/// one sockets open on).
fn root_route_with(upstream: SocketAddr, line: &str) -> String {
    let text = support::standard_config(upstream).replace(
        "auth = \"required\"",
        &format!("auth = \"required\"\n{line}"),
    );
    assert!(text.contains(line), "{text}");
    text
}

/// The status and JSON body of a handshake the gateway refused.
fn refusal(handshake: Result<Ws, WsError>) -> (u16, serde_json::Value) {
    match handshake {
        Err(WsError::Http(res)) => {
            let body = res.body().clone().unwrap_or_default();
            let v = serde_json::from_slice(&body).expect("a JSON body");
            (res.status().as_u16(), v)
        }
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, got a socket"),
    }
}

/// The handshake only.
async fn open(gw: SocketAddr, headers: &[(&str, &str)]) -> Result<Ws, WsError> {
    let mut req = format!("ws://{gw}/chat").into_client_request().unwrap();
    for (n, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let stream = TcpStream::connect(gw).await.unwrap();
    tokio_tungstenite::client_async(req, stream)
        .await
        .map(|(ws, _)| ws)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_carries_the_verified_identity_and_messages_both_ways() {
    let (upstream, seen) = echo_server().await;
    let gw = Gateway::start(&support::standard_config(upstream)).await;
    let token = gw.token("o-ws", Some("u-ws"), None);
    let auth = format!("Bearer {token}");
    let mut ws = connect(
        gw.addr,
        &[
            ("Authorization", &auth),
            ("X-OpenID", "o-spoofed"),
            ("x_user_id", "spoof"),
        ],
    )
    .await
    .expect("handshake through wxgate");
    ws.close(None).await.unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let h = &seen[0];
    assert_eq!(values(h, "x-openid"), ["o-ws"]);
    assert_eq!(values(h, "x-unionid"), ["u-ws"]);
    assert!(values(h, "x_user_id").is_empty() && values(h, "x-user-id").is_empty());
    assert!(
        values(h, "authorization").is_empty(),
        "the token stays at the gateway"
    );
    assert_eq!(values(h, "upgrade"), ["websocket"]);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_handshake_without_a_valid_token_is_refused() {
    let (upstream, seen) = echo_server().await;
    let gw = Gateway::start(&support::standard_config(upstream)).await;
    for headers in [vec![], vec![("Authorization", "Bearer not.a.token")]] {
        let (status, v) = refusal(connect(gw.addr, &headers).await);
        assert_eq!(status, 401);
        assert!(v["error"].as_str().unwrap().starts_with("token_"), "{v}");
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "the upstream never saw a handshake"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_handshake_without_the_routes_role_is_forbidden() {
    let (upstream, seen) = echo_server().await;
    let gw = Gateway::start(&root_route_with(upstream, "roles = [\"admin\"]")).await;
    let auth = format!("Bearer {}", gw.token("o-no-role", None, None));
    let (status, v) = refusal(open(gw.addr, &[("Authorization", &auth)]).await);
    assert_eq!(status, 403);
    assert_eq!(v["error"], "forbidden", "{v}");
    assert!(seen.lock().unwrap().is_empty(), "the upstream never saw it");
    gw.stop().await;
}

/// An upstream that takes the handshake and never answers: the route's
/// `read_timeout` bounds the wait for the 101 (it no longer applies after).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upstream_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            held.push(stream); // open, silent
        }
    });
    let gw = Gateway::start(&root_route_with(upstream, "read_timeout = \"1s\"")).await;
    let auth = format!("Bearer {}", gw.token("o-silent", None, None));
    let started = std::time::Instant::now();
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        open(gw.addr, &[("Authorization", &auth)]),
    )
    .await
    .expect("an answer, not a hang");
    let (status, v) = refusal(refused);
    assert_eq!(status, 504);
    assert_eq!(v["error"], "upstream_timeout", "{v}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_websocket_is_not_cut_by_the_request_deadlines() {
    // The upstream pushes a message 2.5 s after its greeting; nothing else
    // moves on the socket meanwhile, in either direction.
    let (upstream, _seen, _) = echo_server_pushing(Some(Duration::from_millis(2500))).await;
    // Short request deadlines: a WebSocket is not a request body being read,
    // nor an upstream answer awaited.
    let text = root_route_with(upstream, "read_timeout = \"1s\"").replace(
        "grace_period = \"1s\"",
        "grace_period = \"1s\"\nbody_timeout = \"1s\"\nheader_timeout = \"1s\"\nidle_timeout = \"1s\"",
    );
    assert!(text.contains("body_timeout = \"1s\""), "{text}");
    let gw = Gateway::start(&text).await;
    let auth = format!("Bearer {}", gw.token("o-idle", None, None));
    let mut ws = connect(gw.addr, &[("Authorization", &auth)]).await.unwrap();
    let later = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("the push in time")
        .expect("the socket is open")
        .expect("a message");
    assert_eq!(later, Message::text("later"));
    gw.stop().await;
}

/// `wx.connectSocket` users send in `onOpen`, before the server says
/// anything; then messages of every kind go both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_may_speak_first() {
    let (upstream, _seen) = echo_server().await;
    let gw = Gateway::start(&support::standard_config(upstream)).await;
    let auth = format!("Bearer {}", gw.token("o-first", None, None));
    for _ in 0..10 {
        let mut ws = open(gw.addr, &[("Authorization", &auth)]).await.unwrap();
        ws.send(Message::text("first")).await.unwrap();
        let mut got = Vec::new();
        while got.len() < 2 {
            let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .expect("messages in time")
                .expect("the socket is open")
                .expect("a message");
            got.push(m);
        }
        assert_eq!(got, [Message::text(GREETING), Message::text("first")]);
        for msg in [
            Message::text("hello"),
            Message::text("世界"),
            Message::binary(vec![0u8, 1, 2, 255]),
        ] {
            ws.send(msg.clone()).await.unwrap();
            let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .expect("the echo in time")
                .expect("the socket is open")
                .expect("a message");
            assert_eq!(back, msg);
        }
    }
    gw.stop().await;
}

/// The `Sec-WebSocket-Key` of every handshake to [`eager_echo_server`], so
/// that it can answer before it has read the request.
const FIXED_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// An echo server that sends its 101 and its greeting the moment it accepts
/// a connection, before the request has even arrived: the gateway then
/// finds the answer waiting as soon as it has sent the request. In that
/// order Pingora 0.9.1 took the end of the handshake request's (empty) body
/// for the end of the tunnel and closed it (cloudflare/pingora#946; the
/// patched copy in `vendor/pingora-proxy` fixes it).
async fn eager_echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let accept = derive_accept_key(FIXED_KEY.as_bytes());
                let mut answer = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                )
                .into_bytes();
                // An unmasked text frame, as a server sends it.
                answer.extend_from_slice(&[0x81, GREETING.len() as u8]);
                answer.extend_from_slice(GREETING.as_bytes());
                if stream.write_all(&answer).await.is_err() {
                    return;
                }
                // Then the request's head; what follows it is frames already.
                let mut read = Vec::new();
                let mut chunk = [0u8; 1024];
                let head_end = loop {
                    if let Some(i) = read.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read.extend_from_slice(&chunk[..n]),
                    }
                };
                let frames = read.split_off(head_end);
                let mut ws =
                    WebSocketStream::from_partially_read(stream, frames, Role::Server, None).await;
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// The gateway may read the upstream's 101 before it has finished with the
/// handshake request: the socket stays open both ways all the same. Each
/// socket met the failing order about one time in two before the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_answering_at_once_keeps_the_socket_open() {
    let upstream = eager_echo_server().await;
    let gw = Gateway::start(&support::standard_config(upstream)).await;
    let auth = format!("Bearer {}", gw.token("o-eager", None, None));
    for i in 0..20 {
        let mut ws = connect(
            gw.addr,
            &[("Authorization", &auth), ("Sec-WebSocket-Key", FIXED_KEY)],
        )
        .await
        .expect("handshake through wxgate");
        let msg = Message::text(format!("message {i}"));
        ws.send(msg.clone()).await.unwrap();
        let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("the echo in time")
            .expect("the socket is open")
            .unwrap_or_else(|e| panic!("socket {i}: {e}"));
        assert_eq!(back, msg);
    }
    gw.stop().await;
}

/// [`support::standard_config`] with no JWT leeway, and sockets on the `/`
/// route closed with their token, checked for revocation every 200 ms.
fn closing_config(upstream: SocketAddr) -> String {
    let text = support::standard_config(upstream)
        .replace(
            "audience = \"test-app\"",
            "audience = \"test-app\"\nleeway = \"0s\"",
        )
        .replace(
            "prefix = \"/\"\nupstreams",
            "prefix = \"/\"\nclose_on_token_expiry = true\nrevocation_check = \"200ms\"\nupstreams",
        );
    assert!(
        text.contains("close_on_token_expiry") && text.contains("leeway"),
        "{text}"
    );
    // Login, for `/wx/logout`: WeChat itself is never called here.
    text + "\n[wechat]\nappid = \"wx1234567890abcdef\"\nsecret = \"0123456789abcdef0123456789abcdef\"\napi_base = \"http://127.0.0.1:9\"\n"
}

/// The next message on `ws`, which must be the gateway's close frame.
async fn close_frame_of(ws: &mut Ws, within: Duration) -> (u16, String) {
    loop {
        let msg = tokio::time::timeout(within, ws.next())
            .await
            .expect("the close frame in time")
            .expect("the socket is open")
            .expect("a frame");
        match msg {
            Message::Close(Some(f)) => return (u16::from(f.code), f.reason.to_string()),
            Message::Close(None) => panic!("a close frame without a code"),
            _ => {} // echoes still on their way
        }
    }
}

/// Wait until the upstream saw `n` close frames.
async fn upstream_closes(closes: &Closes, n: usize) -> Vec<(u16, String)> {
    let seen = support::eventually(Duration::from_secs(5), || async {
        closes.lock().unwrap().len() >= n
    })
    .await;
    let got = closes.lock().unwrap().clone();
    assert!(seen, "the upstream saw {got:?}");
    got
}

/// The next message on `ws`, within 5 s.
async fn next_message(ws: &mut Ws) -> Message {
    tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a message in time")
        .expect("the socket is open")
        .expect("a message")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_closes_when_its_token_expires() {
    let (upstream, _seen, closes) = echo_server_pushing(None).await;
    let gw = Gateway::start(&closing_config(upstream)).await;
    // 3 s: `exp` is in whole seconds, so at least 2 s for the handshake and an echo.
    let token = gw.token_for("o-expiring", Duration::from_secs(3));
    let auth = format!("Bearer {token}");
    let mut ws = connect(gw.addr, &[("Authorization", &auth)]).await.unwrap();
    // Traffic before the expiry goes both ways as usual.
    ws.send(Message::text("still valid")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::text("still valid"));
    let (code, reason) = close_frame_of(&mut ws, Duration::from_secs(5)).await;
    assert_eq!((code, reason.as_str()), (4001, "token_expired"));
    assert_eq!(
        upstream_closes(&closes, 1).await,
        [(4001, "token_expired".to_string())]
    );
    // Then the connection ends.
    let end = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("the end");
    assert!(matches!(end, None | Some(Err(_))), "{end:?}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_closes_when_its_token_is_revoked() {
    let (upstream, _seen, closes) = echo_server_pushing(None).await;
    let gw = Gateway::start(&closing_config(upstream)).await;
    let token = gw.token("o-revoked", None, None);
    let auth = format!("Bearer {token}");
    let mut ws = connect(gw.addr, &[("Authorization", &auth)]).await.unwrap();
    // A second socket of someone else stays open.
    let other = format!("Bearer {}", gw.token("o-other", None, None));
    let mut bystander = connect(gw.addr, &[("Authorization", &other)])
        .await
        .unwrap();

    let header = format!("Authorization: {auth}");
    let r = support::post(
        gw.addr,
        "/wx/logout",
        Some("application/json"),
        br#"{"all": true}"#,
        &[&header],
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let (code, reason) = close_frame_of(&mut ws, Duration::from_secs(5)).await;
    assert_eq!((code, reason.as_str()), (4001, "token_revoked"));
    assert_eq!(
        upstream_closes(&closes, 1).await,
        [(4001, "token_revoked".to_string())]
    );

    bystander.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        next_message(&mut bystander).await,
        Message::text("still here")
    );
    gw.stop().await;
}

/// A logout closes the sockets of its tokens at once, on every instance:
/// the revocation is pushed, not found by the periodic check (set to 30 s
/// here, so a close within seconds can only come from the push). Memory
/// store (one instance) and Redis (socket on B, logout on A).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_closes_sockets_at_once_on_every_instance() {
    let (upstream, _seen, _closes) = echo_server_pushing(None).await;
    let slow_check =
        |text: String| text.replace("revocation_check = \"200ms\"", "revocation_check = \"30s\"");
    let memory = Gateway::start(&slow_check(closing_config(upstream))).await;
    let redis = support::redis::RedisServer::start();
    let shared = format!(
        "{}\n[store]\nkind = \"redis\"\nurl = \"{}\"\n",
        slow_check(closing_config(upstream)),
        redis.url()
    );
    let a = Gateway::start(&shared).await;
    let b = Gateway::start(&shared).await;
    for (logout_on, socket_on) in [(&memory, &memory), (&a, &b)] {
        let token = logout_on.token("o-everywhere", None, None);
        let auth = format!("Bearer {token}");
        let mut ws = connect(socket_on.addr, &[("Authorization", &auth)])
            .await
            .unwrap();
        ws.send(Message::text("hello")).await.unwrap();
        assert_eq!(next_message(&mut ws).await, Message::text("hello"));
        let header = format!("Authorization: {auth}");
        let started = std::time::Instant::now();
        let r = support::post(
            logout_on.addr,
            "/wx/logout",
            Some("application/json"),
            b"{}",
            &[&header],
        )
        .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let (code, reason) = close_frame_of(&mut ws, Duration::from_secs(3)).await;
        assert_eq!((code, reason.as_str()), (4001, "token_revoked"));
        println!("socket closed {:?} after the logout", started.elapsed());
    }
    for gw in [memory, a, b] {
        gw.stop().await;
    }
}

/// `bench/fleet.sh`: a socket open on B, its token logged out on A: how
/// long after A's answer B's close frame arrives (200 rounds, one Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run with --ignored --nocapture (bench/fleet.sh)"]
async fn measure_socket_close_after_a_logout_elsewhere() {
    const N: usize = 200;
    let (upstream, _seen, _closes) = echo_server_pushing(None).await;
    let redis = support::redis::RedisServer::start_tcp();
    let shared = format!(
        "{}\n[store]\nkind = \"redis\"\nurl = \"{}\"\n",
        closing_config(upstream)
            .replace("revocation_check = \"200ms\"", "revocation_check = \"30s\""),
        redis.url()
    );
    let a = Gateway::start(&shared).await;
    let b = Gateway::start(&shared).await;
    let mut took = Vec::with_capacity(N);
    for i in 0..N {
        let token = a.token(&format!("o-socket-{i}"), None, None);
        let auth = format!("Bearer {token}");
        let mut ws = connect(b.addr, &[("Authorization", &auth)]).await.unwrap();
        let header = format!("Authorization: {auth}");
        let r = support::post(
            a.addr,
            "/wx/logout",
            Some("application/json"),
            b"{}",
            &[&header],
        )
        .await;
        assert_eq!(r.status, 200);
        let answered = std::time::Instant::now();
        let (code, _) = close_frame_of(&mut ws, Duration::from_secs(3)).await;
        took.push(answered.elapsed());
        assert_eq!(code, 4001);
    }
    took.sort();
    println!(
        "socket on B closed after a logout on A ({N} rounds): p50 {:?}  p99 {:?}  max {:?}",
        took[N / 2],
        took[N * 99 / 100],
        took[N - 1]
    );
    for gw in [a, b] {
        gw.stop().await;
    }
}

/// Without `close_on_token_expiry`, an open socket outlives its token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elsewhere_a_socket_outlives_its_token() {
    let (upstream, _seen, closes) = echo_server_pushing(None).await;
    let text = closing_config(upstream).replace(
        "close_on_token_expiry = true\nrevocation_check = \"200ms\"\n",
        "",
    );
    let gw = Gateway::start(&text).await;
    let auth = format!(
        "Bearer {}",
        gw.token_for("o-lasting", Duration::from_secs(1))
    );
    let mut ws = connect(gw.addr, &[("Authorization", &auth)]).await.unwrap();
    // Until the gateway refuses the token: the socket is then older than it.
    let token = auth.trim_start_matches("Bearer ");
    let state = gw.running().state();
    let ended = support::eventually(Duration::from_secs(5), || async {
        state.tokens().verify(token).is_err()
    })
    .await;
    assert!(ended, "the token expired");
    ws.send(Message::text("after")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::text("after"));
    assert!(closes.lock().unwrap().is_empty());
    gw.stop().await;
}

/// Removing a key is how an operator answers a leaked one: a socket opened
/// with a token of that key closes as soon as a reload puts the keys
/// without it in force, like every request with that token is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_closes_when_a_reload_removes_its_tokens_key() {
    let (upstream, _seen, closes) = echo_server_pushing(None).await;
    let text = closing_config(upstream);
    let gw = Gateway::start(&text).await;
    let token = gw.token("o-leaked-key", None, None);
    let auth = format!("Bearer {token}");
    let mut ws = connect(gw.addr, &[("Authorization", &auth)]).await.unwrap();

    // A reload that keeps the key leaves the socket alone.
    gw.running().reload(&support::config(&text)).await.unwrap();
    ws.send(Message::text("after a reload")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Message::text("after a reload"));

    // A reload that drops it closes the socket at once (not at `exp`).
    let rekeyed = text.replace(
        "secret_env = \"WXGATE_JWT_SECRET\"",
        "secret_env = \"NEW_JWT_SECRET\"",
    );
    assert_ne!(rekeyed, text);
    let config = support::config_with(
        &rekeyed,
        &[("NEW_JWT_SECRET", "a-new-secret-after-the-leak-0123456789")],
    );
    gw.running().reload(&config).await.unwrap();
    let (code, reason) = close_frame_of(&mut ws, Duration::from_secs(5)).await;
    assert_eq!((code, reason.as_str()), (4001, "token_invalid"));
    assert_eq!(
        upstream_closes(&closes, 1).await,
        [(4001, "token_invalid".to_string())]
    );
    // The same token on a request: refused as well.
    let r = gw.get_auth("/x", &token, &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "token_invalid");
    gw.stop().await;
}

/// A session ended from another device closes its sockets at once, with
/// the reason a request with its token gets (`session_ended`), on every
/// instance: memory store (one instance) and Redis (socket on B, the
/// session ended through A). Real logins through the mock WeChat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_session_closes_its_sockets_with_session_ended() {
    let (upstream, _seen, _closes) = echo_server_pushing(None).await;
    let mock = wxgate::dev::mock_wechat::MockWechat::new(
        "wx1234567890abcdef",
        "0123456789abcdef0123456789abcdef",
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mock_addr = listener.local_addr().unwrap();
    let mock_task = tokio::spawn(mock.clone().serve(listener));
    // The push, not the periodic check (30 s), must close the socket.
    let config = closing_config(upstream)
        .replace("revocation_check = \"200ms\"", "revocation_check = \"30s\"")
        .replace("http://127.0.0.1:9", &format!("http://{mock_addr}"));
    let memory = Gateway::start(&config).await;
    let redis = support::redis::RedisServer::start();
    let shared = format!(
        "{config}\n[store]\nkind = \"redis\"\nurl = \"{}\"\n",
        redis.url()
    );
    let a = Gateway::start(&shared).await;
    let b = Gateway::start(&shared).await;
    for (i, (ended_on, socket_on)) in [(&memory, &memory), (&a, &b)].into_iter().enumerate() {
        let token = |code: String| async move {
            let r = support::login(ended_on.addr, &code).await;
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()["token"].as_str().unwrap().to_string()
        };
        let phone = token(format!("wsdev{i}.1")).await;
        let laptop = token(format!("wsdev{i}.2")).await;
        let auth = format!("Bearer {phone}");
        let mut ws = connect(socket_on.addr, &[("Authorization", &auth)])
            .await
            .unwrap();
        ws.send(Message::text("hello")).await.unwrap();
        assert_eq!(next_message(&mut ws).await, Message::text("hello"));
        // The laptop ends the phone's session.
        let listed = support::get_auth(ended_on.addr, "/wx/sessions", &laptop, &[]).await;
        assert_eq!(listed.status, 200, "{}", listed.text());
        let phone_id = listed.json()["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["current"] == false)
            .expect("the phone's session")["id"]
            .as_str()
            .unwrap()
            .to_string();
        let req = format!(
            "DELETE /wx/sessions/{phone_id} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nAuthorization: Bearer {laptop}\r\n\r\n"
        );
        let r = support::raw_request(ended_on.addr, req.as_bytes()).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let (code, reason) = close_frame_of(&mut ws, Duration::from_secs(3)).await;
        assert_eq!((code, reason.as_str()), (4001, "session_ended"));
    }
    for gw in [memory, a, b] {
        gw.stop().await;
    }
    mock_task.abort();
}
