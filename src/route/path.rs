//! Canonical paths: the one reading of a request target that wxgate routes
//! on and forwards (the rules are listed in [`crate::route`]).

use std::borrow::Cow;

use crate::error::ApiError;

/// A request target after canonicalisation: the path and query wxgate forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical<'a> {
    target: Cow<'a, [u8]>,
    path_len: usize,
}

impl Canonical<'_> {
    /// The canonical path, without the query. Always ASCII.
    pub fn path(&self) -> &str {
        // Canonical paths are ASCII by construction (see `canonicalize`).
        std::str::from_utf8(&self.target[..self.path_len]).unwrap_or("/")
    }

    /// Path and query: the exact request target forwarded upstream.
    pub fn target(&self) -> &[u8] {
        &self.target
    }

    /// Whether the forwarded target differs from what the client sent.
    pub fn is_rewritten(&self) -> bool {
        matches!(self.target, Cow::Owned(_))
    }
}

/// Canonicalise a raw origin-form request target (`/path?query`).
pub fn canonicalize(raw: &[u8]) -> Result<Canonical<'_>, ApiError> {
    if raw.first() != Some(&b'/') {
        return Err(ApiError::InvalidPath);
    }
    let (path, query) = match raw.iter().position(|&b| b == b'?') {
        Some(q) => (&raw[..q], Some(&raw[q..])),
        None => (raw, None),
    };
    if let Some(q) = query {
        if q.iter().any(|&b| b < 0x20 || b == 0x7f || b == b'#') {
            return Err(ApiError::InvalidPath);
        }
    }
    // Fast path: nothing to decode, encode or collapse. Only dot segments to check.
    if path.iter().all(|&b| is_plain(b)) && !has_double_slash(path) {
        check_segments(path)?;
        return Ok(Canonical {
            target: Cow::Borrowed(raw),
            path_len: path.len(),
        });
    }
    let mut out = Vec::with_capacity(raw.len());
    // The decoded path, for the UTF-8 check.
    let mut decoded = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        match b {
            b'%' => {
                let (Some(h), Some(l)) = (
                    path.get(i + 1).and_then(|&c| hex(c)),
                    path.get(i + 2).and_then(|&c| hex(c)),
                ) else {
                    return Err(ApiError::InvalidPath);
                };
                let v = h << 4 | l;
                if v == b'/' || v == b'\\' || v < 0x20 || v == 0x7f {
                    return Err(ApiError::InvalidPath);
                }
                if is_unreserved(v) {
                    out.push(v);
                } else {
                    push_escape(&mut out, v);
                }
                decoded.push(v);
                i += 3;
                continue;
            }
            b'\\' => return Err(ApiError::InvalidPath),
            _ if b < 0x20 || b == 0x7f => return Err(ApiError::InvalidPath),
            b'/' if out.last() == Some(&b'/') => {}
            _ if is_plain(b) => out.push(b),
            _ => push_escape(&mut out, b),
        }
        decoded.push(b);
        i += 1;
    }
    if std::str::from_utf8(&decoded).is_err() {
        return Err(ApiError::InvalidPath);
    }
    check_segments(&out)?;
    let path_len = out.len();
    if let Some(q) = query {
        out.extend_from_slice(q);
    }
    if out == raw {
        return Ok(Canonical {
            target: Cow::Borrowed(raw),
            path_len,
        });
    }
    Ok(Canonical {
        target: Cow::Owned(out),
        path_len,
    })
}

fn has_double_slash(path: &[u8]) -> bool {
    path.windows(2).any(|w| w == b"//")
}

/// Refuse dot segments, also with path parameters (`..;x`): servlet containers
/// strip `;...` before resolving `..`.
fn check_segments(path: &[u8]) -> Result<(), ApiError> {
    let dot = |seg: &[u8]| {
        let name = seg.split(|&b| b == b';').next().unwrap_or(seg);
        name == b"." || name == b".."
    };
    if path.split(|&b| b == b'/').any(dot) {
        return Err(ApiError::InvalidPath);
    }
    Ok(())
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn push_escape(out: &mut Vec<u8>, v: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[b'%', HEX[(v >> 4) as usize], HEX[(v & 15) as usize]]);
}

/// RFC 3986 unreserved characters.
pub(super) fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Bytes that stand for themselves in a canonical path: pchar and '/', minus '%'.
pub(super) fn is_plain(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'/' | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

/// A byte an origin-form request target may carry as RFC 3986 writes it:
/// [`is_plain`], `?` and `%`.
pub fn is_target_byte(b: u8) -> bool {
    is_plain(b) || b == b'?' || b == b'%'
}

/// Whether `prefix` may stand in the route table as written: a canonical path
/// (what [`canonicalize`] would route on) starting with `/`, without a query.
pub fn is_canonical_prefix(prefix: &str) -> bool {
    !prefix.contains('?') && canonicalize(prefix.as_bytes()).is_ok_and(|c| c.path() == prefix)
}

/// Whether `prefix` matches `path`: a prefix ending in `/` matches every
/// path that starts with it, any other one itself and the paths below it.
pub(super) fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        None => false,
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
    }
}

/// [`prefix_matches`] as a server that ignores ASCII case reads it.
pub(super) fn prefix_matches_ignoring_case(prefix: &str, path: &str) -> bool {
    let (p, q) = (prefix.as_bytes(), path.as_bytes());
    match q.get(..p.len()) {
        Some(head) if head.eq_ignore_ascii_case(p) => {
            let rest = &q[p.len()..];
            p.ends_with(b"/") || rest.is_empty() || rest.starts_with(b"/")
        }
        _ => false,
    }
}

/// `path` with `;params` cut from every segment, as servlet containers read
/// it, and the `//` an emptied segment leaves merged (`/;x/api` is `/api`).
pub(super) fn strip_path_params(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 && !out.ends_with('/') {
            out.push('/');
        }
        out.push_str(segment.split(';').next().unwrap_or(segment));
    }
    out
}
