//! The parser catalogue, on both HTTP/1 paths (`[server] http1 = "wxgate"`,
//! wxgate's own, and `"pingora"`): line endings, obs-fold, odd spacing,
//! control bytes, target forms, header and line limits, chunk sizes,
//! pipelining. Each case is sent raw on a fresh connection, left open until
//! the gateway closes it (a short `idle_timeout`); what comes back (every
//! response's status and the path the upstream echoed, if any) must be the
//! same on both paths, and no request
//! riding in another's body (`/public/smuggled`) may reach the upstream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{Gateway, Upstream};

const LIMIT: Duration = Duration::from_secs(5);

/// The cases: a name and the bytes.
fn catalogue() -> Vec<(&'static str, Vec<u8>)> {
    let ok = "GET /public/a HTTP/1.1\r\nHost: gw.test\r\n\r\n";
    let smuggled = "GET /public/smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n";
    let long_value = "v".repeat(20 * 1024);
    let many: String = (0..100).map(|i| format!("X-F{i}: v\r\n")).collect();
    let too_many: String = (0..300).map(|i| format!("X-F{i}: v\r\n")).collect();
    let long_target = format!("/public/{}", "a".repeat(16 * 1024));
    let cases: Vec<(&str, String)> = vec![
        ("plain", ok.into()),
        ("bare LF line ends", "GET /public/a HTTP/1.1\nHost: gw.test\n\n".into()),
        ("bare CR", "GET /public/a HTTP/1.1\rHost: gw.test\r\n\r\n".into()),
        (
            "mixed line ends",
            "GET /public/a HTTP/1.1\r\nHost: gw.test\n\r\n".into(),
        ),
        (
            "obs-fold",
            "GET /public/a HTTP/1.1\r\nHost: gw.test\r\nX-A: a\r\n b\r\n\r\n".into(),
        ),
        (
            "obs-fold of Content-Length",
            format!("POST /public/a HTTP/1.1\r\nHost: gw.test\r\nContent-Length:\r\n 5\r\n\r\nhello{smuggled}"),
        ),
        (
            "space before the colon",
            "GET /public/a HTTP/1.1\r\nHost: gw.test\r\nContent-Length : 0\r\n\r\n".into(),
        ),
        (
            "space before the first field",
            "GET /public/a HTTP/1.1\r\n Host: gw.test\r\n\r\n".into(),
        ),
        (
            "NUL in a value",
            "GET /public/a HTTP/1.1\r\nHost: gw.test\r\nX-A: a\0b\r\n\r\n".into(),
        ),
        (
            "control byte in a value",
            "GET /public/a HTTP/1.1\r\nHost: gw.test\r\nX-A: a\x01b\r\n\r\n".into(),
        ),
        (
            "high bytes in a value",
            "GET /public/a HTTP/1.1\r\nHost: gw.test\r\nX-A: caf\u{e9}\r\n\r\n".into(),
        ),
        (
            "no colon",
            "GET /public/a HTTP/1.1\r\nHost: gw.test\r\nBad Header\r\n\r\n".into(),
        ),
        ("two spaces in the line", "GET  /public/a HTTP/1.1\r\nHost: gw.test\r\n\r\n".into()),
        ("lower-case method", "get /public/a HTTP/1.1\r\nHost: gw.test\r\n\r\n".into()),
        ("HTTP/1.2", "GET /public/a HTTP/1.2\r\nHost: gw.test\r\n\r\n".into()),
        ("HTTP/0.9 style", "GET /public/a\r\n\r\n".into()),
        (
            "absolute form",
            "GET http://gw.test/public/a HTTP/1.1\r\nHost: gw.test\r\n\r\n".into(),
        ),
        (
            "absolute form, other host",
            "GET http://other.test/public/a HTTP/1.1\r\nHost: gw.test\r\n\r\n".into(),
        ),
        ("asterisk form", "OPTIONS * HTTP/1.1\r\nHost: gw.test\r\n\r\n".into()),
        ("fragment", "GET /public/a#x HTTP/1.1\r\nHost: gw.test\r\n\r\n".into()),
        ("angle bracket", "GET /public/<a> HTTP/1.1\r\nHost: gw.test\r\n\r\n".into()),
        ("space in the target", "GET /public/a b HTTP/1.1\r\nHost: gw.test\r\n\r\n".into()),
        ("no Host", "GET /public/a HTTP/1.1\r\n\r\n".into()),
        ("two Hosts", "GET /public/a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into()),
        ("userinfo Host", "GET /public/a HTTP/1.1\r\nHost: u@gw.test\r\n\r\n".into()),
        (
            "Content-Length with a sign",
            format!("POST /public/a HTTP/1.1\r\nHost: gw.test\r\nContent-Length: +5\r\n\r\nhello{smuggled}"),
        ),
        (
            "Content-Length in hex",
            format!("POST /public/a HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 0x5\r\n\r\nhello{smuggled}"),
        ),
        (
            "Content-Length overflowing",
            format!("POST /public/a HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 99999999999999999999\r\n\r\nhello{smuggled}"),
        ),
        (
            "Content-Length with spaces around",
            format!("POST /public/a HTTP/1.1\r\nHost: gw.test\r\nContent-Length:  5 \r\n\r\nhello{ok}"),
        ),
        (
            "Content-Length with a leading zero",
            format!("POST /public/a HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 05\r\n\r\nhello{ok}"),
        ),
        (
            "Content-Length_ look-alike",
            format!("POST /public/a HTTP/1.1\r\nHost: gw.test\r\nContent_Length: 5\r\n\r\n{ok}"),
        ),
        (
            "obfuscated Transfer-Encoding",
            format!("POST /public/a HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "Transfer-Encoding with a tab",
            format!("POST /public/a HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n{ok}"),
        ),
        (
            "Transfer-Encoding xchunked",
            format!("POST /public/a HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "chunk size overflowing",
            format!("POST /public/a HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nx\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "chunk size not hex",
            format!("POST /public/a HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nx\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "chunk without its CRLF",
            format!("POST /public/a HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy0\r\n\r\n{smuggled}"),
        ),
        (
            "Expect: 100-continue",
            "POST /public/a HTTP/1.1\r\nHost: gw.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello".into(),
        ),
        (
            "a 20 KiB value",
            format!("GET /public/a HTTP/1.1\r\nHost: gw.test\r\nX-Long: {long_value}\r\n\r\n"),
        ),
        (
            "a 16 KiB target",
            format!("GET {long_target} HTTP/1.1\r\nHost: gw.test\r\n\r\n"),
        ),
        ("100 fields", format!("GET /public/a HTTP/1.1\r\nHost: gw.test\r\n{many}\r\n")),
        ("300 fields", format!("GET /public/a HTTP/1.1\r\nHost: gw.test\r\n{too_many}\r\n")),
        ("pipelined", format!("{ok}{ok}{ok}")),
        (
            "pipelined after a body",
            format!("POST /public/a HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\n\r\nhello{ok}"),
        ),
        (
            "pipelined after Connection: close",
            format!("GET /public/a HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n{ok}"),
        ),
        (
            "a 401 with a body, then another request",
            format!("POST /b HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\n\r\nhello{ok}"),
        ),
        (
            "a head cut short",
            "GET /public/a HTTP/1.1\r\nHost: gw".into(),
        ),
        (
            "a body cut short",
            "POST /public/a HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 50\r\n\r\nhello".into(),
        ),
    ];
    cases
        .into_iter()
        .map(|(n, s)| (n, s.into_bytes()))
        .collect()
}

/// What the client sees: each response's status and the path the upstream
/// echoed (`-` for the gateway's own answers), until the connection closes.
async fn outcome(gw: &Gateway, request: &[u8]) -> Vec<String> {
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    // Not half-closed (Pingora's path takes that as the client giving up):
    // the gateway closes the connection once idle (`idle_timeout`).
    let _ = s.write_all(request).await;
    let mut got = Vec::new();
    let mut chunk = [0u8; 16384];
    let read = tokio::time::timeout(LIMIT, async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the connection is still open after {LIMIT:?}");
    let text = String::from_utf8_lossy(&got).into_owned();
    let mut seen = Vec::new();
    for part in text.split("HTTP/1.1 ").skip(1) {
        let status = part.get(..3).unwrap_or("?").to_string();
        let path = part
            .split("\"path\":\"")
            .nth(1)
            .and_then(|p| p.split('"').next())
            .unwrap_or("-");
        seen.push(format!("{status} {path}"));
    }
    if seen.is_empty() {
        seen.push("closed".into());
    }
    seen
}

#[tokio::test]
async fn both_http1_paths_answer_the_catalogue_alike_and_nothing_is_smuggled() {
    let mut seen = Vec::new();
    for path in support::HTTP1_PATHS {
        let up = Upstream::start("parsing").await;
        let server =
            "idle_timeout = \"300ms\"\nheader_timeout = \"500ms\"\nbody_timeout = \"500ms\"";
        let config = support::Preamble::new("test-app")
            .server(server)
            .to_string()
            + &support::routes_toml(&[("/public/", "public"), ("/", "required")], up.addr);
        let gw = Gateway::start(&support::with_http1(&config, path)).await;
        // All cases at once, each on its own connection.
        let cases = catalogue();
        let runs = cases.iter().map(|(_, request)| outcome(&gw, request));
        let results = futures_util::future::join_all(runs).await;
        let mut outcomes = Vec::new();
        for ((name, _), o) in cases.iter().zip(results) {
            assert!(
                !o.iter().any(|r| r.contains("smuggled")),
                "{path}: {name}: a request in another's body reached the upstream: {o:?}"
            );
            outcomes.push((*name, o));
        }
        gw.stop().await;
        up.stop().await;
        seen.push(outcomes);
    }
    let (own, pingora) = (&seen[0], &seen[1]);
    if std::env::var_os("WXGATE_SHOW_CATALOGUE").is_some() {
        for (name, o) in own {
            let shown: Vec<String> = o.iter().map(|r| r.chars().take(60).collect()).collect();
            eprintln!("{name}: {shown:?}");
        }
    }
    let differ: Vec<String> = own
        .iter()
        .zip(pingora)
        .filter(|(a, b)| a.1 != b.1)
        .map(|(a, b)| format!("{}: wxgate {:?}, pingora {:?}", a.0, a.1, b.1))
        .collect();
    assert!(
        differ.is_empty(),
        "the paths differ:\n{}",
        differ.join("\n")
    );
    // A few fixed points, so that both cannot be wrong alike.
    let of = |name: &str| &own.iter().find(|c| c.0 == name).unwrap().1;
    assert_eq!(of("plain"), &vec!["200 /public/a".to_string()]);
    assert_eq!(of("pipelined").len(), 3);
    assert_eq!(
        of("pipelined after Connection: close"),
        &vec!["200 /public/a".to_string()]
    );
    assert_eq!(
        of("a 401 with a body, then another request"),
        &vec!["401 -".to_string()]
    );
    assert!(of("obs-fold of Content-Length")[0].starts_with("400"));
    assert!(of("two Hosts")[0].starts_with("400"));
    // A look-alike of Content-Length frames nothing: the next bytes are a request.
    assert_eq!(of("Content-Length_ look-alike").len(), 2);
}
