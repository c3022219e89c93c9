//! Deadlines on a connection of a bounded [`super::serve_bounded`] listener:
//! idle, request headers, and a response the client does not read.
//!
//! hyper's own `header_read_timeout` starts when hyper starts waiting for a
//! request, not at its first byte: set to the header deadline it would also
//! close every keep-alive connection that idles that long, and it bounds
//! nothing else. So [`Deadlined`] wraps the socket, as `conn::deadline`
//! does for the public listeners, and fails a read or write with
//! `TimedOut` once the current phase's deadline has passed:
//!
//! | phase | deadline, counted from | ends when |
//! |---|---|---|
//! | idle | `idle_timeout`, the accept or the end of the last answer | a byte arrives |
//! | headers | `header_timeout`, that first byte | the service is called (the headers are in) |
//! | answering | none: the handler takes what it takes (a WeChat call, bounded by its own timeout) | the handler returns |
//! | writing the answer | `idle_timeout`, the handler's return | it is written, and the next byte arrives |
//!
//! The service tells the stream it is answering through [`Answering`]. A
//! handler that reads a request body (the admin API's, the OpenAPI relay's)
//! bounds its size and its time itself; otherwise hyper reads what has
//! already arrived of one after the answer and closes the connection if
//! that is not all of it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long a connection may idle, and take to send its request headers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    /// Waiting for a request (from the accept or the last answer), and
    /// writing an answer.
    pub(crate) idle: Duration,
    /// Request headers, from their first byte.
    pub(crate) header: Duration,
}

/// Set while the service answers a request: the stream then has no deadline.
#[derive(Debug, Default)]
pub(super) struct Answering(AtomicBool);

impl Answering {
    pub(super) fn set(&self, answering: bool) {
        self.0.store(answering, Ordering::Release);
    }

    fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What the timer currently measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Armed {
    Idle,
    Header,
    Off,
}

/// A socket whose reads and writes fail once the current phase's deadline passes.
#[derive(Debug)]
pub(super) struct Deadlined<S> {
    inner: S,
    deadlines: Deadlines,
    answering: Arc<Answering>,
    armed: Armed,
    timer: Pin<Box<Sleep>>,
}

impl<S> Deadlined<S> {
    /// Wrap a freshly accepted socket: the idle deadline runs from now.
    pub(super) fn new(inner: S, deadlines: Deadlines, answering: Arc<Answering>) -> Self {
        Self {
            inner,
            deadlines,
            answering,
            armed: Armed::Idle,
            timer: Box::pin(tokio::time::sleep(deadlines.idle)),
        }
    }

    fn arm(&mut self, armed: Armed) {
        self.armed = armed;
        let after = match armed {
            Armed::Idle => self.deadlines.idle,
            Armed::Header => self.deadlines.header,
            Armed::Off => return,
        };
        self.timer.as_mut().reset(Instant::now() + after);
    }

    /// Follow the service: no deadline while it answers, the idle one from
    /// the moment it has answered.
    fn follow(&mut self) {
        if self.answering.get() {
            self.armed = Armed::Off;
        } else if self.armed == Armed::Off {
            self.arm(Armed::Idle);
        }
    }

    /// The outcome of an operation that would wait: an error once the deadline passed.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if self.armed != Armed::Off && self.timer.as_mut().poll(cx).is_ready() {
            let what = match self.armed {
                Armed::Header => "request headers took too long",
                _ => "idle too long",
            };
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadlined<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.follow();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.armed == Armed::Idle && buf.filled().len() > before {
                    this.arm(Armed::Header);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.pending(cx),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadlined<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.follow();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => this.pending(cx),
            done => done,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.follow();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.pending(cx),
            done => done,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.pending(cx),
            done => done,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const DEADLINES: Deadlines = Deadlines {
        idle: Duration::from_secs(30),
        header: Duration::from_secs(5),
    };

    fn pair() -> (
        Deadlined<tokio::io::DuplexStream>,
        tokio::io::DuplexStream,
        Arc<Answering>,
    ) {
        let (ours, theirs) = tokio::io::duplex(64);
        let answering = Arc::new(Answering::default());
        (
            Deadlined::new(ours, DEADLINES, answering.clone()),
            theirs,
            answering,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn idle_then_headers_from_their_first_byte() {
        let (mut s, mut client, _) = pair();
        tokio::time::advance(Duration::from_secs(29)).await;
        client.write_all(b"G").await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(s.read(&mut buf).await.unwrap(), 1);
        // The idle deadline is behind it: the header one runs from the byte.
        let started = Instant::now();
        let e = s.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), DEADLINES.header);
    }

    #[tokio::test(start_paused = true)]
    async fn no_deadline_while_answering_and_idle_again_after() {
        let (mut s, _client, answering) = pair();
        answering.set(true);
        let mut buf = [0u8; 8];
        let wait = tokio::time::timeout(Duration::from_secs(3600), s.read(&mut buf)).await;
        assert!(wait.is_err(), "a read while answering has no deadline");
        answering.set(false);
        let started = Instant::now();
        let e = s.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), DEADLINES.idle);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_the_client_does_not_read_is_cut_off() {
        let (mut s, _client, _) = pair();
        let started = Instant::now();
        let e = s.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), DEADLINES.idle);
    }
}
