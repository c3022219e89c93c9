//! A write buffer in front of each accepted connection.
//!
//! Pingora's own listeners give every accepted socket a small write buffer;
//! a stream built with `Stream::from(TcpStream)` has none, and the buffer size
//! cannot be set from outside Pingora. Without one, Pingora's HTTP/1 server
//! sends a response header and its body in two `send` calls (it flushes at the
//! end of the response, not after the header). [`Buffered`] restores the
//! buffer: a small response leaves in one segment and one system call, and a
//! TLS record is written whole.
//!
//! Reads, digests, peeking and the TLS details are the inner stream's.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::listeners::DEFAULT_L4_WRITE_BUFFER_SIZE;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::SslDigest;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType, ALPN, IO,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter, ReadBuf};

/// `S` with a write buffer of Pingora's default size (one TCP segment).
#[derive(Debug)]
pub struct Buffered<S: AsyncWrite + Unpin> {
    io: BufWriter<S>,
}

/// Like Pingora's own stream: whatever is still buffered gets one
/// non-blocking attempt to leave before the connection closes.
impl<S: AsyncWrite + Unpin> Drop for Buffered<S> {
    fn drop(&mut self) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let _ = Pin::new(&mut self.io).poll_flush(&mut cx);
    }
}

impl<S: IO> Buffered<S> {
    pub fn new(inner: S) -> Self {
        Self {
            io: BufWriter::with_capacity(DEFAULT_L4_WRITE_BUFFER_SIZE, inner),
        }
    }

    fn inner(&self) -> &S {
        self.io.get_ref()
    }
}

impl<S: IO> AsyncRead for Buffered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: IO> AsyncWrite for Buffered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Flushes what is buffered, then shuts the inner stream down.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[async_trait]
impl<S: IO> Shutdown for Buffered<S> {
    async fn shutdown(&mut self) {
        if let Err(e) = AsyncWriteExt::shutdown(&mut self.io).await {
            tracing::debug!(error = %e, "connection shutdown failed");
        }
    }
}

impl<S: IO> UniqueID for Buffered<S> {
    fn id(&self) -> UniqueIDType {
        self.inner().id()
    }
}

impl<S: IO> Ssl for Buffered<S> {
    fn get_ssl(&self) -> Option<&pingora_core::protocols::tls::TlsRef> {
        self.inner().get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner().get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner().selected_alpn_proto()
    }
}

impl<S: IO> GetTimingDigest for Buffered<S> {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner().get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner().get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner().get_write_pending_time()
    }
}

impl<S: IO> GetProxyDigest for Buffered<S> {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner().get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.io.get_mut().set_proxy_digest(digest)
    }
}

impl<S: IO> GetSocketDigest for Buffered<S> {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner().get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.io.get_mut().set_socket_digest(digest)
    }
}

#[async_trait]
impl<S: IO> Peek for Buffered<S> {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.io.get_mut().try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
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
}
