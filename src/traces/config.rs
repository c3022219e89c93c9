//! `[traces]`: where spans go and how many are kept.

use std::time::Duration;

use serde::Serialize;

use crate::ser::ser_duration;

/// The most spans waiting for export (the queue is bounded: past it, new
/// spans are dropped, never waited for). The queue's slots are allocated at
/// start, a few hundred bytes each: 65,536 of them take about 25 MB.
pub const MAX_QUEUE: usize = 65_536;

/// The shortest export interval (shorter would keep the exporter's thread
/// busy waking up).
pub const MIN_EXPORT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// `[traces]`: OpenTelemetry traces, exported as OTLP over HTTP/protobuf.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TracesConfig {
    /// The collector's OTLP/HTTP traces URL (`http(s)://host:4318/v1/traces`).
    pub endpoint: String,
    /// The share of requests traced when no trusted caller decided (0 to 1).
    pub sample_ratio: f64,
    /// The `service.name` of every span.
    pub service_name: String,
    /// Spans waiting for export, at most.
    pub max_queue: usize,
    /// How often a batch is sent (sooner when one is full).
    #[serde(serialize_with = "ser_duration")]
    pub export_interval: Duration,
    /// How long one export may take.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
}
