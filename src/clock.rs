//! Wall-clock time, injected where a decision depends on it, and random ids.
//!
//! [`unix_now`] and [`unix_now_ms`] are the only reads of the system clock
//! (`clippy.toml` refuses `SystemTime::now` elsewhere); [`random_id`] names
//! tokens, refresh families and leases.
//!
//! Login rate limits count in fixed windows of the wall clock. Reading the
//! time through [`Clock`] lets a test put the clock where it wants (say, at
//! the start of a window) instead of sleeping past a window boundary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;

/// A source of wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        unix_now_ms()
    }
}

/// A clock that stands still until told to move (for tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock showing `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self(AtomicU64::new(now_ms))
    }

    /// Set the time.
    pub fn set(&self, now_ms: u64) {
        self.0.store(now_ms, Ordering::Release);
    }

    /// Move the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_add(by))
            });
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// The wall clock now, as a time (for the start and end of spans).
pub fn wall_now() -> SystemTime {
    UNIX_EPOCH.checked_add(since_epoch()).unwrap_or(UNIX_EPOCH)
}

/// The time since the Unix epoch: the one place wxgate reads the wall
/// clock (`clippy.toml` refuses `SystemTime::now` anywhere else).
#[allow(clippy::disallowed_methods)]
fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    since_epoch().as_secs()
}

/// Milliseconds since the Unix epoch.
pub fn unix_now_ms() -> u64 {
    u64::try_from(since_epoch().as_millis()).unwrap_or(u64::MAX)
}

/// A random 128-bit id, base64url without padding.
pub fn random_id() -> String {
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
