//! The Pingora glue: the request pipeline, and nothing else.
//!
//! ```text
//! request_filter          canonical path ─▶ gateway endpoint? ─▶ route ─▶ auth
//! upstream_peer           round-robin over healthy upstreams (skip ones that failed)
//! upstream_request_filter sanitize headers ─▶ inject identity ─▶ set decided path
//! fail_to_connect         retry another upstream when a connect fails
//! fail_to_proxy           map the failure to a JSON error (502/504/...)
//! ```
//!
//! Every decision is made by a plain function in [`crate::route`],
//! [`crate::token`] or [`crate::headers`]; this file only moves data between
//! them and Pingora's session.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::header;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::config::{AuthMode, Config, OnError};
use crate::endpoints::{self, Endpoint, Endpoints};
use crate::error::ApiError;
use crate::headers::{client_ip, ClientInfo, HeaderPolicy, IdentityValues, X_FORWARDED_FOR};
use crate::login::LoginService;
use crate::route::{canonicalize, RouteTable};
use crate::server::StartError;
use crate::sessions::Sessions;
use crate::store::Store;
use crate::token::{Identity, TokenError, TokenKeys};
use crate::upstream::Upstream;

/// State shared by every listener and request, built once at start-up.
pub struct Shared {
    routes: RouteTable,
    upstreams: Vec<Upstream>,
    tokens: Arc<TokenKeys>,
    headers: HeaderPolicy,
    endpoints: Endpoints,
    sessions: Arc<Sessions>,
    login: Option<Arc<LoginService>>,
    max_body_bytes: usize,
    on_error: OnError,
    trusted_proxies: Vec<ipnet::IpNet>,
    /// Requests let through without a revocation check (`on_error = "fail_open"`).
    fail_open_count: AtomicU64,
    /// Set once the listeners are bound; cleared when shutting down.
    pub ready: AtomicBool,
}

impl Shared {
    /// Build routes, keys, header policy, upstream groups and the login service.
    pub fn new(config: &Config, store: Arc<dyn Store>) -> Result<Self, StartError> {
        let upstreams = config
            .routes
            .iter()
            .map(Upstream::new)
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(StartError::Upstreams)?;
        let tokens = Arc::new(TokenKeys::new(&config.jwt));
        let sessions = Arc::new(Sessions::new(
            store,
            tokens.clone(),
            config.login.refresh_ttl,
            config.jwt.leeway,
        ));
        let login = match &config.wechat {
            Some(wechat) => Some(Arc::new(
                LoginService::new(wechat, &config.login, sessions.clone())
                    .map_err(StartError::Login)?,
            )),
            None => None,
        };
        let endpoints = Endpoints::new(
            &config.server.health_path_prefix,
            login.as_ref().map(|_| config.login.path_prefix.as_str()),
        );
        Ok(Self {
            routes: RouteTable::new(&config.routes),
            upstreams,
            tokens,
            headers: HeaderPolicy::new(&config.headers),
            endpoints,
            sessions,
            login,
            max_body_bytes: config.login.max_body_bytes,
            on_error: config.store.on_error,
            trusted_proxies: config.server.trusted_proxies.clone(),
            fail_open_count: AtomicU64::new(0),
            ready: AtomicBool::new(false),
        })
    }

    /// Refuse a revoked token. When the store cannot answer, `on_error` decides.
    pub async fn check_revocation(&self, id: &Identity) -> Result<(), ApiError> {
        match self.sessions.is_revoked(id).await {
            Ok(false) => Ok(()),
            Ok(true) => Err(ApiError::TokenRevoked),
            Err(e) => match self.on_error {
                OnError::FailClosed => Err(ApiError::StoreUnavailable),
                OnError::FailOpen => {
                    let n = self.fail_open_count.fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_power_of_two() {
                        tracing::warn!(error = %e, skipped_checks = n, "store unavailable: token accepted without the revocation check (fail_open)");
                    }
                    Ok(())
                }
            },
        }
    }

    /// How many revocation checks `fail_open` has skipped so far.
    pub fn fail_open_count(&self) -> u64 {
        self.fail_open_count.load(Ordering::Relaxed)
    }

    /// The token sessions (refresh, logout, revocation).
    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    /// What `on_error` says.
    pub fn on_error(&self) -> OnError {
        self.on_error
    }

    /// The client address: the peer, or what trusted proxies say in `X-Forwarded-For`.
    pub fn client_ip(&self, session: &Session) -> Option<IpAddr> {
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let xff = session
            .req_header()
            .headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .map(|v| v.as_bytes());
        client_ip(peer, xff, &self.trusted_proxies)
    }

    /// Whether `/readyz` should say ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The login service, when `[wechat]` is configured.
    pub fn login(&self) -> Option<&Arc<LoginService>> {
        self.login.as_ref()
    }

    /// Largest body the `/wx/*` endpoints read.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// The upstream groups (their health checks are started by the server).
    pub fn upstreams(&self) -> &[Upstream] {
        &self.upstreams
    }

    /// The token keys.
    pub fn tokens(&self) -> &TokenKeys {
        &self.tokens
    }

    /// Steps 1 and 2 of the pipeline for a request: where it goes and who sent it.
    pub fn decide(&self, req: &RequestHeader) -> Result<Decision, ApiError> {
        let canonical = canonicalize(req.raw_path())?;
        if let Some(ep) = self.endpoints.find(canonical.path()) {
            return Ok(Decision::Endpoint(ep));
        }
        let route = self
            .routes
            .find(canonical.path())
            .ok_or(ApiError::NoRoute)?;
        let identity = match route.auth {
            AuthMode::Public => None,
            mode => {
                let auth = req
                    .headers
                    .get_all(header::AUTHORIZATION)
                    .iter()
                    .map(|v| v.as_bytes());
                match self.tokens.verify_authorization(auth) {
                    Ok(id) => {
                        let values = self.headers.identity_values(&id)?;
                        Some(Verified { id, values })
                    }
                    Err(TokenError::Missing) if mode == AuthMode::Optional => None,
                    Err(e) => {
                        tracing::debug!(reason = %e, "token refused");
                        return Err(ApiError::from(&e));
                    }
                }
            }
        };
        Ok(Decision::Forward(Forward {
            route: route.index,
            identity,
            target: canonical
                .is_rewritten()
                .then(|| canonical.target().to_vec()),
        }))
    }
}

/// What the pipeline decided for a request.
#[derive(Debug)]
// Moved into the request context at once; boxing would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
pub enum Decision {
    /// Answer it here.
    Endpoint(Endpoint),
    /// Forward it.
    Forward(Forward),
}

/// A request on its way upstream.
#[derive(Debug)]
pub struct Forward {
    /// Index of the route (and of its upstream group).
    pub route: usize,
    /// The verified token (`None` on public routes and anonymous optional ones).
    pub identity: Option<Verified>,
    /// The canonical target, when it differs from what the client sent.
    pub target: Option<Vec<u8>>,
}

/// A verified token and the header values it yields.
#[derive(Debug)]
pub struct Verified {
    pub id: Identity,
    pub values: IdentityValues,
}

/// Per-request state.
#[derive(Default)]
pub struct RequestCtx {
    forward: Option<Forward>,
    /// Upstreams that refused a connection for this request.
    failed: Vec<SocketAddr>,
    /// A failure decided by wxgate (rather than reported by Pingora).
    failure: Option<ApiError>,
}

/// The `ProxyHttp` implementation: one per listener (plain or TLS).
pub struct Gateway {
    shared: Arc<Shared>,
    tls: bool,
}

impl Gateway {
    /// A gateway for a listener; `tls` tells upstreams the client used HTTPS.
    pub fn new(shared: Arc<Shared>, tls: bool) -> Self {
        Self { shared, tls }
    }
}

/// Write a complete JSON response.
pub async fn respond(
    session: &mut Session,
    status: u16,
    headers: &[(&'static str, String)],
    body: Bytes,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4 + headers.len()))?;
    resp.insert_header(header::CONTENT_TYPE, "application/json")?;
    resp.insert_header(header::CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header(header::CACHE_CONTROL, "no-store")?;
    for (name, value) in headers {
        resp.insert_header(*name, value.as_str())?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

/// Write an [`ApiError`] as its JSON response.
pub async fn respond_error(session: &mut Session, e: &ApiError) -> Result<()> {
    let r = e.to_response();
    respond(session, r.status, &r.headers, r.body).await
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    /// Decide: canonical path, gateway endpoint or route, token.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        match self.shared.decide(session.req_header()) {
            Ok(Decision::Forward(f)) => {
                if let Some(v) = &f.identity {
                    if let Err(e) = self.shared.check_revocation(&v.id).await {
                        respond_error(session, &e).await?;
                        return Ok(true);
                    }
                }
                ctx.forward = Some(f);
                Ok(false)
            }
            Ok(Decision::Endpoint(ep)) => {
                endpoints::answer(&self.shared, session, ep).await?;
                Ok(true)
            }
            Err(e) => {
                respond_error(session, &e).await?;
                Ok(true)
            }
        }
    }

    /// Pick a healthy upstream of the route, skipping any that already failed.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let Some(route) = ctx.forward.as_ref().map(|f| f.route) else {
            ctx.failure = Some(ApiError::Internal);
            return Err(Error::explain(ErrorType::InternalError, "no route decided"));
        };
        match self.shared.upstreams[route].pick(&ctx.failed) {
            Some(peer) => Ok(peer),
            None => {
                ctx.failure = Some(ApiError::UpstreamUnavailable);
                Err(Error::explain(
                    ErrorType::ConnectNoRoute,
                    "no healthy upstream",
                ))
            }
        }
    }

    /// Sanitize headers, inject identity, set the decided path.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let client = ClientInfo {
            ip: self.shared.client_ip(session),
            https: self.tls,
        };
        self.shared.headers.sanitize(upstream_request, client);
        if let Some(f) = &ctx.forward {
            if let Some(v) = &f.identity {
                self.shared.headers.inject(upstream_request, &v.values);
            }
            if let Some(target) = &f.target {
                upstream_request.set_raw_path(target)?;
            }
        }
        Ok(())
    }

    /// A refused connection is retried on another upstream, once per upstream.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(addr) = peer._address.as_inet() {
            ctx.failed.push(*addr);
        }
        let count = ctx
            .forward
            .as_ref()
            .map_or(0, |f| self.shared.upstreams[f.route].count);
        e.set_retry(ctx.failed.len() < count);
        e
    }

    /// Map a failure to one of our JSON errors.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let api = ctx.failure.take().or_else(|| classify(e));
        let error_code = match api {
            Some(api) if session.response_written().is_none() => {
                if let Err(we) = respond_error(session, &api).await {
                    tracing::debug!(error = %we, "cannot write the error response");
                }
                api.status()
            }
            Some(api) => api.status(),
            None => 0,
        };
        if error_code >= 500 {
            tracing::warn!(error = %e, code = error_code, "proxying failed");
        }
        FailToProxy {
            error_code,
            can_reuse_downstream: false,
        }
    }

    /// wxgate logs failures itself (without query strings, which may carry secrets).
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        true
    }

    /// Pingora's own request summary, used in its logs: method and path, no query.
    fn request_summary(&self, session: &Session, _ctx: &RequestCtx) -> String {
        let req = session.req_header();
        format!("{} {}", req.method, req.uri.path())
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, _ctx: &mut RequestCtx) {
        if tracing::enabled!(target: "wxgate::access", tracing::Level::DEBUG) {
            let status = session.response_written().map_or(0, |r| r.status.as_u16());
            let req = session.req_header();
            tracing::debug!(
                target: "wxgate::access",
                method = %req.method,
                path = %req.uri.path(),
                status,
            );
        }
    }
}

/// What the client should hear about a Pingora error; `None` when the client is gone.
fn classify(e: &Error) -> Option<ApiError> {
    use ErrorType::*;
    match e.esource() {
        ErrorSource::Upstream => Some(match e.etype() {
            ConnectTimedout | ReadTimedout | WriteTimedout => ApiError::UpstreamTimeout,
            _ => ApiError::UpstreamUnavailable,
        }),
        ErrorSource::Downstream => match e.etype() {
            ReadError | WriteError | ConnectionClosed => None,
            ReadTimedout | WriteTimedout => None,
            _ => Some(ApiError::InvalidRequest("the request is malformed")),
        },
        ErrorSource::Internal | ErrorSource::Unset => match e.etype() {
            ConnectTimedout => Some(ApiError::UpstreamTimeout),
            ConnectRefused | ConnectNoRoute | ConnectError | ConnectProxyFailure => {
                Some(ApiError::UpstreamUnavailable)
            }
            _ => Some(ApiError::Internal),
        },
    }
}

#[cfg(test)]
mod tests;
