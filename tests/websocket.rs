//! WebSockets through the real gateway (`wx.connectSocket({url, header})`
//! sends `Authorization`): the handshake gets the same token check, header
//! hygiene and identity injection as any request, then messages flow both
//! ways; a handshake without a valid token gets the usual 401 JSON. The
//! upstream is a real WebSocket echo server (tokio-tungstenite).
#![allow(clippy::unwrap_used, clippy::expect_used)]
// tungstenite's handshake callback returns its (large) error response by value.
#![allow(clippy::result_large_err)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

use support::Gateway;

type Seen = Arc<Mutex<Vec<Vec<(String, String)>>>>;

/// A WebSocket echo server that keeps the headers of every handshake.
async fn echo_server() -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let keep = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let keep = keep.clone();
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
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn values(headers: &[(String, String)], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .collect()
}

async fn connect(
    gw: SocketAddr,
    headers: &[(&str, &str)],
) -> Result<tokio_tungstenite::WebSocketStream<TcpStream>, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{gw}/chat").into_client_request().unwrap();
    for (n, v) in headers {
        req.headers_mut().append(
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
    for text in ["hello", "世界"] {
        ws.send(Message::text(text)).await.unwrap();
        let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(back, Message::text(text));
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    let back = ws.next().await.unwrap().unwrap();
    assert_eq!(back, Message::binary(vec![0u8, 1, 2, 255]));
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
        let err = connect(gw.addr, &headers).await.expect_err("refused");
        match err {
            tokio_tungstenite::tungstenite::Error::Http(res) => {
                assert_eq!(res.status(), 401);
                let body = res.body().clone().unwrap_or_default();
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert!(v["error"].as_str().unwrap().starts_with("token_"), "{v}");
            }
            other => panic!("expected an HTTP refusal, got {other}"),
        }
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "the upstream never saw a handshake"
    );
    gw.stop().await;
}
