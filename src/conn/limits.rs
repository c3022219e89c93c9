//! The limits of a client connection (`[server]`, and `[metrics]` for the
//! internal listener): deadlines and caps.

use std::time::Duration;

use serde::Serialize;

use crate::ser::ser_duration;

/// How long a client connection may idle or take to send a request, and
/// how many connections the gateway and one client address may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ConnLimits {
    /// A keep-alive connection waiting for its next request is closed after this.
    #[serde(serialize_with = "ser_duration")]
    pub idle_timeout: Duration,
    /// Request headers must arrive whole within this, from their first byte.
    #[serde(serialize_with = "ser_duration")]
    pub header_timeout: Duration,
    /// A request body must arrive whole within this, from the end of its headers.
    #[serde(serialize_with = "ser_duration")]
    pub body_timeout: Duration,
    /// Open client connections, all listeners together.
    pub max_connections: usize,
    /// Open client connections from one IP address (the TCP peer).
    pub max_connections_per_ip: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            max_connections: 16_384,
            max_connections_per_ip: 1_024,
        }
    }
}

/// The limits of the internal listener (`[metrics]`: metrics and the
/// access token), smaller than the public ones: its clients are Prometheus
/// and the backends, a handful of hosts. It reads no request body, so it
/// has no body deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct InternalLimits {
    /// A keep-alive connection waiting for its next request is closed after
    /// this; so is one whose client does not read an answer for this long.
    #[serde(serialize_with = "ser_duration")]
    pub idle_timeout: Duration,
    /// Request headers must arrive whole within this, from their first byte.
    #[serde(serialize_with = "ser_duration")]
    pub header_timeout: Duration,
    /// Open connections to the internal listener.
    pub max_connections: usize,
    /// Open connections to it from one IP address (the TCP peer).
    pub max_connections_per_ip: usize,
}

impl Default for InternalLimits {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(5),
            max_connections: 64,
            max_connections_per_ip: 16,
        }
    }
}
