//! The process's logging ([`init`]: stderr from a thread of its own, the
//! filter from `RUST_LOG` or `[log] level`), bounded and free of secrets
//! whatever that filter lets through:
//!
//! * third-party crates that print request or response headers and bodies
//!   at `debug` and `trace` (Pingora's request header, `Authorization`
//!   included; hyper, h2, reqwest and rustls alike) are capped at `info`;
//! * warnings and errors are rate-limited per call site: a line a client
//!   can trigger at will (a TLS handshake with an IP address as SNI, a
//!   replayed refresh token, requests while an upstream is down) is written
//!   at most [`BURST`] times per [`PERIOD`], and the rest is counted
//!   ([`LogLimits::suppressed`]) and reported in one line now and then.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::sync::Arc;

use tracing::callsite::Identifier;
use tracing::subscriber::Interest;
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Targets capped at `info` (a prefix: `pingora` covers `pingora_core`).
pub const CAPPED_TARGETS: [&str; 5] = ["pingora", "hyper", "h2", "reqwest", "rustls"];

/// Warnings and errors written per call site and period, at most.
pub const BURST: u32 = 10;
/// The period of [`BURST`].
pub const PERIOD: Duration = Duration::from_secs(10);

/// Warnings and errors left out by any [`LogLimits`] of the process.
static SUPPRESSED: AtomicU64 = AtomicU64::new(0);

/// Warnings and errors the process's log rate limit left out so far
/// (`wxgate_log_lines_suppressed_total`).
pub fn suppressed_total() -> u64 {
    SUPPRESSED.load(Ordering::Relaxed)
}

/// Call sites tracked at once; past it, a new one is limited with the rest.
const MAX_SITES: usize = 4096;

/// The rate limits of warnings and errors, shared by the whole process.
#[derive(Debug, Default)]
pub struct LogLimits {
    sites: Mutex<HashMap<Identifier, Window>>,
    suppressed: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    written: u32,
}

impl LogLimits {
    /// Whether a span or an event with this metadata may be written now.
    pub fn allows(&self, meta: &Metadata<'_>) -> bool {
        if !allowed_level(meta.target(), *meta.level()) {
            return false;
        }
        if !meta.is_event() || *meta.level() > Level::WARN {
            return true;
        }
        self.admit(meta.callsite(), Instant::now())
    }

    /// One more warning or error at `site`, at `now`: written or counted.
    fn admit(&self, site: Identifier, now: Instant) -> bool {
        let mut sites = self
            .sites
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if sites.len() >= MAX_SITES && !sites.contains_key(&site) {
            sites.retain(|_, w| now.saturating_duration_since(w.start) < PERIOD);
        }
        let window = sites.entry(site).or_insert(Window {
            start: now,
            written: 0,
        });
        if now.saturating_duration_since(window.start) >= PERIOD {
            *window = Window {
                start: now,
                written: 0,
            };
        }
        if window.written < BURST {
            window.written = window.written.saturating_add(1);
            true
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            SUPPRESSED.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Warnings and errors not written so far.
    pub fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }
}

/// [`LogLimits`] as a layer above the filter: capped call sites are never
/// enabled, warnings and errors are asked about one by one (so their
/// interest is not cached), everything else is left to the filter.
#[derive(Debug, Clone, Default)]
pub struct LimitLayer(pub Arc<LogLimits>);

impl<S: Subscriber> Layer<S> for LimitLayer {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if !allowed_level(meta.target(), *meta.level()) {
            Interest::never()
        } else if meta.is_event() && *meta.level() <= Level::WARN {
            Interest::sometimes()
        } else {
            Interest::always()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>, _: Context<'_, S>) -> bool {
        self.0.allows(meta)
    }
}

/// Whether `target` may log at `level`: any level for wxgate and most
/// crates, `info` and above for [`CAPPED_TARGETS`].
fn allowed_level(target: &str, level: Level) -> bool {
    level <= Level::INFO || !CAPPED_TARGETS.iter().any(|t| is_under(target, t))
}

/// Whether `target` is `crate_name` or one of its modules (or, for
/// `pingora`, one of its crates).
fn is_under(target: &str, crate_name: &str) -> bool {
    target
        .strip_prefix(crate_name)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::") || rest.starts_with('_'))
}

// --- The process's subscriber ---

/// Log lines queued for stderr at most. The queue is allocated (and
/// touched) whole at start-up, 32 bytes a line: tracing-appender's default
/// of 128k lines held 4 MB of an idle gateway's memory. 16k lines are a
/// third of a second of access log at 50,000 requests a second.
pub const LOG_QUEUE_LINES: usize = 16 * 1024;

/// Sets the log filter of a running process (`[log] level`, on a reload too).
pub type SetLevel = Box<dyn Fn(&str) + Send + Sync>;

/// The process's logging (`wxgate run`, `dev`; `json`: one JSON object a
/// line). Log lines go to stderr from a thread of their own, so that a request
/// never waits on a write (one access log line per request). If stderr
/// stalls long enough to fill the queue ([`LOG_QUEUE_LINES`]), later lines
/// are dropped rather than the gateway stopping.
///
/// The filter is `RUST_LOG` if set (and then stays), else `info` until the
/// config's `[log] level` is applied through the returned setter.
pub fn init(json: bool) -> (tracing_appender::non_blocking::WorkerGuard, SetLevel) {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .finish(std::io::stderr());
    let from_env = tracing_subscriber::EnvFilter::try_from_default_env().ok();
    let pinned = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_writer(writer);
    macro_rules! setter {
        ($handle:expr) => {{
            let handle = $handle;
            Box::new(move |level: &str| {
                if pinned {
                    return;
                }
                match tracing_subscriber::EnvFilter::builder().parse(level) {
                    Ok(f) => {
                        if let Err(e) = handle.reload(f) {
                            tracing::warn!(error = %e, "cannot change the log level");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "not a log filter"),
                }
            }) as SetLevel
        }};
    }
    // Above the filter, whatever it says: third-party crates capped below
    // the levels that print headers and bodies, warnings and errors
    // rate-limited per call site (see `wxgate::logs`).
    let limits = Arc::new(LogLimits::default());
    let guard_layer = LimitLayer(Arc::clone(&limits));
    let set = match json {
        false => {
            let builder = builder.with_env_filter(filter).with_filter_reloading();
            let handle = builder.reload_handle();
            builder.finish().with(guard_layer).init();
            setter!(handle)
        }
        true => {
            let builder = builder
                .json()
                .with_env_filter(filter)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            builder.finish().with(guard_layer).init();
            setter!(handle)
        }
    };
    report_suppressed(limits);
    (guard, set)
}

/// Once a minute, one line saying how many warnings and errors the rate
/// limit kept out of the log, if any.
fn report_suppressed(limits: Arc<LogLimits>) {
    let spawned = std::thread::Builder::new()
        .name("log-limits".into())
        .spawn(move || {
            let mut reported = 0;
            loop {
                std::thread::sleep(std::time::Duration::from_secs(60));
                let now = limits.suppressed();
                if now > reported {
                    tracing::warn!(
                        suppressed = now.saturating_sub(reported),
                        "warnings and errors left out of the log in the last minute (at most {} per call site every {:?})",
                        BURST,
                        PERIOD
                    );
                    reported = now;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the log rate limit's reporter");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn third_party_crates_are_capped_at_info() {
        for target in [
            "pingora_core::protocols::http::v1::server",
            "pingora",
            "pingora_proxy",
            "hyper::proto::h1::role",
            "hyper_util::client",
            "h2::codec",
            "reqwest::connect",
            "rustls::msgs::handshake",
        ] {
            assert!(!allowed_level(target, Level::TRACE), "{target}");
            assert!(!allowed_level(target, Level::DEBUG), "{target}");
            assert!(allowed_level(target, Level::INFO), "{target}");
            assert!(allowed_level(target, Level::WARN), "{target}");
        }
        for target in ["wxgate", "wxgate::access", "h2spec", "hyperloop", "tokio"] {
            assert!(allowed_level(target, Level::TRACE), "{target}");
        }
    }

    struct Site(#[allow(dead_code)] u8);
    impl tracing::callsite::Callsite for Site {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            unreachable!("not asked here")
        }
    }
    static A: Site = Site(1);
    static B: Site = Site(2);

    #[test]
    fn a_call_site_writes_a_burst_per_period_and_counts_the_rest() {
        let limits = LogLimits::default();
        let t0 = Instant::now();
        let a = || Identifier(&A);
        let before = suppressed_total();
        let written = (0..100).filter(|_| limits.admit(a(), t0)).count();
        assert_eq!(written, BURST as usize);
        assert_eq!(limits.suppressed(), 100 - u64::from(BURST));
        // The process's total, what /metrics reports, moved as much (at least:
        // other tests' limits count there too).
        assert!(suppressed_total() - before >= 100 - u64::from(BURST));
        // Another call site has its own allowance.
        assert!(limits.admit(Identifier(&B), t0));
        // A new period, a new burst.
        assert!(limits.admit(a(), t0 + PERIOD));
    }
}
