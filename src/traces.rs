//! OpenTelemetry traces (`[traces]`, off by default): a span per request,
//! with children for the upstream call, each WeChat API call, the login
//! hook and the store operations of the gateway's endpoints, exported as
//! OTLP over HTTP/protobuf.
//!
//! Spans are made and sampled by the OpenTelemetry SDK: a request follows
//! the decision of a trusted proxy's `traceparent` (`[server]
//! trusted_proxies`), and is otherwise sampled at `sample_ratio`. A client
//! that is not a trusted proxy cannot choose its trace: its `traceparent`
//! and `tracestate` are dropped. The upstream and the login hook always get
//! the request's `traceparent` (sampled or not), so their spans join it.
//!
//! Export runs in the SDK's batch processor, on a thread of its own, from a
//! bounded queue: a full queue drops spans, a slow collector delays no
//! request. What was exported or failed to be is counted in
//! `wxgate_trace_spans_exported_total`.
//!
//! Spans carry no user data but the access log's keyed user hash: route
//! prefixes rather than paths, no query, no header, no token.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer, TracerProvider,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanData,
    SpanExporter,
};
use opentelemetry_sdk::Resource;

pub mod config;

pub use config::TracesConfig;
use opentelemetry::trace::Span as _;

/// The W3C header names.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// The span of one request, or one span under it.
type SdkSpan = opentelemetry_sdk::trace::Span;

/// Why `[traces]` could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the OTLP exporter: {0}")]
pub struct TracesError(String);

/// Spans exported, and spans whose export failed.
#[derive(Debug, Default)]
pub(crate) struct Exported {
    pub(crate) ok: AtomicU64,
    pub(crate) failed: AtomicU64,
}

/// The exporter, counting what it sends.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    counts: Arc<Exported>,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = u64::try_from(batch.len()).unwrap_or(u64::MAX);
        let result = self.inner.export(batch).await;
        let counter = match result {
            Ok(()) => &self.counts.ok,
            Err(_) => &self.counts.failed,
        };
        counter.fetch_add(n, Ordering::Relaxed);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The process's tracer: one per gateway, kept across reloads.
pub struct Traces {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    exported: Arc<Exported>,
    /// `sample_ratio`: decided here, before the SDK is asked for anything,
    /// so that a request not traced costs two random numbers.
    ratio: f64,
}

impl std::fmt::Debug for Traces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traces").finish_non_exhaustive()
    }
}

impl Traces {
    /// The tracer of `config`, its exporter's thread started.
    pub fn start(config: &TracesConfig) -> Result<Self, TracesError> {
        crate::outbound::install_crypto_provider();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(config.endpoint.clone())
            .with_timeout(config.timeout)
            .build()
            .map_err(|e| TracesError(e.to_string()))?;
        let exported = Arc::new(Exported::default());
        let exporter = Counted {
            inner: exporter,
            counts: Arc::clone(&exported),
        };
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(config.max_queue)
            .with_max_export_batch_size(config.max_queue.min(512))
            .with_scheduled_delay(config.export_interval)
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            // Requests are sampled by `request` (a trusted parent's flag, or
            // the ratio); the SDK records what it is given.
            .with_sampler(Sampler::AlwaysOn)
            .with_resource(
                Resource::builder_empty()
                    .with_service_name(config.service_name.clone())
                    .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                    .build(),
            )
            .build();
        let tracer = provider.tracer("wxgate");
        Ok(Self {
            provider,
            tracer,
            exported,
            ratio: config.sample_ratio,
        })
    }

    /// Export what is queued and stop the exporter (at shutdown).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::debug!(error = %e, "traces: shutting the exporter down");
        }
    }

    /// Spans exported and spans whose export failed so far.
    pub(crate) fn exported(&self) -> (u64, u64) {
        (
            self.exported.ok.load(Ordering::Relaxed),
            self.exported.failed.load(Ordering::Relaxed),
        )
    }

    /// The span of a request from a trusted proxy or not, which sent these
    /// `traceparent` and `tracestate` fields: each is believed when a
    /// trusted proxy sent it exactly once.
    /// Its span starts at `since` (when its header was read).
    pub(crate) fn request_from<'a>(
        &self,
        trusted: bool,
        traceparent: impl Iterator<Item = &'a [u8]>,
        tracestate: impl Iterator<Item = &'a [u8]>,
        since: std::time::Instant,
    ) -> RequestSpan {
        fn once<'a>(mut fields: impl Iterator<Item = &'a [u8]>) -> Option<&'a [u8]> {
            let first = fields.next()?;
            fields.next().is_none().then_some(first)
        }
        let (tp, ts) = if trusted {
            (once(traceparent), once(tracestate))
        } else {
            (None, None)
        };
        self.request(tp, ts, since)
    }

    /// The span of a request that came with these W3C headers, its header
    /// read at `since`: a trusted parent's sampling decision is kept;
    /// without one, `sample_ratio` decides.
    pub(crate) fn request(
        &self,
        traceparent: Option<&[u8]>,
        tracestate: Option<&[u8]>,
        since: std::time::Instant,
    ) -> RequestSpan {
        let parent = traceparent.and_then(|tp| {
            let cx = TraceContextPropagator::new().extract(&Sent {
                traceparent: std::str::from_utf8(tp).ok(),
                tracestate: tracestate.and_then(|s| std::str::from_utf8(s).ok()),
            });
            let sc = cx.span().span_context().clone();
            sc.is_valid().then_some(sc)
        });
        let sampled = match &parent {
            Some(p) => p.is_sampled(),
            None => rand::random::<f64>() < self.ratio,
        };
        if !sampled {
            // Not traced: only ids, for the upstream, the hook and the log.
            let (trace_id, state) = match parent {
                Some(p) => (p.trace_id(), p.trace_state().clone()),
                None => (random_trace_id(), TraceState::default()),
            };
            let sc = SpanContext::new(
                trace_id,
                random_span_id(),
                TraceFlags::default(),
                false,
                state,
            );
            return RequestSpan(Traced::Not(sc));
        }
        let now = crate::clock::wall_now();
        let started = now.checked_sub(since.elapsed()).unwrap_or(now);
        let parent =
            parent.map_or_else(Context::new, |p| Context::new().with_remote_span_context(p));
        let span = self.tracer.build_with_context(
            opentelemetry::trace::SpanBuilder::from_name("request")
                .with_kind(SpanKind::Server)
                .with_start_time(started),
            &parent,
        );
        RequestSpan(Traced::Yes(Box::new(Sampled {
            span,
            started,
            upstream: None,
        })))
    }

    /// A span under the current context's (see [`RequestSpan::context`]),
    /// if that one is sampled, for something that ended now after `took`:
    /// `name`, `attributes` and the failure (`Some(why)`) are only made
    /// for a sampled request.
    pub(crate) fn record(
        &self,
        name: impl FnOnce() -> String,
        took: Duration,
        attributes: impl FnOnce() -> Vec<KeyValue>,
        failed: Option<&str>,
    ) {
        Context::map_current(|cx| {
            if !cx.span().span_context().is_sampled() {
                return;
            }
            let end = crate::clock::wall_now();
            let start = end.checked_sub(took).unwrap_or(end);
            let mut span = self.tracer.build_with_context(
                opentelemetry::trace::SpanBuilder::from_name(name())
                    .with_kind(SpanKind::Client)
                    .with_start_time(start)
                    .with_attributes(attributes()),
                cx,
            );
            if let Some(why) = failed {
                span.set_status(Status::error(why.to_string()));
            }
            span.end_with_timestamp(end);
        });
    }
}

/// The two W3C headers of a request, as the propagator reads them.
struct Sent<'a> {
    traceparent: Option<&'a str>,
    tracestate: Option<&'a str>,
}

impl Extractor for Sent<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.traceparent,
            TRACESTATE => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

/// A `traceparent` value: `00-<trace id>-<span id>-<flags>`.
pub(crate) struct Traceparent([u8; 55]);

impl Traceparent {
    fn of(sc: &SpanContext) -> Self {
        let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
        let trace = sc.trace_id().to_bytes();
        let span = sc.span_id().to_bytes();
        let flags = [sc.trace_flags().to_u8()];
        // The slices are exactly twice the bytes' lengths: these cannot fail.
        let _ = hex::encode_to_slice(trace, &mut out[3..35]);
        let _ = hex::encode_to_slice(span, &mut out[36..52]);
        let _ = hex::encode_to_slice(flags, &mut out[53..55]);
        Self(out)
    }

    /// The header value.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// What the upstream (or the hook) is told of the trace.
pub(crate) struct Propagated {
    pub(crate) traceparent: Traceparent,
    /// A trusted caller's `tracestate`, passed on; `None` when it sent none.
    pub(crate) tracestate: Option<String>,
}

fn propagated(sc: &SpanContext) -> Propagated {
    let state = sc.trace_state().header();
    // Printable ASCII only, whatever the parsers before let through.
    let fit = !state.is_empty() && state.bytes().all(|b| (0x20..=0x7e).contains(&b));
    Propagated {
        traceparent: Traceparent::of(sc),
        tracestate: fit.then_some(state),
    }
}

/// The method as span names use it: a standard one, or `_OTHER`.
fn method_name(method: &str) -> &str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("_OTHER")
}

/// A random trace id (never the invalid all-zero one).
fn random_trace_id() -> TraceId {
    TraceId::from_bytes(rand::random::<u128>().max(1).to_be_bytes())
}

/// A random span id (never the invalid all-zero one).
fn random_span_id() -> SpanId {
    SpanId::from_bytes(rand::random::<u64>().max(1).to_be_bytes())
}

/// The span of one request, and of its upstream call; or, for a request
/// not traced, only its ids.
pub(crate) struct RequestSpan(Traced);

enum Traced {
    Not(SpanContext),
    Yes(Box<Sampled>),
}

/// A traced request's span, and its upstream call's.
struct Sampled {
    span: SdkSpan,
    started: SystemTime,
    upstream: Option<SdkSpan>,
}

/// How a request ended, for its span.
#[derive(Default)]
pub(crate) struct Finish<'a> {
    pub(crate) method: &'a str,
    pub(crate) route: &'a str,
    pub(crate) status: u16,
    pub(crate) auth: Option<&'static str>,
    /// The access log's keyed user hash.
    pub(crate) user: Option<&'a str>,
    pub(crate) request_id: &'a str,
}

impl RequestSpan {
    /// Whether the request is traced.
    pub(crate) fn sampled(&self) -> bool {
        matches!(self.0, Traced::Yes(_))
    }

    fn span_context(&self) -> &SpanContext {
        match &self.0 {
            Traced::Not(sc) => sc,
            Traced::Yes(s) => s.span.span_context(),
        }
    }

    /// The trace id, for the access log.
    pub(crate) fn trace_id(&self) -> TraceId {
        self.span_context().trace_id()
    }

    /// The context the gateway's endpoints run in: their children (WeChat,
    /// the hook, the store) hang under the request.
    pub(crate) fn context(&self) -> Context {
        Context::new().with_remote_span_context(self.span_context().clone())
    }

    /// The request goes upstream (to `peer`): its span starts now, under
    /// the request's if sampled; what the upstream is told.
    pub(crate) fn upstream(&mut self, traces: &Traces, peer: Option<SocketAddr>) -> Propagated {
        let s = match &mut self.0 {
            Traced::Not(sc) => return propagated(sc),
            Traced::Yes(s) => s,
        };
        let parent = Context::new().with_remote_span_context(s.span.span_context().clone());
        let mut span = traces.tracer.build_with_context(
            opentelemetry::trace::SpanBuilder::from_name("upstream").with_kind(SpanKind::Client),
            &parent,
        );
        if let Some(peer) = peer {
            span.set_attribute(KeyValue::new("server.address", peer.ip().to_string()));
            span.set_attribute(KeyValue::new("server.port", i64::from(peer.port())));
        }
        let told = propagated(span.span_context());
        if let Some(mut old) = s.upstream.replace(span) {
            // Sent again (a reused connection that failed): the first
            // attempt is over.
            old.set_status(Status::error("retried"));
            old.end();
        }
        told
    }

    /// The upstream's response header came, `after` the request's start.
    pub(crate) fn upstream_answered(&mut self, after: Duration, status: u16) {
        let Traced::Yes(s) = &mut self.0 else { return };
        if let Some(mut span) = s.upstream.take() {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            let at = s.started.checked_add(after).unwrap_or(s.started);
            span.end_with_timestamp(at);
        }
    }

    /// End the request's span (and an upstream span still open).
    pub(crate) fn finish(self, f: &Finish<'_>) {
        let Traced::Yes(mut s) = self.0 else { return };
        if let Some(mut span) = s.upstream.take() {
            span.set_status(Status::error("no response header"));
            span.end();
        }
        let span = &mut s.span;
        let method = method_name(f.method);
        span.update_name(format!("{method} {}", f.route));
        span.set_attribute(KeyValue::new("http.request.method", method.to_string()));
        span.set_attribute(KeyValue::new("http.route", f.route.to_string()));
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(f.status),
        ));
        if !f.request_id.is_empty() {
            span.set_attribute(KeyValue::new("wxgate.request_id", f.request_id.to_string()));
        }
        if let Some(auth) = f.auth {
            span.set_attribute(KeyValue::new("wxgate.auth", auth));
        }
        if let Some(user) = f.user {
            span.set_attribute(KeyValue::new("wxgate.user", user.to_string()));
        }
        if f.status >= 500 || f.status == 0 {
            span.set_status(Status::error("server error"));
        }
        span.end();
    }
}

/// What a callee is told of the current context's trace, sampled or not.
pub(crate) fn current() -> Option<Propagated> {
    Context::map_current(|cx| {
        let sc = cx.span().span_context().clone();
        sc.is_valid().then(|| propagated(&sc))
    })
}

#[cfg(test)]
mod tests;
