//! `[store]`, validated: which store, its key prefix, what to do when it fails.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::ser::{ser_duration, ser_secret, ser_secret_opt};

/// `[store]`: where sessions, revocations, refresh tokens and counters live.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StoreConfig {
    #[serde(flatten)]
    pub kind: StoreKind,
    pub key_prefix: String,
    pub on_error: OnError,
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
}

/// Which store.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoreKind {
    /// In-process, bounded, lost on restart (the default).
    Memory {
        /// `[store.memory]`.
        memory: MemoryLimits,
    },
    /// Redis, shared by several instances.
    Redis {
        #[serde(flatten)]
        redis: RedisConfig,
    },
}

/// The Redis store: where it is, and how revocations reach every instance.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RedisConfig {
    pub topology: Topology,
    /// How long an instance answers revocation checks from memory while it
    /// cannot prove it holds every revocation (its feed is down or lagging);
    /// then `on_error` applies.
    #[serde(serialize_with = "ser_duration")]
    pub max_staleness: Duration,
    /// Replicas that must confirm a revocation before it is acknowledged (`WAIT`).
    pub replica_acks: u32,
    /// How long a revocation waits for `replica_acks`.
    #[serde(serialize_with = "ser_duration")]
    pub replica_ack_timeout: Duration,
    /// Live revocations the fleet holds; beyond it a revocation is refused
    /// (503 `store_full`), none is dropped.
    pub max_revocations: usize,
}

impl RedisConfig {
    /// A standalone Redis at `url` with the defaults (tests, `wxgate dev`).
    pub fn standalone(url: &str) -> Self {
        Self {
            topology: Topology::Standalone {
                url: Secret::from(url.to_string()),
                url_source: "inline".into(),
            },
            max_staleness: DEFAULT_MAX_STALENESS,
            replica_acks: 0,
            replica_ack_timeout: DEFAULT_REPLICA_ACK_TIMEOUT,
            max_revocations: DEFAULT_MAX_REVOCATIONS,
        }
    }
}

/// `[store] max_staleness` by default.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_millis(1500);
/// `[store] replica_ack_timeout` by default.
pub const DEFAULT_REPLICA_ACK_TIMEOUT: Duration = Duration::from_millis(250);
/// `[store] max_revocations` by default (Redis).
pub const DEFAULT_MAX_REVOCATIONS: usize = 1_000_000;

/// Which Redis: one server, a master found through Sentinel, or a Cluster.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "topology", rename_all = "snake_case")]
pub enum Topology {
    /// One server (`url`).
    Standalone {
        #[serde(serialize_with = "ser_secret")]
        url: Secret,
        url_source: String,
    },
    /// The master Sentinel names, followed across failovers.
    Sentinel {
        master_name: String,
        /// The sentinels, `host:port`.
        nodes: Vec<String>,
        #[serde(flatten)]
        auth: NodeAuth,
        #[serde(serialize_with = "ser_secret_opt")]
        sentinel_password: Option<Secret>,
        db: i64,
    },
    /// A Redis Cluster, found from its seed nodes (`host:port`).
    Cluster {
        nodes: Vec<String>,
        #[serde(flatten)]
        auth: NodeAuth,
    },
}

impl Topology {
    /// `standalone`, `sentinel` or `cluster`, as metrics and `/readyz` say it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Standalone { .. } => "standalone",
            Self::Sentinel { .. } => "sentinel",
            Self::Cluster { .. } => "cluster",
        }
    }
}

/// How wxgate logs in to the data nodes of a Sentinel or Cluster set-up.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct NodeAuth {
    pub username: Option<String>,
    #[serde(serialize_with = "ser_secret_opt")]
    pub password: Option<Secret>,
    pub tls: bool,
}

/// `[store.memory]`: how many entries of each kind the memory store holds.
///
/// Revocations are never dropped to make room: when their bound is reached,
/// a logout fails with 503 `store_full`. Sessions, refresh tokens and
/// counters drop their least recently used entry; login codes drop freely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemoryLimits {
    /// WeChat sessions, one per openid.
    pub max_sessions: usize,
    /// Refresh tokens (one per login or rotation, until spent and expired).
    pub max_refresh_tokens: usize,
    /// Revocations of each kind: token ids, subjects, refresh families.
    pub max_revocations: usize,
    /// Login codes being exchanged or recently exchanged.
    pub max_login_codes: usize,
    /// Rate-limit counters.
    pub max_counters: usize,
}

impl Default for MemoryLimits {
    fn default() -> Self {
        Self {
            max_sessions: 100_000,
            max_refresh_tokens: 100_000,
            max_revocations: 1_000_000,
            max_login_codes: 20_000,
            max_counters: 100_000,
        }
    }
}

/// What to do with a request that needs the store while the store is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Refuse with 503 `store_unavailable` (the default).
    FailClosed,
    /// Validate tokens without the revocation check (logged, counted).
    FailOpen,
}
