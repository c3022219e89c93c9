//! `[traces]`: where spans go and how many are kept.

use std::time::Duration;

use serde::Serialize;

use crate::ser::ser_duration;

/// The most spans waiting for export (the queue is bounded: past it, new
/// spans are dropped, never waited for).
pub const MAX_QUEUE: usize = 1_000_000;

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
