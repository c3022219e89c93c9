//! Connections to the configured topology, all behind one [`Conn`] that the
//! `redis` crate's commands, pipelines and scripts run on.
//!
//! * standalone: the crate's `ConnectionManager` (multiplexed, reconnects);
//! * Sentinel: [`SentinelConn`] (`sentinel.rs`), a multiplexed connection
//!   to the master the sentinels name, dropped and looked up again when it
//!   fails or when the node it reaches is no longer the master
//!   (`READONLY`, `MASTERDOWN`, `LOADING`), so wxgate follows a failover by
//!   itself;
//! * Cluster: the crate's cluster connection (slots, `MOVED`, failover),
//!   opened on first use.
//!
//! No call is retried here: a failed call fails, and the store's fail-fast
//! window spares the callers behind it.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{Cmd, ConnectionAddr, Pipeline, RedisError, RedisFuture, RedisResult, TlsMode, Value};
use tokio::sync::OnceCell;

use super::super::config::{NodeAuth, Topology};
use super::super::error::{RedisFault, StoreError};
use super::node::Timeouts;
use super::sentinel::SentinelConn;

/// A connection to the store, whatever the topology. Cheap to clone: clones
/// share the underlying connection.
#[derive(Clone)]
pub(crate) enum Conn {
    Standalone(ConnectionManager),
    Sentinel(SentinelConn),
    Cluster(LazyCluster),
}

impl Conn {
    /// A lazy connection to `topology` (nothing is dialled until first use).
    pub(super) fn open(topology: &Topology, t: Timeouts) -> Result<Self, StoreError> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let setup = |e: RedisError| StoreError::Setup(RedisFault::from(&e));
        Ok(match topology {
            Topology::Standalone { url, .. } => {
                let client = redis::Client::open(url.expose_str().unwrap_or_default())
                    .map_err(|_| StoreError::InvalidUrl)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(t.connect))
                    .set_response_timeout(Some(t.response))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(200));
                Self::Standalone(
                    ConnectionManager::new_lazy_with_config(client, config).map_err(setup)?,
                )
            }
            Topology::Sentinel {
                master_name,
                nodes,
                auth,
                sentinel_password,
                db,
            } => {
                let addrs = nodes.iter().filter_map(|n| addr(n, auth.tls));
                let mut b =
                    SentinelClientBuilder::new(addrs, master_name, SentinelServerType::Master)
                        .map_err(setup)?
                        .set_client_to_redis_db(*db);
                if auth.tls {
                    b = b
                        .set_client_to_redis_tls_mode(TlsMode::Secure)
                        .set_client_to_sentinel_tls_mode(TlsMode::Secure);
                }
                if let Some(u) = &auth.username {
                    b = b.set_client_to_redis_username(u);
                }
                if let Some(p) = auth.password.as_ref().and_then(|p| p.expose_str()) {
                    b = b.set_client_to_redis_password(p);
                }
                if let Some(p) = sentinel_password.as_ref().and_then(|p| p.expose_str()) {
                    b = b.set_client_to_sentinel_password(p);
                }
                let sentinels = nodes
                    .iter()
                    .filter_map(|n| addr(n, auth.tls))
                    .map(|a| {
                        let password = sentinel_password
                            .as_ref()
                            .and_then(|p| p.expose_str())
                            .map(str::to_string);
                        (a, password)
                    })
                    .collect();
                Self::Sentinel(SentinelConn::new(
                    b.build().map_err(setup)?,
                    master_name,
                    sentinels,
                    *db,
                    t,
                ))
            }
            Topology::Cluster { nodes, auth } => {
                let urls: Vec<String> = nodes
                    .iter()
                    .map(|n| format!("{}://{n}", if auth.tls { "rediss" } else { "redis" }))
                    .collect();
                let mut b = redis::cluster::ClusterClientBuilder::new(urls)
                    .connection_timeout(t.connect)
                    .response_timeout(t.response)
                    .retries(2)
                    .min_retry_wait(10)
                    .max_retry_wait(100);
                b = with_auth(b, auth);
                Self::Cluster(LazyCluster {
                    client: Arc::new(b.build().map_err(setup)?),
                    conn: Arc::new(OnceCell::new()),
                })
            }
        })
    }

    /// The master Sentinel named last (`host:port`); standalone and
    /// cluster set-ups have no one master to name.
    pub(crate) fn master(&self) -> Option<String> {
        match self {
            Self::Standalone(_) | Self::Cluster(_) => None,
            Self::Sentinel(s) => s.master(),
        }
    }

    /// Whether the node this connection reads from is known to be the
    /// master: under Sentinel, a majority of the sentinels names it (a
    /// node cut off with a minority may still think it is); elsewhere Redis
    /// itself refuses a node that lost its role.
    pub(crate) async fn still_master(&self) -> bool {
        match self {
            Self::Sentinel(s) => {
                let confirmed = s.confirmed().await;
                if !confirmed {
                    s.forget();
                }
                confirmed
            }
            Self::Standalone(_) | Self::Cluster(_) => true,
        }
    }

    /// Run `cmd` on every master: each node's address and answer.
    pub(crate) async fn each_master(
        &self,
        cmd: &Cmd,
    ) -> RedisResult<Vec<(String, RedisResult<Value>)>> {
        let mut c = self.clone();
        match &mut c {
            Self::Cluster(cluster) => {
                let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                let reply = cluster
                    .get()
                    .await?
                    .route_command(cmd.clone(), routing)
                    .await?;
                let Value::Map(pairs) = reply else {
                    return Ok(vec![("cluster".into(), Ok(reply))]);
                };
                Ok(pairs
                    .into_iter()
                    .map(|(node, v)| {
                        let node = redis::from_redis_value::<String>(node).unwrap_or_default();
                        let v = match v {
                            Value::ServerError(e) => Err(RedisError::from(e)),
                            v => Ok(v),
                        };
                        (node, v)
                    })
                    .collect())
            }
            other => {
                let v = cmd.query_async::<Value>(other).await;
                let node = self.master().unwrap_or_else(|| "redis".into());
                Ok(vec![(node, v)])
            }
        }
    }
}

fn with_auth(
    mut b: redis::cluster::ClusterClientBuilder,
    auth: &NodeAuth,
) -> redis::cluster::ClusterClientBuilder {
    if let Some(u) = &auth.username {
        b = b.username(u);
    }
    if let Some(p) = auth.password.as_ref().and_then(|p| p.expose_str()) {
        b = b.password(p);
    }
    if auth.tls {
        b = b.tls(TlsMode::Secure);
    }
    b
}

/// `host:port` as a connection address (validated by the config).
fn addr(node: &str, tls: bool) -> Option<ConnectionAddr> {
    let (host, port) = node.rsplit_once(':')?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = port.parse().ok()?;
    Some(if tls {
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host, port)
    })
}

/// A cluster connection, opened on first use (opening asks the seed nodes
/// for the slot map, which needs the network).
#[derive(Clone)]
pub(crate) struct LazyCluster {
    client: Arc<redis::cluster::ClusterClient>,
    conn: Arc<OnceCell<ClusterConnection>>,
}

impl LazyCluster {
    async fn get(&self) -> RedisResult<ClusterConnection> {
        self.conn
            .get_or_try_init(|| self.client.get_async_connection())
            .await
            .cloned()
    }
}

impl ConnectionLike for LazyCluster {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move { self.get().await?.req_packed_command(cmd).await })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            self.get()
                .await?
                .req_packed_commands(pipeline, offset, count)
                .await
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Standalone(c) => c.req_packed_command(cmd),
            Self::Sentinel(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Standalone(c) => c.get_db(),
            Self::Sentinel(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}
