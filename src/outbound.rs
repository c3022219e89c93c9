//! Outbound HTTP: how wxgate builds the clients of the calls it makes
//! (WeChat's API, the login hook). One pooled client per destination, built
//! at start-up; redirects are never followed (a redirect could carry a
//! secret or a signed call elsewhere), and every call is bounded in time.

use std::time::Duration;

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
        .user_agent(concat!("wxgate/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// reqwest is built with `rustls-no-provider`: install ring once per process
/// before building a client.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
