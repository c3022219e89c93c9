//! Upstream groups: round-robin selection, TCP health checks, peer options.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::LoadBalancer;

/// The upstream group of one route.
pub struct Upstream {
    /// Round-robin selection with health checks.
    pub lb: Arc<LoadBalancer<RoundRobin>>,
    connect_timeout: Duration,
    read_timeout: Duration,
    /// Number of upstream addresses.
    pub count: usize,
    /// Idle connections kept for wxgate's own HTTP/1 path.
    idle: Mutex<Vec<Idle>>,
}

/// An upstream connection waiting for its next request.
struct Idle {
    addr: SocketAddr,
    stream: tokio::net::TcpStream,
    since: Instant,
}

/// The most idle connections all groups keep together (the open-file
/// reserve counts them: `server::descriptors`).
pub const MAX_IDLE_TOTAL: usize = 128;

/// Idle connections kept by all groups, old configs' included (one group
/// may hold them all).
static IDLE_TOTAL: AtomicUsize = AtomicUsize::new(0);

fn idle_released(n: usize) {
    if n > 0 {
        IDLE_TOTAL.fetch_sub(n, Ordering::AcqRel);
    }
}

/// How long an idle connection is kept (as Pingora's pool does).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

impl Upstream {
    /// Build the group of a route's upstream addresses; health checks run
    /// once `lb` is started.
    pub fn new(
        addrs: &[SocketAddr],
        connect_timeout: Duration,
        read_timeout: Duration,
        health_check_interval: Duration,
    ) -> std::io::Result<Self> {
        let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(addrs.iter().copied())?;
        let mut hc = pingora_load_balancing::health_check::TcpHealthCheck::new();
        hc.peer_template.options.connection_timeout = Some(connect_timeout);
        // One failed probe takes an upstream out; one success puts it back.
        hc.consecutive_failure = 1;
        hc.consecutive_success = 1;
        hc.health_changed_callback = Some(Box::new(HealthLog));
        lb.set_health_check(hc);
        lb.health_check_frequency = Some(health_check_interval);
        lb.parallel_health_check = true;
        Ok(Self {
            lb: Arc::new(lb),
            connect_timeout,
            read_timeout,
            count: addrs.len(),
            idle: Mutex::new(Vec::new()),
        })
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let idle = self.idle.get_mut().unwrap_or_else(PoisonError::into_inner);
        idle_released(idle.len());
    }
}

/// Logs upstream health changes in one line.
struct HealthLog;

#[async_trait]
impl pingora_load_balancing::health_check::HealthObserve for HealthLog {
    async fn observe(&self, target: &pingora_load_balancing::Backend, healthy: bool) {
        if healthy {
            tracing::info!(upstream = %target.addr, "upstream is healthy again");
        } else {
            tracing::warn!(upstream = %target.addr, "upstream failed its health check, skipped until it recovers");
        }
    }
}

impl Upstream {
    /// Each upstream address and whether it passes its health check.
    pub fn health(&self) -> Vec<(String, bool)> {
        let backends = self.lb.backends();
        backends
            .get_backend()
            .iter()
            .map(|b| (b.addr.to_string(), backends.ready(b)))
            .collect()
    }

    /// A healthy upstream not in `failed`.
    pub fn pick_addr(&self, failed: &[SocketAddr]) -> Option<SocketAddr> {
        let backend = self.lb.select_with(b"", 256, |b, healthy| {
            healthy && b.addr.as_inet().is_none_or(|a| !failed.contains(a))
        })?;
        backend.addr.as_inet().copied()
    }

    /// How long connecting to an upstream may take.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// How long the upstream may take to answer, and each read or write.
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// An idle connection to `addr` that is still open, if one is kept.
    ///
    /// A connection the upstream closed while it was idle has been marked
    /// readable by the runtime: `try_read` then says so without a system
    /// call for the ones that are fine.
    pub fn take_idle(&self, addr: SocketAddr) -> Option<tokio::net::TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(i) = idle.iter().rposition(|c| c.addr == addr) {
            let c = idle.remove(i);
            idle_released(1);
            if c.since.elapsed() >= IDLE_TIMEOUT {
                continue;
            }
            let mut probe = [0u8; 1];
            match c.stream.try_read(&mut probe) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some(c.stream),
                // Closed, or bytes nobody asked for: not reusable.
                _ => continue,
            }
        }
        None
    }

    /// Keep a connection whose response was read whole for the next request.
    pub fn put_idle(&self, addr: SocketAddr, stream: tokio::net::TcpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if IDLE_TOTAL.fetch_add(1, Ordering::AcqRel) >= MAX_IDLE_TOTAL {
            idle_released(1);
            if idle.is_empty() {
                // Every place is another group's: this one is not kept.
                return;
            }
            // This group's oldest makes room (the count stays).
            idle.remove(0);
        }
        idle.push(Idle {
            addr,
            stream,
            since: Instant::now(),
        });
    }

    /// A healthy upstream not in `failed`, as a peer with this route's timeouts.
    pub fn pick(&self, failed: &[SocketAddr]) -> Option<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.pick_addr(failed)?, false, String::new());
        peer.options.connection_timeout = Some(self.connect_timeout);
        peer.options.read_timeout = Some(self.read_timeout);
        peer.options.write_timeout = Some(self.read_timeout);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        Some(Box::new(peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The idle connections of every group together stay within
    /// `MAX_IDLE_TOTAL` (the open-file reserve counts on it), a full pool
    /// still takes a newer connection in place of its oldest, and a dropped
    /// group (a config reloaded away) gives its places back. (Only this
    /// test puts connections in a pool in this test binary.)
    #[tokio::test]
    async fn idle_connections_are_capped_counted_and_released() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let accept = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let t = Duration::from_secs(1);
        let a =
            Upstream::new(&[addr], t, t, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
        let b =
            Upstream::new(&[addr], t, t, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
        let base = IDLE_TOTAL.load(Ordering::Acquire);
        let connect = || async {
            tokio::net::TcpStream::connect(addr)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        };
        for _ in 0..MAX_IDLE_TOTAL + 5 {
            a.put_idle(addr, connect().await);
        }
        assert_eq!(IDLE_TOTAL.load(Ordering::Acquire) - base, MAX_IDLE_TOTAL);
        // Every place is taken by `a`: `b` keeps nothing.
        b.put_idle(addr, connect().await);
        assert!(b.take_idle(addr).is_none());
        // A connection taken gives its place back, and is the newest.
        assert!(a.take_idle(addr).is_some());
        assert_eq!(
            IDLE_TOTAL.load(Ordering::Acquire) - base,
            MAX_IDLE_TOTAL - 1
        );
        drop(a);
        assert_eq!(IDLE_TOTAL.load(Ordering::Acquire), base);
        accept.abort();
    }
}
