//! Request framing through the real gateway: a request whose length could be
//! read two ways (by `Transfer-Encoding` or by `Content-Length`, or by one of
//! several `Content-Length` values) is refused with 400 and its connection
//! closed, so the bytes after it are never read as another request; an
//! HTTP/2 field value with whitespace around it is refused; and nothing the
//! gateway or Pingora answers by itself names Pingora.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use reqwest::Version;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{Gateway, Response, Upstream};

const LIMIT: Duration = Duration::from_secs(5);

/// A gateway whose plain HTTP/1.1 requests `path` serves: every test here
/// runs on both (`support::HTTP1_PATHS`).
async fn setup(path: &str) -> (Upstream, Gateway) {
    eprintln!("[server] http1 = {path:?}");
    let up = Upstream::start("framing").await;
    let config = support::with_http1(&support::standard_config(up.addr), path);
    let gw = Gateway::start(&config).await;
    (up, gw)
}

/// A request the smuggled one rides on: `head` ends the header lines (the
/// blank line is added), `body` follows, then a whole second request that a
/// reader framing by the other header would see as body.
fn smuggling(head: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /public/first HTTP/1.1\r\nHost: gw.test\r\n{head}\r\n{body}\
         GET /public/smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n"
    )
    .into_bytes()
}

/// Send `request` on a fresh connection; the first response, and what came
/// after it until the gateway closed the connection.
async fn exchange(gw: &Gateway, request: &[u8]) -> (Response, Vec<u8>) {
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let first = support::read_response(&mut s, LIMIT).await;
    let mut rest = Vec::new();
    let mut chunk = [0u8; 4096];
    let closed = tokio::time::timeout(LIMIT, async {
        loop {
            match s.read(&mut chunk).await {
                // A reset (the refused body left unread) is a close too.
                Ok(0) | Err(_) => return,
                Ok(n) => rest.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the connection is still open after {LIMIT:?}; after the first response: {:?}",
        String::from_utf8_lossy(&rest)
    );
    (first, rest)
}

/// A 400 `invalid_request` that closes the connection, with nothing after it.
fn assert_refused_and_closed(what: &str, first: &Response, rest: &[u8]) {
    assert_eq!(first.status, 400, "{what}: {}", first.text());
    assert_eq!(first.error(), "invalid_request", "{what}");
    assert_eq!(first.header("connection"), Some("close"), "{what}");
    assert!(
        rest.is_empty(),
        "{what}: a second response: {:?}",
        String::from_utf8_lossy(rest)
    );
}

// ---------------------------------------------------------------------------
// Transfer-Encoding and Content-Length (RFC 9112 §6.1, §6.3)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn chunked_with_a_content_length_is_refused_and_the_connection_closed() {
    for path in support::HTTP1_PATHS {
        let (up, gw) = setup(path).await;
        // A front end framing by Content-Length reads "0\r\n\r\nGET ..." as
        // the body of the first request; a chunked reader sees two requests.
        let cases = [
            "Transfer-Encoding: chunked\r\nContent-Length: 52\r\n",
            "Content-Length: 52\r\nTransfer-Encoding: chunked\r\n",
            "content-length: 52\r\ntransfer-encoding: CHUNKED\r\n",
            "Transfer-Encoding: identity, chunked\r\nContent-Length: 52\r\n",
            "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
        ];
        for head in cases {
            let (first, rest) = exchange(&gw, &smuggling(head, "0\r\n\r\n")).await;
            assert_refused_and_closed(head, &first, &rest);
        }
        assert_eq!(up.echo.requests(), 0, "nothing reaches the upstream");
        gw.stop().await;
    }
}

#[tokio::test]
async fn a_transfer_encoding_other_than_chunked_alone_is_refused() {
    for path in support::HTTP1_PATHS {
        let (up, gw) = setup(path).await;
        let cases = [
            "Transfer-Encoding: identity, chunked\r\n",
            "Transfer-Encoding: gzip, chunked\r\n",
            "Transfer-Encoding: chunked, chunked\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
        ];
        for head in cases {
            let (first, rest) = exchange(&gw, &smuggling(head, "0\r\n\r\n")).await;
            assert_refused_and_closed(head, &first, &rest);
        }
        assert_eq!(up.echo.requests(), 0, "nothing reaches the upstream");
        gw.stop().await;
    }
}

/// The well-formed cases stay as they were: a chunked body alone, and one
/// `Content-Length`, each followed by a pipelined request on the same
/// connection.
#[tokio::test]
async fn a_chunked_body_or_one_content_length_is_forwarded() {
    for path in support::HTTP1_PATHS {
        let (up, gw) = setup(path).await;
        for (head, body) in [
            ("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
            ("Transfer-Encoding: Chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
            ("Content-Length: 5\r\n", "hello"),
        ] {
            let mut s = TcpStream::connect(gw.addr).await.unwrap();
            s.write_all(&smuggling(head, body)).await.unwrap();
            let first = support::read_response(&mut s, LIMIT).await;
            assert_eq!(first.status, 200, "{head}: {}", first.text());
            assert_eq!(first.json()["body_bytes"], 5, "{head}");
            let second = support::read_response(&mut s, LIMIT).await;
            assert_eq!(second.status, 200, "{head}: {}", second.text());
            assert_eq!(second.upstream_path(), "/public/smuggled", "{head}");
        }
        assert_eq!(up.echo.requests(), 6);
        gw.stop().await;
    }
}

/// HTTP/1.0 has no chunked coding (RFC 9112 §6.1): Transfer-Encoding is
/// refused, and a connection the client did not ask to keep is closed after
/// its response, its later bytes unread.
#[tokio::test]
async fn http10_framing_is_refused_or_ends_the_connection() {
    for path in support::HTTP1_PATHS {
        let (up, gw) = setup(path).await;
        let te = b"POST /public/first HTTP/1.0\r\nHost: gw.test\r\n\
        Transfer-Encoding: chunked\r\nContent-Length: 52\r\n\r\n0\r\n\r\n\
        GET /public/smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n";
        let (first, rest) = exchange(&gw, te).await;
        assert_eq!(first.status, 400, "{}", first.text());
        assert_eq!(first.header("server"), None, "{:?}", first.headers);
        assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
        assert_eq!(up.echo.requests(), 0);

        let cl = b"POST /public/first HTTP/1.0\r\nHost: gw.test\r\n\
        Content-Length: 5\r\n\r\nhello\
        GET /public/smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n";
        let (first, rest) = exchange(&gw, cl).await;
        assert_eq!(first.status, 200, "{}", first.text());
        assert_eq!(first.upstream_path(), "/public/first");
        assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
        assert_eq!(
            up.echo.requests(),
            1,
            "only the first request went upstream"
        );
        gw.stop().await;
    }
}

// ---------------------------------------------------------------------------
// Content-Length (RFC 9110 §8.6)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn more_than_one_content_length_is_refused() {
    for path in support::HTTP1_PATHS {
        let (up, gw) = setup(path).await;
        let cases = [
            "Content-Length: 5\r\nContent-Length: 5\r\n",
            "Content-Length: 5, 5\r\n",
            "Content-Length: 5,5\r\n",
            "Content-Length: 5\r\ncontent-length: 5\r\n",
        ];
        for head in cases {
            let (first, rest) = exchange(&gw, &smuggling(head, "hello")).await;
            assert_refused_and_closed(head, &first, &rest);
        }
        assert_eq!(up.echo.requests(), 0, "nothing reaches the upstream");
        gw.stop().await;
    }
}

// ---------------------------------------------------------------------------
// HTTP/2 field values (RFC 9113 §8.2.1)
// ---------------------------------------------------------------------------

fn h2c_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .build()
        .unwrap()
}

#[tokio::test]
async fn h2_field_values_with_whitespace_around_them_are_refused() {
    for path in support::HTTP1_PATHS {
        let (up, gw) = setup(path).await;
        let client = h2c_client();
        let url = format!("http://{}/public/x", gw.addr);
        for value in [" padded", "padded ", "\tpadded", "padded\t", " "] {
            let res = client
                .get(&url)
                .header("x-padded", value)
                .send()
                .await
                .expect("h2c request");
            assert_eq!(res.version(), Version::HTTP_2);
            assert_eq!(res.status(), 400, "{value:?}");
            let body: serde_json::Value = res.json().await.expect("JSON error body");
            assert_eq!(body["error"], "invalid_request", "{value:?}");
        }
        assert_eq!(up.echo.requests(), 0, "nothing reaches the upstream");

        // Whitespace inside a value, and an empty value, are fine.
        let res = client
            .get(&url)
            .header("x-inner", "a b\tc")
            .header("x-empty", "")
            .send()
            .await
            .expect("h2c request");
        assert_eq!(res.status(), 200);
        let echo: serde_json::Value = res.json().await.expect("echo JSON");
        let headers = echo["headers"].as_array().unwrap();
        assert!(
            headers
                .iter()
                .any(|h| h[0] == "x-inner" && h[1] == "a b\tc"),
            "{echo}"
        );
        assert_eq!(up.echo.requests(), 1);
        gw.stop().await;
    }
}

// ---------------------------------------------------------------------------
// What the gateway answers by itself
// ---------------------------------------------------------------------------

/// A connection that opens with a broken HTTP/2 preface on the plain
/// listener is closed without an answer (no HTTP/1.1 400 naming Pingora).
#[tokio::test]
async fn a_bad_h2c_preface_is_closed_without_an_answer() {
    for path in support::HTTP1_PATHS {
        let (up, gw) = setup(path).await;
        for preface in [
            &b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"[..],
            b"PRI * HTTP/2.0\r\n\r\n\r\n",
            b"PRI * HTTP/1.1\r\nHost: gw.test\r\n\r\n",
            b"PRI / HTTP/1.1\r\nHost: gw.test\r\n\r\n",
        ] {
            let mut s = TcpStream::connect(gw.addr).await.unwrap();
            s.write_all(preface).await.unwrap();
            let mut got = Vec::new();
            tokio::time::timeout(LIMIT, s.read_to_end(&mut got))
                .await
                .expect("closed in time")
                .ok();
            assert!(
                got.is_empty(),
                "{:?} was answered: {:?}",
                String::from_utf8_lossy(preface),
                String::from_utf8_lossy(&got)
            );
        }
        assert_eq!(up.echo.requests(), 0);
        gw.stop().await;
    }
}

/// Pingora's own refusals (a request its parser cannot read, `CONNECT`)
/// carry no `Server` header.
#[tokio::test]
async fn pingoras_own_refusals_do_not_name_it() {
    for path in support::HTTP1_PATHS {
        let (up, gw) = setup(path).await;
        for (request, status) in [
            (
                &b"GET /public/x HTTP/1.1\r\nHost: gw.test\r\nBad Header\r\n\r\n"[..],
                400,
            ),
            (
                b"GET http://other.test/public/x HTTP/1.1\r\nHost: gw.test\r\n\r\n",
                400,
            ),
            (b"GET /public/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            (
                b"CONNECT gw.test:443 HTTP/1.1\r\nHost: gw.test:443\r\n\r\n",
                405,
            ),
        ] {
            let r = gw.raw(request).await;
            let what = String::from_utf8_lossy(request);
            assert_eq!(r.status, status, "{what}");
            assert_eq!(r.header("server"), None, "{what}: {:?}", r.headers);
            assert!(r.body.is_empty(), "{what}: not Pingora's own: {}", r.text());
        }
        assert_eq!(up.echo.requests(), 0);
        gw.stop().await;
    }
}
