//! Listeners, connections and shutdown: the process around the pipeline.
//!
//! wxgate drives Pingora's HTTP proxy ([`pingora_proxy::http_proxy`]) from its
//! own tokio listeners instead of Pingora's `Server`, for three reasons: it can
//! bind `127.0.0.1:0` and report the bound address (tests run the real gateway
//! in-process on ephemeral ports), it runs inside any tokio runtime, and
//! shutdown is a future the caller controls. Each accepted socket gets
//! `TCP_NODELAY`, a write buffer, an optional TLS handshake (rustls, HTTP/2
//! via ALPN) and is then handed to Pingora, which serves HTTP/1.1 and h2c on
//! it with keep-alive.
//!
//! Shutdown is graceful: stop accepting, mark `/readyz` not ready, let Pingora
//! close idle keep-alive connections, wait up to the grace period for requests
//! in flight, then drop the rest.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pingora_core::apps::{HttpServerOptions, ServerApp};
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::tls::server::handshake;
use pingora_core::protocols::{GetSocketDigest, SocketDigest, Stream};
use pingora_core::server::configuration::ServerConf;
use pingora_core::services::background::BackgroundService;
use pingora_proxy::HttpProxy;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

use self::buffered::Buffered;
use crate::config::{Config, TlsConfig};
use crate::proxy::Gateway;
use crate::state::GatewayState;
pub use crate::state::{Deps, StartError, TlsError};

mod buffered;

type App = HttpProxy<Gateway>;

/// A running gateway. Dropping it does not stop it; call [`Running::shutdown`].
pub struct Running {
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    state: Arc<GatewayState>,
    shutdown: watch::Sender<bool>,
    connections: Arc<ConnCounter>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// The address of the plain HTTP listener (useful when it was bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the HTTPS listener, if configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The gateway's state (keys, routes, sessions), e.g. to mint tokens in tests.
    pub fn state(&self) -> &Arc<GatewayState> {
        &self.state
    }

    /// Stop accepting, wait up to `grace` for open requests, then stop.
    pub async fn shutdown(self, grace: Duration) {
        self.state.set_ready(false);
        let _ = self.shutdown.send(true);
        for t in &self.tasks {
            // Accept loops and health checks end on the shutdown signal; the
            // abort is for health checks that are mid-probe.
            t.abort();
        }
        if tokio::time::timeout(grace, self.connections.idle())
            .await
            .is_err()
        {
            tracing::warn!(
                open = self.connections.count.load(Ordering::Acquire),
                "grace period over, closing the remaining connections"
            );
        }
    }
}

/// Counts live connections so shutdown can wait for them.
#[derive(Default)]
struct ConnCounter {
    count: AtomicUsize,
    changed: Notify,
}

impl ConnCounter {
    fn enter(self: &Arc<Self>) -> ConnGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        ConnGuard(self.clone())
    }

    async fn idle(&self) {
        loop {
            let notified = self.changed.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

struct ConnGuard(Arc<ConnCounter>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}

/// Build the gateway from a validated config, bind its listeners and start serving
/// on the current tokio runtime. Returns once the listeners are bound.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    start_with(config, Deps::from_config(config)?).await
}

/// Like [`start`], with the store and clock made by the caller (tests share a
/// store between instances and set the clock).
pub async fn start_with(config: &Config, deps: Deps) -> Result<Running, StartError> {
    let state = Arc::new(GatewayState::new(config, deps)?);
    let server_conf = Arc::new(ServerConf::default());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let connections = Arc::new(ConnCounter::default());
    let mut tasks = Vec::new();

    let plain = bind(config.server.listen).await?;
    let addr = plain.local_addr().map_err(|source| StartError::Bind {
        addr: config.server.listen,
        source,
    })?;
    let tls = match &config.server.tls {
        Some(tls) => {
            let acceptor = tls_acceptor(tls)?;
            let listener = bind(tls.listen).await?;
            let tls_addr = listener.local_addr().map_err(|source| StartError::Bind {
                addr: tls.listen,
                source,
            })?;
            Some((listener, Arc::new(acceptor), tls_addr))
        }
        None => None,
    };

    // Config loaded, listeners bound: ready before the first connection is served.
    state.set_ready(true);
    for up in &state.upstreams {
        let lb = up.lb.clone();
        let rx = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move { lb.start(rx).await }));
    }

    let app = Arc::new(app(&server_conf, state.clone(), false));
    tasks.push(tokio::spawn(accept_loop(
        plain,
        app,
        None,
        shutdown_rx.clone(),
        connections.clone(),
    )));
    let tls_addr = match tls {
        Some((listener, acceptor, tls_addr)) => {
            let app = Arc::new(self::app(&server_conf, state.clone(), true));
            tasks.push(tokio::spawn(accept_loop(
                listener,
                app,
                Some(acceptor),
                shutdown_rx.clone(),
                connections.clone(),
            )));
            Some(tls_addr)
        }
        None => None,
    };
    tracing::info!(%addr, tls = ?tls_addr, routes = config.routes.len(), "wxgate is listening");
    Ok(Running {
        addr,
        tls_addr,
        state,
        shutdown: shutdown_tx,
        connections,
        tasks,
    })
}

fn app(conf: &Arc<ServerConf>, state: Arc<GatewayState>, tls: bool) -> App {
    let mut app = pingora_proxy::http_proxy(conf, Gateway::new(state, tls));
    let mut options = HttpServerOptions::default();
    options.h2c = !tls;
    app.server_options = Some(options);
    app
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

fn tls_acceptor(tls: &TlsConfig) -> Result<pingora_core::listeners::tls::Acceptor, StartError> {
    let cert = tls.cert.to_string_lossy();
    let key = tls.key.to_string_lossy();
    // TlsSettings::build panics on unreadable files; check them first.
    match pingora_rustls::load_certs_and_key_files(&cert, &key) {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(TlsError::Empty {
                cert: cert.into_owned(),
                key: key.into_owned(),
            }
            .into())
        }
        Err(e) => return Err(TlsError::Load(e).into()),
    }
    let mut settings = TlsSettings::intermediate(&cert, &key).map_err(TlsError::Load)?;
    settings.enable_h2();
    Ok(settings.build())
}

async fn accept_loop(
    listener: TcpListener,
    app: Arc<App>,
    tls: Option<Arc<pingora_core::listeners::tls::Acceptor>>,
    mut shutdown: watch::Receiver<bool>,
    connections: Arc<ConnCounter>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let guard = connections.enter();
        let app = app.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let Some(stream) = prepare(tcp, peer, tls.as_deref()).await else {
                return;
            };
            let mut next = app.process_new(stream, &shutdown).await;
            while let Some(stream) = next {
                next = app.process_new(stream, &shutdown).await;
            }
        });
    }
}

/// TCP_NODELAY, write buffer, peer address for logs and `X-Forwarded-For`,
/// TLS handshake.
async fn prepare(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<&pingora_core::listeners::tls::Acceptor>,
) -> Option<Stream> {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let fd = tcp.as_raw_fd();
    let mut stream = Buffered::new(L4Stream::from(tcp));
    let digest = SocketDigest::from_raw_fd(fd);
    let _ = digest.peer_addr.set(Some(peer.into()));
    stream.set_socket_digest(digest);
    match tls {
        None => Some(Box::new(stream)),
        Some(acceptor) => {
            match tokio::time::timeout(Duration::from_secs(10), handshake(acceptor, stream)).await {
                Ok(Ok(s)) => Some(Box::new(s)),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    None
                }
            }
        }
    }
}
