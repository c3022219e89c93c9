//! The write buffer against a real socket pair.

use super::*;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

async fn pair() -> (Buffered<L4Stream>, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = TcpStream::connect(addr).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (Buffered::new(L4Stream::from(server)), client)
}

#[tokio::test]
async fn writes_wait_for_a_flush_and_arrive_in_order() {
    let (mut server, mut client) = pair().await;
    server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
    server.write_all(b"ok").await.unwrap();
    // Nothing has left yet.
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(50), client.read(&mut byte)).await;
    assert!(early.is_err(), "data left before the flush");
    server.flush().await.unwrap();
    let mut got = vec![0u8; 21];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(got, b"HTTP/1.1 200 OK\r\n\r\nok");
}

#[tokio::test]
async fn shutdown_flushes_first_and_peek_rewinds() {
    let (mut server, mut client) = pair().await;
    client.write_all(b"PRI x").await.unwrap();
    let mut head = [0u8; 3];
    assert!(server.try_peek(&mut head).await.unwrap());
    assert_eq!(&head, b"PRI");
    let mut all = [0u8; 5];
    server.read_exact(&mut all).await.unwrap();
    assert_eq!(&all, b"PRI x", "peeked bytes are read again");

    server.write_all(b"bye").await.unwrap();
    Shutdown::shutdown(&mut server).await;
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"bye");
}

#[tokio::test]
async fn dropping_sends_what_is_buffered() {
    let (mut server, mut client) = pair().await;
    server.write_all(b"last words").await.unwrap();
    drop(server);
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"last words");
}

#[tokio::test]
async fn digests_are_the_inner_streams() {
    let (mut server, _client) = pair().await;
    let fd = server.inner().id();
    assert!(server.get_socket_digest().is_none());
    server.set_socket_digest(SocketDigest::from_raw_fd(fd));
    assert!(server.get_socket_digest().is_some());
    assert_eq!(server.id(), fd);
    assert!(server.get_ssl().is_none());
}

#[tokio::test]
async fn the_buffer_exists_only_until_it_is_sent() {
    let (mut server, mut client) = pair().await;
    assert_eq!(server.buf.capacity(), 0, "no buffer before a write");
    server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
    assert!(server.buf.capacity() >= CAPACITY);
    server.flush().await.unwrap();
    assert_eq!(
        server.buf.capacity(),
        0,
        "an idle connection holds no buffer"
    );
    let mut got = [0u8; 19];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"HTTP/1.1 200 OK\r\n\r\n");
}

#[tokio::test]
async fn writes_of_every_size_arrive_whole_and_in_order() {
    let (mut server, mut client) = pair().await;
    let big: Vec<u8> = (0..CAPACITY * 3 + 7).map(|i| (i % 251) as u8).collect();
    let fits = vec![b'f'; CAPACITY - 10];
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        client.read_to_end(&mut all).await.unwrap();
        all
    });
    server.write_all(b"head").await.unwrap();
    server.write_all(&big).await.unwrap();
    server.write_all(&fits).await.unwrap();
    server.write_all(b"0123456789+").await.unwrap(); // does not fit beside `fits`
    let vectored = [io::IoSlice::new(b"v1"), io::IoSlice::new(b"v2")];
    assert_eq!(server.write_vectored(&vectored).await.unwrap(), 4);
    server.flush().await.unwrap();
    drop(server);
    let want = [b"head".as_slice(), &big, &fits, b"0123456789+", b"v1v2"].concat();
    assert_eq!(reader.await.unwrap(), want);
}
