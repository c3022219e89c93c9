//! How a store fails: [`StoreError`] (never carrying the store URL), and
//! whether a store may evict entries on its own.

use std::time::Duration;

use crate::error::ApiError;

/// The store could not be reached, timed out or answered nonsense.
///
/// Messages never carry the store URL (it may hold a password); the client
/// only ever hears `store_unavailable` (see [`ApiError::StoreUnavailable`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The Redis URL does not parse.
    #[error("not a valid redis:// or rediss:// URL")]
    InvalidUrl,
    /// The Redis client could not be built.
    #[error("cannot set up the Redis client")]
    Setup(#[source] RedisFault),
    /// Redis answered a call with an error, or the connection failed.
    #[error("Redis error")]
    Redis(#[source] RedisFault),
    /// Redis did not answer within the configured timeout.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    /// A call failed a moment ago: calls fail fast for a short while.
    #[error("Redis failed a moment ago; failing fast")]
    FailingFast,
    /// Redis answered, but not what the command returns.
    #[error("Redis answered {command} unexpectedly")]
    UnexpectedReply { command: &'static str },
    /// A record could not be written as JSON.
    #[error("cannot encode a record")]
    Encode(#[source] serde_json::Error),
    /// A stored record is not what wxgate wrote.
    #[error("a stored record is unreadable")]
    Decode(#[source] serde_json::Error),
    /// The revocations held in memory cannot be shown complete: the feed
    /// that brings them has not caught up for longer than `max_staleness`
    /// (`None`: not once since start).
    #[error("the revocations held are not known to be complete (last caught up {since:?} ago)")]
    Stale { since: Option<Duration> },
    /// Fewer replicas than `replica_acks` confirmed a write in time: it is on
    /// the master, but may not survive the master's loss.
    #[error("a write was confirmed by {acked} of the {wanted} replicas asked for")]
    NotReplicated { acked: u64, wanted: u32 },
    /// No room for a new entry that must not push out others (a revocation):
    /// the memory store's bound for `what` is reached, or Redis is at its
    /// `maxmemory` under `noeviction`.
    #[error("the store is full ({what}); nothing stored was dropped")]
    Full { what: &'static str },
}

/// A Redis error, described by its kind and code only: its full text may
/// quote connection details.
#[derive(Debug, thiserror::Error)]
#[error("{kind:?}{}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
pub struct RedisFault {
    kind: ::redis::ErrorKind,
    code: Option<String>,
}

impl From<&::redis::RedisError> for RedisFault {
    fn from(e: &::redis::RedisError) -> Self {
        Self {
            kind: e.kind(),
            code: e.code().map(str::to_string),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Full { .. } => ApiError::StoreFull,
            _ => ApiError::StoreUnavailable,
        }
    }
}

/// Whether a store may drop entries on its own to free memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eviction {
    /// Entries leave only when they expire or wxgate removes them.
    Never,
    /// Redis evicts keys under memory pressure (`maxmemory-policy` names
    /// how): a revocation could vanish and its token become valid again.
    Evicts { policy: String },
    /// The policy cannot be read (`CONFIG` is disabled on this server).
    Unknown,
}
