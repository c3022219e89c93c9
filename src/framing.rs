//! Request framing: one reading of where a request ends and what its fields say.
//!
//! A request whose length two readers could take differently is the
//! request-smuggling primitive. When a front end frames it by
//! `Content-Length` and wxgate by `Transfer-Encoding` (or each takes another
//! of several `Content-Length` values), they disagree on where the next
//! request starts, and bytes one of them took for a body the other reads as
//! a request of its own. So before anything is forwarded, wxgate refuses
//! with 400 `invalid_request` and closes the connection (the proxy's
//! `early_request_filter`), when a request has:
//!
//! - `Transfer-Encoding` together with `Content-Length` (RFC 9112 §6.1).
//!   Pingora drops the `Content-Length` from the parsed header when both
//!   are present, so the raw header is read for it, only then;
//! - any `Transfer-Encoding` but one field `chunked` (`identity, chunked`,
//!   `gzip, chunked`, two fields): wxgate forwards chunked bodies only;
//! - more than one `Content-Length`, as fields or as a list (`42, 42`),
//!   even of one value (RFC 9110 §8.6 lets a recipient refuse them);
//! - on HTTP/2, a field value with a space or tab at either end: RFC 9113
//!   §8.2.1 makes the request malformed and forbids an intermediary to
//!   forward it. HTTP/1's parser trims that whitespace; HPACK carries it as
//!   sent.
//!
//! Pingora refuses the rest itself (a plain 400): `Transfer-Encoding` on
//! HTTP/1.0, a final coding other than `chunked`, differing or non-numeric
//! lengths. A well-formed request costs a few lookups in its header map and
//! allocates nothing.

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::Version;
use pingora_http::RequestHeader;

use crate::error::ApiError;

/// Refuse a request whose length or fields could be read two ways.
/// `raw_header` gives the HTTP/1 header as received (`None` on HTTP/2); it
/// is called only for a request with `Transfer-Encoding`.
pub(crate) fn check<R: AsRef<[u8]>>(
    req: &RequestHeader,
    raw_header: impl FnOnce() -> Option<R>,
) -> Result<(), ApiError> {
    let ambiguous = ApiError::InvalidRequest("the request's length is ambiguous");
    let headers = &req.headers;
    let mut codings = headers.get_all(TRANSFER_ENCODING).iter();
    if let Some(coding) = codings.next() {
        if codings.next().is_some() || !coding.as_bytes().eq_ignore_ascii_case(b"chunked") {
            return Err(ambiguous);
        }
        let raw_length = || raw_header().is_some_and(|raw| names_content_length(raw.as_ref()));
        if headers.contains_key(CONTENT_LENGTH) || raw_length() {
            return Err(ambiguous);
        }
    }
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    if let Some(length) = lengths.next() {
        if lengths.next().is_some() || length.as_bytes().contains(&b',') {
            return Err(ambiguous);
        }
    }
    if req.version == Version::HTTP_2 && headers.values().any(|v| padded(v.as_bytes())) {
        return Err(ApiError::InvalidRequest(
            "a header value starts or ends with whitespace",
        ));
    }
    Ok(())
}

/// Whether a request announces a body (`Transfer-Encoding`, or a
/// `Content-Length` that is not zero; Pingora refuses a malformed one).
pub(crate) fn expects_body(req: &RequestHeader) -> bool {
    req.headers.contains_key(TRANSFER_ENCODING)
        || req
            .headers
            .get(CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes().iter().any(|&b| b != b'0'))
}

/// Whether a raw HTTP/1 header has a `Content-Length` line. Every line after
/// the request line starts with its field name (the parser refuses folded
/// lines and whitespace before the colon); lines may end in a bare LF.
fn names_content_length(raw: &[u8]) -> bool {
    const NAME: &[u8] = b"content-length:";
    raw.split(|&b| b == b'\n').skip(1).any(|line| {
        line.get(..NAME.len())
            .is_some_and(|n| n.eq_ignore_ascii_case(NAME))
    })
}

/// A field value with a space or tab at either end.
fn padded(value: &[u8]) -> bool {
    let ws = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    ws(value.first()) || ws(value.last())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/x", None).unwrap_or_else(|e| panic!("{e}"));
        req.set_version(version);
        for (name, value) in headers {
            req.append_header(name.to_string(), *value)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        req
    }

    fn no_raw() -> Option<&'static [u8]> {
        None
    }

    #[test]
    fn one_chunked_coding_or_one_length_is_fine() {
        let h1 = Version::HTTP_11;
        for headers in [
            &[("transfer-encoding", "chunked")][..],
            &[("transfer-encoding", "Chunked")],
            &[("content-length", "42")],
            &[("content-length", "0")],
            &[],
        ] {
            let raw = b"POST /x HTTP/1.1\r\nHost: a\r\nX-Content-Length: 1\r\n\r\n";
            assert_eq!(
                check(&request(h1, headers), || Some(raw)),
                Ok(()),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn two_readings_of_the_length_are_refused() {
        let h1 = Version::HTTP_11;
        for headers in [
            &[("transfer-encoding", "identity, chunked")][..],
            &[("transfer-encoding", "gzip, chunked")],
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            &[("transfer-encoding", "chunked"), ("content-length", "3")],
            &[("content-length", "3"), ("content-length", "3")],
            &[("content-length", "3, 3")],
        ] {
            let refused = check(&request(h1, headers), no_raw);
            assert!(
                matches!(refused, Err(ApiError::InvalidRequest(_))),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn a_content_length_pingora_dropped_is_found_in_the_raw_header() {
        let req = request(Version::HTTP_11, &[("transfer-encoding", "chunked")]);
        for raw in [
            &b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"[..],
            b"POST /x HTTP/1.1\ncontent-LENGTH:3\n\n",
        ] {
            assert!(check(&req, || Some(raw)).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn only_http2_values_are_checked_for_whitespace() {
        for value in [" v", "v ", "\tv", "v\t", " "] {
            let h2 = request(Version::HTTP_2, &[("x-a", "ok"), ("x-b", value)]);
            assert!(check(&h2, no_raw).is_err(), "{value:?}");
        }
        let fine = request(Version::HTTP_2, &[("x-a", "a b\tc"), ("x-b", "")]);
        assert_eq!(check(&fine, no_raw), Ok(()));
    }

    #[test]
    fn a_body_is_expected_from_framing_headers() {
        let h1 = Version::HTTP_11;
        assert!(expects_body(&request(h1, &[("Content-Length", "12")])));
        assert!(expects_body(&request(h1, &[("Content-Length", "10")])));
        assert!(expects_body(&request(
            h1,
            &[("Transfer-Encoding", "chunked")]
        )));
        assert!(!expects_body(&request(h1, &[("Content-Length", "0")])));
        assert!(!expects_body(&request(h1, &[("Content-Length", "00")])));
        assert!(!expects_body(&request(h1, &[])));
    }
}
