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
//! The buffer exists only while a response is being written: it is allocated
//! by the first buffered write and freed once a flush has sent it, so an idle
//! keep-alive connection holds none (`bench/conns.sh`).
//!
//! Reads, digests, peeking and the TLS details are the inner stream's.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::listeners::DEFAULT_L4_WRITE_BUFFER_SIZE;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::SslDigest;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType, ALPN, IO,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Buffer size: Pingora's default (one TCP segment).
const CAPACITY: usize = DEFAULT_L4_WRITE_BUFFER_SIZE;

/// `S` with a write buffer of up to [`CAPACITY`] bytes, allocated only while
/// there is something to send.
#[derive(Debug)]
pub(crate) struct Buffered<S: AsyncWrite + Unpin> {
    inner: S,
    /// Bytes waiting for a flush; no allocation when empty.
    buf: Vec<u8>,
    /// How much of `buf` has already been sent.
    sent: usize,
}

/// Like Pingora's own stream: whatever is still buffered gets one
/// non-blocking attempt to leave before the connection closes.
impl<S: AsyncWrite + Unpin> Drop for Buffered<S> {
    fn drop(&mut self) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let _ = self.poll_send_buffer(&mut cx);
    }
}

impl<S: AsyncWrite + Unpin> Buffered<S> {
    /// Send what is buffered, then free the buffer.
    fn poll_send_buffer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(rest) = self.buf.get(self.sent..).filter(|r| !r.is_empty()) {
            match ready!(Pin::new(&mut self.inner).poll_write(cx, rest)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.sent = self.sent.saturating_add(n),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        self.buf = Vec::new();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Make room for `incoming` more bytes: send the buffer if they would
    /// not fit beside it.
    fn poll_room_for(&mut self, cx: &mut Context<'_>, incoming: usize) -> Poll<io::Result<()>> {
        if self.buf.len().saturating_add(incoming) > CAPACITY {
            ready!(self.poll_send_buffer(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn buffer(&mut self) -> &mut Vec<u8> {
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(CAPACITY);
        }
        &mut self.buf
    }
}

impl<S: IO> Buffered<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            sent: 0,
        }
    }

    fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: IO> AsyncRead for Buffered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: IO> AsyncWrite for Buffered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_room_for(cx, data.len()))?;
        if data.len() >= CAPACITY {
            // Too big to be worth copying: straight through.
            return Pin::new(&mut self.inner).poll_write(cx, data);
        }
        self.buffer().extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total = bufs.iter().fold(0usize, |n, b| n.saturating_add(b.len()));
        ready!(self.poll_room_for(cx, total))?;
        if total >= CAPACITY {
            return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        }
        let buf = self.buffer();
        for b in bufs {
            buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_buffer(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    /// Flushes what is buffered, then shuts the inner stream down.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_buffer(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl<S: IO> Shutdown for Buffered<S> {
    async fn shutdown(&mut self) {
        if let Err(e) = AsyncWriteExt::shutdown(self).await {
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
        self.inner.set_proxy_digest(digest)
    }
}

impl<S: IO> GetSocketDigest for Buffered<S> {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner().get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl<S: IO> Peek for Buffered<S> {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests;
