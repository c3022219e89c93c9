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
mod tests;
