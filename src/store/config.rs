//! `[store]`, validated: which store, its key prefix, what to do when it fails.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::ser::{ser_duration, ser_secret};

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
        #[serde(serialize_with = "ser_secret")]
        url: Secret,
        url_source: String,
    },
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
