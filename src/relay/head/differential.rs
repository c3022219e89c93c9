//! Differential fuzzing of the relay's head reading against Pingora's
//! parser, the reference: for generated and mutated requests, whatever the
//! relay takes, Pingora (with wxgate's own framing check) also takes, and
//! reads the same way: method, target, fields in order, head length, body
//! length, `Connection: close`. What the relay leaves to Pingora needs no
//! check: Pingora answers it as it always did.
//!
//! Bounded by time: `WXGATE_FUZZ_SECS` (default 5 s) of cases from a random
//! seed, printed on failure (`WXGATE_FUZZ_SEED` replays one).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use pingora_core::protocols::http::v1::server::HttpSession;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::AsyncWriteExt;

use super::*;

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "get", "CONNECT", "TRACE", "G:T",
    "",
];
const TARGETS: &[&str] = &[
    "/",
    "/a?b=1",
    "/a/../b",
    "*",
    "http://x/a",
    "//x",
    "/a b",
    "/%zz",
    "/a\x7f",
    "/\u{e9}",
    "/a#f",
    "x",
    "",
];
const VERSIONS: &[&str] = &[
    "HTTP/1.1",
    "HTTP/1.1",
    "HTTP/1.1",
    "HTTP/1.0",
    "HTTP/1.2",
    "HTTP/2.0",
    "http/1.1",
    "HTTP/1.10",
];
const SEPARATORS: &[&str] = &[" ", " ", " ", "  ", "\t"];
const LINE_ENDS: &[&str] = &["\r\n", "\r\n", "\r\n", "\r\n", "\n", "\r", "\r\r\n"];
const NAMES: &[&str] = &[
    "Host",
    "host",
    "Content-Length",
    "content-length",
    "CONTENT-LENGTH",
    "Content-Length ",
    " Content-Length",
    "Content_Length",
    "Transfer-Encoding",
    "transfer-encoding",
    "Transfer-Encoding ",
    "Connection",
    "Expect",
    "Upgrade",
    "HTTP2-Settings",
    "Authorization",
    "X-OpenID",
    "X-A",
    "X\u{0}B",
    "X B",
    "",
];
const VALUES: &[&str] = &[
    "0",
    "5",
    "05",
    "+5",
    "-1",
    "5, 5",
    "5,6",
    " 5 ",
    "5 ",
    "0x5",
    "99999999999999999999",
    "chunked",
    "Chunked",
    "gzip, chunked",
    "chunked, gzip",
    "identity",
    "close",
    "keep-alive",
    "Keep-Alive, close",
    "upgrade",
    "x@y",
    "gw.test",
    "\u{1}",
    "\u{7f}",
    "\u{e9}",
    "100-continue",
    "a\r\n b",
    "a\n\tb",
    "",
];

fn pick<'a>(rng: &mut StdRng, from: &[&'a str]) -> &'a str {
    from[rng.random_range(0..from.len())]
}

/// A request: a line, some fields, a blank line, a body; sometimes mutated.
fn generate(rng: &mut StdRng) -> Vec<u8> {
    // Half the cases are tame (the relay's kind, with one odd piece at
    // most), so that many reach the comparison.
    let tame = rng.random_bool(0.5);
    let p_odd = if tame { 0.03 } else { 0.3 };
    let odd = move |rng: &mut StdRng| rng.random_bool(p_odd);
    let pick_some = |rng: &mut StdRng, from: &[&'static str], usual: usize| {
        if odd(rng) {
            pick(rng, from)
        } else {
            from[rng.random_range(0..usual)]
        }
    };
    let end = |rng: &mut StdRng| {
        if !odd(rng) {
            "\r\n"
        } else {
            pick(rng, LINE_ENDS)
        }
    };
    let mut out = String::new();
    out.push_str(pick_some(rng, METHODS, 7));
    out.push_str(pick_some(rng, SEPARATORS, 1));
    out.push_str(pick_some(rng, TARGETS, 3));
    out.push_str(pick_some(rng, SEPARATORS, 1));
    out.push_str(pick_some(rng, VERSIONS, 3));
    out.push_str(end(rng));
    for _ in 0..rng.random_range(0..8) {
        out.push_str(pick_some(rng, NAMES, 5));
        out.push_str(if rng.random_bool(0.9) { ": " } else { ":" });
        out.push_str(pick_some(rng, VALUES, 3));
        out.push_str(end(rng));
    }
    out.push_str(end(rng));
    let mut bytes = out.into_bytes();
    let body_len = rng.random_range(0..12);
    bytes.extend((0..body_len).map(|_| b"abcGET /\r\n"[rng.random_range(0..10)]));
    // Mutations: flip, insert or drop a few bytes anywhere.
    if rng.random_bool(if tame { 0.1 } else { 0.3 }) {
        for _ in 0..rng.random_range(1..4) {
            if bytes.is_empty() {
                break;
            }
            let at = rng.random_range(0..bytes.len());
            match rng.random_range(0..3) {
                0 => bytes[at] = rng.random(),
                1 => bytes.insert(at, rng.random()),
                _ => {
                    bytes.remove(at);
                }
            }
        }
    }
    bytes
}

/// How Pingora, then wxgate's framing check, reads `bytes`.
#[derive(Debug, PartialEq, Eq)]
struct Reading {
    method: String,
    target: Vec<u8>,
    fields: Vec<(String, Vec<u8>)>,
    head_len: usize,
    body: u64,
    close: bool,
}

async fn pingora_reads(bytes: &[u8], body_available: usize) -> Option<Reading> {
    let (a, b) = tokio::net::UnixStream::pair().unwrap();
    let mut writer = b;
    writer.write_all(bytes).await.unwrap();
    writer.shutdown().await.unwrap();
    let stream: pingora_core::protocols::Stream =
        Box::new(pingora_core::protocols::l4::stream::Stream::from(a));
    let mut session = HttpSession::new(stream);
    let head_len = session.read_request().await.ok()??;
    let req = session.req_header();
    let raw = session.get_headers_raw_bytes();
    if crate::framing::check(req, || Some(raw.clone())).is_err() {
        return None;
    }
    let mut fields: Vec<(String, Vec<u8>)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    // A header map groups the values of a name: compare by name, values in order.
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    let close = req
        .headers
        .get_all(http::header::CONNECTION)
        .iter()
        .any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
        });
    let method = req.method.as_str().to_string();
    let target = req.raw_path().to_vec();
    // The body as Pingora frames it, as far as the bytes go.
    let mut body = 0u64;
    while let Ok(Some(chunk)) = session.read_body_bytes().await {
        body += chunk.len() as u64;
        if body as usize > body_available {
            break;
        }
    }
    Some(Reading {
        method,
        target,
        fields,
        head_len,
        body,
        close,
    })
}

/// How the relay reads `bytes`, when it takes them.
fn relay_reads(bytes: &[u8]) -> Option<(Reading, usize)> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let Parsed::Relay(h) = parse(bytes, &mut fields) else {
        return None;
    };
    let available = bytes.len().saturating_sub(h.len);
    let mut fields: Vec<(String, Vec<u8>)> = h
        .fields
        .iter()
        .map(|f| (f.name.to_ascii_lowercase(), f.value.to_vec()))
        .collect();
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    Some((
        Reading {
            method: h.method.to_string(),
            target: h.target.to_vec(),
            fields,
            head_len: h.len,
            body: h.body,
            close: h.close,
        },
        available,
    ))
}

#[tokio::test]
async fn the_relay_takes_only_what_pingora_takes_and_reads_it_the_same_way() {
    let secs = std::env::var("WXGATE_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5u64);
    let seed = std::env::var("WXGATE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let mut rng = StdRng::seed_from_u64(seed);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut cases, mut taken) = (0u64, 0u64);
    while Instant::now() < deadline {
        let bytes = generate(&mut rng);
        cases += 1;
        let Some((relay, available)) = relay_reads(&bytes) else {
            continue;
        };
        taken += 1;
        let pingora = pingora_reads(&bytes, available).await;
        let shown = String::from_utf8_lossy(&bytes);
        let Some(mut pingora) = pingora else {
            panic!("seed {seed}: the relay takes what Pingora refuses: {shown:?}");
        };
        if relay.body > available as u64 {
            // Cut short: Pingora read what there was.
            pingora.body = relay.body;
        }
        assert_eq!(relay, pingora, "seed {seed}: read differently: {shown:?}");
    }
    println!("{cases} cases, {taken} taken by the relay, seed {seed}");
    assert!(
        taken > 0,
        "no case was taken by the relay: the generator is off"
    );
}
