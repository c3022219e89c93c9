//! How many client connections the gateway holds, in total and per client IP.
//!
//! Every accepted socket asks [`Connections::admit`] first. Over
//! `max_connections` in total, or `max_connections_per_ip` from one TCP peer
//! address, the socket is closed at once (no request is read: a flood must
//! cost as little as possible) and counted. The peer address is the one the
//! kernel reports: behind a load balancer every connection comes from it, so
//! raise `max_connections_per_ip` there.
//!
//! The same count lets shutdown wait until the last connection has closed.
//! The internal listener has a [`Connections`] of its own, with its own
//! (smaller) caps: a flood there never takes a public listener's places.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_connections` are open.
    Total,
    /// `max_connections_per_ip` are open from this address.
    PerIp,
}

/// The open client connections and their limits.
#[derive(Debug)]
pub struct Connections {
    /// The config section whose caps these are, for the log.
    section: &'static str,
    max_total: usize,
    max_per_ip: usize,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    refused_total: AtomicU64,
    refused_per_ip: AtomicU64,
    closed: Notify,
    /// Open connections parked between requests, without a task.
    parked: AtomicUsize,
}

/// An admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Admitted {
    connections: Arc<Connections>,
    ip: IpAddr,
}

impl Connections {
    /// At most `max_total` connections, `max_per_ip` from one address
    /// (the caps of `[server]`).
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self::of("server", max_total, max_per_ip)
    }

    /// [`Connections::new`] with the caps of config section `section`.
    pub fn of(section: &'static str, max_total: usize, max_per_ip: usize) -> Self {
        Self {
            section,
            max_total,
            max_per_ip,
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            refused_total: AtomicU64::new(0),
            refused_per_ip: AtomicU64::new(0),
            closed: Notify::new(),
            parked: AtomicUsize::new(0),
        }
    }

    fn per_ip(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Every update is one map call: a panic cannot leave it half-done.
        self.per_ip.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take a place for a connection from `ip`, or say why there is none.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refused> {
        let mut per_ip = self.per_ip();
        if self.open.load(Ordering::Acquire) >= self.max_total {
            drop(per_ip);
            return Err(self.refuse(Refused::Total));
        }
        let from_ip = per_ip.entry(ip).or_insert(0);
        if *from_ip >= self.max_per_ip {
            drop(per_ip);
            return Err(self.refuse(Refused::PerIp));
        }
        *from_ip = from_ip.saturating_add(1);
        self.open.fetch_add(1, Ordering::AcqRel);
        Ok(Admitted {
            connections: self.clone(),
            ip,
        })
    }

    fn refuse(&self, why: Refused) -> Refused {
        let counter = match why {
            Refused::Total => &self.refused_total,
            Refused::PerIp => &self.refused_per_ip,
        };
        let n = counter.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if n.is_power_of_two() {
            let limit = match why {
                Refused::Total => "max_connections",
                Refused::PerIp => "max_connections_per_ip",
            };
            let section = self.section;
            tracing::warn!(
                refused = n,
                section,
                limit,
                "connection refused: limit reached"
            );
        }
        why
    }

    /// The caps: in total, and from one address.
    pub fn caps(&self) -> (usize, usize) {
        (self.max_total, self.max_per_ip)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Open connections parked between requests (without a task of their
    /// own, see `server::park`).
    pub fn parked(&self) -> usize {
        self.parked.load(Ordering::Acquire)
    }

    /// `more` connections parked, `fewer` left the park.
    pub(super) fn count_parked(&self, more: usize, fewer: usize) {
        let _ = self
            .parked
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_add(more).saturating_sub(fewer))
            });
    }

    /// Connections refused so far, for each reason.
    pub fn refused(&self, why: Refused) -> u64 {
        match why {
            Refused::Total => self.refused_total.load(Ordering::Relaxed),
            Refused::PerIp => self.refused_per_ip.load(Ordering::Relaxed),
        }
    }

    /// Wait until no connection is open.
    pub async fn idle(&self) {
        loop {
            let notified = self.closed.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let c = &self.connections;
        {
            let mut per_ip = c.per_ip();
            if let Some(n) = per_ip.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    per_ip.remove(&self.ip);
                }
            }
        }
        c.open.fetch_sub(1, Ordering::AcqRel);
        c.closed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn limits_per_ip_and_in_total_and_places_come_back() {
        let c = Arc::new(Connections::new(3, 2));
        let a1 = c.admit(ip(1)).unwrap();
        let _a2 = c.admit(ip(1)).unwrap();
        assert_eq!(c.admit(ip(1)).unwrap_err(), Refused::PerIp);
        let _b1 = c.admit(ip(2)).unwrap();
        assert_eq!(c.admit(ip(3)).unwrap_err(), Refused::Total);
        assert_eq!(c.open(), 3);
        drop(a1);
        assert_eq!(c.open(), 2);
        let _a3 = c.admit(ip(1)).unwrap();
        assert_eq!(c.refused(Refused::PerIp), 1);
        assert_eq!(c.refused(Refused::Total), 1);
    }

    #[test]
    fn addresses_without_connections_are_forgotten() {
        let c = Arc::new(Connections::new(10, 10));
        drop(c.admit(ip(1)).unwrap());
        assert!(c.per_ip().is_empty());
    }
}
