//! Upstream groups: round-robin selection, TCP health checks, peer options.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
}

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
        })
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

    /// A healthy upstream not in `failed`, as a peer with this route's timeouts.
    pub fn pick(&self, failed: &[SocketAddr]) -> Option<Box<HttpPeer>> {
        let backend = self.lb.select_with(b"", 256, |b, healthy| {
            healthy && b.addr.as_inet().is_none_or(|a| !failed.contains(a))
        })?;
        let mut peer = HttpPeer::new(backend.addr, false, String::new());
        peer.options.connection_timeout = Some(self.connect_timeout);
        peer.options.read_timeout = Some(self.read_timeout);
        peer.options.write_timeout = Some(self.read_timeout);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        Some(Box::new(peer))
    }
}
