//! Gauges and mirrored counters that describe state, set when `/metrics` is scraped.

use prometheus::{GaugeVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::store::StoreStatus;

use super::register::{counter_vec, gauge_vec, MetricsError};

/// The series that mirror state kept elsewhere: upstream health, the memory
/// store's fill, revocation checks skipped.
pub(super) struct StateGauges {
    upstream_up: IntGaugeVec,
    store_entries: IntGaugeVec,
    store_capacity: IntGaugeVec,
    store_dropped: IntCounterVec,
    store_refused: IntCounterVec,
    fail_open: IntCounter,
    connections_refused: IntCounterVec,
    log_suppressed: IntCounter,
    trace_spans: IntCounterVec,
    tls_expiry: IntGaugeVec,
    shared: SharedStoreGauges,
}

/// The shared store (Redis): its topology and the revocation feed.
struct SharedStoreGauges {
    up: IntGaugeVec,
    master: IntGaugeVec,
    live: IntGaugeVec,
    staleness: GaugeVec,
    loads: IntCounterVec,
    gaps: IntCounterVec,
    received: IntCounterVec,
}

impl SharedStoreGauges {
    fn new(r: &Registry) -> Result<Self, MetricsError> {
        let t = &["topology"];
        Ok(Self {
            up: gauge_vec(r, "wxgate_store_up", "1 if the shared store answers calls (not failing fast after a failure), by topology.", t)?,
            master: gauge_vec(r, "wxgate_store_master_info", "1 for the master the store writes to (named by Sentinel), by topology and node.", &["topology", "node"])?,
            live: gauge_vec(r, "wxgate_revocations_live", "Live revocations this instance holds in memory, by topology.", t)?,
            staleness: {
                let g = GaugeVec::new(Opts::new("wxgate_revocation_feed_staleness_seconds", "Seconds since this instance last proved it holds every revocation (-1: never since start)."), t)?;
                r.register(Box::new(g.clone()))?;
                g
            },
            loads: counter_vec(r, "wxgate_revocation_feed_loads_total", "Full loads of the live revocations (start, reconnect, gap), by topology.", t)?,
            gaps: counter_vec(r, "wxgate_revocation_feed_gaps_total", "Gaps found in the revocation feed's numbering (each followed by a full load), by topology.", t)?,
            received: counter_vec(r, "wxgate_revocations_received_total", "Revocations received into memory (feed, loads and this instance's own), by topology.", t)?,
        })
    }
}

impl StateGauges {
    /// The TLS certificate expires at `at` (Unix seconds).
    pub(super) fn tls_expiry(&self, at: i64) {
        self.tls_expiry.with_label_values(&["tls"]).set(at);
    }

    pub(super) fn new(r: &Registry) -> Result<Self, MetricsError> {
        Ok(Self {
            upstream_up: gauge_vec(
                r,
                "wxgate_upstream_up",
                "1 if the upstream passes its health check, by route and upstream address.",
                &["route", "peer"],
            )?,
            store_entries: gauge_vec(
                r,
                "wxgate_store_entries",
                "Memory store: entries held, by kind.",
                &["kind"],
            )?,
            store_capacity: gauge_vec(
                r,
                "wxgate_store_capacity",
                "Memory store: the configured bound, by kind.",
                &["kind"],
            )?,
            store_dropped: counter_vec(
                r,
                "wxgate_store_dropped_total",
                "Memory store: live entries dropped to make room, by kind (never revocations).",
                &["kind"],
            )?,
            store_refused: counter_vec(
                r,
                "wxgate_store_refused_total",
                "Memory store: new entries refused for want of room, by kind (revocations).",
                &["kind"],
            )?,
            connections_refused: counter_vec(
                r,
                "wxgate_connections_refused_total",
                "Client connections closed at once over a cap, by listener (public, metrics) and reason (total, per_ip).",
                &["listener", "reason"],
            )?,
            log_suppressed: {
                let g = IntCounter::new(
                    "wxgate_log_lines_suppressed_total",
                    "Warnings and errors left out of the log by its rate limit (at most 10 per call site every 10 s).",
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            trace_spans: counter_vec(
                r,
                "wxgate_trace_spans_exported_total",
                "With [traces]: spans sent to the collector, by outcome (ok, failed).",
                &["outcome"],
            )?,
            tls_expiry: gauge_vec(
                r,
                "wxgate_tls_certificate_expiry_timestamp_seconds",
                "When the TLS listener's certificate expires (its notAfter, Unix seconds), by listener; read at start.",
                &["listener"],
            )?,
            shared: SharedStoreGauges::new(r)?,
            fail_open: {
                let g = IntCounter::new(
                    "wxgate_fail_open_total",
                    "Revocation checks skipped because the store was down and on_error = fail_open.",
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
        })
    }
}

/// Setters for the gauges that describe state, used at scrape time.
pub struct Gauges<'a>(pub(super) &'a StateGauges);

impl Gauges<'_> {
    /// A memory-store map: entries, bound, drops and refusals so far.
    pub fn store_map(
        &self,
        kind: &str,
        entries: usize,
        capacity: usize,
        dropped: u64,
        refused: u64,
    ) {
        let m = self.0;
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        m.store_entries
            .with_label_values(&[kind])
            .set(int(entries as u64));
        m.store_capacity
            .with_label_values(&[kind])
            .set(int(capacity as u64));
        catch_up(&m.store_dropped.with_label_values(&[kind]), dropped);
        catch_up(&m.store_refused.with_label_values(&[kind]), refused);
    }

    /// Whether an upstream of a route passes its health check.
    pub fn upstream(&self, route: &str, peer: &str, up: bool) {
        self.0
            .upstream_up
            .with_label_values(&[route, peer])
            .set(i64::from(up));
    }

    /// Connections a listener closed at once over a cap, so far.
    pub fn connections_refused(&self, listener: &str, reason: &str, count: u64) {
        catch_up(
            &self
                .0
                .connections_refused
                .with_label_values(&[listener, reason]),
            count,
        );
    }

    /// Log lines the rate limit left out so far.
    pub fn log_suppressed(&self, count: u64) {
        catch_up(&self.0.log_suppressed, count);
    }

    /// The shared store's topology, master and revocation feed.
    pub fn shared_store(&self, s: &StoreStatus) {
        let g = &self.0.shared;
        let t = &[s.topology];
        g.up.with_label_values(t).set(i64::from(s.up));
        g.master.reset();
        if let Some(node) = &s.master {
            g.master.with_label_values(&[s.topology, node]).set(1);
        }
        g.live
            .with_label_values(t)
            .set(i64::try_from(s.revocations_live).unwrap_or(i64::MAX));
        g.staleness
            .with_label_values(t)
            .set(s.staleness.map_or(-1.0, |d| d.as_secs_f64()));
        catch_up(&g.loads.with_label_values(t), s.feed_loads);
        catch_up(&g.gaps.with_label_values(t), s.feed_gaps);
        catch_up(&g.received.with_label_values(t), s.revocations_received);
    }

    /// Spans exported and spans whose export failed so far.
    pub fn trace_spans(&self, ok: u64, failed: u64) {
        catch_up(&self.0.trace_spans.with_label_values(&["ok"]), ok);
        catch_up(&self.0.trace_spans.with_label_values(&["failed"]), failed);
    }

    /// Revocation checks skipped by `fail_open` so far.
    pub fn fail_open(&self, count: u64) {
        catch_up(&self.0.fail_open, count);
    }
}

/// Bring a counter that mirrors a count kept elsewhere up to `value`.
fn catch_up(counter: &IntCounter, value: u64) {
    counter.inc_by(value.saturating_sub(counter.get()));
}
