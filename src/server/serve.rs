//! One accepted connection, served with idle connections kept small.
//!
//! Pingora's own connection loop (`ServerApp::process_new`) starts every
//! keep-alive request by calling into the proxy, whose state (a boxed future
//! of ~14 KB, a 4 KB header buffer, the session) then waits for the request
//! to arrive: ~25 KB held by every idle connection. This loop does for
//! HTTP/1 what Pingora's does, but waits for the first bytes of the next
//! request in a future of a few bytes and builds the session only then.
//! HTTP/2 (ALPN `h2`, or the h2c preface) is served by `server::h2`; a
//! connection that opens like the preface but is not HTTP/2 is closed
//! unanswered.

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::BytesMut;

use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;

use pingora_proxy::HttpProxy;

use super::park::{Conn, Park};
use crate::conn::deadline::{is_lingered, H2_PREFACE, H2_PREFACE_START};
use crate::proxy::Gateway;
use crate::relay::{Next, Relay};

/// The proxy every public connection is served by.
pub(super) type App = HttpProxy<Gateway>;

/// What serves a listener's connections.
pub(super) struct Serving {
    pub(super) app: Arc<App>,
    /// wxgate's own HTTP/1 path, unless `[server] http1 = "pingora"`.
    pub(super) relay: Option<Arc<Relay>>,
    /// wxgate's own path for HTTP/2 streams, unless `[server] http2 = "pingora"`.
    pub(super) h2: Option<Arc<Relay>>,
    /// Where its idle connections wait without a task.
    pub(super) park: Park,
}

/// Serve a new connection until the client leaves, a deadline passes, the
/// gateway shuts down or it idles long enough to be parked: HTTP/1 requests
/// by the relay when it takes them (see [`crate::relay`]), the rest by
/// Pingora.
pub(super) async fn serve(serving: &Serving, mut conn: Conn, shutdown: &ShutdownWatch) {
    let mut watch = shutdown.clone();
    let tls = conn.stream.get_ssl_digest().is_some();
    let mut preface = [0u8; H2_PREFACE.len()];
    if next_request(&mut conn.stream, &mut preface, &mut watch).await != Wait::Request {
        return;
    }
    let h2 = if tls {
        matches!(conn.stream.selected_alpn_proto(), Some(ALPN::H2))
    } else {
        preface[..] == *H2_PREFACE
    };
    if !h2 && preface.starts_with(H2_PREFACE_START) {
        // `PRI` is no HTTP/1 method, only how the HTTP/2 preface reads to an
        // HTTP/1 parser (RFC 9113 §3.4): a broken preface, or one over TLS
        // without ALPN `h2`. Pingora would answer it with an HTTP/1.1 400.
        return;
    }
    if h2 {
        // The preface is peeked, not read: the HTTP/2 session reads it.
        let Conn {
            stream,
            peer,
            admitted: _admitted,
            ..
        } = conn;
        match serving.h2.as_deref() {
            // Boxed: HTTP/1 connections do not hold room for it.
            Some(relay) => {
                Box::pin(super::h2::serve(
                    &serving.app,
                    relay,
                    stream,
                    peer,
                    shutdown,
                ))
                .await;
            }
            None => {
                let _ = serving.app.process_new(stream, shutdown).await;
            }
        }
        return;
    }
    // Boxed: the first wait holds the connection, not room for a request.
    Box::pin(keep_alive(serving, conn, shutdown)).await;
}

/// Serve the HTTP/1 requests of `conn`, whose next request has started.
pub(super) async fn keep_alive(serving: &Serving, conn: Conn, shutdown: &ShutdownWatch) {
    let Conn {
        mut stream,
        peer,
        settings,
        admitted,
    } = conn;
    let mut watch = shutdown.clone();
    let mut settings = settings.map(|s| *s);
    let relay = serving.relay.as_deref();
    // Bytes of the next request the relay read past the last one.
    let mut carry = BytesMut::new();
    let mut byte = [0u8; 1];
    loop {
        let mut prefix = None;
        if let Some(relay) = relay {
            if settings.is_none() {
                let closing = *shutdown.borrow();
                // Boxed: a connection waiting for its next request holds a
                // pointer, not the state of a request being served.
                match Box::pin(relay.serve(&mut stream, Some(peer), &mut carry, closing)).await {
                    Next::KeepAlive if !carry.is_empty() => continue,
                    Next::KeepAlive => {}
                    Next::Close => return,
                    Next::Pingora(bytes) => prefix = Some(bytes),
                }
            }
        }
        if prefix.is_some() || relay.is_none() || settings.is_some() {
            let request = pingora_request(&serving.app, stream, settings.take(), prefix, shutdown);
            let Some(reused) = request.await else {
                return;
            };
            let (next, next_settings) = reused.consume();
            stream = next;
            if next_settings.as_ref().is_some_and(has_pipelined_prefix) {
                // Pingora read the start of the next request: it serves it.
                settings = next_settings;
                continue;
            }
            // Otherwise the relay takes the next one.
            settings = if relay.is_none() { next_settings } else { None };
        }
        match next_request(&mut stream, &mut byte, &mut watch).await {
            Wait::Request => {}
            Wait::Over => return,
            Wait::Idle => {
                let conn = Conn {
                    stream,
                    peer,
                    settings: settings.map(Box::new),
                    admitted,
                };
                serving.park.park(conn);
                return;
            }
        }
    }
}

/// One request on Pingora's path: the session, with the settings of the
/// request before on this connection (or Pingora's defaults and the bytes
/// the relay read), served by the proxy. Not async itself: the session
/// lives in the proxy's boxed future, not in the connection's, so an idle
/// connection does not hold room for one.
fn pingora_request<'a>(
    app: &'a Arc<App>,
    stream: Stream,
    settings: Option<HttpPersistentSettings>,
    prefix: Option<BytesMut>,
    shutdown: &'a ShutdownWatch,
) -> impl std::future::Future<Output = Option<pingora_core::apps::ReusedHttpStream>> + 'a {
    let mut session = ServerSession::new_http1(stream);
    match settings {
        Some(s) => s.apply_to_session(&mut session),
        // Pingora's defaults for a new connection; the proxy's
        // `early_request_filter` sets the idle timeout it really uses.
        None => {
            session.set_keepalive(Some(60));
            if let Some(bytes) = prefix.filter(|b| !b.is_empty()) {
                // What the relay read, for Pingora to read first.
                let mut s = HttpPersistentSettings::for_session(&session);
                s.set_pipelined_prefix(bytes);
                s.apply_to_session(&mut session);
            }
        }
    }
    if *shutdown.borrow() {
        session.set_keepalive(None);
    }
    app.process_new_http(session, shutdown)
}

/// How a wait for the next request ended.
#[derive(Debug, PartialEq, Eq)]
enum Wait {
    /// Its first bytes are here (peeked, left in the stream).
    Request,
    /// Nothing came within the linger: park the connection.
    Idle,
    /// The connection is over (closed, idle past its deadline, or the
    /// gateway is shutting down).
    Over,
}

/// Wait until the client sends the first bytes of a request (peeked into
/// `buf`, left in the stream).
async fn next_request(stream: &mut Stream, buf: &mut [u8], shutdown: &mut ShutdownWatch) -> Wait {
    if *shutdown.borrow() {
        return Wait::Over;
    }
    tokio::select! {
        biased;
        peeked = stream.try_peek(buf) => match peeked {
            Ok(true) => Wait::Request,
            Err(e) if is_lingered(&e) => Wait::Idle,
            _ => Wait::Over,
        },
        _ = shutdown.changed() => Wait::Over,
    }
}

/// Whether Pingora already read the start of the next request (a client
/// pipelining): the next session must then be built at once, as no more
/// bytes may come.
///
/// Pingora keeps those bytes in a private field of the settings; its
/// `Debug` output is the only place that says whether there are any. The
/// scan allocates nothing and stops right after the field. If a Pingora
/// upgrade renamed the field, `tests/connections.rs`
/// (`a_pipelined_request_read_whole_with_the_one_before_is_answered`) would
/// hang and fail, as would the unit test below.
fn has_pipelined_prefix(settings: &HttpPersistentSettings) -> bool {
    let mut scan = FieldScan::new("pipelined_prefix: ");
    let _ = write!(scan, "{settings:?}");
    scan.value_starts_with_some()
}

/// Finds the first `needle` in a `Debug` output as it is written, and keeps
/// the four bytes after it.
struct FieldScan {
    needle: &'static [u8],
    matched: usize,
    after: [u8; 4],
    kept: usize,
}

impl FieldScan {
    fn new(needle: &'static str) -> Self {
        Self {
            needle: needle.as_bytes(),
            matched: 0,
            after: [0; 4],
            kept: 0,
        }
    }

    fn value_starts_with_some(&self) -> bool {
        self.kept == 4 && &self.after == b"Some"
    }
}

impl std::fmt::Write for FieldScan {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        for &b in s.as_bytes() {
            if self.matched == self.needle.len() {
                if self.kept == self.after.len() {
                    // Found and read: stop formatting.
                    return Err(std::fmt::Error);
                }
                self.after[self.kept] = b;
                self.kept += 1;
            } else if self.needle.get(self.matched) == Some(&b) {
                self.matched += 1;
            } else {
                // No proper prefix of the field names repeats inside them
                // beyond one byte: restarting at this byte is exact.
                self.matched = usize::from(self.needle.first() == Some(&b));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scan_reads_the_field_value() {
        let scan = |text: &str| {
            let mut s = FieldScan::new("pipelined_prefix: ");
            let _ = s.write_str(text);
            s.value_starts_with_some()
        };
        assert!(scan("X { a: 1, pipelined_prefix: Some(b\"GET /\"), b: 2 }"));
        assert!(!scan("X { a: 1, pipelined_prefix: None, b: 2 }"));
        assert!(scan("ppipelined_prefix: Some"));
        assert!(!scan("pipelined_prefix"));
        assert!(!scan(""));
    }

    #[test]
    fn pingoras_settings_say_whether_bytes_were_read_ahead() {
        let mut settings = HttpPersistentSettings::for_session(&ServerSession::new_http1(
            Box::new(tokio_test_stream()),
        ));
        assert!(!has_pipelined_prefix(&settings));
        settings.set_pipelined_prefix(bytes::BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]));
        assert!(has_pipelined_prefix(&settings));
    }

    /// A stream that is never read: the session is only inspected.
    fn tokio_test_stream() -> pingora_core::protocols::l4::stream::Stream {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap_or_else(|e| panic!("{e}"));
        let _ = a.set_nonblocking(true);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let _guard = rt.enter();
        let s = tokio::net::UnixStream::from_std(a).unwrap_or_else(|e| panic!("{e}"));
        pingora_core::protocols::l4::stream::Stream::from(s)
    }
}

#[cfg(test)]
mod idle_size {
    use std::sync::Arc;

    /// What a connection's own future holds while it waits for a request
    /// (every connection pays it for its linger; a parked one holds no
    /// task): no session, no request state, both boxed while they run.
    /// Pingora's HTTP/1 session alone is 680 bytes.
    #[tokio::test]
    async fn a_connection_waiting_for_a_request_holds_no_session() {
        let config = crate::testing::config("", &[("/", "public")]);
        let deps = crate::state::Deps::from_config(&config).unwrap_or_else(|e| panic!("{e}"));
        let state =
            crate::state::GatewayState::new(&config, deps).unwrap_or_else(|e| panic!("{e}"));
        let swap = Arc::new(arc_swap::ArcSwap::new(Arc::new(state)));
        let conf = Arc::new(pingora_core::server::configuration::ServerConf::default());
        let gateway = crate::proxy::Gateway::new(swap.clone(), false);
        let app = Arc::new(pingora_proxy::http_proxy(&conf, gateway));
        let relay = Some(Arc::new(crate::relay::Relay::new(swap, false)));
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let connections = Arc::new(crate::server::admission::Connections::new(4, 4));
        let park = super::Park::start(|_| {}, rx.clone(), connections.clone());
        let serving = super::Serving {
            app,
            relay,
            h2: None,
            park,
        };
        let peer = std::net::IpAddr::from([127, 0, 0, 1]);
        let conn = || {
            let (a, _b) = tokio::net::UnixStream::pair().unwrap_or_else(|e| panic!("{e}"));
            let stream: pingora_core::protocols::Stream =
                Box::new(pingora_core::protocols::l4::stream::Stream::from(a));
            let admitted = connections
                .admit(peer)
                .unwrap_or_else(|_| panic!("not admitted"));
            super::Conn {
                stream,
                peer,
                settings: None,
                admitted,
            }
        };
        let first = super::serve(&serving, conn(), &rx);
        let resumed = super::keep_alive(&serving, conn(), &rx);
        let size = std::mem::size_of_val(&first).max(std::mem::size_of_val(&resumed));
        eprintln!(
            "serve future: {} bytes, resumed: {} bytes",
            std::mem::size_of_val(&first),
            std::mem::size_of_val(&resumed)
        );
        let session = std::mem::size_of::<pingora_core::protocols::http::ServerSession>();
        assert!(size < 600, "{size} bytes (a session is {session})");
    }
}
