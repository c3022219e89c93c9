//! HTTP/2 streams on both paths (`[server] http2 = "wxgate"`, wxgate's own,
//! and `"pingora"`): the same answers to the client and the same request
//! at the upstream, for every kind of request and response; many streams
//! at once on one connection; and the own path really serving them.
//!
//! The client is the `h2` crate (h2c, prior knowledge), so every frame is
//! under the test's control; the upstream is a raw HTTP/1.1 server that
//! records each request head, body and the connection it came on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::{Gateway, HTTP2_PATHS};

/// One request as the upstream got it.
#[derive(Debug, Clone)]
struct Seen {
    /// The upstream connection's client port: which connection carried it.
    port: u16,
    method: String,
    target: String,
    /// Fields, names lowercased, in order.
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn values(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The fields, sorted, with the request id's value (random) left out.
    fn normalized(&self) -> Vec<(String, String)> {
        let mut f: Vec<_> = self
            .fields
            .iter()
            .map(|(n, v)| {
                let v = if n == "x-request-id" { "-" } else { v.as_str() };
                (n.clone(), v.to_string())
            })
            .collect();
        f.sort();
        f
    }
}

/// A raw HTTP/1.1 upstream. What it answers depends on the path:
/// `/r/len` a `Content-Length` body, `/r/chunked` a chunked one with a
/// trailer, `/r/close` a body until it closes, `/r/empty` a 204, `/r/big`
/// 200 000 bytes; anything else echoes the body's length.
struct RawUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

const BIG: usize = 200_000;

impl RawUpstream {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((conn, peer)) = listener.accept().await {
                tokio::spawn(serve(conn, peer.port(), record.clone()));
            }
        });
        Self { addr, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn last(&self) -> Seen {
        self.seen()
            .last()
            .cloned()
            .expect("a request reached the upstream")
    }
}

async fn serve(mut conn: TcpStream, port: u16, seen: Arc<Mutex<Vec<Seen>>>) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = read_until(&mut conn, &mut buf, b"\r\n\r\n").await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let start: Vec<&str> = lines.next().unwrap_or("").split(' ').collect();
        let fields: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let body = if let Some(len) = field("content-length") {
            let len: usize = len.parse().unwrap();
            while buf.len() < len {
                if !read_more(&mut conn, &mut buf).await {
                    return;
                }
            }
            buf.drain(..len).collect()
        } else if field("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let mut body = Vec::new();
            loop {
                let Some(end) = read_until(&mut conn, &mut buf, b"\r\n").await else {
                    return;
                };
                let size = usize::from_str_radix(
                    String::from_utf8_lossy(&buf[..end])
                        .split(';')
                        .next()
                        .unwrap()
                        .trim(),
                    16,
                )
                .unwrap();
                buf.drain(..end + 2);
                while buf.len() < size + 2 {
                    if !read_more(&mut conn, &mut buf).await {
                        return;
                    }
                }
                body.extend(buf.drain(..size));
                buf.drain(..2);
                if size == 0 {
                    break;
                }
            }
            body
        } else {
            Vec::new()
        };
        let (method, target) = (start[0].to_string(), start[1].to_string());
        let head_request = method == "HEAD";
        seen.lock().unwrap().push(Seen {
            port,
            method,
            target: target.clone(),
            fields,
            body: body.clone(),
        });
        let reply: Vec<u8> = match target.split('?').next().unwrap_or("") {
            "/r/len" => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Up: len\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\n\r\nhello".to_vec(),
            "/r/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Up: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n".to_vec(),
            "/r/close" => b"HTTP/1.1 200 OK\r\nConnection: close\r\nX-Up: close\r\n\r\nuntil it closes".to_vec(),
            "/r/empty" => b"HTTP/1.1 204 No Content\r\nX-Up: empty\r\n\r\n".to_vec(),
            "/r/big" => {
                let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n").into_bytes();
                r.extend((0..BIG).map(|i| b'a' + (i % 26) as u8));
                r
            }
            _ => {
                let text = format!("got {} bytes", body.len());
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
                    text.len()
                )
                .into_bytes()
            }
        };
        let reply = if head_request {
            let end = reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            reply[..end].to_vec()
        } else {
            reply
        };
        if conn.write_all(&reply).await.is_err() {
            return;
        }
        if target == "/r/close" {
            return;
        }
    }
}

async fn read_more(conn: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16384];
    match conn.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

async fn read_until(conn: &mut TcpStream, buf: &mut Vec<u8>, needle: &[u8]) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(needle.len()).position(|w| w == needle) {
            return Some(i);
        }
        if !read_more(conn, buf).await {
            return None;
        }
    }
}

/// An h2c connection to the gateway.
async fn connect(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// What the client got.
#[derive(Debug, PartialEq)]
struct Answer {
    status: StatusCode,
    /// The fields a client looks at, the request id's value left out.
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Send a request (its body, if any, in `pieces`; `length` declares it)
/// and read the whole answer.
async fn send(
    client: &mut h2::client::SendRequest<Bytes>,
    method: Method,
    path: &str,
    fields: &[(&str, &str)],
    pieces: &[&[u8]],
) -> Answer {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://gw.test{path}"));
    for (n, v) in fields {
        req = req.header(*n, *v);
    }
    let client = client.clone();
    let mut client = client.ready().await.unwrap();
    let (response, mut body) = client
        .send_request(req.body(()).unwrap(), pieces.is_empty())
        .unwrap();
    for (i, p) in pieces.iter().enumerate() {
        body.send_data(Bytes::copy_from_slice(p), i + 1 == pieces.len())
            .unwrap();
    }
    let response = response.await.unwrap();
    let status = response.status();
    let mut fields: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(n, _)| n.as_str() != "date")
        .map(|(n, v)| {
            let v = if n == "x-request-id" {
                "-".to_string()
            } else {
                String::from_utf8_lossy(v.as_bytes()).to_string()
            };
            (n.as_str().to_string(), v)
        })
        .collect();
    fields.sort();
    let mut recv = response.into_body();
    let mut got = Vec::new();
    while let Some(data) = recv.data().await {
        let data = data.unwrap();
        let _ = recv.flow_control().release_capacity(data.len());
        got.extend_from_slice(&data);
    }
    Answer {
        status,
        fields,
        body: got,
    }
}

async fn gateway(upstream: SocketAddr, path: &str) -> Gateway {
    let config = support::with_http2(&support::standard_config(upstream), path);
    Gateway::start(&config).await
}

/// The catalogue: every case gives the client the same answer, and the
/// upstream the same request, on both paths.
#[tokio::test]
async fn both_paths_answer_every_kind_of_stream_the_same() {
    let mut results = Vec::new();
    for path in HTTP2_PATHS {
        let up = RawUpstream::start().await;
        let gw = gateway(up.addr, path).await;
        let token = gw.token("o-h2", Some("u-h2"), Some("wx-h2"));
        let bearer = format!("Bearer {token}");
        let auth = [("authorization", bearer.as_str())];
        let mut client = connect(gw.addr).await;
        let mut seen = Vec::new();
        let mut answers = Vec::new();

        // A GET with a token and spoofed identity headers.
        let fields = [
            ("authorization", bearer.as_str()),
            ("x-openid", "o-evil"),
            ("x-wx-appid", "wx-evil"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
            ("accept", "text/plain"),
        ];
        let a = send(&mut client, Method::GET, "/r/len?q=1", &fields, &[]).await;
        assert_eq!(a.status, 200, "{path}");
        assert_eq!(a.body, b"hello", "{path}");
        assert!(
            a.fields.contains(&("x-up".into(), "len".into())),
            "{path}: {a:?}"
        );
        assert!(a
            .fields
            .iter()
            .all(|(n, _)| n != "connection" && n != "keep-alive"));
        let s = up.last();
        assert_eq!(s.target, "/r/len?q=1", "{path}");
        assert_eq!(s.values("x-openid"), ["o-h2"], "{path}");
        assert_eq!(s.values("x-unionid"), ["u-h2"], "{path}");
        assert_eq!(s.values("x-wx-appid"), ["wx-h2"], "{path}");
        assert_eq!(s.values("host"), ["gw.test"], "{path}");
        assert_eq!(s.values("x-forwarded-host"), ["gw.test"], "{path}");
        assert_eq!(s.values("x-forwarded-proto"), ["http"], "{path}");
        assert_eq!(s.values("x-forwarded-for"), ["127.0.0.1"], "{path}");
        assert!(s.values("authorization").is_empty(), "{path}");
        assert_eq!(s.values("x-request-id").len(), 1, "{path}");
        answers.push(a);
        seen.push(s);

        // A body of a declared length, in three DATA frames.
        let a = send(
            &mut client,
            Method::POST,
            "/r/echo",
            &[auth[0], ("content-length", "12")],
            &[b"abcd", b"efgh", b"ijkl"],
        )
        .await;
        assert_eq!(a.body, b"got 12 bytes", "{path}");
        let s = up.last();
        assert_eq!(s.body, b"abcdefghijkl", "{path}");
        answers.push(a);
        seen.push(s);

        // A body of no declared length (Pingora's on both paths).
        let a = send(&mut client, Method::PUT, "/r/echo", &auth, &[b"xyz", b"1"]).await;
        assert_eq!(a.body, b"got 4 bytes", "{path}");
        assert_eq!(up.last().body, b"xyz1", "{path}");
        answers.push(a);

        // Responses framed each way.
        let a = send(&mut client, Method::GET, "/r/chunked", &auth, &[]).await;
        assert_eq!(a.body, b"hello world", "{path}");
        answers.push(a);
        let a = send(&mut client, Method::GET, "/r/close", &auth, &[]).await;
        assert_eq!(a.body, b"until it closes", "{path}");
        answers.push(a);
        let a = send(&mut client, Method::GET, "/r/empty", &auth, &[]).await;
        assert_eq!((a.status.as_u16(), a.body.len()), (204, 0), "{path}");
        answers.push(a);
        let a = send(&mut client, Method::HEAD, "/r/len", &auth, &[]).await;
        assert_eq!((a.status.as_u16(), a.body.len()), (200, 0), "{path}");
        assert!(
            a.fields.contains(&("content-length".into(), "5".into())),
            "{path}"
        );
        answers.push(a);
        // More than the stream's first flow-control window.
        let a = send(&mut client, Method::GET, "/r/big", &auth, &[]).await;
        assert_eq!(a.body.len(), BIG, "{path}");
        assert!(a
            .body
            .iter()
            .enumerate()
            .all(|(i, &b)| b == b'a' + (i % 26) as u8));
        answers.push(a);

        // Refusals: no token, a bad token, an unroutable path.
        let before = up.seen().len();
        let a = send(&mut client, Method::GET, "/r/len", &[], &[]).await;
        assert_eq!(a.status, 401, "{path}");
        let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(body["error"], "token_missing", "{path}");
        for (n, v) in [
            ("content-type", "application/json"),
            ("cache-control", "no-store"),
            ("x-request-id", "-"),
        ] {
            assert!(a.fields.contains(&(n.into(), v.into())), "{path}: {a:?}");
        }
        answers.push(a);
        let a = send(
            &mut client,
            Method::GET,
            "/r/len",
            &[("authorization", "Bearer not.a.token")],
            &[],
        )
        .await;
        assert_eq!(a.status, 401, "{path}");
        answers.push(a);
        let a = send(&mut client, Method::GET, "/%2e%2e/r/len", &auth, &[]).await;
        assert_eq!(a.status, 400, "{path}");
        answers.push(a);
        assert_eq!(
            up.seen().len(),
            before,
            "{path}: a refusal reached the upstream"
        );

        // A public route, and an endpoint of the gateway.
        let a = send(&mut client, Method::GET, "/public/x", &[], &[]).await;
        assert_eq!(a.body, b"got 0 bytes", "{path}");
        assert!(up.last().values("x-openid").is_empty(), "{path}");
        answers.push(a);
        let a = send(&mut client, Method::GET, "/healthz", &[], &[]).await;
        assert_eq!(a.status, 200, "{path}");
        answers.push(a);

        results.push((answers, seen));
        gw.stop().await;
    }
    let (own, pingora) = (&results[0], &results[1]);
    for (i, (a, b)) in own.0.iter().zip(&pingora.0).enumerate() {
        assert_eq!(a, b, "answer {i}: wxgate, then pingora");
    }
    for (i, (a, b)) in own.1.iter().zip(&pingora.1).enumerate() {
        assert_eq!(
            (&a.method, &a.target, a.normalized(), &a.body),
            (&b.method, &b.target, b.normalized(), &b.body),
            "upstream request {i}: wxgate, then pingora"
        );
    }
}

/// Streams served by the own path go out on the relay's idle upstream
/// connections, the ones HTTP/1.1 requests left there; Pingora's proxy has
/// a pool of its own.
#[tokio::test]
async fn the_own_path_serves_streams_on_the_relays_upstream_connections() {
    for path in HTTP2_PATHS {
        let up = RawUpstream::start().await;
        let gw = gateway(up.addr, path).await;
        let token = gw.token("o-pool", None, None);
        let h1 = support::get_auth(gw.addr, "/r/len", &token, &[]).await;
        assert_eq!(h1.status, 200);
        let mut client = connect(gw.addr).await;
        let bearer = format!("Bearer {token}");
        let a = send(
            &mut client,
            Method::GET,
            "/r/len",
            &[("authorization", &bearer)],
            &[],
        )
        .await;
        assert_eq!(a.status, 200);
        let seen = up.seen();
        assert_eq!(seen.len(), 2);
        let same = seen[0].port == seen[1].port;
        assert_eq!(same, path == "wxgate", "{path}: {seen:?}");
        gw.stop().await;
    }
}

/// Many streams at once on one connection each get their own answer.
#[tokio::test]
async fn many_streams_at_once_on_one_connection() {
    for path in HTTP2_PATHS {
        let up = RawUpstream::start().await;
        let gw = gateway(up.addr, path).await;
        let bearer = format!("Bearer {}", gw.token("o-many", None, None));
        let client = connect(gw.addr).await;
        let mut tasks = Vec::new();
        for i in 0..60usize {
            let mut client = client.clone();
            let bearer = bearer.clone();
            tasks.push(tokio::spawn(async move {
                let body = vec![b'x'; i];
                let len = i.to_string();
                let a = send(
                    &mut client,
                    Method::POST,
                    &format!("/r/echo{i}"),
                    &[("authorization", &bearer), ("content-length", &len)],
                    &[&body],
                )
                .await;
                (i, a)
            }));
        }
        for t in tasks {
            let (i, a) = t.await.unwrap();
            assert_eq!(a.status, 200, "{path}");
            assert_eq!(a.body, format!("got {i} bytes").as_bytes(), "{path}");
        }
        assert_eq!(up.seen().len(), 60, "{path}");
        gw.stop().await;
    }
}

/// An upstream that is down gets the same JSON 502 on both paths.
#[tokio::test]
async fn an_upstream_that_is_down_is_a_502_on_both_paths() {
    let dead = support::dead_addr().await;
    let mut answers = Vec::new();
    for path in HTTP2_PATHS {
        let gw = gateway(dead, path).await;
        let bearer = format!("Bearer {}", gw.token("o-down", None, None));
        let mut client = connect(gw.addr).await;
        let a = send(
            &mut client,
            Method::GET,
            "/x",
            &[("authorization", &bearer)],
            &[],
        )
        .await;
        assert_eq!(a.status, 502, "{path}");
        let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(body["error"], "upstream_unavailable", "{path}");
        answers.push(a);
        gw.stop().await;
    }
    assert_eq!(answers[0], answers[1]);
}

/// A stream whose body never comes is ended after `body_timeout` on the
/// own path: it does not hold its upstream connection, nor keep the
/// connection from closing when idle. (Pingora's path waits for the
/// upstream instead, up to the route's `read_timeout`.)
#[tokio::test]
async fn a_stream_whose_body_never_comes_is_ended_after_body_timeout() {
    {
        let path = "wxgate";
        let up = RawUpstream::start().await;
        let config = support::with_http2(&support::standard_config(up.addr), path).replacen(
            "[server]\n",
            "[server]\nbody_timeout = \"300ms\"\n",
            1,
        );
        let gw = Gateway::start(&config).await;
        let bearer = format!("Bearer {}", gw.token("o-slow", None, None));
        let client = connect(gw.addr).await;
        let mut client = client.ready().await.unwrap();
        let req = Request::builder()
            .method(Method::POST)
            .uri("http://gw.test/r/echo")
            .header("authorization", &bearer)
            .header("content-length", "100")
            .body(())
            .unwrap();
        // The body is announced, never sent.
        let (response, _body) = client.send_request(req, false).unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(10), response).await;
        let ended = ended.unwrap_or_else(|_| panic!("{path}: the stream is still open"));
        // Reset, or answered with an error: either way not left hanging.
        if let Ok(r) = ended {
            assert!(
                r.status().is_client_error() || r.status().is_server_error(),
                "{path}: {r:?}"
            );
        }
        gw.stop().await;
    }
}
