//! Connections to the configured topology, all behind one [`Conn`] that the
//! `redis` crate's commands, pipelines and scripts run on.
//!
//! * standalone: the crate's `ConnectionManager` (multiplexed, reconnects);
//! * Sentinel: [`SentinelConn`], a multiplexed connection to the master the
//!   sentinels name, dropped and looked up again when it fails or when the
//!   node it reaches is no longer the master (`READONLY`, `MASTERDOWN`,
//!   `LOADING`), so wxgate follows a failover by itself;
//! * Cluster: the crate's cluster connection (slots, `MOVED`, failover),
//!   opened on first use.
//!
//! No call is retried here: a failed call fails, and the store's fail-fast
//! window spares the callers behind it.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ErrorKind, Pipeline, RedisError, RedisFuture,
    RedisResult, TlsMode, Value,
};
use tokio::sync::{Mutex, OnceCell};

use super::super::config::{NodeAuth, Topology};
use super::super::error::{RedisFault, StoreError};

/// How a connection is opened: timeouts of each answer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    pub connect: Duration,
    pub response: Duration,
}

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
                Self::Sentinel(SentinelConn::new(b.build().map_err(setup)?, t))
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
            Self::Sentinel(s) => s
                .inner
                .master
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
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

/// The master Sentinel names, followed across failovers.
#[derive(Clone)]
pub(crate) struct SentinelConn {
    inner: Arc<SentinelInner>,
    /// The connection this clone last used (and its generation).
    held: Option<Current>,
}

struct SentinelInner {
    sentinel: Mutex<SentinelClient>,
    /// The master's address, for metrics and `/readyz`.
    master: std::sync::Mutex<Option<String>>,
    current: Mutex<Option<Current>>,
    config: AsyncConnectionConfig,
    db: i64,
}

#[derive(Clone)]
struct Current {
    conn: MultiplexedConnection,
    generation: u64,
}

impl SentinelConn {
    fn new(client: SentinelClient, t: Timeouts) -> Self {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(t.connect))
            .set_response_timeout(Some(t.response));
        Self {
            inner: Arc::new(SentinelInner {
                sentinel: Mutex::new(client),
                master: std::sync::Mutex::new(None),
                current: Mutex::new(None),
                config,
                db: 0,
            }),
            held: None,
        }
    }

    /// The current master connection, asking the sentinels when there is none.
    async fn get(&mut self) -> RedisResult<Current> {
        let mut current = self.inner.current.lock().await;
        if let Some(c) = current.as_ref() {
            return Ok(c.clone());
        }
        let generation = self
            .held
            .as_ref()
            .map_or(0, |c| c.generation)
            .wrapping_add(1);
        let client = self.inner.sentinel.lock().await.async_get_client().await?;
        let addr = client.get_connection_info().addr().to_string();
        let conn = client
            .get_multiplexed_async_connection_with_config(&self.inner.config)
            .await?;
        tracing::info!(master = %addr, "store: connected to the master the sentinels name");
        *self
            .inner
            .master
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(addr.clone());
        let c = Current { conn, generation };
        *current = Some(c.clone());
        Ok(c)
    }

    /// A call on `generation` failed with `e`: forget that connection (once).
    async fn failed(&self, generation: u64, e: &RedisError) {
        if !needs_new_master(e) {
            return;
        }
        let mut current = self.inner.current.lock().await;
        if current.as_ref().is_some_and(|c| c.generation == generation) {
            tracing::warn!(
                code = e.code().unwrap_or("-"),
                "store: the master connection failed; asking the sentinels again"
            );
            *current = None;
        }
    }
}

impl ConnectionLike for SentinelConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut c = self.get().await?;
            self.held = Some(c.clone());
            let r = c.conn.req_packed_command(cmd).await;
            if let Err(e) = &r {
                self.failed(c.generation, e).await;
            }
            r
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut c = self.get().await?;
            self.held = Some(c.clone());
            let r = c.conn.req_packed_commands(pipeline, offset, count).await;
            if let Err(e) = &r {
                self.failed(c.generation, e).await;
            }
            r
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.db
    }
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
