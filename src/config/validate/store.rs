//! `[store]`: which store, its key prefix, timeout and failure mode, and
//! the memory store's bounds per kind of entry.

use super::super::error::ConfigError;
use std::time::Duration;

use super::super::error::ConfigError as E;
use super::super::model::{MemoryLimits, OnError, StoreConfig, StoreKind};
use super::super::resolve::{RedisPasswords, Sourced};
use super::super::schema::{RawCluster, RawMemoryLimits, RawSentinel, RawStore};
use super::Validator;
use crate::store::{
    NodeAuth, RedisConfig, Topology, DEFAULT_MAX_REVOCATIONS, DEFAULT_MAX_STALENESS,
    DEFAULT_REPLICA_ACK_TIMEOUT,
};

/// The Redis-only keys of `[store]`, refused with the memory store.
const REDIS_ONLY: [&str; 6] = [
    "sentinel",
    "cluster",
    "max_staleness",
    "replica_acks",
    "replica_ack_timeout",
    "max_revocations",
];

impl Validator<'_> {
    pub(super) fn store(
        &self,
        raw: RawStore,
        redis_url: Option<Sourced>,
        passwords: RedisPasswords,
    ) -> Result<StoreConfig, ConfigError> {
        let kind = match raw.kind.as_deref().unwrap_or("memory") {
            "memory" => {
                if raw.url.is_some() || raw.url_env.is_some() {
                    return Err(self.err("store.url", "a URL is only used with kind = \"redis\""));
                }
                let set = [
                    raw.sentinel.is_some(),
                    raw.cluster.is_some(),
                    raw.max_staleness.is_some(),
                    raw.replica_acks.is_some(),
                    raw.replica_ack_timeout.is_some(),
                    raw.max_revocations.is_some(),
                ];
                if let Some((name, _)) = REDIS_ONLY.iter().zip(set).find(|(_, s)| *s) {
                    return Err(self.err(
                        format!("store.{name}"),
                        "is only used with kind = \"redis\"",
                    ));
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
            "redis" => StoreKind::Redis {
                redis: self.redis(&raw, redis_url, passwords)?,
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
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'{' || b == b'}')
        {
            // Braces would change the keys' hash tags (Redis Cluster slots).
            return Err(self.err(
                "store.key_prefix",
                "must be non-empty, without spaces, control characters or braces",
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

    /// The Redis topology and the revocation feed's settings.
    fn redis(
        &self,
        raw: &RawStore,
        url: Option<Sourced>,
        passwords: RedisPasswords,
    ) -> Result<RedisConfig, E> {
        let topology = match (&raw.sentinel, &raw.cluster, url) {
            (Some(_), Some(_), _) => {
                return Err(self.err(
                    "store.cluster",
                    "set one of url, [store.sentinel] or [store.cluster]",
                ))
            }
            (Some(s), None, _) => self.sentinel(s, passwords)?,
            (None, Some(c), _) => self.cluster(c, passwords)?,
            (None, None, Some(Sourced { value, source })) => Topology::Standalone {
                url: value,
                url_source: source,
            },
            (None, None, None) => {
                return Err(self.err("store.url_env", "the Redis URL was not resolved"))
            }
        };
        if matches!(
            topology,
            Topology::Sentinel { .. } | Topology::Cluster { .. }
        ) && (raw.url.is_some() || raw.url_env.is_some())
        {
            return Err(self.err(
                "store.url",
                "set one of url, [store.sentinel] or [store.cluster]",
            ));
        }
        let max_staleness = self.duration(
            "store.max_staleness",
            raw.max_staleness.clone(),
            &format!("{}ms", DEFAULT_MAX_STALENESS.as_millis()),
        )?;
        if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&max_staleness) {
            return Err(self.err("store.max_staleness", "must be between 100ms and 60s"));
        }
        let default_acks = match topology {
            Topology::Standalone { .. } => 0,
            _ => 1,
        };
        let replica_acks = match raw.replica_acks.map_or(Ok(default_acks), u32::try_from) {
            Ok(n) if n <= 5 => n,
            _ => return Err(self.err("store.replica_acks", "must be between 0 and 5")),
        };
        let replica_ack_timeout = self.positive_duration(
            "store.replica_ack_timeout",
            raw.replica_ack_timeout.clone(),
            &format!("{}ms", DEFAULT_REPLICA_ACK_TIMEOUT.as_millis()),
        )?;
        if replica_ack_timeout > Duration::from_secs(10) {
            return Err(self.err("store.replica_ack_timeout", "must be at most 10s"));
        }
        let max_revocations = self.count(
            "store.max_revocations",
            raw.max_revocations,
            DEFAULT_MAX_REVOCATIONS,
            100_000_000,
        )?;
        Ok(RedisConfig {
            topology,
            max_staleness,
            replica_acks,
            replica_ack_timeout,
            max_revocations,
        })
    }

    fn sentinel(&self, raw: &RawSentinel, passwords: RedisPasswords) -> Result<Topology, E> {
        let master_name = match raw.master_name.as_deref() {
            Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic()) => n.to_string(),
            _ => {
                return Err(self.err(
                    "store.sentinel.master_name",
                    "names the master the sentinels monitor, like \"wxgate\"",
                ))
            }
        };
        let db = raw.db.unwrap_or(0);
        if !(0..=15).contains(&db) {
            return Err(self.err("store.sentinel.db", "must be between 0 and 15"));
        }
        Ok(Topology::Sentinel {
            master_name,
            nodes: self.nodes("store.sentinel.nodes", &raw.nodes)?,
            auth: NodeAuth {
                username: raw.username.clone(),
                password: passwords.nodes,
                tls: raw.tls.unwrap_or(false),
            },
            sentinel_password: passwords.sentinels,
            db,
        })
    }

    fn cluster(&self, raw: &RawCluster, passwords: RedisPasswords) -> Result<Topology, E> {
        Ok(Topology::Cluster {
            nodes: self.nodes("store.cluster.nodes", &raw.nodes)?,
            auth: NodeAuth {
                username: raw.username.clone(),
                password: passwords.nodes,
                tls: raw.tls.unwrap_or(false),
            },
        })
    }

    /// A non-empty list of `host:port` (not resolved: Redis nodes move).
    fn nodes(&self, key: &str, raw: &Option<Vec<String>>) -> Result<Vec<String>, E> {
        let nodes = raw.clone().unwrap_or_default();
        if nodes.is_empty() || nodes.len() > 64 {
            return Err(self.err(key, "list 1 to 64 nodes, like [\"10.0.0.1:26379\"]"));
        }
        for n in &nodes {
            let ok = n.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty()
                    && port.parse::<u16>().is_ok_and(|p| p > 0)
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-_[]:".contains(&b))
            });
            if !ok {
                return Err(self.err(key, format!("{n:?} is not \"host:port\"")));
            }
        }
        Ok(nodes)
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
