//! The OpenAPI relay's WeChat side: what a backend may have relayed
//! (`[wechat.relay]`), the request as wxgate sends it on, and WeChat's
//! answer as it came.
//!
//! The backend calls WeChat's own path and body on the internal listener,
//! without `access_token`; wxgate adds the app's current token (and, on the
//! paths of `signed`, the user-state signature of the user the backend
//! names) and hands back WeChat's answer untouched: status, content type
//! and body, binary ones (QR codes) included.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::ser::ser_secret;

/// Query parameters the relay sets itself: a backend's copies are dropped.
pub const SET_BY_RELAY: [&str; 3] = ["access_token", "signature", "sig_method"];

/// Answers this short are read for an `errcode` (a refused token); longer
/// ones, and binary ones, are a real answer.
const ERRCODE_SCAN_BYTES: usize = 4096;

/// `[wechat.relay]`, validated.
#[derive(Debug, Clone, Serialize)]
pub struct RelayConfig {
    /// The Bearer secret backends present.
    #[serde(serialize_with = "ser_secret")]
    pub secret: Secret,
    /// WeChat paths relayed as they are (exact, e.g. `/wxa/msg_sec_check`).
    pub allow: Vec<String>,
    /// Paths relayed with the user-state signature of `?openid=`'s user
    /// added (`signature`, `sig_method`); relayed too.
    pub signed: Vec<String>,
    /// Largest request body relayed, bytes.
    pub max_body: usize,
    /// Largest answer relayed back, bytes.
    pub max_answer: usize,
}

impl RelayConfig {
    /// Whether `path` is relayed with the user-state signature.
    pub fn signs(&self, path: &str) -> bool {
        self.signed.iter().any(|p| p == path)
    }

    /// The allow-listed spelling of `path` (`None`: not relayed): a metric
    /// label that only configured paths can take.
    pub fn label(&self, path: &str) -> Option<&str> {
        self.allow
            .iter()
            .chain(&self.signed)
            .find(|p| *p == path)
            .map(String::as_str)
    }
}

/// One relayed call, as wxgate sends it on (the token comes apart).
#[derive(Debug, Clone)]
pub struct RelayRequest {
    /// The allow-listed WeChat path.
    pub api: String,
    /// POST (with `body`), or GET.
    pub post: bool,
    /// The backend's query, without what the relay sets.
    pub query: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// WeChat's answer, as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayAnswer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
}

#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    errcode: Option<i64>,
}

impl RelayAnswer {
    /// The `errcode` of a short JSON answer (none for a binary one or `0`).
    pub fn errcode(&self) -> Option<i64> {
        if self.body.len() > ERRCODE_SCAN_BYTES
            || self.body.trim_ascii_start().first() != Some(&b'{')
        {
            return None;
        }
        serde_json::from_slice::<Status>(&self.body)
            .ok()?
            .errcode
            .filter(|c| *c != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &'static [u8]) -> RelayAnswer {
        RelayAnswer {
            status: 200,
            content_type: None,
            body: Bytes::from_static(body),
        }
    }

    #[test]
    fn errcodes_are_read_from_short_json_only() {
        assert_eq!(
            answer(br#"{"errcode":40001,"errmsg":"x"}"#).errcode(),
            Some(40001)
        );
        assert_eq!(answer(br#" {"errcode":0}"#).errcode(), None);
        assert_eq!(
            answer(b"\x89PNG\r\n\x1a\n{\"errcode\":40001}").errcode(),
            None
        );
        assert_eq!(answer(br#"{"result":"ok"}"#).errcode(), None);
        assert_eq!(answer(b"{not json").errcode(), None);
    }

    #[test]
    fn only_listed_paths_are_relayed() {
        let c = RelayConfig {
            secret: Secret::from("0123456789abcdef"),
            allow: vec!["/wxa/msg_sec_check".into()],
            signed: vec!["/xpay/query_user_balance".into()],
            max_body: 1024,
            max_answer: 1024,
        };
        assert!(c.label("/wxa/msg_sec_check").is_some());
        assert!(c.label("/xpay/query_user_balance").is_some());
        assert!(c.signs("/xpay/query_user_balance"));
        assert!(!c.signs("/wxa/msg_sec_check"));
        for other in [
            "/wxa/msg_sec_check/",
            "/WXA/msg_sec_check",
            "/wxa/%6dsg_sec_check",
            "/cgi-bin/token",
            "",
        ] {
            assert!(c.label(other).is_none());
        }
        assert_eq!(c.label("/wxa/msg_sec_check"), Some("/wxa/msg_sec_check"));
    }
}
