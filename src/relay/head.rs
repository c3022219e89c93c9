//! The request head, read for wxgate's own HTTP/1 path: parsed once with
//! `httparse` into a fixed array of fields, and taken only when its framing
//! is the plain kind. Everything else goes to Pingora, which then answers
//! the request exactly as it does without this path: a head that does not
//! parse, HTTP/1.0, an unusual method or target, `Transfer-Encoding`, more
//! than one `Content-Length` or `Host`, `Expect`, an upgrade, more fields
//! than [`MAX_FIELDS`]. So this path never accepts what Pingora refuses:
//! it accepts a strict subset of what Pingora accepts.

/// The most fields a head may have on this path (Pingora takes up to 256).
pub(crate) const MAX_FIELDS: usize = 64;

/// The longest `Content-Length` taken here (19 digits fit in a `u64`).
const MAX_LENGTH_DIGITS: usize = 19;

/// A request head this path serves.
#[derive(Debug)]
pub(crate) struct Head<'b> {
    /// One of [`METHODS`].
    pub method: &'static str,
    /// The request target as sent (origin form: it starts with `/`).
    pub target: &'b [u8],
    /// The fields, in order, names as sent.
    pub fields: &'b [httparse::Header<'b>],
    /// The head's length in bytes, blank line included.
    pub len: usize,
    /// The body's length (`Content-Length`, 0 without one).
    pub body: u64,
    /// The client asked to close the connection after this request.
    pub close: bool,
    /// The `Host` value, if one was sent.
    pub host: Option<&'b [u8]>,
}

/// What the bytes read so far hold.
#[derive(Debug)]
pub(crate) enum Parsed<'b> {
    /// Not a whole head yet.
    Partial,
    /// A head for this path.
    Relay(Head<'b>),
    /// A head (or bytes) for Pingora to read and answer.
    Pingora(&'static str),
}

/// The methods served here; any other goes to Pingora.
pub(super) const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];

/// Whether `buf` may hold a whole head: it has a blank line. Cheaper than
/// a parse, so a head arriving in pieces is parsed once.
pub(crate) fn may_be_complete(buf: &[u8]) -> bool {
    buf.windows(2).any(|w| w == b"\n\n") || buf.windows(3).any(|w| w == b"\n\r\n")
}

/// Parse a request head from `buf` into `fields`.
pub(crate) fn parse<'b>(
    buf: &'b [u8],
    fields: &'b mut [httparse::Header<'b>; MAX_FIELDS],
) -> Parsed<'b> {
    let mut req = httparse::Request::new(fields);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Pingora("the head does not parse here"),
    };
    if req.version != Some(1) {
        return Parsed::Pingora("HTTP/1.0");
    }
    let Some(method) = req
        .method
        .and_then(|m| METHODS.iter().find(|&&k| k == m).copied())
    else {
        return Parsed::Pingora("method");
    };
    let target = req.path.map_or(&b""[..], str::as_bytes);
    if target.first() != Some(&b'/') {
        return Parsed::Pingora("target form");
    }
    if !target.iter().all(|&b| crate::route::is_target_byte(b)) {
        // `httparse` takes a few bytes that `http`'s URI (and so Pingora)
        // refuses (`<`, `"`, `{`, ...), and Pingora drops a `#fragment`.
        return Parsed::Pingora("target bytes");
    }
    let fields: &'b [httparse::Header<'b>] = req.headers;
    let mut body = None;
    let mut host = None;
    let mut close = false;
    for f in fields {
        let name = f.name.as_bytes();
        let value = f.value;
        if name.eq_ignore_ascii_case(b"content-length") {
            if body.is_some() {
                return Parsed::Pingora("Content-Length twice");
            }
            match length(value) {
                Some(n) => body = Some(n),
                None => return Parsed::Pingora("Content-Length"),
            }
        } else if name.eq_ignore_ascii_case(b"host") {
            if host.is_some() || value.contains(&b'@') {
                return Parsed::Pingora("Host");
            }
            host = Some(value);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"upgrade")
            || name.eq_ignore_ascii_case(b"http2-settings")
        {
            return Parsed::Pingora("framing or upgrade");
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"upgrade") {
                    return Parsed::Pingora("upgrade");
                }
                close |= token.eq_ignore_ascii_case(b"close");
            }
        }
    }
    Parsed::Relay(Head {
        method,
        target,
        fields,
        len,
        body: body.unwrap_or(0),
        close,
        host,
    })
}

/// A `Content-Length` value: 1 to 19 ASCII digits, nothing else.
pub(super) fn length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > MAX_LENGTH_DIGITS {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// The values of the fields named `name` (in any case).
pub(crate) fn values<'h, 'b: 'h>(
    fields: &'h [httparse::Header<'b>],
    name: &'static [u8],
) -> impl Iterator<Item = &'b [u8]> + Clone + 'h {
    fields
        .iter()
        .filter(move |f| f.name.as_bytes().eq_ignore_ascii_case(name))
        .map(|f| f.value)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod differential;
