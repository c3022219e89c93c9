#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;

use super::*;

/// Scan `body` in pieces of `step` bytes: bytes taken, done.
fn scan_in(body: &[u8], step: usize) -> Result<(usize, bool), Malformed> {
    decode_in(body, step).map(|(taken, done, _)| (taken, done))
}

/// Scan `body` in pieces of `step` bytes: bytes taken, done, the data.
fn decode_in(body: &[u8], step: usize) -> Result<(usize, bool, Vec<u8>), Malformed> {
    let mut c = Chunked::default();
    let mut taken = 0;
    let mut data = Vec::new();
    for piece in body.chunks(step.max(1)) {
        let n = c.scan_each(piece, |d| data.extend_from_slice(d))?;
        taken += n;
        if c.is_done() {
            break;
        }
    }
    Ok((taken, c.is_done(), data))
}

#[test]
fn a_body_ends_after_its_last_chunk_and_trailers() {
    let body = b"5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1";
    let end = body.len() - b"GET / HTTP/1.1".len();
    for step in 1..body.len() {
        assert_eq!(scan_in(body, step).unwrap(), (end, true), "step {step}");
    }
    assert_eq!(scan_in(b"0\r\n\r\n", 64).unwrap(), (5, true));
    assert_eq!(scan_in(b"0\n\n", 64).unwrap(), (3, true));
    assert_eq!(scan_in(b"A\r\n0123456789\r\n", 64).unwrap(), (15, false));
    for step in 1..body.len() {
        assert_eq!(decode_in(body, step).unwrap().2, b"helloabc", "step {step}");
    }
}

#[test]
fn bad_framing_is_refused() {
    for bad in [
        &b"\r\n"[..],
        b"x\r\n",
        b"5\r\nhelloX\r\n",
        b"5\r\nhello\rX",
        b"5\rX",
        b"0\r\n\rX",
        b"0\r\nX-T: 1\rX",
        b"0\r\nX-T: \x01\r\n",
        b"1;\x00\r\n",
        b"00000000000000001\r\n",
        b"fffffffffffffffff\r\n",
    ] {
        assert!(
            scan_in(bad, 64).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let long = format!("1;{}\r\n", "e".repeat(MAX_LINE));
    assert!(scan_in(long.as_bytes(), 64).is_err());
    assert!(scan_in(b"ffffffffffffffff\r\n", 64).is_ok());
}

proptest! {
    #![proptest_config(crate::testing::proptest_config())]

    /// Any body made of well-formed chunks ends exactly after its blank
    /// line, however it is cut up.
    #[test]
    fn well_formed_bodies_end_where_they_end(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..40), 0..6),
        trailers in prop::collection::vec("[A-Za-z-]{1,8}: [ -~]{0,10}", 0..3),
        step in 1usize..50,
        after in prop::collection::vec(any::<u8>(), 0..20),
    ) {
        let mut body = Vec::new();
        for c in &chunks {
            body.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            body.extend_from_slice(c);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n");
        for t in &trailers {
            body.extend_from_slice(t.as_bytes());
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"\r\n");
        let end = body.len();
        body.extend_from_slice(&after);
        prop_assert_eq!(decode_in(&body, step).unwrap(), (end, true, chunks.concat()));
    }

    /// Nothing panics, whatever the bytes.
    #[test]
    fn any_bytes_are_scanned_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..200), step in 1usize..50) {
        let _ = scan_in(&bytes, step);
    }
}
