//! Gauges and mirrored counters that describe state, set when `/metrics` is scraped.

use prometheus::IntCounter;

use super::Metrics;

/// Setters for the gauges that describe state, used at scrape time.
pub struct Gauges<'a>(pub(super) &'a Metrics);

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

    /// Revocation checks skipped by `fail_open` so far.
    pub fn fail_open(&self, count: u64) {
        catch_up(&self.0.fail_open, count);
    }
}

/// Bring a counter that mirrors a count kept elsewhere up to `value`.
fn catch_up(counter: &IntCounter, value: u64) {
    counter.inc_by(value.saturating_sub(counter.get()));
}
