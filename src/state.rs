//! The gateway's state: everything a request reads, built once at start-up.
//!
//! [`GatewayState`] is made from the validated config and the parts a caller
//! may inject ([`Deps`]: the store and the clock, so tests can share one store
//! between instances or set the time). Nothing in it is parsed, resolved or
//! allocated again per request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::access::UserHasher;
use crate::audit::Audit;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::conn::ConnLimits;
use crate::headers::HeaderPolicy;
use crate::hook::{HookError, LoginHook};
use crate::login::apps::Apps;
use crate::login::LoginService;
use crate::metrics::{
    Gauges, MeteredStore, Metrics, MetricsError, RequestDone, RouteCounters, RouteLabel,
};
use crate::route::{Endpoint, Endpoints, RouteTable};
use crate::sessions::Sessions;
use crate::store::Store;
use crate::store::StoreError;
use crate::token::TokenKeys;
use crate::wechat::reply::WechatError;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// An upstream group could not be built.
    #[error("cannot set up upstreams")]
    Upstreams(#[source] std::io::Error),
    /// The TLS certificate or key could not be loaded.
    #[error("cannot load the TLS certificate or key")]
    Tls(#[from] TlsError),
    /// The WeChat client could not be built.
    #[error("cannot set up the WeChat client")]
    Login(#[from] WechatError),
    /// The login hook's client could not be built.
    #[error("cannot set up the login hook")]
    Hook(#[from] HookError),
    /// The audit webhook could not start.
    #[error("cannot set up the audit webhook")]
    AuditWebhook(#[from] crate::audit::WebhookError),
    /// The store could not be built.
    #[error("cannot set up the store")]
    Store(#[from] StoreError),
    /// The metrics could not be registered.
    #[error("cannot set up the metrics")]
    Metrics(#[from] MetricsError),
    /// The OTLP exporter of `[traces]` could not be built.
    #[error(transparent)]
    Traces(#[from] crate::traces::TracesError),
    /// Redis may evict keys, revocations included, and `on_error = "fail_closed"`.
    #[error("Redis evicts keys under memory pressure (maxmemory-policy {policy}), which could bring revoked tokens back; set maxmemory-policy noeviction (or on_error = \"fail_open\" to accept the risk)")]
    StoreEvicts { policy: String },
}

/// Why the TLS listener's certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The files hold no certificate or no key.
    #[error("no certificate or key in {cert} / {key}")]
    Empty { cert: String, key: String },
    /// Reading or parsing the files failed.
    #[error("cannot read or parse the PEM files")]
    Load(#[source] Box<pingora_error::Error>),
}

/// What the gateway is built on besides its config.
#[derive(Clone)]
pub struct Deps {
    /// Sessions, revocations, refresh tokens, login codes, counters.
    pub store: Arc<dyn Store>,
    /// Wall-clock time for rate-limit windows.
    pub clock: Arc<dyn Clock>,
    /// `[traces]`: the tracer and its exporter (kept across reloads).
    pub traces: Option<Arc<crate::traces::Traces>>,
}

impl Deps {
    /// The store the config names and the system clock.
    pub fn from_config(config: &Config) -> Result<Self, StartError> {
        let mut deps = Self::with_store(crate::store::build(&config.store)?);
        if let Some(t) = &config.traces {
            deps.traces = Some(Arc::new(crate::traces::Traces::start(t)?));
        }
        Ok(deps)
    }

    /// `store` and the system clock.
    pub fn with_store(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            clock: Arc::new(SystemClock),
            traces: None,
        }
    }
}

/// State shared by every listener and request.
pub struct GatewayState {
    /// The gateway's own paths (health, `/wx/*`).
    pub endpoints: Endpoints,
    /// The configured routes, each one value with its policy and upstreams.
    pub routes: RouteTable,
    /// Header hygiene and identity injection.
    pub headers: HeaderPolicy,
    /// Read deadlines and connection limits (`[server]`).
    pub limits: ConnLimits,
    sessions: Arc<Sessions>,
    login: Option<Arc<Apps>>,
    max_body_bytes: usize,
    /// `[server] trusted_proxies`.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Set once the listeners are bound; cleared when shutting down.
    ready: AtomicBool,
    /// What `/metrics` reports.
    metrics: Arc<Metrics>,
    /// This config's request counters.
    counters: RouteCounters,
    /// Each endpoint's path, by [`Endpoint::index`] (its name if not served).
    endpoint_paths: Vec<String>,
    /// `[log] access`.
    access_log: bool,
    /// Stands for a user in log lines.
    user_hasher: UserHasher,
    /// Audit lines and the audit webhook.
    audit: Audit,
    /// `[metrics] access_token_secret`.
    access_token_secret: Option<crate::secret::Secret>,
    /// `[wechat.relay]`, when the internal listener relays WeChat's APIs.
    relay: Option<Arc<crate::wechat::RelayConfig>>,
    /// `[metrics] admin_secret`.
    admin_secret: Option<crate::secret::Secret>,
    /// `[assertion]`: signs `X-WXGate-Assertion`.
    pub assertions: Option<crate::assertion::Assertions>,
    /// `/.well-known/jwks.json`: the token keys and the assertion key.
    jwks: bytes::Bytes,
}

impl GatewayState {
    /// Build routes, keys, header policy, upstream groups and the login service.
    pub fn new(config: &Config, deps: Deps) -> Result<Self, StartError> {
        let metrics = Metrics::new()?.with_traces(deps.traces.clone());
        Self::with_metrics(config, deps, Arc::new(metrics))
    }

    /// [`GatewayState::new`], counting into `metrics` (kept across reloads).
    pub fn with_metrics(
        config: &Config,
        deps: Deps,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StartError> {
        let routes = RouteTable::from_config(&config.routes).map_err(StartError::Upstreams)?;
        let endpoints = Endpoints::new(
            &config.server.health_path_prefix,
            config
                .wechat
                .as_ref()
                .map(|_| config.login.path_prefix.as_str()),
        );
        let prefixes: Vec<&str> = config.routes.iter().map(|r| r.prefix.as_str()).collect();
        let served = endpoints.paths();
        let counters = metrics.route_counters(&prefixes, &served);
        let endpoint_paths = Endpoint::ALL
            .iter()
            .map(|ep| {
                served
                    .iter()
                    .find(|(e, _)| e == ep)
                    .map_or_else(|| ep.name().to_string(), |(_, p)| p.clone())
            })
            .collect();
        let tokens = Arc::new(TokenKeys::new(&config.jwt));
        let hook = match &config.login.hook {
            Some(h) => Some(Arc::new(LoginHook::new(h)?.with_metrics(metrics.clone()))),
            None => None,
        };
        let user_hasher = UserHasher::new(&config.jwt.key.hash_secret("access log user"));
        let audit =
            Audit::new(user_hasher.clone()).with_config(&config.audit, Some(metrics.clone()))?;
        let sessions = Arc::new(
            Sessions::new(
                MeteredStore::wrap(deps.store, metrics.store_metrics(), deps.traces.clone()),
                tokens,
                config.login.refresh_ttl,
                config.jwt.leeway,
                config.store.on_error,
            )
            .with_hook(hook.clone())
            .with_policies(config.sessions.clone())
            .with_clock(deps.clock.clone())
            .with_metrics(metrics.clone())
            .with_audit(audit.clone()),
        );
        let login = match &config.wechat {
            Some(wechat) => {
                let mut apps = Vec::with_capacity(wechat.apps.len());
                for app in &wechat.apps {
                    let service = LoginService::new(
                        wechat,
                        app,
                        &config.login,
                        sessions.clone(),
                        deps.clock.clone(),
                        metrics.clone(),
                    )?
                    .with_hook(hook.clone())
                    .with_risk(config.login.risk, metrics.clone());
                    apps.push(Arc::new(service));
                }
                Some(Arc::new(Apps::new(apps)))
            }
            None => None,
        };
        let assertions = config
            .assertion
            .as_ref()
            .map(|a| crate::assertion::Assertions::new(a, &config.jwt.issuer));
        let jwks = match &assertions {
            None => sessions.tokens().jwks(),
            Some(a) => {
                let mut set: serde_json::Value =
                    serde_json::from_slice(&sessions.tokens().jwks()).unwrap_or_default();
                if let Some(keys) = set.get_mut("keys").and_then(|k| k.as_array_mut()) {
                    keys.push(a.jwk().clone());
                }
                bytes::Bytes::from(set.to_string())
            }
        };
        Ok(Self {
            endpoints,
            routes,
            headers: HeaderPolicy::new(&config.headers),
            limits: config.server.limits,
            sessions,
            login,
            max_body_bytes: config.login.max_body_bytes,
            trusted_proxies: config.server.trusted_proxies.clone(),
            ready: AtomicBool::new(false),
            metrics,
            counters,
            endpoint_paths,
            access_log: config.log.access,
            user_hasher,
            audit,
            access_token_secret: config.metrics.access_token_secret.clone(),
            relay: config
                .wechat
                .as_ref()
                .and_then(|w| w.relay.clone())
                .map(Arc::new),
            admin_secret: config.metrics.admin_secret.clone(),
            jwks,
            assertions,
        })
    }

    /// `{"keys": [...]}`: the public keys of tokens and assertions.
    pub fn jwks(&self) -> bytes::Bytes {
        self.jwks.clone()
    }

    /// Token sessions: issue, refresh, logout, revocation.
    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    /// The token keys.
    pub fn tokens(&self) -> &TokenKeys {
        self.sessions.tokens()
    }

    /// The mini programs' login services, when `[wechat]` is configured.
    pub fn login(&self) -> Option<&Arc<Apps>> {
        self.login.as_ref()
    }

    /// The Bearer secret of the access token endpoint, when it is served.
    pub fn access_token_secret(&self) -> Option<&crate::secret::Secret> {
        self.access_token_secret.as_ref()
    }

    /// `[wechat.relay]`, when the OpenAPI relay is served.
    pub fn relay(&self) -> Option<&Arc<crate::wechat::RelayConfig>> {
        self.relay.as_ref()
    }

    /// The Bearer secret of the admin API, when it is served.
    pub fn admin_secret(&self) -> Option<&crate::secret::Secret> {
        self.admin_secret.as_ref()
    }

    /// Largest body the `/wx/*` endpoints read.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// How many revocation checks `fail_open` has skipped so far.
    pub fn fail_open_count(&self) -> u64 {
        self.sessions.fail_open_count()
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The metrics, to share with the state a reload builds.
    pub fn metrics_handle(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// Count one answered request.
    pub fn count_request(&self, done: &RequestDone<'_>) {
        self.metrics.request(&self.counters, done);
    }

    /// The metrics text, with the state gauges (store fill, upstream health) read now.
    pub fn render_metrics(&self) -> String {
        self.render_metrics_with(|_| {})
    }

    /// [`Self::render_metrics`], with what the process knows beside the
    /// state (its listeners' refusals) set by `more`.
    pub fn render_metrics_with(&self, more: impl FnOnce(&Gauges<'_>)) -> String {
        self.metrics.render(|g| {
            more(g);
            g.log_suppressed(crate::logs::suppressed_total());
            for m in self.sessions.store().map_stats() {
                g.store_map(m.kind, m.entries, m.capacity, m.dropped, m.refused);
            }
            if let Some(status) = self.sessions.store().status() {
                g.shared_store(&status);
            }
            for route in self.routes.iter() {
                for (peer, up) in route.upstream.health() {
                    g.upstream(&route.prefix, &peer, up);
                }
            }
            g.fail_open(self.fail_open_count());
        })
    }

    /// What a request matched, as logs and metrics name it.
    pub fn route_name(&self, label: RouteLabel) -> &str {
        match label {
            RouteLabel::Route(i) => self.routes.get(i).map_or("none", |r| r.prefix.as_str()),
            RouteLabel::Endpoint(ep) => self
                .endpoint_paths
                .get(ep.index())
                .map_or(ep.name(), String::as_str),
            RouteLabel::None => "none",
        }
    }

    /// Whether `[log] access` is on.
    pub fn access_log(&self) -> bool {
        self.access_log
    }

    /// The keyed hash standing for `openid` in log lines.
    pub fn user_hash(&self, openid: &str) -> String {
        self.user_hasher.hash(openid)
    }

    /// Audit lines and the audit webhook.
    pub(crate) fn audit(&self) -> &Audit {
        &self.audit
    }

    /// Whether `/readyz` should say ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Mark the gateway ready (listeners bound) or not (shutting down).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}
