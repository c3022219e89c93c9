//! What every connection to a Redis node shares: the timeouts it is opened
//! with, and which errors mean the node must be replaced.

use std::time::Duration;

use redis::{ErrorKind, RedisError};

/// How a connection is opened: timeouts of each answer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    pub connect: Duration,
    pub response: Duration,
}

/// Whether an error means this connection must be replaced: the node is
/// gone, or it is no longer (or not yet) a usable master.
pub(super) fn needs_new_master(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || matches!(e.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
        || e.kind() == ErrorKind::MasterNameNotFoundBySentinel
        || e.kind() == ErrorKind::NoValidReplicasFoundBySentinel
}
