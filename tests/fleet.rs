//! A fleet of gateways on real Redis topologies, spawned by the test:
//! Sentinel (one master, one replica, three sentinels) and Cluster (three
//! masters, three replicas), with the master killed in the middle of a
//! stream of logouts.
//!
//! What must hold: wxgate follows the failover by itself; every logout
//! answered 200 (before, during or after the failover) is refused
//! afterwards on every instance; no revoked token is ever let through
//! while it happens; what fails during the failover is 503
//! `store_unavailable`, for a bounded time (printed). And on a cluster, a
//! revocation made on one of three instances is refused by the other two.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::TcpListener;

use support::topology::{Cluster, SentinelSet};
use support::{Gateway, Preamble, Response, Upstream};
use wxgate::dev::mock_wechat::MockWechat;
use wxgate::server::Deps;

const APPID: &str = "wxfleettest000001";
const WECHAT_SECRET: &str = "fleet wechat secret";
const JSON: Option<&str> = Some("application/json");
/// A revocation reaches every instance within this (loopback; measured in bench/).
const PROPAGATION: Duration = Duration::from_secs(1);
/// During a failover, an instance whose feed is cut answers from what it
/// holds until it is stale: a logout acknowledged elsewhere is refused
/// within `max_staleness` (its default), the bound the README states.
const MAX_STALENESS: Duration = Duration::from_millis(1500);
/// The longest failover the tests accept, from the kill to a logout that succeeds again.
const FAILOVER_LIMIT: Duration = Duration::from_secs(20);

/// What the gateways of one test share: WeChat and the upstream.
struct Fleet {
    mock_addr: SocketAddr,
    mock_task: tokio::task::JoinHandle<std::io::Result<()>>,
    upstream: Upstream,
}

impl Fleet {
    async fn start() -> Self {
        let mock = MockWechat::new(APPID, WECHAT_SECRET);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mock_addr = listener.local_addr().unwrap();
        let mock_task = tokio::spawn(mock.serve(listener));
        Self {
            mock_addr,
            mock_task,
            upstream: Upstream::start("backend").await,
        }
    }

    /// A gateway whose `[store]` section is `store` (a Redis topology).
    async fn gateway(&self, store: &str) -> Gateway {
        let preamble = Preamble::new("fleet-test");
        let text = format!(
            r#"{preamble}
[wechat]
appid = "{APPID}"
secret_env = "WXGATE_TEST_WECHAT"
api_base = "http://{mock}"
timeout = "2s"

[store]
kind = "redis"
key_prefix = "fleet:"
timeout = "300ms"
{store}

[[routes]]
prefix = "/"
upstreams = ["{upstream}"]
"#,
            mock = self.mock_addr,
            upstream = self.upstream.addr,
        );
        let config = support::config_with(&text, &[("WXGATE_TEST_WECHAT", WECHAT_SECRET)]);
        let deps = Deps::from_config(&config).expect("store");
        let running = wxgate::server::start_with(&config, deps)
            .await
            .expect("gateway starts");
        let addr = running.addr();
        Gateway {
            running: Some(running),
            addr,
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.mock_task.abort();
    }
}

/// A login that succeeds, retried while the store fails over: the token.
async fn login(gw: &Gateway, code: &str) -> String {
    let deadline = Instant::now() + FAILOVER_LIMIT;
    loop {
        let r = support::login(gw.addr, code).await;
        if r.status == 200 {
            return r.json()["token"].as_str().expect("token").to_string();
        }
        assert!(
            r.status == 503 && Instant::now() < deadline,
            "login {code}: {} {}",
            r.status,
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn logout(gw: &Gateway, token: &str) -> Response {
    let auth = format!("Authorization: Bearer {token}");
    support::post(gw.addr, "/wx/logout", JSON, b"{}", &[&auth]).await
}

/// What the logouts saw: when each was acknowledged, and each 503.
#[derive(Default)]
struct Seen {
    /// (token index, when the logout answered 200).
    acknowledged: Vec<(usize, Instant)>,
    /// When a logout answered 503 (`store_unavailable`).
    unavailable: Vec<Instant>,
}

/// Log out each token, alternating instances, retrying a 503 like a client
/// would, until every logout was acknowledged. Anything but 200 or 503
/// `store_unavailable` fails the test.
async fn log_everyone_out(
    gws: Arc<Vec<Gateway>>,
    tokens: Arc<Vec<String>>,
    seen: Arc<Mutex<Seen>>,
) {
    for (i, token) in tokens.iter().enumerate() {
        let deadline = Instant::now() + FAILOVER_LIMIT;
        loop {
            let gw = &gws[i % gws.len()];
            let r = logout(gw, token).await;
            match r.status {
                // A 503 does not say the revocation failed, only that it is
                // not known to be safe (the master may have died after
                // writing it): the retry writes it again, and only a 200
                // says it holds. (The instance asked may hold it already,
                // from its own write or the feed, while the new master
                // lacks it: a 401 `token_revoked` there would prove nothing.)
                200 => {
                    seen.lock().unwrap().acknowledged.push((i, Instant::now()));
                    break;
                }
                503 => {
                    assert_eq!(r.error(), "store_unavailable", "{}", r.text());
                    seen.lock().unwrap().unavailable.push(Instant::now());
                    assert!(Instant::now() < deadline, "logout {i} kept failing");
                    // A client's retry pace, not a synchronisation.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => panic!("logout {i}: {other} {}", r.text()),
            }
        }
        // Logouts spread over the failover rather than all before it.
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

/// While logouts run across a failover: every token logged out for longer
/// than `max_staleness` is refused by every instance (or answered 503 once
/// the instance knows it is stale). An instance's last read before the
/// master died proves its set complete only as of when it was sent, so a
/// logout acknowledged just after may go unseen for that long, not longer.
async fn never_accept_a_revoked_token(
    gws: Arc<Vec<Gateway>>,
    tokens: Arc<Vec<String>>,
    seen: Arc<Mutex<Seen>>,
    done: Arc<std::sync::atomic::AtomicBool>,
) -> usize {
    let mut checks = 0;
    while !done.load(std::sync::atomic::Ordering::Acquire) {
        let due: Vec<usize> = seen
            .lock()
            .unwrap()
            .acknowledged
            .iter()
            .filter(|(_, at)| at.elapsed() >= MAX_STALENESS)
            .map(|(i, _)| *i)
            .collect();
        for i in due {
            for gw in gws.iter() {
                let r = support::get_auth(gw.addr, "/api/me", &tokens[i], &[]).await;
                assert_ne!(r.status, 200, "token {i}, logged out, was let through");
                assert!(
                    (r.status == 401 && r.error() == "token_revoked")
                        || (r.status == 503 && r.error() == "store_unavailable"),
                    "token {i}: {} {}",
                    r.status,
                    r.text()
                );
                checks += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    checks
}

/// Log in `n` users, log them all out while `fail_over` kills the master,
/// and check the guarantee. Returns (failover time, 503 window).
async fn logouts_survive_a_failover(
    topology: &str,
    gws: Vec<Gateway>,
    n: usize,
    fail_over: impl FnOnce() -> Duration + Send + 'static,
) -> (Duration, Option<Duration>) {
    let mut tokens = Vec::new();
    let mut spare = Vec::new();
    for i in 0..n {
        tokens.push(login(&gws[i % gws.len()], &format!("fleet-{i}")).await);
        spare.push(login(&gws[i % gws.len()], &format!("spare-{i}")).await);
    }
    let gws = Arc::new(gws);
    let tokens = Arc::new(tokens);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let logouts = tokio::spawn(log_everyone_out(gws.clone(), tokens.clone(), seen.clone()));
    let checker = tokio::spawn(never_accept_a_revoked_token(
        gws.clone(),
        tokens.clone(),
        seen.clone(),
        done.clone(),
    ));
    // Some logouts land before the failover.
    let some = support::eventually(Duration::from_secs(10), || async {
        seen.lock().unwrap().acknowledged.len() >= n / 4
    })
    .await;
    assert!(some, "no logout went through before the failover");
    let took = tokio::task::spawn_blocking(fail_over).await.unwrap();
    logouts.await.unwrap();
    done.store(true, std::sync::atomic::Ordering::Release);
    let checks = checker.await.unwrap();
    assert!(
        checks > 0,
        "no revoked token was checked while the logouts ran"
    );

    // Afterwards: every acknowledged logout is refused on every instance.
    assert_eq!(seen.lock().unwrap().acknowledged.len(), n);
    for (i, token) in tokens.iter().enumerate() {
        for gw in gws.iter() {
            let refused = support::eventually(PROPAGATION * 5, || async {
                let r = support::get_auth(gw.addr, "/api/me", token, &[]).await;
                r.status == 401 && r.error() == "token_revoked"
            })
            .await;
            assert!(refused, "token {i}, logged out, is not refused");
        }
    }
    // And the tokens nobody logged out still work everywhere.
    for token in spare.iter().take(5) {
        for gw in gws.iter() {
            let r = support::get_auth(gw.addr, "/api/me", token, &[]).await;
            assert_eq!(r.status, 200, "{}", r.text());
        }
    }
    let seen = seen.lock().unwrap();
    let window = match (seen.unavailable.first(), seen.unavailable.last()) {
        (Some(a), Some(b)) => Some(b.duration_since(*a)),
        _ => None,
    };
    println!(
        "failover ({topology}) took {took:?}; logouts answered 503 for {window:?} ({} answers); {checks} checks of revoked tokens, none let through",
        seen.unavailable.len()
    );
    (took, window)
}

fn nodes_toml(nodes: &[String]) -> String {
    let quoted: Vec<String> = nodes.iter().map(|n| format!("\"{n}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sentinel_failover_loses_no_logout() {
    let set = tokio::task::spawn_blocking(SentinelSet::start)
        .await
        .unwrap();
    let fleet = Fleet::start().await;
    let store = format!(
        "replica_acks = 1\n[store.sentinel]\nmaster_name = \"{}\"\nnodes = {}\n",
        set.master_name,
        nodes_toml(&set.nodes())
    );
    let a = fleet.gateway(&store).await;
    let b = fleet.gateway(&store).await;
    let set = Arc::new(Mutex::new(set));
    let s = set.clone();
    let (took, window) = logouts_survive_a_failover("sentinel", vec![a, b], 40, move || {
        s.lock().unwrap().fail_over()
    })
    .await;
    assert!(took < FAILOVER_LIMIT);
    if let Some(w) = window {
        assert!(w < FAILOVER_LIMIT, "logouts failed for {w:?}");
    }
}

/// An instance that cannot hear a majority of the sentinels cannot tell
/// whether the node it reads revocations from is still the master (a
/// partition may have left it with a minority while the others promoted
/// another): past `max_staleness` it refuses (`fail_closed`), and it
/// recovers by itself when the sentinels answer again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_majority_of_sentinels_revocation_checks_go_stale() {
    let set = tokio::task::spawn_blocking(SentinelSet::start)
        .await
        .unwrap();
    let fleet = Fleet::start().await;
    let store = format!(
        "[store.sentinel]\nmaster_name = \"{}\"\nnodes = {}\n",
        set.master_name,
        nodes_toml(&set.nodes())
    );
    let a = fleet.gateway(&store).await;
    let token = login(&a, "partitioned").await;
    // Healthy, the default max_staleness holds steadily (2 s of requests,
    // longer than max_staleness).
    let steady = Instant::now();
    while steady.elapsed() < Duration::from_secs(2) {
        let r = support::get_auth(a.addr, "/x", &token, &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    set.pause_sentinels(2, true);
    let refused = support::eventually(Duration::from_secs(5), || async {
        let r = support::get_auth(a.addr, "/x", &token, &[]).await;
        r.status == 503 && r.error() == "store_unavailable"
    })
    .await;
    set.pause_sentinels(2, false);
    assert!(
        refused,
        "revocation checks went on without a majority of sentinels"
    );
    let back = support::eventually(Duration::from_secs(10), || async {
        support::get_auth(a.addr, "/x", &token, &[]).await.status == 200
    })
    .await;
    assert!(
        back,
        "the instance did not recover once the sentinels answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_failover_loses_no_logout() {
    let cluster = tokio::task::spawn_blocking(Cluster::start).await.unwrap();
    let fleet = Fleet::start().await;
    let store = format!(
        "replica_acks = 1\n[store.cluster]\nnodes = {}\n",
        nodes_toml(&cluster.seeds())
    );
    let a = fleet.gateway(&store).await;
    let b = fleet.gateway(&store).await;
    let cluster = Arc::new(Mutex::new(cluster));
    let c = cluster.clone();
    // The master holding every revocation (the `{rev}` slot) is the one killed.
    let (took, window) = logouts_survive_a_failover("cluster", vec![a, b], 40, move || {
        c.lock().unwrap().fail_over("fleet:{rev}:live")
    })
    .await;
    assert!(took < FAILOVER_LIMIT);
    if let Some(w) = window {
        assert!(w < FAILOVER_LIMIT, "logouts failed for {w:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_cluster_a_logout_on_one_instance_is_refused_by_the_other_two() {
    let cluster = tokio::task::spawn_blocking(Cluster::start).await.unwrap();
    let fleet = Fleet::start().await;
    let store = format!(
        "[store.cluster]\nnodes = {}\n",
        nodes_toml(&cluster.seeds())
    );
    let gws = [
        fleet.gateway(&store).await,
        fleet.gateway(&store).await,
        fleet.gateway(&store).await,
    ];
    let r = support::login(gws[0].addr, "three-1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = r.json();
    let token = v["token"].as_str().unwrap().to_string();
    let refresh = v["refresh_token"].as_str().unwrap().to_string();
    // A refresh on another instance (the token's keys share one slot).
    let r = support::refresh(gws[1].addr, &refresh).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rotated = r.json()["token"].as_str().unwrap().to_string();
    for gw in &gws {
        assert_eq!(
            support::get_auth(gw.addr, "/x", &rotated, &[]).await.status,
            200
        );
    }
    let r = logout(&gws[2], &rotated).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let started = Instant::now();
    for gw in &gws {
        let refused = support::eventually(PROPAGATION, || async {
            let r = support::get_auth(gw.addr, "/x", &rotated, &[]).await;
            r.status == 401 && r.error() == "token_revoked"
        })
        .await;
        assert!(refused, "a logout on another instance was not honoured");
    }
    println!(
        "refused on all three instances {:?} after the logout",
        started.elapsed()
    );
    // The token of the family before the rotation is refused too.
    let r = support::get_auth(gws[0].addr, "/x", &token, &[]).await;
    assert_eq!((r.status, r.error().as_str()), (401, "token_revoked"));
    // Reusing the spent refresh token is detected on any instance.
    let r = support::refresh(gws[0].addr, &refresh).await;
    assert_eq!(r.status, 401, "{}", r.text());

    // noeviction is checked on every master: one that evicts is reported.
    assert_eq!(support::get(gws[0].addr, "/readyz", &[]).await.status, 200);
    let master = cluster.master_of("fleet:{rev}:live").expect("a master");
    let port = cluster.nodes[master].port();
    support::topology::command(port, &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"])
        .unwrap();
    let r = support::get(gws[0].addr, "/readyz", &[]).await;
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (503, Some("store_evicts")),
        "{}",
        r.text()
    );
}

/// The p-th percentile of sorted `v`.
fn percentile(v: &[Duration], p: f64) -> Duration {
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// `bench/fleet.sh`: 1,000 logouts on instance A while B and C serve the
/// same tokens: how long after A answered the logout B and C refuse the
/// token (each polled back to back), on one Redis over loopback TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "measurement: run with --ignored --nocapture (bench/fleet.sh)"]
async fn measure_revocation_propagation() {
    const N: usize = 1000;
    let redis = support::redis::RedisServer::start_tcp();
    let fleet = Fleet::start().await;
    let store = format!("url = \"{}\"\n", redis.url());
    let a = fleet.gateway(&store).await;
    let b = fleet.gateway(&store).await;
    let c = fleet.gateway(&store).await;
    let mut tokens = Vec::with_capacity(N);
    for i in 0..N {
        tokens.push(login(&a, &format!("prop-{i}")).await);
    }
    let refused_after = |addr: SocketAddr, token: String, from: Instant| async move {
        loop {
            let r = support::get_auth(addr, "/x", &token, &[]).await;
            if r.status == 401 {
                assert_eq!(r.error(), "token_revoked");
                return from.elapsed();
            }
            assert_eq!(r.status, 200, "{}", r.text());
        }
    };
    let mut on_b = Vec::with_capacity(N);
    let mut on_c = Vec::with_capacity(N);
    let started = Instant::now();
    for token in &tokens {
        let r = logout(&a, token).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let answered = Instant::now();
        let (tb, tc) = tokio::join!(
            refused_after(b.addr, token.clone(), answered),
            refused_after(c.addr, token.clone(), answered)
        );
        on_b.push(tb);
        on_c.push(tc);
    }
    let total = started.elapsed();
    let mut both: Vec<Duration> = on_b.iter().chain(&on_c).copied().collect();
    both.sort();
    on_b.sort();
    on_c.sort();
    println!(
        "revocation propagation, {N} logouts on A (each a family and a token revocation), {total:?} in all:"
    );
    for (name, v) in [("B", &on_b), ("C", &on_c), ("B and C", &both)] {
        println!(
            "  refused on {name:<8} after the logout's answer: p50 {:?}  p99 {:?}  max {:?}",
            percentile(v, 0.5),
            percentile(v, 0.99),
            v[v.len() - 1]
        );
    }
    let stats = a.get("/readyz", &[]).await.text();
    println!("  A's /readyz: {stats}");
}

/// Resident memory of this process, in bytes (Linux).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// `bench/fleet.sh`: what 100,000 live revocations (refresh families, ids
/// as wxgate makes them) cost in Redis (`used_memory`) and in an instance's
/// memory (resident set of this process, which holds one store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run with --ignored --nocapture (bench/fleet.sh)"]
async fn measure_revocation_memory() {
    const N: usize = 100_000;
    for name in ["one server", "cluster"] {
        let mut redis = None;
        let mut cluster = None;
        let (config, ports) = if name == "one server" {
            let server = support::redis::RedisServer::start_tcp();
            let c = wxgate::store::RedisConfig::standalone(&server.url());
            let ports = vec![server.port()];
            redis = Some(server);
            (c, ports)
        } else {
            let set = tokio::task::spawn_blocking(Cluster::start).await.unwrap();
            let mut c = wxgate::store::RedisConfig::standalone("redis://unused");
            c.topology = wxgate::store::Topology::Cluster {
                nodes: set.seeds(),
                auth: wxgate::store::NodeAuth::default(),
            };
            let ports = set.nodes.iter().map(|n| n.port()).collect();
            cluster = Some(set);
            (c, ports)
        };
        let used = || -> u64 {
            ports
                .iter()
                .filter(|p| support::topology::info(**p, "replication").contains("role:master"))
                .map(|p| {
                    support::topology::info(*p, "memory")
                        .lines()
                        .find_map(|l| l.strip_prefix("used_memory:"))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .unwrap_or(0)
                })
                .sum()
        };
        let store =
            wxgate::store::redis::RedisStore::from_config(&config, "mem:", Duration::from_secs(2))
                .unwrap();
        use wxgate::store::Store;
        assert!(store.settle(Duration::from_secs(10)).await);
        let (redis_before, rss_before) = (used(), rss());
        for i in 0..N {
            // A family id as wxgate makes them: 16 random bytes, hex.
            let family = format!("{:032x}", (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            store
                .revoke_family(&family, Duration::from_secs(3600))
                .await
                .unwrap();
        }
        let (redis_after, rss_after) = (used(), rss());
        println!(
            "{N} live revocations, {name}: Redis {} bytes each (masters' used_memory), this instance {} bytes each (resident set), {} held",
            redis_after.saturating_sub(redis_before) / N as u64,
            rss_after.saturating_sub(rss_before) / N as u64,
            store.revocations().len()
        );
        drop((store, redis, cluster));
    }
}
