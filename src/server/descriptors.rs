//! Connection caps that fit the open-file limit.
//!
//! Every client connection is a descriptor, and serving it may take a
//! second one: its upstream connection, or the call to WeChat or the login
//! hook it waits on. Caps larger than what the process can open fail
//! badly: one client's idle keep-alive connections fill every place, and
//! a new client is turned away (or, out of descriptors, not even
//! accepted). So at start-up, once the soft limit is raised to the hard
//! one, wxgate keeps a reserve of descriptors for everything that is not a
//! client connection and fits the caps into the rest:
//!
//! ```text
//! reserve = 64        standard streams, the runtime, the listeners and their spare
//!                     descriptors (server::accept), config and TLS files, DNS
//!         + 128 per WeChat app (its two clients: `jscode2session`'s and
//!           the other calls') and 64 for the login hook: their idle
//!           connections (`outbound::MAX_IDLE` each)
//!         + Pingora's idle upstream connections (128 per public listener)
//!         + the relay's idle upstream connections (128 in all, when `[server]
//!           http1` or `http2` is "wxgate")
//!         + 1 per upstream address (its health check)
//!         + the Redis store's connections, each with a spare for a
//!           reconnect: 6 (calls, revocations and the revocation feed),
//!           + 4 per sentinel, or 4 per cluster seed node + 4
//!         + the internal listener's max_connections ([metrics]; itself at
//!           most an eighth of limit - 64)
//! room    = (limit - reserve) / 2          two descriptors per client connection
//! [server] max_connections        <= room
//! [server] max_connections_per_ip <= room - room / 4
//! ```
//!
//! The quarter of `room` that one address can never take is kept for new
//! clients. Each value lowered is logged with the limit and the reserve. A
//! cap over it closes a new connection at once (`admission`): the
//! listeners never stop accepting.

use pingora_core::server::configuration::ServerConf;

use crate::config::Config;
use crate::store::{StoreKind, Topology};

/// Descriptors kept for the process itself, whatever the config.
const FIXED: u64 = 64;
/// Descriptors kept for the Redis store: its three connections (calls,
/// revocations, the revocation feed), each with a spare for a reconnect.
const REDIS: u64 = 6;

/// Descriptors the configured store holds besides client connections.
fn store_descriptors(kind: &StoreKind) -> u64 {
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    match kind {
        StoreKind::Memory { .. } => 0,
        StoreKind::Redis { redis } => match &redis.topology {
            Topology::Standalone { .. } => REDIS,
            // Each of the three connections asks the sentinels, and the
            // feed asks them all whether its node is still the master.
            Topology::Sentinel { nodes, .. } => {
                REDIS.saturating_add(count(nodes.len()).saturating_mul(4))
            }
            // Each connection reaches every master; seeds are a fair guess.
            Topology::Cluster { nodes, .. } => {
                REDIS.saturating_add(count(nodes.len().max(3)).saturating_mul(4))
            }
        },
    }
}

/// A listener's connection caps: in total, and from one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caps {
    pub(crate) total: usize,
    pub(crate) per_ip: usize,
}

/// What the config asks for, and what besides client connections holds
/// descriptors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wanted {
    /// `[server] max_connections` and `max_connections_per_ip`.
    pub(crate) public: Caps,
    /// `[metrics]`' caps, when there is an internal listener.
    pub(crate) internal: Option<Caps>,
    /// Idle upstream connections Pingora may keep, all public listeners together.
    pub(crate) upstream_pool: usize,
    /// Upstream addresses (each health-checked over a connection of its own).
    pub(crate) upstreams: usize,
    /// Descriptors the store holds (Redis connections).
    pub(crate) redis: u64,
    /// Outbound pools (two per WeChat app, one for the login hook), each
    /// keeping up to `outbound::MAX_IDLE` idle connections.
    pub(crate) outbound_pools: usize,
}

impl Wanted {
    /// What `config` asks of the caps, and what else holds descriptors
    /// (Pingora's pool size from `conf`, the proxies' server config).
    pub(crate) fn of(config: &Config, conf: &ServerConf) -> Self {
        let limits = &config.server.limits;
        let public_listeners = if config.server.tls.is_some() { 2 } else { 1 };
        Self {
            public: Caps {
                total: limits.max_connections,
                per_ip: limits.max_connections_per_ip,
            },
            internal: config.metrics.listen.map(|_| Caps {
                total: config.metrics.limits.max_connections,
                per_ip: config.metrics.limits.max_connections_per_ip,
            }),
            // Each public listener's proxy has a pool of its own.
            upstream_pool: conf
                .upstream_keepalive_pool_size
                .saturating_mul(conf.threads.max(1))
                .saturating_mul(public_listeners)
                .saturating_add({
                    // The relay's pool serves both own paths.
                    let own = crate::config::ServedBy::Wxgate;
                    if config.server.http1 == own || config.server.http2 == own {
                        crate::upstream::MAX_IDLE_TOTAL
                    } else {
                        0
                    }
                }),
            upstreams: config.routes.iter().map(|r| r.upstream_addrs.len()).sum(),
            redis: store_descriptors(&config.store.kind),
            outbound_pools: config
                .wechat
                .as_ref()
                .map_or(0, |w| w.apps.len().saturating_mul(2))
                .saturating_add(usize::from(config.login.hook.is_some())),
        }
    }
}

/// The caps in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fitted {
    pub(crate) public: Caps,
    pub(crate) internal: Option<Caps>,
    /// Descriptors kept for everything else (0: the limit is unknown).
    pub(crate) reserve: u64,
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The caps `wanted` asks for, lowered to fit an open-file limit of `limit`.
pub(crate) fn fit(limit: u64, wanted: &Wanted) -> Fitted {
    let internal = wanted.internal.map(|c| {
        let total = c
            .total
            .min(to_usize(limit.saturating_sub(FIXED) / 8).max(1));
        Caps {
            total,
            per_ip: c.per_ip.min(total),
        }
    });
    let reserve = FIXED
        .saturating_add(to_u64(wanted.upstream_pool))
        .saturating_add(to_u64(wanted.upstreams))
        .saturating_add(wanted.redis)
        .saturating_add(to_u64(
            wanted
                .outbound_pools
                .saturating_mul(crate::outbound::MAX_IDLE),
        ))
        .saturating_add(internal.map_or(0, |c| to_u64(c.total)));
    let room = to_usize(limit.saturating_sub(reserve) / 2);
    let per_ip_room = room - room / 4;
    Fitted {
        public: Caps {
            total: wanted.public.total.min(room).max(1),
            per_ip: wanted.public.per_ip.min(per_ip_room).max(1),
        },
        internal,
        reserve,
    }
}

/// [`fit`] to this process's open-file limit (read now: call it after
/// raising the limit), logging every cap it lowers. An unreadable limit
/// leaves the caps as configured.
pub(crate) fn fit_to_open_file_limit(wanted: &Wanted) -> Fitted {
    let limit = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _)) => soft,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit: connection caps as configured");
            return Fitted {
                public: wanted.public,
                internal: wanted.internal,
                reserve: 0,
            };
        }
    };
    let fitted = fit(limit, wanted);
    let public = [
        (
            "server.max_connections",
            wanted.public.total,
            fitted.public.total,
        ),
        (
            "server.max_connections_per_ip",
            wanted.public.per_ip,
            fitted.public.per_ip,
        ),
    ];
    let internal = wanted.internal.zip(fitted.internal).map(|(w, f)| {
        [
            ("metrics.max_connections", w.total, f.total),
            ("metrics.max_connections_per_ip", w.per_ip, f.per_ip),
        ]
    });
    for (key, configured, lowered_to) in public.into_iter().chain(internal.into_iter().flatten()) {
        if lowered_to < configured {
            tracing::warn!(
                key,
                configured,
                lowered_to,
                open_file_limit = limit,
                reserve = fitted.reserve,
                "connection cap lowered to fit the open-file limit"
            );
        }
    }
    fitted
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn caps(total: usize, per_ip: usize) -> Caps {
        Caps { total, per_ip }
    }

    /// The defaults: `[server]` caps, no internal listener, one route to one
    /// upstream, the memory store, Pingora's pool for one listener.
    const DEFAULTS: Wanted = Wanted {
        public: caps(16_384, 1_024),
        internal: None,
        upstream_pool: 128,
        upstreams: 1,
        redis: 0,
        outbound_pools: 0,
    };

    #[test]
    fn a_limit_of_1024_keeps_a_reserve_and_a_quarter_for_new_clients() {
        let f = fit(1024, &DEFAULTS);
        assert_eq!(f.reserve, 64 + 128 + 1);
        // (1024 - 193) / 2 = 415 connections, 415 - 103 = 312 from one address.
        assert_eq!(f.public, caps(415, 312));
        assert_eq!(f.internal, None);
    }

    #[test]
    fn everything_else_is_reserved_first() {
        let wanted = Wanted {
            internal: Some(caps(64, 16)),
            upstream_pool: 256,
            upstreams: 10,
            redis: REDIS,
            outbound_pools: 2,
            ..DEFAULTS
        };
        let f = fit(4096, &wanted);
        assert_eq!(f.reserve, 64 + 256 + 10 + 6 + 128 + 64);
        // (4096 - 528) / 2 = 1784; the per-IP cap as configured fits in 1338.
        assert_eq!(f.public, caps(1784, 1024));
        assert_eq!(f.internal, Some(caps(64, 16)));
    }

    #[test]
    fn caps_that_fit_are_kept() {
        let f = fit(1 << 20, &DEFAULTS);
        assert_eq!(f.public, DEFAULTS.public);
        let f = fit(u64::MAX, &DEFAULTS);
        assert_eq!(f.public, DEFAULTS.public);
    }

    #[test]
    fn the_internal_listener_takes_at_most_an_eighth() {
        let wanted = Wanted {
            internal: Some(caps(10_000, 10_000)),
            ..DEFAULTS
        };
        let f = fit(1024, &wanted);
        assert_eq!(f.internal, Some(caps(120, 120)));
        assert_eq!(f.reserve, 64 + 128 + 1 + 120);
    }

    #[test]
    fn a_limit_below_the_reserve_leaves_one_place() {
        let f = fit(100, &DEFAULTS);
        assert_eq!(f.public, caps(1, 1));
        let f = fit(0, &DEFAULTS);
        assert_eq!(f.public, caps(1, 1));
    }
}
