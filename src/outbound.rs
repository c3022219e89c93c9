//! Outbound HTTP: how wxgate builds the clients of the calls it makes
//! (WeChat's API, the login hook). One pooled client per destination, built
//! at start-up; redirects are never followed (a redirect could carry a
//! secret or a signed call elsewhere), every call is bounded in time, and a
//! pool keeps at most [`MAX_IDLE`] idle connections (they count in the
//! descriptors `server::descriptors` reserves for the process).

use std::time::Duration;

/// Idle connections a client keeps per host, at most. Logins in flight at
/// once each hold a connection to WeChat; with fewer kept idle than that,
/// a burst ends with connections closed that the next burst opens again
/// (8 cost a fifth of the CPU of a login at 50 in flight: a connect, and
/// with HTTPS a handshake, for many of them).
pub(crate) const MAX_IDLE: usize = 64;

/// A client for calls that each take at most `timeout` (connecting within
/// `connect_timeout`), with the gateway's `User-Agent` and no redirects.
pub(crate) fn client(
    timeout: Duration,
    connect_timeout: Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(MAX_IDLE)
        .user_agent(concat!("wxgate/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// reqwest is built with `rustls-no-provider`: install ring once per process
/// before building a client.
pub(crate) fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A keep-alive HTTP/1.1 server answering each request after `delay`,
    /// counting the connections open at the moment.
    async fn server(delay: Duration) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&open);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let open = Arc::clone(&counted);
                open.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        tokio::time::sleep(delay).await;
                        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if s.write_all(answer).await.is_err() {
                            break;
                        }
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        (addr, open)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_leaves_at_most_max_idle_connections_open() {
        let (addr, open) = server(Duration::from_millis(200)).await;
        let client = client(Duration::from_secs(5), Duration::from_secs(1)).unwrap();
        let calls: Vec<_> = (0..MAX_IDLE + 16)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { client.get(format!("http://{addr}/")).send().await })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap().status(), 200);
        }
        // The burst needed a connection per call; the pool keeps MAX_IDLE.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while open.load(Ordering::SeqCst) > MAX_IDLE {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} connections left open",
                open.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
