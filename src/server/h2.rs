//! One HTTP/2 connection, served in its own task: Pingora's HTTP/2 session
//! accepts each stream (and refuses the malformed ones), wxgate's own path
//! serves the streams it takes ([`Relay::serve_stream`]) in this task, and
//! Pingora's proxy serves the rest, a task each, as it serves every stream
//! of a connection without the own path.
//!
//! What Pingora's accept loop does, this one does too: a graceful
//! shutdown sends GOAWAY and serves the streams already started; a
//! connection with no stream in flight for `idle_timeout` is closed; a
//! connection that sends [`MAX_MALFORMED`] malformed streams is closed.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt};
use pingora_core::apps::HttpServerApp;
use pingora_core::protocols::http::v2::server::{handshake, H2Accept, HttpSession};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::{Digest, Stream};
use pingora_core::server::ShutdownWatch;
use tokio::sync::Notify;

use pingora_proxy::HttpProxy;

use crate::proxy::Gateway;
use crate::relay::Relay;

/// The proxy that serves the streams the own path does not take.
type App = HttpProxy<Gateway>;

/// Malformed streams a connection may send before it is closed (Pingora's
/// own bound, which its public accept call does not keep across calls).
const MAX_MALFORMED: usize = 32;

/// Serve an HTTP/2 connection whose preface has arrived.
pub(super) async fn serve(
    app: &Arc<App>,
    relay: &Relay,
    stream: Stream,
    peer: IpAddr,
    shutdown: &ShutdownWatch,
) {
    let digest = Arc::new(Digest {
        ssl_digest: stream.get_ssl_digest(),
        timing_digest: stream.get_timing_digest(),
        proxy_digest: stream.get_proxy_digest(),
        socket_digest: stream.get_socket_digest(),
    });
    let mut conn = match handshake(stream, app.h2_options()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "HTTP/2 handshake failed");
            return;
        }
    };
    let idle_timeout = app.server_options().and_then(|o| o.h2_idle_timeout);
    // Streams Pingora's proxy serves, in tasks of their own.
    let pingoras = Arc::new(InFlight::default());
    // Streams served here.
    let mut own = FuturesUnordered::new();
    let mut watch = shutdown.clone();
    let mut closing = *shutdown.borrow();
    if closing {
        conn.graceful_shutdown();
    }
    let mut malformed = 0usize;
    loop {
        let idle = own.is_empty();
        let accepted = tokio::select! {
            biased;
            _ = watch.changed(), if !closing => {
                conn.graceful_shutdown();
                closing = true;
                continue;
            }
            Some(handed) = own.next(), if !own.is_empty() => {
                if let Some(session) = handed {
                    spawn_pingora(app, session, &pingoras, shutdown);
                }
                continue;
            }
            accepted = HttpSession::from_h2_conn(&mut conn, digest.clone()) => accepted,
            () = pingoras.idle_for(idle_timeout.unwrap_or_default()), if idle && idle_timeout.is_some() => {
                // Nothing in flight for the idle timeout: close at once.
                return;
            }
        };
        match accepted {
            Ok(Some(H2Accept::Session(session))) => {
                own.push(relay.serve_stream(session, Some(peer)));
            }
            Ok(Some(H2Accept::Rejected)) => {
                malformed = malformed.saturating_add(1);
                if malformed >= MAX_MALFORMED {
                    tracing::debug!("HTTP/2 connection closed after {malformed} malformed streams");
                    return;
                }
            }
            // The connection is over (cleanly or not): streams still here
            // have nowhere to write.
            Ok(None) | Err(_) => return,
        }
    }
}

/// Hand a stream to Pingora's proxy, in a task of its own.
fn spawn_pingora(
    app: &Arc<App>,
    session: HttpSession,
    in_flight: &Arc<InFlight>,
    shutdown: &ShutdownWatch,
) {
    let app = Arc::clone(app);
    let guard = InFlight::start(in_flight);
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let _guard = guard;
        let _ = app
            .process_new_http(ServerSession::new_http2(session), &shutdown)
            .await;
    });
}

/// Streams served elsewhere, counted so that the connection's idle timeout
/// waits for them.
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

/// One stream in flight; dropped when it is done.
struct Guard(Arc<InFlight>);

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_one();
        }
    }
}

impl InFlight {
    fn start(this: &Arc<Self>) -> Guard {
        this.count.fetch_add(1, Ordering::AcqRel);
        Guard(Arc::clone(this))
    }

    /// Wait until none is in flight, then for `timeout`.
    async fn idle_for(&self, timeout: std::time::Duration) {
        while self.count.load(Ordering::Acquire) != 0 {
            self.idle.notified().await;
        }
        tokio::time::sleep(timeout).await;
    }
}
