//! Real Redis topologies for the fleet tests, spawned by the test from
//! Debian's `redis-server` on free loopback ports and killed with it:
//!
//! * [`SentinelSet`]: one master, one replica, three sentinels;
//! * [`Cluster`]: three masters, three replicas (`redis-cli --cluster create`).
//!
//! Readiness is polled (replication links up, sentinels agreeing on a
//! quorum, every cluster node seeing `cluster_state:ok`), never slept for.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::redis::RedisServer;

/// How long a topology may take to form.
const FORM_LIMIT: Duration = Duration::from_secs(30);

/// Run one command on `127.0.0.1:port` (a fresh connection each time).
pub fn command(port: u16, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let mut con = client.get_connection_with_timeout(Duration::from_millis(500))?;
    con.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut con)
}

/// The text of `INFO <section>` on `port`, empty when it does not answer.
pub fn info(port: u16, section: &str) -> String {
    command(port, &["INFO", section])
        .ok()
        .and_then(|v| redis::from_redis_value::<String>(v).ok())
        .unwrap_or_default()
}

/// Poll `ok` every 20 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One master, one replica and three sentinels monitoring them.
pub struct SentinelSet {
    pub master_name: String,
    pub master: RedisServer,
    pub replica: RedisServer,
    sentinels: Vec<(u16, Child)>,
    dir: PathBuf,
}

impl SentinelSet {
    /// Start the set and wait until the sentinels could fail over.
    pub fn start() -> Self {
        let master = RedisServer::start_tcp_with(&[]);
        let mport = master.port().to_string();
        let replica = RedisServer::start_tcp_with(&["--replicaof", "127.0.0.1", &mport]);
        let master_name = "wxgate-test".to_string();
        let dir = replica.dir().join("sentinels");
        std::fs::create_dir_all(&dir).expect("sentinel dir");
        let mut set = Self {
            master_name,
            master,
            replica,
            sentinels: Vec::new(),
            dir,
        };
        assert!(
            wait_until(FORM_LIMIT, || info(set.master.port(), "replication")
                .contains("slave0:")
                && info(set.replica.port(), "replication")
                    .contains("master_link_status:up")),
            "the replica did not sync"
        );
        for i in 0..3 {
            let port = super::redis::free_port();
            let conf = set.dir.join(format!("sentinel-{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {name} 127.0.0.1 {mport} 2\n\
                     sentinel down-after-milliseconds {name} 1000\n\
                     sentinel failover-timeout {name} 3000\n\
                     sentinel parallel-syncs {name} 1\n",
                    dir = set.dir.display(),
                    name = set.master_name,
                ),
            )
            .expect("write the sentinel config");
            let log = std::fs::File::create(set.dir.join(format!("sentinel-{i}.log")))
                .expect("sentinel log");
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone().expect("log")))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("run redis-server --sentinel");
            set.sentinels.push((port, child));
        }
        let name = set.master_name.clone();
        let ports: Vec<u16> = set.sentinels.iter().map(|(p, _)| *p).collect();
        let formed = wait_until(FORM_LIMIT, || {
            ports.iter().all(|p| {
                // Every sentinel knows the replica and the two other sentinels.
                let ok = command(*p, &["SENTINEL", "CKQUORUM", &name]).is_ok();
                let sentinels = command(*p, &["SENTINEL", "SENTINELS", &name])
                    .ok()
                    .map(|v| matches!(v, redis::Value::Array(a) if a.len() == 2))
                    .unwrap_or(false);
                let replicas = command(*p, &["SENTINEL", "REPLICAS", &name])
                    .ok()
                    .map(|v| matches!(v, redis::Value::Array(a) if a.len() == 1))
                    .unwrap_or(false);
                ok && sentinels && replicas
            })
        });
        assert!(
            formed,
            "the sentinels did not agree on the set:\n{}",
            set.logs()
        );
        set
    }

    /// The sentinels, `host:port`, as `[store.sentinel] nodes` takes them.
    pub fn nodes(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|(p, _)| format!("127.0.0.1:{p}"))
            .collect()
    }

    /// The port of the master the sentinels name now.
    pub fn master_port(&self) -> Option<u16> {
        let (port, _) = self.sentinels.first()?;
        let v = command(
            *port,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &self.master_name],
        )
        .ok()?;
        let addr: Vec<String> = redis::from_redis_value(v).ok()?;
        addr.get(1)?.parse().ok()
    }

    /// Kill the master (SIGKILL) and wait until the sentinels promoted the
    /// replica and it accepts writes; then start the old master again, as a
    /// supervisor would (the sentinels make it a replica of the new one).
    /// The time until the promotion.
    pub fn fail_over(&mut self) -> Duration {
        let started = Instant::now();
        let old = self.master.port();
        self.master.kill();
        let replica = self.replica.port();
        let promoted = wait_until(FORM_LIMIT, || {
            self.master_port() == Some(replica)
                && info(replica, "replication").contains("role:master")
        });
        assert!(promoted, "no failover:\n{}", self.logs());
        assert_ne!(old, replica);
        let took = started.elapsed();
        self.master.restart();
        took
    }

    /// SIGSTOP (`pause = true`) or SIGCONT the first `n` sentinels: a
    /// partition that leaves the master without a majority of sentinels.
    pub fn pause_sentinels(&self, n: usize, pause: bool) {
        for (_, child) in self.sentinels.iter().take(n) {
            let sig = if pause { "-STOP" } else { "-CONT" };
            let ok = Command::new("kill")
                .arg(sig)
                .arg(child.id().to_string())
                .status()
                .expect("run kill")
                .success();
            assert!(ok, "kill {sig} a sentinel");
        }
    }

    /// Whether the new master has a replica again (the old master, back).
    pub fn replicated(&self) -> bool {
        info(self.replica.port(), "replication").contains("connected_slaves:1")
    }

    fn logs(&self) -> String {
        (0..self.sentinels.len())
            .map(|i| {
                std::fs::read_to_string(self.dir.join(format!("sentinel-{i}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n---\n")
    }
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        self.pause_sentinels(self.sentinels.len(), false);
        for (_, child) in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Three masters and three replicas, slots spread by `redis-cli`.
pub struct Cluster {
    pub nodes: Vec<RedisServer>,
}

impl Cluster {
    /// Create the cluster and wait until every node sees it whole.
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| {
                let bus = super::redis::free_port().to_string();
                RedisServer::start_tcp_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    "--cluster-port",
                    &bus,
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .arg("--cluster-replicas")
            .arg("1")
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Self { nodes };
        let whole = wait_until(FORM_LIMIT, || {
            cluster.nodes.iter().all(|n| {
                let port = n.port();
                let replication = info(port, "replication");
                let linked = replication.contains("role:master")
                    || replication.contains("master_link_status:up");
                linked
                    && command(port, &["CLUSTER", "INFO"])
                        .ok()
                        .and_then(|v| redis::from_redis_value::<String>(v).ok())
                        .is_some_and(|s| s.contains("cluster_state:ok"))
            })
        });
        assert!(whole, "the cluster did not form");
        cluster
    }

    /// The seed nodes, `host:port`, as `[store.cluster] nodes` takes them.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes
            .iter()
            .take(3)
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect()
    }

    /// The index of the node that is master of `key`'s slot now.
    pub fn master_of(&self, key: &str) -> Option<usize> {
        self.nodes.iter().position(|n| owns(n.port(), key))
    }

    /// Kill the master of `key`'s slot and wait until its replica took
    /// over and the cluster is whole again; then start the old master again,
    /// as a supervisor would (it rejoins as a replica). The time until the
    /// cluster was whole.
    pub fn fail_over(&mut self, key: &str) -> Duration {
        let started = Instant::now();
        let victim = self.master_of(key).expect("a master for the key");
        self.nodes[victim].kill();
        let promoted = wait_until(FORM_LIMIT, || {
            self.master_of(key).is_some_and(|i| i != victim)
                && self
                    .nodes
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != victim)
                    .all(|(_, n)| {
                        command(n.port(), &["CLUSTER", "INFO"])
                            .ok()
                            .and_then(|v| redis::from_redis_value::<String>(v).ok())
                            .is_some_and(|s| s.contains("cluster_state:ok"))
                    })
        });
        assert!(promoted, "the cluster did not fail over");
        let took = started.elapsed();
        self.nodes[victim].restart();
        took
    }
}

/// The cluster slot of `key`.
pub fn slot(key: &str) -> u16 {
    let k = key.as_bytes();
    let tagged = k
        .iter()
        .position(|b| *b == b'{')
        .and_then(|open| {
            let rest = &k[open + 1..];
            let close = rest.iter().position(|b| *b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(k);
    crc16_xmodem(tagged) % 16384
}

fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Whether the node on `port` serves `key`'s slot itself (no `MOVED`).
fn owns(port: u16, key: &str) -> bool {
    command(port, &["EXISTS", key]).is_ok()
}
