#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn read(raw: &[u8], head_request: bool) -> String {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    match parse(raw, &mut fields, head_request) {
        ReadHead::Partial => "partial".into(),
        ReadHead::Interim(n) => format!("interim {n}"),
        ReadHead::Bad(why) => format!("bad: {why}"),
        ReadHead::Final(r) => format!("{} {:?} reusable={}", r.status, r.framing, r.reusable),
    }
}

#[test]
fn framing_is_read_as_rfc_9112_says() {
    assert_eq!(
        read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false),
        "200 Length(5) reusable=true"
    );
    assert_eq!(
        read(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", false),
        "200 Length(5) reusable=true"
    );
    assert_eq!(
        read(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false
        ),
        "200 Chunked reusable=true"
    );
    assert_eq!(
        read(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            false
        ),
        "200 Chunked reusable=false"
    );
    assert_eq!(
        read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false),
        "200 UntilClose reusable=false"
    );
    assert_eq!(
        read(b"HTTP/1.1 200 OK\r\n\r\n", false),
        "200 UntilClose reusable=false"
    );
    assert_eq!(
        read(b"HTTP/1.1 204 No Content\r\n\r\n", false),
        "204 Empty reusable=true"
    );
    assert_eq!(
        read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true),
        "200 Empty reusable=true"
    );
    assert_eq!(
        read(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n", false),
        "200 Length(5) reusable=false"
    );
    assert_eq!(
        read(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\n",
            false
        ),
        "200 Length(5) reusable=true"
    );
    assert_eq!(
        read(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\n",
            false
        ),
        "200 Length(5) reusable=false"
    );
    assert_eq!(
        read(b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n", false),
        "interim 37"
    );
    assert_eq!(
        read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", false),
        "partial"
    );
    for bad in [
        &b"HTTP/1.1 101 Switching Protocols\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"HTTX/1.1 200 OK\r\n\r\n",
    ] {
        assert!(
            read(bad, false).starts_with("bad"),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn the_client_gets_wxgates_connection_date_and_request_id() {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let raw = b"HTTP/1.1 404 Not Here\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nDate: old\r\nX-Request-ID: theirs\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\nX-A: b\r\n\r\n";
    let ReadHead::Final(r) = parse(raw, &mut fields, false) else {
        panic!("not final")
    };
    let mut out = Vec::new();
    r.write_head(b"rid", b"now", false, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 404 Not Here\r\nTransfer-Encoding: chunked\r\nX-A: b\r\nX-Request-ID: rid\r\nDate: now\r\nConnection: close\r\n\r\n"
    );
}
