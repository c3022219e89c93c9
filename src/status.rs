//! The status page: `GET /` on the internal listener, for an operator's
//! browser. One server-rendered HTML page, refreshed every 10 s by the
//! browser itself, no script: version and uptime, where the config came
//! from and how its last reload ended, routes with their upstreams' health,
//! the store (its maps, or the Redis topology and revocation feed), WeChat
//! calls and errcodes, each app's access token expiry, and sparklines of
//! the last ten minutes (requests, 5xx, refused tokens, logins, WeChat calls
//! and errors).
//!
//! The counters come from the gateway's own metrics: a background task
//! samples them every [`SAMPLE_EVERY`] ([`Status::run_sampler`]), keeping
//! [`history::KEPT`] samples. Nothing shown is secret: the page holds names,
//! addresses, counts and times, never a token, openid or key.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use prometheus::proto::MetricFamily;

use crate::clock::unix_now_ms;
use crate::route::AuthMode;
use crate::state::GatewayState;

mod history;
mod page;

pub use history::SAMPLE_EVERY;
use history::{History, Totals};
use page::{ApiView, AppView, RouteView, StoreView, View};

/// What the page knows beside the gateway's state: start, config source,
/// last reload, and the sampled counters.
#[derive(Debug)]
pub struct Status {
    started: Instant,
    started_ms: u64,
    source: Mutex<String>,
    /// The last reload: when (Unix ms) and whether it was applied.
    reload: Mutex<Option<(u64, bool)>>,
    history: Mutex<History>,
}

impl Default for Status {
    fn default() -> Self {
        Self::new()
    }
}

impl Status {
    /// Started now, the config's source not named yet.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            started_ms: unix_now_ms(),
            source: Mutex::new("the config given at start".to_string()),
            reload: Mutex::new(None),
            history: Mutex::new(History::default()),
        }
    }

    /// Name where the config came from (a file's path).
    pub fn set_source(&self, source: impl Into<String>) {
        *self.source.lock().unwrap_or_else(PoisonError::into_inner) = source.into();
    }

    /// A reload ended: applied (`true`) or refused.
    pub fn reloaded(&self, applied: bool) {
        *self.reload.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((unix_now_ms(), applied));
    }

    fn since_start_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Sample the counters every [`SAMPLE_EVERY`] until the task is aborted.
    pub async fn run_sampler(self: Arc<Self>, state: Arc<ArcSwap<GatewayState>>) {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let totals = totals(&state.load().metrics().counters());
            let at = self.since_start_ms();
            self.history
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(at, totals);
        }
    }

    /// The page for `state` now; `listeners` are (name, open, refused) rows.
    pub fn page(&self, state: &GatewayState, listeners: Vec<(&'static str, usize, u64)>) -> String {
        let families = state.metrics().counters();
        let now = totals(&families);
        let series = self
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .series(self.since_start_ms(), &now);
        let view = View {
            version: env!("CARGO_PKG_VERSION"),
            uptime: self.started.elapsed(),
            started_ms: self.started_ms,
            now_ms: unix_now_ms(),
            source: self
                .source
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            reload: *self.reload.lock().unwrap_or_else(PoisonError::into_inner),
            routes: routes(state, &families),
            store: store(state),
            series,
            wechat: wechat(&families),
            auth: by_label(&families, "wxgate_auth_total", "outcome"),
            sessions_ended: by_label(&families, "wxgate_sessions_ended_total", "reason"),
            apps: apps(state),
            listeners,
        };
        page::render(&view)
    }
}

/// The counter series of `name`, each as its labels and value.
fn counters<'a>(
    families: &'a [MetricFamily],
    name: &'a str,
) -> impl Iterator<Item = (Vec<(&'a str, &'a str)>, u64)> + 'a {
    families
        .iter()
        .filter(move |f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .map(|m| {
            let labels = m
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            // Counters are whole numbers; `as` saturates.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let value = m.get_counter().get_value() as u64;
            (labels, value)
        })
}

fn label<'a>(labels: &[(&'a str, &'a str)], name: &str) -> &'a str {
    labels
        .iter()
        .find(|(k, _)| *k == name)
        .map_or("", |(_, v)| v)
}

/// The sum of `name`'s series whose labels pass `keep`.
fn sum(families: &[MetricFamily], name: &str, keep: impl Fn(&[(&str, &str)]) -> bool) -> u64 {
    counters(families, name)
        .filter(|(l, _)| keep(l))
        .fold(0u64, |acc, (_, v)| acc.saturating_add(v))
}

/// `name`'s counts by one label, those above zero, in label order.
fn by_label(families: &[MetricFamily], name: &str, by: &str) -> Vec<(String, u64)> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for (labels, v) in counters(families, name) {
        let n = out.entry(label(&labels, by).to_string()).or_default();
        *n = n.saturating_add(v);
    }
    out.into_iter().filter(|(_, n)| *n > 0).collect()
}

/// The totals the sparklines draw.
fn totals(f: &[MetricFamily]) -> Totals {
    let login = |l: &[(&str, &str)]| label(l, "endpoint") == "login";
    Totals {
        requests: sum(f, "wxgate_requests_total", |_| true),
        server_errors: sum(f, "wxgate_requests_total", |l| label(l, "status") == "5xx"),
        auth_refused: sum(f, "wxgate_auth_total", |l| {
            !matches!(label(l, "outcome"), "ok" | "public")
        }),
        logins: sum(f, "wxgate_endpoint_outcomes_total", |l| {
            login(l) && label(l, "outcome") == "ok"
        }),
        logins_failed: sum(f, "wxgate_endpoint_outcomes_total", |l| {
            login(l) && label(l, "outcome") != "ok"
        }),
        wechat_calls: sum(f, "wxgate_wechat_requests_total", |_| true),
        wechat_errors: sum(f, "wxgate_wechat_requests_total", |l| {
            label(l, "outcome") != "ok"
        }),
    }
}

fn routes(state: &GatewayState, f: &[MetricFamily]) -> Vec<RouteView> {
    state
        .routes
        .iter()
        .map(|r| {
            let mine = |l: &[(&str, &str)]| label(l, "route") == r.prefix;
            RouteView {
                prefix: r.prefix.clone(),
                auth: match r.auth {
                    AuthMode::Required => "required",
                    AuthMode::Optional => "optional",
                    AuthMode::Public => "public",
                },
                upstreams: r.upstream.health(),
                requests: sum(f, "wxgate_requests_total", mine),
                server_errors: sum(f, "wxgate_requests_total", |l| {
                    mine(l) && label(l, "status") == "5xx"
                }),
            }
        })
        .collect()
}

fn store(state: &GatewayState) -> StoreView {
    let store = state.sessions().store();
    let maps = store
        .map_stats()
        .into_iter()
        .map(|m| (m.kind, m.entries, m.capacity, m.dropped, m.refused))
        .collect();
    let Some(s) = store.status() else {
        return StoreView {
            kind: "memory (this instance only)".to_string(),
            maps,
            ..StoreView::default()
        };
    };
    let mut facts = Vec::new();
    if let Some(master) = &s.master {
        facts.push(("master", master.clone()));
    }
    facts.push((
        "revocation feed",
        if s.feed_following {
            "following".to_string()
        } else {
            "not following".to_string()
        },
    ));
    facts.push((
        "revocations held",
        format!(
            "{} ({} received since start)",
            s.revocations_live, s.revocations_received
        ),
    ));
    facts.push((
        "complete as of",
        match s.staleness {
            Some(d) if s.stale => format!("{} s ago: STALE, revocation checks fail", d.as_secs()),
            Some(d) => format!("{:.1} s ago", d.as_secs_f64()),
            None => "never since start".to_string(),
        },
    ));
    facts.push((
        "full loads, gaps",
        format!("{}, {}", s.feed_loads, s.feed_gaps),
    ));
    StoreView {
        kind: format!("Redis, {}", s.topology),
        up: Some(s.up),
        facts,
        maps,
    }
}

fn wechat(f: &[MetricFamily]) -> Vec<ApiView> {
    let mut apis: BTreeMap<&str, ApiView> = BTreeMap::new();
    for (labels, n) in counters(f, "wxgate_wechat_requests_total") {
        let api = label(&labels, "api");
        let view = apis.entry(api).or_insert_with(|| ApiView {
            api: api.to_string(),
            calls: 0,
            errors: 0,
            errcodes: Vec::new(),
        });
        view.calls = view.calls.saturating_add(n);
        let outcome = label(&labels, "outcome");
        if outcome != "ok" && n > 0 {
            view.errors = view.errors.saturating_add(n);
            let code = match label(&labels, "errcode") {
                "" => outcome.to_string(),
                c => c.to_string(),
            };
            view.errcodes.push((code, n));
        }
    }
    apis.into_values().filter(|a| a.calls > 0).collect()
}

fn apps(state: &GatewayState) -> Vec<AppView> {
    let now = unix_now_ms();
    state
        .login()
        .into_iter()
        .flat_map(|apps| apps.iter())
        .map(|app| {
            let (expires, failing) = app.access_tokens().held();
            AppView {
                appid: app.appid().to_string(),
                expires_in: expires
                    .map(|at| Duration::from_millis(at.saturating_sub(now)).as_secs()),
                failing,
            }
        })
        .collect()
}
