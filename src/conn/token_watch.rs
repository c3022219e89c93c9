//! Closing an upgraded socket when the token that opened it ends
//! (`[[routes]] close_on_token_expiry`).
//!
//! A [`TokenWatch`] rides on the client connection's stream
//! ([`super::deadline::Deadlined`]). It sees every byte both ways, so it
//! knows where frames end ([`FrameCursor`]), and Pingora reads that stream
//! for as long as the tunnel lives (whenever its pipe to the upstream has
//! room; a stalled upstream delays the close up to its `write_timeout`), so
//! the watch can end the tunnel at any time:
//!
//! 1. at the token's `exp` plus the leeway, as soon as a revocation of the
//!    token, its family or its user arrives (both stores signal each one;
//!    a small task per socket then checks the token, from memory, and again
//!    every `revocation_check` as a safety net) and finds it revoked, or
//!    as soon as a reload puts in force keys that refuse it (its key
//!    removed: how an operator answers a leaked key),
//! 2. the client gets a close frame (code 4001, reason `token_expired`,
//!    `token_revoked` or `token_invalid`), and nothing the upstream sends
//!    after it,
//! 3. Pingora reads a close frame with the same code and reason, as if the
//!    client had sent it, passes it to the upstream, then reads the end of
//!    the stream: it ends the tunnel and closes both connections.
//!
//! A direction caught in the middle of a frame gets no close frame: its
//! connection is closed all the same.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncWrite, ReadBuf};
use tokio::task::AbortHandle;
use tokio::time::{Instant, Sleep};

use super::websocket::{close_frame, CloseReason, FrameCursor, CLOSE_CODE};
use crate::secret::Secret;
use crate::sessions::Sessions;
use crate::token::{Identity, TokenError};

/// Closes an upgraded socket when its token expires or is revoked.
pub(crate) struct TokenWatch {
    expiry: Pin<Box<Sleep>>,
    revoked: Arc<RevokedFlag>,
    /// The revocation check task, stopped when the socket ends.
    check: Option<AbortHandle>,
    /// Gateway → client: the 101 head, then the upstream's frames.
    to_client: FrameCursor,
    /// Client → gateway: the client's frames.
    from_client: FrameCursor,
    closing: Option<Closing>,
}

impl std::fmt::Debug for TokenWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenWatch")
            .field("closing", &self.closing.as_ref().map(|c| c.reason))
            .finish()
    }
}

/// What the revocation check tells the stream: nothing yet, or why the
/// token ended ([`CloseReason::Revoked`], [`CloseReason::Ended`] or
/// [`CloseReason::Invalid`]).
#[derive(Default)]
struct RevokedFlag {
    /// 0: up to now the token holds; 1: revoked; 2: refused by the keys in
    /// force; 3: its session was ended.
    revoked: AtomicU8,
    /// The task reading the client stream, woken when the flag goes up.
    reader: Mutex<Option<Waker>>,
}

impl RevokedFlag {
    fn raise(&self, reason: CloseReason) {
        let code = match reason {
            CloseReason::Invalid => 2,
            CloseReason::Ended => 3,
            _ => 1,
        };
        self.revoked.store(code, Ordering::Release);
        let waker = self
            .reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Why the token ended, once it did; until then `cx` is woken when it does.
    fn poll(&self, cx: &Context<'_>) -> Option<CloseReason> {
        if let Some(reason) = self.reason() {
            return Some(reason);
        }
        {
            let mut reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
            match reader.as_ref() {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *reader = Some(cx.waker().clone()),
            }
        }
        // Raised between the load and storing the waker: seen now.
        self.reason()
    }

    fn reason(&self) -> Option<CloseReason> {
        match self.revoked.load(Ordering::Acquire) {
            0 => None,
            2 => Some(CloseReason::Invalid),
            3 => Some(CloseReason::Ended),
            _ => Some(CloseReason::Revoked),
        }
    }
}

/// A socket being closed.
struct Closing {
    reason: CloseReason,
    /// The close frame for the client, and how much of it left.
    to_client: Vec<u8>,
    sent: usize,
    /// The close frame handed to Pingora for the upstream, and how much of
    /// it was handed.
    to_upstream: Vec<u8>,
    handed: usize,
}

/// How an open socket's token is checked against revocations, and against
/// the keys of each config a reload puts in force.
pub(crate) struct RevocationCheck {
    /// The sessions of the config the socket was opened under.
    pub sessions: Arc<Sessions>,
    pub identity: Identity,
    /// The token itself, verified again with the keys of a new config.
    pub token: Secret,
    pub every: Duration,
}

impl TokenWatch {
    /// Watch a socket whose 101 is about to be sent: it closes in
    /// `expires_in`, or once `check` finds the token revoked.
    pub(crate) fn new(expires_in: Duration, check: Option<RevocationCheck>) -> Self {
        let revoked = Arc::new(RevokedFlag::default());
        let check = check.map(|c| {
            let flag = Arc::clone(&revoked);
            tokio::spawn(watch_revocation(c, flag)).abort_handle()
        });
        Self {
            expiry: Box::pin(tokio::time::sleep(expires_in)),
            revoked,
            check,
            to_client: FrameCursor::after_http_head(),
            from_client: FrameCursor::frames(),
            closing: None,
        }
    }

    /// Whether the socket is being closed: what is written to the client
    /// from now on is dropped.
    pub(crate) fn closing(&self) -> bool {
        self.closing.is_some()
    }

    /// `bytes` went to the client.
    pub(crate) fn wrote_to_client(&mut self, bytes: &[u8]) {
        self.to_client.advance(bytes);
    }

    /// `bytes` came from the client.
    pub(crate) fn read_from_client(&mut self, bytes: &[u8]) {
        self.from_client.advance(bytes);
    }

    /// Called on every read of the client stream, before reading it.
    /// `Some`: the socket is closing and this is the read's answer (the
    /// close frame for the upstream, then the end of the stream); `None`:
    /// read the client as usual.
    pub(crate) fn poll_closing<S: AsyncWrite + Unpin>(
        &mut self,
        client: &mut S,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Option<Poll<io::Result<()>>> {
        if self.closing.is_none() {
            let reason = if let Some(reason) = self.revoked.poll(cx) {
                reason
            } else if self.expiry.as_mut().poll(cx).is_ready() {
                CloseReason::Expired
            } else {
                return None;
            };
            self.start_closing(reason);
        }
        let closing = self.closing.as_mut()?;
        // One attempt to send the client its close frame: a client that does
        // not read does not hold the socket open.
        while closing.sent < closing.to_client.len() {
            let rest = &closing.to_client[closing.sent..];
            match Pin::new(&mut *client).poll_write(cx, rest) {
                Poll::Ready(Ok(n)) if n > 0 => closing.sent = closing.sent.saturating_add(n),
                _ => closing.sent = closing.to_client.len(),
            }
        }
        let _ = Pin::new(&mut *client).poll_flush(cx);
        let rest = closing.to_upstream.get(closing.handed..).unwrap_or(&[]);
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        closing.handed = closing.handed.saturating_add(n);
        // Nothing put: the end of the stream.
        Some(Poll::Ready(Ok(())))
    }

    fn start_closing(&mut self, reason: CloseReason) {
        tracing::debug!(
            reason = reason.text(),
            "closing a WebSocket: its token ended"
        );
        if let Some(task) = self.check.take() {
            task.abort();
        }
        let to_client = if self.to_client.at_boundary() {
            close_frame(CLOSE_CODE, reason.text(), None)
        } else {
            Vec::new()
        };
        // A client's frame is masked (RFC 6455 §5.3).
        let to_upstream = if self.from_client.at_boundary() {
            close_frame(CLOSE_CODE, reason.text(), Some(rand::random()))
        } else {
            Vec::new()
        };
        self.closing = Some(Closing {
            reason,
            to_client,
            sent: 0,
            to_upstream,
            handed: 0,
        });
    }
}

impl Drop for TokenWatch {
    fn drop(&mut self) {
        if let Some(task) = self.check.take() {
            task.abort();
        }
    }
}

/// Why a revoked token's socket closes: its session was ended (the store
/// knows a reason for its family), or it was revoked (a logout).
async fn revoked_why(sessions: &Sessions, identity: &Identity) -> CloseReason {
    match identity.family.as_deref() {
        Some(family) if matches!(sessions.store().ended_reason(family).await, Ok(Some(_))) => {
            CloseReason::Ended
        }
        _ => CloseReason::Revoked,
    }
}

/// Ask the store every `every` whether the token was revoked, and verify it
/// again with the keys of each config a reload puts in force; raise the flag
/// when it was revoked or is refused. A store that cannot answer leaves the
/// socket open (the next check asks again).
async fn watch_revocation(check: RevocationCheck, flag: Arc<RevokedFlag>) {
    let RevocationCheck {
        mut sessions,
        identity,
        token,
        every,
    } = check;
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next = sessions.successor();
    // Revocations as they arrive (both stores push them); the tick stays as
    // a safety net for a store that cannot.
    let mut events = sessions.store().revocation_events();
    // A revocation that arrived between the handshake's check and the
    // subscription would otherwise wait for the tick.
    if matches!(sessions.is_revoked(&identity).await, Ok(true)) {
        flag.raise(revoked_why(&sessions, &identity).await);
        return;
    }
    loop {
        // A reload before this task began is seen at once.
        let replaced = next.borrow_and_update().clone();
        if let Some(newer) = replaced {
            if !still_accepted(&newer, &token) {
                flag.raise(CloseReason::Invalid);
                return;
            }
            sessions = newer;
            next = sessions.successor();
            events = sessions.store().revocation_events();
            continue;
        }
        tokio::select! {
            _ = revocation_arrived(&mut events) => match sessions.is_revoked(&identity).await {
                Ok(true) => {
                    flag.raise(revoked_why(&sessions, &identity).await);
                    return;
                }
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "revocation check of an open WebSocket failed"),
            },
            _ = tick.tick() => match sessions.is_revoked(&identity).await {
                Ok(true) => {
                    flag.raise(revoked_why(&sessions, &identity).await);
                    return;
                }
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "revocation check of an open WebSocket failed"),
            },
            changed = next.changed() => {
                if changed.is_err() {
                    // These sessions are gone and none replaced them: keep
                    // the last word (the expiry timer still runs).
                    return;
                }
            }
        }
    }
}

/// Resolves when revocations arrived (never, without a feed of them).
async fn revocation_arrived(events: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    match events {
        Some(rx) => {
            if rx.changed().await.is_err() {
                // The store is gone: only the tick is left.
                *events = None;
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

/// Whether the keys of `sessions` still accept `token` (its expiry is the
/// timer's business).
fn still_accepted(sessions: &Sessions, token: &Secret) -> bool {
    let Some(text) = token.expose_str() else {
        return false;
    };
    matches!(
        sessions.tokens().verify(text),
        Ok(_) | Err(TokenError::Expired)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    /// A client stream that takes what is written.
    #[derive(Default)]
    struct Sink(Vec<u8>);

    impl AsyncWrite for Sink {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.0.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    const HEAD: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";

    /// One read through the watch: `None` when the client would be read.
    async fn read(watch: &mut TokenWatch, client: &mut Sink) -> Option<Vec<u8>> {
        poll_fn(|cx| {
            let mut space = [0u8; 64];
            let mut buf = ReadBuf::new(&mut space);
            match watch.poll_closing(client, cx, &mut buf) {
                None => Poll::Ready(None),
                Some(Poll::Ready(Ok(()))) => Poll::Ready(Some(buf.filled().to_vec())),
                Some(other) => panic!("unexpected {other:?}"),
            }
        })
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn at_expiry_both_sides_get_a_close_frame_then_the_stream_ends() {
        let mut watch = TokenWatch::new(Duration::from_secs(30), None);
        let mut client = Sink::default();
        watch.wrote_to_client(HEAD);
        watch.wrote_to_client(&[0x81, 2, b'h', b'i']);
        watch.read_from_client(&[0x81, 0x81, 1, 2, 3, 4, b'x' ^ 1]);
        assert_eq!(read(&mut watch, &mut client).await, None, "not yet");
        tokio::time::advance(Duration::from_secs(31)).await;
        let upstream = read(&mut watch, &mut client).await.unwrap();
        assert!(watch.closing());
        assert_eq!(client.0, close_frame(CLOSE_CODE, "token_expired", None));
        assert_eq!(upstream[0], 0x88);
        assert_eq!(
            upstream[1],
            0x80 | 15,
            "masked, code and 13 bytes of reason"
        );
        let key = &upstream[2..6];
        let payload: Vec<u8> = upstream[6..]
            .iter()
            .zip(key.iter().cycle())
            .map(|(b, k)| b ^ k)
            .collect();
        assert_eq!(payload[..2], 4001u16.to_be_bytes());
        assert_eq!(&payload[2..], b"token_expired");
        assert_eq!(
            read(&mut watch, &mut client).await,
            Some(Vec::new()),
            "then the end"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_direction_in_the_middle_of_a_frame_gets_no_close_frame() {
        let mut watch = TokenWatch::new(Duration::ZERO, None);
        let mut client = Sink::default();
        watch.wrote_to_client(HEAD);
        watch.wrote_to_client(&[0x82, 10, 1, 2]); // 8 payload bytes to come
        watch.read_from_client(&[0x82]); // a header half-read
        let upstream = read(&mut watch, &mut client).await.unwrap();
        assert!(client.0.is_empty() && upstream.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_revoked_flag_closes_with_its_own_reason() {
        let mut watch = TokenWatch::new(Duration::from_secs(3600), None);
        let mut client = Sink::default();
        watch.wrote_to_client(HEAD);
        assert_eq!(read(&mut watch, &mut client).await, None);
        watch.revoked.raise(CloseReason::Revoked);
        let upstream = read(&mut watch, &mut client).await.unwrap();
        assert!(!upstream.is_empty());
        assert_eq!(client.0, close_frame(CLOSE_CODE, "token_revoked", None));
    }
}
