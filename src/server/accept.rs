//! Accepting connections when the process is out of file descriptors.
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
use std::task::Poll;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

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
