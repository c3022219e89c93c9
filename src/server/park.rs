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
//! is dropped (closed). At shutdown, a parked connection whose next request
//! has already started is still served (and closed after it); every other
//! one is closed at once, as an idle one always was. `Connections::parked`
//! counts them.

use std::net::IpAddr;
use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use pingora_core::apps::HttpPersistentSettings;
use pingora_core::protocols::Stream;
use tokio::sync::{mpsc, watch};

use super::admission::{Admitted, Connections};

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
    pub(super) fn start<R>(
        resume: R,
        shutdown: watch::Receiver<bool>,
        connections: Arc<Connections>,
    ) -> Self
    where
        R: Fn(Conn) + Send + Sync + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let left = hold(rx, resume, shutdown, &connections).await;
            // Whatever is still parked is closed with the holder.
            connections.count_parked(0, left);
        });
        Self { tx }
    }

    /// Park `conn`; after shutdown it is closed instead.
    pub(super) fn park(&self, conn: Conn) {
        // A send fails only once the holder has stopped: the connection
        // is then dropped, i.e. closed.
        let _ = self.tx.send(conn);
    }
}

/// Hold parked connections until shutdown (or until no one can park any
/// more); how many were still parked then.
async fn hold<R: Fn(Conn) + Sync>(
    mut rx: mpsc::UnboundedReceiver<Conn>,
    resume: R,
    mut shutdown: watch::Receiver<bool>,
    connections: &Connections,
) -> usize {
    // One small future per parked connection, all of one type.
    let mut waiting = FuturesUnordered::new();
    let done = |(conn, ready): (Conn, bool)| {
        connections.count_parked(0, 1);
        if ready {
            resume(conn);
        }
    };
    loop {
        let closing = *shutdown.borrow();
        if closing {
            // A request that has already started is still served (the
            // connection closes after it), as it was before parking.
            rx.close();
            while let Some(conn) = rx.recv().await {
                connections.count_parked(1, 0);
                waiting.push(next_request(conn));
            }
            while let Some(Some(item)) = waiting.next().now_or_never() {
                done(item);
            }
            return waiting.len();
        }
        tokio::select! {
            biased;
            Some(item) = waiting.next(), if !waiting.is_empty() => done(item),
            parked = rx.recv() => match parked {
                Some(conn) => {
                    connections.count_parked(1, 0);
                    waiting.push(next_request(conn));
                }
                None => return waiting.len(),
            },
            changed = shutdown.changed() => {
                if changed.is_err() {
                    // No one can signal a shutdown any more: no gateway.
                    return waiting.len();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::deadline::Deadlined;
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A connection as the server holds it, with its client.
    async fn conn(connections: &Arc<Connections>) -> (Conn, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, client) = tokio::join!(listener.accept(), TcpStream::connect(addr));
        let (socket, peer) = accepted.unwrap();
        let limits = crate::conn::ConnLimits {
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: 4,
            max_connections_per_ip: 4,
        };
        let tcp = crate::conn::tcp::Tcp::new(socket, peer);
        let stream: Stream = Box::new(Deadlined::new(Box::new(tcp), limits));
        let admitted = connections.admit(peer.ip()).unwrap();
        let conn = Conn {
            stream,
            peer: peer.ip(),
            settings: None,
            admitted,
        };
        (conn, client.unwrap())
    }

    /// At shutdown, a parked connection whose request has arrived is
    /// resumed (served, then closed); an idle one is closed at once.
    #[tokio::test(flavor = "current_thread")]
    async fn at_shutdown_a_started_request_is_still_served() {
        let connections = Arc::new(Connections::new(4, 4));
        let (busy, mut busy_client) = conn(&connections).await;
        let (idle, mut idle_client) = conn(&connections).await;
        busy_client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        // The request's bytes are on the server's socket before the park.
        let (mut busy, mut byte) = (busy, [0u8; 1]);
        assert!(busy.stream.try_peek(&mut byte).await.unwrap());
        let resumed = Arc::new(Mutex::new(Vec::new()));
        let seen = resumed.clone();
        let (tx, rx) = watch::channel(true);
        // The holder has not run yet (one thread): it starts shut down.
        let park = Park::start(
            move |c: Conn| seen.lock().unwrap().push(c),
            rx,
            connections.clone(),
        );
        park.park(busy);
        park.park(idle);
        let mut closed = [0u8; 1];
        let n = idle_client.read(&mut closed).await.unwrap();
        assert_eq!(n, 0, "the idle connection is closed");
        assert_eq!(
            resumed.lock().unwrap().len(),
            1,
            "the started request is served"
        );
        assert_eq!(connections.parked(), 0);
        assert_eq!(connections.open(), 1);
        drop(tx);
    }
}
