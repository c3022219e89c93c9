//! The wait for a request: the linger, then the rest of the idle deadline.
//! Time is paused: it moves on only when nothing else can.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn limits() -> ConnLimits {
    ConnLimits {
        idle_timeout: Duration::from_secs(5),
        header_timeout: Duration::from_secs(2),
        body_timeout: Duration::from_secs(2),
        max_connections: 10,
        max_connections_per_ip: 10,
    }
}

/// A server side waiting for its next request, and its client.
async fn waiting() -> (Deadlined, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, client) = tokio::join!(listener.accept(), TcpStream::connect(addr));
    let (server, peer) = accepted.unwrap();
    let client = client.unwrap();
    let inner: Stream = Box::new(crate::conn::tcp::Tcp::new(server, peer));
    let d = Deadlined::new(inner, limits());
    d.enter(Phase::AwaitRequest);
    (d, client)
}

#[tokio::test(start_paused = true)]
async fn a_peek_hears_the_linger_then_the_idle_deadline() {
    let (mut d, _client) = waiting().await;
    let start = Instant::now();
    let mut byte = [0u8; 1];
    let e = d.try_peek(&mut byte).await.unwrap_err();
    assert!(is_lingered(&e), "{e}");
    assert!(start.elapsed() >= LINGER);
    assert!(start.elapsed() < limits().idle_timeout);
    // Parked: the same connection waits out the rest of its idle time.
    let e = d.try_peek(&mut byte).await.unwrap_err();
    assert!(!is_lingered(&e));
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert!(start.elapsed() >= limits().idle_timeout);
}

#[tokio::test(start_paused = true)]
async fn a_request_after_the_linger_is_read_whole() {
    let (mut d, mut client) = waiting().await;
    let mut byte = [0u8; 1];
    assert!(is_lingered(&d.try_peek(&mut byte).await.unwrap_err()));
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        client
    });
    assert!(d.try_peek(&mut byte).await.unwrap());
    assert_eq!(&byte, b"G");
    let _client = writer.await.unwrap();
    let mut got = [0u8; 18];
    d.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"GET / HTTP/1.1\r\n\r\n");
}

#[tokio::test(start_paused = true)]
async fn a_read_that_is_no_peek_goes_on_past_the_linger() {
    let (mut d, mut client) = waiting().await;
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        client.write_all(b"GET").await.unwrap();
        client
    });
    let start = Instant::now();
    let mut got = [0u8; 3];
    d.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"GET");
    assert!(start.elapsed() >= Duration::from_secs(1));
    let _client = writer.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_short_idle_timeout_has_no_linger() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, client) = tokio::join!(listener.accept(), TcpStream::connect(addr));
    let (server, peer) = accepted.unwrap();
    let _client = client.unwrap();
    let short = ConnLimits {
        idle_timeout: LINGER / 2,
        ..limits()
    };
    let mut d = Deadlined::new(Box::new(crate::conn::tcp::Tcp::new(server, peer)), short);
    d.enter(Phase::AwaitRequest);
    let mut byte = [0u8; 1];
    let e = d.try_peek(&mut byte).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
}
