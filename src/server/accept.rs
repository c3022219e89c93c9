//! The accept loop of a public listener, and accepting connections when
//! the process is out of file descriptors.
//!
//! Each accepted connection is counted against the caps (`admission`),
//! prepared (`TCP_NODELAY`, the write buffer, the TLS handshake, the read
//! deadlines) and served in a task of its own (`serve`); between requests
//! it may be parked without one (`park`).
//!
//! `accept()` fails with `EMFILE` (or `ENFILE`) when no descriptor is left
//! for the new socket; the connection then stays in the kernel's backlog,
//! the listener stays readable, and a loop that just retries either spins
//! or, backing off, leaves every client waiting without an answer. Each
//! listener's [`Listener`] holds one spare descriptor (`/dev/null`) for
//! that moment: it closes the spare, accepts the waiting connection into
//! the freed slot, closes the connection at once (the client sees the close
//! instead of a hang) and opens the spare again. If the spare cannot be
//! reopened (another task took the slot) it backs off briefly and tries
//! again. The caps derived from the limit (`descriptors`) keep this rare;
//! this is what happens when something else ate the descriptors.
//!
//! Errors about one connection (reset or aborted before it was accepted)
//! are skipped; any other error is logged and retried after a pause. The
//! loop never stops.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use pingora_core::protocols::tls::server::handshake;
use pingora_core::protocols::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::admission::Connections;
use super::park::{Conn, Park};
use super::serve::{self, App, Serving};
use crate::conn::buffered::Buffered;
use crate::conn::deadline::Deadlined;
use crate::conn::tcp::Tcp;
use crate::conn::ConnLimits;
use crate::relay::Relay;

/// `EMFILE` and `ENFILE`: the same numbers on Linux, the BSDs and macOS.
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

/// How long to wait before accepting again when nothing else helps.
const PAUSE: Duration = Duration::from_millis(10);

/// A listener that always hands back the next connection, whatever
/// `accept()` fails with on the way.
#[derive(Debug)]
pub(crate) struct Listener {
    listener: TcpListener,
    /// Freed to make room for a connection that would otherwise wait.
    spare: Option<File>,
    /// Connections closed for want of a descriptor.
    shed_count: u64,
}

impl Listener {
    pub(crate) fn new(listener: TcpListener) -> Self {
        Self {
            listener,
            spare: open_spare(),
            shed_count: 0,
        }
    }

    /// The next connection and its peer.
    pub(crate) async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            if self.spare.is_none() {
                self.spare = open_spare();
            }
            match self.listener.accept().await {
                Ok(accepted) => return accepted,
                Err(e) if out_of_descriptors(&e) => self.shed().await,
                Err(e) if about_one_connection(&e) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(PAUSE).await;
                }
            }
        }
    }

    /// Close the waiting connection through the spare descriptor's slot, or
    /// pause if there is no spare to give up.
    async fn shed(&mut self) {
        self.shed_count = self.shed_count.saturating_add(1);
        if self.shed_count.is_power_of_two() {
            tracing::warn!(
                shed = self.shed_count,
                "out of file descriptors: a new connection was closed at once"
            );
        }
        let Some(spare) = self.spare.take() else {
            tokio::time::sleep(PAUSE).await;
            return;
        };
        drop(spare);
        // One try, without waiting: the listener is readable.
        let waiting = std::future::poll_fn(|cx| Poll::Ready(self.listener.poll_accept(cx))).await;
        if let Poll::Ready(Ok((stream, _))) = waiting {
            drop(stream);
        }
        self.spare = open_spare();
        if self.spare.is_none() {
            tokio::time::sleep(PAUSE).await;
        }
    }
}

pub(super) async fn accept_loop(
    listener: TcpListener,
    (app, relay, h2): (Arc<App>, Option<Arc<Relay>>, Option<Arc<Relay>>),
    tls: Option<Arc<pingora_core::listeners::tls::Acceptor>>,
    mut shutdown: watch::Receiver<bool>,
    connections: Arc<Connections>,
    limits: ConnLimits,
) {
    let mut listener = Listener::new(listener);
    let serving = Arc::new_cyclic(|me: &std::sync::Weak<Serving>| {
        let (me, closing) = (me.clone(), shutdown.clone());
        // A parked connection whose next request starts gets a task again.
        let resume = move |conn| {
            if let Some(serving) = me.upgrade() {
                let shutdown = closing.clone();
                tokio::spawn(async move { serve::keep_alive(&serving, conn, &shutdown).await });
            }
        };
        let park = Park::start(resume, shutdown.clone(), connections.clone());
        Serving {
            app,
            relay,
            h2,
            park,
        }
    });
    loop {
        let (tcp, peer) = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let Ok(admitted) = connections.admit(peer.ip()) else {
            // Over a limit: closed at once, before anything is read.
            drop(tcp);
            continue;
        };
        let serving = serving.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            // Boxed: the handshake's state (large with TLS) is freed once done
            // instead of sizing every connection's task for it.
            let Some(stream) = Box::pin(prepare(tcp, peer, tls.as_deref(), limits)).await else {
                return;
            };
            let (peer, settings) = (peer.ip(), None);
            let conn = Conn {
                stream,
                peer,
                settings,
                admitted,
            };
            serve::serve(&serving, conn, &shutdown).await;
        });
    }
}

/// TCP_NODELAY, write buffer, peer address for logs and `X-Forwarded-For`,
/// TLS handshake (within `header_timeout`), read deadlines.
async fn prepare(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<&pingora_core::listeners::tls::Acceptor>,
    limits: ConnLimits,
) -> Option<Stream> {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let stream = Buffered::new(Tcp::new(tcp, peer));
    let stream: Stream = match tls {
        None => Box::new(stream),
        Some(acceptor) => {
            match tokio::time::timeout(limits.header_timeout, handshake(acceptor, stream)).await {
                Ok(Ok(s)) => Box::new(s),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return None;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return None;
                }
            }
        }
    };
    Some(Box::new(Deadlined::new(stream, limits)))
}

fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}

fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(EMFILE | ENFILE))
}

/// Accept errors that concern one connection only.
fn about_one_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_descriptors_is_emfile_or_enfile_only() {
        assert!(out_of_descriptors(&io::Error::from_raw_os_error(EMFILE)));
        assert!(out_of_descriptors(&io::Error::from_raw_os_error(ENFILE)));
        assert!(!out_of_descriptors(&io::Error::from(
            io::ErrorKind::ConnectionReset
        )));
        assert!(about_one_connection(&io::Error::from(
            io::ErrorKind::ConnectionAborted
        )));
    }
}
