//! Request ids and the access log: one line per request, naming no one.
//!
//! Every request carries an `X-Request-ID`: the one a trusted proxy sent (if
//! it is a sane id), otherwise a fresh one. It goes upstream with the request
//! and comes back on every response, wxgate's own included.
//!
//! The access log line (`target: wxgate::access`, level `info`, on with
//! `[log] access`) holds the request id, method, route, path without query,
//! status, token outcome, upstream peer, body bytes sent, total and upstream
//! durations, and the user as a keyed hash of the openid: stable across
//! instances and restarts (the key is derived from the JWT key), useless to
//! anyone without that key; with `[traces]`, the trace id. Never a token, a
//! code, an openid or a query string.

use hmac::{Hmac, Mac};
use http::{HeaderName, HeaderValue};
use sha2::Sha256;
use siphasher::sip::SipHasher24;

/// The request id header.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest incoming request id kept.
pub(crate) const MAX_REQUEST_ID: usize = 128;

/// Longest path written to a log line (the rest is cut, marked `...`).
const MAX_LOGGED_PATH: usize = 256;

/// Whether an incoming request id is worth keeping: 1 to [`MAX_REQUEST_ID`]
/// characters from a set that needs no escaping anywhere.
pub(crate) fn is_sane_request_id(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= MAX_REQUEST_ID
        && v.iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'+' | b'/' | b'=')
        })
}

/// A fresh request id: 128 random bits as 32 hex digits.
pub(crate) fn new_request_id() -> HeaderValue {
    let id: [u8; 16] = rand::random();
    let mut text = [0u8; 32];
    // The lengths match and hex digits are always a valid header value:
    // the fallbacks are never taken.
    if hex::encode_to_slice(id, &mut text).is_err() {
        return HeaderValue::from_static("-");
    }
    HeaderValue::from_bytes(&text).unwrap_or(HeaderValue::from_static("-"))
}

/// The request id to use: the incoming one when the peer is trusted, exactly
/// one was sent and it is sane; `None` means "generate one".
pub(crate) fn kept_request_id<'a>(
    mut incoming: impl Iterator<Item = &'a HeaderValue>,
    peer_trusted: bool,
) -> Option<&'a HeaderValue> {
    if !peer_trusted {
        return None;
    }
    let first = incoming.next()?;
    (incoming.next().is_none() && is_sane_request_id(first.as_bytes())).then_some(first)
}

/// The fields of one access log line, however the request was served.
pub(crate) struct Line<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    pub route: &'a str,
    /// The path as sent (cut and stripped of its query here).
    pub path: &'a str,
    pub status: u16,
    pub auth: &'a str,
    pub upstream: Option<std::net::SocketAddr>,
    /// Response body bytes sent.
    pub bytes: usize,
    pub total: std::time::Duration,
    pub upstream_took: Option<std::time::Duration>,
    /// The keyed hash of the user.
    pub user: Option<&'a str>,
    /// With `[traces]`: the request's trace id.
    pub trace_id: Option<opentelemetry::trace::TraceId>,
}

impl Line<'_> {
    /// Write the line (`target: wxgate::access`, level info).
    pub(crate) fn write(&self) {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        tracing::info!(
            target: "wxgate::access",
            request_id = self.request_id,
            method = self.method,
            route = self.route,
            path = %loggable_path(self.path),
            status = self.status,
            auth = self.auth,
            upstream = self.upstream.map(tracing::field::display),
            bytes = self.bytes,
            total_ms = ms(self.total),
            upstream_ms = self.upstream_took.map(ms),
            user = self.user,
            trace_id = self.trace_id.map(tracing::field::display),
        );
    }
}

/// The keyed hash that stands for a user in log lines: SipHash-2-4 (a PRF
/// made for short inputs, a few hundred instructions per line) under a
/// 128-bit key derived from the JWT key with HMAC-SHA256.
#[derive(Clone)]
pub(crate) struct UserHasher(SipHasher24);

impl std::fmt::Debug for UserHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserHasher(***)")
    }
}

impl UserHasher {
    /// A hasher whose key is derived from `secret` (the JWT key).
    pub(crate) fn new(secret: &[u8]) -> Self {
        // HMAC takes keys of any length: the fallback is never taken.
        let derived = Hmac::<Sha256>::new_from_slice(secret)
            .map(|m| {
                m.chain_update(b"wxgate access log user v1")
                    .finalize()
                    .into_bytes()
            })
            .unwrap_or_default();
        let mut key = [0u8; 16];
        key.copy_from_slice(derived.get(..16).unwrap_or(&[0; 16]));
        Self(SipHasher24::new_with_key(&key))
    }

    /// 16 hex digits (64 bits) of the keyed hash of `openid`.
    pub(crate) fn hash(&self, openid: &str) -> String {
        format!("{:016x}", self.0.hash(openid.as_bytes()))
    }
}

/// `path` cut to [`MAX_LOGGED_PATH`] bytes at a character boundary.
pub(crate) fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    if path.len() <= MAX_LOGGED_PATH {
        return path.into();
    }
    let mut end = MAX_LOGGED_PATH;
    while !path.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    format!("{}...", path.get(..end).unwrap_or_default()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_ids_from_trusted_peers_are_kept() {
        let ok = HeaderValue::from_static("req-1.a:b_c+/=");
        assert_eq!(kept_request_id([&ok].into_iter(), true), Some(&ok));
        assert_eq!(kept_request_id([&ok].into_iter(), false), None);
        assert_eq!(kept_request_id([&ok, &ok].into_iter(), true), None);
        assert_eq!(kept_request_id(std::iter::empty(), true), None);
        for bad in ["", "a b", "a\"b", "a\\b", "<script>", "é"] {
            let v = HeaderValue::from_bytes(bad.as_bytes()).unwrap_or(HeaderValue::from_static(""));
            assert_eq!(kept_request_id([&v].into_iter(), true), None, "{bad:?}");
        }
        let long = HeaderValue::from_str(&"a".repeat(MAX_REQUEST_ID + 1))
            .unwrap_or(HeaderValue::from_static(""));
        assert_eq!(kept_request_id([&long].into_iter(), true), None);
        let longest = HeaderValue::from_str(&"a".repeat(MAX_REQUEST_ID))
            .unwrap_or(HeaderValue::from_static(""));
        assert!(kept_request_id([&longest].into_iter(), true).is_some());
    }

    #[test]
    fn fresh_ids_are_32_hex_digits_and_differ() {
        let a = new_request_id();
        let b = new_request_id();
        assert_eq!(a.len(), 32);
        assert!(a.as_bytes().iter().all(u8::is_ascii_hexdigit));
        assert_ne!(a, b);
        assert!(is_sane_request_id(a.as_bytes()));
    }

    #[test]
    fn a_user_hash_is_stable_per_key_and_hides_the_openid() {
        let h = UserHasher::new(b"0123456789abcdef0123456789abcdef");
        let x = h.hash("o-user-1");
        assert_eq!(x.len(), 16);
        assert_eq!(x, h.hash("o-user-1"));
        assert_ne!(x, h.hash("o-user-2"));
        assert!(!x.contains("user"));
        let other = UserHasher::new(b"another key, another instance set");
        assert_ne!(x, other.hash("o-user-1"));
        assert_eq!(format!("{h:?}"), "UserHasher(***)");
    }

    #[test]
    fn long_paths_are_cut_at_a_character_boundary() {
        assert_eq!(loggable_path("/a/b"), "/a/b");
        let long = "é".repeat(200);
        let cut = loggable_path(&long);
        assert!(cut.ends_with("..."));
        assert!(cut.len() <= MAX_LOGGED_PATH + 3);
    }
}
