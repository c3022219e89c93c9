//! The upstream's response head, read for wxgate's own HTTP/1 path: how its
//! body is framed, whether the upstream connection may be used again, and
//! the head the client gets (`Connection`, `Date` and the request id set by
//! wxgate, as Pingora's path sets them).

use super::head::{length, MAX_FIELDS};
use crate::headers::raw::line;

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (`HEAD`, 204, 304).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// Chunked, relayed as it is.
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

/// A response head from the upstream.
#[derive(Debug)]
pub(crate) struct Response<'b> {
    pub status: u16,
    pub reason: &'b str,
    pub fields: &'b [httparse::Header<'b>],
    /// The head's length in bytes.
    pub len: usize,
    pub framing: Framing,
    /// The upstream connection may carry another request afterwards.
    pub reusable: bool,
    /// `Content-Length` is not sent on: `Transfer-Encoding` overrides it.
    drop_length: bool,
}

/// What the bytes read from the upstream hold.
#[derive(Debug)]
pub(crate) enum ReadHead<'b> {
    Partial,
    /// An interim (1xx) response of this many bytes, skipped.
    Interim(usize),
    Final(Response<'b>),
    /// Not a response wxgate can relay (502).
    Bad(&'static str),
}

/// Parse the upstream's response head. `head_request`: the request was `HEAD`.
pub(crate) fn parse<'b>(
    buf: &'b [u8],
    fields: &'b mut [httparse::Header<'b>; MAX_FIELDS],
    head_request: bool,
) -> ReadHead<'b> {
    let mut resp = httparse::Response::new(fields);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return ReadHead::Partial,
        Err(_) => return ReadHead::Bad("the response head does not parse"),
    };
    let Some(status) = resp.code else {
        return ReadHead::Bad("no status");
    };
    if status == 101 {
        // No upgrade was asked for on this path.
        return ReadHead::Bad("101 without an upgrade");
    }
    if (100..200).contains(&status) {
        return ReadHead::Interim(len);
    }
    let http11 = resp.version == Some(1);
    let fields: &'b [httparse::Header<'b>] = resp.headers;
    let mut declared: Option<u64> = None;
    let mut chunked = None;
    let mut close = !http11;
    for f in fields {
        let name = f.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            for v in f.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                let Some(n) = length(v) else {
                    return ReadHead::Bad("a bad Content-Length");
                };
                if declared.is_some_and(|l| l != n) {
                    return ReadHead::Bad("differing Content-Lengths");
                }
                declared = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // The last coding of the last field decides.
            let last = f
                .value
                .rsplit(|&b| b == b',')
                .next()
                .map(<[u8]>::trim_ascii);
            chunked = Some(last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")));
        } else if name.eq_ignore_ascii_case(b"connection") {
            for t in f.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") && !http11 {
                    close = false;
                }
            }
        }
    }
    let framing = if head_request || status == 204 || status == 304 {
        Framing::Empty
    } else {
        match (chunked, declared) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::UntilClose,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::UntilClose,
        }
    };
    // A response framed two ways is not trusted with another request.
    let both = chunked.is_some() && declared.is_some();
    ReadHead::Final(Response {
        status,
        reason: resp.reason.unwrap_or(""),
        fields,
        len,
        framing,
        reusable: !close && !both && framing != Framing::UntilClose,
        drop_length: chunked.is_some(),
    })
}

impl Response<'_> {
    /// Whether a field of the upstream's head goes on to the client: not
    /// its hop-by-hop `Connection` and `Keep-Alive`, nor its `Date` and
    /// request id (wxgate sets its own), nor a `Content-Length` that
    /// `Transfer-Encoding` overrides.
    pub(crate) fn passes(&self, name: &[u8]) -> bool {
        !(name.eq_ignore_ascii_case(b"connection")
            || name.eq_ignore_ascii_case(b"keep-alive")
            || name.eq_ignore_ascii_case(b"date")
            || name.eq_ignore_ascii_case(b"x-request-id")
            || (self.drop_length && name.eq_ignore_ascii_case(b"content-length")))
    }

    /// Write the head the client gets: the upstream's status and fields,
    /// less its hop-by-hop `Connection` and `Keep-Alive`, its `Date` and
    /// request id; then wxgate's `X-Request-ID`, `Date` and `Connection`.
    pub(crate) fn write_head(
        &self,
        request_id: &[u8],
        date: &[u8],
        keep_alive: bool,
        out: &mut Vec<u8>,
    ) {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(itoa::Buffer::new().format(self.status).as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        for f in self.fields {
            let n = f.name.as_bytes();
            if self.passes(n) {
                line(out, n, f.value);
            }
        }
        line(out, b"X-Request-ID", request_id);
        line(out, b"Date", date);
        let connection: &[u8] = if keep_alive { b"keep-alive" } else { b"close" };
        line(out, b"Connection", connection);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests;
