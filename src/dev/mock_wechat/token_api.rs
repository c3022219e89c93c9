//! The mock's `stable_token` and `getuserphonenumber`.
//!
//! `stable_token` (POST JSON `{grant_type, appid, secret, force_refresh}`):
//! wrong appid 40013, wrong secret 40125, another grant type 40002. Normal
//! mode returns the current token until its last five minutes (the last
//! half of a token living less than ten) and a new one in them, as WeChat
//! does; `force_refresh` always a new one; tokens are `mock-at-1`,
//! `mock-at-2`, ... and live [`MockWechat::set_token_lifetime`] seconds
//! (7200 by default). Only the current token is accepted by the phone API.
//!
//! `getuserphonenumber` (POST `?access_token=`, JSON `{code, openid}`): a
//! token that is not the current one gets 40001 (42001 once it expired);
//! codes: `phone-invalid` 40029, `phone-limit` 45011, any code a second time
//! 40163; any other code the number [`MockWechat::phone_for`] of its openid.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};

use sha2::{Digest, Sha256};

use crate::http1::response;

/// The token state of the mock.
#[derive(Default)]
struct Tokens {
    /// `stable_token` calls answered with a token, forced ones included.
    issued: usize,
    forced: usize,
    /// Each app's current token and its expiry.
    current: std::collections::HashMap<String, (String, Instant)>,
    lifetime: Option<Duration>,
    phone_codes: HashSet<String>,
    /// `stable_token` requests received, answered or not.
    requests: usize,
    /// `stable_token` does not answer for this long.
    hang: Option<Duration>,
}

async fn json_body(req: Request<Incoming>) -> Option<serde_json::Value> {
    let body = Limited::new(req.into_body(), 16 * 1024)
        .collect()
        .await
        .ok()?
        .to_bytes();
    serde_json::from_slice(&body).ok()
}

/// The mock's access-token and phone-number APIs, with their own state.
pub(super) struct TokenApi {
    /// The apps it accepts: appid and secret.
    apps: Vec<(String, String)>,
    tokens: Mutex<Tokens>,
}

impl TokenApi {
    /// The APIs of a mock that accepts these apps (appid, secret).
    pub(super) fn new(apps: Vec<(String, String)>) -> Self {
        Self {
            apps,
            tokens: Mutex::new(Tokens::default()),
        }
    }

    /// The secret of `appid`, if the mock knows that app.
    fn secret_of(&self, appid: &str) -> Option<&str> {
        self.apps
            .iter()
            .find(|(a, _)| a == appid)
            .map(|(_, s)| s.as_str())
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, Tokens> {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `stable_token` calls that returned a token, and how many forced a refresh.
    pub(super) fn token_calls(&self) -> (usize, usize) {
        let t = self.tokens();
        (t.issued, t.forced)
    }

    /// `stable_token` requests received, answered or not.
    pub(super) fn token_requests(&self) -> usize {
        self.tokens().requests
    }

    /// `stable_token` does not answer for `d` (`None`: at once).
    pub(super) fn hang_tokens(&self, d: Option<Duration>) {
        self.tokens().hang = d;
    }

    /// Lifetime (`expires_in`) of tokens issued from now on.
    pub(super) fn set_token_lifetime(&self, lifetime: Duration) {
        self.tokens().lifetime = Some(lifetime);
    }

    /// Someone else forced a refresh: every app's current token stops working.
    pub(super) fn rotate_token_elsewhere(&self) {
        let mut t = self.tokens();
        let n = t.issued;
        let life = t.lifetime.unwrap_or(Duration::from_secs(7200));
        for (appid, current) in t.current.iter_mut() {
            *current = (
                format!("mock-at-elsewhere-{appid}-{n}"),
                Instant::now() + life,
            );
        }
    }

    /// The phone number the mock gives `openid`: `138` and 8 digits.
    pub(super) fn phone_for(openid: &str) -> String {
        let h = sha256("phone:", openid);
        let n = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) % 100_000_000;
        format!("138{n:08}")
    }

    pub(super) async fn stable_token(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::POST {
            return response(405, "text/plain", "method not allowed");
        }
        let hang = {
            let mut t = self.tokens();
            t.requests += 1;
            t.hang
        };
        if let Some(d) = hang {
            tokio::time::sleep(d).await;
        }
        let Some(body) = json_body(req).await else {
            return errcode(47001, "data format error");
        };
        let appid = body["appid"].as_str().unwrap_or_default().to_string();
        let Some(secret) = self.secret_of(&appid) else {
            return errcode(40013, "invalid appid");
        };
        if body["secret"] != secret {
            return errcode(40125, "invalid appsecret");
        }
        if body["grant_type"] != "client_credential" {
            return errcode(40002, "invalid grant_type");
        }
        let force = body["force_refresh"] == true;
        let mut t = self.tokens();
        t.issued += 1;
        if force {
            t.forced += 1;
        }
        let now = Instant::now();
        let life = t.lifetime.unwrap_or(Duration::from_secs(7200));
        // WeChat's last five minutes, scaled down for short-lived test tokens.
        let margin = Duration::from_secs(300).min(life / 2);
        let fresh = t
            .current
            .get(&appid)
            .is_some_and(|(_, exp)| exp.saturating_duration_since(now) > margin);
        if force || !fresh {
            let n = t.issued;
            t.current
                .insert(appid.clone(), (format!("mock-at-{n}"), now + life));
        }
        let (token, exp) = t
            .current
            .get(&appid)
            .cloned()
            .unwrap_or((String::new(), now));
        let expires_in = exp.saturating_duration_since(now).as_secs().max(1);
        let body = serde_json::json!({ "access_token": token, "expires_in": expires_in });
        response(200, "application/json", body.to_string())
    }

    /// The app whose current token the request's `access_token` is, or
    /// WeChat's errcode for a token that is not (40001; 42001 once expired).
    pub(super) fn app_of<B>(&self, req: &Request<B>) -> Result<String, (i64, &'static str)> {
        let token = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "access_token")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let t = self.tokens();
        match t.current.iter().find(|(_, (current, _))| *current == token) {
            Some((_, (_, exp))) if *exp <= Instant::now() => Err((42001, "access_token expired")),
            Some((appid, _)) => Ok(appid.clone()),
            None => Err((40001, "invalid credential, access_token is invalid")),
        }
    }

    pub(super) async fn phone_number(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::POST {
            return response(405, "text/plain", "method not allowed");
        }
        let appid = match self.app_of(&req) {
            Ok(appid) => appid,
            Err((code, msg)) => return errcode(code, msg),
        };
        let Some(body) = json_body(req).await else {
            return errcode(47001, "data format error");
        };
        let code = body["code"].as_str().unwrap_or_default().to_string();
        let openid = body["openid"].as_str().unwrap_or_default().to_string();
        match code.as_str() {
            "" => return errcode(41008, "missing code"),
            "phone-invalid" => return errcode(40029, "invalid code"),
            "phone-limit" => return errcode(45011, "api minute-quota reach limit"),
            _ => {}
        }
        if !self.tokens().phone_codes.insert(code) {
            return errcode(40163, "code been used");
        }
        let number = Self::phone_for(&openid);
        let body = serde_json::json!({
            "errcode": 0,
            "errmsg": "ok",
            "phone_info": {
                "phoneNumber": number,
                "purePhoneNumber": number,
                "countryCode": 86,
                "watermark": { "timestamp": crate::clock::unix_now(), "appid": appid },
            },
        });
        response(200, "application/json", body.to_string())
    }
}

/// A keyed hash of `input` (a phone number, an openid) under `label`.
pub(super) fn sha256(label: &str, input: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label.as_bytes());
    h.update(input.as_bytes());
    h.finalize().into()
}

/// A WeChat error answer, as WeChat words it.
pub(super) fn errcode(code: i64, msg: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "errcode": code,
        "errmsg": format!("{msg}, rid: 6553f1a2-mock"),
    });
    response(200, "text/plain", body.to_string())
}
