//! The master Sentinel names, followed across failovers.
//!
//! [`SentinelConn`] holds one multiplexed connection to the master. A call
//! that fails in a way that says the node is gone or no longer the master
//! (see [`super::conn::needs_new_master`]) drops it; the next call asks
//! the sentinels again. Asking runs in a task of its own with its own time
//! budget, so a slow or dead sentinel listed first never leaves every
//! caller, each cut off by its own short timeout, without a master.
//!
//! A node can believe it is the master after the sentinels promoted another
//! (a partition that left it with a minority): the revocation feed
//! therefore asks every sentinel, and counts itself caught up only while a
//! majority of them names the node it reads from ([`SentinelConn::confirmed`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::SentinelClient;
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline,
    RedisError, RedisFuture, RedisResult, Value,
};
use tokio::sync::{watch, Mutex};

use super::node::{needs_new_master, Timeouts};

/// How long one search for the master may take (all sentinels asked).
const DISCOVERY_LIMIT: Duration = Duration::from_secs(5);

/// A connection to the master Sentinel names. Clones share it.
#[derive(Clone)]
pub(crate) struct SentinelConn {
    inner: Arc<Inner>,
}

struct Inner {
    sentinel: Mutex<SentinelClient>,
    current: std::sync::Mutex<Option<Current>>,
    /// Numbers each master connection, so that a late failure of an old
    /// one never drops its successor.
    generation: AtomicU64,
    /// A search for the master is under way.
    discovering: AtomicBool,
    /// Bumped when a search ends, found or not.
    searched: watch::Sender<u64>,
    config: AsyncConnectionConfig,
    db: i64,
    master_name: String,
    /// Each sentinel, and a connection to it once opened (for confirmation).
    sentinels: Vec<(ConnectionInfo, Mutex<Option<MultiplexedConnection>>)>,
    timeouts: Timeouts,
}

#[derive(Clone)]
struct Current {
    conn: MultiplexedConnection,
    generation: u64,
    addr: String,
}

impl SentinelConn {
    pub(super) fn new(
        client: SentinelClient,
        master_name: &str,
        sentinels: Vec<(ConnectionAddr, Option<String>)>,
        db: i64,
        t: Timeouts,
    ) -> Self {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(t.connect))
            .set_response_timeout(Some(t.response));
        let sentinels = sentinels
            .into_iter()
            .filter_map(|(addr, password)| {
                let info = addr.into_connection_info().ok()?;
                let settings = info.redis_settings().clone();
                let settings = match password {
                    Some(p) => settings.set_password(p),
                    None => settings,
                };
                Some((info.set_redis_settings(settings), Mutex::new(None)))
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                sentinel: Mutex::new(client),
                current: std::sync::Mutex::new(None),
                generation: AtomicU64::new(0),
                discovering: AtomicBool::new(false),
                searched: watch::channel(0).0,
                config,
                db,
                master_name: master_name.to_string(),
                sentinels,
                timeouts: t,
            }),
        }
    }

    /// The master connected to (`host:port`), if any.
    pub(crate) fn master(&self) -> Option<String> {
        self.inner.current().map(|c| c.addr)
    }

    /// Whether a majority of the sentinels names the node this connection
    /// reaches as the master (`false` also when there is no connection, or
    /// too few sentinels answer).
    pub(crate) async fn confirmed(&self) -> bool {
        let Some(addr) = self.master() else {
            return false;
        };
        // All at once: a sentinel that does not answer costs one timeout,
        // not one per sentinel.
        let mut asked = tokio::task::JoinSet::new();
        for i in 0..self.inner.sentinels.len() {
            let inner = self.inner.clone();
            asked.spawn(async move { inner.names(i).await });
        }
        let needed = self.inner.sentinels.len() / 2 + 1;
        let mut agree = 0usize;
        while let Some(named) = asked.join_next().await {
            if named.ok().flatten().as_deref() == Some(addr.as_str()) {
                agree = agree.saturating_add(1);
                if agree >= needed {
                    return true;
                }
            }
        }
        false
    }

    /// Drop the master connection (it is no longer known to be the master).
    pub(crate) fn forget(&self) {
        *self
            .inner
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The master connection, waiting for a search when there is none.
    async fn get(&self) -> RedisResult<Current> {
        let mut searched = self.inner.searched.subscribe();
        if let Some(c) = self.inner.current() {
            return Ok(c);
        }
        Inner::search(&self.inner);
        // The caller's own timeout bounds this wait; the search goes on.
        let _ = searched.changed().await;
        self.inner.current().ok_or_else(|| {
            RedisError::from(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "the sentinels named no reachable master",
            ))
        })
    }

    /// A call on `generation` failed with `e`: forget that connection (once).
    fn failed(&self, generation: u64, e: &RedisError) {
        if !needs_new_master(e) {
            return;
        }
        let mut current = self
            .inner
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|c| c.generation == generation) {
            tracing::warn!(
                code = e.code().unwrap_or("-"),
                "store: the master connection failed; asking the sentinels again"
            );
            *current = None;
        }
    }
}

impl Inner {
    fn current(&self) -> Option<Current> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Start a search for the master, unless one is under way.
    fn search(this: &Arc<Self>) {
        if this.discovering.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = this.clone();
        tokio::spawn(async move {
            // However the search ends (done, panicked, cancelled at
            // shutdown), the next caller may start another.
            let _done = SearchDone(inner.clone());
            match tokio::time::timeout(DISCOVERY_LIMIT, inner.discover()).await {
                Ok(Ok(c)) => {
                    tracing::info!(master = %c.addr, "store: connected to the master the sentinels name");
                    *inner.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(c);
                }
                Ok(Err(e)) => {
                    tracing::warn!(kind = ?e.kind(), code = e.code().unwrap_or("-"), "store: the sentinels named no reachable master")
                }
                Err(_) => tracing::warn!("store: asking the sentinels for the master timed out"),
            }
        });
    }

    async fn discover(&self) -> RedisResult<Current> {
        let client = self.sentinel.lock().await.async_get_client().await?;
        let addr = client.get_connection_info().addr().to_string();
        let conn = client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        let generation = self
            .generation
            .fetch_add(1, Ordering::AcqRel)
            .wrapping_add(1);
        Ok(Current {
            conn,
            generation,
            addr,
        })
    }

    /// The master one sentinel names (`host:port`), if it answers in time.
    async fn names(&self, i: usize) -> Option<String> {
        let (info, slot) = self.sentinels.get(i)?;
        let mut slot = slot.lock().await;
        if slot.is_none() {
            let client = redis::Client::open(info.clone()).ok()?;
            let conn = tokio::time::timeout(
                self.timeouts.connect,
                client.get_multiplexed_async_connection_with_config(&self.config),
            )
            .await
            .ok()?
            .ok()?;
            *slot = Some(conn);
        }
        let conn = slot.as_mut()?;
        let asked = tokio::time::timeout(
            self.timeouts.connect,
            redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(&self.master_name)
                .query_async::<Option<(String, u16)>>(conn),
        )
        .await;
        match asked {
            Ok(Ok(Some((host, port)))) => Some(format!("{host}:{port}")),
            Ok(Ok(None)) => None,
            _ => {
                *slot = None;
                None
            }
        }
    }
}

/// Ends a search for the master when dropped.
struct SearchDone(Arc<Inner>);

impl Drop for SearchDone {
    fn drop(&mut self) {
        self.0.discovering.store(false, Ordering::Release);
        self.0.searched.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl ConnectionLike for SentinelConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut c = self.get().await?;
            let r = c.conn.req_packed_command(cmd).await;
            if let Err(e) = &r {
                self.failed(c.generation, e);
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
            let r = c.conn.req_packed_commands(pipeline, offset, count).await;
            if let Err(e) = &r {
                self.failed(c.generation, e);
            }
            r
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.db
    }
}
