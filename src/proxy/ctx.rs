//! What Pingora's path keeps of one request, from its header to its log line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::decide::Forward;
use crate::error::ApiError;
use crate::headers::Client;
use crate::metrics::{AuthOutcome, RouteLabel};
use crate::state::GatewayState;
use crate::traces::RequestSpan;

/// Per-request state.
pub(crate) struct RequestCtx {
    /// The gateway's state when the request arrived: a reload in the middle
    /// of it does not change its route, upstreams or keys.
    pub(super) state: Arc<GatewayState>,
    pub(super) forward: Option<Forward>,
    /// Who sent the request (worked out once, in `early_request_filter`).
    pub(super) client: Client,
    /// When the request header was read.
    pub(super) started: Option<Instant>,
    /// What the request matched, for metrics.
    pub(super) label: RouteLabel,
    /// How its token check ended, on routes.
    pub(super) auth: Option<AuthOutcome>,
    /// When the first upstream was chosen.
    pub(super) upstream_at: Option<Instant>,
    /// From `upstream_at`, and from `started`, to the upstream's response header.
    pub(super) upstream_took: Option<(Duration, Duration)>,
    /// The upstream the request went to.
    pub(super) peer: Option<SocketAddr>,
    /// Upstreams that refused a connection for this request.
    pub(super) failed: Vec<SocketAddr>,
    /// A failure decided by wxgate (rather than reported by Pingora).
    pub(super) failure: Option<ApiError>,
    /// A WebSocket handshake: no read deadline once it is upgraded.
    pub(super) websocket: bool,
    /// With `[traces]`: the request's span (a traced one is boxed).
    pub(super) span: Option<RequestSpan>,
}

impl RequestCtx {
    /// A request arriving under `state`.
    pub(super) fn new(state: Arc<GatewayState>) -> Self {
        Self {
            state,
            forward: None,
            client: Client::default(),
            started: None,
            label: RouteLabel::None,
            auth: None,
            upstream_at: None,
            upstream_took: None,
            peer: None,
            failed: Vec::new(),
            failure: None,
            websocket: false,
            span: None,
        }
    }
}
