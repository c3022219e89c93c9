//! Server-side state, in memory or in Redis.
//!
//! [`Store`] is the one interface for everything wxgate remembers:
//!
//! * WeChat sessions per openid (`session_key` lives here and nowhere else);
//! * login codes being exchanged and their sealed outcome, so that two
//!   instances given the same code make one `jscode2session` call;
//! * revocations: a token id until its `exp`, "everything of this openid
//!   issued before t", a whole refresh-token family;
//! * refresh tokens, stored under a SHA-256 of the token, never in clear;
//! * rate-limit counters.
//!
//! [`memory::MemoryStore`] (the default) is embedded and bounded per kind of
//! entry, and never drops a revocation to make room;
//! [`redis::RedisStore`] lets several instances share it all. Both pass the
//! same test suite (`tests/store.rs`). Every entry has a time to live.

mod config;
mod error;
mod interface;
pub mod memory;
mod records;
pub mod redis;
mod revocations;

use std::sync::Arc;

pub use config::{
    MemoryLimits, NodeAuth, OnError, RedisConfig, StoreConfig, StoreKind, Topology,
    DEFAULT_MAX_REVOCATIONS, DEFAULT_MAX_STALENESS, DEFAULT_REPLICA_ACK_TIMEOUT,
};
pub use error::{Eviction, RedisFault, StoreError};
pub use interface::{MapStats, Store, StoreStatus};
pub(crate) use records::secret_serde;
pub use records::{
    AccessTokenRecord, Ban, CodeClaim, Device, EndReason, RefreshRecord, RefreshTake,
    RevocationCheck, SessionEntry, WxSession, MAX_TTL, MAX_UID_OPENIDS,
};
pub use revocations::RevocationSet;

/// Build the configured store.
pub fn build(cfg: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match &cfg.kind {
        StoreKind::Memory { memory } => Arc::new(memory::MemoryStore::new(memory)),
        StoreKind::Redis { redis } => Arc::new(redis::RedisStore::from_config(
            redis,
            &cfg.key_prefix,
            cfg.timeout,
        )?),
    })
}
