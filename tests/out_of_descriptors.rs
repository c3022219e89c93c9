//! Out of file descriptors, the listeners keep accepting: a connection the
//! process has no descriptor for is closed at once (not left waiting in the
//! backlog), and once descriptors are free again both the public and the
//! internal listener answer as before.
//!
//! This file holds one test: it lowers the open-file limit of its process
//! (and puts it back), which would starve any test running beside it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs::File;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use support::{Gateway, Preamble, Upstream};

/// Puts this process's open-file limit back as it was.
struct RestoreLimit(u64, u64);

impl Drop for RestoreLimit {
    fn drop(&mut self) {
        let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, self.0, self.1);
    }
}

/// Open files until the process has no descriptor left.
fn every_free_descriptor() -> Vec<File> {
    let mut held = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(f) => held.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(24), "EMFILE expected: {e}");
                return held;
            }
        }
    }
}

/// The gateway closes `s` within 2 s without a byte (a hang is a failure).
async fn closed_at_once(s: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
        Ok(Ok(0) | Err(_)) => {}
        Ok(Ok(n)) => panic!("{what}: answered {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(_) => panic!("{what}: left waiting, neither accepted nor closed"),
    }
}

#[tokio::test]
async fn out_of_descriptors_a_connection_is_closed_at_once_and_accepting_goes_on() {
    let up = Upstream::start("fds").await;
    let text = Preamble::new("test-app").to_string()
        + &support::routes_toml(&[("/public/", "public")], up.addr)
        + "\n[metrics]\nlisten = \"127.0.0.1:0\"\n";
    let gw = Gateway::start(&text).await;
    let metrics = gw.running().metrics_addr().unwrap();
    assert_eq!(gw.get("/public/before", &[]).await.status, 200);

    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    let restore = RestoreLimit(soft, hard);
    rlimit::setrlimit(rlimit::Resource::NOFILE, 256, hard).unwrap();
    let mut held = every_free_descriptor();

    // One descriptor free: the client's socket takes it, and the gateway
    // has none to accept with.
    drop(held.pop());
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    closed_at_once(&mut s, "the public listener").await;
    // Its descriptor is the one free now.
    drop(s);
    let mut s = TcpStream::connect(metrics).await.unwrap();
    closed_at_once(&mut s, "the internal listener").await;
    drop(s);

    // Descriptors free again: both listeners answer.
    drop(held);
    drop(restore);
    assert_eq!(gw.get("/public/after", &[]).await.status, 200);
    let scrape = support::raw_request(
        metrics,
        b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(scrape.status, 200);
    gw.stop().await;
}
