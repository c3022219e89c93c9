#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn parsed(raw: &[u8]) -> String {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    match parse(raw, &mut fields) {
        Parsed::Partial => "partial".into(),
        Parsed::Pingora(why) => format!("pingora: {why}"),
        Parsed::Relay(h) => format!(
            "relay {} {} body={} close={} host={:?} len={}",
            h.method,
            String::from_utf8_lossy(h.target),
            h.body,
            h.close,
            h.host.map(|h| String::from_utf8_lossy(h).into_owned()),
            h.len
        ),
    }
}

#[test]
fn the_plain_kind_is_served_here() {
    assert_eq!(
        parsed(b"GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n"),
        "relay GET /a?b body=0 close=false host=Some(\"x\") len=30"
    );
    assert_eq!(
        parsed(
            b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 12\r\nConnection: close\r\n\r\nbody"
        ),
        "relay POST /a body=12 close=true host=Some(\"x\") len=68"
    );
    assert_eq!(parsed(b"GET /a HTTP/1.1\r\nHost: x\r\n"), "partial");
}

#[test]
fn anything_unusual_goes_to_pingora() {
    for raw in [
        &b"GET /a HTTP/1.0\r\n\r\n"[..],
        b"CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"TRACE / HTTP/1.1\r\n\r\n",
        b"get / HTTP/1.1\r\n\r\n",
        b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n",
        b"POST / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        b"GET / HTTP/1.1\r\nConnection: Upgrade\r\n\r\n",
        b"GET / HTTP/1.1\r\nHTTP2-Settings: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nX : a\r\n\r\n",
        b"GET /a b HTTP/1.1\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"\x00GET / HTTP/1.1\r\n\r\n",
    ] {
        let p = parsed(raw);
        assert!(
            p.starts_with("pingora"),
            "{}: {p}",
            String::from_utf8_lossy(raw)
        );
    }
    let many: String = (0..=MAX_FIELDS).map(|i| format!("X-{i}: v\r\n")).collect();
    let raw = format!("GET / HTTP/1.1\r\n{many}\r\n");
    assert!(parsed(raw.as_bytes()).starts_with("pingora"));
}

#[test]
fn a_blank_line_is_looked_for_before_parsing() {
    assert!(!may_be_complete(b"GET / HTTP/1.1\r\nHost: x\r\n"));
    assert!(may_be_complete(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert!(may_be_complete(b"GET / HTTP/1.1\nHost: x\n\n"));
}

#[test]
fn values_are_found_in_any_case() {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let raw = b"GET / HTTP/1.1\r\nAuthorization: a\r\nauthorization: b\r\nX: c\r\n\r\n";
    let Parsed::Relay(h) = parse(raw, &mut fields) else {
        panic!("not served here")
    };
    let got: Vec<&[u8]> = values(h.fields, b"authorization").collect();
    assert_eq!(got, vec![&b"a"[..], &b"b"[..]]);
}
