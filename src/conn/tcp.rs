//! An accepted TCP connection as Pingora's `IO`, holding no more than the
//! socket and its peer.
//!
//! Pingora's own `l4::Stream` (416 bytes) carries a read/write buffer
//! wrapper, timing and tracing fields, and a `SocketDigest` (392 bytes, in
//! its own allocation) set when the connection is accepted. Every idle
//! keep-alive connection paid for both. [`Tcp`] is the socket, the peer's
//! address and, only once something asks for it (Pingora's path reads the
//! client address through it), the digest.
//!
//! Reads and writes go straight to the socket: the write buffer is
//! [`super::buffered::Buffered`]'s, peeking and deadlines are
//! [`super::deadline::Deadlined`]'s.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use async_trait::async_trait;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// An accepted connection: the socket and who is on the other end.
#[derive(Debug)]
pub(crate) struct Tcp {
    socket: TcpStream,
    peer: SocketAddr,
    /// Built on first use; set by Pingora's callers otherwise.
    digest: OnceLock<Arc<SocketDigest>>,
}

impl Tcp {
    pub(crate) fn new(socket: TcpStream, peer: SocketAddr) -> Self {
        Self {
            socket,
            peer,
            digest: OnceLock::new(),
        }
    }
}

impl AsyncRead for Tcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Tcp {
    async fn shutdown(&mut self) {
        if let Err(e) = AsyncWriteExt::shutdown(&mut self.socket).await {
            tracing::debug!(error = %e, "connection shutdown failed");
        }
    }
}

impl UniqueID for Tcp {
    fn id(&self) -> UniqueIDType {
        self.socket.as_raw_fd()
    }
}

/// Plain TCP: no TLS details.
impl Ssl for Tcp {}

impl GetTimingDigest for Tcp {
    /// No timings are kept (wxgate logs its own). Pingora's `l4::Stream`
    /// reports when the connection was established; nothing wxgate or the
    /// Pingora code it runs reads that, but a Pingora logging hook would
    /// see an empty list here.
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        Vec::new()
    }
}

impl GetProxyDigest for Tcp {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        None
    }
}

impl GetSocketDigest for Tcp {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        let digest = self.digest.get_or_init(|| {
            let digest = SocketDigest::from_raw_fd(self.socket.as_raw_fd());
            let _ = digest.peer_addr.set(Some(self.peer.into()));
            Arc::new(digest)
        });
        Some(digest.clone())
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.digest = OnceLock::from(Arc::new(digest));
    }
}

/// Peeking is [`super::deadline::Deadlined`]'s (it reads ahead and keeps
/// the bytes); the socket itself does not peek.
impl Peek for Tcp {}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// An accepted connection as [`Tcp`], its peer, and the client.
    async fn accepted() -> (Tcp, SocketAddr, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, client) = tokio::join!(listener.accept(), TcpStream::connect(addr));
        let (socket, peer) = accepted.unwrap();
        (Tcp::new(socket, peer), peer, client.unwrap())
    }

    #[tokio::test]
    async fn the_digest_names_the_peer_and_is_built_once() {
        let (tcp, peer, _client) = accepted().await;
        let first = tcp.get_socket_digest().unwrap();
        let named = first.peer_addr().and_then(|a| a.as_inet().copied());
        assert_eq!(named, Some(peer));
        let again = tcp.get_socket_digest().unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let size = std::mem::size_of::<Tcp>();
        assert!(size < 128, "{size} bytes");
    }

    #[tokio::test]
    async fn bytes_go_both_ways() {
        let (mut tcp, _, mut client) = accepted().await;
        client.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        tcp.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        tcp.write_all(b"pong").await.unwrap();
        Shutdown::shutdown(&mut tcp).await;
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"pong");
    }
}
