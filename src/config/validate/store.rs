//! `[store]`: which store, its key prefix, timeout and failure mode, and
//! the memory store's bounds per kind of entry.

use super::super::error::ConfigError;
use super::super::model::{MemoryLimits, OnError, StoreConfig, StoreKind};
use super::super::resolve::Sourced;
use super::super::schema::{RawMemoryLimits, RawStore};
use super::Validator;

impl Validator<'_> {
    pub(super) fn store(
        &self,
        raw: RawStore,
        redis_url: Option<Sourced>,
    ) -> Result<StoreConfig, ConfigError> {
        let kind = match raw.kind.as_deref().unwrap_or("memory") {
            "memory" => {
                if raw.url.is_some() || raw.url_env.is_some() {
                    return Err(self.err("store.url", "a URL is only used with kind = \"redis\""));
                }
                StoreKind::Memory {
                    memory: self.memory_limits(raw.memory.unwrap_or_default())?,
                }
            }
            "redis" if raw.memory.is_some() => {
                return Err(self.err(
                    "store.memory",
                    "bounds the memory store only; Redis is bounded by its maxmemory",
                ))
            }
            "redis" => match redis_url {
                Some(Sourced { value, source }) => StoreKind::Redis {
                    url: value,
                    url_source: source,
                },
                None => return Err(self.err("store.url_env", "the Redis URL was not resolved")),
            },
            other => {
                return Err(self.err(
                    "store.kind",
                    format!("{other:?} is not a store; use \"memory\" or \"redis\""),
                ))
            }
        };
        let key_prefix = raw.key_prefix.unwrap_or_else(|| "wxgate:".into());
        if key_prefix.is_empty()
            || key_prefix
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(self.err(
                "store.key_prefix",
                "must be non-empty, without spaces or control characters",
            ));
        }
        let timeout = self.positive_duration("store.timeout", raw.timeout, "200ms")?;
        Ok(StoreConfig {
            kind,
            key_prefix,
            on_error: raw.on_error.unwrap_or(OnError::FailClosed),
            timeout,
        })
    }

    fn memory_limits(&self, raw: RawMemoryLimits) -> Result<MemoryLimits, ConfigError> {
        const MAX: usize = 100_000_000;
        let d = MemoryLimits::default();
        Ok(MemoryLimits {
            max_sessions: self.count(
                "store.memory.max_sessions",
                raw.max_sessions,
                d.max_sessions,
                MAX,
            )?,
            max_refresh_tokens: self.count(
                "store.memory.max_refresh_tokens",
                raw.max_refresh_tokens,
                d.max_refresh_tokens,
                MAX,
            )?,
            max_revocations: self.count(
                "store.memory.max_revocations",
                raw.max_revocations,
                d.max_revocations,
                MAX,
            )?,
            max_login_codes: self.count(
                "store.memory.max_login_codes",
                raw.max_login_codes,
                d.max_login_codes,
                MAX,
            )?,
            max_counters: self.count(
                "store.memory.max_counters",
                raw.max_counters,
                d.max_counters,
                MAX,
            )?,
        })
    }
}
