//! Test seams for unit tests: a fake WeChat and a login service over the
//! memory store, with a clock the test sets. No sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;

use crate::clock::ManualClock;
use crate::config::{Config, OnError};
use crate::login::LoginService;
use crate::secret::Secret;
use crate::sessions::Sessions;
use crate::store::memory::MemoryStore;
use crate::store::Store;
use crate::token::TokenKeys;
use crate::wechat::reply::{AccessToken, Code2Session, PhoneNumber, WechatError};
use crate::wechat::WechatApi;

/// The appid of every test config.
pub(crate) const APPID: &str = "wxtestapp0000001";
/// The JWT key of every test config.
pub(crate) const JWT_SECRET: &str = "0123456789abcdef0123456789abcdef";

/// A config with `[jwt]` (key [`JWT_SECRET`]), the `extra` sections and one
/// route per `(prefix, auth)` to a port nothing listens on.
pub(crate) fn config(extra: &str, routes: &[(&str, &str)]) -> Config {
    let mut text = format!("[jwt]\nsecret_env = \"JWT\"\naudience = \"test-app\"\n{extra}\n");
    for (prefix, auth) in routes {
        text.push_str(&format!(
            "\n[[routes]]\nprefix = {prefix:?}\nupstreams = [\"127.0.0.1:9\"]\nauth = {auth:?}\n"
        ));
    }
    Config::parse(&text, "test.toml", &|_| Some(JWT_SECRET.into())).unwrap()
}

/// A WeChat that answers `jscode2session` from the code alone: code `c`
/// belongs to openid `o-c`; codes `invalid`, `blocked`, `busy` and `timeout`
/// fail as WeChat would. It counts calls per code.
///
/// `stable_token` behaves like WeChat's: the same token until `force_refresh`
/// (tokens `AT-1`, `AT-2`, ...), valid for [`FakeWechat::set_expires_in`]
/// seconds (7200 by default). `getuserphonenumber` answers 40001 to any
/// token but the current one, 40029 to the code `invalid`, and a number
/// derived from the code otherwise.
#[derive(Default)]
pub(crate) struct FakeWechat {
    calls: Mutex<HashMap<String, usize>>,
    tokens: Mutex<FakeTokens>,
}

#[derive(Default)]
struct FakeTokens {
    issued: usize,
    forced: usize,
    /// Calls that hung and timed out.
    failed: usize,
    current: Option<String>,
    expires_in: Option<u64>,
    /// `stable_token` hangs this long, then times out.
    hang: Option<Duration>,
}

impl FakeWechat {
    /// The `session_key` WeChat gives for `code` (base64 of 16 bytes).
    pub(crate) fn session_key(code: &str) -> String {
        let mut key = [b'k'; 16];
        for (k, b) in key.iter_mut().zip(code.bytes()) {
            *k = b;
        }
        base64::engine::general_purpose::STANDARD.encode(key)
    }

    /// How many times `code` reached WeChat.
    pub(crate) fn calls(&self, code: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .get(code)
            .copied()
            .unwrap_or_default()
    }

    /// `stable_token` calls so far, and how many of them forced a refresh.
    pub(crate) fn token_calls(&self) -> (usize, usize) {
        let t = self.tokens.lock().unwrap();
        (t.issued, t.forced)
    }

    /// `stable_token` calls that hung and timed out.
    pub(crate) fn failed_token_calls(&self) -> usize {
        self.tokens.lock().unwrap().failed
    }

    /// Lifetime of the tokens handed out from now on.
    pub(crate) fn set_expires_in(&self, secs: u64) {
        self.tokens.lock().unwrap().expires_in = Some(secs);
    }

    /// `stable_token` hangs for `d` and then times out (`None`: answers).
    pub(crate) fn hang_tokens(&self, d: Option<Duration>) {
        self.tokens.lock().unwrap().hang = d;
    }

    /// Someone else forces a refresh: the token wxgate holds stops working.
    pub(crate) fn rotate_elsewhere(&self) {
        let mut t = self.tokens.lock().unwrap();
        t.current = Some(format!("AT-elsewhere-{}", t.issued));
    }
}

#[async_trait]
impl WechatApi for FakeWechat {
    async fn code2session(&self, code: &str) -> Result<Code2Session, WechatError> {
        *self
            .calls
            .lock()
            .unwrap()
            .entry(code.to_string())
            .or_default() += 1;
        // Let concurrent requests with the same code find the flight.
        tokio::task::yield_now().await;
        let api = |errcode| WechatError::Api {
            errcode,
            errmsg: "fake".into(),
        };
        match code {
            "invalid" => Err(api(40029)),
            "blocked" => Err(api(40226)),
            "busy" => Err(api(-1)),
            "timeout" => Err(WechatError::Timeout),
            _ => Ok(Code2Session {
                openid: format!("o-{code}"),
                session_key: Secret::from(Self::session_key(code)),
                unionid: Some(format!("u-{code}")),
            }),
        }
    }

    async fn stable_token(&self, force_refresh: bool) -> Result<AccessToken, WechatError> {
        let hang = self.tokens.lock().unwrap().hang;
        if let Some(d) = hang {
            self.tokens.lock().unwrap().failed += 1;
            tokio::time::sleep(d).await;
            return Err(WechatError::Timeout);
        }
        let token = {
            let mut t = self.tokens.lock().unwrap();
            t.issued += 1;
            if force_refresh {
                t.forced += 1;
            }
            if force_refresh || t.current.is_none() {
                let n = t.issued;
                t.current = Some(format!("AT-{n}"));
            }
            (
                t.current.clone().unwrap_or_default(),
                t.expires_in.unwrap_or(7200),
            )
        };
        tokio::task::yield_now().await;
        Ok(AccessToken {
            token: Secret::from(token.0),
            expires_in: token.1,
        })
    }

    async fn phone_number(
        &self,
        access_token: &str,
        code: &str,
        _openid: &str,
    ) -> Result<PhoneNumber, WechatError> {
        let current = self.tokens.lock().unwrap().current.clone();
        let api = |errcode| WechatError::Api {
            errcode,
            errmsg: "fake".into(),
        };
        if current.as_deref() != Some(access_token) {
            return Err(api(40001));
        }
        if code == "invalid" {
            return Err(api(40029));
        }
        Ok(PhoneNumber {
            phone_number: format!("138{:08}", code.len()),
            pure_phone_number: format!("138{:08}", code.len()),
            country_code: "86".into(),
        })
    }
}

/// A login service, its sessions, store and clock, as configured by the
/// `[login]` lines in `login` (and `on_error` for the sessions).
pub(crate) struct LoginHarness {
    pub wechat: Arc<FakeWechat>,
    pub service: Arc<LoginService>,
    pub sessions: Arc<Sessions>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<ManualClock>,
}

impl LoginHarness {
    pub(crate) fn new(login: &str) -> Self {
        Self::with_store(login, Arc::new(MemoryStore::default()))
    }

    pub(crate) fn with_store(login: &str, store: Arc<dyn Store>) -> Self {
        let wechat_and_login =
            format!("[wechat]\nappid = \"{APPID}\"\nsecret_env = \"WECHAT\"\n\n[login]\n{login}\n");
        let config = config(&wechat_and_login, &[("/", "required")]);
        let wechat = Arc::new(FakeWechat::default());
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let sessions = Arc::new(Sessions::new(
            store.clone(),
            Arc::new(TokenKeys::new(&config.jwt)),
            config.login.refresh_ttl,
            config.jwt.leeway,
            OnError::FailClosed,
        ));
        let service = Arc::new(LoginService::with_wechat(
            wechat.clone(),
            APPID,
            Duration::from_secs(1),
            &config.login,
            sessions.clone(),
            clock.clone(),
        ));
        Self {
            wechat,
            service,
            sessions,
            store,
            clock,
        }
    }
}

/// The settings of every property test: a few hundred cases each, so the
/// whole set runs in seconds in CI, and no failure files written.
pub(crate) fn proptest_config() -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases: 256,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}
