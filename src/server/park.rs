//! Idle keep-alive connections, held without a task of their own.
//!
//! A connection served by its task waits there for its next request for
//! [`LINGER`](crate::conn::deadline::LINGER). Past that it is handed here:
//! one task per listener holds every parked connection as a small future
//! (a peek at the socket under its idle deadline) and spawns a task again
//! for a connection whose next request starts. A parked connection costs
//! its socket, its stream wrappers and that future, not a task with room
//! for serving a request (`bench/conns.sh`).
//!
//! A parked connection whose idle deadline passes, or whose client leaves,
//! is dropped (closed). At shutdown, every parked connection is closed at
//! once, as an idle one always was.

use std::net::IpAddr;

use futures_util::stream::{FuturesUnordered, StreamExt};
use pingora_core::apps::HttpPersistentSettings;
use pingora_core::protocols::Stream;
use tokio::sync::{mpsc, watch};

use super::admission::Admitted;

/// A client connection between requests: what its next request needs.
pub(super) struct Conn {
    pub(super) stream: Stream,
    pub(super) peer: IpAddr,
    /// Pingora's settings from the request before (its path only).
    pub(super) settings: Option<Box<HttpPersistentSettings>>,
    /// Its place under the connection caps, held while it is open.
    pub(super) admitted: Admitted,
}

/// Where a listener's idle connections go.
#[derive(Clone)]
pub(super) struct Park {
    tx: mpsc::UnboundedSender<Conn>,
}

impl Park {
    /// Hold `conn` until its next request starts, then give it to `resume`
    /// (in a task of its own); close it when its idle time is over or the
    /// gateway shuts down.
    pub(super) fn start<R>(resume: R, shutdown: watch::Receiver<bool>) -> Self
    where
        R: Fn(Conn) + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(hold(rx, resume, shutdown));
        Self { tx }
    }

    /// Park `conn`; after shutdown it is closed instead.
    pub(super) fn park(&self, conn: Conn) {
        // A send fails only once the holder has stopped: the connection
        // is then dropped, i.e. closed.
        let _ = self.tx.send(conn);
    }
}

async fn hold<R: Fn(Conn)>(
    mut rx: mpsc::UnboundedReceiver<Conn>,
    resume: R,
    mut shutdown: watch::Receiver<bool>,
) {
    // One small future per parked connection, all of one type: no box each.
    let mut waiting = FuturesUnordered::new();
    if *shutdown.borrow() {
        return;
    }
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            parked = rx.recv() => match parked {
                Some(conn) => waiting.push(next_request(conn)),
                None => return,
            },
            Some((conn, ready)) = waiting.next(), if !waiting.is_empty() => {
                if ready {
                    resume(conn);
                }
            }
        }
    }
}

/// Wait for the first byte of the next request: `true` when it came,
/// `false` when the connection is over (closed, or idle past its deadline).
async fn next_request(mut conn: Conn) -> (Conn, bool) {
    let mut byte = [0u8; 1];
    let ready = matches!(conn.stream.try_peek(&mut byte).await, Ok(true));
    (conn, ready)
}
