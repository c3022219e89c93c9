//! Read deadlines on a client connection: idle, request headers, request body.
//!
//! Pingora bounds each `read()` on its own, never a whole request, and after
//! the first request an HTTP/1 keep-alive connection may idle forever. So a
//! client sending one byte every few seconds could hold a connection (and a
//! file descriptor) for good. [`Deadlined`] wraps every accepted stream (the
//! decrypted one, for TLS) and fails a read with `TimedOut` once the
//! deadline of the phase the connection is in has passed:
//!
//! | phase | deadline, counted from | ends when |
//! |---|---|---|
//! | waiting for a request | `idle_timeout`, the end of the last response (or the accept) | the first byte of a request arrives |
//! | … of which the first [`LINGER`] | (a peek past it hears [`is_lingered`]: the connection is parked) | |
//! | reading request headers | `header_timeout`, that first byte | the proxy has the whole header ([`Phase::Body`] or [`Phase::Open`]) |
//! | reading the body | `body_timeout`, the end of the headers | the body is complete ([`Phase::Open`]) |
//! | open | none (the upstream's own timeouts apply) | the response is sent ([`Phase::AwaitRequest`]) |
//!
//! The proxy hooks move a connection between phases through
//! [`Deadlined::of`] and [`Deadlined::enter`]. An HTTP/2 connection (its
//! preface `PRI * HTTP/2.0` seen as the first bytes) is left to the h2 idle
//! timeout once its preface arrived: its streams are multiplexed, no one
//! request owns the connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::SslDigest;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::limits::ConnLimits;
use super::token_watch::TokenWatch;

/// Where a request on the connection stands; set by the proxy hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    /// Between requests: idle until a byte arrives, then reading headers.
    AwaitRequest = 0,
    /// The headers are in; the body is being read.
    Body = 1,
    /// Nothing more to read for this request (or HTTP/2): no deadline.
    Open = 2,
}

/// The phase value of a wait for the next request that no read has seen yet.
const NEW_WAIT: u8 = 3;

/// How long a keep-alive connection waits for its next request in its own
/// task. A peek still waiting past it fails with [`is_lingered`], and the
/// listener parks the connection without a task (`server::park`) for the
/// rest of its idle time. Requests in a burst keep their task; a connection
/// really idle holds the least memory. Reads other than peeks just go on.
pub(crate) const LINGER: Duration = Duration::from_millis(200);

/// What a peek past [`LINGER`] fails with.
#[derive(Debug, thiserror::Error)]
#[error("no request within the linger time")]
struct Lingered;

/// Whether a peek failed only because the connection lingered idle past
/// [`LINGER`] (it is still open and still under its idle deadline).
pub(crate) fn is_lingered(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Lingered>())
}

impl Phase {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::AwaitRequest,
            1 => Self::Body,
            _ => Self::Open,
        }
    }
}

/// What the timer currently measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Armed {
    /// The first [`LINGER`] of an idle wait.
    Linger,
    Idle,
    Header,
    Body,
    Off,
}

/// A client stream whose reads fail once the current phase's deadline passes.
pub(crate) struct Deadlined {
    inner: Stream,
    limits: ConnLimits,
    /// Set by the hooks (through `&self`), read by `poll_read`.
    phase: AtomicU8,
    armed: Armed,
    timer: Pin<Box<Sleep>>,
    /// When the current wait for a request ends (the idle deadline).
    idle_until: Instant,
    /// A peek is reading: only a peek hears that the linger is over.
    peeking: bool,
    /// No byte read yet: the next one tells HTTP/1 from the HTTP/2 preface.
    fresh: bool,
    /// Bytes read ahead by [`Peek::try_peek`], handed out first by reads.
    peeked: Vec<u8>,
    /// An HTTP/2 connection: deadlines no longer apply.
    h2: bool,
    /// An upgraded socket that closes when its token ends; set through
    /// `&self` by the proxy hooks, used through `&mut self` (no locking).
    watch: Mutex<Option<Box<TokenWatch>>>,
}

impl std::fmt::Debug for Deadlined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deadlined")
            .field("armed", &self.armed)
            .field("inner", &self.inner)
            .finish()
    }
}

impl Deadlined {
    /// Wrap a freshly accepted (and, for TLS, handshaken) stream: the idle
    /// deadline runs from now.
    pub(crate) fn new(inner: Stream, limits: ConnLimits) -> Self {
        let idle_until = Instant::now() + limits.idle_timeout;
        Self {
            inner,
            limits,
            phase: AtomicU8::new(Phase::AwaitRequest as u8),
            armed: Armed::Idle,
            timer: Box::pin(tokio::time::sleep_until(idle_until)),
            idle_until,
            peeking: false,
            fresh: true,
            peeked: Vec::new(),
            h2: false,
            watch: Mutex::new(None),
        }
    }

    /// Close this connection's upgraded socket when its token ends (set
    /// before the 101 is written).
    pub(crate) fn watch_token(&self, watch: TokenWatch) {
        *self.watch.lock().unwrap_or_else(PoisonError::into_inner) = Some(Box::new(watch));
    }

    fn watch_mut(&mut self) -> Option<&mut TokenWatch> {
        self.watch
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .as_deref_mut()
    }

    /// The deadline wrapper under a Pingora stream, if it is one of ours.
    pub(crate) fn of(stream: &Stream) -> Option<&Self> {
        (**stream).as_any().downcast_ref::<Self>()
    }

    /// Move the connection to `phase` (takes effect at the next read).
    /// Entering [`Phase::AwaitRequest`] starts a new idle wait, even if no
    /// read saw the phases of the request before it.
    pub(crate) fn enter(&self, phase: Phase) {
        let v = match phase {
            Phase::AwaitRequest => NEW_WAIT,
            other => other as u8,
        };
        self.phase.store(v, Ordering::Release);
    }

    fn arm(&mut self, armed: Armed) {
        let after = match armed {
            Armed::Linger => return self.arm_wait(),
            Armed::Idle => self.limits.idle_timeout,
            Armed::Header => self.limits.header_timeout,
            Armed::Body => self.limits.body_timeout,
            Armed::Off => {
                self.armed = Armed::Off;
                return;
            }
        };
        self.timer.as_mut().reset(Instant::now() + after);
        self.armed = armed;
    }

    /// A new wait for a request: [`LINGER`] first when the idle timeout is
    /// longer, then the rest of it.
    fn arm_wait(&mut self) {
        let now = Instant::now();
        self.idle_until = now + self.limits.idle_timeout;
        if self.limits.idle_timeout > LINGER {
            self.timer.as_mut().reset(now + LINGER);
            self.armed = Armed::Linger;
        } else {
            self.timer.as_mut().reset(self.idle_until);
            self.armed = Armed::Idle;
        }
    }

    /// Follow the phase the hooks set.
    fn sync(&mut self) {
        if self.h2 {
            return;
        }
        let phase = self.phase.load(Ordering::Acquire);
        if phase == NEW_WAIT {
            // Only this reader moves it on from a new wait.
            let _ = self.phase.compare_exchange(
                NEW_WAIT,
                Phase::AwaitRequest as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            self.arm_wait();
            return;
        }
        match Phase::from_u8(phase) {
            Phase::AwaitRequest => {
                if !matches!(self.armed, Armed::Linger | Armed::Idle | Armed::Header) {
                    self.arm(Armed::Idle);
                }
            }
            Phase::Body => {
                if self.armed != Armed::Body {
                    self.arm(Armed::Body);
                }
            }
            Phase::Open => self.arm(Armed::Off),
        }
    }

    fn expired(&self) -> io::Error {
        let what = match self.armed {
            Armed::Linger | Armed::Idle => "idle connection",
            Armed::Header => "request headers",
            Armed::Body => "request body",
            Armed::Off => "connection",
        };
        io::Error::new(io::ErrorKind::TimedOut, format!("{what} took too long"))
    }

    /// Read from the inner stream under the deadline of the current phase.
    fn poll_read_deadlined(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.sync();
        if self.armed != Armed::Off && self.timer.as_mut().poll(cx).is_ready() {
            if self.armed != Armed::Linger {
                return Poll::Ready(Err(self.expired()));
            }
            // The linger is over: the rest of the idle wait.
            self.timer.as_mut().reset(self.idle_until);
            self.armed = Armed::Idle;
            if self.peeking {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::WouldBlock, Lingered)));
            }
            if self.timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(self.expired()));
            }
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let got = &buf.filled()[before..];
        if !got.is_empty() {
            if self.fresh {
                self.fresh = false;
                let n = got.len().min(H2_PREFACE_START.len());
                if got[..n] == H2_PREFACE_START[..n] {
                    self.h2 = true;
                    self.armed = Armed::Off;
                }
            }
            if matches!(self.armed, Armed::Linger | Armed::Idle) {
                self.arm(Armed::Header);
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// The HTTP/2 connection preface starts with these bytes; no HTTP/1 method does.
pub(crate) const H2_PREFACE_START: &[u8] = b"PRI ";
/// Bytes a peek reads at once (a typical request header fits).
const PEEK_CHUNK: usize = 2048;

/// The whole HTTP/2 connection preface.
pub(crate) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

impl AsyncRead for Deadlined {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let watch = this
            .watch
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .as_deref_mut();
        if let Some(watch) = watch {
            if let Some(closing) = watch.poll_closing(&mut this.inner, cx, buf) {
                return closing;
            }
        }
        let before = buf.filled().len();
        let polled = if this.peeked.is_empty() {
            this.poll_read_deadlined(cx, buf)
        } else {
            let n = this.peeked.len().min(buf.remaining());
            buf.put_slice(&this.peeked[..n]);
            this.peeked.drain(..n);
            if this.peeked.is_empty() {
                // An idle connection keeps no read-ahead buffer.
                this.peeked = Vec::new();
            }
            Poll::Ready(Ok(()))
        };
        // A watch sees every client byte, read-ahead ones included.
        if let Some(watch) = this.watch_mut() {
            watch.read_from_client(&buf.filled()[before..]);
        }
        polled
    }
}

impl AsyncWrite for Deadlined {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.watch_mut() {
            None => Pin::new(&mut this.inner).poll_write(cx, buf),
            // After its close frame, the client hears nothing more.
            Some(w) if w.closing() => Poll::Ready(Ok(buf.len())),
            Some(_) => {
                let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
                if let Some(w) = this.watch_mut() {
                    w.wrote_to_client(buf.get(..n).unwrap_or(buf));
                }
                Poll::Ready(Ok(n))
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.watch_mut() {
            None => Pin::new(&mut this.inner).poll_write_vectored(cx, bufs),
            Some(w) if w.closing() => Poll::Ready(Ok(bufs
                .iter()
                .fold(0usize, |n, b| n.saturating_add(b.len())))),
            Some(_) => {
                let written = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
                if let Some(w) = this.watch_mut() {
                    let mut left = written;
                    for b in bufs {
                        let part = b.get(..left.min(b.len())).unwrap_or(&[]);
                        w.wrote_to_client(part);
                        left = left.saturating_sub(part.len());
                    }
                }
                Poll::Ready(Ok(written))
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Deadlined {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for Deadlined {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Deadlined {
    fn get_ssl(&self) -> Option<&pingora_core::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Deadlined {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Deadlined {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Deadlined {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for Deadlined {
    /// Pingora peeks at the first bytes to tell an HTTP/2 preface from
    /// HTTP/1. The bytes are read here, under the idle and header deadlines,
    /// and handed out again by the next reads. The peek ends as soon as the
    /// bytes cannot be the preface (the rest of `buf` is zeroed), so a short
    /// HTTP/1 request is not kept waiting for bytes that will never come.
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        while self.peeked.len() < buf.len() && H2_PREFACE.starts_with(&self.peeked) {
            // Read as much as a request header usually takes, so the parser
            // gets it all from one system call; into a buffer on the stack
            // (not in this future), so that a connection waiting for its
            // next request holds no buffer at all. Only what arrived is kept.
            let read = std::future::poll_fn(|cx| {
                let mut chunk = [0u8; PEEK_CHUNK];
                let mut rb = ReadBuf::new(&mut chunk);
                self.peeking = true;
                let polled = self.poll_read_deadlined(cx, &mut rb);
                self.peeking = false;
                if polled.is_ready() {
                    self.peeked.extend_from_slice(rb.filled());
                }
                polled.map_ok(|()| rb.filled().len())
            })
            .await;
            if read? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        let n = self.peeked.len().min(buf.len());
        buf[..n].copy_from_slice(&self.peeked[..n]);
        buf[n..].fill(0);
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
