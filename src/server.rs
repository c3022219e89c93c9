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
//! Every listener is bounded: connection caps in total and per client IP
//! ([`admission`], the internal listener with caps of its own), fitted at
//! start-up to the open-file limit (`descriptors`), and an accept loop that
//! never stops, out of descriptors included (`accept`).
//!
//! Shutdown is graceful: stop accepting, mark `/readyz` not ready, let Pingora
//! close idle keep-alive connections, wait up to the grace period for requests
//! in flight, then drop the rest.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::server::configuration::ServerConf;
use pingora_core::services::background::BackgroundService;
use tokio::net::TcpListener;
use tokio::sync::watch;

use self::admission::Connections;
use crate::config::{Config, TlsConfig};
use crate::conn::ConnLimits;
use crate::proxy::Gateway;
use crate::relay::Relay;
use crate::state::GatewayState;
pub use crate::state::{Deps, StartError, TlsError};
use crate::status::Status;
use crate::store::{Eviction, OnError};

pub(crate) mod accept;
mod admin;
pub mod admission;
mod bearer;
mod descriptors;
mod h2;
mod internal;
mod openapi;
mod park;
mod serve;
mod traced;

use accept::accept_loop;
use serve::App;

/// A running gateway. Dropping it does not stop it; call [`Running::shutdown`].
pub struct Running {
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    /// The current state; [`Running::reload`] swaps it.
    state: Arc<ArcSwap<GatewayState>>,
    shutdown: watch::Sender<bool>,
    connections: Arc<Connections>,
    /// The internal listener's connections, if it is configured.
    internal_connections: Option<Arc<Connections>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The status page's start, config source, last reload and samples.
    status: Arc<Status>,
    /// What a reload builds on; one reload at a time.
    reload: tokio::sync::Mutex<Reloadable>,
}

/// The parts of a running gateway a reload keeps or replaces.
struct Reloadable {
    /// The store and clock: kept.
    deps: Deps,
    /// The config in force.
    config: Config,
    /// Stops the health checks of the current upstreams.
    health: watch::Sender<bool>,
    health_tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Why a reload was refused (the running config stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file does not load or validate: the same message as `wxgate check`.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The new config could not be built (an upstream group, the WeChat client).
    #[error("cannot apply the new config")]
    Start(#[from] StartError),
}

/// Start the health checks of `state`'s upstreams; they stop when `stop` says so.
fn start_health_checks(
    state: &GatewayState,
    stop: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    state
        .routes
        .iter()
        .map(|route| {
            let lb = route.upstream.lb.clone();
            let rx = stop.clone();
            tokio::spawn(async move { lb.start(rx).await })
        })
        .collect()
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

    /// The address of the metrics listener, if configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// What the status page knows beside the state (name the config's
    /// source with [`Status::set_source`]).
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// The gateway's current state (keys, routes, sessions), e.g. to mint tokens in tests.
    pub fn state(&self) -> Arc<GatewayState> {
        self.state.load_full()
    }

    /// Apply `config` to new requests: routes, upstreams, auth modes, JWT
    /// keys, header rules, WeChat and login settings, `[log]`. Requests in
    /// flight finish on the config they started with; no connection is
    /// dropped. `[server]`, `[store]` and `[metrics]` keep their running
    /// values until a restart (named in the log when the file changed them).
    pub async fn reload(&self, config: &Config) -> Result<(), ReloadError> {
        let mut r = self.reload.lock().await;
        let old = self.state.load_full();
        let mut effective = config.clone();
        effective.server = r.config.server.clone();
        effective.store = r.config.store.clone();
        effective.metrics = r.config.metrics.clone();
        effective.traces = r.config.traces.clone();
        let state = Arc::new(GatewayState::with_metrics(
            &effective,
            r.deps.clone(),
            old.metrics_handle(),
        )?);
        let restart = r.config.restart_only_changes(config);
        if !restart.is_empty() {
            tracing::warn!(sections = ?restart, "changed in the file, kept as they are until a restart");
        }
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        let (health, stop) = watch::channel(false);
        let health_tasks = start_health_checks(&state, &stop);
        state.set_ready(old.is_ready());
        let sessions = Arc::clone(state.sessions());
        self.state.store(state);
        // Open sockets follow to the new keys (a removed key closes theirs).
        old.sessions().succeeded_by(sessions);
        let _ = r.health.send(true);
        for t in r.health_tasks.drain(..) {
            t.abort();
        }
        r.health = health;
        r.health_tasks = health_tasks;
        r.config = effective;
        old.metrics().reload("ok");
        self.status.reloaded(true);
        tracing::info!(routes = config.routes.len(), "config reloaded");
        Ok(())
    }

    /// [`Running::reload`] from a file, returning the config read; a file
    /// that does not load, or a config that cannot be built, is refused,
    /// logged and counted, and the running config stays.
    pub async fn reload_file(
        &self,
        path: &std::path::Path,
        env: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<Config, ReloadError> {
        let result = match Config::load(path, env) {
            Ok(config) => self.reload(&config).await.map(|()| config),
            Err(e) => Err(ReloadError::Config(e)),
        };
        if let Err(e) = &result {
            self.state.load().metrics().reload("refused");
            self.status.reloaded(false);
            tracing::error!(error = %crate::error::chain(e), "config reload refused; the running config stays");
        }
        result
    }

    /// The open client connections, their limits and refusals.
    pub fn connections(&self) -> &Connections {
        &self.connections
    }

    /// The internal listener's connections (metrics, the access token), if
    /// it is configured: its own limits and refusals.
    pub fn internal_connections(&self) -> Option<&Connections> {
        self.internal_connections.as_deref()
    }

    /// Stop accepting, wait up to `grace` for open requests, then stop.
    pub async fn shutdown(self, grace: Duration) {
        self.state.load().set_ready(false);
        let _ = self.shutdown.send(true);
        {
            let r = self.reload.lock().await;
            let _ = r.health.send(true);
            for t in &r.health_tasks {
                t.abort();
            }
        }
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
                open = self.connections.open(),
                "grace period over, closing the remaining connections"
            );
        }
        // The spans of the last requests go out before the process ends.
        let traces = self.reload.lock().await.deps.traces.clone();
        if let Some(traces) = traces {
            let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
        }
    }
}

/// How long start-up waits for the store's live revocations.
const SETTLE_LIMIT: Duration = Duration::from_secs(3);

/// Build the gateway from a validated config, bind its listeners and start serving
/// on the current tokio runtime. Returns once the listeners are bound.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    start_with(config, Deps::from_config(config)?).await
}

/// Refuse to start on a store that may drop revocations (unless `fail_open`).
/// A store that does not answer yet is `/readyz`'s business, not start-up's.
async fn check_eviction(state: &GatewayState) -> Result<(), StartError> {
    let sessions = state.sessions();
    match sessions.store().eviction().await {
        Ok(Eviction::Never) => Ok(()),
        Ok(Eviction::Unknown) => {
            tracing::warn!("cannot read Redis' maxmemory-policy (CONFIG is disabled): make sure it is noeviction, or revocations may be evicted");
            Ok(())
        }
        Ok(Eviction::Evicts { policy }) => match sessions.on_error() {
            OnError::FailClosed => Err(StartError::StoreEvicts { policy }),
            OnError::FailOpen => {
                tracing::warn!(%policy, "Redis evicts keys under memory pressure: a revoked token may become valid again; set maxmemory-policy noeviction");
                Ok(())
            }
        },
        Err(e) => {
            tracing::warn!(error = %crate::error::chain(&e), "the store does not answer at start-up");
            Ok(())
        }
    }
}

/// Like [`start`], with the store and clock made by the caller (tests share a
/// store between instances and set the clock).
pub async fn start_with(config: &Config, deps: Deps) -> Result<Running, StartError> {
    let current = Arc::new(GatewayState::new(config, deps.clone())?);
    check_eviction(&current).await?;
    // Serve once the live revocations are loaded (a moment), or without
    // them after a while: checks then fail and `on_error` decides.
    if !current.sessions().store().settle(SETTLE_LIMIT).await {
        tracing::warn!("the live revocations could not be loaded yet; revocation checks follow [store] on_error until they are");
    }
    let state = Arc::new(ArcSwap::new(current.clone()));
    let server_conf = Arc::new(ServerConf::default());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let limits = config.server.limits;
    let caps = descriptors::fit_to_open_file_limit(&descriptors::Wanted::of(config, &server_conf));
    let connections = Arc::new(Connections::new(caps.public.total, caps.public.per_ip));
    let mut tasks = Vec::new();

    let plain = bind(config.server.listen).await?;
    let addr = plain.local_addr().map_err(|source| StartError::Bind {
        addr: config.server.listen,
        source,
    })?;
    let tls = match &config.server.tls {
        Some(tls) => {
            let (acceptor, expiry) = tls_acceptor(tls)?;
            match expiry {
                Some(at) => state.load().metrics().tls_certificate_expiry(at),
                None => {
                    tracing::warn!(cert = %tls.cert.display(), "cannot read the TLS certificate's expiry: no wxgate_tls_certificate_expiry_timestamp_seconds")
                }
            }
            let listener = bind(tls.listen).await?;
            let tls_addr = listener.local_addr().map_err(|source| StartError::Bind {
                addr: tls.listen,
                source,
            })?;
            Some((listener, Arc::new(acceptor), tls_addr))
        }
        None => None,
    };
    let mut internal_connections = None;
    let status = Arc::new(Status::new());
    // `caps.internal` is there exactly when `[metrics] listen` is.
    let metrics_addr = match (config.metrics.listen, caps.internal) {
        (Some(listen), Some(internal)) => {
            let listener = bind(listen).await?;
            let addr = listener.local_addr().map_err(|source| StartError::Bind {
                addr: listen,
                source,
            })?;
            let admission = Arc::new(Connections::of("metrics", internal.total, internal.per_ip));
            internal_connections = Some(admission.clone());
            tasks.push(tokio::spawn(internal::serve(
                listener,
                state.clone(),
                Arc::clone(&status),
                admission,
                connections.clone(),
                config.metrics.limits,
            )));
            tasks.push(tokio::spawn(Arc::clone(&status).run_sampler(state.clone())));
            Some(addr)
        }
        _ => None,
    };

    // Config loaded, listeners bound: ready before the first connection is served.
    current.set_ready(true);
    let (health, stop) = watch::channel(false);
    let health_tasks = start_health_checks(&current, &stop);

    let own = |by| by == crate::config::ServedBy::Wxgate;
    let (own1, own2) = (own(config.server.http1), own(config.server.http2));
    let relay = |tls| {
        let relay = Arc::new(Relay::new(state.clone(), tls));
        (own1.then(|| relay.clone()), own2.then_some(relay))
    };
    let app = Arc::new(app(&server_conf, state.clone(), false, &limits));
    tasks.push(tokio::spawn(accept_loop(
        plain,
        {
            let (h1, h2) = relay(false);
            (app, h1, h2)
        },
        None,
        shutdown_rx.clone(),
        connections.clone(),
        limits,
    )));
    let tls_addr = match tls {
        Some((listener, acceptor, tls_addr)) => {
            let app = Arc::new(self::app(&server_conf, state.clone(), true, &limits));
            tasks.push(tokio::spawn(accept_loop(
                listener,
                {
                    let (h1, h2) = relay(true);
                    (app, h1, h2)
                },
                Some(acceptor),
                shutdown_rx.clone(),
                connections.clone(),
                limits,
            )));
            Some(tls_addr)
        }
        None => None,
    };
    tracing::info!(%addr, tls = ?tls_addr, metrics = ?metrics_addr, routes = config.routes.len(), "wxgate is listening");
    Ok(Running {
        addr,
        tls_addr,
        metrics_addr,
        state,
        shutdown: shutdown_tx,
        connections,
        internal_connections,
        tasks,
        status,
        reload: tokio::sync::Mutex::new(Reloadable {
            deps,
            config: config.clone(),
            health,
            health_tasks,
        }),
    })
}

fn app(
    conf: &Arc<ServerConf>,
    state: Arc<ArcSwap<GatewayState>>,
    tls: bool,
    limits: &ConnLimits,
) -> App {
    let mut app = pingora_proxy::http_proxy(conf, Gateway::new(state, tls));
    let mut options = HttpServerOptions::default();
    options.h2c = !tls;
    // HTTP/2 connections are not read through the per-request deadlines
    // (see `deadline`): they close after this long without a stream.
    options.h2_idle_timeout = Some(limits.idle_timeout);
    app.server_options = Some(options);
    app
}

/// Raise the soft limit on open files to the hard limit (every connection
/// is one descriptor, and proxying it another). Returns the new soft limit.
pub fn raise_fd_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            None
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

/// The TLS acceptor of `tls`, and when its certificate expires (Unix
/// seconds; `None` if its date cannot be read).
fn tls_acceptor(
    tls: &TlsConfig,
) -> Result<(pingora_core::listeners::tls::Acceptor, Option<i64>), StartError> {
    let cert = tls.cert.to_string_lossy();
    let key = tls.key.to_string_lossy();
    // TlsSettings::build panics on unreadable files; check them first.
    let expiry = match pingora_rustls::load_certs_and_key_files(&cert, &key) {
        Ok(Some((certs, _))) => certs.first().and_then(|leaf| {
            let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
            Some(parsed.validity().not_after.timestamp())
        }),
        Ok(None) => {
            return Err(TlsError::Empty {
                cert: cert.into_owned(),
                key: key.into_owned(),
            }
            .into())
        }
        Err(e) => return Err(TlsError::Load(e).into()),
    };
    let mut settings = TlsSettings::intermediate(&cert, &key).map_err(TlsError::Load)?;
    settings.enable_h2();
    Ok((settings.build(), expiry))
}
