//! Rate limits of one mini program, in fixed windows of the wall clock:
//! logins per client IP and in all, and the calls that spend the app's WeChat
//! quota or the gateway's work for a logged-in user (`/wx/phone`,
//! `/wx/decrypt`) per user and in all.
//!
//! A window is `[k·w, (k+1)·w)` in Unix time for a window length `w`, so every
//! instance counts in the same window; the counter lives in the store under
//! the limit's key and the window's number, and expires with the window. The
//! time comes from an injected [`Clock`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::config::Rate;
use crate::clock::Clock;
use crate::error::ApiError;
use crate::store::Store;

/// The configured limits of one endpoint: per user (or client IP) and in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Rates {
    pub(crate) each: Option<Rate>,
    pub(crate) global: Option<Rate>,
}

/// The configured limits of one app.
pub(crate) struct LoginLimits {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// The app's counters: `login-ip:{appid}:{ip}`, `login-global:{appid}`,
    /// `phone-user:{appid}:{openid}`, `phone-global:{appid}`, and the same
    /// for `decrypt`.
    appid: String,
    login: Rates,
    phone: Rates,
    decrypt: Rates,
}

impl LoginLimits {
    /// Login limits of `appid` counted in `store`, on `clock`'s time.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        appid: &str,
        per_ip: Option<Rate>,
        global: Option<Rate>,
    ) -> Self {
        Self {
            store,
            clock,
            appid: appid.to_string(),
            login: Rates {
                each: per_ip,
                global,
            },
            phone: Rates::default(),
            decrypt: Rates::default(),
        }
    }

    /// With limits on `/wx/phone` and `/wx/decrypt`.
    pub(crate) fn with_user_limits(mut self, phone: Rates, decrypt: Rates) -> Self {
        self.phone = phone;
        self.decrypt = decrypt;
        self
    }

    /// Count one login from `client_ip`; 429 `rate_limited` over a limit.
    pub(crate) async fn check(&self, client_ip: Option<IpAddr>) -> Result<(), ApiError> {
        let appid = &self.appid;
        self.count(&[
            (
                self.login.each,
                client_ip.map(|ip| format!("login-ip:{appid}:{ip}")),
            ),
            (self.login.global, Some(format!("login-global:{appid}"))),
        ])
        .await
    }

    /// Count one `/wx/phone` call of `openid`; 429 `rate_limited` over a limit.
    pub(crate) async fn check_phone(&self, openid: &str) -> Result<(), ApiError> {
        self.check_user("phone", self.phone, openid).await
    }

    /// Count one `/wx/decrypt` call of `openid`; 429 `rate_limited` over a limit.
    pub(crate) async fn check_decrypt(&self, openid: &str) -> Result<(), ApiError> {
        self.check_user("decrypt", self.decrypt, openid).await
    }

    async fn check_user(&self, what: &str, rates: Rates, openid: &str) -> Result<(), ApiError> {
        let appid = &self.appid;
        self.count(&[
            (rates.each, Some(format!("{what}-user:{appid}:{openid}"))),
            (rates.global, Some(format!("{what}-global:{appid}"))),
        ])
        .await
    }

    /// Count one event against each limit; 429 over the first exceeded.
    async fn count(&self, limits: &[(Option<Rate>, Option<String>)]) -> Result<(), ApiError> {
        for (rate, key) in limits {
            let (Some(rate), Some(key)) = (rate, key) else {
                continue;
            };
            let (window, reset_in) = window_of(self.clock.now_ms(), rate.window);
            let count = self
                .store
                .count(&format!("{key}:{window}"), rate.window)
                .await?;
            if count > rate.limit {
                return Err(ApiError::RateLimited {
                    retry_after_secs: reset_in.as_secs_f64().ceil() as u64,
                    wechat_errcode: None,
                });
            }
        }
        Ok(())
    }
}

/// The number of the fixed window of length `window` that `now_ms` falls in,
/// and the time until it ends.
pub(crate) fn window_of(now_ms: u64, window: Duration) -> (u64, Duration) {
    let w = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
    (now_ms / w, Duration::from_millis(w - now_ms % w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        let minute = Duration::from_secs(60);
        assert_eq!(window_of(0, minute), (0, minute));
        assert_eq!(window_of(59_999, minute), (0, Duration::from_millis(1)));
        assert_eq!(window_of(60_000, minute), (1, minute));
        assert_eq!(
            window_of(u64::MAX, Duration::ZERO).1,
            Duration::from_millis(1)
        );
    }
}
