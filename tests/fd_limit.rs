//! Connection caps follow the open-file limit: `wxgate run` under a hard
//! limit of 1,024 descriptors, one client holding 1,100 idle keep-alive
//! connections, and a new client still answered.
//!
//! The gateway runs as a child process (`sh -c 'ulimit -n 1024; exec
//! wxgate ...'`): the limit is per process, and the test's own connections
//! must not count against it. This process raises its own soft limit to
//! hold those connections, and puts it back at the end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use support::{ChildGuard, TempDir, Upstream};

/// The open-file limit of the gateway's host in the issue this reproduces.
const CHILD_LIMIT: u32 = 1024;
/// Idle keep-alive connections the first client opens.
const FLOOD: usize = 1100;

/// Puts this process's open-file limit back as it was.
struct RestoreLimit(u64, u64);

impl Drop for RestoreLimit {
    fn drop(&mut self) {
        let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, self.0, self.1);
    }
}

/// `wxgate run` with `config` under `ulimit -n limit` (soft and hard).
fn spawn_limited(limit: u32, config: &Path, ready: &Path, stderr: &Path) -> ChildGuard {
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_wxgate"))
        .args(["--log-format", "json", "run", "--ready-file"])
        .arg(ready)
        .arg("-c")
        .arg(config)
        .env("WXGATE_JWT_SECRET", support::JWT_SECRET)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .expect("spawn sh -c 'ulimit ...; exec wxgate run'");
    ChildGuard(child)
}

/// The address `wxgate run --ready-file` names, once it does.
async fn wait_ready(child: &mut ChildGuard, ready: &Path, stderr: &Path) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!(
                "wxgate exited ({status:?}) before it was ready:\n{}",
                std::fs::read_to_string(stderr).unwrap_or_default()
            );
        }
        if let Some(addr) = std::fs::read_to_string(ready)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.parse().ok()))
        {
            return addr;
        }
        assert!(Instant::now() < deadline, "no ready file within 10s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A connection to `addr` from the loopback address `from`.
async fn connect_from(from: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    let s = socket.connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Send one keep-alive request on `s`: `true` if it is answered 200, `false`
/// if the gateway closes the connection without a byte. Either within 5 s,
/// or the test fails: a connection over a cap must be closed at once, not
/// left waiting.
async fn answered(s: &mut TcpStream, path: &str) -> bool {
    let req = format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\n\r\n");
    let _ = s.write_all(req.as_bytes()).await;
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .unwrap_or_else(|_| panic!("{path}: neither answered nor closed within 5 s"));
    if buf.is_empty() {
        return false;
    }
    assert!(
        buf.starts_with(b"HTTP/1.1 200"),
        "{path}: {}",
        String::from_utf8_lossy(&buf)
    );
    true
}

/// The `lowered_to` of the log line that lowered `key`.
fn lowered_to(log: &str, key: &str) -> Option<u64> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["key"] == key)
        .and_then(|v| v["fields"]["lowered_to"].as_u64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_holding_idle_connections_cannot_lock_out_a_new_one() {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    let _restore = RestoreLimit(soft, hard);
    let own = rlimit::increase_nofile_limit(u64::MAX).unwrap();
    assert!(
        own >= 2 * FLOOD as u64,
        "this test holds {FLOOD} connections and needs an open-file limit of {} (hard limit here: {hard})",
        2 * FLOOD
    );

    let up = Upstream::start("fd-limit").await;
    let dir = TempDir::new("fd-limit");
    let config = dir.write(
        "wxgate.toml",
        &(support::Preamble::new("test-app").to_string()
            + &support::routes_toml(&[("/public/", "public")], up.addr)
            + "\n[log]\naccess = false\n"),
    );
    let ready = dir.path().join("ready");
    let stderr = dir.path().join("stderr.log");
    let mut child = spawn_limited(CHILD_LIMIT, &config, &ready, &stderr);
    let addr = wait_ready(&mut child, &ready, &stderr).await;

    // One client opens FLOOD connections, one request each, and keeps them.
    let flooder = Ipv4Addr::new(127, 0, 0, 1);
    let mut held = Vec::new();
    for i in 0..FLOOD {
        let mut s = connect_from(flooder, addr).await;
        if answered(&mut s, &format!("/public/flood/{i}")).await {
            held.push(s);
        }
    }
    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
    assert!(
        !held.is_empty() && held.len() < FLOOD,
        "{} of {FLOOD} answered\n{log}",
        held.len()
    );

    // A new client is answered, and so is another connection of its.
    let newcomer = Ipv4Addr::new(127, 0, 0, 2);
    for i in 0..2 {
        let mut s = connect_from(newcomer, addr).await;
        assert!(
            answered(&mut s, &format!("/public/new/{i}")).await,
            "a new client was turned away while one client holds {} connections\n{log}",
            held.len()
        );
    }
    // The gateway said what it lowered: the per-IP cap is what the first
    // client got.
    let per_ip = lowered_to(&log, "server.max_connections_per_ip");
    assert_eq!(per_ip, Some(held.len() as u64), "{log}");
    assert!(
        lowered_to(&log, "server.max_connections").is_some(),
        "{log}"
    );
    drop(held);
    drop(child);
    up.stop().await;
}
