//! What one entry of each kind costs in the memory store, in resident
//! memory: fills a [`MemoryStore`] with `N` entries of one kind at a time
//! (the shapes a real login writes) and prints RSS growth per entry. The
//! figures in README's "Sizing the memory store" come from here.
//!
//! ```sh
//! cargo run --release --example store_footprint -- 200000
//! ```

use std::time::Duration;

use wxgate::config::MemoryLimits;
use wxgate::secret::Secret;
use wxgate::store::memory::MemoryStore;
use wxgate::store::{RefreshRecord, Store, WxSession};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TTL: Duration = Duration::from_secs(3600);

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages.saturating_mul(4096)
}

/// A 28-character openid like WeChat's.
fn openid(i: usize) -> String {
    format!("oAbCdEfGhIjKlMnOpQr{i:09}")
}

/// A 64-hex-digit SHA-256, as refresh tokens and codes are keyed.
fn hash(i: usize) -> String {
    format!("{i:064x}")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), wxgate::store::StoreError> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let limits = MemoryLimits {
        max_sessions: n,
        max_refresh_tokens: n,
        max_revocations: n,
        max_login_codes: n,
        max_counters: n,
    };
    let store = MemoryStore::new(&limits);
    let sealed = "x".repeat(700); // a sealed login outcome: two tokens and ids
    println!("| kind | entries | bytes per entry |\n|---|---|---|");
    let mut before = rss_bytes();
    let mut report = |kind: &str| {
        let now = rss_bytes();
        println!(
            "| {kind} | {n} | {} |",
            now.saturating_sub(before) / n as u64
        );
        before = now;
    };
    for i in 0..n {
        let session = WxSession {
            session_key: Secret::from("HyVFkGl5F5OQWJZZaNzBBg=="),
            unionid: None,
            appid: "wx0123456789abcdef".into(),
            login_at: 1_700_000_000,
        };
        store.put_session(&openid(i), &session, TTL).await?;
    }
    report("session");
    for i in 0..n {
        let record = RefreshRecord {
            openid: openid(i),
            unionid: None,
            appid: Some("wx0123456789abcdef".into()),
            family: format!("{i:032x}"),
            user: Default::default(),
            issued_ms: 1_700_000_000_000,
            expires_at: 1_700_000_000,
            created_ms: 1_700_000_000_000,
            refreshed_ms: 1_700_000_000_000,
        };
        store.put_refresh(&hash(i), &record, TTL).await?;
    }
    report("refresh token");
    for i in 0..n {
        store.revoke_family(&format!("{i:032x}"), TTL).await?;
    }
    report("revoked family");
    for i in 0..n {
        store.revoke_token(&format!("{i:032x}"), TTL).await?;
    }
    report("revoked token id");
    for i in 0..n {
        store.claim_code(&hash(i), TTL).await?;
        store.put_code_outcome(&hash(i), &sealed, TTL).await?;
    }
    report("login code (claim + outcome)");
    for i in 0..n {
        store
            .count(&format!("ip:203.0.{}.{}:28333333", i / 256, i % 256), TTL)
            .await?;
    }
    report("rate-limit counter");
    Ok(())
}
