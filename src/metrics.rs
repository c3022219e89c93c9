//! Prometheus metrics: what an operator scrapes from `[metrics] listen`.
//!
//! Every metric lives in one [`Metrics`] per gateway (its own registry, so
//! two gateways in one process, as in the tests, never mix their counts).
//! The per-request ones are resolved to plain atomic counters at start-up:
//! a request only increments and observes, it never looks a label up.
//! Gauges that describe state (store entries, upstream health) are read when
//! `/metrics` is scraped ([`Metrics::render`]).
//!
//! The exposition format is the `prometheus` crate's; the listener is
//! [`crate::server::metrics`].

use std::sync::Arc;
use std::time::Duration;

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, Registry, TextEncoder};

use crate::error::ApiError;
use crate::route::Endpoint;

mod gauges;
mod labels;
mod register;
mod store;

pub(crate) use gauges::Gauges;
use gauges::StateGauges;
use labels::{method_index, status_index, METHODS, STATUSES};
pub(crate) use labels::{AuthOutcome, RouteLabel};
pub(crate) use register::MetricsError;
use register::{counter_vec, gauge_vec, histogram, histogram_vec};
pub(crate) use store::MeteredStore;
use store::StoreMetrics;

/// A row of request counters, by method and status class.
type Row = [[IntCounter; STATUSES.len()]; METHODS.len()];

/// The request counters of one config's routes: a [`Row`] per route label,
/// routes first, then endpoints, then `none`. Built again on a reload; a
/// route that stays keeps counting where it was.
pub struct RouteCounters {
    rows: Vec<Row>,
    routes: usize,
}

impl RouteCounters {
    fn row(&self, route: RouteLabel) -> Option<&Row> {
        let i = match route {
            RouteLabel::Route(i) if i < self.routes => i,
            RouteLabel::Endpoint(ep) => self.routes.saturating_add(ep.index()),
            _ => self.rows.len().saturating_sub(1),
        };
        self.rows.get(i)
    }
}

/// Everything wxgate counts; one per process run, kept across reloads.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    reloads: IntCounterVec,
    auth: [IntCounter; AuthOutcome::ALL.len()],
    auth_vec: IntCounterVec,
    duration: Histogram,
    added: Histogram,
    upstream: Histogram,
    connect_failures: IntCounterVec,
    wechat: IntCounterVec,
    wechat_duration: HistogramVec,
    hook: IntCounterVec,
    hook_duration: HistogramVec,
    endpoint_outcomes: IntCounterVec,
    rate_limited: IntCounterVec,
    sessions_ended: IntCounterVec,
    risk: IntCounterVec,
    bans: IntCounterVec,
    audit_webhook: IntCounterVec,
    store: Arc<StoreMetrics>,
    /// What `/metrics` reads of state when scraped.
    state: StateGauges,
    /// Scrapes bring counters kept elsewhere up to date one at a time.
    scrape: std::sync::Mutex<()>,
    /// `[traces]`: the spans of requests and of what they call.
    traces: Option<Arc<crate::traces::Traces>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// The request counters of these routes (by prefix) and endpoints (with
    /// their paths; one not served keeps its name).
    pub fn route_counters(
        &self,
        route_prefixes: &[&str],
        endpoints: &[(Endpoint, String)],
    ) -> RouteCounters {
        let labels = route_prefixes
            .iter()
            .copied()
            .chain(Endpoint::ALL.iter().map(|ep| {
                endpoints
                    .iter()
                    .find(|(e, _)| e == ep)
                    .map_or(ep.name(), |(_, path)| path.as_str())
            }))
            .chain(std::iter::once("none"));
        let rows = labels
            .map(|route| {
                METHODS.map(|m| STATUSES.map(|s| self.requests.with_label_values(&[route, m, s])))
            })
            .collect();
        RouteCounters {
            rows,
            routes: route_prefixes.len(),
        }
    }

    /// The same, with spans made by `traces`.
    pub fn with_traces(mut self, traces: Option<Arc<crate::traces::Traces>>) -> Self {
        self.traces = traces;
        self
    }

    /// The tracer, with `[traces]`.
    pub(crate) fn traces(&self) -> Option<&crate::traces::Traces> {
        self.traces.as_deref()
    }

    /// The TLS listener's certificate expires at `at` (Unix seconds).
    pub fn tls_certificate_expiry(&self, at: i64) {
        self.state.tls_expiry(at);
    }

    /// A config reload and how it ended (`ok`, `refused`).
    pub fn reload(&self, outcome: &str) {
        self.reloads.with_label_values(&[outcome]).inc();
    }

    /// Every metric, registered once.
    pub fn new() -> Result<Self, MetricsError> {
        let r = Registry::new();
        let requests = counter_vec(
            &r,
            "wxgate_requests_total",
            "Requests answered, by route (prefix, gateway endpoint path, or none), method and status class.",
            &["route", "method", "status"],
        )?;
        let reloads = counter_vec(
            &r,
            "wxgate_config_reloads_total",
            "Config reloads, by outcome (ok; refused: the file was invalid and the running config stays).",
            &["outcome"],
        )?;
        let auth_vec = counter_vec(
            &r,
            "wxgate_auth_total",
            "Token checks on routes, by outcome.",
            &["outcome"],
        )?;
        let auth = AuthOutcome::ALL.map(|o| auth_vec.with_label_values(&[o.label()]));
        let build_info = gauge_vec(
            &r,
            "wxgate_build_info",
            "Always 1; the version of the running wxgate.",
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Self {
            requests,
            reloads,
            auth,
            auth_vec,
            duration: histogram(
                &r,
                "wxgate_request_duration_seconds",
                "Time from a request's header read to its response written, every request.",
            )?,
            added: histogram(
                &r,
                "wxgate_added_duration_seconds",
                "Proxied requests: the time wxgate adds (to the response header, less the upstream's time).",
            )?,
            upstream: histogram(
                &r,
                "wxgate_upstream_duration_seconds",
                "Proxied requests: from choosing an upstream to its response header.",
            )?,
            connect_failures: counter_vec(
                &r,
                "wxgate_upstream_connect_failures_total",
                "Connections to an upstream that failed, by upstream address.",
                &["peer"],
            )?,
            wechat: counter_vec(
                &r,
                "wxgate_wechat_requests_total",
                "Calls to WeChat's API, by API, outcome (ok, errcode, timeout, transport, http_status, bad_reply) and errcode.",
                &["api", "outcome", "errcode"],
            )?,
            wechat_duration: histogram_vec(
                &r,
                "wxgate_wechat_request_duration_seconds",
                "Duration of a call to WeChat's API (one attempt).",
                &["api"],
            )?,
            hook: counter_vec(
                &r,
                "wxgate_login_hook_calls_total",
                "Calls to the backend's login hook, by event (login, refresh, phone) and outcome (ok, refused, timeout, failed).",
                &["event", "outcome"],
            )?,
            hook_duration: histogram_vec(
                &r,
                "wxgate_login_hook_duration_seconds",
                "Duration of a call to the backend's login hook.",
                &["event"],
            )?,
            endpoint_outcomes: counter_vec(
                &r,
                "wxgate_endpoint_outcomes_total",
                "Logins, refreshes (rotated, reused, invalid), logouts and decrypts, by outcome (ok or the error code).",
                &["endpoint", "outcome"],
            )?,
            rate_limited: counter_vec(
                &r,
                "wxgate_rate_limited_total",
                "Requests refused by wxgate's own rate limits, by endpoint.",
                &["endpoint"],
            )?,
            sessions_ended: counter_vec(
                &r,
                "wxgate_sessions_ended_total",
                "Sessions ended other than by their own logout, by reason (ended by the user from another session, replaced, idle, lifetime, admin, banned).",
                &["reason"],
            )?,
            risk: counter_vec(
                &r,
                "wxgate_login_risk_total",
                "Logins by WeChat's risk rank (rank: 0-4, or none when WeChat gave none) and outcome (allowed, refused).",
                &["rank", "outcome"],
            )?,
            bans: counter_vec(
                &r,
                "wxgate_bans_total",
                "Users banned and unbanned through the admin API (action: ban, unban).",
                &["action"],
            )?,
            audit_webhook: counter_vec(
                &r,
                "wxgate_audit_webhook_events_total",
                "Audit events for the webhook: delivered, failed (given up after the retries) or dropped (the queue was full).",
                &["outcome"],
            )?,
            store: Arc::new(StoreMetrics::new(&r)?),
            state: StateGauges::new(&r)?,
            scrape: std::sync::Mutex::new(()),
            traces: None,
            registry: r,
        })
    }

    /// Count one answered request (in `counters`, its config's) and its durations.
    pub fn request(&self, counters: &RouteCounters, done: &RequestDone<'_>) {
        if let Some(row) = counters.row(done.route) {
            row[method_index(done.method)][status_index(done.status)].inc();
        }
        if let Some(outcome) = done.auth {
            self.auth[AuthOutcome::ALL
                .iter()
                .position(|o| *o == outcome)
                .unwrap_or(0)]
            .inc();
        }
        self.duration.observe(done.total.as_secs_f64());
        if let (Some(upstream), Some(header)) = (done.upstream, done.to_header) {
            self.upstream.observe(upstream.as_secs_f64());
            self.added
                .observe(header.saturating_sub(upstream).as_secs_f64());
        }
    }

    /// A connection to `peer` failed.
    pub fn connect_failed(&self, peer: &str) {
        self.connect_failures.with_label_values(&[peer]).inc();
    }

    /// The outcome of a `/wx/*` endpoint.
    pub fn endpoint(&self, ep: Endpoint, result: Result<(), &ApiError>) {
        let outcome = match (ep, result) {
            (Endpoint::Refresh, Ok(())) => "rotated",
            (Endpoint::Refresh, Err(ApiError::RefreshTokenReused)) => "reused",
            (Endpoint::Refresh, Err(ApiError::RefreshTokenInvalid)) => "invalid",
            (_, Ok(())) => "ok",
            (_, Err(e)) => e.code(),
        };
        if let Err(ApiError::RateLimited {
            wechat_errcode: None,
            ..
        }) = result
        {
            self.rate_limited.with_label_values(&[ep.name()]).inc();
        }
        self.endpoint_outcomes
            .with_label_values(&[ep.name(), outcome])
            .inc();
    }

    /// A session ended, and why.
    pub fn session_ended(&self, reason: &str) {
        self.sessions_ended.with_label_values(&[reason]).inc();
    }

    /// A login's risk rank (`None`: WeChat gave none) and whether it went on.
    pub fn login_risk(&self, rank: Option<u8>, refused: bool) {
        const RANKS: [&str; 6] = ["0", "1", "2", "3", "4", "other"];
        let rank = match rank {
            Some(r) => RANKS.get(usize::from(r)).copied().unwrap_or("other"),
            None => "none",
        };
        let outcome = if refused { "refused" } else { "allowed" };
        self.risk.with_label_values(&[rank, outcome]).inc();
    }

    /// A ban (`ban`) or unban (`unban`) through the admin API.
    pub fn ban(&self, action: &str) {
        self.bans.with_label_values(&[action]).inc();
    }

    /// `n` audit events for the webhook ended `outcome`.
    pub fn audit_webhook(&self, outcome: &str, n: usize) {
        self.audit_webhook
            .with_label_values(&[outcome])
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// One call to WeChat's `api` and how it ended.
    pub fn wechat_call(&self, api: &str, outcome: &str, errcode: Option<i64>, took: Duration) {
        let code = errcode.map_or_else(String::new, |c| c.to_string());
        self.wechat.with_label_values(&[api, outcome, &code]).inc();
        self.wechat_duration
            .with_label_values(&[api])
            .observe(took.as_secs_f64());
        if let Some(t) = &self.traces {
            t.record(
                || format!("wechat {api}"),
                took,
                || {
                    let mut a = vec![
                        opentelemetry::KeyValue::new("wechat.api", api.to_string()),
                        opentelemetry::KeyValue::new("wechat.outcome", outcome.to_string()),
                    ];
                    if let Some(c) = errcode {
                        a.push(opentelemetry::KeyValue::new("wechat.errcode", c));
                    }
                    a
                },
                (outcome != "ok").then_some(outcome),
            );
        }
    }

    /// One call to the login hook for `event` and how it ended.
    pub fn hook_call(&self, event: &str, outcome: &str, took: Duration) {
        self.hook.with_label_values(&[event, outcome]).inc();
        self.hook_duration
            .with_label_values(&[event])
            .observe(took.as_secs_f64());
        if let Some(t) = &self.traces {
            t.record(
                || format!("login hook {event}"),
                took,
                || {
                    vec![
                        opentelemetry::KeyValue::new("wxgate.hook.event", event.to_string()),
                        opentelemetry::KeyValue::new("wxgate.hook.outcome", outcome.to_string()),
                    ]
                },
                (outcome != "ok").then_some(outcome),
            );
        }
    }

    /// The store operations' series, for [`MeteredStore::wrap`].
    pub(crate) fn store_metrics(&self) -> Arc<StoreMetrics> {
        Arc::clone(&self.store)
    }

    /// The counters the status page reads: requests, token checks,
    /// endpoint outcomes, WeChat calls, sessions ended (nothing read from
    /// the system, unlike a whole gather).
    pub fn counters(&self) -> Vec<prometheus::proto::MetricFamily> {
        use prometheus::core::Collector;
        [
            &self.requests,
            &self.auth_vec,
            &self.endpoint_outcomes,
            &self.wechat,
            &self.sessions_ended,
        ]
        .into_iter()
        .flat_map(|v| v.collect())
        .collect()
    }

    /// The text exposition of every metric, after `refresh` has set the gauges
    /// that describe current state.
    pub fn render(&self, refresh: impl FnOnce(&Gauges<'_>)) -> String {
        {
            let _one_at_a_time = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
            let gauges = Gauges(&self.state);
            if let Some(t) = &self.traces {
                let (ok, failed) = t.exported();
                gauges.trace_spans(ok, failed);
            }
            refresh(&gauges);
        }
        let mut out = String::new();
        if let Err(e) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

/// What [`Metrics::request`] needs to know about an answered request.
#[derive(Debug)]
pub struct RequestDone<'a> {
    pub route: RouteLabel,
    pub method: &'a http::Method,
    /// The status written, 0 if none.
    pub status: u16,
    /// The token check, if one was made (or the route is public).
    pub auth: Option<AuthOutcome>,
    /// From the request header read to the response done.
    pub total: Duration,
    /// Proxied: from choosing an upstream to its response header.
    pub upstream: Option<Duration>,
    /// Proxied: from the request header read to the upstream's response header.
    pub to_header: Option<Duration>,
}

#[cfg(test)]
mod tests;
